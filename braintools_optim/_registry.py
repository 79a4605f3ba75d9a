"""Which parameters an optimizer trains, and under which keys.

The keys are what ``opt.param_states`` returns, and therefore exactly how
``brainstate.transform.grad(loss, opt.param_states)`` keys its gradients.
Rules:

* keys are tuples (``module.states()`` paths already are; a plain ``'w'`` key
  becomes ``('w',)``; the i-th State of a list becomes ``('param_i',)``);
* registering the same State object again is a no-op;
* a different State whose key is already taken (two modules both have
  ``('weight',)``) is kept under ``('registration<n>',) + key``, where ``n``
  counts calls of ``register_trainable_weights`` from 0 (or under
  ``(prefix,) + key`` when the caller names a prefix);
* if the keys stop being mutually sortable (JAX sorts dict keys), every key
  element becomes a string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Hashable, List, Optional, Tuple

import brainstate
import jax.numpy as jnp

from . import _units

Key = Tuple[Hashable, ...]


def path_str(key: Key) -> str:
    """A readable form of a parameter key, for error messages: ``'layer/0/weight'``."""
    return '/'.join(str(part) for part in key)


class ParamRegistry:
    """An insertion-ordered map from key to :class:`brainstate.ParamState`."""

    def __init__(self):
        self._states: Dict[Key, brainstate.ParamState] = {}
        self._group_of: Dict[int, int] = {}          # id(state) -> parameter group
        self._calls = 0

    def __len__(self) -> int:
        return len(self._states)

    def keys(self) -> List[Key]:
        return list(self._states)

    def states(self) -> List[brainstate.ParamState]:
        return list(self._states.values())

    def as_dict(self) -> Dict[Key, brainstate.ParamState]:
        return dict(self._states)

    def groups(self) -> List[int]:
        """The parameter group of every parameter, in key order."""
        return [self._group_of[id(state)] for state in self._states.values()]

    def contains_state(self, state) -> bool:
        return any(existing is state for existing in self._states.values())

    def add(self, param_states: Any, prefix: Optional[str] = None, group: int = 0) -> List[brainstate.ParamState]:
        """Register States; returns the States newly added (already-known ones are skipped)."""
        entries = _as_entries(param_states)
        for key, state in entries:          # all-or-nothing: check everything first
            _check_trainable(key, state)
        call = self._calls
        self._calls += 1
        added: List[brainstate.ParamState] = []
        for key, state in entries:
            if self.contains_state(state):
                continue
            key = (prefix,) + key if prefix is not None else key
            if key in self._states:
                key = (f'registration{call}',) + key
                if key in self._states:
                    raise ValueError(f"cannot register {path_str(key)}: the key is already taken; "
                                     f"pass prefix= to register_trainable_weights")
            self._states[key] = state
            self._group_of[id(state)] = group
            added.append(state)
        self._ensure_sortable()
        return added

    def _ensure_sortable(self) -> None:
        try:
            sorted(self._states)
        except TypeError:
            renamed = {tuple(str(part) for part in key): state for key, state in self._states.items()}
            if len(renamed) != len(self._states):
                raise ValueError("parameter keys collide once written as strings; "
                                 "pass prefix= to register_trainable_weights") from None
            self._states = renamed


def _as_entries(param_states: Any) -> List[Tuple[Key, Any]]:
    if isinstance(param_states, brainstate.State):
        return [(('param_0',), param_states)]
    if isinstance(param_states, Mapping):
        return [(key if isinstance(key, tuple) else (key,), state) for key, state in param_states.items()]
    if isinstance(param_states, (list, tuple)):
        return [((f'param_{i}',), state) for i, state in enumerate(param_states)]
    raise TypeError("register_trainable_weights takes a dict of path -> ParamState (what "
                    "module.states(brainstate.ParamState) returns), a list of ParamStates or one "
                    f"ParamState; got {type(param_states).__name__}")


def _check_trainable(key: Key, state: Any) -> None:
    if not isinstance(state, brainstate.ParamState):
        raise TypeError(f"{path_str(key)}: only brainstate.ParamState can be trained, got "
                        f"{type(state).__name__}. Wrap trainable arrays in ParamState; leave "
                        f"frozen ones unregistered.")
    mantissa, _ = _units.split(state.value)
    if not hasattr(mantissa, 'dtype') or not jnp.issubdtype(mantissa.dtype, jnp.inexact):
        raise TypeError(f"{path_str(key)}: a trainable parameter must be a floating-point array, got "
                        f"{getattr(mantissa, 'dtype', type(mantissa).__name__)}")
