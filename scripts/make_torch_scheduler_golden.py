"""Generate the torch golden learning rates used by ``tests/test_schedulers.py``.

Regenerate with::

    pip install torch==2.13.0      # CPU build is enough; the tests never import torch
    python scripts/make_torch_scheduler_golden.py

It writes ``tests/golden/torch_schedulers.npz``. For every case in ``CASES``
below it builds ``torch.optim.SGD`` (momentum 0.9, one parameter group per
entry of ``base_lr``) and the torch scheduler described by the case, then for
``steps`` steps records every group's ``lr`` (and ``momentum``) *before*
calling ``optimizer.step()`` and ``scheduler.step()`` (``scheduler.step(metric)``
for ReduceLROnPlateau). The output is deterministic.

File layout (``np.load(path)``):

* ``<case>/spec``: the case as JSON: ``{"cls", "kwargs", "base_lr", "steps"}``,
  composites with ``"schedulers"`` (child specs) and ``"milestones"``;
  callables are given by name (``FUNCTIONS`` here; the tests define the same
  functions in ``jnp``).
* ``<case>/lr``: float64 ``(steps, groups)``, the learning rate at each step.
* ``<case>/momentum``: float64 ``(steps, groups)`` (cyclic cases only).
* ``<case>/metrics``: float64 ``(steps,)``, the metric passed at each step
  (ReduceLROnPlateau cases only; exactly representable in float32).

The tests build braintools_optim's scheduler from the same spec (the same
argument names: torch's, which braintools shares) and compare.
"""

from __future__ import annotations

import json
import os
import warnings

import numpy as np
import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'tests', 'golden', 'torch_schedulers.npz')

# Scalar functions of the (int) epoch; the tests define the same ones with jnp.
FUNCTIONS = {
    'inv_linear': lambda e: 1.0 / (1.0 + 0.05 * e),
    'warm_then_decay': lambda e: min(1.0, (e + 1) / 10.0) * 0.95 ** max(0, e - 10),
    'mult_periodic': lambda e: 0.97 + 0.02 * float(e % 4 == 0),
    'decay_cycle': lambda c: 1.0 / (1.0 + 0.5 * (c - 1)),
    'decay_iter': lambda e: 1.0 / (1.0 + 0.01 * e),
}


def plateau_metrics_min(steps, seed=0):
    """Improves, stalls (noise below the 1 % threshold), improves again, ... (min mode)."""
    rng = np.random.default_rng(seed)
    level, values = 1.0, []
    for k in range(steps):
        if k < 15 or 40 <= k < 45 or 80 <= k < 83:
            level *= 0.93
        values.append(level * (1.0 + 0.004 * rng.uniform(-1, 1)))
    return np.asarray(values, np.float32).astype(np.float64)


def plateau_metrics_max(steps, seed=1):
    """An accuracy-like metric: rises by more than 0.05 now and then, else small noise (max mode)."""
    rng = np.random.default_rng(seed)
    level, values = 0.1, []
    for k in range(steps):
        if (k % 9 == 0 and k < 60) or k in (80, 81, 100):
            level += 0.12
        values.append(level + 0.02 * rng.uniform(-1, 1))
    return np.asarray(values, np.float32).astype(np.float64)


def plateau_metrics_flat(steps):
    """Never improves after the first value: reduces every ``patience + 1`` steps until eps stops it."""
    return np.asarray([1.0] * steps, np.float64)


N = 120

CASES = {
    'step': dict(cls='StepLR', kwargs=dict(step_size=7, gamma=0.5), base_lr=0.1),
    'step_groups': dict(cls='StepLR', kwargs=dict(step_size=10, gamma=0.7), base_lr=[0.1, 0.02]),
    'multistep': dict(cls='MultiStepLR', kwargs=dict(milestones=[10, 30, 30, 70], gamma=0.3), base_lr=0.05),
    'constant': dict(cls='ConstantLR', kwargs=dict(factor=0.25, total_iters=15), base_lr=0.1),
    'linear_warmup': dict(cls='LinearLR', kwargs=dict(start_factor=0.1, end_factor=1.0, total_iters=40),
                          base_lr=0.1),
    'linear_decay': dict(cls='LinearLR', kwargs=dict(start_factor=1.0, end_factor=0.05, total_iters=80),
                         base_lr=[0.1, 0.3]),
    'exponential': dict(cls='ExponentialLR', kwargs=dict(gamma=0.97), base_lr=0.1),
    'polynomial': dict(cls='PolynomialLR', kwargs=dict(total_iters=80, power=2.0), base_lr=0.1),
    'cosine': dict(cls='CosineAnnealingLR', kwargs=dict(T_max=30, eta_min=0.01), base_lr=0.1),
    'warm_restarts_mult2': dict(cls='CosineAnnealingWarmRestarts', kwargs=dict(T_0=10, T_mult=2, eta_min=0.001),
                                base_lr=0.1),
    'warm_restarts': dict(cls='CosineAnnealingWarmRestarts', kwargs=dict(T_0=7, T_mult=1, eta_min=0.0),
                          base_lr=[0.1, 0.05]),
    'cyclic_triangular': dict(cls='CyclicLR', kwargs=dict(base_lr=0.01, max_lr=0.1, step_size_up=10,
                                                          step_size_down=15), base_lr=0.01),
    'cyclic_triangular2': dict(cls='CyclicLR', kwargs=dict(base_lr=0.01, max_lr=0.1, step_size_up=8,
                                                           mode='triangular2', base_momentum=0.7,
                                                           max_momentum=0.95), base_lr=0.01),
    'cyclic_exp_range': dict(cls='CyclicLR', kwargs=dict(base_lr=[0.01, 0.02], max_lr=[0.1, 0.2], step_size_up=12,
                                                         step_size_down=6, mode='exp_range', gamma=0.98,
                                                         base_momentum=[0.8, 0.85], max_momentum=[0.9, 0.95]),
                             base_lr=[0.01, 0.02]),
    'cyclic_scale_cycle': dict(cls='CyclicLR', kwargs=dict(base_lr=0.01, max_lr=0.1, step_size_up=10,
                                                           scale_fn='decay_cycle', scale_mode='cycle'),
                               base_lr=0.01),
    'cyclic_scale_iterations': dict(cls='CyclicLR', kwargs=dict(base_lr=0.01, max_lr=0.1, step_size_up=5,
                                                                step_size_down=9, scale_fn='decay_iter',
                                                                scale_mode='iterations'), base_lr=0.01),
    'onecycle_cos': dict(cls='OneCycleLR', kwargs=dict(max_lr=0.5, total_steps=120, pct_start=0.25),
                         base_lr=0.1, steps=121),
    'onecycle_linear': dict(cls='OneCycleLR', kwargs=dict(max_lr=[0.5, 0.2], total_steps=120, pct_start=0.3,
                                                          anneal_strategy='linear', div_factor=10.0,
                                                          final_div_factor=100.0), base_lr=[0.1, 0.1], steps=121),
    'onecycle_three_phase': dict(cls='OneCycleLR', kwargs=dict(max_lr=0.5, total_steps=120, pct_start=0.3,
                                                               three_phase=True, base_momentum=0.8,
                                                               max_momentum=0.9), base_lr=0.1, steps=121),
    'onecycle_epochs': dict(cls='OneCycleLR', kwargs=dict(max_lr=0.3, epochs=10, steps_per_epoch=12,
                                                          pct_start=0.4, anneal_strategy='linear',
                                                          three_phase=True), base_lr=0.1, steps=121),
    'plateau_min_rel': dict(cls='ReduceLROnPlateau', kwargs=dict(mode='min', factor=0.5, patience=3,
                                                                 threshold=0.01, threshold_mode='rel', cooldown=2,
                                                                 min_lr=0.002), base_lr=0.1,
                            metrics='plateau_metrics_min'),
    'plateau_max_abs': dict(cls='ReduceLROnPlateau', kwargs=dict(mode='max', factor=0.5, patience=4, threshold=0.05,
                                                                 threshold_mode='abs', cooldown=0,
                                                                 min_lr=[0.002, 0.0005]), base_lr=[0.1, 0.05],
                            metrics='plateau_metrics_max'),
    'plateau_eps': dict(cls='ReduceLROnPlateau', kwargs=dict(mode='min', factor=0.1, patience=1, cooldown=1,
                                                             eps=1e-8), base_lr=1e-6, metrics='plateau_metrics_flat'),
    'lambda': dict(cls='LambdaLR', kwargs=dict(lr_lambda='inv_linear'), base_lr=0.1),
    'lambda_groups': dict(cls='LambdaLR', kwargs=dict(lr_lambda=['inv_linear', 'warm_then_decay']),
                          base_lr=[0.1, 0.2]),
    'multiplicative': dict(cls='MultiplicativeLR', kwargs=dict(lr_lambda='mult_periodic'), base_lr=0.1),
    'chained_constant_exp': dict(cls='ChainedScheduler', base_lr=0.1, schedulers=[
        dict(cls='ConstantLR', kwargs=dict(factor=0.5, total_iters=10)),
        dict(cls='ExponentialLR', kwargs=dict(gamma=0.97))]),
    'chained_warm_cos': dict(cls='ChainedScheduler', base_lr=0.1, schedulers=[
        dict(cls='LinearLR', kwargs=dict(start_factor=0.1, end_factor=1.0, total_iters=10)),
        dict(cls='CosineAnnealingLR', kwargs=dict(T_max=120))]),
    'chained_three': dict(cls='ChainedScheduler', base_lr=[0.1, 0.04], schedulers=[
        dict(cls='MultiStepLR', kwargs=dict(milestones=[20, 50], gamma=0.5)),
        dict(cls='PolynomialLR', kwargs=dict(total_iters=100, power=1.5)),
        dict(cls='StepLR', kwargs=dict(step_size=15, gamma=0.8))]),
    'chained_multiplicative': dict(cls='ChainedScheduler', base_lr=0.1, schedulers=[
        dict(cls='MultiplicativeLR', kwargs=dict(lr_lambda='mult_periodic')),
        dict(cls='LinearLR', kwargs=dict(start_factor=0.2, end_factor=1.0, total_iters=20))]),
    'sequential': dict(cls='SequentialLR', base_lr=0.1, milestones=[10, 60], schedulers=[
        dict(cls='LinearLR', kwargs=dict(start_factor=0.1, end_factor=1.0, total_iters=10)),
        dict(cls='CosineAnnealingLR', kwargs=dict(T_max=50, eta_min=0.001)),
        dict(cls='ExponentialLR', kwargs=dict(gamma=0.95))]),
    'sequential_two': dict(cls='SequentialLR', base_lr=[0.1, 0.05], milestones=[5], schedulers=[
        dict(cls='ConstantLR', kwargs=dict(factor=0.1, total_iters=5)),
        dict(cls='StepLR', kwargs=dict(step_size=20, gamma=0.5))]),
    'sequential_restarts': dict(cls='SequentialLR', base_lr=0.1, milestones=[5, 75], schedulers=[
        dict(cls='LinearLR', kwargs=dict(start_factor=0.1, end_factor=1.0, total_iters=5)),
        dict(cls='CosineAnnealingWarmRestarts', kwargs=dict(T_0=10, T_mult=2, eta_min=0.001)),
        dict(cls='PolynomialLR', kwargs=dict(total_iters=30, power=1.0))]),
}


def _resolve(kwargs):
    out = {}
    for key, value in kwargs.items():
        if key in ('lr_lambda', 'scale_fn'):
            value = [FUNCTIONS[v] for v in value] if isinstance(value, list) else FUNCTIONS[value]
        out[key] = value
    return out


def build(spec, optimizer):
    L = torch.optim.lr_scheduler
    if spec['cls'] == 'ChainedScheduler':
        return L.ChainedScheduler([build(child, optimizer) for child in spec['schedulers']])
    if spec['cls'] == 'SequentialLR':
        children = [build(child, optimizer) for child in spec['schedulers']]
        return L.SequentialLR(optimizer, children, milestones=spec['milestones'])
    return getattr(L, spec['cls'])(optimizer, **_resolve(spec.get('kwargs', {})))


def run(name, spec):
    base = spec['base_lr'] if isinstance(spec['base_lr'], list) else [spec['base_lr']]
    steps = spec.get('steps', N)
    params = [torch.nn.Parameter(torch.zeros(1, dtype=torch.float64)) for _ in base]
    optimizer = torch.optim.SGD([{'params': [p], 'lr': lr} for p, lr in zip(params, base)], lr=base[0],
                                momentum=0.9)
    scheduler = build(spec, optimizer)
    metrics = globals()[spec['metrics']](steps) if 'metrics' in spec else None
    lrs, moms = [], []
    for k in range(steps):
        lrs.append([float(g['lr']) for g in optimizer.param_groups])
        moms.append([float(g['momentum']) for g in optimizer.param_groups])
        optimizer.step()
        if k == steps - 1:
            break                      # (OneCycleLR raises when stepped past total_steps)
        if metrics is not None:
            scheduler.step(float(metrics[k]))
        else:
            scheduler.step()
    out = {f'{name}/spec': np.asarray(json.dumps({**spec, 'steps': steps})),
           f'{name}/lr': np.asarray(lrs, np.float64)}
    if spec['cls'] in ('CyclicLR', 'OneCycleLR'):
        out[f'{name}/momentum'] = np.asarray(moms, np.float64)
    if metrics is not None:
        out[f'{name}/metrics'] = metrics
    return out


def main():
    torch.set_num_threads(1)
    warnings.simplefilter('ignore')
    arrays = {}
    for name, spec in CASES.items():
        arrays.update(run(name, spec))
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    np.savez_compressed(OUT, **arrays)
    print(f"wrote {len(CASES)} cases to {os.path.normpath(OUT)}")


if __name__ == '__main__':
    main()
