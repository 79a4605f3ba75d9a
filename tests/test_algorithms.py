"""Behaviour of individual algorithms that the reference comparisons cannot see.

Refused arguments (each algorithm's own checks), Novograd's late start and
scalar/per-axis buffers, a scheduler-cycled momentum reaching every algorithm
that has one, in-rule weight decay per parameter group, Schedule-Free's
``eval_params``, Lookahead's registration, skipping and checkpoints, L-BFGS's
calling conventions, Prodigy's global estimate in checkpoints and Muon's
AdamW fallback.
"""

from __future__ import annotations

import brainstate
import brainunit as u
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo
from optim_db import OPTIMIZERS, names

# ----------------------------------------------------------------------------- refused arguments


def test_fromage_rprop_adan_and_nadam_check_their_arguments():
    with pytest.warns(UserWarning, match='no momentum term'):
        bo.Fromage(lr=0.01, momentum=0.9)            # accepted for braintools' code, loudly ignored
    assert bo.Fromage(lr=0.01, momentum=0.0).min_norm == 1e-6
    with pytest.raises(ValueError, match='etas'):
        bo.Rprop(etas=(1.2, 0.5))
    with pytest.raises(ValueError, match='step_sizes'):
        bo.Rprop(step_sizes=(1.0, 0.1))
    with pytest.raises(ValueError, match='3 entries'):
        bo.Adan(betas=(0.9, 0.9))
    with pytest.raises(ValueError, match=r'betas\[1\]'):
        bo.Nadam(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match='momentum_decay'):
        bo.Nadam(momentum_decay=-1.0)
    opt = bo.Nadam(momentum_decay=0.01)
    assert opt.momentum_decay == 0.01 and opt.betas == (0.9, 0.999)
    with pytest.raises(AttributeError, match='fixed at construction'):
        opt.momentum_decay = 0.02


@pytest.mark.parametrize('kwargs, match', [
    (dict(relative_step=False, warmup_init=True), 'warmup_init'),
    (dict(scale_parameter=False, eps=(1e-30, 1e-2)), r'eps\[1\]'),
    (dict(decay_rate=-0.8), 'decay_rate'),
    (dict(eps=1e-30), 'pair'),
])
def test_adafactor_refuses_arguments_that_cannot_act(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        bo.Adafactor(**kwargs)


def test_lookahead_lbfgs_schedule_free_and_muon_check_their_arguments():
    with pytest.raises(TypeError, match='inner optimizer'):
        bo.Lookahead(bo.SGD(lr=0.1), lr=0.1)
    with pytest.raises(ValueError, match='line search'):
        bo.LBFGS(linesearch='zoom', grad_clip_norm=1.0)
    with pytest.raises(ValueError, match='line search'):
        bo.LBFGS(linesearch=None, c1=1e-3)
    with pytest.raises(ValueError, match='zoom'):
        bo.LBFGS(linesearch='backtracking', c2=0.5)
    with pytest.raises(ValueError, match='> 0'):
        bo.ScheduleFreeSGD(momentum=0.0)
    with pytest.raises(ValueError, match='adjust_lr_fn'):
        bo.Muon(adjust_lr_fn='other')
    for opt, name in ((bo.Lamb(), 'eps'), (bo.Muon(), 'ns_steps'), (bo.Prodigy(), 'd0'), (bo.LBFGS(), 'c1'),
                      (bo.Adafactor(), 'clip_threshold'), (bo.ScheduleFreeSGD(), 'momentum')):
        with pytest.raises(AttributeError, match='fixed at construction'):
            setattr(opt, name, 0.5)


def test_novograd_weight_decay_is_in_its_rule_and_reads_back():
    assert bo.Novograd.weight_decay_mode == 'in_rule'      # lambda * theta inside the momentum
    # the weight decay lives in a (float32) State, so it reads back rounded to float32
    assert bo.Novograd(weight_decay=0.1).weight_decay == pytest.approx(0.1, rel=1e-7)


# ----------------------------------------------------------------------------- scalar and per-axis buffers


def test_scalar_and_per_axis_buffers_round_trip():
    """Shape-() buffers (Novograd, Nadam, Rprop) and SM3's per-axis accumulators work end to end."""
    w = brainstate.ParamState(jnp.ones((3, 4)) * u.mV)
    b = brainstate.ParamState(jnp.ones(()))
    opt = bo.Novograd(lr=0.1, skip_nonfinite=True).register_trainable_weights({'w': w, 'b': b})
    grads = {'w': jnp.full((3, 4), 2.0) * u.mV, 'b': jnp.asarray(1.0)}
    opt.update(grads)
    buffers = opt.buffers()
    assert buffers['exp_avg_sq']['w'].shape == ()
    assert u.get_unit(buffers['exp_avg_sq']['w']) == u.mV ** 2
    assert float(u.get_mantissa(buffers['exp_avg_sq']['w'])) == pytest.approx(48.0)
    saved = opt.state_dict()
    before = np.asarray(u.get_mantissa(w.value))
    opt.update({'w': jnp.full((3, 4), jnp.nan) * u.mV, 'b': jnp.asarray(1.0)})   # skipped
    assert int(opt.nonfinite_skips.value) == 1 and int(opt.step_count.value) == 1
    np.testing.assert_array_equal(np.asarray(u.get_mantissa(w.value)), before)
    opt.update(grads)
    fresh = bo.Novograd(lr=0.1, skip_nonfinite=True).register_trainable_weights(
        {'w': brainstate.ParamState(jnp.ones((3, 4)) * u.mV), 'b': brainstate.ParamState(jnp.ones(()))})
    fresh.load_state_dict(saved)
    assert float(fresh.buffers()['exp_avg_sq']['b']) == pytest.approx(1.0)

    opt = bo.Nadam(lr=0.1).register_trainable_weights({'b': brainstate.ParamState(jnp.ones(()))})
    opt.update({'b': jnp.asarray(1.0)})
    opt.update({'b': jnp.asarray(1.0)})
    mu = [0.9 * (1 - 0.5 * 0.96 ** (t * 4e-3)) for t in (1, 2)]
    assert float(opt.buffers()['mu_product']['b']) == pytest.approx(mu[0] * mu[1], rel=1e-6)

    opt = bo.SM3(lr=0.1).register_trainable_weights({'t': brainstate.ParamState(jnp.ones((2, 3, 4)))})
    assert opt.buffers()['accumulator']['t'].shape == (9,)
    opt.update({'t': jnp.arange(24.0).reshape(2, 3, 4)})
    acc = np.asarray(opt.buffers()['accumulator']['t'])
    g2 = np.arange(24.0).reshape(2, 3, 4) ** 2
    np.testing.assert_allclose(acc, np.concatenate([g2.max(axis=(1, 2)), g2.max(axis=(0, 2)), g2.max(axis=(0, 1))]))


def test_novograd_starts_its_average_at_the_first_nonzero_gradient():
    """A parameter whose first step is not the optimizer's first (late registration) is not blown up."""
    from braintools_optim.rules.novograd import novograd
    rule = novograd(b1=0.9, b2=0.999, eps=0.0)
    p = jnp.zeros(2)
    g = jnp.array([3.0, 4.0])
    late, buffers = rule.update(g, rule.init(p), p, 0.1, 7)      # global step 7, its first
    first, _ = rule.update(g, rule.init(p), p, 0.1, 1)
    np.testing.assert_allclose(late, first)
    np.testing.assert_allclose(late, [-0.06, -0.08], rtol=1e-6)
    assert float(buffers['exp_avg_sq']) == 25.0


# ----------------------------------------------------------------------------- cycled momentum

CYCLING = [info for info in OPTIMIZERS if info.cycles_momentum]


def _cycled_hyperparameter(cls):
    """(name, how) of the hyper-parameter a momentum-cycling scheduler drives (``how``: True or an index)."""
    cycled = [(name, hyper.cycled) for name, hyper in cls.hyperparameters.items() if hyper.cycled is not None]
    assert len(cycled) == 1, cycled
    return cycled[0]


@pytest.mark.parametrize('info', CYCLING, ids=names(CYCLING))
def test_cycled_momentum_equals_that_momentum_fixed(info):
    """A scheduler holding the cycled momentum at 0.85 gives the numbers of the optimizer built with 0.85.

    The cycled value is read from the scheduler's State inside the compiled
    step (a traced value); the fixed one is a Python constant of the rule. The
    parameters (a matrix, a vector, a scalar) and every buffer keep float32.
    """
    cls = info.cls
    name, how = _cycled_hyperparameter(cls)
    default = cls.default_settings()[name]
    fixed_value = 0.85 if how is True else tuple(0.85 if i == how else b for i, b in enumerate(default))
    assert fixed_value != default          # so a cycled value that never arrived would show
    rng = np.random.default_rng(3)
    shapes = {'m': (2, 3), 'v': (3,), 's': ()}
    start = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    grads = [{k: jnp.asarray(rng.normal(size=s), jnp.float32) for k, s in shapes.items()} for _ in range(3)]

    def run(opt):
        params = {k: brainstate.ParamState(jnp.asarray(v)) for k, v in start.items()}
        opt.register_trainable_weights(params)
        for g in grads:
            opt.update(g)
        return params, opt

    schedule = bo.CyclicLR(base_lr=0.1, max_lr=0.1, step_size_up=2, base_momentum=0.85, max_momentum=0.85,
                           cycle_momentum=True)
    cycled, cycled_opt = run(cls(lr=schedule, schedule_per_update=True))
    fixed, fixed_opt = run(cls(lr=0.1, **{name: fixed_value}))
    for k in shapes:
        assert cycled[k].value.dtype == jnp.float32
        np.testing.assert_allclose(cycled[k].value, fixed[k].value, rtol=2e-6, atol=1e-7, err_msg=k)
    fixed_buffers = fixed_opt.buffers()
    for buffer, values in cycled_opt.buffers().items():
        for key, value in values.items():
            assert value.dtype == jnp.float32, (buffer, key)
            np.testing.assert_allclose(value, fixed_buffers[buffer][key], rtol=2e-6, atol=1e-7)
    assert not np.allclose(cycled['m'].value, start['m'])


@pytest.mark.parametrize('info', [info for info in OPTIMIZERS if not info.cycles_momentum],
                         ids=names([info for info in OPTIMIZERS if not info.cycles_momentum]))
def test_cycling_the_momentum_of_an_optimizer_without_one_is_refused_at_construction(info):
    schedule = bo.CyclicLR(base_lr=0.1, max_lr=0.2, step_size_up=2, cycle_momentum=True)
    with pytest.raises(ValueError, match='cycle'):
        info.cls(lr=schedule)
    info.cls(lr=bo.CyclicLR(base_lr=0.1, max_lr=0.2, step_size_up=2, cycle_momentum=False))


def test_novograd_groups_and_cycled_momentum():
    """Novograd's in-rule weight decay follows each parameter group; a cycled beta1 reaches it."""
    from braintools_optim.rules.novograd import novograd
    a = brainstate.ParamState(jnp.array([1.0, 2.0]))
    b = brainstate.ParamState(jnp.array([1.0, 2.0]))
    sched = bo.CyclicLR(base_lr=[0.1, 0.1], max_lr=[0.1, 0.1], step_size_up=2, base_momentum=0.5,
                        max_momentum=0.5, cycle_momentum=True)
    opt = bo.Novograd(lr=sched, weight_decay=0.0).register_trainable_weights({'a': a})
    opt.add_param_group({'b': b}, weight_decay=0.5)
    g = jnp.array([3.0, 4.0])
    for _ in range(2):
        opt.update({'a': g, 'b': g})
    expected = {}
    for name, wd in (('a', 0.0), ('b', 0.5)):
        rule, p = novograd(b1=0.5, b2=0.999, eps=1e-8, weight_decay=wd), jnp.array([1.0, 2.0])
        buffers = rule.init(p)
        for t in (1, 2):
            delta, buffers = rule.update(g, buffers, p, 0.1, t)
            p = p + delta
        expected[name] = p
    np.testing.assert_allclose(a.value, expected['a'], rtol=1e-6)
    np.testing.assert_allclose(b.value, expected['b'], rtol=1e-6)
    assert not np.allclose(expected['a'], expected['b'])


def _param(value):
    return brainstate.ParamState(jnp.asarray(value, jnp.float32))


def test_in_rule_weight_decay_follows_parameter_groups():
    a, b = _param([1.0, 1.0]), _param([1.0, 1.0])
    opt = bo.Lamb(lr=0.1, weight_decay=0.0).register_trainable_weights({'a': a})
    opt.add_param_group({'b': b}, weight_decay=1.0)
    opt.update({'a': jnp.zeros(2), 'b': jnp.zeros(2)})   # zero gradient: only decay moves b
    np.testing.assert_allclose(np.asarray(a.value), 1.0)
    np.testing.assert_allclose(np.asarray(b.value), 0.9, rtol=1e-6)  # -lr * ||b|| * b / ||b||


# ----------------------------------------------------------------------------- Schedule-Free


def test_schedule_free_eval_params_swaps_x_in_and_back():
    w = _param([1.0, -2.0])
    opt = bo.ScheduleFreeSGD(lr=0.2, momentum=0.8).register_trainable_weights({'w': w})
    for _ in range(3):
        opt.update({'w': w.value})
    y = np.asarray(w.value)
    z = np.asarray(opt.buffers()['z']['w'])
    x = (y - 0.2 * z) / 0.8
    np.testing.assert_allclose(np.asarray(opt.averaged_params()['w']), x, rtol=1e-6)
    with opt.eval_params():
        np.testing.assert_allclose(np.asarray(w.value), x, rtol=1e-6)
        with pytest.raises(RuntimeError, match='eval_params'):
            opt.update({'w': w.value})
    assert np.array_equal(np.asarray(w.value), y)          # restored exactly


# ----------------------------------------------------------------------------- Lookahead


def test_lookahead_registration_goes_through_the_wrapper():
    inner = bo.SGD(lr=0.1)
    inner.register_trainable_weights({'a': _param([1.0])})
    with pytest.raises(ValueError, match='register the parameters through'):
        bo.Lookahead(inner)
    inner = bo.SGD(lr=0.1)
    opt = bo.Lookahead(inner, sync_period=2).register_trainable_weights({'a': _param([1.0])})
    inner.register_trainable_weights({'b': _param([2.0])})
    with pytest.raises(RuntimeError, match='registered on the inner optimizer directly'):
        opt.update({'a': jnp.ones(1), 'b': jnp.ones(1)})


def test_lookahead_checkpoint_and_skipped_steps():
    w = _param([1.0, 1.0])
    opt = bo.Lookahead(bo.SGD(lr=0.1, skip_nonfinite=True), sync_period=2).register_trainable_weights({'w': w})
    opt.update({'w': jnp.ones(2)})
    opt.update({'w': jnp.array([jnp.nan, 1.0])})        # skipped: does not count towards k
    assert int(opt.steps_since_sync.value) == 1
    np.testing.assert_allclose(np.asarray(w.value), 0.9)
    state = opt.state_dict()
    opt.update({'w': jnp.ones(2)})                       # sync: 1 + 0.5 (0.8 - 1)
    np.testing.assert_allclose(np.asarray(w.value), 0.9, rtol=1e-6)
    opt.load_state_dict(state)
    assert int(opt.steps_since_sync.value) == 1
    np.testing.assert_allclose(np.asarray(opt.slow_params.value[0]), 1.0)


# ----------------------------------------------------------------------------- L-BFGS


def test_lbfgs_calling_conventions():
    w = _param([2.0, -1.0])
    loss_fn = lambda: jnp.sum((w.value - 0.5) ** 2)
    opt = bo.LBFGS(linesearch='zoom').register_trainable_weights({'w': w})
    grads = {'w': 2.0 * (w.value - 0.5)}
    with pytest.raises(ValueError, match='value_fn'):
        opt.update(grads)
    opt.update(grads, value_fn=loss_fn)                     # value computed from value_fn
    # first step: the unit step along -g / ||g|| meets the strong Wolfe conditions
    np.testing.assert_allclose(np.asarray(w.value), [2.0 - 0.5 ** 0.5, -1.0 + 0.5 ** 0.5], rtol=1e-6)
    assert float(opt.last_stepsize.value) == 1.0 and int(opt.linesearch_evals.value) == 1
    for _ in range(3):
        value, grads = loss_fn(), {'w': 2.0 * (w.value - 0.5)}
        opt.update(grads, value=value, value_fn=loss_fn)
    np.testing.assert_allclose(np.asarray(w.value), 0.5, atol=1e-6)
    # without a line search there is nothing to evaluate: value/value_fn are accepted and unused
    plain = bo.LBFGS(linesearch=None, lr=0.25).register_trainable_weights({'w': _param([1.0])})
    plain.update({'w': jnp.ones(1)}, value_fn=loss_fn)
    np.testing.assert_allclose(np.asarray(plain.param_states['w'].value), 1.0 - 0.25, rtol=1e-6)
    # braintools' and optax's value_fn(params) works as well as a closure
    v = _param([2.0, -1.0])
    by_params = bo.LBFGS(linesearch='zoom').register_trainable_weights({'v': v})
    by_params.update({'v': 2.0 * (v.value - 0.5)}, value_fn=lambda params: jnp.sum((params['v'] - 0.5) ** 2))
    np.testing.assert_allclose(np.asarray(v.value), [2.0 - 0.5 ** 0.5, -1.0 + 0.5 ** 0.5], rtol=1e-6)


def test_lbfgs_refuses_parameters_added_after_it_started():
    w = _param([1.0])
    opt = bo.LBFGS(linesearch=None).register_trainable_weights({'w': w})
    opt.update({'w': jnp.ones(1)})
    with pytest.raises(RuntimeError, match='before the first update'):
        opt.register_trainable_weights({'b': _param([2.0])})


# ----------------------------------------------------------------------------- Prodigy, Muon


def test_prodigy_keeps_its_global_estimate_in_checkpoints():
    w = _param([3.0, -4.0])
    opt = bo.Prodigy(d0=1e-3).register_trainable_weights({'w': w})
    opt.update({'w': jnp.zeros(2)})                      # zero gradients: d stays finite
    assert float(opt.d.value) == pytest.approx(1e-3)
    for _ in range(5):
        opt.update({'w': w.value})
    state = opt.state_dict()
    d = float(opt.d.value)
    assert d > 1e-3 and set(state['extra']) == {'d', 'd_numerator'}
    opt.update({'w': w.value})
    opt.load_state_dict(state)
    assert float(opt.d.value) == d


def test_muon_fallback_is_adamw_and_matrices_are_orthogonalised():
    vector = np.array([0.5, -1.0, 2.0])
    a, b = _param(vector), _param(vector)
    muon = bo.Muon(lr=0.1, weight_decay=0.1, adam_betas=(0.8, 0.9), adam_eps=1e-6).register_trainable_weights([a])
    adamw = bo.AdamW(lr=0.1, weight_decay=0.1, betas=(0.8, 0.9), eps=1e-6).register_trainable_weights([b])
    for k in range(4):
        g = jnp.asarray(vector * (k + 1), jnp.float32)
        muon.update({0: g})
        adamw.update({0: g})
    np.testing.assert_allclose(np.asarray(a.value), np.asarray(b.value), rtol=1e-6)
    w = _param(np.zeros((3, 5)))
    opt = bo.Muon(lr=1.0, weight_decay=0.0, momentum=0.0, ns_steps=10,
                  ns_coefficients=(1.5, -0.5, 0.0)).register_trainable_weights([w])   # cubic NS: converges
    opt.update({0: jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)), jnp.float32)})
    update = -np.asarray(w.value) / np.sqrt(5 / 3)          # undo lr * sqrt(fan_out / fan_in)
    np.testing.assert_allclose(update @ update.T, np.eye(3), atol=1e-3)
