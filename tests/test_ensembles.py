"""Ensembles: one optimizer object trains many models at once under ``brainstate.transform.vmap``.

The recipe of ``docs/distributed.md``: build the model and its optimizer once
per member inside ``brainstate.transform.vmap_new_states`` (each member may get
its own learning rate), then train inside ``brainstate.transform.vmap`` over
the model's and the optimizer's States. It must equal a Python loop over
separately built members, member by member, with the default layout (fused
flat buffers), per-member learning rates and per-member non-finite skipping;
outside ``vmap`` the optimizer answers per member and refuses what cannot work.
"""

from __future__ import annotations

import brainstate
import brainunit as u
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo

N = 4
INIT = np.random.RandomState(0).randn(N, 3).astype(np.float32)
LRS = np.array([0.1, 0.05, 0.02, 0.2], np.float32)
X = np.random.RandomState(1).randn(8, 3).astype(np.float32)
Y = np.linspace(-1.0, 1.0, 8).astype(np.float32)
#: which member gets a NaN loss at which step (a diverging member must not stop the others)
POISON = np.array([[0, 1, 0, 0], [0, 0, 0, 0], [0, 0, 1, 1], [0, 1, 0, 0], [0, 0, 0, 0]], bool)


class Neuron(brainstate.nn.Module):
    """A rate neuron ``y = gain * tanh(x @ w) + tanh(x @ v) + bias`` with a time constant in ms (units are kept).

    ``w`` and ``v`` have one shape, so a per-tensor rule (Lamb) keeps them in one stack.
    """

    def __init__(self, w0):
        super().__init__()
        self.w = brainstate.ParamState(jnp.asarray(w0))
        self.v = brainstate.ParamState(0.5 * jnp.flip(jnp.asarray(w0)))
        self.gain = brainstate.ParamState(jnp.ones(()))
        self.tau = brainstate.ParamState(jnp.full((2,), 5.0) * u.ms)

    def __call__(self, x):
        decay = jnp.exp(-u.get_mantissa(u.ms / self.tau.value))
        return self.gain.value * jnp.tanh(x @ self.w.value) + jnp.tanh(x @ self.v.value) + jnp.sum(decay)


def _loss(model, poison):
    return jnp.mean((model(X) - Y) ** 2) * jnp.where(poison, jnp.nan, 1.0)


MAKERS = {
    'Adam': lambda lr: bo.Adam(lr=lr, skip_nonfinite=True),
    'AdamW-clipped': lambda lr: bo.AdamW(lr=lr, weight_decay=0.1, grad_clip_norm=0.5, skip_nonfinite=True),
    'Lamb': lambda lr: bo.Lamb(lr=lr, skip_nonfinite=True),
    'Adam-accumulating': lambda lr: bo.Adam(lr=lr, accumulate_steps=2, skip_nonfinite=True),
    'SGD-scheduled': lambda lr: bo.Momentum(lr=bo.StepLR(0.05, step_size=2, gamma=0.5), momentum=0.9,
                                            schedule_per_update=True, skip_nonfinite=True),
}


def build_ensemble(make, lrs=LRS):
    """The model and optimizer of every member, built under vmap_new_states (each with its own lr)."""
    built = {}

    @brainstate.transform.vmap_new_states(axis_size=len(lrs), in_axes=0)
    def build(w0, lr):
        model = Neuron(w0)
        opt = make(lr)
        opt.register_trainable_weights(model.states(brainstate.ParamState))
        built['model'], built['opt'] = model, opt

    build(jnp.asarray(INIT[:len(lrs)]), jnp.asarray(lrs))
    return built['model'], built['opt']


def ensemble_states(model, opt):
    return list(model.states().values()) + list(brainstate.graph.states(opt).values())


def train_ensemble(model, opt, poison=POISON):
    states = ensemble_states(model, opt)

    @brainstate.transform.jit
    @brainstate.transform.vmap(in_states=states, out_states=states)
    def step(bad):
        grads = brainstate.transform.grad(lambda: _loss(model, bad), opt.param_states)()
        opt.update(grads)

    for bad in poison:
        step(jnp.asarray(bad[:len(opt.step_count.value)]))


def train_members_one_by_one(make):
    """Each member trained alone from a fresh optimizer state, reusing one model and optimizer (one compile)."""
    model = Neuron(INIT[0])
    opt = make(float(LRS[0])).register_trainable_weights(model.states(brainstate.ParamState))
    initial = {k: s.value for k, s in model.states(brainstate.ParamState).items()}
    fresh = opt.state_dict()
    per_member_lr = opt._lr.scheduler is None

    @brainstate.transform.jit
    def step(bad):
        opt.update(brainstate.transform.grad(lambda: _loss(model, bad), opt.param_states)())

    members = []
    for i in range(N):
        for key, state in model.states(brainstate.ParamState).items():
            start = {('w',): jnp.asarray(INIT[i]), ('v',): 0.5 * jnp.flip(jnp.asarray(INIT[i]))}
            state.value = start.get(key, initial[key])
        opt.load_state_dict(fresh)
        if per_member_lr:
            opt.set_lr(float(LRS[i]))
        for bad in POISON[:, i]:
            step(jnp.asarray(bad))
        members.append({
            'params': {k: u.get_mantissa(s.value) for k, s in model.states(brainstate.ParamState).items()},
            'step_count': int(opt.step_count.value), 'skips': int(opt.nonfinite_skips.value),
            'buffers': {b: {k: u.get_mantissa(v) for k, v in per.items()} for b, per in opt.buffers().items()},
        })
    return members


@pytest.mark.parametrize('name', sorted(MAKERS))
def test_ensemble_equals_a_loop_over_members(name):
    model, opt = build_ensemble(MAKERS[name])
    assert opt._storage[0].fused or not opt.is_elementwise()       # the default layout: flat buckets
    train_ensemble(model, opt)
    batched = {k: u.get_mantissa(s.value) for k, s in model.states(brainstate.ParamState).items()}
    buffers = opt.buffers()
    for i, single in enumerate(train_members_one_by_one(MAKERS[name])):
        for key, value in single['params'].items():
            np.testing.assert_allclose(batched[key][i], value, rtol=1e-5, atol=1e-6, err_msg=f"member {i}, {key}")
        assert int(opt.step_count.value[i]) == single['step_count']
        assert int(opt.nonfinite_skips.value[i]) == single['skips']
        for buffer, per_param in single['buffers'].items():
            for key, value in per_param.items():
                np.testing.assert_allclose(u.get_mantissa(buffers[buffer][key])[i], value, rtol=1e-5, atol=1e-6,
                                           err_msg=f"{buffer} of member {i}")


def test_members_skip_and_count_on_their_own():
    model, opt = build_ensemble(MAKERS['Adam'])
    train_ensemble(model, opt)
    np.testing.assert_array_equal(np.asarray(opt.nonfinite_skips.value), POISON.sum(axis=0))
    np.testing.assert_array_equal(np.asarray(opt.step_count.value), len(POISON) - POISON.sum(axis=0))
    assert opt.steps_taken() == len(POISON)                        # the furthest member
    for value in model.states(brainstate.ParamState).values():
        assert np.all(np.isfinite(u.get_mantissa(value.value)))


def test_the_default_layout_keeps_one_flat_bucket_per_member():
    _, opt = build_ensemble(MAKERS['Adam'])
    storage = opt._storage[0]
    assert storage.fused and len(storage.layout.buckets) == 1
    assert [a.shape for a in storage.states['exp_avg'].value] == [(N, 3 + 3 + 1 + 2)]


def test_per_member_learning_rates_read_and_set_outside_and_inside_vmap():
    model, opt = build_ensemble(MAKERS['Adam'])
    np.testing.assert_allclose(opt.current_lr, LRS)
    np.testing.assert_allclose(opt.param_groups[0]['lr'], LRS)
    assert 'per member' in repr(opt)
    opt.set_lr(0.01)                                                # every member, not member 0
    np.testing.assert_allclose(opt.current_lr, np.full(N, 0.01))
    states = ensemble_states(model, opt)

    @brainstate.transform.vmap(in_states=states, out_states=states)
    def set_lrs(lr):
        opt.set_lr(lr)

    set_lrs(jnp.asarray(LRS[::-1]))
    np.testing.assert_allclose(opt.current_lr, LRS[::-1])
    opt.set_weight_decay(0.0)
    np.testing.assert_array_equal(opt.weight_decay, np.zeros(N))


def test_state_dict_of_an_ensemble_keeps_the_member_axis():
    model, opt = build_ensemble(MAKERS['Adam'])
    train_ensemble(model, opt)
    state = opt.state_dict()
    for buffer, per_param in state['opt_state'].items():
        for key, value in per_param.items():
            assert value.shape[0] == N, (buffer, key, value.shape)
    np.testing.assert_array_equal(state['step_count'], np.asarray(opt.step_count.value))


def test_an_ensemble_checkpoints_through_its_states(tmp_path):
    model, opt = build_ensemble(MAKERS['Adam'])
    train_ensemble(model, opt, POISON[:2])
    path = str(tmp_path / 'ensemble.npz')
    every = {**{('model',) + k: s for k, s in model.states().items()},
             **{('opt',) + k: s for k, s in brainstate.graph.states(opt).items()}}
    bo.checkpoint.save_states(path, every)
    twin_model, twin_opt = build_ensemble(MAKERS['Adam'])
    twin = {**{('model',) + k: s for k, s in twin_model.states().items()},
            **{('opt',) + k: s for k, s in brainstate.graph.states(twin_opt).items()}}
    bo.checkpoint.load_states(path, twin)
    train_ensemble(model, opt, POISON[2:])
    train_ensemble(twin_model, twin_opt, POISON[2:])
    for key, state in model.states(brainstate.ParamState).items():
        np.testing.assert_array_equal(u.get_mantissa(twin_model.states(brainstate.ParamState)[key].value),
                                      u.get_mantissa(state.value))


def test_what_cannot_work_outside_vmap_says_so():
    model, opt = build_ensemble(MAKERS['Adam'])
    grads = {k: jnp.zeros_like(u.get_mantissa(s.value)) for k, s in opt.param_states.items()}
    with pytest.raises(bo.ParameterChangedError, match='inside brainstate.transform.vmap'):
        opt.update(grads)
    with pytest.raises(RuntimeError, match='belongs to an ensemble'):
        opt.register_trainable_weights({'extra': brainstate.ParamState(jnp.ones(2))})
    with pytest.raises(RuntimeError, match='belongs to an ensemble'):
        opt.add_param_group(params='w', lr=0.1)
    assert len(opt.param_states) == 4


def test_an_optimizer_registered_with_the_whole_ensemble_is_explained():
    built = {}

    @brainstate.transform.vmap_new_states(axis_size=N, in_axes=0)
    def build(w0):
        built['model'] = Neuron(w0)

    build(jnp.asarray(INIT))
    model = built['model']
    opt = bo.Adam(lr=0.1).register_trainable_weights(model.states(brainstate.ParamState))
    states = ensemble_states(model, opt)

    @brainstate.transform.vmap(in_states=states, out_states=states)
    def step():
        opt.update(brainstate.transform.grad(lambda: _loss(model, False), opt.param_states)())

    with pytest.raises(bo.ParameterChangedError, match='build the optimizer inside the same'):
        step()
