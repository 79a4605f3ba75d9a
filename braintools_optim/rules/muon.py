r"""Muon (Jordan et al. 2024): momentum orthogonalised by a Newton–Schulz iteration.

For a **2-D** parameter laid out ``(fan_in, fan_out)`` (``brainstate.nn.Linear``'s
weight), with momentum :math:`\mu`, step :math:`t \ge 1` and learning rate
:math:`\eta_t`::

    b_t = \mu b_{t-1} + (1 - \mu) g_t                      (an EMA, b_0 = 0)
    u_t = (1 - \mu) g_t + \mu b_t   (nesterov)   or   b_t
    O_t = NS_5(u_t)                                        (Newton–Schulz, below)
    \theta_t = \theta_{t-1} - \eta_t s O_t

with the shape factor :math:`s = \sqrt{\max(1, \text{fan\_out}/\text{fan\_in})}`
(``'original'``, the reference implementation) or
:math:`s = 0.2\sqrt{\max(\text{fan\_in}, \text{fan\_out})}` (``'match_rms_adamw'``).
With ``debias=True`` the momentum is bias-corrected as optax does:
:math:`u_t = \mu b_t/(1-\mu^{t+1}) + (1-\mu) g_t/(1-\mu^t)` (nesterov) or
:math:`b_t/(1-\mu^t)`.

The quintic Newton–Schulz iteration with coefficients :math:`(a, b, c)` =
(3.4445, −4.7750, 2.0315) (Jordan's reference, torch and optax), on the matrix
transposed so that it is wide::

    X_0 = U / (\lVert U\rVert_F + \epsilon)
    A = X_k X_k^T,   X_{k+1} = a X_k + (b A + c A^2) X_k

It drives the singular values of :math:`X` towards ~1 (into roughly [0.7, 1.2]),
an approximation of :math:`U V^T` for :math:`U\Sigma V^T = u_t`. It runs in the
parameter's dtype (the reference and torch use bfloat16).

Every other parameter (scalars, vectors, ``ndim >= 3``) falls back to **Adam**
with its own :math:`(\beta_1, \beta_2, \epsilon)`, sharing the momentum buffer
name: ``momentum_buffer`` holds Adam's first moment there, and ``exp_avg_sq``
(a zero scalar for matrices) its second moment.
"""

from __future__ import annotations

import math
from typing import Sequence

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, bias_correction
from ._scheduled import scalar

#: Jordan's quintic coefficients (modded-nanogpt; torch.optim.Muon; optax.contrib.muon).
NS_COEFFICIENTS = (3.4445, -4.7750, 2.0315)
ADJUST_LR_FNS = ('original', 'match_rms_adamw')


def newton_schulz(x, coefficients: Sequence[float] = NS_COEFFICIENTS, steps: int = 5, eps: float = 1e-7):
    r"""Approximately orthogonalise a matrix by the quintic Newton–Schulz iteration.

    >>> import jax.numpy as jnp
    >>> o = newton_schulz(jnp.array([[3.0, 0.0], [0.0, 0.5]]))
    >>> bool(jnp.all(jnp.abs(jnp.diag(o) - 1.0) < 0.35)), float(o[0, 1])   # singular values ~1
    (True, 0.0)
    """
    if x.ndim != 2:
        raise ValueError(f"Newton-Schulz needs a matrix, got shape {x.shape}")
    a, b, c = coefficients
    transposed = x.shape[0] > x.shape[1]
    if transposed:
        x = x.T
    x = x / (jnp.sqrt(jnp.sum(x * x)) + eps)
    for _ in range(steps):
        gram = x @ x.T
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x.T if transposed else x


def shape_factor(shape, adjust_lr_fn: str = 'original') -> float:
    """The step multiplier of a ``(fan_in, fan_out)`` matrix.

    >>> shape_factor((64, 256)), shape_factor((256, 64))
    (2.0, 1.0)
    """
    fan_in, fan_out = shape
    if adjust_lr_fn == 'original':
        return math.sqrt(max(1.0, fan_out / fan_in))
    return 0.2 * math.sqrt(max(fan_in, fan_out))


def muon(momentum: float = 0.95, nesterov: bool = True, ns_coefficients=NS_COEFFICIENTS, ns_steps: int = 5,
         eps: float = 1e-7, adjust_lr_fn: str = 'original', debias: bool = False,
         adam_betas=(0.9, 0.999), adam_eps: float = 1e-8) -> UpdateRule:
    """Muon rule (Adam for non-matrix parameters); see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = muon(momentum=0.0)
    >>> p = jnp.zeros((2, 2)); g = jnp.array([[2.0, 0.0], [0.0, 2.0]])
    >>> delta, _ = rule.update(g, rule.init(p), p, 0.1, 1)
    >>> bool(jnp.allclose(delta, -0.1 * jnp.eye(2), atol=0.03))        # ~ -lr * orthogonal factor
    True
    >>> rule.init(jnp.zeros(3))['exp_avg_sq'].shape                     # a vector uses Adam
    (3,)
    """
    b1, b2 = adam_betas
    names = ('momentum_buffer', 'exp_avg_sq')

    def init(param):
        if param.ndim == 2:
            return {'momentum_buffer': jnp.zeros_like(param), 'exp_avg_sq': jnp.zeros((), param.dtype)}
        return {'momentum_buffer': jnp.zeros_like(param), 'exp_avg_sq': jnp.zeros_like(param)}

    def update_matrix(grad, buffers, param, lr, count):
        dtype = grad.dtype
        t = as_dtype(count, dtype)
        mu = scalar(momentum, dtype)               # a scheduler's cycled momentum arrives traced
        buffer = mu * buffers['momentum_buffer'] + (1.0 - mu) * grad
        if debias:
            if nesterov:
                direction = (mu * buffer / bias_correction(mu, t + 1.0)
                             + (1.0 - mu) * grad / bias_correction(mu, t))
            else:
                direction = buffer / bias_correction(mu, t)
        else:
            direction = (1.0 - mu) * grad + mu * buffer if nesterov else buffer
        ortho = newton_schulz(direction, ns_coefficients, ns_steps, eps)
        step = as_dtype(lr, dtype) * shape_factor(param.shape, adjust_lr_fn)
        return -step * ortho, {'momentum_buffer': buffer, 'exp_avg_sq': buffers['exp_avg_sq']}

    def update_adam(grad, buffers, param, lr, count):
        dtype = grad.dtype
        t = as_dtype(count, dtype)
        exp_avg = b1 * buffers['momentum_buffer'] + (1.0 - b1) * grad
        exp_avg_sq = b2 * buffers['exp_avg_sq'] + (1.0 - b2) * grad * grad
        delta = -(as_dtype(lr, dtype) / bias_correction(b1, t)) * exp_avg / (
            jnp.sqrt(exp_avg_sq / bias_correction(b2, t)) + adam_eps)
        return delta, {'momentum_buffer': exp_avg, 'exp_avg_sq': exp_avg_sq}

    def update(grad, buffers, param, lr, count):
        if param.ndim == 2:
            return update_matrix(grad, buffers, param, lr, count)
        return update_adam(grad, buffers, param, lr, count)

    return UpdateRule('muon', names, init, update, {'momentum_buffer': (1, 0), 'exp_avg_sq': (2, 0)})
