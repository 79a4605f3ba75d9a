"""Adafactor: factored second moments, relative step sizes, update clipping."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.adafactor import adafactor

_DEFAULT_EPS = (1e-30, 1e-3)


def _check_eps(name, value):
    try:
        eps1, eps2 = value
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be a pair (eps1, eps2), got {value!r}") from None
    return (checks.positive(f'{name}[0]', eps1), checks.positive(f'{name}[1]', eps2))


def _check_decay_rate(name, value):
    value = checks.number(name, value)
    if value <= 0.0:
        raise ValueError(f"decay_rate is the exponent c > 0 of beta2_t = 1 - t**(-c) (optax sign); "
                         f"got {value!r}. HF/torch's -0.8 is decay_rate=0.8 here")
    return value


class Adafactor(Optimizer):
    r"""Adafactor (Shazeer & Stern 2018).

    After the common gradient processing (rescale, clip by value, clip by
    global norm), for each parameter tensor (:math:`c` = ``decay_rate``,
    :math:`d` = ``clip_threshold``, :math:`(\epsilon_1, \epsilon_2)` = ``eps``)::

        \hat\beta_{2,t} = 1 - t^{-c},   G^2 = g_t^2 + \epsilon_1
        ndim >= 2 (factored):  R_t = \hat\beta_{2,t} R_{t-1} + (1-\hat\beta_{2,t}) mean_{-1}(G^2)
                               C_t = \hat\beta_{2,t} C_{t-1} + (1-\hat\beta_{2,t}) mean_{-2}(G^2)
                               \hat V_t = R_t C_t / mean(R_t)       (last two axes; leading axes batch)
        otherwise:             \hat V_t = \hat\beta_{2,t} \hat V_{t-1} + (1-\hat\beta_{2,t}) G^2
        \hat U_t = (g_t/\sqrt{\hat V_t}) / \max(1, RMS(g_t/\sqrt{\hat V_t}) / d)
        \rho_t = \min(\eta_t, 1/\sqrt t)   [\min(\eta_t, 10^{-6}t, 1/\sqrt t) with warmup_init]   (relative_step)
        \rho_t = \eta_t                                                                  (otherwise)
        \alpha_t = \max(\epsilon_2, RMS(\theta_{t-1}))\,\rho_t   (scale_parameter; else \alpha_t = \rho_t)
        m_t = \beta_1 m_{t-1} + (1-\beta_1)\alpha_t\hat U_t       (beta1; else m_t = \alpha_t\hat U_t)
        \theta_t = \theta_{t-1}(1 - \eta_t\lambda) - m_t

    **Weight decay is decoupled** and scaled by the learning rate
    :math:`\eta_t` (the relative step's cap), as ``torch.optim.Adafactor``.

    With the defaults (lr 1e-2, relative step, parameter scaling, clipping at
    1, decay exponent 0.8, no momentum) this is the paper's recommended
    setting; the learning rate is the *cap* of the relative step size (as in
    torch), so ``lr=1e-2`` reproduces the paper's :math:`\min(10^{-2}, 1/\sqrt t)`
    and a smaller ``lr`` or an LRScheduler lowers it.

    Conventions against other libraries:

    * torch ``Adafactor(lr, beta2_decay, eps, d, weight_decay)`` is
      ``Adafactor(lr, decay_rate=-beta2_decay, eps=(eps1, eps2), clip_threshold=d,
      weight_decay)`` with the defaults otherwise; torch floors the variance
      estimate at :math:`\epsilon_1^2` (default ``finfo.eps``) where we add
      :math:`\epsilon_1` to :math:`g^2` (paper; both are no-ops unless
      :math:`g^2` is ~1e-14), and has no ``beta1``/``relative_step``/``scale_parameter`` switches.
    * optax ``adafactor(learning_rate, decay_rate, clipping_threshold, momentum,
      multiply_by_parameter_scale, eps, factored)`` is ``relative_step=False`` with
      ``learning_rate`` as lr; optax factors only dimensions of at least
      ``min_dim_size_to_factor=128`` (we factor every tensor with ``ndim >= 2``,
      as the paper; pass ``min_dim_size_to_factor=1`` to optax to compare),
      picks the two *largest* axes (we use the last two) and adds its
      ``weight_decay_rate`` without the learning rate (ours is :math:`\eta_t\lambda`).
    * HF transformers / fairseq write ``decay_rate=-0.8`` (the same exponent with
      the other sign; a negative value is refused here) and multiply the
      decay by :math:`\alpha_t` instead of :math:`\eta_t`.

    Args:
        lr: learning rate :math:`\eta_t` (float or LRScheduler); ``None`` means
            1e-2. With ``relative_step=True`` it caps the relative step.
        eps: :math:`(\epsilon_1, \epsilon_2)`, both > 0: the regulariser added to
            :math:`g^2` (gradient unit squared) and the floor of the parameter
            RMS (parameter unit). :math:`\epsilon_2` only acts with
            ``scale_parameter=True``; a non-default value is refused otherwise.
        clip_threshold: :math:`d > 0`, or ``None`` for no update clipping.
        decay_rate: the exponent :math:`c > 0` of :math:`\hat\beta_{2,t} = 1 - t^{-c}`.
        beta1: first-moment coefficient in ``[0, 1)``, or ``None`` for no momentum.
        weight_decay: decoupled coefficient :math:`\lambda` (times :math:`\eta_t`).
        factored: factor the second moment of every tensor with ``ndim >= 2``.
        scale_parameter: scale the step by :math:`\max(\epsilon_2, RMS(\theta))`.
        relative_step: use the time-dependent relative step :math:`\min(\eta_t, 1/\sqrt t)`.
        warmup_init: also cap the relative step by :math:`10^{-6} t` (needs
            ``relative_step=True``; refused otherwise).
        **options: ``grad_clip_norm``, ``grad_clip_value``, ``param_clip_value``,
            ``rescale_grad``, ``skip_nonfinite``, ``decoupled_decay_scale``
            (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.adafactor import Adafactor
    >>> w = brainstate.ParamState(jnp.full((2, 3), 2.0))
    >>> opt = Adafactor().register_trainable_weights({'w': w})
    >>> sorted(opt.buffers())                         # row and column factors for a matrix
    ['exp_avg_sq', 'exp_avg_sq_col', 'exp_avg_sq_row']
    >>> opt.update({'w': jnp.ones((2, 3))})        # step 1: RMS(w) * min(1e-2, 1) * sign(g)
    >>> round(float(w.value[0, 0]), 6)
    1.98
    """

    weight_decay_mode = 'decoupled'

    hyperparameters = {
        'eps': Hyper(_check_eps),
        'clip_threshold': Hyper(checks.optional(checks.positive)),
        'decay_rate': Hyper(_check_decay_rate),
        'beta1': Hyper(checks.optional(checks.unit_interval), cycled=True),
        'factored': Hyper(checks.boolean),
        'scale_parameter': Hyper(checks.boolean),
        'relative_step': Hyper(checks.boolean),
        'warmup_init': Hyper(checks.boolean),
    }

    def __init__(self, lr=None, eps=_DEFAULT_EPS, clip_threshold=1.0, decay_rate: float = 0.8, beta1=None,
                 weight_decay: float = 0.0, factored: bool = True, grad_clip_norm=None, grad_clip_value=None, *,
                 scale_parameter: bool = True,
                 relative_step: bool = True, warmup_init: bool = False, **options):
        lr = 1e-2 if lr is None else lr
        super().__init__(**captured(locals()))

    @classmethod
    def validate(cls, h):
        if not h.scale_parameter and h.eps[1] != _DEFAULT_EPS[1]:
            raise ValueError("eps[1] is the floor of the parameter RMS and only acts with scale_parameter=True")
        if h.warmup_init and not h.relative_step:
            raise ValueError("warmup_init caps the relative step size and needs relative_step=True")

    @classmethod
    def cycle_error(cls, h):
        if h.beta1 is None:
            return ("cannot cycle the momentum of Adafactor(beta1=None): it keeps no first moment; "
                    "construct it with beta1=...")
        return None

    @staticmethod
    def build_rule(h):
        return adafactor(decay_rate=h.decay_rate, eps1=h.eps[0], eps2=h.eps[1], clip_threshold=h.clip_threshold,
                         beta1=h.beta1, factored=h.factored, scale_parameter=h.scale_parameter,
                         relative_step=h.relative_step, warmup_init=h.warmup_init)
