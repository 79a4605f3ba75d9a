"""Fromage (paper / optax ``fromage`` conventions)."""

from __future__ import annotations

import warnings

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.fromage import fromage


class Fromage(Optimizer):
    r"""Fromage, "Frobenius matched gradient descent" (Bernstein et al. 2020).

    After the common gradient processing (rescale, clip by value, clip by
    global norm, then **coupled** weight decay :math:`g \leftarrow g + \lambda\theta`
    if ``weight_decay`` is given; default none), per parameter tensor::

        \theta_t = \frac{\theta_{t-1} - \eta_t \frac{\max(\lVert\theta_{t-1}\rVert, \nu)}{\max(\lVert g_t\rVert, \nu)} g_t}{\sqrt{1 + \eta_t^2}}

    Each tensor moves by :math:`\eta_t` relative to its own norm; the
    :math:`1/\sqrt{1+\eta^2}` factor keeps norms from growing. ``lr`` is
    therefore dimensionless (a relative step), default 1.0 as braintools; the
    paper recommends 0.01. The learning rate is read every step, so schedulers
    act (braintools bakes its initial value into optax).

    Conventions: the paper's Algorithm 1, its authors' code and optax
    ``fromage`` (all identical). Norms are per registered parameter.

    ``momentum``: accepted for braintools compatibility, but Fromage has no
    momentum term, so any value other than 0 raises ``ValueError`` (braintools
    warned and ignored it).

    Args:
        lr: relative step :math:`\eta` (float or LRScheduler), default 1.0.
        momentum: must be 0.
        min_norm: floor :math:`\nu > 0` on both norms (keyword only), default 1e-6
            (optax); a parameter at zero moves by about :math:`\eta\nu`.
        **options: ``weight_decay`` (coupled), ``grad_clip_norm``, ``grad_clip_value``,
            ``param_clip_value``, ``rescale_grad``, ``skip_nonfinite`` (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.fromage import Fromage
    >>> w = brainstate.ParamState(jnp.array([3.0, 0.0]))
    >>> opt = Fromage(lr=0.75).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([0.0, 7.0])})    # norm 3 is kept: (3, -2.25) / 1.25
    >>> [round(x, 4) for x in w.value.tolist()]
    [2.4, -1.8]
    """


    hyperparameters = {
        'momentum': Hyper(checks.non_negative),     # braintools' argument; Fromage has no momentum term
        'min_norm': Hyper(checks.positive),
    }

    def __init__(self, lr=1.0, momentum: float = 0.0, grad_clip_norm=None, grad_clip_value=None, *,
                 min_norm: float = 1e-6, **options):
        if checks.non_negative('momentum', momentum) != 0.0:
            warnings.warn(f"Fromage has no momentum term: momentum={momentum!r} does nothing (accepted for "
                          f"code written for braintools, which ignores it too)", UserWarning, stacklevel=2)
        super().__init__(**captured(locals()))

    @staticmethod
    def build_rule(h):
        return fromage(h.min_norm)
