r"""NAdam (Dozat 2016) with torch.optim.NAdam's momentum schedule, as pure math.

With :math:`\beta_1, \beta_2`, :math:`\epsilon`, momentum decay :math:`\psi`, step
:math:`t \ge 1` and learning rate :math:`\eta_t`::

    \mu_t = \beta_1 (1 - \tfrac12 \, 0.96^{t \psi})          (scheduled momentum)
    \Pi_t = \prod_{k=1}^{t} \mu_k                            (buffer ``mu_product``)
    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2
    d_t = \sqrt{v_t / (1 - \beta_2^t)} + \epsilon
    \theta_t = \theta_{t-1} - \eta_t \frac{1 - \mu_t}{1 - \Pi_t} \frac{g_t}{d_t}
                            - \eta_t \frac{\mu_{t+1}}{1 - \Pi_t \mu_{t+1}} \frac{m_t}{d_t}

The running product :math:`\Pi_t` has no closed form; it is kept in a scalar
buffer per parameter (at least float32), like torch's ``state['mu_product']``.
braintools' Nadam evaluates the same schedule differently and differs from torch
by about 1e-4 relative; we follow torch. optax's ``nadam`` is Adam with a fixed
:math:`\beta_1` Nesterov look-ahead (no :math:`\psi`), a different algorithm.
"""

from __future__ import annotations

import math

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, bias_correction
from ._scheduled import scalar


def nadam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8,
          momentum_decay: float = 4e-3) -> UpdateRule:
    """NAdam rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = nadam()
    >>> p = jnp.array([1.0]); g = jnp.array([2.0])
    >>> delta, buffers = rule.update(g, rule.init(p), p, 0.1, 1)
    >>> mu1 = 0.9 * (1 - 0.5 * 0.96 ** 0.004); mu2 = 0.9 * (1 - 0.5 * 0.96 ** 0.008)
    >>> expected = -0.1 * ((1 - mu1) / (1 - mu1) + mu2 * 0.1 / (1 - mu1 * mu2))  # m/g = 0.1, g/d = 1
    >>> abs(float(delta[0]) - expected) < 1e-6, round(float(buffers['mu_product']), 6) == round(mu1, 6)
    (True, True)
    """
    names = ('exp_avg', 'exp_avg_sq', 'mu_product')
    log_096 = math.log(0.96)

    def init(param):
        product_dtype = jnp.promote_types(param.dtype, jnp.float32)
        return {'exp_avg': jnp.zeros_like(param), 'exp_avg_sq': jnp.zeros_like(param),
                'mu_product': jnp.ones((), product_dtype)}

    def update(grad, buffers, param, lr, count):
        dtype = grad.dtype
        product_dtype = buffers['mu_product'].dtype
        t = as_dtype(count, product_dtype)
        mu_scale = scalar(b1, product_dtype)
        mu = mu_scale * (1.0 - 0.5 * jnp.exp(t * (momentum_decay * log_096)))
        mu_next = mu_scale * (1.0 - 0.5 * jnp.exp((t + 1.0) * (momentum_decay * log_096)))
        mu_product = buffers['mu_product'] * mu
        mu_product_next = mu_product * mu_next

        beta1 = scalar(b1, dtype)
        exp_avg = beta1 * buffers['exp_avg'] + (1.0 - beta1) * grad
        exp_avg_sq = b2 * buffers['exp_avg_sq'] + (1.0 - b2) * grad * grad
        correction2 = bias_correction(b2, as_dtype(count, dtype))
        denom = jnp.sqrt(exp_avg_sq / correction2) + eps

        lr = as_dtype(lr, product_dtype)
        grad_coef = (-lr * (1.0 - mu) / (1.0 - mu_product)).astype(dtype)
        avg_coef = (-lr * mu_next / (1.0 - mu_product_next)).astype(dtype)
        delta = grad_coef * grad / denom + avg_coef * exp_avg / denom
        return delta, {'exp_avg': exp_avg, 'exp_avg_sq': exp_avg_sq, 'mu_product': mu_product}

    return UpdateRule('nadam', names, init, update,
                      {'exp_avg': (1, 0), 'exp_avg_sq': (2, 0), 'mu_product': (0, 0)})
