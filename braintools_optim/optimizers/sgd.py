"""SGD, Momentum and MomentumNesterov (torch.optim.SGD conventions)."""

from __future__ import annotations

from .. import _checks as checks
from .._optimizer import Optimizer, cycles_momentum, fixed
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
        **options: ``grad_clip_norm``, ``grad_clip_value``, ``param_clip_value``,
            ``rescale_grad``, ``skip_nonfinite`` (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> import braintools_optim as bo
    >>> w = brainstate.ParamState(jnp.array([1.0, -1.0]))
    >>> opt = bo.SGD(lr=0.1, momentum=0.9).register_trainable_weights({'w': w})
    >>> opt.update({('w',): jnp.array([1.0, 1.0])})
    >>> [round(x, 6) for x in w.value.tolist()]
    [0.9, -1.1]
    """

    momentum = fixed()
    dampening = fixed()
    nesterov = fixed()

    def __init__(self, lr=1e-3, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0,
                 dampening: float = 0.0, **options):
        momentum = checks.non_negative('momentum', momentum)
        dampening = checks.unit_interval('dampening', dampening, include_one=True)
        if nesterov and (momentum == 0.0 or dampening != 0.0):
            raise ValueError("nesterov momentum needs momentum > 0 and dampening = 0")
        # A scheduler that cycles momentum (torch's OneCycleLR/CyclicLR default) drives it even
        # from momentum=0, as in torch, so the rule then keeps a momentum buffer.
        buffered = momentum if momentum or not cycles_momentum(lr) else 1.0
        super().__init__(
            sgd(momentum=buffered, dampening=dampening, nesterov=bool(nesterov)), lr,
            weight_decay=weight_decay,
            hyperparameters=dict(momentum=momentum, dampening=dampening, nesterov=bool(nesterov)),
            **options)

    def _rule_with_momentum(self, momentum):
        if 'momentum_buffer' not in self._rule.buffer_names:
            raise ValueError("cannot cycle the momentum of SGD(momentum=0) whose scheduler was attached "
                             "after construction: it keeps no momentum buffer; pass the scheduler as "
                             "lr= when constructing it, or construct it with momentum > 0")
        return sgd(momentum=momentum, dampening=self.dampening, nesterov=self.nesterov)


class Momentum(SGD):
    r"""SGD with heavy-ball momentum (default :math:`\mu = 0.9`); see :class:`SGD`.

    >>> import braintools_optim as bo
    >>> bo.Momentum(lr=0.01).momentum
    0.9
    """

    def __init__(self, lr=1e-3, momentum: float = 0.9, weight_decay: float = 0.0, **options):
        super().__init__(lr, momentum=momentum, nesterov=False, weight_decay=weight_decay, **options)


class MomentumNesterov(SGD):
    r"""SGD with Nesterov momentum (default :math:`\mu = 0.9`); see :class:`SGD`.

    >>> import braintools_optim as bo
    >>> bo.MomentumNesterov(lr=0.01).nesterov
    True
    """

    def __init__(self, lr=1e-3, momentum: float = 0.9, weight_decay: float = 0.0, **options):
        super().__init__(lr, momentum=momentum, nesterov=True, weight_decay=weight_decay, **options)
