r"""Averages of the weights along training: exponential (EMA) and stochastic weight averaging (SWA).

Both keep the average in brainstate State (so ``update()`` runs eagerly, under
``jit`` and inside ``for_loop``), keep each parameter's unit, and can swap the
averaged values into the model for evaluation and back::

    ema = bo.EMA(model.states(brainstate.ParamState), decay=0.999)
    ...
    opt.update(grads)
    ema.update()                  # inside the jitted train step, after the optimizer
    ...
    with ema.applied():           # the model now holds the averaged weights
        evaluate(model)
    # original weights are back

Semantics follow torch's ``torch.optim.swa_utils.AveragedModel``: the first
``update()`` copies the parameters, later ones average.

* :class:`EMA`: :math:`a \leftarrow d\,a + (1 - d)\,\theta` with decay :math:`d`;
  ``warmup=True`` uses :math:`d_n = \min(d, (1 + n)/(10 + n))` for the n-th
  average (TensorFlow's ``ExponentialMovingAverage(num_updates=...)``).
* :class:`SWA`: the running mean :math:`a \leftarrow a + (\theta - a)/(n + 1)`
  over the ``n + 1`` snapshots taken so far (call ``update()`` once per epoch
  after the SWA start, as in torch).
"""

from __future__ import annotations

import contextlib
from typing import Any, Dict, Iterator

import jax
import jax.numpy as jnp
import numpy as np

from . import _checks as checks
from . import _copying, _keys, _units
from ._registry import ParamRegistry
from ._storage import OptimizerState


class WeightAverage:
    """Base class: registration, the average in State, swapping it into the model."""

    def __init__(self, param_states: Any):
        self._registry = ParamRegistry()
        self._registry.commit(self._registry.plan(param_states))
        if not len(self._registry):
            raise ValueError(f"{type(self).__name__} needs at least one ParamState to average")
        name = type(self).__name__
        self.average = OptimizerState([jnp.array(_units.split(s.value)[0]) for s in self._registry.handles()],
                                      name=f'{name}.average')
        self.num_updates = OptimizerState(jnp.zeros((), jnp.int32), name=f'{name}.num_updates')

    def __deepcopy__(self, memo):
        """An independent average of the same model's parameters (they are shared, not copied)."""
        for state in self._registry.states().values():
            memo.setdefault(id(state), state)
        return _copying.deepcopy_object(self, memo)

    def __getstate__(self):
        return _copying.frozen_state(self)

    def __setstate__(self, state):
        self.__dict__.update(_copying.thawed_state(state))

    def _weight_of_new(self, n) -> jax.Array:
        """The weight given to the current parameters at the ``n``-th update (n >= 1)."""
        raise NotImplementedError

    def update(self) -> None:
        """Fold the current parameter values into the average (the first call copies them)."""
        n = self.num_updates.value
        new = []
        for average, state in zip(self.average.value, self._registry.handles()):
            current = _units.split(state.value)[0]
            weight = jnp.where(n == 0, 1.0, self._weight_of_new(n)).astype(current.dtype)
            new.append(average + weight * (current - average))
        self.average.value = new
        self.num_updates.value = n + 1

    @property
    def averaged_params(self) -> Dict[Any, Any]:
        """The averaged values, keyed like the registered states, in each parameter's unit."""
        return {param.ident: _units.merge(average, _units.split(param.handle.value)[1])
                for param, average in zip(self._registry.params, self.average.value)}

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """Within the block the model holds the averaged weights; the originals come back after."""
        states = self._registry.handles()
        originals = [state.value for state in states]
        try:
            self.copy_to_model()
            yield
        finally:
            for state, value in zip(states, originals):
                state.value = value

    def copy_to_model(self) -> None:
        """Write the averaged weights into the model's ParamStates (for good)."""
        for state, value in zip(self._registry.handles(), self.averaged_params.values()):
            state.value = value

    def state_dict(self) -> Dict[str, Any]:
        keys = [_keys.encode(p.key, p.leaf_path) for p in self._registry.params]
        return {'class': type(self).__name__, 'num_updates': np.asarray(self.num_updates.value),
                'average': dict(zip(keys, map(np.asarray, self.average.value)))}

    def load_state_dict(self, state: Dict[str, Any]) -> None:
        """Restore :meth:`state_dict` output (checked first: class, paths, shapes, dtypes)."""
        if state.get('class') != type(self).__name__:
            raise ValueError(f"the checkpoint is for {state.get('class')!r}, not {type(self).__name__}")
        keys = [_keys.encode(p.key, p.leaf_path) for p in self._registry.params]
        if set(state['average']) != set(keys):
            raise ValueError(f"checkpoint averages {sorted(state['average'])} differ from {sorted(keys)}")
        values = []
        for key, now in zip(keys, self.average.value):
            array = np.asarray(state['average'][key])
            if array.shape != now.shape or array.dtype != now.dtype:
                raise ValueError(f"checkpoint average for {key!r} is {array.dtype}{list(array.shape)}, "
                                 f"expected {now.dtype}{list(now.shape)}")
            values.append(jnp.asarray(array))
        self.average.value = values
        self.num_updates.value = jnp.asarray(state['num_updates'], jnp.int32)


class EMA(WeightAverage):
    r"""Exponential moving average of the weights: :math:`a \leftarrow d\,a + (1-d)\,\theta`.

    Args:
        param_states: what ``module.states(brainstate.ParamState)`` returns, a dict,
            a list of ParamStates or one.
        decay: :math:`d \in [0, 1)`.
        warmup: use :math:`\min(d, (1+n)/(10+n))` for the n-th update, so early
            averages are not dominated by the initial weights.

    >>> import brainstate, jax.numpy as jnp
    >>> w = brainstate.ParamState(jnp.array([0.0]))
    >>> ema = EMA([w], decay=0.5)
    >>> for value in (1.0, 3.0):
    ...     w.value = jnp.array([value]); ema.update()
    >>> float(ema.average.value[0][0])      # 1.0, then 0.5 * 1 + 0.5 * 3
    2.0
    >>> with ema.applied():
    ...     float(w.value[0])
    2.0
    >>> float(w.value[0])
    3.0
    """

    def __init__(self, param_states: Any, decay: float = 0.999, warmup: bool = False):
        self.decay = checks.unit_interval('decay', decay)
        self.warmup = bool(warmup)
        super().__init__(param_states)

    def _weight_of_new(self, n):
        decay = jnp.asarray(self.decay, jnp.float32)
        if self.warmup:
            n = n.astype(jnp.float32)
            decay = jnp.minimum(decay, (1.0 + n) / (10.0 + n))
        return 1.0 - decay


class SWA(WeightAverage):
    r"""Stochastic weight averaging: the running mean of the weight snapshots.

    :math:`a \leftarrow a + (\theta - a)/(n+1)` at the (n+1)-th ``update()``
    (torch ``AveragedModel`` default). Call ``update()`` once per epoch from
    the epoch where averaging starts; pair it with a constant or cyclic lr.

    >>> import brainstate, jax.numpy as jnp
    >>> w = brainstate.ParamState(jnp.array([0.0]))
    >>> swa = SWA([w])
    >>> for value in (1.0, 2.0, 6.0):
    ...     w.value = jnp.array([value]); swa.update()
    >>> float(swa.average.value[0][0])
    3.0
    """

    def _weight_of_new(self, n):
        return 1.0 / (n.astype(jnp.float32) + 1.0)
