"""Cases of tests/golden/state_dict_v1_*.npz: the same calls on the first release (by
scripts/make_state_dict_v1_golden.py) and on today's (by tests/test_checkpoints_v1.py)."""

import brainstate, jax.numpy as jnp, numpy as np, brainunit as u

def params():
    rng = np.random.default_rng(0)
    return {'w': brainstate.ParamState(jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)),
            'b': brainstate.ParamState(jnp.asarray(rng.normal(size=(2,)), jnp.float32)),
            'tau': brainstate.ParamState(jnp.asarray([5.0, 10.0], jnp.float32) * u.ms)}

def grads(step, keys):
    rng = np.random.default_rng(50 + step)
    out = {}
    for name, shape in (('w', (3, 2)), ('b', (2,)), ('tau', (2,))):
        g = jnp.asarray(rng.normal(size=shape), jnp.float32)
        out[name] = g * u.ms if name == 'tau' else g
    return {keys[name]: g for name, g in out.items()}

def build(bo, name, states):
    """The optimizer of case `name` with its parameters registered (same calls in both releases)."""
    if name == 'adam_groups_skip':
        opt = bo.Adam(lr=0.05, weight_decay=1e-3, skip_nonfinite=True)
        opt.register_trainable_weights({'w': states['w'], 'b': states['b']})
        opt.add_param_group({'tau': states['tau']}, lr=0.01, weight_decay=0.0)
        return opt
    if name == 'sgd_list_accumulate':
        opt = bo.SGD(lr=0.1, momentum=0.9, accumulate_steps=2)
        return opt.register_trainable_weights([states['w'], states['b'], states['tau']])
    if name == 'adamw_steplr':
        opt = bo.AdamW(lr=bo.StepLR(base_lr=0.1, step_size=2, gamma=0.5), weight_decay=0.01)
        return opt.register_trainable_weights(states)
    if name == 'lamb_per_tensor':
        return bo.Lamb(lr=0.05, weight_decay=0.01).register_trainable_weights(states)
    raise KeyError(name)

CASES = ['adam_groups_skip', 'sgd_list_accumulate', 'adamw_steplr', 'lamb_per_tensor']
