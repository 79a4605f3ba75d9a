r"""AdaBelief (Zhuang et al. 2020), as pure math, optax ``adabelief`` semantics.

With :math:`\beta_1, \beta_2`, :math:`\epsilon, \epsilon_{root}`, step :math:`t \ge 1`
and learning rate :math:`\eta_t`::

    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
    s_t = \beta_2 s_{t-1} + (1 - \beta_2) (g_t - m_t)^2 + \epsilon_{root}
    \theta_t = \theta_{t-1} - \eta_t \frac{m_t / (1 - \beta_1^t)}{\sqrt{s_t / (1 - \beta_2^t)} + \epsilon}

The denominator tracks the "belief" :math:`(g - m)^2`, the deviation of the
gradient from its running mean, instead of :math:`g^2`. :math:`\epsilon_{root}` is
added to the stored :math:`s_t` at every step, as in the paper's Algorithm 2 and
optax (both default to 1e-16, which is below float32 resolution for
:math:`s \gtrsim 10^{-9}`).
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, bias_correction, zeros_like_buffers
from ._scheduled import scalar


def adabelief(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-16,
              eps_root: float = 1e-16) -> UpdateRule:
    """AdaBelief rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = adabelief(b1=0.5, b2=0.5, eps=0.0, eps_root=0.0)
    >>> p = jnp.array([1.0]); g = jnp.array([2.0])
    >>> delta, buffers = rule.update(g, rule.init(p), p, 0.1, 1)
    >>> float(buffers['exp_avg'][0]), float(buffers['exp_avg_sq'][0])   # m = 1, s = 0.5 * (2 - 1)^2
    (1.0, 0.5)
    >>> round(float(delta[0]), 6)    # -0.1 * (1 / 0.5) / sqrt(0.5 / 0.5)
    -0.2
    """
    names = ('exp_avg', 'exp_avg_sq')

    def update(grad, buffers, param, lr, count):
        dtype = grad.dtype
        t = as_dtype(count, dtype)
        beta1 = scalar(b1, dtype)
        exp_avg = (1.0 - beta1) * grad + beta1 * buffers['exp_avg']
        error = grad - exp_avg
        exp_avg_sq = (1.0 - b2) * (error * error) + b2 * buffers['exp_avg_sq'] + eps_root
        corrected_avg = exp_avg / bias_correction(beta1, t)
        corrected_sq = exp_avg_sq / bias_correction(b2, t)
        delta = -as_dtype(lr, dtype) * corrected_avg / (jnp.sqrt(corrected_sq) + eps)
        return delta, {'exp_avg': exp_avg, 'exp_avg_sq': exp_avg_sq}

    return UpdateRule('adabelief', names, zeros_like_buffers(names), update,
                      {'exp_avg': (1, 0), 'exp_avg_sq': (2, 0)}, elementwise=True)
