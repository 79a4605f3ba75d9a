"""Adam (coupled L2 decay) and AdamW (decoupled decay)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules import adam


class Adam(Optimizer):
    r"""Adam (Kingma & Ba 2015), with optional AMSGrad.

    After the common gradient processing (rescale, clip by value, clip by
    global norm, then **coupled** weight decay :math:`g \leftarrow g + \lambda\theta`,
    as torch.optim.Adam; use :class:`AdamW` for decoupled decay)::

        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t
        v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2
        \hat v_t = \max(\hat v_{t-1}, v_t)      (amsgrad; else \hat v_t = v_t)
        \theta_t = \theta_{t-1} - \eta_t \frac{m_t/(1-\beta_1^t)}{\sqrt{\hat v_t/(1-\beta_2^t) + \epsilon_{root}} + \epsilon}

    Conventions (see ``docs/conventions.md``):

    * epsilon after bias correction, as torch, optax and braintools. With
      ``eps_hat=True`` the Keras / MXNet / neon form
      :math:`\eta_t\sqrt{1-\beta_2^t}/(1-\beta_1^t)\cdot m_t/(\sqrt{v_t}+\epsilon)` is used;
      neon's Adam is ``Adam(lr=0.001, eps=1e-8, eps_hat=True)``. neon's docstring
      bias-corrects v with :math:`\beta_1`: a typo, its code (and we) use :math:`\beta_2`.
    * AMSGrad as torch: the maximum is over raw :math:`v_t`, then divided by
      :math:`1-\beta_2^t` (optax takes the maximum of the corrected values).
    * ``eps_root`` is optax's :math:`\epsilon` inside the square root (default 0).

    Args:
        lr: learning rate (float or LRScheduler); for a parameter with a unit,
            the step length in that unit (the ratio :math:`m/\sqrt{v}` is dimensionless).
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        beta1, beta2: override one of ``betas`` (braintools spelling).
        eps: :math:`\epsilon > 0`, in the gradient's unit.
        weight_decay: coupled L2 coefficient :math:`\lambda`.
        amsgrad: keep the running maximum of :math:`v_t`.
        eps_root: :math:`\epsilon_{root} \ge 0` (optax).
        eps_hat: use the "epsilon hat" form above.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> import braintools_optim as bo
    >>> w = brainstate.ParamState(jnp.array([1.0, -1.0]))
    >>> opt = bo.Adam(lr=0.1).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([0.5, -2.0])})   # first step: -lr * sign(g)
    >>> [round(x, 4) for x in w.value.tolist()]
    [0.9, -0.9]
    """

    hyperparameters = {
        'betas': Hyper(checks.betas(2), cycled=0),       # a cycling scheduler drives betas[0]
        'eps': Hyper(checks.positive),
        'amsgrad': Hyper(checks.boolean),
        'eps_root': Hyper(checks.non_negative),
        'eps_hat': Hyper(checks.boolean),
    }
    aliases = {'beta1': ('betas', 0), 'beta2': ('betas', 1)}
    deprecated_arguments = {'beta1': 'betas=(beta1, beta2)', 'beta2': 'betas=(beta1, beta2)'}

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), beta1=None, beta2=None, eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, grad_clip_norm=None, grad_clip_value=None, *,
                 eps_root: float = 0.0, eps_hat: bool = False, **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        return adam(h.betas[0], h.betas[1], h.eps, eps_root=h.eps_root, amsgrad=h.amsgrad, eps_hat=h.eps_hat)


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    The Adam step of :class:`Adam` without L2 in the gradient; the decay is
    applied to the parameter directly, scaled by the current learning rate::

        \theta_t = \theta_{t-1}(1 - \eta_t\lambda) - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    Convention: torch ``AdamW``, optax ``adamw`` and Keras (decay
    :math:`\times` the full current lr). The paper's Algorithm 2 scales by the
    schedule multiplier only; MXNet 2.0 by the bias-corrected lr; brainpy not
    at all (see ``docs/conventions.md``).

    Args: as :class:`Adam`, with ``weight_decay`` (default ``1e-2``) decoupled; in braintools'
    positional order ``(lr, betas, eps, weight_decay, grad_clip_norm, grad_clip_value)``, the
    other settings keyword-only.

    >>> import brainstate, jax.numpy as jnp
    >>> import braintools_optim as bo
    >>> w = brainstate.ParamState(jnp.array([1.0]))
    >>> opt = bo.AdamW(lr=0.1, weight_decay=0.5).register_trainable_weights([w])
    >>> opt.update({0: jnp.array([0.0])})   # zero gradient: decay only
    >>> round(float(w.value[0]), 6)
    0.95
    """

    weight_decay_mode = 'decoupled'

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 grad_clip_norm=None, grad_clip_value=None, *, amsgrad: bool = False, beta1=None, beta2=None,
                 eps_root: float = 0.0, eps_hat: bool = False, **options):
        super().__init__(**captured(locals()))
