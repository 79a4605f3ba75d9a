r"""Pure gradient and parameter processing shared by every optimizer.

The stateful layer applies these, on mantissas, in this fixed order:

1. ``rescale``         :math:`g \leftarrow s\,g`  (MXNet's ``rescale_grad``, e.g. ``1/batch``)
2. ``clip_by_value``   :math:`g \leftarrow \mathrm{clip}(g, -c, c)` element-wise
3. ``clip_by_global_norm``
   :math:`g \leftarrow g \cdot \min(1, c / \lVert g \rVert_2)`, the norm taken over
   all registered parameters together (optax's convention; torch's
   ``clip_grad_norm_`` divides by :math:`\lVert g\rVert + 10^{-6}` instead)
4. ``add_coupled_decay``  :math:`g \leftarrow g + \lambda\theta` (L2 penalty), for
   optimizers documented as *coupled*
5. the update rule itself
6. ``decoupled_decay``  :math:`\theta \leftarrow \theta - \eta\lambda\theta` (AdamW),
   for optimizers documented as *decoupled*
7. ``clip_by_value`` on the new parameters (neon's ``param_clip_value``)
"""

from __future__ import annotations

from typing import Sequence, List

import jax
import jax.numpy as jnp

Array = jax.Array


def rescale(grads: Sequence[Array], factor: float) -> List[Array]:
    """Multiply every gradient by ``factor``.

    >>> rescale([jnp.array([2.0, 4.0])], 0.5)[0].tolist()
    [1.0, 2.0]
    """
    if factor == 1.0:
        return list(grads)
    return [g * factor for g in grads]


def clip_by_value(arrays: Sequence[Array], limit: float) -> List[Array]:
    """Clip every element to ``[-limit, limit]``.

    >>> clip_by_value([jnp.array([-3.0, 0.5, 3.0])], 1.0)[0].tolist()
    [-1.0, 0.5, 1.0]
    """
    return [jnp.clip(a, -limit, limit) for a in arrays]


def global_norm(grads: Sequence[Array]) -> Array:
    """The L2 norm of all gradients taken together, accumulated in at least float32.

    >>> float(global_norm([jnp.array([3.0]), jnp.array([4.0])]))
    5.0
    """
    if not grads:
        return jnp.zeros((), jnp.float32)
    acc_dtype = jnp.result_type(jnp.float32, *[g.dtype for g in grads])
    squares = [jnp.sum(jnp.square(g.astype(acc_dtype))) for g in grads]
    return jnp.sqrt(sum(squares[1:], squares[0]))


def clip_by_global_norm(grads: Sequence[Array], max_norm: float) -> List[Array]:
    """Scale all gradients by ``max_norm / norm`` when their global norm exceeds it.

    >>> [round(float(g[0]), 6) for g in clip_by_global_norm([jnp.array([3.0]), jnp.array([4.0])], 1.0)]
    [0.6, 0.8]
    """
    norm = global_norm(grads)
    scale = jnp.where(norm > max_norm, max_norm / norm, 1.0)
    return [g * scale.astype(g.dtype) for g in grads]


def add_coupled_decay(grads: Sequence[Array], params: Sequence[Array], weight_decay: float) -> List[Array]:
    """L2 regularisation folded into the gradient: ``g + weight_decay * theta``.

    >>> round(float(add_coupled_decay([jnp.array([1.0])], [jnp.array([2.0])], 0.1)[0][0]), 6)
    1.2
    """
    if weight_decay == 0.0:
        return list(grads)
    return [g + weight_decay * p for g, p in zip(grads, params)]


def decoupled_decay(param: Array, lr, weight_decay: float) -> Array:
    """Shrink a parameter towards zero by ``lr * weight_decay`` (AdamW's decay).

    >>> [round(x, 6) for x in decoupled_decay(jnp.array([2.0]), 0.1, 0.5).tolist()]
    [1.9]
    """
    return param * (1.0 - jnp.asarray(lr).astype(param.dtype) * weight_decay)
