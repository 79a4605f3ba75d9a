"""SM3 (optax ``sm3`` / paper conventions)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.sm3 import sm3


class SM3(Optimizer):
    r"""SM3, memory-efficient adaptive optimisation (Anil et al. 2019, "SM3-II").

    After the common gradient processing (rescale, clip by value, clip by
    global norm, then **coupled** weight decay :math:`g \leftarrow g + \lambda\theta`,
    as braintools), for a parameter of rank :math:`k \ge 2` with one accumulator
    :math:`a^{(i)}` per axis (:math:`d_1 + \dots + d_k` numbers, not :math:`d_1 \cdots d_k`)::

        \nu_t[j] = g_t[j]^2 + \min_i a^{(i)}_{t-1}[j_i],    a^{(i)}_t[r] = \max_{j:\, j_i = r} \nu_t[j]
        m_t = \beta m_{t-1} + (1 - \beta)\, g_t / \sqrt{\nu_t + \epsilon}     (0 where \nu_t = 0)
        \theta_t = \theta_{t-1} - \eta_t m_t

    Rank-0 and rank-1 parameters keep one accumulator per element (Adagrad
    with momentum). The accumulators live in one buffer ``accumulator`` of
    shape ``(d_1 + ... + d_k,)``.

    Conventions: optax ``sm3`` (epsilon inside the root, the momentum an
    exponential average of the preconditioned gradient, applied once;
    ``momentum=0`` steps with :math:`g/\sqrt{\nu}`). optax fails on rank-0
    parameters; we do not. The paper's Algorithm has no epsilon.

    Args:
        lr: learning rate (float or LRScheduler), default 1.0; a step length in
            the parameter's unit.
        momentum: :math:`\beta \in [0, 1)`, default 0.9.
        eps: :math:`\epsilon > 0` inside the root, default 1e-8, in the gradient's unit squared.
        weight_decay: coupled L2 coefficient :math:`\lambda`, default 0.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.sm3 import SM3
    >>> w = brainstate.ParamState(jnp.ones((3, 4)))
    >>> opt = SM3(lr=0.1, momentum=0.0).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.full((3, 4), 2.0)})     # first step: -lr * sign(g)
    >>> round(float(w.value[0, 0]), 4), opt.buffers()['accumulator']['w'].shape
    (0.9, (7,))
    """


    hyperparameters = {
        'momentum': Hyper(checks.unit_interval, cycled=True),
        'eps': Hyper(checks.positive),
    }

    def __init__(self, lr=1.0, momentum: float = 0.9, eps: float = 1e-8, weight_decay: float = 0.0,
                 grad_clip_norm=None, grad_clip_value=None,
                 **options):
        super().__init__(**captured(locals()))

    @classmethod
    def cycle_error(cls, h):
        if h.momentum == 0.0:
            return ("cannot cycle the momentum of SM3(momentum=0): it keeps no momentum buffer; "
                    "construct it with momentum > 0")
        return None

    @staticmethod
    def build_rule(h):
        return sm3(h.momentum, h.eps)
