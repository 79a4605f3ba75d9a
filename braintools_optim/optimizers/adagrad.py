"""Adagrad (torch.optim.Adagrad conventions)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.adagrad import adagrad


class Adagrad(Optimizer):
    r"""Adagrad (Duchi, Hazan & Singer 2011).

    After the common gradient processing (rescale, clip by value, clip by
    global norm, then **coupled** weight decay :math:`g \leftarrow g + \lambda\theta`,
    as torch)::

        s_t = s_{t-1} + g_t^2,                 s_0 = initial_accumulator_value
        \theta_t = \theta_{t-1} - \frac{\eta_t}{1 + (t-1)\gamma} \frac{g_t}{\sqrt{s_t} + \epsilon}

    Conventions: torch.optim.Adagrad exactly (same defaults, epsilon outside
    the root, ``lr_decay`` :math:`\gamma` dividing the learning rate by
    :math:`1 + (t-1)\gamma`). With an ``LRScheduler`` the decay multiplies the
    scheduled rate. optax ``adagrad`` puts epsilon inside the root
    (:math:`g/\sqrt{s+\epsilon}`, default ``initial_accumulator_value=0.1``); braintools
    builds on it.

    Args:
        lr: learning rate (float or LRScheduler), default 1e-2.
        lr_decay: :math:`\gamma \ge 0`, default 0.
        weight_decay: coupled L2 coefficient :math:`\lambda`, default 0.
        initial_accumulator_value: :math:`s_0 \ge 0`, default 0.
        eps: :math:`\epsilon > 0`, default 1e-10, in the gradient's unit.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.adagrad import Adagrad
    >>> w = brainstate.ParamState(jnp.array([1.0, -1.0]))
    >>> opt = Adagrad(lr=0.1).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([3.0, -0.5])})   # first step: -lr * g / |g|
    >>> [round(x, 4) for x in w.value.tolist()]
    [0.9, -0.9]
    """


    hyperparameters = {
        'lr_decay': Hyper(checks.non_negative),
        'initial_accumulator_value': Hyper(checks.non_negative),
        'eps': Hyper(checks.positive),
    }

    def __init__(self, lr=1e-2, lr_decay: float = 0.0, weight_decay: float = 0.0,
                 initial_accumulator_value: float = 0.0, eps: float = 1e-10, grad_clip_norm=None,
                 grad_clip_value=None, **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        return adagrad(lr_decay=h.lr_decay, initial_accumulator_value=h.initial_accumulator_value, eps=h.eps)
