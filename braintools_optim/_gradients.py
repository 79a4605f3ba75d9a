"""Checking a gradient dict against the registered parameters.

:func:`check_gradients` runs in Python before anything is computed or
written, so a bad ``update`` raises with parameters and optimizer state
exactly as they were. Every error names the offending parameter path.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, List, Optional, Sequence

import brainunit as u
import jax
import numpy as np

from . import _units
from ._registry import Key, path_str


class GradientMismatchError(ValueError):
    """The gradients do not match the registered parameters (keys, shapes, dtypes or units)."""


def _describe_keys(keys) -> str:
    return ', '.join(repr(path_str(k)) for k in keys)


def check_gradients(keys: Sequence[Key], params: Sequence[Any], grads: Any) -> List[Optional[u.Unit]]:
    """Validate ``grads`` against the parameters; return each gradient's target unit.

    ``params`` are the current parameter values (possibly Quantities) in the
    order of ``keys``. The returned units are what :func:`gradient_mantissas`
    converts each gradient to (see :func:`braintools_optim._units.gradient_unit`).
    Only metadata is inspected: no array is computed.
    """
    if not isinstance(grads, Mapping):
        raise TypeError(f"update() takes a dict of parameter path -> gradient (keyed like "
                        f"opt.param_states); got {type(grads).__name__}")
    missing = [k for k in keys if k not in grads]
    if missing or len(grads) != len(keys):
        registered = set(keys)
        extra = [k for k in grads if k not in registered]
        parts = []
        if missing:
            parts.append(f"missing gradients for {_describe_keys(missing)}")
        if extra:
            parts.append(f"gradients for unregistered parameters {_describe_keys(extra)} "
                         f"(register them, or leave them out of grads to keep them frozen)")
        raise GradientMismatchError('; '.join(parts))

    target_units = []
    for key, param in zip(keys, params):
        grad = grads[key]
        if type(grad) is not type(param) or not isinstance(grad, jax.Array):
            target_units.append(_check_one(key, param, grad))       # units, numpy, wrong types
        elif grad.shape != param.shape or grad.dtype != param.dtype:
            _check_one(key, param, grad)                             # raises with the details
        else:
            target_units.append(None)                                # the common case: plain arrays
    return target_units


def _check_one(key: Key, param: Any, grad: Any) -> Optional[u.Unit]:
    where = path_str(key)
    if not isinstance(grad, (jax.Array, np.ndarray, u.Quantity)):
        raise TypeError(f"gradient for {where!r} must be an array, got {type(grad).__name__}")
    param_mantissa, param_unit = _units.split(param)
    grad_mantissa, grad_unit = _units.split(grad)
    if tuple(grad_mantissa.shape) != tuple(param_mantissa.shape):
        raise GradientMismatchError(f"gradient for {where!r} has shape {tuple(grad_mantissa.shape)}, "
                                    f"parameter has shape {tuple(param_mantissa.shape)}")
    if grad_mantissa.dtype != param_mantissa.dtype:
        raise GradientMismatchError(f"gradient for {where!r} has dtype {grad_mantissa.dtype}, "
                                    f"parameter has dtype {param_mantissa.dtype}")
    try:
        return _units.gradient_unit(grad_unit, param_unit)
    except ValueError as err:
        raise GradientMismatchError(f"unit mismatch for {where!r}: {err}") from None


def gradient_mantissas(keys: Sequence[Key], grads: Mapping, target_units: Sequence[Optional[u.Unit]]
                       ) -> List[jax.Array]:
    """Gradients in key order as plain arrays, each expressed in its target unit."""
    return [_units.to_mantissa(grads[key], unit) for key, unit in zip(keys, target_units)]
