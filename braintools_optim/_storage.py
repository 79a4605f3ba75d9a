"""Where a parameter group keeps its optimizer buffers.

Each trainable group owns one :class:`GroupStorage`: for each buffer of its
algorithm's rule (``exp_avg``, ``exp_avg_sq``, ...) one brainstate State whose
value is a list of arrays, laid out by :mod:`._layout` (one flat array per
bucket of small parameters for element-wise rules, one stack per shape and
bucket for per-tensor rules (:mod:`._stacked`), one array per parameter with
``fused=False``). ``values()``/``set_values()`` convert to and from one array
per member parameter, so checkpoints and ``opt.buffers()`` never depend on the
layout.

A group with a precision option (:mod:`._mixed`) also has a ``plan`` (its
dtypes) and, with ``master_weights``, a ``master``: a storage of its own over
the group's narrow members holding buffer :data:`MASTER` (the float32 copies);
``stored()``, ``placed_as()`` and ``write()`` treat that buffer like the others.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence

import brainstate
import jax
import jax.numpy as jnp
import numpy as np

from . import _ensemble
from ._copying import PlainCopy
from ._layout import DEFAULT_MAX_FUSED_SIZE, FlatLayout, PerParamLayout, placement
from ._stacked import StackedLayout


class OptimizerState(brainstate.LongTermState):
    """A State owned by an optimizer (moments, step counter, learning rate)."""


#: the buffer name of the float32 master copies (see :mod:`._mixed`)
MASTER = 'master'


class GroupStorage(PlainCopy, brainstate.graph.Node):
    """The buffers of one parameter group (see the module docstring).

    Args:
        owner: the optimizer's class name (for State names).
        group: the group index (State names: ``Adam.exp_avg`` for group 0,
            ``Adam.group1.exp_avg`` for group 1).
        members: registry indices of the group's trainable parameters.
        buffer_names: the rule's buffers.
        layout: the :mod:`._layout` object describing how they are stored.
    """

    graph_invisible_attrs = ('group', 'members', 'layout', 'placement', 'plan', 'stored_ndims')

    def __init__(self, owner: str, group: int, members: Sequence[int], buffer_names: Sequence[str], layout,
                 placement=None):
        self.group = group
        self.members = list(members)
        self.layout = layout
        self.placement = placement        # target shardings (:mod:`._sharding`), None: where JAX puts them
        prefix = owner if group == 0 else f'{owner}.group{group}'
        self.states: Dict[str, OptimizerState] = {
            name: OptimizerState([], name=f'{prefix}.{name}') for name in buffer_names}
        self.plan = None                  # the group's precision plan (:mod:`._mixed`), None without options
        self.master: Optional[GroupStorage] = None     # float32 master copies of its narrow members
        # each buffer's first stored array's ndim for ONE model (written inside vmap_new_states for an
        # ensemble): more axes when read later are member axes (:func:`._ensemble.unpack`)
        self.stored_ndims: Dict[str, int] = {}

    @property
    def fused(self) -> bool:
        return self.layout.fused

    def part(self, name: str) -> 'GroupStorage':
        """The storage that holds buffer ``name``: the master copies' own (:data:`MASTER`), or this one."""
        return self.master if name == MASTER and self.master is not None else self

    def named_states(self) -> Dict[str, OptimizerState]:
        """Every buffer's State by name, the master copies' under :data:`MASTER` (checkpoints, inspection)."""
        out = dict(self.states)
        if self.master is not None:
            out[MASTER] = self.master.states[MASTER]
        return out

    def values(self, name: str) -> List[jax.Array]:
        """Buffer ``name`` as one array per member of :meth:`part` (member order), whatever the layout."""
        return self.unpack(name, self.part(name).states[name].value)

    def unpack(self, name: str, stored: Sequence[Any]) -> List[Any]:
        """Stored arrays of buffer ``name`` (its value, or host copies of it) as one array per member of
        :meth:`part`."""
        part = self.part(name)
        return _ensemble.unpack(part.layout, stored, part.stored_ndims.get(name))

    def set_values(self, name: str, per_param: Sequence[jax.Array]) -> None:
        self.set_stored(name, self.part(name).layout.pack(list(per_param)))

    def set_stored(self, name: str, stored: Sequence[jax.Array]) -> None:
        """Write buffer ``name`` in its stored form, placed on its target shardings."""
        part = self.part(name)
        stored = list(stored)
        if stored:
            part.stored_ndims[name] = int(np.ndim(stored[0]))
        part.states[name].value = part.placed(stored)

    def placed(self, stored: Sequence[jax.Array]) -> List[jax.Array]:
        """One buffer's stored arrays on (or, traced, constrained to) their target shardings."""
        return list(stored) if self.placement is None else self.placement.place(stored)

    def stored(self) -> Dict[str, Any]:
        """Every buffer in its stored form (the master copies under :data:`MASTER`)."""
        return {name: state.value for name, state in self.named_states().items()}

    def placed_as(self, name: str, stored: Sequence[jax.Array]) -> List[jax.Array]:
        """:meth:`placed` for buffer ``name`` (the master copies follow their own layout)."""
        return self.part(name).placed(stored)

    def write(self, name: str, stored: Sequence[jax.Array]) -> None:
        """Write buffer ``name`` (or the master copies) in its stored form, as it is."""
        self.named_states()[name].value = stored

    def master_values(self, runtime_scalar) -> List[jax.Array]:
        """The master copies, one per member of ``self.master`` (traceable: cut out of the flat buckets)."""
        master = self.master
        stored = master.states[MASTER].value
        scatter = getattr(master.layout, 'scatter', None)
        return list(stored) if scatter is None else scatter(stored, runtime_scalar)

    def __getstate__(self):
        # a pickle carries values, not devices (jax.Device objects cannot be pickled)
        return dict(self.__dict__, placement=None)


#: the fused layouts by kind (see ``Optimizer._fused_layout``)
FUSED_LAYOUTS = {'flat': FlatLayout, 'stacked': StackedLayout}


def make_layout(fuse: Optional[bool], kind: Optional[str], mantissas: Sequence[Any], step_offsets: Sequence[int],
                keys: Sequence[Any]):
    """The layout for one group's members: ``kind`` (``'flat'``, ``'stacked'``) unless ``fuse is False``.

    ``kind`` is ``None`` for a step that needs one buffer per parameter.
    ``keys`` adds to the bucket key (per-parameter lr/wd multipliers): members
    that differ there never share a bucket, because their rule arguments differ.
    """
    if fuse is False or kind is None or not mantissas:
        return PerParamLayout()
    max_size = None if fuse else DEFAULT_MAX_FUSED_SIZE
    return FUSED_LAYOUTS[kind]([m.shape for m in mantissas], [m.dtype for m in mantissas], list(keys),
                               list(step_offsets), max_size, placements=[placement(m) for m in mantissas])


def initial_buffers(rule, mantissa) -> Dict[str, jax.Array]:
    """The rule's fresh buffers for one parameter."""
    return rule.init(jnp.asarray(mantissa))
