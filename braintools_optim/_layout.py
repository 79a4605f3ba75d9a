"""Where an optimizer keeps its buffers: one array per parameter, or flat buckets.

The engine stores each buffer (``exp_avg``, ``exp_avg_sq``, ...) in one
``OptimizerState`` whose value is a list of arrays. A *layout* decides what
that list holds and converts between it and one array per parameter:

:class:`PerParamLayout`
    one array per parameter, shaped like it (any rule; ``fused=False``).

:class:`FlatLayout`
    one flat 1-D array per *bucket*: the parameters of one group, dtype, step
    offset and placement (device / sharding), concatenated in registration
    order. Element-wise rules run once per bucket instead of once per
    parameter, and brainstate sees two
    leaves for Adam's moments instead of two per parameter (its per-call
    bookkeeping is per leaf, which is what a step costs for many small arrays).
    Arrays larger than ``max_fused_size`` elements, and arrays split across
    devices (a partitioned sharding), get a bucket of their own in their own
    shape (no concatenation, no copy, no resharding): for big arrays the extra
    copy costs more than the bookkeeping it saves.

:class:`~._stacked.StackedLayout`
    for per-tensor rules: within each bucket, the members of one shape stacked
    along a leading axis and the rule mapped over it (see :mod:`._stacked`).

Writing the new parameters needs one slice of a flat delta per parameter. On
XLA:CPU a slice at a constant offset is compiled into its own kernel (about
10 ms of compile time each, independent of its size); a ``dynamic_slice``
whose offset arrives as an opaque runtime scalar compiles into one kernel per
distinct shape, shared by every array of that shape. :func:`opaque_offsets`
produces such scalars with a ``lax.cond`` on a runtime predicate. That trick is
used on the CPU backend only: on GPU a conditional copies its predicate to the
host (a synchronisation every step), so there the offsets stay static slices.
Results do not depend on it, only compile time does.

>>> import jax.numpy as jnp
>>> layout = FlatLayout([(2,), (3,)], [jnp.float32] * 2, groups=[0, 0], step_offsets=[0, 0])
>>> [b.members for b in layout.buckets]
[(0, 1)]
>>> flat = layout.pack([jnp.array([1., 2.]), jnp.array([3., 4., 5.])])
>>> flat[0].tolist()
[1.0, 2.0, 3.0, 4.0, 5.0]
>>> [a.tolist() for a in layout.unpack(flat)]
[[1.0, 2.0], [3.0, 4.0, 5.0]]
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, NamedTuple, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array

#: Arrays with more elements than this keep a bucket of their own under ``fused=None``
#: (the default). Below it, the bookkeeping brainstate spends per State leaf (a few
#: microseconds) outweighs copying the array once more; see docs/performance.md.
DEFAULT_MAX_FUSED_SIZE = 1 << 14


class Bucket(NamedTuple):
    """Parameters whose buffers share one stored array (flat, or a stack of equal shapes)."""

    members: Tuple[int, ...]              # parameter positions, registration order
    offsets: Tuple[int, ...]              # start of each member in the flat array (its index in a stack)
    sizes: Tuple[int, ...]
    shapes: Tuple[Tuple[int, ...], ...]
    group: int                            # multiplier class (the rule and lr the bucket runs with)
    step_offset: int


class PerParamLayout:
    """One buffer array per parameter (the identity layout)."""

    fused = False

    def pack(self, per_param: Sequence[Array]) -> List[Array]:
        return list(per_param)

    def unpack(self, stored: Sequence[Array]) -> List[Array]:
        return list(stored)


class FlatLayout:
    """Buffers as flat arrays, one per bucket (see the module docstring)."""

    fused = True

    def __init__(self, shapes: Sequence[Tuple[int, ...]], dtypes: Sequence[Any], groups: Sequence[int],
                 step_offsets: Sequence[int], max_fused_size: Optional[int] = None,
                 placements: Optional[Sequence[Any]] = None):
        self.num_params = len(shapes)
        placements = [None] * len(shapes) if placements is None else list(placements)
        grouped: Dict[Tuple, List[int]] = {}
        singles: List[int] = []
        for i, (shape, dtype, group, offset) in enumerate(zip(shapes, dtypes, groups, step_offsets)):
            too_big = max_fused_size is not None and math.prod(shape) > max_fused_size
            if too_big or placements[i] is PARTITIONED:
                singles.append(i)
            else:
                grouped.setdefault((group, jnp.dtype(dtype).name, offset, placements[i]), []).append(i)
        member_lists = list(grouped.values()) + [[i] for i in singles]
        member_lists.sort(key=lambda members: members[0])      # deterministic: by first parameter
        self.buckets: List[Bucket] = []
        for members in member_lists:
            sizes = tuple(math.prod(shapes[i]) for i in members)
            offsets = tuple(int(x) for x in np.cumsum((0,) + sizes[:-1]))
            self.buckets.append(Bucket(tuple(members), offsets, sizes, tuple(tuple(shapes[i]) for i in members),
                                       groups[members[0]], step_offsets[members[0]]))

    def pack(self, per_param: Sequence[Array]) -> List[Array]:
        """One flat array per bucket (a lone parameter keeps its shape) from one per parameter (traceable)."""
        return [per_param[bucket.members[0]] if len(bucket.members) == 1 else
                jnp.concatenate([jnp.ravel(per_param[i]) for i in bucket.members]) for bucket in self.buckets]

    @staticmethod
    def update_fn(update, bucket: Bucket):
        """The rule's ``update`` for one bucket: an element-wise rule runs on the flat array as is."""
        return update

    def unpack(self, stored: Sequence[Array]) -> List[Array]:
        """One array per parameter from the flat arrays (eager use: checkpoints, inspection)."""
        out: List[Optional[Array]] = [None] * self.num_params
        for bucket, flat in zip(self.buckets, stored):
            if len(bucket.members) == 1:
                out[bucket.members[0]] = flat
                continue
            for i, start, size, shape in zip(bucket.members, bucket.offsets, bucket.sizes, bucket.shapes):
                out[i] = flat[start:start + size].reshape(shape)
        return out

    def scatter(self, flats: Sequence[Array], runtime_scalar: Array) -> List[Array]:
        """Like :meth:`unpack`, for traced values: one ``dynamic_slice`` per parameter.

        ``runtime_scalar`` is any traced int scalar >= 0 (the step count); it
        only hides the offsets from constant folding (see the module docstring).
        """
        out: List[Optional[Array]] = [None] * self.num_params
        opaque = jax.default_backend() == 'cpu'
        for bucket, flat in zip(self.buckets, flats):
            if len(bucket.members) == 1:
                out[bucket.members[0]] = flat
                continue
            if not opaque:
                for i, start, size, shape in zip(bucket.members, bucket.offsets, bucket.sizes, bucket.shapes):
                    out[i] = jax.lax.slice(flat, (start,), (start + size,)).reshape(shape)
                continue
            starts = opaque_offsets(bucket.offsets, runtime_scalar)
            for i, start, size, shape in zip(bucket.members, starts, bucket.sizes, bucket.shapes):
                piece = jax.lax.dynamic_slice(flat, (start,), (size,), allow_negative_indices=False)
                out[i] = piece.reshape(shape)
        return out


#: placement of an array split across devices: never concatenated with others
PARTITIONED = object()


def placement(array: Any) -> Any:
    """What must agree for arrays to share a flat buffer: their sharding, or PARTITIONED.

    Arrays on one device (or replicated alike) can be concatenated without
    communication; an array partitioned across devices keeps a bucket of its own.
    """
    sharding = getattr(array, 'sharding', None)
    if sharding is None:                               # NumPy: goes to the default device
        return jax.devices()[0]
    try:
        if not sharding.is_fully_replicated:
            return PARTITIONED
        if len(sharding.device_set) == 1:
            return next(iter(sharding.device_set))
        hash(sharding)
    except Exception:                  # an exotic sharding: be safe
        return PARTITIONED
    return sharding


def opaque_offsets(offsets: Sequence[int], runtime_scalar: Array) -> Tuple[Array, ...]:
    """``offsets`` as int32 scalars the compiler cannot see through.

    A ``lax.cond`` on a runtime predicate that is always true returns them, so
    every consumer receives its offset as a kernel parameter rather than a
    constant folded into the kernel; same-shaped slices then share one kernel.
    """
    values = tuple(np.int32(x) for x in offsets)
    zeros = tuple(np.int32(0) for _ in offsets)
    return jax.lax.cond(jnp.asarray(runtime_scalar) >= 0, lambda: values, lambda: zeros)
