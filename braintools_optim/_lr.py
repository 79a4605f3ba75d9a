"""Where each parameter group's learning rate comes from, read inside the compiled step.

Every group has one source:

* a float, kept in the optimizer's ``lr`` State (one entry per group), so
  ``opt.lr = 0.01`` or ``opt.set_lr(0.01, group=1)`` between steps never
  re-traces;
* the optimizer's :class:`~braintools_optim.schedulers.LRScheduler` (``lr=``
  of the constructor): a group follows it unless it has its own lr; a
  scheduler built with a list of ``base_lr`` gives one lr per group;
* its own ``LRScheduler`` (``add_param_group(..., lr=scheduler)``).

:class:`LearningRates` answers ``values()`` (one lr per group, traceable),
the base lrs (for decay that follows the schedule multiplier), the cycled
momentum of a group, and its piece of the checkpoint.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from ._copying import PlainCopy
from . import _checks as checks
from . import _ensemble
from ._storage import OptimizerState
from .schedulers._base import LRScheduler


def is_scheduler(value) -> bool:
    return isinstance(value, LRScheduler)


def _traced(value) -> bool:
    """A learning rate that is a JAX tracer: the optimizer was built inside a traced function
    (meta-learning: ``jax.grad`` of a loss through an inner training loop, with respect to lr)."""
    return isinstance(value, jax.core.Tracer)


def _exact(value) -> Optional[float]:
    """A learning rate as set, for exact reports (``None`` for a traced one: it cannot be kept)."""
    return None if _traced(value) else value


def cycles_momentum(source) -> bool:
    """Whether ``source`` is a scheduler that drives momentum / beta1 (``cycle_momentum=True``)."""
    return bool(getattr(source, 'cycle_momentum', False))


def scheduler_states(scheduler) -> List[brainstate.State]:
    """Every State a scheduler (and, for composites, its children) owns."""
    found: List[brainstate.State] = []
    pending = [scheduler]
    while pending:
        current = pending.pop()
        states = current._states().values() if hasattr(current, '_states') else [current.last_epoch]
        found.extend(state for state in states if all(state is not seen for seen in found))
        pending.extend(getattr(current, 'schedulers', []))
    return found


class LearningRates(PlainCopy, brainstate.graph.Node):
    """The learning-rate sources of an optimizer's groups (see the module docstring).

    ``default`` is the optimizer's own ``lr=`` (float or scheduler); ``own[g]``
    is group ``g``'s own lr (float or scheduler) or ``None`` to follow ``default``.
    """

    graph_invisible_attrs = ('_name', 'default', 'own', '_base', '_sources', '_exact')

    def __init__(self, owner_name: str, default: Any):
        self._name = owner_name
        self.default = default
        self.own: List[Any] = [None]
        self.state: Optional[brainstate.State] = None
        self._base: List[float] = []
        self._sources: List[Any] = []
        self._exact: List[Optional[float]] = []
        self._refresh(initial=True)

    # ---------------------------------------------------------------- configuration
    @property
    def scheduler(self):
        """The optimizer-level scheduler, or ``None``."""
        return self.default if is_scheduler(self.default) else None

    def source(self, group: int):
        own = self.own[group]
        return self.default if own is None else own

    def follows_default(self, group: int) -> bool:
        return self.own[group] is None

    def add_group(self, lr) -> None:
        self._check_compatible(self.default, self.own + [lr])
        self.own.append(lr)
        self._refresh()

    def pop_group(self) -> None:
        self.own.pop()
        self._refresh()

    def set_default(self, lr) -> None:
        self._check_compatible(lr, self.own)
        self.default = lr
        self._refresh()

    def _check_compatible(self, default, own) -> None:
        # (a list base_lr must give one lr per group by the first update; groups may still be added)
        if is_scheduler(default) and default.per_group and len(own) > 1:
            if any(lr is not None for lr in own[1:]):
                raise ValueError("parameter groups have their own lr while the optimizer's LRScheduler gives "
                                 "one lr per group (a list base_lr); give the scheduler a single base_lr, "
                                 "or leave the groups' lr out")

    def _float_values(self) -> List[float]:
        return [0.0 if is_scheduler(lr) else (lr if _traced(lr) else float(lr))
                for lr in (self.source(g) for g in range(len(self.own)))]

    def _refresh(self, initial: bool = False) -> None:
        """(Re)build the float lr State after the groups or the default source changed.

        A group whose source is the same float source as before keeps its
        current value (which ``set_lr`` may have changed since).
        """
        values = self._float_values()
        sources = [self.source(g) for g in range(len(self.own))]
        new = jnp.asarray(values, dtype=checks.float_dtype())
        if self.state is not None and not initial:
            old = jnp.asarray(self.state.value)
            for g, (before, now) in enumerate(zip(self._sources, sources)):
                if before is now and not is_scheduler(now):
                    new = new.at[g].set(old[g])
        exact = [None if is_scheduler(src) or _traced(src) else float(src) for src in sources]
        if not initial:
            exact = [self._exact[g] if g < len(self._exact) and g < len(self._sources) and self._sources[g] is src
                     else e for g, (src, e) in enumerate(zip(sources, exact))]
        self._sources, self._exact = sources, exact
        self.state = OptimizerState(new, name=f'{self._name}.lr')
        self._base = [self._base_of(g) for g in range(len(self.own))]
        # the schedulers' own States, where brainstate.graph.states(opt) finds them (to vmap an ensemble over)
        self.schedule_states = [state for scheduler in self.schedulers() for state in scheduler_states(scheduler)]

    def _base_of(self, group: int) -> float:
        source = self.source(group)
        if is_scheduler(source):
            base = source.base_lrs
            if source is self.default and source.per_group:
                return float(base[group])
            return float(base[0])
        return source if _traced(source) else float(source)

    # ---------------------------------------------------------------- reading (traceable)
    def values(self, num_groups: int) -> jax.Array:
        """The learning rate of every group, shape ``(num_groups,)``."""
        out = []
        default_value = None
        for g in range(num_groups):
            source = self.source(g)
            if not is_scheduler(source):
                out.append(self.state.value[..., g])     # (an ensemble's State has member axes first)
                continue
            if source is self.default:
                if default_value is None:
                    default_value = jnp.asarray(source.current_lr, dtype=checks.float_dtype())
                    if default_value.ndim and default_value.shape != (num_groups,):
                        raise ValueError(f"the LRScheduler gives {default_value.shape[0]} learning rates but "
                                         f"the optimizer has {num_groups} parameter groups")
                value = default_value[g] if default_value.ndim else default_value
            else:
                value = jnp.asarray(source.current_lr, dtype=checks.float_dtype())
                if value.ndim:
                    raise ValueError("a parameter group's own LRScheduler must give one learning rate "
                                     "(a float base_lr)")
            out.append(value)
        return jnp.stack(out) if out else jnp.zeros((0,), checks.float_dtype())

    def base(self, group: int) -> float:
        """The group's base learning rate (for decay that follows the schedule multiplier only)."""
        return self._base[group]

    def momentum(self, group: int) -> Optional[jax.Array]:
        """The cycled momentum for ``group`` (traced), or ``None`` when its source does not cycle it."""
        source = self.source(group)
        if not cycles_momentum(source):
            return None
        momentum = jnp.asarray(source.current_momentum, dtype=checks.float_dtype())
        if momentum.ndim:
            momentum = momentum[group] if source is self.default else momentum[0]
        return momentum

    def schedulers(self) -> List[Any]:
        """Every distinct scheduler in use (optimizer-level first), each once."""
        found = []
        for source in [self.default] + self.own:
            if is_scheduler(source) and all(source is not s for s in found):
                found.append(source)
        return found

    # ---------------------------------------------------------------- writing (eager)
    def set(self, value, group: Optional[int], num_groups: int) -> None:
        """Set float learning rates: every float group, one ``group``, or a list (one per group)."""
        current = jnp.asarray(self.state.value)
        floats = [g for g in range(num_groups) if not is_scheduler(self.source(g))]
        if isinstance(value, (list, tuple)):
            if group is not None or len(value) != num_groups:
                raise ValueError(f"expected {num_groups} learning rates (one per group), got {value!r}")
            checked = [checks.learning_rate('lr', v) for v in value]
            scheduled = [g for g in range(num_groups) if g not in floats]
            if scheduled:
                raise RuntimeError(f"parameter group(s) {scheduled} take their lr from an LRScheduler; "
                                   f"set the others with set_lr(value, group=...)")
            self.state.value = jnp.broadcast_to(jnp.asarray(checked, dtype=current.dtype), current.shape)
            self._exact = [_exact(v) for v in checked]
            return
        checked = checks.learning_rate('lr', value)
        if group is None:
            if not floats:
                raise RuntimeError("the learning rate comes from an LRScheduler; assign opt.lr a new "
                                   "scheduler or float instead")
            self.state.value = current.at[..., jnp.asarray(floats)].set(checked)    # every member
            for g in floats:
                self._exact[g] = _exact(checked)
            return
        if not 0 <= group < num_groups:
            raise IndexError(f"group {group} does not exist; the optimizer has {num_groups}")
        if group not in floats:
            raise RuntimeError(f"parameter group {group} takes its lr from an LRScheduler; assign the group "
                               f"a float lr or step the scheduler")
        self.state.value = current.at[..., group].set(checked)
        self._exact[group] = _exact(checked)

    def host_value(self, group: int):
        """Group ``group``'s lr as a Python float, outside any trace (``None`` inside one).

        A float lr is reported exactly as it was set (``0.002``, not float32's
        ``0.0020000000949949``) as long as the State still holds it; a
        scheduler's lr as its current value, a 0-d array in the scheduler's
        dtype (so it compares equal to the Python float it stands for, and
        prints as ``0.001``).
        """
        source = self.source(group)
        if is_scheduler(source):
            value = source.current_lr
            if isinstance(value, jax.core.Tracer):
                return None
            value = jnp.asarray(value)
            if value.ndim:
                value = value[group] if source is self.default else value[0]
            return value
        value = self.state.value
        if isinstance(value, jax.core.Tracer):
            return None
        stored = _ensemble.host_entry(value, group)
        if np.ndim(stored):
            return stored                                # one per member of an ensemble
        exact = self._exact[group]
        if exact is not None and jnp.asarray(exact, stored.dtype) == stored:
            return exact
        return float(stored)

    def load(self, values, exact=None) -> None:
        """Write float lrs read from a checkpoint (checked by the caller); ``exact`` as saved."""
        self.state.value = jnp.asarray(values, self.state.value.dtype)
        exact = list(exact) if exact is not None and len(exact) == len(self._exact) else [None] * len(self._exact)
        self._exact = [None if e is None or is_scheduler(self.source(g)) else float(e) for g, e in enumerate(exact)]

    def advance(self, applied) -> None:
        """Step every scheduler once (after a real update); keep them put where ``applied`` is false."""
        for scheduler in self.schedulers():
            if getattr(scheduler, 'needs_metric', False):
                continue
            if applied is None:
                scheduler.step()
                continue
            states = scheduler_states(scheduler)
            before = [state.value for state in states]
            scheduler.step()
            for state, old in zip(states, before):
                state.value = jax.tree.map(lambda new, o: jnp.where(applied, new, o), state.value, old)

    # ---------------------------------------------------------------- checkpoints
    def state_dict(self) -> Dict[str, Any]:
        import numpy as np
        schedulers = self.schedulers()
        return {
            'lr': np.asarray(self.state.value),
            'exact': list(self._exact),                 # the floats as set (for exact reports)
            'schedulers': [{'class': type(s).__name__, 'state': jax.tree.map(np.asarray, s.state_dict())}
                           for s in schedulers],
        }


class FloatLR(LRScheduler):
    """``opt.lr`` of an optimizer whose learning rate is a float: a scheduler view of it.

    braintools wraps a float learning rate in a constant scheduler, so code
    written for it calls ``opt.lr.step()``, ``opt.lr.get_lr()`` or
    ``opt.lr.get_last_lr()``. This view answers from the optimizer's lr State
    (so it follows ``set_lr`` and never re-traces); stepping it moves its
    counter and nothing else (the rate is constant); ``apply(fn)`` sets
    ``fn(lr)``. It also behaves as the number it stands for: ``float(opt.lr)``,
    ``opt.lr * 2``, ``opt.lr == 0.01``, ``np.asarray(opt.lr)``.
    """

    def __init__(self, rates: 'LearningRates', num_groups):
        self._rates = rates
        self._num_groups = num_groups
        values = [rates.host_value(g) for g in range(num_groups())]
        super().__init__(values if len(values) > 1 else values[0])

    def lr_at(self, epoch):
        values = self._rates.state.value
        return values if self._num_groups() > 1 else values[0]

    @property
    def current_lr(self):
        values = self._rates.state.value
        return values if self._num_groups() > 1 else values[0]

    def get_last_lr(self) -> List:
        return [self._rates.host_value(g) for g in range(self._num_groups())]

    def get_lr(self) -> List:
        return self.get_last_lr()

    def apply(self, fn) -> None:
        """Set every float group's lr to ``fn(lr)``."""
        values = [fn(v) for v in self.get_last_lr()]
        self._rates.set(values if len(values) > 1 else values[0], None, self._num_groups())

    # the number it stands for
    def _number(self):
        value = self._rates.host_value(0)
        return self.current_lr if value is None else value

    def __float__(self):
        return float(self._number())

    def __array__(self, dtype=None, copy=None):
        import numpy as np
        return np.asarray(self.get_last_lr() if self._num_groups() > 1 else self._number(), dtype=dtype)

    def __eq__(self, other):
        if isinstance(other, LRScheduler):
            return other is self
        return self._number() == other

    __hash__ = LRScheduler.__hash__

    def __lt__(self, other):
        return self._number() < other

    def __le__(self, other):
        return self._number() <= other

    def __gt__(self, other):
        return self._number() > other

    def __ge__(self, other):
        return self._number() >= other

    def __mul__(self, other):
        return self._number() * other

    __rmul__ = __mul__

    def __truediv__(self, other):
        return self._number() / other

    def __rtruediv__(self, other):
        return other / self._number()

    def __add__(self, other):
        return self._number() + other

    __radd__ = __add__

    def __sub__(self, other):
        return self._number() - other

    def __rsub__(self, other):
        return other - self._number()

    def __repr__(self) -> str:
        return f"FloatLR({self.get_last_lr()})"
