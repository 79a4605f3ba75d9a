"""Any optax ``GradientTransformation`` behind this package's stateful API (braintools' ``OptaxOptimizer``)."""

from __future__ import annotations

import warnings

import jax.numpy as jnp

from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from .._registry import ParamDict
from .._storage import OptimizerState
from ..rules._base import UpdateRule

_NO_BUFFERS = UpdateRule('optax', (), lambda param: {}, lambda *args: (None, {}))


def _optax():
    try:
        import optax
    except ImportError:                                   # optax is an optional extra
        raise ImportError("OptaxOptimizer wraps an optax transformation: pip install optax") from None
    return optax


def _check_tx(name, value):
    if value is None:
        return None
    optax = _optax()
    if not isinstance(value, optax.GradientTransformation):
        raise TypeError(f"{name} must be an optax.GradientTransformation (or None for Adam), got "
                        f"{type(value).__name__}")
    return value


class OptaxOptimizer(Optimizer):
    r"""An optax ``GradientTransformation`` run by this package's engine.

    Registration, keys, gradient checks, units, clipping, coupled weight
    decay, non-finite skipping, accumulation, checkpoints and ``jit``
    behaviour are the engine's; the transformation computes the update::

        g \leftarrow \text{clip}(g) + \lambda\theta          (engine, as every optimizer)
        u, s \leftarrow \text{tx.update}(g, s, \theta)       (the transformation)
        \theta \leftarrow \theta + \eta_t\, u

    ``tx=None`` is Adam (``optax.scale_by_adam()``, then :math:`-\eta_t`):
    braintools' default. With a transformation of your own, its output is
    the update (optax's convention: it already contains the transformation's
    learning rate and sign), and ``lr`` is a **multiplier** on it, default
    1.0; a scheduler given as ``lr`` scales the transformation's steps.
    braintools ignored ``lr`` when given a transformation: a warning says so
    when you pass both.

    The transformation sees plain arrays (mantissas: optax cannot handle
    brainunit Quantities) in a :class:`~braintools_optim.ParamDict` keyed like
    ``opt.param_states``, in registration order. Its state is the
    OptimizerState ``opt.tx_state`` (saved by :meth:`state_dict` as its leaves);
    it spans every parameter, so register them all before the first update.

    Args:
        tx: an ``optax.GradientTransformation``, or ``None`` for Adam.
        lr: the learning rate (``tx=None``, default 1e-3) or the multiplier of
            the transformation's update (default 1.0); float or LRScheduler.
        weight_decay: coupled L2 coefficient :math:`\lambda`, added to the gradient
            before the transformation.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp, optax
    >>> import braintools_optim as bo
    >>> w = brainstate.ParamState(jnp.array([1.0, -1.0]))
    >>> opt = bo.OptaxOptimizer(optax.sgd(0.1)).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([1.0, 2.0])})
    >>> [round(x, 4) for x in w.value.tolist()]
    [0.9, -1.2]
    """

    hyperparameters = {'tx': Hyper(_check_tx, per_group=False, stored=False)}
    groupable = False

    def __init__(self, tx=None, lr=None, weight_decay: float = 0.0, grad_clip_norm=None, grad_clip_value=None,
                 **options):
        if tx is not None and lr is not None:
            warnings.warn("OptaxOptimizer: with a transformation, lr multiplies its update (which already "
                          "carries the transformation's own learning rate); braintools ignored lr here. "
                          "Leave lr out to apply the transformation's update as it is.", UserWarning,
                          stacklevel=2)
        if lr is None:
            lr = 1e-3 if tx is None else 1.0
        super().__init__(**captured(locals()))
        self.tx_state = OptimizerState((), name=f'{type(self).__name__}.tx_state')

    @staticmethod
    def build_rule(h):
        return _NO_BUFFERS

    def __getstate__(self):
        raise TypeError("an OptaxOptimizer cannot be pickled: its optax transformation is made of closures; "
                        "save opt.state_dict() (or opt.save(path)) and load it into a new OptaxOptimizer")

    def transformation(self):
        """The transformation this optimizer runs (``scale_by_adam`` and a sign flip for ``tx=None``)."""
        if self.tx is not None:
            return self.tx
        optax = _optax()
        return optax.chain(optax.scale_by_adam(), optax.scale(-1.0))

    def _params_tree(self, values):
        params = self._registry.params
        return ParamDict((params[i].ident, value) for i, value in zip(self._trainable, values))

    def _reassign(self, new_states=None, prefix=None) -> None:
        if len(self._registry) and new_states is not None and self.steps_taken() > 0:
            raise RuntimeError("an optax transformation's state spans all its parameters; register every "
                               "parameter before the first update, or build a new OptaxOptimizer")
        super()._reassign(new_states, prefix)
        if 'tx_state' in self.__dict__ and len(self._registry):
            self.tx_state.value = self.transformation().init(self._params_tree(self._trainable_mantissas()))

    def _extra_states(self):
        return {'tx_state': self.tx_state}

    def _compute_updates(self, grads, params, lrs, count, extra):
        """The transformation once over every trainable parameter, then ``theta + lr * u``."""
        tx = self.transformation()
        updates, new_state = tx.update(self._params_tree(grads), self.tx_state.value, self._params_tree(params))
        updates = list(updates.values())
        new_params = []
        for i, p, u in zip(self._trainable, params, updates):
            group = self._groups[self._membership[i]]
            lr_mult = self._mults[i][0]
            lr = lrs[group.index] * lr_mult if lr_mult != 1.0 else lrs[group.index]
            new_params.append(self._apply_delta(p, (jnp.asarray(lr).astype(p.dtype) * u).astype(p.dtype), group,
                                                lrs[group.index], self._mults[i]))
        return new_params, {}, {'tx_state': new_state}
