"""braintools_optim against live optax (0.2.8) on the feedback problem, 25 steps.

Each configuration pairs one of our optimizers with an optax chain that
performs the same steps in *our* documented order: ``optax.scale``
(``rescale_grad``), ``optax.clip`` (``grad_clip_value``),
``optax.clip_by_global_norm`` (``grad_clip_norm``; optax's rule is the one we
document), ``optax.add_decayed_weights`` (coupled ``weight_decay``), then the
optax optimizer; ``param_clip_value`` has no optax transform and is applied to
the parameters after ``optax.apply_updates``. Both sides compute their
gradients as ``c * theta + noise_k`` from their own current parameters.

Configurations (test id ``<configuration>-<dtype>``), ours -> optax:

* ``SGD(lr, momentum, nesterov, weight_decay)`` -> ``sgd(lr, momentum,
  nesterov)`` (dampening 0): momentum + value clip; Nesterov + rescale + norm
  clip + parameter clip.
* ``Adam(lr, betas, eps, eps_root, weight_decay)`` -> ``adam(lr, b1, b2, eps,
  eps_root)``: eps_root + norm clip + parameter clip; defaults + rescale +
  value clip; dyadic betas (see the tolerances).
* ``AdamW(lr, betas, eps, weight_decay)`` -> ``adamw(lr, b1, b2, eps,
  weight_decay)`` (its decay is chained *inside*, after our clipping, as ours).
* ``RMSprop(..., eps_placement='inside', initial_accumulator_value=1.0,
  centered, momentum)`` -> ``rmsprop(lr, decay=alpha, eps, initial_scale=1.0,
  centered, momentum)`` (optax's default ``eps_in_sqrt=True``);
  ``RMSprop(..., eps_placement='outside')`` -> ``rmsprop(...,
  eps_in_sqrt=False)`` (torch's placement).
* ``Adadelta(lr, rho, eps, weight_decay)`` -> ``adadelta(learning_rate=lr, rho,
  eps, weight_decay)``: weight decay + value clip; neon-like rho 0.95 + rescale
  + norm clip + parameter clip.

Not compared here, on purpose: AMSGrad (optax's ``amsgrad`` takes the maximum
of the bias-corrected second moment, we follow torch and take it of the raw
one; ``test_reference_torch`` covers it), SGD dampening (optax has none) and
``Adadelta`` through ``optax.adadelta(learning_rate=None)``, which in optax
0.2.8 moves *up* the gradient (``scale_by_learning_rate(None)`` is the
identity, so the sign flip is lost); ``test_optax_adadelta_without_lr_ascends``
shows that we descend where that call ascends.

Tolerances (``assert_allclose`` on the 26 x 30 trajectory):

* float64: ``rtol=1e-12, atol=1e-14``: the same formulas with operations in a
  different order (optax ``g * rsqrt(nu + eps)`` against our
  ``g / sqrt(nu + eps)``, ``t / norm * max_norm`` against ``t * (max_norm / norm)``,
  decay inside the update against ``theta * (1 - lr * wd)``), so a few ulp.
* float32: ``rtol=1e-6, atol=1e-6`` (``|error| <= 1e-6 (1 + |theta|)``, about
  8 ulp at the problem's scale; see ``test_reference_torch`` for why the
  absolute part is needed), except Adam and AdamW: optax computes the bias
  correction ``1 - beta**t`` in float32, where ``beta = 0.999`` is itself
  rounded, so at ``t = 1`` its ``1 - beta2`` is off by 1.3e-5 relative (we
  compute ``-expm1(t log beta)`` to about one ulp, as torch does in float64).
  That shifts each early Adam step by ~6e-6 relative; over 25 steps the
  trajectories drift apart by up to ~5e-6 (1 + |theta|) (observed, beta2 =
  0.999), so Adam/AdamW with such betas use ``rtol=atol=2e-5`` in float32.
  The float64 comparison of the same configurations is the tight one, and
  ``adam_dyadic_betas`` (beta1 = 0.75, beta2 = 0.9375, exact in float32) shows
  that with exactly representable betas the float32 bound is the tight one
  again.
"""

from __future__ import annotations

import numpy as np
import optax
import pytest

import jax.numpy as jnp

import braintools_optim as bo
from reference_problem import make_problem, run_loop, run_ours

TIGHT = {np.float32: dict(rtol=1e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
# optax's float32 bias correction 1 - beta**t (see the module docstring).
ADAM_FLOAT32 = dict(rtol=2e-5, atol=2e-5)


def _chain(optimizer, rescale_grad=1.0, grad_clip_value=None, grad_clip_norm=None, weight_decay=0.0):
    parts = []
    if rescale_grad != 1.0:
        parts.append(optax.scale(rescale_grad))
    if grad_clip_value is not None:
        parts.append(optax.clip(grad_clip_value))
    if grad_clip_norm is not None:
        parts.append(optax.clip_by_global_norm(grad_clip_norm))
    if weight_decay:
        parts.append(optax.add_decayed_weights(weight_decay))
    parts.append(optimizer)
    return optax.chain(*parts)


# name -> (our optimizer factory, optax transformation factory, param_clip_value, adam-like)
CONFIGS = {
    'sgd_momentum_wd_clipvalue': (
        lambda: bo.SGD(lr=0.05, momentum=0.9, weight_decay=0.01, grad_clip_value=0.8),
        lambda: _chain(optax.sgd(0.05, momentum=0.9), grad_clip_value=0.8, weight_decay=0.01),
        None, False),
    'sgd_nesterov_wd_rescale_clipnorm_paramclip': (
        lambda: bo.SGD(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02, rescale_grad=0.5,
                       grad_clip_norm=1.5, param_clip_value=0.4),
        lambda: _chain(optax.sgd(0.05, momentum=0.8, nesterov=True), rescale_grad=0.5,
                       grad_clip_norm=1.5, weight_decay=0.02),
        0.4, False),
    'adam_epsroot_wd_clipnorm_paramclip': (
        lambda: bo.Adam(lr=0.05, betas=(0.9, 0.99), eps=1e-8, eps_root=1e-6, weight_decay=0.01,
                        grad_clip_norm=3.0, param_clip_value=0.5),
        lambda: _chain(optax.adam(0.05, b1=0.9, b2=0.99, eps=1e-8, eps_root=1e-6),
                       grad_clip_norm=3.0, weight_decay=0.01),
        0.5, True),
    'adam_defaults_rescale_clipvalue': (
        lambda: bo.Adam(lr=0.03, rescale_grad=2.0, grad_clip_value=0.5),
        lambda: _chain(optax.adam(0.03), rescale_grad=2.0, grad_clip_value=0.5),
        None, True),
    'adam_dyadic_betas_wd_clipvalue': (
        lambda: bo.Adam(lr=0.02, betas=(0.75, 0.9375), weight_decay=0.01, grad_clip_value=1.0),
        lambda: _chain(optax.adam(0.02, b1=0.75, b2=0.9375), grad_clip_value=1.0, weight_decay=0.01),
        None, False),
    'adamw_clipvalue': (
        lambda: bo.AdamW(lr=0.05, weight_decay=0.1, grad_clip_value=0.7),
        lambda: _chain(optax.adamw(0.05, weight_decay=0.1), grad_clip_value=0.7),
        None, True),
    'adamw_clipnorm_paramclip': (
        lambda: bo.AdamW(lr=0.02, betas=(0.8, 0.995), eps=1e-7, weight_decay=0.05,
                         grad_clip_norm=3.0, param_clip_value=0.4),
        lambda: _chain(optax.adamw(0.02, b1=0.8, b2=0.995, eps=1e-7, weight_decay=0.05), grad_clip_norm=3.0),
        0.4, True),
    'rmsprop_inside_init1_wd_clipvalue': (
        lambda: bo.RMSprop(lr=0.01, alpha=0.9, eps=1e-8, eps_placement='inside',
                           initial_accumulator_value=1.0, weight_decay=0.01, grad_clip_value=0.8),
        lambda: _chain(optax.rmsprop(0.01, decay=0.9, eps=1e-8, initial_scale=1.0),
                       grad_clip_value=0.8, weight_decay=0.01),
        None, False),
    'rmsprop_inside_init1_centered_momentum_wd_clipnorm_paramclip': (
        lambda: bo.RMSprop(lr=0.005, alpha=0.95, eps=1e-6, centered=True, momentum=0.9,
                           eps_placement='inside', initial_accumulator_value=1.0, weight_decay=0.02,
                           grad_clip_norm=3.5, param_clip_value=0.5),
        lambda: _chain(optax.rmsprop(0.005, decay=0.95, eps=1e-6, initial_scale=1.0, centered=True,
                                     momentum=0.9), grad_clip_norm=3.5, weight_decay=0.02),
        0.5, False),
    'rmsprop_outside_momentum_rescale': (
        lambda: bo.RMSprop(lr=0.01, alpha=0.99, eps=1e-3, momentum=0.5, rescale_grad=0.25),
        lambda: _chain(optax.rmsprop(0.01, decay=0.99, eps=1e-3, eps_in_sqrt=False, momentum=0.5),
                       rescale_grad=0.25),
        None, False),
    'adadelta_wd_clipvalue': (
        lambda: bo.Adadelta(lr=0.5, rho=0.9, eps=1e-2, weight_decay=0.01, grad_clip_value=0.5),
        lambda: _chain(optax.adadelta(learning_rate=0.5, rho=0.9, eps=1e-2, weight_decay=0.01),
                       grad_clip_value=0.5),
        None, False),
    'adadelta_neonlike_rescale_clipnorm_paramclip': (
        lambda: bo.Adadelta(lr=1.0, rho=0.95, eps=1e-6, rescale_grad=1 / 8, grad_clip_norm=0.3,
                            param_clip_value=0.5),
        lambda: _chain(optax.adadelta(learning_rate=1.0, rho=0.95, eps=1e-6), rescale_grad=1 / 8,
                       grad_clip_norm=0.3),
        0.5, False),
}


def _optax_step(make_tx, param_clip_value=None):
    """A ``run_loop`` step that applies an optax transformation eagerly.

    Eager dispatch is deliberate: optax's small operations are compiled once
    per shape and then cached across every test, which is far cheaper than
    compiling a fresh ``jit``/``scan`` for each configuration.
    """
    holder = {}

    def step(params, grads, k):
        if k == 0:     # inside run_loop's precision context
            holder['tx'] = make_tx()
            holder['state'] = holder['tx'].init(params)
        updates, holder['state'] = holder['tx'].update(grads, holder['state'], params)
        new = optax.apply_updates(params, updates)
        if param_clip_value is not None:
            new = {n: jnp.clip(v, -param_clip_value, param_clip_value) for n, v in new.items()}
        return new

    return step


def run_optax(make_tx, param_clip_value, init, c, noise, dtype):
    """Trajectory of an optax transformation on the feedback problem."""
    return run_loop(_optax_step(make_tx, param_clip_value), init, c, noise, dtype)


@pytest.mark.parametrize('dtype', [np.float32, np.float64], ids=['float32', 'float64'])
@pytest.mark.parametrize('name', list(CONFIGS))
def test_trajectory_matches_optax(name, dtype):
    make_ours, make_tx, param_clip_value, adam_like = CONFIGS[name]
    init, c, noise = make_problem(seed=1000 + sorted(CONFIGS).index(name))
    ours = run_ours(make_ours, init, c, noise, dtype)
    theirs = run_optax(make_tx, param_clip_value, init, c, noise, dtype)
    assert np.max(np.abs(ours[-1] - ours[0])) > 1e-2, 'the problem should move'
    tol = ADAM_FLOAT32 if (adam_like and dtype == np.float32) else TIGHT[dtype]
    np.testing.assert_allclose(ours, theirs, err_msg=f'{name} ({np.dtype(dtype).name})', **tol)


def test_optax_adadelta_without_lr_ascends():
    """optax 0.2.8 ``adadelta(learning_rate=None)`` climbs ``sum(theta**2)``; ours descends.

    With ``c = 2`` and no noise the gradient is ``2 theta``, the gradient of
    ``sum(theta**2)``. optax's docstring example hides the bug by passing an
    explicit learning rate; ``learning_rate=None`` (Zeiler's lr-free form,
    our ``lr=1.0``) makes ``scale_by_learning_rate`` the identity, so the
    update keeps the gradient's sign.
    """
    init, _, _ = make_problem(seed=7)
    steps = 10
    c = np.full_like(init, 2.0)
    noise = np.zeros((steps, init.shape[0]))
    loss = lambda traj: np.sum(traj ** 2, axis=1)

    ours = run_ours(lambda: bo.Adadelta(lr=1.0, rho=0.9, eps=1e-6), init, c, noise, np.float64)
    assert np.all(np.diff(loss(ours)) < 0), 'braintools_optim Adadelta must descend'

    # With an explicit learning rate optax descends too, and agrees with us.
    explicit = run_loop(_optax_step(lambda: optax.adadelta(learning_rate=1.0)), init, c, noise, np.float64)
    np.testing.assert_allclose(ours, explicit, rtol=1e-12, atol=1e-14)

    # Without one it moves up the gradient: its first step is exactly ours reversed, and
    # the loss grows at every step.
    no_lr = run_loop(_optax_step(lambda: optax.adadelta(learning_rate=None)), init, c, noise, np.float64)
    if np.all(np.diff(loss(no_lr)) < 0):
        pytest.skip(f'optax {optax.__version__} descends with adadelta(learning_rate=None): bug fixed')
    np.testing.assert_allclose(no_lr[1] - no_lr[0], -(ours[1] - ours[0]), rtol=1e-12, atol=1e-15)
    assert np.all(np.diff(loss(no_lr)) > 0), 'optax.adadelta(learning_rate=None) was expected to ascend'
    assert loss(no_lr)[-1] > loss(no_lr)[0] > loss(ours)[-1]
