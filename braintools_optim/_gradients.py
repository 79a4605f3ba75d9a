"""Checking gradients against the registered parameters, before anything is computed.

:func:`split_gradients` maps what the user passed to ``update`` (keyed like
``opt.param_states``) onto the registered arrays; :func:`check_gradients`
checks each array's type, shape, dtype and unit. Both run in Python on
metadata only, so a bad ``update`` raises with parameters and optimizer state
exactly as they were. Every error names the parameter unambiguously.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Collection, List, Optional, Sequence

import brainunit as u
import jax
import numpy as np

from . import _keys, _units
from ._errors import GradientMismatchError
from ._registry import Param, ParamRegistry


def _names(keys) -> str:
    return ', '.join(_keys.describe(k) for k in keys)


def _looks_alike(a, b) -> bool:
    norm = lambda k: tuple(str(p) for p in (k if isinstance(k, tuple) else (k,)))
    return norm(a) == norm(b)


def split_gradients(registry: ParamRegistry, grads: Any, frozen: Collection[int] = ()) -> List[Optional[Any]]:
    """One gradient per registered parameter (registry order); ``None`` for frozen ones.

    ``grads`` is a mapping keyed exactly like ``opt.param_states`` (a
    pytree-valued State takes a gradient of the same structure), or, when
    the States were registered as a list, a list or tuple in that order.
    Gradients of frozen parameters may be given or left out.
    """
    states = registry.states()
    if isinstance(grads, (list, tuple)) and list(states) == list(range(len(states))):
        grads = dict(enumerate(grads))
    if not isinstance(grads, Mapping):
        raise TypeError(f"update() takes a dict of parameter key -> gradient, keyed like opt.param_states "
                        f"({_names(list(states)[:3])}{', ...' if len(states) > 3 else ''}); "
                        f"got {type(grads).__name__}")
    grads = _unnest(grads, states)
    frozen = set(frozen)
    params = registry.params
    needed = {}
    for i, param in enumerate(params):
        if i not in frozen:
            needed.setdefault(param.key, []).append(i)
    missing = [key for key in needed if key not in grads]
    extra = [key for key in grads if key not in states]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"missing gradients for {_names(missing)}")
        if extra:
            parts.append(f"gradients for unregistered parameters {_names(extra)} (register them, or leave "
                         f"them out of grads to keep them frozen)")
        hints = [f"{_keys.describe(e)} looks like {_keys.describe(m)}" for e in extra for m in missing
                 if _looks_alike(e, m)]
        if hints:
            parts.append("keys must be exactly those of opt.param_states: " + '; '.join(hints))
        raise GradientMismatchError('; '.join(parts))

    out: List[Optional[Any]] = [None] * len(params)
    for key, indices in needed.items():
        grad = grads[key]
        tree = registry.tree_of(key)
        if tree is None:
            out[indices[0]] = grad
            continue
        treedef, members = tree
        leaves, grad_treedef = jax.tree.flatten(grad, is_leaf=_units.is_quantity)
        if grad_treedef != treedef:
            raise GradientMismatchError(f"gradient for {_keys.describe(key)} has structure {grad_treedef}, "
                                        f"the parameter has {treedef}")
        for i, leaf in zip(members, leaves):
            if i not in frozen:
                out[i] = leaf
    return out


def _unnest(grads: Mapping, states) -> Mapping:
    """Gradients given as the nested tree a nested registration came from, flattened to its path keys."""
    if all(key in states for key in grads):
        return grads
    prefixes = {key[:n] for key in states if isinstance(key, tuple) for n in range(1, len(key))}
    flat = {}

    def walk(prefix, value):
        if prefix in prefixes and isinstance(value, (Mapping, list, tuple)):
            items = value.items() if isinstance(value, Mapping) else enumerate(value)
            for k, v in items:
                walk(prefix + (k,), v)
        else:
            flat[prefix] = value

    for key, value in grads.items():
        if key not in states and (key,) in prefixes:
            walk((key,), value)
        else:
            flat[key] = value
    return flat


def check_gradients(params: Sequence[Param], values: Sequence[Any], grads: Sequence[Any],
                    indices: Sequence[int]) -> List[Optional[u.Unit]]:
    """Validate the gradients of the parameters at ``indices``; return each one's target unit.

    ``values`` are the current parameter values (possibly Quantities). The
    returned units are what :func:`gradient_mantissas` converts each gradient
    to (see :func:`braintools_optim._units.gradient_unit`). Metadata only.
    """
    target_units = []
    for i in indices:
        param, grad = values[i], grads[i]
        if type(grad) is not type(param) or not isinstance(grad, jax.Array):
            target_units.append(_check_one(params[i], param, grad))      # units, numpy, wrong types
        elif grad.shape != param.shape or grad.dtype != param.dtype:
            _check_one(params[i], param, grad)                            # raises with the details
        else:
            target_units.append(None)                                     # plain arrays that fit
    return target_units


def _check_one(param: Param, value: Any, grad: Any) -> Optional[u.Unit]:
    where = param.name
    if not isinstance(grad, (jax.Array, np.ndarray, u.Quantity)):
        raise TypeError(f"gradient for {where} must be an array, got {type(grad).__name__}")
    param_mantissa, param_unit = _units.split(value)
    grad_mantissa, grad_unit = _units.split(grad)
    if tuple(grad_mantissa.shape) != tuple(param_mantissa.shape):
        raise GradientMismatchError(f"gradient for {where} has shape {tuple(grad_mantissa.shape)}, "
                                    f"parameter has shape {tuple(param_mantissa.shape)}")
    if grad_mantissa.dtype != param_mantissa.dtype:
        raise GradientMismatchError(f"gradient for {where} has dtype {grad_mantissa.dtype}, "
                                    f"parameter has dtype {param_mantissa.dtype}")
    try:
        return _units.gradient_unit(grad_unit, param_unit)
    except ValueError as err:
        raise GradientMismatchError(f"unit mismatch for {where}: {err}") from None


def gradient_mantissas(grads: Sequence[Any], indices: Sequence[int], target_units: Sequence[Optional[u.Unit]]
                       ) -> List[jax.Array]:
    """The gradients at ``indices`` as plain arrays, each expressed in its target unit."""
    return [_units.to_mantissa(grads[i], unit) for i, unit in zip(indices, target_units)]
