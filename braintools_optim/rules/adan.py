r"""Adan (Xie et al. 2022, Algorithm 1), as pure math, optax ``adan`` semantics.

With :math:`\beta_1, \beta_2, \beta_3` (the code convention: 0.98, 0.92, 0.99; the
paper writes :math:`1 - \beta`), :math:`\epsilon`, step :math:`t \ge 1` and learning rate
:math:`\eta_t`::

    \Delta g_t = g_t - g_{t-1}   (\Delta g_1 = 0)
    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) \Delta g_t
    n_t = \beta_3 n_{t-1} + (1 - \beta_3) (g_t + (1 - \beta_2) \Delta g_t)^2
    \hat m_t, \hat v_t, \hat n_t = m_t / (1 - \beta_1^t),\; v_t / (1 - \beta_2^t),\; n_t / (1 - \beta_3^t)
    \theta_t = \theta_{t-1} - \eta_t \frac{\hat m_t + (1 - \beta_2) \hat v_t}{\sqrt{\hat n_t + \epsilon_{root}} + \epsilon}

Buffers: ``exp_avg`` (:math:`m`), ``exp_avg_diff`` (:math:`v`), ``exp_avg_sq``
(:math:`n`) and ``prev_grad`` (:math:`g_{t-1}`).
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, bias_correction, zeros_like_buffers
from ._scheduled import scalar


def adan(b1: float = 0.98, b2: float = 0.92, b3: float = 0.99, eps: float = 1e-8,
         eps_root: float = 0.0) -> UpdateRule:
    """Adan rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = adan()
    >>> p = jnp.array([1.0, -2.0]); g = jnp.array([0.5, -3.0])
    >>> delta, buffers = rule.update(g, rule.init(p), p, 0.1, 1)
    >>> [round(x, 4) for x in delta.tolist()]   # the first step is -lr * sign(g)
    [-0.1, 0.1]
    """
    names = ('exp_avg', 'exp_avg_diff', 'exp_avg_sq', 'prev_grad')

    def update(grad, buffers, param, lr, count):
        dtype = grad.dtype
        t = as_dtype(count, dtype)
        diff = jnp.where(jnp.asarray(count) == 1, jnp.zeros_like(grad), grad - buffers['prev_grad'])
        beta1 = scalar(b1, dtype)
        exp_avg = (1.0 - beta1) * grad + beta1 * buffers['exp_avg']
        exp_avg_diff = (1.0 - b2) * diff + b2 * buffers['exp_avg_diff']
        mixed = grad + (1.0 - b2) * diff
        exp_avg_sq = (1.0 - b3) * (mixed * mixed) + b3 * buffers['exp_avg_sq']
        numerator = exp_avg / bias_correction(beta1, t) + (1.0 - b2) * (exp_avg_diff / bias_correction(b2, t))
        denom = jnp.sqrt(exp_avg_sq / bias_correction(b3, t) + eps_root) + eps
        delta = -as_dtype(lr, dtype) * (numerator / denom)
        return delta, {'exp_avg': exp_avg, 'exp_avg_diff': exp_avg_diff, 'exp_avg_sq': exp_avg_sq,
                       'prev_grad': grad}

    return UpdateRule('adan', names, zeros_like_buffers(names), update,
                      {'exp_avg': (1, 0), 'exp_avg_diff': (1, 0), 'exp_avg_sq': (2, 0),
                       'prev_grad': (1, 0)}, elementwise=True)
