"""Per-tensor rules on stacks of same-shaped parameters.

A per-tensor rule (Lamb's trust ratio, Adafactor's factored moments, Muon's
Newton–Schulz iteration, NAdam's scalar momentum product, ...) needs each
parameter whole, so it cannot run on a flat concatenation the way an
element-wise rule does (:class:`~._layout.FlatLayout`). It can run on a
*stack*: the members of one bucket that have the same shape, stacked along a
new leading axis, with the rule mapped over that axis by ``jax.vmap``. Every
buffer is stacked alike, ``(members, *buffer_shape)``: a moment shaped like
the parameter becomes ``(members, *shape)``, a per-tensor scalar ``(members,)``.
Norms then reduce over all but the leading axis in one kernel and Muon's
matrix products become one batched product, instead of one kernel chain per
parameter.

:class:`StackedLayout` groups a parameter group's members into buckets keyed
by multiplier class, dtype, step offset, placement and **shape** (at most
``MAX_MEMBERS`` per stack). As in the flat layout, a parameter larger than
``max_fused_size`` elements (or split across devices) keeps a bucket of its
own, and a bucket of one member keeps its buffers in the parameter's own shape
and calls the rule directly, exactly as the per-parameter layout does. New
parameter values are computed on the stacks (decoupled decay and clipping
included) and cut out with one ``dynamic_slice`` per member at an index the
compiler cannot constant-fold on CPU, as in the flat layout (:mod:`._layout`
says why that matters for compile time).

The numbers are the rule's own: ``vmap`` evaluates the same formula on each
member. Reductions inside a batched kernel may sum in another order than the
same reduction alone, so results agree with the per-parameter layout to within
an ulp of each array's largest element rather than bitwise
(``tests/test_fused.py`` checks that for every per-tensor optimizer).

>>> import jax.numpy as jnp
>>> layout = StackedLayout([(2,), (3,), (2,)], [jnp.float32] * 3, groups=[0, 0, 0], step_offsets=[0, 0, 0])
>>> [b.members for b in layout.buckets]           # the two (2,)-shaped members share a stack
[(0, 2), (1,)]
>>> stored = layout.pack([jnp.zeros(2), jnp.ones(3), jnp.full(2, 2.0)])
>>> [s.shape for s in stored]
[(2, 2), (3,)]
>>> [a.tolist() for a in layout.unpack(stored)]
[[0.0, 0.0], [1.0, 1.0, 1.0], [2.0, 2.0]]
"""

from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Tuple

import jax

from ._layout import Bucket, bucket_members, concatenate, opaque_offsets

Array = jax.Array


class StackedLayout:
    """Buffers stacked per shape within a bucket (see the module docstring)."""

    fused = True
    #: the engine computes new parameters on the stacks and cuts them out: a slice alone compiles to a
    #: cheaper kernel than a slice added to a parameter (Muon on 500 arrays: 1.2 s to compile instead
    #: of 1.6 s), and per-tensor rules mostly read the packed parameters anyway
    apply_packed = True

    def __init__(self, shapes: Sequence[Tuple[int, ...]], dtypes: Sequence[Any], groups: Sequence[int],
                 step_offsets: Sequence[int], max_fused_size: Optional[int] = None,
                 placements: Optional[Sequence[Any]] = None):
        self.num_params = len(shapes)
        member_lists = bucket_members(shapes, dtypes, groups, step_offsets, max_fused_size, placements,
                                      by_shape=True)
        self.buckets: List[Bucket] = []
        for members in member_lists:
            shape = tuple(shapes[members[0]])
            n = len(members)
            self.buckets.append(Bucket(tuple(members), tuple(range(n)), (math.prod(shape),) * n, (shape,) * n,
                                       groups[members[0]], step_offsets[members[0]]))

    def pack(self, per_param: Sequence[Array]) -> List[Array]:
        """One stack per bucket (a lone parameter keeps its shape) from one array per parameter (traceable)."""
        return [per_param[bucket.members[0]] if len(bucket.members) == 1 else
                concatenate([per_param[i][None] for i in bucket.members]) for bucket in self.buckets]

    def unpack(self, stored: Sequence[Array]) -> List[Array]:
        """One array per parameter from the stacks (eager use: checkpoints, inspection)."""
        out: List[Optional[Array]] = [None] * self.num_params
        for bucket, stack in zip(self.buckets, stored):
            if len(bucket.members) == 1:
                out[bucket.members[0]] = stack
                continue
            for k, i in enumerate(bucket.members):
                out[i] = stack[k]
        return out

    def scatter(self, stacks: Sequence[Array], runtime_scalar: Array) -> List[Array]:
        """Like :meth:`unpack`, for traced values: one ``dynamic_slice`` per parameter.

        ``runtime_scalar`` is any traced int scalar >= 0 (the step count); on
        CPU it hides the indices from constant folding (see :mod:`._layout`).
        """
        out: List[Optional[Array]] = [None] * self.num_params
        opaque = jax.default_backend() == 'cpu'
        for bucket, stack in zip(self.buckets, stacks):
            if len(bucket.members) == 1:
                out[bucket.members[0]] = stack
                continue
            indices = opaque_offsets(bucket.offsets, runtime_scalar) if opaque else bucket.offsets
            for i, k in zip(bucket.members, indices):
                out[i] = jax.lax.dynamic_index_in_dim(stack, k, axis=0, keepdims=False)
        return out

    @staticmethod
    def slot_shape(bucket: Bucket) -> Tuple[int, ...]:
        """The stored shape of a parameter-shaped buffer of ``bucket``: ``(members, *shape)``, or the lone shape."""
        shape = tuple(bucket.shapes[0])
        return shape if len(bucket.members) == 1 else (len(bucket.members),) + shape

    @staticmethod
    def update_fn(update: Callable, bucket: Bucket) -> Callable:
        """The rule's ``update`` for this bucket: mapped over the stack, or as is for a lone member.

        ``lr`` and ``count`` are shared by the whole stack (same group,
        multiplier class and step offset); gradients, buffers and parameters
        are mapped along their leading axis.
        """
        if len(bucket.members) == 1:
            return update
        return jax.vmap(update, in_axes=(0, 0, 0, None, None))
