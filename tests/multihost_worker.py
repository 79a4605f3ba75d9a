"""One process of the two-process training run of ``tests/test_distributed.py``.

    python tests/multihost_worker.py PROCESS_ID PORT WORKDIR

Each process has 2 CPU devices (``XLA_FLAGS``), so the mesh spans 4 devices in
2 processes. Data parallel: the parameters are replicated, the batch is split
over the ``'data'`` axis, and the Adam state is partitioned over it
(``shard_state='data'``, ZeRO-1: every process holds half of it). After
``STEPS_BEFORE`` steps every process writes its part of an orbax checkpoint;
a fresh model and optimizer restore it and train ``STEPS_AFTER`` more steps.
Process 0 writes the final parameters to ``WORKDIR/result.npz``. The code
path is the one a single process runs: only the mesh is bigger.
Importing this module runs nothing.
"""

from __future__ import annotations

import os
import sys

STEPS_BEFORE, STEPS_AFTER = 4, 3


def problem():
    """The data and initial parameters (shared with the single-process reference)."""
    import numpy as np
    rng = np.random.RandomState(0)
    x = rng.randn(32, 6).astype(np.float32)
    y = (np.tanh(x @ rng.randn(6, 4)) + 0.1).astype(np.float32)
    init = {'weight': (0.3 * rng.randn(6, 4)).astype(np.float32), 'bias': np.zeros(4, np.float32)}
    return x, y, init


def build(init, place):
    """A model, its optimizer and a compiled step; ``place`` puts a host array on the mesh (``None``: one device)."""
    import brainstate
    import jax.numpy as jnp
    import braintools_optim as bo

    params = {k: brainstate.ParamState(jnp.asarray(v) if place is None else place(v)) for k, v in init.items()}
    opt = bo.Adam(lr=0.05, grad_clip_norm=0.5, shard_state='data' if place is not None else None)
    opt.register_trainable_weights(params)

    def loss_fn(x, y):
        return jnp.mean((jnp.tanh(x @ params['weight'].value + params['bias'].value) - y) ** 2)

    @brainstate.transform.jit
    def step(x, y):
        grads = brainstate.transform.grad(loss_fn, opt.param_states)(x, y)
        opt.update(grads)
    return params, opt, step


def main(process_id: int, port: str, workdir: str) -> None:
    import jax
    jax.distributed.initialize(coordinator_address=f'127.0.0.1:{port}', num_processes=2, process_id=process_id)
    import numpy as np
    from jax.experimental import multihost_utils
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
    import braintools_optim as bo

    assert jax.process_count() == 2 and len(jax.devices()) == 4 and len(jax.local_devices()) == 2
    mesh = Mesh(np.array(jax.devices()), ('data',))
    replicated, split = NamedSharding(mesh, P()), NamedSharding(mesh, P('data'))
    x, y, init = problem()
    x, y = jax.device_put(x, split), jax.device_put(y, split)
    place = lambda value: jax.device_put(value, replicated)

    params, opt, step = build(init, place)
    for _ in range(STEPS_BEFORE):
        step(x, y)
    for per_param in bo.distributed.buffer_shardings(opt).values():
        for sharding in per_param.values():
            assert sharding.spec == P('data') and len(sharding.device_set) == 4, sharding
    local = bo.distributed.state_bytes(opt)
    assert len(local) == 2 and all(n == 2 * 4 * (24 + 4) // 4 for n in local.values()), local  # 28 -> 7 each

    try:                    # no process holds the partitioned moments whole: the one-host file refuses
        opt.state_dict()
    except ValueError as err:
        assert 'save_sharded' in str(err), err
    else:
        raise AssertionError('state_dict() copied state held partly by another process')

    checkpoint = os.path.join(workdir, 'ckpt')
    bo.distributed.save_sharded(checkpoint, opt)
    if process_id == 0:     # replicated parameters: every process has them whole, one writes them
        bo.checkpoint.save(os.path.join(workdir, 'params.npz'), {k: np.asarray(s.value) for k, s in params.items()})
    multihost_utils.sync_global_devices('parameters saved')

    saved = bo.checkpoint.load(os.path.join(workdir, 'params.npz'))
    params2, opt2, step2 = build(saved, place)
    report = bo.distributed.load_sharded(checkpoint, opt2)
    assert report == {'missing': [], 'unexpected': []}, report
    assert int(opt2.step_count.value) == STEPS_BEFORE
    for _ in range(STEPS_AFTER):
        step2(x, y)
    if process_id == 0:
        bo.checkpoint.save(os.path.join(workdir, 'result.npz'), {k: np.asarray(s.value) for k, s in params2.items()})
    multihost_utils.sync_global_devices('done')
    print(f'process {process_id}: ok', flush=True)
    jax.distributed.shutdown()


if __name__ == '__main__':
    main(int(sys.argv[1]), sys.argv[2], sys.argv[3])
