"""Generate the PyTorch golden trajectories used by ``tests/test_reference_torch.py``.

Regenerate with::

    pip install torch==2.13.0      # CPU build is enough; the tests never import torch
    python scripts/make_torch_golden.py

It writes one compressed ``.npz`` per optimizer family into ``tests/golden/``
(``torch_sgd.npz``, ``torch_adam.npz``, ``torch_adamw.npz``,
``torch_adadelta.npz``, ``torch_rmsprop.npz``). The output is deterministic
(fixed numpy seeds, single-threaded torch, ``foreach=False``).

The problem
-----------
Four parameters of different rank, ``s: ()``, ``v: (5,)``, ``m: (3, 4)`` and
``t: (2, 3, 2)`` (30 numbers in all), start from seeded normal values. At step
``k`` (0-based) the gradient is a function of the *current* parameters::

    g_k = c * theta_k + noise_k

with ``c`` a fixed positive array per parameter and ``noise_k`` stored, so any
difference in an update feeds back into every later gradient. Each
configuration runs ``STEPS = 25`` steps of ``torch.optim`` in float32 and in
float64 from the same numbers (the float32 problem is the float64 one rounded
to float32, exactly as ``numpy.astype`` does).

Gradient processing that torch's optimizers do not have is applied by hand,
around ``opt.step()``, in braintools_optim's documented order:

1. ``g <- rescale_grad * g``
2. ``g <- clip(g, -grad_clip_value, grad_clip_value)``
3. ``g <- g * (grad_clip_norm / ||g||)`` when the global norm (all parameters
   together) exceeds ``grad_clip_norm``. This is optax's rule; torch's own
   ``clip_grad_norm_`` divides by ``||g|| + 1e-6`` and is deliberately not used.
4. torch's own ``weight_decay`` argument (coupled: ``g + wd * theta``; AdamW:
   decoupled), which torch applies inside ``step()`` after the clipping above.
5. after ``step()``: ``theta <- clip(theta, -param_clip_value, param_clip_value)``.

File layout
-----------
Every ``.npz`` holds ``meta`` (a JSON string: torch version, steps, parameter
names and shapes, and the list of configurations) and, per configuration
``<name>``, flat arrays over the 30 numbers (parameters concatenated in the
order of ``meta['params']``, each in C order):

* ``<name>.init``   (30,)      float64 initial parameters
* ``<name>.c``      (30,)      float64 gradient coefficients
* ``<name>.noise``  (25, 30)   float64 noise per step
* ``<name>.traj32`` (26, 30)   float32 trajectory (row 0: initial values)
* ``<name>.traj64`` (26, 30)   float64 trajectory

Each configuration in ``meta['configs']`` records ``torch`` (class and keyword
arguments given to torch.optim), ``processing`` (what was applied by hand),
``ours`` (the braintools_optim class and keyword arguments that must reproduce
it) and ``clip_events`` (how many times each clip actually changed something,
so a configuration that claims to test clipping does test it).
"""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import torch

STEPS = 25
PARAMS = (('s', ()), ('v', (5,)), ('m', (3, 4)), ('t', (2, 3, 2)))
SIZE = sum(int(np.prod(shape)) for _, shape in PARAMS)
OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, 'tests', 'golden')


def problem(seed: int):
    """Initial parameters, coefficients and noise (float64, flat) for one configuration."""
    rng = np.random.default_rng(seed)
    init = rng.normal(0.0, 1.2, SIZE)
    c = rng.uniform(0.5, 2.0, SIZE)
    noise = rng.normal(0.0, 0.5, (STEPS, SIZE))
    return init, c, noise


def split(flat: np.ndarray):
    """Flat vector -> list of arrays shaped like PARAMS (views)."""
    out, start = [], 0
    for _, shape in PARAMS:
        n = int(np.prod(shape))
        out.append(flat[start:start + n].reshape(shape))
        start += n
    return out


# Each entry: (name, torch class, torch kwargs, processing, our class, our kwargs).
# ``processing`` lists the by-hand steps; our kwargs are the torch ones renamed plus processing.
PROCESSING_KEYS = ('rescale_grad', 'grad_clip_value', 'grad_clip_norm', 'param_clip_value')

CONFIGS = {
    'sgd': [
        ('sgd_plain_wd_clipvalue', 'SGD', dict(lr=0.1, weight_decay=0.01), dict(grad_clip_value=0.8),
         'SGD', dict(lr=0.1, weight_decay=0.01)),
        ('sgd_momentum_wd_clipnorm', 'SGD', dict(lr=0.05, momentum=0.9, weight_decay=0.02),
         dict(grad_clip_norm=3.5), 'SGD', dict(lr=0.05, momentum=0.9, weight_decay=0.02)),
        ('sgd_nesterov_wd_rescale_paramclip', 'SGD',
         dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
         dict(rescale_grad=0.5, param_clip_value=0.3),
         'SGD', dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
        ('sgd_dampening_wd', 'SGD', dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.05), {},
         'SGD', dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.05)),
    ],
    'adam': [
        ('adam_defaults', 'Adam', dict(lr=1e-3), {}, 'Adam', dict(lr=1e-3)),
        ('adam_wd', 'Adam', dict(lr=0.05, weight_decay=0.01), {}, 'Adam', dict(lr=0.05, weight_decay=0.01)),
        ('adam_amsgrad_wd_clipnorm', 'Adam',
         dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.01, amsgrad=True), dict(grad_clip_norm=3.5),
         'Adam', dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.01, amsgrad=True)),
        ('adam_clipvalue_rescale_paramclip', 'Adam', dict(lr=0.03, eps=1e-6),
         dict(rescale_grad=2.0, grad_clip_value=0.5, param_clip_value=0.3),
         'Adam', dict(lr=0.03, eps=1e-6)),
    ],
    'adamw': [
        ('adamw_wd', 'AdamW', dict(lr=0.05, weight_decay=0.1), {}, 'AdamW', dict(lr=0.05, weight_decay=0.1)),
        ('adamw_amsgrad_clipnorm_paramclip', 'AdamW',
         dict(lr=0.05, betas=(0.85, 0.995), weight_decay=0.05, amsgrad=True),
         dict(grad_clip_norm=3.0, param_clip_value=0.3),
         'AdamW', dict(lr=0.05, betas=(0.85, 0.995), weight_decay=0.05, amsgrad=True)),
    ],
    'adadelta': [
        ('adadelta_defaults', 'Adadelta', dict(), {}, 'Adadelta', dict()),
        ('adadelta_rho095_wd_rescale_clipvalue', 'Adadelta',
         dict(lr=1.0, rho=0.95, eps=1e-6, weight_decay=0.01),
         dict(rescale_grad=0.125, grad_clip_value=0.3),
         'Adadelta', dict(lr=1.0, rho=0.95, eps=1e-6, weight_decay=0.01)),
        ('adadelta_bigeps_wd_clipnorm_paramclip', 'Adadelta',
         dict(lr=0.5, rho=0.9, eps=1e-2, weight_decay=0.02),
         dict(grad_clip_norm=3.0, param_clip_value=0.3),
         'Adadelta', dict(lr=0.5, rho=0.9, eps=1e-2, weight_decay=0.02)),
    ],
    'rmsprop': [
        ('rmsprop_defaults_wd', 'RMSprop', dict(lr=0.01, weight_decay=0.01), {},
         'RMSprop', dict(lr=0.01, weight_decay=0.01)),
        ('rmsprop_centered_wd_clipvalue', 'RMSprop',
         dict(lr=0.01, alpha=0.9, centered=True, weight_decay=0.01), dict(grad_clip_value=0.7),
         'RMSprop', dict(lr=0.01, alpha=0.9, centered=True, weight_decay=0.01)),
        ('rmsprop_momentum_wd_clipnorm', 'RMSprop', dict(lr=0.005, momentum=0.9, weight_decay=0.01),
         dict(grad_clip_norm=3.5), 'RMSprop', dict(lr=0.005, momentum=0.9, weight_decay=0.01)),
        ('rmsprop_centered_momentum_wd_rescale_paramclip', 'RMSprop',
         dict(lr=0.005, alpha=0.95, eps=1e-6, momentum=0.5, centered=True, weight_decay=0.05),
         dict(rescale_grad=0.5, param_clip_value=0.3),
         'RMSprop', dict(lr=0.005, alpha=0.95, eps=1e-6, momentum=0.5, centered=True, weight_decay=0.05)),
    ],
}


def run_torch(cls_name, torch_kwargs, processing, init, c, noise, dtype):
    """One torch.optim run; returns the (STEPS + 1, SIZE) trajectory and the clip event counts."""
    params = [torch.tensor(a.copy(), dtype=dtype) for a in split(init.astype(dtype_np(dtype)))]
    coeffs = [torch.tensor(a.copy(), dtype=dtype) for a in split(c.astype(dtype_np(dtype)))]
    for p in params:
        p.requires_grad_(False)
    opt = getattr(torch.optim, cls_name)(params, foreach=False, **torch_kwargs)
    events = {k: 0 for k in ('grad_clip_value', 'grad_clip_norm', 'param_clip_value')}
    traj = [np.concatenate([p.numpy().ravel() for p in params])]
    for k in range(STEPS):
        step_noise = [torch.tensor(a.copy(), dtype=dtype) for a in split(noise[k].astype(dtype_np(dtype)))]
        grads = [ci * p + ni for ci, p, ni in zip(coeffs, params, step_noise)]
        if 'rescale_grad' in processing:
            grads = [g * processing['rescale_grad'] for g in grads]
        if 'grad_clip_value' in processing:
            v = processing['grad_clip_value']
            events['grad_clip_value'] += int(any(bool((g.abs() > v).any()) for g in grads))
            grads = [g.clamp(-v, v) for g in grads]
        if 'grad_clip_norm' in processing:
            max_norm = processing['grad_clip_norm']
            total = torch.sum(torch.square(grads[0]))
            for g in grads[1:]:
                total = total + torch.sum(torch.square(g))
            norm = torch.sqrt(total)
            if bool(norm > max_norm):
                events['grad_clip_norm'] += 1
                scale = max_norm / norm          # a 0-d tensor in the parameters' dtype
                grads = [g * scale for g in grads]
        for p, g in zip(params, grads):
            p.grad = g
        opt.step()
        if 'param_clip_value' in processing:
            v = processing['param_clip_value']
            events['param_clip_value'] += int(any(bool((p.abs() > v).any()) for p in params))
            with torch.no_grad():
                for p in params:
                    p.clamp_(-v, v)
        traj.append(np.concatenate([p.numpy().ravel() for p in params]))
    return np.stack(traj), {k: n for k, n in events.items() if k in processing}


def dtype_np(dtype):
    return {torch.float32: np.float32, torch.float64: np.float64}[dtype]


def write_golden(filename: str, generator: str, configs: list, arrays: dict) -> int:
    """Write one golden file (arrays + a JSON ``meta`` record) to OUT_DIR; returns its size in bytes."""
    meta = dict(generator=generator, torch_version=torch.__version__, numpy_version=np.__version__,
                steps=STEPS, params=[dict(name=n, shape=list(s)) for n, s in PARAMS], configs=configs)
    path = os.path.join(OUT_DIR, filename)
    np.savez_compressed(path, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    return os.path.getsize(path)


def main() -> int:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    os.makedirs(OUT_DIR, exist_ok=True)
    seed = 20240601
    total_bytes = 0
    for family, configs in CONFIGS.items():
        arrays, metas = {}, []
        for name, cls_name, torch_kwargs, processing, our_cls, our_kwargs in configs:
            unknown = set(processing) - set(PROCESSING_KEYS)
            if unknown:
                raise ValueError(f"{name}: unknown processing {sorted(unknown)}")
            seed += 1
            init, c, noise = problem(seed)
            traj32, events32 = run_torch(cls_name, torch_kwargs, processing, init, c, noise, torch.float32)
            traj64, events64 = run_torch(cls_name, torch_kwargs, processing, init, c, noise, torch.float64)
            for kind, count in events64.items():
                if count == 0:
                    raise RuntimeError(f"{name}: {kind} never triggered; pick a tighter value")
            if not (np.all(np.isfinite(traj32)) and np.all(np.isfinite(traj64))):
                raise RuntimeError(f"{name}: non-finite trajectory")
            arrays[f'{name}.init'] = init
            arrays[f'{name}.c'] = c
            arrays[f'{name}.noise'] = noise
            arrays[f'{name}.traj32'] = traj32.astype(np.float32)
            arrays[f'{name}.traj64'] = traj64.astype(np.float64)
            metas.append(dict(
                name=name, seed=seed,
                torch=dict(cls=cls_name, kwargs=torch_kwargs),
                processing=processing,
                ours=dict(cls=our_cls, kwargs={**our_kwargs, **processing}),
                clip_events=dict(float32=events32, float64=events64),
            ))
            moved = np.max(np.abs(traj64[-1] - traj64[0]))
            print(f"{family:9s} {name:50s} max |theta_25 - theta_0| = {moved:.3g}  clips: {events64}")
        total_bytes += write_golden(f'torch_{family}.npz', 'scripts/make_torch_golden.py', metas, arrays)
    print(f"wrote {len(CONFIGS)} files to {os.path.normpath(OUT_DIR)} ({total_bytes / 1024:.0f} KiB)")
    return 0


if __name__ == '__main__':
    sys.exit(main())
