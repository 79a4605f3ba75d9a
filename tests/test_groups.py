"""Parameter groups: selection, per-group algorithms and hyper-parameters, multipliers, masks, freezing.

Where a grouped optimizer has a definition in terms of separate optimizers (a
group IS an optimizer of its own on that subset, sharing only the step
counter, clipping and skipping), the test runs both and asks for the same
numbers, bit for bit.
"""

import re

import brainstate
import brainunit as u
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo
from braintools_optim import select


class Synapse(brainstate.ParamState):
    """A ParamState subclass, to select by State type."""


def make_states():
    rng = np.random.default_rng(0)
    return {
        'W': brainstate.ParamState(jnp.asarray(rng.normal(size=(4, 3)), jnp.float32)),
        'bias': brainstate.ParamState(jnp.asarray(rng.normal(size=(3,)), jnp.float32)),
        'tau_m': brainstate.ParamState(jnp.asarray([10.0, 20.0, 30.0], jnp.float32) * u.ms),
        'g_syn': Synapse(jnp.asarray([1.0, 2.0, 3.0], jnp.float32) * u.nS),
    }


def grads_for(states, step):
    rng = np.random.default_rng(100 + step)
    out = {}
    for key, state in states.items():
        mantissa, unit = (state.value.mantissa, state.value.unit) if isinstance(state.value, u.Quantity) \
            else (state.value, None)
        g = jnp.asarray(rng.normal(size=mantissa.shape), mantissa.dtype)
        out[key] = g if unit is None else g * unit
    return out


def values(states):
    return {k: np.asarray(u.get_mantissa(s.value)) for k, s in states.items()}


def run(opt, states, steps=5):
    for step in range(steps):
        opt.update(grads_for(states, step))
    return values(states)


def assert_same(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=repr(key))


def split_run(makers, steps=5):
    """Separate optimizers, one per subset: ``{subset keys: make}``; the reference for groups."""
    states = make_states()
    opts = [(keys, make().register_trainable_weights({k: states[k] for k in keys})) for keys, make in makers]
    for step in range(steps):
        grads = grads_for(states, step)
        for keys, opt in opts:
            opt.update({k: grads[k] for k in keys})
    return values(states)


# ----------------------------------------------------------------------------- definition by separation
def test_a_group_with_its_own_hyperparameters_equals_a_separate_optimizer():
    states = make_states()
    opt = bo.Adam(lr=0.1, weight_decay=1e-3, param_groups=[
        {'params': lambda p: p.path in ('bias', 'tau_m'),
         'lr': 0.01, 'betas': (0.8, 0.99), 'eps': 1e-6, 'weight_decay': 0.0}])
    opt.register_trainable_weights(states)
    grouped = run(opt, states)
    separate = split_run([
        (['W', 'g_syn'], lambda: bo.Adam(lr=0.1, weight_decay=1e-3)),
        (['bias', 'tau_m'], lambda: bo.Adam(lr=0.01, betas=(0.8, 0.99), eps=1e-6)),
    ])
    assert_same(grouped, separate)


def test_muon_on_matrices_and_adamw_on_the_rest_equals_the_two_side_by_side():
    states = make_states()
    opt = bo.AdamW(lr=0.01, weight_decay=0.05,
                   param_groups=[{'params': select.ndim(2), 'optimizer': bo.Muon(lr=0.02, weight_decay=0.1)}])
    opt.register_trainable_weights(states)
    assert [g['optimizer'] for g in opt.param_groups] == ['AdamW', 'Muon']
    grouped = run(opt, states)
    separate = split_run([
        (['W'], lambda: bo.Muon(lr=0.02, weight_decay=0.1)),
        (['bias', 'tau_m', 'g_syn'], lambda: bo.AdamW(lr=0.01, weight_decay=0.05)),
    ])
    assert_same(grouped, separate)
    assert int(opt.step_count.value) == 5                      # one counter for both algorithms


def test_sgd_without_decay_on_time_constants_selected_by_unit():
    states = make_states()
    opt = bo.AdamW(lr=0.01, weight_decay=0.05,
                   param_groups=[{'params': u.ms, 'optimizer': bo.SGD, 'lr': 0.5}])
    opt.register_trainable_weights(states)
    assert opt.param_groups[1]['params'] == {'tau_m': states['tau_m']}
    assert opt.param_groups[1]['weight_decay'] == 0.0          # SGD's own default, not AdamW's
    grouped = run(opt, states)
    separate = split_run([
        (['tau_m'], lambda: bo.SGD(lr=0.5)),
        (['W', 'bias', 'g_syn'], lambda: bo.AdamW(lr=0.01, weight_decay=0.05)),
    ])
    assert_same(grouped, separate)
    assert states['tau_m'].value.unit == u.ms


def test_lr_mult_and_wd_mult_equal_the_explicit_group():
    states = make_states()
    opt = bo.SGD(lr=0.1, momentum=0.9, weight_decay=0.01)
    opt.register_trainable_weights(states)
    opt.set_lr_mult({'bias': 0.5})
    opt.set_wd_mult({'W': 0.25})
    multiplied = run(opt, states)
    separate = split_run([
        (['bias'], lambda: bo.SGD(lr=0.05, momentum=0.9, weight_decay=0.01)),
        (['W'], lambda: bo.SGD(lr=0.1, momentum=0.9, weight_decay=0.0025)),
        (['tau_m', 'g_syn'], lambda: bo.SGD(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ])
    assert_same(multiplied, separate)


def test_group_lr_mult_equals_a_group_with_the_scaled_lr():
    a, b = make_states(), make_states()
    opt_a = bo.Adam(lr=0.1, param_groups=[{'params': 'W', 'lr_mult': 0.25}]).register_trainable_weights(a)
    opt_b = bo.Adam(lr=0.1, param_groups=[{'params': 'W', 'lr': 0.025}]).register_trainable_weights(b)
    assert_same(run(opt_a, a), run(opt_b, b))


def test_default_weight_decay_mask_excludes_biases_and_vectors_and_reports_what_decays():
    states = make_states()
    opt = bo.AdamW(lr=0.01, weight_decay=0.1, weight_decay_mask=True).register_trainable_weights(states)
    assert opt.decayed_params == ["'W'"]
    assert "'bias': float32[3] (no decay)" in opt.describe_groups()
    masked = run(opt, states)
    separate = split_run([
        (['W'], lambda: bo.AdamW(lr=0.01, weight_decay=0.1)),
        (['bias', 'tau_m', 'g_syn'], lambda: bo.AdamW(lr=0.01, weight_decay=0.0)),
    ])
    assert_same(masked, separate)


# ----------------------------------------------------------------------------- selection
@pytest.mark.parametrize('selector, expected', [
    ('tau_*', ['tau_m']),
    ('re:^g_', ['g_syn']),
    (re.compile(r'(W|bias)$'), ['W', 'bias']),
    (Synapse, ['g_syn']),
    (u.second, ['tau_m']),                                    # by dimension: ms is a time
    (lambda p: p.ndim == 2, ['W']),
    (select.ndim(1) & ~select.unit(u.nS), ['bias', 'tau_m']),
])
def test_selectors(selector, expected):
    states = make_states()
    opt = bo.SGD(lr=0.1, param_groups=[{'params': selector, 'lr': 0.2}]).register_trainable_weights(states)
    assert sorted(opt.param_groups[1]['params'], key=str) == sorted(expected, key=str)


def test_the_first_matching_group_wins():
    states = make_states()
    opt = bo.SGD(lr=0.1, param_groups=[{'params': 'tau_*', 'lr': 0.2, 'name': 'taus'},
                                       {'params': select.ndim(1), 'lr': 0.3, 'name': 'vectors'}])
    opt.register_trainable_weights(states)
    groups = {g['name']: sorted(g['params'], key=str) for g in opt.param_groups}
    assert groups == {'default': ['W'], 'taus': ['tau_m'], 'vectors': ['bias', 'g_syn']}


def test_a_selector_that_matches_nothing_is_an_error_at_registration_and_registers_nothing():
    states = make_states()
    opt = bo.Adam(lr=0.1, param_groups=[{'params': '*.tau_*', 'lr': 0.01}])
    with pytest.raises(bo.GroupSelectionError, match=r"selects none of the registered parameters"):
        opt.register_trainable_weights(states)
    assert len(opt.param_states) == 0
    opt = bo.Adam(lr=0.1, param_groups=[{'params': '*.tau_*', 'lr': 0.01, 'allow_empty': True}])
    opt.register_trainable_weights(states)
    assert len(opt.param_states) == 4


def test_unmatched_error_and_freeze():
    states = make_states()
    opt = bo.Adam(lr=0.1, unmatched='error', param_groups=[{'params': select.ndim(2)}])
    with pytest.raises(bo.GroupSelectionError, match=r"no parameter group selects 'bias'"):
        opt.register_trainable_weights(states)
    opt = bo.Adam(lr=0.1, unmatched='freeze', param_groups=[{'params': select.ndim(2)}])
    opt.register_trainable_weights(states)
    assert list(opt.param_states) == ['W']
    before = values(states)
    opt.update(grads_for(states, 0))                 # gradients of frozen parameters are accepted, unused
    after = values(states)
    assert not np.array_equal(before['W'], after['W'])
    for key in ('bias', 'tau_m', 'g_syn'):
        np.testing.assert_array_equal(before[key], after[key])
    assert "(frozen: selected by no group" in opt.describe_groups()


def test_a_frozen_group_keeps_no_buffers_is_never_updated_and_is_still_listed():
    states = make_states()
    opt = bo.Adam(lr=0.1, param_groups=[{'params': 'tau_m', 'frozen': True, 'name': 'fixed taus'}])
    opt.register_trainable_weights(states)
    assert 'tau_m' not in opt.param_states
    assert all('tau_m' not in per_param for per_param in opt.buffers().values())
    before = values(states)['tau_m']
    opt.update({k: v for k, v in grads_for(states, 0).items() if k != 'tau_m'})
    opt.update(grads_for(states, 1))
    np.testing.assert_array_equal(values(states)['tau_m'], before)
    assert "group 1 'fixed taus'" in opt.describe_groups() and 'frozen' in opt.describe_groups()
    assert opt.param_groups[1]['frozen'] and opt.param_groups[1]['params'] == {'tau_m': states['tau_m']}


def test_braintools_style_add_param_group_registers_and_moves_untrained_states():
    states = make_states()
    opt = bo.Adam(lr=0.1).register_trainable_weights(states)
    opt.add_param_group({'tau_m': states['tau_m']}, lr=0.01)
    assert opt.param_groups[1]['params'] == {'tau_m': states['tau_m']}
    assert len(opt.param_groups[0]['params']) == 3
    opt.update(grads_for(states, 0))
    with pytest.raises(bo.GroupSelectionError, match='after training started'):
        opt.add_param_group({'bias': states['bias']}, lr=0.01)
    assert opt.num_groups == 2


# ----------------------------------------------------------------------------- one optimizer
def test_one_compiled_step_one_counter_one_state_dict():
    states = make_states()
    opt = bo.AdamW(lr=0.01, param_groups=[
        {'params': select.ndim(2), 'optimizer': bo.Muon(lr=0.02)},
        {'params': u.ms, 'optimizer': bo.SGD(lr=0.5, momentum=0.9), 'weight_decay': 0.0},
    ]).register_trainable_weights(states)

    @brainstate.transform.jit
    def train(grads):
        opt.update(grads)

    for step in range(3):
        train(grads_for(states, step))
    assert opt._num_traces == 1
    assert int(opt.step_count.value) == 3
    state = opt.state_dict()
    assert [g['optimizer'] for g in state['param_groups']] == ['AdamW', 'Muon', 'SGD']
    assert set(state['opt_state']) == {'exp_avg', 'exp_avg_sq', 'momentum_buffer'}


def test_global_norm_clipping_spans_every_group():
    states = make_states()
    opt = bo.SGD(lr=1.0, grad_clip_norm=1.0, param_groups=[{'params': 'W', 'optimizer': bo.Adam}])
    opt.register_trainable_weights({k: states[k] for k in ('W', 'bias')})
    grads = {'W': jnp.full((4, 3), 3.0), 'bias': jnp.full((3,), 4.0)}
    norm = float(np.sqrt(12 * 9 + 3 * 16))
    before = values(states)['bias']
    opt.update(grads)
    np.testing.assert_allclose(values(states)['bias'], before - 4.0 / norm, rtol=1e-6)


def test_a_nonfinite_gradient_in_one_group_skips_every_group():
    states = make_states()
    opt = bo.Adam(lr=0.1, skip_nonfinite=True, param_groups=[{'params': 'W', 'optimizer': bo.SGD}])
    opt.register_trainable_weights(states)
    opt.update(grads_for(states, 0))
    before, saved = values(states), opt.state_dict()
    poisoned = dict(grads_for(states, 1), bias=jnp.array([1.0, np.nan, 0.0], jnp.float32))
    opt.update(poisoned)
    assert_same(before, values(states))
    assert int(opt.nonfinite_skips.value) == 1 and int(opt.step_count.value) == 1
    for name, per_param in opt.state_dict()['opt_state'].items():
        for key, value in per_param.items():
            np.testing.assert_array_equal(value, saved['opt_state'][name][key])


# ----------------------------------------------------------------------------- State-held settings
def test_group_lr_and_weight_decay_change_between_steps_without_retracing():
    states = make_states()
    opt = bo.AdamW(lr=0.01, weight_decay=0.1, param_groups=[{'params': 'bias', 'lr': 0.02}])
    opt.register_trainable_weights(states)

    @brainstate.transform.jit
    def train(grads):
        opt.update(grads)

    train(grads_for(states, 0))
    opt.set_lr(0.5, group=1)
    opt.set_weight_decay(0.2, group=0)
    np.testing.assert_allclose(opt.get_last_lr(), [0.01, 0.5])
    assert opt.param_groups[0]['weight_decay'] == pytest.approx(0.2)
    train(grads_for(states, 1))
    assert opt._num_traces == 1

    # the same two steps with those values from the start of step 2, on separate optimizers
    ref_states = make_states()
    w = bo.AdamW(lr=0.01, weight_decay=0.1).register_trainable_weights({k: ref_states[k] for k in ('W', 'tau_m', 'g_syn')})
    b = bo.AdamW(lr=0.02, weight_decay=0.1).register_trainable_weights({'bias': ref_states['bias']})
    g0, g1 = grads_for(ref_states, 0), grads_for(ref_states, 1)
    w.update({k: g0[k] for k in ('W', 'tau_m', 'g_syn')})
    b.update({'bias': g0['bias']})
    w.set_weight_decay(0.2)
    b.set_lr(0.5)
    w.update({k: g1[k] for k in ('W', 'tau_m', 'g_syn')})
    b.update({'bias': g1['bias']})
    assert_same(values(states), values(ref_states))


def test_a_group_compiled_without_decay_refuses_decay_inside_a_users_jit_but_takes_it_eagerly():
    states = make_states()
    opt = bo.AdamW(lr=0.01, weight_decay=0.1, param_groups=[{'params': 'bias', 'weight_decay': 0.0}])
    opt.register_trainable_weights(states)
    opt.set_weight_decay(0.3, group=1)                           # eager: the step is rebuilt with decay
    assert "'bias': float32[3] (decay)" in opt.describe_groups()
    opt.update(grads_for(states, 0))
    jitted = bo.AdamW(lr=0.01, weight_decay=0.1, param_groups=[{'params': 'bias', 'weight_decay': 0.0}])
    jitted.register_trainable_weights(make_states())
    step = brainstate.transform.jit(jitted.update)
    step(grads_for(states, 0))
    with pytest.raises(RuntimeError, match='compiled without weight decay'):
        jitted.set_weight_decay(0.3, group=1)


def test_fixed_hyperparameters_refuse_assignment_and_group_overrides_are_checked():
    opt = bo.Adam(lr=0.1)
    with pytest.raises(AttributeError, match='fixed at construction'):
        opt.betas = (0.5, 0.5)
    with pytest.raises(ValueError, match=r'betas\[0\]'):
        bo.Adam(param_groups=[{'params': 'W', 'betas': (1.5, 0.9)}])
    with pytest.raises(TypeError, match='unexpected argument'):
        bo.Adam(param_groups=[{'params': 'W', 'momentum': 0.9}])        # Adam has no momentum
    with pytest.raises(ValueError, match='apply to the whole optimizer'):
        bo.Adam(param_groups=[{'params': 'W', 'optimizer': bo.SGD(grad_clip_norm=1.0)}])
    with pytest.raises(ValueError, match='needs a step of its own'):
        bo.Adam(param_groups=[{'params': 'W', 'optimizer': bo.Prodigy}])
    with pytest.raises(ValueError, match='couples all its parameters'):
        bo.Prodigy(param_groups=[{'params': 'W', 'optimizer': bo.Adam}])
    with pytest.raises(ValueError, match='cannot differ between parameter groups'):
        bo.LBFGS(linesearch=None, param_groups=[{'params': 'W', 'memory_size': 3}])


def test_a_group_may_have_its_own_scheduler():
    states = make_states()
    sched = bo.StepLR(base_lr=0.1, step_size=1, gamma=0.5)
    opt = bo.SGD(lr=0.01, schedule_per_update=True, param_groups=[{'params': 'W', 'lr': sched}])
    opt.register_trainable_weights(states)
    np.testing.assert_allclose(opt.get_last_lr(), [0.01, 0.1])
    before = values(states)
    g = grads_for(states, 0)
    opt.update(g)
    np.testing.assert_allclose(values(states)['W'], before['W'] - 0.1 * np.asarray(g['W']), rtol=1e-6)
    np.testing.assert_allclose(opt.get_last_lr(), [0.01, 0.05])     # the group's scheduler was stepped


def test_cycled_momentum_reaches_every_group_with_a_momentum():
    states = make_states()
    sched = bo.OneCycleLR(max_lr=0.1, total_steps=10, cycle_momentum=True)
    opt = bo.Adam(lr=sched, schedule_per_update=True, param_groups=[{'params': 'W', 'optimizer': bo.SGD}])
    opt.register_trainable_weights(states)
    opt.update(grads_for(states, 0))
    assert 'momentum_buffer' in opt.buffers()                   # SGD(momentum=0) keeps one when cycled
    with pytest.raises(ValueError, match='no momentum to cycle'):
        bo.Adam(lr=bo.OneCycleLR(max_lr=0.1, total_steps=10, cycle_momentum=True),
                param_groups=[{'params': 'W', 'optimizer': bo.Adadelta}])


# ----------------------------------------------------------------------------- checkpoints
def test_grouped_checkpoint_resumes_exactly_and_refuses_other_settings(tmp_path):
    def build(states, lr_W=0.02):
        return bo.AdamW(lr=0.01, weight_decay=0.05, param_groups=[
            {'params': select.ndim(2), 'optimizer': bo.Muon(lr=lr_W)},
            {'params': u.ms, 'optimizer': bo.SGD(lr=0.5, momentum=0.9), 'weight_decay': 0.0},
        ]).register_trainable_weights(states)

    straight_states = make_states()
    straight = build(straight_states)
    for step in range(6):
        straight.update(grads_for(straight_states, step))

    first_states = make_states()
    first = build(first_states)
    for step in range(3):
        first.update(grads_for(first_states, step))
    first.save(tmp_path / 'opt.npz')
    resumed_states = {k: brainstate.ParamState(s.value) for k, s in first_states.items()}
    resumed = build(resumed_states)
    resumed.load(tmp_path / 'opt.npz')
    for step in range(3, 6):
        resumed.update(grads_for(resumed_states, step))
    assert_same(values(straight_states), values(resumed_states))

    other = bo.AdamW(lr=0.01, weight_decay=0.05, param_groups=[
        {'params': select.ndim(2), 'optimizer': bo.Muon(lr=0.02, momentum=0.9)},
        {'params': u.ms, 'optimizer': bo.SGD(lr=0.5, momentum=0.9), 'weight_decay': 0.0},
    ]).register_trainable_weights(make_states())
    with pytest.raises(bo.CheckpointMismatchError, match='momentum: saved 0.95, now 0.9'):
        other.load(tmp_path / 'opt.npz')


def test_describe_groups_lists_every_parameter_once():
    states = make_states()
    opt = bo.AdamW(lr=0.01, param_groups=[{'params': u.ms, 'optimizer': bo.SGD, 'name': 'time constants'}])
    opt.register_trainable_weights(states)
    text = opt.describe_groups()
    assert "group 1 'time constants' [unit ~ " in text and 'SGD' in text
    for key in states:
        assert text.count(repr(key) + ':') == 1
    assert text in repr(opt).replace('\n  ', '\n') or 'AdamW(step=0' in repr(opt)
