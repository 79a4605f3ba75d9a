"""ParamStates holding a pytree of arrays, as ``brainstate.nn.Linear`` does (``{'weight', 'bias'}``).

Every leaf is trained as its own parameter; the result must equal training
the same arrays held in one ParamState each.
"""

import re

import brainstate
import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo
from braintools_optim import GradientMismatchError


def _linear_like(seed=0):
    rng = np.random.default_rng(seed)
    return {'w': jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
            'b': jnp.asarray(rng.normal(size=(2,)), jnp.float32)}


def _grad(step):
    rng = np.random.default_rng(10 + step)
    return {'w': jnp.asarray(rng.normal(size=(3, 2)), jnp.float32),
            'b': jnp.asarray(rng.normal(size=(2,)), jnp.float32)}


@pytest.mark.parametrize('make', [lambda: bo.Adam(lr=0.1, weight_decay=0.01),
                                  lambda: bo.Lamb(lr=0.1),
                                  lambda: bo.SGD(lr=0.1, momentum=0.9, fused=False)],
                         ids=['Adam', 'Lamb', 'SGD'])
def test_a_pytree_state_trains_like_one_state_per_leaf(make):
    tree_state = brainstate.ParamState(_linear_like())
    tree_opt = make().register_trainable_weights({'layer': tree_state})
    flat_states = {name: brainstate.ParamState(value) for name, value in _linear_like().items()}
    flat_opt = make().register_trainable_weights(flat_states)
    for step in range(4):
        grad = _grad(step)
        tree_opt.update({'layer': grad})
        flat_opt.update({name: grad[name] for name in grad})
    for name in ('w', 'b'):
        np.testing.assert_array_equal(tree_state.value[name], flat_states[name].value)
    assert set(tree_opt.buffers()['exp_avg' if 'exp_avg' in tree_opt.buffers() else 'momentum_buffer']) == {
        ('layer', 'w'), ('layer', 'b')}


def test_brainstate_linear_layers_train_under_jit():
    class MLP(brainstate.nn.Module):
        def __init__(self):
            super().__init__()
            self.l1 = brainstate.nn.Linear(4, 8)
            self.l2 = brainstate.nn.Linear(8, 1)

        def update(self, x):
            return self.l2(jnp.tanh(self.l1(x)))

    brainstate.random.seed(0)
    model = MLP()
    opt = bo.AdamW(lr=1e-2, grad_clip_norm=1.0)
    opt.register_trainable_weights(model.states(brainstate.ParamState))
    assert len(opt.param_states) == 2                    # two States ...
    assert len(opt.buffers()['exp_avg']) == 4            # ... four trained arrays
    xs = jax.random.normal(jax.random.PRNGKey(0), (64, 4))
    ys = jnp.sum(xs, axis=1, keepdims=True)

    def loss_fn():
        return jnp.mean((model(xs) - ys) ** 2)

    @brainstate.transform.jit
    def train_step():
        grads, loss = brainstate.transform.grad(loss_fn, opt.param_states, return_value=True)()
        opt.update(grads)
        return loss

    losses = [float(train_step()) for _ in range(100)]
    assert losses[-1] < 0.2 * losses[0]
    # the eager path works on the same structure
    grads = brainstate.transform.grad(loss_fn, opt.param_states)()
    opt.update(grads)


def test_a_pytree_gradient_with_another_structure_is_refused_and_changes_nothing():
    state = brainstate.ParamState(_linear_like())
    opt = bo.Adam(lr=0.1).register_trainable_weights({'layer': state})
    opt.update({'layer': _grad(0)})
    before = jax.tree.map(np.asarray, state.value)
    moments = {k: np.asarray(v) for k, v in opt.buffers()['exp_avg'].items()}
    with pytest.raises(GradientMismatchError, match="'layer' has structure"):
        opt.update({'layer': {'w': _grad(1)['w']}})
    with pytest.raises(GradientMismatchError, match=re.escape("'layer'['b']")):
        opt.update({'layer': {'w': _grad(1)['w'], 'b': jnp.ones(3)}})
    with pytest.raises(GradientMismatchError, match='missing'):
        opt.update({})
    for name in ('w', 'b'):
        np.testing.assert_array_equal(state.value[name], before[name])
    for key, value in opt.buffers()['exp_avg'].items():
        np.testing.assert_array_equal(value, moments[key])


def test_pytree_states_with_units_checkpoint_and_non_float_leaves():
    state = brainstate.ParamState({'g': jnp.ones(3) * u.nS, 'tau': jnp.array(5.0) * u.ms})
    opt = bo.Adam(lr=0.1).register_trainable_weights({'syn': state})
    opt.update({'syn': {'g': jnp.ones(3) * u.nS, 'tau': jnp.array(1.0) * u.ms}})
    assert state.value['g'].unit == u.nS and state.value['tau'].unit == u.ms
    np.testing.assert_allclose(state.value['g'].mantissa, 0.9, rtol=1e-6)
    restored = bo.Adam(lr=0.1).register_trainable_weights(
        {'syn': brainstate.ParamState({'g': jnp.ones(3) * u.nS, 'tau': jnp.array(5.0) * u.ms})})
    restored.load_state_dict(opt.state_dict())
    np.testing.assert_array_equal(restored.buffers()['exp_avg'][('syn', 'g')].mantissa,
                                  opt.buffers()['exp_avg'][('syn', 'g')].mantissa)
    with pytest.raises(TypeError, match=re.escape("'mixed'['n']: a trainable parameter must be a floating-point")):
        bo.Adam().register_trainable_weights({'mixed': brainstate.ParamState({'w': jnp.ones(2),
                                                                               'n': jnp.arange(2)})})


def test_lookahead_and_ema_accept_pytree_states():
    state = brainstate.ParamState(_linear_like())
    opt = bo.Lookahead(bo.SGD(lr=0.1), sync_period=2, alpha=0.5).register_trainable_weights({'layer': state})
    ema = bo.EMA({'layer': state}, decay=0.5)
    for step in range(4):
        opt.update({'layer': _grad(step)})
        ema.update()
    assert set(opt.buffers()['slow_params']) == {('layer', 'w'), ('layer', 'b')}
    assert state.value['w'].shape == (3, 2)
