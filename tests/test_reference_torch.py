"""braintools_optim against stored torch.optim trajectories (no torch needed to run).

``tests/golden/torch_<family>.npz`` hold 25-step trajectories of ``torch.optim``
(torch 2.13.0, CPU, ``foreach=False``) on the feedback problem of
:mod:`reference_problem`, in float32 and float64, written by
``scripts/make_torch_golden.py`` (``--check`` regenerates them and compares byte
for byte; it needs torch). Each test replays one configuration with our
optimizer, recomputing every gradient in JAX from *our* current parameters (one
eager ``update`` per step, i.e. the optimizer's compiled step), and compares the
whole 26 x 30 trajectory. Test ids are ``<configuration>-<dtype>``.

Which reference matches which configuration (the generator's tables):

* ``torch.optim.SGD(lr, momentum, dampening, weight_decay, nesterov)`` ->
  ``SGD(...)`` with the same arguments: plain + value clip, momentum + norm
  clip, Nesterov + rescale + parameter clip, dampening; all with weight decay.
  ``Momentum`` replays the momentum configuration, ``MomentumNesterov`` the
  Nesterov one (``REPLAYS``): the same numbers through their own classes.
* ``torch.optim.Adam(lr, betas, eps, weight_decay, amsgrad)`` -> ``Adam(...)``:
  defaults, weight decay, AMSGrad + weight decay + norm clip, rescale + value
  clip + parameter clip. (AMSGrad is checked here only: we follow torch.)
* ``torch.optim.AdamW(...)`` -> ``AdamW(...)`` (decoupled decay): weight
  decay; AMSGrad + norm clip + parameter clip.
* ``torch.optim.Adadelta(lr, rho, eps, weight_decay)`` -> ``Adadelta(...)``:
  torch defaults; rho 0.95 (neon-like) + weight decay + rescale + value clip;
  large eps + weight decay + norm clip + parameter clip.
* ``torch.optim.RMSprop(lr, alpha, eps, weight_decay, momentum, centered)`` ->
  ``RMSprop(...)`` (default ``eps_placement='outside'``, torch's
  ``sqrt(v) + eps``): default, centered + value clip, momentum + norm clip,
  centered + momentum + rescale + parameter clip; all with weight decay.
* ``Adagrad(lr, lr_decay, weight_decay, initial_accumulator_value, eps)`` ->
  ``Adagrad`` (same arguments): plain; lr_decay + init + decay.
* ``Adamax(lr, betas, eps, weight_decay)`` -> ``Adamax``: plain; betas + eps + decay.
* ``NAdam(lr, betas, eps, weight_decay, momentum_decay)`` -> ``Nadam``: plain;
  betas + psi + decay; ``CyclicLR`` + cycled beta1 + decay. ``NAdam(...,
  decoupled_weight_decay=True)`` -> ``NAdamW``: decay; betas + psi + decay.
* ``RAdam(lr, betas, eps, weight_decay)`` -> ``RAdam``: plain (rectified from
  step 6); betas + eps + decay; beta2 0.9; ``CyclicLR`` + cycled beta1.
* ``Rprop(lr, etas, step_sizes)`` -> ``Rprop``: plain; etas + both step-size
  bounds hit + L2 (by hand on torch's side, ``weight_decay`` on ours).
* ``Adafactor`` -> ``Adafactor``: defaults (relative step capped by lr);
  ``lr 0.5, beta2_decay -0.6, d 1.5, eps (None, 1.0), weight_decay 0.05`` ->
  ``lr 0.5, decay_rate 0.6, clip_threshold 1.5, eps (1e-30, 1.0), weight_decay
  0.05`` (reaches the ``1/sqrt(t)`` branch of the relative step and the ``eps2``
  floor of the parameter RMS); ``lr 0.1, wd 0.2``. The matrix and the 3-D tensor
  are factored over their last two axes. The regularisers differ in form
  (torch floors the variance at ``eps1**2``, we add ``eps1`` to ``g**2``) but
  neither acts at this gradient scale.

Clipping and rescaling, which torch's optimizers lack, were applied by hand in
the generator in our documented order (rescale, clip by value, clip by global
norm with ``min(1, c / ||g||)``, torch's coupled/decoupled decay inside
``step()``, then parameter clipping); they map to our ``rescale_grad``,
``grad_clip_value``, ``grad_clip_norm`` and ``param_clip_value``. Every
clipped family has a configuration with clipping switched on, and the
generator refuses to write a configuration whose clip never triggers. The
``CyclicLR`` configurations attach ``torch.optim.lr_scheduler.CyclicLR``
(``cycle_momentum=True``: it also cycles ``betas[0]``) on torch's side and our
``CyclicLR`` with the same arguments on ours, both stepped after every update,
so the cycled beta1 reaches our rules as a traced value.

Tolerances (``np.testing.assert_allclose`` on the whole trajectory, i.e.
``|ours - torch| <= atol + rtol * |torch|`` element-wise), per family
(``TOLERANCES``):

* float64: ``rtol=1e-12, atol=1e-14`` everywhere. Both sides evaluate the same
  formula with differently ordered but individually rounded operations (torch's
  ``lerp_``/``addcdiv_`` against our plain products, torch's
  ``sqrt(v)/sqrt(1-b2^t)`` against our ``sqrt(v/(1-b2^t))``, host-side float64
  scalars, the order of the global-norm sum), so the trajectories differ by a
  few units in the last place, amplified mildly by the feedback (observed: at
  most 2e-15 absolute). This is the sharp check: an epsilon misplaced by 1e-8,
  or a bias correction off in the 10th digit, fails it
  (``test_float64_comparison_detects_a_misplaced_epsilon``). The Adagrad,
  Adamax, NAdam, RAdam and Rprop configurations with default arguments
  (``*_plain``) run in float32 only: their float64 run would repeat the others'.
* float32, clipped families (SGD, Adam, AdamW, Adadelta, RMSprop):
  ``rtol=1e-6, atol=1e-6``, i.e. ``|error| <= 1e-6 * (1 + |theta|)``, about 8
  float32 ulp at the problem's natural scale ``|theta| ~ 1``. The absolute part
  is inherent: a parameter that starts near 1 and later passes close to 0 keeps
  the absolute rounding error (a few ulp of 1, ~1e-7 to 4e-7 observed) it
  accumulated while it was large, which is an arbitrarily large *relative*
  error near 0. Observed worst case of ``|error| / (1 + |theta|)``: 4.1e-7
  (RMSprop centered).
* float32, Adagrad, Adamax, NAdam, RAdam, Rprop: ``rtol=1e-6, atol=1e-7``. torch
  computes its scalar factors (bias corrections, NAdam's mu schedule, RAdam's
  rho_t) in float64 on the host; we compute them in float32 but without
  cancellation (``bias_correction`` via ``expm1``, RAdam's ``sma_length`` via a
  series), so both sides differ by a few float32 ulp per step.
* float32, Adafactor: ``rtol=1e-6, atol=3e-7``: torch computes
  ``t**beta2_decay``, ``1/sqrt(t)`` and the parameter RMS on the host in float64
  (``.item()``), we in float32, a few ulp per step; parameters that cross 0 after
  being O(1) keep an absolute error of ~2 ulp of 1 (2.4e-7 seen with ``lr=0.5``).

The end of the file compares optimizers driven by a momentum-cycling torch
scheduler (``torch_cycled_momentum.npz``): our optimizer gets the scheduler as
``lr=`` with ``schedule_per_update=True``; the cycled value replaces SGD/RMSprop
``momentum`` and Adam ``beta1`` as in torch, including for ``SGD(momentum=0)``,
which torch then runs with momentum.
"""

from __future__ import annotations

import json
import os

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo
from braintools_optim.schedulers import torch_options
from optim_db import canonical
from reference_problem import GOLDEN_DIR, STEPS, load_golden, run_ours

CLIPPED = ('sgd', 'adam', 'adamw', 'adadelta', 'rmsprop')
ALGORITHMS = ('adagrad', 'adamax', 'nadam', 'radam', 'rprop')
FAMILIES = CLIPPED + ALGORITHMS + ('adafactor',)
FLOAT64 = dict(rtol=1e-12, atol=1e-14)
TOLERANCES = {
    **{family: {np.float32: dict(rtol=1e-6, atol=1e-6), np.float64: FLOAT64} for family in CLIPPED},
    **{family: {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: FLOAT64} for family in ALGORITHMS},
    'adafactor': {np.float32: dict(rtol=1e-6, atol=3e-7), np.float64: FLOAT64},
}
# (our class, golden configuration written for another class of the same algorithm, its arguments not taken)
REPLAYS = (('Momentum', 'sgd_momentum_wd_clipnorm', ()),
           ('MomentumNesterov', 'sgd_nesterov_wd_rescale_paramclip', ('nesterov',)))

_GOLDEN = {family: load_golden(family) for family in FAMILIES}


def _config(name):
    for family in FAMILIES:
        for config in _GOLDEN[family][0]['configs']:
            if config['name'] == name:
                return family, config
    raise KeyError(name)


def _as_tuples(kwargs):
    return {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}


def _cases():
    """(family, configuration, our class name, our kwargs, dtype) of every comparison."""
    runs = []
    for family in FAMILIES:
        for config in _GOLDEN[family][0]['configs']:
            runs.append((family, config, config['ours']['cls'], config['ours']['kwargs'], config['name']))
    for cls_name, name, dropped in REPLAYS:
        family, config = _config(name)
        kwargs = {k: v for k, v in config['ours']['kwargs'].items() if k not in dropped}
        runs.append((family, config, cls_name, kwargs, f'{name}[{cls_name}]'))
    for family, config, cls_name, kwargs, case_id in runs:
        plain = family in ALGORITHMS and config['name'].endswith('_plain')
        for dtype in (np.float32,) if plain else (np.float32, np.float64):
            yield pytest.param(family, config, cls_name, _as_tuples(kwargs), dtype,
                               id=f'{case_id}-{np.dtype(dtype).name}')


CASES = list(_cases())
#: registry name -> the test ids comparing it with torch (read by test_catalog.py)
REFERENCED = {}
for _case in CASES:
    REFERENCED.setdefault(canonical(_case.values[2]), []).append(_case.id)


@pytest.mark.parametrize('family, config, cls_name, kwargs, dtype', CASES)
def test_trajectory_matches_torch(family, config, cls_name, kwargs, dtype):
    _, arrays = _GOLDEN[family]
    name = config['name']
    init, c, noise = arrays[f'{name}.init'], arrays[f'{name}.c'], arrays[f'{name}.noise']
    expected = arrays[f'{name}.traj32' if dtype == np.float32 else f'{name}.traj64']
    cls = getattr(bo, cls_name)
    scheduler = config.get('processing', {}).get('scheduler')   # the same as torch's, stepped the same way

    def make():
        if scheduler is None:
            return cls(**kwargs)
        sched_name, sched_kwargs = scheduler
        # torch's scheduler conventions (momentum cycling on, torch's curves): the golden runs are torch's
        return cls(**dict(kwargs, lr=getattr(bo, sched_name)(**sched_kwargs, **torch_options(sched_name))))

    after_update = None if scheduler is None else (lambda opt: opt.lr.step())
    ours = run_ours(make, init, c, noise, dtype, after_update=after_update)

    assert ours.shape == expected.shape == (STEPS + 1, init.shape[0])
    np.testing.assert_array_equal(ours[0], expected[0])
    np.testing.assert_allclose(ours, expected, err_msg=f'{name} ({np.dtype(dtype).name})',
                               **TOLERANCES[family][dtype])


@pytest.mark.parametrize('family', FAMILIES)
def test_golden_files_are_meaningful(family):
    """torch 2.13.0 wrote them; clipped families clip, the others decay; every problem really moves."""
    meta, arrays = _GOLDEN[family]
    assert meta['torch_version'].startswith('2.13.0')
    configs = meta['configs']
    if family in CLIPPED:
        clipped = [cfg for cfg in configs
                   if set(cfg['processing']) & {'grad_clip_value', 'grad_clip_norm', 'param_clip_value'}]
        assert clipped, f'{family}: no configuration with clipping'
        for cfg in configs:
            for kind, count in cfg['clip_events']['float64'].items():
                assert count > 0, (cfg['name'], kind)
    else:
        assert any('weight_decay' in cfg['ours']['kwargs'] for cfg in configs), family
    min_movement = {**dict.fromkeys(CLIPPED, 1e-2), **dict.fromkeys(ALGORITHMS, 0.5), 'adafactor': 0.3}[family]
    for cfg in configs:
        traj = arrays[f"{cfg['name']}.traj64"]
        assert np.all(np.isfinite(traj))
        assert np.max(np.abs(traj[-1] - traj[0])) > min_movement, cfg['name']


def test_float64_comparison_detects_a_misplaced_epsilon():
    """The float64 tolerance is sharp: moving RMSprop's eps=1e-8 also under the root fails it."""
    meta, arrays = _GOLDEN['rmsprop']
    config = next(cfg for cfg in meta['configs'] if cfg['name'] == 'rmsprop_defaults_wd')
    name = config['name']
    kwargs = dict(config['ours']['kwargs'], eps_placement='both')
    ours = run_ours(lambda: bo.RMSprop(**kwargs), arrays[f'{name}.init'], arrays[f'{name}.c'],
                    arrays[f'{name}.noise'], np.float64)
    expected = arrays[f'{name}.traj64']
    assert not np.allclose(ours, expected, **TOLERANCES['rmsprop'][np.float64])
    assert np.max(np.abs(ours - expected)) < 1e-3            # ... though it is the same algorithm


# ----------------------------------------------------------------------------- cycled momentum

with np.load(os.path.join(GOLDEN_DIR, 'torch_cycled_momentum.npz')) as _data:
    CYCLED = {key: _data[key] for key in _data.files}
CYCLED_META = json.loads(CYCLED['meta'].tobytes().decode())

CYCLED_OPTIMIZERS = {
    'SGD': lambda lr, kw: bo.SGD(lr=lr, momentum=kw.get('momentum', 0.0), nesterov=kw.get('nesterov', False),
                                 schedule_per_update=True),
    'Adam': lambda lr, kw: bo.Adam(lr=lr, schedule_per_update=True),
    'RMSprop': lambda lr, kw: bo.RMSprop(lr=lr, momentum=kw['momentum'], schedule_per_update=True),
}
for _name, _spec in CYCLED_META.items():
    REFERENCED.setdefault(canonical(_spec['optimizer']), []).append(f'cycled:{_name}')


@pytest.mark.parametrize('name', sorted(CYCLED_META))
def test_cycled_momentum_matches_torch(name):
    spec = CYCLED_META[name]
    with jax.enable_x64(True):
        scheduler = getattr(bo, spec['scheduler'])(**spec['scheduler_kwargs'], **torch_options(spec['scheduler']))
        theta = brainstate.ParamState(jnp.asarray(CYCLED['init'], jnp.float64))
        opt = CYCLED_OPTIMIZERS[spec['optimizer']](scheduler, spec['optimizer_kwargs'])
        opt.register_trainable_weights({'theta': theta})
        curvature = jnp.asarray(CYCLED['curvature'])

        @brainstate.transform.jit
        def step(noise):
            opt.update({'theta': curvature * theta.value + noise})
            return theta.value

        trajectory = np.stack([np.asarray(step(jnp.asarray(n))) for n in CYCLED['noise']])
    np.testing.assert_allclose(trajectory, CYCLED[name], rtol=1e-10, atol=1e-12)
