"""User-facing optimizers: each a pure rule from :mod:`braintools_optim.rules` plus settings."""

from .adadelta import Adadelta
from .adam import Adam, AdamW
from .rmsprop import RMSProp, RMSprop
from .sgd import SGD, Momentum, MomentumNesterov

__all__ = ['Adadelta', 'Adam', 'AdamW', 'Momentum', 'MomentumNesterov', 'RMSProp', 'RMSprop', 'SGD']
