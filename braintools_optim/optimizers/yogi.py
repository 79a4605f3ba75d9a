"""Yogi (optax ``yogi`` conventions)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.yogi import yogi


class Yogi(Optimizer):
    r"""Yogi (Zaheer et al. 2018): Adam with an additive second-moment update.

    After the common gradient processing (rescale, clip by value, clip by
    global norm, then **coupled** weight decay :math:`g \leftarrow g + \lambda\theta`,
    as braintools)::

        m_0 = v_0 = a
        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
        v_t = v_{t-1} - (1 - \beta_2)\operatorname{sign}(v_{t-1} - g_t^2)\, g_t^2
        \theta_t = \theta_{t-1} - \eta_t \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    Conventions: optax ``yogi`` (and braintools, which uses it): both moments
    start at ``initial_accumulator_value`` :math:`a = 10^{-6}` and are
    bias-corrected, :math:`\epsilon = 10^{-3}` outside the root. The paper's
    Algorithm 2 has no bias correction. torch has no Yogi.

    Args:
        lr: learning rate (float or LRScheduler), default 1e-3.
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``, default (0.9, 0.999).
        eps: :math:`\epsilon > 0`, default 1e-3, in the gradient's unit.
        weight_decay: coupled L2 coefficient :math:`\lambda`, default 0.
        eps_root: :math:`\epsilon_{root} \ge 0` inside the root (keyword only), default 0.
        initial_accumulator_value: :math:`a \ge 0` (keyword only), default 1e-6.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.yogi import Yogi
    >>> w = brainstate.ParamState(jnp.array([1.0, -1.0]))
    >>> opt = Yogi(lr=0.1).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([0.5, -2.0])})   # about -lr * sign(g)
    >>> [round(x, 2) for x in w.value.tolist()]
    [0.9, -0.9]
    """


    hyperparameters = {
        'betas': Hyper(checks.betas(2), cycled=0),       # a cycling scheduler drives betas[0]
        'eps': Hyper(checks.positive),
        'eps_root': Hyper(checks.non_negative),
        'initial_accumulator_value': Hyper(checks.non_negative),
    }

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-3, weight_decay: float = 0.0, grad_clip_norm=None,
                 grad_clip_value=None, *,
                 eps_root: float = 0.0, initial_accumulator_value: float = 1e-6, **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        return yogi(h.betas[0], h.betas[1], h.eps, h.eps_root, h.initial_accumulator_value)
