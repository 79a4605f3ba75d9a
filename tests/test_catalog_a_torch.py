"""Catalog-A optimizers against PyTorch golden trajectories (no torch needed to run).

``tests/golden/catalog_a_<family>.npz`` hold 25-step trajectories of
``torch.optim`` (torch 2.13.0, CPU, ``foreach=False``) written by
``scripts/make_torch_golden_catalog_a.py``. Four parameters of rank 0, 1, 2 and 3
(shapes ``()``, ``(5,)``, ``(3, 4)``, ``(2, 3, 2)``) are trained on the feedback
problem ``g_k = c * theta_k + noise_k`` with stored noise; each test replays a
configuration with our optimizer (one eager ``update`` per step, i.e. the
optimizer's compiled step), recomputing every gradient in JAX from *our*
current parameters, and compares
the whole 26 x 30 trajectory.

==========================================  ================================================  =============================
torch.optim                                 braintools_optim                                  configurations
==========================================  ================================================  =============================
``Adagrad(lr, lr_decay, wd, init, eps)``    ``optimizers.adagrad.Adagrad`` (same arguments)    plain; lr_decay + init + wd
``Adamax(lr, betas, eps, wd)``              ``optimizers.adamax.Adamax``                       plain; betas + eps + wd
``NAdam(lr, betas, eps, wd, psi)``          ``optimizers.nadam.Nadam``                         plain; betas + psi + wd;
                                                                                              CyclicLR + cycled beta1 + wd
``NAdam(..., decoupled_weight_decay=True)``  ``optimizers.nadam.NAdamW``                        wd; betas + psi + wd
``RAdam(lr, betas, eps, wd)``               ``optimizers.radam.RAdam``                         plain (rectified from step 6);
                                                                                              betas + eps + wd; beta2 0.9;
                                                                                              CyclicLR + cycled beta1
``Rprop(lr, etas, step_sizes)``             ``optimizers.rprop.Rprop``                         plain; etas + both step-size
                                                                                              bounds hit + L2 (by hand)
==========================================  ================================================  =============================

The two ``CyclicLR`` configurations attach ``torch.optim.lr_scheduler.CyclicLR``
(``cycle_momentum=True``: it also cycles ``betas[0]``) on torch's side and our
``schedulers.CyclicLR`` with the same arguments on ours, both stepped after
every update, so the cycled beta1 reaches our rules as a traced value.

Tolerances (``np.testing.assert_allclose`` on the whole trajectory):

* float64 (every configuration except the ``*_plain`` ones, run in float32
  only): ``rtol=1e-12, atol=1e-14``; both sides evaluate the same formula
  with differently ordered roundings (torch's ``lerp_``/``addcdiv_`` and
  host-side float64 scalars against our fused expressions).
* float32: ``rtol=1e-6, atol=1e-7``. torch computes its scalar factors
  (bias corrections, NAdam's mu schedule, RAdam's rho_t) in float64 on the host;
  we compute them in float32 but without cancellation (``bias_correction`` via
  ``expm1``, RAdam's ``sma_length`` via a series), so both sides differ by a few
  float32 ulp per step. The absolute term covers parameters that pass near 0
  after being O(1) (their absolute rounding error stays ~1e-7).
"""

from __future__ import annotations

import importlib
import json
import os

import numpy as np
import pytest

from braintools_optim import schedulers

from reference_problem import GOLDEN_DIR, PARAMS, STEPS, run_ours  # the seed optimizers' problem
FAMILIES = ('adagrad', 'adamax', 'nadam', 'radam', 'rprop')
TOLERANCES = {np.float32: dict(rtol=1e-6, atol=1e-7), np.float64: dict(rtol=1e-12, atol=1e-14)}


def _load(family):
    with np.load(os.path.join(GOLDEN_DIR, f'catalog_a_{family}.npz'), allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(str(arrays.pop('meta')))
    assert meta['steps'] == STEPS
    assert [(p['name'], tuple(p['shape'])) for p in meta['params']] == list(PARAMS)
    return meta, arrays


_GOLDEN = {family: _load(family) for family in FAMILIES}


def _optimizer_class(config):
    module = importlib.import_module(f"braintools_optim.optimizers.{config['ours']['module']}")
    return getattr(module, config['ours']['cls'])


def _cases():
    for family in FAMILIES:
        meta, _ = _GOLDEN[family]
        for config in meta['configs']:
            # float64 (the sharp check) for every configuration but the default-argument
            # ones, whose float64 run would repeat the others' (kept short for run time)
            dtypes = (np.float32,) if config['name'].endswith('_plain') else (np.float32, np.float64)
            for dtype in dtypes:
                yield pytest.param(family, config, dtype, id=f"{config['name']}-{np.dtype(dtype).name}")


@pytest.mark.parametrize('family, config, dtype', list(_cases()))
def test_trajectory_matches_torch(family, config, dtype):
    _, arrays = _GOLDEN[family]
    name = config['name']
    init, c, noise = arrays[f'{name}.init'], arrays[f'{name}.c'], arrays[f'{name}.noise']
    expected = arrays[f'{name}.traj32' if dtype == np.float32 else f'{name}.traj64']
    cls, kwargs = _optimizer_class(config), config['ours']['kwargs']
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
    after_update = None
    if 'scheduler' in config['processing']:      # the same scheduler as torch's, stepped the same way
        sched_name, sched_kwargs = config['processing']['scheduler']
        make_scheduler = getattr(schedulers, sched_name)
        after_update = lambda opt: opt.lr.step()

    def make():
        if after_update is None:
            return cls(**kwargs)
        return cls(**dict(kwargs, lr=make_scheduler(**sched_kwargs, **schedulers.torch_options(sched_name))))

    ours = run_ours(make, init, c, noise, dtype, after_update=after_update)

    assert ours.shape == expected.shape == (STEPS + 1, init.shape[0])
    np.testing.assert_array_equal(ours[0], expected[0])
    np.testing.assert_allclose(ours, expected, err_msg=f'{name} ({np.dtype(dtype).name})',
                               **TOLERANCES[dtype])


def test_golden_files_have_decay_and_move():
    """Every family has a configuration with weight decay; the problems really move."""
    for family in FAMILIES:
        meta, arrays = _GOLDEN[family]
        assert meta['torch_version'].startswith('2.13.0')
        assert any('weight_decay' in cfg['ours']['kwargs'] for cfg in meta['configs']), family
        for cfg in meta['configs']:
            traj = arrays[f"{cfg['name']}.traj64"]
            assert np.max(np.abs(traj[-1] - traj[0])) > 0.5, cfg['name']


# ----------------------------------------------------------------------------- Rprop and a scheduler

def _rprop_reference(init, c, noise, lrs, etas, bounds):
    """torch's Rprop formula (float64 numpy) with every step size rescaled by lr_t / lr_{t-1}."""
    theta = init.copy()
    prev = np.zeros_like(theta)
    step = np.full_like(theta, lrs[0])
    out = [theta.copy()]
    for k in range(noise.shape[0]):
        if k > 0:
            step = step * (lrs[k] / lrs[k - 1])
        g = c * theta + noise[k]
        sign = np.sign(g * prev)
        factor = np.where(sign > 0, etas[1], np.where(sign < 0, etas[0], 1.0))
        step = np.clip(step * factor, *bounds)
        g = np.where(sign < 0, 0.0, g)
        theta = theta - np.sign(g) * step
        prev = g
        out.append(theta.copy())
    return np.stack(out)


def test_rprop_follows_a_scheduler():
    """A schedule multiplies the adapted step sizes by lr_t / lr_{t-1} (torch would ignore it)."""
    from braintools_optim.optimizers.rprop import Rprop
    from braintools_optim.schedulers import StepLR

    meta, arrays = _GOLDEN['rprop']
    name = 'rprop_plain'
    init, c, noise = arrays[f'{name}.init'], arrays[f'{name}.c'], arrays[f'{name}.noise']
    base, gamma, every = 0.05, 0.5, 5
    lrs = [base * gamma ** (k // every) for k in range(STEPS)]
    expected = _rprop_reference(init, c, noise, lrs, (0.5, 1.2), (1e-6, 50.0))

    def make():
        return Rprop(lr=StepLR(base_lr=base, step_size=every, gamma=gamma))

    ours = run_ours(make, init, c, noise, np.float64, after_update=lambda opt: opt.lr.step())
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-14)
    # ... and the schedule matters: the torch (constant-lr) trajectory is different.
    assert np.max(np.abs(ours - arrays[f'{name}.traj64'])) > 0.1
