"""NovoGrad (optax ``novograd`` / paper conventions)."""

from __future__ import annotations

from .. import _checks as checks
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.novograd import novograd


class Novograd(Optimizer):
    r"""NovoGrad (Ginsburg et al. 2019): layer-wise normalised gradients with momentum.

    After the common gradient processing (rescale, clip by value, clip by
    global norm), per parameter tensor::

        v_1 = \lVert g_1\rVert^2,   v_t = \beta_2 v_{t-1} + (1 - \beta_2)\lVert g_t\rVert^2   (one number per tensor)
        m_t = \beta_1 m_{t-1} + \frac{g_t}{\sqrt{v_t} + \epsilon} + \lambda\theta_{t-1}
        \theta_t = \theta_{t-1} - \eta_t m_t

    **Weight decay is part of the rule**: :math:`\lambda\theta` is added to the
    *normalised* gradient, inside the momentum (the paper's Algorithm 1 and
    optax ``novograd``). It is neither the engine's coupled decay (which would
    be normalised by :math:`\sqrt{v}`) nor its decoupled decay (no momentum).
    The second moment is a scalar buffer per parameter (``exp_avg_sq``, shape
    ``()``), so "a layer" is one registered parameter.

    Conventions: optax ``novograd`` (no bias correction, no :math:`1-\beta_1`
    factor on the momentum, :math:`v_1 = \lVert g_1\rVert^2`; we take :math:`v_1` at
    the parameter's first non-zero gradient, the same unless a parameter is
    registered late or starts with an exactly zero gradient). Defaults are
    braintools' (betas (0.9, 0.999), eps 1e-8); optax's are (0.9, 0.25), 1e-6.

    Args:
        lr: learning rate (float or LRScheduler), default 1e-3.
        betas: :math:`(\beta_1, \beta_2)`, each in ``[0, 1)``, default (0.9, 0.999).
        eps: :math:`\epsilon > 0`, default 1e-8, in the gradient's unit.
        weight_decay: in-rule coefficient :math:`\lambda`, default 0.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.novograd import Novograd
    >>> w = brainstate.ParamState(jnp.array([1.0, 1.0]))
    >>> opt = Novograd(lr=0.1).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([3.0, 4.0])})   # -lr * g / ||g||
    >>> [round(x, 4) for x in w.value.tolist()]
    [0.94, 0.92]
    """

    #: neither 'coupled' nor 'decoupled': the engine leaves the decay to the rule.
    weight_decay_mode = 'in_rule'

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
        return novograd(h.betas[0], h.betas[1], h.eps, h.get('weight_decay', 0.0))
