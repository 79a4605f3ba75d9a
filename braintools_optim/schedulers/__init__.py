"""Learning-rate schedulers (the protocol; the full set is added on top of it)."""

from ._base import LRScheduler, StepLR

__all__ = ['LRScheduler', 'StepLR']
