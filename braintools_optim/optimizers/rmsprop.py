"""RMSprop, with the epsilon placement of torch, optax/Keras or neon."""

from __future__ import annotations

from .. import _checks as checks
from .._optimizer import Optimizer, cycles_momentum, fixed
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
        **options: ``grad_clip_norm``, ``grad_clip_value``, ``param_clip_value``,
            ``rescale_grad``, ``skip_nonfinite`` (see :class:`Optimizer`).

    >>> import brainstate, jax.numpy as jnp
    >>> import braintools_optim as bo
    >>> w = brainstate.ParamState(jnp.array([1.0]))
    >>> opt = bo.RMSprop(lr=0.01).register_trainable_weights([w])
    >>> opt.update({('param_0',): jnp.array([2.0])})
    >>> round(float(w.value[0]), 5)   # 1 - 0.01 * 2 / sqrt(0.01 * 4)
    0.9
    """

    alpha = fixed()
    eps = fixed()
    momentum = fixed()
    centered = fixed()
    eps_placement = fixed()
    initial_accumulator_value = fixed()

    def __init__(self, lr=1e-2, alpha: float = 0.99, eps: float = 1e-8, weight_decay: float = 0.0,
                 momentum: float = 0.0, centered: bool = False, *, eps_placement: str = 'outside',
                 initial_accumulator_value: float = 0.0, **options):
        alpha = checks.unit_interval('alpha', alpha)
        eps = checks.positive('eps', eps)
        momentum = checks.non_negative('momentum', momentum)
        initial = checks.non_negative('initial_accumulator_value', initial_accumulator_value)
        if eps_placement not in EPS_PLACEMENTS:
            raise ValueError(f"eps_placement must be one of {EPS_PLACEMENTS}, got {eps_placement!r}")
        hyper = dict(alpha=alpha, eps=eps, momentum=momentum, centered=bool(centered),
                     eps_placement=eps_placement, initial_accumulator_value=initial)
        # A momentum-cycling scheduler drives momentum even from 0 (torch), so keep a buffer then.
        buffered = momentum if momentum or not cycles_momentum(lr) else 1.0
        super().__init__(rmsprop(**{**hyper, 'momentum': buffered}), lr, weight_decay=weight_decay,
                         hyperparameters=hyper, **options)

    def _rule_with_momentum(self, momentum):
        if 'momentum_buffer' not in self._rule.buffer_names:
            raise ValueError("cannot cycle the momentum of RMSprop(momentum=0) whose scheduler was attached "
                             "after construction: it keeps no momentum buffer; pass the scheduler as "
                             "lr= when constructing it, or construct it with momentum > 0")
        hyper = {name: getattr(self, name) for name in ('alpha', 'eps', 'centered', 'eps_placement',
                                                        'initial_accumulator_value')}
        return rmsprop(momentum=momentum, **hyper)


RMSProp = RMSprop
