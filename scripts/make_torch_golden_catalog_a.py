"""Write torch golden trajectories for the catalog-A optimizers (needs torch; tests do not).

    python scripts/make_torch_golden_catalog_a.py

For each configuration, four parameters of different rank (``s: ()``,
``v: (5,)``, ``m: (3, 4)``, ``t: (2, 3, 2)``; 30 numbers) are trained for
``STEPS`` steps by ``torch.optim.<cls>(foreach=False)`` on the feedback problem

    g_k = c * theta_k + noise_k

(the gradient is recomputed from torch's own current parameters, so an error at
one step changes all later ones), once in float32 and once in float64. The
float64 run sets torch's default dtype to float64, so that scalar optimizer
state (NAdam's ``mu_product``) is float64 too; the float32 run uses torch's
float32 default, as a float32 user would.

By-hand processing: ``l2`` (for Rprop, which has no ``weight_decay``):
``g <- g + l2 * theta`` before ``step()``, which is what our coupled
``weight_decay`` does; ``scheduler``: a ``torch.optim.lr_scheduler`` stepped
after every ``step()`` (our side attaches the same braintools_optim scheduler
as ``lr`` and steps it the same way). The generator refuses to write an Rprop
configuration with explicit ``step_sizes`` whose bounds are never reached.

Each ``tests/golden/catalog_a_<family>.npz`` holds ``meta`` (a JSON string:
torch version, steps, parameter names and shapes, configurations with the torch
class and arguments and the braintools_optim module, class and arguments that
must reproduce them) and per configuration ``<name>.init`` (30,), ``<name>.c``
(30,), ``<name>.noise`` (25, 30), all float64, and ``<name>.traj32`` /
``<name>.traj64`` (26, 30), row 0 being the initial values.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import torch

# The problem (shapes, steps, initial values, coefficients, noise) is the seed optimizers' one.
from make_torch_golden import OUT_DIR, STEPS, problem, split, write_golden  # noqa: E402

# torch.optim.lr_scheduler.CyclicLR, stepped after every optimizer step; it also
# cycles beta1 (cycle_momentum=True), which reaches our rules as a traced value.
# Our side: lr=braintools_optim.schedulers.CyclicLR(**same), stepped the same way.
CYCLIC = ('CyclicLR', dict(base_lr=0.01, max_lr=0.08, step_size_up=4, step_size_down=6,
                           base_momentum=0.7, max_momentum=0.95))

# family -> [(name, torch class, torch kwargs, by-hand processing, our module, our class, our kwargs)]
CONFIGS = {
    'adagrad': [
        ('adagrad_plain', 'Adagrad', dict(lr=0.1), {},
         'adagrad', 'Adagrad', dict(lr=0.1)),
        ('adagrad_decay_init_wd', 'Adagrad',
         dict(lr=0.3, lr_decay=0.05, weight_decay=0.02, initial_accumulator_value=0.1, eps=1e-6), {},
         'adagrad', 'Adagrad',
         dict(lr=0.3, lr_decay=0.05, weight_decay=0.02, initial_accumulator_value=0.1, eps=1e-6)),
    ],
    'adamax': [
        ('adamax_plain', 'Adamax', dict(lr=0.05), {}, 'adamax', 'Adamax', dict(lr=0.05)),
        ('adamax_betas_eps_wd', 'Adamax', dict(lr=0.05, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.02), {},
         'adamax', 'Adamax', dict(lr=0.05, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.02)),
    ],
    'nadam': [
        ('nadam_plain', 'NAdam', dict(lr=0.05), {}, 'nadam', 'Nadam', dict(lr=0.05)),
        ('nadam_betas_psi_wd', 'NAdam',
         dict(lr=0.05, betas=(0.85, 0.995), eps=1e-6, weight_decay=0.02, momentum_decay=0.01), {},
         'nadam', 'Nadam', dict(lr=0.05, betas=(0.85, 0.995), eps=1e-6, weight_decay=0.02, momentum_decay=0.01)),
        ('nadamw_wd', 'NAdam', dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True), {},
         'nadam', 'NAdamW', dict(lr=0.05, weight_decay=0.1)),
        ('nadamw_betas_psi_wd', 'NAdam',
         dict(lr=0.03, betas=(0.9, 0.99), weight_decay=0.3, momentum_decay=0.002, decoupled_weight_decay=True),
         {}, 'nadam', 'NAdamW', dict(lr=0.03, betas=(0.9, 0.99), weight_decay=0.3, momentum_decay=0.002)),
        ('nadam_cyclic_lr_momentum', 'NAdam', dict(lr=0.05, weight_decay=0.01),
         dict(scheduler=CYCLIC), 'nadam', 'Nadam', dict(weight_decay=0.01)),
    ],
    'radam': [
        ('radam_plain', 'RAdam', dict(lr=0.05), {}, 'radam', 'RAdam', dict(lr=0.05)),
        ('radam_betas_eps_wd', 'RAdam', dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.02), {},
         'radam', 'RAdam', dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.02)),
        ('radam_b2_09', 'RAdam', dict(lr=0.02, betas=(0.9, 0.9)), {},
         'radam', 'RAdam', dict(lr=0.02, betas=(0.9, 0.9))),
        ('radam_cyclic_lr_momentum', 'RAdam', dict(lr=0.05), dict(scheduler=CYCLIC), 'radam', 'RAdam', {}),
    ],
    'rprop': [
        ('rprop_plain', 'Rprop', dict(lr=0.05), {}, 'rprop', 'Rprop', dict(lr=0.05)),
        ('rprop_etas_bounds_l2', 'Rprop', dict(lr=0.02, etas=(0.3, 1.5), step_sizes=(2e-3, 0.1)),
         dict(l2=0.05), 'rprop', 'Rprop',
         dict(lr=0.02, etas=(0.3, 1.5), step_sizes=(2e-3, 0.1), weight_decay=0.05)),
    ],
}


def run_torch(cls_name, torch_kwargs, processing, init, c, noise, dtype):
    """One torch.optim run; returns the (STEPS + 1, SIZE) trajectory."""
    np_dtype = {torch.float32: np.float32, torch.float64: np.float64}[dtype]
    previous_default = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        params = [torch.tensor(a.copy(), dtype=dtype) for a in split(init.astype(np_dtype))]
        coeffs = [torch.tensor(a.copy(), dtype=dtype) for a in split(c.astype(np_dtype))]
        opt = getattr(torch.optim, cls_name)(params, foreach=False, **torch_kwargs)
        scheduler = None
        if 'scheduler' in processing:
            sched_name, sched_kwargs = processing['scheduler']
            scheduler = getattr(torch.optim.lr_scheduler, sched_name)(opt, **sched_kwargs)
        traj = [np.concatenate([p.numpy().ravel() for p in params])]
        bound_hits = [0, 0]
        for k in range(STEPS):
            step_noise = [torch.tensor(a.copy(), dtype=dtype) for a in split(noise[k].astype(np_dtype))]
            grads = [ci * p + ni for ci, p, ni in zip(coeffs, params, step_noise)]
            if 'l2' in processing:
                grads = [g + processing['l2'] * p for g, p in zip(grads, params)]
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            if scheduler is not None:
                scheduler.step()
            if cls_name == 'Rprop':
                low, high = torch_kwargs.get('step_sizes', (1e-6, 50.0))
                sizes = torch.cat([opt.state[p]['step_size'].ravel() for p in params])
                bound_hits[0] += int((sizes == low).sum())
                bound_hits[1] += int((sizes == high).sum())
            traj.append(np.concatenate([p.detach().numpy().ravel() for p in params]))
        if cls_name == 'NAdam':   # the scalar state really had the run's dtype
            assert all(opt.state[p]['mu_product'].dtype == dtype for p in params)
        if cls_name == 'Rprop' and 'step_sizes' in torch_kwargs and not all(bound_hits):
            raise RuntimeError(f"Rprop {torch_kwargs}: a step-size bound was never reached {bound_hits}")
    finally:
        torch.set_default_dtype(previous_default)
    return np.stack(traj)


def main() -> int:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    os.makedirs(OUT_DIR, exist_ok=True)
    seed = 20250101
    total_bytes = 0
    for family, configs in CONFIGS.items():
        arrays, metas = {}, []
        for name, cls_name, torch_kwargs, processing, module, our_cls, our_kwargs in configs:
            seed += 1
            init, c, noise = problem(seed)
            traj32 = run_torch(cls_name, torch_kwargs, processing, init, c, noise, torch.float32)
            traj64 = run_torch(cls_name, torch_kwargs, processing, init, c, noise, torch.float64)
            if not (np.all(np.isfinite(traj32)) and np.all(np.isfinite(traj64))):
                raise RuntimeError(f"{name}: non-finite trajectory")
            arrays[f'{name}.init'] = init
            arrays[f'{name}.c'] = c
            arrays[f'{name}.noise'] = noise
            arrays[f'{name}.traj32'] = traj32.astype(np.float32)
            arrays[f'{name}.traj64'] = traj64.astype(np.float64)
            metas.append(dict(name=name, seed=seed, torch=dict(cls=cls_name, kwargs=torch_kwargs),
                              processing=processing,
                              ours=dict(module=module, cls=our_cls, kwargs=our_kwargs)))
            moved = np.max(np.abs(traj64[-1] - traj64[0]))
            gap = np.max(np.abs(traj32.astype(np.float64) - traj64))
            print(f"{family:8s} {name:24s} max |theta_25 - theta_0| = {moved:.3g}   "
                  f"max |float32 - float64| = {gap:.2g}")
        total_bytes += write_golden(f'catalog_a_{family}.npz', 'scripts/make_torch_golden_catalog_a.py',
                                    metas, arrays)
    print(f"wrote {len(CONFIGS)} files to {os.path.normpath(OUT_DIR)} ({total_bytes / 1024:.0f} KiB)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
