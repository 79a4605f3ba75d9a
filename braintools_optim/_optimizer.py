"""The stateful optimizer engine, written once for every algorithm.

An :class:`Optimizer` is a few owned parts around pure update rules:

* the parameter registry (:mod:`._registry`): which arrays are trained, by key;
* the parameter groups (:mod:`._groups`): which algorithm and settings each
  array gets (selectors, per-group hyper-parameters, multipliers, freezing);
* buffer storage (:mod:`._storage`, :mod:`._layout`, :mod:`._stacked`): each
  group's moments, flat buckets for element-wise rules, stacks of same-shaped
  parameters for per-tensor rules;
* the learning-rate sources (:mod:`._lr`) and the weight decay, held in State;
* the step guards (:mod:`._guards`): accumulation and non-finite skipping;
* checkpointing (:mod:`._checkpointing`), which asks each part for its piece.

``update(grads)`` is the one entry point: it maps and checks the gradients
before anything is computed (so an error leaves everything as it was), then
runs :meth:`Optimizer._step`, which computes every new value and writes them
all at the end. Inside ``brainstate.transform.jit``/``for_loop`` the step is
traced into the caller's program; eagerly it runs a compiled step cached on
the optimizer (:mod:`._eager`).

An algorithm is a subclass that declares its hyper-parameters once
(:mod:`._hyper`) and builds its rule from one group's values
(``build_rule``); see ``docs/architecture.md``.
"""

from __future__ import annotations

import warnings
from collections.abc import MutableMapping
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from . import _checks as checks
from . import _checkpointing, _copying, _ensemble
from . import _groups
from . import _keys
from . import _mixed
from . import _sharding
from . import _units
from . import gradient_processing as gp
from . import select as selectors
from ._decay import WeightDecays
from ._eager import EagerStep
from ._errors import GroupSelectionError
from ._gradients import check_gradients, gradient_mantissas, split_gradients
from ._guards import StepGuards
from ._hyper import Hyper, Settings, check_values, resolve_aliases
from ._lr import FloatLR, LearningRates, cycles_momentum, is_scheduler
from ._precision import PRECISION_OPTIONS, GroupPrecision
from ._registry import ParamDict, ParamRegistry
from ._rng import StepKeys, check_seed
from ._storage import MASTER, GroupStorage, OptimizerState, initial_buffers, make_layout
from .rules._base import UpdateRule

#: where weight decay acts: ``'coupled'`` (L2 added to the gradient before the rule),
#: ``'decoupled'`` (``theta(1 - lr wd)`` after the rule) or ``'in_rule'`` (the rule applies the
#: group's decay itself, e.g. inside a trust ratio).
WEIGHT_DECAY_MODES = ('coupled', 'decoupled', 'in_rule')

#: how decoupled weight decay is scaled: ``'lr'`` — ``theta * (1 - lr_t * wd)`` (torch AdamW,
#: optax adamw, Keras); ``'schedule'`` — ``theta * (1 - (lr_t / base_lr) * wd)``, the schedule
#: multiplier only (Loshchilov & Hutter, Algorithm 2).
DECOUPLED_DECAY_SCALES = ('lr', 'schedule')

#: the engine's own options (optimizer-wide) and their defaults
ENGINE_OPTIONS: Dict[str, Any] = dict(
    grad_clip_norm=None, grad_clip_value=None, param_clip_value=None, rescale_grad=1.0,
    skip_nonfinite=False, max_consecutive_skips=None, accumulate_steps=1, accumulate_mean=True,
    schedule_per_update=False, decoupled_decay_scale=None, fused=None, param_groups=None,
    weight_decay_mask=None, unmatched='default', shard_state=None, seed=0,
)

INT32_MAX = 2 ** 31 - 1


def _contains_tracer(tree) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


class BraintoolsOptimDeprecationWarning(FutureWarning, DeprecationWarning):
    """A spelling kept for code written for braintools that braintools itself deprecates.

    A FutureWarning (shown by default, as braintools 0.4's warning) that is also
    a DeprecationWarning (what braintools 0.3 raised), so filters written for
    either catch it.
    """


class _HyperAttribute:
    """``opt.<name>``: the optimizer's own value of a declared hyper-parameter; assignment is refused."""

    def __init__(self, name: str, alias: Optional[Tuple[str, int]] = None):
        self.name, self.alias = name, alias

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        if self.alias is not None:
            target, index = self.alias
            return obj._default_group.settings[target][index]
        return obj._default_group.settings[self.name]

    def __set__(self, obj, value):
        raise AttributeError(
            f"{type(obj).__name__}.{self.name} is fixed at construction: it is compiled into the update "
            f"step. Build a new optimizer (or a parameter group with its own {self.name}) to change it; "
            f"the learning rate and weight decay are the exceptions: they live in State "
            f"(opt.lr = ..., opt.set_weight_decay(...)).")


class Optimizer(brainstate.graph.Node):
    """Base class of every optimizer: registration, groups, validation, States, lr, clipping, decay.

    A subclass is an algorithm: it declares ``hyperparameters`` (see
    :mod:`braintools_optim._hyper`), optional ``aliases``, its
    ``weight_decay_mode`` (``'coupled'``, ``'decoupled'`` or ``'in_rule'``) and
    ``build_rule(h)``, which returns the pure :class:`~braintools_optim.rules.UpdateRule`
    for one parameter group's settings ``h``.

    Options every optimizer takes (keyword-only unless the class lists them):

    Args:
        lr: a float >= 0 or an :class:`~braintools_optim.schedulers.LRScheduler`.
        weight_decay: decay coefficient (coupled, decoupled or in-rule per algorithm).
        grad_clip_norm: clip the global L2 norm of all gradients (every
            trainable parameter of every group together) to this value.
        grad_clip_value: clip every gradient element to ``[-v, v]``.
        param_clip_value: clip every new parameter element to ``[-v, v]`` (neon).
        rescale_grad: multiply gradients by this first (MXNet; e.g. ``1/batch_size``).
        skip_nonfinite: when any gradient element (of any group) is NaN or Inf,
            leave parameters, buffers, the step counter and the schedule untouched
            and count the step in ``opt.nonfinite_skips`` instead.
        max_consecutive_skips: with ``skip_nonfinite``, raise an error when this
            many consecutive steps were skipped; ``None``: never.
        accumulate_steps: sum gradients over this many ``update`` calls and take
            the real step on the last of them. Step counter and schedule count
            real steps only.
        accumulate_mean: divide the accumulated gradient by ``accumulate_steps``.
        schedule_per_update: advance the attached LRScheduler(s) after every real step.
        decoupled_decay_scale: for decoupled weight decay, ``'lr'`` (torch:
            ``theta(1 - lr_t wd)``) or ``'schedule'`` (the paper: ``theta(1 - (lr_t/base_lr) wd)``).
        fused: how buffers are stored (results agree within one ulp either way;
            ``docs/performance.md``): ``None`` flat buffers (element-wise rules)
            or stacks of same-shaped members (per-tensor rules) for parameters of
            at most 16,384 elements, ``True`` for all, ``False`` one buffer and
            one rule call per parameter.
        shard_state: ZeRO-1: partition the buffers of parameters replicated over
            a device mesh along this mesh axis (a name, a tuple of names, or
            ``(mesh, name)``); ``None`` (default): every buffer follows its
            parameter's sharding. See ``docs/distributed.md``.
        param_groups: a list of parameter-group declarations (dicts with
            ``'params'`` and settings; see :meth:`add_param_group` and ``docs/groups.md``).
        weight_decay_mask: which parameters decay: ``True`` for the default
            (:func:`braintools_optim.select.decayable`: at least 2-D and not a
            bias), or any selector; the others get no decay.
        unmatched: what happens to a parameter no declared group selects:
            ``'default'`` (the optimizer's own settings), ``'freeze'`` or ``'error'``.
        stochastic_round: round each new bfloat16/float16 parameter to its dtype
            stochastically, without bias, instead of to nearest (neon's
            ``stochastic_round``); a no-op for float32 parameters. Per group too.
        master_weights: keep a float32 copy of each bfloat16/float16 parameter in
            optimizer State; the update acts on it and the parameter is written
            as its rounding (MXNet's ``multi_precision``). Per group too.
        buffer_dtypes: ``{buffer name: dtype}``, the storage dtype of chosen
            buffers (``{'exp_avg': 'bfloat16'}``); arithmetic stays float32.
        mu_dtype, nu_dtype: the storage dtype of every first-moment /
            second-moment buffer. Per group too; see ``docs/precision.md``.
        seed: seed of the PRNG key stochastic rounding draws from (kept in State).
    """

    #: whether a class with a step of its own (:meth:`_compute_updates` overridden) supports
    #: ``stochastic_round`` and ``master_weights``: its step then runs on the float32 values the engine
    #: gives it (master copies, or parameters cast up) and the engine rounds what it returns (``_mixed``)
    rounds_own_step: bool = False

    #: the algorithm's hyper-parameters (name -> :class:`Hyper`); subclasses declare theirs
    hyperparameters: Dict[str, Hyper] = {}
    #: other spellings of one element of a tuple hyper-parameter (``beta1`` -> ``betas[0]``)
    aliases: Dict[str, Tuple[str, int]] = {}
    #: arguments braintools deprecates: {name: what to write instead} (a warning when given)
    deprecated_arguments: Dict[str, str] = {}
    weight_decay_mode = 'coupled'
    #: whether this algorithm may run a parameter group inside another optimizer
    groupable = True

    graph_invisible_attrs = ('_registry', '_groups', '_compiled_step', '_options', '_mults', '_membership',
                             '_step_offsets', '_grad_units', '_param_lr_mult', '_param_wd_mult',
                             '_decay_mask', '_traced_by_caller', '_num_traces')

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in cls.hyperparameters:
            if name not in ENGINE_OPTIONS and name not in ('lr', 'weight_decay'):
                setattr(cls, name, _HyperAttribute(name))
        for name, target in cls.aliases.items():
            setattr(cls, name, _HyperAttribute(name, target))
        cls._settings_cache = None

    # ------------------------------------------------------------------ construction
    def __init__(self, lr: Any = 1e-3, weight_decay: float = 0.0, **arguments):
        cls = type(self)
        if cls.weight_decay_mode not in WEIGHT_DECAY_MODES:
            raise TypeError(f"{cls.__name__}.weight_decay_mode must be one of {WEIGHT_DECAY_MODES}")
        options = {name: arguments.pop(name, default) for name, default in ENGINE_OPTIONS.items()}
        precision = GroupPrecision.checked({name: arguments.pop(name) for name in PRECISION_OPTIONS
                                            if name in arguments}, GroupPrecision(), cls.__name__)
        settings = self._checked_settings(arguments)
        self._options = self._checked_options(options)
        if self._options['fused'] and cls._fused_layout(cls.build_rule(settings.replace(weight_decay=0.0))) is None:
            raise ValueError(f"{cls.__name__}'s step needs one buffer per parameter, so it cannot run on fused "
                             f"buffers; leave fused=None or False")
        scale = self._options['decoupled_decay_scale']
        if scale is not None and cls.weight_decay_mode != 'decoupled':
            raise ValueError(f"decoupled_decay_scale only applies to decoupled weight decay; {cls.__name__}'s "
                             f"weight decay is {cls.weight_decay_mode!r}")
        if scale is not None and scale not in DECOUPLED_DECAY_SCALES:
            raise ValueError(f"decoupled_decay_scale must be one of {DECOUPLED_DECAY_SCALES}, got {scale!r}")
        name = cls.__name__
        self._registry = ParamRegistry()
        self._lr = LearningRates(name, self._check_lr_source(lr, 'lr'))
        self._groups: List[_groups.Group] = []
        self._groups.append(_groups.Group(0, 'default', None, cls, settings, None,
                                          checks.non_negative('weight_decay', weight_decay), precision=precision))
        self._check_cycling(self._groups[0])
        self._check_precision(self._groups[0])
        self._keys: Optional[StepKeys] = None             # the PRNG key of stochastic rounding, when a group asks
        self._sync_keys()
        self.step_count = OptimizerState(jnp.zeros((), jnp.int32), name=f'{name}.step_count')
        self._decay = WeightDecays(name, self._groups[0].weight_decay)
        self._guards = StepGuards(name, skip_nonfinite=self._options['skip_nonfinite'],
                                  max_consecutive_skips=self._options['max_consecutive_skips'],
                                  accumulate_steps=self._options['accumulate_steps'],
                                  accumulate_mean=self._options['accumulate_mean'], state_type=OptimizerState)
        self.nonfinite_skips = self._guards.nonfinite_skips
        self.consecutive_skips = self._guards.consecutive_skips
        self.micro_step = self._guards.micro_step
        self._storage: Dict[int, GroupStorage] = {}
        self._membership: List[Optional[int]] = []        # group of each parameter (None: frozen)
        self._step_offsets: List[int] = []                # step count at each parameter's registration
        self._mults: List[Tuple[float, float]] = []       # (lr_mult, wd_mult) of each parameter
        self._param_lr_mult: List[Tuple[selectors.Selector, float]] = []
        self._param_wd_mult: List[Tuple[selectors.Selector, float]] = []
        mask = self._options['weight_decay_mask']
        self._decay_mask = None if mask is None or mask is False else (
            selectors.decayable() if mask is True else selectors.as_selector(mask))
        self._grad_units: Dict[int, Any] = {}
        self._compiled_step = None
        self._traced_by_caller = False
        self._num_traces = 0
        for spec in self._options['param_groups'] or ():
            if not isinstance(spec, dict):
                raise TypeError(f"param_groups must be a list of dicts, got an item of type {type(spec).__name__}")
            self.add_param_group(**spec)

    @classmethod
    def _checked_settings(cls, arguments: Dict[str, Any]) -> Settings:
        """The algorithm's hyper-parameters from constructor arguments (aliases folded in, checked)."""
        for name, instead in cls.deprecated_arguments.items():
            if arguments.get(name) is not None:
                warnings.warn(f"{cls.__name__}({name}=...) is deprecated (as in braintools); write {instead}",
                              BraintoolsOptimDeprecationWarning, stacklevel=4)
        values = resolve_aliases(arguments, cls.aliases, arguments)
        values = check_values(cls.__name__, cls.hyperparameters, values)
        missing = [name for name in cls.hyperparameters if name not in values]
        if missing:
            raise TypeError(f"{cls.__name__} did not receive {', '.join(missing)} (a subclass constructor "
                            f"must pass every declared hyper-parameter on)")
        settings = Settings(values)
        cls.validate(settings)
        return settings

    @staticmethod
    def _checked_options(options: Dict[str, Any]) -> Dict[str, Any]:
        out = dict(options)
        out['grad_clip_norm'] = checks.positive('grad_clip_norm', options['grad_clip_norm'], allow_none=True)
        out['grad_clip_value'] = checks.positive('grad_clip_value', options['grad_clip_value'], allow_none=True)
        out['param_clip_value'] = checks.positive('param_clip_value', options['param_clip_value'], allow_none=True)
        out['rescale_grad'] = checks.nonzero('rescale_grad', options['rescale_grad'])
        out['skip_nonfinite'] = checks.boolean('skip_nonfinite', options['skip_nonfinite'])
        out['accumulate_mean'] = checks.boolean('accumulate_mean', options['accumulate_mean'])
        out['schedule_per_update'] = checks.boolean('schedule_per_update', options['schedule_per_update'])
        out['accumulate_steps'] = checks.positive_int('accumulate_steps', options['accumulate_steps'])
        if options['max_consecutive_skips'] is not None:
            if not out['skip_nonfinite']:
                raise ValueError("max_consecutive_skips needs skip_nonfinite=True")
            out['max_consecutive_skips'] = checks.positive_int('max_consecutive_skips',
                                                               options['max_consecutive_skips'])
        if options['fused'] not in (None, True, False) or type(options['fused']) not in (type(None), bool):
            raise TypeError(f"fused must be None, True or False, got {options['fused']!r}")
        out['shard_state'] = _sharding.parse_shard_state(options['shard_state'])
        out['seed'] = check_seed(options['seed'])
        if options['unmatched'] not in _groups.UNMATCHED:
            raise ValueError(f"unmatched must be one of {_groups.UNMATCHED}, got {options['unmatched']!r}")
        if options['param_groups'] is not None and not isinstance(options['param_groups'], (list, tuple)):
            raise TypeError("param_groups must be a list of dicts")
        return out

    @classmethod
    def default_settings(cls) -> Settings:
        """The algorithm's hyper-parameters at the constructor's defaults."""
        if cls.__dict__.get('_settings_cache') is None:
            cls._settings_cache = cls()._default_group.settings
        return cls._settings_cache

    @classmethod
    def default_weight_decay(cls) -> float:
        return cls()._default_group.weight_decay

    @classmethod
    def _fused_layout(cls, rule: UpdateRule) -> Optional[str]:
        """Which fused layout this class's step runs ``rule`` on: ``'flat'``, ``'stacked'`` or ``None``.

        The engine's own step runs element-wise rules on flat buckets and
        per-tensor rules on stacks of same-shaped members (:mod:`._stacked`).
        A class that overrides :meth:`_compute_updates` gets one buffer per
        parameter (``None``) unless it overrides this too.
        """
        if cls._compute_updates is not Optimizer._compute_updates:
            return None
        return 'flat' if rule.elementwise else 'stacked'

    @classmethod
    def is_elementwise(cls) -> bool:
        """Whether the algorithm updates each element on its own (it may then run on fused flat buffers)."""
        return (cls._compute_updates is Optimizer._compute_updates
                and cls.build_rule(cls.default_settings()).elementwise)

    @classmethod
    def fused_layout(cls) -> Optional[str]:
        """How ``fused=None``/``True`` stores the buffers: ``'flat'`` buckets (element-wise rules),
        ``'stacked'`` same-shaped parameters (per-tensor rules), or ``None`` (always one per parameter)."""
        return cls._fused_layout(cls.build_rule(cls.default_settings()))

    @classmethod
    def validate(cls, h: Settings) -> None:
        """Checks that involve several hyper-parameters (subclasses override); raise ``ValueError``."""

    @classmethod
    def cycle_error(cls, h: Settings) -> Optional[str]:
        """Why a scheduler cannot cycle this algorithm's momentum (``None``: it can)."""
        if not any(hyper.cycled is not None for hyper in cls.hyperparameters.values()):
            return (f"{cls.__name__} has no momentum to cycle; build the scheduler with "
                    f"cycle_momentum=False")
        return None

    @staticmethod
    def build_rule(h: Settings) -> UpdateRule:
        """The pure update rule for one group's settings ``h`` (subclasses implement this)."""
        raise NotImplementedError

    # ------------------------------------------------------------------ decoupled-decay option
    def __getattr__(self, name):
        # engine options read like attributes (opt.grad_clip_norm, opt.fused, ...)
        options = self.__dict__.get('_options')
        if options is not None and name in options:
            return options[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name, value):
        options = self.__dict__.get('_options')
        if options is not None and name in options:
            raise AttributeError(f"{type(self).__name__}.{name} is fixed at construction: it is compiled "
                                 f"into the update step; build a new optimizer to change it.")
        if name == 'weight_decay' and '_groups' in self.__dict__:
            self.set_weight_decay(value)
            return
        if name == '_compiled_step' and value is None:
            # the compiled program is stale: a wrapper that compiled this optimizer's step (Lookahead)
            # sees the version change and recompiles its own
            self.__dict__['_program_version'] = self.__dict__.get('_program_version', 0) + 1
        super().__setattr__(name, value)

    @property
    def program_version(self) -> int:
        """Bumped whenever the compiled step must be rebuilt (registration, groups, lr source, layout)."""
        return self.__dict__.get('_program_version', 0)

    @property
    def weight_decay(self) -> float:
        """The optimizer's own (group 0) weight decay; assign it or use :meth:`set_weight_decay`."""
        return self._decay.host_value(0)

    # ------------------------------------------------------------------ checks used by groups
    def _check_lr_source(self, value, what: str):
        if is_scheduler(value):
            return value
        return checks.learning_rate(what, value)

    def _check_group_algorithm(self, algorithm, template) -> None:
        if not (isinstance(algorithm, type) and issubclass(algorithm, Optimizer)):
            raise TypeError(f"a group's optimizer must be an optimizer class or instance of braintools_optim, "
                            f"got {algorithm!r}")
        own_step = type(self)._compute_updates is not Optimizer._compute_updates
        if algorithm is not type(self):
            if own_step:
                raise ValueError(f"{type(self).__name__} couples all its parameters in one step; its groups "
                                 f"cannot run another algorithm ({algorithm.__name__})")
            if not algorithm.groupable or algorithm._compute_updates is not Optimizer._compute_updates:
                raise ValueError(f"{algorithm.__name__} cannot run a parameter group inside another optimizer "
                                 f"(it needs a step of its own); use it as the optimizer itself")
        if template is not None and not isinstance(template, type):
            if len(template._registry):
                raise ValueError("a group's optimizer template must have no registered parameters")
            changed = [name for name, default in ENGINE_OPTIONS.items()
                       if name not in ('decoupled_decay_scale', 'fused') and template._options[name] != default]
            if changed:
                raise ValueError(f"{', '.join(changed)} apply to the whole optimizer (every group together); "
                                 f"set them on the outer optimizer, not on a group's template")

    def _check_cycling(self, group) -> None:
        if cycles_momentum(self._lr.source(group.index) if group.index < len(self._lr.own) else group.lr):
            message = group.algorithm.cycle_error(group.settings)
            if message:
                raise ValueError(message)

    def _check_precision(self, group) -> None:
        """Refuse precision options the group's algorithm cannot honour (before anything changes)."""
        precision = group.precision
        if not precision.active:
            return
        where = (f"{group.algorithm.__name__}" if group.index == 0 else
                 f"parameter group {group.name!r} ({group.algorithm.__name__})")
        own_step = type(self)._compute_updates is not Optimizer._compute_updates
        if own_step and not type(self).rounds_own_step:
            given = ', '.join(name for name, value in precision.record().items() if value)
            raise ValueError(f"{where}: {type(self).__name__} runs a step of its own (its state and arithmetic "
                             f"are not the engine's), which does not support the precision options ({given}); "
                             f"train its parameters in float32, or use another optimizer for them")
        if own_step and (precision.buffer_dtypes or precision.mu_dtype or precision.nu_dtype):
            raise ValueError(f"{where}: {type(self).__name__} runs a step of its own, which reads its buffers "
                             f"itself; buffer_dtypes, mu_dtype and nu_dtype apply to the engine's step only "
                             f"(stochastic_round and master_weights work here)")
        rule = self._init_rule(group)
        precision.storage_dtypes(rule.buffer_units, rule.buffer_names, jnp.float32, where)   # names, conflicts

    def _sync_keys(self) -> None:
        """Create the PRNG key State once a group asks for stochastic rounding."""
        if self._keys is None and any(group.precision.stochastic_round for group in self._groups):
            self._keys = StepKeys(type(self).__name__, self._options['seed'])
            self._compiled_step = None

    # ------------------------------------------------------------------ groups
    @property
    def _default_group(self) -> _groups.Group:
        return self._groups[0]

    @property
    def num_groups(self) -> int:
        """The number of parameter groups (the optimizer's own, group 0, included)."""
        return len(self._groups)

    def add_param_group(self, params: Any = None, **settings) -> 'Optimizer':
        """Declare a parameter group; returns the optimizer.

        ``params`` selects the group's parameters: ParamStates (a dict, as
        ``module.states()`` returns, a list, or one State: they are registered
        now, braintools-style), a glob on the dotted path (``'*.tau_*'``), a
        compiled regular expression, a State type, a unit (``u.ms``: every
        parameter measured in time), a predicate on
        :class:`~braintools_optim.select.ParamInfo`, or any
        :mod:`~braintools_optim.select` selector. Selectors apply to parameters
        registered now and later; the first group that selects a parameter wins.

        ``settings``: ``lr`` (float or its own LRScheduler), ``weight_decay``,
        any hyper-parameter of the group's algorithm (``betas``, ``eps``,
        ``momentum``, ...), ``optimizer`` (another algorithm: a class, or an
        unregistered instance whose settings are the starting point),
        ``lr_mult``/``wd_mult`` (MXNet multipliers), ``frozen=True`` (never
        updated, no buffers), ``name``, ``allow_empty``, the precision options
        ``stochastic_round``, ``master_weights``, ``buffer_dtypes``, ``mu_dtype``,
        ``nu_dtype`` (``docs/precision.md``). Left-out settings are the
        optimizer's own (or the template's).
        """
        self._check_not_traced()
        spec = dict(settings)
        if params is None:
            raise TypeError("add_param_group needs params: ParamStates or a selector")
        if isinstance(params, dict) and not params:
            raise ValueError("add_param_group needs at least one ParamState")
        if isinstance(params, (list, tuple)) and not params:
            raise ValueError("add_param_group needs at least one ParamState")
        spec['params'] = params
        unknown = [key for key in spec if key not in _groups.GROUP_OPTIONS]
        index = len(self._groups)
        group = _groups.resolve(index, spec, self)
        if group.lr is not None and self._lr.scheduler is not None and self._lr.scheduler.per_group:
            raise ValueError("the optimizer's LRScheduler gives one lr per group (a list base_lr); "
                             "give it one more entry instead of a group lr")
        del unknown
        self._groups.append(group)
        try:
            self._lr.add_group(group.lr)
            self._check_cycling(group)
            self._check_precision(group)
            self._decay.add(group.weight_decay)
            self._reassign(new_states=group.selector.states)
        except Exception:
            self._groups.pop()
            if len(self._decay.live) > len(self._groups):
                self._decay.pop()
            if len(self._lr.own) > len(self._groups):
                self._lr.pop_group()
            self._reassign()
            raise
        self._sync_keys()
        return self

    def set_lr_mult(self, multipliers: Dict[Any, float]) -> None:
        """MXNet's ``set_lr_mult``: ``{selector: multiplier}`` (glob, State, ...); later entries win."""
        self._set_mults(self._param_lr_mult, multipliers, 'lr_mult')

    def set_wd_mult(self, multipliers: Dict[Any, float]) -> None:
        """MXNet's ``set_wd_mult``: ``{selector: multiplier}``; ``0`` switches decay off for those."""
        self._set_mults(self._param_wd_mult, multipliers, 'wd_mult')

    def _set_mults(self, target, multipliers, what) -> None:
        self._check_not_traced()
        if not isinstance(multipliers, dict):
            raise TypeError(f"set_{what} takes a dict of selector -> multiplier")
        entries = [(selectors.as_selector(key), checks.non_negative(what, value))
                   for key, value in multipliers.items()]
        saved = list(target)
        target.extend(entries)
        try:
            self._reassign()
        except Exception:
            target[:] = saved
            self._reassign()
            raise

    @property
    def param_groups(self) -> List['GroupView']:
        """One mapping per group: ``params`` (key -> State), ``lr``, ``weight_decay``, its hyper-parameters.

        torch's and braintools' layout. ``group['lr'] = 0.01`` and
        ``group['weight_decay'] = 0`` set that group's value (it lives in
        State: no re-trace); ``group['lr']`` reads as a float that also has
        braintools' ``.value``. Every other entry is fixed at construction.
        """
        return [GroupView(self, group.index) for group in self._groups]

    def describe_groups(self) -> str:
        """A table of every parameter: its group, algorithm, lr and decay; also printed by ``print(opt)``.

        Returns the text (print it). Parameters left frozen by ``unmatched='freeze'``
        are listed under ``(frozen)``.
        """
        lrs = self._group_lr_values()
        lines = []
        for group in self._groups:
            source = self._lr.source(group.index)
            lr = (f"{type(source).__name__}(now {_number(lrs[group.index])})" if is_scheduler(source)
                  else _number(lrs[group.index]))
            own = {k: v for k, v in group.settings.items()
                   if group.index == 0 or group.algorithm is not type(self)
                   or v != self._default_group.settings.get(k)}
            extra = ', '.join([f'{k}={_short(v)}' for k, v in own.items()]
                              + ([group.precision.describe()] if group.precision.active else []))
            decay = _number(self._decay.host_value(group.index))
            state = 'frozen' if group.frozen else f"lr={lr}, weight_decay={decay}"
            selector = 'unselected' if group.selector is None else group.selector.description
            lines.append(f"group {group.index} {group.name!r} [{selector}]: {group.algorithm.__name__}, {state}"
                         + (f", {extra}" if extra else ''))
            for i, g in enumerate(self._membership):
                if g == group.index:
                    lines.append('    ' + self._describe_param(i))
        loose = [i for i, g in enumerate(self._membership) if g is None]
        if loose:
            lines.append("(frozen: selected by no group, unmatched='freeze')")
            lines.extend('    ' + self._describe_param(i) for i in loose)
        return '\n'.join(lines)

    def _describe_param(self, i: int) -> str:
        param = self._registry.params[i]
        signature = self._registry.signatures()[i]
        lr_mult, wd_mult = self._mults[i]
        notes = []
        if lr_mult != 1.0:
            notes.append(f'lr x{lr_mult:g}')
        group = self._membership[i]
        if group is not None and not self._groups[group].frozen:
            decays = self._decay.live[group]
            notes.append('decay' if decays and wd_mult != 0.0 else 'no decay')
            if decays and wd_mult not in (0.0, 1.0):
                notes.append(f'wd x{wd_mult:g}')
        return f"{param.name}: {signature.describe()}" + (f" ({', '.join(notes)})" if notes else '')

    @property
    def decayed_params(self) -> List[Any]:
        """Names of the parameters weight decay acts on (after masks and multipliers)."""
        out = []
        for i, group in enumerate(self._membership):
            if group is None or self._groups[group].frozen:
                continue
            if self._decay.live[group] and self._mults[i][1] != 0.0:
                out.append(self._registry.params[i].name)
        return out

    def _infos(self, params=None) -> List[selectors.ParamInfo]:
        params = self._registry.params if params is None else params
        return [selectors.ParamInfo(p.key, p.leaf_path, p.state, p.handle.value) for p in params]

    def _param_mults(self, infos, membership) -> List[Tuple[float, float]]:
        out = []
        for info, group in zip(infos, membership):
            lr_mult = wd_mult = 1.0
            if group is not None:
                lr_mult, wd_mult = self._groups[group].lr_mult, self._groups[group].wd_mult
            for selector, mult in self._param_lr_mult:
                if selector(info):
                    lr_mult = mult
            for selector, mult in self._param_wd_mult:
                if selector(info):
                    wd_mult = mult
            if self._decay_mask is not None and not self._decay_mask(info):
                wd_mult = 0.0
            out.append((lr_mult, wd_mult))
        return out

    def _reassign(self, new_states=None, prefix=None) -> None:
        """Recompute group membership (and register ``new_states``); all-or-nothing.

        Parameters already trained keep their group: a new declaration that
        would move one raises.
        """
        planned = self._registry.plan(new_states, prefix) if new_states is not None else []
        new_params = [p for _, _, params in planned for p in params]
        infos = self._infos() + self._infos(new_params)
        membership = _groups.assign(self._groups, infos, self._options['unmatched'])
        trained = self.steps_taken() > 0 or self._traced_by_caller
        moved = [self._registry.params[i].name for i, (old, new) in enumerate(zip(self._membership, membership))
                 if old != new]
        if moved and trained:
            raise GroupSelectionError(f"{', '.join(moved)} would move to another parameter group after "
                                      f"training started; declare groups before the first update")
        if infos:
            _groups.check_nonempty(self._groups, membership)
        mults = self._param_mults(infos, membership)
        for group in self._groups:                    # refusals first: nothing is registered on an error
            if not group.frozen and group.index in membership:
                self._group_layout(group)
        _sharding.check_resolvable(self._options['shard_state'],
                                   [_units.split(p.handle.value)[0] for p in self._registry.params + new_params])
        if new_states is not None:
            self._registry.commit(planned)
        now = self.steps_taken()
        self._step_offsets.extend([now] * (len(membership) - len(self._step_offsets)))
        old_membership = self._membership
        self._membership, self._mults = membership, mults
        self._rebuild_storage(old_membership)
        self._guards.resize(self._accumulator_map(old_membership), self._trainable_mantissas())
        self._compiled_step = None

    def _accumulator_map(self, old_membership) -> List[Optional[int]]:
        old_trainable = [i for i, g in enumerate(old_membership) if g is not None and not self._groups[g].frozen]
        position = {i: j for j, i in enumerate(old_trainable)}
        return [position.get(i) for i in self._trainable]

    # ------------------------------------------------------------------ registration
    def register_trainable_weights(self, param_states: Any, prefix: Optional[Any] = None) -> 'Optimizer':
        """Register the ``ParamState`` objects to train; returns the optimizer.

        Accepts what ``module.states(brainstate.ParamState)`` returns, a plain
        dict of ParamStates (keys are kept exactly as given), a list of them
        (keyed by position) or one. May be called once per module; a State
        registered twice is trained once; a key already taken by another State
        (two modules both have ``('weight',)``) is kept under
        ``('registration<n>', *key)`` or ``(prefix, *key)``. Non-``ParamState``
        values raise ``TypeError`` and nothing is registered.

        Each parameter joins the first declared group that selects it (see
        :meth:`add_param_group`). A ParamState may hold one array (or Quantity)
        or a pytree of them, as ``brainstate.nn.Linear`` does: each leaf is
        trained as its own parameter.
        """
        self._check_not_traced()
        self._reassign(new_states=param_states, prefix=prefix)
        return self

    def _check_not_traced(self) -> None:
        _ensemble.check_structure_fixed(self)
        if self._traced_by_caller:
            raise RuntimeError(
                f"{type(self).__name__}.update has already been compiled into a traced function "
                f"(jit/for_loop); a change of parameters or groups now would never reach it. Register "
                f"every weight and declare every group before the first traced update, or build a new "
                f"optimizer.")

    @property
    def param_states(self) -> ParamDict:
        """The trainable ParamStates, keyed exactly as given (``grad(loss, opt.param_states)`` keys its grads).

        A :class:`~braintools_optim._registry.ParamDict`: an insertion-ordered
        mapping JAX flattens without sorting its keys. Frozen parameters are
        left out (no gradient is needed for them).
        """
        trainable = set(self._trainable)
        states = {}
        for i, param in enumerate(self._registry.params):
            if i in trainable:
                states[param.key] = param.state
        return ParamDict(states)

    def steps_taken(self) -> int:
        """The step counter as a Python int (0 for an optimizer built inside a trace, whose counter is traced)."""
        value = self.step_count.value
        if isinstance(value, jax.core.Tracer):
            return 0
        return int(value) if jnp.ndim(value) == 0 else int(np.max(np.asarray(value)))   # an ensemble: the furthest member

    @property
    def _trainable(self) -> List[int]:
        return [i for i, g in enumerate(self._membership) if g is not None and not self._groups[g].frozen]

    @property
    def _frozen(self) -> List[int]:
        trainable = set(self._trainable)
        return [i for i in range(len(self._membership)) if i not in trainable]

    def _trainable_mantissas(self) -> List[jax.Array]:
        params = self._registry.params
        return [_units.split(params[i].handle.value)[0] for i in self._trainable]

    # ------------------------------------------------------------------ storage
    def _mult_classes(self, members) -> Tuple[List[int], List[Tuple[float, float]]]:
        classes: List[Tuple[float, float]] = []
        ids = []
        for i in members:
            mults = self._mults[i]
            if mults not in classes:
                classes.append(mults)
            ids.append(classes.index(mults))
        return ids, classes

    def _init_rule(self, group) -> UpdateRule:
        """The group's rule for initialising buffers (a cycled momentum is a placeholder here)."""
        settings = group.settings
        if cycles_momentum(self._lr.source(group.index)):
            settings = _with_cycled(group.algorithm, settings, 0.5)
        if group.decay_mode == 'in_rule':
            settings = settings.replace(weight_decay=group.weight_decay)
        return group.algorithm.build_rule(settings)

    def _group_layout(self, group) -> Optional[str]:
        """The fused layout kind of a group's buffers (``None``: one per parameter)."""
        fuse = self._options['fused']
        kind = type(self)._fused_layout(self._init_rule(group))
        if fuse and kind is None:
            raise ValueError(f"{group.algorithm.__name__} in {type(self).__name__} needs one buffer per parameter, "
                             f"so it cannot run on fused buffers; leave fused=None or False")
        return None if fuse is False else kind

    def _rebuild_storage(self, old_membership) -> None:
        """Buffers for the current membership: known parameters keep theirs, new ones start fresh."""
        params = self._registry.params
        old_values: Dict[int, Dict[str, jax.Array]] = {}
        for g, storage in self._storage.items():
            for name in storage.states:
                for i, value in zip(storage.members, storage.values(name)):
                    if i < len(old_membership) and old_membership[i] == g:
                        old_values.setdefault(i, {})[name] = value
            if storage.master is not None:
                for i, value in zip(storage.master.members, storage.master.values(MASTER)):
                    if i < len(old_membership) and old_membership[i] == g:
                        old_values.setdefault(i, {})[MASTER] = value
        new_storage: Dict[int, GroupStorage] = {}
        for group in self._groups:
            members = [i for i, g in enumerate(self._membership) if g == group.index]
            if group.frozen or not members:
                continue
            rule = self._init_rule(group)
            mantissas = [_units.split(params[i].handle.value)[0] for i in members]
            ids, _ = self._mult_classes(members)
            layout = make_layout(self._options['fused'], self._group_layout(group), mantissas,
                                 [self._step_offsets[i] for i in members], ids)
            layout, placement = _sharding.plan(layout, mantissas, self._options['shard_state'])
            storage = GroupStorage(type(self).__name__, group.index, members, rule.buffer_names, layout, placement)
            plan = self._precision_plan(group, rule, members, mantissas, layout, ids, old_values)
            storage.plan, storage.master = plan if plan is not None else (None, None)
            for name in rule.buffer_names:
                values = []
                for k, (i, mantissa) in enumerate(zip(members, mantissas)):
                    kept = old_values.get(i, {}).get(name)
                    values.append(kept if kept is not None else self._initial_buffers(storage, rule, k, mantissa)[name])
                storage.set_values(name, values)
            new_storage[group.index] = storage
        self._storage = new_storage

    def _precision_plan(self, group, rule, members, mantissas, layout, ids, old_values):
        """``(plan, master storage or None)`` of a group with precision options; ``None`` without."""
        if not group.precision.active:
            return None
        plan = _mixed.Plan(group.index, group.precision, rule, [m.dtype for m in mantissas], layout,
                           f"parameter group {group.name!r}")
        if not plan.master_members:
            return plan, None
        subset = plan.master_members
        sub_members = [members[k] for k in subset]
        sub_mantissas = [mantissas[k] for k in subset]
        sub_layout = make_layout(self._options['fused'], self._group_layout(group), sub_mantissas,
                                 [self._step_offsets[i] for i in sub_members], [ids[k] for k in subset])
        sub_layout, sub_placement = _sharding.plan(sub_layout, sub_mantissas, self._options['shard_state'])
        master = GroupStorage(type(self).__name__, group.index, sub_members, (MASTER,), sub_layout, sub_placement)
        plan.link_master(sub_layout, subset)
        values = []
        for k, i, mantissa in zip(subset, sub_members, sub_mantissas):
            kept = old_values.get(i, {}).get(MASTER)
            values.append(kept if kept is not None else plan.fresh_master(k, mantissa))
        master.set_values(MASTER, values)
        return plan, master

    @staticmethod
    def _initial_buffers(storage, rule, k: int, mantissa) -> Dict[str, jax.Array]:
        """Fresh buffers of member ``k`` of ``storage``: from the values the rule acts on, in their storage dtypes."""
        plan = storage.plan
        if plan is None:
            return initial_buffers(rule, mantissa)
        # a fresh master copy is the parameter cast up: the same values
        return plan.initial(k, initial_buffers(rule, jnp.asarray(mantissa).astype(plan.compute_dtypes[k])))

    def reinitialize(self, *keys) -> None:
        """Restart the optimizer state of the parameters of these State keys (all if none given).

        For a parameter whose shape, dtype or unit the model changed on
        purpose: its buffers are rebuilt for the new value (fresh moments and
        its own step count from now); the others keep theirs. Eager only.
        """
        self._check_not_traced()
        params = self._registry.params
        wanted = set(keys)
        unknown = [k for k in wanted if k not in self._registry.states()]
        if unknown:
            raise KeyError(f"no registered parameter under {', '.join(map(_keys.describe, unknown))}")
        indices = [i for i, p in enumerate(params) if not keys or p.key in wanted]
        now = self.steps_taken()
        for i in indices:
            self._step_offsets[i] = now
        self._registry.resign(indices)
        forget = [self._membership[i] if i not in indices else -1 for i in range(len(params))]
        self._rebuild_storage(forget)
        self._guards.resize([j if i not in indices else None for j, i in
                             zip(range(len(self._trainable)), self._trainable)], self._trainable_mantissas())
        self._compiled_step = None

    # ------------------------------------------------------------------ learning rate
    def _group_lr_values(self) -> jax.Array:
        return self._lr.values(self.num_groups)

    @property
    def lr(self):
        """The optimizer's LRScheduler; for a float lr, a :class:`~._lr.FloatLR` view of it.

        The view is a scheduler (``opt.lr.step()``, ``get_last_lr()``: braintools
        wraps a float lr the same way) that also reads as the number
        (``float(opt.lr)``, ``opt.lr * 2``). Assign a float (``opt.lr = 0.01``:
        every float group, no re-trace) or a new scheduler.
        """
        if self._lr.scheduler is not None:
            return self._lr.scheduler
        view = self.__dict__.get('_lr_view')
        if view is None:
            view = FloatLR(self._lr, lambda: self.num_groups)
            self.__dict__['_lr_view'] = view
        return view

    @lr.setter
    def lr(self, value) -> None:
        if value is self.__dict__.get('_lr_view'):
            return                                    # opt.lr = opt.lr
        if is_scheduler(value) or self._lr.scheduler is not None:
            # Changing *where* the lr comes from changes the compiled program.
            if self._traced_by_caller:
                raise RuntimeError(
                    "cannot switch between a float learning rate and an LRScheduler after update has "
                    "been traced into a compiled function (it would keep reading the old source); "
                    "attach the scheduler before the first traced update or build a new optimizer")
            source = self._check_lr_source(value, 'lr')
            previous = self._lr.default
            self._lr.set_default(source)
            try:
                for group in self._groups:
                    self._check_cycling(group)
                if self._options['schedule_per_update'] and getattr(source, 'needs_metric', False):
                    raise ValueError(f"{type(source).__name__} is stepped with a metric; schedule_per_update "
                                     f"cannot step it: call scheduler.step(metric) yourself")
            except Exception:
                self._lr.set_default(previous)
                raise
            self.__dict__.pop('_lr_view', None)
            self._rebuild_storage(self._membership)
            self._compiled_step = None
            return
        self.set_lr(value)

    def set_lr(self, value, group: Optional[int] = None) -> None:
        """Set the float learning rate of every group, of one ``group``, or one per group (a list).

        Never re-traces: the value lives in State.
        """
        self._lr.set(value, group, self.num_groups)

    @property
    def current_lr(self):
        """The learning rate the next ``update`` applies to group 0 (the optimizer's own).

        A Python float outside a trace (a float lr exactly as set), a traced
        scalar inside one. Every group's: :meth:`get_last_lr`.
        """
        value = self._lr.host_value(0)
        return self._group_lr_values()[0] if value is None else value

    @current_lr.setter
    def current_lr(self, value) -> None:
        self.lr = value

    @property
    def base_lr(self) -> float:
        """Group 0's base learning rate: the float given, or its scheduler's ``base_lr``."""
        return self._lr.base(0)

    @property
    def lr_scheduler(self):
        """The optimizer-level scheduler; for a float lr the :class:`~._lr.FloatLR` view (as braintools,
        which always has one). ``opt.lr_scheduler is opt.lr``."""
        return self.lr

    #: braintools' private name of the same thing (read by code written against it)
    _lr_scheduler = lr_scheduler

    @property
    def schedulers(self) -> List[Any]:
        """Schedulers added with :meth:`add_scheduler` (braintools)."""
        return self.__dict__.setdefault('_added_schedulers', [])

    def add_scheduler(self, scheduler) -> None:
        """braintools: remember ``scheduler`` for :meth:`get_last_lr` (it does not drive the lr).

        To make a scheduler drive the learning rate, assign it: ``opt.lr = scheduler``.
        """
        if not is_scheduler(scheduler):
            raise TypeError(f"add_scheduler takes an LRScheduler, got {type(scheduler).__name__}")
        self.schedulers.append(scheduler)

    def get_last_lr(self) -> List[Any]:
        """torch: the current learning rate of each parameter group, as a list.

        (braintools: the last :meth:`add_scheduler` scheduler's, if one was added.)
        """
        if self.schedulers:
            return self.schedulers[-1].get_last_lr()
        values = [self._lr.host_value(g) for g in range(self.num_groups)]
        if any(v is None for v in values):
            return list(self._group_lr_values())
        return values

    def lr_apply(self, fn: Callable[[float], float]) -> None:
        """braintools: set every float group's lr to ``fn(lr)``; with a scheduler, ``scheduler.apply(fn)``
        (which overrides its lr until its next step)."""
        if self._lr.scheduler is not None:
            self._lr.scheduler.apply(fn)
            return
        values = [fn(self._lr.host_value(g)) for g in range(self.num_groups)]
        self.set_lr(values if self.num_groups > 1 else values[0])

    def zero_grad(self, *args, **kwargs) -> None:
        """Nothing to do: gradients are arguments of :meth:`update`, never accumulated on the
        optimizer (accepted for code written for torch)."""

    @property
    def opt_state(self):
        """braintools: the optimizer's buffers, ``{buffer: {parameter: array}}`` (``None`` before registration)."""
        if not len(self._registry):
            return None
        return OptimizerState(self.buffers(), name=f'{type(self).__name__}.opt_state')

    # ------------------------------------------------------------------ weight decay
    def set_weight_decay(self, value, group: Optional[int] = 0) -> None:
        """Set a group's weight decay (``group=None``: every group that decays); never re-traces.

        A group built with ``weight_decay=0`` has no decay in its compiled
        step: giving it a non-zero value re-traces an eager step, and is
        refused once the step is compiled into your own ``jit``.
        """
        groups = [g for g in range(self.num_groups) if self._decay.live[g]] if group is None else [group]
        for g in groups:
            if not 0 <= g < self.num_groups:
                raise IndexError(f"group {g} does not exist; the optimizer has {self.num_groups}")
        if self._decay.set(value, groups, self._traced_by_caller):
            self._compiled_step = None

    # ------------------------------------------------------------------ update
    def update(self, grads: Any, **kwargs) -> None:
        """Apply one optimizer step with ``grads`` (keyed like :attr:`param_states`).

        Raises (naming the parameter) on a missing or extra key, a shape, dtype
        or unit mismatch, or a parameter changed since registration, leaving
        parameters and optimizer state unchanged. ``kwargs`` are the
        algorithm's extra arguments (``LBFGS``: ``value``, ``value_fn``).
        """
        if not len(self._registry):
            raise RuntimeError(f"{type(self).__name__}.update called before register_trainable_weights")
        static, dynamic = self._update_arguments(kwargs)
        per_param = split_gradients(self._registry, grads, self._frozen)
        if _contains_tracer(per_param) or _contains_tracer(dynamic) or _contains_tracer(self.step_count.value):
            if not self.__dict__.get('_owned_trace'):     # a wrapper's own compiled step is not the caller's
                self._traced_by_caller = True
            self._registry.check_unchanged()
            self._step(per_param, {**static, **dynamic})
            return
        # Eager: check cheaply here so errors surface before compiling, then run the cached compiled step.
        self._registry.check_unchanged()
        values = self._registry.values()
        check_gradients(self._registry.params, values, per_param, self._trainable)
        key = tuple(sorted((name, id(value)) for name, value in static.items())) + (tuple(sorted(dynamic)),)
        if self._compiled_step is None or self._compiled_step.key != key:
            step = lambda g, dyn: self._step(g, {**static, **dyn})
            self._compiled_step = EagerStep(step, (per_param, dynamic), key)
        self._compiled_step((per_param, dynamic))
        self._after_eager_step()

    def step(self, *args, **kwargs) -> None:
        """The torch / braintools spelling of :meth:`update`."""
        return self.update(*args, **kwargs)

    def check_update(self, grads: Any, **kwargs) -> None:
        """Every check :meth:`update` makes before computing, without computing anything.

        (A wrapper such as :class:`Lookahead` calls it before compiling its own step, so its
        errors are the inner optimizer's.)
        """
        if not len(self._registry):
            raise RuntimeError(f"{type(self).__name__}.update called before register_trainable_weights")
        self._update_arguments(kwargs)
        per_param = split_gradients(self._registry, grads, self._frozen)
        self._registry.check_unchanged()
        if not _contains_tracer(per_param):
            check_gradients(self._registry.params, self._registry.values(), per_param, self._trainable)

    def _update_arguments(self, kwargs) -> Tuple[Dict[str, Any], Dict[str, Any]]:
        """Split ``update``'s extra arguments into static (closed over) and dynamic (traced) ones."""
        if kwargs:
            raise TypeError(f"{type(self).__name__}.update got unexpected argument(s) {', '.join(sorted(kwargs))}")
        return {}, {}

    def _after_eager_step(self) -> None:
        """Host-side checks after an eager step (too many non-finite skips in a row)."""
        limit = self._options['max_consecutive_skips']
        if limit is not None and int(self._guards.consecutive_skips.value) >= limit:
            raise FloatingPointError(self._guards.too_many_skips_message())

    def _step(self, grads: List[Any], extra: Dict[str, Any]) -> None:
        """The traced step: every new value is computed first, then everything is written."""
        self._num_traces += 1
        params_meta = self._registry.params
        values = self._registry.values()
        trainable = self._trainable
        target_units = check_gradients(params_meta, values, grads, trainable)
        raw_grads = gradient_mantissas(grads, trainable, target_units)
        params, units = [], []
        for i in trainable:
            mantissa, unit = _units.split(values[i])
            params.append(mantissa)
            units.append(unit)
        self._grad_units = dict(zip(trainable, target_units))

        grads_for_step, is_real = self._guards.accumulate(raw_grads)
        finite = self._guards.finite(grads_for_step)
        apply = is_real
        if finite is not None:
            apply = finite if is_real is None else is_real & finite

        lrs = self._group_lr_values()
        step = self.step_count.value
        count = jnp.where(step < INT32_MAX, step + 1, step)         # saturates instead of wrapping
        # groups with a precision option act on float32 values (master copies, or cast up): _mixed
        working_params, working_grads = _mixed.working(self._storage, trainable, params, grads_for_step, count)
        processed = self._process_gradients(working_grads, working_params)
        old_stored = {g: storage.stored() for g, storage in self._storage.items()}
        new_params, new_stored, new_extra = self._compute_updates(processed, working_params, lrs, count, extra)
        new_params, new_stored = _mixed.finish_members(self, new_params, new_stored)
        new_key = None if self._keys is None else StepKeys.split(self._keys.state.value)[1]

        if apply is not None:
            keep = lambda new, old: new if new is old else jnp.where(apply, new, old)
            new_params = [keep(n, o) for n, o in zip(new_params, params)]
            new_stored = {g: {name: jax.tree.map(keep, value, old_stored[g][name]) for name, value in stored.items()}
                          for g, stored in new_stored.items()}
            new_extra = {name: jax.tree.map(keep, value, self._extra_states()[name].value)
                         for name, value in new_extra.items()}
            count = keep(count, step)
            if new_key is not None:
                new_key = keep(new_key, self._keys.state.value)
        if finite is not None:
            self._guards.count_skips(finite, is_real)

        # Everything is computed: now write (each value kept in its sharding, see _sharding).
        new_params = _sharding.constrain_params(self._storage, trainable, new_params)
        new_stored = {g: {name: self._storage[g].placed_as(name, value) for name, value in stored.items()}
                      for g, stored in new_stored.items()}
        for i, value, unit in zip(trainable, new_params, units):
            params_meta[i].handle.value = _units.merge(value, unit)
        for g, stored in new_stored.items():
            for name, value in stored.items():
                old = old_stored[g].get(name)
                if old is None or any(new is not o for new, o in zip(value, old)):   # unchanged: no copy
                    self._storage[g].write(name, value)
        if new_key is not None:
            self._keys.state.value = new_key
        extra_states = self._extra_states()
        for name, value in new_extra.items():
            extra_states[name].value = value
        self.step_count.value = count
        if self._options['schedule_per_update']:
            self._lr.advance(apply)
        if isinstance(self.step_count.value, jax.core.Tracer) and self._traced_by_caller:
            self._guards.raise_if_too_many()

    # ------------------------------------------------------------------ the arithmetic
    def _process_gradients(self, grads, params) -> List[jax.Array]:
        """Rescale, clip by value, clip by the global norm (all groups), coupled decay per group."""
        grads = gp.rescale(grads, self._options['rescale_grad'])
        if self._options['grad_clip_value'] is not None:
            grads = gp.clip_by_value(grads, self._options['grad_clip_value'])
        if self._options['grad_clip_norm'] is not None:
            grads = gp.clip_by_global_norm(grads, self._options['grad_clip_norm'])
        out = []
        for i, g, p in zip(self._trainable, grads, params):
            group = self._groups[self._membership[i]]
            decay = self._decay_for(group, self._mults[i][1])
            out.append(g if group.decay_mode != 'coupled' or decay is None else g + decay.astype(g.dtype) * p)
        return out

    def _decay_for(self, group, wd_mult: float):
        """The traced weight decay of a member (``None`` when it is statically zero)."""
        return self._decay.traced(group.index, wd_mult)

    def _rule_for(self, group, wd_mult: float) -> UpdateRule:
        """The group's rule for this step: cycled momentum and in-rule decay filled in (traced)."""
        settings = group.settings
        momentum = self._lr.momentum(group.index)
        if momentum is not None:
            settings = _with_cycled(group.algorithm, settings, momentum)
        if group.decay_mode == 'in_rule':
            decay = self._decay_for(group, wd_mult)
            settings = settings.replace(weight_decay=0.0 if decay is None else decay)
        return group.algorithm.build_rule(settings)

    def _compute_updates(self, grads, params, lrs, count, extra):
        """New parameters (trainable order), stored buffers per group, extra State; nothing written.

        Runs each group's rule: once per flat bucket or per stack of same-shaped
        members for fused groups, once per parameter otherwise; then decoupled
        decay and parameter clipping.
        Algorithms that couple parameters (a global statistic, a line search)
        override this; they keep extra State listed by :meth:`_extra_states` and
        return its new values as the third item.
        """
        position = {i: j for j, i in enumerate(self._trainable)}
        new_params: List[Optional[jax.Array]] = [None] * len(params)
        new_stored: Dict[int, Dict[str, Any]] = {}
        for g, storage in self._storage.items():
            group = self._groups[g]
            members = storage.members
            ids, classes = self._mult_classes(members)
            rules = [self._rule_for(group, wd_mult) for _, wd_mult in classes]
            member_grads = [grads[position[i]] for i in members]
            member_params = [params[position[i]] for i in members]
            layout = storage.layout
            plan = storage.plan    # precision options (_mixed): each slot's new parameters are written by the plan
            # new parameters, not deltas, come out of each slot (stacks; precision plans)
            applied = plan is not None or (storage.fused and layout.apply_packed)
            if plan is not None:
                key, masters = (_mixed.step_key(self._keys) if plan.any_stochastic else None), {}
                run = lambda s, update, grad, buffers, param, lr, own_count, mults: plan.run(
                    s, update, grad, buffers, param, lr, own_count, key, masters,
                    lambda p, d: self._apply_delta(p, d, group, lrs[g], mults))
            if storage.fused:
                flat_grads = layout.pack(member_grads)
                flat_params = layout.pack(member_params)     # dead code unless the rule or decay reads it
                if plan is not None:
                    flat_params = plan.packed_params(storage, flat_params)   # master copies, already packed
                deltas, stored = [], {name: [] for name in storage.states}
                for b, bucket in enumerate(layout.buckets):
                    own_count = count - bucket.step_offset if bucket.step_offset else count
                    lr = lrs[g] * classes[bucket.group][0] if classes[bucket.group][0] != 1.0 else lrs[g]
                    buffers = {name: storage.states[name].value[b] for name in storage.states}
                    update = layout.update_fn(rules[bucket.group].update, bucket)   # vmapped over a stack
                    if plan is not None:
                        delta, updated = run(b, update, flat_grads[b], buffers, flat_params[b], lr, own_count,
                                             classes[bucket.group])
                    else:
                        delta, updated = update(flat_grads[b], buffers, flat_params[b], lr, own_count)
                        if applied:
                            delta = self._apply_delta(flat_params[b], delta, group, lrs[g], classes[bucket.group])
                    deltas.append(delta)
                    for name in storage.states:
                        stored[name].append(updated[name])
                member_deltas = layout.scatter(deltas, count)      # or the new parameters, if applied
            else:
                member_deltas, stored = [], {name: [] for name in storage.states}
                for k, i in enumerate(members):
                    offset = self._step_offsets[i]
                    own_count = count - offset if offset else count
                    lr = lrs[g] * classes[ids[k]][0] if classes[ids[k]][0] != 1.0 else lrs[g]
                    buffers = {name: storage.states[name].value[k] for name in storage.states}
                    if plan is not None:
                        delta, updated = run(k, rules[ids[k]].update, member_grads[k], buffers, member_params[k],
                                             lr, own_count, self._mults[i])
                    else:
                        delta, updated = rules[ids[k]].update(member_grads[k], buffers, member_params[k], lr,
                                                              own_count)
                    member_deltas.append(delta)
                    for name in storage.states:
                        stored[name].append(updated[name])
            for k, i in enumerate(members):
                new_params[position[i]] = member_deltas[k] if applied else self._apply_delta(
                    member_params[k], member_deltas[k], group, lrs[g], self._mults[i])
            if plan is not None:
                stored.update(plan.stored_masters(masters))
            new_stored[g] = stored
        return new_params, new_stored, {}

    def _apply_delta(self, param, delta, group, group_lr, mults):
        """``param + delta`` with decoupled decay (per group) and parameter clipping."""
        decay = self._decay_for(group, mults[1])
        if group.decay_mode == 'decoupled' and decay is not None:
            scale = group_lr * mults[0] if mults[0] != 1.0 else group_lr
            if self._options['decoupled_decay_scale'] == 'schedule':
                scale = group_lr / self._lr.base(group.index)
            new = param * (1.0 - (scale * decay).astype(param.dtype)) + delta
        else:
            new = param + delta
        if self._options['param_clip_value'] is not None:
            new = jnp.clip(new, -self._options['param_clip_value'], self._options['param_clip_value'])
        return new

    def _extra_states(self) -> Dict[str, OptimizerState]:
        """Optimizer State besides the per-parameter buffers (saved in ``state_dict``)."""
        return {}

    # ------------------------------------------------------------------ per-parameter views
    def _buffers_per_param(self) -> Dict[str, List[jax.Array]]:
        """Every buffer as one array per trainable parameter (trainable order; eager or traced)."""
        position = {i: j for j, i in enumerate(self._trainable)}
        out: Dict[str, List[Optional[jax.Array]]] = {}
        for storage in self._storage.values():
            for name in storage.named_states():                 # master copies: their members only
                values = storage.values(name)
                column = out.setdefault(name, [None] * len(position))
                for i, value in zip(storage.part(name).members, values):
                    column[position[i]] = value
        return out

    def _stored_from_per_param(self, per_param: Dict[str, List[jax.Array]]) -> Dict[int, Dict[str, Any]]:
        """The inverse of :meth:`_buffers_per_param`: stored values per group."""
        position = {i: j for j, i in enumerate(self._trainable)}
        return {g: {name: storage.part(name).layout.pack([per_param[name][position[i]]
                                                          for i in storage.part(name).members])
                    for name in storage.named_states()}
                for g, storage in self._storage.items()}

    def _fresh_buffers(self) -> Dict[str, List[Optional[jax.Array]]]:
        """Freshly initialised buffers, one per trainable parameter (for restarted parameters)."""
        position = {i: j for j, i in enumerate(self._trainable)}
        params = self._registry.params
        out: Dict[str, List[Optional[jax.Array]]] = {}
        for g, storage in self._storage.items():
            rule = self._init_rule(self._groups[g])
            for k, i in enumerate(storage.members):
                mantissa = _units.split(params[i].handle.value)[0]
                fresh = self._initial_buffers(storage, rule, k, mantissa)
                if storage.plan is not None and storage.plan.has_master[k]:
                    fresh[MASTER] = storage.plan.fresh_master(k, mantissa)
                for name in storage.states:
                    out.setdefault(name, [None] * len(position))[position[i]] = fresh[name]
                if MASTER in fresh:
                    out.setdefault(MASTER, [None] * len(position))[position[i]] = fresh[MASTER]
        return out

    def _write_buffers_per_param(self, per_param: Dict[str, List[jax.Array]]) -> None:
        for g, stored in self._stored_from_per_param(per_param).items():
            for name, value in stored.items():
                self._storage[g].set_stored(name, value)

    def _layout_depends_on_offsets(self, offsets: Sequence[int]) -> bool:
        """Whether these step offsets would regroup a fused layout's buckets."""
        for storage in self._storage.values():
            if storage.fused and len({offsets[i] for i in storage.members}) != \
                    len({self._step_offsets[i] for i in storage.members}):
                return True
            if storage.fused and any(offsets[i] != self._step_offsets[i] for i in storage.members):
                return True
        return False

    def _set_step_offsets(self, offsets: Sequence[int]) -> bool:
        """Replace every parameter's step offset; re-layout fused groups; returns whether a layout changed."""
        changed = self._layout_depends_on_offsets(offsets)
        self._step_offsets = list(offsets)
        if changed:
            self._rebuild_storage(self._membership)
        return changed

    def buffers(self) -> Dict[str, Dict[Any, Any]]:
        """Every buffer, ``{buffer_name: {parameter name: value}}``, with its physical unit.

        Keyed by the State's key (``'w'``, ``('layer', 'weight')``), with a
        pytree-valued State's leaf path appended (``('l1', 'weight', 'bias')``). First moments carry the gradient's unit,
        second moments its square, accumulated updates the parameter's unit
        (each rule's ``buffer_units``). With ``master_weights``, ``'master'`` holds
        the float32 master copy of each bfloat16/float16 parameter (its unit).
        Values are copies.
        """
        params = self._registry.params
        out: Dict[str, Dict[Any, Any]] = {}
        for g, storage in self._storage.items():
            units_of = dict(self._init_rule(self._groups[g]).buffer_units, **{MASTER: (0, 1)})
            for name in storage.named_states():
                grad_power, param_power = units_of.get(name, (0, 0))
                for i, value in zip(storage.part(name).members, storage.values(name)):
                    value = jnp.array(value, copy=True)
                    param_unit = _units.split(params[i].handle.value)[1]
                    grad_unit = self._grad_units.get(i, param_unit)
                    out.setdefault(name, {})[params[i].ident] = _units.merge(value, _units.power_product(
                        (grad_unit, grad_power), (param_unit, param_power)))
        return out

    # ------------------------------------------------------------------ checkpoints
    def state_dict(self) -> Dict[str, Any]:
        """The optimizer's state as plain nested dicts of NumPy arrays (see :mod:`._checkpointing`)."""
        return _checkpointing.state_dict(self)

    def load_state_dict(self, state: Dict[str, Any], strict: bool = True) -> Dict[str, List[str]]:
        """Restore :meth:`state_dict` output, checking everything first; nothing changes if it does not fit.

        ``strict=False`` is for a model that gained or lost parameters since the
        checkpoint: parameters missing from it restart fresh (buffers and their
        own step count), parameters it has but the optimizer does not are
        ignored. Returns ``{'missing': [...], 'unexpected': [...]}``.
        """
        return _checkpointing.load_state_dict(self, state, strict)

    def _prepare_load(self, state: Dict[str, Any], strict: bool = True):
        """``(write, report)``: :meth:`load_state_dict` checked but not yet written (for wrappers)."""
        return _checkpointing.prepare_load(self, state, strict)

    def save(self, path: str) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (see :mod:`braintools_optim.checkpoint`)."""
        from . import checkpoint
        checkpoint.save(path, self.state_dict())

    def load(self, path: str, strict: bool = True) -> Dict[str, List[str]]:
        """Read a file written by :meth:`save` and :meth:`load_state_dict` it."""
        from . import checkpoint
        return self.load_state_dict(checkpoint.load(path), strict=strict)

    # ------------------------------------------------------------------ copies
    #: caches a copy or a pickle leaves out (rebuilt on first use)
    _UNCOPIED = ('_compiled_step', '_lr_view', '_value_fn_forms')

    def __deepcopy__(self, memo):
        """An independent optimizer for the same model: its own States (moments, counters, lr,
        schedulers) are copied, the registered ParamStates are shared (the model owns them).

        ``pickle`` instead carries everything, parameters included (another process has no model
        to point at); to move training to another model, use :meth:`state_dict`.
        """
        for state in self._registry.states().values():
            memo.setdefault(id(state), state)
        new = _copying.deepcopy_object(self, memo, drop=self._UNCOPIED)
        new.__dict__['_compiled_step'] = None
        return new

    def __getstate__(self):
        return _copying.frozen_state(self, drop=self._UNCOPIED)

    def __setstate__(self, state):
        self.__dict__.update(_copying.thawed_state(state))
        self.__dict__['_compiled_step'] = None

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}(step={self.steps_taken()}, "
                 f"{len(self._trainable)} trainable parameter(s), {self.num_groups} group(s))"]
        body = self.describe_groups()
        return '\n'.join(lines + (['  ' + line for line in body.splitlines()] if body else []))


def _number(value) -> str:
    """A float for a one-line report; an ensemble's one value per member as a list."""
    if jnp.ndim(value):
        return '[' + ', '.join(f"{float(v):.4g}" for v in jnp.ravel(jnp.asarray(value))) + '] per member'
    return f"{float(value):.4g}"


def _short(value) -> str:
    """A setting for a one-line report: its repr, or its type for a long one (an optax transformation)."""
    text = repr(value)
    return text if len(text) <= 40 else f"<{type(value).__name__}>"


class _SettableFloat(float):
    """A group's lr or weight decay: a float that also has braintools' ``.value`` (readable, assignable)."""

    def __new__(cls, value, setter):
        obj = float.__new__(cls, value)
        obj._setter = setter
        return obj

    @classmethod
    def of(cls, value, setter):
        """The settable float, or an ensemble's values as they are (one per member)."""
        return value if jnp.ndim(value) else cls(value, setter)

    @property
    def value(self) -> float:
        return float(self)

    @value.setter
    def value(self, new) -> None:
        self._setter(new)


class GroupView(MutableMapping):
    """``opt.param_groups[i]``: a live view of one parameter group (see :attr:`Optimizer.param_groups`)."""

    _SETTABLE = ('lr', 'weight_decay')

    def __init__(self, opt: 'Optimizer', index: int):
        self._opt, self._index = opt, index

    def _items(self) -> Dict[str, Any]:
        opt, g = self._opt, self._index
        group = opt._groups[g]
        states = {}
        for i, member in enumerate(opt._membership):
            if member == g:
                param = opt._registry.params[i]
                states[param.key] = param.state
        lr = opt._lr.host_value(g)
        lr = opt._group_lr_values()[g] if lr is None else lr
        items = {'name': group.name, 'params': states, 'optimizer': group.algorithm.__name__,
                 'lr': _SettableFloat.of(lr, lambda v: opt.set_lr(v, group=g)),
                 'weight_decay': _SettableFloat.of(opt._decay.host_value(g),
                                                   lambda v: opt.set_weight_decay(v, group=g)),
                 'lr_mult': group.lr_mult, 'wd_mult': group.wd_mult, 'frozen': group.frozen,
                 **group.precision.record()}
        items.update(group.settings)
        return items

    def __getitem__(self, key):
        return self._items()[key]

    def __setitem__(self, key, value) -> None:
        if key == 'lr':
            self._opt.set_lr(value, group=self._index)
        elif key == 'weight_decay':
            self._opt.set_weight_decay(value, group=self._index)
        else:
            raise KeyError(f"param_groups[{self._index}][{key!r}] is fixed at construction (it is compiled into "
                           f"the update step); only 'lr' and 'weight_decay' can be set")

    def __delitem__(self, key) -> None:
        raise KeyError(f"param_groups entries cannot be deleted ({key!r})")

    def __iter__(self):
        return iter(self._items())

    def __len__(self) -> int:
        return len(self._items())

    def __repr__(self) -> str:
        items = self._items()
        items['params'] = list(items['params'])
        return f"GroupView({items!r})"


def _with_cycled(algorithm, settings: Settings, momentum) -> Settings:
    """``settings`` with the hyper-parameter a scheduler cycles replaced by ``momentum``."""
    for name, hyper in algorithm.hyperparameters.items():
        if hyper.cycled is None:
            continue
        if hyper.cycled is True:
            return settings.replace(**{name: momentum})
        values = list(settings[name])
        values[hyper.cycled] = momentum
        return settings.replace(**{name: tuple(values)})
    return settings
