r"""RMSprop (Tieleman & Hinton 2012), as pure math.

With decay :math:`\alpha`, :math:`\epsilon`, momentum :math:`\mu`::

    v_t = \alpha v_{t-1} + (1 - \alpha) g_t^2
    \bar g_t = \alpha \bar g_{t-1} + (1 - \alpha) g_t          (centered only)
    s_t = v_t - \bar g_t^2  if centered else v_t
    u_t = g_t / D(s_t)
    b_t = \mu b_{t-1} + u_t,   u_t \leftarrow b_t                 (momentum > 0 only)
    \theta_t = \theta_{t-1} - \eta_t u_t

The denominator ``D`` is where libraries disagree; ``eps_placement`` picks it:

==============  ==========================  =========================================
placement       D(s)                        used by
==============  ==========================  =========================================
``'outside'``   ``sqrt(s) + eps``           torch, MXNet 2.0 (our default)
``'inside'``    ``sqrt(s + eps)``           optax, Keras 3 / TF1, MXNet 1.x
``'both'``      ``sqrt(s + eps) + eps``     neon
==============  ==========================  =========================================

``initial_accumulator_value`` starts :math:`v_0` there (TF1 and optax's
``initial_scale`` use 1.0; torch uses 0).
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, is_zero
from ._scheduled import scalar

EPS_PLACEMENTS = ('outside', 'inside', 'both')


def rmsprop(alpha: float = 0.99, eps: float = 1e-8, momentum: float = 0.0,
            centered: bool = False, eps_placement: str = 'outside',
            initial_accumulator_value: float = 0.0) -> UpdateRule:
    """RMSprop rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = rmsprop(alpha=0.95, eps=1e-6, eps_placement='both')   # neon's RMSProp
    >>> p = jnp.array([1.0]); g = jnp.array([2.0])
    >>> delta, buffers = rule.update(g, rule.init(p), p, 0.002, 1)
    >>> round(float(delta[0]), 6)   # -0.002 * 2 / (sqrt(0.05 * 4 + 1e-6) + 1e-6)
    -0.008944
    """
    if eps_placement not in EPS_PLACEMENTS:
        raise ValueError(f"eps_placement must be one of {EPS_PLACEMENTS}, got {eps_placement!r}")
    names = ('square_avg',) + (('grad_avg',) if centered else ()) + \
            (() if is_zero(momentum) else ('momentum_buffer',))

    def init(param):
        buffers = {name: jnp.zeros_like(param) for name in names}
        buffers['square_avg'] = jnp.full_like(param, initial_accumulator_value)
        return buffers

    def denominator(s):
        if eps_placement == 'outside':
            return jnp.sqrt(s) + eps
        if eps_placement == 'inside':
            return jnp.sqrt(s + eps)
        return jnp.sqrt(s + eps) + eps

    def update(grad, buffers, param, lr, count):
        square_avg = alpha * buffers['square_avg'] + (1.0 - alpha) * grad * grad
        new_buffers = {'square_avg': square_avg}
        s = square_avg
        if centered:
            grad_avg = alpha * buffers['grad_avg'] + (1.0 - alpha) * grad
            new_buffers['grad_avg'] = grad_avg
            s = square_avg - grad_avg * grad_avg
        step = grad / denominator(s)
        if not is_zero(momentum):
            step = scalar(momentum, grad.dtype) * buffers['momentum_buffer'] + step
            new_buffers['momentum_buffer'] = step
        return -as_dtype(lr, grad.dtype) * step, new_buffers

    units = {'square_avg': (2, 0), 'grad_avg': (1, 0), 'momentum_buffer': (0, 0)}
    return UpdateRule('rmsprop', names, init, update, {name: units[name] for name in names}, elementwise=True)
