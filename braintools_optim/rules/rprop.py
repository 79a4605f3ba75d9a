r"""Rprop (Riedmiller & Braun 1993; the "Rprop-" variant of torch.optim.Rprop), as pure math.

With :math:`0 < \eta^- < 1 < \eta^+`, step-size bounds :math:`[\Delta_{min}, \Delta_{max}]`
and learning rate :math:`\eta_t`::

    s_t = \operatorname{sign}(g_t \, g'_{t-1})          (g'_0 = 0)
    f_t = \eta^+ if s_t > 0,  \eta^- if s_t < 0,  1 otherwise
    \Delta_t = \operatorname{clip}(\Delta_{t-1} \, f_t \, \eta_t / \eta_{t-1},
                                   \Delta_{min}, \Delta_{max}),   \Delta_0 \, \eta_1 / \eta_0 := \eta_1
    g'_t = 0 if s_t < 0 else g_t                     (skip the step after a sign change)
    \theta_t = \theta_{t-1} - \operatorname{sign}(g'_t) \, \Delta_t

The learning rate is the *initial* step size, as in torch. After that the step
sizes adapt on their own, and the learning rate acts only through its changes:
each step rescales every step size by :math:`\eta_t / \eta_{t-1}` before the
sign-based adaptation and the clipping. With a constant learning rate this is
torch's Rprop exactly (the ratio is exactly 1); with an ``LRScheduler`` the
schedule multiplies the adapted step sizes (torch reads ``lr`` only once, at
the first step, so a torch scheduler has no effect). The bounds stay absolute
and win: a learning rate of 0 gives steps of :math:`\Delta_{min}`, and the step
after a zero learning rate starts again from :math:`\eta_t`, like a first step.

Buffers: ``prev`` (:math:`g'_t`, the gradient's unit), ``step_size``
(:math:`\Delta_t`, the parameter's unit) and ``prev_lr`` (:math:`\eta_t`, a scalar
per parameter).

optax 0.2.8 ``rprop`` applies each step one iteration late (its first update is
zero) and does not clip a step size whose sign product is 0; we follow torch.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype


def rprop(eta_minus: float = 0.5, eta_plus: float = 1.2, min_step_size: float = 1e-6,
          max_step_size: float = 50.0) -> UpdateRule:
    """Rprop rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = rprop()
    >>> p = jnp.array([1.0, 1.0]); buf = rule.init(p)
    >>> steps = []
    >>> for g in ([1.0, 1.0], [1.0, -1.0], [1.0, 1.0]):
    ...     d, buf = rule.update(jnp.array(g), buf, p, 0.1, 1)
    ...     steps.append([round(x, 4) + 0.0 for x in d.tolist()])
    >>> steps    # same sign: step x 1.2; sign change: step x 0.5 and skipped
    [[-0.1, -0.1], [-0.12, 0.0], [-0.144, -0.05]]
    """
    names = ('prev', 'step_size', 'prev_lr')

    def init(param):
        return {'prev': jnp.zeros_like(param), 'step_size': jnp.zeros_like(param),
                'prev_lr': jnp.zeros((), param.dtype)}

    def update(grad, buffers, param, lr, count):
        dtype = grad.dtype
        lr = as_dtype(lr, dtype)
        prev_lr = buffers['prev_lr']
        started = prev_lr > 0
        ratio = lr / jnp.where(started, prev_lr, jnp.ones_like(prev_lr))
        previous = jnp.where(started, buffers['step_size'] * ratio, lr)
        sign = jnp.sign(grad * buffers['prev'])
        factor = jnp.where(sign > 0, jnp.asarray(eta_plus, dtype),
                           jnp.where(sign < 0, jnp.asarray(eta_minus, dtype), jnp.ones((), dtype)))
        step_size = jnp.clip(previous * factor, min_step_size, max_step_size)
        kept = jnp.where(sign < 0, jnp.zeros_like(grad), grad)
        delta = -jnp.sign(kept) * step_size
        return delta, {'prev': kept, 'step_size': step_size, 'prev_lr': lr}

    return UpdateRule('rprop', names, init, update,
                      {'prev': (1, 0), 'step_size': (0, 1), 'prev_lr': (0, 1)})
