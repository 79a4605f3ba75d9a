"""Argument checks shared by every optimizer constructor (clear errors, early)."""

from __future__ import annotations

import math


def _number(name: str, value) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def positive(name: str, value, allow_none: bool = False):
    """``value > 0`` (or ``None`` when allowed)."""
    if value is None and allow_none:
        return None
    number = _number(name, value)
    if number <= 0.0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return number


def non_negative(name: str, value) -> float:
    """``value >= 0``."""
    number = _number(name, value)
    if number < 0.0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return number


def unit_interval(name: str, value, include_one: bool = False) -> float:
    """``0 <= value < 1`` (``<= 1`` with ``include_one``), e.g. betas and decay rates."""
    number = _number(name, value)
    if number < 0.0 or number > 1.0 or (number == 1.0 and not include_one):
        bound = '1]' if include_one else '1)'
        raise ValueError(f"{name} must be in [0, {bound}, got {value!r}")
    return number


def nonzero(name: str, value) -> float:
    """A finite, non-zero number."""
    number = _number(name, value)
    if number == 0.0:
        raise ValueError(f"{name} must be non-zero, got {value!r}")
    return number


def positive_int(name: str, value) -> int:
    """An integer ``>= 1``."""
    if isinstance(value, bool) or not isinstance(value, (int,)) and not (
            hasattr(value, '__index__')):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    number = int(value)
    if number < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return number
