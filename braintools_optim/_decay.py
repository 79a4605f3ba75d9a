"""Each parameter group's weight decay, held in State so it can change between steps without re-tracing.

A group whose decay is zero when its step is compiled has no decay term in
that step (nothing to read, nothing to multiply: what weight decay costs when
it is off). Giving it a non-zero decay later rebuilds an eager step and is
refused once the step is compiled into the caller's own ``jit``.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import brainstate
import jax
import jax.numpy as jnp

from . import _checks as checks
from . import _ensemble
from ._copying import PlainCopy
from ._storage import OptimizerState


def nonzero(value) -> bool:
    """Whether a decay needs a term in the compiled step (a traced one always does)."""
    return isinstance(value, jax.core.Tracer) or value != 0.0


class WeightDecays(PlainCopy, brainstate.graph.Node):
    """The weight decay of every group (see the module docstring).

    ``live[g]``: group ``g``'s compiled step has a decay term. Values set from
    Python are reported exactly as given (``0.01``, not float32's
    ``0.0099999998``) while the State still holds them.
    """

    graph_invisible_attrs = ('_name', 'live', '_exact')

    def __init__(self, owner_name: str, first: float):
        self._name = owner_name
        self.live: List[bool] = []
        self._exact: List[Optional[float]] = []
        self.state = OptimizerState(jnp.zeros((0,), checks.float_dtype()), name=f'{owner_name}.weight_decay')
        self.add(first)

    def add(self, value) -> None:
        self.live.append(nonzero(value))
        self._exact.append(None if isinstance(value, jax.core.Tracer) else float(value))
        self.state.value = jnp.concatenate([self.state.value, jnp.reshape(jnp.asarray(value, self.state.value.dtype),
                                                                          (1,))])

    def pop(self) -> None:
        self.live.pop()
        self._exact.pop()
        self.state.value = self.state.value[:-1]

    def traced(self, group: int, mult: float = 1.0):
        """The decay of a member of ``group`` with multiplier ``mult`` (``None`` when statically zero)."""
        if not self.live[group] or mult == 0.0:
            return None
        decay = self.state.value[..., group]
        return decay if mult == 1.0 else decay * mult

    def host_value(self, group: int) -> float:
        value = self.state.value
        if isinstance(value, jax.core.Tracer):
            return value[..., group]
        stored = _ensemble.host_entry(value, group)
        if jnp.ndim(stored):
            return stored                                # one per member of an ensemble
        exact = self._exact[group]
        if exact is not None and jnp.asarray(exact, stored.dtype) == stored:
            return exact
        return float(stored)

    def set(self, value, groups: Sequence[int], compiled_by_caller: bool) -> bool:
        """Set ``groups`` to ``value``; returns whether a compiled step must be rebuilt."""
        value = checks.non_negative('weight_decay', value)
        rebuild = False
        for g in groups:
            if not self.live[g] and value != 0.0:
                if compiled_by_caller:
                    raise RuntimeError(f"parameter group {g} was compiled without weight decay (it was 0); "
                                       f"build the optimizer with a non-zero weight_decay to adjust it later")
                self.live[g] = True
                rebuild = True
        for g in groups:
            self._exact[g] = float(value)
        current = jnp.asarray(self.state.value)
        self.state.value = current.at[..., jnp.asarray(list(groups), jnp.int32)].set(value)    # every member
        return rebuild

    def load(self, values) -> bool:
        """Write checked decays from a checkpoint; returns whether a compiled step must be rebuilt."""
        rebuild = False
        for g, value in enumerate(values):
            if value != 0.0 and not self.live[g]:
                self.live[g] = True
                rebuild = True
        self.state.value = jnp.asarray(values, self.state.value.dtype)
        self._exact = [None] * len(self._exact)
        return rebuild
