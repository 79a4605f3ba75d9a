r"""Adadelta (Zeiler 2012), as pure math.

With decay :math:`\rho`, :math:`\epsilon` and learning rate :math:`\eta_t`::

    E[g^2]_t = \rho E[g^2]_{t-1} + (1 - \rho) g_t^2
    \Delta_t = \frac{\sqrt{E[\Delta^2]_{t-1} + \epsilon}}{\sqrt{E[g^2]_t + \epsilon}} g_t
    E[\Delta^2]_t = \rho E[\Delta^2]_{t-1} + (1 - \rho) \Delta_t^2
    \theta_t = \theta_{t-1} - \eta_t \Delta_t

The learning rate scales the step after the accumulator has seen the unscaled
:math:`\Delta_t` (torch's convention). Zeiler's paper and neon have no learning
rate: that is ``lr=1.0``. Units are consistent: :math:`\Delta` carries the
parameter's unit, :math:`E[g^2]` the gradient's unit squared.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, zeros_like_buffers


def adadelta(rho: float = 0.9, eps: float = 1e-6) -> UpdateRule:
    """Adadelta rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = adadelta(rho=0.95)
    >>> p = jnp.array([1.0]); g = jnp.array([2.0])
    >>> delta, buffers = rule.update(g, rule.init(p), p, 1.0, 1)
    >>> round(float(delta[0]), 6)   # -sqrt(eps / (0.05 * 4 + eps)) * 2
    -0.004472
    """
    names = ('square_avg', 'acc_delta')

    def update(grad, buffers, param, lr, count):
        square_avg = rho * buffers['square_avg'] + (1.0 - rho) * grad * grad
        acc_delta = buffers['acc_delta']
        # One square root of the ratio: within an ulp or two of sqrt(a)/sqrt(b), and XLA:CPU
        # no longer writes two full-size square roots out as temporaries (~2x faster there).
        step = jnp.sqrt((acc_delta + eps) / (square_avg + eps)) * grad
        acc_delta = rho * acc_delta + (1.0 - rho) * step * step
        delta = -as_dtype(lr, grad.dtype) * step
        return delta, {'square_avg': square_avg, 'acc_delta': acc_delta}

    return UpdateRule('adadelta', names, zeros_like_buffers(names), update,
                      {'square_avg': (2, 0), 'acc_delta': (0, 2)}, elementwise=True)
