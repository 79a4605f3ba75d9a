r"""LARS (You et al. 2017), as pure math, optax ``lars`` semantics.

Per parameter tensor :math:`\theta`, with trust coefficient :math:`c`, :math:`\epsilon`,
momentum :math:`\mu`, step :math:`t \ge 1` and learning rate :math:`\eta_t`; ``g`` is
the gradient *after* the stateful layer added the (coupled) weight decay
:math:`\lambda\theta`::

    \tau_t = c \lVert\theta_{t-1}\rVert_2 / (\lVert g_t\rVert_2 + \epsilon)   (1 if either norm is 0)
    u_t = \eta_t \tau_t g_t
    b_t = \mu b_{t-1} + u_t                        (b_0 = 0)
    d_t = u_t + \mu b_t  (nesterov)   or   b_t
    \theta_t = \theta_{t-1} - d_t

The learning rate and the trust ratio enter *before* the momentum buffer, as in
the paper's Algorithm 1 and optax (torch-style SGD applies the learning rate on
the way out; the two agree while the learning rate is constant). The trust
ratio is one number per tensor, so the engine runs the rule per parameter.
With ``momentum=0`` no buffer is kept.
"""

from __future__ import annotations

from ._base import UpdateRule, as_dtype, is_zero, zeros_like_buffers
from ._scheduled import scalar
from .lamb import trust_ratio


def lars(momentum: float = 0.9, trust_coefficient: float = 0.001, eps: float = 1e-8,
         nesterov: bool = False) -> UpdateRule:
    """LARS rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = lars(momentum=0.0, trust_coefficient=0.01, eps=0.0)
    >>> p = jnp.array([3.0, 4.0]); g = jnp.array([0.0, 2.0])
    >>> delta, _ = rule.update(g, rule.init(p), p, 1.0, 1)
    >>> [round(x, 6) + 0.0 for x in delta.tolist()]      # -lr * c * ||p|| / ||g|| * g
    [0.0, -0.05]
    """
    def scaled(grad, param, lr):
        return as_dtype(lr, grad.dtype) * trust_ratio(param, grad, trust_coefficient, eps) * grad

    if is_zero(momentum):
        def update_plain(grad, buffers, param, lr, count):
            return -scaled(grad, param, lr), {}

        return UpdateRule('lars', (), zeros_like_buffers(()), update_plain, {})

    def update(grad, buffers, param, lr, count):
        step = scaled(grad, param, lr)
        mu = scalar(momentum, grad.dtype)          # a scheduler's cycled momentum arrives traced
        buffer = mu * buffers['momentum_buffer'] + step
        direction = step + mu * buffer if nesterov else buffer
        return -direction, {'momentum_buffer': buffer}

    return UpdateRule('lars', ('momentum_buffer',), zeros_like_buffers(('momentum_buffer',)), update,
                      {'momentum_buffer': (0, 1)})
