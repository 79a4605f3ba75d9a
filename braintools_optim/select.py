r"""Selectors: which parameters a parameter group (or a weight-decay mask) applies to.

A selector answers one question about one trainable array, described by a
:class:`ParamInfo` (its key, dotted path, State, value, shape, dtype and
unit). Anything a group's ``params`` accepts becomes one through :func:`as_selector`:

* ``'*.tau_*'`` (a ``str``): a glob on the dotted path (``'layer.tau_m'``);
* ``re.compile(r'.*\.bias$')`` or ``'re:...'``: a regular expression, searched in the dotted path;
* a brainstate ``State`` subclass: every parameter held by a State of that type;
* a brainunit unit (``u.ms``): every parameter whose unit has that dimension (``u.ms`` selects
  ``ms`` and ``s`` alike);
* a function ``f(info) -> bool``: a predicate on :class:`ParamInfo`;
* ParamStates (one, a list, a dict): exactly those States (a dict also registers them).

Selectors combine with ``&``, ``|`` and ``~``. The helpers :func:`ndim`,
:func:`unit`, :func:`glob`, :func:`regex`, :func:`state_type`, :func:`where` and
:func:`decayable` build them explicitly.

>>> import brainstate, jax.numpy as jnp
>>> info = ParamInfo(('layer', 'bias'), (), brainstate.ParamState(jnp.zeros(3)))
>>> as_selector('*.bias')(info), ndim(2)(info), (~ndim(2) & glob('layer.*'))(info)
(True, False, True)
>>> decayable()(info)
False
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Mapping
from typing import Any, Callable, Iterable, List, Optional

import brainstate
import brainunit as u
import jax.numpy as jnp

from . import _keys, _units

__all__ = ['ParamInfo', 'Selector', 'as_selector', 'glob', 'regex', 'ndim', 'unit', 'state_type', 'where',
           'decayable', 'everything']


class ParamInfo:
    """What a selector may look at: one trainable array and the State that holds it."""

    __slots__ = ('key', 'leaf_path', 'state', 'value')

    def __init__(self, key, leaf_path, state, value=None):
        self.key, self.leaf_path, self.state = key, tuple(leaf_path), state
        self.value = state.value if value is None else value

    @property
    def path(self) -> str:
        """The dotted path (``'layer.tau_m'``), what globs and regular expressions see."""
        return _keys.dotted(self.key, self.leaf_path)

    @property
    def name(self) -> str:
        """The unambiguous display form (``('layer', 'tau_m')``)."""
        return _keys.describe(self.key, self.leaf_path)

    @property
    def shape(self):
        return tuple(_units.split(self.value)[0].shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        size = 1
        for n in self.shape:
            size *= n
        return size

    @property
    def dtype(self):
        return jnp.dtype(_units.split(self.value)[0].dtype)

    @property
    def unit(self):
        """The parameter's brainunit unit, or ``None`` for a plain array."""
        return _units.split(self.value)[1]

    def __repr__(self) -> str:
        return f"ParamInfo({self.name}, shape={self.shape}, dtype={self.dtype.name})"


class Selector:
    """A yes/no rule over :class:`ParamInfo`; combine with ``&``, ``|``, ``~``.

    Subclasses implement ``test(info)``; they hold plain data (a pattern, a
    number, a class), so an optimizer with groups can be copied and pickled.
    """

    #: the States an explicit selector names (they are registered with the group); ``None`` otherwise
    states: Optional[Any] = None

    def test(self, info: ParamInfo) -> bool:
        raise NotImplementedError

    @property
    def description(self) -> str:
        raise NotImplementedError

    def __call__(self, info: ParamInfo) -> bool:
        return bool(self.test(info))

    def __and__(self, other) -> 'Selector':
        return _All(self, as_selector(other))

    def __or__(self, other) -> 'Selector':
        return _Any(self, as_selector(other))

    def __invert__(self) -> 'Selector':
        return _Not(self)

    def __repr__(self) -> str:
        return f"<selector {self.description}>"


class _Glob(Selector):
    def __init__(self, pattern: str):
        self.pattern = pattern

    def test(self, info):
        return fnmatch.fnmatchcase(info.path, self.pattern)

    @property
    def description(self):
        return f"glob {self.pattern!r}"


class _Regex(Selector):
    def __init__(self, pattern):
        self.compiled = re.compile(pattern) if isinstance(pattern, str) else pattern

    def test(self, info):
        return self.compiled.search(info.path) is not None

    @property
    def description(self):
        return f"regex {self.compiled.pattern!r}"


class _Ndim(Selector):
    def __init__(self, n: int):
        self.n = n

    def test(self, info):
        return info.ndim == self.n

    @property
    def description(self):
        return f"ndim {self.n}"


class _Unit(Selector):
    def __init__(self, of):
        self.of, self.dim = of, u.get_dim(of)

    def test(self, info):
        return info.unit is not None and u.get_dim(info.unit) == self.dim

    @property
    def description(self):
        return f"unit ~ {self.of}"


class _StateType(Selector):
    def __init__(self, cls):
        self.cls = cls

    def test(self, info):
        return isinstance(info.state, self.cls)

    @property
    def description(self):
        return f"state type {self.cls.__name__}"


class _Where(Selector):
    def __init__(self, predicate, description=None):
        self.predicate = predicate
        self._description = description or getattr(predicate, '__name__', 'predicate')

    def test(self, info):
        return self.predicate(info)

    @property
    def description(self):
        return self._description


class _Everything(Selector):
    def test(self, info):
        return True

    @property
    def description(self):
        return 'everything'


_BIAS = re.compile(r'(^|_)bias(es)?($|_)', re.IGNORECASE)


class _Decayable(Selector):
    def test(self, info):
        last = info.path.rsplit('.', 1)[-1]
        return info.ndim >= 2 and not _BIAS.search(last)

    @property
    def description(self):
        return 'decayable (ndim >= 2, not a bias)'


class _All(Selector):
    def __init__(self, *parts):
        self.parts = parts

    def test(self, info):
        return all(part(info) for part in self.parts)

    @property
    def description(self):
        return '(' + ' & '.join(part.description for part in self.parts) + ')'


class _Any(Selector):
    def __init__(self, *parts):
        self.parts = parts

    def test(self, info):
        return any(part(info) for part in self.parts)

    @property
    def description(self):
        return '(' + ' | '.join(part.description for part in self.parts) + ')'


class _Not(Selector):
    def __init__(self, part):
        self.part = part

    def test(self, info):
        return not self.part(info)

    @property
    def description(self):
        return f"~{self.part.description}"


class _Explicit(Selector):
    def __init__(self, states: List[Any], entries):
        self.members = list(states)
        self.states = entries

    def test(self, info):
        return any(info.state is state for state in self.members)

    @property
    def description(self):
        return f"{len(self.members)} given State(s)"


def glob(pattern: str) -> Selector:
    """Parameters whose dotted path matches the shell-style ``pattern`` (``*`` spans dots)."""
    return _Glob(pattern)


def regex(pattern) -> Selector:
    """Parameters whose dotted path contains a match of ``pattern`` (``re.search``)."""
    return _Regex(pattern)


def ndim(n: int) -> Selector:
    """Parameters with exactly ``n`` dimensions (``ndim(2)``: weight matrices)."""
    return _Ndim(n)


def unit(of) -> Selector:
    """Parameters whose unit has the dimension of ``of`` (``unit(u.ms)``: every time constant)."""
    return _Unit(of)


def state_type(cls) -> Selector:
    """Parameters held by a State of type ``cls`` (or a subclass)."""
    return _StateType(cls)


def where(predicate: Callable[[ParamInfo], bool], description: Optional[str] = None) -> Selector:
    """Parameters for which ``predicate(info)`` is true."""
    return _Where(predicate, description)


def everything() -> Selector:
    """Every parameter."""
    return _Everything()


def decayable() -> Selector:
    """The default weight-decay mask: parameters with at least 2 dimensions that are not biases.

    Biases, gains, time constants and other 0-D / 1-D parameters are left
    undecayed, as is any parameter whose last path part names a bias.
    """
    return _Decayable()


def _explicit(states: List[Any], entries: Optional[Any]) -> Selector:
    return _Explicit(states, entries if entries is not None else states)


def as_selector(spec) -> Selector:
    """Turn anything a group's ``params`` accepts into a :class:`Selector` (see the module docstring)."""
    if isinstance(spec, Selector):
        return spec
    if isinstance(spec, str):
        return regex(spec[3:]) if spec.startswith('re:') else glob(spec)
    if isinstance(spec, re.Pattern):
        return regex(spec)
    if isinstance(spec, brainstate.State):
        return _explicit([spec], [spec])
    if isinstance(spec, type) and issubclass(spec, brainstate.State):
        return state_type(spec)
    if isinstance(spec, (u.Unit,)):
        return unit(spec)
    if isinstance(spec, Mapping):
        states = list(spec.values())
        _check_states(states)
        return _explicit(states, spec)
    if isinstance(spec, (list, tuple, set, frozenset)):
        states = list(spec)
        _check_states(states)
        return _explicit(states, list(states))
    if callable(spec):
        return where(spec)
    raise TypeError(f"a parameter group's params must be a glob string, a compiled regular expression, a "
                    f"State type, a unit, a predicate, a Selector or ParamStates; got {type(spec).__name__}")


def _check_states(states: Iterable[Any]) -> None:
    for state in states:
        if not isinstance(state, brainstate.State):
            raise TypeError(f"a collection given as a group's params must hold brainstate States, got "
                            f"{type(state).__name__}")
