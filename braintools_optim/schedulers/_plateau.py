"""ReduceLROnPlateau: a metric-driven schedule whose whole memory lives in State."""

from __future__ import annotations

from typing import Any, Optional

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from ._base import (MAX_EPOCH, LRScheduler, _next_epoch, _short_float, check_epoch, check_learning_rate,
                    finite_float, float_dtype, group_values, positive_int)

__all__ = ['ReduceLROnPlateau']


class ReduceLROnPlateau(LRScheduler):
    r"""Reduce the learning rate when a metric has stopped improving (torch semantics).

    ``step(metric)`` after each evaluation (braintools' ``step(metric=...)``
    and torch's ``step(metrics=...)`` keywords both work). The metric improves when it beats
    ``best`` by the threshold (``mode='min'``: :math:`m < best\,(1 - \theta)` for
    ``'rel'``, :math:`m < best - \theta` for ``'abs'``; ``'max'`` mirrored:
    :math:`m > best\,(1 + \theta)` / :math:`m > best + \theta`). An improvement
    sets ``best`` and clears the bad-epoch count; otherwise it grows by one.
    During a cooldown the count is held at 0. When it exceeds ``patience``,
    every group's learning rate becomes :math:`\max(\eta\,\text{factor}, \eta_{min})`
    (unless that changes it by ``eps`` or less), the cooldown restarts and the
    count is cleared. Matches ``torch.optim.lr_scheduler.ReduceLROnPlateau``.

    The learning rate, ``best``, ``num_bad_epochs``, ``cooldown_counter`` and
    ``last_epoch`` are all State and the decision uses ``jnp.where``, so
    ``step(metric)`` works with a traced metric inside ``jit`` / ``for_loop``
    and checkpoints with ``state_dict``. The learning rate depends on the
    metric history, not only on the counter: :meth:`lr_at` is undefined and
    ``current_lr`` reads the State. braintools' version differs in two ways
    (not copied): it ignores ``eps``, and it does not update ``best`` during a
    cooldown (torch does).

    Args:
        base_lr: initial learning rate (float, or list of floats per group).
        mode: ``'min'`` (lower is better) or ``'max'``.
        factor: multiplicative reduction, ``< 1``.
        patience: bad epochs tolerated before a reduction.
        threshold: the improvement margin.
        threshold_mode: ``'rel'`` or ``'abs'``.
        cooldown: epochs to wait after a reduction before counting bad epochs again.
        min_lr: lower bound (float or per-group list).
        eps: smallest change of the learning rate that is applied.
        last_epoch: initial value of the counter.

    >>> sched = ReduceLROnPlateau(base_lr=1.0, factor=0.5, patience=1)
    >>> lrs = []
    >>> for metric in [1.0, 0.5, 0.6, 0.7, 0.8, 0.9]:
    ...     sched.step(metric); lrs.append(round(float(sched.current_lr), 6))
    >>> lrs
    [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]
    """

    needs_metric = True
    _compile_eager_step = True

    def __init__(self, base_lr: Any = 1e-3, mode: str = 'min', factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = 'rel', cooldown: int = 0, min_lr: Any = 0.0,
                 eps: float = 1e-8, last_epoch: int = 0):
        self._setup(base_lr, last_epoch, mode=mode, factor=factor, patience=patience, threshold=threshold,
                         threshold_mode=threshold_mode, cooldown=cooldown, min_lr=min_lr, eps=eps)

    def _configure(self, base_lr, mode, factor, patience, threshold, threshold_mode, cooldown, min_lr, eps):
        attrs = super()._configure(base_lr)
        if not finite_float(factor, 'factor') < 1.0:
            raise ValueError(f"factor should be < 1.0, got {factor!r}")
        if not float(factor) >= 0.0:
            raise ValueError(f"factor should be >= 0, got {factor!r}")
        if mode not in ('min', 'max'):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ('rel', 'abs'):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        if self.__dict__.get('_ready') and mode != self.mode:
            raise ValueError("ReduceLROnPlateau.mode cannot change after construction: best was recorded "
                             "for the other direction; build a new scheduler")
        return dict(attrs, mode=mode, factor=float(factor),
                    patience=positive_int(patience, 'patience', allow_zero=True),
                    threshold=finite_float(threshold, 'threshold'), threshold_mode=threshold_mode,
                    cooldown=positive_int(cooldown, 'cooldown', allow_zero=True), min_lr=min_lr,
                    _min_lrs=group_values(min_lr, len(attrs['base_lrs']), 'min_lr',
                                          lambda v: check_learning_rate(v, 'min_lr')),
                    eps=finite_float(eps, 'eps'))

    def _init_states(self):
        name = type(self).__name__
        self.lr = brainstate.LongTermState(self._base(), name=f'{name}.lr')
        self.best = brainstate.LongTermState(jnp.asarray(self._worst(), float_dtype()), name=f'{name}.best')
        self.num_bad_epochs = brainstate.LongTermState(jnp.zeros((), jnp.int32), name=f'{name}.num_bad_epochs')
        self.cooldown_counter = brainstate.LongTermState(jnp.zeros((), jnp.int32),
                                                         name=f'{name}.cooldown_counter')

    def _worst(self) -> float:
        return float('inf') if self.mode == 'min' else -float('inf')

    def _restart(self) -> None:
        """Back to the state right after construction (used to evaluate a schedule from epoch 0)."""
        self.last_epoch.value = 0
        self.lr.value = self._base()
        self.best.value = jnp.asarray(self._worst(), self.best.value.dtype)
        self.num_bad_epochs.value = jnp.zeros((), jnp.int32)
        self.cooldown_counter.value = jnp.zeros((), jnp.int32)
        self._applied_epoch.value = jnp.asarray(-1, jnp.int32)

    def _formula(self, epoch):
        raise NotImplementedError(
            "ReduceLROnPlateau's learning rate depends on the metrics passed to step(metric), not on the "
            "epoch alone; read current_lr (or plot it with plot(scheduler, metrics=...))")

    def __call__(self, epoch):
        return self.lr_at(epoch)

    def _lr_from_state(self):
        return jnp.asarray(self.lr.value, float_dtype())

    def _is_better(self, current, best):
        if self.mode == 'min':
            bound = best * (1.0 - self.threshold) if self.threshold_mode == 'rel' else best - self.threshold
            return current < bound
        bound = best * (1.0 + self.threshold) if self.threshold_mode == 'rel' else best + self.threshold
        return current > bound

    def step(self, metric=None, epoch: Optional[int] = None, *, metrics=None) -> None:
        """Record one evaluation of the monitored metric (a float or scalar array, traced is fine).

        ``metric`` is braintools' name, ``metrics`` torch's (keyword only).
        """
        if metric is not None and metrics is not None:
            raise TypeError("ReduceLROnPlateau.step: give metric (braintools) or metrics (torch), not both")
        metric = metrics if metric is None else metric
        if metric is None:
            raise TypeError("ReduceLROnPlateau.step needs the monitored metric: scheduler.step(metric)")
        current = jnp.asarray(metric, self.best.value.dtype)
        if current.size != 1:
            raise ValueError(f"ReduceLROnPlateau.step expects a scalar metric, got shape {current.shape}")
        current = current.reshape(())
        if epoch is not None and not isinstance(epoch, jax.core.Tracer):
            epoch = check_epoch(epoch)
        if epoch is None:
            target = _next_epoch(jnp.asarray(self.last_epoch.value, jnp.int32))
        else:
            target = jnp.asarray(epoch, jnp.int32)
        self._run_compiled('_update', current, jnp.asarray(target, jnp.int32))

    def _update(self, current, target) -> None:
        self.last_epoch.value = jnp.asarray(target, jnp.int32)
        better = self._is_better(current, self.best.value)
        best = jnp.where(better, current, self.best.value)
        bad = jnp.where(better, 0, self.num_bad_epochs.value + 1)
        in_cooldown = self.cooldown_counter.value > 0
        cooldown = jnp.where(in_cooldown, self.cooldown_counter.value - 1, self.cooldown_counter.value)
        bad = jnp.where(in_cooldown, 0, bad)
        reduce = bad > self.patience
        old = self.lr.value
        new = jnp.maximum(old * self.factor, self._groups(self._min_lrs).astype(old.dtype))
        lr = jnp.where(reduce & (old - new > self.eps), new, old)
        self.lr.value = lr
        self.best.value = best
        self.num_bad_epochs.value = jnp.minimum(jnp.where(reduce, 0, bad), MAX_EPOCH - 1).astype(jnp.int32)
        self.cooldown_counter.value = jnp.where(reduce, self.cooldown, cooldown).astype(jnp.int32)

    def _set_epoch(self, epoch) -> None:
        raise TypeError("ReduceLROnPlateau is stepped with a metric: scheduler.step(metric)")

    def apply(self, apply_fn) -> None:
        """braintools: set the learning rate to ``apply_fn(lr)`` (per group); later reductions start from it."""
        values = [apply_fn(lr) for lr in self.get_lr()]
        if len(values) != self.num_groups:
            raise ValueError(f"expected {self.num_groups} learning rate(s), got {len(values)}")
        for value in values:
            if not isinstance(value, jax.core.Tracer):
                check_learning_rate(np.asarray(value), 'learning rate')
        lr = jnp.stack([jnp.asarray(v, self.lr.value.dtype) for v in values])
        self.lr.value = lr if self.per_group else lr[0]

    def _override(self, values) -> None:
        """``current_lrs.value = [...]``: the plateau's learning rate is its State, so this sets it."""
        values = list(values) if isinstance(values, (list, tuple)) or jnp.ndim(values) == 1 else [values]
        self.apply(lambda lr, it=iter(values): next(it))

    def _repr_state(self):
        lr = self.lr.value
        if isinstance(lr, jax.core.Tracer):
            return ['lr=<traced>']
        values = [_short_float(float(v)) for v in np.asarray(lr, np.float64).reshape(-1)]
        return [f"lr={values[0] if not self.per_group else '[' + ', '.join(values) + ']'}"]

    def _extra_states(self):
        return {'lr': self.lr, 'best': self.best, 'num_bad_epochs': self.num_bad_epochs,
                'cooldown_counter': self.cooldown_counter}

    _lr_keys = ('base_lrs', 'current_lrs', 'lr')

    def load_state_dict(self, state_dict):
        # braintools' ReduceLROnPlateau keeps its learning rate in current_lrs (no 'lr' entry)
        if isinstance(state_dict, dict) and 'lr' not in state_dict and 'current_lrs' in state_dict:
            lrs = np.asarray(state_dict['current_lrs'], np.float64).reshape(-1)
            state_dict = dict(state_dict, lr=lrs if self.per_group else lrs[0])
        super().load_state_dict(state_dict)
