"""RMSprop, with the epsilon placement of torch, optax/Keras or neon."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules import rmsprop
from ..rules.rmsprop import EPS_PLACEMENTS


class RMSprop(Optimizer):
    r"""RMSprop (Tieleman & Hinton 2012), optionally centered and with momentum.

    After the common gradient processing (rescale, clip by value, clip by
    global norm, then **coupled** weight decay :math:`g \leftarrow g + \lambda\theta`)::

        v_t = \alpha v_{t-1} + (1-\alpha) g_t^2
        \bar g_t = \alpha \bar g_{t-1} + (1-\alpha) g_t,   s_t = v_t - \bar g_t^2   (centered)
        u_t = g_t / D(s_t)
        b_t = \mu b_{t-1} + u_t,   u_t \leftarrow b_t                           (momentum > 0)
        \theta_t = \theta_{t-1} - \eta_t u_t

    ``eps_placement`` chooses :math:`D`:

    * ``'outside'`` (default): :math:`\sqrt{s} + \epsilon` — torch, MXNet 2.0;
    * ``'inside'``: :math:`\sqrt{s + \epsilon}` — optax (default), Keras 3, TF1, MXNet 1.x;
    * ``'both'``: :math:`\sqrt{s + \epsilon} + \epsilon` — neon.

    Recipes: torch ``RMSprop(lr, alpha, eps, ...)`` is the default; optax
    ``rmsprop(lr, decay, eps)`` is ``RMSprop(lr, alpha=decay, eps=eps,
    eps_placement='inside')`` (plus ``initial_accumulator_value=1.0`` for its
    ``initial_scale=1``); neon ``RMSProp()`` is ``RMSprop(lr=0.002, alpha=0.95,
    eps=1e-6, eps_placement='both')``. braintools used optax's placement with
    torch's defaults, which matches neither.

    Args:
        lr: learning rate (float or LRScheduler).
        alpha: decay :math:`\alpha \in [0, 1)` (Keras: ``rho``, optax: ``decay``).
        eps: :math:`\epsilon > 0`.
        weight_decay: coupled L2 coefficient :math:`\lambda`.
        momentum: :math:`\mu \ge 0`.
        centered: normalise by the variance estimate instead of the second moment.
        eps_placement: ``'outside'``, ``'inside'`` or ``'both'``.
        initial_accumulator_value: :math:`v_0` (TF1 / optax ``initial_scale``).
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    >>> import brainstate, jax.numpy as jnp
    >>> import braintools_optim as bo
    >>> w = brainstate.ParamState(jnp.array([1.0]))
    >>> opt = bo.RMSprop(lr=0.01).register_trainable_weights([w])
    >>> opt.update({0: jnp.array([2.0])})
    >>> round(float(w.value[0]), 5)   # 1 - 0.01 * 2 / sqrt(0.01 * 4)
    0.9
    """


    hyperparameters = {
        'alpha': Hyper(checks.unit_interval),
        'eps': Hyper(checks.positive),
        'momentum': Hyper(checks.non_negative, cycled=True),
        'centered': Hyper(checks.boolean),
        'eps_placement': Hyper(checks.one_of(*EPS_PLACEMENTS)),
        'initial_accumulator_value': Hyper(checks.non_negative),
    }

    def __init__(self, lr=1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, grad_clip_norm=None, grad_clip_value=None, *,
                 eps_placement: str = 'outside',
                 initial_accumulator_value: float = 0.0, **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        # A momentum-cycling scheduler drives momentum even from 0 (torch): the engine then builds the
        # rule with the cycled value, so a momentum buffer is kept.
        return rmsprop(alpha=h.alpha, eps=h.eps, momentum=h.momentum, centered=h.centered,
                       eps_placement=h.eps_placement, initial_accumulator_value=h.initial_accumulator_value)


RMSProp = RMSprop
