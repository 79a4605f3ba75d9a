"""Composite schedulers: ChainedScheduler (product of factors) and SequentialLR (one after another).

Both are driven by their own counter: stepping the composite moves its
children's counters too (so their ``last_epoch`` reads as torch's would), but
the learning rate is always computed from the composite's counter. Step the
composite, not its children.
"""

from __future__ import annotations

import bisect
from typing import List, Sequence

import jax.numpy as jnp
import numpy as np

from ._base import LRScheduler, _plain, float_dtype, positive_int
from ._plateau import ReduceLROnPlateau

__all__ = ['ChainedScheduler', 'SequentialLR']


def _check_children(schedulers, what: str) -> List[LRScheduler]:
    schedulers = list(schedulers)
    if not schedulers:
        raise ValueError(f"{what} needs at least one scheduler")
    for index, child in enumerate(schedulers):
        if not isinstance(child, LRScheduler):
            raise TypeError(f"{what}: element {index} is not an LRScheduler, got {type(child).__name__}")
        if isinstance(child, ReduceLROnPlateau):
            raise TypeError(f"{what} does not support ReduceLROnPlateau (element {index}): it is stepped "
                            f"with a metric (as in torch)")
    groups = {child.num_groups for child in schedulers}
    per_group = {child.per_group for child in schedulers}
    if len(groups) > 1 or len(per_group) > 1:
        raise ValueError(f"{what}: all schedulers must have the same parameter groups, got "
                         f"{[child.base_lr for child in schedulers]}")
    if len({id(child) for child in schedulers}) != len(schedulers):
        raise ValueError(f"{what}: the same scheduler object is listed twice")
    return schedulers


class _Composite(LRScheduler):
    """Common machinery: children, a base learning rate taken from the first child, nested checkpoints."""

    schedulers: List[LRScheduler]
    _compile_eager_step = True

    def __init__(self, schedulers: List[LRScheduler], last_epoch: int, optimizer=None, **hyper):
        object.__setattr__(self, 'schedulers', schedulers)
        self._setup(None, last_epoch, **hyper)
        self.optimizer = optimizer

    def _configure(self, base_lr=None, **hyper):
        if hyper:
            raise TypeError(f"{type(self).__name__} got unexpected hyper-parameters {sorted(hyper)}")
        return {}

    # The base learning rate is the first child's (followed live, should the child be reconfigured).
    @property
    def base_lrs(self) -> List[float]:
        return list(self.schedulers[0].base_lrs)

    @property
    def base_lr(self):
        return self.schedulers[0].base_lr

    @property
    def _per_group(self) -> bool:
        return self.schedulers[0].per_group

    def _base(self):
        return self.schedulers[0]._base()

    def state_dict(self) -> dict:
        state = super().state_dict()
        state['schedulers'] = [child.state_dict() for child in self.schedulers]
        return state

    def _check_state_dict(self, state):
        values = super()._check_state_dict(state)
        children = state.get('schedulers')
        if not isinstance(children, (list, tuple)) or len(children) != len(self.schedulers):
            raise ValueError(f"{type(self).__name__} state_dict['schedulers'] must be a list of "
                             f"{len(self.schedulers)} child state dicts")
        for child, child_state in zip(self.schedulers, children):
            child._check_state_dict(child_state)
        return values

    def load_state_dict(self, state_dict: dict) -> None:
        """Restore :meth:`state_dict` output, children included; raises, changing nothing, if it does not fit."""
        values = self._check_state_dict(state_dict)
        with self._transaction():
            for child, child_state in zip(self.schedulers, state_dict['schedulers']):
                child.load_state_dict(child_state)
            self._load_checked(state_dict, values)


class ChainedScheduler(_Composite):
    r"""Apply several schedulers at once: the product of their factors on ``base_lr``.

    .. math:: \eta_e = \eta_0 \prod_i \frac{\eta^{(i)}_e}{\eta^{(i)}_0}

    where :math:`\eta^{(i)}_e` is child ``i``'s learning rate at epoch ``e`` and
    :math:`\eta^{(i)}_0` its ``base_lr``; :math:`\eta_0` is the first child's
    ``base_lr`` (in torch every child shares the optimizer's initial lr).
    ``step()`` steps every child. This is braintools' definition.

    It is also exactly what torch's ``ChainedScheduler`` produces when every
    child is *multiplicative* in torch's chainable form: :class:`StepLR`,
    :class:`MultiStepLR`, :class:`ConstantLR`, :class:`LinearLR`,
    :class:`ExponentialLR`, :class:`PolynomialLR`, :class:`MultiplicativeLR`,
    and :class:`CosineAnnealingLR` with ``eta_min=0`` up to ``T_max``. torch
    chains other schedulers (``LambdaLR``, ``CyclicLR``, ``OneCycleLR``,
    ``CosineAnnealingLR`` with ``eta_min > 0`` or past ``T_max``) by letting
    each overwrite or shift the running lr in turn; here they still
    contribute their ratio to ``base_lr`` as above, which is well defined but
    not torch's order-dependent result. ``ReduceLROnPlateau`` is not accepted
    (torch rejects it too). Every child needs a non-zero ``base_lr``.

    Args:
        schedulers: the schedulers to chain (same parameter groups).
        optimizer: ignored unless given: the optimizer it is attached to (keyword only).

    >>> from braintools_optim.schedulers import ConstantLR, ExponentialLR
    >>> sched = ChainedScheduler([ConstantLR(1.0, factor=0.5, total_iters=2), ExponentialLR(1.0, gamma=0.9)])
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3])]
    [0.5, 0.45, 0.81, 0.729]
    """

    def __init__(self, schedulers: Sequence[LRScheduler], *, optimizer=None):
        schedulers = _check_children(schedulers, 'ChainedScheduler')
        for index, child in enumerate(schedulers):
            if any(b == 0.0 for b in child.base_lrs):
                raise ValueError(f"ChainedScheduler: scheduler {index} has a zero base_lr; its factor is undefined")
        epochs = {int(child.last_epoch.value) for child in schedulers}
        if len(epochs) > 1:
            raise ValueError(f"ChainedScheduler: the schedulers' last_epoch differ ({sorted(epochs)})")
        super().__init__(schedulers, epochs.pop(), optimizer)

    def _combine(self, lrs) -> jnp.ndarray:
        lr = self._base()
        for child, child_lr in zip(self.schedulers, lrs):
            base = child._base()
            safe = jnp.where(base != 0, base, 1.0)
            lr = lr * jnp.where(base != 0, jnp.asarray(child_lr, float_dtype()) / safe, 0.0)
        return lr

    def _formula(self, epoch):
        return self._combine([child.lr_at(epoch) for child in self.schedulers])

    def _lr_from_state(self):
        return jnp.asarray(self._combine([child._lr_from_state() for child in self.schedulers]), float_dtype())

    def _set_epoch(self, epoch) -> None:
        super()._set_epoch(epoch)
        for child in self.schedulers:
            child._set_epoch(epoch)


class SequentialLR(_Composite):
    r"""Run schedulers one after another, switching at ``milestones`` (torch semantics).

    With ``k = #{m in milestones : m <= e}`` (torch's ``bisect_right``),

    .. math:: \eta_e = \eta^{(k)}_{\,e - m_{k-1}} \qquad (m_{-1} = 0)

    i.e. scheduler ``k`` runs from its own epoch 0 when milestone ``k - 1`` is
    reached: torch resets it with ``step(0)`` there and steps it afterwards;
    here each ``step()`` sets the active child's counter to
    ``e - m_{k-1}`` (so at a milestone it is reset to 0), and the inactive
    children's counters are left as they are. The values match torch's
    ``SequentialLR`` (and braintools') for the closed-form schedulers (torch's
    ``MultiplicativeLR`` after a milestone continues from the previous lr; this
    one restarts from its ``base_lr``). ``ReduceLROnPlateau`` is not accepted
    (torch rejects it too).

    ``current_scheduler_idx`` (braintools) is the index of the active child
    (an int32 array; traced under ``jit``). ``state_dict()`` carries the
    ``milestones``; loading one saved with other milestones (as many) adopts them.

    Args:
        schedulers: the schedulers, ``len(milestones) + 1`` of them (same parameter groups).
        milestones: increasing epochs at which to switch to the next scheduler.
        last_epoch: initial value of the counter.
        optimizer: ignored unless given: the optimizer it is attached to (keyword only).

    >>> from braintools_optim.schedulers import ConstantLR, ExponentialLR
    >>> sched = SequentialLR([ConstantLR(1.0, factor=0.1, total_iters=5), ExponentialLR(1.0, gamma=0.5)],
    ...                      milestones=[2])
    >>> [round(float(lr), 6) for lr in sched([0, 1, 2, 3, 4])]
    [0.1, 0.1, 1.0, 0.5, 0.25]
    """

    def __init__(self, schedulers: Sequence[LRScheduler], milestones: Sequence[int], last_epoch: int = 0, *,
                 optimizer=None):
        schedulers = _check_children(schedulers, 'SequentialLR')
        super().__init__(schedulers, last_epoch, optimizer, milestones=milestones)
        # torch: only the scheduler active at the initial epoch is (re)started.
        self._resync()

    def _configure(self, base_lr=None, milestones=()):
        if isinstance(milestones, (str, bytes)) or not hasattr(milestones, '__iter__'):
            raise TypeError(f"SequentialLR milestones must be a list of integers, got {milestones!r}")
        milestones = [positive_int(m, 'milestone', allow_zero=True) for m in np.asarray(milestones).reshape(-1)]
        if len(milestones) != len(self.schedulers) - 1:
            raise ValueError(f"SequentialLR expects len(milestones) == len(schedulers) - 1, got "
                             f"{len(milestones)} milestones for {len(self.schedulers)} schedulers")
        if milestones != sorted(milestones):
            raise ValueError(f"SequentialLR milestones must be increasing, got {milestones}")
        return {'milestones': milestones}

    @property
    def n_schedulers(self) -> int:
        """braintools: the number of child schedulers."""
        return len(self.schedulers)

    @property
    def current_scheduler_idx(self) -> jnp.ndarray:
        """braintools: the index of the active child scheduler (int32; traceable)."""
        return self._run_compiled('_index_now')

    def _index_now(self):
        return self._index_offset(self.last_epoch.value)[0]

    def _resync(self) -> None:
        """Restart the active child where the composite's counter says it is (eager)."""
        start = int(self.last_epoch.value)
        index = bisect.bisect_right(self.milestones, start)
        offset = 0 if index == 0 else self.milestones[index - 1]
        self.schedulers[index]._set_epoch(jnp.asarray(start - offset, jnp.int32))

    def _on_reconfigure(self) -> None:
        self._resync()

    def _index_offset(self, epoch):
        epoch = jnp.asarray(epoch, jnp.int32)
        if not self.milestones:
            return jnp.zeros((), jnp.int32), jnp.zeros((), jnp.int32)
        milestones = np.asarray(self.milestones, np.int32)
        index = jnp.sum(epoch >= milestones).astype(jnp.int32)
        offsets = jnp.asarray(np.concatenate([[0], milestones]), jnp.int32)
        return index, offsets[index]

    def _formula(self, epoch):
        index, offset = self._index_offset(epoch)
        local = jnp.asarray(epoch, jnp.int32) - offset
        lrs = jnp.stack([jnp.asarray(child.lr_at(local), float_dtype()) for child in self.schedulers])
        return lrs[index]

    def _lr_from_state(self):
        index, _ = self._index_offset(self.last_epoch.value)
        lrs = jnp.stack([jnp.asarray(child._lr_from_state(), float_dtype()) for child in self.schedulers])
        return lrs[index]

    def _set_epoch(self, epoch) -> None:
        super()._set_epoch(epoch)
        epoch = self.last_epoch.value
        index, offset = self._index_offset(epoch)
        for k, child in enumerate(self.schedulers):
            child._set_epoch(jnp.where(index == k, epoch - offset, child.last_epoch.value))

    def _check_state_dict(self, state):
        if isinstance(state, dict) and state.get('milestones') is not None:
            saved = np.asarray(state['milestones']).reshape(-1)
            if saved.size != len(self.schedulers) - 1:
                raise ValueError(f"cannot load a state_dict with {saved.size} milestones into a SequentialLR of "
                                 f"{len(self.schedulers)} schedulers (it expects {len(self.schedulers) - 1} "
                                 f"milestones)")
        return super()._check_state_dict(state)

    def _derived_entries(self):
        return dict(super()._derived_entries(), milestones=list(self.milestones),
                    current_scheduler_idx=_plain(self._run_compiled('_index_now'), int))

    def _adopt_config(self, state):
        changes = super()._adopt_config(state)
        if state.get('milestones') is not None:
            saved = [int(m) for m in np.asarray(state['milestones']).reshape(-1)]
            if saved != self.milestones:
                changes['milestones'] = saved
        return changes

    def _check_derived(self, state):
        super()._check_derived(state)
        saved = state.get('current_scheduler_idx')
        if saved is not None and int(np.asarray(saved)) != int(self._run_compiled('_index_now')):
            raise ValueError(f"SequentialLR state_dict['current_scheduler_idx'] = {saved!r} does not match its "
                             f"last_epoch and milestones")
