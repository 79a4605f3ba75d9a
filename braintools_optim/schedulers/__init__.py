"""Learning-rate schedulers: stateful, traceable, torch / optax / braintools compatible.

Every scheduler keeps its position in brainstate ``State`` and computes the
learning rate with traceable ``jnp`` code, so it can be stepped eagerly or
inside ``brainstate.transform.jit`` / ``for_loop`` and read by an optimizer's
compiled update without re-tracing. See ``docs/schedulers.md``.
"""

from ._base import LRScheduler, StepLR
from ._composite import ChainedScheduler, SequentialLR
from ._cyclic import CyclicLR, OneCycleLR
from ._epoch import (ConstantLR, CosineAnnealingLR, CosineAnnealingWarmRestarts, ExponentialLR, LambdaLR,
                     LinearLR, MultiplicativeLR, MultiStepLR, PolynomialLR)
from ._plateau import ReduceLROnPlateau
from ._warmup import ExponentialDecayLR, PiecewiseConstantSchedule, WarmupCosineSchedule, WarmupScheduler
from .plot import plot, schedule_values

#: Keyword arguments that switch a scheduler from braintools' behaviour (the default) to torch's.
_TORCH_OPTIONS = {
    'CosineAnnealingLR': {'past_T_max': 'cosine'},
    'CyclicLR': {'cycle_momentum': True},
    'OneCycleLR': {'convention': 'torch', 'cycle_momentum': True},
}


def torch_options(scheduler) -> dict:
    """The keyword arguments that give ``torch.optim.lr_scheduler``'s behaviour (a fresh dict).

    Where braintools and torch differ without either being a bug, the default
    is braintools' (``docs/migration_schedulers.md``); these switch to torch's:
    ``CosineAnnealingLR(..., **torch_options('CosineAnnealingLR'))`` continues the
    cosine past ``T_max``, and ``OneCycleLR`` / ``CyclicLR`` follow torch's
    curve and cycle the momentum. Other schedulers already match torch: ``{}``.

    >>> torch_options('OneCycleLR')
    {'convention': 'torch', 'cycle_momentum': True}
    >>> torch_options(StepLR)
    {}
    """
    name = scheduler if isinstance(scheduler, str) else scheduler.__name__
    if name not in __all__:
        raise ValueError(f"unknown scheduler {name!r}")
    return dict(_TORCH_OPTIONS.get(name, {}))


__all__ = [
    'LRScheduler', 'StepLR', 'MultiStepLR', 'ConstantLR', 'LinearLR', 'ExponentialLR', 'PolynomialLR',
    'CosineAnnealingLR', 'CosineAnnealingWarmRestarts', 'CyclicLR', 'OneCycleLR', 'ReduceLROnPlateau',
    'LambdaLR', 'MultiplicativeLR', 'ChainedScheduler', 'SequentialLR', 'WarmupScheduler',
    'WarmupCosineSchedule', 'ExponentialDecayLR', 'PiecewiseConstantSchedule', 'plot', 'schedule_values',
    'torch_options',
]
