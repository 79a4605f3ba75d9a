"""Schedulers under misuse: reassigned hyper-parameters, copies, pickling, repr, bad checkpoints, counters.

* A hyper-parameter assigned after use takes effect at once (the scheduler's
  own compiled copies are dropped), compared with a scheduler built with the
  new value; once the scheduler has been traced into a caller's compiled
  function (a jitted step, an optimizer's update) the assignment raises and
  changes nothing. An invalid value raises and changes nothing.
* ``copy.deepcopy`` and ``pickle`` give independent schedulers.
* ``load_state_dict`` refuses NaN / negative / infinite learning rates,
  negative or non-integer counters, counters beyond int32 (never wrapped),
  and wrong shapes, changing nothing.
* Counters saturate at ``2**31 - 1`` instead of wrapping.
"""

import copy
import pickle

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo
from braintools_optim import schedulers as S
from braintools_optim.schedulers._base import MAX_EPOCH


def _ones(opt):
    """A unit gradient for every registered parameter, keyed as the optimizer keys them."""
    return {key: jnp.ones(()) for key in opt.param_states}


def inverse(epoch):
    return 1.0 / (1.0 + 0.1 * epoch)


def shrink(epoch):
    return 0.9 + 0.0 * epoch


def shrink_more(epoch):
    return 0.7 + 0.0 * epoch


# (label, class, constructor kwargs, attribute, new value): the new value must change the schedule.
REASSIGN = [
    ('step_gamma', S.StepLR, dict(base_lr=0.1, step_size=2, gamma=0.5), 'gamma', 0.25),
    ('step_size', S.StepLR, dict(base_lr=0.1, step_size=2, gamma=0.5), 'step_size', 1),
    ('step_base_lr', S.StepLR, dict(base_lr=[0.1, 0.2], step_size=2, gamma=0.5), 'base_lr', [0.3, 0.4]),
    ('step_base_lrs', S.StepLR, dict(base_lr=[0.1, 0.2], step_size=2, gamma=0.5), 'base_lrs', [0.3, 0.4]),
    ('step_base_lrs_scalar', S.StepLR, dict(base_lr=0.1, step_size=2, gamma=0.5), 'base_lrs', [0.3]),
    ('multistep', S.MultiStepLR, dict(base_lr=0.1, milestones=[4, 6], gamma=0.5), 'milestones', [1, 2]),
    ('constant', S.ConstantLR, dict(base_lr=0.1, factor=0.2, total_iters=6), 'factor', 0.5),
    ('linear', S.LinearLR, dict(base_lr=0.1, start_factor=0.2, total_iters=6), 'total_iters', 3),
    ('exponential', S.ExponentialLR, dict(base_lr=0.1, gamma=0.9), 'gamma', 0.5),
    ('polynomial', S.PolynomialLR, dict(base_lr=0.1, total_iters=8, power=1.0), 'power', 2.0),
    ('cosine_t_max', S.CosineAnnealingLR, dict(base_lr=0.1, T_max=10, eta_min=0.01), 'T_max', 3),
    ('cosine_past', S.CosineAnnealingLR, dict(base_lr=0.1, T_max=2), 'past_T_max', 'cosine'),
    ('restarts', S.CosineAnnealingWarmRestarts, dict(base_lr=0.1, T_0=5, T_mult=2), 'T_0', 2),
    ('cyclic_up', S.CyclicLR, dict(base_lr=0.01, max_lr=0.1, step_size_up=4), 'step_size_up', 2),
    ('cyclic_momentum', S.CyclicLR, dict(base_lr=0.01, max_lr=0.1, step_size_up=4, cycle_momentum=True),
     'max_momentum', 0.95),
    ('onecycle_total', S.OneCycleLR, dict(max_lr=1.0, total_steps=20), 'total_steps', 8),
    ('onecycle_epochs', S.OneCycleLR, dict(max_lr=1.0, epochs=4, steps_per_epoch=5), 'epochs', 2),
    ('onecycle_convention', S.OneCycleLR, dict(max_lr=1.0, total_steps=10), 'convention', 'torch'),
    ('plateau_factor', S.ReduceLROnPlateau, dict(base_lr=1.0, factor=0.5, patience=0), 'factor', 0.2),
    ('lambda', S.LambdaLR, dict(base_lr=0.1, lr_lambda=inverse), 'lr_lambda', shrink),
    ('multiplicative', S.MultiplicativeLR, dict(base_lr=0.1, lr_lambda=shrink), 'lr_lambda', shrink_more),
    ('warmup', S.WarmupScheduler, dict(base_lr=0.1, warmup_epochs=8), 'warmup_epochs', 2),
    ('warmup_cosine', S.WarmupCosineSchedule, dict(base_lr=0.1, warmup_steps=2, total_steps=20), 'total_steps', 6),
    ('exp_decay', S.ExponentialDecayLR, dict(base_lr=0.1, decay_steps=2, decay_rate=0.9), 'decay_rate', 0.5),
    ('piecewise', S.PiecewiseConstantSchedule, dict(base_lr=0.1, boundaries=[2, 5], values=[0.1, 0.05, 0.01]),
     'values', [0.2, 0.1, 0.05]),
    ('sequential', S.SequentialLR, dict(schedulers=lambda: [S.ConstantLR(0.1, factor=0.5, total_iters=20),
                                                            S.ExponentialLR(0.1, gamma=0.5)], milestones=[6]),
     'milestones', [2]),
]


def _build(cls, kwargs, **changes):
    kwargs = dict(kwargs, **changes)
    if callable(kwargs.get('schedulers')):
        kwargs['schedulers'] = kwargs['schedulers']()
    return cls(**kwargs)


def _advance(sched, k):
    # plateau: improving for the first steps, then stalling (so reductions happen after the change)
    sched.step(1.0 / (1 + k) if k < 3 else 1.0) if isinstance(sched, S.ReduceLROnPlateau) else sched.step()


def _read(sched):
    momentum = getattr(sched, 'current_momentum', None)
    return np.asarray(sched.current_lr), None if momentum is None else np.asarray(momentum)


@pytest.mark.parametrize('label, cls, kwargs, attribute, value', REASSIGN, ids=[r[0] for r in REASSIGN])
def test_assignment_takes_effect_at_once(label, cls, kwargs, attribute, value):
    """Used eagerly (own compiled copies cached), then reassigned: it behaves as if built with the new value."""
    sched = _build(cls, kwargs)
    name = 'base_lr' if attribute == 'base_lrs' else attribute
    fresh = _build(cls, kwargs, **{name: value if not (label.endswith('scalar')) else value[0]})
    is_plateau = isinstance(sched, S.ReduceLROnPlateau)
    epochs = jnp.arange(12)

    def schedule(s):           # the learning rate (and momentum) at every epoch, from the cached compiled copies
        momenta = [np.asarray(s.momentum_at(e)) for e in range(12)] if getattr(s, 'cycle_momentum', 0) else []
        return np.concatenate([np.asarray(s(epochs)).reshape(-1), np.asarray(momenta).reshape(-1)])

    before = None if is_plateau else schedule(sched)
    for k in range(3):
        _read(sched)
        _advance(sched, k)
        _advance(fresh, k)
    setattr(sched, attribute, value)
    if not is_plateau:
        after = schedule(sched)
        np.testing.assert_allclose(after, schedule(fresh), rtol=1e-6)
        assert not np.allclose(after, before), "the case does not change the schedule"
    for k in range(3, 9):
        for got, expected in zip(_read(sched), _read(fresh)):
            assert (got is None) == (expected is None)
            if got is not None:
                np.testing.assert_allclose(got, expected, rtol=1e-6, err_msg=f'step {k}')
        _advance(sched, k)
        _advance(fresh, k)
    if attribute == 'base_lrs':
        assert sched.base_lrs == value


def test_step_size_down_follows_step_size_up_until_given():
    sched = S.CyclicLR(0.0, 1.0, step_size_up=4)
    sched.step_size_up = 2
    assert sched.step_size_down == 2
    sched.step_size_down = 3
    sched.step_size_up = 5
    assert (sched.step_size_up, sched.step_size_down) == (5, 3)


def test_reassigning_a_child_updates_the_composite():
    child = S.ExponentialLR(1.0, gamma=0.5)
    chained = S.ChainedScheduler([S.ConstantLR(1.0, factor=0.5, total_iters=10), child])
    chained.step()
    assert float(chained.current_lr) == pytest.approx(0.25)      # cached compiled copy built here
    child.gamma = 0.1
    assert float(chained.current_lr) == pytest.approx(0.05)
    assert float(chained(1)) == pytest.approx(0.05)


def test_assignment_after_a_caller_traced_it_raises_and_changes_nothing():
    sched = S.StepLR(0.1, step_size=2, gamma=0.5)

    @brainstate.transform.jit
    def read():
        return sched.current_lr

    read()
    with pytest.raises(RuntimeError, match='traced into a compiled function'):
        sched.gamma = 0.25
    assert sched.gamma == 0.5
    sched.step()
    sched.step()
    assert float(read()) == float(sched.current_lr) == pytest.approx(0.05)
    copied = copy.deepcopy(sched)                     # a copy has never been traced: it can be changed
    copied.gamma = 0.25
    assert float(copied.current_lr) == pytest.approx(0.025)


def test_children_of_a_traced_composite_and_an_optimizer_scheduler_refuse_too():
    child = S.ExponentialLR(0.1, gamma=0.5)
    sequential = S.SequentialLR([S.ConstantLR(0.1, factor=0.5), child], milestones=[2])
    brainstate.transform.jit(lambda: sequential.step())()
    with pytest.raises(RuntimeError, match='traced'):
        child.gamma = 0.9
    with pytest.raises(RuntimeError, match='traced'):
        sequential.milestones = [3]
    sched = S.ExponentialLR(0.1, gamma=0.5)
    w = brainstate.ParamState(jnp.zeros(()))
    opt = bo.SGD(lr=sched).register_trainable_weights({'w': w})
    sched.gamma = 0.9                                # not compiled into anything yet: fine
    opt.update(_ones(opt))               # the optimizer's compiled update reads it
    with pytest.raises(RuntimeError, match="optimizer's update"):
        sched.gamma = 0.8
    assert sched.gamma == 0.9


@pytest.mark.parametrize('make, attribute, value, error', [
    (lambda: S.StepLR(0.1), 'step_size', 0, ValueError),
    (lambda: S.StepLR(0.1), 'gamma', float('nan'), ValueError),
    (lambda: S.StepLR(0.1), 'base_lr', -0.1, ValueError),
    (lambda: S.StepLR(0.1), 'base_lr', [0.1, 0.2], ValueError),         # the number of groups is fixed
    (lambda: S.CosineAnnealingLR(0.1), 'T_max', -1, ValueError),
    (lambda: S.CosineAnnealingLR(0.1), 'past_T_max', 'wrap', ValueError),
    (lambda: S.WarmupCosineSchedule(0.1, 10, 100), 'total_steps', 5, ValueError),
    (lambda: S.OneCycleLR(1.0, 10), 'base_lr', 0.1, AttributeError),     # derived from max_lr / div_factor
    (lambda: S.OneCycleLR(1.0, 10), 'pct_start', 1.0, ValueError),
    (lambda: S.ReduceLROnPlateau(0.1), 'mode', 'max', ValueError),       # best was recorded for 'min'
    (lambda: S.ReduceLROnPlateau(0.1), 'lr', 0.5, AttributeError),       # State: assign .value instead
    (lambda: S.StepLR(0.1), 'last_epoch', 3, AttributeError),
    (lambda: S.SequentialLR([S.StepLR(0.1), S.StepLR(0.1)], [2]), 'schedulers', [], AttributeError),
    (lambda: S.SequentialLR([S.StepLR(0.1), S.StepLR(0.1)], [2]), 'milestones', [1, 2], ValueError),
    (lambda: S.ChainedScheduler([S.StepLR(0.1)]), 'base_lr', 0.2, AttributeError),
])
def test_invalid_assignment_raises_and_changes_nothing(make, attribute, value, error):
    sched = make()
    sched.step() if not isinstance(sched, S.ReduceLROnPlateau) else sched.step(1.0)
    before = repr(sched), np.asarray(sched.current_lr)
    with pytest.raises(error):
        setattr(sched, attribute, value)
    assert (repr(sched), np.asarray(sched.current_lr)) == before


def test_reconfigure_names_unknown_hyperparameters():
    with pytest.raises(AttributeError, match='no hyper-parameter'):
        S.StepLR(0.1).reconfigure(gama=0.5)
    assert S.StepLR.hyperparameter_names() == ('base_lr', 'step_size', 'gamma')
    assert S.OneCycleLR.hyperparameter_names()[0] == 'max_lr'
    assert S.ChainedScheduler.hyperparameter_names() == ()


# ---------------------------------------------------------------------------------------- copies
def _copy_cases():
    return {
        'step': S.StepLR([0.1, 0.2], step_size=2, gamma=0.5),
        'multiplicative': S.MultiplicativeLR(0.1, lr_lambda=shrink),
        'lambda': S.LambdaLR(0.1, lr_lambda=inverse),
        'restarts': S.CosineAnnealingWarmRestarts(0.1, T_0=2, T_mult=2),
        'onecycle': S.OneCycleLR(1.0, total_steps=12, cycle_momentum=True),
        'plateau': S.ReduceLROnPlateau(1.0, factor=0.5, patience=0),
        'sequential': S.SequentialLR([S.LinearLR(0.1, total_iters=3),
                                      S.ChainedScheduler([S.ExponentialLR(0.1, 0.9),
                                                          S.MultiplicativeLR(0.1, lr_lambda=shrink)])], [3]),
    }


def _step(sched, k):
    sched.step(float(k % 3)) if isinstance(sched, S.ReduceLROnPlateau) else sched.step()


@pytest.mark.parametrize('how', ['deepcopy', 'pickle'])
def test_copies_are_independent(how):
    for name, sched in _copy_cases().items():
        for k in range(4):
            _step(sched, k)
        sched.current_lr                                             # a compiled copy is cached now
        clone = copy.deepcopy(sched) if how == 'deepcopy' else pickle.loads(pickle.dumps(sched))
        assert type(clone) is type(sched) and repr(clone) == repr(sched), name
        np.testing.assert_array_equal(clone.current_lr, sched.current_lr, err_msg=name)
        state = jax.tree.map(np.asarray, sched.state_dict())
        for k in range(4, 8):
            _step(clone, k)
        jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, sched.state_dict()), state)
        for k in range(4, 8):
            _step(sched, k)
        np.testing.assert_array_equal(clone.current_lr, sched.current_lr, err_msg=name)
        if hasattr(sched, 'schedulers'):
            assert all(a is not b for a, b in zip(clone._tree(), sched._tree()))


def test_a_copy_is_detached_from_the_optimizer():
    sched = S.StepLR(0.1)
    opt = bo.SGD(lr=0.1).register_trainable_weights({'w': brainstate.ParamState(jnp.zeros(()))})
    sched.attach_optimizer(opt)
    assert copy.deepcopy(sched).optimizer is None and sched.optimizer is opt


def test_copying_inside_a_trace_is_refused():
    sched = S.StepLR(0.1)
    with pytest.raises(TypeError, match='traced'):
        brainstate.transform.jit(lambda: (sched.step(), copy.deepcopy(sched)))()


# ---------------------------------------------------------------------------------------- repr
def test_repr_is_short_and_useful():
    cases = _copy_cases()
    for sched in cases.values():
        sched.step(1.0) if isinstance(sched, S.ReduceLROnPlateau) else sched.step()
        text = repr(sched)
        assert text.startswith(type(sched).__name__ + '(') and 'last_epoch=1' in text, text
        assert len(text) < 160, text
    assert repr(cases['step']) == 'StepLR(base_lr=[0.1, 0.2], step_size=2, gamma=0.5, last_epoch=1)'
    assert repr(cases['lambda']) == 'LambdaLR(base_lr=0.1, lr_lambda=inverse, last_epoch=1)'
    assert repr(cases['sequential']).startswith('SequentialLR(schedulers=[LinearLR, ChainedScheduler], milestones=[3]')
    assert 'cycle_momentum=True' in repr(cases['onecycle'])
    assert repr(cases['plateau']) == 'ReduceLROnPlateau(base_lr=1.0, factor=0.5, patience=0, last_epoch=1, lr=1.0)'
    long = S.MultiStepLR(0.1, milestones=list(range(1, 100)))
    assert len(repr(long)) < 100


# ---------------------------------------------------------------------------------------- checkpoints
def _state(sched):
    return jax.tree.map(np.asarray, sched.state_dict())


BAD_STATES = [
    ('negative epoch', lambda: S.StepLR(0.1), dict(last_epoch=-1), ValueError, '>= 0|integers in'),
    ('epoch past int32', lambda: S.StepLR(0.1), dict(last_epoch=np.int64(2 ** 31)), ValueError, 'int32'),
    ('epoch far past int32', lambda: S.StepLR(0.1), dict(last_epoch=2 ** 32 + 3), ValueError, 'int32'),
    ('fractional epoch', lambda: S.StepLR(0.1), dict(last_epoch=2.5), ValueError, 'integers'),
    ('text epoch', lambda: S.StepLR(0.1), dict(last_epoch='3'), TypeError, 'integer'),
    ('epoch shape', lambda: S.StepLR([0.1, 0.2]), dict(last_epoch=np.zeros(2)), ValueError, 'shape'),
    ('nan base_lrs', lambda: S.StepLR(0.1), dict(base_lrs=[float('nan')]), ValueError, 'finite'),
    ('negative base_lrs', lambda: S.StepLR(0.1), dict(base_lrs=[-0.1]), ValueError, 'finite'),
    ('inf current_lrs', lambda: S.StepLR(0.1), dict(current_lrs=[float('inf')]), ValueError, 'finite'),
    ('current_lrs count', lambda: S.StepLR(0.1), dict(current_lrs=[0.1, 0.1]), ValueError, 'one per parameter'),
    ('nan plateau lr', lambda: S.ReduceLROnPlateau(0.1), dict(lr=float('nan')), ValueError, 'NaN|finite'),
    ('negative plateau lr', lambda: S.ReduceLROnPlateau(0.1), dict(lr=-1.0), ValueError, 'finite'),
    ('inf plateau lr', lambda: S.ReduceLROnPlateau(0.1), dict(lr=float('inf')), ValueError, 'finite'),
    ('nan best', lambda: S.ReduceLROnPlateau(0.1), dict(best=float('nan')), ValueError, 'NaN'),
    ('negative bad epochs', lambda: S.ReduceLROnPlateau(0.1), dict(num_bad_epochs=-2), ValueError, 'integers'),
    ('huge cooldown', lambda: S.ReduceLROnPlateau(0.1), dict(cooldown_counter=2 ** 40), ValueError, 'int32'),
    ('inf factor', lambda: S.MultiplicativeLR(0.1, lr_lambda=shrink), dict(factor=float('inf')), ValueError,
     'finite'),
    ('derived base_lrs', lambda: S.OneCycleLR(1.0, 10), dict(base_lrs=[0.5]), ValueError, 'follow from'),
    ('restart mismatch', lambda: S.CosineAnnealingWarmRestarts(0.1, T_0=3), dict(T_cur=2), ValueError, 'T_cur'),
    ('sequential idx', lambda: S.SequentialLR([S.StepLR(0.1), S.StepLR(0.1)], [2]), dict(current_scheduler_idx=0),
     ValueError, 'current_scheduler_idx'),
    ('bad child', lambda: S.SequentialLR([S.StepLR(0.1), S.StepLR(0.1)], [2]),
     dict(schedulers=[{'last_epoch': 1}, {'last_epoch': -5}]), ValueError, '>= 0|integers in'),
    ('not a dict', lambda: S.StepLR(0.1), None, TypeError, 'dict'),
]


@pytest.mark.parametrize('label, make, change, error, match', BAD_STATES, ids=[b[0] for b in BAD_STATES])
def test_bad_state_dict_is_refused_and_changes_nothing(label, make, change, error, match):
    source = make()
    for k in range(3):
        _step(source, k)
    state = _state(source) if change is not None else None
    if change is not None:
        state.update(change)
    target = make()
    _step(target, 0)
    before = _state(target)
    with pytest.raises(error, match=match):
        target.load_state_dict(state if state is not None else [1, 2])
    jax.tree.map(np.testing.assert_array_equal, _state(target), before)


def test_good_state_dicts_load_including_int64_and_float_counters():
    sched = S.StepLR(0.1, step_size=2, gamma=0.5)
    sched.load_state_dict({'last_epoch': np.int64(5)})
    assert sched.last_epoch.value.dtype == jnp.int32 and int(sched.last_epoch.value) == 5
    sched.load_state_dict({'last_epoch': 6.0})                 # braintools may have saved a float
    assert int(sched.last_epoch.value) == 6
    sched.load_state_dict({'last_epoch': MAX_EPOCH})
    assert int(sched.last_epoch.value) == MAX_EPOCH


# ---------------------------------------------------------------------------------------- counters
def test_counter_writes_are_checked():
    sched = S.ExponentialLR(0.1, gamma=0.5)
    for bad, error in ((-1, ValueError), (2 ** 31, ValueError), (2.5, TypeError), (True, TypeError),
                       (np.zeros(2, np.int32), ValueError)):
        with pytest.raises(error):
            sched.last_epoch.value = bad
        assert int(sched.last_epoch.value) == 0
    sched.last_epoch.value = np.int64(3)
    assert sched.last_epoch.value.dtype == jnp.int32 and float(sched.current_lr) == pytest.approx(0.0125)
    sched.last_epoch.value = jnp.asarray(4.0)                  # a JAX float: checked, then int32
    assert sched.last_epoch.value.dtype == jnp.int32 and int(sched.last_epoch.value) == 4
    with pytest.raises(ValueError, match='>= 0'):
        sched.last_epoch.value = jnp.asarray(-4, jnp.int64 if jax.config.jax_enable_x64 else jnp.float32)
    for bad in (-3, 2 ** 31, 1.5):
        with pytest.raises((ValueError, TypeError)):
            sched.step(bad)
    with pytest.raises(ValueError):
        S.StepLR(0.1, last_epoch=-2)
    with pytest.raises(ValueError, match='int32'):
        S.StepLR(0.1, last_epoch=2 ** 31)


@pytest.mark.parametrize('traced', [False, True])
def test_counters_saturate_instead_of_wrapping(traced):
    scheds = [S.StepLR(0.1, step_size=1000, gamma=0.5), S.MultiplicativeLR(0.1, lr_lambda=shrink),
              S.ReduceLROnPlateau(0.1), S.SequentialLR([S.ConstantLR(0.1), S.ExponentialLR(0.1, 1.0)], [3])]
    for sched in scheds:
        sched.last_epoch.value = MAX_EPOCH - 1
    scheds[1].factor.value = jnp.asarray(0.5, scheds[1].factor.value.dtype)

    def step_all():
        for sched in scheds:
            sched.step(1.0) if isinstance(sched, S.ReduceLROnPlateau) else sched.step()

    run = brainstate.transform.jit(step_all) if traced else step_all
    for _ in range(3):
        run()
    assert [int(s.last_epoch.value) for s in scheds] == [MAX_EPOCH] * 4
    assert float(scheds[1].factor.value) == pytest.approx(0.5 * 0.9)       # one real step, then held
    assert all(np.isfinite(np.asarray(s.current_lr)).all() for s in scheds)


def test_a_traced_int64_counter_write_saturates():
    sched = S.StepLR(0.1)
    with jax.enable_x64(True):
        @brainstate.transform.jit
        def set_epoch(value):
            sched.last_epoch.value = value

        set_epoch(jnp.asarray(2 ** 31 + 5, jnp.int64))
        assert sched.last_epoch.value.dtype == jnp.int32 and int(sched.last_epoch.value) == MAX_EPOCH
        set_epoch(jnp.asarray(-7, jnp.int64))
        assert int(sched.last_epoch.value) == 0
