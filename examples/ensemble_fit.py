"""Fit a population of neuron models at once and keep the best: one optimizer, vmapped.

The model
---------
A stellate cell's subthreshold membrane resonates: after each synaptic kick its voltage
rings at a theta frequency and the ringing decays slowly. A linear resonator captures it::

    z[t+1] = exp(-dt / tau) * exp(i 2 pi f dt) * z[t] + I[t]          v(t) = gain * Re z(t)

with the input ``I`` (unit kicks at known, random times) given. Three parameters are unknown,
each a ``brainunit`` Quantity: the resonance frequency ``f`` (Hz), the damping time constant
``tau`` (ms) and the ``gain`` (mV).

Why a population
----------------
The recording is long (1 s) and the ringing slow (tau = 300 ms), so the loss as a function
of ``f`` has a narrow valley at the true frequency and flat shelves and local minima
elsewhere: a fit started more than a few Hz away settles on a wrong frequency with the gain
shrunk towards zero. Fitting many starting points is the remedy, and on a vector machine it
costs little more than one fit: ``brainstate.transform.vmap_new_states`` builds ``--members``
models and their optimizer (one ``braintools_optim.Adam`` object whose States get a member
axis), each member with its own starting frequency (3 to 30 Hz) and its own learning rate
(four values, cycled); ``brainstate.transform.vmap`` then runs one compiled training step for
all of them. ``skip_nonfinite=True`` works per member: a member whose time constant turns
negative (its simulation explodes) stops updating, and the others go on. At the end the
member with the lowest loss is kept.

Running it
----------
::

    python3 -m pip install -e ".[examples]"        # matplotlib, for the figure
    python3 examples/ensemble_fit.py               # 32 members, a few seconds on 2 CPU cores
    python3 examples/ensemble_fit.py --quick       # 8 members, fewer steps (smoke test)
    python3 examples/ensemble_fit.py --plot docs/figures/ensemble_fit.png   # the docs' figure

It prints each member's start, learning rate, fitted values and final loss, then the best
member against the truth, and draws every member's loss curve, where each frequency started
and ended, and the recording with the best member's fit.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional, Sequence

import brainstate
import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import braintools_optim as bo  # noqa: E402
from _common import EXAMPLES, progress, pyplot, save_figure  # noqa: E402

DEFAULT_PLOT = os.path.join(EXAMPLES, 'ensemble_fit.png')

DT = 0.5 * u.ms                                      # integration step
TRUE = {'freq': 8.0 * u.Hz, 'tau': 300.0 * u.ms, 'gain': 2.0 * u.mV}
UNITS = {'freq': u.Hz, 'tau': u.ms, 'gain': u.mV}
NOISE = 0.2 * u.mV
LEARNING_RATES = (0.05, 0.1, 0.2, 0.4)              # Adam's step in Hz; members cycle through them
LR_MULT = {'tau': 20.0, 'gain': 0.2}                 # ... times 20 in ms for tau, 0.2 in mV for the gain


class Resonator(brainstate.nn.Module):
    """A damped linear resonator driven by known kicks; three trainable Quantities."""

    def __init__(self, freq, tau, gain):
        super().__init__()
        self.freq = brainstate.ParamState(jnp.asarray(freq, jnp.float32) * u.Hz)
        self.tau = brainstate.ParamState(jnp.asarray(tau, jnp.float32) * u.ms)
        self.gain = brainstate.ParamState(jnp.asarray(gain, jnp.float32) * u.mV)

    def __call__(self, kicks: jax.Array) -> u.Quantity:
        """The voltage (mV) at every step of ``kicks``."""
        turn = 2 * jnp.pi * u.get_mantissa(self.freq.value * DT)      # radians per step
        decay = jnp.exp(-u.get_mantissa(DT / self.tau.value))
        c, s = decay * jnp.cos(turn), decay * jnp.sin(turn)

        def step(z, kick):
            x, y = z
            x, y = c * x - s * y + kick, s * x + c * y
            return (x, y), x

        _, xs = jax.lax.scan(step, (jnp.zeros(()), jnp.zeros(())), kicks)
        return xs * self.gain.value


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='8 members and fewer steps')
    parser.add_argument('--members', type=int, default=None, help='ensemble size (default 32; 8 with --quick)')
    parser.add_argument('--steps', type=int, default=None, help='Adam steps (default 400; 250 with --quick)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the kicks and the recording noise')
    parser.add_argument('--plot', default=DEFAULT_PLOT, help=f'figure path (default {DEFAULT_PLOT})')
    parser.add_argument('--no-plot', action='store_true', help='do not draw the figure')
    parser.add_argument('--quiet', action='store_true', help='print nothing')
    return parser.parse_args(argv)


def value(quantity, unit) -> np.ndarray:
    return np.asarray(u.get_magnitude(quantity.to(unit)))


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Run the ensemble fit; returns a summary dict (losses, the best member, skips, ...)."""
    args = parse_args(argv)
    say = (lambda *a, **k: None) if args.quiet else print
    start = time.perf_counter()
    members = args.members or (8 if args.quick else 32)
    n_steps = args.steps or (250 if args.quick else 400)
    n_time = 2000                                           # 1 s at 0.5 ms

    # -- the recording ------------------------------------------------------------------------
    rng = np.random.default_rng(args.seed)
    kicks = jnp.asarray(((rng.random(n_time) < 0.02) * rng.normal(1.0, 0.3, n_time)).astype(np.float32))
    truth = Resonator(*(value(TRUE[k], UNITS[k]) for k in ('freq', 'tau', 'gain')))
    noise = rng.normal(0.0, float(value(NOISE, u.mV)), n_time).astype(np.float32)
    recorded = truth(kicks) + jnp.asarray(noise) * u.mV

    # -- the population: one model and one optimizer per member, built under vmap_new_states ---
    start_freq = np.geomspace(3.0, 30.0, members).astype(np.float32)
    start_tau = np.random.default_rng(args.seed + 1).uniform(50.0, 500.0, members).astype(np.float32)
    start_gain = np.full(members, 1.0, np.float32)
    lrs = np.resize(np.asarray(LEARNING_RATES, np.float32), members)
    built = {}

    @brainstate.transform.vmap_new_states(axis_size=members, in_axes=0)
    def build(freq, tau, gain, lr):
        model = Resonator(freq, tau, gain)
        opt = bo.Adam(lr=lr, skip_nonfinite=True)         # lr: this member's (traced) learning rate
        opt.register_trainable_weights(model.states(brainstate.ParamState))
        opt.set_lr_mult(LR_MULT)                            # the same step per unit for every member
        built['model'], built['opt'] = model, opt

    build(*(jnp.asarray(a) for a in (start_freq, start_tau, start_gain, lrs)))
    model, opt = built['model'], built['opt']
    states = list(model.states().values()) + list(brainstate.graph.states(opt).values())

    def loss_fn():
        return jnp.mean(((model(kicks) - recorded) / u.mV) ** 2)

    @brainstate.transform.jit
    @brainstate.transform.vmap(in_states=states, out_states=states)
    def fit_step():
        grads, loss = brainstate.transform.grad(loss_fn, opt.param_states, return_value=True)()
        opt.update(grads)
        return loss

    say(f'recording: {n_time} steps of {float(value(DT, u.ms)):g} ms, random kicks, '
        f'{float(value(NOISE, u.mV)):g} mV noise; true f = 8 Hz, tau = 300 ms, gain = 2 mV')
    say(f'{members} members: starting f from 3 to 30 Hz, Adam lr {", ".join(map(str, LEARNING_RATES))} '
        f'(cycled), one optimizer object, one compiled step')
    losses = []
    status = lambda: f'best loss {np.nanmin(losses[-1]):.4f} mV²' if losses else ''
    for _ in progress(range(n_steps), n_steps, 'fit', enabled=not args.quiet, status=status):
        losses.append(np.asarray(fit_step()))
    losses = np.asarray(losses)                              # (steps, members)
    final = losses[-1]                                       # the loss at the last step, per member
    fitted = {name: value(state.value, UNITS[name]) for name, state in
              (('freq', model.freq), ('tau', model.tau), ('gain', model.gain))}
    skips = np.asarray(opt.nonfinite_skips.value)
    best = int(np.nanargmin(np.where(np.isfinite(final), final, np.inf)))

    say('member  start f     lr   fitted f      tau    gain     loss  skipped')
    for i in range(members):
        say(f'{i:6d} {start_freq[i]:6.2f} Hz {lrs[i]:6.2f} {fitted["freq"][i]:7.2f} Hz {fitted["tau"][i]:6.0f} ms '
            f'{fitted["gain"][i]:5.2f} mV {final[i]:8.4f} {skips[i]:6d}' + ('   <- best' if i == best else ''))
    stuck = int(np.sum(~np.isfinite(final) | (final > 10 * final[best])))
    say(f'best member {best}: f = {fitted["freq"][best]:.3f} Hz, tau = {fitted["tau"][best]:.1f} ms, '
        f'gain = {fitted["gain"][best]:.3f} mV; loss {final[best]:.4f} mV² '
        f'(the noise alone gives {float(value(NOISE, u.mV)) ** 2:.4f})')
    say(f'{stuck} of {members} members ended in a local minimum or diverged; '
        f'{int(np.sum(skips > 0))} had non-finite steps skipped')
    summary = {
        'members': members, 'steps': n_steps, 'losses': losses, 'final': final, 'best': best,
        'start_freq': start_freq, 'lrs': lrs, 'skips': skips, 'stuck': stuck,
        'fitted': {name: getattr(model, name).value[best] for name in ('freq', 'tau', 'gain')},
        'true': dict(TRUE), 'step_count': np.asarray(opt.step_count.value), 'plot': None,
        'seconds': time.perf_counter() - start,
    }

    if not args.no_plot:
        plt = pyplot(say)
        if plt is not None:
            summary['plot'] = save_figure(draw(plt, summary, kicks, recorded, model, fitted), args.plot, say)
    say(f'total time: {summary["seconds"]:.1f} s')
    return summary


def draw(plt, summary, kicks, recorded, model, fitted):
    final, best = summary['final'], summary['best']
    good = np.isfinite(final) & (final <= 10 * final[best])      # found the true valley
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.8))
    ax = axes[0]
    for i in range(summary['members']):
        ax.semilogy(summary['losses'][:, i], color='tab:green' if good[i] else 'tab:red',
                    lw=2.5 if i == best else 0.8, alpha=1.0 if i == best else 0.6)
    ax.set(xlabel='Adam step', ylabel='loss (mV²)', title='every member (green: found the valley)')
    ax = axes[1]
    diverged = ~np.isfinite(final)
    for mask, marker, label in ((good, 'o', 'found it'), (~good & ~diverged, 'o', 'stuck'),
                                (diverged, 'x', 'diverged (skipped)')):
        if mask.any():
            ax.scatter(summary['start_freq'][mask], fitted['freq'][mask], marker=marker, s=28, label=label,
                       color='tab:green' if label == 'found it' else 'tab:red')
    ax.axhline(float(value(TRUE['freq'], u.Hz)), color='k', lw=0.8, ls='--', label='true f')
    ax.set(xscale='log', xlabel='starting f (Hz)', ylabel='fitted f (Hz)', title='where each member went')
    ax.minorticks_off()
    ax.set_xticks([3, 5, 10, 20, 30], ['3', '5', '10', '20', '30'])
    ax.legend(loc='upper left', fontsize=8)
    ax = axes[2]
    t = np.arange(recorded.shape[0]) * float(value(DT, u.ms))
    shown = t < 600
    single = Resonator(fitted['freq'][best], fitted['tau'][best], fitted['gain'][best])
    ax.plot(t[shown], value(recorded, u.mV)[shown], color='0.6', lw=0.8, label='recording')
    ax.plot(t[shown], value(single(kicks), u.mV)[shown], color='tab:green', lw=1.2, label=f'best member ({best})')
    ax.set(xlabel='time (ms)', ylabel='v (mV)', title='the recording and the best fit')
    ax.legend(loc='upper right')
    fig.tight_layout()
    return fig


if __name__ == '__main__':
    main()
