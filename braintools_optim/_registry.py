"""Which arrays an optimizer trains, and under which keys.

The keys are exactly those the user gave: ``register_trainable_weights({'w': s})``
keys ``s`` by ``'w'``, ``module.states(brainstate.ParamState)`` by brainstate's
path tuples, a list ``[s0, s1]`` by the positions ``0, 1``. ``opt.param_states``
returns them in a :class:`ParamDict` (registration order, any mix of key types),
so ``brainstate.transform.grad(loss, opt.param_states)`` keys its gradients
the same way. Rules:

* registering the same State object again is a no-op (its key and group stay);
* a different State whose key is already taken (two modules both have
  ``('weight',)``) is kept under ``('registration<n>', *key)``, where ``n``
  counts calls of ``register_trainable_weights`` from 0 (or under
  ``(prefix, *key)`` when the caller names a prefix);
* a ParamState may hold a pytree of arrays (``brainstate.nn.Linear`` keeps
  ``{'weight': W, 'bias': b}`` in one State): every leaf is trained as its own
  parameter, identified by the State's key plus the leaf's path; its gradient
  is the matching leaf of the State's gradient.

The registry also remembers each array's shape, dtype and unit at
registration, so a parameter changed behind the optimizer's back is caught
(:meth:`ParamRegistry.check_unchanged`) instead of silently re-cast.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Dict, Hashable, Iterator, List, NamedTuple, Optional, Tuple

import brainstate
import jax
import jax.numpy as jnp

from . import _ensemble, _keys, _units
from ._errors import ParameterChangedError


class ParamDict(Mapping):
    """An insertion-ordered, read-only mapping that JAX flattens in that order.

    ``opt.param_states`` returns one (of ParamStates), and
    ``brainstate.transform.grad(loss, opt.param_states)`` then returns one (of
    gradients). Unlike a ``dict``, JAX never sorts its keys, so string and tuple
    keys may be mixed. ``to_dict()``, ``to_pytree()`` and ``to_pytree_value()``
    are here for code written against braintools' ``UniqueStateManager``.

    >>> d = ParamDict([('w', 1.0), (('layer', 'b'), 2.0)])
    >>> list(d), d['w']
    (['w', ('layer', 'b')], 1.0)
    """

    __slots__ = ('_items',)

    def __init__(self, items=()):
        self._items = dict(items)

    def __getitem__(self, key):
        return self._items[key]

    def __iter__(self) -> Iterator:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"ParamDict({self._items!r})"

    def __eq__(self, other):
        return isinstance(other, Mapping) and dict(self._items) == dict(other.items())

    __hash__ = None

    def to_dict(self) -> Dict[Any, Any]:
        """A plain ``dict`` with the same keys and values."""
        return dict(self._items)

    def to_pytree(self) -> 'ParamDict':
        """The mapping itself (it is a pytree); braintools' ``UniqueStateManager`` spelling."""
        return self

    def to_pytree_value(self) -> 'ParamDict':
        """The same keys with each State's ``value`` (for a mapping of States)."""
        return ParamDict((key, getattr(value, 'value', value)) for key, value in self._items.items())

    to_dict_value = to_pytree_value


jax.tree_util.register_pytree_with_keys(
    ParamDict,
    lambda d: ([(jax.tree_util.DictKey(k), v) for k, v in d.items()], tuple(d)),
    lambda keys, values: ParamDict(zip(keys, values)),
    flatten_func=lambda d: (list(d.values()), tuple(d)),
)


def _leaves(value) -> list:
    return jax.tree.leaves(value, is_leaf=_units.is_quantity)


def _path_part(entry) -> Hashable:
    for attribute in ('key', 'idx', 'name'):           # DictKey, SequenceKey, GetAttrKey
        if hasattr(entry, attribute):
            return getattr(entry, attribute)
    return str(entry)


def _is_array(value) -> bool:
    return _units.is_quantity(value) or isinstance(value, jax.Array) or hasattr(value, 'dtype')


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


class Signature(NamedTuple):
    """What a parameter looked like at registration: its array must keep it."""

    shape: Tuple[int, ...]
    dtype: Any
    unit: Any

    @classmethod
    def of(cls, value) -> 'Signature':
        mantissa, unit = _units.split(value)
        return cls(tuple(mantissa.shape), jnp.dtype(mantissa.dtype), unit)

    def describe(self) -> str:
        unit = '' if self.unit is None else f' {self.unit}'
        return f"{self.dtype.name}{list(self.shape)}{unit}"


class Param(NamedTuple):
    """One trainable array: its State's key, its path inside the State, and a read/write handle."""

    key: Any                     # the State's key, as registered
    leaf_path: Tuple             # () for a State holding one array
    handle: Any                  # the ParamState itself, or a LeafParam
    state: brainstate.ParamState

    @property
    def ident(self) -> Any:
        """The key of per-parameter dicts (``opt.buffers()``): the State's key, plus the leaf path if any.

        ``'w'``; ``('l1', 'weight', 'bias')`` for the ``'bias'`` leaf of State ``('l1', 'weight')``.
        """
        if not self.leaf_path:
            return self.key
        return (self.key if isinstance(self.key, tuple) else (self.key,)) + tuple(self.leaf_path)

    @property
    def name(self) -> str:
        """Unambiguous display form (``'w'``, ``('l1', 'weight')['bias']``)."""
        return _keys.describe(self.key, self.leaf_path)

    @property
    def dotted(self) -> str:
        """What path selectors match (``'l1.weight.bias'``)."""
        return _keys.dotted(self.key, self.leaf_path)


def _split_state(key, state) -> List[Param]:
    value = state.value
    if _is_array(value):
        return [Param(key, (), state, state)]
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(value, is_leaf=_units.is_quantity)
    return [Param(key, tuple(_path_part(entry) for entry in path), LeafParam(state, i, treedef), state)
            for i, (path, _) in enumerate(with_paths)]


def _nested(prefix: Tuple, value) -> List[Tuple[Any, Any]]:
    """States inside nested dicts/lists, keyed by their path tuple (braintools accepts such trees)."""
    if isinstance(value, Mapping):
        return [entry for k, v in value.items() for entry in _nested(prefix + (k,), v)]
    if isinstance(value, (list, tuple)) and not isinstance(value, brainstate.State):
        return [entry for i, v in enumerate(value) for entry in _nested(prefix + (i,), v)]
    return [(prefix, value)]


def as_entries(param_states: Any) -> List[Tuple[Any, Any]]:
    """``[(key, State)]`` from a mapping (keys as given), a sequence (positions) or one State.

    A value that is itself a dict or list of States (a nested tree, as
    braintools accepts) contributes one entry per State, keyed by its path
    tuple: ``{'enc': {'w': s}}`` gives ``('enc', 'w')``.
    """
    if isinstance(param_states, brainstate.State):
        return [(0, param_states)]
    if isinstance(param_states, Mapping):
        items = list(param_states.items())
    elif isinstance(param_states, (list, tuple)):
        items = list(enumerate(param_states))
    else:
        items = None
    if items is not None:
        entries = []
        for key, value in items:
            if isinstance(value, (Mapping, list, tuple)):
                entries.extend(_nested((key,), value))
            else:
                entries.append((key, value))
        return entries
    raise TypeError("register_trainable_weights takes a dict of key -> ParamState (what "
                    "module.states(brainstate.ParamState) returns), a list of ParamStates or one "
                    f"ParamState; got {type(param_states).__name__}")


def check_trainable(key, state) -> List[Param]:
    """The parameters of one State, or a clear error if it cannot be trained."""
    where = _keys.describe(key)
    if not isinstance(state, brainstate.ParamState):
        raise TypeError(f"{where}: only brainstate.ParamState can be trained, got "
                        f"{type(state).__name__}. Wrap trainable arrays in ParamState; leave "
                        f"frozen ones unregistered.")
    try:
        hash(key)
    except TypeError:
        raise TypeError(f"parameter keys must be hashable, got {key!r}") from None
    params = _split_state(key, state)
    if not params:
        raise TypeError(f"{where}: the ParamState holds no array")
    for param in params:
        mantissa, _ = _units.split(param.handle.value)
        dtype = getattr(mantissa, 'dtype', None)
        if dtype is not None and jnp.issubdtype(dtype, jnp.complexfloating):
            raise TypeError(f"{param.name}: complex parameters are not supported (the update rules "
                            f"square gradients element-wise and clip real and imaginary parts apart); "
                            f"train the real and imaginary parts as two real ParamStates")
        if dtype is None or not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(f"{param.name}: a trainable parameter must be a floating-point array, "
                            f"got {dtype if dtype is not None else type(mantissa).__name__}")
    return params


class ParamRegistry:
    """Registered States (by key) and the trainable arrays they hold, in registration order."""

    def __init__(self):
        self._states: Dict[Any, brainstate.ParamState] = {}
        self._params: List[Param] = []
        self._signatures: List[Signature] = []
        self._calls = 0
        self._trees: Dict[Any, Tuple[Any, List[int]]] = {}   # key -> (treedef, param indices)

    # ---------------------------------------------------------------- reading
    def __len__(self) -> int:
        return len(self._params)

    @property
    def params(self) -> List[Param]:
        return list(self._params)

    def states(self) -> ParamDict:
        """The registered States by key (what ``opt.param_states`` returns)."""
        return ParamDict(self._states)

    def handles(self) -> List[Any]:
        return [param.handle for param in self._params]

    def values(self) -> List[Any]:
        return [param.handle.value for param in self._params]

    def index_of_state(self, state) -> List[int]:
        return [i for i, param in enumerate(self._params) if param.state is state]

    def key_of(self, state) -> Optional[Any]:
        for key, existing in self._states.items():
            if existing is state:
                return key
        return None

    def signatures(self) -> List[Signature]:
        return list(self._signatures)

    # ---------------------------------------------------------------- registration
    def plan(self, param_states: Any, prefix: Optional[Hashable] = None) -> List[Tuple[Any, Any, List[Param]]]:
        """``[(key, State, params)]`` that :meth:`commit` would add; checks everything, changes nothing.

        States already registered are left out; raises on anything that
        cannot be trained or a key that cannot be placed.
        """
        entries = as_entries(param_states)
        planned, taken = [], dict(self._states)
        seen_ids = set()
        for key, state in entries:
            check_trainable(key, state)
            if any(existing is state for existing in self._states.values()) or id(state) in seen_ids:
                continue
            seen_ids.add(id(state))
            if prefix is not None:
                key = (prefix,) + (key if isinstance(key, tuple) else (key,))
            if key in taken:
                key = (f'registration{self._calls}',) + (key if isinstance(key, tuple) else (key,))
                if key in taken:
                    raise ValueError(f"cannot register {_keys.describe(key)}: the key is already taken; "
                                     f"pass prefix= to register_trainable_weights")
            taken[key] = state
            planned.append((key, state, [p._replace(key=key) for p in _split_state(key, state)]))
        idents = [p.ident for p in self._params] + [p.ident for _, _, ps in planned for p in ps]
        if len(set(idents)) != len(idents):
            clash = sorted({repr(i) for i in idents if idents.count(i) > 1})
            raise ValueError(f"parameters would share the name {', '.join(clash)} (a State key equals another "
                             f"State's key plus a leaf path); pass prefix= to register_trainable_weights")
        return planned

    def commit(self, planned) -> List[int]:
        """Add what :meth:`plan` returned; returns the indices of the new parameters."""
        self._calls += 1
        new = []
        for key, state, params in planned:
            self._states[key] = state
            start = len(self._params)
            self._params.extend(params)
            self._signatures.extend(Signature.of(p.handle.value) for p in params)
            if params[0].handle is not state:
                self._trees[key] = (jax.tree.structure(state.value, is_leaf=_units.is_quantity),
                                    list(range(start, len(self._params))))
            new.extend(range(start, len(self._params)))
        return new

    def resign(self, indices) -> None:
        """Accept the current shape/dtype/unit of these parameters (after an explicit re-initialisation)."""
        for i in indices:
            self._signatures[i] = Signature.of(self._params[i].handle.value)

    # ---------------------------------------------------------------- checks
    def check_unchanged(self) -> None:
        """Raise :class:`ParameterChangedError` if a parameter's shape, dtype or unit changed."""
        for i, param in enumerate(self._params):
            value = param.handle.value
            mantissa, unit = _units.split(value)
            expected = self._signatures[i]
            if (tuple(getattr(mantissa, 'shape', ())) != expected.shape
                    or getattr(mantissa, 'dtype', None) != expected.dtype
                    or (unit != expected.unit and not _same_unit(unit, expected.unit))):
                now = Signature.of(value) if hasattr(mantissa, 'dtype') else type(value).__name__
                if isinstance(now, Signature) and now.dtype == expected.dtype:
                    reason = _ensemble.describe_shape_change(expected.shape, now.shape)
                    if reason is not None:
                        raise ParameterChangedError(f"parameter {param.name} was registered as "
                                                    f"{expected.describe()} but now holds {now.describe()}: {reason}")
                now = now.describe() if isinstance(now, Signature) else now
                raise ParameterChangedError(
                    f"parameter {param.name} was registered as {expected.describe()} but now holds "
                    f"{now}; its optimizer buffers no longer fit. Call opt.reinitialize({param.key!r}) "
                    f"to restart its optimizer state for the new value, or restore its old shape and dtype")

    def tree_of(self, key):
        """``(treedef, parameter indices)`` of a pytree-valued State, or ``None``."""
        return self._trees.get(key)


def _same_unit(a, b) -> bool:
    if a is None or b is None:
        return a is b
    try:
        return a == b
    except Exception:
        return False
