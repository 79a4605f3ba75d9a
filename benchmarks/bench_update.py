"""Benchmark of one optimizer update step: braintools_optim vs optax vs the limits.

Run from the repository root::

    python benchmarks/bench_update.py            # full run (~5-8 min on 2 shared cores)
    python benchmarks/bench_update.py --quick    # fewer algorithms and repetitions (~1 min)
    python benchmarks/bench_update.py --out benchmarks/RESULTS.md

For every algorithm (Adam, Adadelta, RMSprop, SGD with momentum, plain SGD)
and every configuration (many small arrays, few big arrays, ...) the
following *contenders* each perform one update step per call, with the same
fixed, precomputed gradients:

``ours``
    ``opt.update(grads)`` inside one ``brainstate.transform.jit`` call.
``ours per-array``
    the same with ``fused=False``: one buffer and one rule call per array (the
    layout per-tensor rules always use).
``braintools``
    ``braintools.optim`` (the library users have today, bench extra) in the
    same ``brainstate.transform.jit`` call; ``n/a`` when it is not installed.
``ours eager``
    (Adam, configurations with ``eager=True`` only) a plain ``opt.update(grads)``
    call, which runs the compiled step cached on the optimizer.
``optax``
    the equivalent optax transformation in one ``jax.jit`` call per step, params
    and optimizer state donated, applied leaf by leaf on a dict of arrays.
``optax no-donate``
    (configurations with ``nodonate=True``) the same without donation, which is
    how ``brainstate.transform.jit`` runs ``ours`` and ``floor``.
``flat``
    a hand-written jitted update on ONE flat float32 buffer per quantity
    (params, grads, each moment), donated: the limit a fused implementation
    can reach.
``floor`` (one per configuration)
    a ``brainstate.transform.jit`` call that only writes ``p - lr * g`` into each
    ``ParamState``: the cost of brainstate's per-State bookkeeping plus the
    cheapest possible update.
``copy``
    a jitted element-wise op on flat donated buffers that reads and writes as
    many float32 arrays as the algorithm must (Adam: reads p, g, m, v; writes
    p, m, v): an approximate memory-traffic bound.

Contenders are run round-robin (one call each per repetition, starting
position rotated every repetition) so machine noise hits all of them alike;
the tables report medians. Every contender is called the same number of
times from the same initial values, so at the end ``ours``, ``optax`` and
``flat`` must hold the same parameters: the script checks that as well.

The generated part of the output file lies between two marker lines; any
text outside them (the hand-written interpretation) is kept on re-runs.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import gc
import os
import platform
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import brainstate
import brainunit
import jax
import jax.numpy as jnp
import numpy as np
import optax

import braintools_optim as bo
from _report import write_section   # noqa: E402

try:                                   # the library users have today (bench extra)
    import braintools.optim as braintools_optim_today
except ImportError:                    # pragma: no cover - reported as n/a
    braintools_optim_today = None

#: the same algorithms in braintools.optim (same hyper-parameters as ALGORITHMS below)
BRAINTOOLS = {
    'adam': lambda: braintools_optim_today.Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8),
    'adadelta': lambda: braintools_optim_today.Adadelta(lr=1.0, rho=0.9, eps=1e-6),
    'rmsprop': lambda: braintools_optim_today.RMSprop(lr=1e-2, alpha=0.99, eps=1e-8),
    'sgd_momentum': lambda: braintools_optim_today.SGD(lr=1e-2, momentum=0.9),
    'sgd': lambda: braintools_optim_today.SGD(lr=1e-2),
}

BEGIN_MARK = '<!-- BEGIN GENERATED (bench_update.py rewrites everything between these markers) -->'
END_MARK = '<!-- END GENERATED -->'

F32 = jnp.float32
BYTES = 4  # float32


# --------------------------------------------------------------------------- algorithms
@dataclasses.dataclass(frozen=True)
class Algorithm:
    """One optimizer, written three ways with the same hyper-parameters."""

    name: str
    make_ours: Callable[[], bo.Optimizer]
    make_optax: Callable[[], optax.GradientTransformation]
    n_buffers: int                        # moments kept per parameter element
    flat_update: Callable                 # (p, g, buffers, t) -> (p, buffers, t)
    note: str


def _flat_adam(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    def update(p, g, bufs, t):
        m, v = bufs
        t = t + 1
        tf = t.astype(F32)
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * (g * g)
        c1 = 1.0 - jnp.power(F32(b1), tf)
        c2 = 1.0 - jnp.power(F32(b2), tf)
        p = p - (lr / c1) * m / (jnp.sqrt(v / c2) + eps)
        return p, (m, v), t
    return update


def _flat_adadelta(lr=1.0, rho=0.9, eps=1e-6):
    def update(p, g, bufs, t):
        sq, acc = bufs
        sq = rho * sq + (1.0 - rho) * (g * g)
        d = jnp.sqrt(acc + eps) / jnp.sqrt(sq + eps) * g
        acc = rho * acc + (1.0 - rho) * (d * d)
        return p - lr * d, (sq, acc), t + 1
    return update


def _flat_rmsprop(lr=1e-2, alpha=0.99, eps=1e-8):
    def update(p, g, bufs, t):
        (v,) = bufs
        v = alpha * v + (1.0 - alpha) * (g * g)
        return p - lr * g / (jnp.sqrt(v) + eps), (v,), t + 1
    return update


def _flat_sgd_momentum(lr=1e-2, mu=0.9):
    def update(p, g, bufs, t):
        (b,) = bufs
        b = mu * b + g
        return p - lr * b, (b,), t + 1
    return update


def _flat_sgd(lr=1e-2):
    def update(p, g, bufs, t):
        return p - lr * g, (), t + 1
    return update


ALGORITHMS: Dict[str, Algorithm] = {
    'adam': Algorithm(
        'Adam', lambda **kw: bo.Adam(lr=1e-3, betas=(0.9, 0.999), eps=1e-8),
        lambda: optax.adam(1e-3, b1=0.9, b2=0.999, eps=1e-8),
        2, _flat_adam(), 'lr 1e-3, betas (0.9, 0.999), eps 1e-8'),
    'adadelta': Algorithm(
        'Adadelta', lambda **kw: bo.Adadelta(lr=1.0, rho=0.9, eps=1e-6),
        lambda: optax.adadelta(learning_rate=1.0, rho=0.9, eps=1e-6),
        2, _flat_adadelta(), 'lr 1.0, rho 0.9, eps 1e-6'),
    'rmsprop': Algorithm(
        'RMSprop', lambda **kw: bo.RMSprop(lr=1e-2, alpha=0.99, eps=1e-8),
        # our default is torch's sqrt(v) + eps; optax's default puts eps inside the sqrt
        lambda: optax.rmsprop(1e-2, decay=0.99, eps=1e-8, eps_in_sqrt=False),
        1, _flat_rmsprop(), 'lr 1e-2, alpha 0.99, eps 1e-8 outside the sqrt (optax eps_in_sqrt=False)'),
    'sgd_momentum': Algorithm(
        'SGD-momentum', lambda **kw: bo.SGD(lr=1e-2, momentum=0.9, **kw),
        lambda: optax.sgd(1e-2, momentum=0.9),
        1, _flat_sgd_momentum(), 'lr 1e-2, momentum 0.9'),
    'sgd': Algorithm(
        'SGD (plain)', lambda **kw: bo.SGD(lr=1e-2, **kw),
        lambda: optax.sgd(1e-2),
        0, _flat_sgd(), 'lr 1e-2, no momentum: same math as the floor'),
}


# --------------------------------------------------------------------------- configurations
@dataclasses.dataclass(frozen=True)
class Config:
    key: str
    n_arrays: int
    size: int
    algorithms: Tuple[str, ...]
    reps: int
    warmup: int
    description: str
    eager: bool = False      # also time eager opt.update and bare no-op calls (Adam)
    nodonate: bool = False   # also time optax without donation (brainstate.jit donates nothing)
    direct: bool = False     # also time the jax.jit inside brainstate's jit, called directly

    @property
    def total(self) -> int:
        return self.n_arrays * self.size


ALL = ('adam', 'adadelta', 'rmsprop', 'sgd_momentum', 'sgd')
QUICK = ('adam', 'adadelta', 'rmsprop')


def configs(quick: bool) -> List[Config]:
    if quick:
        return [
            Config('tiny', 10, 8, ('adam',), 60, 5, 'tiny model: 10 arrays x 8', eager=True, direct=True),
            Config('a', 500, 2048, ('adam',), 8, 2, '(a) 500 arrays x 2048', eager=True, direct=True),
            Config('b', 4, 4_194_304, QUICK, 5, 1, '(b) 4 arrays x 4,194,304', nodonate=True),
        ]
    return [
        Config('tiny', 10, 8, ALL, 200, 10, 'tiny model: 10 arrays x 8',
               eager=True, nodonate=True, direct=True),
        Config('a', 500, 2048, ALL, 50, 3, '(a) 500 arrays x 2048', eager=True, nodonate=True, direct=True),
        Config('a8', 500, 8, ('adam', 'sgd'), 40, 3,
               '(a8) 500 arrays x 8: config (a)\'s structure with negligible data, i.e. pure per-call overhead',
               direct=True),
        Config('b', 4, 4_194_304, ALL, 25, 2, '(b) 4 arrays x 4,194,304', nodonate=True),
    ]


# --------------------------------------------------------------------------- contenders
@dataclasses.dataclass
class Contender:
    label: str                                  # e.g. 'adam/ours'
    call: Callable[[], None]                    # one step, blocking until done
    compile_s: float                            # wall clock of the first call
    final: Optional[Callable[[], np.ndarray]] = None   # final params, flattened in key order


def _time_first(call) -> float:
    t0 = time.perf_counter()
    call()
    return time.perf_counter() - t0


def _fresh(x):
    return jnp.array(x, copy=True)


def make_ours(algo: Algorithm, keys, init, grads, eager: bool = False, direct: bool = False,
              fused=None, make=None, label: Optional[str] = None) -> Contender:
    states = {k: brainstate.ParamState(_fresh(init[k])) for k in keys}
    opt = make() if make is not None else algo.make_ours(fused=fused)
    opt.register_trainable_weights(states)
    probe = states[keys[0]]
    if eager:
        def call():
            opt.update(grads)
            jax.block_until_ready(probe.value)
    else:
        @brainstate.transform.jit
        def step(g):
            opt.update(g)

        def call():
            step(grads)
            jax.block_until_ready(probe.value)
    compile_s = _time_first(call)
    contender = Contender(label or ('ours eager' if eager else 'ours'), call, compile_s,
                          lambda: np.concatenate([np.asarray(states[k].value).ravel() for k in keys]))
    if not eager:
        contender.opt, contender.step = opt, step      # for the bookkeeping counts
        contender.xla_only = make_xla_only(step, grads, 'ours xla-only') if direct else None
    return contender


def _first_leaf(tree):
    while isinstance(tree, (list, tuple, dict)):
        tree = next(iter(tree.values())) if isinstance(tree, dict) else tree[0]
    return tree


def make_xla_only(bs_jitted, grads, label: str) -> Optional[Contender]:
    """Call the ``jax.jit`` inside a ``brainstate.transform.jit`` function directly.

    Same compiled executable and same inputs as the real call (the State values
    are snapshotted once), but without brainstate's Python work around it
    (looking up the State trace, checking it is not stale, reading and writing
    every State). The outputs are dropped, so the States do not advance.
    """
    try:
        trace = bs_jitted.stateful_fun.get_state_trace(grads)
        values = trace.get_state_values()
        inner = bs_jitted.jitted_fun
    except Exception as err:        # brainstate internals: best effort only
        log(f'    (no {label}: {err!r})')
        return None

    def call():
        jax.block_until_ready(_first_leaf(inner(values, grads)))

    return Contender(label, call, _time_first(call))


def make_optax(algo: Algorithm, keys, init, grads, donate: bool = True) -> Contender:
    tx = algo.make_optax()

    def step(params, opt_state, g):
        updates, opt_state = tx.update(g, opt_state, params)
        return optax.apply_updates(params, updates), opt_state

    jitted = jax.jit(step, donate_argnums=(0, 1) if donate else ())
    box = {'p': {k: _fresh(init[k]) for k in keys}}
    box['s'] = tx.init(box['p'])
    probe = keys[0]

    def call():
        box['p'], box['s'] = jitted(box['p'], box['s'], grads)
        jax.block_until_ready(box['p'][probe])

    compile_s = _time_first(call)
    c = Contender('optax' if donate else 'optax no-donate', call, compile_s,
                  lambda: np.concatenate([np.asarray(box['p'][k]).ravel() for k in keys]))
    c.n_leaves_in = len(jax.tree.leaves((box['p'], box['s'], grads)))
    c.n_leaves_out = len(jax.tree.leaves((box['p'], box['s'])))
    return c


def make_flat(algo: Algorithm, flat_init, flat_grads) -> Contender:
    jitted = jax.jit(algo.flat_update, donate_argnums=(0, 2, 3))
    box = {'p': _fresh(flat_init),
           'b': tuple(jnp.zeros_like(flat_init) for _ in range(algo.n_buffers)),
           't': jnp.zeros((), jnp.int32)}

    def call():
        box['p'], box['b'], box['t'] = jitted(box['p'], flat_grads, box['b'], box['t'])
        jax.block_until_ready(box['p'])

    return Contender('flat', call, _time_first(call), lambda: np.asarray(box['p']))


def make_copy(n_buffers: int, flat_init, flat_grads) -> Contender:
    """Reads p, g and n_buffers moments, writes p and the moments: no arithmetic to speak of."""

    def touch(p, g, bufs):
        return p + g, tuple(b + g for b in bufs)

    jitted = jax.jit(touch, donate_argnums=(0, 2))
    box = {'p': _fresh(flat_init), 'b': tuple(jnp.zeros_like(flat_init) for _ in range(n_buffers))}

    def call():
        box['p'], box['b'] = jitted(box['p'], flat_grads, box['b'])
        jax.block_until_ready(box['p'])

    return Contender('copy', call, _time_first(call))


def make_floor(keys, init, grads, lr=1e-3, direct: bool = False) -> Contender:
    states = {k: brainstate.ParamState(_fresh(init[k])) for k in keys}
    probe = states[keys[0]]

    @brainstate.transform.jit
    def floor(g):
        for k in keys:
            states[k].value = states[k].value - lr * g[k]

    def call():
        floor(grads)
        jax.block_until_ready(probe.value)

    c = Contender('floor', call, _time_first(call))
    c.xla_only = make_xla_only(floor, grads, 'floor xla-only') if direct else None
    return c


def make_noops(grads) -> List[Contender]:
    noop0 = jax.jit(lambda: None)
    noop_g = jax.jit(lambda g: None)
    noop_bs = brainstate.transform.jit(lambda: None)
    out = []
    for label, fn, args in (('noop jax.jit()', noop0, ()),
                            ('noop jax.jit(grads)', noop_g, (grads,)),
                            ('noop brainstate.jit()', noop_bs, ())):
        call = (lambda fn=fn, args=args: fn(*args))
        out.append(Contender(label, call, _time_first(call)))
    return out


# --------------------------------------------------------------------------- running
def round_robin(contenders: Sequence[Contender], reps: int, warmup: int) -> Dict[str, List[float]]:
    """Call every contender once per repetition, rotating who goes first."""
    times: Dict[str, List[float]] = {c.label: [] for c in contenders}
    n = len(contenders)
    for r in range(warmup + reps):
        start = r % n
        for c in list(contenders[start:]) + list(contenders[:start]):
            t0 = time.perf_counter()
            c.call()
            dt = time.perf_counter() - t0
            if r >= warmup:
                times[c.label].append(dt)
    return times


def _stats(xs: List[float]) -> Dict[str, float]:
    q = np.percentile(np.asarray(xs) * 1e3, [25, 50, 75])
    return dict(p25=q[0], median=q[1], p75=q[2], min=min(xs) * 1e3, n=len(xs))


def log(msg: str) -> None:
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


def run_config(cfg: Config) -> Dict:
    log(f'config {cfg.key}: {cfg.n_arrays} x {cfg.size} = {cfg.total:,} params, '
        f'algorithms {", ".join(cfg.algorithms)}')
    keys = [(f'layer{i:04d}', 'w') for i in range(cfg.n_arrays)]
    rng = np.random.default_rng(0)
    init = {k: jnp.asarray(rng.standard_normal(cfg.size, dtype=np.float32) * 0.02) for k in keys}
    grads = {k: jnp.asarray(rng.standard_normal(cfg.size, dtype=np.float32) * 1e-2) for k in keys}
    flat_init = jnp.concatenate([init[k] for k in keys])
    flat_grads = jnp.concatenate([grads[k] for k in keys])

    contenders: List[Contender] = []
    compile_s: Dict[str, float] = {}
    extra: Dict[str, Dict] = {}

    def add(prefix: str, c: Contender) -> Contender:
        c.label = f'{prefix}/{c.label}' if prefix else c.label
        contenders.append(c)
        compile_s[c.label] = c.compile_s
        return c

    floor = add('', make_floor(keys, init, grads, direct=cfg.direct))
    if floor.xla_only is not None:
        add('', floor.xla_only)
    for name in cfg.algorithms:
        algo = ALGORITHMS[name]
        log(f'  {name}: compiling ours, optax, flat, copy')
        ours = add(name, make_ours(algo, keys, init, grads, direct=cfg.direct))
        if ours.xla_only is not None:
            add(name, ours.xla_only)
        opt_c = add(name, make_optax(algo, keys, init, grads))
        add(name, make_flat(algo, flat_init, flat_grads))
        add(name, make_copy(algo.n_buffers, flat_init, flat_grads))
        if cfg.nodonate:
            add(name, make_optax(algo, keys, init, grads, donate=False))
        add(name, make_ours(algo, keys, init, grads, fused=False, label='ours per-array'))
        if braintools_optim_today is not None:
            bt = add(name, make_ours(algo, keys, init, grads, make=BRAINTOOLS[name], label='braintools'))
            bt.final = None            # its own conventions; not part of the agreement check
        extra[name] = dict(ours_counts=_bookkeeping_counts(ours, grads),
                           optax_leaves=(opt_c.n_leaves_in, opt_c.n_leaves_out))
    if cfg.eager:
        log('  adam: eager opt.update and no-op calls')
        add('adam', make_ours(ALGORITHMS['adam'], keys, init, grads, eager=True))
        for c in make_noops(grads):
            add('', c)

    gc.collect()
    log(f'  timing {len(contenders)} contenders round-robin: {cfg.warmup} warm-up + {cfg.reps} reps')
    t0 = time.perf_counter()
    times = round_robin(contenders, cfg.reps, cfg.warmup)
    log(f'  timed in {time.perf_counter() - t0:.1f} s')

    # Every ours/optax/flat contender made the same number of steps from the same start.
    agreement = {}
    for name in cfg.algorithms:
        finals = {c.label.split('/')[1]: c.final() for c in contenders
                  if c.final is not None and c.label.split('/')[0] == name}
        scale = float(np.max(np.abs(finals['flat']))) or 1.0
        agreement[name] = {other: float(np.max(np.abs(finals[other] - finals['flat']))) / scale
                           for other in finals if other != 'flat'}
    steps = 1 + cfg.warmup + cfg.reps
    del contenders
    gc.collect()
    return dict(cfg=cfg, stats={k: _stats(v) for k, v in times.items()}, compile_s=compile_s,
                extra=extra, agreement=agreement, steps=steps)


def _bookkeeping_counts(ours: Contender, grads) -> Dict[str, int]:
    """How many States / array leaves one jitted ``ours`` call moves through brainstate."""
    opt = ours.opt
    out = dict(param_states=len(opt.param_states), grad_leaves=len(jax.tree.leaves(grads)))
    try:
        trace = ours.step.stateful_fun.get_state_trace(grads)
        states = list(trace.states)
        out['states'] = len(states)
        out['state_leaves'] = sum(len(jax.tree.leaves(s.value)) for s in states)
        out['written_states'] = len(trace.get_write_states())
    except Exception as err:       # brainstate internals: best effort only
        out['error'] = repr(err)
    return out


# --------------------------------------------------------------------------- report
def _fmt_ms(x: float) -> str:
    if x >= 100:
        return f'{x:.0f}'
    if x >= 10:
        return f'{x:.1f}'
    if x >= 1:
        return f'{x:.2f}'
    if x >= 0.1:
        return f'{x:.3f}'
    return f'{x:.4f}'


def _ratio(a: float, b: float) -> str:
    return f'{a / b:.2f}x' if b > 0 else 'n/a'


def _jaxlib_version() -> str:
    try:
        import jaxlib
        return jaxlib.__version__
    except Exception:
        return '?'


def report(results: List[Dict], argv: Sequence[str], quick: bool, wall_s: float) -> str:
    lines: List[str] = []
    w = lines.append
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    affinity = len(os.sched_getaffinity(0)) if hasattr(os, 'sched_getaffinity') else os.cpu_count()
    w(f'Command: `python {" ".join(argv)}`' + (' (quick mode)' if quick else ''))
    w('')
    w(f'- date: {now}; total wall time of this run: {wall_s:.0f} s')
    w(f'- python {platform.python_version()}, jax {jax.__version__}, jaxlib {_jaxlib_version()}, brainstate '
      f'{brainstate.__version__}, brainunit {brainunit.__version__}, optax {optax.__version__}, '
      f'braintools_optim {bo.__version__}')
    w(f'- devices: {", ".join(str(d) for d in jax.devices())}; CPU cores: os.cpu_count()='
      f'{os.cpu_count()}, usable={affinity}; {platform.platform()}; {platform.processor() or "?"}')
    w('- float32 throughout; times are medians over interleaved repetitions, in milliseconds '
      'per update step (wall clock, `time.perf_counter`, blocking on a parameter after each call)')
    w('')
    w('Contenders: **ours** = `opt.update(grads)` in one `brainstate.transform.jit` call; '
      '**optax** = the optax transformation in one `jax.jit` call, params and state donated, '
      'per leaf on the same dict (**optax no-donate**: the same without donation, which is how '
      '`brainstate.transform.jit` runs ours and the floor); **flat** = hand-written jitted update on one flat buffer per '
      'quantity, donated; **floor** = one `brainstate.transform.jit` call writing `p - lr*g` into '
      'every ParamState; **copy** = one jitted element-wise op on flat donated buffers reading and '
      'writing as many float32 arrays as the algorithm must. Hyper-parameters:')
    for name in ALL:
        a = ALGORITHMS[name]
        w(f'  {a.name}: {a.note}; reads {2 + a.n_buffers} / writes {1 + a.n_buffers} arrays per element.')
    w('')

    # ---- main tables
    for res in results:
        cfg, st = res['cfg'], res['stats']
        mb = cfg.total * BYTES / 2 ** 20
        w(f'### Config {cfg.description}')
        w('')
        w(f'{cfg.total:,} float32 parameters ({mb:.2f} MiB per full-size buffer); '
          f'{cfg.reps} timed repetitions after {cfg.warmup} warm-up. '
          f'floor: {_fmt_ms(st["floor"]["median"])} ms.')
        w('')
        nd = cfg.nodonate
        w('| algorithm | ours | ours per-array | braintools | optax | ' + ('optax no-donate | ' if nd else '') +
          'flat | copy | ours/floor | per-array/floor | braintools/floor | ours/optax | ' +
          ('ours/optax no-donate | ' if nd else '') + 'ours/flat | ours/copy | flat GB/s |')
        w('|---|' + '---:|' * (13 + 2 * nd))
        for name in cfg.algorithms:
            a = ALGORITHMS[name]
            m = {k: st[f'{name}/{k}']['median'] for k in ('ours', 'optax', 'flat', 'copy')}
            traffic = cfg.total * BYTES * (3 + 2 * a.n_buffers)
            gbs = traffic / (m['flat'] * 1e-3) / 1e9
            nd_ms = st[f'{name}/optax no-donate']['median'] if nd else None
            per_array = st[f'{name}/ours per-array']['median']
            bt = st[f'{name}/braintools']['median'] if f'{name}/braintools' in st else None
            floor_ms = st["floor"]["median"]
            w(f'| {a.name} | {_fmt_ms(m["ours"])} | {_fmt_ms(per_array)} | '
              f'{_fmt_ms(bt) if bt else "n/a"} | {_fmt_ms(m["optax"])} | ' +
              (f'{_fmt_ms(nd_ms)} | ' if nd else '') +
              f'{_fmt_ms(m["flat"])} | {_fmt_ms(m["copy"])} | {_ratio(m["ours"], floor_ms)} | '
              f'{_ratio(per_array, floor_ms)} | {_ratio(bt, floor_ms) if bt else "n/a"} | '
              f'{_ratio(m["ours"], m["optax"])} | ' + (f'{_ratio(m["ours"], nd_ms)} | ' if nd else '') +
              f'{_ratio(m["ours"], m["flat"])} | {_ratio(m["ours"], m["copy"])} | {gbs:.1f} |')
        w('')

    # ---- decomposition
    w('### Where a jitted brainstate call spends its time')
    w('')
    w('`direct` calls the `jax.jit` that `brainstate.transform.jit` wraps, with the same '
      'compiled executable and the same inputs (State values snapshotted once), but without '
      'brainstate\'s Python work around it (finding the State trace, checking it is not stale, '
      'reading every State before and writing every written State after). The difference of '
      'the two medians approximates that bookkeeping.')
    w('')
    w('| config | contender | brainstate call | direct | bookkeeping (difference) | bookkeeping share |')
    w('|---|---|---:|---:|---:|---:|')
    for res in results:
        st = res['stats']
        pairs = [('floor', 'floor', 'floor xla-only')] + [
            (f'{ALGORITHMS[n].name} ours', f'{n}/ours', f'{n}/ours xla-only') for n in res['cfg'].algorithms]
        for label, full, direct in pairs:
            if full in st and direct in st:
                a_ms, d_ms = st[full]['median'], st[direct]['median']
                w(f'| {res["cfg"].key} | {label} | {_fmt_ms(a_ms)} | {_fmt_ms(d_ms)} | '
                  f'{_fmt_ms(a_ms - d_ms)} | {100 * (a_ms - d_ms) / a_ms:.0f}% |')
    w('')

    # ---- eager
    eager = [r for r in results if r['cfg'].eager]
    if eager:
        w('### Eager `opt.update(grads)` vs jitted calls (Adam)')
        w('')
        w('Same round-robin as the tables above. `ours eager` is a plain `opt.update(grads)` '
          '(gradient check in Python, then the step compiled and cached on the optimizer).')
        w('')
        labels = ['noop jax.jit()', 'noop jax.jit(grads)', 'noop brainstate.jit()', 'floor',
                  'adam/optax', 'adam/ours', 'adam/ours eager']
        w('| config | ' + ' | '.join(labels) + ' | eager/noop | eager/ours |')
        w('|---|' + '---:|' * (len(labels) + 2))
        for res in eager:
            st = res['stats']
            row = [_fmt_ms(st[l]['median']) for l in labels]
            w(f'| {res["cfg"].key} ({res["cfg"].n_arrays} x {res["cfg"].size}) | ' + ' | '.join(row) +
              f' | {_ratio(st["adam/ours eager"]["median"], st["noop jax.jit()"]["median"])} | '
              f'{_ratio(st["adam/ours eager"]["median"], st["adam/ours"]["median"])} |')
        w('')

    # ---- compile
    w('### Compile time (first call, wall clock, seconds)')
    w('')
    w('Tracing + lowering + XLA compilation + the first step. `floor` is shared by all '
      'algorithms of a configuration. All in one process, in the order ours, optax, flat, copy, '
      'ours per-array, braintools: XLA:CPU reuses compiled kernels within a process, so a contender '
      'compiled after another with the same kernels (ours per-array after optax) looks cheaper than '
      'it is. `bench_scaling.py` measures each contender in a fresh process.')
    w('')
    w('| config | algorithm | ours | ours per-array | braintools | optax | flat | floor | ours - floor |')
    w('|---|---|---:|---:|---:|---:|---:|---:|---:|')
    for res in results:
        cs = res['compile_s']
        for name in res['cfg'].algorithms:
            bt = cs.get(f'{name}/braintools')
            w(f'| {res["cfg"].key} | {ALGORITHMS[name].name} | {cs[f"{name}/ours"]:.2f} | '
              f'{cs[f"{name}/ours per-array"]:.2f} | {"n/a" if bt is None else f"{bt:.2f}"} | '
              f'{cs[f"{name}/optax"]:.2f} | {cs[f"{name}/flat"]:.2f} | {cs["floor"]:.2f} | '
              f'{cs[f"{name}/ours"] - cs["floor"]:.2f} |')
    w('')

    # ---- bookkeeping
    w('### What one jitted `ours` call moves through brainstate')
    w('')
    w('States found by brainstate\'s trace of the step (parameters, one State per optimizer '
      'buffer holding a list of arrays, step counter, learning rate) and the array leaves they '
      'hold; optax\'s single `jax.jit` call takes and returns plain leaves.')
    w('')
    w('| config | algorithm | ParamStates | States traced | State leaves | States written | '
      'grad leaves | optax leaves in / out |')
    w('|---|---|---:|---:|---:|---:|---:|---:|')
    for res in results:
        for name in res['cfg'].algorithms:
            c = res['extra'][name]['ours_counts']
            oi, oo = res['extra'][name]['optax_leaves']
            w(f'| {res["cfg"].key} | {ALGORITHMS[name].name} | {c["param_states"]} | '
              f'{c.get("states", "?")} | {c.get("state_leaves", "?")} | {c.get("written_states", "?")} | '
              f'{c["grad_leaves"]} | {oi} / {oo} |')
    w('')

    # ---- agreement
    w('### Sanity check: final parameters agree')
    w('')
    w('max |x - flat| / max |flat| after every contender made the same number of steps.')
    w('')
    w('| config | steps | ' + ' | '.join(ALGORITHMS[n].name + ' ours / optax' for n in ALL) + ' |')
    w('|---|---:|' + '---|' * len(ALL))
    for res in results:
        cells = []
        for name in ALL:
            ag = res['agreement'].get(name)
            cells.append('' if ag is None else f'{ag["ours"]:.1e} / {ag["optax"]:.1e}')
        w(f'| {res["cfg"].key} | {res["steps"]} | ' + ' | '.join(cells) + ' |')
    w('')

    # ---- raw
    w('<details><summary>Every contender: median, quartiles, minimum (ms)</summary>')
    w('')
    w('| config | contender | median | p25 | p75 | min | n |')
    w('|---|---|---:|---:|---:|---:|---:|')
    for res in results:
        for label, s in res['stats'].items():
            w(f'| {res["cfg"].key} | {label} | {_fmt_ms(s["median"])} | {_fmt_ms(s["p25"])} | '
              f'{_fmt_ms(s["p75"])} | {_fmt_ms(s["min"])} | {s["n"]} |')
    w('')
    w('</details>')
    return '\n'.join(lines)


DEFAULT_HEADER = """# Optimizer update benchmark

(Hand-written interpretation goes here; `bench_update.py` only rewrites the part between the markers.)

"""


def write_output(path: str, body: str) -> None:
    write_section(path, BEGIN_MARK, END_MARK, body, header=DEFAULT_HEADER)


def main(argv: Optional[Sequence[str]] = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--quick', action='store_true',
                        help='Adam only in (a), Adam/Adadelta/RMSprop in (b), fewer repetitions, '
                             'no overhead-only config (about 1 min)')
    parser.add_argument('--out', default=None,
                        help='write the report (between markers) into this Markdown file')
    args = parser.parse_args(argv)
    shown_argv = ['benchmarks/bench_update.py'] + list(sys.argv[1:] if argv is None else argv)

    if jax.config.jax_enable_x64:
        log('warning: jax_enable_x64 is on; the benchmark is meant for float32 defaults')
    start = time.perf_counter()
    results = [run_config(cfg) for cfg in configs(args.quick)]
    wall = time.perf_counter() - start
    body = report(results, shown_argv, args.quick, wall)
    print(body)
    log(f'total {wall:.0f} s')
    if args.out:
        write_output(args.out, body)
        log(f'wrote {args.out}')


if __name__ == '__main__':
    main()
