"""Mixed precision: optimizer-state bytes per parameter and step time, side by side.

Run from the repository root::

    python benchmarks/bench_precision.py                                # about a minute on 2 cores
    python benchmarks/bench_precision.py --out benchmarks/RESULTS.md    # rewrite its section there

Model: Adam over 16 weight matrices of 256 x 256 and 16 vectors of 256 (1.05 M parameters),
fixed gradients, one ``opt.update`` per ``brainstate.transform.jit`` call. Settings:

* ``float32``: float32 parameters, float32 moments (the reference);
* ``bf16 (nearest)``: bfloat16 parameters, moments in bfloat16 (their dtype), round to nearest;
* ``bf16 + stochastic_round``: the same, the new parameter rounded stochastically;
* ``bf16 + master_weights``: bfloat16 parameters, a float32 master copy, float32 moments;
* ``f32 + bf16 moments``: float32 parameters, ``mu_dtype=nu_dtype='bfloat16'``.

State bytes are ``braintools_optim.distributed.state_bytes`` (every buffer, master copies and the
PRNG key included; the step counter and learning rates are left out) divided by the number of
parameter elements; the parameter's own bytes are listed apart. The step time is the median of
``--repeats`` calls after one warm-up call, the contenders timed round-robin so that a slow
spell of the shared machine hits them alike.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

import braintools_optim as bo
import _report   # noqa: E402

BEGIN_MARK = '<!-- BEGIN GENERATED PRECISION (bench_precision.py rewrites everything between these markers) -->'
END_MARK = '<!-- END GENERATED PRECISION -->'
SETTINGS = {
    'float32': (jnp.float32, {}),
    'bf16 (nearest)': (jnp.bfloat16, {}),
    'bf16 + stochastic_round': (jnp.bfloat16, {'stochastic_round': True}),
    'bf16 + master_weights': (jnp.bfloat16, {'master_weights': True}),
    'f32 + bf16 moments': (jnp.float32, {'mu_dtype': 'bfloat16', 'nu_dtype': 'bfloat16'}),
}


def build(dtype, options, matrices: int, size: int):
    rng = np.random.default_rng(0)
    shapes = {f'w{i}': (size, size) for i in range(matrices)}
    shapes.update({f'b{i}': (size,) for i in range(matrices)})
    params = {k: brainstate.ParamState(jnp.asarray(rng.normal(size=s).astype(np.float32)).astype(dtype))
              for k, s in shapes.items()}
    grads = {k: (0.01 * p.value).astype(dtype) for k, p in params.items()}
    opt = bo.Adam(lr=1e-3, **options).register_trainable_weights(params)

    @brainstate.transform.jit
    def step(g):
        opt.update(g)

    elements = sum(int(np.prod(s)) for s in shapes.values())
    param_bytes = sum(p.value.nbytes for p in params.values())
    state = sum(bo.distributed.state_bytes(opt).values())
    return step, grads, params, elements, param_bytes, state


def measure(repeats: int, matrices: int, size: int):
    runs = {}
    for name, (dtype, options) in SETTINGS.items():
        step, grads, params, elements, param_bytes, state = build(dtype, options, matrices, size)
        start = time.perf_counter()
        step(grads)
        jax.block_until_ready([p.value for p in params.values()])
        runs[name] = dict(step=step, grads=grads, params=params, elements=elements, param_bytes=param_bytes,
                          state=state, first=time.perf_counter() - start, times=[])
    for _ in range(repeats):
        for run in runs.values():
            start = time.perf_counter()
            run['step'](run['grads'])
            jax.block_until_ready([p.value for p in run['params'].values()])
            run['times'].append(time.perf_counter() - start)
    return runs


def table(runs, command: str) -> str:
    base = statistics.median(runs['float32']['times'])
    elements = runs['float32']['elements']
    lines = [f"### Adam on {elements / 1e6:.2f} M parameters: state bytes and step time",
             '',
             f"`{command}` (jax {jax.__version__}, brainstate {brainstate.__version__}, "
             f"{jax.default_backend()}, {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}).",
             '',
             '| setting | parameter B/elem | optimizer state B/elem | step (ms) | vs float32 | first call (s) |',
             '|---|---:|---:|---:|---:|---:|']
    for name, run in runs.items():
        median = statistics.median(run['times'])
        lines.append(f"| {name} | {run['param_bytes'] / run['elements']:.2f} | {run['state'] / run['elements']:.2f} "
                     f"| {1e3 * median:.2f} | {median / base:.2f}x | {run['first']:.2f} |")
    return '\n'.join(lines) + '\n'


def write_section(path: str, text: str) -> None:
    _report.write_section(path, BEGIN_MARK, END_MARK, text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--repeats', type=int, default=30)
    parser.add_argument('--matrices', type=int, default=16)
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--out', help='a Markdown file whose generated section to rewrite')
    args = parser.parse_args(argv)
    command = 'python benchmarks/bench_precision.py' + (f' --out {args.out}' if args.out else '')
    text = table(measure(args.repeats, args.matrices, args.size), command)
    print(text)
    if args.out:
        write_section(args.out, text)


if __name__ == '__main__':
    main()
