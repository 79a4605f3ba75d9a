"""Rprop (torch.optim.Rprop conventions, with a learning rate that follows a scheduler)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.rprop import rprop


def _pair(name, value):
    try:
        values = tuple(value)
    except TypeError:
        raise TypeError(f"{name} must be a pair of numbers, got {value!r}") from None
    if len(values) != 2:
        raise ValueError(f"{name} must have 2 entries, got {value!r}")
    return values


def _check_etas(name, value):
    eta_minus, eta_plus = _pair(name, value)
    eta_minus = checks.positive(f'{name}[0]', eta_minus)
    eta_plus = checks.positive(f'{name}[1]', eta_plus)
    if not eta_minus < 1.0 < eta_plus:
        raise ValueError(f"{name} must satisfy 0 < {name}[0] < 1 < {name}[1], got {value!r}")
    return (eta_minus, eta_plus)


def _check_step_sizes(name, value):
    min_step, max_step = _pair(name, value)
    min_step = checks.non_negative(f'{name}[0]', min_step)
    max_step = checks.positive(f'{name}[1]', max_step)
    if min_step > max_step:
        raise ValueError(f"{name} must satisfy {name}[0] <= {name}[1], got {value!r}")
    return (min_step, max_step)


class Rprop(Optimizer):
    r"""Resilient backpropagation (Riedmiller & Braun 1993), as torch.optim.Rprop.

    After the common gradient processing (rescale, clip by value, clip by
    global norm, then **coupled** weight decay :math:`g \leftarrow g + \lambda\theta`;
    torch's Rprop has none, default 0)::

        s_t = \operatorname{sign}(g_t g'_{t-1}),   f_t = \eta^+ (s_t > 0),\ \eta^- (s_t < 0),\ 1 (s_t = 0)
        \Delta_t = \operatorname{clip}(\Delta_{t-1} f_t \, \eta_t/\eta_{t-1}, \Delta_{min}, \Delta_{max}),   \Delta_0 = \eta_1
        g'_t = 0 \text{ if } s_t < 0 \text{ else } g_t
        \theta_t = \theta_{t-1} - \operatorname{sign}(g'_t)\,\Delta_t

    **The learning rate.** ``lr`` is the initial step size, as in torch; from
    then on each element's step size :math:`\Delta` adapts by the signs of
    successive gradients only. torch reads ``lr`` once, so a torch scheduler has
    no effect on Rprop. Here the learning rate is read at every step (from the
    optimizer's ``lr`` State or an ``LRScheduler``) and acts through its
    *changes*: every step size is multiplied by :math:`\eta_t/\eta_{t-1}`. A
    constant learning rate therefore gives torch's Rprop exactly; a schedule
    that halves the rate halves every adapted step size at that moment (an
    ``ExponentialLR`` with factor :math:`\gamma` shrinks the steps by an extra
    :math:`\gamma` per step on top of the sign adaptation); assigning
    ``opt.lr = x`` rescales them by ``x / old``. The bounds ``step_sizes`` stay
    absolute and are applied after the rescaling, so ``lr = 0`` still moves by
    :math:`\Delta_{min}` (torch with ``lr=0`` does the same); the first step after
    a zero learning rate restarts from :math:`\Delta = \eta_t`.

    Other conventions: torch's "Rprop-" variant (no weight backtracking; after
    a sign change the element does not move and the next step treats it as
    fresh). optax 0.2.8 ``rprop`` (used by braintools) applies every update one
    step late, its first update being zero; not reproduced. Rprop is meant for
    full-batch gradients: with mini-batch noise the sign flips constantly.

    Args:
        lr: the initial step size (float or LRScheduler), default 1e-2, in the
            parameter's unit.
        etas: :math:`(\eta^-, \eta^+)` with :math:`0 < \eta^- < 1 < \eta^+`, default (0.5, 1.2).
        step_sizes: :math:`(\Delta_{min}, \Delta_{max})`, :math:`0 \le \Delta_{min} \le \Delta_{max}`,
            default (1e-6, 50), in the parameter's unit.
        weight_decay: coupled L2 coefficient :math:`\lambda` (keyword only), default 0.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.rprop import Rprop
    >>> w = brainstate.ParamState(jnp.array([1.0, 1.0]))
    >>> opt = Rprop(lr=0.1).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([1.0, 1.0])})     # first step: -lr * sign(g)
    >>> opt.update({'w': jnp.array([1.0, -1.0])})    # same sign: 0.12; flip: no move
    >>> [round(x, 4) for x in w.value.tolist()]
    [0.78, 0.9]
    >>> opt.lr = 0.05                                   # halves every step size
    >>> opt.update({'w': jnp.array([1.0, 1.0])})     # 0.12 * 1.2 / 2 and 0.05 * 1 / 2
    >>> [round(x, 4) for x in w.value.tolist()]
    [0.708, 0.875]
    """


    hyperparameters = {
        'etas': Hyper(_check_etas),
        'step_sizes': Hyper(_check_step_sizes),
    }

    def __init__(self, lr=1e-2, etas=(0.5, 1.2), step_sizes=(1e-6, 50.0), grad_clip_norm=None, grad_clip_value=None,
                 *, weight_decay: float = 0.0,
                 **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        return rprop(h.etas[0], h.etas[1], h.step_sizes[0], h.step_sizes[1])
