r"""Adam (and AMSGrad), as pure math.

With :math:`\beta_1, \beta_2`, step :math:`t \ge 1` and learning rate :math:`\eta_t`::

    m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
    v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2
    \hat v_t = max(\hat v_{t-1}^{max}, v_t)     (AMSGrad only; otherwise \hat v_t = v_t)

Default ("torch/optax") epsilon placement, after bias correction::

    \theta_t = \theta_{t-1} - \eta_t \frac{m_t / (1 - \beta_1^t)}
                                          {\sqrt{\hat v_t / (1 - \beta_2^t) + \epsilon_{root}} + \epsilon}

``eps_hat=True`` ("epsilon hat", Kingma & Ba section 2; Keras, MXNet and neon)::

    \theta_t = \theta_{t-1} - \eta_t \frac{\sqrt{1 - \beta_2^t}}{1 - \beta_1^t}
                                     \frac{m_t}{\sqrt{\hat v_t + \epsilon_{root}} + \epsilon}

Both bias corrections use their own beta: :math:`1-\beta_1^t` for m and
:math:`1-\beta_2^t` for v. (neon's Adam docstring writes :math:`\beta_1` in the
correction of v; that is a typo, its code uses :math:`\beta_2`, as we do.)

AMSGrad follows torch: the running maximum is taken over the raw :math:`v_t`
and divided by the current bias correction. optax instead takes the maximum of
the bias-corrected :math:`v_t/(1-\beta_2^t)`; the two differ.
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, bias_correction, zeros_like_buffers
from ._scheduled import scalar


def adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, eps_root: float = 0.0,
         amsgrad: bool = False, eps_hat: bool = False) -> UpdateRule:
    """Adam rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = adam()
    >>> p = jnp.array([1.0, -2.0]); g = jnp.array([0.5, -3.0])
    >>> delta, buffers = rule.update(g, rule.init(p), p, 0.1, 1)
    >>> [round(x, 4) for x in delta.tolist()]   # the first Adam step is -lr * sign(g)
    [-0.1, 0.1]
    >>> sorted(buffers)
    ['exp_avg', 'exp_avg_sq']
    """
    names = ('exp_avg', 'exp_avg_sq') + (('max_exp_avg_sq',) if amsgrad else ())

    def update(grad, buffers, param, lr, count):
        dtype = grad.dtype
        t = as_dtype(count, dtype)
        beta1 = scalar(b1, dtype)           # a cycled beta1 arrives traced (float64 under x64)
        exp_avg = beta1 * buffers['exp_avg'] + (1.0 - beta1) * grad
        exp_avg_sq = b2 * buffers['exp_avg_sq'] + (1.0 - b2) * grad * grad
        new_buffers = {'exp_avg': exp_avg, 'exp_avg_sq': exp_avg_sq}
        second = exp_avg_sq
        if amsgrad:
            second = jnp.maximum(buffers['max_exp_avg_sq'], exp_avg_sq)
            new_buffers['max_exp_avg_sq'] = second
        correction1 = bias_correction(beta1, t)
        correction2 = bias_correction(b2, t)
        lr = as_dtype(lr, dtype)
        if eps_hat:
            step_size = lr * jnp.sqrt(correction2) / correction1
            delta = -step_size * exp_avg / (jnp.sqrt(second + eps_root) + eps)
        else:
            delta = -(lr / correction1) * exp_avg / (jnp.sqrt(second / correction2 + eps_root) + eps)
        return delta, new_buffers

    units = {'exp_avg': (1, 0), 'exp_avg_sq': (2, 0), 'max_exp_avg_sq': (2, 0)}
    return UpdateRule('adam', names, zeros_like_buffers(names), update,
                      {name: units[name] for name in names}, elementwise=True)
