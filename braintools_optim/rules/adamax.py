r"""Adamax (Kingma & Ba 2015, section 7.1), as pure math.

With :math:`\beta_1, \beta_2`, :math:`\epsilon`, step :math:`t \ge 1` and learning rate
:math:`\eta_t`::

    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
    u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)
    \theta_t = \theta_{t-1} - \frac{\eta_t}{1 - \beta_1^t} \frac{m_t}{u_t}

Epsilon is added to :math:`|g_t|` inside the maximum, as torch.optim.Adamax and
optax ``adamax`` do (the paper has no epsilon); the infinity norm needs no bias
correction.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, bias_correction, zeros_like_buffers
from ._scheduled import scalar


def adamax(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> UpdateRule:
    """Adamax rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = adamax()
    >>> p = jnp.array([1.0, -2.0]); g = jnp.array([0.5, -3.0])
    >>> delta, buffers = rule.update(g, rule.init(p), p, 0.1, 1)
    >>> [round(x, 6) for x in delta.tolist()]   # the first step is -lr * sign(g)
    [-0.1, 0.1]
    >>> [round(x, 6) for x in buffers['exp_inf'].tolist()]
    [0.5, 3.0]
    """
    names = ('exp_avg', 'exp_inf')

    def update(grad, buffers, param, lr, count):
        dtype = grad.dtype
        beta1 = scalar(b1, dtype)
        exp_avg = beta1 * buffers['exp_avg'] + (1.0 - beta1) * grad
        exp_inf = jnp.maximum(b2 * buffers['exp_inf'], jnp.abs(grad) + eps)
        step_size = as_dtype(lr, dtype) / bias_correction(beta1, as_dtype(count, dtype))
        delta = -step_size * exp_avg / exp_inf
        return delta, {'exp_avg': exp_avg, 'exp_inf': exp_inf}

    return UpdateRule('adamax', names, zeros_like_buffers(names), update,
                      {'exp_avg': (1, 0), 'exp_inf': (1, 0)}, elementwise=True)
