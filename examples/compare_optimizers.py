"""Compare optimizers on one task: a rate RNN that holds a value in working memory.

The task
--------
A cue of amplitude ``a ~ U(-1, 1)`` is shown for 5 steps; after a delay of 20 steps without
input, the network must output ``a`` for 10 steps (a parametric working-memory task, as in
studies of persistent activity). To solve it, the network has to build a line attractor: a
continuum of stable activity patterns, one per remembered value.

The model
---------
A rate network of 32 units (``alpha = dt / tau = 0.2``)::

    h_t = (1 - alpha) h_{t-1} + alpha (W_rec tanh(h_{t-1}) + W_in x_t + b),   y_t = W_out tanh(h_t)

The comparison
--------------
Every optimizer starts from the same initial weights and sees the same batches (64 trials per
step), with global-norm clipping at 1 for all. Each is run with a few learning rates around its
usual default, and the best (lowest final loss) is kept: comparing optimizers at one shared
learning rate would mostly compare how well that rate suits each of them. A whole run is one
compiled call (``brainstate.transform.for_loop`` over the steps inside ``jit``).

Running it
----------
::

    python3 -m pip install -e ".[examples]"          # matplotlib, for the figure
    python3 examples/compare_optimizers.py           # ~1 min on 2 CPU cores
    python3 examples/compare_optimizers.py --quick   # one lr each, fewer steps (smoke test)
    python3 examples/compare_optimizers.py --plot docs/figures/compare_optimizers.png

It prints each optimizer's best learning rate, its final loss and how many steps it needed to
get below a loss of 0.001, and saves the loss curves on one plot (and the final loss against the
learning rate).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional, Sequence

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import braintools_optim as bo  # noqa: E402
from _common import EXAMPLES, progress, pyplot, save_figure  # noqa: E402

DEFAULT_PLOT = os.path.join(EXAMPLES, 'compare_optimizers.png')

N_HIDDEN = 32
CUE, DELAY, RESPONSE = 5, 20, 10
N_STEPS = CUE + DELAY + RESPONSE
ALPHA = 0.2
BATCH = 64
TARGET_LOSS = 1e-3
SMOOTH = 10                       # steps averaged in the plotted curves

# name -> (factory(lr), learning rates tried); the quick mode tries only the third.
OPTIMIZERS = {
    'SGD, momentum 0.9': (lambda lr: bo.SGD(lr=lr, momentum=0.9, grad_clip_norm=1.0), (3e-3, 0.01, 0.03, 0.1)),
    'Adam': (lambda lr: bo.Adam(lr=lr, grad_clip_norm=1.0), (3e-4, 1e-3, 3e-3, 1e-2)),
    'AdamW (wd 1e-2)': (lambda lr: bo.AdamW(lr=lr, weight_decay=1e-2, grad_clip_norm=1.0), (3e-4, 1e-3, 3e-3, 1e-2)),
    'RMSprop': (lambda lr: bo.RMSprop(lr=lr, grad_clip_norm=1.0), (1e-4, 3e-4, 1e-3, 3e-3)),
    'Adagrad': (lambda lr: bo.Adagrad(lr=lr, grad_clip_norm=1.0), (1e-3, 3e-3, 1e-2, 3e-2)),
    'Adadelta': (lambda lr: bo.Adadelta(lr=lr, grad_clip_norm=1.0), (0.03, 0.1, 0.3, 1.0)),
    'Lion': (lambda lr: bo.Lion(lr=lr, grad_clip_norm=1.0), (3e-5, 1e-4, 3e-4, 1e-3)),
}


def make_batches(n_batches: int, seed: int):
    """Inputs ``(n_batches, N_STEPS, BATCH, 1)`` and targets ``(n_batches, BATCH)``."""
    rng = np.random.default_rng(seed)
    amplitude = rng.uniform(-1.0, 1.0, (n_batches, BATCH)).astype(np.float32)
    x = np.zeros((n_batches, N_STEPS, BATCH, 1), np.float32)
    x[:, :CUE, :, 0] = amplitude[:, None, :]
    return jnp.asarray(x), jnp.asarray(amplitude)


class RateRNN(brainstate.nn.Module):
    def __init__(self, n_hidden: int = N_HIDDEN, seed: int = 0):
        super().__init__()
        rng = np.random.default_rng(seed)

        def normal(shape, scale):
            return jnp.asarray(rng.standard_normal(shape) * scale, jnp.float32)

        self.w_in = brainstate.ParamState(normal((1, n_hidden), 1.0))
        self.w_rec = brainstate.ParamState(normal((n_hidden, n_hidden), 0.8 / np.sqrt(n_hidden)))
        self.b = brainstate.ParamState(jnp.zeros(n_hidden))
        self.w_out = brainstate.ParamState(normal((n_hidden, 1), 1.0 / np.sqrt(n_hidden)))

    def __call__(self, xs):
        w_in, w_rec, b, w_out = self.w_in.value, self.w_rec.value, self.b.value, self.w_out.value

        def step(h, x_t):
            h = (1.0 - ALPHA) * h + ALPHA * (jnp.tanh(h) @ w_rec + x_t @ w_in + b)
            return h, (jnp.tanh(h) @ w_out)[:, 0]

        return jax.lax.scan(step, jnp.zeros((xs.shape[1], w_rec.shape[0])), xs)[1]


def train(make_optimizer, lr, xs, ys, seed):
    """Train a fresh network; returns the loss of every step (one compiled call for the run)."""
    model = RateRNN(seed=seed)
    opt = make_optimizer(lr)
    opt.register_trainable_weights(model.states(brainstate.ParamState))

    def loss_fn(x, y):
        return jnp.mean((model(x)[-RESPONSE:] - y[None, :]) ** 2)

    @brainstate.transform.jit
    def run(xs, ys):
        def step(batch):
            grads, loss = brainstate.transform.grad(loss_fn, opt.param_states, return_value=True)(*batch)
            opt.update(grads)
            return loss
        return brainstate.transform.for_loop(step, (xs, ys))

    return np.asarray(run(xs, ys))


def summary_loss(losses):
    """Mean loss over the last 10% of the steps (NaN/Inf count as infinitely bad)."""
    tail = losses[-max(1, len(losses) // 10):]
    return float(np.mean(tail)) if np.all(np.isfinite(tail)) else float('inf')


def steps_to(losses, threshold):
    below = np.nonzero(np.asarray(losses) < threshold)[0]
    return int(below[0]) + 1 if below.size else None


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='one learning rate each and fewer steps')
    parser.add_argument('--steps', type=int, default=None, help='optimizer steps (default 600; 150 with --quick)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the data and the initial weights')
    parser.add_argument('--plot', default=DEFAULT_PLOT, help=f'figure path (default {DEFAULT_PLOT})')
    parser.add_argument('--no-plot', action='store_true', help='do not draw the figure')
    parser.add_argument('--quiet', action='store_true', help='print nothing')
    return parser.parse_args(argv)


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Run the comparison; returns ``{'results': {name: {...}}, ...}``."""
    args = parse_args(argv)
    say = (lambda *a, **k: None) if args.quiet else print
    start = time.perf_counter()
    n_steps = args.steps or (150 if args.quick else 600)
    xs, ys = make_batches(n_steps, args.seed)
    say(f'task: remember a cue for {DELAY} steps, then report it; {N_HIDDEN}-unit rate RNN; '
        f'{n_steps} steps of {BATCH} trials; every optimizer from the same initial weights')

    runs = [(name, lr) for name, (_, lrs) in OPTIMIZERS.items() for lr in (lrs[2:3] if args.quick else lrs)]
    curves = {}
    for name, lr in progress(runs, len(runs), 'runs', enabled=not args.quiet,
                             status=lambda: f'last: {runs[len(curves) - 1][0]}' if curves else ''):
        curves[(name, lr)] = train(OPTIMIZERS[name][0], lr, xs, ys, args.seed)

    results = {}
    for name in OPTIMIZERS:
        tried = {lr: curve for (n, lr), curve in curves.items() if n == name}
        best_lr = min(tried, key=lambda lr: summary_loss(tried[lr]))
        results[name] = dict(lr=best_lr, losses=tried[best_lr], final=summary_loss(tried[best_lr]),
                             steps_to_target=steps_to(tried[best_lr], TARGET_LOSS),
                             by_lr={lr: summary_loss(c) for lr, c in tried.items()})
    initial = float(next(iter(curves.values()))[0])
    say(f'initial loss {initial:.4f} (every run starts there)')
    say(f"{'optimizer':<20}{'best lr':>9}{'final loss':>12}{f'steps to {TARGET_LOSS:g}':>16}")
    for name, r in sorted(results.items(), key=lambda item: item[1]['final']):
        reached = '-' if r['steps_to_target'] is None else str(r['steps_to_target'])
        say(f"{name:<20}{r['lr']:>9g}{r['final']:>12.5f}{reached:>16}")

    plot_path = None
    if not args.no_plot:
        plt = pyplot(say)
        if plt is not None:
            plot_path = draw(plt, results, args.plot, say)
    elapsed = time.perf_counter() - start
    say(f'total time: {elapsed:.1f} s')
    return dict(results=results, initial_loss=initial, steps=n_steps, plot=plot_path, seconds=elapsed)


def draw(plt, results, path, say):
    fig, (ax_curves, ax_lr) = plt.subplots(1, 2, figsize=(10, 3.8), gridspec_kw=dict(width_ratios=[1.6, 1]))
    for name, r in results.items():
        steps = np.arange(1, len(r['losses']) + 1)
        smooth = np.convolve(r['losses'], np.ones(SMOOTH) / SMOOTH, mode='valid')
        line, = ax_curves.semilogy(steps[SMOOTH - 1:], smooth, lw=1.2, label=f"{name} (lr {r['lr']:g})")
        lrs = sorted(r['by_lr'])
        ax_lr.loglog(lrs, [min(r['by_lr'][lr], 10.0) for lr in lrs], marker='o', ms=3, color=line.get_color())
    ax_curves.axhline(TARGET_LOSS, color='0.5', lw=0.8, ls=':')
    ax_curves.set_xlabel(f'step (loss: running mean over {SMOOTH} steps)')
    ax_curves.set_ylabel('loss (response period)')
    ax_curves.set_title('working-memory RNN: loss at each optimizer\'s best lr')
    ax_curves.legend(fontsize=7)
    ax_lr.set_xlabel('learning rate')
    ax_lr.set_ylabel('final loss')
    ax_lr.set_title('final loss against the learning rate')
    fig.tight_layout()
    return save_figure(fig, path, say)


if __name__ == '__main__':
    main()
