"""The exceptions an optimizer raises for input it cannot use (all subclass ``ValueError``)."""

from __future__ import annotations


class GradientMismatchError(ValueError):
    """The gradients do not match the registered parameters (keys, shapes, dtypes or units)."""


class ParameterChangedError(ValueError):
    """A registered parameter's shape, dtype or unit changed after registration."""


class GroupSelectionError(ValueError):
    """A parameter-group rule matched nothing, or a parameter matched no rule where one is required."""


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the optimizer it is loaded into (nothing was written)."""
