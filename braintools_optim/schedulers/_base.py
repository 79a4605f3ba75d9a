"""The learning-rate scheduler protocol.

A scheduler is a pure function ``lr_at(epoch)`` of a counter kept in a
brainstate :class:`~brainstate.State`. The optimizer reads ``current_lr``
(= ``lr_at(last_epoch.value)``) *inside* its compiled step, so stepping the
scheduler, eagerly or under ``jit``/``scan``, changes the applied learning
rate without re-tracing anything.

Stepping follows torch: ``scheduler.step()`` advances the counter by one and
``scheduler.get_last_lr()`` reads the learning rate it now gives.

Everything a scheduler needs to remember lives in State (the counter, and for
the few schedulers whose learning rate is not a closed-form function of the
counter, such as :class:`ReduceLROnPlateau`, the extra quantities too), so
``step`` never branches in Python on a value and a jitted training step that
both reads and advances a scheduler is traced once.

Per-group learning rates: ``base_lr`` may be a list of floats (one per
parameter group, torch's ``param_groups``); ``lr_at`` and ``current_lr`` then
return a 1-D array with one learning rate per group, and ``get_last_lr()`` a
list with one entry per group. A float gives a scalar.
"""

from __future__ import annotations

import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

import brainstate
import jax
import jax.numpy as jnp
import numpy as np


def float_dtype():
    """The default float dtype: float64 under ``jax_enable_x64``, else float32."""
    return jnp.result_type(float)


def check_learning_rate(value, what: str = 'lr') -> float:
    """Reject negative, NaN and infinite learning rates with a clear error."""
    if isinstance(value, jax.core.Tracer):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{what} must be a float or an LRScheduler, got {value!r}") from None
    if not math.isfinite(number) or number < 0.0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return number


def _is_sequence(value) -> bool:
    return isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1)


def lr_list(value, what: str) -> Tuple[List[float], bool]:
    """``(list of checked floats, is_per_group)`` for a float or a list of floats."""
    if _is_sequence(value):
        values = [check_learning_rate(v, what) for v in value]
        if not values:
            raise ValueError(f"{what} must not be an empty list")
        return values, True
    return [check_learning_rate(value, what)], False


def group_values(value, n_groups: int, what: str, check=None) -> List[float]:
    """Broadcast a float, or check a list, to ``n_groups`` floats."""
    if _is_sequence(value):
        values = [float(v) for v in value]
        if len(values) != n_groups:
            raise ValueError(f"{what} has {len(values)} entries, but there are {n_groups} parameter groups")
    else:
        values = [float(value)] * n_groups
    if check is not None:
        for v in values:
            check(v)
    return values


def positive_int(value, what: str, allow_zero: bool = False) -> int:
    """Check a (non-negative / positive) integer argument."""
    if isinstance(value, bool) or int(value) != value:
        raise TypeError(f"{what} must be an integer, got {value!r}")
    value = int(value)
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{what} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value}")
    return value


class LRScheduler:
    """Base class: a learning rate that is a pure function of a step counter in State.

    Subclasses implement :meth:`lr_at`, a traceable function of an integer
    array. Everything else (the counter, ``step``, ``current_lr``,
    ``get_last_lr``, ``state_dict``) is here.

    Subclasses that keep more State than the counter list it in
    :meth:`_extra_states` (it is then saved and restored by ``state_dict`` /
    ``load_state_dict``) and override :meth:`_set_epoch` when moving the
    counter must update it.

    Args:
        base_lr: the learning rate the schedule starts from and scales; a list
            of floats gives one learning rate per parameter group.
        last_epoch: the counter's initial value (0: before the first ``step``).
    """

    #: Whether ``step`` needs a metric (``ReduceLROnPlateau``): such a scheduler cannot be stepped for you.
    needs_metric = False

    def __init__(self, base_lr: Any = 1e-3, last_epoch: int = 0):
        self.base_lrs, self._per_group = lr_list(base_lr, 'base_lr')
        self.base_lr = list(self.base_lrs) if self._per_group else self.base_lrs[0]
        if isinstance(last_epoch, bool) or int(last_epoch) != last_epoch:
            raise TypeError(f"last_epoch must be an integer, got {last_epoch!r}")
        self.last_epoch = brainstate.LongTermState(
            jnp.asarray(int(last_epoch), dtype=jnp.int32), name=f'{type(self).__name__}.last_epoch')

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

    # ------------------------------------------------------------------ schedule
    def lr_at(self, epoch: jax.Array) -> jax.Array:
        """The learning rate after ``epoch`` calls of :meth:`step` (traceable)."""
        raise NotImplementedError

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
        """
        epoch = jnp.asarray(epoch, jnp.int32)
        if isinstance(epoch, jax.core.Tracer):
            return self._evaluate(epoch)
        compiled = self.__dict__.get('_compiled_evaluate')
        if compiled is None:
            compiled = self.__dict__['_compiled_evaluate'] = jax.jit(self._evaluate)
        return compiled(epoch)

    @property
    def current_lr(self) -> jax.Array:
        """The learning rate the next optimizer update applies (read from State; traceable)."""
        return self._run_compiled('_lr_from_state')

    def _lr_from_state(self) -> jax.Array:
        """``current_lr`` as traceable code that reads this scheduler's State (subclasses override)."""
        return self._evaluate(jnp.asarray(self.last_epoch.value, jnp.int32))

    # ------------------------------------------------------------------ stepping
    #: Subclasses whose ``_set_epoch`` is more than one assignment run it compiled when stepped eagerly.
    _compile_eager_step = False

    def _is_traced(self) -> bool:
        """Whether we are inside a brainstate trace (jit / for_loop): State values are tracers then."""
        return isinstance(self.last_epoch.value, jax.core.Tracer)

    def _run_compiled(self, method: str, *args):
        """Call ``self.<method>(*args)`` inline when traced; eagerly, through a cached compiled copy.

        The compiled copy (``brainstate.transform.jit``, which tracks the State
        it reads and writes) is built once per scheduler and method, so eager
        use costs one compilation instead of an op-by-op dispatch per call.
        """
        function = getattr(self, method)
        if self._is_traced() or any(isinstance(a, jax.core.Tracer) for a in jax.tree.leaves(args)):
            return function(*args)
        cache = self.__dict__.setdefault('_compiled_methods', {})
        if method not in cache:
            cache[method] = brainstate.transform.jit(function)
        return cache[method](*args)

    def step(self, epoch: Optional[int] = None) -> None:
        """Advance the schedule by one epoch (or step). Works eagerly and under jit/scan.

        ``step(epoch)`` (deprecated in torch, kept for braintools) jumps to
        ``epoch`` instead.
        """
        target = self.last_epoch.value + 1 if epoch is None else jnp.asarray(epoch, jnp.int32)
        if self._compile_eager_step:
            self._run_compiled('_set_epoch', target)
        else:
            self._set_epoch(target)

    def _set_epoch(self, epoch) -> None:
        """Move the counter to ``epoch`` (a traced int32 is fine); composites propagate it."""
        self.last_epoch.value = jnp.asarray(epoch, dtype=jnp.int32)

    def get_last_lr(self) -> List:
        """torch-compatible: the current learning rate, one entry per parameter group."""
        lr = self.current_lr
        return list(lr) if jnp.ndim(lr) else [lr]

    # ------------------------------------------------------------------ checkpoints
    def _extra_states(self) -> Dict[str, brainstate.State]:
        """State besides ``last_epoch`` that ``state_dict`` must save (by key)."""
        return {}

    def _states(self) -> Dict[str, brainstate.State]:
        return {'last_epoch': self.last_epoch, **self._extra_states()}

    def state_dict(self) -> dict:
        """Every piece of this scheduler's State, as a plain dict of arrays."""
        return {key: state.value for key, state in self._states().items()}

    def _check_state_dict(self, state: dict) -> Dict[str, jax.Array]:
        """Validate ``state`` against this scheduler; return the arrays to write (nothing written)."""
        if not isinstance(state, dict):
            raise TypeError(f"{type(self).__name__}.load_state_dict expects a dict, got {type(state).__name__}")
        states = self._states()
        missing = sorted(set(states) - set(state))
        if missing:
            raise ValueError(f"{type(self).__name__} state_dict is missing {missing}")
        values = {}
        for key, target in states.items():
            current = jnp.asarray(target.value)
            array = jnp.asarray(state[key], dtype=current.dtype)
            if array.shape != current.shape:
                raise ValueError(f"{type(self).__name__} state_dict[{key!r}] has shape {array.shape}, "
                                 f"expected {current.shape}")
            values[key] = array
        return values

    def _write_state(self, values: Dict[str, jax.Array]) -> None:
        states = self._states()
        for key, value in values.items():
            states[key].value = value

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict` output; raises (changing nothing) if it does not fit."""
        self._write_state(self._check_state_dict(state))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(base_lr={self.base_lr!r})"


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
        step_size = positive_int(step_size, 'step_size')
        super().__init__(base_lr, last_epoch)
        self.step_size = step_size
        self.gamma = float(gamma)

    def lr_at(self, epoch):
        exponent = (epoch // self.step_size).astype(float_dtype())
        return self._base() * jnp.power(jnp.asarray(self.gamma, float_dtype()), exponent)
