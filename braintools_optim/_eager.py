"""The compiled step behind an eager ``opt.update(grads)`` call (outside any jit).

``brainstate.transform.jit`` would do, but per call it looks the State trace
up from the arguments and checks every State leaf for staleness. The
optimizer knows more: the gradients were just checked against the registered
parameters (so their shapes and dtypes are the ones traced), and the States
the step touches never change while the compiled step is cached
(registration, groups, loading a checkpoint into a new layout or changing the
lr source drop it).

So :class:`EagerStep` traces the step once with brainstate's
``StatefulFunction``, compiles the pure function ``(State values, args) ->
written State values`` with plain ``jax.jit``, and per call only reads, calls
and writes. Nothing is donated: a State's old value may still be held by the
user (a snapshot taken with ``brainstate.graph.treefy_states``, a parameter
kept for comparison), and it must stay valid.
"""

from __future__ import annotations

from typing import Any, Callable

import brainstate
import jax


class EagerStep:
    """A cached, compiled ``step(args)`` for eager calls (see the module docstring).

    ``key`` identifies what the trace closed over (the optimizer compares it
    before reusing the step).
    """

    def __init__(self, step: Callable[..., None], args: Any, key: Any = None):
        self.key = key
        self._function = brainstate.transform.StatefulFunction(lambda a: step(*a), name='optimizer_update')
        self._function.make_jaxpr(args)
        states = tuple(self._function.get_states(args))
        written = {id(state) for state in self._function.get_write_states(args)}
        self._states = states
        self._written = [i for i, state in enumerate(states) if id(state) in written]
        self._written_states = [states[i] for i in self._written]
        self._compiled = jax.jit(self._pure)

    def _pure(self, values, args):
        new_values, _ = self._function.jaxpr_call(list(values), args)
        return [new_values[i] for i in self._written]

    def __call__(self, args) -> None:
        new_values = self._compiled([state.value for state in self._states], args)
        for state, value in zip(self._written_states, new_values):
            state.value = value
