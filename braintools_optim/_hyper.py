"""Hyper-parameters, declared once per algorithm.

An optimizer class lists its algorithm's hyper-parameters in one table::

    class Adam(Optimizer):
        hyperparameters = {
            'betas': Hyper(checks.betas(2), cycled=0),   # a cycling scheduler drives betas[0]
            'eps': Hyper(checks.positive),
            'amsgrad': Hyper(checks.boolean),
        }
        aliases = {'beta1': ('betas', 0), 'beta2': ('betas', 1)}

        @staticmethod
        def build_rule(h):                      # h: one group's checked values
            return rules.adam(h.betas[0], h.betas[1], h.eps, amsgrad=h.amsgrad)

Its constructor's signature gives each name its default and position; the
table gives the check and whether a parameter group may set its own value.
From that the engine checks constructor arguments and group overrides,
builds one rule per group, refuses assignments (``opt.eps = ...``: the value
is compiled into the step) and reports the values (``opt.eps``,
``opt.param_groups[i]['eps']``). Adding an algorithm or a per-group option
is one table entry.

``lr`` and ``weight_decay`` are the engine's own, per group and held in State
(changeable between steps without re-tracing; see ``docs/groups.md``).
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Callable, Dict, Iterator, Optional, Tuple


class Hyper:
    """Declaration of one hyper-parameter.

    Args:
        check: ``check(name, value) -> value``; raises ``TypeError``/``ValueError``
            with a clear message for a bad value (see :mod:`._checks`).
        per_group: whether a parameter group may give its own value.
        cycled: how a scheduler's cycled momentum (``cycle_momentum=True``)
            reaches this algorithm: ``True`` replaces this value, an integer
            ``i`` replaces element ``i`` of a tuple (``betas[0]``).
        stored: whether checkpoints record the value (to refuse a checkpoint
            trained with another one); ``False`` for values that are not data
            (an optax transformation).
    """

    __slots__ = ('check', 'per_group', 'cycled', 'stored')

    def __init__(self, check: Optional[Callable[[str, Any], Any]] = None, *, per_group: bool = True,
                 cycled: Any = None, stored: bool = True):
        self.check, self.per_group, self.cycled, self.stored = check, per_group, cycled, stored

    def __repr__(self) -> str:
        return f"Hyper(per_group={self.per_group}, cycled={self.cycled})"


class Settings(Mapping):
    """One group's checked hyper-parameter values, read as attributes (``h.eps``) or items.

    >>> h = Settings({'eps': 1e-8, 'betas': (0.9, 0.999)})
    >>> h.eps, h['betas'][1]
    (1e-08, 0.999)
    >>> h.replace(eps=1e-6).eps
    1e-06
    """

    __slots__ = ('_values',)

    def __init__(self, values: Dict[str, Any]):
        object.__setattr__(self, '_values', dict(values))

    def __getattr__(self, name):
        try:
            return self._values[name]
        except KeyError:
            raise AttributeError(name) from None

    def __setattr__(self, name, value):
        raise AttributeError("Settings are read-only; use replace()")

    def __getitem__(self, name):
        return self._values[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def replace(self, **changes) -> 'Settings':
        return Settings({**self._values, **changes})

    def __repr__(self) -> str:
        return 'Settings(' + ', '.join(f'{k}={v!r}' for k, v in self._values.items()) + ')'

    def __getstate__(self):
        return self._values

    def __setstate__(self, values):
        object.__setattr__(self, '_values', values)


def captured(frame_locals: Dict[str, Any]) -> Dict[str, Any]:
    """The arguments of a constructor, from its ``locals()``, with ``**options`` merged in.

    Optimizer constructors spell their signature out (for positional
    compatibility and for tools that read it) and pass everything on with
    ``super().__init__(**captured(locals()))``.
    """
    arguments = {name: value for name, value in frame_locals.items()
                 if name not in ('self', '__class__', 'options')}
    arguments.update(frame_locals.get('options', {}))
    return arguments


def constructor_defaults(cls) -> Dict[str, Any]:
    """``{name: default}`` of ``cls.__init__``'s named parameters (in signature order)."""
    signature = inspect.signature(cls.__init__)
    return {name: parameter.default for name, parameter in signature.parameters.items()
            if name != 'self' and parameter.kind not in (inspect.Parameter.VAR_KEYWORD,
                                                         inspect.Parameter.VAR_POSITIONAL)}


def resolve_aliases(values: Dict[str, Any], aliases: Dict[str, Tuple[str, int]],
                    defaults: Dict[str, Any]) -> Dict[str, Any]:
    """Fold alias arguments (``beta1`` -> ``betas[0]``) into their target; aliases left at ``None`` vanish.

    >>> resolve_aliases({'betas': (0.9, 0.999), 'beta1': 0.8, 'beta2': None},
    ...                 {'beta1': ('betas', 0), 'beta2': ('betas', 1)}, {})
    {'betas': (0.8, 0.999)}
    """
    values = dict(values)
    for alias, (target, index) in aliases.items():
        value = values.pop(alias, None)
        if value is None:
            continue
        current = values.get(target, defaults.get(target))
        try:
            items = list(current)
        except TypeError:
            raise TypeError(f"{target} must be a tuple, got {current!r}") from None
        if index >= len(items):
            raise ValueError(f"{alias} sets {target}[{index}], but {target} has {len(items)} entries")
        items[index] = value
        values[target] = tuple(items)
    return values


def check_values(owner: str, table: Dict[str, Hyper], values: Dict[str, Any]) -> Dict[str, Any]:
    """Run every declared check; unknown names raise ``TypeError`` naming the known ones."""
    unknown = sorted(set(values) - set(table))
    if unknown:
        raise TypeError(f"{owner} got unexpected argument(s) {', '.join(unknown)}; its hyper-parameters "
                        f"are {', '.join(table) or 'none'}")
    checked = {}
    for name, value in values.items():
        hyper = table[name]
        checked[name] = hyper.check(name, value) if hyper.check is not None else value
    return checked
