"""Plot a learning-rate schedule (matplotlib is imported only when plotting)."""

from __future__ import annotations

import copy

from typing import Any, Callable, Optional, Sequence, Union

import jax.numpy as jnp
import numpy as np

from ._base import LRScheduler
from ._plateau import ReduceLROnPlateau

__all__ = ['plot', 'schedule_values']


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as error:  # pragma: no cover - depends on the environment
        raise ImportError(
            "braintools_optim.schedulers.plot needs matplotlib: pip install matplotlib "
            "(or pip install 'braintools-optim[examples]')") from error
    return plt


def schedule_values(schedule: Union[LRScheduler, Callable], steps: int = 100,
                    metrics: Optional[Sequence[float]] = None) -> np.ndarray:
    """The learning rate at epochs ``0 .. steps - 1``: shape ``(steps,)`` or ``(steps, groups)``.

    A scheduler is evaluated from epoch 0 without changing its State. For a
    :class:`ReduceLROnPlateau`, pass ``metrics`` (one per step): it is stepped
    from its initial State with them, and its State is restored afterwards.
    Any other callable is called as ``schedule(step)`` (optax schedules).
    """
    steps = int(steps)
    if isinstance(schedule, ReduceLROnPlateau):
        if metrics is None or len(metrics) < steps - 1:
            raise ValueError("plotting ReduceLROnPlateau needs metrics=[...]: the metric passed after each "
                             "step (steps - 1 of them at least)")
        fresh = copy.deepcopy(schedule)          # the scheduler itself is left as it is
        fresh._restart()
        values = [np.asarray(fresh.current_lr)]
        for metric in list(metrics)[:steps - 1]:
            fresh.step(metric)
            values.append(np.asarray(fresh.current_lr))
        return np.stack(values)
    if isinstance(schedule, LRScheduler):
        return np.asarray(schedule(jnp.arange(steps)))
    if not callable(schedule):
        raise TypeError(f"expected an LRScheduler or a callable schedule, got {schedule!r}")
    return np.stack([np.asarray(schedule(step)) for step in range(steps)])


def plot(schedule: Union[LRScheduler, Callable], steps: int = 100, ax: Any = None,
         metrics: Optional[Sequence[float]] = None, label: Optional[str] = None,
         momentum: bool = False, **plot_kwargs) -> Any:
    """Draw ``schedule``'s learning rate over ``steps`` steps; returns the matplotlib ``Axes``.

    Args:
        schedule: an :class:`LRScheduler` or any ``step -> lr`` callable (e.g. an optax schedule).
        steps: number of steps to draw, from 0.
        ax: the Axes to draw into (a new figure when ``None``).
        metrics: for :class:`ReduceLROnPlateau`, the metric passed at each step.
        label: legend label (default: the class name; one line per parameter group).
        momentum: also draw ``current_momentum`` (CyclicLR / OneCycleLR with
            ``cycle_momentum``) on a twin y-axis.
        **plot_kwargs: passed to ``Axes.plot``.
    """
    plt = _pyplot()
    values = schedule_values(schedule, steps, metrics)
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    name = label or (type(schedule).__name__ if isinstance(schedule, LRScheduler)
                     else getattr(schedule, '__name__', 'schedule'))
    x = np.arange(values.shape[0])
    if values.ndim == 1:
        ax.plot(x, values, label=name, **plot_kwargs)
    else:
        for group in range(values.shape[1]):
            ax.plot(x, values[:, group], label=f'{name} [group {group}]', **plot_kwargs)
    ax.set_xlabel('step')
    ax.set_ylabel('learning rate')
    if momentum and getattr(schedule, 'cycle_momentum', False):
        twin = ax.twinx()
        moments = np.asarray([np.asarray(schedule.momentum_at(e)) for e in range(steps)])
        twin.plot(x, moments, linestyle='--', color='gray', label='momentum')
        twin.set_ylabel('momentum')
    return ax
