"""Optimizer state on 1, 2, 4 and 8 devices: per-device state bytes and step time.

Run from the repository root::

    python benchmarks/bench_distributed.py                            # about 1-2 min on 2 cores
    python benchmarks/bench_distributed.py --out benchmarks/RESULTS.md

The devices are simulated: ``XLA_FLAGS=--xla_force_host_platform_device_count=n`` splits the
CPU into ``n`` devices (one Python process per ``n``, since the flag is read when JAX starts).
All of them share the same cores, so step times say what the partitioned program costs in
extra work and collectives, not what ``n`` real accelerators would gain; the bytes are exact.

Model: Adam over 32 weight matrices of 256 x 256 and 32 biases of 256 (2.1 M parameters,
float32), fixed gradients, one ``opt.update`` per ``brainstate.transform.jit`` call. Layouts:

* ``replicated``: parameters replicated over a ``('data',)`` mesh (data parallelism), state
  following them (the default): every device keeps all of Adam's moments;
* ``zero1``: the same parameters with ``shard_state='data'`` (ZeRO-1): moments partitioned;
* ``sharded``: every matrix split by rows over the mesh, biases replicated (model parallelism),
  state following the parameters.

Per-device bytes are ``braintools_optim.distributed.state_bytes`` (the shards each device
holds); the step time is the median of 30 calls after one warm-up call.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from _report import write_section   # noqa: E402  (benchmarks/ is sys.path[0] when a script runs)

BEGIN_MARK = '<!-- BEGIN GENERATED DISTRIBUTED (bench_distributed.py rewrites everything between these markers) -->'
END_MARK = '<!-- END GENERATED DISTRIBUTED -->'
LAYOUTS = ('replicated', 'zero1', 'sharded')
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def measure(repeats: int) -> dict:
    """Runs inside a process with ``n`` devices: one row per layout."""
    import brainstate
    import jax
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    import braintools_optim as bo

    mesh = Mesh(np.array(jax.devices()), ('data',))
    rng = np.random.default_rng(0)
    shapes = {f'w{i}': (256, 256) for i in range(32)}
    shapes.update({f'b{i}': (256,) for i in range(32)})
    values = {k: rng.normal(size=s).astype(np.float32) for k, s in shapes.items()}
    rows = {}
    for layout in LAYOUTS:
        def placed(key):
            split = layout == 'sharded' and key.startswith('w')
            return NamedSharding(mesh, P('data') if split else P())
        params = {k: brainstate.ParamState(jax.device_put(v, placed(k))) for k, v in values.items()}
        grads = {k: jax.device_put(0.01 * v, placed(k)) for k, v in values.items()}
        opt = bo.Adam(lr=1e-3, shard_state='data' if layout == 'zero1' else None)
        opt.register_trainable_weights(params)

        @brainstate.transform.jit
        def step(g):
            opt.update(g)

        start = time.perf_counter()
        step(grads)
        jax.block_until_ready([s.value for s in params.values()])
        first = time.perf_counter() - start
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            step(grads)
            jax.block_until_ready([s.value for s in params.values()])
            times.append(time.perf_counter() - start)
        per_device = bo.distributed.state_bytes(opt)
        rows[layout] = {'bytes_max': max(per_device.values()), 'bytes_min': min(per_device.values()),
                        'bytes_total': sum(per_device.values()), 'step_ms': 1e3 * float(np.median(times)),
                        'first_s': first}
    return rows


def run(devices: int, repeats: int) -> dict:
    env = dict(os.environ, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}', JAX_PLATFORMS='cpu',
               PYTHONPATH=os.pathsep.join(p for p in (ROOT, os.environ.get('PYTHONPATH', '')) if p))
    out = subprocess.run([sys.executable, os.path.abspath(__file__), '--child', str(repeats)], env=env,
                         capture_output=True, text=True, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{devices} devices: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def table(results: dict) -> str:
    lines = ['| devices | layout | state bytes per device | vs 1 device | step (ms) | first call (s) |',
             '|---|---|---|---|---|---|']
    base = results[1]['replicated']['bytes_max']
    for n, rows in sorted(results.items()):
        for layout in LAYOUTS:
            row = rows[layout]
            lines.append(f"| {n} | {layout} | {row['bytes_max'] / 2 ** 20:.2f} MiB | "
                         f"{base / row['bytes_max']:.2f}x smaller | {row['step_ms']:.2f} | {row['first_s']:.2f} |"
                         .replace('| 1.00x smaller |', '| same |'))
    return '\n'.join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--devices', default='1,2,4,8', help='device counts (default 1,2,4,8)')
    parser.add_argument('--repeats', type=int, default=30)
    parser.add_argument('--out', default=None, help='a Markdown file to write the table into (between markers)')
    parser.add_argument('--child', type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child is not None:
        print(json.dumps(measure(args.child)))
        return
    results = {}
    for n in (int(x) for x in args.devices.split(',')):
        print(f'{n} device(s) ...', flush=True)
        results[n] = run(n, args.repeats)
    import jax
    import brainstate
    text = (f"### Optimizer state on simulated devices (Adam, 2.1 M parameters)\n\n"
            f"`python benchmarks/bench_distributed.py --out benchmarks/RESULTS.md` "
            f"(jax {jax.__version__}, brainstate {brainstate.__version__}, {os.cpu_count()} CPU cores shared by "
            f"every simulated device; {time.strftime('%Y-%m-%d')}).\n\n{table(results)}\n")
    print(text)
    if args.out:
        write_section(args.out, BEGIN_MARK, END_MARK, text)


if __name__ == '__main__':
    main()
