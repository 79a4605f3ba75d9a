"""Closed-form, torch-compatible schedulers: the learning rate is a function of the counter.

Each class computes torch's *closed form*; torch's own ``step()`` uses an
equivalent recursive ("chainable") form, and the golden tests check that both
agree step by step.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence, Union

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from ._base import LRScheduler, float_dtype, group_values, positive_int

__all__ = [
    'MultiStepLR', 'ConstantLR', 'LinearLR', 'ExponentialLR', 'PolynomialLR', 'CosineAnnealingLR',
    'CosineAnnealingWarmRestarts', 'LambdaLR', 'MultiplicativeLR',
]


def _float(epoch):
    return jnp.asarray(epoch).astype(float_dtype())


def _const(value):
    return jnp.asarray(value, float_dtype())


class MultiStepLR(LRScheduler):
    r"""Decay by ``gamma`` at each milestone: :math:`\eta_e = \eta_0\,\gamma^{\#\{m \in M : m \le e\}}`.

    Matches ``torch.optim.lr_scheduler.MultiStepLR`` (a milestone listed twice
    decays twice, as torch's ``Counter`` does).

    Args:
        base_lr: initial learning rate (float, or list of floats per group).
        milestones: epochs at which to decay (any order; braintools' default ``(30, 60, 90)``).
        gamma: multiplicative decay factor.
        last_epoch: initial value of the counter.

    >>> sched = MultiStepLR(base_lr=1.0, milestones=[2, 4], gamma=0.1)
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3, 4, 5])]
    [1.0, 1.0, 0.1, 0.1, 0.01, 0.01]
    """

    def __init__(self, base_lr: Any = 1e-3, milestones: Sequence[int] = (30, 60, 90), gamma: float = 0.1,
                 last_epoch: int = 0):
        super().__init__(base_lr, last_epoch)
        self.milestones = sorted(positive_int(m, 'milestone', allow_zero=True) for m in milestones)
        self.gamma = float(gamma)

    def lr_at(self, epoch):
        if not self.milestones:
            return self._base()
        count = jnp.sum(epoch >= np.asarray(self.milestones, np.int32))
        return self._base() * jnp.power(_const(self.gamma), _float(count))


class ConstantLR(LRScheduler):
    r"""Scale by ``factor`` for the first ``total_iters`` epochs, then use ``base_lr``.

    :math:`\eta_e = \eta_0 \cdot (\text{factor if } e < T \text{ else } 1)`. Matches
    ``torch.optim.lr_scheduler.ConstantLR``.

    Args:
        base_lr: initial learning rate (float, or list of floats per group).
        factor: the scale in ``[0, 1]`` applied before ``total_iters``.
        total_iters: number of epochs the scale is applied for.
        last_epoch: initial value of the counter.

    >>> sched = ConstantLR(base_lr=0.1, factor=0.5, total_iters=2)
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3])]
    [0.05, 0.05, 0.1, 0.1]
    """

    def __init__(self, base_lr: Any = 1e-3, factor: float = 1.0 / 3, total_iters: int = 5, last_epoch: int = 0):
        if not 0.0 <= float(factor) <= 1.0:
            raise ValueError(f"factor must be in [0, 1], got {factor!r}")
        super().__init__(base_lr, last_epoch)
        self.factor = float(factor)
        self.total_iters = positive_int(total_iters, 'total_iters', allow_zero=True)

    def lr_at(self, epoch):
        return self._base() * jnp.where(epoch < self.total_iters, _const(self.factor), _const(1.0))


class LinearLR(LRScheduler):
    r"""Scale linearly from ``start_factor`` to ``end_factor`` over ``total_iters`` epochs.

    :math:`\eta_e = \eta_0\,\big(s + (t - s)\min(e, T)/T\big)`. Matches
    ``torch.optim.lr_scheduler.LinearLR``; a common linear warm-up.

    Args:
        base_lr: initial learning rate (float, or list of floats per group).
        start_factor: scale at epoch 0, in ``(0, 1]``.
        end_factor: scale from ``total_iters`` on, in ``[0, 1]``.
        total_iters: length of the ramp (0: ``end_factor`` from the start).
        last_epoch: initial value of the counter.

    >>> sched = LinearLR(base_lr=1.0, start_factor=0.25, end_factor=1.0, total_iters=3)
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3, 4])]
    [0.25, 0.5, 0.75, 1.0, 1.0]
    """

    def __init__(self, base_lr: Any = 1e-3, start_factor: float = 1.0 / 3, end_factor: float = 1.0,
                 total_iters: int = 5, last_epoch: int = 0):
        if not 0.0 < float(start_factor) <= 1.0:
            raise ValueError(f"start_factor must be in (0, 1], got {start_factor!r}")
        if not 0.0 <= float(end_factor) <= 1.0:
            raise ValueError(f"end_factor must be in [0, 1], got {end_factor!r}")
        super().__init__(base_lr, last_epoch)
        self.start_factor = float(start_factor)
        self.end_factor = float(end_factor)
        self.total_iters = positive_int(total_iters, 'total_iters', allow_zero=True)

    def lr_at(self, epoch):
        if self.total_iters == 0:
            return self._base() * self.end_factor
        progress = _float(jnp.clip(epoch, 0, self.total_iters)) / self.total_iters
        factor = self.start_factor + (self.end_factor - self.start_factor) * progress
        return self._base() * factor


class ExponentialLR(LRScheduler):
    r"""Decay by ``gamma`` every epoch: :math:`\eta_e = \eta_0\,\gamma^{e}`.

    Matches ``torch.optim.lr_scheduler.ExponentialLR``.

    Args:
        base_lr: initial learning rate (float, or list of floats per group).
        gamma: multiplicative factor per epoch (braintools' default 0.95).
        last_epoch: initial value of the counter.

    >>> sched = ExponentialLR(base_lr=1.0, gamma=0.5)
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3])]
    [1.0, 0.5, 0.25, 0.125]
    """

    def __init__(self, base_lr: Any = 1e-3, gamma: float = 0.95, last_epoch: int = 0):
        if not float(gamma) > 0.0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        super().__init__(base_lr, last_epoch)
        self.gamma = float(gamma)

    def lr_at(self, epoch):
        return self._base() * jnp.power(_const(self.gamma), _float(epoch))


class PolynomialLR(LRScheduler):
    r"""Polynomial decay to 0 over ``total_iters`` epochs: :math:`\eta_e = \eta_0 (1 - \min(e, T)/T)^{p}`.

    Matches ``torch.optim.lr_scheduler.PolynomialLR`` (0 from ``total_iters`` on).

    Args:
        base_lr: initial learning rate (float, or list of floats per group).
        total_iters: number of epochs of decay.
        power: the polynomial's power.
        last_epoch: initial value of the counter.

    >>> sched = PolynomialLR(base_lr=1.0, total_iters=4, power=1.0)
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3, 4, 5])]
    [1.0, 0.75, 0.5, 0.25, 0.0, 0.0]
    """

    def __init__(self, base_lr: Any = 1e-3, total_iters: int = 5, power: float = 1.0, last_epoch: int = 0):
        super().__init__(base_lr, last_epoch)
        self.total_iters = positive_int(total_iters, 'total_iters')
        self.power = float(power)

    def lr_at(self, epoch):
        remaining = 1.0 - _float(jnp.clip(epoch, 0, self.total_iters)) / self.total_iters
        return self._base() * jnp.power(remaining, _const(self.power))


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from ``base_lr`` to ``eta_min`` over ``T_max`` epochs.

    .. math:: \eta_e = \eta_{min} + (\eta_0 - \eta_{min})\,\frac{1 + \cos(\pi e / T_{max})}{2}

    This is torch's closed form (``torch.optim.lr_scheduler.CosineAnnealingLR``),
    and torch's recursive ``step()`` produces the same values. Like torch, the
    formula is *not* clamped: past ``T_max`` the learning rate follows the
    cosine back up (it is periodic with period ``2 T_max``). Use
    :class:`CosineAnnealingWarmRestarts` for restarts, or
    :class:`WarmupCosineSchedule` / a :class:`SequentialLR` with a
    :class:`ConstantLR` to hold ``eta_min`` after ``T_max``.

    Args:
        base_lr: initial (maximum) learning rate (float, or list of floats per group).
        T_max: half-period, in epochs.
        eta_min: minimum learning rate (float or per-group list).
        last_epoch: initial value of the counter.

    >>> sched = CosineAnnealingLR(base_lr=1.0, T_max=2, eta_min=0.0)
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3, 4])]
    [1.0, 0.5, 0.0, 0.5, 1.0]
    """

    def __init__(self, base_lr: Any = 1e-3, T_max: int = 50, eta_min: Any = 0.0, last_epoch: int = 0):
        T_max = positive_int(T_max, 'T_max')
        super().__init__(base_lr, last_epoch)
        self.T_max = T_max
        self.eta_min = eta_min
        self._eta_min = group_values(eta_min, self.num_groups, 'eta_min')

    def lr_at(self, epoch):
        eta_min = self._groups(self._eta_min)
        cosine = (1.0 + jnp.cos(math.pi * _float(epoch) / self.T_max)) / 2.0
        return eta_min + (self._base() - eta_min) * cosine


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017).

    .. math:: \eta_e = \eta_{min} + (\eta_0 - \eta_{min})\,\frac{1 + \cos(\pi T_{cur} / T_i)}{2}

    where the ``i``-th period lasts :math:`T_i = T_0 T_{mult}^i` epochs and
    :math:`T_{cur}` counts the epochs since the last restart. Matches
    ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`` stepped with
    ``step()``. The period is found with exact integer arithmetic (no
    ``log``), so restarts land on the right epoch for any counter value.

    Args:
        base_lr: the learning rate at each restart (float, or list of floats per group).
        T_0: length of the first period.
        T_mult: integer growth factor of the period (>= 1).
        eta_min: minimum learning rate (float or per-group list).
        last_epoch: initial value of the counter.

    >>> sched = CosineAnnealingWarmRestarts(base_lr=1.0, T_0=2, T_mult=2)
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3, 4, 5, 6])]
    [1.0, 0.5, 1.0, 0.853553, 0.5, 0.146447, 1.0]
    """

    def __init__(self, base_lr: Any = 1e-3, T_0: int = 10, T_mult: int = 1, eta_min: Any = 0.0,
                 last_epoch: int = 0):
        T_0 = positive_int(T_0, 'T_0')
        T_mult = positive_int(T_mult, 'T_mult')
        super().__init__(base_lr, last_epoch)
        self.T_0, self.T_mult = T_0, T_mult
        self.eta_min = eta_min
        self._eta_min = group_values(eta_min, self.num_groups, 'eta_min')
        # Restart epochs T_0 (T_mult^k - 1) / (T_mult - 1), k >= 1, up to the int32 range.
        limit = 2 ** 31 - 1
        starts, lengths = [0], [T_0]
        while T_mult > 1 and starts[-1] + lengths[-1] <= limit:
            starts.append(starts[-1] + lengths[-1])
            lengths.append(lengths[-1] * T_mult)
        self._starts = np.asarray(starts, np.int64)
        self._lengths = np.asarray(lengths, np.float64)

    def lr_at(self, epoch):
        epoch = jnp.asarray(epoch, jnp.int32)
        if self.T_mult == 1:
            t_cur, t_i = epoch % self.T_0, self.T_0
        else:
            starts = jnp.asarray(np.minimum(self._starts, 2 ** 31 - 1), jnp.int32)
            index = jnp.sum(epoch >= starts[1:])
            t_cur = epoch - starts[index]
            t_i = jnp.asarray(self._lengths, float_dtype())[index]
        eta_min = self._groups(self._eta_min)
        cosine = (1.0 + jnp.cos(math.pi * _float(t_cur) / t_i)) / 2.0
        return eta_min + (self._base() - eta_min) * cosine


def _lambdas(lr_lambda, n_groups: int, what: str):
    if isinstance(lr_lambda, (list, tuple)):
        if len(lr_lambda) != n_groups:
            raise ValueError(f"{what}: expected {n_groups} lr_lambdas (one per group), got {len(lr_lambda)}")
        functions = list(lr_lambda)
    else:
        functions = [lr_lambda]
    for function in functions:
        if not callable(function):
            raise TypeError(f"{what}: lr_lambda must be callable (or a list of callables), got {function!r}")
    return functions


def _apply_lambdas(scheduler, functions, epoch):
    """The lambdas' values at ``epoch``, shaped like the learning rate."""
    if len(functions) == 1:
        value = jnp.asarray(functions[0](epoch), float_dtype())
        return jnp.broadcast_to(value, jnp.shape(scheduler._base()))
    return jnp.stack([jnp.asarray(f(epoch), float_dtype()) for f in functions])


class LambdaLR(LRScheduler):
    r"""The learning rate is ``base_lr`` times a user function: :math:`\eta_e = \eta_0\,\lambda(e)`.

    Matches ``torch.optim.lr_scheduler.LambdaLR``. ``lr_lambda`` receives the
    counter as an int32 *JAX array* (traced under jit/for_loop) and must be
    written with ``jnp`` operations: no Python ``if`` on its argument, no
    ``math.*``/``float()`` of it. Use ``jnp.where`` for piecewise definitions.
    A list of functions gives one per parameter group (with a list ``base_lr``).

    Args:
        base_lr: initial learning rate (float, or list of floats per group).
        lr_lambda: traceable function ``epoch -> factor`` (or a list of them, one per group).
        last_epoch: initial value of the counter.

    >>> import jax.numpy as jnp
    >>> sched = LambdaLR(base_lr=1.0, lr_lambda=lambda e: jnp.where(e < 2, 0.1, 1.0 / (e + 1)))
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3])]
    [0.1, 0.1, 0.333333, 0.25]
    """

    def __init__(self, base_lr: Any = 1e-3, lr_lambda: Union[Callable, Sequence[Callable]] = None,
                 last_epoch: int = 0):
        super().__init__(base_lr, last_epoch)
        self.lr_lambda = lr_lambda
        self._lambdas = _lambdas(lr_lambda, self.num_groups, type(self).__name__)

    def lr_at(self, epoch):
        return self._base() * _apply_lambdas(self, self._lambdas, jnp.asarray(epoch, jnp.int32))


class MultiplicativeLR(LRScheduler):
    r"""Multiply the learning rate by a user function each step: :math:`\eta_e = \eta_0 \prod_{k=1}^{e} \lambda(k)`.

    Matches ``torch.optim.lr_scheduler.MultiplicativeLR``. ``lr_lambda`` follows
    the rules of :class:`LambdaLR` (traceable ``jnp`` code of an int32 array).
    The running product is kept in State (``state_dict()['factor']``), so
    reading ``current_lr`` costs one multiplication whatever the epoch;
    :meth:`lr_at` of an arbitrary epoch recomputes the product with a loop.

    Inside :class:`SequentialLR`, torch's ``MultiplicativeLR`` starts from the
    previous scheduler's last learning rate; this one restarts from
    ``base_lr`` (its closed form), so use it first in a sequence.

    Args:
        base_lr: initial learning rate (float, or list of floats per group).
        lr_lambda: traceable function ``epoch -> factor`` (or a list, one per group).
        last_epoch: initial value of the counter.

    >>> sched = MultiplicativeLR(base_lr=1.0, lr_lambda=lambda e: 0.5)
    >>> lrs = []
    >>> for _ in range(4):
    ...     lrs.append(round(float(sched.current_lr), 6)); sched.step()
    >>> lrs
    [1.0, 0.5, 0.25, 0.125]
    """

    def __init__(self, base_lr: Any = 1e-3, lr_lambda: Union[Callable, Sequence[Callable]] = None,
                 last_epoch: int = 0):
        super().__init__(base_lr, last_epoch)
        self.lr_lambda = lr_lambda
        self._lambdas = _lambdas(lr_lambda, self.num_groups, type(self).__name__)
        self.factor = brainstate.LongTermState(self._product(self.last_epoch.value),
                                               name=f'{type(self).__name__}.factor')

    _compile_eager_step = True

    def _product(self, epoch):
        """``prod_{k=1}^{epoch} lambda(k)`` (1 for ``epoch <= 0``)."""
        epoch = jnp.asarray(epoch, jnp.int32)
        one = jnp.ones_like(self._base())
        return jax.lax.fori_loop(
            jnp.int32(1), jnp.maximum(epoch, 0) + 1,
            lambda k, acc: acc * _apply_lambdas(self, self._lambdas, k), one)

    def lr_at(self, epoch):
        return self._base() * self._product(epoch)

    def _lr_from_state(self):
        return jnp.asarray(self._base() * self.factor.value, float_dtype())

    def _set_epoch(self, epoch) -> None:
        old = self.last_epoch.value
        epoch = jnp.asarray(epoch, jnp.int32)
        current = self.factor.value
        # 0: one step forward (the usual case), 1: unchanged, 2: a jump (recompute the product).
        branch = jnp.where(epoch == old + 1, 0, jnp.where(epoch == old, 1, 2))
        factor = jax.lax.switch(branch, [
            lambda: current * _apply_lambdas(self, self._lambdas, epoch).astype(current.dtype),
            lambda: current,
            lambda: self._product(epoch).astype(current.dtype)])
        self.factor.value = jnp.asarray(factor, self.factor.value.dtype)
        self.last_epoch.value = epoch

    def _extra_states(self):
        return {'factor': self.factor}
