"""The optimizer's PRNG key, for stochastic rounding (``docs/precision.md``).

One key lives in an :class:`~braintools_optim.OptimizerState` (its raw
``uint32[2]`` threefry data, so checkpoints hold plain integers and the key
does not depend on ``jax_default_prng_impl``). Every applied step splits it:
the first half becomes the stored key of the next step, the second is this
step's key, from which each flat bucket (or parameter) folds in its own static
number. A step that is skipped (non-finite gradients, a micro-step of gradient
accumulation) leaves the key as it was, as it leaves everything else, so the
random bits depend only on the seed and the number of applied steps: equal
seeds give equal runs, and a run resumed from a checkpoint (which holds the
key) continues bit for bit.

>>> keys = StepKeys('Adam', seed=0)
>>> step, following = keys.split(keys.state.value)
>>> following.dtype, following.shape
(dtype('uint32'), (2,))
>>> bool((following != keys.state.value).any())
True
"""

from __future__ import annotations

from typing import Tuple

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from ._copying import PlainCopy
from ._storage import OptimizerState

IMPL = 'threefry2x32'


def check_seed(value) -> int:
    """A seed: an integer in ``[0, 2**32)``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"seed must be an integer, got {value!r}")
    if not 0 <= int(value) < 2 ** 32:
        raise ValueError(f"seed must be in [0, 2**32), got {value!r}")
    return int(value)


def key_data(seed: int) -> jax.Array:
    """The raw ``uint32[2]`` data of the key of ``seed``."""
    return jax.random.key_data(jax.random.key(seed, impl=IMPL))


class StepKeys(PlainCopy, brainstate.graph.Node):
    """The key State and the keys derived from it within one step."""

    graph_invisible_attrs = ('seed',)

    def __init__(self, owner: str, seed: int):
        self.seed = check_seed(seed)
        self.state = OptimizerState(key_data(self.seed), name=f'{owner}.rng_key')

    @staticmethod
    def split(data: jax.Array) -> Tuple[jax.Array, jax.Array]:
        """``(this step's key, the next stored key data)`` from the stored key data (traceable)."""
        following, step = jax.random.split(jax.random.wrap_key_data(data, impl=IMPL))
        return step, jax.random.key_data(following)

    @staticmethod
    def for_slot(step_key: jax.Array, group: int, slot: int) -> jax.Array:
        """The key of one stored slot (flat bucket, stack or parameter) of one group, in one step."""
        return jax.random.fold_in(jax.random.fold_in(step_key, group), slot)

    @staticmethod
    def check_loadable(value, what: str = 'rng_key') -> np.ndarray:
        """A saved key's data, checked: ``uint32[2]``; raises ``ValueError`` otherwise."""
        array = np.asarray(value)
        if array.shape != (2,) or array.dtype != np.uint32:
            raise ValueError(f"checkpoint {what} must be uint32[2] (threefry key data), got "
                             f"{array.dtype}{list(array.shape)}")
        return array

    @staticmethod
    def as_array(value) -> jax.Array:
        return jnp.asarray(np.asarray(value, np.uint32))
