"""Muon: Newton–Schulz-orthogonalised momentum for matrices, Adam for the rest."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.muon import ADJUST_LR_FNS, NS_COEFFICIENTS, muon


def _check_coefficients(name, value):
    try:
        coefficients = tuple(checks.number(f'{name}[{i}]', c) for i, c in enumerate(value))
    except TypeError:
        raise TypeError(f"{name} must be three numbers (a, b, c), got {value!r}") from None
    if len(coefficients) != 3:
        raise ValueError(f"{name} must be three numbers (a, b, c), got {value!r}")
    return coefficients


def _check_ns_steps(name, value):
    if isinstance(value, bool) or int(value) != value or not 1 <= value < 100:
        raise ValueError(f"{name} must be an integer in [1, 100), got {value!r}")
    return int(value)


def _check_adjust(name, value):
    adjust = 'original' if value is None else value
    if adjust not in ADJUST_LR_FNS:
        raise ValueError(f"{name} must be None, 'original' or 'match_rms_adamw', got {value!r}")
    return adjust


class Muon(Optimizer):
    r"""Muon (Jordan et al. 2024): MomentUm Orthogonalized by Newton–Schulz.

    After the common gradient processing (rescale, clip by value, clip by
    global norm), every **2-D** parameter, laid out ``(fan_in, fan_out)`` like
    ``brainstate.nn.Linear``'s weight, takes the step::

        b_t = \mu b_{t-1} + (1-\mu) g_t
        u_t = (1-\mu) g_t + \mu b_t   (nesterov, default)   or   b_t
        \theta_t = \theta_{t-1}(1 - \eta_t\lambda) - \eta_t\, s\, NS_5(u_t)

    where :math:`NS_5` is five steps of the quintic Newton–Schulz iteration
    :math:`X \leftarrow aX + (bXX^T + c(XX^T)^2)X` from
    :math:`X_0 = u/(\lVert u\rVert_F + \epsilon)`, coefficients
    :math:`(a, b, c) = (3.4445, -4.7750, 2.0315)`, and
    :math:`s = \sqrt{\max(1, \text{fan\_out}/\text{fan\_in})}` (``adjust_lr_fn='original'``)
    or :math:`0.2\sqrt{\max(\text{fan\_in}, \text{fan\_out})}` (``'match_rms_adamw'``).

    **Fallback:** every other parameter (scalars, biases, ``ndim >= 3`` kernels)
    is trained by **AdamW** with ``adam_betas`` and ``adam_eps``:
    :math:`\theta_t = \theta_{t-1}(1-\eta_t\lambda) - \eta_t\hat m_t/(\sqrt{\hat v_t}+\epsilon_{adam})`.
    It uses the same learning rate and weight decay; to give the fallback
    parameters their own, register them with :meth:`add_param_group`
    (``lr=``, ``weight_decay=``). Convolution kernels are *not* reshaped into
    matrices.

    **Weight decay is decoupled**, scaled by the learning rate (not by the
    shape factor): :math:`\theta \leftarrow \theta(1 - \eta_t\lambda)`, as
    ``torch.optim.Muon`` and ``optax.contrib.muon``.

    Conventions: defaults and momentum follow ``torch.optim.Muon`` (lr 1e-3,
    weight_decay 0.1, momentum 0.95, Nesterov, eps 1e-7, 5 steps) and Jordan's
    reference: an EMA without bias correction. torch orthogonalises in bfloat16,
    we in the parameter's dtype (as optax). torch's ``(out, in)`` weights give
    the same factor :math:`\sqrt{\max(1, out/in)}`. ``optax.contrib.muon`` bias-corrects
    the momentum (:math:`\mu b_t/(1-\mu^{t+1}) + (1-\mu)g_t/(1-\mu^t)` with Nesterov),
    which ``bias_correction=True`` reproduces; its ``consistent_rms=0.2`` is
    ``adjust_lr_fn='match_rms_adamw'``. optax's fallback is its ``adamw`` with
    ``nesterov`` tied to Muon's (a NAdam-like step); ours is plain AdamW.

    Args:
        lr: learning rate (float or LRScheduler).
        weight_decay: decoupled coefficient :math:`\lambda` (all parameters).
        momentum: :math:`\mu \in [0, 1)`.
        nesterov: Nesterov-style momentum (default ``True``).
        ns_coefficients: the quintic coefficients :math:`(a, b, c)`.
        eps: :math:`\epsilon > 0` of the Frobenius normalisation.
        ns_steps: number of Newton–Schulz iterations (1 to 99).
        adjust_lr_fn: ``None``/``'original'`` or ``'match_rms_adamw'`` (see above).
        bias_correction: bias-correct the momentum as optax (default ``False``).
        adam_betas: :math:`(\beta_1, \beta_2)` of the AdamW fallback.
        adam_eps: :math:`\epsilon > 0` of the AdamW fallback.
        **options: ``grad_clip_norm``, ``grad_clip_value``, ``param_clip_value``,
            ``rescale_grad``, ``skip_nonfinite``, ``decoupled_decay_scale``
            (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.muon import Muon
    >>> w = brainstate.ParamState(jnp.zeros((4, 4)))
    >>> b = brainstate.ParamState(jnp.zeros(4))
    >>> opt = Muon(lr=0.1, weight_decay=0.0).register_trainable_weights({'w': w, 'b': b})
    >>> opt.update({'w': jnp.diag(jnp.array([4.0, 1.0, 0.5, 0.25])), 'b': jnp.ones(4)})
    >>> bool(jnp.all(jnp.diag(w.value) < -0.05))      # every direction moves, not just the largest
    True
    >>> [round(x, 4) for x in b.value.tolist()]        # the vector took an Adam step
    [-0.1, -0.1, -0.1, -0.1]
    """

    weight_decay_mode = 'decoupled'

    hyperparameters = {
        'momentum': Hyper(checks.unit_interval, cycled=True),
        'nesterov': Hyper(checks.boolean),
        'ns_coefficients': Hyper(_check_coefficients),
        'eps': Hyper(checks.positive),
        'ns_steps': Hyper(_check_ns_steps),
        'adjust_lr_fn': Hyper(_check_adjust),
        'bias_correction': Hyper(checks.boolean),
        'adam_betas': Hyper(checks.betas(2)),
        'adam_eps': Hyper(checks.positive),
    }

    def __init__(self, lr=1e-3, weight_decay: float = 0.1, momentum: float = 0.95, nesterov: bool = True,
                 ns_coefficients=NS_COEFFICIENTS, eps: float = 1e-7, ns_steps: int = 5, adjust_lr_fn=None,
                 grad_clip_norm=None, grad_clip_value=None,
                 *, bias_correction: bool = False, adam_betas=(0.9, 0.999), adam_eps: float = 1e-8, **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        return muon(h.momentum, h.nesterov, h.ns_coefficients, h.ns_steps, h.eps, h.adjust_lr_fn,
                    h.bias_correction, h.adam_betas, h.adam_eps)
