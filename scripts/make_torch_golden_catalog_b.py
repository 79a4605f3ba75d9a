"""Write torch golden trajectories for the catalog-B optimizers (needs torch; tests do not).

    python scripts/make_torch_golden_catalog_b.py

Only ``torch.optim.Adafactor`` is covered: of the catalog-B algorithms torch
also has ``Muon`` (it orthogonalises in bfloat16, so no tight comparison is
possible) and ``LBFGS`` (several iterations per ``step(closure)``, a different
protocol); both are compared with optax instead (``tests/test_catalog_b_optax.py``).

The problem is the seed optimizers' one (``scripts/make_torch_golden.py``): four
parameters ``s: ()``, ``v: (5,)``, ``m: (3, 4)``, ``t: (2, 3, 2)`` trained for 25
steps on ``g_k = c * theta_k + noise_k``, recomputed from torch's own current
parameters, once in float32 and once in float64 (default dtype set to match).

``tests/golden/catalog_b_adafactor.npz`` holds ``meta`` (JSON: torch version,
steps, parameters, configurations with torch's arguments and the
braintools_optim arguments that must reproduce them) and per configuration
``<name>.init``, ``<name>.c``, ``<name>.noise`` (float64) and ``<name>.traj32`` /
``<name>.traj64`` (26 x 30, row 0 the initial values).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

from make_torch_golden import OUT_DIR, PARAMS, STEPS, problem, split  # noqa: E402

# (name, torch kwargs, our kwargs). torch's eps = (eps1, eps2): eps1 floors the
# variance estimate at eps1**2 (None: finfo.eps); ours adds eps1 to g**2. Both are
# no-ops at this problem's gradient scale, so the default eps1 is kept on each side.
# torch's beta2_decay = -decay_rate, d = clip_threshold.
CONFIGS = [
    ('adafactor_default', dict(), dict()),
    ('adafactor_lr_decay_d_eps2_wd',
     dict(lr=0.5, beta2_decay=-0.6, d=1.5, eps=(None, 1.0), weight_decay=0.05),
     dict(lr=0.5, decay_rate=0.6, clip_threshold=1.5, eps=(1e-30, 1.0), weight_decay=0.05)),
    ('adafactor_lr_wd_d1', dict(lr=0.1, weight_decay=0.2),
     dict(lr=0.1, weight_decay=0.2)),
]


def run_torch(torch_kwargs, init, c, noise, dtype):
    np_dtype = {torch.float32: np.float32, torch.float64: np.float64}[dtype]
    previous = torch.get_default_dtype()
    torch.set_default_dtype(dtype)
    try:
        params = [torch.tensor(a.copy(), dtype=dtype) for a in split(init.astype(np_dtype))]
        coeffs = [torch.tensor(a.copy(), dtype=dtype) for a in split(c.astype(np_dtype))]
        opt = torch.optim.Adafactor(params, foreach=False, **torch_kwargs)
        traj = [np.concatenate([p.numpy().ravel() for p in params])]
        for k in range(STEPS):
            step_noise = [torch.tensor(a.copy(), dtype=dtype) for a in split(noise[k].astype(np_dtype))]
            for p, ci, ni in zip(params, coeffs, step_noise):
                p.grad = ci * p.detach() + ni
            opt.step()
            traj.append(np.concatenate([p.detach().numpy().ravel() for p in params]))
    finally:
        torch.set_default_dtype(previous)
    return np.stack(traj)


def main() -> int:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    os.makedirs(OUT_DIR, exist_ok=True)
    seed = 20250301
    arrays, metas = {}, []
    for name, torch_kwargs, our_kwargs in CONFIGS:
        seed += 1
        init, c, noise = problem(seed)
        traj32 = run_torch(torch_kwargs, init, c, noise, torch.float32)
        traj64 = run_torch(torch_kwargs, init, c, noise, torch.float64)
        if not (np.all(np.isfinite(traj32)) and np.all(np.isfinite(traj64))):
            raise RuntimeError(f"{name}: non-finite trajectory")
        arrays.update({f'{name}.init': init, f'{name}.c': c, f'{name}.noise': noise,
                       f'{name}.traj32': traj32.astype(np.float32), f'{name}.traj64': traj64})
        metas.append(dict(name=name, seed=seed, torch=dict(cls='Adafactor', kwargs=torch_kwargs),
                          ours=dict(module='adafactor', cls='Adafactor', kwargs=our_kwargs)))
        print(f"{name:32s} max |theta_25 - theta_0| = {np.max(np.abs(traj64[-1] - traj64[0])):.3g}   "
              f"max |float32 - float64| = {np.max(np.abs(traj32 - traj64)):.2g}")
    meta = dict(generator='scripts/make_torch_golden_catalog_b.py', torch_version=torch.__version__,
                numpy_version=np.__version__, steps=STEPS,
                params=[dict(name=n, shape=list(s)) for n, s in PARAMS], configs=metas)
    path = os.path.join(OUT_DIR, 'catalog_b_adafactor.npz')
    np.savez_compressed(path, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    print(f"wrote {os.path.normpath(path)} ({os.path.getsize(path) / 1024:.0f} KiB)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
