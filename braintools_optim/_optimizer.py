"""The stateful optimizer engine, written once for every algorithm.

An :class:`Optimizer` owns

* a registry of the model's ``ParamState``s it trains (:mod:`._registry`);
* one :class:`OptimizerState` per buffer of its update rule (``Adam.exp_avg``,
  ``Adam.exp_avg_sq``, ...), each holding a list of arrays laid out by
  :mod:`._layout` (one flat array per bucket of small parameters for
  element-wise rules, one array per parameter otherwise), plus the
  ``step_count`` and, for a float learning rate, ``lr``;
* the pipeline around the pure rule (:mod:`.gradient_processing`): rescale,
  clip by value, clip by global norm, coupled or decoupled weight decay,
  parameter clipping; units are stripped before and restored after
  (:mod:`._units`).

``update(grads)`` checks the gradients before anything is computed (so an
error leaves everything as it was), then computes every new value, then
writes. Called inside ``brainstate.transform.jit``/``for_loop`` it is traced
into the caller's program; called eagerly it runs a compiled step cached on
the optimizer (traced once per gradient structure).
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import brainstate
import jax
import jax.numpy as jnp

from . import _checks as checks
from . import _units
from . import gradient_processing as gp
from ._layout import DEFAULT_MAX_FUSED_SIZE, FlatLayout, PerParamLayout, placement
from ._checkpointing import CheckpointMixin
from ._eager import EagerStep
from ._gradients import check_gradients, gradient_mantissas
from ._registry import ParamRegistry
from .rules._base import UpdateRule
from .schedulers._base import LRScheduler, check_learning_rate, float_dtype

#: where weight decay acts: ``'coupled'`` (L2 added to the gradient before the rule),
#: ``'decoupled'`` (``theta(1 - lr wd)`` after the rule) or ``'in_rule'`` (the rule applies the
#: group's decay itself, e.g. inside a trust ratio; the class builds per-group rules).
WEIGHT_DECAY_MODES = ('coupled', 'decoupled', 'in_rule')

#: how decoupled weight decay is scaled: ``'lr'`` — ``theta * (1 - lr_t * wd)`` (torch AdamW,
#: optax adamw, Keras); ``'schedule'`` — ``theta * (1 - (lr_t / base_lr) * wd)``, the schedule
#: multiplier only (Loshchilov & Hutter, Algorithm 2).
DECOUPLED_DECAY_SCALES = ('lr', 'schedule')


class OptimizerState(brainstate.LongTermState):
    """A State owned by an optimizer (moments, step counter, learning rate)."""


class fixed:
    """A hyper-parameter fixed at construction (it is compiled into the update step).

    Reading it returns the value given to the constructor; assigning raises, so
    a change can never be silently ignored by an already-compiled step.
    """

    def __set_name__(self, owner, name):
        self.name = name

    def __get__(self, obj, objtype=None):
        if obj is None:
            return self
        return obj._hyper[self.name]

    def __set__(self, obj, value):
        raise AttributeError(
            f"{type(obj).__name__}.{self.name} is fixed at construction: it is compiled into the "
            f"update step. Build a new optimizer to change it (the learning rate is the exception: "
            f"assign opt.lr, which lives in State, or attach an LRScheduler).")


def _as_list_nonempty(param_states) -> bool:
    if isinstance(param_states, brainstate.State):
        return True
    return bool(len(param_states)) if hasattr(param_states, '__len__') else True


def _can_step_without_metric(scheduler) -> bool:
    return not getattr(scheduler, 'needs_metric', False)


def _scheduler_states(scheduler) -> List[brainstate.State]:
    """Every State a scheduler (and, for composites, its children) owns."""
    found: List[brainstate.State] = []
    pending = [scheduler]
    while pending:
        current = pending.pop()
        states = current._states().values() if hasattr(current, '_states') else [current.last_epoch]
        found.extend(state for state in states if all(state is not seen for seen in found))
        pending.extend(getattr(current, 'schedulers', []))
    return found


def cycles_momentum(lr) -> bool:
    """Whether ``lr`` is a scheduler that drives the momentum / beta1 (``cycle_momentum=True``)."""
    return bool(getattr(lr, 'cycle_momentum', False))


def _contains_tracer(tree) -> bool:
    return any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(tree))


class Optimizer(CheckpointMixin, brainstate.graph.Node):
    """Base class of every optimizer: registration, validation, States, lr, clipping, decay.

    Subclasses only choose a pure :class:`~braintools_optim.rules.UpdateRule`
    and whether their weight decay is ``'coupled'`` (L2 added to the gradient)
    or ``'decoupled'`` (``theta -= lr * weight_decay * theta``, AdamW-style).

    Args:
        rule: the pure update rule.
        lr: a float >= 0 or an :class:`~braintools_optim.schedulers.LRScheduler`.
        weight_decay: decay coefficient (coupled or decoupled per subclass).
        grad_clip_norm: clip the global L2 norm of all gradients to this value.
        grad_clip_value: clip every gradient element to ``[-v, v]``.
        param_clip_value: clip every new parameter element to ``[-v, v]`` (neon).
        rescale_grad: multiply gradients by this first (MXNet; e.g. ``1/batch_size``).
        skip_nonfinite: when any gradient element is NaN or Inf, leave parameters,
            buffers, the step counter and the schedule untouched and count the step
            in ``opt.nonfinite_skips`` instead (no host round-trip).
        max_consecutive_skips: with ``skip_nonfinite``, raise an error (under jit
            too) when this many consecutive steps were skipped; ``None``: never.
        accumulate_steps: sum gradients over this many ``update`` calls and take
            the real step on the last of them (``1``: every call is a step).
            Step counter and schedule count real steps only.
        accumulate_mean: divide the accumulated gradient by ``accumulate_steps``
            (the mean over micro-batches; ``False`` keeps the sum).
        schedule_per_update: advance the attached LRScheduler after every real
            step (for per-step schedules such as OneCycleLR), so it cannot be forgotten.
        decoupled_decay_scale: for decoupled weight decay, ``'lr'`` (torch:
            ``theta(1 - lr_t wd)``) or ``'schedule'`` (the paper: ``theta(1 - (lr_t/base_lr) wd)``).
        fused: how buffers are stored and the rule is run (results agree within
            one ulp either way; see ``docs/performance.md``). ``None`` (default):
            for element-wise rules, parameters of at most 16,384 elements share
            one flat buffer per group, dtype and device and the rule runs once
            on it, larger (or partitioned) ones keep their own; ``True``: every parameter in the flat
            buffers; ``False``: one buffer and one rule call per parameter.
            Per-tensor rules (Lamb, Adafactor, ...) always run per parameter and
            refuse ``fused=True``.
        hyperparameters: the subclass's own settings, exposed read-only.
    """

    graph_invisible_attrs = ('_registry',)
    weight_decay_mode = 'coupled'

    weight_decay = fixed()
    grad_clip_norm = fixed()
    grad_clip_value = fixed()
    param_clip_value = fixed()
    rescale_grad = fixed()
    skip_nonfinite = fixed()
    schedule_per_update = fixed()
    decoupled_decay_scale = fixed()
    max_consecutive_skips = fixed()
    accumulate_steps = fixed()
    accumulate_mean = fixed()
    fused = fixed()

    def __init__(self, rule: UpdateRule, lr: Any, *, weight_decay: float = 0.0,
                 grad_clip_norm: Optional[float] = None, grad_clip_value: Optional[float] = None,
                 param_clip_value: Optional[float] = None, rescale_grad: float = 1.0,
                 skip_nonfinite: bool = False, max_consecutive_skips: Optional[int] = None,
                 accumulate_steps: int = 1, accumulate_mean: bool = True,
                 schedule_per_update: bool = False, decoupled_decay_scale: Optional[str] = None,
                 fused: Optional[bool] = None, hyperparameters: Optional[Dict[str, Any]] = None):
        if max_consecutive_skips is not None:
            if not skip_nonfinite:
                raise ValueError("max_consecutive_skips needs skip_nonfinite=True")
            max_consecutive_skips = checks.positive_int('max_consecutive_skips', max_consecutive_skips)
        accumulate_steps = checks.positive_int('accumulate_steps', accumulate_steps)
        if self.weight_decay_mode not in WEIGHT_DECAY_MODES:
            raise TypeError(f"{type(self).__name__}.weight_decay_mode must be one of {WEIGHT_DECAY_MODES}")
        if decoupled_decay_scale is not None and self.weight_decay_mode != 'decoupled':
            raise ValueError(f"decoupled_decay_scale only applies to decoupled weight decay; "
                             f"{type(self).__name__}'s weight decay is {self.weight_decay_mode!r}")
        if self.weight_decay_mode == 'decoupled':
            decoupled_decay_scale = decoupled_decay_scale or 'lr'
            if decoupled_decay_scale not in DECOUPLED_DECAY_SCALES:
                raise ValueError(f"decoupled_decay_scale must be one of {DECOUPLED_DECAY_SCALES}, "
                                 f"got {decoupled_decay_scale!r}")
        if fused not in (None, True, False):
            raise TypeError(f"fused must be None, True or False, got {fused!r}")
        if fused and not self._can_fuse(rule):
            raise ValueError(f"{type(self).__name__} is not element-wise (it needs each parameter whole), "
                             f"so it cannot run on fused flat buffers; leave fused=None or False")
        self._hyper = dict(hyperparameters or {})
        self._hyper.update(
            weight_decay=checks.non_negative('weight_decay', weight_decay),
            grad_clip_norm=checks.positive('grad_clip_norm', grad_clip_norm, allow_none=True),
            grad_clip_value=checks.positive('grad_clip_value', grad_clip_value, allow_none=True),
            param_clip_value=checks.positive('param_clip_value', param_clip_value, allow_none=True),
            rescale_grad=checks.nonzero('rescale_grad', rescale_grad),
            skip_nonfinite=bool(skip_nonfinite),
            schedule_per_update=bool(schedule_per_update),
            decoupled_decay_scale=decoupled_decay_scale,
            max_consecutive_skips=max_consecutive_skips,
            accumulate_steps=accumulate_steps,
            accumulate_mean=bool(accumulate_mean),
            fused=fused,
        )
        self._rule = rule
        self._registry = ParamRegistry()
        name = type(self).__name__
        self.step_count = OptimizerState(jnp.zeros((), jnp.int32), name=f'{name}.step_count')
        self._buffers = {buffer: OptimizerState([], name=f'{name}.{buffer}') for buffer in rule.buffer_names}
        self._layout = PerParamLayout()
        counter = lambda what: OptimizerState(jnp.zeros((), jnp.int32), name=f'{name}.{what}')
        self.nonfinite_skips = counter('nonfinite_skips') if skip_nonfinite else None
        self.consecutive_skips = counter('consecutive_skips') if skip_nonfinite else None
        self.micro_step = counter('micro_step') if accumulate_steps > 1 else None
        self._grad_accumulator = (OptimizerState([], name=f'{name}.grad_accumulator')
                                  if accumulate_steps > 1 else None)
        self._groups: List[Dict[str, Any]] = [{'lr': None, 'weight_decay': self._hyper['weight_decay']}]
        self._scheduler: Optional[LRScheduler] = None
        self._lr_state: Optional[OptimizerState] = None
        self._set_lr_source(lr)
        self._grad_units: Dict[Any, Any] = {}
        self._step_offsets: Dict[int, int] = {}      # id(ParamState) -> step_count at registration
        self._compiled_step = None
        self._traced_by_caller = False
        self._num_traces = 0

    # ------------------------------------------------------------------ registration
    def register_trainable_weights(self, param_states: Any, prefix: Optional[str] = None) -> 'Optimizer':
        """Register the ``ParamState``s to train; returns the optimizer.

        Accepts what ``module.states(brainstate.ParamState)`` returns, a plain
        dict of ParamStates, a list of them or one. May be called once per
        module; a State registered twice is trained once; a key already taken
        by another State (two modules both have ``('weight',)``) is kept under
        ``('registration<n>',) + key`` or ``(prefix,) + key``. Non-``ParamState``
        values raise ``TypeError`` and nothing is registered.

        A ParamState may hold one array (or Quantity) or a pytree of them, as
        ``brainstate.nn.Linear`` does (``{'weight': W, 'bias': b}``): each leaf is
        trained as its own parameter, listed by ``buffers()`` and checkpoints
        under the State's key plus the leaf path (``('l1', 'weight', 'bias')``).
        """
        return self._register(param_states, prefix, group=0)

    def add_param_group(self, param_states: Any, *, lr: Optional[float] = None,
                        weight_decay: Optional[float] = None, prefix: Optional[str] = None) -> 'Optimizer':
        """Register ``param_states`` as a new parameter group with its own ``lr`` / ``weight_decay``.

        Settings left out are inherited from the optimizer. A float learning rate
        keeps one lr per group (``opt.current_lr`` becomes an array); with an
        :class:`LRScheduler`, give the scheduler a list of base learning rates,
        one per group (a group ``lr`` here would be ignored, so it is refused).
        Returns the optimizer.
        """
        self._check_not_traced()
        if lr is not None and self._scheduler is not None:
            raise ValueError("the learning rate comes from the attached LRScheduler; give it a list of "
                             "base_lr values, one per parameter group, instead of add_param_group(lr=...)")
        group = {'lr': None if lr is None else check_learning_rate(lr),
                 'weight_decay': (self._hyper['weight_decay'] if weight_decay is None
                                  else checks.non_negative('weight_decay', weight_decay))}
        if not _as_list_nonempty(param_states):
            raise ValueError("add_param_group needs at least one ParamState")
        self._groups.append(group)
        try:
            self._register(param_states, prefix, group=len(self._groups) - 1)
        except Exception:
            self._groups.pop()
            raise
        if self._scheduler is None:
            self._reset_lr_state(self._lr_values())
        return self

    @property
    def num_groups(self) -> int:
        """The number of parameter groups (1 unless :meth:`add_param_group` was used)."""
        return len(self._groups)

    def _check_not_traced(self) -> None:
        if self._traced_by_caller:
            raise RuntimeError(
                f"{type(self).__name__}.update has already been compiled into a traced function "
                f"(jit/for_loop); weights registered now would never be updated by it. Register "
                f"every weight before the first traced update, or build a new optimizer.")

    def _register(self, param_states, prefix, group: int) -> 'Optimizer':
        self._check_not_traced()
        added = self._registry.add(param_states, prefix=prefix, group=group)
        if added:
            self._rebuild_buffers()
            self._compiled_step = None
        return self

    def _rebuild_buffers(self) -> None:
        # Keep the buffers of already-registered parameters, initialise the new ones.
        old_order = getattr(self, '_buffer_owner', [])
        states = self._registry.states()
        position = {id(state): i for i, state in enumerate(old_order)}
        # A parameter registered after some (eager) steps counts its own steps from 1, as in
        # torch, where every parameter keeps its own step: bias corrections start fresh.
        now = int(self.step_count.value)
        for state in states:
            self._step_offsets.setdefault(id(state), now)
        mantissas = [_units.split(state.value)[0] for state in states]
        new_layout = self._make_layout(mantissas)
        for name, buffer_state in self._buffers.items():
            old_values = self._layout.unpack(buffer_state.value)
            values = []
            for state, mantissa in zip(states, mantissas):
                if id(state) in position:
                    values.append(old_values[position[id(state)]])
                else:
                    values.append(self._rule.init(mantissa)[name])
            buffer_state.value = new_layout.pack(values)
        self._layout = new_layout
        if self._grad_accumulator is not None:
            old_values = self._grad_accumulator.value
            self._grad_accumulator.value = [
                old_values[position[id(state)]] if id(state) in position
                else jnp.zeros_like(_units.split(state.value)[0]) for state in states]
        self._buffer_owner = states

    @classmethod
    def _can_fuse(cls, rule: UpdateRule) -> bool:
        """Flat buffers need an element-wise rule and the engine's own per-parameter step."""
        return rule.elementwise and cls._compute_updates is Optimizer._compute_updates

    def _make_layout(self, mantissas, step_offsets=None):
        """The buffer layout for the registered parameters (see :mod:`._layout`)."""
        if self.fused is False or not self._can_fuse(self._rule):
            return PerParamLayout()
        max_size = None if self.fused else DEFAULT_MAX_FUSED_SIZE
        return FlatLayout([m.shape for m in mantissas], [m.dtype for m in mantissas],
                          self._registry.groups(),
                          self._param_step_offsets() if step_offsets is None else step_offsets, max_size,
                          placements=[placement(m) for m in mantissas])

    def _layout_for_offsets(self, step_offsets: List[int]):
        """The layout after the step offsets change (loading a checkpoint); refuses a traced change."""
        mantissas = [_units.split(state.value)[0] for state in self._registry.states()]
        layout = self._make_layout(mantissas, step_offsets)
        if getattr(layout, 'buckets', None) != getattr(self._layout, 'buckets', None):
            self._check_not_traced()
            self._compiled_step = None
        return layout

    def _buffer_values(self, name: str) -> List[jax.Array]:
        """Buffer ``name`` as one array per parameter (registration order), whatever the layout."""
        return self._layout.unpack(self._buffers[name].value)

    def _set_buffer_values(self, name: str, per_param: List[jax.Array]) -> None:
        self._buffers[name].value = self._layout.pack(per_param)

    @property
    def param_states(self) -> Dict[Any, brainstate.ParamState]:
        """The registered ParamStates, keyed exactly as ``brainstate.transform.grad`` keys their grads."""
        return self._registry.as_dict()

    # ------------------------------------------------------------------ learning rate
    def _set_lr_source(self, lr) -> None:
        if isinstance(lr, LRScheduler):
            if any(group['lr'] is not None for group in self._groups[1:]):
                raise ValueError("parameter groups have their own float lr; give the LRScheduler a list "
                                 "of base_lr values, one per group, instead")
            if self.schedule_per_update and not _can_step_without_metric(lr):
                raise ValueError(f"{type(lr).__name__} is stepped with a metric; schedule_per_update "
                                 f"cannot step it: call scheduler.step(metric) yourself")
            self._scheduler, self._lr_state = lr, None
            self._base_lr = jnp.asarray(lr.base_lr, dtype=float_dtype())
        else:
            self._groups[0]['lr'] = check_learning_rate(lr)
            self._scheduler = None
            self._reset_lr_state(self._lr_values())

    def _lr_values(self) -> List[float]:
        default = self._groups[0]['lr']
        return [default if group['lr'] is None else group['lr'] for group in self._groups]

    def _reset_lr_state(self, values: List[float]) -> None:
        self._base_lr = jnp.asarray(values, dtype=float_dtype())
        self._lr_state = OptimizerState(jnp.asarray(values, dtype=float_dtype()),
                                        name=f'{type(self).__name__}.lr')

    def _group_lrs(self) -> jax.Array:
        """The learning rate of every group, shape ``(num_groups,)`` (traceable)."""
        if self._scheduler is None:
            return self._lr_state.value
        lr = jnp.asarray(self._scheduler.current_lr, dtype=float_dtype())
        if lr.ndim == 0:
            return jnp.broadcast_to(lr, (self.num_groups,))
        if lr.shape != (self.num_groups,):
            raise ValueError(f"the LRScheduler gives {lr.shape[0]} learning rates but the optimizer has "
                             f"{self.num_groups} parameter groups")
        return lr

    @property
    def lr(self):
        """The attached :class:`LRScheduler`, or the current learning rate (see :attr:`current_lr`)."""
        return self._scheduler if self._scheduler is not None else self.current_lr

    @lr.setter
    def lr(self, value) -> None:
        if isinstance(value, LRScheduler) or self._scheduler is not None:
            # Changing *where* the lr comes from changes the compiled program.
            if self._traced_by_caller:
                raise RuntimeError(
                    "cannot switch between a float learning rate and an LRScheduler after update has "
                    "been traced into a compiled function (it would keep reading the old source); "
                    "attach the scheduler before the first traced update or build a new optimizer")
            self._set_lr_source(value)
            self._compiled_step = None
            return
        self.set_lr(value)

    def set_lr(self, value, group: Optional[int] = None) -> None:
        """Set the float learning rate of every group, or of one ``group``; never re-traces.

        ``value`` may also be a list with one learning rate per group.
        """
        if self._scheduler is not None:
            raise RuntimeError("the learning rate comes from the attached LRScheduler; assign opt.lr a "
                               "new scheduler or float instead")
        current = self._lr_state.value
        if isinstance(value, (list, tuple)):
            if group is not None or len(value) != self.num_groups:
                raise ValueError(f"expected {self.num_groups} learning rates (one per group), got {value!r}")
            new = jnp.asarray([check_learning_rate(v) for v in value], dtype=current.dtype)
        elif group is None:
            new = jnp.full_like(current, check_learning_rate(value))
        else:
            if not 0 <= group < self.num_groups:
                raise IndexError(f"group {group} does not exist; the optimizer has {self.num_groups}")
            new = current.at[group].set(check_learning_rate(value))
        self._lr_state.value = new

    @property
    def current_lr(self) -> jax.Array:
        """The learning rate the next ``update`` applies: a scalar, or one per parameter group."""
        lrs = self._group_lrs()
        return lrs[0] if self.num_groups == 1 else lrs

    @current_lr.setter
    def current_lr(self, value) -> None:
        self.lr = value

    @property
    def lr_scheduler(self) -> Optional[LRScheduler]:
        """The attached scheduler, or ``None`` for a float learning rate."""
        return self._scheduler

    def get_last_lr(self) -> List[jax.Array]:
        """torch-compatible: the current learning rate of each parameter group, as a list."""
        return list(self._group_lrs())

    # ------------------------------------------------------------------ update
    def update(self, grads: Dict[Any, Any]) -> None:
        """Apply one optimizer step with ``grads`` (keyed like :attr:`param_states`).

        Raises (naming the parameter) on a missing or extra key, a shape, dtype
        or unit mismatch, leaving parameters and optimizer state unchanged.
        """
        if not len(self._registry):
            raise RuntimeError(f"{type(self).__name__}.update called before register_trainable_weights")
        grads = self._registry.leaf_grads(grads)      # pytree-valued ParamStates: one entry per leaf
        if _contains_tracer(grads):
            self._traced_by_caller = True
            self._step(grads)
            return
        # Eager call: check cheaply here so errors surface before compiling, then
        # run the cached compiled step (see _eager.py).
        check_gradients(self._registry.keys(), [s.value for s in self._registry.states()], grads)
        if self._compiled_step is None:
            self._compiled_step = EagerStep(self._step, grads, self._donatable_states())
        self._compiled_step(grads)

    def _donatable_states(self) -> List[OptimizerState]:
        """States whose old values an eager step may overwrite in place (its own buffers).

        Not with ``max_consecutive_skips``: its error is raised after the compiled
        step ran, and the donated buffers would be gone with it.
        """
        if self.max_consecutive_skips is not None:
            return []
        return list(self._buffers.values())

    step = update  # braintools / torch spelling

    def _step(self, grads) -> None:
        self._num_traces += 1
        keys = self._registry.keys()
        param_states = self._registry.states()
        groups = self._registry.groups()
        param_values = [state.value for state in param_states]
        target_units = check_gradients(keys, param_values, grads)
        raw_grads = gradient_mantissas(keys, grads, target_units)
        params, units = zip(*[_units.split(value) for value in param_values])
        self._grad_units = dict(zip(keys, target_units))

        grads_for_step, is_real = self._accumulate(raw_grads)
        apply, finite = is_real, None
        if self.skip_nonfinite:
            finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in grads_for_step]))
            apply = finite if is_real is None else is_real & finite

        group_lrs = self._group_lrs()
        count = self.step_count.value + 1
        processed = self._process_gradients(grads_for_step, params, groups)
        old_buffers = {name: state.value for name, state in self._buffers.items()}
        new_params, new_buffers, new_extra = self._compute_updates(
            processed, list(params), groups, group_lrs, count, old_buffers)

        if apply is not None:
            keep = lambda new, old: jnp.where(apply, new, old)
            new_params = [keep(n, o) for n, o in zip(new_params, params)]
            new_buffers = {name: [keep(n, o) for n, o in zip(values, old_buffers[name])]
                           for name, values in new_buffers.items()}
            new_extra = {name: jax.tree.map(keep, value, self._extra_states()[name].value)
                         for name, value in new_extra.items()}
            count = keep(count, count - 1)
        if finite is not None:
            self._count_skips(finite, is_real)

        # Everything is computed: now write.
        for state, value, unit in zip(param_states, new_params, units):
            state.value = _units.merge(value, unit)
        for name, state in self._buffers.items():
            state.value = new_buffers[name]
        extra_states = self._extra_states()
        for name, value in new_extra.items():
            extra_states[name].value = value
        self.step_count.value = count
        if self.schedule_per_update and self._scheduler is not None:
            self._advance_scheduler(apply)

    def _accumulate(self, grads):
        """Gradient accumulation: ``(gradients for this step, traced "is a real step" or None)``."""
        if self._grad_accumulator is None:
            return grads, None
        micro = self.micro_step.value + 1
        summed = [acc + g for acc, g in zip(self._grad_accumulator.value, grads)]
        is_real = micro >= self.accumulate_steps
        # a real step starts the next window from zero
        self._grad_accumulator.value = [jnp.where(is_real, jnp.zeros_like(s), s) for s in summed]
        self.micro_step.value = jnp.where(is_real, 0, micro)
        if self.accumulate_mean:
            summed = [s / self.accumulate_steps for s in summed]
        return summed, is_real

    def _count_skips(self, finite, is_real) -> None:
        """Count skipped real steps; raise (under jit too) after too many in a row."""
        real = jnp.bool_(True) if is_real is None else is_real
        skipped = real & ~finite
        self.nonfinite_skips.value = self.nonfinite_skips.value + skipped.astype(jnp.int32)
        consecutive = self.consecutive_skips.value
        consecutive = jnp.where(real, jnp.where(finite, 0, consecutive + 1), consecutive)
        self.consecutive_skips.value = consecutive
        if self.max_consecutive_skips is not None:
            brainstate.transform.jit_error_if(
                consecutive >= self.max_consecutive_skips,
                f"{type(self).__name__}: {self.max_consecutive_skips} consecutive updates had non-finite "
                f"gradients and were skipped (skip_nonfinite=True, max_consecutive_skips="
                f"{self.max_consecutive_skips}); the training has diverged or the loss produces NaN/Inf")

    def _compute_updates(self, grads, params, groups, group_lrs, count, old_buffers):
        """New parameters and buffers from processed gradients (all mantissas, key order).

        The default runs the rule on each parameter independently, then applies
        decoupled decay and parameter clipping. Algorithms that couple
        parameters (a global statistic, a line search) override this; they may
        keep extra State listed by :meth:`_extra_states` and return its new
        values as the third item ``{name: value}``, which the engine writes
        (and keeps unchanged on a skipped non-finite step).
        """
        rules = self._rules_for_step()
        if self._layout.fused:
            return self._compute_fused_updates(rules, grads, params, group_lrs, count, old_buffers)
        offsets = self._param_step_offsets()
        new_params: List[jax.Array] = []
        new_buffers: Dict[str, List[jax.Array]] = {name: [] for name in old_buffers}
        for i, (grad, param, group) in enumerate(zip(grads, params, groups)):
            buffers = {name: old_buffers[name][i] for name in old_buffers}
            own_count = count - offsets[i] if offsets[i] else count
            delta, updated = rules[group].update(grad, buffers, param, group_lrs[group], own_count)
            new_params.append(self._apply_delta(param, delta, group_lrs, group))
            for name in old_buffers:
                new_buffers[name].append(updated[name])
        return new_params, new_buffers, {}

    def _compute_fused_updates(self, rules, grads, params, group_lrs, count, old_buffers):
        """The element-wise rule once per bucket of the flat layout; same numbers as per parameter."""
        layout = self._layout
        flat_grads = layout.pack(grads)
        flat_params = layout.pack(params)          # dead code unless the rule reads the parameter
        deltas, new_buffers = [], {name: [] for name in old_buffers}
        for b, bucket in enumerate(layout.buckets):
            own_count = count - bucket.step_offset if bucket.step_offset else count
            buffers = {name: old_buffers[name][b] for name in old_buffers}
            delta, updated = rules[bucket.group].update(flat_grads[b], buffers, flat_params[b],
                                                        group_lrs[bucket.group], own_count)
            deltas.append(delta)
            for name in old_buffers:
                new_buffers[name].append(updated[name])
        groups = self._registry.groups()
        new_params = [self._apply_delta(param, delta, group_lrs, group)
                      for param, delta, group in zip(params, layout.scatter(deltas, count), groups)]
        return new_params, new_buffers, {}

    def _param_step_offsets(self) -> List[int]:
        """Per parameter, the step count at its registration (its own count is ``count - offset``)."""
        return [self._step_offsets[id(state)] for state in self._registry.states()]

    def _extra_states(self) -> Dict[str, OptimizerState]:
        """Optimizer State besides the per-parameter buffers (saved in ``state_dict``)."""
        return {}

    def _cycled_momentum(self) -> Optional[jax.Array]:
        """The scheduler's cycled momentum per group (traced), or ``None`` when nothing cycles it."""
        if not cycles_momentum(self._scheduler):
            return None
        momentum = jnp.asarray(self._scheduler.current_momentum, dtype=float_dtype())
        return jnp.broadcast_to(momentum, (self.num_groups,))

    def _rules_for_step(self) -> List[UpdateRule]:
        """One rule per group: the fixed rule, or one fed the scheduler's cycled momentum."""
        momentum = self._cycled_momentum()
        if momentum is None:
            return [self._rule] * self.num_groups
        return [self._rule_with_momentum(momentum[g]) for g in range(self.num_groups)]

    def _group_rules(self, make_rule) -> List[UpdateRule]:
        """One rule per group for ``'in_rule'`` decay: ``make_rule(weight_decay, beta1_or_None)``.

        ``beta1_or_None`` is the scheduler's cycled momentum for that group, or
        ``None`` when nothing cycles it.
        """
        momentum = self._cycled_momentum()
        return [make_rule(group['weight_decay'], None if momentum is None else momentum[g])
                for g, group in enumerate(self._groups)]

    def _rule_with_momentum(self, momentum) -> UpdateRule:
        """The update rule with its momentum (SGD/RMSprop ``momentum``, Adam ``beta1``) replaced.

        Used when an LRScheduler cycles momentum (``cycle_momentum=True``);
        optimizers with a momentum-like hyper-parameter override this.
        """
        raise ValueError(f"the LRScheduler cycles momentum, but {type(self).__name__} has no momentum "
                         f"to cycle; build the scheduler with cycle_momentum=False")

    def _advance_scheduler(self, applied) -> None:
        """``scheduler.step()`` after a real update; skipped or accumulating calls do not count."""
        if applied is None:
            self._scheduler.step()
            return
        states = _scheduler_states(self._scheduler)
        before = [state.value for state in states]
        self._scheduler.step()
        for state, old in zip(states, before):
            state.value = jax.tree.map(lambda new, o: jnp.where(applied, new, o), state.value, old)

    def _process_gradients(self, grads, params, groups) -> List[jax.Array]:
        grads = gp.rescale(grads, self.rescale_grad)
        if self.grad_clip_value is not None:
            grads = gp.clip_by_value(grads, self.grad_clip_value)
        if self.grad_clip_norm is not None:
            grads = gp.clip_by_global_norm(grads, self.grad_clip_norm)
        if self.weight_decay_mode == 'coupled':
            grads = [gp.add_coupled_decay([g], [p], self._groups[group]['weight_decay'])[0]
                     for g, p, group in zip(grads, params, groups)]
        return grads

    def _apply_delta(self, param, delta, group_lrs, group):
        weight_decay = self._groups[group]['weight_decay']
        if self.weight_decay_mode == 'decoupled' and weight_decay != 0.0:
            scale = group_lrs[group]
            if self.decoupled_decay_scale == 'schedule':
                scale = scale / self._base_lr[group] if self._base_lr.ndim else scale / self._base_lr
            new = gp.decoupled_decay(param, scale, weight_decay) + delta
        else:
            new = param + delta
        if self.param_clip_value is not None:
            new = jnp.clip(new, -self.param_clip_value, self.param_clip_value)
        return new

    # ------------------------------------------------------------------ introspection
    def buffers(self) -> Dict[str, Dict[Any, Any]]:
        """Every buffer, ``{buffer_name: {param_key: value}}``, with its physical unit.

        First moments carry the gradient's unit, second moments its square,
        accumulated updates the parameter's unit (see each rule's
        ``buffer_units``). A gradient unit is known once an update has run;
        before that brainstate's default (the parameter's unit) is assumed.
        """
        out: Dict[str, Dict[Any, Any]] = {}
        keys = self._registry.keys()
        for name, state in self._buffers.items():
            grad_power, param_power = self._rule.buffer_units.get(name, (0, 0))
            out[name] = {}
            for key, param_state, value in zip(keys, self._registry.states(), self._buffer_values(name)):
                value = jnp.array(value, copy=True)     # the eager step updates the buffers in place
                param_unit = _units.split(param_state.value)[1]
                grad_unit = self._grad_units.get(key, param_unit)
                out[name][key] = _units.merge(value, _units.power_product(
                    (grad_unit, grad_power), (param_unit, param_power)))
        return out
