"""Splitting parameters and gradients into (mantissa, unit) and back.

Every update rule runs on plain arrays. This module is the only place that
looks at ``brainunit`` units:

* a parameter is split into its mantissa in its own (storage) unit, and the
  new mantissa is re-wrapped in exactly that unit;
* a gradient is accepted in either of brainstate's conventions and turned into
  the mantissa of :math:`\\partial L / \\partial \\theta_{mantissa}`:

  - labelled (``brainstate.transform.grad`` default): the gradient carries the
    parameter's unit, e.g. ``mV`` for a parameter in ``mV``;
  - unit-aware (``unit_aware=True``): the gradient carries loss unit /
    parameter unit, e.g. ``1/mV`` for a dimensionless loss.

  Anything else (a plain array for a parameter in mV, seconds for a parameter
  in mV, ...) is a unit mismatch.
"""

from __future__ import annotations

from typing import Any, Optional, Tuple

import brainunit as u
import jax

Array = jax.Array


def is_quantity(x: Any) -> bool:
    return isinstance(x, u.Quantity)


def split(value: Any) -> Tuple[Array, Optional[u.Unit]]:
    """``(mantissa, unit)`` of a parameter value; ``unit`` is ``None`` for a plain array."""
    if is_quantity(value):
        return value.mantissa, value.unit
    return value, None


def merge(mantissa: Array, unit: Optional[u.Unit]) -> Any:
    """Inverse of :func:`split`: wrap a mantissa back into exactly ``unit``."""
    if unit is None:
        return mantissa
    return u.Quantity(mantissa, unit=unit)


def _dim(unit: Optional[u.Unit]):
    return u.DIMENSIONLESS if unit is None else unit.dim


def gradient_unit(grad_unit: Optional[u.Unit], param_unit: Optional[u.Unit]) -> Optional[u.Unit]:
    """The unit a gradient is converted to before its mantissa is taken.

    ``param_unit`` for labelled gradients, ``1/param_unit`` for unit-aware
    ones, ``None`` for a dimensionless parameter. In either convention the
    mantissa in that unit is :math:`\\partial L / \\partial \\theta_{mantissa}`, so
    the two conventions give the same numbers. Raises ``ValueError`` (without
    the parameter path; the caller adds it) when the unit fits neither.
    """
    param_dim = _dim(param_unit)
    grad_dim = _dim(grad_unit)
    if param_dim == u.DIMENSIONLESS:
        if grad_dim != u.DIMENSIONLESS:
            raise ValueError(f"gradient has unit {grad_unit} but the parameter is dimensionless")
        return None
    if grad_dim == param_dim:
        return param_unit
    if grad_dim == param_dim ** -1:
        return param_unit ** -1
    got = 'no unit' if grad_unit is None else f"unit {grad_unit}"
    raise ValueError(f"gradient has {got} but the parameter is in {param_unit}; expected "
                     f"{param_unit} (brainstate's default) or {param_unit ** -1} (unit_aware=True)")


def to_mantissa(value: Any, unit: Optional[u.Unit]) -> Array:
    """The magnitude of ``value`` in ``unit`` (``None``: dimensionless, scale folded in)."""
    if not is_quantity(value):
        return value
    return value.to_decimal(unit if unit is not None else u.UNITLESS)


def power_product(*factors: Tuple[Optional[u.Unit], int]) -> Optional[u.Unit]:
    """``unit_1 ** power_1 * unit_2 ** power_2 ...``; ``None`` stands for no unit."""
    result = None
    for unit, power in factors:
        if unit is None or power == 0:
            continue
        term = unit ** power
        result = term if result is None else result * term
    return result
