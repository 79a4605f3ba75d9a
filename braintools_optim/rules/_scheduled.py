"""Hyper-parameters that may arrive traced (a scheduler's cycled momentum).

A cycled ``beta1`` (torch's ``OneCycleLR(cycle_momentum=True)``) reaches a rule
as a traced scalar in the default float dtype (float64 under
``jax_enable_x64``). :func:`scalar` casts such a tracer to the dtype of the
arrays it meets, so float32 buffers stay float32, and leaves a Python float
alone: as a weakly typed constant it keeps float32 arithmetic on float32
arrays, and ``1 - beta`` is still formed in float64 first, as torch's host
arithmetic and optax do.
"""

from __future__ import annotations

import jax


def scalar(value, dtype):
    """``value`` cast to ``dtype`` if it is traced; a Python number unchanged.

    >>> import jax.numpy as jnp
    >>> scalar(0.9, jnp.float32)
    0.9
    """
    if isinstance(value, jax.core.Tracer):
        return value.astype(dtype)
    return value
