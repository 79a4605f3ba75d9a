"""Generate every torch.optim golden trajectory of ``tests/golden/`` (the tests never import torch).

Regenerate, or check that the stored files are exactly what this script writes::

    pip install torch==2.13.0      # CPU build is enough
    python scripts/make_torch_golden.py            # writes tests/golden/torch_<family>.npz
    python scripts/make_torch_golden.py --check    # writes to a temporary folder, compares byte for byte

The output is deterministic (fixed numpy seeds, single-threaded torch,
``foreach=False``, numpy's fixed zip timestamps), so ``--check`` must report
every file identical. (``torch_schedulers.npz`` is written by
``scripts/make_torch_scheduler_golden.py``.)

The feedback problem
--------------------
Four parameters of different rank, ``s: ()``, ``v: (5,)``, ``m: (3, 4)`` and
``t: (2, 3, 2)`` (30 numbers in all), start from seeded normal values. At step
``k`` (0-based) the gradient is a function of the *current* parameters::

    g_k = c * theta_k + noise_k

with ``c`` a fixed positive array per parameter and ``noise_k`` stored, so any
difference in an update feeds back into every later gradient. Each
configuration runs ``STEPS = 25`` steps of ``torch.optim.<cls>(foreach=False)``
in float32 and in float64 from the same numbers (the float32 problem is the
float64 one rounded, exactly as ``numpy.astype`` does).

What torch's optimizers lack is applied by hand around ``opt.step()``, in
braintools_optim's documented order (``processing`` in each configuration):

1. ``rescale_grad``: ``g <- rescale_grad * g``
2. ``grad_clip_value``: ``g <- clip(g, -v, v)``
3. ``grad_clip_norm``: ``g <- g * (max_norm / ||g||)`` when the global norm (all
   parameters together) exceeds ``max_norm``. This is optax's rule; torch's own
   ``clip_grad_norm_`` divides by ``||g|| + 1e-6`` and is deliberately not used.
4. ``l2`` (for Rprop, which has no ``weight_decay``): ``g <- g + l2 * theta``,
   what our coupled ``weight_decay`` does. torch's own ``weight_decay`` (coupled,
   or decoupled for AdamW / ``NAdam(decoupled_weight_decay=True)``) acts inside
   ``step()``, after the steps above.
5. ``scheduler``: a ``torch.optim.lr_scheduler`` stepped after every ``step()``
   (``CyclicLR`` with ``cycle_momentum=True`` also cycles ``betas[0]``); our side
   attaches the same braintools_optim scheduler as ``lr`` and steps it the same way.
6. ``param_clip_value``: after ``step()``, ``theta <- clip(theta, -v, v)``.

The generator refuses a configuration whose clip never triggers, and an Rprop
configuration with explicit ``step_sizes`` whose bounds are never reached.

The golden files
----------------
Two sets of ``torch_<family>.npz`` files, which differ only in how they were
first written (kept so that the files stay byte-identical; see ``GoldenSet``):

* ``CLIPPED``: SGD, Adam, AdamW, Adadelta, RMSprop with every processing
  option; torch's default dtype stays float32 in both runs; ``ours`` records the
  class and its arguments (processing included) and ``clip_events`` how often
  each clip changed something.
* ``ALGORITHMS``: Adagrad, Adamax, NAdam/NAdamW, RAdam, Rprop and Adafactor,
  run with torch's default dtype set to the run's dtype (so scalar optimizer
  state such as NAdam's ``mu_product`` has it too); ``ours`` records the
  optimizer's module and class.

Every such file holds ``meta`` (a JSON string: generator, torch and numpy
versions, steps, parameter names and shapes, configurations) and, per
configuration ``<name>``, flat float64 arrays over the 30 numbers (parameters
concatenated in the order of ``meta['params']``, each in C order):
``<name>.init`` (30,), ``<name>.c`` (30,), ``<name>.noise`` (25, 30), and the
trajectories ``<name>.traj32`` (float32) / ``<name>.traj64`` (float64), (26, 30)
with row 0 the initial values. ``meta['generator']`` names the script that first
wrote the file (three scripts were merged into this one).

``torch_cycled_momentum.npz`` (``write_cycled_momentum``) is another problem: one
(3, 4) parameter trained 30 steps in float64 by SGD / Adam / RMSprop under a
momentum-cycling OneCycleLR or CyclicLR.
"""

from __future__ import annotations

import argparse
import filecmp
import json
import os
import sys
import tempfile
from typing import Any, Callable, Dict, List, NamedTuple

import numpy as np
import torch

STEPS = 25
PARAMS = (('s', ()), ('v', (5,)), ('m', (3, 4)), ('t', (2, 3, 2)))
SIZE = sum(int(np.prod(shape)) for _, shape in PARAMS)
GOLDEN_DIR = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, 'tests',
                                           'golden'))
PROCESSING_KEYS = ('rescale_grad', 'grad_clip_value', 'grad_clip_norm', 'l2', 'scheduler', 'param_clip_value')
CLIP_KEYS = ('grad_clip_value', 'grad_clip_norm', 'param_clip_value')


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


class Config(NamedTuple):
    """One configuration: torch's optimizer and arguments, processing by hand, and ours."""

    name: str
    torch_cls: str
    torch_kwargs: Dict[str, Any]
    processing: Dict[str, Any]
    ours_cls: str
    ours_kwargs: Dict[str, Any]
    ours_module: str = ''          # ALGORITHMS files record the optimizer's module


# torch.optim.lr_scheduler.CyclicLR, stepped after every optimizer step; it also
# cycles beta1 (cycle_momentum=True), which reaches our rules as a traced value.
CYCLIC = ('CyclicLR', dict(base_lr=0.01, max_lr=0.08, step_size_up=4, step_size_down=6,
                           base_momentum=0.7, max_momentum=0.95))

CLIPPED_CONFIGS = {
    'sgd': [
        Config('sgd_plain_wd_clipvalue', 'SGD', dict(lr=0.1, weight_decay=0.01), dict(grad_clip_value=0.8),
               'SGD', dict(lr=0.1, weight_decay=0.01)),
        Config('sgd_momentum_wd_clipnorm', 'SGD', dict(lr=0.05, momentum=0.9, weight_decay=0.02),
               dict(grad_clip_norm=3.5), 'SGD', dict(lr=0.05, momentum=0.9, weight_decay=0.02)),
        Config('sgd_nesterov_wd_rescale_paramclip', 'SGD',
               dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01),
               dict(rescale_grad=0.5, param_clip_value=0.3),
               'SGD', dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.01)),
        Config('sgd_dampening_wd', 'SGD', dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.05), {},
               'SGD', dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.05)),
    ],
    'adam': [
        Config('adam_defaults', 'Adam', dict(lr=1e-3), {}, 'Adam', dict(lr=1e-3)),
        Config('adam_wd', 'Adam', dict(lr=0.05, weight_decay=0.01), {}, 'Adam', dict(lr=0.05, weight_decay=0.01)),
        Config('adam_amsgrad_wd_clipnorm', 'Adam',
               dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.01, amsgrad=True), dict(grad_clip_norm=3.5),
               'Adam', dict(lr=0.05, betas=(0.8, 0.99), weight_decay=0.01, amsgrad=True)),
        Config('adam_clipvalue_rescale_paramclip', 'Adam', dict(lr=0.03, eps=1e-6),
               dict(rescale_grad=2.0, grad_clip_value=0.5, param_clip_value=0.3),
               'Adam', dict(lr=0.03, eps=1e-6)),
    ],
    'adamw': [
        Config('adamw_wd', 'AdamW', dict(lr=0.05, weight_decay=0.1), {}, 'AdamW', dict(lr=0.05, weight_decay=0.1)),
        Config('adamw_amsgrad_clipnorm_paramclip', 'AdamW',
               dict(lr=0.05, betas=(0.85, 0.995), weight_decay=0.05, amsgrad=True),
               dict(grad_clip_norm=3.0, param_clip_value=0.3),
               'AdamW', dict(lr=0.05, betas=(0.85, 0.995), weight_decay=0.05, amsgrad=True)),
    ],
    'adadelta': [
        Config('adadelta_defaults', 'Adadelta', dict(), {}, 'Adadelta', dict()),
        Config('adadelta_rho095_wd_rescale_clipvalue', 'Adadelta',
               dict(lr=1.0, rho=0.95, eps=1e-6, weight_decay=0.01),
               dict(rescale_grad=0.125, grad_clip_value=0.3),
               'Adadelta', dict(lr=1.0, rho=0.95, eps=1e-6, weight_decay=0.01)),
        Config('adadelta_bigeps_wd_clipnorm_paramclip', 'Adadelta',
               dict(lr=0.5, rho=0.9, eps=1e-2, weight_decay=0.02),
               dict(grad_clip_norm=3.0, param_clip_value=0.3),
               'Adadelta', dict(lr=0.5, rho=0.9, eps=1e-2, weight_decay=0.02)),
    ],
    'rmsprop': [
        Config('rmsprop_defaults_wd', 'RMSprop', dict(lr=0.01, weight_decay=0.01), {},
               'RMSprop', dict(lr=0.01, weight_decay=0.01)),
        Config('rmsprop_centered_wd_clipvalue', 'RMSprop',
               dict(lr=0.01, alpha=0.9, centered=True, weight_decay=0.01), dict(grad_clip_value=0.7),
               'RMSprop', dict(lr=0.01, alpha=0.9, centered=True, weight_decay=0.01)),
        Config('rmsprop_momentum_wd_clipnorm', 'RMSprop', dict(lr=0.005, momentum=0.9, weight_decay=0.01),
               dict(grad_clip_norm=3.5), 'RMSprop', dict(lr=0.005, momentum=0.9, weight_decay=0.01)),
        Config('rmsprop_centered_momentum_wd_rescale_paramclip', 'RMSprop',
               dict(lr=0.005, alpha=0.95, eps=1e-6, momentum=0.5, centered=True, weight_decay=0.05),
               dict(rescale_grad=0.5, param_clip_value=0.3),
               'RMSprop', dict(lr=0.005, alpha=0.95, eps=1e-6, momentum=0.5, centered=True, weight_decay=0.05)),
    ],
}

ALGORITHM_CONFIGS = {
    'adagrad': [
        Config('adagrad_plain', 'Adagrad', dict(lr=0.1), {}, 'Adagrad', dict(lr=0.1), 'adagrad'),
        Config('adagrad_decay_init_wd', 'Adagrad',
               dict(lr=0.3, lr_decay=0.05, weight_decay=0.02, initial_accumulator_value=0.1, eps=1e-6), {},
               'Adagrad', dict(lr=0.3, lr_decay=0.05, weight_decay=0.02, initial_accumulator_value=0.1, eps=1e-6),
               'adagrad'),
    ],
    'adamax': [
        Config('adamax_plain', 'Adamax', dict(lr=0.05), {}, 'Adamax', dict(lr=0.05), 'adamax'),
        Config('adamax_betas_eps_wd', 'Adamax', dict(lr=0.05, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.02), {},
               'Adamax', dict(lr=0.05, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.02), 'adamax'),
    ],
    'nadam': [
        Config('nadam_plain', 'NAdam', dict(lr=0.05), {}, 'Nadam', dict(lr=0.05), 'nadam'),
        Config('nadam_betas_psi_wd', 'NAdam',
               dict(lr=0.05, betas=(0.85, 0.995), eps=1e-6, weight_decay=0.02, momentum_decay=0.01), {},
               'Nadam', dict(lr=0.05, betas=(0.85, 0.995), eps=1e-6, weight_decay=0.02, momentum_decay=0.01),
               'nadam'),
        Config('nadamw_wd', 'NAdam', dict(lr=0.05, weight_decay=0.1, decoupled_weight_decay=True), {},
               'NAdamW', dict(lr=0.05, weight_decay=0.1), 'nadam'),
        Config('nadamw_betas_psi_wd', 'NAdam',
               dict(lr=0.03, betas=(0.9, 0.99), weight_decay=0.3, momentum_decay=0.002, decoupled_weight_decay=True),
               {}, 'NAdamW', dict(lr=0.03, betas=(0.9, 0.99), weight_decay=0.3, momentum_decay=0.002), 'nadam'),
        Config('nadam_cyclic_lr_momentum', 'NAdam', dict(lr=0.05, weight_decay=0.01),
               dict(scheduler=CYCLIC), 'Nadam', dict(weight_decay=0.01), 'nadam'),
    ],
    'radam': [
        Config('radam_plain', 'RAdam', dict(lr=0.05), {}, 'RAdam', dict(lr=0.05), 'radam'),
        Config('radam_betas_eps_wd', 'RAdam', dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.02), {},
               'RAdam', dict(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.02), 'radam'),
        Config('radam_b2_09', 'RAdam', dict(lr=0.02, betas=(0.9, 0.9)), {},
               'RAdam', dict(lr=0.02, betas=(0.9, 0.9)), 'radam'),
        Config('radam_cyclic_lr_momentum', 'RAdam', dict(lr=0.05), dict(scheduler=CYCLIC), 'RAdam', {}, 'radam'),
    ],
    'rprop': [
        Config('rprop_plain', 'Rprop', dict(lr=0.05), {}, 'Rprop', dict(lr=0.05), 'rprop'),
        Config('rprop_etas_bounds_l2', 'Rprop', dict(lr=0.02, etas=(0.3, 1.5), step_sizes=(2e-3, 0.1)),
               dict(l2=0.05), 'Rprop', dict(lr=0.02, etas=(0.3, 1.5), step_sizes=(2e-3, 0.1), weight_decay=0.05),
               'rprop'),
    ],
}

# torch's eps = (eps1, eps2): eps1 floors the variance estimate at eps1**2 (None:
# finfo.eps); ours adds eps1 to g**2. Both are no-ops at this problem's gradient
# scale, so the default eps1 is kept on each side. torch's beta2_decay =
# -decay_rate, d = clip_threshold. (Of torch's other algorithms, Muon
# orthogonalises in bfloat16, so no tight comparison is possible, and LBFGS runs
# several iterations per step(closure); both are compared with optax instead.)
ADAFACTOR_CONFIGS = {
    'adafactor': [
        Config('adafactor_default', 'Adafactor', dict(), {}, 'Adafactor', dict(), 'adafactor'),
        Config('adafactor_lr_decay_d_eps2_wd', 'Adafactor',
               dict(lr=0.5, beta2_decay=-0.6, d=1.5, eps=(None, 1.0), weight_decay=0.05), {},
               'Adafactor', dict(lr=0.5, decay_rate=0.6, clip_threshold=1.5, eps=(1e-30, 1.0), weight_decay=0.05),
               'adafactor'),
        Config('adafactor_lr_wd_d1', 'Adafactor', dict(lr=0.1, weight_decay=0.2), {},
               'Adafactor', dict(lr=0.1, weight_decay=0.2), 'adafactor'),
    ],
}


def run_torch(config: Config, init, c, noise, dtype, default_dtype: bool):
    """One torch.optim run: the (STEPS + 1, SIZE) trajectory and how often each clip acted.

    ``default_dtype``: set torch's default dtype to the run's dtype (else it
    stays float32, so scalar optimizer state is float32 in the float64 run too).
    """
    processing = config.processing
    unknown = set(processing) - set(PROCESSING_KEYS)
    if unknown:
        raise ValueError(f"{config.name}: unknown processing {sorted(unknown)}")
    np_dtype = {torch.float32: np.float32, torch.float64: np.float64}[dtype]
    previous_default = torch.get_default_dtype()
    if default_dtype:
        torch.set_default_dtype(dtype)
    try:
        params = [torch.tensor(a.copy(), dtype=dtype) for a in split(init.astype(np_dtype))]
        coeffs = [torch.tensor(a.copy(), dtype=dtype) for a in split(c.astype(np_dtype))]
        opt = getattr(torch.optim, config.torch_cls)(params, foreach=False, **config.torch_kwargs)
        scheduler = None
        if 'scheduler' in processing:
            sched_name, sched_kwargs = processing['scheduler']
            scheduler = getattr(torch.optim.lr_scheduler, sched_name)(opt, **sched_kwargs)
        events = {k: 0 for k in CLIP_KEYS}
        bound_hits = [0, 0]
        traj = [np.concatenate([p.detach().numpy().ravel() for p in params])]
        for k in range(STEPS):
            step_noise = [torch.tensor(a.copy(), dtype=dtype) for a in split(noise[k].astype(np_dtype))]
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
            if 'l2' in processing:
                grads = [g + processing['l2'] * p for g, p in zip(grads, params)]
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            if scheduler is not None:
                scheduler.step()
            if 'param_clip_value' in processing:
                v = processing['param_clip_value']
                events['param_clip_value'] += int(any(bool((p.abs() > v).any()) for p in params))
                with torch.no_grad():
                    for p in params:
                        p.clamp_(-v, v)
            if config.torch_cls == 'Rprop':
                low, high = config.torch_kwargs.get('step_sizes', (1e-6, 50.0))
                sizes = torch.cat([opt.state[p]['step_size'].ravel() for p in params])
                bound_hits[0] += int((sizes == low).sum())
                bound_hits[1] += int((sizes == high).sum())
            traj.append(np.concatenate([p.detach().numpy().ravel() for p in params]))
        if config.torch_cls == 'NAdam' and default_dtype:   # the scalar state really had the run's dtype
            assert all(opt.state[p]['mu_product'].dtype == dtype for p in params)
        if config.torch_cls == 'Rprop' and 'step_sizes' in config.torch_kwargs and not all(bound_hits):
            raise RuntimeError(f"{config.name}: a step-size bound was never reached {bound_hits}")
    finally:
        torch.set_default_dtype(previous_default)
    return np.stack(traj), {k: n for k, n in events.items() if k in processing}


class GoldenSet(NamedTuple):
    """Golden files written the same way (see the module docstring).

    ``first_seed`` is the problem seed of the first configuration (each later
    one adds 1); ``generator`` is recorded in ``meta``; ``describe(config,
    seed, events)`` gives the configuration's ``meta['configs']`` entry.
    """

    families: Dict[str, List[Config]]
    first_seed: int
    generator: str
    default_dtype: bool
    describe: Callable[[Config, int, Dict[str, Dict[str, int]]], Dict[str, Any]]


def _describe_clipped(config, seed, events):
    return dict(name=config.name, seed=seed, torch=dict(cls=config.torch_cls, kwargs=config.torch_kwargs),
                processing=config.processing,
                ours=dict(cls=config.ours_cls, kwargs={**config.ours_kwargs, **config.processing}),
                clip_events=events)


def _describe_algorithm(config, seed, events):
    return dict(name=config.name, seed=seed, torch=dict(cls=config.torch_cls, kwargs=config.torch_kwargs),
                processing=config.processing,
                ours=dict(module=config.ours_module, cls=config.ours_cls, kwargs=config.ours_kwargs))


def _describe_adafactor(config, seed, events):
    return dict(name=config.name, seed=seed, torch=dict(cls=config.torch_cls, kwargs=config.torch_kwargs),
                ours=dict(module=config.ours_module, cls=config.ours_cls, kwargs=config.ours_kwargs))


GOLDEN_SETS = [
    GoldenSet(CLIPPED_CONFIGS, 20240601 + 1, 'scripts/make_torch_golden.py', False, _describe_clipped),
    GoldenSet(ALGORITHM_CONFIGS, 20250101 + 1, 'scripts/make_torch_golden_catalog_a.py', True, _describe_algorithm),
    GoldenSet(ADAFACTOR_CONFIGS, 20250301 + 1, 'scripts/make_torch_golden_catalog_b.py', True, _describe_adafactor),
]


def write_golden(out_dir: str, filename: str, generator: str, configs: list, arrays: dict) -> int:
    """Write one golden file (arrays + a JSON ``meta`` record); returns its size in bytes."""
    meta = dict(generator=generator, torch_version=torch.__version__, numpy_version=np.__version__,
                steps=STEPS, params=[dict(name=n, shape=list(s)) for n, s in PARAMS], configs=configs)
    path = os.path.join(out_dir, filename)
    np.savez_compressed(path, meta=np.array(json.dumps(meta, sort_keys=True)), **arrays)
    return os.path.getsize(path)


def write_set(golden: GoldenSet, out_dir: str) -> List[str]:
    seed = golden.first_seed
    written = []
    for family, configs in golden.families.items():
        arrays, metas = {}, []
        for config in configs:
            init, c, noise = problem(seed)
            traj32, events32 = run_torch(config, init, c, noise, torch.float32, golden.default_dtype)
            traj64, events64 = run_torch(config, init, c, noise, torch.float64, golden.default_dtype)
            for kind, count in events64.items():
                if count == 0:
                    raise RuntimeError(f"{config.name}: {kind} never triggered; pick a tighter value")
            if not (np.all(np.isfinite(traj32)) and np.all(np.isfinite(traj64))):
                raise RuntimeError(f"{config.name}: non-finite trajectory")
            arrays[f'{config.name}.init'] = init
            arrays[f'{config.name}.c'] = c
            arrays[f'{config.name}.noise'] = noise
            arrays[f'{config.name}.traj32'] = traj32.astype(np.float32)
            arrays[f'{config.name}.traj64'] = traj64.astype(np.float64)
            metas.append(golden.describe(config, seed, dict(float32=events32, float64=events64)))
            moved = np.max(np.abs(traj64[-1] - traj64[0]))
            gap = np.max(np.abs(traj32.astype(np.float64) - traj64))
            print(f"{family:9s} {config.name:48s} max |theta_25 - theta_0| = {moved:.3g}  "
                  f"max |float32 - float64| = {gap:.2g}  clips: {events64}")
            seed += 1
        filename = f'torch_{family}.npz'
        write_golden(out_dir, filename, golden.generator, metas, arrays)
        written.append(filename)
    return written


# ----------------------------------------------------------------------------- cycled momentum

CYCLED_STEPS = 30
CYCLED_CASES = {
    # name: (optimizer, optimizer kwargs, scheduler, scheduler kwargs)
    'sgd_momentum_onecycle': ('SGD', {'lr': 0.1, 'momentum': 0.9}, 'OneCycleLR',
                              {'max_lr': 0.1, 'total_steps': CYCLED_STEPS}),
    'sgd_nesterov_onecycle_linear': ('SGD', {'lr': 0.1, 'momentum': 0.9, 'nesterov': True}, 'OneCycleLR',
                                     {'max_lr': 0.05, 'total_steps': CYCLED_STEPS, 'anneal_strategy': 'linear'}),
    'sgd_plain_onecycle': ('SGD', {'lr': 0.1}, 'OneCycleLR', {'max_lr': 0.1, 'total_steps': CYCLED_STEPS}),
    'sgd_cyclic_triangular2': ('SGD', {'lr': 0.1, 'momentum': 0.9}, 'CyclicLR',
                               {'base_lr': 0.01, 'max_lr': 0.1, 'step_size_up': 4, 'mode': 'triangular2'}),
    'adam_onecycle': ('Adam', {'lr': 0.01}, 'OneCycleLR', {'max_lr': 0.05, 'total_steps': CYCLED_STEPS}),
    'rmsprop_momentum_onecycle': ('RMSprop', {'lr': 0.01, 'momentum': 0.5}, 'OneCycleLR',
                                  {'max_lr': 0.01, 'total_steps': CYCLED_STEPS}),
}


def write_cycled_momentum(out_dir: str) -> List[str]:
    """``torch_cycled_momentum.npz``: torch's OneCycleLR / CyclicLR (``cycle_momentum=True``) rewrite
    SGD/RMSprop ``momentum`` or Adam ``betas[0]`` every step; the trajectories (float64, one (3, 4)
    parameter, gradient ``curvature * theta + noise_t``) check that our optimizers feed the cycled value
    into the update exactly where torch does. ``meta`` is a JSON byte string of the cases.
    """
    rng = np.random.default_rng(7)
    init = rng.normal(size=(3, 4))
    curvature = rng.uniform(0.5, 3.0, size=(3, 4))
    noise = rng.normal(scale=0.1, size=(CYCLED_STEPS, 3, 4))
    arrays = {'init': init, 'curvature': curvature, 'noise': noise}
    meta = {}
    for name, (opt_name, opt_kwargs, sched_name, sched_kwargs) in CYCLED_CASES.items():
        theta = torch.tensor(init, dtype=torch.float64, requires_grad=True)
        opt = getattr(torch.optim, opt_name)([theta], **opt_kwargs)
        sched = getattr(torch.optim.lr_scheduler, sched_name)(opt, **sched_kwargs)
        trajectory = []
        for t in range(CYCLED_STEPS):
            theta.grad = torch.tensor(curvature) * theta.detach() + torch.tensor(noise[t])
            opt.step()
            sched.step()
            trajectory.append(theta.detach().numpy().copy())
        arrays[name] = np.stack(trajectory)
        meta[name] = {'optimizer': opt_name, 'optimizer_kwargs': opt_kwargs,
                      'scheduler': sched_name, 'scheduler_kwargs': sched_kwargs}
        print(f"cycled    {name:48s} max |theta_30 - theta_0| = {np.max(np.abs(arrays[name][-1] - init)):.3g}")
    arrays['meta'] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(os.path.join(out_dir, 'torch_cycled_momentum.npz'), **arrays)
    return ['torch_cycled_momentum.npz']


def write_all(out_dir: str) -> List[str]:
    torch.manual_seed(0)
    torch.set_num_threads(1)
    os.makedirs(out_dir, exist_ok=True)
    written = []
    for golden in GOLDEN_SETS:
        written += write_set(golden, out_dir)
    written += write_cycled_momentum(out_dir)
    return written


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=GOLDEN_DIR, help='folder to write to (default: tests/golden)')
    parser.add_argument('--check', action='store_true',
                        help='write to a temporary folder and compare byte for byte with tests/golden')
    args = parser.parse_args(argv)
    if not args.check:
        written = write_all(args.out)
        print(f"wrote {len(written)} files to {os.path.normpath(args.out)}")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        written = write_all(tmp)
        differ = [name for name in written if not os.path.exists(os.path.join(GOLDEN_DIR, name)) or
                  not filecmp.cmp(os.path.join(tmp, name), os.path.join(GOLDEN_DIR, name), shallow=False)]
    for name in written:
        print(f"{'DIFFERS' if name in differ else 'identical'}  tests/golden/{name}")
    others = sorted(name for name in os.listdir(GOLDEN_DIR) if name.startswith('torch_') and
                    name not in written and name != 'torch_schedulers.npz')
    for name in others:
        print(f"not written by this script  tests/golden/{name}")
    return 1 if differ or others else 0


if __name__ == '__main__':
    sys.exit(main())
