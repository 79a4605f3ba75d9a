r"""RAdam (Liu et al. 2020), as pure math, torch.optim.RAdam semantics.

With :math:`\beta_1, \beta_2`, :math:`\epsilon`, step :math:`t \ge 1` and learning rate
:math:`\eta_t`::

    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2
    \rho_\infty = 2 / (1 - \beta_2) - 1
    \rho_t = \rho_\infty - 2 t \beta_2^t / (1 - \beta_2^t)
    r_t = \sqrt{\frac{(\rho_t - 4)(\rho_t - 2)\rho_\infty}{(\rho_\infty - 4)(\rho_\infty - 2)\rho_t}}
    \theta_t = \theta_{t-1} - \eta_t \frac{m_t}{1 - \beta_1^t} \cdot
               \begin{cases} r_t \sqrt{1 - \beta_2^t} / (\sqrt{v_t} + \epsilon) & \rho_t > 5 \\
                             1 & \text{otherwise (un-adapted momentum SGD)} \end{cases}

Conventions:

* threshold: torch rectifies when :math:`\rho_t > 5`; optax ``radam`` (its
  ``threshold=5.0``) when :math:`\rho_t \ge 5` — the same except at an exact tie,
  which no :math:`\beta_2 \in (0, 1)` of practical interest reaches at an integer
  :math:`t`. The paper's Algorithm 2 uses :math:`\rho_t > 4`.
* epsilon is added to :math:`\sqrt{v_t}` *before* the bias correction (torch);
  optax adds it after (:math:`\hat m / (\sqrt{\hat v} + \epsilon)`), which differs by
  :math:`O(\epsilon / \sqrt{v})` relative.
* :math:`\rho_t` is computed without cancellation: with :math:`x = -t\log\beta_2`,
  :math:`\rho_t = (\rho_\infty + 2/\log\beta_2) + (2/(-\log\beta_2))\,h(x)` and
  :math:`h(x) = 1 - x/(e^x - 1)` evaluated by its Bernoulli series for small
  :math:`x`. The direct formula subtracts two numbers near :math:`\rho_\infty`
  (1999 for :math:`\beta_2 = 0.999`) and loses 4-5 digits in float32 (optax does
  this); torch evaluates it in float64 on the host. Ours is accurate to a few
  ulp in the parameters' dtype.
"""

from __future__ import annotations

import decimal
import math

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, bias_correction, zeros_like_buffers
from ._scheduled import scalar

# x / (e^x - 1) = sum_n B_n x^n / n!, so h(x) = 1 - x/(e^x - 1) =
# x/2 - x^2/12 + x^4/720 - x^6/30240 + x^8/1209600 - x^10/47900160 + 691 x^12/1307674368000 - ...
_H_SERIES = (0.5, -1.0 / 12.0, 0.0, 1.0 / 720.0, 0.0, -1.0 / 30240.0, 0.0, 1.0 / 1209600.0, 0.0,
             -1.0 / 47900160.0, 0.0, 691.0 / 1307674368000.0, 0.0, -1.0 / 74724249600.0)
_SERIES_LIMIT = 0.5   # next term ~ 3.4e-13 x^16: below 1e-17 relative for x < 0.5


def _one_minus_x_over_expm1(x):
    """``1 - x / expm1(x)`` for ``x > 0``, accurate to a few ulp."""
    small = jnp.minimum(x, _SERIES_LIMIT)
    series = jnp.zeros_like(x)
    for coef in reversed(_H_SERIES):
        series = series * small + coef
    series = series * small
    direct = 1.0 - x / jnp.expm1(jnp.maximum(x, _SERIES_LIMIT))
    return jnp.where(x < _SERIES_LIMIT, series, direct)


def sma_length(b2: float, t):
    r"""RAdam's :math:`\rho_t` at step ``t`` (an array; its dtype is kept).

    >>> import jax.numpy as jnp
    >>> [round(float(sma_length(0.999, jnp.float32(t))), 4) for t in (1, 5, 6)]   # rectified from t = 6
    [1.0, 4.996, 5.9942]
    """
    if b2 == 0.0:
        return jnp.ones_like(t)
    neg_log = -math.log(b2)
    with decimal.localcontext() as ctx:       # rho_inf - 2/(-log b2) ~ -(1 - b2)/6 cancels
        ctx.prec = 50                         # in float64: evaluate it exactly, once
        beta = decimal.Decimal(b2)
        offset = float(2 / (1 - beta) - 1 - 2 / -beta.ln())
    return offset + (2.0 / neg_log) * _one_minus_x_over_expm1(t * neg_log)


def radam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, threshold: float = 5.0) -> UpdateRule:
    """RAdam rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = radam()
    >>> p = jnp.array([1.0]); g = jnp.array([2.0])
    >>> delta, buffers = rule.update(g, rule.init(p), p, 0.1, 1)
    >>> round(float(delta[0]), 6)    # rho_1 = 1 <= 5: -lr * m / (1 - b1) = -lr * g
    -0.2
    """
    names = ('exp_avg', 'exp_avg_sq')
    rho_inf = 2.0 / (1.0 - b2) - 1.0
    rect_const = rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0)) if rho_inf > 4.0 else 0.0

    def update(grad, buffers, param, lr, count):
        dtype = grad.dtype
        t = as_dtype(count, dtype)
        beta1 = scalar(b1, dtype)
        exp_avg = beta1 * buffers['exp_avg'] + (1.0 - beta1) * grad
        exp_avg_sq = b2 * buffers['exp_avg_sq'] + (1.0 - b2) * grad * grad
        corrected_avg = exp_avg / bias_correction(beta1, t)
        rho = sma_length(b2, t)
        rectified = rho > threshold
        safe_rho = jnp.where(rectified, rho, threshold + 1.0)
        rect = jnp.sqrt((safe_rho - 4.0) * (safe_rho - 2.0) * rect_const / safe_rho)
        adaptive = jnp.sqrt(bias_correction(b2, t)) / (jnp.sqrt(exp_avg_sq) + eps)
        lr = as_dtype(lr, dtype)
        delta = jnp.where(rectified, -(corrected_avg * lr * adaptive * rect), -(corrected_avg * lr))
        return delta, {'exp_avg': exp_avg, 'exp_avg_sq': exp_avg_sq}

    return UpdateRule('radam', names, zeros_like_buffers(names), update,
                      {'exp_avg': (1, 0), 'exp_avg_sq': (2, 0)}, elementwise=True)
