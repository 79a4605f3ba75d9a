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
  element becomes a string;
* a ParamState may hold a pytree of arrays (``brainstate.nn.Linear`` keeps
  ``{'weight': W, 'bias': b}`` in one State): every leaf is trained as its own
  parameter under the State's key plus the leaf's path (``('l1', 'weight',
  'bias')``), and its gradient is the matching leaf of the State's gradient.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Hashable, List, Optional, Tuple

import brainstate
import jax
import jax.numpy as jnp

from . import _units

Key = Tuple[Hashable, ...]


def path_str(key: Key) -> str:
    """A readable form of a parameter key, for error messages: ``'layer/0/weight'``."""
    return '/'.join(str(part) for part in key)


def _leaves(value) -> list:
    return jax.tree.leaves(value, is_leaf=_units.is_quantity)


def _path_part(entry) -> Hashable:
    for attribute in ('key', 'idx', 'name'):           # DictKey, SequenceKey, GetAttrKey
        if hasattr(entry, attribute):
            return getattr(entry, attribute)
    return str(entry)


class LeafParam:
    """One array inside a pytree-valued ParamState, read and written like a State's ``value``."""

    __slots__ = ('state', 'index', 'treedef')

    def __init__(self, state: brainstate.ParamState, index: int, treedef):
        self.state, self.index, self.treedef = state, index, treedef

    @property
    def value(self):
        return _leaves(self.state.value)[self.index]

    @value.setter
    def value(self, new) -> None:
        leaves = _leaves(self.state.value)
        leaves[self.index] = new
        self.state.value = jax.tree.unflatten(self.treedef, leaves)


def _split_state(key: Key, state) -> List[Tuple[Key, Any]]:
    """``[(leaf key, handle)]``: the State itself for an array value, a LeafParam per leaf otherwise."""
    value = state.value
    if _units.is_quantity(value) or isinstance(value, jax.Array) or hasattr(value, 'dtype'):
        return [(key, state)]
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(value, is_leaf=_units.is_quantity)
    return [(key + tuple(_path_part(entry) for entry in path), LeafParam(state, i, treedef))
            for i, (path, _) in enumerate(with_paths)]


class ParamRegistry:
    """An insertion-ordered map from key to :class:`brainstate.ParamState`.

    ``keys()``, ``states()`` and ``groups()`` list the trainable *arrays*: a
    State holding one array appears as itself, a State holding a pytree as one
    :class:`LeafParam` per leaf. ``as_dict()`` lists the States themselves.
    """

    def __init__(self):
        self._states: Dict[Key, brainstate.ParamState] = {}
        self._group_of: Dict[int, int] = {}          # id(state) -> parameter group
        self._calls = 0
        self._leaf_entries: List[Tuple[Key, Any, int]] = []
        self._trees: Dict[Key, Any] = {}             # key -> (treedef, leaf keys) of pytree States
        self._handles: Dict[Tuple[int, int], LeafParam] = {}

    def __len__(self) -> int:
        return len(self._states)

    def keys(self) -> List[Key]:
        return [key for key, _, _ in self._leaf_entries]

    def states(self) -> List[Any]:
        return [handle for _, handle, _ in self._leaf_entries]

    def as_dict(self) -> Dict[Key, brainstate.ParamState]:
        return dict(self._states)

    def groups(self) -> List[int]:
        """The parameter group of every trainable array, in key order."""
        return [group for _, _, group in self._leaf_entries]

    def leaf_grads(self, grads: Any) -> Any:
        """Gradients keyed like :meth:`keys`: pytree gradients of pytree States split into leaves.

        Anything that is not a dict, or keys that are not registered, pass
        through unchanged for :func:`check_gradients` to report. A pytree
        gradient whose structure differs from its State's raises.
        """
        if not self._trees or not isinstance(grads, Mapping):
            return grads
        from ._gradients import GradientMismatchError
        out = {}
        for key, grad in grads.items():
            tree = self._trees.get(key)
            if tree is None:
                out[key] = grad
                continue
            treedef, leaf_keys = tree
            leaves, grad_treedef = jax.tree.flatten(grad, is_leaf=_units.is_quantity)
            if grad_treedef != treedef:
                raise GradientMismatchError(f"gradient for {path_str(key)!r} has structure {grad_treedef}, "
                                            f"the parameter has {treedef}")
            out.update(zip(leaf_keys, leaves))
        return out

    def _rebuild_leaves(self) -> None:
        # A LeafParam is created once per (State, leaf) and kept: callers key by its identity.
        self._leaf_entries, self._trees = [], {}
        for key, state in self._states.items():
            parts = [(leaf_key, self._handles.setdefault((id(handle.state), handle.index), handle)
                      if isinstance(handle, LeafParam) else handle)
                     for leaf_key, handle in _split_state(key, state)]
            if parts[0][1] is not state:
                self._trees[key] = (jax.tree.structure(state.value, is_leaf=_units.is_quantity),
                                    [leaf_key for leaf_key, _ in parts])
            group = self._group_of[id(state)]
            self._leaf_entries.extend((leaf_key, handle, group) for leaf_key, handle in parts)

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
        self._rebuild_leaves()
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
    parts = _split_state(key, state)
    if not parts:
        raise TypeError(f"{path_str(key)}: the ParamState holds no array")
    for leaf_key, handle in parts:
        mantissa, _ = _units.split(handle.value)
        if not hasattr(mantissa, 'dtype') or not jnp.issubdtype(mantissa.dtype, jnp.inexact):
            raise TypeError(f"{path_str(leaf_key)}: a trainable parameter must be a floating-point array, "
                            f"got {getattr(mantissa, 'dtype', type(mantissa).__name__)}")
