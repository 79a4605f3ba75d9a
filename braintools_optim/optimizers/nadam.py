"""Nadam (coupled L2 decay) and NAdamW (decoupled decay), torch.optim.NAdam conventions."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.nadam import nadam


class Nadam(Optimizer):
    r"""NAdam: Adam with scheduled Nesterov momentum (Dozat 2016), as torch.optim.NAdam.

    After the common gradient processing (rescale, clip by value, clip by
    global norm, then **coupled** weight decay :math:`g \leftarrow g + \lambda\theta`,
    as torch's default; see :class:`NAdamW` for decoupled decay)::

        \mu_t = \beta_1 (1 - \tfrac12 0.96^{t\psi}),   \Pi_t = \mu_1 \cdots \mu_t
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2
        d_t = \sqrt{v_t / (1 - \beta_2^t)} + \epsilon
        \theta_t = \theta_{t-1} - \eta_t \frac{1 - \mu_t}{1 - \Pi_t} \frac{g_t}{d_t}
                                - \eta_t \frac{\mu_{t+1}}{1 - \Pi_t \mu_{t+1}} \frac{m_t}{d_t}

    Conventions: torch.optim.NAdam (``momentum_decay`` :math:`\psi = 4\cdot10^{-3}`);
    the running product :math:`\Pi_t` is the scalar buffer ``mu_product``.
    braintools' Nadam evaluates this schedule differently and is about 1e-4
    relative away from torch; optax ``nadam`` has no momentum schedule at all
    (Adam with a fixed-:math:`\beta_1` look-ahead). Neither is reproduced.

    Args:
        lr: learning rate (float or LRScheduler), default 2e-3.
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``, default (0.9, 0.999).
        eps: :math:`\epsilon > 0`, default 1e-8, in the gradient's unit.
        weight_decay: coupled L2 coefficient :math:`\lambda`, default 0.
        momentum_decay: :math:`\psi \ge 0`, default 4e-3.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.nadam import Nadam
    >>> w = brainstate.ParamState(jnp.array([1.0]))
    >>> opt = Nadam(lr=0.1).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([2.0])})
    >>> round(float(w.value[0]), 4)      # 1 - 0.1 * (1 + 0.1 * mu_2 / (1 - mu_1 mu_2))
    0.8944
    """


    hyperparameters = {
        'betas': Hyper(checks.betas(2), cycled=0),       # a cycling scheduler drives betas[0]
        'eps': Hyper(checks.positive),
        'momentum_decay': Hyper(checks.non_negative),
    }

    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum_decay: float = 4e-3, grad_clip_norm=None, grad_clip_value=None, **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        return nadam(h.betas[0], h.betas[1], h.eps, h.momentum_decay)


class NAdamW(Nadam):
    r"""NAdam with decoupled weight decay: torch ``NAdam(decoupled_weight_decay=True)``.

    The :class:`Nadam` step without L2 in the gradient; the decay shrinks the
    parameter directly, scaled by the current learning rate (**decoupled**)::

        \theta_t = \theta_{t-1}(1 - \eta_t\lambda) + \Delta^{\text{NAdam}}_t

    Default ``weight_decay=1e-2`` (as :class:`AdamW`; optax ``nadamw`` uses 1e-4).
    optax ``nadamw`` is AdamW with a fixed Nesterov look-ahead, not this.

    Args: as :class:`Nadam`, with ``weight_decay`` decoupled.

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.nadam import NAdamW
    >>> w = brainstate.ParamState(jnp.array([1.0]))
    >>> opt = NAdamW(lr=0.1, weight_decay=0.5).register_trainable_weights([w])
    >>> opt.update({0: jnp.array([0.0])})   # zero gradient: decay only
    >>> round(float(w.value[0]), 6)
    0.95
    """

    weight_decay_mode = 'decoupled'

    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 momentum_decay: float = 4e-3, grad_clip_norm=None, grad_clip_value=None, **options):
        super().__init__(**captured(locals()))


NAdam = Nadam  # torch spelling
