"""Cyclical schedules with an optional inverse momentum cycle: CyclicLR and OneCycleLR."""

from __future__ import annotations

import math
from typing import Any, Callable, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ._base import LRScheduler, finite_float, float_dtype, group_values, lr_list, positive_int

__all__ = ['CyclicLR', 'OneCycleLR', 'ONE_CYCLE_CONVENTIONS']


def _momenta(base_momentum, max_momentum, n_groups):
    return dict(base_momentum=base_momentum, max_momentum=max_momentum,
                _base_momentum=group_values(base_momentum, n_groups, 'base_momentum', _check_momentum('base_momentum')),
                _max_momentum=group_values(max_momentum, n_groups, 'max_momentum', _check_momentum('max_momentum')))


def _check_momentum(what):
    def check(value):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{what} must be in [0, 1], got {value!r}")
    return check


class _MomentumCycle:
    """Mixin: ``current_momentum`` / ``momentum_at`` for schedulers with ``cycle_momentum``."""

    cycle_momentum: bool

    def momentum_at(self, epoch) -> Optional[jax.Array]:
        """The momentum (SGD ``momentum`` / Adam ``beta1``) at ``epoch``; ``None`` without ``cycle_momentum``."""
        if not self.cycle_momentum:
            return None
        return self._run_compiled('_momentum_value', jnp.asarray(epoch, jnp.int32))

    def _momentum_value(self, epoch):
        return jnp.asarray(self._momentum_at(epoch), float_dtype())

    def _momentum_from_state(self):
        return self._momentum_value(jnp.asarray(self.last_epoch.value, jnp.int32))

    @property
    def current_momentum(self) -> Optional[jax.Array]:
        """The momentum for the next update, read from State (traceable); ``None`` without ``cycle_momentum``.

        It moves opposite to the learning rate, between ``base_momentum`` and
        ``max_momentum`` (torch). Optimizers with a momentum (SGD ``momentum``,
        Adam ``beta1``) read it when the scheduler is attached to them. Off by
        default (braintools has no momentum cycling); torch's default is on.
        """
        if not self.cycle_momentum:
            return None
        return self._run_compiled('_momentum_from_state')


class CyclicLR(_MomentumCycle, LRScheduler):
    r"""Cyclical learning rate between ``base_lr`` and ``max_lr`` (Smith 2017), torch semantics.

    With cycle length :math:`C = s_{up} + s_{down}`, position :math:`p = e \bmod C`
    and cycle number :math:`c = 1 + \lfloor e / C \rfloor`:

    .. math::
        x = \begin{cases} p / s_{up} & p \le s_{up} \\ (C - p)/s_{down} & \text{otherwise}\end{cases},
        \qquad \eta_e = \eta_{base} + (\eta_{max} - \eta_{base})\, x\, \sigma

    with :math:`\sigma = 1` (``'triangular'``), :math:`2^{1-c}` (``'triangular2'``)
    or :math:`\gamma^{e}` (``'exp_range'``), or ``scale_fn(c)`` / ``scale_fn(e)``
    for a custom ``scale_fn`` with ``scale_mode`` ``'cycle'`` / ``'iterations'``.
    Matches ``torch.optim.lr_scheduler.CyclicLR`` and braintools 0.4 (``x`` is
    computed with integers, so cycle boundaries are exact for any counter;
    braintools 0.3 ignored ``step_size_down``, a bug not copied). A custom
    ``scale_fn`` receives an int32 JAX array and must be traceable ``jnp`` code.

    With ``cycle_momentum=True`` (torch's default; off here, as braintools has
    no momentum cycling), :attr:`current_momentum` moves the other way:
    :math:`m_e = m_{max} - (m_{max} - m_{base})\, x\, \sigma`.

    Args:
        base_lr: lower learning rate of the cycle (float, or list per group).
        max_lr: upper learning rate (float, or list per group).
        step_size_up: epochs (iterations) of the rising half.
        step_size_down: epochs of the falling half (default ``step_size_up``).
        mode: ``'triangular'``, ``'triangular2'`` or ``'exp_range'``.
        gamma: the ``'exp_range'`` base.
        scale_fn: custom traceable amplitude scale (overrides ``mode``).
        scale_mode: ``'cycle'`` or ``'iterations'``: what ``scale_fn`` receives.
        last_epoch: initial value of the counter.
        cycle_momentum: expose :attr:`current_momentum` (keyword only; torch: ``True``).
        base_momentum: lower momentum (float or per-group list; keyword only).
        max_momentum: upper momentum (float or per-group list; keyword only).

    >>> sched = CyclicLR(base_lr=0.1, max_lr=1.0, step_size_up=2, step_size_down=1, cycle_momentum=True)
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3, 4])]
    [0.1, 0.55, 1.0, 0.1, 0.55]
    >>> [round(float(sched.momentum_at(e)), 6) for e in range(4)]
    [0.9, 0.85, 0.8, 0.9]
    """

    def __init__(self, base_lr: Any = 1e-3, max_lr: Any = 1e-2, step_size_up: int = 2000,
                 step_size_down: Optional[int] = None, mode: str = 'triangular', gamma: float = 1.0,
                 scale_fn: Optional[Callable] = None, scale_mode: str = 'cycle', last_epoch: int = 0, *,
                 cycle_momentum: bool = False, base_momentum: Any = 0.8, max_momentum: Any = 0.9):
        self._setup(base_lr, last_epoch, max_lr=max_lr, step_size_up=step_size_up,
                         step_size_down=step_size_down, mode=mode, gamma=gamma, scale_fn=scale_fn,
                         scale_mode=scale_mode, cycle_momentum=cycle_momentum, base_momentum=base_momentum,
                         max_momentum=max_momentum)

    def _configure(self, base_lr, max_lr, step_size_up, step_size_down, mode, gamma, scale_fn, scale_mode,
                   cycle_momentum, base_momentum, max_momentum):
        base_lrs, base_list = lr_list(base_lr, 'base_lr')
        max_lrs, max_list = lr_list(max_lr, 'max_lr')
        if base_list and max_list and len(base_lrs) != len(max_lrs):
            raise ValueError(f"base_lr has {len(base_lrs)} groups but max_lr has {len(max_lrs)}")
        n_groups = max(len(base_lrs), len(max_lrs))
        if max_list and not base_list:
            base_lr = base_lrs * n_groups
        attrs = super()._configure(base_lr)
        step_size_up = positive_int(step_size_up, 'step_size_up')
        down = step_size_up if step_size_down is None else positive_int(step_size_down, 'step_size_down')
        if mode not in ('triangular', 'triangular2', 'exp_range'):
            raise ValueError(f"mode must be 'triangular', 'triangular2' or 'exp_range', got {mode!r}")
        if scale_mode not in ('cycle', 'iterations'):
            raise ValueError(f"scale_mode must be 'cycle' or 'iterations', got {scale_mode!r}")
        if scale_fn is not None and not callable(scale_fn):
            raise TypeError(f"scale_fn must be callable, got {scale_fn!r}")
        return dict(attrs, max_lr=max_lr, _max_lrs=group_values(max_lr, n_groups, 'max_lr'),
                    step_size_up=step_size_up, step_size_down=down, _step_size_down_given=step_size_down,
                    mode=mode, gamma=finite_float(gamma, 'gamma'), scale_fn=scale_fn, scale_mode=scale_mode,
                    cycle_momentum=bool(cycle_momentum), **_momenta(base_momentum, max_momentum, n_groups))

    def _current_config(self):
        return dict(super()._current_config(), step_size_down=self._step_size_down_given)

    def reconfigure(self, **changes):
        if 'step_size_down' in changes:          # given explicitly now: no longer follows step_size_up
            self._step_size_down_given = changes['step_size_down']
        super().reconfigure(**changes)

    @property
    def max_lrs(self):
        """braintools: the upper learning rates, one per group."""
        return list(self._max_lrs)

    def _scale(self, epoch, cycle):
        if self.scale_fn is not None:
            # torch: a custom scale_fn takes the cycle or the iteration as scale_mode says
            argument = cycle if self.scale_mode == 'cycle' else epoch
            return jnp.asarray(self.scale_fn(argument), float_dtype())
        if self.mode == 'triangular':
            return jnp.asarray(1.0, float_dtype())
        if self.mode == 'triangular2':
            return jnp.power(jnp.asarray(0.5, float_dtype()), (cycle - 1).astype(float_dtype()))
        return jnp.power(jnp.asarray(self.gamma, float_dtype()), epoch.astype(float_dtype()))

    def _position(self, epoch):
        """``(x, amplitude scale)`` at ``epoch``: the triangle's height in [0, 1] and sigma."""
        epoch = jnp.asarray(epoch, jnp.int32)
        total = self.step_size_up + self.step_size_down
        position = epoch % total
        cycle = 1 + epoch // total
        p = position.astype(float_dtype())
        x = jnp.where(position <= self.step_size_up, p / self.step_size_up,
                      (total - p) / self.step_size_down)
        return x, self._scale(epoch, cycle)

    def _formula(self, epoch):
        x, scale = self._position(epoch)
        base, top = self._base(), self._groups(self._max_lrs)
        return base + (top - base) * x * scale

    def _momentum_at(self, epoch):
        x, scale = self._position(epoch)
        low, high = self._groups(self._base_momentum), self._groups(self._max_momentum)
        return high - (high - low) * x * scale


#: OneCycleLR's ``convention`` choices.
ONE_CYCLE_CONVENTIONS = ('braintools', 'torch')


class OneCycleLR(_MomentumCycle, LRScheduler):
    r"""The 1cycle policy (Smith & Topin 2017), in braintools' form (default) or torch's.

    With ``initial = max_lr / div_factor``, ``W = pct_start * total_steps``
    and a phase from :math:`a` to :math:`b` at fraction :math:`t`
    (``'cos'``: :math:`b + (a - b)(1 + \cos \pi t)/2`, ``'linear'``: :math:`a + (b - a) t`):

    * ``convention='braintools'`` (default, braintools' ``OneCycleLR``): the
      learning rate rises **linearly** from ``initial`` to ``max_lr`` over the
      first ``W`` steps, then anneals with ``anneal_strategy`` to
      ``max_lr / final_div_factor`` at step ``total_steps`` and stays there.
    * ``convention='torch'`` (``torch.optim.lr_scheduler.OneCycleLR``): it
      rises to ``max_lr`` at step ``W - 1`` with ``anneal_strategy`` (a cosine
      warm-up for ``'cos'``), then anneals to ``initial / final_div_factor`` at
      step ``total_steps - 1``. ``three_phase=True`` (torch only) rises, falls
      back to ``initial`` symmetrically (until step ``2W - 2``), then anneals
      to the minimum. torch raises past ``total_steps``; a compiled step
      cannot, so the counter is clamped there (the value torch gives at
      ``total_steps`` is kept).

    With ``cycle_momentum=True`` (torch's default; off here, as braintools has
    no momentum cycling), :attr:`current_momentum` goes from ``max_momentum``
    to ``base_momentum`` while the learning rate rises, and back while it
    falls, with the same phase boundaries and shapes (three phases:
    ``max -> base -> max -> max``).

    ``base_lr`` (and ``base_lrs``) is ``initial`` (torch's ``initial_lr``).

    Args:
        max_lr: peak learning rate (float, or list per group).
        total_steps: length of the cycle, or give ``epochs`` and ``steps_per_epoch``.
        epochs: number of epochs (with ``steps_per_epoch``).
        steps_per_epoch: steps per epoch (with ``epochs``).
        pct_start: fraction of the cycle spent rising, in ``[0, 1)``.
        anneal_strategy: ``'cos'`` or ``'linear'``.
        div_factor: ``initial = max_lr / div_factor``.
        final_div_factor: the final learning rate is ``max_lr / final_div_factor``
            (braintools) or ``initial / final_div_factor`` (torch).
        last_epoch: initial value of the counter.
        convention: ``'braintools'`` or ``'torch'`` (keyword only).
        three_phase: torch's three-phase variant (keyword only; torch convention).
        cycle_momentum: expose :attr:`current_momentum` (keyword only; torch: ``True``).
        base_momentum: lower momentum (float or per-group list; keyword only).
        max_momentum: upper momentum (float or per-group list; keyword only).

    >>> kw = dict(max_lr=1.0, total_steps=5, pct_start=0.4, anneal_strategy='linear', div_factor=10.0,
    ...           final_div_factor=10.0)
    >>> [round(float(lr), 6) for lr in OneCycleLR(**kw)([0, 1, 2, 3, 4, 5])]
    [0.1, 0.55, 1.0, 0.7, 0.4, 0.1]
    >>> [round(float(lr), 6) for lr in OneCycleLR(**kw, convention='torch')([0, 1, 2, 3, 4])]
    [0.1, 1.0, 0.67, 0.34, 0.01]
    """

    def __init__(self, max_lr: Any = 1e-2, total_steps: Optional[int] = None, epochs: Optional[int] = None,
                 steps_per_epoch: Optional[int] = None, pct_start: float = 0.3, anneal_strategy: str = 'cos',
                 div_factor: float = 25.0, final_div_factor: float = 1e4, last_epoch: int = 0, *,
                 convention: str = 'braintools', three_phase: bool = False, cycle_momentum: bool = False,
                 base_momentum: Any = 0.85, max_momentum: Any = 0.95):
        self._setup(None, last_epoch, max_lr=max_lr, total_steps=total_steps,
                         epochs=epochs, steps_per_epoch=steps_per_epoch, pct_start=pct_start,
                         anneal_strategy=anneal_strategy, div_factor=div_factor, final_div_factor=final_div_factor,
                         convention=convention, three_phase=three_phase, cycle_momentum=cycle_momentum,
                         base_momentum=base_momentum, max_momentum=max_momentum)

    def _configure(self, base_lr=None, *, max_lr, total_steps, epochs, steps_per_epoch, pct_start, anneal_strategy,
                   div_factor, final_div_factor, convention, three_phase, cycle_momentum, base_momentum,
                   max_momentum):
        given = total_steps
        if total_steps is None:
            if epochs is None or steps_per_epoch is None:
                raise ValueError("OneCycleLR needs total_steps or both epochs and steps_per_epoch")
            total_steps = positive_int(epochs, 'epochs') * positive_int(steps_per_epoch, 'steps_per_epoch')
        total_steps = positive_int(total_steps, 'total_steps')
        if not 0.0 <= finite_float(pct_start, 'pct_start') < 1.0:
            raise ValueError(f"pct_start must be in [0, 1) (1 would leave no annealing phase), got {pct_start!r}")
        if anneal_strategy not in ('cos', 'linear'):
            raise ValueError(f"anneal_strategy must be 'cos' or 'linear', got {anneal_strategy!r}")
        if not finite_float(div_factor, 'div_factor') > 0.0 or not finite_float(final_div_factor,
                                                                                 'final_div_factor') > 0.0:
            raise ValueError("div_factor and final_div_factor must be > 0")
        if convention not in ONE_CYCLE_CONVENTIONS:
            raise ValueError(f"convention must be one of {ONE_CYCLE_CONVENTIONS}, got {convention!r}")
        if three_phase and convention != 'torch':
            raise ValueError("three_phase=True is torch's variant: pass convention='torch' with it")
        max_lrs, per_group = lr_list(max_lr, 'max_lr')
        initial = [m / float(div_factor) for m in max_lrs]
        attrs = super()._configure(initial if per_group else initial[0])
        final = initial if convention == 'torch' else max_lrs
        attrs.update(max_lr=max_lr, _max_lrs=max_lrs, total_steps=total_steps, _total_steps_given=given,
                     epochs=epochs, steps_per_epoch=steps_per_epoch, pct_start=float(pct_start),
                     anneal_strategy=anneal_strategy, div_factor=float(div_factor),
                     final_div_factor=float(final_div_factor), convention=convention, three_phase=bool(three_phase),
                     cycle_momentum=bool(cycle_momentum), _initial=initial,
                     _min=[f / float(final_div_factor) for f in final],
                     **_momenta(base_momentum, max_momentum, len(max_lrs)))
        attrs['_phases'] = self._phase_table(attrs)
        return attrs

    def _current_config(self):
        config = {name: self.__dict__[name] for name in self.hyperparameter_names()}
        config['total_steps'] = self._total_steps_given
        return config

    def reconfigure(self, **changes):
        if 'total_steps' in changes:
            self._total_steps_given = changes['total_steps']
        super().reconfigure(**changes)

    @staticmethod
    def _phase_table(attrs):
        """Phases as ``(end step, lr from, lr to, momentum from, momentum to, linear warm-up?)``."""
        total, pct = attrs['total_steps'], attrs['pct_start']
        if attrs['convention'] == 'braintools':
            warm = pct * total
            return [(warm, 'initial', 'max', 'max_m', 'base_m', True),
                    (float(total), 'max', 'min', 'base_m', 'max_m', False)]
        rise_end = float(pct * total) - 1
        if attrs['three_phase']:
            return [(rise_end, 'initial', 'max', 'max_m', 'base_m', False),
                    (float(2 * pct * total) - 2, 'max', 'initial', 'base_m', 'max_m', False),
                    (total - 1.0, 'initial', 'min', 'max_m', 'max_m', False)]
        return [(rise_end, 'initial', 'max', 'max_m', 'base_m', False),
                (total - 1.0, 'max', 'min', 'base_m', 'max_m', False)]

    @property
    def max_lrs(self):
        """braintools: the peak learning rates, one per group."""
        return list(self._max_lrs)

    @property
    def min_lrs(self):
        """braintools: the final learning rates, one per group."""
        return list(self._min)

    def _values(self, key):
        return self._groups({'initial': self._initial, 'max': self._max_lrs, 'min': self._min,
                             'base_m': self._base_momentum, 'max_m': self._max_momentum}[key])

    def _anneal(self, epoch, lr: bool):
        step = jnp.clip(jnp.asarray(epoch, jnp.int32), 0, self.total_steps).astype(float_dtype())
        ends = [phase[0] for phase in self._phases]
        begins = [0.0] + ends[:-1]
        index = sum((step > end).astype(jnp.int32) for end in ends[:-1])
        begin = jnp.asarray(np.asarray(begins), float_dtype())[index]
        length = jnp.asarray(np.asarray(ends) - np.asarray(begins), float_dtype())[index]
        pct = jnp.where(length <= 0, 1.0, (step - begin) / jnp.where(length <= 0, 1.0, length))
        if self.convention == 'braintools':
            pct = jnp.clip(pct, 0.0, 1.0)     # torch's is not clipped: its value at total_steps is kept
        first, second = (1, 2) if lr else (3, 4)
        starts = jnp.stack([self._values(phase[first]) for phase in self._phases])[index]
        stops = jnp.stack([self._values(phase[second]) for phase in self._phases])[index]
        linear_phase = jnp.asarray([phase[5] or self.anneal_strategy == 'linear' for phase in self._phases])[index]
        cosine = stops + (starts - stops) / 2.0 * (jnp.cos(math.pi * pct) + 1.0)
        linear = (stops - starts) * pct + starts
        return jnp.where(linear_phase, linear, cosine)

    def _formula(self, epoch):
        return self._anneal(epoch, lr=True)

    def _momentum_at(self, epoch):
        return self._anneal(epoch, lr=False)
