"""RAdam (torch.optim.RAdam conventions)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.radam import radam


class RAdam(Optimizer):
    r"""Rectified Adam (Liu et al. 2020), as torch.optim.RAdam.

    After the common gradient processing (rescale, clip by value, clip by
    global norm, then **coupled** weight decay :math:`g \leftarrow g + \lambda\theta`,
    torch's default)::

        m_t = \beta_1 m_{t-1} + (1 - \beta_1) g_t,   v_t = \beta_2 v_{t-1} + (1 - \beta_2) g_t^2
        \rho_\infty = 2/(1-\beta_2) - 1,   \rho_t = \rho_\infty - 2t\beta_2^t/(1-\beta_2^t)
        r_t = \sqrt{(\rho_t-4)(\rho_t-2)\rho_\infty / ((\rho_\infty-4)(\rho_\infty-2)\rho_t)}
        \theta_t = \theta_{t-1} - \eta_t \frac{m_t}{1-\beta_1^t} r_t \frac{\sqrt{1-\beta_2^t}}{\sqrt{v_t} + \epsilon}   if \rho_t > 5
        \theta_t = \theta_{t-1} - \eta_t \frac{m_t}{1-\beta_1^t}                                                          otherwise

    Conventions: torch (threshold :math:`\rho_t > 5`, epsilon added to
    :math:`\sqrt{v_t}` before the bias correction). optax ``radam`` uses the same
    threshold 5 (as :math:`\rho_t \ge 5`, identical in practice) but adds epsilon
    after the bias correction, an :math:`O(\epsilon/\sqrt{v})` relative difference;
    braintools uses optax. The paper's Algorithm 2 uses :math:`\rho_t > 4`. With
    :math:`\beta_2 = 0.999` the first five steps are un-adapted momentum SGD
    (:math:`\rho_5 = 4.996`), so ``lr`` is then a step per unit of gradient.
    :math:`\rho_t` is computed without cancellation (see
    :func:`braintools_optim.rules.radam.sma_length`), so float32 agrees with
    torch's float64 host arithmetic.

    Args:
        lr: learning rate (float or LRScheduler), default 1e-3.
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``, default (0.9, 0.999).
        eps: :math:`\epsilon > 0`, default 1e-8, in the gradient's unit.
        weight_decay: coupled L2 coefficient :math:`\lambda`, default 0.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.radam import RAdam
    >>> w = brainstate.ParamState(jnp.array([1.0]))
    >>> opt = RAdam(lr=0.1).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([2.0])})   # step 1 is not rectified: -lr * g
    >>> round(float(w.value[0]), 4)
    0.8
    """


    hyperparameters = {
        'betas': Hyper(checks.betas(2), cycled=0),       # a cycling scheduler drives betas[0]
        'eps': Hyper(checks.positive),
    }

    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0, grad_clip_norm=None,
                 grad_clip_value=None,
                 **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        return radam(h.betas[0], h.betas[1], h.eps)
