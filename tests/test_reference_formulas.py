"""braintools_optim against numpy re-implementations of published update formulas.

Each reference below is written from the formula of one seed document, in
plain numpy in the problem's dtype (scalars that those libraries compute on the
host, such as neon's Adam step size, are Python floats), and run for 25 steps
on the feedback problem of :mod:`reference_problem` next to our optimizer.

Which reference matches which configuration (test id ``<configuration>-<dtype>``):

* neon ``RMSProp`` -- ``mu' = d mu + (1 - d) g^2``,
  ``theta' = theta - a g / (sqrt(mu' + e) + e)`` with d 0.95, a 0.002, e 1e-6 --
  is ``RMSprop(lr=0.002, alpha=0.95, eps=1e-6, eps_placement='both')``
  (``neon_rmsprop_defaults``). neon divides gradients by the batch size, then
  clips them by value, and clips parameters after the step:
  ``rescale_grad=1/batch, grad_clip_value=..., param_clip_value=...``
  (``neon_rmsprop_batch_clipvalue_paramclip``).
* neon ``Adam``, the "epsilon hat" form -- ``l = lr sqrt(1 - b2^t) / (1 - b1^t)``
  (a host float), ``theta -= l m / (sqrt(v) + e)`` -- is
  ``Adam(lr, betas, eps, eps_hat=True)`` (``neon_adam_defaults_epshat``; with
  batch division, value and parameter clipping in
  ``neon_adam_bigeps_batch_clipvalue_paramclip_epshat``, whose large eps makes
  the epsilon-hat form clearly different from the default one, see
  ``test_eps_hat_is_not_the_default_form``).
* neon ``Adadelta`` (no learning rate, decay 0.95, e 1e-6, gradient divided by
  the batch size; ``delta = sqrt((E_dx + e) / (E_g + e)) g``) is
  ``Adadelta(lr=1.0, rho=0.95, eps=1e-6, rescale_grad=1/batch)``
  (``neon_adadelta_batch``; ``neon_adadelta_batch_paramclip`` adds neon's
  ``param_clip_value``).
* MXNet 2.0 ``AdaDelta`` -- ``g = rescale_grad g; g = clip(g, +-clip_gradient);
  g += wd w; acc_g = rho acc_g + (1 - rho) g^2; delta = sqrt(acc_delta + eps) /
  sqrt(acc_g + eps) g; acc_delta = rho acc_delta + (1 - rho) delta^2;
  w -= lr delta`` -- is ``Adadelta(lr, rho, eps, weight_decay=wd,
  rescale_grad=rescale_grad, grad_clip_value=clip_gradient)``
  (``mxnet2_adadelta_wd_rescale_clipgradient``).
* neon ``GradientDescentMomentum`` with ``gradient_clip_norm`` and
  ``param_clip_value`` -- ``s = c / max(||g|| / batch, c)`` over all
  parameters, ``v' = mu v - lr (s g / batch + wdecay theta)``,
  ``theta' = clip(theta + v')`` (Nesterov: ``clip(theta + mu v' - lr (...))``)
  -- is ``SGD(lr, momentum, nesterov, weight_decay=wdecay, rescale_grad=1/batch,
  grad_clip_norm=c, param_clip_value=...)`` (``neon_sgd_*_clipnorm_paramclip``;
  Keras-style velocity and torch-style buffer agree at constant lr).
* torch's ``Rprop`` update with every adapted step size rescaled by
  ``lr_t / lr_{t-1}`` when a scheduler changes the learning rate (torch's Rprop
  ignores schedules; ours follows them) is ``Rprop(lr=StepLR(...))``
  (``test_rprop_follows_a_scheduler``, float64, on the problem of the
  ``rprop_plain`` torch golden configuration).

A note on neon's ``gradient_clip_norm`` (not a bug of ours, a convention we do
not reproduce): neon's ``RMSProp``, ``Adam`` and ``Adagrad`` multiply only the
*step* by the norm-clipping factor, after their moment estimates have seen the
unscaled gradient; our ``grad_clip_norm`` clips the gradient itself (optax's
convention), so for those optimizers the two differ whenever the clip is
active. neon's SGD applies the factor to the gradient, which is why the
norm-clip configuration here is SGD. neon also takes the norm before
``gradient_clip_value``; the configurations here that clip by norm do not clip
by value.

Tolerances: float64 ``rtol=1e-12, atol=1e-14`` (the same formula, operations
in a different order: a few ulp); float32 ``rtol=1e-6, atol=1e-6``
(``|error| <= 1e-6 (1 + |theta|)``: ~8 ulp at the problem's scale, see
``test_reference_torch`` for why an absolute part is inherent).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import braintools_optim as bo
from reference_problem import NAMES, STEPS, load_golden, make_problem, run_loop, run_ours

TOLERANCES = {np.float32: dict(rtol=1e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}
DTYPES = pytest.mark.parametrize('dtype', [np.float32, np.float64], ids=['float32', 'float64'])


def _numpy_step(update):
    """Wrap ``update(theta, g, state, t) -> theta`` (per parameter, numpy) as a ``run_loop`` step."""
    states = {name: {} for name in NAMES}

    def step(params, grads, k):
        return {n: update(np.asarray(params[n]), np.asarray(grads[n]), states[n], k + 1) for n in NAMES}

    return step


def _clip(x, bound):
    return x if bound is None else np.clip(x, -bound, bound)


def _zeros(state, names, like):
    for name in names:
        state.setdefault(name, np.zeros_like(like))


# --------------------------------------------------------------------------- neon RMSProp
def neon_rmsprop(lr=0.002, decay=0.95, eps=1e-6, batch=1, gradient_clip_value=None, param_clip_value=None):
    def update(theta, g, state, t):
        _zeros(state, ('mu',), theta)
        g = _clip(g / batch, gradient_clip_value)
        state['mu'] = decay * state['mu'] + (1.0 - decay) * g * g
        return _clip(theta - lr * g / (np.sqrt(state['mu'] + eps) + eps), param_clip_value)

    return update


# --------------------------------------------------------------------------- neon Adam
def neon_adam(lr=0.001, beta_1=0.9, beta_2=0.999, eps=1e-8, batch=1, gradient_clip_value=None,
              param_clip_value=None):
    def update(theta, g, state, t):
        _zeros(state, ('m', 'v'), theta)
        step_size = lr * math.sqrt(1.0 - beta_2 ** t) / (1.0 - beta_1 ** t)   # host float, as neon
        g = _clip(g / batch, gradient_clip_value)
        state['m'] = state['m'] * beta_1 + (1.0 - beta_1) * g
        state['v'] = state['v'] * beta_2 + (1.0 - beta_2) * g * g
        return _clip(theta - step_size * state['m'] / (np.sqrt(state['v']) + eps), param_clip_value)

    return update


# --------------------------------------------------------------------------- neon Adadelta
def neon_adadelta(decay=0.95, eps=1e-6, batch=1, param_clip_value=None):
    def update(theta, g, state, t):
        _zeros(state, ('e_g', 'e_dx'), theta)
        g = g / batch
        state['e_g'] = state['e_g'] * decay + (1.0 - decay) * g * g
        delta = np.sqrt((state['e_dx'] + eps) / (state['e_g'] + eps)) * g
        state['e_dx'] = state['e_dx'] * decay + (1.0 - decay) * delta * delta
        return _clip(theta - delta, param_clip_value)

    return update


# --------------------------------------------------------------------------- MXNet 2.0 AdaDelta
def mxnet_adadelta(learning_rate=1.0, rho=0.9, epsilon=1e-6, wd=0.0, rescale_grad=1.0, clip_gradient=None):
    def update(w, grad, state, t):
        _zeros(state, ('acc_g', 'acc_delta'), w)
        grad = rescale_grad * grad
        grad = _clip(grad, clip_gradient)
        grad = grad + wd * w
        state['acc_g'] = rho * state['acc_g'] + (1.0 - rho) * grad * grad
        delta = np.sqrt(state['acc_delta'] + epsilon) / np.sqrt(state['acc_g'] + epsilon) * grad
        state['acc_delta'] = rho * state['acc_delta'] + (1.0 - rho) * delta * delta
        return w - learning_rate * delta

    return update


# --------------------------------------------------------------------------- neon SGD with norm clip
def neon_gdm_step(learning_rate, momentum_coef, wdecay=0.0, batch=1, gradient_clip_norm=None,
                  param_clip_value=None, nesterov=False):
    """A whole ``run_loop`` step: the norm-clip factor needs every parameter's gradient."""
    velocity = {}

    def step(params, grads, k):
        params = {n: np.asarray(params[n]) for n in NAMES}
        grads = {n: np.asarray(grads[n]) for n in NAMES}
        scale_factor = 1.0
        if gradient_clip_norm:
            square_sum = sum(np.sum(np.square(grads[n])) for n in NAMES)
            grad_norm = float(np.sqrt(square_sum) / batch)          # neon reads it back to the host
            scale_factor = gradient_clip_norm / max(grad_norm, float(gradient_clip_norm))
        out = {}
        for n in NAMES:
            theta = params[n]
            velocity.setdefault(n, np.zeros_like(theta))
            grad = scale_factor * (grads[n] / batch) + wdecay * theta
            velocity[n] = momentum_coef * velocity[n] - learning_rate * grad
            if nesterov:
                new = theta + momentum_coef * velocity[n] - learning_rate * grad
            else:
                new = theta + velocity[n]
            out[n] = _clip(new, param_clip_value)
        return out

    return step


# name -> (registry name, our optimizer factory, reference step factory)
CONFIGS = {
    'neon_rmsprop_defaults': ('RMSprop',
        lambda: bo.RMSprop(lr=0.002, alpha=0.95, eps=1e-6, eps_placement='both'),
        lambda: _numpy_step(neon_rmsprop())),
    'neon_rmsprop_batch_clipvalue_paramclip': ('RMSprop',
        lambda: bo.RMSprop(lr=0.01, alpha=0.95, eps=1e-6, eps_placement='both', rescale_grad=1 / 10,
                           grad_clip_value=0.05, param_clip_value=0.5),
        lambda: _numpy_step(neon_rmsprop(lr=0.01, batch=10, gradient_clip_value=0.05, param_clip_value=0.5))),
    'neon_adam_defaults_epshat': ('Adam',
        lambda: bo.Adam(lr=0.001, betas=(0.9, 0.999), eps=1e-8, eps_hat=True),
        lambda: _numpy_step(neon_adam())),
    'neon_adam_bigeps_batch_clipvalue_paramclip_epshat': ('Adam',
        lambda: bo.Adam(lr=0.05, betas=(0.8, 0.99), eps=1e-3, eps_hat=True, rescale_grad=1 / 4,
                        grad_clip_value=0.2, param_clip_value=0.6),
        lambda: _numpy_step(neon_adam(lr=0.05, beta_1=0.8, beta_2=0.99, eps=1e-3, batch=4,
                                      gradient_clip_value=0.2, param_clip_value=0.6))),
    'neon_adadelta_batch': ('Adadelta',
        lambda: bo.Adadelta(lr=1.0, rho=0.95, eps=1e-6, rescale_grad=1 / 16),
        lambda: _numpy_step(neon_adadelta(batch=16))),
    'neon_adadelta_batch_paramclip': ('Adadelta',
        lambda: bo.Adadelta(lr=1.0, rho=0.95, eps=1e-6, rescale_grad=1 / 10, param_clip_value=0.8),
        lambda: _numpy_step(neon_adadelta(batch=10, param_clip_value=0.8))),
    'mxnet2_adadelta_wd_rescale_clipgradient': ('Adadelta',
        lambda: bo.Adadelta(lr=0.5, rho=0.9, eps=1e-5, weight_decay=0.01, rescale_grad=0.5,
                            grad_clip_value=0.4),
        lambda: _numpy_step(mxnet_adadelta(learning_rate=0.5, rho=0.9, epsilon=1e-5, wd=0.01,
                                           rescale_grad=0.5, clip_gradient=0.4))),
    'neon_sgd_momentum_clipnorm_paramclip': ('SGD',
        lambda: bo.SGD(lr=0.05, momentum=0.9, weight_decay=0.01, rescale_grad=1 / 4, grad_clip_norm=0.6,
                       param_clip_value=0.5),
        lambda: neon_gdm_step(0.05, 0.9, wdecay=0.01, batch=4, gradient_clip_norm=0.6, param_clip_value=0.5)),
    'neon_sgd_nesterov_clipnorm_paramclip': ('SGD',
        lambda: bo.SGD(lr=0.1, momentum=0.8, nesterov=True, rescale_grad=1 / 8, grad_clip_norm=0.4,
                       param_clip_value=0.7),
        lambda: neon_gdm_step(0.1, 0.8, batch=8, gradient_clip_norm=0.4, param_clip_value=0.7,
                              nesterov=True)),
}


#: registry name -> the configurations comparing it with a published formula (read by test_catalog.py)
REFERENCED = {}
for _name, (_optimizer, _, _) in CONFIGS.items():
    REFERENCED.setdefault(_optimizer, []).append(_name)
REFERENCED['Rprop'] = ['rprop_follows_a_scheduler']


@DTYPES
@pytest.mark.parametrize('name', list(CONFIGS))
def test_matches_published_formula(name, dtype):
    _, make_ours, make_reference = CONFIGS[name]
    init, c, noise = make_problem(seed=2000 + sorted(CONFIGS).index(name))
    ours = run_ours(make_ours, init, c, noise, dtype)
    reference = run_loop(make_reference(), init, c, noise, dtype)
    assert np.max(np.abs(reference[-1] - reference[0])) > 1e-2, 'the problem should move'
    np.testing.assert_allclose(ours, reference, err_msg=f'{name} ({np.dtype(dtype).name})',
                               **TOLERANCES[dtype])


def test_eps_hat_is_not_the_default_form():
    """The comparison can tell neon's epsilon-hat Adam from the torch/optax form."""
    init, c, noise = make_problem(seed=2999)
    reference = run_loop(_numpy_step(neon_adam(lr=0.05, eps=1e-3)), init, c, noise, np.float64)
    with_hat = run_ours(lambda: bo.Adam(lr=0.05, eps=1e-3, eps_hat=True), init, c, noise, np.float64)
    without = run_ours(lambda: bo.Adam(lr=0.05, eps=1e-3), init, c, noise, np.float64)
    np.testing.assert_allclose(with_hat, reference, **TOLERANCES[np.float64])
    assert np.max(np.abs(without - reference)) > 1e-4


# --------------------------------------------------------------------------- Rprop under a schedule
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
    """A schedule multiplies the adapted step sizes by lr_t / lr_{t-1} (torch's Rprop would ignore it).

    The problem is the one of the ``rprop_plain`` torch golden configuration,
    whose (constant-lr) trajectory must then differ.
    """
    meta, arrays = load_golden('rprop')
    name = 'rprop_plain'
    init, c, noise = arrays[f'{name}.init'], arrays[f'{name}.c'], arrays[f'{name}.noise']
    base, gamma, every = 0.05, 0.5, 5
    lrs = [base * gamma ** (k // every) for k in range(STEPS)]
    expected = _rprop_reference(init, c, noise, lrs, (0.5, 1.2), (1e-6, 50.0))

    def make():
        return bo.Rprop(lr=bo.StepLR(base_lr=base, step_size=every, gamma=gamma))

    ours = run_ours(make, init, c, noise, np.float64, after_update=lambda opt: opt.lr.step())
    np.testing.assert_allclose(ours, expected, **TOLERANCES[np.float64])
    # ... and the schedule matters: the torch (constant-lr) trajectory is different.
    assert np.max(np.abs(ours - arrays[f'{name}.traj64'])) > 0.1
