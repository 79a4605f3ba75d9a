"""Pure update rules: ``init``/``update`` functions on plain arrays.

Nothing here knows about brainstate, units or registration; the stateful layer
(:mod:`braintools_optim._optimizer`) feeds these functions mantissas, one
parameter (or one flat buffer) at a time.
"""

from ._base import UpdateRule
from .adadelta import adadelta
from .adam import adam
from .rmsprop import rmsprop
from .sgd import sgd

__all__ = ['UpdateRule', 'adadelta', 'adam', 'rmsprop', 'sgd']
