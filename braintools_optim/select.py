"""Selectors: which parameters a parameter group (or a weight-decay mask) applies to.

A selector answers one question about one trainable array, described by a
:class:`ParamInfo` (its key, dotted path, State, value, shape, dtype and
unit). Anything a group's ``params`` accepts becomes one through :func:`as_selector`:

======================================  ==============================================
``'*.tau_*'`` (a ``str``)               glob on the dotted path (``'layer.tau_m'``)
``re.compile(r'.*\\.bias$')``, ``'re:...'``   regular expression, searched in the dotted path
a brainstate ``State`` subclass         every parameter held by a State of that type
a brainunit unit (``u.ms``)             every parameter whose unit has that dimension
                                        (``u.ms`` selects ``ms`` and ``s`` alike)
a function ``f(info) -> bool``          a predicate on :class:`ParamInfo`
ParamStates (one, a list, a dict)       exactly those States (a dict also registers them)
======================================  ==============================================

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
    """A yes/no rule over :class:`ParamInfo`; combine with ``&``, ``|``, ``~``."""

    def __init__(self, test: Callable[[ParamInfo], bool], description: str):
        self._test, self.description = test, description

    def __call__(self, info: ParamInfo) -> bool:
        return bool(self._test(info))

    def __and__(self, other) -> 'Selector':
        other = as_selector(other)
        return Selector(lambda i: self(i) and other(i), f"({self.description} & {other.description})")

    def __or__(self, other) -> 'Selector':
        other = as_selector(other)
        return Selector(lambda i: self(i) or other(i), f"({self.description} | {other.description})")

    def __invert__(self) -> 'Selector':
        return Selector(lambda i: not self(i), f"~{self.description}")

    #: the States an explicit selector names (they are registered with the group); ``None`` otherwise
    states: Optional[Any] = None

    def __repr__(self) -> str:
        return f"<selector {self.description}>"


def glob(pattern: str) -> Selector:
    """Parameters whose dotted path matches the shell-style ``pattern`` (``*`` spans dots)."""
    return Selector(lambda info: fnmatch.fnmatchcase(info.path, pattern), f"glob {pattern!r}")


def regex(pattern) -> Selector:
    """Parameters whose dotted path contains a match of ``pattern`` (``re.search``)."""
    compiled = re.compile(pattern) if isinstance(pattern, str) else pattern
    return Selector(lambda info: compiled.search(info.path) is not None, f"regex {compiled.pattern!r}")


def ndim(n: int) -> Selector:
    """Parameters with exactly ``n`` dimensions (``ndim(2)``: weight matrices)."""
    return Selector(lambda info: info.ndim == n, f"ndim {n}")


def unit(of) -> Selector:
    """Parameters whose unit has the dimension of ``of`` (``unit(u.ms)``: every time constant)."""
    dim = u.get_dim(of)
    return Selector(lambda info: info.unit is not None and u.get_dim(info.unit) == dim, f"unit ~ {of}")


def state_type(cls) -> Selector:
    """Parameters held by a State of type ``cls`` (or a subclass)."""
    return Selector(lambda info: isinstance(info.state, cls), f"state type {cls.__name__}")


def where(predicate: Callable[[ParamInfo], bool], description: Optional[str] = None) -> Selector:
    """Parameters for which ``predicate(info)`` is true."""
    return Selector(predicate, description or getattr(predicate, '__name__', 'predicate'))


def everything() -> Selector:
    """Every parameter."""
    return Selector(lambda info: True, 'everything')


_BIAS = re.compile(r'(^|_)bias(es)?($|_)', re.IGNORECASE)


def decayable() -> Selector:
    """The default weight-decay mask: parameters with at least 2 dimensions that are not biases.

    Biases, gains, time constants and other 0-D / 1-D parameters are left
    undecayed, as is any parameter whose last path part names a bias.
    """
    def test(info: ParamInfo) -> bool:
        last = info.path.rsplit('.', 1)[-1]
        return info.ndim >= 2 and not _BIAS.search(last)

    return Selector(test, 'decayable (ndim >= 2, not a bias)')


def _explicit(states: List[Any], entries: Optional[Any]) -> Selector:
    ids = {id(state) for state in states}
    selector = Selector(lambda info: id(info.state) in ids, f"{len(ids)} given State(s)")
    selector.states = entries if entries is not None else states
    return selector


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
