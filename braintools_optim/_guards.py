"""Step guards: gradient accumulation and non-finite skipping.

Both decide, inside the compiled step, whether this ``update`` call is a real
optimizer step:

* accumulation (``accumulate_steps=k``) sums gradients over ``k`` calls and
  steps on the last; the step counter and schedules count real steps only;
* non-finite skipping (``skip_nonfinite=True``) leaves everything untouched
  when any gradient element is NaN or Inf (over all groups), counts the skip,
  and with ``max_consecutive_skips=n`` raises after ``n`` skips in a row.

Their counters and the accumulator live in State and are saved with the
optimizer (:meth:`StepGuards.counters`).
"""

from __future__ import annotations

from typing import Dict, List, Optional

import brainstate
import jax
import jax.numpy as jnp

from ._copying import PlainCopy


def counter(name: str) -> brainstate.State:
    return brainstate.LongTermState(jnp.zeros((), jnp.int32), name=name)


class StepGuards(PlainCopy, brainstate.graph.Node):
    """Accumulation and non-finite skipping for one optimizer (see the module docstring)."""

    graph_invisible_attrs = ('_owner', 'skip_nonfinite', 'max_consecutive_skips', 'accumulate_steps',
                             'accumulate_mean')

    def __init__(self, owner: str, *, skip_nonfinite: bool, max_consecutive_skips: Optional[int],
                 accumulate_steps: int, accumulate_mean: bool, state_type=brainstate.LongTermState):
        self._owner = owner
        self.skip_nonfinite = skip_nonfinite
        self.max_consecutive_skips = max_consecutive_skips
        self.accumulate_steps = accumulate_steps
        self.accumulate_mean = accumulate_mean
        make = lambda what: state_type(jnp.zeros((), jnp.int32), name=f'{owner}.{what}')
        self.nonfinite_skips = make('nonfinite_skips') if skip_nonfinite else None
        self.consecutive_skips = make('consecutive_skips') if skip_nonfinite else None
        self.micro_step = make('micro_step') if accumulate_steps > 1 else None
        self.accumulator = state_type([], name=f'{owner}.grad_accumulator') if accumulate_steps > 1 else None

    def counters(self) -> Dict[str, brainstate.State]:
        """The integer counters the guards keep (saved by ``state_dict``)."""
        out = {}
        for name in ('nonfinite_skips', 'consecutive_skips', 'micro_step'):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out

    def resize(self, kept: List[Optional[int]], fresh_like: List[jax.Array]) -> None:
        """After registration: keep the accumulator of known parameters, zeros for new ones.

        ``kept[i]`` is the old position of parameter ``i`` (``None``: new).
        """
        if self.accumulator is None:
            return
        old = self.accumulator.value
        self.accumulator.value = [old[j] if j is not None else jnp.zeros_like(x)
                                  for j, x in zip(kept, fresh_like)]

    def accumulate(self, grads: List[jax.Array]):
        """``(gradients for this step, traced "is a real step" or None)``."""
        if self.accumulator is None:
            return grads, None
        micro = self.micro_step.value + 1
        summed = [acc + g for acc, g in zip(self.accumulator.value, grads)]
        is_real = micro >= self.accumulate_steps
        # a real step starts the next window from zero
        self.accumulator.value = [jnp.where(is_real, jnp.zeros_like(s), s) for s in summed]
        self.micro_step.value = jnp.where(is_real, 0, micro)
        if self.accumulate_mean:
            summed = [s / self.accumulate_steps for s in summed]
        return summed, is_real

    def finite(self, grads: List[jax.Array]) -> Optional[jax.Array]:
        """Traced "every gradient element is finite", or ``None`` without ``skip_nonfinite``."""
        if not self.skip_nonfinite:
            return None
        if not grads:
            return jnp.bool_(True)
        return jnp.all(jnp.stack([jnp.all(jnp.isfinite(g)) for g in grads]))

    def count_skips(self, finite, is_real) -> None:
        """Count skipped real steps and the current run of them."""
        real = jnp.bool_(True) if is_real is None else is_real
        skipped = real & ~finite
        self.nonfinite_skips.value = self.nonfinite_skips.value + skipped.astype(jnp.int32)
        consecutive = self.consecutive_skips.value
        self.consecutive_skips.value = jnp.where(real, jnp.where(finite, 0, consecutive + 1), consecutive)

    def too_many_skips_message(self) -> str:
        return (f"{self._owner}: {self.max_consecutive_skips} consecutive updates had non-finite gradients "
                f"and were skipped (skip_nonfinite=True, max_consecutive_skips={self.max_consecutive_skips}); "
                f"the training has diverged or the loss produces NaN/Inf")

    def raise_if_too_many(self) -> None:
        """Inside a trace: raise (at run time) once the run of skips reaches the limit."""
        if self.max_consecutive_skips is None:
            return
        brainstate.transform.jit_error_if(self.consecutive_skips.value >= self.max_consecutive_skips,
                                          self.too_many_skips_message())
