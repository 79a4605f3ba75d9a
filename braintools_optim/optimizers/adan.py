"""Adan (optax ``adan`` conventions)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.adan import adan


class Adan(Optimizer):
    r"""Adan, adaptive Nesterov momentum (Xie et al. 2022).

    After the common gradient processing (rescale, clip by value, clip by
    global norm), with **decoupled** weight decay scaled by the current
    learning rate::

        \Delta g_t = g_t - g_{t-1}\ (\Delta g_1 = 0)
        m_t = \beta_1 m_{t-1} + (1-\beta_1) g_t,   v_t = \beta_2 v_{t-1} + (1-\beta_2)\Delta g_t
        n_t = \beta_3 n_{t-1} + (1-\beta_3)(g_t + (1-\beta_2)\Delta g_t)^2
        \theta_t = \theta_{t-1}(1 - \eta_t\lambda) - \eta_t
                   \frac{m_t/(1-\beta_1^t) + (1-\beta_2)\, v_t/(1-\beta_2^t)}{\sqrt{n_t/(1-\beta_3^t) + \epsilon_{root}} + \epsilon}

    Conventions: optax ``adan`` (betas in the code convention 0.98, 0.92, 0.99,
    the paper's :math:`1-\beta`; decay :math:`\theta(1-\eta\lambda)`, the official
    code's ``no_prox=True``). The official PyTorch code defaults to the proximal
    decay :math:`\theta \leftarrow (\theta - \eta u)/(1 + \eta\lambda)`, which differs
    at :math:`O((\eta\lambda)^2)`; not offered. torch and braintools have no Adan.

    Args:
        lr: learning rate (float or LRScheduler), default 1e-3.
        betas: :math:`(\beta_1, \beta_2, \beta_3)`, each in ``[0, 1)``, default (0.98, 0.92, 0.99).
        eps: :math:`\epsilon > 0`, default 1e-8, in the gradient's unit.
        weight_decay: decoupled coefficient :math:`\lambda`, default 0.
        eps_root: :math:`\epsilon_{root} \ge 0` inside the root (keyword only), default 0.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.adan import Adan
    >>> w = brainstate.ParamState(jnp.array([1.0, -1.0]))
    >>> opt = Adan(lr=0.1).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([0.5, -2.0])})   # first step: -lr * sign(g)
    >>> [round(x, 4) for x in w.value.tolist()]
    [0.9, -0.9]
    """

    weight_decay_mode = 'decoupled'

    hyperparameters = {
        'betas': Hyper(checks.betas(3), cycled=0),       # a cycling scheduler drives betas[0]
        'eps': Hyper(checks.positive),
        'eps_root': Hyper(checks.non_negative),
    }

    def __init__(self, lr=1e-3, betas=(0.98, 0.92, 0.99), eps: float = 1e-8, weight_decay: float = 0.0,
                 grad_clip_norm=None, grad_clip_value=None, *, eps_root: float = 0.0, **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        return adan(h.betas[0], h.betas[1], h.betas[2], h.eps, h.eps_root)
