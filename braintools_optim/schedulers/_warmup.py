"""Warm-up and optax-style step schedules (optax semantics, braintools names)."""

from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import jax.numpy as jnp
import numpy as np

from ._base import LRScheduler, finite_float, float_dtype, group_values, positive_int

__all__ = ['WarmupScheduler', 'WarmupCosineSchedule', 'ExponentialDecayLR', 'PiecewiseConstantSchedule']


def _float(epoch):
    return jnp.asarray(epoch).astype(float_dtype())


class WarmupScheduler(LRScheduler):
    r"""Linear warm-up from ``warmup_start_lr`` to ``base_lr`` over ``warmup_epochs``, then constant.

    .. math:: \eta_e = \eta_{start} + (\eta_0 - \eta_{start})\,\min(e, W)/W

    Same values as ``optax.linear_schedule(init_value=warmup_start_lr,
    end_value=base_lr, transition_steps=warmup_epochs)`` (braintools' arguments;
    ``warmup_epochs=0`` means ``base_lr`` from the start). For a warm-up given
    as a start *factor*, use :class:`LinearLR` (torch).

    Args:
        base_lr: learning rate after the warm-up (float, or list of floats per group).
        warmup_epochs: length of the warm-up.
        warmup_start_lr: learning rate at epoch 0 (float or per-group list).
        last_epoch: initial value of the counter.

    >>> sched = WarmupScheduler(base_lr=1.0, warmup_epochs=4, warmup_start_lr=0.2)
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 4, 9])]
    [0.2, 0.4, 0.6, 1.0, 1.0]
    """

    def __init__(self, base_lr: Any = 1e-3, warmup_epochs: int = 5, warmup_start_lr: Any = 0.0,
                 last_epoch: int = 0):
        self._setup(base_lr, last_epoch, warmup_epochs=warmup_epochs, warmup_start_lr=warmup_start_lr)

    def _configure(self, base_lr, warmup_epochs, warmup_start_lr):
        attrs = super()._configure(base_lr)
        return dict(attrs, warmup_epochs=positive_int(warmup_epochs, 'warmup_epochs', allow_zero=True),
                    warmup_start_lr=warmup_start_lr,
                    _start=group_values(warmup_start_lr, len(attrs['base_lrs']), 'warmup_start_lr'))

    def _formula(self, epoch):
        if self.warmup_epochs == 0:
            return self._base()
        start = self._groups(self._start)
        progress = _float(jnp.clip(epoch, 0, self.warmup_epochs)) / self.warmup_epochs
        return start + (self._base() - start) * progress


class WarmupCosineSchedule(LRScheduler):
    r"""Linear warm-up to ``base_lr``, then cosine decay to ``eta_min`` at ``total_steps``, then constant.

    .. math::
        \eta_e = \begin{cases}
        \eta_{start} + (\eta_0 - \eta_{start})\, e / W & e < W \\
        \eta_{min} + (\eta_0 - \eta_{min})\,\frac{1 + \cos\big(\pi \frac{\min(e, S) - W}{S - W}\big)}{2} & e \ge W
        \end{cases}

    with ``W = warmup_steps`` and ``S = total_steps`` (the decay phase is
    ``S - W`` steps long, and :math:`\eta_{min}` is held after ``S``). Same
    values as ``optax.warmup_cosine_decay_schedule(init_value=warmup_start_lr,
    peak_value=base_lr, warmup_steps=W, decay_steps=S, end_value=eta_min)``.

    Args:
        base_lr: peak learning rate (float, or list of floats per group).
        warmup_steps: length of the linear warm-up.
        total_steps: step at which the cosine reaches ``eta_min`` (> ``warmup_steps``).
        warmup_start_lr: learning rate at step 0 (float or per-group list).
        eta_min: final learning rate (float or per-group list).
        last_epoch: initial value of the counter.

    >>> sched = WarmupCosineSchedule(base_lr=1.0, warmup_steps=2, total_steps=4)
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3, 4, 5])]
    [0.0, 0.5, 1.0, 0.5, 0.0, 0.0]
    """

    def __init__(self, base_lr: Any = 1e-3, warmup_steps: int = 1000, total_steps: int = 10000,
                 warmup_start_lr: Any = 0.0, eta_min: Any = 0.0, last_epoch: int = 0):
        self._setup(base_lr, last_epoch, warmup_steps=warmup_steps, total_steps=total_steps,
                         warmup_start_lr=warmup_start_lr, eta_min=eta_min)

    def _configure(self, base_lr, warmup_steps, total_steps, warmup_start_lr, eta_min):
        attrs = super()._configure(base_lr)
        warmup_steps = positive_int(warmup_steps, 'warmup_steps', allow_zero=True)
        total_steps = positive_int(total_steps, 'total_steps')
        if total_steps <= warmup_steps:
            raise ValueError(f"total_steps ({total_steps}) must be greater than warmup_steps ({warmup_steps})")
        n_groups = len(attrs['base_lrs'])
        return dict(attrs, warmup_steps=warmup_steps, total_steps=total_steps, warmup_start_lr=warmup_start_lr,
                    eta_min=eta_min, _start=group_values(warmup_start_lr, n_groups, 'warmup_start_lr'),
                    _eta_min=group_values(eta_min, n_groups, 'eta_min'))

    def _formula(self, epoch):
        epoch = jnp.asarray(epoch, jnp.int32)
        base, start, low = self._base(), self._groups(self._start), self._groups(self._eta_min)
        steps = _float(epoch)
        if self.warmup_steps:
            warm = start + (base - start) * (steps / self.warmup_steps)
        else:
            warm = base
        decay_steps = self.total_steps - self.warmup_steps
        t = _float(jnp.clip(epoch - self.warmup_steps, 0, decay_steps)) / decay_steps
        cosine = low + (base - low) * (1.0 + jnp.cos(math.pi * t)) / 2.0
        return jnp.where(epoch < self.warmup_steps, warm, cosine)


class ExponentialDecayLR(LRScheduler):
    r"""optax's exponential decay, stepwise: :math:`\eta_e = \eta_0\, r^{(e - b)/s}` after ``transition_begin``.

    With :math:`b` = ``transition_begin``, :math:`s` = ``decay_steps`` and
    :math:`r` = ``decay_rate``: :math:`\eta_e = \eta_0` for :math:`e \le b`, else
    :math:`\eta_0 r^{p}` with :math:`p = (e - b)/s` (floored when
    ``staircase``), clipped below at ``end_value`` when :math:`r < 1` (above
    when :math:`r > 1`). Same values as ``optax.exponential_decay(init_value=base_lr,
    transition_steps=decay_steps, decay_rate, transition_begin, staircase, end_value)``.

    Args:
        base_lr: initial learning rate (float, or list of floats per group).
        decay_steps: optax's ``transition_steps`` (> 0).
        decay_rate: the rate (non-zero).
        transition_begin: steps to hold ``base_lr`` before decaying.
        staircase: decay in discrete jumps every ``decay_steps``.
        end_value: optional bound (lower if ``decay_rate < 1``, upper otherwise).
        last_epoch: initial value of the counter.

    >>> sched = ExponentialDecayLR(base_lr=1.0, decay_steps=2, decay_rate=0.5, staircase=True)
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3, 4])]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, base_lr: Any = 1e-3, decay_steps: int = 1000, decay_rate: float = 0.96,
                 transition_begin: int = 0, staircase: bool = False, end_value: Optional[float] = None,
                 last_epoch: int = 0):
        self._setup(base_lr, last_epoch, decay_steps=decay_steps, decay_rate=decay_rate,
                         transition_begin=transition_begin, staircase=staircase, end_value=end_value)

    def _configure(self, base_lr, decay_steps, decay_rate, transition_begin, staircase, end_value):
        if finite_float(decay_rate, 'decay_rate') == 0.0:
            raise ValueError("decay_rate must not be zero")
        return dict(super()._configure(base_lr), decay_steps=positive_int(decay_steps, 'decay_steps'),
                    decay_rate=float(decay_rate),
                    transition_begin=positive_int(transition_begin, 'transition_begin', allow_zero=True),
                    staircase=bool(staircase),
                    end_value=None if end_value is None else finite_float(end_value, 'end_value'))

    def _formula(self, epoch):
        count = jnp.asarray(epoch, jnp.int32) - self.transition_begin
        if self.staircase:
            exponent = _float(jnp.floor_divide(count, self.decay_steps))
        else:
            exponent = _float(count) / self.decay_steps
        base = self._base()
        decayed = base * jnp.power(jnp.asarray(self.decay_rate, float_dtype()), exponent)
        lr = jnp.where(count <= 0, base, decayed)
        if self.end_value is not None:
            bound = jnp.asarray(self.end_value, float_dtype())
            lr = jnp.maximum(lr, bound) if self.decay_rate < 1.0 else jnp.minimum(lr, bound)
        return lr


class PiecewiseConstantSchedule(LRScheduler):
    r"""Piecewise-constant learning rate, in optax's or braintools' form.

    * ``boundaries_and_scales={b_1: s_1, ...}`` (optax): :math:`\eta_e = \eta_0
      \prod_{i:\, e \ge b_i} s_i`; same values as
      ``optax.piecewise_constant_schedule(init_value=base_lr, boundaries_and_scales)``.
    * ``boundaries=[b_1, ...], values=[v_0, v_1, ...]`` (braintools): the
      *absolute* learning rate :math:`v_k` with :math:`k = \#\{i : e \ge b_i\}`
      (``values`` has one more entry than ``boundaries``; ``base_lr`` then only
      sets the number of parameter groups). With neither given, braintools'
      defaults ``boundaries=[1000, 2000]``, ``values=[1.0, 0.1, 0.01]`` apply.

    Args:
        base_lr: initial learning rate (float, or list of floats per group).
        boundaries: increasing step indices (braintools form).
        values: absolute learning rates, ``len(boundaries) + 1`` of them (braintools form).
        last_epoch: initial value of the counter.
        boundaries_and_scales: ``{step: multiplicative scale}`` (optax form; keyword only).

    >>> sched = PiecewiseConstantSchedule(1.0, boundaries_and_scales={2: 0.5, 4: 0.1})
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3, 4, 5])]
    [1.0, 1.0, 0.5, 0.5, 0.05, 0.05]
    """

    def __init__(self, base_lr: Any = 1e-3, boundaries: Optional[Sequence[int]] = None,
                 values: Optional[Sequence[float]] = None, last_epoch: int = 0, *,
                 boundaries_and_scales: Optional[Dict[int, float]] = None):
        self._setup(base_lr, last_epoch, boundaries=boundaries, values=values,
                         boundaries_and_scales=boundaries_and_scales)

    def _configure(self, base_lr, boundaries, values, boundaries_and_scales):
        attrs = super()._configure(base_lr)
        if boundaries_and_scales is not None:
            if boundaries is not None or values is not None:
                raise ValueError("give either boundaries_and_scales (optax) or boundaries and values (braintools)")
            items = sorted((positive_int(b, 'boundary', allow_zero=True), finite_float(s, 'scale'))
                           for b, s in dict(boundaries_and_scales).items())
            return dict(attrs, boundaries=None, values=None, boundaries_and_scales=boundaries_and_scales,
                        _boundaries=[b for b, _ in items], scales=[s for _, s in items])
        boundaries = [1000, 2000] if boundaries is None else list(boundaries)
        values = [1.0, 0.1, 0.01] if values is None else [finite_float(v, 'value') for v in values]
        if len(boundaries) != len(values) - 1:
            raise ValueError("boundaries must have one less element than values")
        boundaries = [positive_int(b, 'boundary', allow_zero=True) for b in boundaries]
        if boundaries != sorted(boundaries):
            raise ValueError(f"boundaries must be increasing, got {boundaries}")
        for v in values:
            if v < 0.0:
                raise ValueError(f"values are learning rates and must be >= 0, got {values}")
        return dict(attrs, boundaries=boundaries, values=values, boundaries_and_scales=None,
                    _boundaries=boundaries, scales=None)

    def _formula(self, epoch):
        epoch = jnp.asarray(epoch, jnp.int32)
        if not self._boundaries:
            passed = jnp.zeros((0,), bool)
        else:
            passed = epoch >= np.asarray(self._boundaries, np.int32)
        base = self._base()
        if self.scales is not None:
            scales = jnp.asarray(self.scales, float_dtype())
            return base * jnp.prod(jnp.where(passed, scales, 1.0))
        index = jnp.sum(passed.astype(jnp.int32))
        value = jnp.asarray(self.values, float_dtype())[index]
        return jnp.broadcast_to(value, jnp.shape(base))
