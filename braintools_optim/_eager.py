"""The compiled step behind an eager ``opt.update(grads)`` call (outside any jit).

``brainstate.transform.jit`` would do, but per call it looks the State trace
up from the arguments, checks every State leaf for staleness and donates
nothing. The optimizer knows more: the gradients were just checked against
the registered parameters (so their shapes and dtypes are the ones traced),
the States the step touches never change while the compiled step is cached
(registration, loading a checkpoint into a new layout or changing the lr
source drop it), and its own buffers are not shared with anybody.

So :class:`EagerStep` traces the step once with brainstate's
``StatefulFunction``, compiles the pure function ``(State values, grads) ->
written State values`` with plain ``jax.jit``, donating the optimizer's own
buffers (Adam's moments are updated in place; parameters are not donated:
user code may hold them), and per call only reads, calls and writes.
"""

from __future__ import annotations

from typing import Any, Callable, List

import brainstate
import jax


class EagerStep:
    """A cached, compiled ``step(grads)`` for eager calls (see the module docstring)."""

    def __init__(self, step: Callable[[Any], None], grads: Any, donatable: List[brainstate.State]):
        self._function = brainstate.transform.StatefulFunction(step, name='optimizer_update')
        self._function.make_jaxpr(grads)
        states = tuple(self._function.get_states(grads))
        written = {id(state) for state in self._function.get_write_states(grads)}
        donatable_ids = {id(state) for state in donatable}
        self._kept = [i for i, state in enumerate(states) if id(state) not in donatable_ids]
        self._donated = [i for i, state in enumerate(states) if id(state) in donatable_ids]
        self._written = [i for i, state in enumerate(states) if id(state) in written]
        self._states = states
        self._kept_states = [states[i] for i in self._kept]
        self._donated_states = [states[i] for i in self._donated]
        self._written_states = [states[i] for i in self._written]
        self._compiled = jax.jit(self._pure, donate_argnums=(1,) if self._donated else ())

    def _pure(self, kept_values, donated_values, grads):
        values: List[Any] = [None] * len(self._states)
        for i, value in zip(self._kept, kept_values):
            values[i] = value
        for i, value in zip(self._donated, donated_values):
            values[i] = value
        new_values, _ = self._function.jaxpr_call(values, grads)
        return [new_values[i] for i in self._written]

    def __call__(self, grads) -> None:
        new_values = self._compiled([state.value for state in self._kept_states],
                                    [state.value for state in self._donated_states], grads)
        for state, value in zip(self._written_states, new_values):
            state.value = value
