"""Schedule-Free SGD and AdamW (Defazio et al. 2024), optax ``contrib.schedule_free`` conventions."""

from __future__ import annotations

import contextlib
from typing import Any, Dict

from .. import _checks as checks
from .. import _units
from .._hyper import Hyper, captured
from .._optimizer import Optimizer
from ..rules.schedule_free import averaged_point, schedule_free_adamw, schedule_free_sgd


def _check_warmup(name, warmup_steps) -> int:
    if isinstance(warmup_steps, bool) or int(warmup_steps) != warmup_steps or warmup_steps < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {warmup_steps!r}")
    return int(warmup_steps)


def _check_interpolation(name, value) -> float:
    value = checks.unit_interval(name, value)
    if value == 0.0:
        raise ValueError(f"{name} must be > 0: the evaluation point x = (y - (1 - b) z) / b is "
                         f"recovered from y and z by dividing by it")
    return value


def _check_betas(name, value) -> tuple:
    b1, b2 = checks.betas(2)(name, value)
    return (_check_interpolation(f'{name}[0]', b1), b2)


class _ScheduleFree(Optimizer):
    """Evaluation at the averaged point, shared by both Schedule-Free optimizers."""

    #: eval_params() belongs to the optimizer: a group of another optimizer cannot offer it
    groupable = False
    _in_eval = False

    @staticmethod
    def _interpolation(h) -> float:
        """The interpolation coefficient of a group's settings."""
        raise NotImplementedError

    def _averaged_values(self):
        params = self._registry.params
        out = {}
        for g, storage in self._storage.items():
            beta = self._interpolation(self._groups[g].settings)
            for i, z in zip(storage.members, storage.values('z')):
                y, unit = _units.split(params[i].handle.value)
                out[i] = _units.merge(averaged_point(y, z, beta).astype(y.dtype), unit)
        return out

    def averaged_params(self) -> Dict[Any, Any]:
        r"""The evaluation point :math:`x = (y - (1-\beta)z)/\beta` of every trainable parameter.

        Keyed like :meth:`buffers` (the State's key), with each parameter's
        unit. Nothing is written; see :meth:`eval_params` to evaluate a model there.
        """
        params = self._registry.params
        return {params[i].ident: value for i, value in self._averaged_values().items()}

    @contextlib.contextmanager
    def eval_params(self):
        r"""Context manager: the registered ParamStates hold :math:`x` inside, :math:`y` again after.

        During training the ParamStates hold :math:`y`, the point where
        gradients are taken. For validation, testing or checkpoints of the
        final model, evaluate at the averaged :math:`x`::

            with opt.eval_params():
                accuracy = evaluate(model)

        The exact previous values are restored on exit (also after an
        exception). Calling :meth:`update` inside the block raises. Works
        eagerly and inside ``brainstate.transform.jit``.
        """
        if self._in_eval:
            raise RuntimeError("eval_params() is already active")
        params = self._registry.params
        averaged = self._averaged_values()
        saved = {i: params[i].handle.value for i in averaged}
        for i, x in averaged.items():
            params[i].handle.value = x
        self._in_eval = True
        try:
            yield self
        finally:
            for i, value in saved.items():
                params[i].handle.value = value
            self._in_eval = False

    def _update_arguments(self, kwargs):
        if self._in_eval:
            raise RuntimeError(f"{type(self).__name__}.update inside eval_params(): the ParamStates hold "
                               f"the averaged point x there, not the training point y; leave the "
                               f"block before updating")
        return super()._update_arguments(kwargs)

    @classmethod
    def cycle_error(cls, h):
        return (f"{cls.__name__}'s interpolation coefficient cannot be cycled: the averaged point is "
                f"recovered from y and z with a fixed value; build the scheduler with cycle_momentum=False")


class ScheduleFreeSGD(_ScheduleFree):
    r"""Schedule-Free SGD (Defazio et al. 2024, "The Road Less Scheduled").

    Momentum is replaced by interpolation and averaging. With interpolation
    :math:`\beta` (``momentum``), after the common gradient processing (rescale,
    clip by value, clip by global norm, then **coupled** weight decay
    :math:`g \leftarrow g + \lambda y`)::

        \gamma_t = \eta_t \min(1, t/W),   w_t = (\max_{s \le t}\gamma_s)^p,   c_t = w_t / \sum_{s \le t} w_s
        z_t = z_{t-1} - \gamma_t g_t,   x_t = (1-c_t) x_{t-1} + c_t z_t,   y_t = \beta x_t + (1-\beta) z_t

    (:math:`z_0 = x_0 = y_0 = \theta_0`; :math:`W` = ``warmup_steps``, :math:`p` = ``weight_lr_power``).

    **Which point the ParamStates hold:** during training the registered
    ParamStates hold :math:`y`, the point where gradients must be computed;
    :math:`z` is the buffer ``z``; the point to *evaluate* (validate, test,
    export) is :math:`x`: use ``with opt.eval_params(): ...`` (swaps :math:`x`
    in and back) or :meth:`averaged_params` (returns it). No learning-rate
    decay is needed; a warm-up helps (``warmup_steps`` or an LRScheduler).

    Conventions: optax ``contrib.schedule_free_sgd`` and torch's reference
    ``SGDScheduleFree`` (with ``r=0``) agree with this; our warm-up uses
    :math:`t/W` for both :math:`z` and the weights (optax's
    ``warmup_steps`` evaluates its schedule one step earlier for the base SGD
    than for the weights).

    Args:
        lr: learning rate :math:`\eta_t` (float or LRScheduler); default 1.0 (optax, torch reference).
        momentum: interpolation :math:`\beta \in (0, 1)`.
        weight_decay: coupled L2 coefficient :math:`\lambda` (gradient taken at :math:`y`).
        warmup_steps: linear warm-up length :math:`W \ge 0` (0: none).
        weight_lr_power: averaging-weight power :math:`p`.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.schedule_free import ScheduleFreeSGD
    >>> w = brainstate.ParamState(jnp.array([1.0]))
    >>> opt = ScheduleFreeSGD(lr=0.5, momentum=0.5).register_trainable_weights({'w': w})
    >>> for _ in range(2):
    ...     opt.update({'w': w.value})            # gradient of w**2 / 2
    >>> round(float(w.value[0]), 4)                   # y, the training point
    0.3125
    >>> with opt.eval_params():
    ...     round(float(w.value[0]), 4)               # x, the averaged point
    0.375
    >>> round(float(w.value[0]), 4)                   # y again
    0.3125
    """

    hyperparameters = {
        'momentum': Hyper(_check_interpolation),
        'warmup_steps': Hyper(_check_warmup),
        'weight_lr_power': Hyper(checks.non_negative),
    }

    def __init__(self, lr=1.0, momentum: float = 0.9, weight_decay: float = 0.0, warmup_steps: int = 0,
                 weight_lr_power: float = 2.0, grad_clip_norm=None, grad_clip_value=None, **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def _interpolation(h) -> float:
        return h.momentum

    @staticmethod
    def build_rule(h):
        return schedule_free_sgd(h.momentum, h.weight_lr_power, h.warmup_steps)


class ScheduleFreeAdamW(_ScheduleFree):
    r"""Schedule-Free AdamW (Defazio et al. 2024).

    As :class:`ScheduleFreeSGD` with an Adam-normalised direction. After the
    common gradient processing (rescale, clip by value, clip by global norm)::

        v_t = \beta_2 v_{t-1} + (1-\beta_2) g_t^2
        d_t = g_t / (\sqrt{v_t/(1-\beta_2^t)} + \epsilon) + \lambda y_{t-1}
        \gamma_t = \eta_t \min(1, t/W),   w_t = (\max_{s \le t}\gamma_s)^p,   c_t = w_t / \sum_{s \le t} w_s
        z_t = z_{t-1} - \gamma_t d_t,   x_t = (1-c_t) x_{t-1} + c_t z_t,   y_t = \beta_1 x_t + (1-\beta_1) z_t

    **Weight decay is decoupled** (never enters :math:`v`) and part of the
    rule: :math:`\gamma_t\lambda y` is subtracted from :math:`z`, so it is averaged
    into :math:`x` with the rest (optax and the paper). Each parameter group's
    ``weight_decay`` is used for its tensors.

    **Which point the ParamStates hold:** :math:`y` during training; evaluate
    at :math:`x` with ``with opt.eval_params(): ...`` or :meth:`averaged_params`.

    Conventions: optax ``contrib.schedule_free_adamw`` (bias correction of
    :math:`v` with :math:`\epsilon` outside the root, averaging weights from the
    uncorrected learning rate). torch's reference ``AdamWScheduleFree`` and the
    paper's Algorithm 1 instead fold :math:`\sqrt{1-\beta_2^t}` into the learning
    rate (:math:`\epsilon` then acts unscaled, and the weights :math:`w_t` see the
    corrected rate), which differs in the first ~:math:`1/(1-\beta_2)` steps.

    Args:
        lr: learning rate (float or LRScheduler); default 0.0025 (optax, torch reference).
        betas: :math:`(\beta_1, \beta_2)`: interpolation :math:`\beta_1 \in (0, 1)` and
            second-moment decay :math:`\beta_2 \in [0, 1)`.
        eps: :math:`\epsilon > 0`, in the gradient's unit.
        weight_decay: decoupled in-rule coefficient :math:`\lambda`.
        warmup_steps: linear warm-up length :math:`W \ge 0` (0: none).
        weight_lr_power: averaging-weight power :math:`p`.
        grad_clip_norm, grad_clip_value: gradient clipping (see :class:`Optimizer`).
        **options: the engine's other options (see :class:`Optimizer`).

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.schedule_free import ScheduleFreeAdamW
    >>> w = brainstate.ParamState(jnp.array([1.0, -1.0]))
    >>> opt = ScheduleFreeAdamW(lr=0.1).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([2.0, -0.5])})       # first step: y = x = z = w - lr * sign(g)
    >>> [round(x, 4) for x in w.value.tolist()]
    [0.9, -0.9]
    >>> sorted(opt.averaged_params()) == sorted(opt.param_states)
    True
    """

    #: decoupled, but applied inside the rule (to z), not by the engine.
    weight_decay_mode = 'in_rule'

    hyperparameters = {
        'betas': Hyper(_check_betas),
        'eps': Hyper(checks.positive),
        'warmup_steps': Hyper(_check_warmup),
        'weight_lr_power': Hyper(checks.non_negative),
    }

    def __init__(self, lr=0.0025, betas=(0.9, 0.999), eps: float = 1e-8, weight_decay: float = 0.0,
                 warmup_steps: int = 0, weight_lr_power: float = 2.0, grad_clip_norm=None, grad_clip_value=None,
                 **options):
        super().__init__(**captured(locals()))

    @staticmethod
    def _interpolation(h) -> float:
        return h.betas[0]

    @staticmethod
    def build_rule(h):
        return schedule_free_adamw(h.betas[0], h.betas[1], h.eps, h.get('weight_decay', 0.0), h.weight_lr_power,
                                   h.warmup_steps)
