"""Every optimizer of the catalog on one model: per call, in a compiled loop, compile time, state size.

Run from the repository root::

    python benchmarks/bench_catalog.py --quick                     # a check: ~6 min on 2 busy cores
    python benchmarks/bench_catalog.py --quick --only Lamb,Muon    # a few optimizers
    python benchmarks/bench_catalog.py --out benchmarks/RESULTS.md --plot benchmarks/catalog.png   # ~25 min

The model is the performance issue's: 500 float32 arrays, ``(64,)`` and ``(64, 64)``
alternating (1.04 M parameters), fixed precomputed gradients. Every optimizer is
built with its class defaults (only ``lr`` is set, see ``CATALOG``); the default
layout (``fused=None``) is what is measured.

**Per call**: one ``opt.update(grads)`` inside one ``brainstate.transform.jit`` call,
against the *floor*, a ``brainstate.transform.jit`` call that only writes
``p - lr*g`` into each ParamState. All contenders run round-robin with a rotating
start (``bench_update.round_robin``), medians reported. The full run also times
``fused=False`` (one buffer and one rule call per parameter, the layout every
per-tensor optimizer had before).

**In a loop**: 50 updates inside one call (``brainstate.transform.for_loop`` in a
``brainstate.transform.jit``), against a per-array version of the same algorithm
in plain JAX (``lax.scan`` over a list of arrays, 50 steps, ``jax.jit``): hand-written
for Adam, Lamb, Adafactor and Muon (``references.py``), the algorithm's own pure
rule called array by array for the other rule-based optimizers (no engine),
``prodigy_step`` on per-array lists for Prodigy, optax for L-BFGS, Lookahead and
OptaxOptimizer. Both sides make the same number of steps from the same start;
their final parameters are compared (``agree``: the largest difference over the
largest initial parameter). L-BFGS and Prodigy take the
gradient ``g + 0.1 p`` in the loop (with a fixed gradient L-BFGS sees no
curvature and Prodigy's estimate diverges); everything else the fixed ``g``.

**Compile**: the wall clock of the first call (trace, lower, compile, one step),
each optimizer in a fresh Python process (XLA:CPU reuses kernels within a
process), at 500 and 3,000 arrays, with the floor's own first call at each size.
``--quick`` takes the first calls of the per-call part instead (same process,
so later optimizers profit from earlier ones' kernels: indicative only).

**State bytes per parameter**: the bytes of every optimizer State (buffers, step
counter, lr, decay) over the number of parameters.

The generated section of ``--out`` lies between its own markers; the rest of the
file is kept.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
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

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))   # this checkout's package
import braintools_optim as bo                                                        # noqa: E402
from braintools_optim.rules.prodigy import prodigy_init, prodigy_step                  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import references                                                                      # noqa: E402
from bench_update import Contender, _fmt_ms, _jaxlib_version, log, round_robin      # noqa: E402
from _report import write_section   # noqa: E402

BEGIN_MARK = '<!-- BEGIN GENERATED CATALOG (bench_catalog.py rewrites everything between these markers) -->'
END_MARK = '<!-- END GENERATED CATALOG -->'
LOOP_STEPS = 50
GOALS = {'per_call': 1.5, 'per_call_median': 1.2, 'per_call_core': 1.15, 'in_loop': 1.2,
         'compile_500': 1.5, 'compile_3000_over_floor': 2.0}
CORE = ('Adam', 'Momentum', 'RMSprop')          # the issue's <= 1.15x trio (SGD-momentum is Momentum)


# --------------------------------------------------------------------------- the catalog
@dataclasses.dataclass(frozen=True)
class Entry:
    """One optimizer: how ours is built and which per-array reference it runs against."""

    name: str
    make: Callable[..., object]            # make(**engine_options) -> optimizer
    lr: float
    reference: str                         # 'hand', 'rule', 'prodigy', 'optax'
    optax: Optional[Callable[[], optax.GradientTransformation]] = None


def _plain(cls, lr, **fixed):
    return lambda **options: cls(lr=lr, **fixed, **options)


def _entry(cls, lr, reference='rule', **fixed):
    return Entry(cls.__name__, _plain(cls, lr, **fixed), lr, reference)


CATALOG: List[Entry] = [
    _entry(bo.SGD, 1e-2), _entry(bo.Momentum, 1e-2), _entry(bo.MomentumNesterov, 1e-2),
    _entry(bo.Adam, 1e-3, 'hand'), _entry(bo.AdamW, 1e-3), _entry(bo.Adadelta, 1.0), _entry(bo.RMSprop, 1e-2),
    _entry(bo.Adagrad, 1e-2), _entry(bo.Adamax, 2e-3), _entry(bo.Nadam, 2e-3), _entry(bo.NAdamW, 2e-3),
    _entry(bo.RAdam, 1e-3), _entry(bo.Rprop, 1e-2), _entry(bo.Lion, 1e-4), _entry(bo.Yogi, 1e-3),
    _entry(bo.AdaBelief, 1e-3), _entry(bo.Novograd, 1e-3), _entry(bo.Adan, 1e-3), _entry(bo.Fromage, 1e-2),
    _entry(bo.SM3, 1e-2), _entry(bo.Lamb, 1e-3, 'hand'), _entry(bo.Lars, 1e-2),
    _entry(bo.Adafactor, 1e-2, 'hand'), _entry(bo.Muon, 1e-3, 'hand'), _entry(bo.ScheduleFreeSGD, 1e-2),
    _entry(bo.ScheduleFreeAdamW, 2.5e-3), _entry(bo.Prodigy, 1.0, 'prodigy'),
    Entry('LBFGS', _plain(bo.LBFGS, 1e-2), 1e-2, 'optax',
          lambda: optax.lbfgs(learning_rate=1e-2, memory_size=10, scale_init_precond=True, linesearch=None)),
    Entry('OptaxOptimizer', lambda **o: bo.OptaxOptimizer(optax.adam(1e-3), **o), 1e-3, 'optax',
          lambda: optax.adam(1e-3)),
    Entry('Lookahead', lambda **o: bo.Lookahead(bo.Adam(lr=1e-3, **o), sync_period=5, alpha=0.5), 1e-3,
          'optax', lambda: optax.lookahead(optax.adam(1e-3), 5, 0.5)),
]
BY_NAME = {e.name: e for e in CATALOG}
QUICK_DEFAULT = None            # --quick runs the whole catalog, with fewer repetitions


def _core(opt):
    """The Optimizer that owns the step (a Lookahead's inner one)."""
    return opt.base_optimizer if isinstance(opt, bo.Lookahead) else opt


# --------------------------------------------------------------------------- the model
def problem(n: int, seed: int = 0):
    """``n`` arrays alternating (64,) and (64, 64), their initial values and fixed gradients."""
    rng = np.random.default_rng(seed)
    shapes = [(64,) if i % 2 == 0 else (64, 64) for i in range(n)]
    keys = [f'p{i:04d}' for i in range(n)]
    init = {k: jnp.asarray(rng.standard_normal(s, dtype=np.float32) * 0.5) for k, s in zip(keys, shapes)}
    grads = {k: jnp.asarray(rng.standard_normal(s, dtype=np.float32) * 1e-2) for k, s in zip(keys, shapes)}
    return keys, init, grads


def _states(keys, init):
    return {k: brainstate.ParamState(jnp.array(init[k], copy=True)) for k in keys}


def make_floor(keys, init, grads) -> Contender:
    states = _states(keys, init)

    @brainstate.transform.jit
    def floor(g):
        for k in keys:
            states[k].value = states[k].value - 1e-3 * g[k]

    def call():
        floor(grads)
        jax.block_until_ready(states[keys[0]].value)

    t0 = time.perf_counter()
    call()
    return Contender('floor', call, time.perf_counter() - t0)


def make_ours(entry: Entry, keys, init, grads, fused=None) -> Contender:
    states = _states(keys, init)
    opt = entry.make(fused=fused).register_trainable_weights(states)
    step = brainstate.transform.jit(lambda g: opt.update(g))

    def call():
        step(grads)
        jax.block_until_ready(states[keys[0]].value)

    t0 = time.perf_counter()
    call()
    c = Contender(entry.name if fused is None else f'{entry.name} per-array', call, time.perf_counter() - t0)
    c.opt = opt
    return c


def state_bytes_per_param(opt, n_params: int) -> float:
    states = brainstate.graph.states(opt).values()
    return sum(leaf.nbytes for s in states for leaf in jax.tree.leaves(s.value)) / n_params


# --------------------------------------------------------------------------- in a loop
#: optimizers that take the gradient of a quadratic in the loop: with a fixed gradient L-BFGS sees no
#: curvature and Prodigy's distance estimate grows without bound (both would produce NaN)
QUADRATIC = ('LBFGS', 'Prodigy')


def _loop_grads(entry: Entry, g, p):
    """The gradient a loop step uses: fixed, except ``g + 0.1 p`` for ``QUADRATIC``."""
    return g + 0.1 * p if entry.name in QUADRATIC else g


def make_ours_loop(entry: Entry, keys, init, grads) -> Contender:
    states = _states(keys, init)
    opt = entry.make().register_trainable_weights(states)

    @brainstate.transform.jit
    def epoch(g):
        def body(_):
            opt.update({k: _loop_grads(entry, g[k], states[k].value) for k in keys})
        brainstate.transform.for_loop(body, jnp.arange(LOOP_STEPS))

    def call():
        epoch(grads)
        jax.block_until_ready(states[keys[0]].value)

    t0 = time.perf_counter()
    call()
    c = Contender(f'{entry.name}/ours', call, time.perf_counter() - t0)
    c.final = lambda: np.concatenate([np.asarray(states[k].value).ravel() for k in keys])
    return c


def _rule_reference(entry: Entry):
    """``(init, step)`` over lists of arrays from the algorithm's own pure rule, one array at a time."""
    cls = type(_core(entry.make()))
    rule = cls.build_rule(cls.default_settings())
    decay = cls.default_weight_decay()
    if decay and cls.weight_decay_mode != 'decoupled':
        raise ValueError(f'{entry.name}: the rule reference applies decoupled decay only')
    lr = entry.lr

    def init(params):
        return [rule.init(p) for p in params]

    def step(params, grads, state, t):
        new_params, new_state = [], []
        for p, g, buffers in zip(params, grads, state):
            delta, buffers = rule.update(g, buffers, p, lr, t)
            new_params.append((p * (1.0 - lr * decay) if decay else p) + delta)
            new_state.append(buffers)
        return new_params, new_state

    return init, step


def _hand_reference(entry: Entry):
    kwargs = {'lr': entry.lr}
    if entry.name == 'Lamb':
        kwargs['weight_decay'] = type(entry.make()).default_weight_decay()
    one_init, one_step = references.HAND_WRITTEN[entry.name](**kwargs)

    def init(params):
        return [one_init(p) for p in params]

    def step(params, grads, state, t):
        out = [one_step(p, g, s, t.astype(jnp.float32)) for p, g, s in zip(params, grads, state)]
        return [o[0] for o in out], [o[1] for o in out]

    return init, step


def _prodigy_reference(entry: Entry):
    h = bo.Prodigy.default_settings()

    def init(params):
        buffers = [prodigy_init(p) for p in params]
        return ({name: [b[name] for b in buffers] for name in buffers[0]},
                jnp.asarray(h.d0, jnp.float32), jnp.zeros((), jnp.float32))

    def step(params, grads, state, t):
        buffers, d, r = state
        deltas, buffers, d, r = prodigy_step(grads, params, buffers, [entry.lr] * len(params), [0.0] * len(params),
                                             t, d, r, betas=h.betas, beta3=h.beta3, eps=h.eps, d0=h.d0,
                                             d_coef=h.d_coef, growth_rate=h.growth_rate,
                                             safeguard_warmup=h.safeguard_warmup,
                                             use_bias_correction=h.use_bias_correction)
        return [p + delta for p, delta in zip(params, deltas)], (buffers, d, r)

    return init, step


def _optax_reference(entry: Entry):
    tx = entry.optax()
    lookahead = entry.name == 'Lookahead'

    def init(params):
        if lookahead:
            params = optax.LookaheadParams.init_synced(params)
        return params, tx.init(params)

    def step(params, grads, state, t):
        wrapped, opt_state = state
        updates, opt_state = tx.update(grads, opt_state, wrapped)
        wrapped = optax.apply_updates(wrapped, updates)
        return (wrapped.fast if lookahead else wrapped), (wrapped, opt_state)

    return init, step


REFERENCES = {'rule': _rule_reference, 'hand': _hand_reference, 'prodigy': _prodigy_reference,
              'optax': _optax_reference}


def make_reference_loop(entry: Entry, keys, init, grads) -> Contender:
    ref_init, ref_step = REFERENCES[entry.reference](entry)
    glist = [grads[k] for k in keys]
    box = {'p': [jnp.array(init[k], copy=True) for k in keys]}
    box['s'] = ref_init(box['p'])
    box['t'] = jnp.zeros((), jnp.int32)

    @jax.jit
    def epoch(params, state, t, g):
        def body(carry, _):
            params, state, t = carry
            t = t + 1
            params, state = ref_step(params, [_loop_grads(entry, gi, pi) for gi, pi in zip(g, params)], state, t)
            return (params, state, t), None
        return jax.lax.scan(body, (params, state, t), None, length=LOOP_STEPS)[0]

    def call():
        box['p'], box['s'], box['t'] = epoch(box['p'], box['s'], box['t'], glist)
        jax.block_until_ready(box['p'][0])

    t0 = time.perf_counter()
    call()
    c = Contender(f'{entry.name}/reference', call, time.perf_counter() - t0)
    c.final = lambda: np.concatenate([np.asarray(p).ravel() for p in box['p']])
    return c


# --------------------------------------------------------------------------- compile time
def compile_in_fresh_process(name: str, n: int) -> float:
    result = subprocess.run([sys.executable, os.path.abspath(__file__), '--one-compile', name, str(n)],
                            capture_output=True, text=True)
    if result.returncode != 0:
        log(f'    {name} at {n}: failed: {result.stderr.strip().splitlines()[-1:]}')
        return float('nan')
    return float(result.stdout.strip().splitlines()[-1])


def one_compile(name: str, n: int) -> float:
    keys, init, grads = problem(n)
    c = make_floor(keys, init, grads) if name == 'floor' else make_ours(BY_NAME[name], keys, init, grads)
    return c.compile_s


# --------------------------------------------------------------------------- running
def run(entries: Sequence[Entry], quick: bool, sizes: Sequence[int], n: int = 500) -> Dict:
    keys, init, grads = problem(n)
    n_params = sum(int(np.prod(init[k].shape)) for k in keys)
    out: Dict = {'entries': [e.name for e in entries], 'n_params': n_params, 'n_arrays': n}

    # -- per call
    log(f'per call: {len(entries)} optimizers on {n} arrays ({n_params:,} parameters)')
    contenders = [make_floor(keys, init, grads)]
    state_bytes, first_call = {}, {'floor': contenders[0].compile_s}
    for entry in entries:
        c = make_ours(entry, keys, init, grads)
        contenders.append(c)
        state_bytes[entry.name] = state_bytes_per_param(c.opt, n_params)
        first_call[entry.name] = c.compile_s
        log(f'  {entry.name}: first call {c.compile_s:.2f} s')
        if not quick:
            pa = make_ours(entry, keys, init, grads, fused=False)
            contenders.append(pa)
            first_call[pa.label] = pa.compile_s
    for c in contenders:
        c.opt = None
    gc.collect()
    reps, warmup = (6, 1) if quick else (25, 3)
    log(f'  timing {len(contenders)} contenders round-robin ({warmup} + {reps} reps)')
    times = round_robin(contenders, reps, warmup)
    out['per_call_ms'] = {label: float(np.median(ts)) * 1e3 for label, ts in times.items()}
    out['state_bytes'] = state_bytes
    out['first_call_in_process'] = first_call
    del contenders, times
    gc.collect()

    # -- in a loop
    log(f'in a loop: {LOOP_STEPS} steps per call')
    contenders = []
    for entry in entries:
        ours = make_ours_loop(entry, keys, init, grads)
        ref = make_reference_loop(entry, keys, init, grads)
        log(f'  {entry.name}: first calls ours {ours.compile_s:.2f} s, reference {ref.compile_s:.2f} s')
        contenders += [ours, ref]
    reps, warmup = (2, 1) if quick else (7, 1)
    log(f'  timing {len(contenders)} contenders round-robin ({warmup} + {reps} reps)')
    times = round_robin(contenders, reps, warmup)
    out['loop_ms'] = {label: float(np.median(ts)) * 1e3 / LOOP_STEPS for label, ts in times.items()}
    agree = {}
    scale = max(float(np.max(np.abs(np.asarray(init[k])))) for k in keys)
    for entry in entries:
        ours = next(c for c in contenders if c.label == f'{entry.name}/ours').final()
        ref = next(c for c in contenders if c.label == f'{entry.name}/reference').final()
        agree[entry.name] = float(np.max(np.abs(ours - ref))) / scale
    out['agree'] = agree
    out['loop_steps'] = (1 + warmup + reps) * LOOP_STEPS
    del contenders, times
    gc.collect()

    # -- compile time, fresh processes
    out['compile'] = {}
    if not quick:
        for size in sizes:
            log(f'compile time at {size} arrays, one fresh process each')
            row = {'floor': compile_in_fresh_process('floor', size)}
            for entry in entries:
                row[entry.name] = compile_in_fresh_process(entry.name, size)
                log(f'  {entry.name}: {row[entry.name]:.2f} s (floor {row["floor"]:.2f} s)')
            out['compile'][size] = row
    return out


# --------------------------------------------------------------------------- report
def _mark(value: float, goal: float) -> str:
    return '' if value != value else (' ✓' if value <= goal else ' ✗')


def report(res: Dict, argv: Sequence[str], quick: bool, wall: float, plot_path: Optional[str]) -> str:
    lines: List[str] = []
    w = lines.append
    names = res['entries']
    pc, loop = res['per_call_ms'], res['loop_ms']
    floor = pc['floor']
    w(f'Command: `python {" ".join(argv)}`' + (' (quick mode)' if quick else '') +
      f'; total wall time {wall:.0f} s; jax {jax.__version__}, jaxlib {_jaxlib_version()}, brainstate '
      f'{brainstate.__version__}, optax {optax.__version__}, devices {", ".join(str(d) for d in jax.devices())}, '
      f'{len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()} CPU cores.')
    w('')
    w(f'{res["n_arrays"]} float32 arrays, (64,) and (64, 64) alternating ({res["n_params"]:,} parameters); default layout '
      f'(`fused=None`). Per call: one `opt.update` in one `brainstate.transform.jit` call, median, over the '
      f'floor ({_fmt_ms(floor)} ms). In a loop: {LOOP_STEPS} steps per call, per step, over the per-array '
      f'plain-JAX reference (hand-written: Adam, Lamb, Adafactor, Muon; the pure rule array by array: the other '
      f'rule-based ones; optax: L-BFGS, Lookahead, OptaxOptimizer); `agree` is max |ours - reference| / '
      f'max |initial parameter| after {res["loop_steps"]} steps (L-BFGS and Prodigy minimise a quadratic '
      f'there, the others take a fixed gradient). Compile: first call in a fresh process.'
      f' ✓/✗: the issue\'s goal (per call <= {GOALS["per_call"]}x, in a loop <= {GOALS["in_loop"]}x, compile '
      f'<= {GOALS["compile_500"]} s at 500 arrays and <= {GOALS["compile_3000_over_floor"]} s over the floor at '
      f'3,000).')
    w('')
    sizes = sorted(res['compile'])
    head = '| optimizer | per call (ms) | / floor |'
    head += ' per-array layout / floor |' if not quick else ''
    head += ' in loop (ms/step) | / reference | agree |'
    head += ''.join(f' compile {s:,} (s) |' for s in sizes)
    head += ''.join(' 3,000 - floor (s) |' for s in sizes if s == 3000)
    head += ' state bytes / param |'
    w(head)
    w('|' + '---|' + '---:|' * (head.count('|') - 2))
    ratios, loop_ratios = {}, {}
    for name in names:
        r = pc[name] / floor
        ratios[name] = r
        loop_ratios[name] = loop[f'{name}/ours'] / loop[f'{name}/reference']
        row = f'| {name} | {_fmt_ms(pc[name])} | {r:.2f}x{_mark(r, GOALS["per_call"])} |'
        if not quick:
            row += f' {pc[name + " per-array"] / floor:.2f}x |'
        row += (f' {_fmt_ms(loop[name + "/ours"])} | {loop_ratios[name]:.2f}x{_mark(loop_ratios[name], GOALS["in_loop"])}'
                f' | {res["agree"][name]:.0e} |')
        for s in sizes:
            v = res['compile'][s][name]
            row += f' {v:.2f}{_mark(v, GOALS["compile_500"]) if s == 500 else ""} |'
        for s in sizes:
            if s == 3000:
                over = res['compile'][s][name] - res['compile'][s]['floor']
                row += f' {over:.2f}{_mark(over, GOALS["compile_3000_over_floor"])} |'
        row += f' {res["state_bytes"][name]:.1f} |'
        w(row)
    w('')
    median = float(np.median(list(ratios.values())))
    core = {n: ratios[n] for n in CORE if n in ratios}
    w(f'Median per call over these {len(names)} optimizers: **{median:.2f}x** the floor '
      f'(goal <= {GOALS["per_call_median"]}x){_mark(median, GOALS["per_call_median"])}; '
      + ', '.join(f'{n} {v:.2f}x{_mark(v, GOALS["per_call_core"])}' for n, v in core.items())
      + f' (goal <= {GOALS["per_call_core"]}x).')
    if sizes:
        w('')
        w('Floor first call: ' + ', '.join(f'{res["compile"][s]["floor"]:.2f} s at {s:,} arrays' for s in sizes) + '.')
    if quick:
        w('')
        w('First calls in this process (quick mode; indicative only): ' + ', '.join(
            f'{k} {v:.2f} s' for k, v in res['first_call_in_process'].items()) + '.')
    if plot_path:
        w('')
        w(f'![catalog]({os.path.basename(plot_path)})')
    return '\n'.join(lines)


def plot(res: Dict, path: str) -> bool:
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        log('matplotlib not installed: no plot')
        return False
    names = res['entries']
    floor = res['per_call_ms']['floor']
    per_call = [res['per_call_ms'][n] / floor for n in names]
    per_array = [res['per_call_ms'].get(n + ' per-array', np.nan) / floor for n in names]
    in_loop = [res['loop_ms'][f'{n}/ours'] / res['loop_ms'][f'{n}/reference'] for n in names]
    y = np.arange(len(names))
    panels = 3 if 500 in res['compile'] else 2
    fig, axes = plt.subplots(1, panels, figsize=(4.2 * panels, 0.28 * len(names) + 1.6), sharey=True)
    ax = axes[0]
    ax.barh(y - 0.2, per_array, 0.4, color='#c9c9c9', label='fused=False')
    ax.barh(y + 0.2, per_call, 0.4, color='#3b75af', label='default')
    ax.axvline(1.0, color='k', lw=0.8)
    ax.axvline(GOALS['per_call'], color='#d62728', ls='--', lw=1, label=f'goal {GOALS["per_call"]}x')
    ax.set_xlabel('one jitted call / brainstate floor')
    ax.legend(loc='lower right', fontsize=7)
    ax = axes[1]
    ax.barh(y, in_loop, 0.6, color='#3b75af')
    ax.axvline(1.0, color='k', lw=0.8)
    ax.axvline(GOALS['in_loop'], color='#d62728', ls='--', lw=1)
    ax.set_xlabel(f'in a {LOOP_STEPS}-step loop / per-array JAX')
    if panels == 3:
        ax = axes[2]
        ax.barh(y, [res['compile'][500][n] for n in names], 0.6, color='#3b75af')
        ax.axvline(res['compile'][500]['floor'], color='k', lw=0.8, label='floor')
        ax.axvline(GOALS['compile_500'], color='#d62728', ls='--', lw=1, label='goal')
        ax.set_xlabel('first call at 500 arrays (s)')
        ax.legend(loc='lower right', fontsize=7)
    axes[0].set_yticks(y)
    axes[0].set_yticklabels(names, fontsize=8)
    axes[0].invert_yaxis()
    for ax in axes:
        ax.grid(True, axis='x', alpha=0.3)
    fig.suptitle(f'braintools_optim catalog, {res["n_arrays"]} arrays, XLA:CPU', fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True


def write_output(path: str, body: str, section: str = '') -> None:
    begin, end = (BEGIN_MARK, END_MARK) if not section else (BEGIN_MARK.replace('CATALOG', f'CATALOG {section}'),
                                                             END_MARK.replace('CATALOG', f'CATALOG {section}'))
    write_section(path, begin, end, body)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='fewer repetitions, no fused=False contenders, no fresh-process compile times')
    parser.add_argument('--only', default=None, help='comma-separated optimizer names (default: the whole catalog)')
    parser.add_argument('--sizes', default='500,3000', help='numbers of arrays for the compile times')
    parser.add_argument('--arrays', type=int, default=500, help='number of arrays of the model (a smoke test: 20)')
    parser.add_argument('--out', default=None, help='write the report (between markers) into this file')
    parser.add_argument('--plot', default=None, help='save the catalog chart as this PNG')
    parser.add_argument('--section', default='', help='write into its own marked section of --out (a second run)')
    parser.add_argument('--one-compile', nargs=2, metavar=('NAME', 'N'), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_compile:
        print(one_compile(args.one_compile[0], int(args.one_compile[1])))
        return
    entries = CATALOG if not args.only else [BY_NAME[name] for name in args.only.split(',')]
    shown = ['benchmarks/bench_catalog.py'] + list(sys.argv[1:] if argv is None else argv)
    start = time.perf_counter()
    res = run(entries, args.quick, [int(s) for s in args.sizes.split(',')], args.arrays)
    plotted = bool(args.plot) and plot(res, args.plot)
    body = report(res, shown, args.quick, time.perf_counter() - start, args.plot if plotted else None)
    print(body)
    if args.out:
        write_output(args.out, body, args.section)
        log(f'wrote {args.out}')


if __name__ == '__main__':
    main()
