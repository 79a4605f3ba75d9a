r"""Adagrad (Duchi, Hazan & Singer 2011), as pure math, torch.optim.Adagrad semantics.

With learning-rate decay :math:`\gamma`, :math:`\epsilon`, step :math:`t \ge 1` and
learning rate :math:`\eta_t`::

    s_0 = s_{init}                                   (``initial_accumulator_value``)
    s_t = s_{t-1} + g_t^2
    \tilde\eta_t = \eta_t / (1 + (t - 1) \gamma)
    \theta_t = \theta_{t-1} - \tilde\eta_t \frac{g_t}{\sqrt{s_t} + \epsilon}

Epsilon is added *outside* the square root (torch, braintools' docs, Keras).
optax's ``adagrad`` divides by :math:`\sqrt{s_t + \epsilon}` and returns 0 where
:math:`s_t = 0`; the two differ by :math:`O(\epsilon / \sqrt{s})`.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype


def adagrad(lr_decay: float = 0.0, initial_accumulator_value: float = 0.0,
            eps: float = 1e-10) -> UpdateRule:
    """Adagrad rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = adagrad(lr_decay=0.5)
    >>> p = jnp.array([1.0]); buf = rule.init(p)
    >>> d1, buf = rule.update(jnp.array([3.0]), buf, p, 0.1, 1)   # -0.1 * 3 / 3
    >>> d2, buf = rule.update(jnp.array([4.0]), buf, p, 0.1, 2)   # -(0.1 / 1.5) * 4 / 5
    >>> [round(float(d1[0]), 6), round(float(d2[0]), 6), float(buf['sum'][0])]
    [-0.1, -0.053333, 25.0]
    """

    def init(param):
        return {'sum': jnp.full_like(param, initial_accumulator_value)}

    def update(grad, buffers, param, lr, count):
        dtype = grad.dtype
        total = buffers['sum'] + grad * grad
        step_lr = as_dtype(lr, dtype)
        if lr_decay != 0.0:
            step_lr = step_lr / (1.0 + (as_dtype(count, dtype) - 1.0) * lr_decay)
        delta = -step_lr * grad / (jnp.sqrt(total) + eps)
        return delta, {'sum': total}

    return UpdateRule('adagrad', ('sum',), init, update, {'sum': (2, 0)}, elementwise=True)
