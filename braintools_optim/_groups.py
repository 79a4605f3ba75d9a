"""Parameter groups: which parameters get which algorithm and hyper-parameters.

A group is declared with a selector (see :mod:`braintools_optim.select`) and
its settings: any hyper-parameter of its algorithm, ``lr`` (a float or its own
``LRScheduler``), ``weight_decay``, ``lr_mult``/``wd_mult`` (MXNet),
``frozen``, the precision options (``stochastic_round``, ``master_weights``,
``buffer_dtypes``, ``mu_dtype``, ``nu_dtype``: :mod:`._precision`), and ``optimizer`` (another algorithm: an optimizer class or an
unregistered instance used as a template). Group 0 is the optimizer's own
settings; every parameter goes to the first declared group whose selector
matches it, else to group 0 (or is refused / frozen, by ``unmatched=``).

This module resolves declarations into :class:`Group` objects and assigns
parameters to them; the engine stores their buffers and runs their rules.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

from . import _checks as checks
from . import select as selectors
from ._errors import GroupSelectionError
from ._hyper import Settings, check_values, resolve_aliases
from ._precision import PRECISION_OPTIONS, GroupPrecision

#: options every group understands, besides its algorithm's own hyper-parameters
GROUP_OPTIONS = ('params', 'lr', 'weight_decay', 'lr_mult', 'wd_mult', 'frozen', 'optimizer', 'name',
                 'allow_empty') + tuple(PRECISION_OPTIONS)
#: what to do with a parameter that no declared group selects
UNMATCHED = ('default', 'error', 'freeze')


class Group:
    """One parameter group: selector, algorithm, settings and (after registration) members.

    ``settings`` holds the algorithm's hyper-parameters (checked); ``lr`` is a
    float or an ``LRScheduler`` or ``None`` (follow the optimizer's);
    ``weight_decay`` a float; ``lr_mult``/``wd_mult`` multiply them for every
    member; ``frozen`` groups keep no buffers and are never updated;
    ``precision`` holds the precision options (:class:`~._precision.GroupPrecision`).
    """

    def __init__(self, index: int, name: str, selector: Optional[selectors.Selector], algorithm: type,
                 settings: Settings, lr: Any, weight_decay: float, lr_mult: float = 1.0, wd_mult: float = 1.0,
                 frozen: bool = False, allow_empty: bool = False, precision: GroupPrecision = GroupPrecision()):
        self.index, self.name, self.selector = index, name, selector
        self.algorithm, self.settings = algorithm, settings
        self.lr, self.weight_decay = lr, weight_decay
        self.lr_mult, self.wd_mult = lr_mult, wd_mult
        self.frozen, self.allow_empty = frozen, allow_empty
        self.precision = precision
        self.members: List[int] = []

    @property
    def decay_mode(self) -> str:
        return self.algorithm.weight_decay_mode

    def __repr__(self) -> str:
        return (f"Group({self.index}, {self.name!r}, {self.algorithm.__name__}, "
                f"{len(self.members)} parameter(s){', frozen' if self.frozen else ''})")


def template_settings(algorithm: type, template: Any, owner_settings: Optional[Settings], owner_class: type):
    """The settings a group starts from: its template instance's, the owner's, or the class defaults."""
    if template is not None and not isinstance(template, type):
        return template._default_group.settings
    if algorithm is owner_class and owner_settings is not None:
        return owner_settings
    return algorithm.default_settings()


def resolve(index: int, spec: Dict[str, Any], owner, *, default_selector=None) -> Group:
    """A :class:`Group` from a declaration ``{'params': ..., 'lr': ..., <hyper-parameter>: ...}``."""
    spec = dict(spec)
    if 'params' not in spec and default_selector is None:
        raise TypeError("a parameter group needs 'params': a selector (glob, regex, State type, unit, "
                        "predicate) or the ParamStates themselves")
    selector = selectors.as_selector(spec.pop('params')) if 'params' in spec else default_selector
    template = spec.pop('optimizer', None)
    algorithm = type(owner)
    if template is not None:
        algorithm = template if isinstance(template, type) else type(template)
        owner._check_group_algorithm(algorithm, template)
    name = spec.pop('name', None)
    name = str(name) if name is not None else (f'group{index}' if index else 'default')
    frozen = checks.boolean('frozen', spec.pop('frozen', False))
    allow_empty = checks.boolean('allow_empty', spec.pop('allow_empty', False))
    lr_mult = checks.non_negative('lr_mult', spec.pop('lr_mult', 1.0))
    wd_mult = checks.non_negative('wd_mult', spec.pop('wd_mult', 1.0))
    base = template_settings(algorithm, template, owner._default_group.settings if owner._groups else None,
                             type(owner))
    if 'lr' in spec:
        lr = owner._check_lr_source(spec.pop('lr'), f'group {name!r} lr')
    elif template is not None and not isinstance(template, type):
        lr = template._lr.default                    # the template's own lr (float or scheduler)
    else:
        lr = None                                       # follow the optimizer's learning rate
    if 'weight_decay' in spec:
        weight_decay = checks.non_negative('weight_decay', spec.pop('weight_decay'))
    elif template is not None and not isinstance(template, type):
        weight_decay = template._default_group.weight_decay
    elif algorithm is type(owner) or template is None:
        weight_decay = owner._default_group.weight_decay
    else:
        weight_decay = algorithm.default_weight_decay()
    precision = group_precision(spec, owner, algorithm, template, name)
    fixed_here = [name_ for name_ in spec if name_ in algorithm.hyperparameters
                  and not algorithm.hyperparameters[name_].per_group and algorithm is type(owner)]
    if fixed_here:
        raise ValueError(f"{', '.join(fixed_here)} cannot differ between parameter groups of one "
                         f"{algorithm.__name__}; set it on the optimizer")
    overrides = resolve_aliases(spec, algorithm.aliases, dict(base))
    overrides = check_values(f"parameter group {name!r} ({algorithm.__name__})", algorithm.hyperparameters,
                             overrides)
    settings = base.replace(**overrides)
    algorithm.validate(settings)
    return Group(index, name, selector, algorithm, settings, lr, weight_decay, lr_mult, wd_mult, frozen,
                 allow_empty, precision)


def group_precision(spec: Dict[str, Any], owner, algorithm: type, template: Any, name: str) -> GroupPrecision:
    """A group's precision options (popped from ``spec``) over what it inherits.

    A group inherits the optimizer's options, or its template instance's; a
    group running another algorithm does not inherit ``buffer_dtypes`` (its
    buffers have other names), only ``mu_dtype``/``nu_dtype``, which select
    buffers by their units.
    """
    if template is not None and not isinstance(template, type):
        base = template._default_group.precision
    elif owner._groups:
        base = owner._default_group.precision
        if algorithm is not type(owner):
            base = base.without_buffer_names()
    else:
        base = GroupPrecision()
    given = {key: spec.pop(key) for key in list(spec) if key in PRECISION_OPTIONS}
    return GroupPrecision.checked(given, base, f"parameter group {name!r}")


def assign(groups: Sequence[Group], infos: Sequence[selectors.ParamInfo], unmatched: str) -> List[Optional[int]]:
    """The group index of each parameter: first declared group that selects it, else by ``unmatched``.

    Group 0 (the optimizer's own settings) takes what no declared group
    selects when ``unmatched='default'``; ``'freeze'`` leaves such parameters
    frozen (``None``); ``'error'`` raises.
    """
    declared = [group for group in groups if group.index != 0]
    out: List[Optional[int]] = []
    unselected = []
    for info in infos:
        chosen = next((group.index for group in declared if group.selector(info)), None)
        if chosen is None:
            if unmatched == 'error':
                unselected.append(info.name)
            chosen = 0 if unmatched == 'default' else None
        out.append(chosen)
    if unselected:
        raise GroupSelectionError(f"no parameter group selects {', '.join(unselected)} (unmatched='error'); "
                                  f"add a group for them or use unmatched='default'")
    return out


def check_nonempty(groups: Sequence[Group], membership: Sequence[Optional[int]]) -> None:
    """A declared group whose selector matched nothing is almost always a typo: say so."""
    used = set(membership)
    for group in groups:
        if group.index and group.index not in used and not group.allow_empty:
            raise GroupSelectionError(
                f"parameter group {group.name!r} ({group.selector.description}) selects none of the "
                f"registered parameters; check the pattern against opt.describe_groups(), register the "
                f"parameters it is meant for in the same call, or declare it with allow_empty=True")
