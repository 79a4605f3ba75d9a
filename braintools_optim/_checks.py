"""Argument checks shared by every optimizer constructor (clear errors, early)."""

from __future__ import annotations

import math


def _is_tracer(value) -> bool:
    import jax
    return isinstance(value, jax.core.Tracer)


def _number(name: str, value) -> float:
    if isinstance(value, bool) or type(value).__name__ == 'bool_':
        raise TypeError(f"{name} must be a number, got {value!r}")
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
    if _is_tracer(value):                    # built inside a trace (meta-learning): checked by the caller's jit
        return value
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


def boolean(name: str, value) -> bool:
    """``True`` or ``False`` (NumPy booleans too); ``'False'``, ``0`` or ``None`` are refused, not guessed."""
    if isinstance(value, bool):
        return value
    if type(value).__name__ == 'bool_':                 # numpy.bool_
        return bool(value)
    raise TypeError(f"{name} must be True or False, got {value!r}")


def betas(count: int, *, open_zero: bool = False):
    """A check for a tuple of ``count`` coefficients, each in ``[0, 1)`` (``(0, 1)`` with ``open_zero``)."""

    def check(name: str, value) -> tuple:
        try:
            values = tuple(value)
        except TypeError:
            raise TypeError(f"{name} must be a tuple of {count} numbers, got {value!r}") from None
        if len(values) != count:
            raise ValueError(f"{name} must have {count} entries, got {value!r}")
        out = tuple(unit_interval(f'{name}[{i}]', b) for i, b in enumerate(values))
        if open_zero and out[0] == 0.0:
            raise ValueError(f"{name}[0] must be > 0, got {value!r}")
        return out

    return check


def optional(check):
    """``check`` that also lets ``None`` through."""

    def checked(name: str, value):
        return None if value is None else check(name, value)

    return checked


def one_of(*options):
    """A check that the value is one of ``options`` (compared with ``==``)."""

    def check(name: str, value):
        if isinstance(value, bool) or value not in options:
            raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}")
        return value

    return check


def number(name: str, value) -> float:
    """Any finite number."""
    return _number(name, value)


def at_least_int(minimum: int):
    """A check for an integer ``>= minimum``."""

    def check(name: str, value) -> int:
        if isinstance(value, bool) or not hasattr(value, '__index__') and not (
                isinstance(value, float) and value.is_integer()):
            raise TypeError(f"{name} must be an integer, got {value!r}")
        number = int(value)
        if number < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
        return number

    return check


def float_dtype():
    """The default float dtype: float64 under ``jax_enable_x64``, else float32."""
    import jax.numpy as jnp
    return jnp.result_type(float)


def learning_rate(name: str, value) -> float:
    """A finite, non-negative real number; booleans are refused (``lr=True`` is a bug, not 1.0)."""
    import jax
    if isinstance(value, jax.core.Tracer):
        return value
    if isinstance(value, bool) or type(value).__name__ == 'bool_':
        raise TypeError(f"{name} must be a float or an LRScheduler, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a float or an LRScheduler, got {value!r}") from None
    if not math.isfinite(number) or number < 0.0:
        raise ValueError(f"{name} (a learning rate) must be a finite number >= 0, got {value!r}")
    return number
