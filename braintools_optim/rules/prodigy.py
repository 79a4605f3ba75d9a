r"""Prodigy (Mishchenko & Defazio 2024), as pure math on *all* parameters at once.

Prodigy is Adam with a learning-rate scale :math:`d` estimated on the fly from
global statistics, so it is not a per-parameter :class:`UpdateRule`:
:func:`prodigy_step` takes every parameter together. With :math:`\beta_1, \beta_2`,
:math:`\beta_3` (default :math:`\sqrt{\beta_2}`), :math:`d_0`, coefficient :math:`\kappa`
(``d_coef``), growth limit :math:`\rho`, per-parameter learning rate :math:`\eta_{i,t}`
and decay :math:`\lambda_i`, at step :math:`t \ge 1`::

    b_t = \sqrt{1-\beta_2^t} / (1-\beta_1^t)                       (1 without bias correction)
    \ell_{i,t} = d_{t-1} \eta_{i,t} b_t
    r_t = \beta_3 r_{t-1} + (d_{t-1}/d_0) \sum_i \ell_{i,t} \langle g_i, \theta_{i,0} - \theta_{i,t-1}\rangle
    m_i = \beta_1 m_i + (1-\beta_1) d_{t-1} g_i,   v_i = \beta_2 v_i + (1-\beta_2) d_{t-1}^2 g_i^2
    s_i = \beta_3 s_i + (d_{t-1}/d_0)\, \ell_{i,t}\, g_i      (d_{t-1} in place of \ell_{i,t} with safeguard_warmup)
    \hat d = \kappa\, r_t / \sum_i \lVert s_i\rVert_1,   d_t = \min(\max(d_{t-1}, \hat d), \rho\, d_{t-1})
    \theta_{i,t} = \theta_{i,t-1} - \ell_{i,t} \lambda_i \theta_{i,t-1} - \ell_{i,t}\, m_i / (\sqrt{v_i} + d_t \epsilon)

(:math:`\hat d` is skipped, :math:`d_t = d_{t-1}`, while :math:`\sum_i\lVert s_i\rVert_1 = 0`.)
:math:`r` and :math:`d` are two global scalars; ``exp_avg``, ``exp_avg_sq``, ``s`` and
the initial point ``p0`` are per-parameter buffers.
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, bias_correction, is_zero
from ._scheduled import scalar

BUFFER_NAMES = ('exp_avg', 'exp_avg_sq', 's', 'p0')
BUFFER_UNITS = {'exp_avg': (1, 1), 'exp_avg_sq': (2, 2), 's': (1, 2), 'p0': (0, 1)}


def prodigy_init(param) -> Dict[str, jnp.ndarray]:
    """Per-parameter buffers: zero moments, zero ``s`` and a copy of the initial parameter."""
    zeros = jnp.zeros_like(param)
    return {'exp_avg': zeros, 'exp_avg_sq': zeros, 's': zeros, 'p0': jnp.array(param, copy=True)}


def _not_per_parameter(*args):
    raise NotImplementedError("Prodigy couples all parameters through d; use prodigy_step on all of "
                              "them together (the Prodigy optimizer does)")


#: The buffers of Prodigy as an UpdateRule (its ``update`` refuses: use :func:`prodigy_step`).
PRODIGY_RULE = UpdateRule('prodigy', BUFFER_NAMES, prodigy_init, _not_per_parameter, BUFFER_UNITS)


def prodigy_step(grads: Sequence, params: Sequence, buffers: Dict[str, List], lrs: Sequence,
                 weight_decays: Sequence[float], count, d, d_numerator, *, betas=(0.9, 0.999), beta3=None,
                 eps: float = 1e-8, d0: float = 1e-6, d_coef: float = 1.0, growth_rate: float = math.inf,
                 safeguard_warmup: bool = False, use_bias_correction: bool = True):
    """One Prodigy step on lists of parameters; returns ``(deltas, buffers, d, d_numerator)``.

    ``lrs`` and ``weight_decays`` have one entry per parameter (its group's).

    >>> import jax.numpy as jnp
    >>> p = [jnp.array([1.0, 2.0])]; g = [jnp.array([0.5, -0.5])]
    >>> bufs = {k: [v] for k, v in prodigy_init(p[0]).items()}
    >>> deltas, bufs, d, r = prodigy_step(g, p, bufs, [1.0], [0.0], 1, jnp.float32(1e-6), jnp.float32(0.0))
    >>> bool(d == jnp.float32(1e-6)), float(r)      # at theta_0 the numerator is 0: d stays d0
    (True, 0.0)
    >>> [round(x / 1e-6, 4) for x in deltas[0].tolist()]    # an Adam step of length d * lr
    [-1.0, 1.0]
    """
    b1, b2 = betas
    b3 = math.sqrt(b2) if beta3 is None else beta3
    dtype = d.dtype
    t = as_dtype(count, dtype)
    if use_bias_correction:
        correction = jnp.sqrt(bias_correction(b2, t)) / bias_correction(b1, t)
    else:
        correction = jnp.ones((), dtype)
    dlrs = [d * as_dtype(lr, dtype) * correction for lr in lrs]
    numerator = jnp.zeros((), dtype)
    new = {name: [] for name in BUFFER_NAMES}
    denominator = jnp.zeros((), dtype)
    for i, (grad, param) in enumerate(zip(grads, params)):
        dlr = dlrs[i].astype(grad.dtype)
        d_here = d.astype(grad.dtype)
        scaled = d_here * grad
        p0 = buffers['p0'][i]
        numerator = numerator + ((d / d0) * dlrs[i] * jnp.sum(grad * (p0 - param))).astype(dtype)
        new['exp_avg'].append(b1 * buffers['exp_avg'][i] + (1.0 - b1) * scaled)
        new['exp_avg_sq'].append(b2 * buffers['exp_avg_sq'][i] + (1.0 - b2) * scaled * scaled)
        s_rate = d_here if safeguard_warmup else dlr
        s = b3 * buffers['s'][i] + s_rate * scaled / d0
        new['s'].append(s)
        new['p0'].append(p0)
        denominator = denominator + jnp.sum(jnp.abs(s)).astype(dtype)
    d_numerator = b3 * d_numerator + numerator
    usable = denominator > 0.0
    d_hat = d_coef * d_numerator / jnp.where(usable, denominator, 1.0)
    new_d = jnp.where(usable, jnp.maximum(d, d_hat), d)
    if math.isfinite(growth_rate):
        new_d = jnp.minimum(new_d, d * growth_rate)
    deltas = []
    for i, param in enumerate(params):
        dlr = dlrs[i].astype(param.dtype)
        step = new['exp_avg'][i] / (jnp.sqrt(new['exp_avg_sq'][i]) + new_d.astype(param.dtype) * eps)
        delta = -dlr * step
        if not is_zero(weight_decays[i]):
            delta = delta - scalar(weight_decays[i], param.dtype) * dlr * param
        deltas.append(delta)
    return deltas, new, new_d, d_numerator
