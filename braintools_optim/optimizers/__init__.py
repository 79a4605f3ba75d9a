"""User-facing optimizers: each a pure rule from :mod:`braintools_optim.rules` plus settings."""

from .adabelief import AdaBelief
from .adadelta import Adadelta
from .adagrad import Adagrad
from .adafactor import Adafactor
from .adam import Adam, AdamW
from .adamax import Adamax
from .adan import Adan
from .fromage import Fromage
from .lamb import Lamb
from .lars import Lars
from .lbfgs import LBFGS
from .lion import Lion
from .lookahead import Lookahead
from .muon import Muon
from .nadam import NAdam, NAdamW, Nadam
from .novograd import Novograd
from .optax_optimizer import OptaxOptimizer
from .prodigy import Prodigy
from .radam import RAdam
from .rmsprop import RMSProp, RMSprop
from .rprop import Rprop
from .schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD
from .sgd import SGD, Momentum, MomentumNesterov
from .sm3 import SM3
from .yogi import Yogi

__all__ = ['Adafactor', 'LBFGS', 'Lamb', 'Lars', 'Lookahead', 'Muon', 'Prodigy', 'ScheduleFreeAdamW',
           'ScheduleFreeSGD', 'AdaBelief', 'Adadelta', 'Adagrad', 'Adam', 'AdamW', 'Adamax', 'Adan', 'Fromage', 'Lion',
           'Momentum', 'MomentumNesterov', 'NAdam', 'OptaxOptimizer', 'NAdamW', 'Nadam', 'Novograd', 'RAdam', 'RMSProp',
           'RMSprop', 'Rprop', 'SGD', 'SM3', 'Yogi']
