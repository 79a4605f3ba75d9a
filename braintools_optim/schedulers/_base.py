"""The learning-rate scheduler protocol.

A scheduler is a pure function ``lr_at(epoch)`` of a counter kept in a
brainstate :class:`~brainstate.State`. The optimizer reads ``current_lr``
(= ``lr_at(last_epoch.value)``) *inside* its compiled step, so stepping the
scheduler, eagerly or under ``jit``/``scan``, changes the applied learning
rate without re-tracing anything.

Stepping follows torch: ``scheduler.step()`` advances the counter by one and
``scheduler.get_last_lr()`` reads the learning rate it now gives.
"""

from __future__ import annotations

import math
from typing import List

import brainstate
import jax
import jax.numpy as jnp


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


class LRScheduler:
    """Base class: a learning rate that is a pure function of a step counter in State.

    Subclasses implement :meth:`lr_at`, a traceable function of an integer
    array. Everything else (the counter, ``step``, ``current_lr``,
    ``get_last_lr``, ``state_dict``) is here.

    Args:
        base_lr: the learning rate the schedule starts from and scales.
        last_epoch: the counter's initial value (0: before the first ``step``).
    """

    def __init__(self, base_lr: float = 1e-3, last_epoch: int = 0):
        self.base_lr = check_learning_rate(base_lr, 'base_lr')
        self.last_epoch = brainstate.LongTermState(
            jnp.asarray(last_epoch, dtype=jnp.int32), name=f'{type(self).__name__}.last_epoch')

    def lr_at(self, epoch: jax.Array) -> jax.Array:
        """The learning rate after ``epoch`` calls of :meth:`step` (traceable)."""
        raise NotImplementedError

    def __call__(self, epoch) -> jax.Array:
        """optax-style: the learning rate at ``epoch`` (does not change state)."""
        return jnp.asarray(self.lr_at(jnp.asarray(epoch, jnp.int32)), dtype=float_dtype())

    @property
    def current_lr(self) -> jax.Array:
        """The learning rate the next optimizer update applies (read from State)."""
        return self(self.last_epoch.value)

    def step(self) -> None:
        """Advance the schedule by one epoch (or step). Works eagerly and under jit/scan."""
        self.last_epoch.value = self.last_epoch.value + 1

    def get_last_lr(self) -> List:
        """torch-compatible: the current learning rate, as a one-element list."""
        return [self.current_lr]

    def state_dict(self) -> dict:
        return {'last_epoch': self.last_epoch.value}

    def load_state_dict(self, state: dict) -> None:
        self.last_epoch.value = jnp.asarray(state['last_epoch'], dtype=jnp.int32)


class StepLR(LRScheduler):
    r"""Decay by ``gamma`` every ``step_size`` epochs: :math:`\eta_e = \eta_0\,\gamma^{\lfloor e/s \rfloor}`.

    >>> sched = StepLR(base_lr=0.1, step_size=2, gamma=0.5)
    >>> lrs = []
    >>> for _ in range(5):
    ...     lrs.append(round(float(sched.current_lr), 6)); sched.step()
    >>> lrs
    [0.1, 0.1, 0.05, 0.05, 0.025]
    """

    def __init__(self, base_lr: float = 1e-3, step_size: int = 1, gamma: float = 0.1, last_epoch: int = 0):
        if int(step_size) < 1:
            raise ValueError(f"step_size must be a positive integer, got {step_size!r}")
        super().__init__(base_lr, last_epoch)
        self.step_size = int(step_size)
        self.gamma = float(gamma)

    def lr_at(self, epoch):
        exponent = (epoch // self.step_size).astype(float_dtype())
        return self.base_lr * jnp.power(self.gamma, exponent)
