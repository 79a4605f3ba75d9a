"""Catalog-A optimizers against live optax (0.2.8) on deterministic random problems.

Four parameters of rank 0, 1, 2 and 3 (shapes ``()``, ``(5,)``, ``(3, 4)``,
``(2, 3, 2)``) are trained for 25 steps on ``g_k = c * theta_k + noise_k``
(stored noise; each side computes its gradient from its *own* parameters, so an
error at one step propagates), by our optimizer (eager ``update``, the cached
compiled step) and by the optax chain that implements the same convention. Every
algorithm but RAdam (see below) has a configuration without and one with weight decay (coupled:
``add_decayed_weights`` before the transform; decoupled: optax's own
``weight_decay`` argument, which adds ``lambda * theta`` to the update before the
learning rate), with non-default hyper-parameters in the second.

========================  ===========================================================  ==========
ours (module.Class)       optax                                                        decay
========================  ===========================================================  ==========
radam.RAdam               ``radam`` / ``scale_by_radam``                                coupled
lion.Lion                 ``lion(weight_decay=...)``                                   decoupled
yogi.Yogi                 ``yogi`` / ``scale_by_yogi``                                  coupled
adabelief.AdaBelief       ``adabelief`` / ``scale_by_belief``                           coupled
novograd.Novograd         ``novograd(weight_decay=...)``                               in the rule
adan.Adan                 ``adan(weight_decay=...)``                                   decoupled
fromage.Fromage           ``fromage`` (after ``add_decayed_weights`` for the L2 case)   coupled
sm3.SM3                   ``sm3`` / ``scale_by_sm3(b1=momentum)``                       coupled
========================  ===========================================================  ==========

Tolerances, ``|ours - optax| <= atol + rtol * |optax|`` on the 26 x 30 trajectory:

* ``TIGHT32`` (float32: ``rtol 1e-6, atol 2.5e-7``) for the rules without a
  bias correction (Lion, Novograd, Fromage, SM3). The absolute term is two
  float32 ulp at the problem's scale (|theta| ~ 1-2): a parameter that crosses
  zero after being O(1) keeps the ~1e-7 absolute rounding error it accumulated
  (observed: one Novograd element off by exactly 1 ulp of 1 at theta = 0.0037).
* ``BIAS32`` (float32: ``rtol 2e-5, atol 1.5e-5``) for the bias-corrected rules
  at their defaults (Yogi, AdaBelief, Adan). Inherent: optax computes
  ``1 - beta^t`` as ``1 - beta**count`` in float32, 1.3e-5 relative off for
  ``beta = 0.999`` at small ``t`` (0.999 itself is rounded), i.e. 6e-6 on the
  step ``lr / sqrt(1 - b2^t)``; over 25 steps of size ``lr = 0.05`` that is up to
  ``25 * 0.05 * 6e-6 = 8e-6`` absolute (observed 7.8e-6). Ours
  (``-expm1(t log beta)``) is exact to an ulp.
* ``TIGHT64`` (float64 via ``jax.enable_x64``: ``rtol 1e-10, atol 1e-12``) for
  the configurations with non-default hyper-parameters and weight decay of the
  bias-corrected rules: the sharp check of the formula.
* RAdam is compared in float64 only (one configuration: betas (0.8, 0.99) and
  weight decay; rho_t crosses the threshold 5 at step 6, so both branches and
  optax's ``>= 5`` against torch's ``> 5`` are exercised): optax evaluates
  ``rho_t = rho_inf - 2 t b2^t / (1 - b2^t)`` in float32, where the two terms
  are ~1999 and the bias correction above is 1.3e-5 off, so its rectification
  factor is 1.2e-2 relative wrong at t = 6 for beta2 = 0.999 (1.4e-4 for 0.99)
  in float32 (ours is cancellation-free and
  matches torch's float64 host arithmetic to 1e-6, see
  ``test_catalog_a_torch.py``). The case uses ``eps = 1e-14`` so that the
  documented epsilon-placement difference (torch's, before the bias correction,
  against optax's, after) stays below the tolerance.
"""

from __future__ import annotations

import importlib

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from reference_problem import NAMES, PARAMS, STEPS, flatten, make_problem, run_ours, split

TIGHT32 = dict(rtol=1e-6, atol=2.5e-7)
BIAS32 = dict(rtol=2e-5, atol=1.5e-5)
TIGHT64 = dict(rtol=1e-10, atol=1e-12)


def run_optax(tx, init, c, noise, dtype, scalar_as_vector=False):
    """optax's trajectory; ``scalar_as_vector`` hands the rank-0 parameter over as shape ``(1,)``."""
    dtype = np.dtype(dtype)
    shape_of = {n: ((1,) if scalar_as_vector and s == () else s) for n, s in PARAMS}
    with jax.enable_x64(dtype == np.float64):
        params = {n: jnp.asarray(v.astype(dtype)).reshape(shape_of[n]) for n, v in split(init).items()}
        coeffs = {n: jnp.asarray(v.astype(dtype)).reshape(shape_of[n]) for n, v in split(c).items()}
        noise_tree = {n: jnp.asarray(v.astype(dtype)).reshape((STEPS,) + shape_of[n])
                      for n, v in split(noise).items()}

        @jax.jit
        def step(params, state, step_noise):
            grads = {n: coeffs[n] * params[n] + step_noise[n] for n in NAMES}
            updates, state = tx.update(grads, state, params)
            return optax.apply_updates(params, updates), state

        state = tx.init(params)
        trajectory = [flatten(params)]
        for k in range(STEPS):
            params, state = step(params, state, {n: v[k] for n, v in noise_tree.items()})
            trajectory.append(flatten(params))
        out = np.stack(trajectory)
    assert out.dtype == dtype
    return out


def _cls(module, name):
    return getattr(importlib.import_module(f'braintools_optim.optimizers.{module}'), name)


def coupled(wd, *transforms):
    return optax.chain(optax.add_decayed_weights(wd), *transforms)


# (id, module, class, our kwargs, optax factory, dtype, tolerance)
CASES = [
    ('radam_wd', 'radam', 'RAdam', dict(lr=0.05, betas=(0.8, 0.99), eps=1e-14, weight_decay=0.02),
     lambda: coupled(0.02, optax.scale_by_radam(0.8, 0.99, 1e-14), optax.scale_by_learning_rate(0.05)),
     np.float64, TIGHT64),
    ('lion', 'lion', 'Lion', dict(lr=0.01), lambda: optax.lion(0.01, weight_decay=0.0), np.float32, TIGHT32),
    ('lion_wd', 'lion', 'Lion', dict(lr=0.02, betas=(0.8, 0.95), weight_decay=0.5),
     lambda: optax.lion(0.02, b1=0.8, b2=0.95, weight_decay=0.5), np.float32, TIGHT32),
    ('yogi', 'yogi', 'Yogi', dict(lr=0.05), lambda: optax.yogi(0.05), np.float32, BIAS32),
    ('yogi_wd', 'yogi', 'Yogi',
     dict(lr=0.05, betas=(0.8, 0.99), eps=1e-4, weight_decay=0.02, eps_root=1e-8, initial_accumulator_value=1e-3),
     lambda: coupled(0.02, optax.scale_by_yogi(0.8, 0.99, 1e-4, 1e-8, 1e-3), optax.scale_by_learning_rate(0.05)),
     np.float64, TIGHT64),
    ('adabelief', 'adabelief', 'AdaBelief', dict(lr=0.05), lambda: optax.adabelief(0.05), np.float32, BIAS32),
    ('adabelief_wd', 'adabelief', 'AdaBelief',
     dict(lr=0.05, betas=(0.8, 0.99), eps=1e-8, weight_decay=0.02, eps_root=1e-10),
     lambda: coupled(0.02, optax.scale_by_belief(0.8, 0.99, 1e-8, 1e-10), optax.scale_by_learning_rate(0.05)),
     np.float64, TIGHT64),
    ('novograd', 'novograd', 'Novograd', dict(lr=0.05),
     lambda: optax.novograd(0.05, b1=0.9, b2=0.999, eps=1e-8), np.float32, TIGHT32),
    ('novograd_wd', 'novograd', 'Novograd', dict(lr=0.05, betas=(0.8, 0.5), eps=1e-6, weight_decay=0.05),
     lambda: optax.novograd(0.05, b1=0.8, b2=0.5, eps=1e-6, weight_decay=0.05), np.float32, TIGHT32),
    ('adan', 'adan', 'Adan', dict(lr=0.05), lambda: optax.adan(0.05), np.float32, BIAS32),
    ('adan_wd', 'adan', 'Adan', dict(lr=0.05, betas=(0.9, 0.9, 0.95), eps=1e-6, weight_decay=0.1, eps_root=1e-10),
     lambda: optax.adan(0.05, b1=0.9, b2=0.9, b3=0.95, eps=1e-6, eps_root=1e-10, weight_decay=0.1),
     np.float64, TIGHT64),
    ('fromage', 'fromage', 'Fromage', dict(lr=0.1), lambda: optax.fromage(0.1), np.float32, TIGHT32),
    ('fromage_wd', 'fromage', 'Fromage', dict(lr=0.05, min_norm=1e-3, weight_decay=0.1),
     lambda: coupled(0.1, optax.fromage(0.05, min_norm=1e-3)), np.float32, TIGHT32),
    ('sm3', 'sm3', 'SM3', dict(lr=0.1), lambda: optax.sm3(0.1), np.float32, TIGHT32),
    ('sm3_wd', 'sm3', 'SM3', dict(lr=0.2, momentum=0.0, eps=1e-6, weight_decay=0.02),
     lambda: coupled(0.02, optax.scale_by_sm3(b1=0.0, b2=1.0, eps=1e-6), optax.scale(-0.2)),
     np.float32, TIGHT32),
]


@pytest.mark.parametrize('case_id, module, cls_name, kwargs, make_tx, dtype, tol',
                         [pytest.param(*case, id=f'{case[0]}-{np.dtype(case[5]).name}') for case in CASES])
def test_trajectory_matches_optax(case_id, module, cls_name, kwargs, make_tx, dtype, tol):
    seed = 1000 + sum(map(ord, case_id))
    init, c, noise = make_problem(seed)
    cls = _cls(module, cls_name)
    ours = run_ours(lambda: cls(**kwargs), init, c, noise, dtype)
    # optax's scale_by_sm3 fails on rank-0 parameters; a rank-1 (1,) parameter is
    # the same cover (one accumulator per element), so it stands in for the scalar.
    reference = run_optax(make_tx(), init, c, noise, dtype, scalar_as_vector=(module == 'sm3'))
    assert np.max(np.abs(reference[-1] - reference[0])) > 0.1, 'the problem barely moves'
    np.testing.assert_array_equal(ours[0], reference[0])
    np.testing.assert_allclose(ours, reference, err_msg=f'{case_id} ({np.dtype(dtype).name})', **tol)
