"""Adam (coupled L2 decay) and AdamW (decoupled decay)."""

from __future__ import annotations

from .. import _checks as checks
from .._optimizer import Optimizer, fixed
from ..rules import adam


def _check_betas(betas, beta1, beta2):
    b1, b2 = betas
    b1 = b1 if beta1 is None else beta1
    b2 = b2 if beta2 is None else beta2
    return (checks.unit_interval('betas[0]', b1), checks.unit_interval('betas[1]', b2))


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
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``. ``beta1``/``beta2``
            override them one at a time (braintools spelling).
        eps: :math:`\epsilon > 0`, in the gradient's unit.
        weight_decay: coupled L2 coefficient :math:`\lambda`.
        amsgrad: keep the running maximum of :math:`v_t`.
        eps_root: :math:`\epsilon_{root} \ge 0` (optax).
        eps_hat: use the "epsilon hat" form above.
        **options: ``grad_clip_norm``, ``grad_clip_value``, ``param_clip_value``,
            ``rescale_grad``, ``skip_nonfinite`` (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> import braintools_optim as bo
    >>> w = brainstate.ParamState(jnp.array([1.0, -1.0]))
    >>> opt = bo.Adam(lr=0.1).register_trainable_weights({'w': w})
    >>> opt.update({('w',): jnp.array([0.5, -2.0])})   # first step: -lr * sign(g)
    >>> [round(x, 4) for x in w.value.tolist()]
    [0.9, -0.9]
    """

    betas = fixed()
    eps = fixed()
    amsgrad = fixed()
    eps_root = fixed()
    eps_hat = fixed()

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 amsgrad: bool = False, *, beta1=None, beta2=None, eps_root: float = 0.0,
                 eps_hat: bool = False, **options):
        b1, b2 = _check_betas(betas, beta1, beta2)
        eps = checks.positive('eps', eps)
        eps_root = checks.non_negative('eps_root', eps_root)
        super().__init__(
            adam(b1, b2, eps, eps_root=eps_root, amsgrad=bool(amsgrad), eps_hat=bool(eps_hat)), lr,
            weight_decay=weight_decay,
            hyperparameters=dict(betas=(b1, b2), eps=eps, amsgrad=bool(amsgrad), eps_root=eps_root,
                                 eps_hat=bool(eps_hat)),
            **options)

    def _rule_with_momentum(self, momentum):
        """A cycled momentum replaces beta1 (torch's OneCycleLR / CyclicLR with Adam)."""
        return adam(momentum, self.betas[1], self.eps, eps_root=self.eps_root, amsgrad=self.amsgrad,
                    eps_hat=self.eps_hat)


class AdamW(Adam):
    r"""Adam with decoupled weight decay (Loshchilov & Hutter 2019).

    The Adam step of :class:`Adam` without L2 in the gradient; the decay is
    applied to the parameter directly, scaled by the current learning rate::

        \theta_t = \theta_{t-1}(1 - \eta_t\lambda) - \eta_t \frac{\hat m_t}{\sqrt{\hat v_t} + \epsilon}

    Convention: torch ``AdamW``, optax ``adamw`` and Keras (decay
    :math:`\times` the full current lr). The paper's Algorithm 2 scales by the
    schedule multiplier only; MXNet 2.0 by the bias-corrected lr; brainpy not
    at all (see ``docs/conventions.md``).

    Args: as :class:`Adam`, with ``weight_decay`` (default ``1e-2``) decoupled.

    >>> import brainstate, jax.numpy as jnp
    >>> import braintools_optim as bo
    >>> w = brainstate.ParamState(jnp.array([1.0]))
    >>> opt = bo.AdamW(lr=0.1, weight_decay=0.5).register_trainable_weights([w])
    >>> opt.update({('param_0',): jnp.array([0.0])})   # zero gradient: decay only
    >>> round(float(w.value[0]), 6)
    0.95
    """

    weight_decay_mode = 'decoupled'

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 1e-2,
                 amsgrad: bool = False, **kwargs):
        super().__init__(lr, betas=betas, eps=eps, weight_decay=weight_decay, amsgrad=amsgrad, **kwargs)
