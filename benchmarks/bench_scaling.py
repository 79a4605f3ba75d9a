"""Compile time against the number of arrays, and the cost of a step inside a compiled loop.

Run from the repository root::

    python benchmarks/bench_scaling.py                 # about 3-4 min on 2 shared cores
    python benchmarks/bench_scaling.py --out benchmarks/RESULTS.md --plot benchmarks/compile_time.png

Part 1, **compile time**: Adam on ``n`` arrays of 256 float32 each, ``n`` from 10 to 3,000
(XLA:CPU compile time depends on the number of arrays, not their size). For each contender the
wall clock of the first call (tracing, lowering, XLA compilation, one step), each in a fresh
Python process (XLA:CPU reuses compiled kernels within a process, so a contender measured after
another with the same kernels would look cheaper than it is): ``ours`` (default layout: fused flat buffers), ``ours per-array``
(``fused=False``), ``optax`` (``optax.adam`` in ``jax.jit``), ``floor`` (a brainstate jit writing
``p - lr*g`` into every ParamState: what any per-array update costs to compile) and ``flat``
(hand-written Adam on one flat buffer, params included). The optimizer's own share is
``ours - floor``.

Part 2, **in-loop step**: config (a), 500 arrays x 2,048, Adam, 50 steps inside one compiled
loop per call (``brainstate.transform.for_loop`` for the brainstate contenders, ``lax.scan``
for plain JAX), same gradients every step; reported per step. Contenders: ours, ours
per-array, braintools (if installed), optax per-array, hand-written per-array Adam, and the
flat-buffer Adam. Round-robin, medians.

The generated part sits between its own markers in the output file; everything else is kept.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import optax

import braintools_optim as bo

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_update import (Contender, braintools_optim_today, log, round_robin,   # noqa: E402
                          _fmt_ms, _time_first)
from _report import write_section   # noqa: E402

BEGIN_MARK = '<!-- BEGIN GENERATED SCALING (bench_scaling.py rewrites everything between these markers) -->'
END_MARK = '<!-- END GENERATED SCALING -->'
LR, B1, B2, EPS = 1e-3, 0.9, 0.999, 1e-8
LOOP_STEPS = 50


# --------------------------------------------------------------------------- hand-written Adam
def adam_leaf(p, g, m, v, t):
    m = B1 * m + (1 - B1) * g
    v = B2 * v + (1 - B2) * g * g
    step = (LR / (1 - B1 ** t)) * m / (jnp.sqrt(v / (1 - B2 ** t)) + EPS)
    return p - step, m, v


def per_array_adam(params, grads, ms, vs, t):
    out = [adam_leaf(p, g, m, v, t) for p, g, m, v in zip(params, grads, ms, vs)]
    return [o[0] for o in out], [o[1] for o in out], [o[2] for o in out]


def _problem(n, size, seed=0):
    rng = np.random.default_rng(seed)
    keys = [(f'layer{i:04d}', 'w') for i in range(n)]
    init = {k: jnp.asarray(rng.standard_normal(size, dtype=np.float32) * 0.02) for k in keys}
    grads = {k: jnp.asarray(rng.standard_normal(size, dtype=np.float32) * 1e-2) for k in keys}
    return keys, init, grads


def _first_call_s(run: Callable[[], object]) -> float:
    return _time_first(lambda: jax.block_until_ready(run()))


# --------------------------------------------------------------------------- part 1
COMPILE_CONTENDERS = ('ours', 'ours per-array', 'optax', 'floor', 'flat')


def compile_times(n: int) -> Dict[str, float]:
    """First-call seconds of every contender at ``n`` arrays, each in its own process."""
    out = {}
    for name in COMPILE_CONTENDERS:
        result = subprocess.run([sys.executable, os.path.abspath(__file__), '--one-compile', name, str(n)],
                                capture_output=True, text=True, check=True)
        out[name] = float(result.stdout.strip().splitlines()[-1])
    return out


def one_compile_time(name: str, n: int, size: int = 256) -> float:
    keys, init, grads = _problem(n, size)

    def brainstate_first_call(make_opt):
        states = {k: brainstate.ParamState(jnp.array(init[k])) for k in keys}
        opt = make_opt().register_trainable_weights(states)
        step = brainstate.transform.jit(lambda g: opt.update(g))
        return _first_call_s(lambda: (step(grads), states[keys[0]].value)[1])

    if name == 'ours':
        return brainstate_first_call(lambda: bo.Adam(lr=LR))
    if name == 'ours per-array':
        return brainstate_first_call(lambda: bo.Adam(lr=LR, fused=False))

    states = {k: brainstate.ParamState(jnp.array(init[k])) for k in keys}

    @brainstate.transform.jit
    def floor(g):
        for k in keys:
            states[k].value = states[k].value - LR * g[k]
    if name == 'floor':
        return _first_call_s(lambda: (floor(grads), states[keys[0]].value)[1])

    tx = optax.adam(LR, b1=B1, b2=B2, eps=EPS)
    params = {k: jnp.array(init[k]) for k in keys}
    opt_state = tx.init(params)

    @jax.jit
    def optax_step(p, s, g):
        updates, s = tx.update(g, s, p)
        return optax.apply_updates(p, updates), s
    if name == 'optax':
        return _first_call_s(lambda: optax_step(params, opt_state, grads))

    flat = jnp.concatenate([init[k] for k in keys])
    flat_g = jnp.concatenate([grads[k] for k in keys])
    return _first_call_s(lambda: jax.jit(adam_leaf)(flat, flat_g, jnp.zeros_like(flat), jnp.zeros_like(flat), 1.0))


# --------------------------------------------------------------------------- part 2
def in_loop(n: int = 500, size: int = 2048, reps: int = 15, warmup: int = 2) -> Dict[str, Dict]:
    keys, init, grads = _problem(n, size)
    contenders = {}
    compile_s = {}

    def brainstate_loop(make_opt):
        states = {k: brainstate.ParamState(jnp.array(init[k])) for k in keys}
        opt = make_opt()
        opt.register_trainable_weights(states)

        @brainstate.transform.jit
        def epoch(g):
            brainstate.transform.for_loop(lambda _: opt.update(g), jnp.arange(LOOP_STEPS))
        probe = states[keys[0]]
        return lambda: (epoch(grads), jax.block_until_ready(probe.value))

    contenders['ours'] = brainstate_loop(lambda: bo.Adam(lr=LR))
    contenders['ours per-array'] = brainstate_loop(lambda: bo.Adam(lr=LR, fused=False))
    if braintools_optim_today is not None:
        contenders['braintools'] = brainstate_loop(lambda: braintools_optim_today.Adam(lr=LR))

    glist = [grads[k] for k in keys]
    box = {'p': [jnp.array(init[k]) for k in keys]}
    box['m'] = [jnp.zeros_like(p) for p in box['p']]
    box['v'] = [jnp.zeros_like(p) for p in box['p']]
    box['t'] = jnp.zeros((), jnp.float32)

    @jax.jit
    def per_array_epoch(p, m, v, t, g):
        def body(carry, _):
            p, m, v, t = carry
            t = t + 1
            p, m, v = per_array_adam(p, g, m, v, t)
            return (p, m, v, t), None
        return jax.lax.scan(body, (p, m, v, t), None, length=LOOP_STEPS)[0]

    def run_per_array():
        box['p'], box['m'], box['v'], box['t'] = per_array_epoch(box['p'], box['m'], box['v'], box['t'], glist)
        jax.block_until_ready(box['p'][0])
    contenders['plain JAX per-array'] = run_per_array

    tx = optax.adam(LR, b1=B1, b2=B2, eps=EPS)
    obox = {'p': {k: jnp.array(init[k]) for k in keys}}
    obox['s'] = tx.init(obox['p'])

    @jax.jit
    def optax_epoch(p, s, g):
        def body(carry, _):
            p, s = carry
            updates, s = tx.update(g, s, p)
            return (optax.apply_updates(p, updates), s), None
        return jax.lax.scan(body, (p, s), None, length=LOOP_STEPS)[0]

    def run_optax():
        obox['p'], obox['s'] = optax_epoch(obox['p'], obox['s'], grads)
        jax.block_until_ready(obox['p'][keys[0]])
    contenders['optax per-array'] = run_optax

    flat_g = jnp.concatenate(glist)
    fbox = {'c': (jnp.concatenate([init[k] for k in keys]), jnp.zeros(n * size), jnp.zeros(n * size),
                  jnp.zeros((), jnp.float32))}

    @jax.jit
    def flat_epoch(carry, g):
        def body(carry, _):
            p, m, v, t = carry
            t = t + 1
            return (*adam_leaf(p, g, m, v, t), t), None
        return jax.lax.scan(body, carry, None, length=LOOP_STEPS)[0]

    def run_flat():
        fbox['c'] = flat_epoch(fbox['c'], flat_g)
        jax.block_until_ready(fbox['c'][0])
    contenders['flat buffer'] = run_flat

    for name, call in contenders.items():
        t0 = time.perf_counter()
        call()
        compile_s[name] = time.perf_counter() - t0
    times = round_robin([Contender(name, call, compile_s[name]) for name, call in contenders.items()],
                        reps, warmup)
    return {name: {'per_step_ms': float(np.median(ts)) * 1e3 / LOOP_STEPS, 'first_call_s': compile_s[name]}
            for name, ts in times.items()}


# --------------------------------------------------------------------------- report
def report(curve: Dict[int, Dict[str, float]], loop: Dict[str, Dict], argv: Sequence[str], wall: float,
           plot_path: Optional[str]) -> str:
    lines: List[str] = []
    w = lines.append
    w(f'Command: `python {" ".join(argv)}`; total wall time {wall:.0f} s; jax {jax.__version__}, '
      f'brainstate {brainstate.__version__}, optax {optax.__version__}, devices '
      f'{", ".join(str(d) for d in jax.devices())}.')
    w('')
    w('### Compile time against the number of arrays (Adam, 256 float32 each; first call, seconds)')
    w('')
    names = ['ours', 'ours per-array', 'optax', 'floor', 'flat']
    w('| arrays | ' + ' | '.join(names) + ' | ours - floor | per-array - floor |')
    w('|---:|' + '---:|' * (len(names) + 2))
    for n, row in curve.items():
        w(f'| {n:,} | ' + ' | '.join(f'{row[k]:.2f}' for k in names) +
          f' | {row["ours"] - row["floor"]:.2f} | {row["ours per-array"] - row["floor"]:.2f} |')
    w('')
    if plot_path:
        w(f'![compile time]({os.path.basename(plot_path)})')
        w('')
    w(f'### One Adam step inside a compiled loop ({LOOP_STEPS} steps per call; 500 arrays x 2,048)')
    w('')
    ref_pa = loop['plain JAX per-array']['per_step_ms']
    ref_flat = loop['flat buffer']['per_step_ms']
    w('| contender | ms per step | / plain JAX per-array | / flat buffer | first call (s) |')
    w('|---|---:|---:|---:|---:|')
    for name, row in loop.items():
        ms = row['per_step_ms']
        w(f'| {name} | {_fmt_ms(ms)} | {ms / ref_pa:.2f}x | {ms / ref_flat:.2f}x | {row["first_call_s"]:.2f} |')
    return '\n'.join(lines)


def plot(curve: Dict[int, Dict[str, float]], path: str) -> bool:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        log('matplotlib not installed: no plot')
        return False
    ns = list(curve)
    fig, ax = plt.subplots(figsize=(6, 4))
    for name in ['ours', 'ours per-array', 'optax', 'floor', 'flat']:
        ax.plot(ns, [curve[n][name] for n in ns], marker='o', label=name)
    ax.set_xscale('log')
    ax.set_yscale('log')
    ax.set_xlabel('parameter arrays (256 float32 each)')
    ax.set_ylabel('first call: trace + compile + 1 step (s)')
    ax.set_title('Adam compile time, XLA:CPU')
    ax.grid(True, which='both', alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def write_output(path: str, body: str) -> None:
    write_section(path, BEGIN_MARK, END_MARK, body)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', default='10,30,100,300,1000,3000', help='numbers of arrays for part 1')
    parser.add_argument('--out', default=None, help='write the report (between markers) into this file')
    parser.add_argument('--plot', default=None, help='save the compile-time curve as this PNG')
    parser.add_argument('--one-compile', nargs=2, metavar=('CONTENDER', 'N'), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_compile:
        print(one_compile_time(args.one_compile[0], int(args.one_compile[1])))
        return
    shown = ['benchmarks/bench_scaling.py'] + list(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    curve = {}
    for n in [int(x) for x in args.sizes.split(',')]:
        log(f'compile time, {n} arrays')
        curve[n] = compile_times(n)
        log('  ' + ', '.join(f'{k} {v:.2f} s' for k, v in curve[n].items()))
    log('in-loop step, 500 x 2048')
    loop = in_loop()
    plotted = bool(args.plot) and plot(curve, args.plot)
    body = report(curve, loop, shown, time.perf_counter() - start, args.plot if plotted else None)
    print(body)
    if args.out:
        write_output(args.out, body)
        log(f'wrote {args.out}')


if __name__ == '__main__':
    main()
