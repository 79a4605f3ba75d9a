"""Prodigy: learning-rate-free Adam with a global distance estimate (optax ``contrib.prodigy``)."""

from __future__ import annotations

import math
from typing import Dict, List

import jax.numpy as jnp

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from .._storage import OptimizerState
from ..rules.prodigy import PRODIGY_RULE, prodigy_step


def _check_growth_rate(name, value):
    value = float(value)
    if not value > 1.0:
        raise ValueError(f"{name} must be > 1 (or inf), got {value!r}")
    return value


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
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.prodigy import Prodigy
    >>> w = brainstate.ParamState(jnp.array([4.0, -3.0]))
    >>> opt = Prodigy().register_trainable_weights({'w': w})
    >>> for _ in range(30):
    ...     opt.update({'w': w.value})            # gradient of ||w||^2 / 2
    >>> bool(opt.d.value > 1e-2)                      # d grew from 1e-6 towards the distance
    True
    """

    #: decoupled (scaled by d * lr * b_t), applied by the algorithm, not by the engine.
    weight_decay_mode = 'in_rule'
    #: stochastic_round / master_weights: the step runs on float32 values and the engine rounds its result
    rounds_own_step = True

    hyperparameters = {
        'betas': Hyper(checks.betas(2)),
        'beta3': Hyper(checks.optional(checks.unit_interval)),
        'eps': Hyper(checks.positive),
        'd0': Hyper(checks.positive),
        'd_coef': Hyper(checks.positive),
        'growth_rate': Hyper(_check_growth_rate),
        'safeguard_warmup': Hyper(checks.boolean),
        'use_bias_correction': Hyper(checks.boolean),
    }

    def __init__(self, lr=1.0, betas=(0.9, 0.999), beta3=None, eps: float = 1e-8, weight_decay: float = 0.0,
                 d0: float = 1e-6, d_coef: float = 1.0, growth_rate: float = math.inf, safeguard_warmup: bool = False,
                 use_bias_correction: bool = True, grad_clip_norm=None, grad_clip_value=None, **options):
        super().__init__(**captured(locals()))
        self.d = OptimizerState(jnp.asarray(self.d0, checks.float_dtype()), name='Prodigy.d')
        self.d_numerator = OptimizerState(jnp.zeros((), checks.float_dtype()), name='Prodigy.d_numerator')

    @staticmethod
    def build_rule(h):
        return PRODIGY_RULE

    def _extra_states(self):
        return {'d': self.d, 'd_numerator': self.d_numerator}

    @classmethod
    def _fused_layout(cls, rule):
        # every buffer is element-wise and d, r are sums over everything: flat buckets serve them directly
        return 'flat'

    def _compute_updates(self, grads, params, lrs, count, extra):
        """One Prodigy step over every trainable parameter (all groups share ``d``).

        The step runs on the stored *chunks*: one per flat bucket (fused
        layout, a bucket shares one lr and decay) or one per parameter
        (``fused=False``); :func:`prodigy_step` is the same math either way.
        """
        position = {i: j for j, i in enumerate(self._trainable)}
        chunks = []                   # (group, layout, member grads/params, chunk grads/params, lrs, decays)
        for g, storage in self._storage.items():
            group = self._groups[g]
            ids, classes = self._mult_classes(storage.members)
            member_grads = [grads[position[i]] for i in storage.members]
            member_params = [params[position[i]] for i in storage.members]
            if storage.fused:
                layout = storage.layout
                chunk_classes = [classes[bucket.group] for bucket in layout.buckets]
                chunk_grads, chunk_params = layout.pack(member_grads), layout.pack(member_params)
            else:
                layout = None
                chunk_classes = [classes[k] for k in ids]
                chunk_grads, chunk_params = member_grads, member_params
            chunk_lrs = [lrs[g] * lr_mult if lr_mult != 1.0 else lrs[g] for lr_mult, _ in chunk_classes]
            chunk_decays = [self._decay_for(group, wd_mult) for _, wd_mult in chunk_classes]
            chunks.append((g, layout, member_params, chunk_grads, chunk_params, chunk_lrs, chunk_decays))

        flat = lambda column: [x for chunk in chunks for x in chunk[column]]
        buffers = {name: [x for g in self._storage for x in self._storage[g].states[name].value]
                   for name in PRODIGY_RULE.buffer_names}
        h = self._default_group.settings
        deltas, new_buffers, d, numerator = prodigy_step(
            flat(3), flat(4), buffers, flat(5), [0.0 if x is None else x for x in flat(6)],
            count, self.d.value, self.d_numerator.value, betas=h.betas, beta3=h.beta3, eps=h.eps, d0=h.d0,
            d_coef=h.d_coef, growth_rate=h.growth_rate, safeguard_warmup=h.safeguard_warmup,
            use_bias_correction=h.use_bias_correction)

        new_params: List = [None] * len(params)
        new_stored: Dict[int, Dict[str, List]] = {}
        start = 0
        for g, layout, member_params, chunk_grads, *_ in chunks:
            stop = start + len(chunk_grads)
            new_stored[g] = {name: new_buffers[name][start:stop] for name in PRODIGY_RULE.buffer_names}
            member_deltas = deltas[start:stop] if layout is None else layout.scatter(deltas[start:stop], count)
            start = stop
            group = self._groups[g]
            # weight_decay_mode 'in_rule': _apply_delta only adds the delta and clips the parameter.
            for i, param, delta in zip(self._storage[g].members, member_params, member_deltas):
                new_params[position[i]] = self._apply_delta(param, delta, group, lrs[g], self._mults[i])
        return new_params, new_stored, {'d': d, 'd_numerator': numerator}
