"""braintools_optim: stateful optimizers and learning-rate schedulers for brainstate models.

>>> import brainstate, jax.numpy as jnp
>>> import braintools_optim as bo
>>> w = brainstate.ParamState(jnp.ones(3))
>>> opt = bo.Adam(lr=1e-2).register_trainable_weights({'w': w})
>>> grads = brainstate.transform.grad(lambda: jnp.sum(w.value ** 2), opt.param_states)()
>>> opt.update(grads)
>>> int(opt.step_count.value)
1
"""

from . import checkpoint, distributed, gradient_processing, rules, schedulers, select, unique_states
from ._errors import CheckpointMismatchError, GradientMismatchError, GroupSelectionError, ParameterChangedError
from ._hyper import Hyper
from ._optimizer import BraintoolsOptimDeprecationWarning, Optimizer
from ._registry import ParamDict
from ._storage import OptimizerState

OptimState = OptimizerState      # braintools' name
from .averaging import EMA, SWA
from .unique_states import UniqueStateManager
from .optimizers import (LBFGS, Adafactor, Lamb, Lars, Lookahead, Muon, Prodigy, ScheduleFreeAdamW,
                         ScheduleFreeSGD, SGD, SM3, AdaBelief, Adadelta, Adagrad, Adam, Adamax, Adan, AdamW,
                         Fromage, Lion,
                         Momentum, MomentumNesterov, NAdam, NAdamW, Nadam, Novograd, OptaxOptimizer, RAdam, RMSProp,
                         RMSprop,
                         Rprop, Yogi)
from .schedulers import (ChainedScheduler, ConstantLR, CosineAnnealingLR, CosineAnnealingWarmRestarts,
                         CyclicLR, ExponentialDecayLR, ExponentialLR, LambdaLR, LinearLR, LRScheduler,
                         MultiplicativeLR, MultiStepLR, OneCycleLR, PiecewiseConstantSchedule, PolynomialLR,
                         ReduceLROnPlateau, SequentialLR, StepLR, WarmupCosineSchedule, WarmupScheduler)

__version__ = '0.1.0'

__all__ = [
    'Adadelta', 'Adam', 'AdamW', 'EMA', 'GradientMismatchError', 'SWA', 'checkpoint', 'LRScheduler', 'Momentum',
    'CheckpointMismatchError', 'GroupSelectionError', 'ParameterChangedError', 'Hyper', 'ParamDict', 'select',
    'MomentumNesterov', 'Optimizer', 'OptimizerState', 'RMSProp', 'RMSprop', 'SGD',
    'gradient_processing', 'rules', 'schedulers', 'unique_states', 'distributed',
    'AdaBelief', 'Adagrad', 'Adamax', 'Adan', 'Fromage', 'Lion', 'NAdam', 'NAdamW', 'Nadam', 'Novograd',
    'RAdam', 'Rprop', 'SM3', 'Yogi', 'OptaxOptimizer', 'OptimState', 'UniqueStateManager',
    'BraintoolsOptimDeprecationWarning',
    'Adafactor', 'LBFGS', 'Lamb', 'Lars', 'Lookahead', 'Muon', 'Prodigy', 'ScheduleFreeAdamW',
    'ScheduleFreeSGD',
    # schedulers
    'ChainedScheduler', 'ConstantLR', 'CosineAnnealingLR', 'CosineAnnealingWarmRestarts', 'CyclicLR',
    'ExponentialDecayLR', 'ExponentialLR', 'LambdaLR', 'LinearLR', 'MultiStepLR', 'MultiplicativeLR',
    'OneCycleLR', 'PiecewiseConstantSchedule', 'PolynomialLR', 'ReduceLROnPlateau', 'SequentialLR', 'StepLR',
    'WarmupCosineSchedule', 'WarmupScheduler',
]
