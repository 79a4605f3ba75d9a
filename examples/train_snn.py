"""Train a small recurrent spiking network with ``braintools_optim``.

The model
---------
A recurrent layer of leaky integrate-and-fire (LIF) neurons read out by
leaky (non-spiking) integrators. With a time step ``dt`` and, for each hidden
neuron, a membrane time constant ``tau_mem`` (a ``brainunit`` Quantity in
milliseconds, trained together with the weights)::

    alpha = exp(-dt / tau_mem)                              # dimensionless
    v[t]  = alpha * v[t-1] * (1 - s[t-1]) + x[t] @ W_in + s[t-1] @ W_rec
    s[t]  = H(v[t] - v_th)                                  # spike, reset to 0
    y[t]  = kappa * y[t-1] + s[t] @ W_out                   # kappa = exp(-dt / tau_out)

(each ``W`` is a trainable unit-variance matrix times a fixed gain; ``W_rec``
has no self-connections).

``H`` is the Heaviside step. Its derivative is zero almost everywhere, so the
backward pass uses a *surrogate gradient*, the derivative of a fast sigmoid,
``1 / (1 + slope * |v - v_th|)**2`` (written here with ``jax.custom_vjp``). The
loop over time is ``brainstate.transform.for_loop`` and the gradient of the loss
flows back through all time steps (backpropagation through time). The
class scores are the time average of ``y``; the loss is the cross-entropy.

The task
--------
Synthetic Poisson spike trains, generated in this script (nothing is
downloaded). The 40 input channels are split into 4 groups of 10, one per
class. In a 60 ms trial every channel fires at 20 Hz, except the group of the
trial's class, which fires at 40 Hz: about 1 extra spike per channel per trial,
so single spikes say little and the network has to integrate evidence over the
trial. Chance is 25%; an ideal observer that counts the spikes of each group
reaches about 95%.

The optimizer
-------------
``braintools_optim.Adam`` with global-norm gradient clipping, registered on
every ``ParamState`` of the model, so also on the ``tau_mem`` Quantity: its
gradient arrives in ms, Adam steps it in ms and the unit is kept. The learning
rate comes from a ``braintools_optim.StepLR`` scheduler (halved every third of
the run) that is stepped once per epoch, eagerly; the jitted training step
reads the new rate from the scheduler's State without being re-compiled.

Adam moves each element by at most about ``lr`` per step *in the parameter's
own unit*: here ``lr`` ms for ``tau_mem``, so the time constants change by
under a millisecond (they lengthen on average: integrating longer helps this
task), while the weights (stored with unit variance, see ``RecurrentLIFNet``)
change a lot.

Weight decay (``--weight-decay``, default 1e-4) is Adam's coupled L2
(``g += weight_decay * theta``). It makes sense for the weights but not for
``tau_mem``: on its value in ms (~20) the decay term would dominate its small
true gradient (~1e-4 per ms) and drag every time constant down by about ``lr``
ms per step. So ``tau_mem`` is registered as its own parameter group with
``weight_decay=0`` (``opt.add_param_group``); both groups share the schedule.

Running it
----------
::

    python3 -m pip install -e ".[examples]"     # matplotlib, for the loss curve
    python3 examples/train_snn.py               # full run: a few seconds on 2 CPU cores
    python3 examples/train_snn.py --quick       # smaller data, 8 epochs (a smoke test)
    python3 examples/train_snn.py --epochs 40 --plot my_curve.png
    python3 examples/train_snn.py --no-plot
    python3 examples/train_snn.py --dtype bfloat16 --rounding stochastic   # docs/precision.md

It prints the learning rate, the mean training loss, the held-out accuracy and
the firing rate of every epoch, then the final accuracy and the trained time
constants (still in ms), and saves the loss curve (by default to
``examples/snn_loss.png``). Seeds are fixed, so a run is reproducible on a
given machine and software stack.
"""

from __future__ import annotations

import argparse
import os
import time
from typing import Optional, Sequence

import brainstate
import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np

import braintools_optim as bo

DEFAULT_PLOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'snn_loss.png')

# ---------------------------------------------------------------------------------------------
# Surrogate-gradient spike function
# ---------------------------------------------------------------------------------------------
SURROGATE_SLOPE = 5.0


@jax.custom_vjp
def spike(v: jax.Array) -> jax.Array:
    """Heaviside step ``v > 0`` forward; fast-sigmoid derivative backward."""
    return (v > 0.0).astype(v.dtype)


def _spike_fwd(v):
    return spike(v), v


def _spike_bwd(v, grad_out):
    return (grad_out / (1.0 + SURROGATE_SLOPE * jnp.abs(v)) ** 2,)


spike.defvjp(_spike_fwd, _spike_bwd)


# ---------------------------------------------------------------------------------------------
# Synthetic task: which group of input channels fires fastest?
# ---------------------------------------------------------------------------------------------
def make_dataset(n_trials: int, *, n_classes: int, channels_per_class: int, n_steps: int,
                 dt: u.Quantity, rate_signal: u.Quantity, rate_background: u.Quantity,
                 seed: int):
    """Poisson spike trains (NumPy arrays), time-major: ``(n_steps, n_trials, n_inputs)``."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, size=n_trials)
    # Spike probability per time step: rate * dt is dimensionless.
    p_signal = float(u.maybe_decimal(rate_signal * dt))
    p_background = float(u.maybe_decimal(rate_background * dt))
    n_inputs = n_classes * channels_per_class
    group = np.arange(n_inputs) // channels_per_class              # class of every channel
    prob = np.where(group[None, :] == labels[:, None], p_signal, p_background)
    spikes = rng.random((n_steps, n_trials, n_inputs)) < prob[None]
    return spikes.astype(np.float32), labels.astype(np.int32)


# ---------------------------------------------------------------------------------------------
# The recurrent spiking network
# ---------------------------------------------------------------------------------------------
class RecurrentLIFNet(brainstate.nn.Module):
    """Recurrent LIF layer (trainable per-neuron ``tau_mem`` in ms) + leaky-integrator readout."""

    def __init__(self, n_in: int, n_rec: int, n_out: int, *, batch_size: int, seed: int = 0,
                 dt: u.Quantity = 1.0 * u.ms, tau_out: u.Quantity = 20.0 * u.ms, v_th: float = 1.0,
                 dtype=jnp.float32):
        super().__init__()
        self.dt = dt
        self.v_th = v_th
        # Non-trainable readout decay (a constant: dimensionless ratio of two times).
        self.kappa = float(u.math.exp(-dt / tau_out))

        # Initial values drawn with NumPy: cheap (no compilation) and identical across versions.
        rng = np.random.default_rng(seed)

        def standard_normal(shape):
            return jnp.asarray(rng.standard_normal(shape), dtype=jnp.float32).astype(dtype)

        # The weights are stored with unit variance and scaled by fixed gains in the forward
        # pass. Adam moves every element by about ``lr`` per step whatever its scale, so this
        # makes one step a small change relative to the effective weights (without it, a
        # few early steps can push the recurrent excitation into saturation).
        self.w_in = brainstate.ParamState(standard_normal((n_in, n_rec)))
        self.w_rec = brainstate.ParamState(standard_normal((n_rec, n_rec)))
        self.w_out = brainstate.ParamState(standard_normal((n_rec, n_out)))
        self.gain_in = 1.0 / np.sqrt(n_in)
        self.gain_rec = 0.5 / np.sqrt(n_rec)
        self.gain_out = 1.0 / np.sqrt(n_rec)
        # A trainable physical quantity: every neuron's membrane time constant, in ms.
        tau_ms = jnp.asarray(rng.uniform(10.0, 30.0, n_rec), dtype=jnp.float32).astype(dtype)
        self.tau_mem = brainstate.ParamState(tau_ms * u.ms)
        # Recurrent gain, zero on the diagonal: no self-connections.
        self.rec_gain = self.gain_rec * (1.0 - jnp.eye(n_rec))

        # Per-trial dynamical state, one row per trial of a batch. The batch size is fixed so
        # that the states keep their shape between calls: a jitted function is compiled for the
        # shapes of the States it reads, and would be re-compiled if they changed.
        self.v = brainstate.HiddenState(jnp.zeros((batch_size, n_rec)))   # membrane potential / v_th
        self.s = brainstate.HiddenState(jnp.zeros((batch_size, n_rec)))   # spikes of the last step
        self.y = brainstate.HiddenState(jnp.zeros((batch_size, n_out)))   # readout

    def reset(self) -> None:
        for state in (self.v, self.s, self.y):
            state.value = jnp.zeros_like(state.value)

    def step(self, x_t: jax.Array):
        """One time step for the whole batch; returns the readout and the spikes."""
        alpha = u.math.exp(-self.dt / self.tau_mem.value)                  # dimensionless
        s_prev = self.s.value
        current = self.gain_in * (x_t @ self.w_in.value) + s_prev @ (self.w_rec.value * self.rec_gain)
        # Reset to zero after a spike; the reset is kept out of the gradient (a common choice).
        v = alpha * self.v.value * (1.0 - jax.lax.stop_gradient(s_prev)) + current
        s = spike(v - self.v_th)
        y = self.kappa * self.y.value + self.gain_out * (s @ self.w_out.value)
        self.v.value, self.s.value, self.y.value = v, s, y
        return y, s

    def __call__(self, xs: jax.Array):
        """``xs`` ``(n_steps, batch_size, n_in)`` -> scores ``(batch_size, n_out)`` and every
        neuron's spike probability per step, averaged over time and batch."""
        self.reset()
        ys, spikes = brainstate.transform.for_loop(self.step, xs)
        return ys.mean(axis=0), spikes.mean(axis=(0, 1))


def cross_entropy(scores: jax.Array, labels: jax.Array) -> jax.Array:
    log_p = jax.nn.log_softmax(scores, axis=-1)
    return -jnp.mean(jnp.take_along_axis(log_p, labels[:, None], axis=-1))


# ---------------------------------------------------------------------------------------------
# Training
# ---------------------------------------------------------------------------------------------
def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--epochs', type=int, default=None,
                        help='training epochs (default 12; 8 with --quick)')
    parser.add_argument('--quick', action='store_true', help='small data and few epochs (a smoke test)')
    parser.add_argument('--classes', type=int, default=4,
                        help='number of classes / input groups (default 4)')
    parser.add_argument('--hidden', type=int, default=64, help='recurrent LIF neurons (default 64)')
    parser.add_argument('--lr', type=float, default=2e-2, help='initial learning rate (default 0.02)')
    parser.add_argument('--weight-decay', type=float, default=1e-4,
                        help="Adam's coupled L2 weight decay of the weights (default 1e-4; tau_mem gets none, see the docstring)")
    parser.add_argument('--seed', type=int, default=0, help='seed for data and initial weights')
    parser.add_argument('--dtype', choices=('float32', 'bfloat16'), default='float32',
                        help='dtype of the trained parameters (default float32)')
    parser.add_argument('--rounding', choices=('nearest', 'stochastic', 'master'), default='nearest',
                        help='with --dtype bfloat16: round new parameters to nearest, stochastically '
                             '(stochastic_round=True) or keep float32 master weights (master_weights=True); '
                             'see docs/precision.md')
    parser.add_argument('--plot', default=DEFAULT_PLOT, help=f'loss-curve PNG (default {DEFAULT_PLOT})')
    parser.add_argument('--no-plot', action='store_true', help='do not save the loss curve')
    parser.add_argument('--quiet', action='store_true', help='print nothing')
    return parser.parse_args(argv)


def save_loss_curve(losses, accuracies, path: str, chance: float, say=print) -> Optional[str]:
    """Loss per epoch and held-out accuracy (``accuracies[0]``: before training) as a PNG."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        say('matplotlib is not installed: skipping the loss curve '
            '(pip install -e ".[examples]" to get it)')
        return None
    epochs = np.arange(1, len(losses) + 1)
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(9, 3.5))
    ax_loss.plot(epochs, losses, marker='o', markersize=3)
    ax_loss.set_xlim(0, len(losses) + 0.5)
    ax_loss.set_xlabel('epoch')
    ax_loss.set_ylabel('mean training loss (cross-entropy)')
    ax_loss.set_title('Recurrent LIF network, Adam + StepLR')
    ax_acc.plot(np.arange(len(accuracies)), np.asarray(accuracies) * 100, marker='o', markersize=3,
                color='tab:green')                     # accuracies[0]: before training
    ax_acc.set_xlim(0, len(losses) + 0.5)
    ax_acc.axhline(chance * 100, color='gray', linestyle='--', label='chance')
    ax_acc.set_xlabel('epoch')
    ax_acc.set_ylabel('held-out accuracy (%)')
    ax_acc.set_ylim(0, 100)
    ax_acc.legend(loc='lower right')
    fig.tight_layout()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    say(f'loss curve saved to {path}')
    return path


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Run the demo; returns a summary dict (losses, accuracies, the learned tau, ...)."""
    args = parse_args(argv)
    if args.classes < 2:
        raise SystemExit('--classes must be at least 2')
    say = (lambda *a, **k: None) if args.quiet else print
    start = time.perf_counter()

    # -- configuration -----------------------------------------------------------------------
    n_epochs = args.epochs if args.epochs is not None else (8 if args.quick else 12)
    n_train, n_test = (1024, 256) if args.quick else (2048, 512)
    batch_size = 128
    dt = 1.0 * u.ms
    n_steps = 60                                         # 60 ms per trial
    task = dict(n_classes=args.classes, channels_per_class=10, n_steps=n_steps, dt=dt,
                rate_signal=40.0 * u.Hz, rate_background=20.0 * u.Hz)

    assert n_train % batch_size == 0 and n_test % batch_size == 0   # fixed State shapes

    x_train, y_train = make_dataset(n_train, seed=args.seed + 1, **task)
    x_test, y_test = make_dataset(n_test, seed=args.seed + 2, **task)
    n_in = x_train.shape[-1]
    chance = 1.0 / args.classes

    model = RecurrentLIFNet(n_in, args.hidden, args.classes, batch_size=batch_size, seed=args.seed, dt=dt,
                            dtype=jnp.dtype(args.dtype))
    tau_before = model.tau_mem.value

    # -- optimizer and scheduler: the user-facing API ----------------------------------------
    sched = bo.StepLR(base_lr=args.lr, step_size=max(1, n_epochs // 3), gamma=0.5)
    # Weight decay for the weights; every parameter measured in time (the membrane time
    # constants, in ms) forms a group without decay (see the module docstring).
    opt = bo.Adam(lr=sched, weight_decay=args.weight_decay, grad_clip_norm=1.0,
                  param_groups=[{'params': u.ms, 'weight_decay': 0.0, 'name': 'time constants'}],
                  stochastic_round=args.rounding == 'stochastic', master_weights=args.rounding == 'master')
    opt.register_trainable_weights(model.states(brainstate.ParamState))

    def loss_fn(x, y):
        scores, _ = model(x)
        return cross_entropy(scores, y)

    @brainstate.transform.jit
    def train_step(x, y):
        grads, loss = brainstate.transform.grad(loss_fn, opt.param_states, return_value=True)(x, y)
        opt.update(grads)
        return loss

    @brainstate.transform.jit
    def evaluate_batch(x, y):
        scores, spike_prob = model(x)
        return jnp.sum(jnp.argmax(scores, axis=-1) == y), jnp.mean(spike_prob)

    def evaluate(x, y):
        """Held-out accuracy and mean firing rate, batch by batch."""
        results = [evaluate_batch(x[:, i:i + batch_size], y[i:i + batch_size])
                   for i in range(0, y.shape[0], batch_size)]
        correct = sum(float(c) for c, _ in results)
        spike_prob = np.mean([float(p) for _, p in results])
        return correct / y.shape[0], spike_prob / float(dt.to_decimal(u.second))

    # -- training loop -----------------------------------------------------------------------
    say(f'task: {args.classes} classes, {n_in} Poisson inputs, {n_steps} steps of '
        f'{float(dt.to_decimal(u.ms)):g} ms; '
        f'{n_train} training / {n_test} held-out trials; chance = {chance:.0%}')
    say(f'model: {args.hidden} recurrent LIF neurons, '
        f'{sum(int(np.prod(u.get_magnitude(s.value).shape)) for s in opt.param_states.values())} '
        f'trainable numbers; optimizer: {type(opt).__name__} with {type(sched).__name__}')
    shuffle = np.random.default_rng(args.seed + 3)
    n_batches = n_train // batch_size
    initial_accuracy, rate_hz = evaluate(x_test, y_test)
    say(f'before training: held-out acc {initial_accuracy:6.1%}  firing rate {rate_hz:5.1f} Hz')
    losses, accuracies, lrs, rates = [], [], [], []
    for epoch in range(1, n_epochs + 1):
        lr = float(opt.get_last_lr()[0])        # the lr of the weights group (both groups share it)
        order = shuffle.permutation(n_train)
        epoch_loss = 0.0
        for b in range(n_batches):
            idx = order[b * batch_size:(b + 1) * batch_size]
            epoch_loss += float(train_step(x_train[:, idx], y_train[idx]))
        sched.step()                                   # eager, once per epoch
        acc, rate_hz = evaluate(x_test, y_test)
        losses.append(epoch_loss / n_batches)
        accuracies.append(acc)
        lrs.append(lr)
        rates.append(rate_hz)
        say(f'epoch {epoch:3d}/{n_epochs}  lr {lr:.2e}  loss {losses[-1]:.4f}  '
            f'held-out acc {acc:6.1%}  firing rate {rate_hz:5.1f} Hz')

    tau_after = model.tau_mem.value
    tau_ms = np.asarray(u.get_magnitude(tau_after.to(u.ms)))
    tau_ms_before = np.asarray(u.get_magnitude(tau_before.to(u.ms)))
    say(f'final held-out accuracy: {accuracies[-1]:.1%} (chance {chance:.0%})')
    say(f'loss: {losses[0]:.4f} (epoch 1) -> {losses[-1]:.4f} (epoch {n_epochs})')
    say(f'tau_mem after training: a {type(tau_after).__name__} in {tau_after.unit} '
        f'(before: {type(tau_before).__name__} in {tau_before.unit}); '
        f'first four: {tau_after[:4]}')
    say(f'tau_mem mean {tau_ms.mean():.2f} ms (was {tau_ms_before.mean():.2f} ms), '
        f'range {tau_ms.min():.2f}..{tau_ms.max():.2f} ms, '
        f'mean |change| {np.abs(tau_ms - tau_ms_before).mean():.2f} ms')
    say(f'optimizer steps: {int(opt.step_count.value)}, final lr {float(opt.get_last_lr()[0]):.2e}')

    plot_path = None
    if not args.no_plot:
        plot_path = save_loss_curve(losses, [initial_accuracy] + accuracies, args.plot, chance, say=say)
    elapsed = time.perf_counter() - start
    say(f'total time: {elapsed:.1f} s')
    return dict(losses=losses, accuracies=accuracies, initial_accuracy=initial_accuracy, lrs=lrs,
                firing_rates_hz=rates,
                final_accuracy=accuracies[-1],
                chance=chance, tau_before=tau_before, tau_after=tau_after,
                steps=int(opt.step_count.value), plot=plot_path, seconds=elapsed)


if __name__ == '__main__':
    main()
