"""Schedulers as a drop-in for ``braintools.optim``: signatures, introspection, value conventions.

* Signatures: ``BRAINTOOLS_SIGNATURES`` below is braintools' constructor (and
  method) signatures (0.3.0 and 0.4.0 have the same; read from their sources),
  stored here so that CI without braintools still checks names, positional
  order and defaults. Every difference of ours must be listed in
  ``DELIBERATE`` with its reason. When ``braintools`` is importable (Python
  3.12 gets 0.4.0) the stored table is itself checked against it, and the
  learning rates of the two libraries are compared step by step.
* Introspection braintools users call (``current_lrs``, ``get_lr``, ``apply``,
  ``attach_optimizer``, ``T_cur``, ...), eagerly and under ``jit``.
* Where braintools and torch disagree: braintools' behaviour is the default
  and torch's is ``torch_options(...)`` away; both are tested here against
  formulas written out in the tests (torch's also against the golden file in
  ``test_schedulers.py``).
"""

import inspect
import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo
from braintools_optim import schedulers as S
from braintools_optim.schedulers._cyclic import ONE_CYCLE_CONVENTIONS

EMPTY = inspect.Parameter.empty


def _ones(opt):
    """A unit gradient for every registered parameter, keyed as the optimizer keys them."""
    return {key: jnp.ones(()) for key in opt.param_states}

# ---------------------------------------------------------------------------------------- signatures
#: braintools.optim's signatures: (name, default) in positional order; EMPTY = required.
BRAINTOOLS_SIGNATURES = {
    'LRScheduler': [('base_lr', 1e-3), ('last_epoch', 0)],
    'StepLR': [('base_lr', 1e-3), ('step_size', 30), ('gamma', 0.1), ('last_epoch', 0)],
    'MultiStepLR': [('base_lr', 1e-3), ('milestones', (30, 60, 90)), ('gamma', 0.1), ('last_epoch', 0)],
    'ExponentialLR': [('base_lr', 1e-3), ('gamma', 0.95), ('last_epoch', 0)],
    'ExponentialDecayLR': [('base_lr', 1e-3), ('decay_steps', 1000), ('decay_rate', 0.96), ('transition_begin', 0),
                           ('staircase', False), ('end_value', None), ('last_epoch', 0)],
    'CosineAnnealingLR': [('base_lr', 1e-3), ('T_max', 50), ('eta_min', 0), ('last_epoch', 0)],
    'PolynomialLR': [('base_lr', 1e-3), ('total_iters', 5), ('power', 1.0), ('last_epoch', 0)],
    'WarmupScheduler': [('base_lr', 1e-3), ('warmup_epochs', 5), ('warmup_start_lr', 0.0), ('last_epoch', 0)],
    'CyclicLR': [('base_lr', 1e-3), ('max_lr', 1e-2), ('step_size_up', 2000), ('step_size_down', None),
                 ('mode', 'triangular'), ('gamma', 1.0), ('scale_fn', None), ('scale_mode', 'cycle'),
                 ('last_epoch', 0)],
    'OneCycleLR': [('max_lr', 1e-2), ('total_steps', None), ('epochs', None), ('steps_per_epoch', None),
                   ('pct_start', 0.3), ('anneal_strategy', 'cos'), ('div_factor', 25.0),
                   ('final_div_factor', 1e4), ('last_epoch', 0)],
    'ReduceLROnPlateau': [('base_lr', 1e-3), ('mode', 'min'), ('factor', 0.1), ('patience', 10),
                          ('threshold', 1e-4), ('threshold_mode', 'rel'), ('cooldown', 0), ('min_lr', 0),
                          ('eps', 1e-8), ('last_epoch', 0)],
    'LinearLR': [('base_lr', 1e-3), ('start_factor', 1.0 / 3), ('end_factor', 1.0), ('total_iters', 5),
                 ('last_epoch', 0)],
    'ConstantLR': [('base_lr', 1e-3), ('factor', 1.0 / 3), ('total_iters', 5), ('last_epoch', 0)],
    'ChainedScheduler': [('schedulers', EMPTY)],
    'SequentialLR': [('schedulers', EMPTY), ('milestones', EMPTY), ('last_epoch', 0)],
    'CosineAnnealingWarmRestarts': [('base_lr', 1e-3), ('T_0', 10), ('T_mult', 1), ('eta_min', 0),
                                    ('last_epoch', 0)],
    'WarmupCosineSchedule': [('base_lr', 1e-3), ('warmup_steps', 1000), ('total_steps', 10000),
                             ('warmup_start_lr', 0.0), ('eta_min', 0.0), ('last_epoch', 0)],
    'PiecewiseConstantSchedule': [('base_lr', 1e-3), ('boundaries', None), ('values', None), ('last_epoch', 0)],
    # methods braintools users call (on every scheduler unless the class is named)
    'LRScheduler.step': [('epoch', None)],
    'LRScheduler.get_lr': [],
    'LRScheduler.get_last_lr': [],
    'LRScheduler.step_epoch': [],
    'LRScheduler.apply': [('apply_fn', EMPTY)],
    'LRScheduler.attach_optimizer': [('optimizer', EMPTY)],
    'LRScheduler.state_dict': [],
    'LRScheduler.load_state_dict': [('state_dict', EMPTY)],
    'ReduceLROnPlateau.step': [('metric', EMPTY), ('epoch', None)],
}

#: Every way our signatures differ from braintools', with the reason. Extra arguments are keyword-only.
DELIBERATE = {
    'CosineAnnealingLR': {'past_T_max': "torch's behaviour past T_max (the cosine climbs back) one keyword away"},
    'CyclicLR': {'cycle_momentum': "torch's momentum cycling (off by default: braintools has none)",
                 'base_momentum': "torch's momentum cycling", 'max_momentum': "torch's momentum cycling"},
    'OneCycleLR': {'convention': "torch's 1cycle curve (cosine warm-up, other end points) one keyword away",
                   'three_phase': "torch's three-phase variant",
                   'cycle_momentum': "torch's momentum cycling (off by default: braintools has none)",
                   'base_momentum': "torch's momentum cycling", 'max_momentum': "torch's momentum cycling"},
    'PiecewiseConstantSchedule': {'boundaries_and_scales': "optax's multiplicative form of the same schedule"},
    'ChainedScheduler': {'optimizer': "the optimizer it drives, known at construction (braintools: attach_optimizer)"},
    'SequentialLR': {'optimizer': "the optimizer it drives, known at construction (braintools: attach_optimizer)"},
    'ReduceLROnPlateau.step': {
        'metrics': "torch's keyword for the metric (step(metrics=loss)) also works",
        'metric=None': "the metric may come as torch's metrics= instead; no metric at all is still a TypeError"},
}

#: Our schedulers braintools does not have (torch's), so they have no braintools signature to match.
OURS_ONLY = {'LambdaLR', 'MultiplicativeLR'}


def _ours(key):
    cls_name, _, method = key.partition('.')
    cls = getattr(S, cls_name)
    return getattr(cls, method) if method else cls.__init__


def _parameters(function):
    return [p for p in inspect.signature(function).parameters.values() if p.name != 'self']


def test_signature_table_covers_every_scheduler():
    classes = {name for name in S.__all__ if isinstance(getattr(S, name), type)}
    assert classes == {key for key in BRAINTOOLS_SIGNATURES if '.' not in key} | OURS_ONLY


@pytest.mark.parametrize('key', sorted(BRAINTOOLS_SIGNATURES))
def test_signature_matches_braintools(key):
    """Same names, positional order and defaults as braintools; anything more is keyword-only and listed."""
    expected = BRAINTOOLS_SIGNATURES[key]
    parameters = _parameters(_ours(key))
    allowed = DELIBERATE.get(key, {})
    leading = parameters[:len(expected)]
    assert [p.name for p in leading] == [name for name, _ in expected], key
    for parameter, (name, default) in zip(leading, expected):
        assert parameter.kind == parameter.POSITIONAL_OR_KEYWORD, (key, name)
        if parameter.default != default:
            assert f'{name}={parameter.default!r}' in allowed, (key, name, parameter.default, default)
    for parameter in parameters[len(expected):]:
        assert parameter.kind == parameter.KEYWORD_ONLY, (key, parameter.name)
        assert parameter.name in allowed, f"{key}: extra argument {parameter.name!r} is not on the DELIBERATE list"
    assert all(note.strip() for note in allowed.values())


def test_every_deliberate_divergence_is_real():
    """The DELIBERATE list names nothing that is not actually different (it cannot go stale)."""
    for key, notes in DELIBERATE.items():
        parameters = {p.name: p for p in _parameters(_ours(key))}
        braintools_names = [name for name, _ in BRAINTOOLS_SIGNATURES[key]]
        for note in notes:
            name, _, default = note.partition('=')
            assert name in parameters, (key, name)
            if default:
                assert repr(parameters[name].default) == default and name in braintools_names, (key, note)
            else:
                assert name not in braintools_names, (key, name)


def _braintools():
    braintools = pytest.importorskip('braintools')
    import braintools.optim
    return braintools.optim


@pytest.mark.parametrize('key', sorted(BRAINTOOLS_SIGNATURES))
def test_stored_table_matches_installed_braintools(key):
    """The stored table is braintools' real signature (checked whenever braintools is installed)."""
    optim = _braintools()
    cls_name, _, method = key.partition('.')
    theirs = getattr(optim, cls_name)
    function = getattr(theirs, method) if method else theirs.__init__
    got = [(p.name, p.default) for p in _parameters(function)]
    assert [name for name, _ in got] == [name for name, _ in BRAINTOOLS_SIGNATURES[key]]
    for (_, default), (_, stored) in zip(got, BRAINTOOLS_SIGNATURES[key]):
        assert default == stored or (isinstance(stored, tuple) and tuple(default) == stored)


# ---------------------------------------------------------------------------------------- values vs braintools
#: One configuration per class, with the same arguments on both sides (braintools' defaults, ours' defaults).
VALUE_CASES = {
    'StepLR': dict(base_lr=[0.1, 0.05], step_size=7, gamma=0.5),
    'MultiStepLR': dict(base_lr=0.1, milestones=[5, 12, 30], gamma=0.3),
    'ExponentialLR': dict(base_lr=0.1, gamma=0.93),
    'ExponentialDecayLR': dict(base_lr=0.1, decay_steps=6, decay_rate=0.7, transition_begin=4, end_value=0.02),
    'CosineAnnealingLR': dict(base_lr=[0.1, 0.2], T_max=20, eta_min=0.01),           # 40 steps: past T_max
    'PolynomialLR': dict(base_lr=0.1, total_iters=25, power=1.5),
    'WarmupScheduler': dict(base_lr=0.1, warmup_epochs=8, warmup_start_lr=0.01),
    'CyclicLR': dict(base_lr=0.01, max_lr=0.1, step_size_up=4, step_size_down=7, mode='triangular2'),
    'OneCycleLR': dict(max_lr=[0.5, 0.2], total_steps=30, pct_start=0.3, div_factor=10.0, final_div_factor=100.0),
    'OneCycleLR/linear': dict(max_lr=0.5, total_steps=30, pct_start=0.25, anneal_strategy='linear'),
    'LinearLR': dict(base_lr=0.1, start_factor=0.2, end_factor=0.9, total_iters=10),
    'ConstantLR': dict(base_lr=0.1, factor=0.4, total_iters=6),
    'CosineAnnealingWarmRestarts': dict(base_lr=0.1, T_0=4, T_mult=2, eta_min=0.001),
    'WarmupCosineSchedule': dict(base_lr=0.1, warmup_steps=5, total_steps=30, warmup_start_lr=0.01, eta_min=0.001),
    'PiecewiseConstantSchedule': dict(base_lr=0.1, boundaries=[5, 15], values=[0.1, 0.05, 0.01]),
}
STEPS = 40


def _trajectory(scheduler, values_of):
    out = [values_of(scheduler)]
    for _ in range(STEPS - 1):
        scheduler.step()
        out.append(values_of(scheduler))
    return np.asarray(out, np.float64)


@pytest.mark.parametrize('case', sorted(VALUE_CASES))
def test_learning_rates_match_installed_braintools(case):
    """Stepped side by side, our ``current_lrs`` equal braintools' (its defaults are ours)."""
    optim = _braintools()
    name = case.split('/')[0]
    theirs = getattr(optim, name)(**VALUE_CASES[case])
    ours = getattr(S, name)(**VALUE_CASES[case])
    read = lambda sched: [float(v) for v in sched.current_lrs.value]
    np.testing.assert_allclose(_trajectory(ours, read), _trajectory(theirs, read), rtol=2e-5, atol=1e-7)


def test_composites_and_plateau_match_installed_braintools():
    optim = _braintools()

    def build(lib):
        chained = lib.ChainedScheduler([lib.ConstantLR(0.1, factor=0.5, total_iters=5),
                                        lib.ExponentialLR(0.1, gamma=0.9)])
        sequential = lib.SequentialLR([lib.LinearLR(0.1, start_factor=0.1, total_iters=5),
                                       lib.ExponentialLR(0.1, gamma=0.8)], milestones=[6])
        return chained, sequential

    read = lambda sched: [float(v) for v in sched.current_lrs.value]
    for ours, theirs in zip(build(S), build(optim)):
        np.testing.assert_allclose(_trajectory(ours, read), _trajectory(theirs, read), rtol=2e-5)
    # plateau: a metric stream without cooldown-time improvements (where braintools departs from torch)
    metrics = [1.0, 0.9, 0.9, 0.9, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.7, 0.7, 0.7, 0.7, 0.7]
    ours = S.ReduceLROnPlateau(0.1, factor=0.5, patience=2)
    theirs = optim.ReduceLROnPlateau(0.1, factor=0.5, patience=2)
    got, expected = [], []
    for metric in metrics:
        ours.step(metric)
        theirs.step(metric)
        got.append(read(ours))
        expected.append(read(theirs))
    np.testing.assert_allclose(got, expected, rtol=1e-6)


# ---------------------------------------------------------------------------------------- introspection
def test_current_lrs_get_lr_and_last_epoch_eagerly():
    sched = S.StepLR(base_lr=[0.1, 0.01], step_size=2, gamma=0.1)
    assert isinstance(sched.current_lrs.value, list) and len(sched.current_lrs.value) == 2
    assert sched.current_lrs.value[0] == 0.1 and int(sched.last_epoch.value) == 0     # lr at epoch 0
    for _ in range(2):
        sched.step_epoch()
    assert int(sched.last_epoch.value) == 2
    np.testing.assert_allclose(sched.current_lrs.value, [0.01, 0.001], rtol=1e-6)
    np.testing.assert_allclose(sched.get_lr(), [0.01, 0.001], rtol=1e-6)
    np.testing.assert_allclose(sched.get_last_lr(), [0.01, 0.001], rtol=1e-6)
    sched.last_epoch.value = 6                     # braintools users move the counter by hand
    np.testing.assert_allclose(sched.get_lr(), [1e-4, 1e-5], rtol=1e-6)
    assert S.StepLR(0.1, last_epoch=-1).last_epoch.value == 0          # torch's "not started yet"
    assert int(S.StepLR(0.1, 2, last_epoch=5).last_epoch.value) == 5    # braintools: resumes at 5, not 6
    assert float(S.StepLR(0.1, 2, 0.5, last_epoch=5).current_lr) == pytest.approx(0.025)


def test_introspection_inside_jit():
    sched = S.MultiStepLR(base_lr=1.0, milestones=[2, 4], gamma=0.5)
    restarts = S.CosineAnnealingWarmRestarts(base_lr=1.0, T_0=3)
    sequential = S.SequentialLR([S.ConstantLR(1.0, factor=0.5, total_iters=9), S.ExponentialLR(1.0, 0.5)], [3])

    @brainstate.transform.jit
    def step():
        for s in (sched, restarts, sequential):
            s.step()
        return (sched.current_lrs.value[0], sched.get_lr()[0], restarts.T_cur.value, restarts.T_i.value,
                sequential.current_scheduler_idx, sequential.get_last_lr()[0])

    rows = [jax.tree.map(float, step()) for _ in range(5)]
    assert [r[0] for r in rows] == [1.0, 0.5, 0.5, 0.25, 0.25]
    assert [r[0] for r in rows] == [r[1] for r in rows]
    assert [r[2] for r in rows] == [1, 2, 0, 1, 2] and all(r[3] == 3 for r in rows)
    assert [r[4] for r in rows] == [0, 0, 1, 1, 1]
    assert [r[5] for r in rows] == [0.5, 0.5, 1.0, 0.5, 0.25]


def test_introspection_inside_for_loop():
    restarts = S.CosineAnnealingWarmRestarts(base_lr=1.0, T_0=2, T_mult=2)

    @brainstate.transform.jit
    def run():
        def body(_):
            restarts.step()
            return restarts.current_lrs.value[0], restarts.T_cur.value, restarts.get_lr()[0]
        return brainstate.transform.for_loop(body, jnp.arange(6))

    lrs, t_cur, raw = jax.tree.map(np.asarray, run())
    assert t_cur.tolist() == [1, 0, 1, 2, 3, 0]
    np.testing.assert_allclose(lrs, raw)
    np.testing.assert_allclose(lrs, np.asarray(restarts(jnp.arange(1, 7))), rtol=1e-6)


def test_apply_overrides_until_the_next_step():
    sched = S.ExponentialLR(base_lr=1.0, gamma=0.5)
    sched.apply(lambda lr: lr * 0.1)
    assert float(sched.current_lr) == pytest.approx(0.1)
    assert float(sched.get_lr()[0]) == pytest.approx(1.0)          # the schedule itself is unchanged
    sched.step()
    assert float(sched.current_lr) == pytest.approx(0.5)           # the override lasted one epoch
    sched.current_lrs.value = [0.3]                                 # braintools writes current_lrs too
    assert float(sched.get_last_lr()[0]) == pytest.approx(0.3)
    saved = sched.state_dict()
    resumed = S.ExponentialLR(base_lr=1.0, gamma=0.5)
    resumed.load_state_dict(saved)                                  # the override travels in current_lrs
    assert float(resumed.current_lr) == pytest.approx(0.3)
    resumed.step()
    assert float(resumed.current_lr) == pytest.approx(0.25)
    with pytest.raises(ValueError, match='finite'):
        sched.apply(lambda lr: lr * jnp.nan)
    with pytest.raises(ValueError, match='expected 1'):
        sched.current_lrs.value = [0.1, 0.2]


def test_apply_costs_nothing_until_used_and_must_come_before_compiled_use():
    sched = S.StepLR(1.0, step_size=1, gamma=0.5)
    assert not sched._apply_used            # the override's State is not read by compiled code until then
    w = brainstate.ParamState(jnp.zeros(()))
    opt = bo.SGD(lr=sched).register_trainable_weights({'w': w})
    opt.update(_ones(opt))      # the optimizer's compiled update read the scheduler
    with pytest.raises(RuntimeError, match='before the first compiled use'):
        sched.apply(lambda lr: lr * 0.1)
    early = S.StepLR(1.0, step_size=1, gamma=0.5)
    early.apply(lambda lr: lr * 0.1)        # before any compiled use: it then works inside the optimizer
    v = brainstate.ParamState(jnp.zeros(()))
    opt = bo.SGD(lr=early).register_trainable_weights({'v': v})
    opt.update(_ones(opt))
    early.step()
    opt.update(_ones(opt))
    assert float(v.value) == pytest.approx(-(0.1 + 0.5))


def test_apply_on_plateau_is_persistent():
    """braintools' plateau reduces from the applied value; so does ours."""
    sched = S.ReduceLROnPlateau(1.0, factor=0.5, patience=0)
    sched.apply(lambda lr: lr * 0.2)
    sched.step(metric=1.0)
    assert float(sched.current_lr) == pytest.approx(0.2)
    sched.step(metric=2.0)
    assert float(sched.current_lr) == pytest.approx(0.1)


def test_plateau_step_keywords():
    sched = S.ReduceLROnPlateau(1.0, factor=0.5, patience=0)
    sched.step(metric=1.0, epoch=5)
    assert int(sched.last_epoch.value) == 5
    sched.step(metrics=2.0)                                         # torch's keyword
    assert int(sched.last_epoch.value) == 6 and float(sched.current_lr) == 0.5
    with pytest.raises(TypeError, match='not both'):
        sched.step(1.0, metrics=1.0)
    with pytest.raises(TypeError, match='metric'):
        sched.step()
    with pytest.raises(ValueError, match='scalar'):
        sched.step(jnp.ones(3))


def test_t_cur_and_t_i():
    sched = S.CosineAnnealingWarmRestarts(base_lr=1.0, T_0=3, T_mult=2)
    for _ in range(5):
        sched.step()
    assert int(sched.T_cur.value) == 2 and int(sched.T_i.value) == 6     # epochs 3..8 are the second period
    jumped = S.CosineAnnealingWarmRestarts(base_lr=1.0, T_0=3, T_mult=2)
    jumped.step(epoch=5)
    assert (int(jumped.T_cur.value), int(jumped.T_i.value)) == (2, 6)
    jumped.T_cur.value = 4                                           # moves the counter within the period
    assert int(jumped.last_epoch.value) == 7 and int(jumped.T_cur.value) == 4
    jumped.T_i.value = 6                                             # its current value: accepted
    with pytest.raises(ValueError, match='T_i'):
        jumped.T_i.value = 12
    with pytest.raises(ValueError, match='T_cur'):
        jumped.T_cur.value = 6
    state = jumped.state_dict()
    assert (state['T_cur'], state['T_i']) == (4, 6)
    state['T_cur'] = 1
    with pytest.raises(ValueError, match='T_cur'):
        S.CosineAnnealingWarmRestarts(base_lr=1.0, T_0=3, T_mult=2).load_state_dict(state)


def test_attach_optimizer():
    w = brainstate.ParamState(jnp.zeros(()))
    opt = bo.SGD(lr=0.5).register_trainable_weights({'w': w})
    warm = S.WarmupScheduler(base_lr=1.0, warmup_epochs=4, warmup_start_lr=0.25)
    warm.attach_optimizer(opt)
    assert opt.lr is warm and warm.optimizer is opt
    assert float(opt.current_lr) == pytest.approx(0.25)                  # the lr it will apply
    warm.step()
    assert float(opt.current_lr) == pytest.approx(0.4375)
    opt.update(_ones(opt))
    assert float(w.value) == pytest.approx(-0.4375)
    with pytest.raises(TypeError, match='OptaxOptimizer'):
        S.StepLR(0.1).attach_optimizer('not an optimizer')


def test_state_dict_has_braintools_keys_and_loads_theirs():
    sched = S.StepLR(base_lr=[0.1, 0.2], step_size=2, gamma=0.5)
    for _ in range(3):
        sched.step()
    state = sched.state_dict()
    assert {'last_epoch', 'base_lrs', 'current_lrs'} <= set(state)
    assert state['base_lrs'] == [0.1, 0.2] and state['current_lrs'] == pytest.approx([0.05, 0.1])
    # a braintools-style dict: plain Python values, base_lrs of another run (adopted, as braintools does)
    other = S.StepLR(base_lr=[1.0, 1.0], step_size=2, gamma=0.5)
    other.load_state_dict({'last_epoch': 3, 'base_lrs': [0.1, 0.2], 'current_lrs': [0.05, 0.1]})
    assert other.base_lrs == [0.1, 0.2] and int(other.last_epoch.value) == 3
    np.testing.assert_allclose(other.get_last_lr(), [0.05, 0.1], rtol=1e-6)
    # braintools' ReduceLROnPlateau keeps its lr in current_lrs (no 'lr' entry)
    plateau = S.ReduceLROnPlateau(base_lr=1.0)
    plateau.load_state_dict({'last_epoch': 4, 'base_lrs': [1.0], 'current_lrs': [0.01], 'best': 0.5,
                             'num_bad_epochs': 2, 'cooldown_counter': 0})
    assert float(plateau.current_lr) == pytest.approx(0.01) and float(plateau.best.value) == 0.5


def test_sequential_state_dict_carries_and_adopts_milestones():
    def make(milestones):
        return S.SequentialLR([S.LinearLR(0.1, start_factor=0.1, total_iters=3), S.ExponentialLR(0.1, 0.5)],
                              milestones=milestones)

    saved = make([3])
    for _ in range(4):
        saved.step()
    state = saved.state_dict()
    assert state['milestones'] == [3] and state['current_scheduler_idx'] == 1
    resumed = make([5])
    resumed.load_state_dict(state)
    assert resumed.milestones == [3]
    for _ in range(3):
        saved.step()
        resumed.step()
        assert float(resumed.current_lr) == pytest.approx(float(saved.current_lr))
    three = S.SequentialLR([S.ConstantLR(0.1, 1.0), S.ConstantLR(0.1, 1.0), S.ConstantLR(0.1, 1.0)], [2, 4])
    target = make([3])
    with pytest.raises(ValueError, match='milestones'):
        target.load_state_dict(three.state_dict())
    assert target.milestones == [3] and target.n_schedulers == 2


# ---------------------------------------------------------------------------------------- conventions
def test_torch_options():
    assert S.torch_options('CosineAnnealingLR') == {'past_T_max': 'cosine'}
    assert S.torch_options(S.OneCycleLR) == {'convention': 'torch', 'cycle_momentum': True}
    assert S.torch_options('CyclicLR') == {'cycle_momentum': True}
    assert S.torch_options('StepLR') == {}
    options = S.torch_options('CyclicLR')
    options['cycle_momentum'] = False                         # a fresh dict each time
    assert S.torch_options('CyclicLR') == {'cycle_momentum': True}
    with pytest.raises(ValueError, match='unknown'):
        S.torch_options('NoSuchLR')


def _cosine(t):
    return (1 + np.cos(np.pi * t)) / 2


def test_one_cycle_braintools_convention_formula():
    """Linear warm-up to max_lr at pct_start*total, anneal to max_lr/final_div_factor at total, then hold."""
    total, pct, top, div, final = 20, 0.3, 1.0, 10.0, 100.0
    epochs = np.arange(total + 5)
    warm = pct * total
    initial, end = top / div, top / final
    rise = initial + (top - initial) * np.minimum(epochs / warm, 1.0)
    progress = np.clip((epochs - warm) / (total - warm), 0.0, 1.0)
    for strategy, shape in (('cos', _cosine(progress)), ('linear', 1.0 - progress)):
        expected = np.where(epochs <= warm, rise, end + (top - end) * shape)
        sched = S.OneCycleLR(max_lr=top, total_steps=total, pct_start=pct, anneal_strategy=strategy,
                             div_factor=div, final_div_factor=final)
        np.testing.assert_allclose(np.asarray(sched(jnp.asarray(epochs))), expected, rtol=1e-5, err_msg=strategy)
        assert sched.base_lrs == [initial] and sched.min_lrs == [end] and sched.max_lrs == [top]


def test_one_cycle_torch_convention_formula():
    """torch: cosine warm-up to max_lr at pct*total - 1, cosine anneal to initial/final_div_factor at total - 1."""
    total, pct, top, div, final = 20, 0.3, 1.0, 10.0, 100.0
    epochs = np.arange(total)
    rise_end = pct * total - 1
    initial, end = top / div, top / div / final
    expected = np.where(epochs <= rise_end, top + (initial - top) * _cosine(epochs / rise_end),
                        end + (top - end) * _cosine((epochs - rise_end) / (total - 1 - rise_end)))
    sched = S.OneCycleLR(max_lr=top, total_steps=total, pct_start=pct, div_factor=div, final_div_factor=final,
                         convention='torch')
    np.testing.assert_allclose(np.asarray(sched(jnp.asarray(epochs))), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="convention='torch'"):
        S.OneCycleLR(max_lr=top, total_steps=total, three_phase=True)
    with pytest.raises(ValueError, match='convention'):
        S.OneCycleLR(max_lr=top, total_steps=total, convention='fastai')


def test_one_cycle_momentum_follows_the_braintools_phases():
    sched = S.OneCycleLR(max_lr=1.0, total_steps=10, pct_start=0.4, cycle_momentum=True, base_momentum=0.8,
                         max_momentum=0.9)
    momenta = [float(sched.momentum_at(e)) for e in (0, 2, 4, 7, 10)]
    np.testing.assert_allclose(momenta, [0.9, 0.85, 0.8, 0.8 + 0.1 * (1 - _cosine(0.5)), 0.9], rtol=1e-6)


def test_one_cycle_pct_start_bounds():
    """pct_start=0 (no warm-up) is accepted, as torch does; 1 (no annealing) is refused, as braintools does."""
    for convention in ONE_CYCLE_CONVENTIONS:
        sched = S.OneCycleLR(max_lr=1.0, total_steps=10, pct_start=0.0, convention=convention)
        values = np.asarray(sched(jnp.arange(10)))
        assert np.all(np.diff(values) <= 1e-7) and values[0] >= 0.9          # starts near max_lr and decays
    with pytest.raises(ValueError, match='pct_start'):
        S.OneCycleLR(max_lr=1.0, total_steps=10, pct_start=1.0)


def test_momentum_cycling_is_opt_in():
    """braintools has no momentum cycling: by default a OneCycleLR/CyclicLR leaves SGD without momentum."""
    assert S.OneCycleLR(1.0, 10).current_momentum is None and S.CyclicLR(0.1, 1.0, 3).current_momentum is None
    w = brainstate.ParamState(jnp.zeros(()))
    opt = bo.SGD(lr=S.OneCycleLR(max_lr=1.0, total_steps=10)).register_trainable_weights({'w': w})
    for _ in range(2):
        opt.update(_ones(opt))
    assert float(w.value) == pytest.approx(-2 * 0.04)        # plain SGD twice at the initial lr: no momentum
    assert 'momentum_buffer' not in opt.buffers()
    adagrad = bo.Adagrad(lr=S.CyclicLR(0.01, 0.1, 4))         # an optimizer without momentum accepts it
    adagrad.register_trainable_weights({'w': brainstate.ParamState(jnp.ones(()))})
    adagrad.update(_ones(adagrad))


def test_cyclic_step_size_down_shapes_the_falling_half():
    """braintools 0.3 ignored step_size_down (a bug); the fall takes step_size_down steps here."""
    sched = S.CyclicLR(0.0, 1.0, step_size_up=2, step_size_down=4)
    np.testing.assert_allclose(np.asarray(sched(jnp.arange(8))), [0, 0.5, 1, 0.75, 0.5, 0.25, 0, 0.5], atol=1e-7)


def test_a_braintools_style_subclass_works():
    """braintools users write schedulers as ``get_lr()`` reading ``self.last_epoch.value``: that works too."""

    class HalfEvery(S.LRScheduler):
        def __init__(self, base_lr=1.0, period=2, last_epoch=0):
            self.period = period
            super().__init__(base_lr, last_epoch)

        def get_lr(self):
            factor = 0.5 ** (self.last_epoch.value // self.period)
            return [base * factor for base in self.base_lrs]

    assert HalfEvery(base_lr=[1.0, 0.1], last_epoch=2).get_last_lr() == pytest.approx([0.5, 0.05])
    sched = HalfEvery(base_lr=0.1)
    w = brainstate.ParamState(jnp.zeros(()))
    opt = bo.SGD(lr=sched).register_trainable_weights({'w': w})

    @brainstate.transform.jit
    def train_step():
        opt.update(_ones(opt))
        sched.step()
        return sched.current_lrs.value[0]

    assert [float(train_step()) for _ in range(4)] == pytest.approx([0.1, 0.05, 0.05, 0.025])
    assert float(w.value) == pytest.approx(-(0.1 + 0.1 + 0.05 + 0.05))
    with pytest.raises(NotImplementedError, match='_formula'):
        sched(3)
    eager = HalfEvery(base_lr=1.0, period=2, last_epoch=2)
    assert float(eager.current_lr) == 0.5
    eager.period = 1                          # a custom attribute: the cached compiled copy is dropped
    assert float(eager.current_lr) == 0.25
