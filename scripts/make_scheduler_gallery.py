"""Draw every learning-rate scheduler's curve into ``docs/figures/schedulers.png``.

Run with::

    python scripts/make_scheduler_gallery.py [--out docs/figures/schedulers.png]

Each panel is ``braintools_optim.schedulers.plot(scheduler, steps=...)``; the
cyclical schedulers also show their momentum cycle (dashed, right axis).
"""

from __future__ import annotations

import argparse
import os

import jax.numpy as jnp
import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from braintools_optim import schedulers as S  # noqa: E402

STEPS = 120


def plateau_metric(steps=STEPS):
    """A loss that improves, then stalls: what ReduceLROnPlateau reacts to."""
    rng = np.random.default_rng(0)
    k = np.arange(steps)
    return 1.0 / (1.0 + 0.2 * np.minimum(k, 30)) + 0.01 * rng.uniform(-1, 1, steps)


def gallery():
    """(title, scheduler, extra plot kwargs) for every scheduler class."""
    return [
        ('StepLR(step_size=20, gamma=0.5)', S.StepLR(0.1, step_size=20, gamma=0.5), {}),
        ('MultiStepLR([30, 60, 90], gamma=0.3)', S.MultiStepLR(0.1, [30, 60, 90], gamma=0.3), {}),
        ('ConstantLR(factor=0.25, total_iters=30)', S.ConstantLR(0.1, factor=0.25, total_iters=30), {}),
        ('LinearLR(0.1 -> 1, total_iters=40)', S.LinearLR(0.1, start_factor=0.1, total_iters=40), {}),
        ('ExponentialLR(gamma=0.97)', S.ExponentialLR(0.1, gamma=0.97), {}),
        ('PolynomialLR(total_iters=100, power=2)', S.PolynomialLR(0.1, total_iters=100, power=2.0), {}),
        ('CosineAnnealingLR(T_max=50)  (holds eta_min after)', S.CosineAnnealingLR(0.1, T_max=50, eta_min=0.01), {}),
        ("CosineAnnealingLR(T_max=50, past_T_max='cosine')",
         S.CosineAnnealingLR(0.1, T_max=50, eta_min=0.01, past_T_max='cosine'), {}),
        ('CosineAnnealingWarmRestarts(T_0=10, T_mult=2)', S.CosineAnnealingWarmRestarts(0.1, T_0=10, T_mult=2), {}),
        ("CyclicLR('triangular2') + momentum", S.CyclicLR(0.01, 0.1, step_size_up=15, mode='triangular2',
                                                         cycle_momentum=True), dict(momentum=True)),
        ("CyclicLR('exp_range', gamma=0.99)", S.CyclicLR(0.01, 0.1, step_size_up=10, mode='exp_range', gamma=0.99),
         {}),
        ('OneCycleLR(cos)  (braintools: linear warm-up)', S.OneCycleLR(0.1, total_steps=STEPS), {}),
        ("OneCycleLR(cos, convention='torch') + momentum", S.OneCycleLR(0.1, total_steps=STEPS,
                                                                        **S.torch_options('OneCycleLR')),
         dict(momentum=True)),
        ('OneCycleLR(linear, three_phase)  (torch)', S.OneCycleLR(0.1, total_steps=STEPS, anneal_strategy='linear',
                                                                  convention='torch', three_phase=True), {}),
        ('ReduceLROnPlateau(patience=5, cooldown=3)', S.ReduceLROnPlateau(0.1, factor=0.5, patience=5, cooldown=3,
                                                                          threshold=0.01),
         dict(metrics=plateau_metric())),
        ('LambdaLR(1 / (1 + 0.05 e))', S.LambdaLR(0.1, lr_lambda=lambda e: 1.0 / (1.0 + 0.05 * e)), {}),
        ('MultiplicativeLR(0.98, x1.5 every 25)', S.MultiplicativeLR(
            0.1, lr_lambda=lambda e: jnp.where(e % 25 == 0, 1.5, 0.98)), {}),
        ('ChainedScheduler([LinearLR, ExponentialLR])', S.ChainedScheduler([
            S.LinearLR(0.1, start_factor=0.1, total_iters=20), S.ExponentialLR(0.1, gamma=0.98)]), {}),
        ('SequentialLR([LinearLR, CosineAnnealingLR], [20])', S.SequentialLR([
            S.LinearLR(0.1, start_factor=0.05, total_iters=20), S.CosineAnnealingLR(0.1, T_max=100)], [20]), {}),
        ('WarmupScheduler(warmup_epochs=25)', S.WarmupScheduler(0.1, warmup_epochs=25, warmup_start_lr=0.01), {}),
        ('WarmupCosineSchedule(20, 100, eta_min=0.005)', S.WarmupCosineSchedule(0.1, warmup_steps=20, total_steps=100,
                                                                                eta_min=0.005), {}),
        ('ExponentialDecayLR(decay_steps=15, staircase)', S.ExponentialDecayLR(0.1, decay_steps=15, decay_rate=0.7,
                                                                               transition_begin=10,
                                                                               staircase=True), {}),
        ('PiecewiseConstantSchedule({30: 0.5, 70: 0.2})', S.PiecewiseConstantSchedule(
            0.1, boundaries_and_scales={30: 0.5, 70: 0.2}), {}),
        ('StepLR, two parameter groups', S.StepLR([0.1, 0.05], step_size=30, gamma=0.5), {}),
    ]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'docs',
                                                      'figures', 'schedulers.png'))
    args = parser.parse_args()
    panels = gallery()
    columns = 4
    rows = -(-len(panels) // columns)
    fig, axes = plt.subplots(rows, columns, figsize=(4.2 * columns, 2.7 * rows), constrained_layout=True)
    for ax, (title, scheduler, kwargs) in zip(axes.flat, panels):
        S.plot(scheduler, steps=STEPS, ax=ax, **kwargs)
        ax.set_title(title, fontsize=8.5)
        ax.tick_params(labelsize=7)
        ax.set_xlabel('step', fontsize=7)
        ax.set_ylabel('lr', fontsize=7)
        ax.grid(alpha=0.3)
        if scheduler.num_groups > 1:
            ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis('off')
    fig.suptitle('braintools_optim learning-rate schedulers (%d steps)' % STEPS, fontsize=11)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {os.path.normpath(args.out)}")


if __name__ == '__main__':
    main()
