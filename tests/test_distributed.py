"""Optimizer state on many devices and many processes.

* On 8 simulated CPU devices (one subprocess runs ``tests/distributed_checks.py``;
  each check is reported by its own test below): buffers follow fully sharded
  parameters; data parallelism; ZeRO-1 state (``shard_state='data'``) with its
  per-device bytes measured and its compiled update checked to run shard-wise;
  clipping, per-tensor norms and non-finite skipping across shards; checkpoints
  (npz and orbax) restored bitwise onto their shardings. Every run is compared
  with the same training on one device.
* Two processes on this machine (``jax.distributed`` with a coordinator on
  127.0.0.1, ``tests/multihost_worker.py``) train with ZeRO-1 state, checkpoint,
  restore and continue, and match one process.
* In this process (one device): the ``shard_state`` option's checks.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh, PartitionSpec as P

import braintools_optim as bo
from distributed_checks import CHECKS
from multihost_worker import STEPS_AFTER, STEPS_BEFORE, build, problem

ROOT = Path(__file__).resolve().parents[1]


def _env(**extra):
    """The subprocesses import this checkout's package, on CPU devices only."""
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get('PYTHONPATH', '')) if p)
    env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=path)
    env.update(extra)
    return env


# ------------------------------------------------------------------ 8 devices
@pytest.fixture(scope='module')
def eight_devices():
    run = subprocess.run([sys.executable, str(ROOT / 'tests' / 'distributed_checks.py')], capture_output=True,
                         text=True, timeout=600, env=_env(XLA_FLAGS='--xla_force_host_platform_device_count=8'))
    lines = [line for line in run.stdout.splitlines() if line.startswith('RESULTS ')]
    assert lines, f"the 8-device checks did not report (exit {run.returncode}):\n{run.stderr[-4000:]}"
    import json
    return json.loads(lines[-1][len('RESULTS '):])


@pytest.mark.parametrize('check', sorted(CHECKS))
def test_on_eight_devices(eight_devices, check):
    outcome = eight_devices[check]
    if outcome.startswith('skipped:'):
        pytest.skip(outcome)
    assert outcome == 'ok', f"{CHECKS[check].__doc__}\n{outcome}"


# ------------------------------------------------------------------ 2 processes
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def test_two_processes_train_checkpoint_resume_like_one(tmp_path):
    pytest.importorskip('orbax.checkpoint', reason='the many-host checkpoint path needs orbax-checkpoint')
    env = _env(XLA_FLAGS='--xla_force_host_platform_device_count=2')
    worker = str(ROOT / 'tests' / 'multihost_worker.py')
    port = str(_free_port())
    logs = [open(tmp_path / f'process{i}.log', 'w+') for i in range(2)]
    processes = [subprocess.Popen([sys.executable, worker, str(i), port, str(tmp_path)], env=env,
                                  stdout=logs[i], stderr=subprocess.STDOUT) for i in range(2)]
    deadline = time.monotonic() + 240
    try:
        for process in processes:
            process.wait(timeout=max(deadline - time.monotonic(), 1))
    except subprocess.TimeoutExpired:
        pass
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    outputs = []
    for log in logs:
        log.seek(0)
        outputs.append(log.read())
        log.close()
    for i, (process, output) in enumerate(zip(processes, outputs)):
        assert process.returncode == 0 and f'process {i}: ok' in output, \
            f"process {i} exited {process.returncode}:\n{output[-4000:]}"

    # the same training in this process, on one device, without a checkpoint in between
    x, y, init = problem()
    params, _, step = build(init, None)
    for _ in range(STEPS_BEFORE + STEPS_AFTER):
        step(x, y)
    result = bo.checkpoint.load(str(tmp_path / 'result.npz'))
    for key, state in params.items():
        np.testing.assert_allclose(result[key], np.asarray(state.value), rtol=1e-5, atol=1e-6)


# ------------------------------------------------------------------ the option, on one device
def test_shard_state_arguments_are_checked():
    mesh = Mesh(np.array(jax.devices()[:1]), ('data',))
    assert bo.Adam(shard_state='data').shard_state.axes == ('data',)
    assert bo.Adam(shard_state=('data', 'fsdp')).shard_state.axes == ('data', 'fsdp')
    assert bo.Adam(shard_state=(mesh, 'data')).shard_state.mesh == mesh
    assert bo.Adam().shard_state is None
    with pytest.raises(TypeError, match='mesh axis'):
        bo.Adam(shard_state=3)
    with pytest.raises(TypeError, match='mesh axis'):
        bo.Adam(shard_state='')
    with pytest.raises(ValueError, match='twice'):
        bo.Adam(shard_state=('data', 'data'))
    with pytest.raises(TypeError, match=r"shard_state=\(mesh, 'data'\)"):
        bo.Adam(shard_state=mesh)
    with pytest.raises(ValueError, match="not model"):
        bo.Adam(shard_state=(mesh, 'model'))
    opt = bo.Adam(shard_state='data')
    with pytest.raises(AttributeError, match='fixed at construction'):
        opt.shard_state = None


def test_zero1_without_a_mesh_is_refused_and_registers_nothing():
    opt = bo.Adam(lr=0.1, shard_state='data')
    with pytest.raises(ValueError, match=r"no registered parameter is placed with a jax.sharding.NamedSharding"):
        opt.register_trainable_weights({'w': brainstate.ParamState(jnp.ones(4))})
    assert len(opt._registry) == 0 and not opt._storage and opt.param_states == {}


def test_zero1_on_a_given_one_device_mesh_trains_like_the_default():
    mesh = Mesh(np.array(jax.devices()[:1]), ('data',))
    runs = []
    for shard_state in (None, (mesh, 'data')):
        params = {'w': brainstate.ParamState(jnp.linspace(-1.0, 1.0, 12).reshape(3, 4)),
                  'b': brainstate.ParamState(jnp.ones(3))}
        opt = bo.Adam(lr=0.1, shard_state=shard_state).register_trainable_weights(params)
        if shard_state is not None:                 # the ZeRO-1 path was taken (one flat bucket on the axis)
            for state in opt._storage[0].states.values():
                assert [(a.shape, a.sharding.spec) for a in state.value] == [((15,), P('data'))]
        for k in range(3):
            opt.update({key: jnp.sin(s.value * (k + 1)) for key, s in params.items()})
        runs.append({key: np.asarray(s.value) for key, s in params.items()})
    for key in runs[0]:
        np.testing.assert_array_equal(runs[1][key], runs[0][key])

