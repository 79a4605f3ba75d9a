"""AdaBelief (optax ``adabelief`` / paper conventions)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.adabelief import adabelief


class AdaBelief(Optimizer):
    r"""AdaBelief (Zhuang et al. 2020): Adam normalised by the gradient's deviation from its mean.

    After the common gradient processing (rescale, clip by value, clip by
    global norm, then **coupled** weight decay :math:`g \leftarrow g + \lambda\theta`,
    as braintools)::

        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
        s_t = \beta_2 s_{t-1} + (1 - \beta_2)(g_t - m_t)^2 + \epsilon_{root}
        \theta_t = \theta_{t-1} - \eta_t \frac{m_t/(1-\beta_1^t)}{\sqrt{s_t/(1-\beta_2^t)} + \epsilon}

    Conventions: the paper's Algorithm 2 and optax ``adabelief`` (epsilon both
    added to :math:`s_t` and outside the root, each 1e-16 by default). The
    authors' PyTorch package adds its ``eps`` to :math:`s_t` twice and offers
    decoupled decay; not reproduced (use ``eps_root`` to change the inner term).

    Args:
        lr: learning rate (float or LRScheduler), default 1e-3.
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``, default (0.9, 0.999).
        eps: :math:`\epsilon > 0` outside the root, default 1e-16.
        weight_decay: coupled L2 coefficient :math:`\lambda`, default 0.
        eps_root: :math:`\epsilon_{root} \ge 0` added to :math:`s_t` (keyword only), default 1e-16.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.adabelief import AdaBelief
    >>> w = brainstate.ParamState(jnp.array([1.0]))
    >>> opt = AdaBelief(lr=0.1, betas=(0.5, 0.5)).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([2.0])})   # m = 1, s = 0.5: -0.1 * 2 / 1
    >>> round(float(w.value[0]), 4)
    0.8
    """


    hyperparameters = {
        'betas': Hyper(checks.betas(2), cycled=0),       # a cycling scheduler drives betas[0]
        'eps': Hyper(checks.positive),
        'eps_root': Hyper(checks.non_negative),
    }

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-16, weight_decay: float = 0.0,
                 grad_clip_norm=None, grad_clip_value=None, *,
                 eps_root: float = 1e-16, **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        return adabelief(h.betas[0], h.betas[1], h.eps, h.eps_root)
