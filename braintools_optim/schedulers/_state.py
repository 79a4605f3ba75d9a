"""The State pieces of a scheduler: its int32 step counter, derived views, and what copies carry."""

from __future__ import annotations

from typing import Any, Callable, Optional

import brainstate
import jax
import jax.numpy as jnp

from ._args import MAX_EPOCH, _is_tracer, check_epoch

class EpochCounter(brainstate.LongTermState):
    """A scheduler's step counter: a scalar int32 State that is never negative and never wraps.

    A value written to it (``sched.last_epoch.value = 10``, a loaded
    checkpoint) that is not already a scalar int32 JAX array is checked: an
    integer in ``[0, 2**31 - 1]``, else ``ValueError`` / ``TypeError``.
    Traced values (inside ``jit``) of another dtype are cast to int32 after
    saturating at the bounds; ``step()`` saturates at ``2**31 - 1``. Scalar
    int32 JAX arrays pass unchecked: they are what the schedulers' own
    (saturating) code and brainstate's write-back after every compiled call
    produce, and checking their value would cost a device round-trip per call.
    So do int32 JAX arrays with leading member axes: the counters of an
    ensemble's schedulers (built under ``brainstate.transform.vmap_new_states``),
    written back after a ``vmap``-ed step.
    """

    def _write_value(self, v) -> None:
        if isinstance(v, jax.Array) and v.dtype == jnp.int32 and (v.shape == () or not _is_tracer(v)):
            pass
        elif _is_tracer(v):
            if jnp.ndim(v) != 0:
                raise ValueError(f"the step counter must be a scalar, got shape {jnp.shape(v)}")
            if jnp.issubdtype(v.dtype, jnp.integer):
                v = jnp.clip(v, 0, MAX_EPOCH).astype(jnp.int32)
            else:
                v = jnp.clip(jnp.floor(v), 0, MAX_EPOCH).astype(jnp.int32)
        else:
            v = jnp.asarray(check_epoch(v, 'last_epoch'), jnp.int32)
        super()._write_value(v)


class StateView:
    """A derived value with braintools' ``OptimState`` interface: read (and maybe write) ``.value``.

    ``current_lrs``, ``T_cur`` and ``T_i`` are computed from the scheduler's
    State (so they are right eagerly and traced under ``jit``) rather than kept
    as copies that could go stale.
    """

    __slots__ = ('_get', '_set', '_name')

    def __init__(self, name: str, get: Callable[[], Any], set: Optional[Callable[[Any], None]] = None):
        self._name, self._get, self._set = name, get, set

    @property
    def value(self):
        return self._get()

    @value.setter
    def value(self, value) -> None:
        if self._set is None:
            raise AttributeError(f"{self._name} is derived from the scheduler's State and cannot be assigned")
        self._set(value)

    def __repr__(self) -> str:
        return f"{self._name}(value={self._get()!r})"


class _SavedState:
    """A State as ``copy``/``pickle`` carry it: its class, value and name (States hold tracebacks)."""

    def __init__(self, state: brainstate.State):
        value = state.value
        if any(_is_tracer(leaf) for leaf in jax.tree.leaves(value)):
            raise TypeError("cannot copy or pickle a scheduler while it is being traced")
        self.cls, self.value, self.name = type(state), value, state.name

    def restore(self) -> brainstate.State:
        return self.cls(self.value, name=self.name)


@jax.jit
def _next_epoch(epoch):
    """``epoch + 1``, saturating at ``MAX_EPOCH`` (one dispatch when called eagerly)."""
    return jnp.minimum(epoch, MAX_EPOCH - 1) + 1
