"""LAMB: layer-wise adaptive moments (optax ``lamb`` conventions)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.lamb import lamb


class Lamb(Optimizer):
    r"""LAMB (You et al. 2020): Adam directions rescaled per tensor by a trust ratio.

    After the common gradient processing (rescale, clip by value, clip by
    global norm), for each parameter tensor::

        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t,   v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2
        r_t = \frac{m_t/(1-\beta_1^t)}{\sqrt{v_t/(1-\beta_2^t)} + \epsilon} + \lambda\theta_{t-1}
        \theta_t = \theta_{t-1} - \eta_t \frac{\lVert\theta_{t-1}\rVert}{\lVert r_t\rVert} r_t

    (the ratio is 1 when either norm is 0).

    **Weight decay is decoupled and part of the rule**: :math:`\lambda\theta` is
    added to the Adam direction (it never enters the moments), then scaled by
    the trust ratio and the learning rate together with it (the paper and optax
    ``lamb``). Each parameter group's ``weight_decay`` is used for its tensors.

    Conventions: optax ``lamb`` (bias-corrected moments, :math:`\epsilon` outside
    the root, no clipping of :math:`\lVert\theta\rVert`: the paper's
    :math:`\phi` is the identity). "A layer" is one registered parameter.
    Defaults are braintools' (and optax's): lr 1e-3, betas (0.9, 0.999), eps 1e-6.

    Args:
        lr: learning rate (float or LRScheduler).
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        eps: :math:`\epsilon > 0`, in the gradient's unit.
        weight_decay: decoupled in-rule coefficient :math:`\lambda \ge 0`.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.lamb import Lamb
    >>> w = brainstate.ParamState(jnp.array([3.0, 4.0]))
    >>> opt = Lamb(lr=0.1).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([1.0, 0.0])})   # a step of length lr * ||w||
    >>> [round(x, 4) for x in w.value.tolist()]
    [2.5, 4.0]
    """

    #: decoupled, but applied by the rule (inside the trust ratio), not by the engine.
    weight_decay_mode = 'in_rule'

    hyperparameters = {
        'betas': Hyper(checks.betas(2), cycled=0),       # a cycling scheduler drives betas[0]
        'eps': Hyper(checks.positive),
    }

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-6, weight_decay: float = 0.0, grad_clip_norm=None,
                 grad_clip_value=None,
                 **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        return lamb(h.betas[0], h.betas[1], h.eps, h.get('weight_decay', 0.0))
