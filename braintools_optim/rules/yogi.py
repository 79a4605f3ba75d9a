r"""Yogi (Zaheer et al. 2018), as pure math, optax ``yogi`` semantics.

With :math:`\beta_1, \beta_2`, :math:`\epsilon`, step :math:`t \ge 1` and learning rate
:math:`\eta_t`, both moments starting at ``initial_accumulator_value`` :math:`a`::

    m_0 = v_0 = a
    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
    v_t = v_{t-1} - (1 - \beta_2) \operatorname{sign}(v_{t-1} - g_t^2) \, g_t^2
    \theta_t = \theta_{t-1} - \eta_t \frac{m_t / (1 - \beta_1^t)}{\sqrt{v_t / (1 - \beta_2^t) + \epsilon_{root}} + \epsilon}

The additive update of :math:`v` (instead of Adam's multiplicative one) lets the
second moment grow only as fast as :math:`g^2` demands. As optax (and braintools),
the moments are bias-corrected and both start at :math:`a = 10^{-6}`; the paper's
Algorithm 2 has no bias correction and initialises :math:`v_0` from a first batch.
torch has no Yogi.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, bias_correction
from ._scheduled import scalar


def yogi(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-3, eps_root: float = 0.0,
         initial_accumulator_value: float = 1e-6) -> UpdateRule:
    """Yogi rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = yogi(initial_accumulator_value=0.0, eps=0.0)
    >>> p = jnp.array([1.0, -2.0]); g = jnp.array([0.5, -3.0])
    >>> delta, buffers = rule.update(g, rule.init(p), p, 0.1, 1)
    >>> [round(x, 4) for x in delta.tolist()]   # from zero moments the first step is -lr * sign(g)
    [-0.1, 0.1]
    """
    names = ('exp_avg', 'exp_avg_sq')

    def init(param):
        return {name: jnp.full_like(param, initial_accumulator_value) for name in names}

    def update(grad, buffers, param, lr, count):
        dtype = grad.dtype
        t = as_dtype(count, dtype)
        square = grad * grad
        beta1 = scalar(b1, dtype)
        exp_avg = (1.0 - beta1) * grad + beta1 * buffers['exp_avg']
        old_sq = buffers['exp_avg_sq']
        exp_avg_sq = old_sq - (1.0 - b2) * jnp.sign(old_sq - square) * square
        corrected_avg = exp_avg / bias_correction(beta1, t)
        corrected_sq = exp_avg_sq / bias_correction(b2, t)
        delta = -as_dtype(lr, dtype) * corrected_avg / (jnp.sqrt(corrected_sq + eps_root) + eps)
        return delta, {'exp_avg': exp_avg, 'exp_avg_sq': exp_avg_sq}

    return UpdateRule('yogi', names, init, update, {'exp_avg': (1, 0), 'exp_avg_sq': (2, 0)}, elementwise=True)
