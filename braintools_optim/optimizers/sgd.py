"""SGD, Momentum and MomentumNesterov (torch.optim.SGD conventions)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules import sgd


class SGD(Optimizer):
    r"""Stochastic gradient descent, optionally with (Nesterov) momentum.

    For each parameter, after the common gradient processing (rescale, clip by
    value, clip by global norm, then **coupled** weight decay
    :math:`g \leftarrow g + \lambda\theta`)::

        b_1 = g_1;   b_t = \mu b_{t-1} + (1 - \tau) g_t
        d_t = g_t + \mu b_t  (nesterov)   or   b_t   (momentum)   or   g_t   (\mu = 0)
        \theta_t = \theta_{t-1} - \eta_t d_t

    Convention: torch.optim.SGD (also optax ``sgd`` for ``dampening=0``): the
    learning rate multiplies the momentum buffer on the way out. Keras' form
    ``v = \mu v - \eta g`` agrees while the learning rate is constant.

    Args:
        lr: learning rate (float or LRScheduler).
        momentum: :math:`\mu \ge 0`; 0 keeps no buffer at all.
        dampening: :math:`\tau \in [0, 1]` (torch).
        nesterov: Nesterov momentum (needs ``momentum > 0`` and ``dampening = 0``).
        weight_decay: coupled L2 coefficient :math:`\lambda`.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> import braintools_optim as bo
    >>> w = brainstate.ParamState(jnp.array([1.0, -1.0]))
    >>> opt = bo.SGD(lr=0.1, momentum=0.9).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([1.0, 1.0])})
    >>> [round(x, 6) for x in w.value.tolist()]
    [0.9, -1.1]
    """

    hyperparameters = {
        'momentum': Hyper(checks.non_negative, cycled=True),
        'dampening': Hyper(lambda name, v: checks.unit_interval(name, v, include_one=True)),
        'nesterov': Hyper(checks.boolean),
    }

    def __init__(self, lr=1e-3, momentum: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False,
                 grad_clip_norm=None, grad_clip_value=None, *, dampening: float = 0.0, **options):
        super().__init__(**captured(locals()))

    @classmethod
    def validate(cls, h):
        if h.nesterov and (h.momentum == 0.0 or h.dampening != 0.0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")

    @staticmethod
    def build_rule(h):
        # A scheduler that cycles momentum (torch's OneCycleLR/CyclicLR default) drives it even from
        # momentum=0, as in torch: the engine then builds the rule with the cycled value.
        return sgd(momentum=h.momentum, dampening=h.dampening, nesterov=h.nesterov)


class Momentum(SGD):
    r"""SGD with heavy-ball momentum (default :math:`\mu = 0.9`); see :class:`SGD`.

    >>> import braintools_optim as bo
    >>> bo.Momentum(lr=0.01).momentum
    0.9
    """

    def __init__(self, lr=1e-3, momentum: float = 0.9, weight_decay: float = 0.0, grad_clip_norm=None,
                 grad_clip_value=None, **options):
        super().__init__(**captured(locals()), nesterov=False)


class MomentumNesterov(SGD):
    r"""SGD with Nesterov momentum (default :math:`\mu = 0.9`); see :class:`SGD`.

    >>> import braintools_optim as bo
    >>> bo.MomentumNesterov(lr=0.01).nesterov
    True
    """

    def __init__(self, lr=1e-3, momentum: float = 0.9, weight_decay: float = 0.0, grad_clip_norm=None,
                 grad_clip_value=None, **options):
        super().__init__(**captured(locals()), nesterov=True)
