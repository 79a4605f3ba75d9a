r"""Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms"), as pure math.

With :math:`\beta_1, \beta_2` and learning rate :math:`\eta_t`::

    c_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
    \theta_t = \theta_{t-1} - \eta_t \operatorname{sign}(c_t)
    m_t = \beta_2 m_{t-1} + (1 - \beta_2) g_t

:math:`\beta_1` interpolates the update direction, :math:`\beta_2` tracks the
momentum (the paper's and optax's convention; defaults 0.9 and 0.99). Every
coordinate moves by exactly :math:`\eta_t` (or 0 where :math:`c_t = 0`).
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, zeros_like_buffers
from ._scheduled import scalar


def lion(b1: float = 0.9, b2: float = 0.99) -> UpdateRule:
    """Lion rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = lion()
    >>> p = jnp.zeros(3); g = jnp.array([0.3, -7.0, 0.0])
    >>> delta, buffers = rule.update(g, rule.init(p), p, 0.01, 1)
    >>> [round(x, 6) for x in delta.tolist()], [round(x, 6) for x in buffers['exp_avg'].tolist()]
    ([-0.01, 0.01, -0.0], [0.003, -0.07, 0.0])
    """

    def update(grad, buffers, param, lr, count):
        exp_avg = buffers['exp_avg']
        beta1 = scalar(b1, grad.dtype)
        direction = jnp.sign((1.0 - beta1) * grad + beta1 * exp_avg)
        new_avg = (1.0 - b2) * grad + b2 * exp_avg
        return -as_dtype(lr, grad.dtype) * direction, {'exp_avg': new_avg}

    return UpdateRule('lion', ('exp_avg',), zeros_like_buffers(('exp_avg',)), update, {'exp_avg': (1, 0)}, elementwise=True)
