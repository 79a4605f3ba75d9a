"""Optimizer state across devices and processes: inspect it, measure it, checkpoint it with orbax.

Placement itself needs no call: buffers follow their parameters' shardings,
or are partitioned over a data-parallel mesh axis with ``shard_state=``
(ZeRO-1; see :mod:`braintools_optim._sharding` and ``docs/distributed.md``).
This module answers where they are and saves them where they are:

* :func:`buffer_shardings` -- the sharding of the stored array holding each
  parameter's buffers (to check a placement instead of trusting it);
* :func:`state_bytes` -- the bytes of optimizer state on each local device;
* :func:`save_sharded` / :func:`load_sharded` -- a checkpoint written by every
  process at once with orbax (``pip install braintools-optim[orbax]``): each
  process writes the pieces its devices hold and reads back the pieces its
  devices need, restored bitwise onto the optimizer's own shardings; nothing
  is gathered. The small part (counters, learning rates, schedulers, group
  settings, parameter signatures) goes to ``meta.npz`` beside it in this
  package's validated format, and every check of ``load_state_dict`` applies.

One host keeps using ``opt.save(path)`` / ``opt.load(path)``: the per-parameter
``.npz`` file, independent of layout and mesh, restored onto the shardings the
loading optimizer uses.
"""

from __future__ import annotations

import os
from collections import defaultdict
from typing import Any, Dict, List

import jax
import jax.numpy as jnp

from . import _checkpointing, checkpoint

__all__ = ['buffer_shardings', 'load_sharded', 'save_sharded', 'state_bytes']

#: the parts of ``state_dict(opt, on_device=True)`` that orbax stores (the rest is ``meta.npz``)
ARRAY_PARTS = ('stored_state', 'grad_accumulator', 'extra')
META_FILE = 'meta.npz'
ARRAYS_DIR = 'arrays'


def _optimizer(opt):
    from ._optimizer import Optimizer
    if not isinstance(opt, Optimizer):
        raise TypeError(f"expected a braintools_optim optimizer, got {type(opt).__name__}")
    return opt


def buffer_shardings(opt) -> Dict[str, Dict[Any, Any]]:
    """``{buffer name: {parameter: sharding}}``: where the array holding each parameter's buffer lives.

    For a fused group that array is the flat bucket the parameter shares
    (partitioned over the data axis under ZeRO-1); per-parameter buffers are
    arrays of their own.
    """
    opt = _optimizer(opt)
    params = opt._registry.params
    out: Dict[str, Dict[Any, Any]] = {}
    for storage in opt._storage.values():
        buckets = getattr(storage.layout, 'buckets', None)
        slot_of = list(range(len(storage.members)))
        if buckets is not None:
            for b, bucket in enumerate(buckets):
                for m in bucket.members:
                    slot_of[m] = b
        for name, state in storage.states.items():
            for m, i in enumerate(storage.members):
                out.setdefault(name, {})[params[i].ident] = state.value[slot_of[m]].sharding
    return out


def _state_arrays(opt) -> List[jax.Array]:
    arrays = [leaf for storage in opt._storage.values() for state in storage.named_states().values()
              for leaf in jax.tree.leaves(state.value)]
    if opt._guards.accumulator is not None:
        arrays.extend(jax.tree.leaves(opt._guards.accumulator.value))
    for state in opt._extra_states().values():
        arrays.extend(jax.tree.leaves(state.value))
    return arrays


def state_bytes(opt) -> Dict[Any, int]:
    """Bytes of optimizer buffers (moments, accumulators, extra State) held by each local device.

    Counts the shards each device actually holds, so a replicated buffer
    counts once per device and a partitioned one by its piece. Scalars such
    as the step counter are left out.
    """
    out: Dict[Any, int] = defaultdict(int)
    for array in _state_arrays(_optimizer(opt)):
        for shard in array.addressable_shards:
            out[shard.device] += shard.data.nbytes
    return dict(out)


# ---------------------------------------------------------------------------- orbax
def _orbax():
    try:
        import orbax.checkpoint as ocp
    except ImportError:
        raise ImportError("save_sharded/load_sharded write orbax checkpoints: pip install "
                          "'braintools-optim[orbax]' (orbax-checkpoint); on one host opt.save(path) needs "
                          "nothing more") from None
    return ocp


def _barrier(name: str) -> None:
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils
        multihost_utils.sync_global_devices(name)


def _split(state: Dict[str, Any]):
    """``(meta, parts, leaves, treedef)``: the small part, the array parts, and their flattened arrays."""
    meta = {k: v for k, v in state.items() if k not in ARRAY_PARTS}
    parts = {k: state[k] for k in ARRAY_PARTS}
    leaves, treedef = jax.tree.flatten(parts)
    return meta, parts, [leaf if isinstance(leaf, jax.Array) else jnp.asarray(leaf) for leaf in leaves], treedef


def save_sharded(path: str, opt) -> None:
    """Checkpoint ``opt`` into the directory ``path``, every process writing what its devices hold.

    Call it from every process (as every JAX computation in a multi-process
    program). ``path`` must be on a file system all processes share; an
    existing checkpoint there is replaced.
    """
    ocp = _orbax()
    opt = _optimizer(opt)
    path = os.path.abspath(os.fspath(path))
    meta, _, leaves, _ = _split(_checkpointing.state_dict(opt, on_device=True))
    meta['arrays'] = [[list(leaf.shape), str(leaf.dtype)] for leaf in leaves]
    if jax.process_index() == 0:
        os.makedirs(path, exist_ok=True)
    _barrier('braintools_optim.save_sharded.mkdir')
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(os.path.join(path, ARRAYS_DIR), {f'a{k}': leaf for k, leaf in enumerate(leaves)}, force=True)
    checkpointer.wait_until_finished()
    if jax.process_index() == 0:
        checkpoint.save(os.path.join(path, META_FILE), meta)
    _barrier('braintools_optim.save_sharded.done')


def load_sharded(path: str, opt) -> Dict[str, List[str]]:
    """Restore a :func:`save_sharded` checkpoint into ``opt`` (same parameters, layout and mesh size).

    Everything is checked first, as by ``opt.load_state_dict``; the arrays are
    then read straight onto the optimizer's shardings, each process reading
    its own pieces. A model whose parameters or layout changed restores from
    the per-parameter ``opt.save`` file instead.
    """
    ocp = _orbax()
    opt = _optimizer(opt)
    path = os.path.abspath(os.fspath(path))
    meta_file = os.path.join(path, META_FILE)
    if not os.path.exists(meta_file):
        raise checkpoint.CheckpointError(f"{path} is not a save_sharded checkpoint (no {META_FILE})")
    meta = checkpoint.load(meta_file)
    saved_arrays = meta.pop('arrays', None)
    _, parts, leaves, treedef = _split(_checkpointing.state_dict(opt, on_device=True))
    opt._prepare_load({**meta, **parts}, strict=True)         # everything but the array values, checked
    expected = [[list(leaf.shape), str(leaf.dtype)] for leaf in leaves]
    if saved_arrays != expected:
        raise _checkpointing.CheckpointMismatchError(
            f"the checkpoint in {path} holds {len(saved_arrays or [])} arrays that do not match this "
            f"optimizer's {len(expected)} (shapes and dtypes differ)")
    target = {f'a{k}': jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=leaf.sharding)
              for k, leaf in enumerate(leaves)}
    restored = ocp.StandardCheckpointer().restore(os.path.join(path, ARRAYS_DIR), target)
    arrays = jax.tree.unflatten(treedef, [restored[f'a{k}'] for k in range(len(leaves))])
    return opt.load_state_dict({**meta, **arrays}, strict=True)
