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

__all__ = [
    'LRScheduler', 'StepLR', 'MultiStepLR', 'ConstantLR', 'LinearLR', 'ExponentialLR', 'PolynomialLR',
    'CosineAnnealingLR', 'CosineAnnealingWarmRestarts', 'CyclicLR', 'OneCycleLR', 'ReduceLROnPlateau',
    'LambdaLR', 'MultiplicativeLR', 'ChainedScheduler', 'SequentialLR', 'WarmupScheduler',
    'WarmupCosineSchedule', 'ExponentialDecayLR', 'PiecewiseConstantSchedule', 'plot', 'schedule_values',
]
