"""Pure update rules: ``init``/``update`` functions on plain arrays.

Nothing here knows about brainstate, units or registration; the stateful layer
(:mod:`braintools_optim._optimizer`) feeds these functions mantissas, one
parameter at a time. Most rules are element-wise (``adam``, ``sgd``, ...);
``novograd``, ``fromage`` and ``sm3`` work per tensor and some keep scalar or
factored buffers: the engine always runs a rule on whole parameters.
"""

from ._base import UpdateRule
from .adabelief import adabelief
from .adadelta import adadelta
from .adafactor import adafactor
from .adagrad import adagrad
from .adam import adam
from .adamax import adamax
from .adan import adan
from .fromage import fromage
from .lamb import lamb
from .lars import lars
from .lion import lion
from .muon import muon
from .nadam import nadam
from .novograd import novograd
from .radam import radam
from .rmsprop import rmsprop
from .rprop import rprop
from .schedule_free import schedule_free_adamw, schedule_free_sgd
from .sgd import sgd
from .sm3 import sm3
from .yogi import yogi

__all__ = ['UpdateRule', 'adafactor', 'lamb', 'lars', 'muon', 'schedule_free_adamw', 'schedule_free_sgd', 'adabelief', 'adadelta', 'adagrad', 'adam', 'adamax', 'adan', 'fromage', 'lion',
           'nadam', 'novograd', 'radam', 'rmsprop', 'rprop', 'sgd', 'sm3', 'yogi']
