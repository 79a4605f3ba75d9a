r"""LAMB (You et al. 2020), as pure math, optax ``lamb`` semantics.

Per parameter tensor :math:`\theta` (one "layer"), with :math:`\beta_1, \beta_2`,
:math:`\epsilon`, weight decay :math:`\lambda`, step :math:`t \ge 1` and learning
rate :math:`\eta_t`::

    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2
    r_t = \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t)} + \epsilon} + \lambda \theta_{t-1}
    \tau_t = \lVert\theta_{t-1}\rVert_2 / \lVert r_t\rVert_2     (1 if either norm is 0)
    \theta_t = \theta_{t-1} - \eta_t \tau_t r_t

The trust ratio :math:`\tau_t` is one number per tensor, so the rule is *not*
element-wise: the engine runs it on each parameter separately. Weight decay is
part of the rule: it is added to the Adam direction (not to the gradient, so it
never enters the moments) and is rescaled by the trust ratio with it.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, bias_correction, is_zero, zeros_like_buffers
from ._scheduled import scalar


def trust_ratio(param, direction, coefficient=1.0, eps=0.0):
    r"""``coefficient * ||param|| / (||direction|| + eps)``, or 1 when either norm is 0.

    >>> import jax.numpy as jnp
    >>> float(trust_ratio(jnp.array([3.0, 4.0]), jnp.array([0.0, 0.5])))
    10.0
    >>> float(trust_ratio(jnp.zeros(2), jnp.ones(2)))     # a zero parameter keeps the raw step
    1.0
    """
    param_norm = jnp.sqrt(jnp.sum(param * param))
    direction_norm = jnp.sqrt(jnp.sum(direction * direction))
    ratio = coefficient * param_norm / (direction_norm + eps)
    usable = (param_norm > 0.0) & (direction_norm > 0.0)
    return jnp.where(usable, ratio, jnp.ones_like(ratio)).astype(direction.dtype)


def lamb(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-6, weight_decay: float = 0.0) -> UpdateRule:
    """LAMB rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = lamb()
    >>> p = jnp.array([3.0, 4.0]); g = jnp.array([1.0, 0.0])
    >>> delta, buffers = rule.update(g, rule.init(p), p, 0.1, 1)
    >>> [round(x, 4) + 0.0 for x in delta.tolist()]     # -lr * ||p|| * r / ||r||
    [-0.5, 0.0]
    """
    names = ('exp_avg', 'exp_avg_sq')

    def update(grad, buffers, param, lr, count):
        dtype = grad.dtype
        t = as_dtype(count, dtype)
        beta1 = scalar(b1, dtype)                  # a scheduler's cycled momentum arrives traced
        exp_avg = beta1 * buffers['exp_avg'] + (1.0 - beta1) * grad
        exp_avg_sq = b2 * buffers['exp_avg_sq'] + (1.0 - b2) * grad * grad
        direction = (exp_avg / bias_correction(b1, t)) / (jnp.sqrt(exp_avg_sq / bias_correction(b2, t)) + eps)
        if not is_zero(weight_decay):
            direction = direction + scalar(weight_decay, direction.dtype) * param
        delta = -as_dtype(lr, dtype) * trust_ratio(param, direction) * direction
        return delta, {'exp_avg': exp_avg, 'exp_avg_sq': exp_avg_sq}

    return UpdateRule('lamb', names, zeros_like_buffers(names), update, {'exp_avg': (1, 0), 'exp_avg_sq': (2, 0)})
