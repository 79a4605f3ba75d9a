r"""SM3 (Anil, Gupta, Koren & Singer 2019, "SM3-II"), as pure math, optax ``sm3`` semantics.

For a parameter of rank :math:`k \ge 2` and shape :math:`(d_1, \dots, d_k)` the rule keeps
one accumulator vector :math:`a^{(i)} \in \mathbb{R}^{d_i}` per axis (the cover of the
tensor by its slices), i.e. :math:`\sum_i d_i` numbers instead of :math:`\prod_i d_i`::

    \nu_t[j] = g_t[j]^2 + \min_i a^{(i)}_{t-1}[j_i]            (j = (j_1, ..., j_k))
    a^{(i)}_t[r] = \max_{j : j_i = r} \nu_t[j]
    u_t = g_t / \sqrt{\nu_t + \epsilon}   (0 where \nu_t = 0)
    m_t = \beta m_{t-1} + (1 - \beta) u_t                      (momentum, applied once)
    \theta_t = \theta_{t-1} - \eta_t m_t

For rank 0 and 1 the cover is the elements themselves and :math:`\nu_t = \nu_{t-1} + g_t^2`
(Adagrad). ``momentum=0`` keeps no momentum buffer and steps with :math:`u_t`.

The per-axis accumulators are stored concatenated in one buffer ``accumulator``
of shape ``(d_1 + ... + d_k,)`` (the parameter's own shape for rank < 2). This rule
is therefore *not* element-wise: the engine must run it per parameter. Epsilon
inside the root and the exponential-average momentum follow optax ``sm3``
(whose ``scale_by_sm3`` fails on rank-0 parameters; ours does not); the paper has
no epsilon.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, is_zero
from ._scheduled import scalar


def _accumulator_shape(shape):
    return tuple(shape) if len(shape) < 2 else (sum(shape),)


def sm3(momentum: float = 0.9, eps: float = 1e-8) -> UpdateRule:
    """SM3 rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = sm3(momentum=0.0, eps=0.0)
    >>> p = jnp.zeros((2, 3)); buf = rule.init(p)
    >>> buf['accumulator'].shape                 # 2 + 3 numbers for a 2 x 3 matrix
    (5,)
    >>> g = jnp.array([[1.0, 2.0, 0.0], [0.0, 0.0, 3.0]])
    >>> d, buf = rule.update(g, buf, p, 1.0, 1)
    >>> buf['accumulator'].tolist()              # row maxima of g^2, then column maxima
    [4.0, 9.0, 1.0, 4.0, 9.0]
    >>> d, buf = rule.update(jnp.ones((2, 3)), buf, p, 1.0, 2)
    >>> [round(x, 4) for x in d[0].tolist()]     # -1 / sqrt(1 + min(row 4, col a_j))
    [-0.7071, -0.4472, -0.4472]
    """
    has_momentum = not is_zero(momentum)          # a cycled (traced) momentum always keeps it
    names = ('accumulator',) + (('momentum',) if has_momentum else ())

    def init(param):
        buffers = {'accumulator': jnp.zeros(_accumulator_shape(param.shape), param.dtype)}
        if has_momentum:
            buffers['momentum'] = jnp.zeros_like(param)
        return buffers

    def update(grad, buffers, param, lr, count):
        dtype = grad.dtype
        acc = buffers['accumulator']
        square = grad * grad
        if grad.ndim < 2:
            nu = square + acc
            new_acc = nu
        else:
            covers, start = [], 0
            for axis, size in enumerate(grad.shape):
                shape = [1] * grad.ndim
                shape[axis] = size
                covers.append(jnp.reshape(acc[start:start + size], shape))
                start += size
            nu = square + functools.reduce(jnp.minimum, covers)
            new_acc = jnp.concatenate([
                jnp.max(nu, axis=tuple(a for a in range(grad.ndim) if a != axis)).ravel()
                for axis in range(grad.ndim)])
        scaled = grad * jnp.where(nu > 0, jax.lax.rsqrt(nu + eps), jnp.zeros((), dtype))
        new_buffers = {'accumulator': new_acc}
        if has_momentum:
            beta = scalar(momentum, dtype)
            scaled = (1.0 - beta) * scaled + beta * buffers['momentum']
            new_buffers['momentum'] = scaled
        return -as_dtype(lr, dtype) * scaled, new_buffers

    return UpdateRule('sm3', names, init, update, {'accumulator': (2, 0), 'momentum': (0, 0)}
                      if has_momentum else {'accumulator': (2, 0)})
