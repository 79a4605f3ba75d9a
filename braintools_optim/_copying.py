"""``copy.deepcopy`` and ``pickle`` for objects that hold brainstate States.

A brainstate ``State`` can be neither deep-copied nor pickled (it carries a
trace record and a traceback), so an optimizer, which holds its moments and
references the model's ParamStates, needs help. The rules are Python's:

* ``copy.deepcopy(opt)`` copies every State it reaches (its moments, and the
  registered ParamStates: the copy trains its own copy of the parameters);
  ``copy.deepcopy((model, opt))`` copies each State once, so the copied
  optimizer trains the copied model. Compiled caches are not copied (the copy
  compiles its own step on first use).
* ``pickle`` stores each State as its class, name and value (as NumPy) and
  rebuilds a fresh State on loading; States shared inside the pickled object
  stay shared.

:func:`states_in` finds the States by walking containers and object
attributes; :func:`deepcopy_object` and :func:`frozen_state`/:func:`thawed_state`
implement the two protocols for a class's ``__deepcopy__`` and
``__getstate__``/``__setstate__``.
"""

from __future__ import annotations

import copy
import types
from typing import Any, Dict, Iterable, List

import brainstate
import jax
import numpy as np

_ATOMIC = (str, bytes, int, float, complex, bool, type(None), type, types.FunctionType, types.BuiltinFunctionType,
           types.MethodType, types.ModuleType, np.ndarray, np.generic)


def states_in(root: Any, skip: Iterable[str] = ()) -> List[brainstate.State]:
    """Every State reachable from ``root`` (containers, attributes, slots), each once, in walk order."""
    found: List[brainstate.State] = []
    seen = set()
    skip = set(skip)
    pending = [root]
    while pending:
        obj = pending.pop()
        if id(obj) in seen or isinstance(obj, _ATOMIC) or isinstance(obj, jax.Array):
            continue
        seen.add(id(obj))
        if isinstance(obj, brainstate.State):
            found.append(obj)
            continue
        if isinstance(obj, dict):
            pending.extend(obj.values())
            pending.extend(obj.keys())
            continue
        if isinstance(obj, (list, tuple, set, frozenset)):
            pending.extend(obj)
            continue
        attributes = getattr(obj, '__dict__', None)
        if attributes is not None:
            pending.extend(value for name, value in attributes.items() if obj is not root or name not in skip)
        for cls in type(obj).__mro__:
            for name in getattr(cls, '__slots__', ()):
                if hasattr(obj, name):
                    pending.append(getattr(obj, name))
    return found


def _fresh_state(state: brainstate.State, value) -> brainstate.State:
    new = state.copy()
    new._value = value
    return new


def deepcopy_object(obj: Any, memo: Dict[int, Any], drop: Iterable[str] = ()) -> Any:
    """A deep copy of ``obj`` in which every reachable State is a fresh copy (see the module docstring).

    ``drop`` names attributes of ``obj`` not to copy (compiled caches): the
    copy does not have them.
    """
    drop = set(drop)
    for state in states_in(obj, skip=drop):
        if id(state) not in memo:
            memo[id(state)] = _fresh_state(state, copy.deepcopy(state.value, memo))
    new = object.__new__(type(obj))
    memo[id(obj)] = new
    for name, value in obj.__dict__.items():
        if name not in drop:
            new.__dict__[name] = copy.deepcopy(value, memo)
    return new


class PlainCopy:
    """Mixin: ``copy.deepcopy`` copies the ``__dict__`` (brainstate's Node copy would drop the
    attributes it does not flatten); States met on the way must already be in the memo
    (:func:`deepcopy_object` and :func:`thawed_state` put them there)."""

    def __deepcopy__(self, memo):
        new = object.__new__(type(self))
        memo[id(self)] = new
        for name, value in self.__dict__.items():
            new.__dict__[name] = copy.deepcopy(value, memo)
        return new


class FrozenState:
    """A State as pickle stores it: class, attributes (name, tag, ...) and value as NumPy."""

    __slots__ = ('cls', 'attributes', 'value', '_thawed')

    def __init__(self, state: brainstate.State):
        self._thawed = None
        self.cls = type(state)
        self.attributes = {k: v for k, v in vars(state).items()
                           if k in ('_name', 'tag')}
        self.value = jax.tree.map(np.asarray, state.value)

    def __deepcopy__(self, memo):
        return self                         # a snapshot: copies of a frozen object keep sharing it

    def __getstate__(self):
        return (self.cls, self.attributes, self.value)

    def __setstate__(self, state):
        self.cls, self.attributes, self.value = state
        self._thawed = None

    def thaw(self) -> brainstate.State:
        """The State this token stands for; the same object every time (nested objects share it)."""
        if self._thawed is not None:
            return self._thawed
        value = jax.tree.map(jax.numpy.asarray, self.value)
        try:
            state = self.cls(value)
        except TypeError:                       # a subclass whose constructor wants more
            state = self.cls.__new__(self.cls)
            brainstate.State.__init__(state, value)
        for key, attribute in self.attributes.items():
            setattr(state, key, attribute)
        self._thawed = state
        return state


def frozen_state(obj: Any, drop: Iterable[str] = ()) -> Dict[str, Any]:
    """``obj.__dict__`` with every reachable State replaced by a :class:`FrozenState` (for pickling)."""
    drop = set(drop)
    memo: Dict[int, Any] = {}
    for state in states_in(obj, skip=drop):
        memo[id(state)] = FrozenState(state)
    return {name: copy.deepcopy(value, memo) for name, value in obj.__dict__.items() if name not in drop}


def thawed_state(frozen: Dict[str, Any]) -> Dict[str, Any]:
    """The inverse of :func:`frozen_state`: every FrozenState becomes one fresh State (shared ones stay shared)."""
    memo: Dict[int, Any] = {}
    pending = [frozen]
    seen = set()
    tokens = []
    while pending:
        obj = pending.pop()
        if id(obj) in seen or isinstance(obj, _ATOMIC) or isinstance(obj, jax.Array):
            continue
        seen.add(id(obj))
        if isinstance(obj, FrozenState):
            tokens.append(obj)
            continue
        if isinstance(obj, dict):
            pending.extend(obj.values())
            pending.extend(obj.keys())
        elif isinstance(obj, (list, tuple, set, frozenset)):
            pending.extend(obj)
        else:
            if getattr(obj, '__dict__', None) is not None:
                pending.extend(obj.__dict__.values())
            for cls in type(obj).__mro__:
                for name in getattr(cls, '__slots__', ()):
                    if hasattr(obj, name):
                        pending.append(getattr(obj, name))
    for token in tokens:
        memo[id(token)] = token.thaw()
    return {name: copy.deepcopy(value, memo) for name, value in frozen.items()}
