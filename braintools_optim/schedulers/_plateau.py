"""ReduceLROnPlateau: a metric-driven schedule whose whole memory lives in State."""

from __future__ import annotations

from typing import Any, Optional

import brainstate
import jax.numpy as jnp

from ._base import LRScheduler, check_learning_rate, float_dtype, group_values, positive_int

__all__ = ['ReduceLROnPlateau']


class ReduceLROnPlateau(LRScheduler):
    r"""Reduce the learning rate when a metric has stopped improving (torch semantics).

    ``step(metric)`` after each evaluation. The metric improves when it beats
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
    ``current_lr`` reads the State.

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

    def __init__(self, base_lr: Any = 1e-3, mode: str = 'min', factor: float = 0.1, patience: int = 10,
                 threshold: float = 1e-4, threshold_mode: str = 'rel', cooldown: int = 0, min_lr: Any = 0.0,
                 eps: float = 1e-8, last_epoch: int = 0):
        if not float(factor) < 1.0:
            raise ValueError(f"factor should be < 1.0, got {factor!r}")
        if not float(factor) >= 0.0:
            raise ValueError(f"factor should be >= 0, got {factor!r}")
        if mode not in ('min', 'max'):
            raise ValueError(f"mode must be 'min' or 'max', got {mode!r}")
        if threshold_mode not in ('rel', 'abs'):
            raise ValueError(f"threshold_mode must be 'rel' or 'abs', got {threshold_mode!r}")
        super().__init__(base_lr, last_epoch)
        self.mode, self.factor, self.threshold, self.threshold_mode = mode, float(factor), float(threshold), \
            threshold_mode
        self.patience = positive_int(patience, 'patience', allow_zero=True)
        self.cooldown = positive_int(cooldown, 'cooldown', allow_zero=True)
        self.min_lr = min_lr
        self._min_lrs = group_values(min_lr, self.num_groups, 'min_lr',
                                     lambda v: check_learning_rate(v, 'min_lr'))
        self.eps = float(eps)
        name = type(self).__name__
        self.lr = brainstate.LongTermState(self._base(), name=f'{name}.lr')
        worst = float('inf') if mode == 'min' else -float('inf')
        self.best = brainstate.LongTermState(jnp.asarray(worst, float_dtype()), name=f'{name}.best')
        self.num_bad_epochs = brainstate.LongTermState(jnp.zeros((), jnp.int32), name=f'{name}.num_bad_epochs')
        self.cooldown_counter = brainstate.LongTermState(jnp.zeros((), jnp.int32),
                                                         name=f'{name}.cooldown_counter')

    def lr_at(self, epoch):
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

    def step(self, metrics=None, epoch: Optional[int] = None) -> None:
        """Record one evaluation of the monitored metric (a float or scalar array, traced is fine)."""
        if metrics is None:
            raise TypeError("ReduceLROnPlateau.step needs the monitored metric: scheduler.step(metric)")
        current = jnp.asarray(metrics, self.best.value.dtype).reshape(())
        target = self.last_epoch.value + 1 if epoch is None else jnp.asarray(epoch, jnp.int32)
        self._run_compiled('_update', current, target)

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
        self.num_bad_epochs.value = jnp.where(reduce, 0, bad).astype(jnp.int32)
        self.cooldown_counter.value = jnp.where(reduce, self.cooldown, cooldown).astype(jnp.int32)

    def _set_epoch(self, epoch) -> None:
        raise TypeError("ReduceLROnPlateau is stepped with a metric: scheduler.step(metric)")

    def _extra_states(self):
        return {'lr': self.lr, 'best': self.best, 'num_bad_epochs': self.num_bad_epochs,
                'cooldown_counter': self.cooldown_counter}
