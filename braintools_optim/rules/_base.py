"""The shape every pure update rule has.

An :class:`UpdateRule` is a pair of pure functions on plain arrays, with no
brainstate, no units and no Python state in them:

``init(param) -> buffers``
    The per-parameter buffers (moments, accumulators) the rule keeps, as a dict
    ``{buffer_name: array}``; every buffer has the parameter's shape and dtype.

``update(grad, buffers, param, lr, count) -> (delta, new_buffers)``
    One step. ``grad`` has already been rescaled, clipped and (for coupled weight
    decay) had ``weight_decay * param`` added by the stateful layer. ``lr`` is the
    learning rate of this step and ``count`` the 1-based step number, both traced
    scalars. The new parameter is ``param + delta``.

Most rules are element-wise (``elementwise=True``): ``update`` applied to one
array, to each of many arrays, or to their concatenation gives the same
numbers, so the engine may run them once on a flat buffer per parameter group
and dtype (``fused``, see :mod:`braintools_optim._layout`). Per-tensor rules
(trust ratios, norms, factored or scalar buffers: Novograd, Fromage, SM3,
Lamb, Lars, Adafactor, Muon, NAdam's scalar product, Rprop's previous lr)
must see one whole parameter at a time and are always called per parameter.
"""

from __future__ import annotations

import math
from typing import Callable, Dict, NamedTuple, Tuple

import jax
import jax.numpy as jnp

Array = jax.Array
Buffers = Dict[str, Array]


class UpdateRule(NamedTuple):
    """A pure, element-wise optimizer update rule (see the module docstring)."""

    name: str
    buffer_names: Tuple[str, ...]
    init: Callable[[Array], Buffers]
    update: Callable[[Array, Buffers, Array, Array, Array], Tuple[Array, Buffers]]
    #: physical unit of each buffer as ``(power of the gradient's unit, power of
    #: the parameter's unit)``: ``(1, 0)`` for a first moment, ``(2, 0)`` for a
    #: second moment, ``(0, 2)`` for Adadelta's squared updates.
    buffer_units: Dict[str, Tuple[int, int]] = {}
    #: True when ``update`` acts element by element and every buffer has the
    #: parameter's shape: running it on a concatenation of parameters gives the
    #: same numbers as running it on each, so the engine may keep flat buffers.
    elementwise: bool = False


def zeros_like_buffers(names: Tuple[str, ...]) -> Callable[[Array], Buffers]:
    """An ``init`` that gives one zero buffer per name, shaped like the parameter."""

    def init(param: Array) -> Buffers:
        return {name: jnp.zeros_like(param) for name in names}

    return init


def as_dtype(x, dtype) -> Array:
    """Cast a traced scalar (lr, step count) to the dtype of the array it meets.

    Keeps float32 parameters in float32 even when the learning-rate State is
    float64 (``jax_enable_x64``), the way a Python float would.
    """
    return jnp.asarray(x).astype(dtype)


def bias_correction(beta: float, t: Array) -> Array:
    r"""``1 - beta ** t``, computed as ``-expm1(t * log(beta))``.

    Accurate to about one ulp in the dtype of ``t``; the direct form loses
    digits in float32 (for ``beta = 0.999``, ``1 - beta**1`` is off by 1.3e-5
    relative, because 0.999 itself is rounded), which torch avoids by working
    in float64 on the host.

    >>> round(float(bias_correction(0.999, jnp.float32(1.0))), 9)
    0.001
    """
    if isinstance(beta, jax.core.Tracer):          # a scheduled beta (e.g. cycled momentum)
        return -jnp.expm1(t * jnp.log(beta.astype(t.dtype)))
    if beta == 0.0:
        return jnp.ones_like(t)
    return -jnp.expm1(t * math.log(beta))


def is_zero(value) -> bool:
    """True for a static 0.0; a traced value (a scheduled hyper-parameter) is never "zero"."""
    return not isinstance(value, jax.core.Tracer) and value == 0.0
