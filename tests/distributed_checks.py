"""Checks of optimizer state on 8 simulated CPU devices, run by ``tests/test_distributed.py``.

The XLA flag that splits the CPU into 8 devices must be set before JAX starts,
so the test runs this file in a subprocess:

    XLA_FLAGS=--xla_force_host_platform_device_count=8 python tests/distributed_checks.py

Every check trains on a mesh and compares with the same training on one
device, and inspects the ``.sharding`` of every buffer (a placement that
silently does nothing is the failure to catch). The script prints one line
``RESULTS {json}``: per check ``"ok"``, ``"skipped: why"`` or the traceback.
Importing this module runs nothing.
"""

from __future__ import annotations

import copy
import json
import os
import pickle
import re
import sys
import tempfile
import traceback

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

import braintools_optim as bo

TOL = dict(rtol=2e-5, atol=2e-6)


# ------------------------------------------------------------------ helpers
def _values(shapes, seed=0):
    rng = np.random.RandomState(seed)
    return {k: (0.5 * rng.randn(*shape)).astype(np.float32) for k, shape in shapes.items()}


def _param_states(values, shardings=None):
    """ParamStates holding ``values``, placed with ``shardings`` (``None``: one device)."""
    return {k: brainstate.ParamState(jnp.asarray(v) if shardings is None else jax.device_put(v, shardings[k]))
            for k, v in values.items()}


def _loss(params):
    # couples every element of every parameter, so a wrong norm or a lost shard shows
    total = 0.0
    for i, state in enumerate(params.values()):
        p = state.value
        total = total + jnp.sum(jnp.sin(3.0 * p + i)) + 0.3 * jnp.sum(p ** 2) * (1 + i)
    return total


def _train(opt, params, eager=2, jitted=2, loss=_loss, batches=()):
    """``eager`` updates outside any jit, then ``jitted`` inside ``brainstate.transform.jit``."""
    def grads(*batch):
        return brainstate.transform.grad(lambda *b: loss(params, *b), opt.param_states)(*batch)

    @brainstate.transform.jit
    def step(*batch):
        opt.update(grads(*batch))

    batches = list(batches) or [()] * (eager + jitted)
    for k in range(eager):
        opt.update(grads(*batches[k]))
    for k in range(eager, eager + jitted):
        step(*batches[k])
    return {k: np.asarray(s.value) for k, s in params.items()}


def _same(a, b, what):
    for k in a:
        np.testing.assert_allclose(a[k], b[k], err_msg=f"{what}: {k}", **TOL)


def _replicated(array, mesh):
    return array.sharding.is_equivalent_to(NamedSharding(mesh, P()), array.ndim)


def _check_follows(opt, params, mesh):
    """Every buffer array follows its parameter: same sharding when shaped like it, replicated otherwise."""
    partitioned = 0
    for storage in opt._storage.values():
        buckets = getattr(storage.layout, 'buckets', None)
        slots = ([[storage.members[m] for m in b.members] for b in buckets] if buckets is not None
                 else [[i] for i in storage.members])
        for name, state in storage.states.items():
            assert len(state.value) == len(slots), (name, len(state.value), len(slots))
            for members, array in zip(slots, state.value):
                param = opt._registry.params[members[0]].handle.value
                if len(members) == 1 and array.shape == param.shape:
                    assert array.sharding.is_equivalent_to(param.sharding, array.ndim), \
                        (type(opt).__name__, name, array.sharding, param.sharding)
                    partitioned += not param.sharding.is_fully_replicated
                else:
                    assert _replicated(array, mesh), (type(opt).__name__, name, array.shape, array.sharding)
    assert partitioned, f"{type(opt).__name__}: no buffer is partitioned at all"
    for key, state in params.items():
        assert state.value.sharding.is_equivalent_to(opt._registry.states()[key].value.sharding,
                                                     state.value.ndim)


# ------------------------------------------------------------------ checks
SHARDED_SHAPES = {'w': (8, 6), 'm': (12, 4), 'v': (16,), 'b': (5,), 'c': (3,), 'r': (4, 3)}

FOLLOWERS = {          # fused buckets and global clipping, trust ratios, Newton-Schulz, factored and scalar buffers
    'AdamW-clipped': lambda: bo.AdamW(lr=0.05, weight_decay=0.1, grad_clip_norm=0.3),
    'Lamb': lambda: bo.Lamb(lr=0.05, weight_decay=0.01),
    'Muon': lambda: bo.Muon(lr=0.05),
    'Adafactor': lambda: bo.Adafactor(lr=0.05),
}


def check_state_follows_sharded_params():
    """Fully sharded parameters (a 4 x 2 mesh): buffers created and kept on the parameters' shardings."""
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ('data', 'model'))
    shardings = {'w': NamedSharding(mesh, P('data', 'model')), 'm': NamedSharding(mesh, P(None, 'model')),
                 'v': NamedSharding(mesh, P('model')), 'b': NamedSharding(mesh, P()),
                 'c': NamedSharding(mesh, P()), 'r': NamedSharding(mesh, P(None, None))}   # replicated, 2-D spec
    values = _values(SHARDED_SHAPES)
    for name, make in FOLLOWERS.items():
        single = _param_states(values)
        expected = _train(make().register_trainable_weights(single), single, eager=0, jitted=4)
        params = _param_states(values, shardings)
        opt = make().register_trainable_weights(params)
        _check_follows(opt, params, mesh)                   # as created
        got = _train(opt, params)
        _check_follows(opt, params, mesh)                   # after eager and jitted updates
        _same(got, expected, name)


def check_nonfinite_skip_across_shards():
    """One NaN in one shard of one gradient skips the whole step, on every device."""
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ('data', 'model'))
    shardings = {k: NamedSharding(mesh, P('data', 'model') if k == 'w' else P()) for k in SHARDED_SHAPES}
    values = _values(SHARDED_SHAPES)

    def loss(params, poison):
        w = params['w'].value
        return _loss(params) + poison * w[7, 5]          # d/dw[7,5] = NaN when poison is NaN

    results = []
    for placed in (None, shardings):
        params = _param_states(values, placed)
        opt = bo.Adam(lr=0.05, skip_nonfinite=True).register_trainable_weights(params)
        batches = [(jnp.float32(0.0),), (jnp.float32(np.nan),), (jnp.float32(0.0),), (jnp.float32(np.nan),)]
        results.append(_train(opt, params, loss=loss, batches=batches))   # one NaN step eager, one jitted
        assert int(opt.nonfinite_skips.value) == 2, int(opt.nonfinite_skips.value)
        assert int(opt.step_count.value) == 2
    _same(results[1], results[0], 'skip_nonfinite')


def _data_parallel_problem(seed=1):
    rng = np.random.RandomState(seed)
    x = rng.randn(64, 16).astype(np.float32)
    y = (np.tanh(x @ rng.randn(16, 8)) + 0.1).astype(np.float32)
    values = {'weight': (0.3 * rng.randn(16, 8)).astype(np.float32), 'bias': np.zeros(8, np.float32)}

    def loss(params, xb, yb):
        out = jnp.tanh(xb @ params['weight'].value + params['bias'].value)
        return jnp.mean((out - yb) ** 2)
    return x, y, values, loss


ZERO = {
    'Adam': lambda **o: bo.Adam(lr=0.05, **o),
    'AdamW-clipped': lambda **o: bo.AdamW(lr=0.05, weight_decay=0.01, grad_clip_norm=0.5, **o),
    'Adam-per-param': lambda **o: bo.Adam(lr=0.05, fused=False, **o),
    'Lamb': lambda **o: bo.Lamb(lr=0.05, **o),
    'Muon': lambda **o: bo.Muon(lr=0.05, **o),
    'Adafactor': lambda **o: bo.Adafactor(lr=0.05, **o),
}


def _data_parallel_run(make, mesh=None, steps=4, **options):
    x, y, values, loss = _data_parallel_problem()
    if mesh is None:
        params = _param_states(values)
        batches = [(x, y)] * steps
    else:
        replicated = NamedSharding(mesh, P())
        params = _param_states(values, {k: replicated for k in values})
        split = NamedSharding(mesh, P('data'))
        batches = [(jax.device_put(x, split), jax.device_put(y, split))] * steps
    opt = make(**options).register_trainable_weights(params)
    return _train(opt, params, eager=1, jitted=steps - 1, loss=loss, batches=batches), opt, params


def check_data_parallel():
    """Replicated parameters, a batch split over 8 devices: buffers replicated, numbers as on one device."""
    mesh = Mesh(np.array(jax.devices()), ('data',))
    for name in ('Adam', 'Lamb'):
        expected, _, _ = _data_parallel_run(ZERO[name])
        got, opt, params = _data_parallel_run(ZERO[name], mesh)
        _same(got, expected, name)
        for state in params.values():
            assert _replicated(state.value, mesh)
        for arrays in bo.distributed.buffer_shardings(opt).values():
            for sharding in arrays.values():
                assert sharding.is_fully_replicated and len(sharding.device_set) == 8, sharding


def check_zero1():
    """shard_state='data': state partitioned over the data axis, parameters replicated, numbers unchanged."""
    mesh = Mesh(np.array(jax.devices()), ('data',))
    for name, make in ZERO.items():
        expected, _, _ = _data_parallel_run(make)
        got, opt, params = _data_parallel_run(make, mesh, shard_state='data')
        _same(got, expected, name)
        for state in params.values():
            assert _replicated(state.value, mesh), (name, state.value.sharding)
        partitioned = [s for arrays in bo.distributed.buffer_shardings(opt).values() for s in arrays.values()
                       if not s.is_fully_replicated]
        assert partitioned, f"{name}: shard_state='data' partitioned nothing"
        for sharding in partitioned:
            assert sharding.spec[0] == 'data' or 'data' in tuple(sharding.spec), sharding
        if opt.is_elementwise() and opt.fused is not False:
            for state in opt._storage[0].states.values():
                for array in state.value:
                    assert array.sharding.spec == P('data'), (name, array.shape, array.sharding)


def check_stacks_and_flat_histories_on_a_mesh():
    """Stacked per-tensor rules (Lamb, Muon) and flat-bucket steps (Prodigy, L-BFGS) on replicated parameters.

    Without ``shard_state`` a stack of same-shaped parameters stays stacked and
    replicated; under ZeRO-1 a per-tensor rule runs one call per parameter (its
    buffers split along a dimension), a flat bucket is padded and partitioned
    (L-BFGS's ``(memory, size)`` histories along their last axis). The numbers
    are those of one device: L-BFGS's direction amplifies the summation order of
    its dot products, so it is compared at 1e-3 relative to the parameters.
    """
    mesh = Mesh(np.array(jax.devices()), ('data',))
    rng = np.random.RandomState(3)
    values = {f'w{i}': rng.randn(8, 4).astype(np.float32) for i in range(3)}
    values['b'] = rng.randn(5).astype(np.float32)

    def run(make, shardings, **options):
        params = _param_states(values, shardings)
        opt = make(**options).register_trainable_weights(params)
        loss = lambda: sum(jnp.sum(jnp.sin(p.value) * (1 + p.value)) for p in params.values())
        step = brainstate.transform.jit(lambda: opt.update(brainstate.transform.grad(loss, params)()))
        for _ in range(4):
            step()
        return {k: np.asarray(p.value) for k, p in params.items()}, opt

    replicated = {k: NamedSharding(mesh, P()) for k in values}
    cases = {'Lamb': (lambda **o: bo.Lamb(lr=0.05, **o), 'StackedLayout', 1e-6),
             'Muon': (lambda **o: bo.Muon(lr=0.05, **o), 'StackedLayout', 1e-6),
             'Prodigy': (lambda **o: bo.Prodigy(**o), 'FlatLayout', 1e-6),
             'LBFGS': (lambda **o: bo.LBFGS(lr=0.1, **o), 'FlatLayout', 1e-3)}
    for name, (make, kind, tol) in cases.items():
        expected, _ = run(make, None)
        scale = max(float(np.max(np.abs(v))) for v in expected.values())
        for option in (None, 'data'):
            got, opt = run(make, replicated, shard_state=option)
            for k in expected:
                np.testing.assert_allclose(got[k], expected[k], rtol=0, atol=tol * scale, err_msg=f"{name} {option} {k}")
            layout = type(opt._storage[0].layout).__name__
            if option is None:
                assert layout == kind, (name, layout)
                for arrays in bo.distributed.buffer_shardings(opt).values():
                    for sharding in arrays.values():
                        assert sharding.is_fully_replicated and len(sharding.device_set) == 8, (name, sharding)
            else:
                assert any(not s.is_fully_replicated for arrays in bo.distributed.buffer_shardings(opt).values()
                           for s in arrays.values()), f"{name}: shard_state='data' partitioned nothing"


def check_zero1_state_bytes():
    """Per-device state bytes shrink by the axis size (measured on the shards each device holds)."""
    mesh = Mesh(np.array(jax.devices()), ('data',))
    _, plain, _ = _data_parallel_run(ZERO['Adam'], mesh, steps=2)
    _, zero, _ = _data_parallel_run(ZERO['Adam'], mesh, steps=2, shard_state='data')
    before, after = bo.distributed.state_bytes(plain), bo.distributed.state_bytes(zero)
    assert len(before) == len(after) == 8
    size = 16 * 8 + 8                                   # parameters; 136 = 17 * 8, so no padding
    assert set(before.values()) == {2 * 4 * size}, before
    assert set(after.values()) == {2 * 4 * size // 8}, after


def check_zero1_update_is_shard_local():
    """The compiled ZeRO-1 step computes each device's slice of the moments and gathers the update."""
    mesh = Mesh(np.array(jax.devices()), ('data',))
    replicated = NamedSharding(mesh, P())
    texts = {}
    for shard in (None, 'data'):
        params = {'w': brainstate.ParamState(jax.device_put(np.ones((64, 50), np.float32), replicated))}
        opt = bo.Adam(lr=0.1, shard_state=shard).register_trainable_weights(params)

        @brainstate.transform.jit
        def step(g):
            opt.update(g)
        grads = {'w': jax.device_put(np.ones((64, 50), np.float32), replicated)}
        texts[shard] = step.lower(grads).compile().as_text()
    square_roots = lambda text: set(re.findall(r'(f32\[[\d,]*\])\S* sqrt\(', text))
    assert square_roots(texts[None]) == {'f32[64,50]'}, square_roots(texts[None])
    assert square_roots(texts['data']) == {'f32[400]'}, square_roots(texts['data'])     # 3200 / 8
    assert 'all-gather' in texts['data'] and 'all-gather' not in texts[None]


def _sharded_pair(shard_state):
    mesh = Mesh(np.array(jax.devices()).reshape(4, 2), ('data', 'model'))
    shardings = {'w': NamedSharding(mesh, P('data', 'model')), 'm': NamedSharding(mesh, P(None, 'model')),
                 'v': NamedSharding(mesh, P()), 'b': NamedSharding(mesh, P()), 'c': NamedSharding(mesh, P()),
                 'r': NamedSharding(mesh, P(None, None))}
    values = _values(SHARDED_SHAPES)

    def build(make):
        params = _param_states(values, shardings)
        return make(shard_state=shard_state).register_trainable_weights(params), params
    return build


def _assert_same_state(a, b):
    for g in a._storage:
        for name, state in a._storage[g].states.items():
            for x, y in zip(state.value, b._storage[g].states[name].value):
                assert x.sharding.is_equivalent_to(y.sharding, x.ndim), (name, x.sharding, y.sharding)
                np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert int(a.step_count.value) == int(b.step_count.value)


ROUNDTRIPS = ((None, lambda **o: bo.Lamb(lr=0.05, **o)), ('data', lambda **o: bo.Adam(lr=0.05, **o)))


def _roundtrip(save, load, cases=ROUNDTRIPS):
    """Train, save, restore into a fresh optimizer, continue: bitwise the uninterrupted run."""
    for shard_state, make in cases:
        build = _sharded_pair(shard_state)
        first, params = build(make)
        _train(first, params, eager=1, jitted=1)
        with tempfile.TemporaryDirectory() as folder:
            save(os.path.join(folder, 'ckpt'), first)
            second, params2 = build(make)
            for k in params:
                params2[k].value = params[k].value
            load(os.path.join(folder, 'ckpt'), second)
        _assert_same_state(first, second)
        a, b = _train(first, params, eager=1, jitted=1), _train(second, params2, eager=1, jitted=1)
        for k in a:
            np.testing.assert_array_equal(a[k], b[k])


def check_checkpoint_npz_restores_shardings():
    """opt.save/opt.load (one host): bitwise, every buffer back on its sharding, any layout to any layout."""
    _roundtrip(lambda path, opt: opt.save(path + '.npz'), lambda path, opt: opt.load(path + '.npz'))
    # the per-parameter file does not depend on the layout: ZeRO-1 state loads into a plain optimizer
    build_zero, build_plain = _sharded_pair('data'), _sharded_pair(None)
    zero, params = build_zero(lambda **o: bo.Adam(lr=0.05, **o))
    _train(zero, params, eager=1, jitted=0)
    plain, _ = build_plain(lambda **o: bo.Adam(lr=0.05, **o))
    plain.load_state_dict(zero.state_dict())
    for name, per_param in zero.buffers().items():
        for key, value in per_param.items():
            np.testing.assert_array_equal(np.asarray(plain.buffers()[name][key]), np.asarray(value))


def check_checkpoint_orbax():
    """distributed.save_sharded/load_sharded (orbax): bitwise, on the optimizer's shardings; layouts checked."""
    try:
        import orbax.checkpoint  # noqa: F401
    except ImportError:
        return 'skipped: orbax-checkpoint is not installed'
    _roundtrip(bo.distributed.save_sharded, bo.distributed.load_sharded, ROUNDTRIPS[1:])
    zero, params = _sharded_pair('data')(lambda **o: bo.Adam(lr=0.05, **o))
    _train(zero, params, eager=1, jitted=0)
    plain, _ = _sharded_pair(None)(lambda **o: bo.Adam(lr=0.05, **o))
    with tempfile.TemporaryDirectory() as folder:
        bo.distributed.save_sharded(os.path.join(folder, 'ckpt'), zero)
        # ZeRO-1 flattened and padded what the plain layout keeps in shape: refused, nothing written
        before = plain.state_dict()
        try:
            bo.distributed.load_sharded(os.path.join(folder, 'ckpt'), plain)
        except bo.CheckpointMismatchError as err:
            assert 'laid out differently' in str(err), err
        else:
            raise AssertionError("a ZeRO-1 layout loaded into an optimizer that stores its buffers otherwise")
        after = plain.state_dict()
        for name in before['opt_state']:
            for key in before['opt_state'][name]:
                np.testing.assert_array_equal(before['opt_state'][name][key], after['opt_state'][name][key])


def check_copies_and_refusals():
    """deepcopy keeps placement, pickle carries values; an axis the parameters' mesh lacks is refused."""
    mesh = Mesh(np.array(jax.devices()), ('data',))
    replicated = NamedSharding(mesh, P())
    params = _param_states(_values({'w': (16, 8)}), {'w': replicated})
    opt = bo.Adam(lr=0.1, shard_state=(mesh, 'data')).register_trainable_weights(params)
    _train(opt, params, eager=1, jitted=0)
    twin = copy.deepcopy(opt)
    assert twin._storage[0].states['exp_avg'].value[0].sharding.spec == P('data')
    thawed = pickle.loads(pickle.dumps(opt))
    np.testing.assert_array_equal(np.asarray(thawed._storage[0].states['exp_avg'].value[0]),
                                  np.asarray(opt._storage[0].states['exp_avg'].value[0]))
    assert thawed.shard_state.mesh == mesh
    wrong = bo.Adam(lr=0.1, shard_state='model')
    try:
        wrong.register_trainable_weights(_param_states(_values({'w': (16, 8)}), {'w': replicated}))
    except ValueError as err:
        assert "'model'" in str(err) and 'NamedSharding' in str(err), err
    else:
        raise AssertionError("shard_state='model' on a mesh without that axis was accepted")
    assert len(wrong._registry) == 0 and not wrong._storage


CHECKS = {name[len('check_'):]: fn for name, fn in sorted(globals().items()) if name.startswith('check_')}


def main(names):
    assert len(jax.devices()) == 8, f"run with XLA_FLAGS=--xla_force_host_platform_device_count=8: {jax.devices()}"
    results = {}
    for name in names or CHECKS:
        try:
            outcome = CHECKS[name]()
            results[name] = outcome if isinstance(outcome, str) else 'ok'
        except Exception:                                   # noqa: BLE001 - reported to the test
            results[name] = traceback.format_exc()
    print('RESULTS ' + json.dumps(results))


if __name__ == '__main__':
    main(sys.argv[1:])
