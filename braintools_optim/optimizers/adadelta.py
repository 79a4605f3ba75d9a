"""Adadelta (torch / MXNet 2.0 conventions; neon and Zeiler by arguments)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules import adadelta


class Adadelta(Optimizer):
    r"""Adadelta (Zeiler 2012).

    After the common gradient processing (rescale, clip by value, clip by
    global norm, then **coupled** weight decay :math:`g \leftarrow g + \lambda\theta`)::

        E[g^2]_t = \rho E[g^2]_{t-1} + (1-\rho) g_t^2
        \Delta_t = \sqrt{E[\Delta^2]_{t-1} + \epsilon} / \sqrt{E[g^2]_t + \epsilon} \cdot g_t
        E[\Delta^2]_t = \rho E[\Delta^2]_{t-1} + (1-\rho)\Delta_t^2
        \theta_t = \theta_{t-1} - \eta_t \Delta_t

    Conventions (``docs/conventions.md`` has the full table):

    * torch / braintools: ``Adadelta()`` (lr 1.0, rho 0.9, eps 1e-6). The
      learning rate scales :math:`\Delta_t` after the accumulator saw it.
    * Zeiler and neon (no learning rate, decay 0.95): ``Adadelta(lr=1.0, rho=0.95)``;
      neon divides gradients by the batch size first: ``rescale_grad=1/batch``.
    * MXNet 2.0 ``AdaDelta(learning_rate, rho, epsilon, wd, rescale_grad,
      clip_gradient)``: ``Adadelta(lr, rho, eps, weight_decay=wd,
      rescale_grad=rescale_grad, grad_clip_value=clip_gradient)`` (MXNet adds
      ``wd * w`` after rescaling and clipping, as we do).
    * Keras 3 defaults to lr 0.001, rho 0.95, eps 1e-7.
    * optax 0.2.8 ``adadelta(learning_rate=None)`` moves *up* the gradient (a
      sign bug); we always descend.

    Units: :math:`\Delta` carries the parameter's unit, so the rule is
    dimensionally consistent; ``eps`` is read in the gradient's unit squared in
    the denominator and the parameter's unit squared in the numerator.

    Args:
        lr: learning rate (float or LRScheduler).
        rho: decay :math:`\rho \in [0, 1)`.
        eps: :math:`\epsilon > 0`.
        weight_decay: coupled L2 coefficient :math:`\lambda` (MXNet's ``wd``).
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    >>> import brainstate, jax.numpy as jnp
    >>> import braintools_optim as bo
    >>> w = brainstate.ParamState(jnp.array([1.0]))
    >>> opt = bo.Adadelta(rho=0.95).register_trainable_weights([w])
    >>> opt.update({0: jnp.array([2.0])})
    >>> round(float(w.value[0]), 6)   # 1 - sqrt(1e-6 / (0.05 * 4 + 1e-6)) * 2
    0.995528
    """


    hyperparameters = {
        'rho': Hyper(checks.unit_interval),
        'eps': Hyper(checks.positive),
    }

    def __init__(self, lr=1.0, rho: float = 0.9, eps: float = 1e-6, weight_decay: float = 0.0, grad_clip_norm=None,
                 grad_clip_value=None,
                 **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        return adadelta(rho=h.rho, eps=h.eps)
