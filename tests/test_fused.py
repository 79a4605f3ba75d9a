"""Fused layouts (``fused=None|True``) against the per-parameter path (``fused=False``).

Element-wise rules give the same numbers on a concatenation as on each array
(flat buckets); per-tensor rules give the same numbers mapped over a stack of
same-shaped parameters as on each of them (stacks). Either way both layouts
must agree to one ulp, step after step, with decay, clipping, groups,
schedules and late registration; checkpoints move between layouts. The
subjects are the registry's entries whose ``fused_layout`` is ``'flat'`` or
``'stacked'`` (``optim_db``).

White-box reads (no public accessor says how buffers are stored): each
parameter group's storage ``opt._storage[g]``, its ``layout`` (``FlatLayout`` /
``StackedLayout`` / ``PerParamLayout``, with ``buckets``) and its buffer States
``states[name]``.
"""

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo
from braintools_optim._layout import DEFAULT_MAX_FUSED_SIZE, FlatLayout, PerParamLayout
from braintools_optim._stacked import StackedLayout

from optim_db import ELEMENTWISE as ELEMENTWISE_INFOS, FUSED, NOT_ELEMENTWISE, OPTIM_DB, STACKED as STACKED_INFOS

SHAPES = {'w1': (4, 3), 'b1': (3,), 'w2': (3, 5), 'scalar': (), 'b2': (5,)}
#: for per-tensor rules: stacks of two and three members of each rank, and members alone
STACK_SHAPES = {'w1': (4, 3), 'b1': (3,), 'w2': (4, 3), 'scalar': (), 'b2': (3,), 'w3': (3, 5), 's2': (),
                't1': (2, 3, 4), 'w4': (4, 3), 't2': (2, 3, 4), 'v': (7,)}
MAKE = {info.name: info.make for info in OPTIM_DB.values()}
ELEMENTWISE = [info.name for info in ELEMENTWISE_INFOS]
PER_TENSOR = [info.name for info in NOT_ELEMENTWISE if not info.wrapper]     # Lookahead fuses as its inner one
STACKED = [info.name for info in STACKED_INFOS]
#: fused, but not element-wise: stacks, and Prodigy's flat buckets (a global sum over all of them)
FUSED_PER_TENSOR = [info.name for info in FUSED if not info.elementwise]
PER_PARAMETER_ONLY = [info.name for info in OPTIM_DB.values() if info.fused_layout == 'per-parameter'
                      and not info.wrapper]
LAYOUT_CLASS = {'flat': FlatLayout, 'stacked': StackedLayout}
CLIPPED = {'grad_clip_norm': 0.5, 'grad_clip_value': 2.0, 'rescale_grad': 0.5, 'param_clip_value': 1.5}
#: every optimizer takes its one-step check with the whole gradient pipeline on (CLIPPED); these also
#: without it, and run the multi-step trajectories (each distinct kind of buffer and step: moments,
#: sign updates, three-moment Adan, trust ratios, factored and cover statistics, Newton-Schulz,
#: scalar products, global sums, line-search-free L-BFGS histories); CI time buys no more than that
ELEMENTWISE_SAMPLE = ['Adam', 'Adadelta', 'Lion', 'Adan', 'MomentumNesterov']
PER_TENSOR_SAMPLE = ['Lamb', 'Adafactor', 'SM3', 'Muon', 'Nadam', 'Prodigy', 'LBFGS', 'ScheduleFreeAdamW']


def _with_plain(names, sample):
    """(name, options) cases: every name with the pipeline on, the sample also without it."""
    return ([pytest.param(n, CLIPPED, id=f'clipped-{n}') for n in names] +
            [pytest.param(n, {}, id=f'plain-{n}') for n in names if n in sample])


def _layout(opt, group=0):
    """How parameter group ``group`` stores its buffers."""
    return opt._storage[group].layout


def _stored(opt, name):
    """The stored arrays of buffer ``name``, group after group (flat buckets or one per parameter)."""
    return [array for g in sorted(opt._storage) for array in opt._storage[g].states[name].value]


def _params(dtype=jnp.float32, seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    return {name: brainstate.ParamState(jnp.asarray(rng.normal(size=shape), dtype))
            for name, shape in shapes.items()}


def _grads(step, dtype=jnp.float32, shapes=SHAPES):
    rng = np.random.default_rng(100 + step)
    return {name: jnp.asarray(rng.normal(size=shape) * (1 + step), dtype) for name, shape in shapes.items()}


def _run(make, fused, steps=6, dtype=jnp.float32, shapes=SHAPES, **options):
    params = _params(dtype, shapes=shapes)
    opt = make(fused=fused, **options).register_trainable_weights(params)
    for step in range(steps):
        opt.update(_grads(step, dtype, shapes))
    return params, opt


def _assert_within_one_ulp(a, b):
    """``|a - b|`` at most one ulp of the array's largest element, in the array's own dtype.

    Element-wise ulp counts are meaningless where a moment update cancels
    (``beta m + (1 - beta) g`` with opposite signs): there XLA's choice to fuse
    a multiply-add into one FMA in one program and not in the other moves the
    small result by several of its own ulps while staying within one ulp of
    the terms. The array's scale is the honest yardstick.
    """
    a, b = np.asarray(a), np.asarray(b)
    assert a.dtype == b.dtype and a.shape == b.shape
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    same = (a64 == b64) | (np.isnan(a64) & np.isnan(b64))      # equal infinities (a float16 overflow) agree
    finite = np.abs(b64[np.isfinite(b64)])
    scale = np.max(finite) if finite.size else 0.0
    ulp = float(jnp.finfo(a.dtype).eps) * 2.0 ** np.floor(np.log2(scale)) if scale > 0 else 0.0
    with np.errstate(invalid='ignore'):
        error = np.max(np.where(same, 0.0, np.abs(a64 - b64)), initial=0.0)
    assert error <= ulp, (error, ulp)


def _assert_same_run(fused_run, plain_run):
    (p_fused, opt_fused), (p_plain, opt_plain) = fused_run, plain_run
    assert p_fused.keys() == p_plain.keys()
    for name in p_plain:
        _assert_within_one_ulp(p_fused[name].value, p_plain[name].value)
    plain_buffers = opt_plain.buffers()
    for buffer, values in opt_fused.buffers().items():
        for key, value in values.items():
            _assert_within_one_ulp(value, plain_buffers[buffer][key])


def test_the_elementwise_catalog_is_what_we_expect():
    assert set(ELEMENTWISE) == {'SGD', 'Momentum', 'MomentumNesterov', 'Adam', 'AdamW', 'Adadelta', 'RMSprop',
                                'Adagrad', 'Adamax', 'RAdam', 'Lion', 'Yogi', 'AdaBelief', 'Adan'}
    assert all(OPTIM_DB[name].cls.is_elementwise() for name in ELEMENTWISE)
    assert not any(OPTIM_DB[name].cls.is_elementwise() for name in PER_TENSOR)




def _one_step_from_the_same_state(make, dtype=jnp.float32, warmup=3, shapes=SHAPES, **options):
    """Both layouts take step ``warmup + 1`` from identical parameters and buffers."""
    params, plain = _run(make, False, steps=warmup, dtype=dtype, shapes=shapes, **options)
    copies = {name: brainstate.ParamState(state.value) for name, state in params.items()}
    fused = make(fused=True, **options).register_trainable_weights(copies)
    fused.load_state_dict(plain.state_dict())
    plain.update(_grads(warmup, dtype, shapes))
    fused.update(_grads(warmup, dtype, shapes))
    assert isinstance(_layout(fused), LAYOUT_CLASS[fused.fused_layout()])
    assert isinstance(_layout(plain), PerParamLayout)
    return (copies, fused), (params, plain)


@pytest.mark.parametrize('name, options', _with_plain(ELEMENTWISE, ELEMENTWISE_SAMPLE))
def test_one_fused_step_equals_the_per_parameter_step_within_one_ulp(name, options):
    _assert_same_run(*_one_step_from_the_same_state(MAKE[name], **options))


@pytest.mark.parametrize('name, options', _with_plain(FUSED_PER_TENSOR, PER_TENSOR_SAMPLE))
def test_one_stacked_step_equals_the_per_parameter_step_within_one_ulp(name, options):
    (fused_params, fused), plain = _one_step_from_the_same_state(MAKE[name], shapes=STACK_SHAPES, **options)
    _assert_same_run((fused_params, fused), plain)
    if name in STACKED:        # the same-shaped members really ran as stacks
        assert max(len(bucket.members) for bucket in _layout(fused).buckets) == 3
    for state, value in zip(fused._extra_states().values(), plain[1]._extra_states().values()):
        np.testing.assert_allclose(np.asarray(state.value), np.asarray(value.value), rtol=1e-6)   # Prodigy's d


@pytest.mark.parametrize('name', PER_TENSOR_SAMPLE)
def test_stacked_and_per_parameter_trajectories_stay_together(name):
    runs = [_run(MAKE[name], fused, shapes=STACK_SHAPES, **CLIPPED) for fused in (None, False)]
    for key in STACK_SHAPES:
        np.testing.assert_allclose(np.asarray(runs[0][0][key].value), np.asarray(runs[1][0][key].value),
                                   rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize('name', ['Lamb', 'Adafactor', 'Muon'])
def test_stacked_equals_per_parameter_in_float16_and_bfloat16(name):
    for dtype in (jnp.float16, jnp.bfloat16):
        _assert_same_run(*_one_step_from_the_same_state(MAKE[name], dtype=dtype, shapes=STACK_SHAPES))


@pytest.mark.parametrize('name', ELEMENTWISE_SAMPLE)
def test_fused_and_per_parameter_trajectories_stay_together(name):
    # each step agrees to one ulp; over several steps the differences may compound a little
    (p_fused, _), (p_plain, _) = _run(MAKE[name], True, **CLIPPED), _run(MAKE[name], False, **CLIPPED)
    for key in SHAPES:
        np.testing.assert_allclose(np.asarray(p_fused[key].value), np.asarray(p_plain[key].value),
                                   rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize('name', ['Adam', 'AdamW', 'SGD', 'Adadelta'])
def test_fused_equals_per_parameter_in_float16_and_bfloat16(name):
    for dtype in (jnp.float16, jnp.bfloat16):
        _assert_same_run(*_one_step_from_the_same_state(MAKE[name], dtype=dtype))


def test_groups_schedules_and_late_registration_bucket_separately():
    def run(fused):
        params = _params()
        first = {k: params[k] for k in ('w1', 'b1')}
        later = {k: params[k] for k in ('w2', 'b2', 'scalar')}
        scheduler = bo.StepLR(base_lr=[0.05, 0.01], step_size=2, gamma=0.5)
        opt = bo.AdamW(lr=scheduler, weight_decay=0.1, fused=fused, schedule_per_update=True)
        opt.register_trainable_weights(first)
        opt.add_param_group({k: later[k] for k in ('w2', 'b2')}, weight_decay=0.0)
        grads = lambda s: {k: g for k, g in _grads(s).items() if k != 'scalar'}
        for step in range(3):
            opt.update(grads(step))
        opt.register_trainable_weights({'scalar': later['scalar']})    # its own step count from 1
        for step in range(3, 6):
            opt.update(_grads(step))
        return params, opt

    fused, plain = run(True), run(False)
    _assert_same_run(fused, plain)
    # each parameter group has its own storage; the late parameter counts its steps from 3
    first, second = _layout(fused[1], 0).buckets, _layout(fused[1], 1).buckets
    assert [(len(b.members), b.step_offset) for b in first] == [(2, 0), (1, 3)]
    assert [(len(b.members), b.step_offset) for b in second] == [(2, 0)]
    assert len(_stored(fused[1], 'exp_avg')) == 3


def test_mixed_dtypes_get_one_bucket_each():
    params = {'a': brainstate.ParamState(jnp.ones((3,), jnp.float32)),
              'b': brainstate.ParamState(jnp.ones((2,), jnp.bfloat16)),
              'c': brainstate.ParamState(jnp.ones((4,), jnp.float32))}
    opt = bo.Adam(lr=0.1, fused=True).register_trainable_weights(params)
    assert [b.members for b in _layout(opt).buckets] == [(0, 2), (1,)]
    assert [v.dtype for v in _stored(opt, 'exp_avg')] == [jnp.float32, jnp.bfloat16]
    opt.update({'a': jnp.ones(3), 'b': jnp.ones(2, jnp.bfloat16), 'c': jnp.ones(4)})
    assert params['b'].value.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(params['a'].value), 0.9, rtol=1e-6)


def test_default_fuses_small_arrays_and_keeps_large_ones_alone():
    big = DEFAULT_MAX_FUSED_SIZE + 1
    params = {'small1': brainstate.ParamState(jnp.ones((10,))),
              'large': brainstate.ParamState(jnp.ones((big,))),
              'small2': brainstate.ParamState(jnp.ones((2, 3)))}
    opt = bo.Adam(lr=0.1).register_trainable_weights(params)
    assert opt.fused is None
    assert [b.members for b in _layout(opt).buckets] == [(0, 2), (1,)]
    # every byte the optimizer keeps is a moment: two buffers of exactly the parameter count
    stored = _stored(opt, 'exp_avg') + _stored(opt, 'exp_avg_sq')
    assert list(opt._storage[0].states) == ['exp_avg', 'exp_avg_sq']
    assert sum(a.size for a in stored) == 2 * (10 + big + 6)
    assert [a.shape for a in _stored(opt, 'exp_avg')] == [(16,), (big,)]


def test_only_steps_that_need_each_parameters_own_buffer_refuse_fused_true():
    for name in PER_PARAMETER_ONLY:
        opt = MAKE[name]().register_trainable_weights(_params())
        assert all(isinstance(storage.layout, PerParamLayout) for storage in opt._storage.values()), name
        with pytest.raises(ValueError, match='one buffer per parameter'):   # refused when built
            MAKE[name](fused=True)
    with pytest.raises(TypeError, match='fused'):
        bo.Adam(fused='yes')
    for name in PER_TENSOR:
        assert OPTIM_DB[name].cls.fused_layout() is None or MAKE[name](fused=True).fused is True


@pytest.mark.parametrize('name', STACKED)
def test_per_tensor_rules_stack_same_shaped_parameters(name):
    opt = MAKE[name]().register_trainable_weights(_params(shapes=STACK_SHAPES))
    layout = _layout(opt)
    assert isinstance(layout, StackedLayout)
    keys = list(STACK_SHAPES)
    stacks = [tuple(keys[i] for i in bucket.members) for bucket in layout.buckets]
    assert stacks == [('w1', 'w2', 'w4'), ('b1', 'b2'), ('scalar', 's2'), ('w3',), ('t1', 't2'), ('v',)]
    rule = opt._init_rule(opt._groups[0])
    fresh = {key: rule.init(jnp.zeros(shape)) for key, shape in STACK_SHAPES.items()}
    for buffer, state in opt._storage[0].states.items():
        for bucket, stored in zip(layout.buckets, state.value):
            one = fresh[keys[bucket.members[0]]][buffer].shape
            # a stack of n keeps (n, *buffer shape): a per-tensor scalar becomes (n,); a lone member its own shape
            assert stored.shape == (one if len(bucket.members) == 1 else (len(bucket.members),) + one)
        assert {k: v.shape for k, v in opt.buffers()[buffer].items()} == {k: fresh[k][buffer].shape for k in keys}


def test_stacks_keep_state_leaves_independent_of_the_parameter_count():
    params = {f'p{i}': brainstate.ParamState(jnp.ones((3, 2) if i % 2 else (4,))) for i in range(40)}
    leaves = lambda opt: sum(len(jax.tree.leaves(state.value))
                             for storage in opt._storage.values() for state in storage.states.values())
    assert leaves(bo.Lamb(lr=0.1).register_trainable_weights(params)) == 2 * 2      # 2 buffers x 2 shapes
    assert leaves(bo.Lamb(lr=0.1, fused=False).register_trainable_weights(params)) == 2 * 40


def test_default_stacks_small_arrays_and_keeps_large_ones_alone():
    big = (DEFAULT_MAX_FUSED_SIZE // 64 + 1, 64)
    params = {'a': brainstate.ParamState(jnp.ones(big)), 'b': brainstate.ParamState(jnp.ones((3, 4))),
              'c': brainstate.ParamState(jnp.ones(big)), 'd': brainstate.ParamState(jnp.ones((3, 4)))}
    default = bo.Muon(lr=0.02).register_trainable_weights(params)
    assert [b.members for b in _layout(default).buckets] == [(0,), (1, 3), (2,)]
    every = bo.Muon(lr=0.02, fused=True).register_trainable_weights(params)
    assert [b.members for b in _layout(every).buckets] == [(0, 2), (1, 3)]
    assert _stored(every, 'momentum_buffer')[0].shape == (2,) + big


def test_a_per_tensor_group_in_a_fused_optimizer_runs_stacked():
    def run(fused):
        params = _params(shapes=STACK_SHAPES)
        matrices = {k: params[k] for k in ('w1', 'w2', 'w4')}
        rest = {k: v for k, v in params.items() if k not in matrices}
        opt = bo.Adam(lr=0.05, fused=fused).register_trainable_weights(rest)
        opt.add_param_group(matrices, optimizer=bo.Lamb, weight_decay=1e-3)
        for step in range(3):
            opt.update(_grads(step, shapes=STACK_SHAPES))
        return params, opt

    fused, plain = run(True), run(False)
    assert isinstance(_layout(fused[1], 0), FlatLayout) and isinstance(_layout(fused[1], 1), StackedLayout)
    assert [b.members for b in _layout(fused[1], 1).buckets] == [(0, 1, 2)]
    _assert_same_run(fused, plain)


def test_stacks_split_by_group_multiplier_and_late_registration():
    def run(fused):
        params = _params(shapes=STACK_SHAPES)
        first = {k: params[k] for k in ('w1', 'w2', 'b1', 'scalar')}
        scheduler = bo.StepLR(base_lr=[0.05, 0.01], step_size=2, gamma=0.5)
        opt = bo.Nadam(lr=scheduler, weight_decay=0.1, fused=fused, schedule_per_update=True)
        opt.register_trainable_weights(first)
        opt.add_param_group({k: params[k] for k in ('w3', 't1', 't2')}, weight_decay=0.0)
        opt.set_lr_mult({'w2': 0.5})
        grads = lambda s, keys: {k: g for k, g in _grads(s, shapes=STACK_SHAPES).items() if k in keys}
        for step in range(3):
            opt.update(grads(step, first.keys() | {'w3', 't1', 't2'}))
        opt.register_trainable_weights({k: params[k] for k in ('w4', 'b2', 's2', 'v')})   # steps from 3
        for step in range(3, 6):
            opt.update(grads(step, STACK_SHAPES.keys()))
        return params, opt

    fused, plain = run(True), run(False)
    _assert_same_run(fused, plain)
    keys = [fused[1]._registry.params[i].key for i in fused[1]._storage[0].members]
    stacks = [(tuple(keys[i] for i in b.members), b.step_offset) for b in _layout(fused[1], 0).buckets]
    # w2 runs with its own lr multiplier; the late members count their steps from 3 and stack with each other
    assert stacks == [(('w1',), 0), (('w2',), 0), (('b1',), 0), (('scalar',), 0),
                      (('w4',), 3), (('b2',), 3), (('s2',), 3), (('v',), 3)]
    assert [b.members for b in _layout(fused[1], 1).buckets] == [(0,), (1, 2)]


@pytest.mark.parametrize('name, source_fused, target_fused', [
    ('Adam', True, False), ('Adam', None, True), ('SM3', False, True), ('Adafactor', True, False),
    ('Adafactor', None, True), ('Novograd', False, True), ('Prodigy', True, False), ('LBFGS', False, True)])
def test_checkpoints_move_between_layouts(name, source_fused, target_fused):
    shapes = SHAPES if name == 'Adam' else STACK_SHAPES
    params, source = _run(MAKE[name], source_fused, steps=3, shapes=shapes)
    saved = source.state_dict()
    target_params = _params(shapes=shapes)
    for key in shapes:
        target_params[key].value = params[key].value
    target = MAKE[name](fused=target_fused).register_trainable_weights(target_params)
    target.load_state_dict(saved)
    for key, values in source.buffers().items():          # one array per parameter whatever the layout
        for k, value in values.items():
            np.testing.assert_array_equal(np.asarray(target.buffers()[key][k]), np.asarray(value))
    for step in range(3, 6):
        source.update(_grads(step, shapes=shapes))
        target.update(_grads(step, shapes=shapes))
    # each step agrees to one ulp; over several steps the differences may compound a little
    for key in shapes:
        np.testing.assert_allclose(np.asarray(target_params[key].value), np.asarray(params[key].value),
                                   rtol=2e-6, atol=1e-7)
    for key, values in source.buffers().items():
        for k, value in values.items():
            np.testing.assert_allclose(np.asarray(target.buffers()[key][k]), np.asarray(value), rtol=2e-6, atol=1e-7)


def test_checkpoint_restoring_step_offsets_rebuckets():
    def build(fused):
        params = _params()
        opt = bo.Adam(lr=0.05, fused=fused).register_trainable_weights({'w1': params['w1']})
        opt.update({'w1': _grads(0)['w1']})
        opt.register_trainable_weights({'b1': params['b1']})          # step offset 1
        return params, opt

    (params, opt) = build(True)
    assert len(_layout(opt).buckets) == 2
    saved = opt.state_dict()
    fresh = bo.Adam(lr=0.05, fused=True).register_trainable_weights(
        {'w1': brainstate.ParamState(params['w1'].value), 'b1': brainstate.ParamState(params['b1'].value)})
    assert len(_layout(fresh).buckets) == 1                            # same offsets: one bucket
    fresh.load_state_dict(saved)
    assert [b.step_offset for b in _layout(fresh).buckets] == [0, 1]
    np.testing.assert_array_equal(fresh.buffers()['exp_avg']['w1'], opt.buffers()['exp_avg']['w1'])


def test_fused_step_inside_for_loop_matches_eager_per_parameter_steps():
    grads = [_grads(s) for s in range(5)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *grads)
    params = _params()
    opt = bo.Adam(lr=0.05, weight_decay=1e-3, fused=True).register_trainable_weights(params)

    @brainstate.transform.jit
    def epoch(all_grads):
        brainstate.transform.for_loop(opt.update, all_grads)

    epoch(stacked)
    reference = bo.Adam(lr=0.05, weight_decay=1e-3, fused=False)
    plain_params = _params()
    reference.register_trainable_weights(plain_params)
    for g in grads:
        reference.update(g)
    _assert_same_run((params, opt), (plain_params, reference))


def test_fused_moments_are_two_leaves_whatever_the_parameter_count():
    params = {f'p{i}': brainstate.ParamState(jnp.ones((i + 1,))) for i in range(40)}
    fused = bo.Adam(lr=0.1).register_trainable_weights(params)
    plain = bo.Adam(lr=0.1, fused=False).register_trainable_weights(params)
    leaves = lambda opt: sum(len(jax.tree.leaves(state.value))
                             for storage in opt._storage.values() for state in storage.states.values())
    assert leaves(fused) == 2
    assert leaves(plain) == 80


@pytest.mark.parametrize('name', ['Adam', 'Lamb'])
def test_static_slices_used_off_cpu_give_the_same_numbers(monkeypatch, name):
    # GPU/TPU backends cut the flat or stacked update with static slices (no lax.cond: its predicate
    # would be copied to the host every step); the numbers must not change.
    opaque = _run(MAKE[name], True, shapes=STACK_SHAPES)
    monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
    static = _run(MAKE[name], True, shapes=STACK_SHAPES)
    for key in STACK_SHAPES:
        np.testing.assert_array_equal(np.asarray(static[0][key].value), np.asarray(opaque[0][key].value))


def test_stacked_step_inside_for_loop_matches_eager_per_parameter_steps():
    grads = [_grads(s, shapes=STACK_SHAPES) for s in range(4)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *grads)
    params = _params(shapes=STACK_SHAPES)
    opt = MAKE['Muon']().register_trainable_weights(params)

    @brainstate.transform.jit
    def epoch(all_grads):
        brainstate.transform.for_loop(opt.update, all_grads)

    epoch(stacked)
    reference = MAKE['Muon'](fused=False)
    plain_params = _params(shapes=STACK_SHAPES)
    reference.register_trainable_weights(plain_params)
    for g in grads:
        reference.update(g)
    for key in STACK_SHAPES:
        np.testing.assert_allclose(np.asarray(params[key].value), np.asarray(plain_params[key].value),
                                   rtol=2e-6, atol=1e-7)


SHARDED_SCRIPT = r'''
import brainstate, jax, jax.numpy as jnp, numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec
import braintools_optim as bo

devices = jax.devices()
assert len(devices) == 2, devices
mesh = Mesh(np.array(devices), ('x',))

replicated = NamedSharding(mesh, PartitionSpec())
split = NamedSharding(mesh, PartitionSpec('x'))

def params():
    return {
        'a': brainstate.ParamState(jax.device_put(jnp.arange(4.0), replicated)),
        'b': brainstate.ParamState(jax.device_put(jnp.ones(3), replicated)),
        'split': brainstate.ParamState(jax.device_put(jnp.arange(8.0).reshape(4, 2), split)),
        'split2': brainstate.ParamState(jax.device_put(jnp.ones((2, 3)), split)),
        'c': brainstate.ParamState(jax.device_put(jnp.ones(2), replicated)),
    }

def grads(step, ps):
    return {k: jax.device_put(jnp.full(v.value.shape, 0.1 * (step + 1), jnp.float32), v.value.sharding)
            if hasattr(v.value, 'sharding') else jnp.full(v.value.shape, 0.1 * (step + 1), jnp.float32)
            for k, v in ps.items()}

fused_p, plain_p = params(), params()
fused = bo.Adam(lr=0.1, fused=True).register_trainable_weights(fused_p)
plain = bo.Adam(lr=0.1, fused=False).register_trainable_weights(plain_p)
storage = fused._storage[0]
keys = [fused._registry.params[i].key for i in storage.members]
buckets = sorted(tuple(sorted(keys[i] for i in b.members)) for b in storage.layout.buckets)
assert buckets == [('a', 'b', 'c'), ('split',), ('split2',)], buckets
for step in range(3):
    fused.update(grads(step, fused_p))
    plain.update(grads(step, plain_p))
for k in fused_p:
    np.testing.assert_allclose(np.asarray(fused_p[k].value), np.asarray(plain_p[k].value), rtol=1e-6)
assert fused_p['split'].value.sharding.is_equivalent_to(split, 2)
assert fused.buffers()['exp_avg']['split'].shape == (4, 2)
print('ok')
'''


def test_partitioned_arrays_keep_their_own_bucket_and_sharding(tmp_path):
    import os
    import subprocess
    import sys
    script = tmp_path / 'sharded.py'
    script.write_text(SHARDED_SCRIPT)
    root = str(__import__('pathlib').Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get('PYTHONPATH', '')) if p)
    env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2', JAX_PLATFORMS='cpu',
               PYTHONPATH=path)   # the package from this checkout, installed or not
    result = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith('ok')
