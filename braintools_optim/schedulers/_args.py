"""Argument checks and the counter's range, shared by every scheduler (clear errors, early)."""

from __future__ import annotations

import math
from typing import List, Tuple

import jax
import numpy as np

from .. import _checks

#: The largest counter value: counters are int32 and saturate here instead of wrapping.
MAX_EPOCH = 2 ** 31 - 1


float_dtype = _checks.float_dtype


def _is_tracer(value) -> bool:
    return isinstance(value, jax.core.Tracer)


def check_learning_rate(value, what: str = 'lr') -> float:
    """Reject negative, NaN, infinite and boolean learning rates with a clear error (tracers pass)."""
    return _checks.learning_rate(what, value)


def finite_float(value, what: str) -> float:
    """A finite float (any sign; booleans refused)."""
    return _checks.number(what, value)


def _is_sequence(value) -> bool:
    return isinstance(value, (list, tuple)) or (isinstance(value, np.ndarray) and value.ndim == 1)


def lr_list(value, what: str) -> Tuple[List[float], bool]:
    """``(list of checked floats, is_per_group)`` for a float or a list of floats."""
    if _is_sequence(value):
        values = [check_learning_rate(v, what) for v in value]
        if not values:
            raise ValueError(f"{what} must not be an empty list")
        return values, True
    return [check_learning_rate(value, what)], False


def group_values(value, n_groups: int, what: str, check=None) -> List[float]:
    """Broadcast a float, or check a list, to ``n_groups`` floats (finite)."""
    if _is_sequence(value):
        values = [finite_float(v, what) for v in value]
        if len(values) != n_groups:
            raise ValueError(f"{what} has {len(values)} entries, but there are {n_groups} parameter groups")
    else:
        values = [finite_float(value, what)] * n_groups
    if check is not None:
        for v in values:
            check(v)
    return values


def positive_int(value, what: str, allow_zero: bool = False) -> int:
    """Check a (non-negative / positive) integer argument."""
    try:
        integral = not isinstance(value, bool) and int(value) == value
    except (TypeError, ValueError, OverflowError):
        integral = False
    if not integral:
        raise TypeError(f"{what} must be an integer, got {value!r}")
    value = int(value)
    if value < 0 or (value == 0 and not allow_zero):
        raise ValueError(f"{what} must be a {'non-negative' if allow_zero else 'positive'} integer, got {value}")
    return value


def check_epoch(value, what: str = 'epoch') -> int:
    """A concrete counter value: an integer in ``[0, MAX_EPOCH]`` (never wrapped into int32)."""
    array = np.asarray(value)
    if array.ndim != 0:
        raise ValueError(f"{what} must be a scalar, got shape {array.shape}")
    if array.dtype == bool or not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    number = array.item()
    if isinstance(number, float) and (not math.isfinite(number) or number != int(number)):
        raise TypeError(f"{what} must be an integer, got {value!r}")
    number = int(number)
    if number < 0:
        raise ValueError(f"{what} must be >= 0, got {number}")
    if number > MAX_EPOCH:
        raise ValueError(f"{what} = {number} does not fit the int32 step counter (max {MAX_EPOCH}); "
                         f"it is refused rather than wrapped")
    return number


def initial_epoch(last_epoch) -> int:
    """The constructor's ``last_epoch``: torch's ``-1`` ("not started") means 0, as after torch's first step."""
    if not _is_tracer(last_epoch) and np.ndim(last_epoch) == 0 and last_epoch == -1 \
            and not isinstance(last_epoch, bool):
        return 0
    return check_epoch(last_epoch, 'last_epoch')
