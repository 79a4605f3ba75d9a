"""Learning-rate schedulers: torch / optax reference values, tracing, checkpoints, groups, momentum.

Reference values: ``tests/golden/torch_schedulers.npz`` (torch 2.13, written by
``scripts/make_torch_scheduler_golden.py``; it stores each case's spec, which
is also how the schedulers here are built) and optax schedule functions
(computed live). To keep compile time low, the schedulers of a test are
stepped together: one compiled ``for_loop`` over all of them, one jitted
per-step function for all of them, and an eager Python loop.
"""

import functools
import json
import os
import sys

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import braintools_optim as bo
from braintools_optim import schedulers as S

GOLDEN = np.load(os.path.join(os.path.dirname(__file__), 'golden', 'torch_schedulers.npz'))
TORCH_CASES = sorted({key.split('/')[0] for key in GOLDEN.files})
N = 121  # steps run for every case (torch cases have 120 or 121)

# The traceable twins of the script's FUNCTIONS (same maths, jnp instead of Python control flow).
FUNCTIONS = {
    'inv_linear': lambda e: 1.0 / (1.0 + 0.05 * e),
    'warm_then_decay': lambda e: jnp.minimum(1.0, (e + 1) / 10.0) * 0.95 ** jnp.maximum(0, e - 10),
    'mult_periodic': lambda e: 0.97 + 0.02 * (e % 4 == 0),
    'decay_cycle': lambda c: 1.0 / (1.0 + 0.5 * (c - 1)),
    'decay_iter': lambda e: 1.0 / (1.0 + 0.01 * e),
}


def build(spec, base_lr=None, **overrides):
    """Build our scheduler from a golden spec (torch's argument names, callables by name)."""
    base_lr = spec.get('base_lr', base_lr)
    if spec['cls'] == 'ChainedScheduler':
        return S.ChainedScheduler([build(child, base_lr, **overrides) for child in spec['schedulers']])
    if spec['cls'] == 'SequentialLR':
        return S.SequentialLR([build(child, base_lr, **overrides) for child in spec['schedulers']],
                              spec['milestones'])
    kwargs = S.torch_options(spec['cls'])                # torch's behaviour where braintools' is the default
    kwargs.update(overrides if spec['cls'] in ('CyclicLR', 'OneCycleLR') else {})
    for key, value in spec.get('kwargs', {}).items():
        if key in ('lr_lambda', 'scale_fn'):
            value = [FUNCTIONS[v] for v in value] if isinstance(value, list) else FUNCTIONS[value]
        kwargs[key] = value
    cls = getattr(S, spec['cls'])
    if spec['cls'] == 'OneCycleLR' or 'base_lr' in kwargs:
        return cls(**kwargs)
    return cls(base_lr, **kwargs)


def golden(name):
    spec = json.loads(str(GOLDEN[f'{name}/spec']))
    out = {'spec': spec, 'lr': GOLDEN[f'{name}/lr']}
    for extra in ('momentum', 'metrics'):
        if f'{name}/{extra}' in GOLDEN.files:
            out[extra] = GOLDEN[f'{name}/{extra}']
    return out


def metrics_for(name):
    """The metric stream for a plateau case (padded to N), else None."""
    if name in TORCH_CASES and 'metrics' in golden(name):
        values = golden(name)['metrics']
        return np.concatenate([values, np.full(N - len(values), values[-1])]).astype(np.float32)
    return None


# Cases without a torch counterpart (optax semantics, braintools-only arguments, nesting).
def _extra_cases():
    return {
        'warmup': S.WarmupScheduler(0.1, warmup_epochs=20, warmup_start_lr=0.01),
        'warmup_groups': S.WarmupScheduler([0.1, 0.2], warmup_epochs=10, warmup_start_lr=[0.0, 0.05]),
        'warmup_cosine': S.WarmupCosineSchedule(0.1, warmup_steps=15, total_steps=100, warmup_start_lr=0.001,
                                                eta_min=0.002),
        'exp_decay': S.ExponentialDecayLR(0.1, decay_steps=10, decay_rate=0.8, transition_begin=5),
        'exp_decay_staircase': S.ExponentialDecayLR(0.1, decay_steps=12, decay_rate=0.5, staircase=True,
                                                    end_value=0.01),
        'exp_decay_growth': S.ExponentialDecayLR(0.01, decay_steps=7, decay_rate=1.05, end_value=0.03,
                                                 transition_begin=3),
        'piecewise_optax': S.PiecewiseConstantSchedule(0.1, boundaries_and_scales={20: 0.5, 50: 0.1, 90: 2.0}),
        'piecewise_values': S.PiecewiseConstantSchedule([0.1, 0.3], boundaries=[30, 60], values=[0.1, 0.05, 0.001]),
        'nested': S.SequentialLR([
            S.WarmupScheduler(0.1, warmup_epochs=10),
            S.ChainedScheduler([S.ExponentialLR(0.1, gamma=0.98),
                                S.MultiplicativeLR(0.1, lr_lambda=FUNCTIONS['mult_periodic'])]),
            S.SequentialLR([S.ConstantLR(0.1, factor=0.5, total_iters=10), S.StepLR(0.1, step_size=5)], [20]),
        ], milestones=[10, 70]),
        'multiplicative_groups': S.MultiplicativeLR([0.1, 0.2], lr_lambda=[FUNCTIONS['mult_periodic'],
                                                                           lambda e: 0.99]),
    }


@functools.lru_cache(maxsize=None)
def _optax_references():
    """optax schedule functions for the extra cases, as (N,) or (N, groups) arrays."""
    steps = jnp.arange(N)
    ev = lambda schedule: np.asarray(jax.jit(jax.vmap(schedule))(steps), np.float64)
    return {
        'warmup': ev(optax.linear_schedule(0.01, 0.1, 20)),
        'warmup_groups': np.stack([ev(optax.linear_schedule(0.0, 0.1, 10)),
                                   ev(optax.linear_schedule(0.05, 0.2, 10))], axis=1),
        'warmup_cosine': ev(optax.warmup_cosine_decay_schedule(0.001, 0.1, 15, 100, end_value=0.002)),
        'exp_decay': ev(optax.exponential_decay(0.1, 10, 0.8, transition_begin=5)),
        'exp_decay_staircase': ev(optax.exponential_decay(0.1, 12, 0.5, staircase=True, end_value=0.01)),
        'exp_decay_growth': ev(optax.exponential_decay(0.01, 7, 1.05, transition_begin=3, end_value=0.03)),
        'piecewise_optax': ev(optax.piecewise_constant_schedule(0.1, {20: 0.5, 50: 0.1, 90: 2.0})),
        'piecewise_values': np.stack([ev(optax.piecewise_constant_schedule(0.1, {30: 0.5, 60: 0.02}))] * 2,
                                     axis=1),
    }


def all_cases():
    cases = {name: build(golden(name)['spec']) for name in TORCH_CASES}
    cases.update(_extra_cases())
    return cases


# One case (at least) of every scheduler class, for the tests that compile per scheduler object.
REPRESENTATIVE = ['step_groups', 'multistep', 'constant', 'linear_warmup', 'exponential', 'polynomial', 'cosine',
                  'warm_restarts_mult2', 'cyclic_exp_range', 'onecycle_three_phase', 'plateau_min_rel',
                  'plateau_max_abs', 'lambda_groups', 'multiplicative', 'chained_three', 'sequential', 'warmup',
                  'warmup_cosine', 'exp_decay_staircase', 'piecewise_optax', 'piecewise_values', 'nested']


def representative_cases():
    cases = all_cases()
    assert {type(cases[name]) for name in REPRESENTATIVE} == {
        getattr(S, cls) for cls in S.__all__ if cls not in ('LRScheduler', 'plot', 'schedule_values', 'torch_options')}
    return {name: cases[name] for name in REPRESENTATIVE}


# ---------------------------------------------------------------------------------------- harness
def _read(sched):
    momentum = getattr(sched, 'current_momentum', None)
    return sched.current_lr, momentum


def _advance(sched, metric):
    if isinstance(sched, S.ReduceLROnPlateau):
        sched.step(metric)
    else:
        sched.step()


def _metrics_matrix(names):
    columns = [metrics_for(name) if metrics_for(name) is not None else np.zeros(N, np.float32) for name in names]
    return np.stack(columns, axis=1)


def run_for_loop(cases, steps=N):
    """Step every scheduler ``steps`` times inside one compiled for_loop; lrs (and momenta) per step."""
    names = list(cases)
    metrics = jnp.asarray(_metrics_matrix(names)[:steps])

    @brainstate.transform.jit
    def run(metrics):
        def body(row):
            out = {}
            for i, name in enumerate(names):
                out[name] = _read(cases[name])
                _advance(cases[name], row[i])
            return out
        stepped = brainstate.transform.for_loop(body, metrics)
        # the optax-style pure schedule function at every epoch (no State involved), for the schedulers
        # whose current_lr is not simply lr_at(last_epoch) (elsewhere the two are the same code)
        pure = {name: cases[name](jnp.arange(steps)) for name in names
                if type(cases[name])._lr_from_state is not S.LRScheduler._lr_from_state
                and not isinstance(cases[name], S.ReduceLROnPlateau)}
        return stepped, pure

    stepped, pure = run(metrics)
    out = {name: jax.tree.map(np.asarray, stepped[name]) for name in names}
    for name, values in pure.items():
        out[name] = out[name] + (np.asarray(values),)
    return out


def run_eager(cases, steps=N):
    names = list(cases)
    metrics = _metrics_matrix(names)
    out = {name: [] for name in names}
    for k in range(steps):
        for i, name in enumerate(names):
            out[name].append(jax.tree.map(np.asarray, _read(cases[name])))
            _advance(cases[name], float(metrics[k, i]))
    return {name: jax.tree.map(lambda *xs: np.stack(xs), *rows) for name, rows in out.items()}


def _stepper(cases):
    """``run(start, steps)``: one jitted call per step that reads every scheduler (lr, momentum) and steps it
    with that step's metric; ``run.traces`` counts the traces."""
    names = list(cases)
    metrics = _metrics_matrix(names)
    traces = []

    @brainstate.transform.jit
    def one_step(row):
        traces.append(1)
        out = {}
        for i, name in enumerate(names):
            out[name] = _read(cases[name])
            _advance(cases[name], row[i])
        return out

    def run(start, steps):
        rows = [one_step(jnp.asarray(metrics[start + j])) for j in range(steps)]
        return {name: jax.tree.map(lambda *xs: np.stack([np.asarray(x) for x in xs]), *[r[name] for r in rows])
                for name in names}
    run.traces = traces
    return run


@pytest.fixture(scope='module')
def for_loop_results():
    return run_for_loop(all_cases())


def _as_2d(values):
    values = np.asarray(values, np.float64)
    return values[:, None] if values.ndim == 1 else values


# ---------------------------------------------------------------------------------------- reference values
@pytest.mark.parametrize('name', TORCH_CASES)
def test_matches_torch(name, for_loop_results):
    ref = golden(name)
    steps = ref['spec']['steps']
    assert steps >= 100
    lr, momentum = for_loop_results[name][:2]
    assert lr.dtype == np.float32
    scale = np.max(np.abs(ref['lr']))
    np.testing.assert_allclose(_as_2d(lr)[:steps], ref['lr'], rtol=2e-5, atol=1e-6 * scale)
    if 'momentum' in ref:
        np.testing.assert_allclose(_as_2d(momentum)[:steps], ref['momentum'], rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize('name', ['warmup', 'warmup_groups', 'warmup_cosine', 'exp_decay', 'exp_decay_staircase',
                                  'exp_decay_growth', 'piecewise_optax', 'piecewise_values'])
def test_matches_optax(name, for_loop_results):
    expected = _optax_references()[name]
    lr = for_loop_results[name][0]
    np.testing.assert_allclose(lr, expected, rtol=2e-6, atol=1e-9)


def test_plateau_golden_cases_reduce_and_cool_down():
    """The plateau streams really exercise reductions, cooldown, min_lr and eps."""
    lr = golden('plateau_min_rel')['lr'][:, 0]
    drops = np.flatnonzero(np.diff(lr))
    assert len(drops) >= 5 and lr[-1] == pytest.approx(0.002)  # reaches min_lr
    assert np.min(np.diff(drops)) == 3 + 1 + 2                     # patience + 1 + cooldown between drops
    eps_lr = golden('plateau_eps')['lr'][:, 0]
    assert eps_lr[-1] == pytest.approx(1e-8)                       # the 1e-9 step is below eps


def test_schedule_function_equals_stepped_values(for_loop_results):
    """``scheduler(epochs)`` (optax-style, pure) gives the values stepping gives."""
    checked = 0
    for name, result in for_loop_results.items():
        if len(result) == 3:
            np.testing.assert_allclose(result[2], result[0], rtol=1e-5, atol=1e-12, err_msg=name)
            checked += 1
    assert checked == 10                            # composites and MultiplicativeLR
    sched = S.SequentialLR([S.LinearLR(1.0, 0.5, total_iters=2), S.ExponentialLR(1.0, 0.5)], [3])
    assert [float(sched(e)) for e in range(5)] == [0.5, 0.75, 1.0, 1.0, 0.5]   # eager, concrete epochs


# ---------------------------------------------------------------------------------------- tracing
CHECKPOINT_AT = 37


@pytest.fixture(scope='module')
def jit_results():
    """Every representative scheduler stepped by one jitted call per step (traced once), checkpointed at
    CHECKPOINT_AT, and a second set of fresh schedulers resumed from that checkpoint."""
    first = representative_cases()
    run_first = _stepper(first)
    head = run_first(0, CHECKPOINT_AT)
    saved = {name: jax.tree.map(np.asarray, sched.state_dict()) for name, sched in first.items()}
    tail = run_first(CHECKPOINT_AT, N - CHECKPOINT_AT)
    resumed = representative_cases()
    for name, sched in resumed.items():
        sched.load_state_dict(saved[name])
        assert int(sched.last_epoch.value) == CHECKPOINT_AT, name
    run_resumed = _stepper(resumed)
    resumed_tail = run_resumed(CHECKPOINT_AT, N - CHECKPOINT_AT)
    assert run_first.traces == [1] and run_resumed.traces == [1]
    stepped = {name: jax.tree.map(lambda a, b: np.concatenate([a, b]), head[name], tail[name]) for name in first}
    return stepped, resumed_tail


def test_eager_jit_and_for_loop_stepping_agree(for_loop_results, jit_results):
    """The same schedulers stepped eagerly, by a jitted step (traced once) and in a for_loop agree."""
    jitted, _ = jit_results
    eager = run_eager(representative_cases(), 60)
    for name in REPRESENTATIVE:
        expected = for_loop_results[name]
        for got, steps in ((jitted[name], N), (eager[name], 60)):
            np.testing.assert_allclose(got[0], expected[0][:steps], rtol=1e-6, atol=0, err_msg=name)
            if expected[1] is not None:
                np.testing.assert_allclose(got[1], expected[1][:steps], rtol=1e-6, atol=0, err_msg=name)


def test_checkpoint_mid_schedule_resumes_identically(jit_results):
    """state_dict (as numpy) -> fresh scheduler -> load_state_dict: the rest of the schedule is identical."""
    stepped, resumed_tail = jit_results
    for name in REPRESENTATIVE:
        np.testing.assert_array_equal(resumed_tail[name][0], stepped[name][0][CHECKPOINT_AT:], err_msg=name)
        if stepped[name][1] is not None:
            np.testing.assert_array_equal(resumed_tail[name][1], stepped[name][1][CHECKPOINT_AT:], err_msg=name)


OPTIMIZER_CASES = ['chained_constant_exp', 'chained_warm_cos', 'chained_multiplicative', 'sequential',
                   'sequential_restarts', 'onecycle_cos', 'cyclic_triangular2', 'warm_restarts_mult2',
                   'multiplicative', 'plateau_min_rel']


def test_schedulers_drive_sgd_inside_one_jitted_step():
    """SGD applies the lr torch would; opt.current_lr is that lr; the training step is traced once."""
    setups = []
    for name in OPTIMIZER_CASES:
        sched = build(golden(name)['spec'], cycle_momentum=False)    # plain SGD has no momentum to cycle
        w = brainstate.ParamState(jnp.zeros(()))
        setups.append((name, sched, w, bo.SGD(lr=sched).register_trainable_weights([w])))
    metrics = _metrics_matrix(OPTIMIZER_CASES)
    traces = []

    @brainstate.transform.jit
    def train_step(row):
        traces.append(1)
        reported, applied = [], []
        for i, (name, sched, w, opt) in enumerate(setups):
            w.value = jnp.zeros(())
            reported.append(opt.current_lr)
            opt.update({0: jnp.full((), 2.0)})
            applied.append(-w.value / 2.0)
            _advance(sched, row[i])
        return jnp.stack(reported), jnp.stack(applied)

    reported, applied = zip(*[train_step(jnp.asarray(metrics[k])) for k in range(120)])
    reported, applied = np.stack(reported), np.stack(applied)
    assert len(traces) == 1
    assert all(opt._num_traces == 1 for *_, opt in setups)
    np.testing.assert_allclose(applied, reported, rtol=1e-6)
    for i, name in enumerate(OPTIMIZER_CASES):
        np.testing.assert_allclose(applied[:, i], golden(name)['lr'][:120, 0], rtol=2e-5, atol=1e-7, err_msg=name)


GROUP_CASES = ['step_groups', 'cyclic_exp_range', 'onecycle_linear', 'chained_three', 'sequential_two',
               'plateau_max_abs']


def test_per_group_schedulers_drive_sgd_parameter_groups():
    """A list base_lr gives each optimizer parameter group torch's per-group learning rate."""
    setups = []
    for name in GROUP_CASES:
        sched = build(golden(name)['spec'], cycle_momentum=False)
        w0, w1 = brainstate.ParamState(jnp.zeros(())), brainstate.ParamState(jnp.zeros(()))
        opt = bo.SGD(lr=sched).register_trainable_weights({'a': w0})
        opt.add_param_group({'b': w1})
        setups.append((sched, (w0, w1), opt))
    metrics = _metrics_matrix(GROUP_CASES)
    traces = []

    @brainstate.transform.jit
    def train_step(row):
        traces.append(1)
        applied = []
        for i, (sched, ws, opt) in enumerate(setups):
            for w in ws:
                w.value = jnp.zeros(())
            opt.update({key: jnp.ones(()) for key in opt.param_states})
            applied.append(jnp.stack([-w.value for w in ws]))
            _advance(sched, row[i])
        return jnp.stack(applied)

    applied = np.stack([train_step(jnp.asarray(metrics[k])) for k in range(120)])
    assert len(traces) == 1
    for i, name in enumerate(GROUP_CASES):
        np.testing.assert_allclose(applied[:, i], golden(name)['lr'][:120], rtol=2e-5, atol=1e-7, err_msg=name)


def test_plateau_reacts_to_a_traced_metric():
    sched = S.ReduceLROnPlateau(1.0, factor=0.5, patience=1, cooldown=1)
    traces = []

    @brainstate.transform.jit
    def evaluate(loss):
        traces.append(1)
        sched.step(loss)
        return sched.current_lr

    lrs = [float(evaluate(jnp.float32(m))) for m in [1.0, 0.9, 0.95, 0.95, 0.95, 0.95, 0.95, 0.5, 0.6, 0.6]]
    assert lrs == [1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25, 0.25, 0.25, 0.125]     # torch's values
    assert len(traces) == 1
    assert int(sched.num_bad_epochs.value) == 0 and int(sched.cooldown_counter.value) == 1
    assert float(sched.best.value) == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------- checkpoints
def test_state_dict_holds_every_piece_of_state():
    plateau = S.ReduceLROnPlateau(0.1, patience=0)
    plateau.step(1.0)
    plateau.step(2.0)
    state = plateau.state_dict()
    assert set(state) == {'last_epoch', 'lr', 'best', 'num_bad_epochs', 'cooldown_counter', 'base_lrs', 'current_lrs'}
    assert float(state['best']) == 1.0 and float(state['lr']) == pytest.approx(0.01)
    chained = S.ChainedScheduler([S.MultiplicativeLR(0.1, lr_lambda=lambda e: 0.5), S.StepLR(0.1, 2)])
    chained.step()
    state = chained.state_dict()
    assert set(state) == {'last_epoch', 'schedulers', 'base_lrs', 'current_lrs'}
    assert set(state['schedulers'][0]) == {'last_epoch', 'factor', 'base_lrs', 'current_lrs'}
    assert float(state['schedulers'][0]['factor']) == 0.5


def test_load_state_dict_rejects_a_bad_dict_and_changes_nothing():
    sched = S.SequentialLR([S.ConstantLR(0.1), S.ExponentialLR(0.1)], [3])
    for _ in range(5):
        sched.step()
    before = jax.tree.map(np.asarray, sched.state_dict())
    bad = jax.tree.map(np.asarray, sched.state_dict())
    bad['last_epoch'] = np.int32(0)
    bad['schedulers'] = bad['schedulers'][:1]
    with pytest.raises(ValueError, match='schedulers'):
        sched.load_state_dict(bad)
    with pytest.raises(ValueError, match='missing'):
        S.ReduceLROnPlateau(0.1).load_state_dict({'last_epoch': 0})
    with pytest.raises(ValueError, match='shape'):
        S.StepLR([0.1, 0.2]).load_state_dict({'last_epoch': np.zeros(2)})
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, sched.state_dict()), before)


def test_optimizer_checkpoint_includes_the_scheduler():
    sched = S.ReduceLROnPlateau(0.1, factor=0.5, patience=0)
    w = brainstate.ParamState(jnp.zeros(()))
    opt = bo.SGD(lr=sched).register_trainable_weights([w])
    for metric in [1.0, 2.0, 3.0]:
        sched.step(metric)
    state = opt.state_dict()
    other = S.ReduceLROnPlateau(0.1, factor=0.5, patience=0)
    opt2 = bo.SGD(lr=other).register_trainable_weights([brainstate.ParamState(jnp.zeros(()))])
    opt2.load_state_dict(state)
    assert float(opt2.current_lr) == pytest.approx(0.025)
    assert float(other.best.value) == 1.0


# ---------------------------------------------------------------------------------------- groups, dtypes
def test_per_group_learning_rates():
    sched = S.CosineAnnealingLR([0.1, 0.01], T_max=10, eta_min=[0.0, 0.001])
    assert sched.current_lr.shape == (2,)
    assert len(sched.get_last_lr()) == 2
    assert [float(x) for x in sched.get_last_lr()] == pytest.approx([0.1, 0.01])
    assert sched(jnp.arange(5)).shape == (5, 2)
    scalar = S.CosineAnnealingLR(0.1, T_max=10)
    assert scalar.current_lr.shape == () and len(scalar.get_last_lr()) == 1
    cyc = S.CyclicLR(0.01, max_lr=[0.1, 0.2], step_size_up=4)
    assert cyc.base_lrs == [0.01, 0.01] and cyc.current_lr.shape == (2,)
    with pytest.raises(ValueError, match='groups'):
        S.CosineAnnealingLR([0.1, 0.01], eta_min=[0.0, 0.0, 0.0])
    with pytest.raises(ValueError, match='parameter groups'):
        S.ChainedScheduler([S.StepLR([0.1, 0.2]), S.StepLR(0.1)])


def test_dtype_follows_x64():
    assert S.StepLR(0.1).current_lr.dtype == jnp.float32
    with jax.enable_x64(True):
        scheds = [S.StepLR(0.1), S.CyclicLR(0.1, 1.0, 3, cycle_momentum=True), S.ReduceLROnPlateau(0.1),
                  S.OneCycleLR(1.0, 10),
                  S.SequentialLR([S.LinearLR(0.1), S.MultiplicativeLR(0.1, lr_lambda=lambda e: 0.9)], [2])]

        @brainstate.transform.jit
        def step_all():
            for sched in scheds:
                sched.step(1.0) if isinstance(sched, S.ReduceLROnPlateau) else sched.step()
            return [sched.current_lr for sched in scheds] + [scheds[1].current_momentum]

        assert all(value.dtype == jnp.float64 for value in step_all())
        assert scheds[0].current_lr.dtype == jnp.float64


# ---------------------------------------------------------------------------------------- behaviour
def test_cosine_past_t_max_holds_by_default_and_continues_like_torch_on_request():
    epochs = np.arange(9)
    torch_like = S.CosineAnnealingLR(1.0, T_max=4, past_T_max='cosine')
    np.testing.assert_allclose(np.asarray(torch_like(jnp.asarray(epochs))),
                               (1 + np.cos(np.pi * epochs / 4)) / 2, atol=1e-6)
    held = S.CosineAnnealingLR(1.0, T_max=4, eta_min=0.1)
    np.testing.assert_allclose(np.asarray(held(jnp.asarray(epochs))),
                               0.1 + 0.9 * (1 + np.cos(np.pi * np.minimum(epochs, 4) / 4)) / 2, atol=1e-6)


def test_large_counters_stay_exact():
    """Cycle positions and restarts use integer arithmetic, so they stay exact far into training."""
    restarts = S.CosineAnnealingWarmRestarts(1.0, T_0=10, T_mult=2)
    boundary = 10 * (2 ** 26 - 1)
    values = np.asarray(restarts(jnp.asarray([boundary - 1, boundary, boundary + 1])))
    assert values[0] < 1e-3 and values[1] == 1.0 and values[2] > 0.999
    cyclic = S.CyclicLR(0.1, 1.0, step_size_up=2000)
    np.testing.assert_allclose(np.asarray(cyclic(jnp.asarray([10 ** 9, 10 ** 9 + 2000, 10 ** 9 + 1000]))),
                               [0.1, 1.0, 0.55], rtol=1e-6)


def test_one_cycle_is_clamped_after_total_steps():
    sched = S.OneCycleLR(1.0, total_steps=10)
    values = np.asarray(sched(jnp.arange(20)))
    assert np.all(values[10:] == values[10])
    assert S.OneCycleLR(1.0, epochs=2, steps_per_epoch=5).total_steps == 10


def test_momentum_is_none_without_cycle_momentum():
    assert S.CyclicLR(0.1, 1.0, 3, cycle_momentum=False).current_momentum is None
    assert S.OneCycleLR(1.0, 10, cycle_momentum=False).current_momentum is None


def test_sequential_resets_the_active_child_at_milestones():
    first, second = S.LinearLR(1.0, total_iters=4), S.ExponentialLR(1.0, gamma=0.5)
    sched = S.SequentialLR([first, second], milestones=[3])
    for _ in range(3):
        sched.step()
    assert int(first.last_epoch.value) == 2 and int(second.last_epoch.value) == 0
    sched.step()
    assert int(second.last_epoch.value) == 1 and float(sched.current_lr) == 0.5
    assert int(sched.last_epoch.value) == 4


def test_step_with_an_epoch_jumps():
    sched = S.MultiplicativeLR(1.0, lr_lambda=lambda e: 0.5)
    sched.step(3)
    assert float(sched.current_lr) == 0.125
    sched.step()
    assert float(sched.current_lr) == 0.0625


def test_invalid_arguments():
    with pytest.raises(ValueError):
        S.StepLR(0.1, step_size=0)
    with pytest.raises(ValueError):
        S.StepLR(-0.1)
    with pytest.raises(ValueError):
        S.CyclicLR(0.1, 1.0, mode='sawtooth')
    with pytest.raises(ValueError):
        S.OneCycleLR(1.0)
    with pytest.raises(ValueError):
        S.OneCycleLR(1.0, 10, anneal_strategy='cubic')
    with pytest.raises(ValueError):
        S.ReduceLROnPlateau(0.1, factor=1.0)
    with pytest.raises(ValueError):
        S.ReduceLROnPlateau(0.1, mode='best')
    with pytest.raises(TypeError):
        S.LambdaLR(0.1, lr_lambda=None)
    with pytest.raises(ValueError):
        S.LambdaLR([0.1, 0.2], lr_lambda=[lambda e: 1.0])
    with pytest.raises(TypeError):
        S.ChainedScheduler([S.ReduceLROnPlateau(0.1)])
    with pytest.raises(ValueError):
        S.SequentialLR([S.StepLR(0.1)], milestones=[3])
    with pytest.raises(ValueError):
        S.WarmupCosineSchedule(0.1, warmup_steps=10, total_steps=10)
    with pytest.raises(ValueError):
        S.PiecewiseConstantSchedule(0.1, boundaries=[1, 2], values=[1.0])
    with pytest.raises(TypeError, match='metric'):
        S.ReduceLROnPlateau(0.1).step()
    with pytest.raises(NotImplementedError, match='metrics'):
        S.ReduceLROnPlateau(0.1)(3)


def test_braintools_compatible_signatures():
    assert S.StepLR().step_size == 30 and S.StepLR().base_lr == 1e-3
    assert S.MultiStepLR().milestones == [30, 60, 90]
    assert S.ExponentialDecayLR(0.1, 100, 0.9).decay_steps == 100
    assert S.PiecewiseConstantSchedule().values == [1.0, 0.1, 0.01]
    assert S.WarmupScheduler(0.1, 3, 0.01).warmup_start_lr == 0.01
    assert S.OneCycleLR(0.5, 100).base_lrs == [0.5 / 25]


# ---------------------------------------------------------------------------------------- plotting
def test_plot():
    matplotlib = pytest.importorskip('matplotlib')     # an optional extra ('examples')
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    ax = S.plot(S.CyclicLR(0.01, 0.1, 5), steps=30, momentum=True)
    assert len(ax.lines) == 1
    plt.close('all')


def test_schedule_values():
    plateau = S.ReduceLROnPlateau(1.0, factor=0.5, patience=0)
    plateau.step(5.0)
    values = S.schedule_values(plateau, steps=4, metrics=[1.0, 2.0, 3.0])
    np.testing.assert_allclose(values, [1.0, 1.0, 0.5, 0.25])
    assert int(plateau.last_epoch.value) == 1 and float(plateau.best.value) == 5.0   # restored
    np.testing.assert_allclose(S.schedule_values(optax.linear_schedule(0.0, 1.0, 4), 5), [0, .25, .5, .75, 1])
    assert S.schedule_values(S.StepLR([1.0, 2.0], 2), 4).shape == (4, 2)


def test_plot_without_matplotlib_says_so(monkeypatch):
    monkeypatch.setitem(sys.modules, 'matplotlib.pyplot', None)
    with pytest.raises(ImportError, match='pip install matplotlib'):
        S.plot(S.StepLR(0.1), steps=3)
