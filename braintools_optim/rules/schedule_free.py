r"""Schedule-Free SGD and AdamW (Defazio et al. 2024), as pure math, optax conventions.

Three sequences: :math:`z` (the base optimizer's iterate), :math:`x` (the weighted
average of the :math:`z`'s, the point to *evaluate* at) and
:math:`y = (1-\beta)z + \beta x` (the point where gradients are taken). The
parameter the rule updates is :math:`y`; :math:`z` is a buffer, and :math:`x` is
recovered from them as :math:`x = (y - (1-\beta) z)/\beta` (so :math:`\beta > 0`).

With interpolation :math:`\beta`, learning rate :math:`\eta_t`, optional linear
warm-up over :math:`W` steps and averaging power :math:`p`, at step :math:`t \ge 1`::

    \gamma_t = \eta_t \min(1, t/W)              (\gamma_t = \eta_t without warm-up)
    \gamma^{max}_t = \max(\gamma^{max}_{t-1}, \gamma_t),   w_t = (\gamma^{max}_t)^p
    S_t = S_{t-1} + w_t,   c_t = w_t / S_t     (0 while S_t = 0)
    z_t = z_{t-1} - \gamma_t d_t
    x_t = (1 - c_t) x_{t-1} + c_t z_t
    y_t = \beta x_t + (1 - \beta) z_t

with the SGD direction :math:`d_t = g_t` (the stateful layer has added any coupled
decay :math:`\lambda y` to :math:`g`) or the AdamW direction::

    v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2
    d_t = g_t / (\sqrt{v_t / (1 - \beta_2^t)} + \epsilon) + \lambda y_{t-1}

``lr_max`` (:math:`\gamma^{max}`) and ``weight_sum`` (:math:`S`) only depend on the
learning rate; they are kept as scalar buffers per parameter, so each parameter
group keeps its own (as torch's reference implementation keeps them per group).
"""

from __future__ import annotations

import jax.numpy as jnp

from ._base import UpdateRule, as_dtype, bias_correction, is_zero
from ._scheduled import scalar


def averaged_point(y, z, b1):
    r"""The evaluation point :math:`x = (y - (1 - \beta) z) / \beta`.

    >>> import jax.numpy as jnp
    >>> float(averaged_point(jnp.float32(1.0), jnp.float32(2.0), 0.5))   # y = 0.5 x + 0.5 z
    0.0
    """
    return (y - (1.0 - b1) * z) / b1


def _schedule_free(name, direction_fn, extra_buffers, b1, weight_lr_power, warmup_steps):
    names = ('z',) + extra_buffers + ('lr_max', 'weight_sum')

    def init(param):
        buffers = {'z': jnp.array(param, copy=True), 'lr_max': jnp.zeros((), param.dtype),
                   'weight_sum': jnp.zeros((), param.dtype)}
        buffers.update({name: jnp.zeros_like(param) for name in extra_buffers})
        return buffers

    def update(grad, buffers, param, lr, count):
        dtype = param.dtype
        t = as_dtype(count, dtype)
        lr = as_dtype(lr, dtype)
        if warmup_steps:
            lr = lr * jnp.minimum(1.0, t / warmup_steps)
        lr_max = jnp.maximum(buffers['lr_max'], lr)
        weight = lr_max ** weight_lr_power
        weight_sum = buffers['weight_sum'] + weight
        ck = jnp.where(weight_sum > 0.0, weight / jnp.where(weight_sum > 0.0, weight_sum, 1.0), 0.0)
        direction, new_buffers = direction_fn(grad, buffers, param, t)
        z_old = buffers['z']
        z = z_old - lr * direction
        x = averaged_point(param, z_old, b1)
        x = (1.0 - ck) * x + ck * z
        y = b1 * x + (1.0 - b1) * z
        new_buffers.update(z=z, lr_max=lr_max, weight_sum=weight_sum)
        return y - param, new_buffers

    units = {'z': (0, 1), 'exp_avg_sq': (2, 0), 'lr_max': (0, 0), 'weight_sum': (0, 0)}
    return UpdateRule(name, names, init, update, {n: units[n] for n in names})


def schedule_free_sgd(b1: float = 0.9, weight_lr_power: float = 2.0, warmup_steps: int = 0) -> UpdateRule:
    """Schedule-Free SGD rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = schedule_free_sgd(b1=0.9)
    >>> p = jnp.array([1.0]); buffers = rule.init(p)
    >>> delta, buffers = rule.update(jnp.array([1.0]), buffers, p, 0.5, 1)
    >>> float(buffers['z'][0]), float((p + delta)[0])   # c_1 = 1: x_1 = z_1 = y_1 = 1 - lr * g
    (0.5, 0.5)
    """
    def direction(grad, buffers, param, t):
        return grad, {}

    return _schedule_free('schedule_free_sgd', direction, (), b1, weight_lr_power, warmup_steps)


def schedule_free_adamw(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8, weight_decay: float = 0.0,
                        weight_lr_power: float = 2.0, warmup_steps: int = 0) -> UpdateRule:
    """Schedule-Free AdamW rule; see the module docstring for the formula.

    >>> import jax.numpy as jnp
    >>> rule = schedule_free_adamw()
    >>> p = jnp.array([1.0, -1.0]); buffers = rule.init(p)
    >>> delta, buffers = rule.update(jnp.array([3.0, -0.5]), buffers, p, 0.1, 1)
    >>> [round(x, 6) for x in (p + delta).tolist()]       # first step: -lr * sign(g)
    [0.9, -0.9]
    """
    def direction(grad, buffers, param, t):
        exp_avg_sq = b2 * buffers['exp_avg_sq'] + (1.0 - b2) * grad * grad
        normalised = grad / (jnp.sqrt(exp_avg_sq / bias_correction(b2, t)) + eps)
        if not is_zero(weight_decay):
            normalised = normalised + scalar(weight_decay, normalised.dtype) * param
        return normalised, {'exp_avg_sq': exp_avg_sq}

    return _schedule_free('schedule_free_adamw', direction, ('exp_avg_sq',), b1, weight_lr_power, warmup_steps)
