"""Prodigy: learning-rate-free Adam with a global distance estimate (optax ``contrib.prodigy``)."""

from __future__ import annotations

import math

import jax.numpy as jnp

from .. import _checks as checks
from .._optimizer import Optimizer, OptimizerState, fixed
from ..rules.prodigy import PRODIGY_RULE, prodigy_step
from ..schedulers._base import float_dtype
from ._betas import check_betas


class Prodigy(Optimizer):
    r"""Prodigy (Mishchenko & Defazio 2024): Adam whose step scale :math:`d` is learned.

    After the common gradient processing (rescale, clip by value, clip by
    global norm), with :math:`b_t = \sqrt{1-\beta_2^t}/(1-\beta_1^t)` and
    :math:`\ell_{i,t} = d_{t-1}\eta_{i,t} b_t` (the group's learning rate :math:`\eta_{i,t}`)::

        r_t = \beta_3 r_{t-1} + (d_{t-1}/d_0)\sum_i \ell_{i,t}\langle g_i, \theta_{i,0} - \theta_i\rangle
        m_i = \beta_1 m_i + (1-\beta_1) d_{t-1} g_i,    v_i = \beta_2 v_i + (1-\beta_2) d_{t-1}^2 g_i^2
        s_i = \beta_3 s_i + (d_{t-1}/d_0)\,\ell_{i,t}\, g_i
        d_t = \min(\max(d_{t-1},\ \kappa\, r_t / \textstyle\sum_i\lVert s_i\rVert_1),\ \rho\, d_{t-1})
        \theta_i \leftarrow \theta_i - \ell_{i,t}\lambda\theta_i - \ell_{i,t}\, m_i/(\sqrt{v_i} + d_t\epsilon)

    The sums run over **all** registered parameters: :math:`d` and :math:`r` are
    global scalars, kept in the OptimizerStates ``Prodigy.d`` and
    ``Prodigy.d_numerator`` (saved by :meth:`state_dict`; read ``opt.d.value``
    to see the estimate). ``lr`` is a multiplier on the learned scale: keep
    it at 1.0, or use a schedule that starts at 1 (e.g. cosine decay).

    **Weight decay is decoupled**, scaled by the adapted step
    :math:`\ell_{i,t} = d\,\eta\, b_t` (the official implementation's ``decouple=True`` and
    optax); each group's ``weight_decay`` is used for its parameters.

    Conventions: optax ``contrib.prodigy`` (``estim_lr0`` = ``d0``,
    ``estim_lr_coef`` = ``d_coef``; it always bias-corrects) and the official
    ``prodigyopt.Prodigy`` (whose ``use_bias_correction`` defaults to ``False``;
    its ``d_coef``, ``growth_rate`` and ``safeguard_warmup`` are the same). While
    :math:`\sum\lVert s\rVert_1 = 0` (all gradients zero so far) :math:`d` is kept,
    where optax would divide by zero.

    Args:
        lr: multiplier :math:`\eta` of the learned step (float or LRScheduler), default 1.0.
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``.
        beta3: :math:`\beta_3 \in [0, 1)` of ``r`` and ``s``; ``None`` is :math:`\sqrt{\beta_2}`.
        eps: :math:`\epsilon > 0` (multiplied by :math:`d`).
        weight_decay: decoupled coefficient :math:`\lambda`.
        d0: initial estimate :math:`d_0 > 0`.
        d_coef: :math:`\kappa > 0`, multiplies the estimate.
        growth_rate: :math:`\rho > 1` (or ``inf``), the largest factor by which :math:`d` may grow per step.
        safeguard_warmup: use :math:`d` instead of :math:`\ell` in ``s`` (for warm-up schedules).
        use_bias_correction: the factor :math:`b_t` (``False``: :math:`b_t = 1`).
        **options: ``grad_clip_norm``, ``grad_clip_value``, ``param_clip_value``,
            ``rescale_grad``, ``skip_nonfinite`` (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.prodigy import Prodigy
    >>> w = brainstate.ParamState(jnp.array([4.0, -3.0]))
    >>> opt = Prodigy().register_trainable_weights({'w': w})
    >>> for _ in range(30):
    ...     opt.update({('w',): w.value})            # gradient of ||w||^2 / 2
    >>> bool(opt.d.value > 1e-2)                      # d grew from 1e-6 towards the distance
    True
    """

    #: decoupled (scaled by d * lr * b_t), applied by the algorithm, not by the engine.
    weight_decay_mode = 'in_rule'

    betas = fixed()
    beta3 = fixed()
    eps = fixed()
    d0 = fixed()
    d_coef = fixed()
    growth_rate = fixed()
    safeguard_warmup = fixed()
    use_bias_correction = fixed()

    def __init__(self, lr=1.0, betas=(0.9, 0.999), beta3=None, eps: float = 1e-8, weight_decay: float = 0.0,
                 d0: float = 1e-6, d_coef: float = 1.0, growth_rate: float = math.inf,
                 safeguard_warmup: bool = False, use_bias_correction: bool = True, **options):
        b1, b2 = check_betas(betas)
        if beta3 is not None:
            beta3 = checks.unit_interval('beta3', beta3)
        growth_rate = float(growth_rate)
        if not growth_rate > 1.0:
            raise ValueError(f"growth_rate must be > 1 (or inf), got {growth_rate!r}")
        hyper = dict(betas=(b1, b2), beta3=beta3, eps=checks.positive('eps', eps),
                     d0=checks.positive('d0', d0), d_coef=checks.positive('d_coef', d_coef),
                     growth_rate=growth_rate, safeguard_warmup=bool(safeguard_warmup),
                     use_bias_correction=bool(use_bias_correction))
        super().__init__(PRODIGY_RULE, lr, weight_decay=weight_decay, hyperparameters=hyper, **options)
        self.d = OptimizerState(jnp.asarray(hyper['d0'], float_dtype()), name='Prodigy.d')
        self.d_numerator = OptimizerState(jnp.zeros((), float_dtype()), name='Prodigy.d_numerator')

    def _extra_states(self):
        return {'d': self.d, 'd_numerator': self.d_numerator}

    def _compute_updates(self, grads, params, groups, group_lrs, count, old_buffers):
        scheduler = self._scheduler
        if scheduler is not None and getattr(scheduler, 'cycle_momentum', False):
            raise ValueError("Prodigy's beta1 cannot be cycled by the scheduler; build it with "
                             "cycle_momentum=False")
        lrs = [group_lrs[group] for group in groups]
        decays = [self._groups[group]['weight_decay'] for group in groups]
        deltas, new_buffers, d, numerator = prodigy_step(
            grads, params, old_buffers, lrs, decays, count, self.d.value, self.d_numerator.value,
            betas=self.betas, beta3=self.beta3, eps=self.eps, d0=self.d0, d_coef=self.d_coef,
            growth_rate=self.growth_rate, safeguard_warmup=self.safeguard_warmup,
            use_bias_correction=self.use_bias_correction)
        # weight_decay_mode 'in_rule': _apply_delta only adds the delta and clips the parameter.
        new_params = [self._apply_delta(p, delta, group_lrs, group)
                      for p, delta, group in zip(params, deltas, groups)]
        return new_params, new_buffers, {'d': d, 'd_numerator': numerator}
