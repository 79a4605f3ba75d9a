"""The learning-rate scheduler protocol.

A scheduler is a pure function ``lr_at(epoch)`` of a counter kept in a
brainstate :class:`~brainstate.State`. The optimizer reads ``current_lr``
(= ``lr_at(last_epoch.value)``) *inside* its compiled step, so stepping the
scheduler, eagerly or under ``jit``/``scan``, changes the applied learning
rate without re-tracing anything.

Stepping follows torch and braintools: ``scheduler.step()`` advances the
counter by one and ``scheduler.get_last_lr()`` reads the learning rate it now
gives.

Everything a scheduler needs to remember lives in State (the counter, and for
the few schedulers whose learning rate is not a closed-form function of the
counter, such as :class:`ReduceLROnPlateau`, the extra quantities too), so
``step`` never branches in Python on a value and a jitted training step that
both reads and advances a scheduler is traced once.

Hyper-parameters (the constructor's arguments) are plain attributes. Assigning
one re-validates it and takes effect at once, unless the scheduler has
already been traced into a compiled function it does not own (a jitted
training step, an optimizer's update): that function keeps the old value, so
the assignment raises instead of being silently ignored.

Per-group learning rates: ``base_lr`` may be a list of floats (one per
parameter group, torch's ``param_groups``); ``lr_at`` and ``current_lr`` then
return a 1-D array with one learning rate per group, and ``get_last_lr()`` a
list with one entry per group. A float gives a scalar.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

# Re-exported: the engine and the scheduler modules import these from here.
from ._args import (MAX_EPOCH, _is_sequence, _is_tracer, check_epoch, check_learning_rate,  # noqa: F401
                    finite_float, float_dtype, group_values, initial_epoch, lr_list, positive_int)
from ._state import EpochCounter, StateView, _next_epoch, _SavedState  # noqa: F401

# ---------------------------------------------------------------------------------------- tracing bookkeeping
_LOCAL = threading.local()


@contextlib.contextmanager
def _own_compilation():
    """While a scheduler's own cached compiled copy runs (and maybe traces), uses are not a caller's."""
    _LOCAL.depth = getattr(_LOCAL, 'depth', 0) + 1
    try:
        yield
    finally:
        _LOCAL.depth -= 1


def _in_own_compilation() -> bool:
    return getattr(_LOCAL, 'depth', 0) > 0


#: Attributes that are never copied or pickled: compiled caches and the "traced by a caller" mark.
_TRANSIENT = ('_compiled', '_traced_by_caller', 'optimizer')


class LRScheduler:
    """Base class: a learning rate that is a pure function of a step counter in State.

    Subclasses declare their hyper-parameters as constructor arguments, pass
    them to ``self._setup(base_lr, last_epoch, **hyper)`` and implement
    :meth:`_configure` (validate them all; return the attributes to set) and
    :meth:`_formula` (a traceable function of an int32 epoch). Everything else
    (the counter, ``step``, ``current_lr``, ``get_last_lr``, ``state_dict``,
    braintools' introspection) is here.

    Subclasses that keep more State than the counter create it in
    :meth:`_init_states`, list it in :meth:`_extra_states` (it is then saved and
    restored by ``state_dict`` / ``load_state_dict``) and override
    :meth:`_set_epoch` when moving the counter must update it.

    Args:
        base_lr: the learning rate the schedule starts from and scales; a list
            of floats gives one learning rate per parameter group.
        last_epoch: the counter's initial value (0: before the first ``step``;
            torch's ``-1`` means the same).
    """

    #: Whether ``step`` needs a metric (``ReduceLROnPlateau``): such a scheduler cannot be stepped for you.
    needs_metric = False
    #: Subclasses whose ``_set_epoch`` is more than one assignment run it compiled when stepped eagerly.
    _compile_eager_step = False
    #: Constructor arguments that are not hyper-parameters (not reassignable).
    _not_hyper = ('self', 'last_epoch', 'schedulers', 'optimizer')
    _hyper_cache: Dict[type, Tuple[str, ...]] = {}

    def __init__(self, base_lr: Any = 1e-3, last_epoch: int = 0):
        self._setup(base_lr, last_epoch)

    def _setup(self, base_lr, last_epoch, **hyper) -> None:
        """What a subclass's ``__init__`` calls: check the hyper-parameters, set them, create the State."""
        object.__setattr__(self, '_ready', False)
        self.optimizer = None
        self._version = 0
        self._apply_used = False
        self._apply_config(self._configure(base_lr=base_lr, **hyper))
        self.last_epoch = EpochCounter(jnp.asarray(initial_epoch(last_epoch), jnp.int32),
                                       name=f'{type(self).__name__}.last_epoch')
        shape = jnp.shape(self._base())
        self._applied_epoch = brainstate.LongTermState(jnp.asarray(-1, jnp.int32),
                                                       name=f'{type(self).__name__}.applied_epoch')
        self._applied_lr = brainstate.LongTermState(jnp.zeros(shape, float_dtype()),
                                                    name=f'{type(self).__name__}.applied_lr')
        self._init_states()
        self._ready = True

    # ------------------------------------------------------------------ hyper-parameters
    @classmethod
    def hyperparameter_names(cls) -> Tuple[str, ...]:
        """The reassignable hyper-parameters: the constructor's arguments except ``last_epoch`` (and children)."""
        names = LRScheduler._hyper_cache.get(cls)
        if names is None:
            accepted = {p.name for p in inspect.signature(cls._configure).parameters.values()
                        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)}
            parameters = inspect.signature(cls.__init__).parameters.values()
            names = tuple(p.name for p in parameters if p.name in accepted and p.name not in cls._not_hyper)
            LRScheduler._hyper_cache[cls] = names
        return names

    def _configure(self, base_lr, **hyper) -> Dict[str, Any]:
        """Validate every hyper-parameter; return the attributes to set (nothing is set here).

        Subclasses extend it: ``attrs = super()._configure(base_lr)``, then add
        their own checked values (under their public names) and any derived
        private values. It must accept its own output's public values again.
        """
        if hyper:
            raise TypeError(f"{type(self).__name__} got unexpected hyper-parameters {sorted(hyper)}")
        base_lrs, per_group = lr_list(base_lr, 'base_lr')
        return {'base_lrs': base_lrs, '_per_group': per_group,
                'base_lr': list(base_lrs) if per_group else base_lrs[0]}

    def _current_config(self) -> Dict[str, Any]:
        """The current hyper-parameters, as ``_configure`` accepts them."""
        return {name: self.__dict__[name] for name in self.hyperparameter_names()}

    def _apply_config(self, attrs: Dict[str, Any]) -> None:
        for name, value in attrs.items():
            object.__setattr__(self, name, value)

    def _init_states(self) -> None:
        """Create the State besides the counter (subclasses); the hyper-parameters are set already."""

    def _on_reconfigure(self) -> None:
        """Bring State that depends on the hyper-parameters up to date after a reassignment (subclasses)."""

    def __setattr__(self, name: str, value) -> None:
        if self.__dict__.get('_ready'):
            if name in ('base_lr', 'base_lrs'):
                if 'base_lr' not in self.hyperparameter_names():
                    raise AttributeError(f"{type(self).__name__}.{name} is derived from its other arguments "
                                         f"and cannot be assigned")
                if name == 'base_lrs' and not self.per_group and _is_sequence(value) and len(value) == 1:
                    value = value[0]           # braintools' base_lrs is always a list
                self.reconfigure(base_lr=value)
                return
            if name in self.hyperparameter_names():
                self.reconfigure(**{name: value})
                return
            if name in ('schedulers', 'last_epoch') or name in self._extra_states() or name in (
                    '_applied_epoch', '_applied_lr'):
                raise AttributeError(f"{type(self).__name__}.{name} cannot be replaced; "
                                     f"{'assign its .value' if name != 'schedulers' else 'build a new scheduler'}")
            if not name.startswith('_') and name != 'optimizer':
                # another public attribute (a custom subclass's setting): our compiled copies may hold it
                self._version += 1
                self.__dict__.pop('_compiled', None)
        object.__setattr__(self, name, value)

    def reconfigure(self, **changes) -> None:
        """Change hyper-parameters (``sched.gamma = 0.5`` calls this): checked, then in effect at once.

        Raises (changing nothing) when a value is invalid, when the number of
        parameter groups would change, or when the scheduler has been traced
        into a compiled function it does not own (a jitted training step, an
        optimizer's update): that function would keep using the old values.
        """
        unknown = sorted(set(changes) - set(self.hyperparameter_names()))
        if unknown:
            raise AttributeError(f"{type(self).__name__} has no hyper-parameter(s) {unknown}; "
                                 f"it has {list(self.hyperparameter_names())}")
        if self._traced_by_caller_any():
            raise RuntimeError(
                f"cannot change {type(self).__name__}.{', '.join(sorted(changes))}: this scheduler has been "
                f"traced into a compiled function (a jitted step, or an optimizer's update), which would "
                f"keep using the old value. Set hyper-parameters before the first compiled use, or build a "
                f"new scheduler (and attach it: opt.lr = new_scheduler).")
        config = dict(self._current_config(), **changes)
        attrs = self._configure(**config)
        if 'base_lrs' in attrs and (len(attrs['base_lrs']), attrs['_per_group']) != (self.num_groups,
                                                                                     self.per_group):
            raise ValueError(f"{type(self).__name__}: the number of parameter groups cannot change "
                             f"({self.base_lr!r} -> {attrs['base_lr']!r}); build a new scheduler")
        with self._transaction():
            self._apply_config(attrs)
            self._version += 1
            self.__dict__.pop('_compiled', None)
            self._on_reconfigure()

    # ------------------------------------------------------------------ groups
    @property
    def num_groups(self) -> int:
        """The number of parameter groups (1 for a float ``base_lr``)."""
        return len(self.base_lrs)

    @property
    def per_group(self) -> bool:
        """Whether learning rates are 1-D arrays (``base_lr`` was a list)."""
        return self._per_group

    def _groups(self, values: Sequence[float]) -> jax.Array:
        """A per-group list of floats as an array shaped like the learning rate."""
        array = jnp.asarray(list(values), dtype=float_dtype())
        return array if self._per_group else array[0]

    def _base(self) -> jax.Array:
        """``base_lr`` as an array shaped like the learning rate."""
        return self._groups(self.base_lrs)

    def _children(self) -> List['LRScheduler']:
        return list(self.__dict__.get('schedulers', ()))

    def _tree(self) -> List['LRScheduler']:
        """This scheduler and every descendant (composites)."""
        out, pending = [], [self]
        while pending:
            current = pending.pop()
            out.append(current)
            pending.extend(current._children())
        return out

    # ------------------------------------------------------------------ schedule
    def _formula(self, epoch: jax.Array) -> jax.Array:
        """The learning rate after ``epoch`` steps (traceable; ``epoch`` is an int32 array)."""
        raise NotImplementedError(
            f"{type(self).__name__} defines no _formula(epoch), so its learning rate at an arbitrary epoch is "
            f"unknown; current_lr / get_lr() read the State")

    def lr_at(self, epoch) -> jax.Array:
        """The learning rate after ``epoch`` calls of :meth:`step` (pure, traceable; changes no State)."""
        out = self._formula(jnp.asarray(epoch, jnp.int32))
        self._note_use(out)
        return out

    def _evaluate(self, epoch: jax.Array) -> jax.Array:
        if epoch.ndim == 0:
            return jnp.asarray(self.lr_at(epoch), dtype=float_dtype())
        flat = jax.vmap(lambda e: jnp.asarray(self.lr_at(e), dtype=float_dtype()))(epoch.reshape(-1))
        return flat.reshape(epoch.shape + flat.shape[1:])

    def __call__(self, epoch) -> jax.Array:
        """optax-style: the learning rate at ``epoch`` (does not change state).

        ``epoch`` may be an array of epochs; the result then has the epochs
        along its first axis. Called with a concrete epoch outside a trace it
        runs a compiled copy of :meth:`lr_at` (cached on the scheduler).

        braintools' ``LRScheduler.__call__(count)`` instead returns the *negated*
        current learning rate (its optax-chain convention); this one is a
        schedule function, like every optax schedule.
        """
        epoch = jnp.asarray(epoch, jnp.int32)
        if _is_tracer(epoch):
            return self._evaluate(epoch)
        return self._run_compiled('_evaluate', epoch)

    @property
    def current_lr(self) -> jax.Array:
        """The learning rate the next optimizer update applies (read from State; traceable)."""
        return self._run_compiled('_lr_now')

    def _lr_from_state(self) -> jax.Array:
        """The schedule's learning rate at the counter, as traceable code reading State (subclasses override)."""
        if type(self).get_lr is not LRScheduler.get_lr:
            # a braintools-style subclass: its get_lr() computes the lrs from self.last_epoch.value
            return self._groups_array(self.get_lr())
        return self._evaluate(jnp.asarray(self.last_epoch.value, jnp.int32))

    def _groups_array(self, values) -> jax.Array:
        values = list(values) if isinstance(values, (list, tuple)) else [values]
        if len(values) != self.num_groups:
            raise ValueError(f"{type(self).__name__}.get_lr() returned {len(values)} learning rate(s) for "
                             f"{self.num_groups} group(s)")
        array = jnp.stack([jnp.asarray(v, float_dtype()).reshape(()) for v in values])
        return array if self._per_group else array[0]

    def _lr_now(self) -> jax.Array:
        """``current_lr``: the schedule's value, or what :meth:`apply` set for the current epoch."""
        lr = jnp.asarray(self._lr_from_state(), float_dtype())
        if not self._apply_used:          # the override's State is read only once apply() has been used
            return lr
        applied = self._applied_epoch.value == self.last_epoch.value
        return jnp.where(applied, self._applied_lr.value.astype(lr.dtype), lr)

    # ------------------------------------------------------------------ braintools introspection
    def get_lr(self) -> List[jax.Array]:
        """braintools: the schedule's learning rates at the current epoch, one per group (list)."""
        return self._as_list(self._run_compiled('_lr_from_state'))

    def get_last_lr(self) -> List[jax.Array]:
        """torch / braintools: the current learning rate, one entry per parameter group (list)."""
        return self._as_list(self.current_lr)

    @staticmethod
    def _as_list(lr) -> List[jax.Array]:
        return list(lr) if jnp.ndim(lr) else [lr]

    @property
    def current_lrs(self) -> StateView:
        """braintools: ``current_lrs.value`` is the list of current learning rates (one per group).

        Computed from State, so it is right eagerly and traced inside ``jit``.
        Assigning ``current_lrs.value = [...]`` overrides the learning rate
        until the next ``step`` (as :meth:`apply` does).
        """
        return StateView('current_lrs', self.get_last_lr, self._override)

    def apply(self, apply_fn: Callable[[Any], Any]) -> None:
        """braintools: set the learning rate to ``apply_fn(lr)`` (per group) until the next ``step``.

        The schedule itself is unchanged: the next ``step()`` moves on to the
        scheduled value. Traceable when ``apply_fn`` is.
        """
        self._override([apply_fn(lr) for lr in self.get_lr()])

    def _override(self, values) -> None:
        values = list(values) if _is_sequence(values) or (jnp.ndim(values) == 1) else [values]
        if len(values) != self.num_groups:
            raise ValueError(f"{type(self).__name__}: expected {self.num_groups} learning rate(s), got {len(values)}")
        for value in values:
            check_learning_rate(np.asarray(value) if not _is_tracer(value) else value, 'learning rate')
        if not self._apply_used:
            if self._traced_by_caller_any():
                raise RuntimeError(
                    f"{type(self).__name__}.apply() / current_lrs assignment: this scheduler has already been "
                    f"traced into a compiled function (a jitted step, or an optimizer's update) that does not "
                    f"read an override; use apply() once before the first compiled use (it then works "
                    f"everywhere), or build a new scheduler")
            object.__setattr__(self, '_apply_used', True)
            self._version += 1                 # our own compiled copies did not read the override either
            self.__dict__.pop('_compiled', None)
        lr = jnp.stack([jnp.asarray(v, float_dtype()) for v in values])
        self._applied_lr.value = lr if self._per_group else lr[0]
        self._applied_epoch.value = jnp.asarray(self.last_epoch.value, jnp.int32)

    def step_epoch(self) -> None:
        """braintools: the same as :meth:`step`."""
        self.step()

    def attach_optimizer(self, optimizer) -> None:
        """braintools: make ``optimizer`` take its learning rate from this scheduler (``optimizer.lr = self``)."""
        from .. import Optimizer
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"attach_optimizer expects a braintools_optim Optimizer (braintools: an "
                            f"OptaxOptimizer), got {type(optimizer).__name__}")
        optimizer.lr = self
        self.optimizer = optimizer

    # ------------------------------------------------------------------ compiled copies and tracing
    def _is_traced(self) -> bool:
        """Whether we are inside a brainstate trace (jit / for_loop): State values are tracers then."""
        return _is_tracer(self.last_epoch.value)

    def _note_use(self, value) -> None:
        """A traced result outside our own compiled copies: a caller's compiled function now holds our constants."""
        if not _in_own_compilation() and any(_is_tracer(leaf) for leaf in jax.tree.leaves(value)):
            for scheduler in self._tree():
                object.__setattr__(scheduler, '_traced_by_caller', True)

    def _traced_by_caller_any(self) -> bool:
        return any(s.__dict__.get('_traced_by_caller', False) for s in self._tree())

    def _config_token(self) -> Tuple:
        return tuple((id(s), s._version) for s in self._tree())

    def _run_compiled(self, method: str, *args):
        """Call ``self.<method>(*args)`` inline when traced; eagerly, through a cached compiled copy.

        The compiled copy (``brainstate.transform.jit``, which tracks the State
        it reads and writes) is built once per scheduler, method and
        hyper-parameter version, so eager use costs one compilation instead of
        an op-by-op dispatch per call; reassigning a hyper-parameter of this
        scheduler or of a child drops it.
        """
        function = getattr(self, method)
        if self._is_traced() or any(_is_tracer(a) for a in jax.tree.leaves(args)):
            out = function(*args)
            self._note_use(out if out is not None else self.last_epoch.value)
            return out
        cache = self.__dict__.get('_compiled')
        if cache is None:
            cache = {}
            object.__setattr__(self, '_compiled', cache)
        token = self._config_token()
        entry = cache.get(method)
        if entry is None or entry[0] != token:
            entry = cache[method] = (token, brainstate.transform.jit(function))
        with _own_compilation():
            return entry[1](*args)

    # ------------------------------------------------------------------ stepping
    def step(self, epoch: Optional[int] = None) -> None:
        """Advance the schedule by one epoch (or step). Works eagerly and under jit/scan.

        ``step(epoch)`` (deprecated in torch, kept for braintools) jumps to
        ``epoch`` instead (a concrete one must be in ``[0, 2**31 - 1]``). The
        counter saturates at ``2**31 - 1`` rather than wrapping.
        """
        if epoch is not None and not _is_tracer(epoch):
            epoch = jnp.asarray(check_epoch(epoch), jnp.int32)
        if self._compile_eager_step:
            if epoch is None:
                self._run_compiled('_advance')
            else:
                self._run_compiled('_set_epoch', epoch)
        else:
            self._advance() if epoch is None else self._set_epoch(epoch)
            self._note_use(self.last_epoch.value)

    def _advance(self) -> None:
        self._set_epoch(_next_epoch(jnp.asarray(self.last_epoch.value, jnp.int32)))

    def _set_epoch(self, epoch) -> None:
        """Move the counter to ``epoch`` (a traced int32 is fine); composites propagate it."""
        self.last_epoch.value = jnp.asarray(epoch, dtype=jnp.int32)

    # ------------------------------------------------------------------ checkpoints
    def _extra_states(self) -> Dict[str, brainstate.State]:
        """State besides ``last_epoch`` that ``state_dict`` must save (by key)."""
        return {}

    def _states(self) -> Dict[str, brainstate.State]:
        return {'last_epoch': self.last_epoch, **self._extra_states()}

    #: state_dict entries that are learning rates (checked finite and >= 0 on load).
    _lr_keys = ('base_lrs', 'current_lrs')

    def _derived_entries(self) -> Dict[str, Any]:
        """Entries braintools' state_dict has that are derived here (saved for readers, checked on load)."""
        return {'base_lrs': list(self.base_lrs), 'current_lrs': [_plain(v, float) for v in self.get_last_lr()]}

    def state_dict(self) -> dict:
        """Every piece of this scheduler's State, as a plain dict (arrays and lists).

        Keys: ``'last_epoch'`` and the scheduler's own State, plus braintools'
        ``'base_lrs'`` and ``'current_lrs'`` (lists of floats, for readers).
        """
        return {**{key: state.value for key, state in self._states().items()}, **self._derived_entries()}

    def _check_state_dict(self, state: dict) -> Dict[str, Any]:
        """Validate ``state`` against this scheduler; return the arrays to write (nothing written)."""
        name = type(self).__name__
        if not isinstance(state, dict):
            raise TypeError(f"{name}.load_state_dict expects a dict, got {type(state).__name__}")
        states = self._states()
        missing = sorted(set(states) - set(state))
        if missing:
            raise ValueError(f"{name} state_dict is missing {missing}")
        values = {}
        for key, target in states.items():
            values[key] = self._checked_entry(key, state[key], target.value)
        for key in self._lr_keys:
            if key in state and state[key] is not None:
                entry = np.asarray(state[key], np.float64)
                if entry.shape != (self.num_groups,) and not (entry.ndim == 0 and self.num_groups == 1):
                    raise ValueError(f"{name} state_dict[{key!r}] has {entry.size} value(s), expected "
                                     f"{self.num_groups} (one per parameter group)")
                if not np.all(np.isfinite(entry)) or np.any(entry < 0):
                    raise ValueError(f"{name} state_dict[{key!r}] must hold finite learning rates >= 0, "
                                     f"got {entry.tolist()}")
        return values

    def _checked_entry(self, key: str, value, current) -> jax.Array:
        """One State entry of a state_dict, checked against the State it is loaded into."""
        name = type(self).__name__
        if any(_is_tracer(leaf) for leaf in jax.tree.leaves(value)):
            raise TypeError(f"{name}.load_state_dict got a traced value for {key!r}; load checkpoints eagerly")
        current = jnp.asarray(current)
        array = np.asarray(value)
        if array.shape != current.shape:
            raise ValueError(f"{name} state_dict[{key!r}] has shape {array.shape}, expected {current.shape}")
        if jnp.issubdtype(current.dtype, jnp.integer):
            if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(
                    array.dtype, np.floating)):
                raise TypeError(f"{name} state_dict[{key!r}] must be an integer, got dtype {array.dtype}")
            if not np.all(np.isfinite(array)) or np.any(array != np.round(array)) or np.any(array < 0) \
                    or np.any(array > MAX_EPOCH):
                raise ValueError(f"{name} state_dict[{key!r}] must hold integers in [0, {MAX_EPOCH}] (int32 "
                                 f"counters are refused, never wrapped), got {array.tolist()}")
            return jnp.asarray(array.astype(np.int64), current.dtype)
        if np.any(np.isnan(array)):
            raise ValueError(f"{name} state_dict[{key!r}] contains NaN")
        return jnp.asarray(array, current.dtype)

    def _write_state(self, values: Dict[str, Any]) -> None:
        states = self._states()
        for key, value in values.items():
            states[key].value = value

    def _adopt_config(self, state: dict) -> Dict[str, Any]:
        """Hyper-parameters a state_dict carries that differ from ours (braintools' ``base_lrs``)."""
        changes = {}
        if 'base_lrs' in state and state['base_lrs'] is not None and 'base_lr' in self.hyperparameter_names():
            saved = [float(v) for v in np.asarray(state['base_lrs'], np.float64).reshape(-1)]
            if saved != [float(v) for v in self.base_lrs]:
                changes['base_lr'] = saved if self.per_group else saved[0]
        return changes

    def _check_derived(self, state: dict) -> None:
        """After loading: derived entries the dict carries must agree with what the State now gives."""
        if 'base_lrs' in state and state['base_lrs'] is not None:
            saved = np.asarray(state['base_lrs'], np.float64).reshape(-1)
            if not np.allclose(saved, self.base_lrs, rtol=1e-6, atol=0):
                raise ValueError(f"{type(self).__name__} state_dict['base_lrs'] = {saved.tolist()} does not match "
                                 f"this scheduler's {self.base_lrs} (they follow from its other arguments)")

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore :meth:`state_dict` output (ours, or braintools' keys); raises, changing nothing, if it does not fit.

        Counters must be integers in ``[0, 2**31 - 1]`` (never wrapped into
        int32), learning rates finite and ``>= 0``, shapes must match. A saved
        ``'base_lrs'`` that differs from this scheduler's is adopted (as torch
        and braintools do); a saved ``'current_lrs'`` that differs from the
        schedule's value at the saved epoch is restored as an :meth:`apply`
        override.
        """
        values = self._check_state_dict(state_dict)
        with self._transaction():
            self._load_checked(state_dict, values)

    def _load_checked(self, state: dict, values: Dict[str, Any]) -> None:
        changes = self._adopt_config(state)
        if changes:
            self.reconfigure(**changes)
        self._write_state(values)
        self._check_derived(state)
        self._restore_current_lrs(state)

    def _restore_current_lrs(self, state: dict) -> None:
        saved = state.get('current_lrs')
        if saved is None:
            self._applied_epoch.value = jnp.asarray(-1, jnp.int32)
            return
        saved = np.asarray(saved, np.float64).reshape(-1)
        computed = np.asarray(self._run_compiled('_lr_from_state'), np.float64).reshape(-1)
        tolerance = 4 * np.finfo(np.dtype(float_dtype())).eps
        if np.allclose(saved, computed, rtol=tolerance, atol=0):
            self._applied_epoch.value = jnp.asarray(-1, jnp.int32)
        else:
            self._override(list(saved))

    @contextlib.contextmanager
    def _transaction(self):
        """All or nothing: on an exception, restore every attribute and State value of this tree."""
        tree = self._tree()
        attributes = [dict(s.__dict__) for s in tree]
        values = [{k: st.value for k, st in s._all_states().items()} for s in tree]
        try:
            yield
        except BaseException:
            for scheduler, saved_attributes, saved_values in zip(tree, attributes, values):
                scheduler.__dict__.clear()
                scheduler.__dict__.update(saved_attributes)
                for key, state in scheduler._all_states().items():
                    state.value = saved_values[key]
            raise

    def _all_states(self) -> Dict[str, brainstate.State]:
        return {**self._states(), 'applied_epoch': self._applied_epoch, 'applied_lr': self._applied_lr}

    # ------------------------------------------------------------------ copies, pickling, repr
    def __getstate__(self) -> dict:
        out = {}
        for key, value in self.__dict__.items():
            if key in _TRANSIENT:
                continue
            out[key] = _SavedState(value) if isinstance(value, brainstate.State) else value
        return out

    def __setstate__(self, saved: dict) -> None:
        for key, value in saved.items():
            object.__setattr__(self, key, value.restore() if isinstance(value, _SavedState) else value)
        object.__setattr__(self, 'optimizer', None)

    def _repr_value(self, value) -> str:
        if callable(value) and not isinstance(value, LRScheduler):
            return getattr(value, '__name__', type(value).__name__)
        if isinstance(value, (list, tuple)) and len(value) > 4:
            return f"[{', '.join(repr(v) for v in value[:3])}, ... ({len(value)})]"
        if isinstance(value, float):
            return _short_float(value)
        return repr(value)

    def __repr__(self) -> str:
        parameters = inspect.signature(type(self).__init__).parameters
        parts = []
        for name in self.hyperparameter_names():
            value = self.__dict__.get(name)
            default = parameters[name].default if name in parameters else inspect.Parameter.empty
            if name == 'base_lr' or default is inspect.Parameter.empty or not _same(value, default):
                parts.append(f"{name}={self._repr_value(value)}")
        children = self._children()
        if children:
            parts.insert(0, f"schedulers=[{', '.join(type(c).__name__ for c in children)}]")
        epoch = self.last_epoch.value
        parts.append(f"last_epoch={'<traced>' if _is_tracer(epoch) else int(epoch)}")
        parts.extend(self._repr_state())
        return f"{type(self).__name__}({', '.join(parts)})"

    def _repr_state(self) -> List[str]:
        """State worth showing besides the counter (where the counter does not determine the lr)."""
        return []


def _short_float(value: float) -> str:
    """A float in at most 6 significant digits that still reads as a float (``1.0``, not ``1``)."""
    text = f"{value:.6g}"
    return text if any(c in text for c in '.ena') else text + '.0'


def _plain(value, kind):
    """A concrete scalar as a Python ``kind`` (state_dict entries for readers); a traced one as it is."""
    return value if _is_tracer(value) else kind(value)


def _same(value, default) -> bool:
    try:
        return bool(value == default) or (isinstance(default, tuple) and list(default) == value)
    except Exception:  # noqa: BLE001 - arrays and the like: show them
        return False


class StepLR(LRScheduler):
    r"""Decay by ``gamma`` every ``step_size`` epochs: :math:`\eta_e = \eta_0\,\gamma^{\lfloor e/s \rfloor}`.

    Matches ``torch.optim.lr_scheduler.StepLR`` (and braintools' ``StepLR``).

    Args:
        base_lr: initial learning rate (float, or list of floats per group).
        step_size: period of the decay, in epochs (braintools' default 30).
        gamma: multiplicative decay factor.
        last_epoch: initial value of the counter.

    >>> sched = StepLR(base_lr=0.1, step_size=2, gamma=0.5)
    >>> lrs = []
    >>> for _ in range(5):
    ...     lrs.append(round(float(sched.current_lr), 6)); sched.step()
    >>> lrs
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    def __init__(self, base_lr: Any = 1e-3, step_size: int = 30, gamma: float = 0.1, last_epoch: int = 0):
        self._setup(base_lr, last_epoch, step_size=step_size, gamma=gamma)

    def _configure(self, base_lr, step_size, gamma):
        return dict(super()._configure(base_lr), step_size=positive_int(step_size, 'step_size'),
                    gamma=finite_float(gamma, 'gamma'))

    def _formula(self, epoch):
        exponent = (epoch // self.step_size).astype(float_dtype())
        return self._base() * jnp.power(jnp.asarray(self.gamma, float_dtype()), exponent)
