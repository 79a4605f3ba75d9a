r"""NovoGrad (Ginsburg et al. 2019), as pure math, optax ``novograd`` semantics.

Per parameter tensor (layer) :math:`\theta`, with :math:`\beta_1, \beta_2`, :math:`\epsilon`,
weight decay :math:`\lambda`, step :math:`t \ge 1` and learning rate :math:`\eta_t`::

    n_t = \lVert g_t \rVert_2^2                                  (a scalar per tensor)
    v_t = n_t   if v_{t-1} = 0 (the first step),   else   \beta_2 v_{t-1} + (1 - \beta_2) n_t
    u_t = g_t / (\sqrt{v_t} + \epsilon) + \lambda \theta_{t-1}
    m_t = \beta_1 m_{t-1} + u_t                                  (m_0 = 0, no (1 - \beta_1))
    \theta_t = \theta_{t-1} - \eta_t m_t

The second moment is one number per tensor (buffer ``exp_avg_sq`` of shape
``()``), so this rule is *not* element-wise: the engine must run it on each
parameter separately. Weight decay is part of the rule (added to the normalised
gradient, inside the momentum), as in the paper and optax; it is neither the
engine's coupled nor its decoupled decay. No bias correction.

optax starts the average at its global step 1 (:math:`v_1 = n_1`); we start it at
the parameter's first non-zero gradient, which is the same for a parameter
trained from the first step, and avoids a :math:`1/\sqrt{1-\beta_2}` (x31.6 for 0.999) first
step for a parameter registered after training began or whose first gradients
were exactly zero.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, is_zero
from ._scheduled import scalar


def novograd(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0) -> UpdateRule:
    """NovoGrad rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = novograd(eps=0.0)
    >>> p = jnp.zeros((2, 2)); g = jnp.array([[3.0, 0.0], [0.0, 4.0]])
    >>> delta, buffers = rule.update(g, rule.init(p), p, 0.1, 1)
    >>> float(buffers['exp_avg_sq']), buffers['exp_avg_sq'].shape    # ||g||^2, one per tensor
    (25.0, ())
    >>> [round(x, 6) + 0.0 for x in delta.ravel().tolist()]        # -0.1 * g / ||g||
    [-0.06, 0.0, 0.0, -0.08]
    """
    names = ('exp_avg', 'exp_avg_sq')

    def init(param):
        return {'exp_avg': jnp.zeros_like(param), 'exp_avg_sq': jnp.zeros((), param.dtype)}

    def update(grad, buffers, param, lr, count):
        dtype = grad.dtype
        norm_sq = jnp.sum(grad * grad).astype(dtype)
        averaged = (1.0 - b2) * norm_sq + b2 * buffers['exp_avg_sq']
        exp_avg_sq = jnp.where(buffers['exp_avg_sq'] == 0, norm_sq, averaged)
        normalised = grad / (jnp.sqrt(exp_avg_sq) + eps)
        if not is_zero(weight_decay):
            normalised = normalised + scalar(weight_decay, dtype) * param
        exp_avg = scalar(b1, dtype) * buffers['exp_avg'] + normalised
        return -as_dtype(lr, dtype) * exp_avg, {'exp_avg': exp_avg, 'exp_avg_sq': exp_avg_sq}

    return UpdateRule('novograd', names, init, update, {'exp_avg': (0, 0), 'exp_avg_sq': (2, 0)})
