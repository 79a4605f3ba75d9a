"""Where an optimizer's buffers live on a mesh of devices.

Two policies, both expressed with JAX's own machinery (``jax.device_put`` for
concrete arrays, ``jax.lax.with_sharding_constraint`` inside a trace; XLA's
SPMD partitioner does the rest):

*follow the parameter* (the default)
    A buffer shaped like its parameter gets the parameter's sharding; a flat
    bucket gets the placement its members share (:func:`._layout.placement`
    never puts a partitioned array into a shared bucket); any other buffer (a
    scalar, Adafactor's factored row and column statistics, SM3's
    accumulators) is replicated over the parameter's devices. A parameter on
    one device leaves its buffers alone (JAX places them with it).

*ZeRO-1* (``shard_state='data'``, or ``shard_state=(mesh, 'data')``)
    The buffers of parameters that are *replicated* over the mesh (data
    parallelism) are partitioned over the named mesh axis (or axes) instead,
    so each device keeps ``1/n`` of them. A flat bucket is padded with zeros
    to a multiple of ``n`` (a parameter too large to share a bucket is
    flattened into its own, padded likewise); the update is computed on each
    device's slice and XLA gathers the new parameters, which stay replicated.
    A rule that needs whole parameters (Lamb, Lars, Muon, Adafactor, ...)
    keeps its per-parameter buffers split along their first dimension that
    ``n`` divides, or replicated when none does (under ZeRO-1 such a rule runs
    one call per parameter, not on stacks). A parameter already
    partitioned (model parallelism, FSDP) keeps its buffers with it.

The mesh of ``shard_state='data'`` is the one the parameters' ``NamedSharding``
lives on; an optimizer whose parameters carry none must be given the mesh.
A ZeRO setting that cannot apply raises at registration instead of silently
doing nothing.

>>> parse_shard_state(None) is None
True
>>> parse_shard_state('data')
StateSharding(axes=('data',), mesh=None)
"""

from __future__ import annotations

import math
from typing import Any, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from ._layout import FlatLayout, PerParamLayout
from ._stacked import StackedLayout


# ---------------------------------------------------------------------------- the option
class StateSharding:
    """The parsed ``shard_state`` option: ZeRO-1 over ``axes`` of ``mesh`` (``None``: the parameters' mesh).

    Pickles without its mesh's device objects (which cannot be pickled): the
    mesh is rebuilt from device ids where those devices exist, and otherwise
    taken from the parameters again.
    """

    def __init__(self, axes: Tuple[str, ...], mesh: Optional[Mesh] = None):
        self.axes = tuple(axes)
        self.mesh = mesh

    def __repr__(self) -> str:
        return f"StateSharding(axes={self.axes!r}, mesh={None if self.mesh is None else dict(self.mesh.shape)})"

    def __eq__(self, other) -> bool:
        return isinstance(other, StateSharding) and other.axes == self.axes and other.mesh == self.mesh

    def __hash__(self) -> int:
        return hash(self.axes)

    def __reduce__(self):
        if self.mesh is None:
            return StateSharding, (self.axes, None)
        ids = np.vectorize(lambda d: d.id, otypes=[int])(self.mesh.devices)
        return _rebuilt, (self.axes, ids, tuple(self.mesh.axis_names))

    def size(self, mesh: Mesh) -> int:
        """How many pieces the state is cut into on ``mesh``."""
        return math.prod(mesh.shape[a] for a in self.axes)

    def mesh_for(self, mantissas: Sequence[Any]) -> Mesh:
        """The mesh to partition over: the given one, or the one the parameters' ``NamedSharding`` uses."""
        if self.mesh is not None:
            return self.mesh
        for mantissa in mantissas:
            sharding = getattr(mantissa, 'sharding', None)
            if isinstance(sharding, NamedSharding) and all(a in sharding.mesh.axis_names for a in self.axes):
                return sharding.mesh
        raise ValueError(
            f"shard_state={self.axes[0] if len(self.axes) == 1 else self.axes!r} partitions optimizer state "
            f"over a mesh axis, but no registered parameter is placed with a jax.sharding.NamedSharding on a "
            f"mesh that has {'it' if len(self.axes) == 1 else 'them'}; place the parameters first "
            f"(jax.device_put(value, NamedSharding(mesh, PartitionSpec()))) or pass the mesh: "
            f"shard_state=(mesh, {self.axes[0] if len(self.axes) == 1 else self.axes!r})")


def _rebuilt(axes, ids, axis_names) -> StateSharding:
    by_id = {d.id: d for d in jax.devices()}
    if all(int(i) in by_id for i in np.ravel(ids)):
        devices = np.vectorize(lambda i: by_id[int(i)], otypes=[object])(ids)
        return StateSharding(axes, Mesh(devices, axis_names))
    return StateSharding(axes, None)


def _axis_names(value, where: str) -> Tuple[str, ...]:
    names = (value,) if isinstance(value, str) else value
    if not isinstance(names, (tuple, list)) or not names or not all(isinstance(n, str) and n for n in names):
        raise TypeError(f"{where} must name a mesh axis (a str) or several (a tuple of str), got {value!r}")
    if len(set(names)) != len(names):
        raise ValueError(f"{where} names a mesh axis twice: {value!r}")
    return tuple(names)


def parse_shard_state(value) -> Optional[StateSharding]:
    """The ``shard_state`` option checked: ``None``, an axis name, a tuple of them, or ``(mesh, axes)``."""
    if value is None:
        return None
    if isinstance(value, StateSharding):
        return value
    if isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[0], Mesh):
        mesh, axes = value[0], _axis_names(value[1], 'shard_state=(mesh, axes): axes')
        unknown = [a for a in axes if a not in mesh.axis_names]
        if unknown:
            raise ValueError(f"shard_state: the mesh has axes {tuple(mesh.axis_names)}, not {', '.join(unknown)}")
        return StateSharding(axes, mesh)
    if isinstance(value, Mesh):
        raise TypeError("shard_state=mesh needs the axis to partition over: shard_state=(mesh, 'data')")
    return StateSharding(_axis_names(value, 'shard_state'), None)


def check_resolvable(option: Optional[StateSharding], mantissas: Sequence[Any]) -> None:
    """Raise (before anything is registered) when ZeRO-1 cannot find its mesh."""
    if option is not None and mantissas:
        option.mesh_for(mantissas)


# ---------------------------------------------------------------------------- shardings
def _spans_devices(sharding) -> bool:
    try:
        return sharding is not None and len(sharding.device_set) > 1
    except Exception:
        return False


def _placed(sharding) -> bool:
    """Whether a sharding was chosen on purpose (a mesh sharding, or several devices) and is to be kept."""
    return isinstance(sharding, NamedSharding) or _spans_devices(sharding)


def _replicated_like(sharding):
    """A replicated sharding over the devices of ``sharding`` (``None`` when not expressible)."""
    if isinstance(sharding, NamedSharding):
        return NamedSharding(sharding.mesh, PartitionSpec())
    if _spans_devices(sharding):
        return None                               # exotic: let XLA decide
    return sharding


def _is_replicated(mantissa) -> bool:
    """Whether a parameter is whole on every device it lives on (a candidate for ZeRO-1)."""
    sharding = getattr(mantissa, 'sharding', None)
    if sharding is None:
        return True
    try:
        return bool(sharding.is_fully_replicated)
    except Exception:
        return False


def _split_along_first_fitting(mesh: Mesh, axes: Tuple[str, ...], n: int, shape: Tuple[int, ...]):
    """Split ``shape`` over ``axes`` along its first dimension that ``n`` divides; replicated if none does."""
    for d, size in enumerate(shape):
        if size % n == 0 and size >= n:
            spec = [None] * len(shape)
            spec[d] = axes if len(axes) > 1 else axes[0]
            return NamedSharding(mesh, PartitionSpec(*spec))
    return NamedSharding(mesh, PartitionSpec())


class Placement:
    """Target shardings of one group's stored buffers (per stored slot) and of its parameters.

    ``slots[k]`` is the sharding of a buffer shaped like slot ``k`` (a flat
    bucket, or one parameter), ``None`` to leave it where JAX puts it;
    ``params[j]`` is the sharding member ``j``'s new value is kept in.
    ``zero`` is ``(mesh, axes, n)`` under ZeRO-1 and ``zero_slots[k]`` says
    whether slot ``k`` is partitioned by it (its other buffers, such as
    Adafactor's factored statistics, are then split where ``n`` divides them).
    """

    def __init__(self, slots: List[Any], slot_shapes: List[Tuple[int, ...]], params: List[Any],
                 zero: Optional[Tuple[Mesh, Tuple[str, ...], int]] = None, zero_slots: Sequence[bool] = ()):
        self.slots, self.slot_shapes, self.params = slots, slot_shapes, params
        self.zero = zero
        self.zero_slots = list(zero_slots) or [False] * len(slots)

    def buffer(self, k: int, shape: Tuple[int, ...]):
        slot = self.slots[k]
        if slot is None or tuple(shape) == self.slot_shapes[k]:
            return slot
        if self.zero_slots[k]:
            return _split_along_first_fitting(*self.zero, tuple(shape))
        return _replicated_like(slot)

    def place(self, stored: Sequence[Any]) -> List[Any]:
        """``stored`` (one buffer, one array per slot) moved to, or constrained to, its shardings."""
        return [place(value, self.buffer(k, jnp.shape(value))) for k, value in enumerate(stored)]


def place(value, sharding):
    """``value`` on ``sharding``: ``device_put`` when concrete, a sharding constraint when traced."""
    if sharding is None:
        return value
    if isinstance(value, jax.core.Tracer):
        if not _placed(sharding):
            return value
        return jax.lax.with_sharding_constraint(value, sharding)
    if getattr(value, 'sharding', None) is not None and value.sharding == sharding:
        return value
    return jax.device_put(value, sharding)


# ---------------------------------------------------------------------------- ZeRO-1 layout
class ShardedFlatLayout:
    """A :class:`~._layout.FlatLayout` whose chosen buckets are flat and padded to a multiple of ``n``.

    Bucket membership, offsets and the rule calls are the wrapped layout's;
    only the stored arrays differ: every bucket marked ``sharded`` is a 1-D
    array of ``ceil(size / n) * n`` elements (a lone parameter flattened too),
    the tail zeros. The padding is never read back.
    """

    fused = True
    apply_packed = False
    update_fn = staticmethod(FlatLayout.update_fn)

    def __init__(self, inner: FlatLayout, sharded: Sequence[bool], n: int):
        self.inner = inner
        self.sharded = list(sharded)
        self.n = n
        self.sizes = [sum(b.sizes) for b in inner.buckets]

    @property
    def buckets(self):
        return self.inner.buckets

    @property
    def num_params(self) -> int:
        return self.inner.num_params

    def padded_size(self, b: int) -> int:
        return -(-self.sizes[b] // self.n) * self.n

    def pack(self, per_param: Sequence[Any]) -> List[Any]:
        out = []
        for b, (bucket, flat) in enumerate(zip(self.buckets, self.inner.pack(per_param))):
            if self.sharded[b]:
                # leading axes (L-BFGS histories, ``(memory, *shape)``) stay; the parameter axes are flattened
                lead = flat.ndim - (len(bucket.shapes[0]) if len(bucket.members) == 1 else 1)
                flat = flat.reshape(flat.shape[:lead] + (-1,))
                pad = self.padded_size(b) - self.sizes[b]
                if pad:
                    flat = jnp.concatenate([flat, jnp.zeros(flat.shape[:lead] + (pad,), flat.dtype)], axis=lead)
            out.append(flat)
        return out

    def _unpadded(self, stored: Sequence[Any]) -> List[Any]:
        out = []
        for b, (bucket, flat) in enumerate(zip(self.buckets, stored)):
            if self.sharded[b]:
                flat = flat[..., :self.sizes[b]]
                if len(bucket.members) == 1:
                    flat = flat.reshape(flat.shape[:-1] + tuple(bucket.shapes[0]))
            out.append(flat)
        return out

    def unpack(self, stored: Sequence[Any]) -> List[Any]:
        return self.inner.unpack(self._unpadded(stored))

    def scatter(self, flats: Sequence[Any], runtime_scalar) -> List[Any]:
        return self.inner.scatter(self._unpadded(flats), runtime_scalar)


def plan(layout, mantissas: Sequence[Any], option: Optional[StateSharding]):
    """``(layout, Placement)`` for one group's members: the layout (wrapped for ZeRO-1) and where things go."""
    params = [_param_sharding(m) for m in mantissas]
    mesh = option.mesh_for(mantissas) if option is not None and mantissas else None
    if mesh is not None:
        zero = NamedSharding(mesh, PartitionSpec(option.axes if len(option.axes) > 1 else option.axes[0]))
        replicated = NamedSharding(mesh, PartitionSpec())
        n = option.size(mesh)
        # ZeRO-1 keeps parameters replicated: one on a single device is replicated over the mesh from now on
        params = [replicated if p is None and _is_replicated(m) else p for m, p in zip(mantissas, params)]
    if isinstance(layout, StackedLayout) and mesh is not None:
        # ZeRO-1 splits each parameter's buffers along a dimension n divides: one buffer per parameter
        layout = PerParamLayout()
    if isinstance(layout, (FlatLayout, StackedLayout)):
        buckets = layout.buckets
        slots = [_bucket_slot(b, params) for b in buckets]
        shapes = [layout.slot_shape(b) for b in buckets]
        if mesh is not None:                          # flat buckets only (stacks went per parameter above)
            sharded = [all(_is_replicated(mantissas[i]) and _on_mesh(params[i], mesh) for i in bucket.members)
                       for bucket in buckets]
            if any(sharded):
                layout = ShardedFlatLayout(layout, sharded, n)
                slots = [zero if s else slot for s, slot in zip(sharded, slots)]
                shapes = [(layout.padded_size(b),) if s else shape for b, (s, shape) in enumerate(zip(sharded, shapes))]
                return layout, Placement(slots, shapes, params, (mesh, option.axes, n), sharded)
        return layout, Placement(slots, shapes, params)
    if mesh is None:
        return layout, Placement(params, [tuple(jnp.shape(m)) for m in mantissas], params)
    zero_slots = [_is_replicated(m) and _on_mesh(p, mesh) for m, p in zip(mantissas, params)]
    slots = [_split_along_first_fitting(mesh, option.axes, n, tuple(jnp.shape(m))) if z else p
             for m, p, z in zip(mantissas, params, zero_slots)]
    return layout, Placement(slots, [tuple(jnp.shape(m)) for m in mantissas], params, (mesh, option.axes, n),
                             zero_slots)


def _on_mesh(sharding, mesh: Mesh) -> bool:
    return isinstance(sharding, NamedSharding) and sharding.mesh == mesh


def _param_sharding(mantissa):
    """The sharding a parameter's new value is kept in (``None``: not placed on purpose, left to JAX)."""
    sharding = getattr(mantissa, 'sharding', None)
    return sharding if _placed(sharding) and getattr(mantissa, 'committed', True) else None


def _bucket_slot(bucket, params):
    """A bucket's sharding: its lone parameter's, or (shared: parameters whole on each device) replicated."""
    first = params[bucket.members[0]]
    return first if len(bucket.members) == 1 else _replicated_like(first)


def constrain_params(storages, trainable: Sequence[int], new_params: List[Any]) -> List[Any]:
    """New parameter values (trainable order) kept in their parameters' shardings (inside the step)."""
    position = {i: j for j, i in enumerate(trainable)}
    out = list(new_params)
    for storage in storages.values():
        placement = getattr(storage, 'placement', None)
        if placement is None:
            continue
        for i, sharding in zip(storage.members, placement.params):
            if sharding is not None:
                j = position[i]
                out[j] = place(out[j], sharding)
    return out
