"""Train a rate RNN on a perceptual decision, with a warm-up/cosine schedule, gradient
accumulation, and a run that is killed mid-training and resumed from its checkpoint.

The task
--------
Random-dots-style evidence integration: on every trial the network sees a noisy input
``x_t = c + sigma * xi_t`` for 40 steps of 20 ms (800 ms), with a coherence ``c`` drawn from
``{±0.025, ±0.05, ±0.1, ±0.2}`` and ``sigma = 0.5``. During the last 10 steps it must report
the sign of ``c`` (target ``±1``). Single samples say little; the network has to integrate.

The model
---------
A continuous-time rate network of 64 units, Euler-discretised with ``alpha = dt / tau = 0.2``::

    h_t = (1 - alpha) h_{t-1} + alpha (W_rec tanh(h_{t-1}) + W_in x_t + b)
    y_t = W_out tanh(h_t)

The optimizer
-------------
``braintools_optim.Adam`` with

* ``lr=WarmupCosineSchedule(...)``: a linear warm-up over the first 10 optimizer steps, then a
  cosine decay to zero; ``schedule_per_update=True`` makes the optimizer advance the schedule
  itself, once per real step;
* ``accumulate_steps=4``: each ``opt.update(grads)`` call adds a micro-batch of 32 trials to an
  accumulator in State; every 4th call takes one step with the mean gradient (an effective batch
  of 128) — the schedule and the step counter count real steps only;
* ``grad_clip_norm=1.0``.

Kill and resume
---------------
The script trains the network three ways and compares them:

1. straight through, in this process;
2. in a child process that writes a checkpoint every 10 micro-batches (so most checkpoints fall
   *inside* an accumulation window) and then kills itself with ``SIGKILL`` a few micro-batches
   after its checkpoint at micro-batch 250 — no clean-up runs, and the progress made after
   the checkpoint is lost;
3. here again, with a fresh model and a fresh optimizer that load the child's latest
   checkpoint (``opt.load`` plus the model's parameters) and train to the end.

A checkpoint is a directory with the model's parameters (``braintools_optim.checkpoint.save``)
and the optimizer's state (``opt.save``: moments, counters, the scheduler's position and the
half-filled gradient accumulator); a ``latest.npz`` pointer is replaced (atomically) only after
both files are complete, so a kill between the two writes never yields a mixed checkpoint. The
batch of micro-step ``k`` is drawn from a generator seeded by ``(seed, k)``, so the resumed run
sees the same data. The resumed run ends with parameters equal to the uninterrupted run's.

Running it
----------
::

    python3 -m pip install -e ".[examples]"     # matplotlib, for the figure
    python3 examples/train_rate_rnn.py          # ~30 s on 2 CPU cores
    python3 examples/train_rate_rnn.py --quick  # fewer steps (smoke test)
    python3 examples/train_rate_rnn.py --plot docs/figures/rate_rnn.png   # the docs' figure
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, Optional, Sequence

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import braintools_optim as bo  # noqa: E402
from _common import EXAMPLES, progress, pyplot, save_figure  # noqa: E402

DEFAULT_PLOT = os.path.join(EXAMPLES, 'rate_rnn.png')

N_HIDDEN = 64
N_STEPS = 40                      # 40 steps of 20 ms
RESPONSE = 10                     # report during the last 10 steps
ALPHA = 0.2                       # dt / tau = 20 ms / 100 ms
SIGMA = 0.5
COHERENCES = np.array([0.025, 0.05, 0.1, 0.2])
MICRO_BATCH = 32
ACCUMULATE = 4
CHECKPOINT_EVERY = 10             # micro-batches; 10 is not a multiple of 4: mid-window checkpoints
WARMUP = 10                       # optimizer steps


# ---------------------------------------------------------------------------------------------
# Task and model
# ---------------------------------------------------------------------------------------------
def make_batch(seed: int, index: int, size: int = MICRO_BATCH):
    """Trials of micro-batch ``index``: inputs ``(N_STEPS, size, 1)``, targets ``(size,)``, coherences."""
    rng = np.random.default_rng([seed, index])
    coherence = rng.choice(COHERENCES, size) * rng.choice([-1.0, 1.0], size)
    x = coherence[None, :, None] + SIGMA * rng.standard_normal((N_STEPS, size, 1))
    return x.astype(np.float32), np.sign(coherence).astype(np.float32), coherence


class RateRNN(brainstate.nn.Module):
    def __init__(self, n_hidden: int = N_HIDDEN, seed: int = 0):
        super().__init__()
        rng = np.random.default_rng(seed)

        def normal(shape, scale):
            return jnp.asarray(rng.standard_normal(shape) * scale, jnp.float32)

        self.w_in = brainstate.ParamState(normal((1, n_hidden), 1.0))
        self.w_rec = brainstate.ParamState(normal((n_hidden, n_hidden), 0.9 / np.sqrt(n_hidden)))
        self.b = brainstate.ParamState(jnp.zeros(n_hidden))
        self.w_out = brainstate.ParamState(normal((n_hidden, 1), 1.0 / np.sqrt(n_hidden)))

    def __call__(self, xs):
        """``xs`` ``(N_STEPS, batch, 1)`` -> outputs ``(N_STEPS, batch)``."""
        w_in, w_rec, b, w_out = self.w_in.value, self.w_rec.value, self.b.value, self.w_out.value

        def step(h, x_t):
            h = (1.0 - ALPHA) * h + ALPHA * (jnp.tanh(h) @ w_rec + x_t @ w_in + b)
            return h, (jnp.tanh(h) @ w_out)[:, 0]

        h0 = jnp.zeros((xs.shape[1], w_rec.shape[0]))
        return jax.lax.scan(step, h0, xs)[1]


def response_error(outputs, targets):
    return jnp.mean((outputs[-RESPONSE:] - targets[None, :]) ** 2)


class Training:
    """A model, its optimizer and scheduler, and a compiled micro-step: built the same way
    for the straight run, the killed run and the resumed run."""

    def __init__(self, seed: int, real_steps: int):
        self.seed = seed
        self.model = RateRNN(seed=seed)
        self.sched = bo.WarmupCosineSchedule(base_lr=1e-2, warmup_steps=WARMUP, total_steps=real_steps)
        self.opt = bo.Adam(lr=self.sched, accumulate_steps=ACCUMULATE, schedule_per_update=True,
                           grad_clip_norm=1.0)
        self.opt.register_trainable_weights(self.model.states(brainstate.ParamState))
        self.done = 0                              # micro-batches trained so far

        def loss_fn(x, y):
            return response_error(self.model(x), y)

        @brainstate.transform.jit
        def micro_step(x, y):
            grads, loss = brainstate.transform.grad(loss_fn, self.opt.param_states, return_value=True)(x, y)
            self.opt.update(grads)
            return loss

        self._micro_step = micro_step

    def train_one(self):
        """Train on the next micro-batch; returns its loss and the lr that the next update applies."""
        x, y, _ = make_batch(self.seed, self.done)
        loss = float(self._micro_step(x, y))
        self.done += 1
        return loss, float(self.opt.current_lr)

    def params(self) -> Dict[str, np.ndarray]:
        return {'/'.join(path): np.asarray(state.value)
                for path, state in self.model.states(brainstate.ParamState).items()}

    # -- checkpoints -------------------------------------------------------------------------
    def save(self, directory: str) -> str:
        """Write ``step_<k>/{model,optimizer}.npz``, then point ``latest.npz`` at it."""
        step_dir = os.path.join(directory, f'step_{self.done:06d}')
        os.makedirs(step_dir, exist_ok=True)
        bo.checkpoint.save(os.path.join(step_dir, 'model.npz'), self.params())
        self.opt.save(os.path.join(step_dir, 'optimizer.npz'))
        bo.checkpoint.save(os.path.join(directory, 'latest.npz'),
                           {'micro_batches': np.int64(self.done), 'path': os.path.basename(step_dir)})
        return step_dir

    def load(self, directory: str) -> int:
        """Restore the latest complete checkpoint of ``directory``; returns its micro-batch count."""
        latest = bo.checkpoint.load(os.path.join(directory, 'latest.npz'))
        step_dir = os.path.join(directory, str(latest['path']))
        values = bo.checkpoint.load(os.path.join(step_dir, 'model.npz'))
        for path, state in self.model.states(brainstate.ParamState).items():
            saved = values['/'.join(path)]
            if saved.shape != np.shape(state.value):
                raise ValueError(f"checkpoint {step_dir}: {'/'.join(path)} has shape {saved.shape}, "
                                 f"the model {np.shape(state.value)}")
            state.value = jnp.asarray(saved)
        self.opt.load(os.path.join(step_dir, 'optimizer.npz'))
        self.done = int(latest['micro_batches'])
        return self.done


def accuracy_by_coherence(model: RateRNN, seed: int, n: int = 1024):
    x, y, coherence = make_batch(seed + 10_000, 0, size=n)      # held-out trials
    decision = np.sign(np.asarray(model(jnp.asarray(x))[-RESPONSE:].mean(axis=0)))
    correct = decision == y
    return float(correct.mean()), {float(c): float(correct[np.abs(coherence) == c].mean()) for c in COHERENCES}


# ---------------------------------------------------------------------------------------------
# The three runs
# ---------------------------------------------------------------------------------------------
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='fewer optimizer steps (a smoke test)')
    parser.add_argument('--steps', type=int, default=None,
                        help='optimizer steps (default 150; 40 with --quick); micro-batches = 4x')
    parser.add_argument('--kill-after', type=int, default=None,
                        help='the child is killed a few micro-batches after its checkpoint at this '
                             'micro-batch (default: about 5/12 of the run, inside an accumulation window)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the data and the initial weights')
    parser.add_argument('--checkpoint-dir', default=None, help='keep the checkpoints here (default: a temp dir)')
    parser.add_argument('--plot', default=DEFAULT_PLOT, help=f'figure path (default {DEFAULT_PLOT})')
    parser.add_argument('--no-plot', action='store_true', help='do not draw the figure')
    parser.add_argument('--quiet', action='store_true', help='print nothing')
    # Internal: run as the child that gets killed.
    parser.add_argument('--child', action='store_true', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_child(args, real_steps: int, kill_after: int) -> None:
    """Train with checkpoints, then die with SIGKILL a few micro-batches after ``kill_after``."""
    run = Training(args.seed, real_steps)
    while run.done < ACCUMULATE * real_steps:
        run.train_one()
        if run.done % CHECKPOINT_EVERY == 0:
            run.save(args.checkpoint_dir)
        if run.done == kill_after + 3:             # progress after the checkpoint is lost
            os.kill(os.getpid(), getattr(signal, 'SIGKILL', signal.SIGTERM))
    raise SystemExit('the child was not killed')


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Run the demonstration; returns a summary dict (losses, lrs, the comparison, ...)."""
    args = parse_args(argv)
    real_steps = args.steps or (40 if args.quick else 150)
    total = ACCUMULATE * real_steps
    # By default at about 5/12 of the run, at a checkpoint inside an accumulation window.
    kill_after = args.kill_after or CHECKPOINT_EVERY * ((5 * total // 12) // CHECKPOINT_EVERY | 1)
    if not 0 < kill_after < total - 3 or kill_after % CHECKPOINT_EVERY:
        raise SystemExit(f'--kill-after must be a multiple of {CHECKPOINT_EVERY} in (0, {total - 3})')
    if args.child:
        run_child(args, real_steps, kill_after)
    say = (lambda *a, **k: None) if args.quiet else print
    start = time.perf_counter()
    say(f'task: integrate noisy evidence for {N_STEPS} steps, report its sign; '
        f'{N_HIDDEN}-unit rate RNN; {real_steps} Adam steps of {ACCUMULATE} x {MICRO_BATCH} trials '
        f'(accumulate_steps={ACCUMULATE}), warm-up {WARMUP} steps then cosine')

    # 1. Straight through.
    straight = Training(args.seed, real_steps)
    losses, lrs = [], []
    for _ in progress(range(total), total, 'straight run   ', enabled=not args.quiet,
                      status=lambda: f'loss {losses[-1]:.3f}  lr {lrs[-1]:.2e}' if losses else ''):
        loss, lr = straight.train_one()
        losses.append(loss)
        lrs.append(lr)

    # 2. A child process trains with checkpoints and is killed.
    checkpoint_dir = args.checkpoint_dir or tempfile.mkdtemp(prefix='rate_rnn_ckpt_')
    command = [sys.executable, os.path.abspath(__file__), '--child', '--checkpoint-dir', checkpoint_dir,
               '--steps', str(real_steps), '--kill-after', str(kill_after), '--seed', str(args.seed)]
    say(f'child process: trains with a checkpoint every {CHECKPOINT_EVERY} micro-batches, '
        f'killed 3 micro-batches after micro-batch {kill_after} ...')
    child = subprocess.run(command, capture_output=True, text=True, env=_child_env())
    if child.returncode >= 0:
        raise RuntimeError(f'the child process was not killed (exit code {child.returncode}):\n{child.stderr}')
    say(f'child process: killed by signal {-child.returncode}')

    # 3. Resume with fresh objects from the files alone.
    resumed = Training(args.seed, real_steps)
    first = resumed.load(checkpoint_dir)
    resumed_losses = []
    say(f'resumed: loaded the checkpoint at micro-batch {first} (optimizer step '
        f'{int(resumed.opt.step_count.value)}, {first % ACCUMULATE} micro-batches into an accumulation window)')
    for _ in progress(range(total - first), total - first, 'resumed run    ', enabled=not args.quiet,
                      status=lambda: f'loss {resumed_losses[-1]:.3f}' if resumed_losses else ''):
        resumed_losses.append(resumed.train_one()[0])

    # Compare.
    a, b = straight.params(), resumed.params()
    max_difference = max(float(np.max(np.abs(a[k] - b[k]))) for k in a)
    same_losses = np.array_equal(np.asarray(losses[first:]), np.asarray(resumed_losses))
    accuracy, by_coherence = accuracy_by_coherence(straight.model, args.seed)
    say(f'loss: {np.mean(losses[:ACCUMULATE]):.3f} (first step) -> {np.mean(losses[-ACCUMULATE:]):.3f} (last step)')
    say(f'held-out accuracy {accuracy:.1%}; by coherence: ' +
        ', '.join(f'{c:g}: {v:.0%}' for c, v in by_coherence.items()))
    say(f'optimizer steps: {int(straight.opt.step_count.value)} from {total} micro-batches; '
        f'final lr {lrs[-1]:.2e}')
    say(f'resumed vs uninterrupted: losses after the checkpoint identical: {same_losses}; '
        f'largest parameter difference {max_difference:.3g}'
        + (' (bitwise equal)' if max_difference == 0 else ''))

    plot_path = None
    if not args.no_plot:
        plt = pyplot(say)
        if plt is not None:
            plot_path = draw(plt, losses, lrs, first, resumed_losses, kill_after, straight.model, args.seed,
                             args.plot, say)
    elapsed = time.perf_counter() - start
    say(f'total time: {elapsed:.1f} s')
    return dict(losses=losses, lrs=lrs, resumed_from=first, resumed_losses=resumed_losses,
                max_difference=max_difference, same_losses=same_losses, accuracy=accuracy,
                accuracy_by_coherence=by_coherence, steps=int(straight.opt.step_count.value),
                micro_batches=total, child_returncode=child.returncode, plot=plot_path, seconds=elapsed)


def _child_env():
    """The child imports this checkout's ``braintools_optim``, as this process does."""
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(bo.__file__)))
    env['PYTHONPATH'] = os.pathsep.join(p for p in (package_root, env.get('PYTHONPATH')) if p)
    return env


def draw(plt, losses, lrs, first, resumed_losses, kill_after, model, seed, path, say):
    fig, (ax_loss, ax_out) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw=dict(width_ratios=[1.4, 1]))
    # Loss per optimizer step (the mean of its ACCUMULATE micro-batches); the resumed curve from
    # the first window that lies wholly after the checkpoint.
    per_step = np.asarray(losses).reshape(-1, ACCUMULATE).mean(axis=1)
    steps = np.arange(1, per_step.size + 1)
    skip = (-first) % ACCUMULATE
    resumed = np.asarray(resumed_losses[skip:]).reshape(-1, ACCUMULATE).mean(axis=1)
    resumed_steps = steps[per_step.size - resumed.size:]
    ax_loss.plot(steps, per_step, color='tab:blue', lw=1.0, label='uninterrupted')
    ax_loss.plot(resumed_steps, resumed, color='tab:orange', lw=1.4, ls='--', label='resumed from checkpoint')
    kill_step = (kill_after + 3) / ACCUMULATE
    ax_loss.axvline(kill_step, color='tab:red', lw=0.8, ls=':')
    ax_loss.text(kill_step, 0.98, ' killed', color='tab:red', fontsize=8, va='top',
                 transform=ax_loss.get_xaxis_transform())
    ax_loss.set_xlabel(f'optimizer step ({ACCUMULATE} micro-batches of {MICRO_BATCH} each)')
    ax_loss.set_ylabel('loss (response period)')
    ax_loss.set_title('training, killed and resumed')
    ax_lr = ax_loss.twinx()
    ax_lr.plot(np.arange(1, len(lrs) + 1) / ACCUMULATE, lrs, color='tab:green', lw=1.0)
    ax_lr.set_ylabel('learning rate', color='tab:green')
    ax_lr.tick_params(axis='y', colors='tab:green')
    ax_loss.legend(loc='upper right', fontsize=8)
    x, _, coherence = make_batch(seed + 20_000, 0, size=512)
    outputs = np.asarray(model(jnp.asarray(x)))
    t = np.arange(1, N_STEPS + 1) * 20
    cmap = plt.get_cmap('coolwarm')
    for c in sorted(set(coherence.tolist())):
        mask = coherence == c
        ax_out.plot(t, outputs[:, mask].mean(axis=1), color=cmap(0.5 + c / (2 * COHERENCES.max())), lw=1.2,
                    label=f'{c:+g}')
    ax_out.axvspan(t[-RESPONSE], t[-1], color='0.9')
    ax_out.set_xlabel('time (ms)')
    ax_out.set_ylabel('network output')
    ax_out.set_title('mean output by coherence (held-out)')
    ax_out.legend(fontsize=7, ncol=2, title='coherence', title_fontsize=7)
    fig.tight_layout()
    return save_figure(fig, path, say)


if __name__ == '__main__':
    main()
