"""LARS: layer-wise adaptive rate scaling (optax ``lars`` conventions)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.lars import lars


class Lars(Optimizer):
    r"""LARS (You et al. 2017): SGD with momentum and a per-tensor trust ratio.

    After the common gradient processing (rescale, clip by value, clip by
    global norm, then **coupled** weight decay :math:`g \leftarrow g + \lambda\theta`),
    for each parameter tensor::

        \tau_t = c\,\lVert\theta_{t-1}\rVert / (\lVert g_t\rVert + \epsilon)     (1 if either norm is 0)
        b_t = \mu b_{t-1} + \eta_t \tau_t g_t
        \theta_t = \theta_{t-1} - (\eta_t \tau_t g_t + \mu b_t)   (nesterov)   or   \theta_{t-1} - b_t

    Conventions: optax ``lars`` (the decay is added to the gradient *before* the
    trust ratio, so the ratio's denominator is :math:`\lVert g + \lambda\theta\rVert`,
    where the paper writes :math:`\lVert g\rVert + \lambda\lVert\theta\rVert`; the
    learning rate enters the momentum buffer, as in the paper). Every
    registered parameter gets a trust ratio (optax's default mask); put
    biases in their own group or optimizer if you want them excluded.
    Defaults are braintools': lr 1.0, momentum 0.9, trust_coefficient 1e-3,
    eps 1e-8 (optax's eps is 0).

    Args:
        lr: learning rate (float or LRScheduler).
        momentum: :math:`\mu \ge 0`; 0 keeps no buffer.
        weight_decay: coupled L2 coefficient :math:`\lambda`.
        trust_coefficient: :math:`c > 0`.
        eps: :math:`\epsilon \ge 0`, in the gradient's unit.
        nesterov: Nesterov momentum (optax ``nesterov``; needs ``momentum > 0``).
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.lars import Lars
    >>> w = brainstate.ParamState(jnp.array([3.0, 4.0]))
    >>> opt = Lars(lr=1.0, momentum=0.0, trust_coefficient=0.01, eps=0.0)
    >>> opt = opt.register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([0.0, 2.0])})   # step c * ||w|| along g / ||g||
    >>> [round(x, 4) for x in w.value.tolist()]
    [3.0, 3.95]
    """


    hyperparameters = {
        'momentum': Hyper(checks.non_negative, cycled=True),
        'trust_coefficient': Hyper(checks.positive),
        'eps': Hyper(checks.non_negative),
        'nesterov': Hyper(checks.boolean),
    }

    def __init__(self, lr=1.0, momentum: float = 0.9, weight_decay: float = 0.0, trust_coefficient: float = 1e-3,
                 eps: float = 1e-8, grad_clip_norm=None, grad_clip_value=None, *, nesterov: bool = False, **options):
        super().__init__(**captured(locals()))

    @classmethod
    def validate(cls, h):
        if h.nesterov and h.momentum == 0.0:
            raise ValueError("nesterov momentum needs momentum > 0")

    @classmethod
    def cycle_error(cls, h):
        if h.momentum == 0.0:
            return ("cannot cycle the momentum of Lars(momentum=0): it keeps no momentum buffer; "
                    "construct it with momentum > 0")
        return None

    @staticmethod
    def build_rule(h):
        return lars(h.momentum, h.trust_coefficient, h.eps, h.nesterov)
