"""The small feedback problem shared by the reference-correctness tests.

Four parameters of different rank (``s: ()``, ``v: (5,)``, ``m: (3, 4)``,
``t: (2, 3, 2)``; 30 numbers) are trained for ``STEPS`` steps on the gradient

    g_k = c * theta_k + noise_k

computed from the optimizer's *own* current parameters, so a wrong update at
one step changes every later gradient. Problems and trajectories travel as
flat vectors over the 30 numbers, parameters concatenated in ``PARAMS`` order.

``scripts/make_torch_golden.py`` builds the same kind of problem for the
torch golden files (it stores the numbers, so this module only has to read
them); the optax and formula tests draw fresh problems with :func:`make_problem`.
"""

from __future__ import annotations

import contextlib
import json
import os
from typing import Callable, Dict, Tuple

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

STEPS = 25
PARAMS = (('s', ()), ('v', (5,)), ('m', (3, 4)), ('t', (2, 3, 2)))
NAMES = tuple(name for name, _ in PARAMS)
SIZE = sum(int(np.prod(shape)) for _, shape in PARAMS)
GOLDEN_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'golden')


def split(flat) -> Dict[str, np.ndarray]:
    """Flat vector (or a stack of them, e.g. noise per step) -> ``{name: array}`` shaped like ``PARAMS``."""
    flat = np.asarray(flat)
    out, start = {}, 0
    for name, shape in PARAMS:
        n = int(np.prod(shape))
        out[name] = flat[..., start:start + n].reshape(flat.shape[:-1] + shape)
        start += n
    assert start == flat.shape[-1] == SIZE
    return out


def flatten(tree: Dict[str, object]) -> np.ndarray:
    """``{name: array}`` -> flat numpy vector in ``PARAMS`` order."""
    return np.concatenate([np.asarray(tree[name]).ravel() for name in NAMES])


def make_problem(seed: int, steps: int = STEPS) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Float64 ``(init, c, noise)``: init ~ N(0, 1.2), c ~ U(0.5, 2), noise ~ N(0, 0.5)."""
    rng = np.random.default_rng(seed)
    init = rng.normal(0.0, 1.2, SIZE)
    c = rng.uniform(0.5, 2.0, SIZE)
    noise = rng.normal(0.0, 0.5, (steps, SIZE))
    return init, c, noise


def precision(dtype):
    """Context for building and running a problem in ``dtype`` (x64 switched on for float64)."""
    if np.dtype(dtype) == np.float64:
        return jax.enable_x64(True)
    return contextlib.nullcontext()


def run_ours(make_optimizer: Callable[[], object], init, c, noise, dtype,
             after_update: Callable[[object], None] = None) -> np.ndarray:
    """Train with a braintools_optim optimizer; return the ``(steps + 1, SIZE)`` trajectory.

    ``make_optimizer`` is called inside the precision context, so the
    optimizer's learning-rate State has the matching float width. Gradients
    are computed eagerly in JAX from the optimizer's current parameters.
    ``after_update(opt)`` runs after every update (e.g. to step a scheduler).
    """
    dtype = np.dtype(dtype)
    with precision(dtype):
        states = {name: brainstate.ParamState(jnp.asarray(value.astype(dtype)))
                  for name, value in split(init).items()}
        coeffs = {name: jnp.asarray(value.astype(dtype)) for name, value in split(c).items()}
        opt = make_optimizer()
        opt.register_trainable_weights(states)
        assert set(opt.param_states) == set(NAMES)
        trajectory = [flatten({n: s.value for n, s in states.items()})]
        for k in range(noise.shape[0]):
            step_noise = split(noise[k].astype(dtype))
            grads = {n: coeffs[n] * states[n].value + jnp.asarray(step_noise[n]) for n in NAMES}
            opt.update(grads)
            if after_update is not None:
                after_update(opt)
            trajectory.append(flatten({n: s.value for n, s in states.items()}))
    out = np.stack(trajectory)
    assert out.dtype == dtype, (out.dtype, dtype)
    return out


def run_loop(step: Callable, init, c, noise, dtype) -> np.ndarray:
    """Trajectory of a plain loop: ``params = step(params, grads, k)`` on ``{name: array}`` dicts.

    Used for optax (jnp arrays) and numpy formula references alike: ``step``
    receives the current parameters and the gradient ``c * theta + noise_k``
    in ``dtype``, both as dicts of jnp arrays, and returns the new parameters.
    """
    dtype = np.dtype(dtype)
    with precision(dtype):
        params = {n: jnp.asarray(v.astype(dtype)) for n, v in split(init).items()}
        coeffs = {n: jnp.asarray(v.astype(dtype)) for n, v in split(c).items()}
        trajectory = [flatten(params)]
        for k in range(noise.shape[0]):
            step_noise = split(noise[k].astype(dtype))
            grads = {n: coeffs[n] * params[n] + jnp.asarray(step_noise[n]) for n in NAMES}
            params = step(params, grads, k)
            trajectory.append(flatten(params))
    out = np.stack(trajectory)
    assert out.dtype == dtype, (out.dtype, dtype)
    return out


def load_golden(family: str):
    """``(meta, arrays)`` of ``tests/golden/torch_<family>.npz`` (written by scripts/make_torch_golden.py)."""
    path = os.path.join(GOLDEN_DIR, f'torch_{family}.npz')
    with np.load(path, allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(str(arrays.pop('meta')))
    assert meta['steps'] == STEPS
    assert [(p['name'], tuple(p['shape'])) for p in meta['params']] == list(PARAMS)
    return meta, arrays
