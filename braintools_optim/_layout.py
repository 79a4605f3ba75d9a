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

Two things keep a step over many parameters cheap to compile on XLA:CPU;
neither changes a result.

* Writing the new parameters needs one slice of a flat delta per parameter. A
  slice at a constant offset is compiled into its own specialised kernel
  (about 10 ms of compile time each, independent of its size); a
  ``dynamic_slice`` whose offset arrives as an opaque runtime scalar compiles
  into a small generic one (well under a millisecond). :func:`opaque_offsets`
  produces such scalars with ``lax.cond`` on a runtime predicate, at most
  ``OFFSETS_PER_COND`` per conditional (one conditional returning thousands of
  scalars compiles superlinearly: 3,000 take 3 s, in conditionals of 64 they
  take 1.5 s). The trick is used on the CPU backend only: on GPU a conditional
  copies its predicate to the host (a synchronisation every step), so there the
  offsets stay static slices.
* Packing concatenates the parameters, and a concatenation of many pieces
  compiles superlinearly: a bucket holds at most ``MAX_MEMBERS`` parameters
  (Adam on 3,000 arrays: 0.8 s less to compile than in one bucket), and
  :func:`concatenate` joins each run of small pieces in groups of
  ``SMALL_GROUP`` behind an optimisation barrier first (3,000 arrays of 64
  float32 in a row: 5.9 s in one concatenation, 1.1 s so), at the price of
  copying those small pieces twice.

>>> import jax.numpy as jnp
>>> layout = FlatLayout([(2,), (3,)], [jnp.float32] * 2, groups=[0, 0], step_offsets=[0, 0])
>>> [b.members for b in layout.buckets]
[(0, 1)]
>>> flat = layout.pack([jnp.array([1., 2.]), jnp.array([3., 4., 5.])])
>>> flat[0].tolist()
[1.0, 2.0, 3.0, 4.0, 5.0]
>>> [a.tolist() for a in layout.unpack(flat)]
[[1.0, 2.0], [3.0, 4.0, 5.0]]
>>> history = layout.pack([jnp.zeros((4, 2)), jnp.ones((4, 3))])    # leading axes stay in front
>>> history[0].shape, [a.shape for a in layout.unpack(history)]
((4, 5), [(4, 2), (4, 3)])
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
    #: whether the engine computes new parameters on the packed arrays and cuts them out (see
    #: :mod:`._stacked`); here each parameter adds its slice of the flat delta, which saves a pass over
    #: the parameters (the rule rarely reads them, so they need not be packed)
    apply_packed = False

    def __init__(self, shapes: Sequence[Tuple[int, ...]], dtypes: Sequence[Any], groups: Sequence[int],
                 step_offsets: Sequence[int], max_fused_size: Optional[int] = None,
                 placements: Optional[Sequence[Any]] = None):
        self.num_params = len(shapes)
        member_lists = bucket_members(shapes, dtypes, groups, step_offsets, max_fused_size, placements)
        self.buckets: List[Bucket] = []
        for members in member_lists:
            sizes = tuple(math.prod(shapes[i]) for i in members)
            offsets = tuple(int(x) for x in np.cumsum((0,) + sizes[:-1]))
            self.buckets.append(Bucket(tuple(members), offsets, sizes, tuple(tuple(shapes[i]) for i in members),
                                       groups[members[0]], step_offsets[members[0]]))

    def pack(self, per_param: Sequence[Array]) -> List[Array]:
        """One flat array per bucket (a lone parameter keeps its shape) from one per parameter (traceable).

        A buffer with leading axes before the parameter's shape (L-BFGS keeps
        ``(memory, *shape)`` histories) is flattened over the parameter's axes
        only: ``(memory, bucket size)``.
        """
        out = []
        for bucket in self.buckets:
            if len(bucket.members) == 1:
                out.append(per_param[bucket.members[0]])
                continue
            pieces = [per_param[i] for i in bucket.members]
            lead = pieces[0].ndim - len(bucket.shapes[0])
            out.append(concatenate([x.reshape(x.shape[:lead] + (-1,)) for x in pieces], axis=lead))
        return out

    @staticmethod
    def slot_shape(bucket: Bucket) -> Tuple[int, ...]:
        """The stored shape of a parameter-shaped buffer of ``bucket`` (a lone parameter keeps its shape)."""
        return tuple(bucket.shapes[0]) if len(bucket.members) == 1 else (sum(bucket.sizes),)

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
            lead = flat.shape[:-1]
            for i, start, size, shape in zip(bucket.members, bucket.offsets, bucket.sizes, bucket.shapes):
                out[i] = flat[..., start:start + size].reshape(lead + shape)
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


#: a bucket holds at most this many parameters (see the module docstring)
MAX_MEMBERS = 512
#: at most this many offsets come out of one conditional (see the module docstring)
OFFSETS_PER_COND = 64
#: pieces of at most SMALL_PIECE elements are concatenated in groups of SMALL_GROUP first
SMALL_PIECE = 1024
SMALL_GROUP = 8


def split_members(members: Sequence[int]) -> List[List[int]]:
    """``members`` in consecutive parts of at most ``MAX_MEMBERS``.

    >>> [len(part) for part in split_members(list(range(600)))]
    [512, 88]
    """
    return [list(members[start:start + MAX_MEMBERS]) for start in range(0, len(members), MAX_MEMBERS)]


def bucket_members(shapes: Sequence[Tuple[int, ...]], dtypes: Sequence[Any], groups: Sequence[int],
                   step_offsets: Sequence[int], max_fused_size: Optional[int] = None,
                   placements: Optional[Sequence[Any]] = None, by_shape: bool = False) -> List[List[int]]:
    """Which parameters share a bucket, buckets ordered by their first parameter.

    Members of a bucket agree on multiplier class (``groups``), dtype, step
    offset and placement, and with ``by_shape`` (stacks) on shape too; at most
    ``MAX_MEMBERS`` each. A parameter over ``max_fused_size`` elements or
    partitioned across devices is alone.

    >>> bucket_members([(2,), (3,), (2,)], ['float32'] * 3, [0, 0, 0], [0, 0, 0])
    [[0, 1, 2]]
    >>> bucket_members([(2,), (3,), (2,)], ['float32'] * 3, [0, 0, 0], [0, 0, 0], by_shape=True)
    [[0, 2], [1]]
    """
    placements = [None] * len(shapes) if placements is None else list(placements)
    shared: Dict[Tuple, List[int]] = {}
    alone: List[List[int]] = []
    for i, (shape, dtype, group, offset) in enumerate(zip(shapes, dtypes, groups, step_offsets)):
        if (max_fused_size is not None and math.prod(shape) > max_fused_size) or placements[i] is PARTITIONED:
            alone.append([i])
            continue
        key = (group, jnp.dtype(dtype).name, offset, placements[i]) + ((tuple(shape),) if by_shape else ())
        shared.setdefault(key, []).append(i)
    member_lists = [part for members in shared.values() for part in split_members(members)] + alone
    return sorted(member_lists, key=lambda members: members[0])      # deterministic: by first parameter


def opaque_offsets(offsets: Sequence[int], runtime_scalar: Array) -> Tuple[Array, ...]:
    """``offsets`` as int32 scalars the compiler cannot see through.

    A ``lax.cond`` on a runtime predicate that is always true returns them, so
    every consumer receives its offset as a kernel parameter rather than a
    constant folded into the kernel; one conditional per ``OFFSETS_PER_COND``.

    >>> [int(x) for x in opaque_offsets([0, 5, 9], jnp.int32(1))]
    [0, 5, 9]
    """
    predicate = jnp.asarray(runtime_scalar) >= 0
    out: Tuple[Array, ...] = ()
    for start in range(0, len(offsets), OFFSETS_PER_COND):
        values = tuple(np.int32(x) for x in offsets[start:start + OFFSETS_PER_COND])
        zeros = tuple(np.int32(0) for _ in values)
        out += tuple(jax.lax.cond(predicate, lambda values=values: values, lambda zeros=zeros: zeros))
    return out


def concatenate(pieces: Sequence[Array], axis: int = 0) -> Array:
    """``jnp.concatenate(pieces, axis)``, with runs of small pieces joined in groups first.

    Same values; only what XLA:CPU compiles differs (see the module docstring).

    >>> concatenate([jnp.full(2, float(i)) for i in range(10)]).tolist()[::4]
    [0.0, 2.0, 4.0, 6.0, 8.0]
    """
    if len(pieces) <= SMALL_GROUP:
        return jnp.concatenate(pieces, axis)
    out: List[Array] = []
    run: List[Array] = []

    def flush():
        if len(run) > 1:
            out.append(jax.lax.optimization_barrier(jnp.concatenate(run, axis)))
        else:
            out.extend(run)
        run.clear()

    for piece in pieces:
        if piece.size > SMALL_PIECE:
            flush()
            out.append(piece)
            continue
        run.append(piece)
        if len(run) == SMALL_GROUP:
            flush()
    flush()
    return jnp.concatenate(out, axis)
