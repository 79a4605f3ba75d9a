r"""Stochastic gradient descent with optional (Nesterov) momentum, as pure math.

With momentum :math:`\mu`, dampening :math:`\tau` and step :math:`t \ge 1`::

    b_1 = g_1                                  (the buffer starts at the first gradient)
    b_t = \mu b_{t-1} + (1 - \tau) g_t         (t > 1)
    d_t = g_t + \mu b_t   if nesterov else  b_t
    \theta_t = \theta_{t-1} - \eta_t d_t

This is torch.optim.SGD's convention: the learning rate multiplies the buffer
on the way out, so changing ``lr`` mid-run does not rescale past momentum
(the Keras/Sutskever form ``v = \mu v - \eta g`` differs only when lr changes).
With ``momentum=0`` the rule keeps no buffer at all.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, is_zero, zeros_like_buffers
from ._scheduled import scalar


def sgd(momentum: float = 0.0, dampening: float = 0.0, nesterov: bool = False) -> UpdateRule:
    """SGD rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = sgd(momentum=0.9)
    >>> p = jnp.array([1.0, -2.0]); g = jnp.array([0.5, 0.5])
    >>> buf = rule.init(p)
    >>> for t in (1, 2):
    ...     delta, buf = rule.update(g, buf, p, 0.1, t)
    ...     p = p + delta
    >>> [round(x, 6) for x in p.tolist()]
    [0.855, -2.145]
    """
    if is_zero(momentum):
        def update_plain(grad, buffers, param, lr, count):
            return -as_dtype(lr, grad.dtype) * grad, {}

        return UpdateRule('sgd', (), zeros_like_buffers(()), update_plain, {}, elementwise=True)

    def update_momentum(grad, buffers, param, lr, count):
        previous = buffers['momentum_buffer']
        mu = scalar(momentum, grad.dtype)       # a cycled momentum arrives traced
        accumulated = mu * previous + (1.0 - dampening) * grad
        if not is_zero(dampening):
            # torch starts the buffer at g_1 itself, undamped.
            accumulated = jnp.where(jnp.asarray(count) == 1, grad, accumulated)
        direction = grad + mu * accumulated if nesterov else accumulated
        return -as_dtype(lr, grad.dtype) * direction, {'momentum_buffer': accumulated}

    return UpdateRule('sgd', ('momentum_buffer',), zeros_like_buffers(('momentum_buffer',)),
                      update_momentum, {'momentum_buffer': (1, 0)}, elementwise=True)
