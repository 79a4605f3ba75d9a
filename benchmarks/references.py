"""Hand-written per-array JAX versions of Adam, Lamb, Adafactor and Muon, for the benchmarks.

Each is written from the published update (and the conventions in
``docs/optimizers.md``), independently of ``braintools_optim``: plain functions
on one array at a time, the way one writes an optimizer by hand for a list of
parameters. ``bench_catalog.py`` runs them over a list of arrays inside
``lax.scan`` (50 steps per call) as the per-array baseline of its in-loop
table, and checks that our optimizers end at the same parameters.

Every reference is ``(init(param) -> state, step(param, grad, state, t) ->
(param, state))`` with the hyper-parameters fixed by its factory; ``t`` is the
1-based step number, a traced float32.
"""

from __future__ import annotations

import jax.numpy as jnp

F32 = jnp.float32


def adam(lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    """Adam (Kingma & Ba), bias-corrected moments, eps outside the root."""
    def init(p):
        return jnp.zeros_like(p), jnp.zeros_like(p)

    def step(p, g, state, t):
        m, v = state
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        m_hat = m / (1 - b1 ** t)
        v_hat = v / (1 - b2 ** t)
        return p - lr * m_hat / (jnp.sqrt(v_hat) + eps), (m, v)

    return init, step


def lamb(lr=1e-3, b1=0.9, b2=0.999, eps=1e-6, weight_decay=0.01):
    """LAMB (You et al. 2020): an Adam direction plus decay, scaled per tensor by ||p|| / ||r||."""
    def init(p):
        return jnp.zeros_like(p), jnp.zeros_like(p)

    def step(p, g, state, t):
        m, v = state
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        r = (m / (1 - b1 ** t)) / (jnp.sqrt(v / (1 - b2 ** t)) + eps) + weight_decay * p
        p_norm = jnp.linalg.norm(p)
        r_norm = jnp.linalg.norm(r)
        trust = jnp.where((p_norm > 0) & (r_norm > 0), p_norm / r_norm, 1.0)
        return p - lr * trust * r, (m, v)

    return init, step


def adafactor(lr=1e-2, decay_rate=0.8, eps1=1e-30, eps2=1e-3, clip_threshold=1.0):
    """Adafactor (Shazeer & Stern 2018) with relative step and parameter scaling, no first moment.

    Matrices keep row and column means of ``g^2 + eps1``; vectors keep the full
    second moment. ``rho_t = min(lr, 1/sqrt(t))``, scaled by ``max(eps2, RMS(p))``.
    """
    def init(p):
        if p.ndim >= 2:
            return jnp.zeros(p.shape[:-1], p.dtype), jnp.zeros(p.shape[:-2] + p.shape[-1:], p.dtype)
        return (jnp.zeros_like(p),)

    def step(p, g, state, t):
        beta2 = 1 - t ** (-decay_rate)
        g2 = g * g + eps1
        if p.ndim >= 2:
            row, col = state
            row = beta2 * row + (1 - beta2) * g2.mean(axis=-1)
            col = beta2 * col + (1 - beta2) * g2.mean(axis=-2)
            v_hat = (row / row.mean(axis=-1, keepdims=True))[..., :, None] * col[..., None, :]
            u = g / jnp.sqrt(v_hat)
            state = (row, col)
        else:
            (v,) = state
            v = beta2 * v + (1 - beta2) * g2
            u = g / jnp.sqrt(v)
            state = (v,)
        u = u / jnp.maximum(1.0, jnp.sqrt(jnp.mean(u * u)) / clip_threshold)
        rho = jnp.minimum(lr, 1 / jnp.sqrt(t))
        alpha = jnp.maximum(eps2, jnp.sqrt(jnp.mean(p * p))) * rho
        return p - alpha * u, state

    return init, step


def muon(lr=1e-3, momentum=0.95, weight_decay=0.1, ns_steps=5, eps=1e-7, adam_b1=0.9, adam_b2=0.999,
         adam_eps=1e-8):
    """Muon (Jordan et al. 2024) for matrices, Adam for the rest, decoupled decay ``p (1 - lr wd)``.

    Nesterov momentum (an EMA), quintic Newton–Schulz on the wide orientation,
    step scaled by ``sqrt(max(1, fan_out / fan_in))``.
    """
    a, b, c = 3.4445, -4.7750, 2.0315
    adam_init, adam_step = adam(lr, adam_b1, adam_b2, adam_eps)

    def orthogonalise(x):
        tall = x.shape[0] > x.shape[1]
        if tall:
            x = x.T
        x = x / (jnp.linalg.norm(x) + eps)
        for _ in range(ns_steps):
            s = x @ x.T
            x = a * x + (b * s + c * s @ s) @ x
        return x.T if tall else x

    def init(p):
        return jnp.zeros_like(p) if p.ndim == 2 else adam_init(p)

    def step(p, g, state, t):
        decayed = p * (1 - lr * weight_decay)
        if p.ndim != 2:
            new, state = adam_step(p, g, state, t)
            return decayed + (new - p), state
        buf = momentum * state + (1 - momentum) * g
        u = (1 - momentum) * g + momentum * buf
        scale = max(1.0, p.shape[1] / p.shape[0]) ** 0.5
        return decayed - lr * scale * orthogonalise(u), buf

    return init, step


#: name -> factory, for the optimizers of the same name in ``bench_catalog.CATALOG``
HAND_WRITTEN = {'Adam': adam, 'Lamb': lamb, 'Adafactor': adafactor, 'Muon': muon}
