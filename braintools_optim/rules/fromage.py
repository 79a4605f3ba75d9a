r"""Fromage (Bernstein, Vahdat, Yue & Liu 2020), as pure math.

Per parameter tensor :math:`\theta`, with learning rate :math:`\eta_t` and a floor
:math:`\nu` on the norms (``min_norm``)::

    \lVert x \rVert_\nu = \max(\lVert x \rVert_2, \nu)
    \theta_t = \frac{1}{\sqrt{1 + \eta_t^2}}
               \left(\theta_{t-1} - \eta_t \frac{\lVert\theta_{t-1}\rVert_\nu}{\lVert g_t\rVert_\nu} g_t\right)

The step is relative: each tensor moves by :math:`\eta_t` times its own norm, and
the division by :math:`\sqrt{1+\eta_t^2}` keeps the norm from growing (for a
gradient orthogonal to :math:`\theta` it is preserved exactly). This is the
paper's Algorithm 1 and its authors' code, and what optax ``fromage`` computes
(optax writes it as :math:`(m - 1)\theta - \eta m \cdot \text{trust}\cdot g` with
:math:`m = 1/\sqrt{1+\eta^2}`, and so do we, with :math:`m - 1` evaluated without
cancellation). The norms are per tensor, so this rule is *not* element-wise.
A tensor whose norm is below :math:`\nu` (e.g. zero-initialised biases) moves by
about :math:`\eta\nu` per step: Fromage is meant for weight matrices.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype


def _floored_norm(x, floor):
    return jnp.maximum(jnp.sqrt(jnp.sum(x * x)), floor)


def fromage(min_norm: float = 1e-6) -> UpdateRule:
    """Fromage rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = fromage()
    >>> p = jnp.array([3.0, 0.0]); g = jnp.array([0.0, 7.0])   # gradient orthogonal to p
    >>> delta, _ = rule.update(g, {}, p, 0.75, 1)
    >>> [round(x, 6) for x in (p + delta).tolist()]            # (p - 0.75 * 3 * g / 7) / 1.25
    [2.4, -1.8]
    """

    def update(grad, buffers, param, lr, count):
        dtype = grad.dtype
        lr = as_dtype(lr, dtype)
        param_norm = _floored_norm(param, min_norm)
        grad_norm = _floored_norm(grad, min_norm)
        zero = jnp.logical_or(param_norm == 0.0, grad_norm == 0.0)   # only when min_norm == 0
        trust = jnp.where(zero, jnp.ones((), dtype), param_norm / jnp.where(zero, 1.0, grad_norm))
        root = jnp.sqrt(1.0 + lr * lr)
        mult = 1.0 / root
        mult_minus_one = -(lr * lr) / (root * (1.0 + root))      # = 1/sqrt(1+lr^2) - 1
        delta = -(lr * mult) * (grad * trust) + mult_minus_one * param
        return delta, {}

    return UpdateRule('fromage', (), lambda param: {}, update, {})
