r"""Adafactor (Shazeer & Stern 2018), as pure math.

With decay exponent :math:`c` (``decay_rate``), :math:`\epsilon_1, \epsilon_2`, clip
threshold :math:`d`, optional :math:`\beta_1`, step :math:`t \ge 1` and learning
rate :math:`\eta_t`::

    \hat\beta_{2,t} = 1 - t^{-c}                         (0 at t = 1: V_1 = G_1^2 + \epsilon_1)
    G^2 = g_t^2 + \epsilon_1

For a parameter with at least two dimensions (``factored=True``), only the row
and column means of :math:`G^2` over the **last two** axes are kept (leading
axes are batch axes)::

    R_t = \hat\beta_{2,t} R_{t-1} + (1 - \hat\beta_{2,t}) \operatorname{mean}_{-1}(G^2)     (shape[:-1])
    C_t = \hat\beta_{2,t} C_{t-1} + (1 - \hat\beta_{2,t}) \operatorname{mean}_{-2}(G^2)     (shape[:-2] + shape[-1:])
    \hat V_t = R_t C_t / \operatorname{mean}(R_t)         (outer product over the last two axes)

otherwise :math:`\hat V_t = \hat\beta_{2,t} \hat V_{t-1} + (1 - \hat\beta_{2,t}) G^2`. Then::

    U_t = g_t / \sqrt{\hat V_t}
    \hat U_t = U_t / \max(1, \operatorname{RMS}(U_t) / d)          (update clipping; skipped if d is None)
    \rho_t = \eta_t                                   (relative_step=False)
    \rho_t = \min(\eta_t, 1/\sqrt t)                  (relative_step=True)
    \rho_t = \min(\eta_t, 10^{-6} t, 1/\sqrt t)       (relative_step=True, warmup_init=True)
    \alpha_t = \max(\epsilon_2, \operatorname{RMS}(\theta_{t-1})) \rho_t     (scale_parameter; else \alpha_t = \rho_t)
    m_t = \beta_1 m_{t-1} + (1 - \beta_1) \alpha_t \hat U_t     (beta1 given; else m_t = \alpha_t \hat U_t)
    \theta_t = \theta_{t-1} - m_t

With :math:`\eta_t = 10^{-2}` the relative step is the paper's
:math:`\min(10^{-2}, 1/\sqrt t)` (and :math:`\min(10^{-6}t, 1/\sqrt t)` with warmup): the
learning rate is the cap of the relative step, as in ``torch.optim.Adafactor``.
Factoring normalises by the mean of :math:`R` rather than by its sum over rows
times the column count; the two are the same estimate.

The RMS statistics and the factored moments are per tensor, so the engine runs
this rule on each parameter separately. Buffers not used by a parameter (the
full ``exp_avg_sq`` of a factored matrix, the row/column factors of a vector)
are kept as zero scalars.
"""

from __future__ import annotations

from typing import Optional

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype
from ._scheduled import scalar


def _rms(x):
    return jnp.sqrt(jnp.mean(x * x))


def adafactor(decay_rate: float = 0.8, eps1: float = 1e-30, eps2: float = 1e-3,
              clip_threshold: Optional[float] = 1.0, beta1: Optional[float] = None, factored: bool = True,
              scale_parameter: bool = True, relative_step: bool = True,
              warmup_init: bool = False) -> UpdateRule:
    """Adafactor rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = adafactor(relative_step=False, scale_parameter=False)
    >>> p = jnp.zeros((2, 3)); g = jnp.array([[1.0, 2.0, -2.0], [0.5, 1.0, -1.0]])
    >>> buffers = rule.init(p)
    >>> buffers['exp_avg_sq_row'].shape, buffers['exp_avg_sq_col'].shape, buffers['exp_avg_sq'].shape
    ((2,), (3,), ())
    >>> delta, buffers = rule.update(g, buffers, p, 0.1, 1)
    >>> [round(x, 4) for x in (delta / 0.1).ravel().tolist()]   # -sign(g): exact for a rank-1 g**2
    [-1.0, -1.0, 1.0, -1.0, -1.0, 1.0]
    """
    names = ('exp_avg_sq_row', 'exp_avg_sq_col', 'exp_avg_sq') + (() if beta1 is None else ('exp_avg',))

    def is_factored(param):
        return factored and param.ndim >= 2

    def init(param):
        scalar = jnp.zeros((), param.dtype)
        if is_factored(param):
            buffers = {'exp_avg_sq_row': jnp.zeros(param.shape[:-1], param.dtype),
                       'exp_avg_sq_col': jnp.zeros(param.shape[:-2] + param.shape[-1:], param.dtype),
                       'exp_avg_sq': scalar}
        else:
            buffers = {'exp_avg_sq_row': scalar, 'exp_avg_sq_col': scalar,
                       'exp_avg_sq': jnp.zeros_like(param)}
        if beta1 is not None:
            buffers['exp_avg'] = jnp.zeros_like(param)
        return buffers

    def update(grad, buffers, param, lr, count):
        dtype = grad.dtype
        t = as_dtype(count, dtype)
        beta2 = -jnp.expm1(-decay_rate * jnp.log(t))           # 1 - t ** -c, exactly 0 at t = 1
        squared = grad * grad + eps1
        new_buffers = dict(buffers)
        if is_factored(param):
            row = beta2 * buffers['exp_avg_sq_row'] + (1.0 - beta2) * jnp.mean(squared, axis=-1)
            col = beta2 * buffers['exp_avg_sq_col'] + (1.0 - beta2) * jnp.mean(squared, axis=-2)
            row_factor = 1.0 / jnp.sqrt(row / jnp.mean(row, axis=-1, keepdims=True))
            col_factor = 1.0 / jnp.sqrt(col)
            scaled = grad * row_factor[..., :, None] * col_factor[..., None, :]
            new_buffers.update(exp_avg_sq_row=row, exp_avg_sq_col=col)
        else:
            second = beta2 * buffers['exp_avg_sq'] + (1.0 - beta2) * squared
            scaled = grad / jnp.sqrt(second)
            new_buffers.update(exp_avg_sq=second)
        if clip_threshold is not None:
            scaled = scaled / jnp.maximum(1.0, _rms(scaled) / clip_threshold)
        step = as_dtype(lr, dtype)
        if relative_step:
            step = jnp.minimum(step, 1.0 / jnp.sqrt(t))
            if warmup_init:
                step = jnp.minimum(step, 1e-6 * t)
        if scale_parameter:
            step = step * jnp.maximum(eps2, _rms(param)).astype(dtype)
        scaled = step * scaled
        if beta1 is not None:
            b1 = scalar(beta1, dtype)              # a scheduler's cycled momentum arrives traced
            scaled = b1 * buffers['exp_avg'] + (1.0 - b1) * scaled
            new_buffers['exp_avg'] = scaled
        return -scaled, new_buffers

    units = {'exp_avg_sq_row': (2, 0), 'exp_avg_sq_col': (2, 0), 'exp_avg_sq': (2, 0), 'exp_avg': (0, 1)}
    return UpdateRule('adafactor', names, init, update, {name: units[name] for name in names})
