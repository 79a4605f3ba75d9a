"""Adamax (torch.optim.Adamax / optax ``adamax`` conventions)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.adamax import adamax


class Adamax(Optimizer):
    r"""Adamax, the infinity-norm variant of Adam (Kingma & Ba 2015, section 7.1).

    After the common gradient processing (rescale, clip by value, clip by
    global norm, then **coupled** weight decay :math:`g \leftarrow g + \lambda\theta`,
    as torch)::

        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
        u_t = \max(\beta_2 u_{t-1}, |g_t| + \epsilon)
        \theta_t = \theta_{t-1} - \frac{\eta_t}{1 - \beta_1^t} \frac{m_t}{u_t}

    Conventions: torch.optim.Adamax and optax ``adamax`` compute the same
    formula (epsilon inside the maximum). Defaults follow torch and braintools
    (lr 2e-3).

    Args:
        lr: learning rate (float or LRScheduler), default 2e-3; a step length in
            the parameter's unit.
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``, default (0.9, 0.999).
        eps: :math:`\epsilon > 0`, default 1e-8, in the gradient's unit.
        weight_decay: coupled L2 coefficient :math:`\lambda`, default 0.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.adamax import Adamax
    >>> w = brainstate.ParamState(jnp.array([1.0, -1.0]))
    >>> opt = Adamax(lr=0.1).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([0.5, -2.0])})   # first step: -lr * sign(g)
    >>> [round(x, 4) for x in w.value.tolist()]
    [0.9, -0.9]
    """


    hyperparameters = {
        'betas': Hyper(checks.betas(2), cycled=0),       # a cycling scheduler drives betas[0]
        'eps': Hyper(checks.positive),
    }

    def __init__(self, lr=2e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0, grad_clip_norm=None,
                 grad_clip_value=None,
                 **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        return adamax(h.betas[0], h.betas[1], h.eps)
