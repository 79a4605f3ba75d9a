"""Deduplicate a pytree of brainstate States by identity: ``UniqueStateManager``.

A model often reaches the same ``State`` by two routes (tied embeddings, a layer kept
both in a list and under a name). An optimizer must see each such State once, or it
would apply two updates to one array. ``UniqueStateManager`` walks a pytree whose
leaves are States, keeps the *first* occurrence of each State object (``id``) under the
path where it was first met, in ``jax.tree`` flattening order (dict keys sorted), and
gives the survivors back as a nested dict (``to_pytree``), a flat dict keyed by path
strings (``to_dict``), or ``(path, State)`` pairs (``get_flattened``).

It is a drop-in for ``braintools.optim.UniqueStateManager`` (same methods, arguments
and results), except where braintools silently lost or mislabelled States; there it
raises a clear error or gives the right answer instead (see the class docstring).

>>> import brainstate, jax.numpy as jnp
>>> from braintools_optim.unique_states import UniqueStateManager
>>> emb = brainstate.ParamState(jnp.ones((4, 2)))
>>> hidden = brainstate.ParamState(jnp.zeros(2))
>>> usm = UniqueStateManager({'out': {'w': emb}, 'embed': {'w': emb}, 'hidden': hidden})
>>> len(usm)                                     # emb is counted once
2
>>> list(usm.to_dict())                          # 'embed' sorts before 'out': it wins
['embed.w', 'hidden']
>>> usm.to_pytree()['embed']['w'] is emb
True
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Set, Tuple

import jax
from brainstate import State
from jax.tree_util import DictKey, FlattenedIndexKey, GetAttrKey, SequenceKey

__all__ = ['UniqueStateManager']

Path = Tuple[Any, ...]   # a jax key path: (DictKey('layer'), SequenceKey(0), ...)


def _plain_key(entry: Any) -> Any:
    """The dict key ``to_pytree`` uses for one step of a jax key path.

    ``DictKey('w')`` -> ``'w'``, ``SequenceKey(0)`` -> ``0``, ``GetAttrKey('x')`` -> ``'x'``,
    ``FlattenedIndexKey(1)`` -> ``1``; any other object is used as it is.
    """
    if isinstance(entry, (DictKey, FlattenedIndexKey)):
        return entry.key
    if isinstance(entry, SequenceKey):
        return entry.idx
    if isinstance(entry, GetAttrKey):
        return entry.name
    for attribute in ('key', 'idx', 'name'):     # key types of other pytree libraries
        if hasattr(entry, attribute):
            return getattr(entry, attribute)
    return entry


def _path_string(path: Path) -> str:
    """The ``to_dict`` key of a path: names joined by ``'.'``, list positions as ``[i]``.

    ``{'layer1': {'weight': s}}`` -> ``'layer1.weight'``; ``{'blocks': [{'w': s}]}`` ->
    ``'blocks[0].w'``; a brainstate tuple key ``('l1', 'weight')`` is written as ``str``
    writes the tuple, ``"('l1', 'weight')"``, as braintools does; the empty path (the
    pytree is one State) -> ``''``.
    """
    text = ''
    for entry in path:
        plain = _plain_key(entry)
        if _is_position(entry):
            text += f'[{plain}]'
        else:
            text += f'.{plain}' if text else str(plain)
    return text


def _is_position(entry: Any) -> bool:
    """Whether a key-path step is a position in a sequence (written ``[i]`` by ``to_dict``)."""
    if isinstance(entry, SequenceKey):
        return True
    if isinstance(entry, (DictKey, GetAttrKey, FlattenedIndexKey)):
        return False
    return hasattr(entry, 'idx') and not hasattr(entry, 'key')


def _describe(path: Path) -> str:
    return f"path {_path_string(path)!r}" if path else 'the root of the pytree'


def _is_state(node: Any) -> bool:
    return isinstance(node, State)


def _states_with_paths(pytree: Any) -> List[Tuple[Path, State]]:
    """Flatten ``pytree`` to ``(path, State)`` pairs; any other leaf is an error."""
    pairs, _ = jax.tree.flatten_with_path(pytree, is_leaf=_is_state)
    for path, leaf in pairs:
        if not isinstance(leaf, State):
            raise TypeError(
                f"UniqueStateManager takes a pytree whose leaves are brainstate States, but the leaf at "
                f"{_describe(path)} is of type {type(leaf).__name__}. Wrap it in a State "
                f"(e.g. brainstate.ParamState(value)) or leave it out.")
    return pairs


class UniqueStateManager:
    """Keep each brainstate ``State`` of a pytree once, under the path where it first appears.

    Parameters
    ----------
    pytree : PyTree[State], optional
        If given, :meth:`make_unique` is called on it.

    Which occurrence wins
        The pytree is flattened as ``jax.tree`` flattens it (dict keys sorted, lists in
        order); the first path that reaches a State keeps it, later ones are dropped.
        :meth:`merge_with` appends States not yet seen, after the existing ones.

    Output formats
        :meth:`to_pytree` nests plain dicts along each path (a list position becomes an
        ``int`` key, since a deduplicated list may have gaps); a brainstate
        ``module.states()`` dict, keyed by tuples such as ``('l1', 'weight')``, comes back
        as a flat dict with those same tuple keys. :meth:`to_dict` keys by strings:
        ``'layer1.weight'``, ``'blocks[0].w'``, ``"('l1', 'weight')"``.

    Where this differs from braintools 0.3/0.4 (identical to each other here)
        - A leaf that is not a State raises ``TypeError`` naming its path (braintools
          silently dropped it, so a bare array was never trained).
        - :meth:`merge_with` raises ``ValueError`` when a new State's path is already taken
          by another State, or lies above/below one (braintools kept both; ``to_pytree`` and
          ``to_dict`` then silently lost one, or ``to_pytree`` failed; two modules'
          ``states()`` both keyed ``('weight',)`` lost one this way). Nothing is changed on error.
        - :meth:`update_state` refuses a non-State (``TypeError``) and a State the manager
          already holds under another path (``ValueError``; braintools held it twice).
        - :meth:`to_dict` and :meth:`to_dict_value` raise ``ValueError`` when two paths
          give the same string (``{'a.b': s1, 'a': {'b': s2}}``); braintools kept one.
        - A pytree that is a single State: ``to_pytree`` returns that State (braintools: ``{}``).
        - Named-tuple/dataclass fields (``GetAttrKey``) are keyed by their name: ``'x'`` in
          ``to_pytree``, ``'a.x'`` in ``to_dict`` (braintools used the key object and ``'a..x'``).
        - A dict key that is a string starting with ``'['`` is joined with a dot like any
          other name (braintools glued it on as if it were a list position).
        - :meth:`get_state_by_path` and :meth:`update_state` also accept a ``to_dict`` key.
        - ``flattened_states``, ``unique_paths``, ``unique_states`` and ``seen_ids`` are
          read-only properties returning copies: changing them does not change the manager.

    Examples
    --------
    >>> import brainstate, jax.numpy as jnp
    >>> w1 = brainstate.ParamState(jnp.ones((2, 3)))
    >>> b1 = brainstate.ParamState(jnp.zeros(3))
    >>> tree = {'layer1': {'weight': w1, 'bias': b1},
    ...         'layer2': {'weight': w1, 'bias': brainstate.ParamState(jnp.ones(4))}}
    >>> usm = UniqueStateManager(tree)
    >>> usm.num_unique_states                    # w1 appears twice, is kept once
    3
    >>> list(usm.to_dict())
    ['layer1.bias', 'layer1.weight', 'layer2.bias']
    >>> usm.to_pytree_value()['layer1']['bias'].shape
    (3,)
    >>> usm.get_state_by_path('layer1.weight') is w1
    True
    """

    def __init__(self, pytree: Any = None):
        self._paths: List[Path] = []
        self._states: List[State] = []
        self._position: Dict[int, int] = {}     # id(state) -> index in _paths/_states
        self._treedef = None
        if pytree is not None:
            self.make_unique(pytree)

    # ------------------------------------------------------------------ building

    def make_unique(self, pytree: Any) -> Any:
        """Replace the managed States by the unique States of ``pytree``; return ``to_pytree()``.

        Everything held before is forgotten. The first path reaching each State (in
        ``jax.tree`` flattening order) is kept. ``pytree_structure`` becomes the treedef of
        ``pytree``. A leaf that is not a State raises ``TypeError`` and changes nothing.

        >>> import brainstate, jax.numpy as jnp
        >>> s = brainstate.ParamState(jnp.ones(2))
        >>> unique = UniqueStateManager().make_unique({'b': s, 'a': [s, s]})
        >>> unique['a'][0] is s                   # 'a' sorts first; a list position is an int key
        True
        >>> list(unique)
        ['a']
        """
        pairs = _states_with_paths(pytree)
        treedef = jax.tree.structure(pytree, is_leaf=_is_state)
        paths, states, position = self._absorb(pairs, [], [], {})
        self._paths, self._states, self._position = paths, states, position
        self._treedef = treedef
        return self.to_pytree()

    def merge_with(self, other_pytree: Any) -> 'UniqueStateManager':
        """Add the States of ``other_pytree`` not held yet, after the existing ones; return ``self``.

        A State already held (under any path) is skipped. A new State whose path is
        already taken, or lies inside or above a held State's path, raises ``ValueError``:
        ``to_pytree`` could not hold both. Nest the second pytree under a name of its own
        (``merge_with({'decoder': decoder.states()})``). On any error nothing changes.
        ``pytree_structure`` is left as it was.

        >>> import brainstate, jax.numpy as jnp
        >>> a, b = brainstate.ParamState(jnp.ones(1)), brainstate.ParamState(jnp.ones(1))
        >>> usm = UniqueStateManager({'a': a}).merge_with({'b': b, 'again': a})
        >>> list(usm.to_dict())
        ['a', 'b']
        """
        pairs = _states_with_paths(other_pytree)
        self._paths, self._states, self._position = self._absorb(
            pairs, list(self._paths), list(self._states), dict(self._position))
        return self

    @staticmethod
    def _absorb(pairs, paths, states, position):
        """Append the unseen States of ``pairs`` to copies of the containers, checking paths."""
        taken = {tuple(_plain_key(k) for k in path): path for path in paths}
        inner = {}                                   # proper prefix -> a held path below it
        for plain, path in taken.items():
            for cut in range(len(plain)):
                inner.setdefault(plain[:cut], path)
        for path, state in pairs:
            if id(state) in position:
                continue
            plain = tuple(_plain_key(k) for k in path)
            clash = taken.get(plain)
            if clash is None:
                clash = inner.get(plain)
            if clash is None:
                clash = next((taken[plain[:cut]] for cut in range(len(plain)) if plain[:cut] in taken), None)
            if clash is not None:
                raise ValueError(
                    f"UniqueStateManager: the State at {_describe(path)} clashes with the State already held at "
                    f"{_describe(clash)}; a pytree cannot hold both, and one would be lost. Put the new pytree "
                    f"under a key of its own, e.g. merge_with({{'other': pytree}}).")
            taken[plain] = path
            for cut in range(len(plain)):
                inner.setdefault(plain[:cut], path)
            position[id(state)] = len(states)
            paths.append(path)
            states.append(state)
        return paths, states, position

    # ------------------------------------------------------------------ outputs

    def _nest(self, leaves: List[Any]) -> Any:
        if not self._paths:
            return {}
        if self._paths[0] == ():                     # the whole pytree was one State
            return leaves[0]
        tree: Dict[Any, Any] = {}
        for path, leaf in zip(self._paths, leaves):
            node = tree
            keys = [_plain_key(k) for k in path]
            for key in keys[:-1]:
                node = node.setdefault(key, {})
            node[keys[-1]] = leaf
        return tree

    def to_pytree(self) -> Any:
        """The held States as nested dicts along their paths (``{}`` when empty).

        List positions become ``int`` keys; brainstate tuple keys stay tuple keys; a
        single-State pytree gives that State back.

        >>> import brainstate, jax.numpy as jnp
        >>> s = brainstate.ParamState(jnp.ones(2))
        >>> UniqueStateManager({'enc': {'w': s}}).to_pytree()['enc']['w'] is s
        True
        """
        return self._nest(self._states)

    def to_pytree_value(self) -> Any:
        """Like :meth:`to_pytree`, with each State replaced by its current ``.value``.

        >>> import brainstate, jax.numpy as jnp
        >>> UniqueStateManager({'w': brainstate.ParamState(jnp.ones(2))}).to_pytree_value()
        {'w': Array([1., 1.], dtype=float32)}
        """
        return self._nest([state.value for state in self._states])

    def _string_keyed(self, leaves: List[Any]) -> Dict[str, Any]:
        result: Dict[str, Any] = {}
        first_path: Dict[str, Path] = {}
        for path, leaf in zip(self._paths, leaves):
            key = _path_string(path)
            if key in result:
                raise ValueError(
                    f"UniqueStateManager.to_dict: the States at {jax.tree_util.keystr(first_path[key])} and "
                    f"{jax.tree_util.keystr(path)} both have the string key {key!r}; one would be lost. "
                    f"Use to_pytree() or get_flattened() instead, or rename one of the keys.")
            result[key] = leaf
            first_path[key] = path
        return result

    def to_dict(self) -> Dict[str, State]:
        """The held States in a flat dict keyed by path strings, in holding order.

        Names are joined by ``'.'``, list positions appended as ``[i]``
        (``'blocks[0].weight'``); a brainstate tuple key is written as ``str`` of the
        tuple. Two paths giving the same string raise ``ValueError``.

        >>> import brainstate, jax.numpy as jnp
        >>> s = brainstate.ParamState(jnp.ones(2))
        >>> list(UniqueStateManager({'blocks': [{'w': s}], 'out': (s,)}).to_dict())
        ['blocks[0].w']
        """
        return self._string_keyed(self._states)

    def to_dict_value(self) -> Dict[str, Any]:
        """Like :meth:`to_dict`, with each State replaced by its current ``.value``.

        >>> import brainstate, jax.numpy as jnp
        >>> UniqueStateManager({'w': brainstate.ParamState(jnp.zeros(1))}).to_dict_value()
        {'w': Array([0.], dtype=float32)}
        """
        return self._string_keyed([state.value for state in self._states])

    def _path_to_string(self, path: Path) -> str:
        """The :meth:`to_dict` key of a jax key path (kept under braintools' private name)."""
        return _path_string(path)

    # ------------------------------------------------------------------ access

    def get_flattened(self) -> List[Tuple[Path, State]]:
        """A new list of ``(path, State)`` pairs, paths being jax key paths, in holding order.

        >>> import brainstate, jax.numpy as jnp
        >>> s = brainstate.ParamState(jnp.ones(2))
        >>> UniqueStateManager({'w': s}).get_flattened()[0][0]
        (DictKey(key='w'),)
        """
        return list(zip(self._paths, self._states))

    def _find(self, target_path: Any) -> Optional[int]:
        if isinstance(target_path, str):
            hits = [i for i, path in enumerate(self._paths) if _path_string(path) == target_path]
            if len(hits) > 1:
                raise ValueError(f"UniqueStateManager: the string key {target_path!r} names more than one State "
                                 f"({', '.join(jax.tree_util.keystr(self._paths[i]) for i in hits)}); "
                                 f"pass the jax key path from get_flattened() instead.")
            return hits[0] if hits else None
        for i, path in enumerate(self._paths):
            if path == target_path:
                return i
        return None

    def get_state_by_path(self, target_path: Any) -> Optional[State]:
        """The State held at ``target_path``, or ``None``.

        ``target_path`` is a jax key path as in :meth:`get_flattened` /
        ``unique_paths``, or a :meth:`to_dict` key string.

        >>> import brainstate, jax.numpy as jnp
        >>> s = brainstate.ParamState(jnp.ones(2))
        >>> usm = UniqueStateManager({'layer': {'w': s}})
        >>> usm.get_state_by_path(usm.unique_paths[0]) is usm.get_state_by_path('layer.w') is s
        True
        >>> usm.get_state_by_path('layer.b') is None
        True
        """
        position = self._find(target_path)
        return None if position is None else self._states[position]

    def update_state(self, target_path: Any, new_state: State) -> bool:
        """Hold ``new_state`` at ``target_path`` instead of the State there; ``False`` if no such path.

        ``target_path`` is as in :meth:`get_state_by_path`. ``new_state`` must be a State
        not already held under another path (``TypeError`` / ``ValueError`` otherwise,
        changing nothing).

        >>> import brainstate, jax.numpy as jnp
        >>> usm = UniqueStateManager({'w': brainstate.ParamState(jnp.ones(2))})
        >>> fresh = brainstate.ParamState(jnp.zeros(2))
        >>> usm.update_state('w', fresh), usm.get_state_by_path('w') is fresh
        (True, True)
        >>> usm.update_state('nowhere', fresh)
        False
        """
        if not isinstance(new_state, State):
            raise TypeError(f"UniqueStateManager.update_state: new_state must be a brainstate State, "
                            f"got {type(new_state).__name__}.")
        position = self._find(target_path)
        if position is None:
            return False
        old = self._states[position]
        if new_state is old:
            return True
        held_at = self._position.get(id(new_state))
        if held_at is not None:
            raise ValueError(f"UniqueStateManager.update_state: new_state is already held at "
                             f"{_describe(self._paths[held_at])}; holding it at {_describe(self._paths[position])} "
                             f"too would count it twice.")
        del self._position[id(old)]
        self._position[id(new_state)] = position
        self._states[position] = new_state
        return True

    def clear(self) -> None:
        """Forget every State and the stored pytree structure."""
        self._paths, self._states, self._position = [], [], {}
        self._treedef = None

    # ------------------------------------------------------------------ views

    @property
    def num_unique_states(self) -> int:
        """How many distinct States are held."""
        return len(self._states)

    def __len__(self) -> int:
        return len(self._states)

    @property
    def unique_states(self) -> List[State]:
        """A new list of the held States, in holding order."""
        return list(self._states)

    @property
    def unique_paths(self) -> List[Path]:
        """A new list of the held States' jax key paths, in holding order."""
        return list(self._paths)

    @property
    def flattened_states(self) -> List[Tuple[Path, State]]:
        """Same as :meth:`get_flattened`."""
        return self.get_flattened()

    @property
    def seen_ids(self) -> Set[int]:
        """A new set of ``id()`` of the held States."""
        return set(self._position)

    @property
    def pytree_structure(self):
        """The treedef of the pytree last given to :meth:`make_unique` (``None`` before, or after ``clear``)."""
        return self._treedef

    def __repr__(self) -> str:
        keys = ', '.join(repr(_path_string(path)) for path in self._paths[:4])
        more = ', ...' if len(self._paths) > 4 else ''
        return f'UniqueStateManager({len(self._states)} states: {keys}{more})'
