"""Lion (optax ``lion`` / paper conventions)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.lion import lion


class Lion(Optimizer):
    r"""Lion, "EvoLved Sign Momentum" (Chen et al. 2023).

    After the common gradient processing (rescale, clip by value, clip by
    global norm), with **decoupled** weight decay scaled by the current
    learning rate::

        c_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
        \theta_t = \theta_{t-1}(1 - \eta_t\lambda) - \eta_t \operatorname{sign}(c_t)
        m_t = \beta_2 m_{t-1} + (1 - \beta_2) g_t

    Conventions: the paper's Algorithm 2 and optax ``lion`` (same formula; optax
    adds :math:`\lambda\theta` to the update before scaling by the learning
    rate, which is the same decay). Defaults are braintools' (lr 1e-4, betas
    (0.9, 0.99), ``weight_decay=0``; optax's default decay is 1e-3). Every
    element moves by exactly ``lr`` per step, so ``lr`` is typically 3-10x
    smaller than Adam's.

    Args:
        lr: learning rate (float or LRScheduler), default 1e-4; a step length in
            the parameter's unit.
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``, default (0.9, 0.99).
        weight_decay: decoupled coefficient :math:`\lambda`, default 0.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.lion import Lion
    >>> w = brainstate.ParamState(jnp.array([1.0, -1.0]))
    >>> opt = Lion(lr=0.01).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([0.001, -50.0])})   # -lr * sign(g)
    >>> [round(x, 4) for x in w.value.tolist()]
    [0.99, -0.99]
    """

    weight_decay_mode = 'decoupled'

    hyperparameters = {
        'betas': Hyper(checks.betas(2), cycled=0),       # a cycling scheduler drives betas[0]
    }

    def __init__(self, lr=1e-4, betas=(0.9, 0.99), weight_decay: float = 0.0, grad_clip_norm=None,
                 grad_clip_value=None, **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        return lion(h.betas[0], h.betas[1])
