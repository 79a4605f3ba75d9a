"""Recover a neuron's membrane time constant (ms), synaptic conductance (nS) and resting
potential (mV) from a recorded voltage trace, with ``braintools_optim``.

The model
---------
A passive, conductance-based membrane (a neuron held below threshold, or a patch of dendrite)
driven by excitatory synapses whose presynaptic spike times are known::

    C dV/dt = -(C / tau_m) (V - E_L) - g_max s(t) (V - E_syn)
    ds/dt   = -s / tau_syn + sum_k delta(t - t_k)           (t_k: presynaptic spikes)

with a known capacitance ``C = 200 pF``, synaptic reversal ``E_syn = 0 mV`` and synaptic time
constant ``tau_syn = 5 ms``. Three parameters are unknown, each a ``brainunit`` Quantity in its
natural unit: the membrane time constant ``tau_m`` (ms), the peak synaptic conductance
``g_max`` (nS) and the resting potential ``E_L`` (mV). The equations are integrated with the
Euler method (``dt = 0.2 ms``) in ``jax.lax.scan``, with units throughout.

The data
--------
A "recording" is simulated from the true parameters (``tau_m = 20 ms``, ``g_max = 4 nS``,
``E_L = -65 mV``) for a few trials of Poisson synaptic input, plus 0.5 mV of Gaussian
recording noise. Nothing is downloaded.

The fit
-------
The loss is the mean squared difference between the model's and the recorded voltage, in
mV², a dimensionless number. ``brainstate.transform.grad`` differentiates it through the
whole simulation with respect to the three ParamStates. ``braintools_optim.Adam`` moves each
element by about ``lr`` per step *in the parameter's own unit*, so each physical quantity
gets its own parameter group with a learning rate on its own scale: 1 ms for ``tau_m``,
0.5 nS for ``g_max``, 1 mV for ``E_L``. One ``CosineAnnealingLR`` with a list of three base
learning rates (one per group) anneals all of them to zero, so the fit settles instead of
jittering by ``lr`` around the optimum.

Running it
----------
::

    python3 -m pip install -e ".[examples]"     # matplotlib, for the figure
    python3 examples/fit_neuron.py              # ~10 s on 2 CPU cores
    python3 examples/fit_neuron.py --quick      # fewer iterations (smoke test)
    python3 examples/fit_neuron.py --plot docs/figures/fit_neuron.png   # the docs' figure

It prints the fit's progress, then the true, initial and fitted value of each parameter
(with their units), and saves a figure: a recorded trial with the initial and the fitted
model's voltage, and each parameter's relative error during the fit.
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

DEFAULT_PLOT = os.path.join(EXAMPLES, 'fit_neuron.png')

# Known constants of the preparation.
C_M = 200.0 * u.pfarad            # membrane capacitance
E_SYN = 0.0 * u.mV                # excitatory reversal potential
TAU_SYN = 5.0 * u.ms              # synaptic decay time constant
DT = 0.2 * u.ms                   # integration step

# The parameters to recover, and where the fit starts.
TRUE = {'tau_m': 20.0 * u.ms, 'g_max': 4.0 * u.nS, 'E_L': -65.0 * u.mV}
INITIAL = {'tau_m': 10.0 * u.ms, 'g_max': 1.0 * u.nS, 'E_L': -55.0 * u.mV}
# Adam's step in each parameter's own unit (one parameter group each).
LEARNING_RATES = {'tau_m': 1.0, 'g_max': 0.5, 'E_L': 1.0}
NOISE = 0.5 * u.mV


def synaptic_gating(n_trials: int, n_steps: int, rate_hz: float, seed: int) -> np.ndarray:
    """``s(t)`` for Poisson presynaptic spikes: ``(n_steps, n_trials)``, dimensionless.

    It depends only on the (known) spike times, so it is computed once, with NumPy.
    """
    rng = np.random.default_rng(seed)
    p_spike = rate_hz * float(DT.to_decimal(u.second))
    spikes = rng.random((n_steps, n_trials)) < p_spike
    decay = float(np.exp(-float(DT / TAU_SYN)))
    s = np.zeros((n_steps, n_trials), np.float32)
    level = np.zeros(n_trials)
    for t in range(n_steps):
        level = level * decay + spikes[t]
        s[t] = level
    return s


class PassiveMembrane(brainstate.nn.Module):
    """Conductance-based passive membrane with three trainable physical parameters."""

    def __init__(self, tau_m: u.Quantity, g_max: u.Quantity, E_L: u.Quantity):
        super().__init__()
        self.tau_m = brainstate.ParamState(jnp.asarray(tau_m.to_decimal(u.ms), jnp.float32) * u.ms)
        self.g_max = brainstate.ParamState(jnp.asarray(g_max.to_decimal(u.nS), jnp.float32) * u.nS)
        self.E_L = brainstate.ParamState(jnp.asarray(E_L.to_decimal(u.mV), jnp.float32) * u.mV)

    def __call__(self, s: jax.Array) -> u.Quantity:
        """Voltage traces ``(n_steps, n_trials)`` in mV for the gating ``s``; starts at rest."""
        tau_m, g_max, e_l = self.tau_m.value, self.g_max.value, self.E_L.value

        def euler_step(v, s_t):
            dv = -(v - e_l) / tau_m - g_max * s_t * (v - E_SYN) / C_M      # mV / ms
            v = v + dv * DT
            return v, v

        v0 = u.math.full(s.shape[1:], 1.0) * e_l
        _, vs = jax.lax.scan(euler_step, v0, s)
        return vs


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--quick', action='store_true', help='fewer iterations and a shorter recording')
    parser.add_argument('--iterations', type=int, default=None, help='Adam steps (default 300; 150 with --quick)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the input spikes and the noise')
    parser.add_argument('--plot', default=DEFAULT_PLOT, help=f'figure path (default {DEFAULT_PLOT})')
    parser.add_argument('--no-plot', action='store_true', help='do not draw the figure')
    parser.add_argument('--quiet', action='store_true', help='print nothing')
    return parser.parse_args(argv)


def in_unit(value: u.Quantity, unit) -> float:
    return float(u.get_magnitude(value.to(unit)))


UNITS = {'tau_m': u.ms, 'g_max': u.nS, 'E_L': u.mV}


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Run the fit; returns a summary dict (losses, fitted values, relative errors, ...)."""
    args = parse_args(argv)
    say = (lambda *a, **k: None) if args.quiet else print
    start = time.perf_counter()
    n_iter = args.iterations or (150 if args.quick else 300)
    duration = 200.0 * u.ms if args.quick else 400.0 * u.ms
    n_trials = 3
    n_steps = int(round(float(duration / DT)))

    # -- the recording: simulate the true membrane, add noise ---------------------------------
    s = jnp.asarray(synaptic_gating(n_trials, n_steps, rate_hz=150.0, seed=args.seed))
    truth = PassiveMembrane(**TRUE)
    rng = np.random.default_rng(args.seed + 1)
    noise = rng.normal(0.0, in_unit(NOISE, u.mV), (n_steps, n_trials)).astype(np.float32)
    recorded = truth(s) + jnp.asarray(noise) * u.mV

    # -- the model to fit, and its optimizer: one parameter group per physical quantity -------
    model = PassiveMembrane(**INITIAL)
    names = list(TRUE)
    sched = bo.CosineAnnealingLR(base_lr=[LEARNING_RATES[n] for n in names], T_max=n_iter)
    opt = bo.Adam(lr=sched, schedule_per_update=True)       # the optimizer advances the schedule
    params = model.states(brainstate.ParamState)            # {('tau_m',): ..., ('g_max',): ..., ('E_L',): ...}
    opt.register_trainable_weights({(names[0],): params[(names[0],)]})
    for name in names[1:]:
        opt.add_param_group({(name,): params[(name,)]})    # its lr: the schedule's entry for it

    def loss_fn():
        error = (model(s) - recorded) / u.mV                # dimensionless
        return jnp.mean(error ** 2)

    @brainstate.transform.jit
    def fit_step():
        grads, loss = brainstate.transform.grad(loss_fn, opt.param_states, return_value=True)()
        opt.update(grads)
        return loss

    initial_trace = model(s)
    say(f'recording: {n_trials} trials of {in_unit(duration, u.ms):g} ms at dt = {in_unit(DT, u.ms):g} ms, '
        f'Poisson synaptic input, {in_unit(NOISE, u.mV):g} mV noise')
    say('fitting tau_m (ms), g_max (nS) and E_L (mV) with Adam, one parameter group each, '
        'lr ' + ', '.join(f'{LEARNING_RATES[n]:g} {UNITS[n]}' for n in names) + ', cosine-annealed')

    losses, history = [], {name: [] for name in names}

    def status():
        return (f'loss {losses[-1]:.3f} mV²  ' +
                '  '.join(f'{n} {history[n][-1]:.2f}' for n in names)) if losses else ''

    for _ in progress(range(n_iter), n_iter, 'fit', enabled=not args.quiet, status=status):
        losses.append(float(fit_step()))
        for name in names:
            history[name].append(in_unit(params[(name,)].value, UNITS[name]))

    fitted = {name: params[(name,)].value for name in names}
    errors = {name: abs(in_unit(fitted[name], UNITS[name]) - in_unit(TRUE[name], UNITS[name]))
              / abs(in_unit(TRUE[name], UNITS[name])) for name in names}
    say(f'loss: {losses[0]:.3f} -> {losses[-1]:.4f} mV² '
        f'(the noise alone gives {in_unit(NOISE, u.mV) ** 2:.4f})')
    say(f"{'parameter':<10}{'true':>12}{'initial':>12}{'fitted':>12}{'error':>9}")
    for name in names:
        unit = UNITS[name]
        say(f'{name:<10}{in_unit(TRUE[name], unit):>9.2f} {unit!s:<2}{in_unit(INITIAL[name], unit):>9.2f} '
            f'{unit!s:<2}{in_unit(fitted[name], unit):>9.2f} {unit!s:<2}{errors[name]:>8.1%}')
    say('units kept: ' + ', '.join(f'{name} in {fitted[name].unit}' for name in names))

    plot_path = None
    if not args.no_plot:
        plt = pyplot(say)
        if plt is not None:
            plot_path = draw(plt, s, recorded, initial_trace, model(s), history, args.plot, say)
    elapsed = time.perf_counter() - start
    say(f'total time: {elapsed:.1f} s')
    return dict(losses=losses, fitted=fitted, true=dict(TRUE), initial=dict(INITIAL), errors=errors,
                history=history, steps=int(opt.step_count.value), plot=plot_path, seconds=elapsed)


def draw(plt, s, recorded, initial_trace, fitted_trace, history, path, say):
    t = np.arange(recorded.shape[0]) * in_unit(DT, u.ms)
    fig, (ax_v, ax_err) = plt.subplots(1, 2, figsize=(10, 3.6), gridspec_kw=dict(width_ratios=[1.6, 1]))
    trial = 0
    ax_v.plot(t, np.asarray(recorded.to_decimal(u.mV))[:, trial], color='0.6', lw=0.6, label='recorded')
    ax_v.plot(t, np.asarray(initial_trace.to_decimal(u.mV))[:, trial], '--', color='tab:orange', lw=1.2,
              label='initial guess')
    ax_v.plot(t, np.asarray(fitted_trace.to_decimal(u.mV))[:, trial], color='tab:blue', lw=1.2, label='fitted')
    ax_v.set_xlabel('time (ms)')
    ax_v.set_ylabel('membrane potential (mV)')
    ax_v.set_title('one trial of the recording')
    ax_v.legend(loc='upper right', fontsize=8)
    iterations = np.arange(1, len(next(iter(history.values()))) + 1)
    for name, values in history.items():
        true = in_unit(TRUE[name], UNITS[name])
        ax_err.semilogy(iterations, np.abs(np.asarray(values) - true) / abs(true) + 1e-6,
                        label=f'{name} ({UNITS[name]})')
    ax_err.set_xlabel('Adam step')
    ax_err.set_ylabel('relative error')
    ax_err.set_title('parameters during the fit')
    ax_err.legend(fontsize=8)
    fig.tight_layout()
    return save_figure(fig, path, say)


if __name__ == '__main__':
    main()
