"""No silent wrong result, no lost state: the classes of misuse a careful user can hit.

Each test is a class of bug, not one example: parameters changed behind the
optimizer's back, ambiguous keys, snapshots, copies, pickles, checkpoints
with out-of-range values, counters at their limits, traced hyper-parameters.
"""

import copy
import pickle

import brainstate
import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo


def snapshot(opt, states):
    """Everything an optimizer and its parameters hold, as NumPy (bitwise comparisons)."""
    state = opt.state_dict()
    params = {k: np.array(u.get_mantissa(s.value)) for k, s in states.items()}
    buffers = {(name, key): np.array(value) for name, per in state['opt_state'].items() for key, value in per.items()}
    counters = {name: np.array(value) for name, value in state['counters'].items()}
    return params, buffers, counters, np.array(state['step_count']), np.array(state['learning_rates']['lr'])


def assert_same(a, b):
    for x, y in zip(a, b):
        if isinstance(x, dict):
            assert x.keys() == y.keys()
            for key in x:
                np.testing.assert_array_equal(x[key], y[key], err_msg=str(key))
        else:
            np.testing.assert_array_equal(x, y)


def make(opt_factory=lambda: bo.Adam(lr=0.1, weight_decay=1e-3)):
    states = {'w': brainstate.ParamState(jnp.ones((2, 3))), 'b': brainstate.ParamState(jnp.zeros(3)),
              'tau': brainstate.ParamState(jnp.full(3, 10.0) * u.ms)}
    opt = opt_factory().register_trainable_weights(states)
    return opt, states


def grads(states, scale=1.0):
    return {k: jax.tree.map(lambda x: x * 0 + scale, s.value) for k, s in states.items()}


# ----------------------------------------------------------------------------- parameters that change
def test_complex_parameters_are_refused_at_registration_and_nothing_is_registered():
    opt = bo.Adam(lr=0.1)
    good = brainstate.ParamState(jnp.ones(2))
    bad = brainstate.ParamState(jnp.ones(2, jnp.complex64))
    with pytest.raises(TypeError, match="complex parameters are not supported"):
        opt.register_trainable_weights({'good': good, 'z': bad})
    assert len(opt.param_states) == 0


@pytest.mark.parametrize('change', ['dtype', 'shape', 'unit'])
def test_a_parameter_changed_after_registration_is_named_and_nothing_changes(change):
    opt, states = make()
    opt.update(grads(states))
    if change == 'dtype':
        states['b'].value = states['b'].value.astype(jnp.float16)
    elif change == 'shape':
        states['b'].value = jnp.zeros(4)
    else:
        states['tau'].value = jnp.full(3, 10.0)             # the unit dropped
    key = 'tau' if change == 'unit' else 'b'
    before = snapshot(opt, {k: s for k, s in states.items() if k != key})
    with pytest.raises(bo.ParameterChangedError, match=rf"parameter '{key}' was registered as"):
        opt.update(grads(states))
    step = brainstate.transform.jit(opt.update)
    with pytest.raises(bo.ParameterChangedError, match=rf"'{key}'"):
        step(grads(states))
    assert_same(before, snapshot(opt, {k: s for k, s in states.items() if k != key}))


def test_reinitialize_accepts_a_deliberately_changed_parameter():
    opt, states = make()
    opt.update(grads(states))
    states['b'].value = jnp.zeros(5)
    opt.reinitialize('b')
    opt.update(grads(states))
    assert opt.buffers()['exp_avg']['b'].shape == (5,)
    np.testing.assert_allclose(states['b'].value, -0.1, rtol=1e-5)     # its own first Adam step
    assert opt.state_dict()['step_offsets']["'b'"] == 1


# ----------------------------------------------------------------------------- keys
def test_keys_that_print_alike_stay_apart_in_checkpoints():
    a, b = brainstate.ParamState(jnp.ones(2)), brainstate.ParamState(jnp.ones(2))
    opt = bo.Adam(lr=0.1).register_trainable_weights({'a/b': a, ('a', 'b'): b})
    opt.update({'a/b': jnp.array([1.0, 1.0]), ('a', 'b'): jnp.array([-3.0, 2.0])})
    state = opt.state_dict()
    assert set(state['opt_state']['exp_avg']) == {"'a/b'", "('a', 'b')"}
    fresh = bo.Adam(lr=0.1).register_trainable_weights({'a/b': brainstate.ParamState(jnp.ones(2)),
                                                         ('a', 'b'): brainstate.ParamState(jnp.ones(2))})
    fresh.load_state_dict(state)
    np.testing.assert_array_equal(fresh.buffers()['exp_avg']['a/b'], opt.buffers()['exp_avg']['a/b'])
    np.testing.assert_array_equal(fresh.buffers()['exp_avg'][('a', 'b')], opt.buffers()['exp_avg'][('a', 'b')])
    assert not np.array_equal(fresh.buffers()['exp_avg']['a/b'], fresh.buffers()['exp_avg'][('a', 'b')])


def test_mixed_key_types_train_under_jit():
    layer = brainstate.nn.Linear(2, 2)
    extra = brainstate.ParamState(jnp.ones(2))
    opt = bo.SGD(lr=0.1).register_trainable_weights(layer.states(brainstate.ParamState))
    opt.register_trainable_weights({'extra': extra, 0: brainstate.ParamState(jnp.ones(1))})

    @brainstate.transform.jit
    def step():
        loss = lambda: jnp.sum(layer(jnp.ones(2))) + jnp.sum(extra.value ** 2)
        opt.update(brainstate.transform.grad(loss, opt.param_states)() | {} if False else
                   brainstate.transform.grad(loss, opt.param_states, check_states=False)())

    step()
    assert list(opt.param_states)[1:] == ['extra', 0]


def test_a_pytree_leaf_name_that_collides_with_another_key_is_a_clear_error():
    tree = brainstate.ParamState({'bias': jnp.zeros(2)})
    plain = brainstate.ParamState(jnp.zeros(2))
    opt = bo.Adam(lr=0.1)
    with pytest.raises(ValueError, match=r"would share the name \('l', 'bias'\)"):
        opt.register_trainable_weights({'l': tree, ('l', 'bias'): plain})


# ----------------------------------------------------------------------------- snapshots, copies, pickles
def test_a_treefy_states_snapshot_survives_eager_updates_and_rolls_back_bitwise():
    opt, states = make()
    opt.update(grads(states))
    snap = brainstate.graph.treefy_states(opt)
    before = snapshot(opt, states)
    saved_params = {k: s.value for k, s in states.items()}
    opt.update(grads(states, 2.0))
    opt.update(grads(states, 3.0))
    jax.tree.map(lambda x: np.asarray(x), snap)                  # still readable (nothing donated)
    brainstate.graph.update_states(opt, snap)
    for k, s in states.items():
        s.value = saved_params[k]
    assert_same(before, snapshot(opt, states))


def test_deepcopy_is_an_independent_optimizer_for_the_same_model():
    opt, states = make(lambda: bo.AdamW(lr=0.1, skip_nonfinite=True,
                                        param_groups=[{'params': 'b', 'optimizer': bo.SGD(lr=0.5, momentum=0.9)}]))
    opt.update(grads(states))
    twin = copy.deepcopy(opt)
    assert all(twin.param_states[k] is states[k] for k in states)
    before = opt.state_dict()
    twin.update(grads(states, 2.0))
    assert int(twin.step_count.value) == 2 and int(opt.step_count.value) == 1
    after = opt.state_dict()
    for name in before['opt_state']:
        for key in before['opt_state'][name]:
            np.testing.assert_array_equal(before['opt_state'][name][key], after['opt_state'][name][key])


@pytest.mark.parametrize('factory', [
    lambda: bo.Adam(lr=bo.StepLR(base_lr=0.1, step_size=1), weight_decay_mask=True),
    lambda: bo.AdamW(lr=0.1, param_groups=[{'params': bo.select.ndim(2), 'optimizer': bo.Muon(lr=0.02)}]),
    lambda: bo.Lookahead(bo.SGD(lr=0.1, momentum=0.9), sync_period=2),
    lambda: bo.Lookahead(bo.Lookahead(bo.Adam(lr=0.1), sync_period=2), sync_period=3),
], ids=['scheduler+mask', 'groups', 'lookahead', 'nested-lookahead'])
def test_pickle_round_trip_continues_identically(factory):
    opt, states = make(factory)
    opt.update(grads(states))
    clone = pickle.loads(pickle.dumps(opt))
    clone_states = dict(clone.param_states)
    opt.update(grads(states, 2.0))
    clone.update(grads(clone_states, 2.0))
    for key in states:
        np.testing.assert_array_equal(u.get_mantissa(states[key].value), u.get_mantissa(clone_states[key].value))


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize('corrupt, message', [
    (lambda s: s['learning_rates'].__setitem__('lr', np.array([np.nan])), 'finite'),
    (lambda s: s['learning_rates'].__setitem__('lr', np.array([-0.1])), 'finite and >= 0'),
    (lambda s: s['learning_rates'].__setitem__('lr', np.array([np.inf])), 'finite'),
    (lambda s: s.__setitem__('step_count', np.array(-1, np.int32)), r'step_count = -1 is outside'),
    (lambda s: s.__setitem__('step_count', np.array(2 ** 40, np.int64)), r'step_count = 1099511627776 is outside'),
    (lambda s: s['step_offsets'].__setitem__("'b'", 7), r"step_offsets\['b'\] = 7 is outside"),
    (lambda s: s.__setitem__('weight_decay', np.array([-1.0])), 'weight_decay'),
    (lambda s: s['opt_state']['exp_avg'].__setitem__("'b'", np.zeros(4, np.float32)), 'buffer'),
    (lambda s: s['opt_state']['exp_avg'].__setitem__("'b'", np.zeros(3, np.float64)), 'float64'),
    (lambda s: s.pop('opt_state'), 'malformed'),
    (lambda s: s.__setitem__('format_version', 99), 'format_version'),
], ids=['nan lr', 'negative lr', 'inf lr', 'negative step', 'int64 step', 'offset > step', 'negative decay',
        'buffer shape', 'buffer dtype', 'missing part', 'version'])
def test_a_checkpoint_with_values_out_of_range_is_refused_and_changes_nothing(corrupt, message):
    opt, states = make()
    opt.update(grads(states))
    state = opt.state_dict()
    opt.update(grads(states, 2.0))
    before = snapshot(opt, states)
    corrupt(state)
    with pytest.raises(bo.CheckpointMismatchError, match=message):
        opt.load_state_dict(state)
    assert_same(before, snapshot(opt, states))


def test_non_strict_load_restarts_a_missing_parameter_instead_of_keeping_stale_moments():
    opt, states = make()
    opt.update(grads(states))
    state = opt.state_dict()
    for part in ('params', 'step_offsets'):
        state[part].pop("'b'")
    for per in state['opt_state'].values():
        per.pop("'b'")
    opt.update(grads(states, 5.0))
    opt.update(grads(states, 5.0))
    report = opt.load_state_dict(state, strict=False)
    assert report == {'missing': ["'b'"], 'unexpected': []}
    assert np.all(np.asarray(opt.buffers()['exp_avg']['b']) == 0.0)     # fresh, not the stale ones
    assert opt.state_dict()['step_offsets']["'b'"] == 1                  # counts its own steps from here


def test_lookahead_load_is_all_or_nothing_and_it_saves(tmp_path):
    opt, states = make(lambda: bo.Lookahead(bo.Adam(lr=0.1), sync_period=3))
    opt.update(grads(states))
    opt.save(tmp_path / 'la.npz')
    good = opt.state_dict()
    opt.update(grads(states, 2.0))
    inner_before = opt.base_optimizer.state_dict()
    bad = copy.deepcopy(good)
    bad['opt_state']['steps_since_sync'] = np.array(7, np.int32)  # the inner part alone would fit
    with pytest.raises(bo.CheckpointMismatchError, match='steps_since_sync'):
        opt.load_state_dict(bad)
    assert int(opt.step_count.value) == 2 == int(inner_before['step_count'])
    opt.load(tmp_path / 'la.npz')
    assert int(opt.step_count.value) == 1


def test_the_step_counter_saturates_instead_of_wrapping():
    opt, states = make(lambda: bo.Adam(lr=0.1))
    state = opt.state_dict()
    state['step_count'] = np.array(2 ** 31 - 2, np.int32)
    opt.load_state_dict(state)
    for _ in range(3):
        opt.update(grads(states))
    assert int(opt.step_count.value) == 2 ** 31 - 1
    assert all(np.all(np.isfinite(np.asarray(u.get_mantissa(s.value)))) for s in states.values())


# ----------------------------------------------------------------------------- arguments
@pytest.mark.parametrize('build, error, message', [
    (lambda: bo.Adam(amsgrad='False'), TypeError, 'amsgrad must be True or False'),
    (lambda: bo.Adam(lr=True), TypeError, 'lr must be a float'),
    (lambda: bo.SGD(momentum=True), TypeError, 'momentum must be a number'),
    (lambda: bo.Adam(skip_nonfinite=1), TypeError, 'skip_nonfinite must be True or False'),
    (lambda: bo.Adam(fused=1), TypeError, 'fused must be None, True or False'),
    (lambda: bo.Adam(unmatched='ignore'), ValueError, 'unmatched must be one of'),
])
def test_arguments_are_checked_not_guessed(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_too_many_nonfinite_steps_in_a_row_is_a_clear_python_error_eagerly():
    opt, states = make(lambda: bo.Adam(lr=0.1, skip_nonfinite=True, max_consecutive_skips=2))
    bad = grads(states, np.nan)
    opt.update(bad)
    with pytest.raises(FloatingPointError, match='2 consecutive updates had non-finite gradients'):
        opt.update(bad)


def test_an_optimizer_built_inside_a_trace_differentiates_through_its_learning_rate():
    def inner_loss(lr):
        w = brainstate.ParamState(jnp.array([1.0, -2.0]))
        opt = bo.SGD(lr=lr, momentum=0.5).register_trainable_weights({'w': w})
        for _ in range(3):
            opt.update({'w': 2 * w.value})
        return jnp.sum(w.value ** 2)

    def by_hand(lr):
        w, m = jnp.array([1.0, -2.0]), jnp.zeros(2)
        for _ in range(3):
            m = 0.5 * m + 2 * w
            w = w - lr * m
        return jnp.sum(w ** 2)

    np.testing.assert_allclose(jax.jit(jax.grad(inner_loss))(0.1), jax.grad(by_hand)(0.1), rtol=1e-6)


def test_repr_reports_the_step_groups_and_parameters():
    opt, states = make(lambda: bo.Adam(lr=0.1, param_groups=[{'params': 'tau', 'lr': 0.01, 'name': 'taus'}]))
    text = repr(opt)
    assert text.startswith('Adam(step=0, 3 trainable parameter(s), 2 group(s))')
    assert "group 1 'taus'" in text and "'tau': float32[3] ms" in text
    assert len(text.splitlines()) < 12


# ----------------------------------------------------------------------------- every optimizer, every class
from optim_db import ALL, names  # noqa: E402


def _registry_problem(info):
    states = {'w': brainstate.ParamState(jnp.array([[1.0, -2.0], [0.5, 3.0]])),
              'b': brainstate.ParamState(jnp.array([0.25, -0.75]))}
    opt = info.make().register_trainable_weights(states)
    opt.update({'w': jnp.array([[0.1, -0.2], [0.3, 0.4]]), 'b': jnp.array([0.5, -0.5])})
    return opt, states


@pytest.mark.parametrize('info', ALL, ids=names(ALL))
def test_every_optimizer_refuses_a_parameter_changed_behind_its_back(info):
    opt, states = _registry_problem(info)
    before = opt.state_dict()
    states['b'].value = states['b'].value.astype(jnp.bfloat16)
    with pytest.raises(bo.ParameterChangedError, match="'b'"):
        opt.update({'w': jnp.ones((2, 2)), 'b': jnp.ones(2, jnp.bfloat16)})
    after = opt.state_dict()
    assert int(after['step_count']) == int(before['step_count'])
    states['b'].value = states['b'].value.astype(jnp.float32)
    opt.update({'w': jnp.ones((2, 2)), 'b': jnp.ones(2)})         # usable again once restored


@pytest.mark.parametrize('info', ALL, ids=names(ALL))
def test_every_optimizer_copies_and_pickles(info):
    opt, states = _registry_problem(info)
    twin = copy.deepcopy(opt)
    grads = {'w': jnp.array([[0.3, 0.1], [-0.2, 0.2]]), 'b': jnp.array([0.1, 0.2])}
    start = {k: s.value for k, s in states.items()}
    twin.update(grads)
    by_twin = {k: np.array(s.value) for k, s in states.items()}
    for k, s in states.items():
        s.value = start[k]
    opt.update(grads)
    for k, s in states.items():
        np.testing.assert_array_equal(by_twin[k], np.array(s.value), err_msg=k)
    if info.name == 'OptaxOptimizer':
        with pytest.raises(TypeError, match='optax transformation is made of closures'):
            pickle.dumps(opt)
        return
    clone = pickle.loads(pickle.dumps(opt))
    assert int(clone.step_count.value) == int(opt.step_count.value)
    clone.update({k: jnp.ones_like(s.value) for k, s in clone.param_states.items()})


@pytest.mark.parametrize('info', ALL, ids=names(ALL))
def test_every_optimizer_restarts_a_parameter_missing_from_a_non_strict_checkpoint(info):
    opt, states = _registry_problem(info)
    state = opt.state_dict()
    inner = state['inner'] if 'inner' in state else state
    for part in ('params', 'step_offsets'):
        inner[part].pop("'b'")
    for per in (inner['opt_state'] or {}).values():
        per.pop("'b'", None)
    if 'inner' in state:
        state['opt_state']['slow_params'].pop("'b'")
    report = opt.load_state_dict(state, strict=False)
    assert report['missing'] == ["'b'"]
    opt.update({'w': jnp.ones((2, 2)), 'b': jnp.ones(2)})


def test_lookahead_rebuilds_its_compiled_step_when_the_inner_program_changes():
    w = brainstate.ParamState(jnp.array([1.0, -1.0]))
    opt = bo.Lookahead(bo.SGD(lr=0.1), sync_period=2).register_trainable_weights({'w': w})
    opt.update({'w': jnp.array([1.0, 1.0])})
    opt.lr = bo.StepLR(base_lr=0.5, step_size=1)      # allowed: only Lookahead's own step had traced it
    before = np.array(w.value)
    opt.update({'w': jnp.array([1.0, 1.0])})          # then sync with the slow weights
    fast = before - 0.5                               # the new lr took effect
    np.testing.assert_allclose(np.array(w.value), np.array([1.0, -1.0]) + 0.5 * (fast - [1.0, -1.0]), rtol=1e-6)
    step = brainstate.transform.jit(opt.update)       # inside the user's jit the inner step is the user's
    step({'w': jnp.array([1.0, 1.0])})
    with pytest.raises(RuntimeError, match='compiled'):
        opt.lr = 0.1
