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

from ._base import LRScheduler, StateView, _plain, finite_float, float_dtype, group_values, positive_int

__all__ = [
    'MultiStepLR', 'ConstantLR', 'LinearLR', 'ExponentialLR', 'PolynomialLR', 'CosineAnnealingLR',
    'CosineAnnealingWarmRestarts', 'LambdaLR', 'MultiplicativeLR', 'PAST_T_MAX',
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
        self._setup(base_lr, last_epoch, milestones=milestones, gamma=gamma)

    def _configure(self, base_lr, milestones, gamma):
        return dict(super()._configure(base_lr), gamma=finite_float(gamma, 'gamma'),
                    milestones=sorted(positive_int(m, 'milestone', allow_zero=True) for m in milestones))

    def _formula(self, epoch):
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
        self._setup(base_lr, last_epoch, factor=factor, total_iters=total_iters)

    def _configure(self, base_lr, factor, total_iters):
        if not 0.0 <= finite_float(factor, 'factor') <= 1.0:
            raise ValueError(f"factor must be in [0, 1], got {factor!r}")
        return dict(super()._configure(base_lr), factor=float(factor),
                    total_iters=positive_int(total_iters, 'total_iters', allow_zero=True))

    def _formula(self, epoch):
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
        self._setup(base_lr, last_epoch, start_factor=start_factor, end_factor=end_factor,
                         total_iters=total_iters)

    def _configure(self, base_lr, start_factor, end_factor, total_iters):
        if not 0.0 < finite_float(start_factor, 'start_factor') <= 1.0:
            raise ValueError(f"start_factor must be in (0, 1], got {start_factor!r}")
        if not 0.0 <= finite_float(end_factor, 'end_factor') <= 1.0:
            raise ValueError(f"end_factor must be in [0, 1], got {end_factor!r}")
        return dict(super()._configure(base_lr), start_factor=float(start_factor), end_factor=float(end_factor),
                    total_iters=positive_int(total_iters, 'total_iters', allow_zero=True))

    def _formula(self, epoch):
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
        self._setup(base_lr, last_epoch, gamma=gamma)

    def _configure(self, base_lr, gamma):
        if not finite_float(gamma, 'gamma') > 0.0:
            raise ValueError(f"gamma must be > 0, got {gamma!r}")
        return dict(super()._configure(base_lr), gamma=float(gamma))

    def _formula(self, epoch):
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
        self._setup(base_lr, last_epoch, total_iters=total_iters, power=power)

    def _configure(self, base_lr, total_iters, power):
        return dict(super()._configure(base_lr), total_iters=positive_int(total_iters, 'total_iters'),
                    power=finite_float(power, 'power'))

    def _formula(self, epoch):
        remaining = 1.0 - _float(jnp.clip(epoch, 0, self.total_iters)) / self.total_iters
        return self._base() * jnp.power(remaining, _const(self.power))


#: CosineAnnealingLR's ``past_T_max`` choices: hold ``eta_min`` (braintools, optax) or continue the cosine (torch).
PAST_T_MAX = ('hold', 'cosine')


class CosineAnnealingLR(LRScheduler):
    r"""Cosine annealing from ``base_lr`` to ``eta_min`` over ``T_max`` epochs, then ``eta_min``.

    .. math:: \eta_e = \eta_{min} + (\eta_0 - \eta_{min})\,\frac{1 + \cos(\pi \min(e, T_{max}) / T_{max})}{2}

    Up to ``T_max`` this is torch's ``CosineAnnealingLR`` (its closed form,
    which its recursive ``step()`` reproduces). Past ``T_max`` the learning
    rate **holds** ``eta_min``, as braintools, optax's ``cosine_decay_schedule``
    and Keras do; ``past_T_max='cosine'`` gives torch's behaviour instead: the
    cosine continues, climbing back to ``base_lr`` (period ``2 T_max``).

    Args:
        base_lr: initial (maximum) learning rate (float, or list of floats per group).
        T_max: half-period, in epochs.
        eta_min: minimum learning rate (float or per-group list).
        last_epoch: initial value of the counter.
        past_T_max: ``'hold'`` (default) or ``'cosine'`` (torch; keyword only).

    >>> sched = CosineAnnealingLR(base_lr=1.0, T_max=2, eta_min=0.0)
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3, 4])]
    [1.0, 0.5, 0.0, 0.0, 0.0]
    >>> torch_like = CosineAnnealingLR(base_lr=1.0, T_max=2, past_T_max='cosine')
    >>> [round(float(lr), 6) for lr in torch_like([0, 1, 2, 3, 4])]
    [1.0, 0.5, 0.0, 0.5, 1.0]
    """

    def __init__(self, base_lr: Any = 1e-3, T_max: int = 50, eta_min: Any = 0.0, last_epoch: int = 0, *,
                 past_T_max: str = 'hold'):
        self._setup(base_lr, last_epoch, T_max=T_max, eta_min=eta_min, past_T_max=past_T_max)

    def _configure(self, base_lr, T_max, eta_min, past_T_max):
        attrs = super()._configure(base_lr)
        if past_T_max not in PAST_T_MAX:
            raise ValueError(f"past_T_max must be one of {PAST_T_MAX}, got {past_T_max!r}")
        return dict(attrs, T_max=positive_int(T_max, 'T_max'), eta_min=eta_min, past_T_max=past_T_max,
                    _eta_min=group_values(eta_min, len(attrs['base_lrs']), 'eta_min'))

    def _formula(self, epoch):
        eta_min = self._groups(self._eta_min)
        if self.past_T_max == 'hold':
            epoch = jnp.minimum(epoch, self.T_max)
        cosine = (1.0 + jnp.cos(math.pi * _float(epoch) / self.T_max)) / 2.0
        return eta_min + (self._base() - eta_min) * cosine


class CosineAnnealingWarmRestarts(LRScheduler):
    r"""Cosine annealing with warm restarts (SGDR, Loshchilov & Hutter 2017).

    .. math:: \eta_e = \eta_{min} + (\eta_0 - \eta_{min})\,\frac{1 + \cos(\pi T_{cur} / T_i)}{2}

    where the ``i``-th period lasts :math:`T_i = T_0 T_{mult}^i` epochs and
    :math:`T_{cur}` counts the epochs since the last restart. Matches
    ``torch.optim.lr_scheduler.CosineAnnealingWarmRestarts`` stepped with
    ``step()`` (and braintools'). The period is found with exact integer
    arithmetic (no ``log``), so restarts land on the right epoch for any
    counter value, also after ``step(epoch)``.

    ``T_cur`` and ``T_i`` (braintools' attributes) are derived from the
    counter: ``sched.T_cur.value`` reads it (eagerly or traced);
    ``sched.T_cur.value = t`` moves the counter to ``t`` epochs into the
    current period; ``T_i`` only accepts its current value.

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
        self._setup(base_lr, last_epoch, T_0=T_0, T_mult=T_mult, eta_min=eta_min)

    def _configure(self, base_lr, T_0, T_mult, eta_min):
        attrs = super()._configure(base_lr)
        T_0, T_mult = positive_int(T_0, 'T_0'), positive_int(T_mult, 'T_mult')
        # Restart epochs T_0 (T_mult^k - 1) / (T_mult - 1), k >= 1, up to the int32 range.
        limit = 2 ** 31 - 1
        starts, lengths = [0], [T_0]
        while T_mult > 1 and starts[-1] + lengths[-1] <= limit:
            starts.append(starts[-1] + lengths[-1])
            lengths.append(lengths[-1] * T_mult)
        return dict(attrs, T_0=T_0, T_mult=T_mult, eta_min=eta_min,
                    _eta_min=group_values(eta_min, len(attrs['base_lrs']), 'eta_min'),
                    _starts=np.minimum(np.asarray(starts, np.int64), limit).astype(np.int32),
                    _lengths=np.minimum(np.asarray(lengths, np.int64), limit).astype(np.int32))

    def _period(self, epoch):
        """``(T_cur, T_i, start of the period)`` at ``epoch`` (int32 arrays)."""
        epoch = jnp.asarray(epoch, jnp.int32)
        if self.T_mult == 1:
            t_cur = epoch % self.T_0
            return t_cur, jnp.asarray(self.T_0, jnp.int32), epoch - t_cur
        index = jnp.sum(epoch >= jnp.asarray(self._starts[1:]))
        start = jnp.asarray(self._starts)[index]
        return epoch - start, jnp.asarray(self._lengths)[index], start

    def _formula(self, epoch):
        t_cur, t_i, _ = self._period(epoch)
        eta_min = self._groups(self._eta_min)
        cosine = (1.0 + jnp.cos(math.pi * _float(t_cur) / t_i.astype(float_dtype()))) / 2.0
        return eta_min + (self._base() - eta_min) * cosine

    def _t_cur_now(self):
        return self._period(self.last_epoch.value)[0]

    def _t_i_now(self):
        return self._period(self.last_epoch.value)[1]

    @property
    def T_cur(self) -> StateView:
        """braintools: epochs since the last restart (``.value``; assigning moves the counter within the period)."""
        return StateView('T_cur', lambda: self._run_compiled('_t_cur_now'), self._set_t_cur)

    @property
    def T_i(self) -> StateView:
        """braintools: the length of the current period (``.value``; read-only but for its current value)."""
        return StateView('T_i', lambda: self._run_compiled('_t_i_now'), self._set_t_i)

    def _set_t_cur(self, value) -> None:
        if not isinstance(value, jax.core.Tracer):
            t_i = int(self._run_compiled('_t_i_now'))
            if not 0 <= int(value) < t_i or int(value) != value:
                raise ValueError(f"T_cur must be an integer in [0, T_i = {t_i}), got {value!r}")
        self._run_compiled('_move_within_period', jnp.asarray(value, jnp.int32))

    def _move_within_period(self, t_cur) -> None:
        self.last_epoch.value = self._period(self.last_epoch.value)[2] + t_cur

    def _set_t_i(self, value) -> None:
        t_i = int(self._run_compiled('_t_i_now'))
        if isinstance(value, jax.core.Tracer) or value != t_i:
            raise ValueError(f"T_i follows from T_0, T_mult and the counter (now {t_i}); it cannot be set to "
                             f"{value!r}: change T_0 / T_mult, or the counter (last_epoch)")

    def _derived_entries(self):
        return dict(super()._derived_entries(), T_cur=_plain(self._run_compiled('_t_cur_now'), int),
                    T_i=_plain(self._run_compiled('_t_i_now'), int))

    def _check_derived(self, state):
        super()._check_derived(state)
        for key, method in (('T_cur', '_t_cur_now'), ('T_i', '_t_i_now')):
            if state.get(key) is not None and float(np.asarray(state[key])) != int(self._run_compiled(method)):
                raise ValueError(f"CosineAnnealingWarmRestarts state_dict[{key!r}] = {state[key]!r} does not "
                                 f"match its last_epoch ({int(self.last_epoch.value)} gives "
                                 f"{int(self._run_compiled(method))})")


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
        self._setup(base_lr, last_epoch, lr_lambda=lr_lambda)

    def _configure(self, base_lr, lr_lambda):
        attrs = super()._configure(base_lr)
        return dict(attrs, lr_lambda=lr_lambda,
                    _lambdas=_lambdas(lr_lambda, len(attrs['base_lrs']), type(self).__name__))

    def _formula(self, epoch):
        return self._base() * _apply_lambdas(self, self._lambdas, epoch)


class MultiplicativeLR(LRScheduler):
    r"""Multiply the learning rate by a user function each step: :math:`\eta_e = \eta_0 \prod_{k=1}^{e} \lambda(k)`.

    Matches ``torch.optim.lr_scheduler.MultiplicativeLR``. ``lr_lambda`` follows
    the rules of :class:`LambdaLR` (traceable ``jnp`` code of an int32 array).
    The running product is kept in State (``state_dict()['factor']``), so
    reading ``current_lr`` costs one multiplication whatever the epoch;
    :meth:`lr_at` of an arbitrary epoch recomputes the product with a loop.
    Reassigning ``lr_lambda`` recomputes the product up to the current epoch.

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

    _compile_eager_step = True

    def __init__(self, base_lr: Any = 1e-3, lr_lambda: Union[Callable, Sequence[Callable]] = None,
                 last_epoch: int = 0):
        self._setup(base_lr, last_epoch, lr_lambda=lr_lambda)

    def _configure(self, base_lr, lr_lambda):
        attrs = super()._configure(base_lr)
        return dict(attrs, lr_lambda=lr_lambda,
                    _lambdas=_lambdas(lr_lambda, len(attrs['base_lrs']), type(self).__name__))

    def _init_states(self):
        self.factor = brainstate.LongTermState(self._product(self.last_epoch.value),
                                               name=f'{type(self).__name__}.factor')

    def _on_reconfigure(self):
        self._run_compiled('_refresh_factor')

    def _refresh_factor(self):
        self.factor.value = jnp.asarray(self._product(self.last_epoch.value), self.factor.value.dtype)

    def _product(self, epoch):
        """``prod_{k=1}^{epoch} lambda(k)`` (1 for ``epoch <= 0``)."""
        epoch = jnp.asarray(epoch, jnp.int32)
        one = jnp.ones_like(self._base())
        return jax.lax.fori_loop(
            jnp.int32(1), jnp.maximum(epoch, 0) + 1,
            lambda k, acc: acc * _apply_lambdas(self, self._lambdas, k), one)

    def _formula(self, epoch):
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

    def _checked_entry(self, key, value, current):
        array = super()._checked_entry(key, value, current)
        if key == 'factor' and not bool(jnp.all(jnp.isfinite(array))):
            raise ValueError(f"MultiplicativeLR state_dict['factor'] must be finite, got {np.asarray(array)}")
        return array
