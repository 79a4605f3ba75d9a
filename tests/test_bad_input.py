"""Bad input gets a clear error naming what is wrong, and loses nothing."""

import math

import brainstate
import brainunit as u
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo
from optim_db import ALL, OPTIM_DB, OPTIMIZERS, core, names

IDS = names(ALL)


def make_problem(info, **kw):
    w = brainstate.ParamState(jnp.array([[1.0, 2.0], [3.0, 4.0]]))
    b = brainstate.ParamState(jnp.array([0.5, -0.5]))
    tau = brainstate.ParamState(jnp.array([10.0, 20.0, 30.0]) * u.ms)
    opt = info.make(**kw).register_trainable_weights({'w': w, 'b': b, 'tau': tau})
    good = {'w': jnp.ones((2, 2)), 'b': jnp.ones(2), 'tau': jnp.ones(3) * u.ms}
    opt.update(good)            # non-trivial moments before the bad call
    return opt, (w, b, tau), good


def snapshot(opt, params):
    buffers = opt.buffers()
    return ([np.asarray(u.get_mantissa(p.value)) for p in params],
            {name: [np.asarray(u.get_mantissa(buffers[name][k])) for k in sorted(buffers[name], key=repr)]
             for name in buffers},
            np.asarray(opt.step_count.value))


def assert_unchanged(before, after):
    for x, y in zip(before[0], after[0]):
        np.testing.assert_array_equal(x, y)
    assert before[1].keys() == after[1].keys()
    for name in before[1]:
        for x, y in zip(before[1][name], after[1][name]):
            np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(before[2], after[2])


BAD_GRADS = {
    'missing key': (lambda g: {'w': g['w']}, "missing gradients for 'b'"),
    'extra key': (lambda g: {**g, 'c': jnp.ones(2)}, "unregistered parameters 'c'"),
    'renamed key': (lambda g: {'w': g['w'], 'bias': g['b']}, "missing gradients for 'b'"),
    'wrong shape': (lambda g: {**g, 'b': jnp.ones(3)}, "'b' has shape"),
    'transposed shape': (lambda g: {**g, 'w': jnp.ones((1, 4))}, "'w' has shape"),
    'wrong dtype': (lambda g: {**g, 'b': jnp.ones(2, jnp.bfloat16)}, "'b' has dtype"),
    'python scalar': (lambda g: {**g, 'b': 1.0}, "'b' must be an array"),
    'None': (lambda g: {**g, 'b': None}, "'b' must be an array"),
    'not a dict': (lambda g: list(g.values()), 'dict of parameter key'),
    'unit dropped': (lambda g: {**g, 'tau': jnp.ones(3)}, "unit mismatch for 'tau'"),
    'wrong unit': (lambda g: {**g, 'tau': jnp.ones(3) * u.mV}, "unit mismatch for 'tau'"),
    'unit on a plain parameter': (lambda g: {**g, 'b': jnp.ones(2) * u.ms}, "unit mismatch for 'b'"),
}


@pytest.mark.parametrize('info', ALL, ids=IDS)
def test_bad_gradients_raise_and_leave_everything_unchanged(info):
    # One optimizer meets every bad input in turn: each must raise and leave it exactly as it was.
    opt, params, good = make_problem(info)
    before = snapshot(opt, params)
    for case, (corrupt, message) in BAD_GRADS.items():
        with pytest.raises((ValueError, TypeError), match=message):
            opt.update(corrupt(good))
        assert_unchanged(before, snapshot(opt, params))
    for bad_lr in (-0.1, float('nan')):
        with pytest.raises((ValueError, RuntimeError), match='lr|learning rate'):
            opt.lr = bad_lr
    assert_unchanged(before, snapshot(opt, params))
    other = bo.SGD(lr=0.1) if not isinstance(opt, bo.SGD) else bo.Adam(lr=0.1)
    other.register_trainable_weights({'w': brainstate.ParamState(jnp.ones((2, 2)))})
    other.update({'w': jnp.ones((2, 2))})
    with pytest.raises(ValueError, match='checkpoint|state_dict'):
        opt.load_state_dict(other.state_dict())          # another optimizer and model
    assert_unchanged(before, snapshot(opt, params))
    opt.update(good)            # still usable afterwards
    assert int(opt.step_count.value) == 2


@pytest.mark.parametrize('case', ['missing key', 'wrong shape', 'wrong dtype'])
def test_bad_gradients_inside_jit_raise_at_trace_time_and_change_nothing(case):
    opt, params, good = make_problem(OPTIM_DB['Adam'])
    corrupt, message = BAD_GRADS[case]
    bad = corrupt(good)

    @brainstate.transform.jit
    def step(grads):
        opt.update(grads)

    before = snapshot(opt, params)
    with pytest.raises((ValueError, TypeError), match=message):
        step(bad)
    assert_unchanged(before, snapshot(opt, params))


@pytest.mark.parametrize('lr', [-0.1, float('nan'), float('inf'), 'fast'])
def test_invalid_learning_rate_is_refused(lr):
    with pytest.raises((ValueError, TypeError), match='lr'):
        bo.Adam(lr=lr)
    opt = bo.Adam(lr=0.1)
    with pytest.raises((ValueError, TypeError), match='lr'):
        opt.lr = lr
    assert float(opt.current_lr) == pytest.approx(0.1)


@pytest.mark.parametrize('info', OPTIMIZERS, ids=names(OPTIMIZERS))
def test_every_optimizer_refuses_an_invalid_learning_rate(info):
    for lr in (-0.1, float('nan'), float('inf'), 'fast'):
        with pytest.raises((ValueError, TypeError), match='lr'):
            info.cls(lr=lr)


@pytest.mark.parametrize('make, message', [
    (lambda: bo.Adam(betas=(1.0, 0.999)), r'betas\[0\]'),
    (lambda: bo.Adam(betas=(0.9, -0.1)), r'betas\[1\]'),
    (lambda: bo.Adam(beta2=float('nan')), r'betas\[1\]'),
    (lambda: bo.Adam(eps=0.0), 'eps'),
    (lambda: bo.AdamW(eps=-1e-8), 'eps'),
    (lambda: bo.Adadelta(rho=1.5), 'rho'),
    (lambda: bo.Adadelta(eps=0.0), 'eps'),
    (lambda: bo.RMSprop(alpha=1.0), 'alpha'),
    (lambda: bo.RMSprop(eps_placement='middle'), 'eps_placement'),
    (lambda: bo.RMSprop(momentum=-0.5), 'momentum'),
    (lambda: bo.SGD(momentum=-0.1), 'momentum'),
    (lambda: bo.SGD(nesterov=True), 'nesterov'),
    (lambda: bo.SGD(weight_decay=-1.0), 'weight_decay'),
    (lambda: bo.SGD(grad_clip_norm=0.0), 'grad_clip_norm'),
    (lambda: bo.SGD(grad_clip_value=-1.0), 'grad_clip_value'),
    (lambda: bo.SGD(param_clip_value=float('nan')), 'param_clip_value'),
    (lambda: bo.SGD(rescale_grad=0.0), 'rescale_grad'),
    (lambda: bo.Adam(unknown_option=1), 'unknown_option'),
])
@pytest.mark.filterwarnings('ignore::braintools_optim.BraintoolsOptimDeprecationWarning')   # beta2= spelling
def test_invalid_hyperparameters_are_refused(make, message):
    with pytest.raises((ValueError, TypeError), match=message):
        make()


def test_hyperparameters_cannot_be_changed_silently():
    opt = bo.Adam(lr=0.1, betas=(0.8, 0.9))
    assert opt.betas == (0.8, 0.9)
    for name, value in [('betas', (0.5, 0.5)), ('beta1', 0.5), ('eps', 1.0), ('grad_clip_norm', 1.0),
                        ('fused', True)]:
        with pytest.raises(AttributeError, match='fixed at construction'):
            setattr(opt, name, value)
    assert opt.betas == (0.8, 0.9)


ENGINE_OPTIONS = ('grad_clip_norm', 'grad_clip_value', 'param_clip_value', 'rescale_grad', 'skip_nonfinite',
                  'accumulate_steps', 'schedule_per_update', 'fused')


@pytest.mark.parametrize('info', OPTIMIZERS, ids=names(OPTIMIZERS))
def test_every_declared_hyperparameter_is_fixed_but_lr_and_weight_decay_are_adjustable(info):
    """Assigning a compiled-in setting raises and keeps it; lr and weight decay live in State."""
    opt = info.make()
    fixed = list(info.cls.hyperparameters) + list(info.cls.aliases) + list(ENGINE_OPTIONS)
    assert fixed
    for name in fixed:
        before = getattr(opt, name)
        with pytest.raises(AttributeError, match='fixed at construction'):
            setattr(opt, name, before)
        assert getattr(opt, name) == before, name
    opt.lr = 0.125
    assert float(opt.current_lr) == 0.125
    opt.weight_decay = 0.25
    assert opt.weight_decay == 0.25


@pytest.mark.parametrize('info', ALL, ids=IDS)
@pytest.mark.parametrize('bad_value', [math.nan, math.inf])
def test_nonfinite_gradient_step_is_skipped_when_asked(info, bad_value):
    opt, params, good = make_problem(info, skip_nonfinite=True)
    before = snapshot(opt, params)
    poisoned = {**good, 'b': jnp.array([1.0, bad_value])}
    opt.update(poisoned)
    assert_unchanged(before, snapshot(opt, params))
    assert int(core(opt).nonfinite_skips.value) == 1
    opt.update(good)
    assert int(opt.step_count.value) == 2
    assert int(core(opt).nonfinite_skips.value) == 1


def test_nonfinite_skip_works_inside_jit_without_host_sync():
    opt, params, good = make_problem(OPTIM_DB['Adam'], skip_nonfinite=True)

    @brainstate.transform.jit
    def step(grads):
        opt.update(grads)
        return opt.step_count.value

    before = snapshot(opt, params)
    assert int(step({**good, 'w': jnp.full((2, 2), jnp.nan)})) == 1
    assert_unchanged(before, snapshot(opt, params))
    assert int(step(good)) == 2


def test_without_skip_a_nan_gradient_propagates_like_every_library():
    opt, params, good = make_problem(OPTIM_DB['SGD'])
    opt.update({**good, 'b': jnp.array([jnp.nan, 0.0])})
    assert np.isnan(np.asarray(params[1].value)[0])


def test_switching_lr_source_after_a_traced_update_raises():
    w = brainstate.ParamState(jnp.ones(2))
    opt = bo.SGD(lr=0.1).register_trainable_weights([w])

    @brainstate.transform.jit
    def step():
        opt.update({0: jnp.ones(2)})

    step()
    with pytest.raises(RuntimeError, match='LRScheduler'):
        opt.lr = bo.StepLR(base_lr=0.1, step_size=1)
    opt.lr = 0.05                      # a new float value is fine: it lives in State
    step()
    np.testing.assert_allclose(w.value, 1.0 - 0.1 - 0.05, rtol=1e-6)


@pytest.mark.parametrize('info', ALL, ids=IDS)
def test_registering_after_a_jitted_step_raises_and_update_before_registration_raises(info):
    with pytest.raises(RuntimeError, match='register_trainable_weights'):
        info.make().update({})
    opt, params, good = make_problem(info)

    @brainstate.transform.jit
    def step(grads):
        opt.update(grads)

    step(good)
    with pytest.raises(RuntimeError, match='(?i)register every (weight|parameter)'):
        opt.register_trainable_weights([brainstate.ParamState(jnp.ones(2))])
    assert len(opt.param_states) == 3


@pytest.mark.parametrize('info', ALL, ids=IDS)
@pytest.mark.parametrize('bad', [brainstate.ShortTermState(jnp.ones(2)), jnp.ones(2), 'weights'],
                         ids=['ShortTermState', 'array', 'str'])
def test_registering_something_that_is_not_a_param_state_raises(info, bad):
    opt = info.make()
    with pytest.raises(TypeError):
        opt.register_trainable_weights({'bad': bad})
    assert opt.param_states == {}
