"""How the engine runs a parameter group that sets a precision option (``docs/precision.md``).

The pure pieces live elsewhere: rounding and dtype checks in :mod:`._precision`,
the PRNG key in :mod:`._rng`. This module is what the engine calls:

* :class:`Plan` — one group's dtypes, per member and per stored slot (a flat
  bucket, a stack or one parameter; every slot holds members of one parameter
  dtype): the dtype the arithmetic runs in (float32, or the parameter's if
  wider), each buffer's storage dtype, whether the new parameter is rounded
  stochastically, whether a float32 master copy is kept.
* the master copies: one more :class:`~._storage.GroupStorage` per group, over
  its narrow (bfloat16/float16) members only, holding buffer :data:`MASTER`
  laid out exactly like those members' slots of the group's own layout (same
  bucket keys), so the rule reads a bucket's master as one flat array.
* the step: :func:`working` gives the values the rule acts on (masters, or
  parameters and gradients cast up); :meth:`Plan.run` is one stored slot of
  the engine's step (flat bucket, stack or parameter alike): buffers cast up
  (:meth:`Plan.load`), the rule, decay and clipping in float32, buffers rounded
  to nearest (:meth:`Plan.store`), the new parameter rounded to nearest or
  stochastically with one key per slot (:meth:`Plan.finish`), the new master
  recorded; :func:`finish_members` does the rounding per parameter for an
  algorithm with a step of its own (``Optimizer.rounds_own_step``).

With both ``stochastic_round`` and ``master_weights``, the parameter is the
stochastic rounding of its master copy (an unbiased view of it, see
``docs/precision.md``).

A group with no option set has no plan, and its step is exactly what it was
without this module.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import jax
import jax.numpy as jnp

from . import _precision
from ._precision import GroupPrecision
from ._rng import StepKeys
from ._storage import MASTER   # the master copies' buffer name (State ``Adam.master``, ``Adam.group1.master``)


def _is_float(value) -> bool:
    return jnp.issubdtype(jnp.result_type(value), jnp.floating)


def slot_members(layout, count: int) -> List[Tuple[int, ...]]:
    """The member positions of each stored slot of ``layout`` (one per member for the per-parameter layout)."""
    buckets = getattr(layout, 'buckets', None)
    if buckets is None:
        return [(k,) for k in range(count)]
    return [tuple(bucket.members) for bucket in buckets]


class Plan:
    """One group's dtypes and master copies (see the module docstring).

    Args:
        group: the group index.
        precision: its checked options.
        rule: its update rule (buffer names and units).
        dtypes: each member's parameter dtype (member order).
        layout: the group's layout.
        where: how errors name the group.
    """

    def __init__(self, group: int, precision: GroupPrecision, rule, dtypes: Sequence[Any], layout, where: str):
        self.group = group
        self.precision = precision
        self.param_dtypes = [jnp.dtype(d) for d in dtypes]
        self.compute_dtypes = [_precision.compute_dtype(d) for d in self.param_dtypes]
        self.buffer_dtypes = [precision.storage_dtypes(rule.buffer_units, rule.buffer_names, d, where)
                              for d in self.param_dtypes]
        narrow = [_precision.is_narrow(d) for d in self.param_dtypes]
        self.has_master = [precision.master_weights and n for n in narrow]
        self.stochastic = [precision.stochastic_round and n for n in narrow]
        self.slots = slot_members(layout, len(self.param_dtypes))
        self.master_slot: Dict[int, int] = {}            # slot of the group layout -> slot of the master layout
        self.master_of: Dict[int, int] = {}              # member position -> position among the master's members

    @property
    def any_stochastic(self) -> bool:
        return any(self.stochastic)

    @property
    def master_members(self) -> List[int]:
        """Member positions that keep a master copy."""
        return [k for k, has in enumerate(self.has_master) if has]

    def link_master(self, master_layout, members: Sequence[int]) -> None:
        """Record which slot of the master layout holds each slot's masters (checked to match exactly)."""
        self.master_of = {k: n for n, k in enumerate(members)}
        by_members = {tuple(members[m] for m in slot): s
                      for s, slot in enumerate(slot_members(master_layout, len(members)))}
        for s, slot in enumerate(self.slots):
            if self.has_master[slot[0]]:
                if tuple(slot) not in by_members:
                    raise AssertionError(f"master copies of group {self.group} are laid out unlike its buffers "
                                         f"(slot {s}: members {slot})")
                self.master_slot[s] = by_members[tuple(slot)]

    # ------------------------------------------------------------------ buffers
    def fresh_master(self, k: int, mantissa) -> jax.Array:
        """A new master copy of member ``k``: its value cast up (exactly: every bfloat16/float16 is a float32)."""
        return jnp.asarray(mantissa).astype(self.compute_dtypes[k])

    def initial(self, k: int, fresh: Dict[str, Any]) -> Dict[str, Any]:
        """Freshly initialised buffers of member ``k`` in their storage dtypes."""
        return {name: value.astype(self.buffer_dtypes[k][name]) if _is_float(value) else value
                for name, value in fresh.items()}

    def load(self, s: int, buffers: Dict[str, Any]) -> Dict[str, Any]:
        """Slot ``s``'s stored buffers cast up to its compute dtype (before the rule)."""
        dtype = self.compute_dtypes[self.slots[s][0]]
        return {name: value.astype(dtype) if _is_float(value) else value for name, value in buffers.items()}

    def store(self, s: int, updated: Dict[str, Any]) -> Dict[str, Any]:
        """The rule's new buffers of slot ``s`` rounded to nearest in their storage dtypes."""
        dtypes = self.buffer_dtypes[self.slots[s][0]]
        return {name: value.astype(dtypes[name]) if _is_float(value) else value for name, value in updated.items()}

    # ------------------------------------------------------------------ parameters
    def finish(self, s: int, new: jax.Array, step_key: Optional[jax.Array], key_slot: int):
        """``(new parameters of slot s in their dtype, new master or None)`` from the new values in compute dtype.

        Rounded stochastically with the key of ``(group, key_slot)`` in this step
        when the slot's members are narrow and ``stochastic_round`` is set, to
        nearest otherwise.
        """
        return self.finish_member(self.slots[s][0], new, step_key, key_slot)

    def finish_member(self, k: int, new: jax.Array, step_key: Optional[jax.Array], key_slot: int):
        """:meth:`finish` for values with the dtypes and options of member ``k`` (a slot's first member)."""
        dtype = self.param_dtypes[k]
        bits = None
        if self.stochastic[k]:
            bits = _precision.random_bits(StepKeys.for_slot(step_key, self.group, key_slot), jnp.shape(new), dtype)
        return _precision.round_to(new, dtype, bits), (new if self.has_master[k] else None)

    # ------------------------------------------------------------------ the engine's step
    def packed_params(self, storage, packed: List[Any]) -> List[Any]:
        """The values a fused group's rule acts on, per slot: the stored master copy where there is one
        (already packed alike), ``packed`` (parameters cast up) elsewhere."""
        if storage.master is None:
            return packed
        stored = storage.master.states[MASTER].value
        return [stored[self.master_slot[b]] if b in self.master_slot else p for b, p in enumerate(packed)]

    def run(self, s: int, update, grad, buffers: Dict[str, Any], param, lr, count, key, masters: Dict[int, Any],
            apply_delta):
        """One slot of the engine's step: ``(new parameters in their dtype, new stored buffers)``.

        ``param`` and ``grad`` are in the compute dtype (:func:`working`); the
        buffers are cast up before ``update`` and rounded to nearest after it;
        ``apply_delta(param, delta)`` adds the delta (decoupled decay, clipping)
        in the compute dtype; the result is the new master copy (recorded in
        ``masters`` by master slot) and, rounded by :meth:`finish`, the new parameter.
        """
        delta, updated = update(grad, self.load(s, buffers), param, lr, count)
        rounded, master = self.finish(s, apply_delta(param, delta), key, s)
        if master is not None:
            masters[self.master_slot[s]] = master
        return rounded, self.store(s, updated)

    def stored_masters(self, masters: Dict[int, Any]) -> Dict[str, List[Any]]:
        """``{MASTER: new master copies}`` in the master layout's slot order (``{}`` without masters)."""
        return {MASTER: [masters[m] for m in range(len(masters))]} if masters else {}


def working(storages, trainable: Sequence[int], params: List[Any], grads: List[Any], count) \
        -> Tuple[List[Any], List[Any]]:
    """The values the rule acts on, in trainable order: master copies or parameters cast up, gradients cast up.

    Parameters of groups without a plan are returned as they are.
    """
    position = {i: j for j, i in enumerate(trainable)}
    params, grads = list(params), list(grads)
    for storage in storages.values():
        plan = getattr(storage, 'plan', None)
        if plan is None:
            continue
        masters = storage.master_values(count) if storage.master is not None else None
        for k, i in enumerate(storage.members):
            j = position[i]
            dtype = plan.compute_dtypes[k]
            params[j] = masters[plan.master_of[k]] if plan.has_master[k] else params[j].astype(dtype)
            grads[j] = grads[j].astype(dtype)
    return params, grads


def step_key(keys) -> Optional[jax.Array]:
    """This step's key (``None`` without a key State); the same value wherever it is asked for in one trace."""
    return None if keys is None else StepKeys.split(keys.state.value)[0]


def finish_members(opt, new_params: List[Any], new_stored: Dict[int, Dict[str, Any]]):
    """Round the new parameters a step left in compute dtype (an algorithm with a step of its own) and
    record their masters; cast its new buffers to their storage dtypes. Returns ``(new_params, new_stored)``.

    A parameter the engine's own step already wrote in its dtype is left alone.
    """
    position = {i: j for j, i in enumerate(opt._trainable)}
    new_params = list(new_params)
    new_stored = {g: dict(stored) for g, stored in new_stored.items()}
    key = None
    for g, storage in opt._storage.items():
        plan = getattr(storage, 'plan', None)
        if plan is None:
            continue
        stored = new_stored.setdefault(g, {})
        old = storage.stored()
        for name, value in list(stored.items()):
            if name != MASTER and name in old:
                stored[name] = [n.astype(o.dtype) if _is_float(o) else n for n, o in zip(value, old[name])]
        masters: Dict[int, Any] = {}
        for k, i in enumerate(storage.members):
            j = position[i]
            if jnp.result_type(new_params[j]) == plan.param_dtypes[k]:
                continue                               # written by the engine's step (slot by slot)
            if plan.stochastic[k] and key is None:
                key = step_key(opt._keys)
            # per parameter: keys numbered apart from the slots'
            new_params[j], master = plan.finish_member(k, new_params[j], key, (1 << 20) + k)
            if master is not None:
                masters[plan.master_of[k]] = master
        if masters and MASTER not in stored:
            per_member = [masters[n] for n in range(len(plan.master_members))]
            stored[MASTER] = storage.master.layout.pack(per_member)
    return new_params, new_stored

