"""An optimizer's ``state_dict`` and ``load_state_dict``: every part's piece, checked before any write.

The dict is keyed by parameter (the injective text of :func:`._keys.encode`:
``'w'``, ``('layer', 'weight')``, ``'l1'['bias']``) and buffer name, never by
position::

    format_version   2
    optimizer        class name
    step_count       the global step counter
    counters         skip and accumulation counters (those configured)
    learning_rates   {'lr': one float lr per group, 'schedulers': [{'class', 'state'}]}
    weight_decay     one value per group
    param_groups     per group: name, algorithm, settings, multipliers, frozen, params
    params           per parameter: shape, dtype, unit, group
    step_offsets     per parameter: the step count when it was registered
    opt_state        the buffers, {buffer name: {parameter: array}}
    lr, base_lr      group 0's current and base learning rate (for reading; braintools' keys)
    grad_accumulator {parameter: array} or None
    extra            the algorithm's own State (Prodigy's d, L-BFGS's memory, ...)

:func:`load_state_dict` checks all of it against the optimizer (format,
class, groups and their settings, every parameter's shape/dtype/unit, every
buffer, counters in range, finite learning rates, scheduler states) and only
then writes; a checkpoint of format 1 (the first release: keys joined by
``'/'``) still loads. Parameter values are not included: save them with the model.

Buffers are copied to the host one array per parameter, whatever their layout
or sharding, and loading places them back on their shardings (:mod:`._sharding`).
For state spread over several processes, ``state_dict(opt, on_device=True)``
keeps the large arrays where they are instead: ``stored_state`` replaces
``opt_state`` (each group's buffers in their stored layout, with a ``layout``
record to check them against) and the accumulator and extra State stay device
arrays; :mod:`braintools_optim.distributed` hands those to orbax.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Optional

import jax
import jax.numpy as jnp
import numpy as np

from . import _keys, _units
from ._rng import StepKeys
from ._errors import CheckpointMismatchError

if TYPE_CHECKING:
    from ._optimizer import Optimizer

STATE_DICT_VERSION = 2
INT32_MAX = 2 ** 31 - 1


def _plain(value):
    """Settings as JSON-friendly plain values (tuples as lists) for storing and comparing."""
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _stored_settings(group) -> Dict[str, Any]:
    table = group.algorithm.hyperparameters
    return {k: _plain(v) for k, v in group.settings.items() if k not in table or table[k].stored}


def _describe(value, group: Optional[int]) -> Dict[str, Any]:
    mantissa, unit = _units.split(value)
    return {'shape': list(mantissa.shape), 'dtype': str(mantissa.dtype),
            'unit': '' if unit is None else str(unit), 'group': None if group is None else int(group)}


def _host(value, what: str) -> np.ndarray:
    """A copy on the host; a clear error for an array part of which lives in another process only."""
    if isinstance(value, jax.Array) and not value.is_fully_addressable and not value.is_fully_replicated:
        raise ValueError(f"{what} is spread over devices of several processes, so no process can copy it "
                         f"whole; save it with braintools_optim.distributed.save_sharded(path, opt) (orbax)")
    return np.array(value)


def _host_buffers(opt: 'Optimizer', names, trainable) -> Dict[str, Dict[str, np.ndarray]]:
    """``{buffer: {parameter: array}}`` in trainable order, each stored array copied to the host first
    (from its shards: nothing is gathered on a device) and cut into parameters there."""
    columns: Dict[str, Dict[int, np.ndarray]] = {}
    for storage in opt._storage.values():
        for name, state in storage.named_states().items():       # the master copies too (``master``)
            stored = [_host(value, f"buffer {name!r}") for value in state.value]
            for i, value in zip(storage.part(name).members, storage.unpack(name, stored)):
                columns.setdefault(name, {})[i] = np.array(value)
    return {name: {names[i]: column[i] for i in trainable if i in column} for name, column in columns.items()}


def layout_record(opt: 'Optimizer') -> Dict[str, Any]:
    """Each group's stored layout: members, buckets and stored shapes (checks a ``stored_state``)."""
    names = [_keys.encode(p.key, p.leaf_path) for p in opt._registry.params]
    out = {}
    for g, storage in opt._storage.items():
        buckets = getattr(storage.layout, 'buckets', None)
        out[str(g)] = {
            'members': [names[i] for i in storage.members],
            'buckets': None if buckets is None else [[names[storage.members[m]] for m in b.members]
                                                     for b in buckets],
            'stored': {name: [[list(np.shape(v)), str(v.dtype)] for v in state.value]
                       for name, state in storage.named_states().items()},
        }
    return out


def state_dict(opt: 'Optimizer', on_device: bool = False) -> Dict[str, Any]:
    """See the module docstring."""
    params = opt._registry.params
    names = [_keys.encode(p.key, p.leaf_path) for p in params]
    trainable = opt._trainable
    keep = (lambda value, what: value) if on_device else _host
    buffers = {} if on_device else _host_buffers(opt, names, trainable)
    accumulator = opt._guards.accumulator
    groups = []
    for group in opt._groups:
        source = opt._lr.own[group.index]
        groups.append({
            'name': group.name, 'optimizer': group.algorithm.__name__,
            'settings': _stored_settings(group),
            'lr_source': 'default' if source is None else ('scheduler' if hasattr(source, 'step') else 'float'),
            'lr_mult': group.lr_mult, 'wd_mult': group.wd_mult, 'frozen': group.frozen,
            'params': [names[i] for i, g in enumerate(opt._membership) if g == group.index],
        })
    out = {
        'format_version': STATE_DICT_VERSION,
        'optimizer': type(opt).__name__,
        'step_count': np.asarray(opt.step_count.value),
        'counters': {name: np.asarray(state.value) for name, state in opt._guards.counters().items()},
        'learning_rates': opt._lr.state_dict(),
        'weight_decay': np.array(opt._decay.state.value),
        'param_groups': groups,
        'params': {name: _describe(p.handle.value, opt._membership[i]) for i, (name, p) in
                   enumerate(zip(names, params))},
        'step_offsets': {names[i]: int(opt._step_offsets[i]) for i in range(len(params))},
        'opt_state': buffers if len(params) else None,
        'lr': opt._lr.host_value(0),
        'base_lr': opt._lr.base(0),
        'grad_accumulator': None if accumulator is None else {
            names[i]: keep(value, f"grad_accumulator of {names[i]}") for i, value in zip(trainable, accumulator.value)},
        # the leaves only: an algorithm's State may be a NamedTuple (optax) that files cannot name
        'extra': {name: [keep(leaf, f"extra state {name!r}") for leaf in jax.tree.leaves(state.value)]
                  for name, state in opt._extra_states().items()},
    }
    if opt._keys is not None:                 # stochastic rounding's PRNG key: resume draws the same bits
        out['rng_key'] = keep(opt._keys.state.value, 'rng_key')
    if on_device:
        del out['opt_state']
        out['stored_state'] = {str(g): {name: list(state.value) for name, state in storage.named_states().items()}
                               for g, storage in opt._storage.items()}
        out['layout'] = layout_record(opt)
    return out


# ---------------------------------------------------------------------- loading
def _fail(message: str):
    raise CheckpointMismatchError(message)


def _from_version_1(opt: 'Optimizer', state: Dict[str, Any]) -> Dict[str, Any]:
    """A format-1 dict rewritten in format 2 (keys re-encoded, counters and lr moved)."""
    params = opt._registry.params
    legacy = {}
    for p in params:
        candidates = [_keys.legacy_encode(p.key, p.leaf_path)]
        if isinstance(p.key, int) and not p.leaf_path:
            candidates.insert(0, f'param_{p.key}')            # lists were keyed ('param_i',) then
        legacy[_keys.encode(p.key, p.leaf_path)] = candidates
    saved_names = set(state.get('params', {}))
    rename = {}
    for new, candidates in legacy.items():
        found = next((c for c in candidates if c in saved_names), None)
        if found is not None:
            rename[found] = new
    if len(set(rename.values())) != len(rename):
        _fail("this format-1 checkpoint's '/'-joined keys are ambiguous for the registered parameters")
    convert = lambda mapping: None if mapping is None else {rename.get(k, '\0' + k): v for k, v in mapping.items()}
    counters = dict(state.get('counters', {}))
    step_count = counters.pop('step_count', 0)
    scheduler = state.get('scheduler')
    groups = [{'weight_decay': g.get('weight_decay'), 'lr': g.get('lr')} for g in state.get('param_groups', [])]
    return {
        'format_version': 1, 'optimizer': state.get('optimizer'), 'step_count': step_count,
        'counters': counters,
        'learning_rates': {'lr': state.get('lr'), 'schedulers': [] if scheduler is None else [scheduler]},
        'weight_decay': None, 'legacy_groups': groups,
        'params': convert(state.get('params', {})),
        'step_offsets': convert(state.get('step_offsets', {})),
        'opt_state': {name: convert(values) for name, values in state.get('buffers', {}).items()},
        'grad_accumulator': convert(state.get('grad_accumulator')),
        'extra': state.get('extra', {}),
    }


def _as_list(value):
    """A list that a serializer stored as ``{'0': ..., '1': ...}`` (flax / braintools msgpack), as a list."""
    if isinstance(value, dict) and value and all(isinstance(k, str) and k.isdigit() for k in value) \
            and sorted(int(k) for k in value) == list(range(len(value))):
        return [value[str(i)] for i in range(len(value))]
    return value


def _lists_deep(value):
    """:func:`_as_list` at every level (for a scheduler's own state, whose keys are names)."""
    value = _as_list(value)
    if isinstance(value, dict):
        return {k: _lists_deep(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lists_deep(v) for v in value]
    return value


def _lists_restored(state: Dict[str, Any]) -> Dict[str, Any]:
    """Undo what dict-only serializers do to the lists of a format-2 state_dict (nothing else is touched)."""
    state = dict(state)
    groups = []
    for group in _as_list(state.get('param_groups', [])):
        group = dict(group)
        group['settings'] = {k: _as_list(v) for k, v in dict(group.get('settings', {})).items()}
        group['params'] = _as_list(group.get('params', []))
        groups.append(group)
    state['param_groups'] = groups
    rates = dict(state.get('learning_rates', {}))
    rates['schedulers'] = [dict(entry, state=_lists_deep(entry.get('state')))
                           for entry in _as_list(rates.get('schedulers', []))]
    if rates.get('exact') is not None:
        rates['exact'] = _as_list(rates['exact'])
    state['learning_rates'] = rates
    state['extra'] = {name: _as_list(leaves) for name, leaves in dict(state.get('extra', {})).items()}
    state['params'] = {name: dict(desc, shape=_as_list(desc.get('shape')) if desc.get('shape') != {} else [])
                       for name, desc in dict(state.get('params', {})).items()}
    if 'opt_state' in state and state['opt_state'] is None:      # saved before any registration
        state['opt_state'] = {}
    return state


def _int(value, what: str, low: int = 0, high: int = INT32_MAX) -> int:
    array = np.asarray(value)
    if array.shape != () or array.dtype.kind not in 'iu':
        _fail(f"checkpoint {what} must be an integer scalar, got {array.dtype}{list(array.shape)}")
    number = int(array)
    if not low <= number <= high:
        _fail(f"checkpoint {what} = {number} is outside [{low}, {high}]")
    return number


def _array(value, what: str, like) -> jax.Array:
    if isinstance(value, jax.Array):        # already on its devices (a sharded restore): no host round trip
        if tuple(value.shape) != tuple(np.shape(like)) or value.dtype != like.dtype:
            _fail(f"checkpoint {what} is {value.dtype}{list(value.shape)}, expected {like.dtype}{list(np.shape(like))}")
        return value
    array = np.asarray(value)               # NumPy first: no silent float64 -> float32
    like = jnp.asarray(like)
    if array.shape != like.shape or array.dtype != like.dtype:
        _fail(f"checkpoint {what} is {array.dtype}{list(array.shape)}, expected {like.dtype}{list(like.shape)}")
    return jnp.asarray(array)


def load_state_dict(opt: 'Optimizer', state: Dict[str, Any], strict: bool = True) -> Dict[str, List[str]]:
    """See the module docstring and :meth:`Optimizer.load_state_dict`."""
    write, report = prepare_load(opt, state, strict)
    write()
    return report


def prepare_load(opt: 'Optimizer', state: Dict[str, Any], strict: bool = True):
    """Check ``state`` against ``opt``; return ``(write, report)`` without writing anything.

    ``write()`` then restores everything; a wrapper (Lookahead) checks its own
    part too before calling it, so its load is all-or-nothing as well.
    """
    if not isinstance(state, dict):
        raise TypeError(f"load_state_dict expects the dict returned by state_dict(), got {type(state).__name__}")
    version = state.get('format_version')
    if version not in (1, STATE_DICT_VERSION):
        _fail(f"unsupported optimizer state_dict format_version {version!r} "
              f"(this version reads 1 and {STATE_DICT_VERSION})")
    if state.get('optimizer') != type(opt).__name__:
        _fail(f"the checkpoint is for {state.get('optimizer')!r}, not {type(opt).__name__}")
    try:
        if version == 1:
            state = _from_version_1(opt, state)
        else:
            state = _lists_restored(state)
        return _load(opt, state, strict)
    except (KeyError, TypeError, AttributeError) as err:
        if isinstance(err, CheckpointMismatchError):
            raise
        raise CheckpointMismatchError(f"the checkpoint is malformed or incomplete: {type(err).__name__}: {err}") \
            from None


def _load(opt: 'Optimizer', state: Dict[str, Any], strict: bool):
    params = opt._registry.params
    names = [_keys.encode(p.key, p.leaf_path) for p in params]
    index = {name: i for i, name in enumerate(names)}

    # -- groups
    if state['format_version'] == 1:
        legacy = state['legacy_groups']
        decay = [g.weight_decay for g in opt._groups]
        saved_decay = [g['weight_decay'] for g in legacy]
        if saved_decay != decay:
            _fail(f"checkpoint has {len(saved_decay)} parameter groups with weight decay {saved_decay}; "
                  f"the optimizer has {len(decay)} with {decay}")
        weight_decay = None
    else:
        saved_groups = state['param_groups']
        if len(saved_groups) != opt.num_groups:
            _fail(f"checkpoint has {len(saved_groups)} parameter groups, the optimizer has {opt.num_groups}")
        for group, saved in zip(opt._groups, saved_groups):
            if saved['optimizer'] != group.algorithm.__name__:
                _fail(f"checkpoint group {group.index} runs {saved['optimizer']}, ours {group.algorithm.__name__}")
            mine = _stored_settings(group)
            if saved['settings'] != mine:
                diff = sorted(k for k in set(mine) | set(saved['settings'])
                              if mine.get(k, None) != saved['settings'].get(k, None))
                _fail(f"checkpoint group {group.index} ({group.name!r}) was trained with different "
                      f"hyper-parameters: " + ', '.join(f"{k}: saved {saved['settings'].get(k)!r}, "
                                                        f"now {mine.get(k)!r}" for k in diff))
            if bool(saved['frozen']) != group.frozen:
                _fail(f"checkpoint group {group.index} frozen={saved['frozen']}, ours frozen={group.frozen}")
        weight_decay = np.asarray(state['weight_decay'])
        if weight_decay.shape != (opt.num_groups,) or not np.all(np.isfinite(weight_decay)) \
                or np.any(weight_decay < 0):
            _fail(f"checkpoint weight_decay {weight_decay!r} must be {opt.num_groups} finite values >= 0")
        for g, value in enumerate(weight_decay):
            if value != 0.0 and not opt._decay.live[g] and opt._traced_by_caller:
                _fail(f"checkpoint group {g} has weight decay {value} but the compiled step has none for it")

    # -- parameters
    saved_params = state['params']
    missing = [n for n in names if n not in saved_params]
    unexpected = [n for n in saved_params if n not in index]
    shown = lambda items: [n.lstrip('\0') for n in items]
    if strict and (missing or unexpected):
        _fail(f"checkpoint parameters differ from the registered ones: missing {missing}, unexpected "
              f"{shown(unexpected)} (load_state_dict(..., strict=False) restarts missing ones and ignores "
              f"unexpected ones)")
    for name in names:
        if name not in saved_params:
            continue
        i = index[name]
        current = _describe(params[i].handle.value, opt._membership[i])
        saved = dict(saved_params[name])
        if state['format_version'] == 1:
            saved['group'] = saved.get('group')
        if saved != current:
            _fail(f"checkpoint parameter {name} is {saved}, the registered one is {current}")

    # -- counters
    step_count = _int(state['step_count'], 'step_count')
    counters = opt._guards.counters()
    saved_counters = state['counters']
    if set(saved_counters) != set(counters):
        _fail(f"checkpoint counters {sorted(saved_counters)} differ from {sorted(counters)} "
              f"(skip_nonfinite / accumulate_steps settings differ)")
    counter_values = {name: _int(saved_counters[name], name) for name in counters}
    offsets = []
    for i, name in enumerate(names):
        if name in saved_params:
            offset = _int(state['step_offsets'].get(name, 0), f'step_offsets[{name}]', 0, step_count)
        else:
            offset = step_count                 # restarts: counts its own steps from now
        offsets.append(offset)

    # -- buffers (per trainable parameter), fresh for parameters the checkpoint lacks
    trainable = opt._trainable
    stored = _stored_buffers(opt, state, missing, unexpected, offsets) if 'stored_state' in state else None
    current = {} if stored is not None else opt._buffers_per_param()
    fresh = opt._fresh_buffers()
    restored: Dict[str, List[jax.Array]] = {}
    for buffer, values in current.items():
        saved_buffer = state['opt_state'].get(buffer)
        column = []
        for j, i in enumerate(trainable):
            if values[j] is None:
                column.append(None)
                continue
            name = names[i]
            if name not in saved_params:
                column.append(fresh[buffer][j])
                continue
            if saved_buffer is None or name not in saved_buffer:
                _fail(f"checkpoint has no buffer {buffer!r} for {name}")
            column.append(_array(saved_buffer[name], f"buffer {buffer!r} for {name}", values[j]))
        restored[buffer] = column
    known = set(current)
    for buffer, values in state.get('opt_state', {}).items():
        if buffer not in known and any(name in index for name in values):
            _fail(f"checkpoint buffer {buffer!r} is not kept by this optimizer ({sorted(known)})")

    # -- gradient accumulator
    accumulator = opt._guards.accumulator
    saved_accumulator = state.get('grad_accumulator')
    if (saved_accumulator is None) != (accumulator is None):
        _fail("the checkpoint and the optimizer disagree on gradient accumulation")
    new_accumulator = None
    if accumulator is not None:
        new_accumulator = []
        for j, i in enumerate(trainable):
            now = accumulator.value[j]
            name = names[i]
            new_accumulator.append(_array(saved_accumulator[name], f'grad_accumulator for {name}', now)
                                   if name in saved_params else jnp.zeros_like(now))

    # -- learning rates and schedulers
    lr_piece = state['learning_rates']
    schedulers = opt._lr.schedulers()
    saved_schedulers = lr_piece.get('schedulers', [])
    if len(saved_schedulers) != len(schedulers):
        _fail(f"the checkpoint has {len(saved_schedulers)} LRScheduler(s), the optimizer "
              f"{len(schedulers)}")
    scheduler_values = []
    for scheduler, saved in zip(schedulers, saved_schedulers):
        if saved['class'] != type(scheduler).__name__:
            _fail(f"the checkpoint's scheduler is a {saved['class']}, the attached one a "
                  f"{type(scheduler).__name__}")
        try:
            scheduler._check_state_dict(saved['state'])
        except (TypeError, ValueError) as err:
            _fail(f"the checkpoint's {saved['class']} state does not fit: {err}")
        scheduler_values.append(saved['state'])
    lr = lr_piece.get('lr')
    lr_values = None
    if lr is not None:
        lr_values = np.asarray(lr, dtype=np.float64)
        expected = tuple(opt._lr.state.value.shape)
        if lr_values.shape != expected:
            _fail(f"checkpoint lr has shape {lr_values.shape}, expected {expected}")
        if not np.all(np.isfinite(lr_values)) or np.any(lr_values < 0):
            _fail(f"checkpoint lr {lr_values.tolist()} must be finite and >= 0")
    elif not schedulers:
        _fail("the checkpoint has no learning rate")

    # -- extra State of the algorithm
    extra_states = opt._extra_states()
    saved_extra = state.get('extra', {})
    if set(saved_extra) != set(extra_states):
        _fail(f"checkpoint extra state {sorted(saved_extra)} differs from {sorted(extra_states)}")
    extra_values = {}
    for name, target in extra_states.items():
        leaves, treedef = jax.tree.flatten(target.value)
        saved_leaves, saved_treedef = jax.tree.flatten(saved_extra[name])
        if len(saved_leaves) != len(leaves):
            _fail(f"checkpoint extra state {name!r} has {len(saved_leaves)} arrays, expected {len(leaves)}")
        extra_values[name] = jax.tree.unflatten(treedef, [
            _array(s, f"extra state {name!r}", now) for s, now in zip(saved_leaves, leaves)])

    # -- the PRNG key of stochastic rounding
    saved_key = state.get('rng_key')
    if (saved_key is None) != (opt._keys is None):
        _fail("the checkpoint " + ("has no" if saved_key is None else "has a") + " stochastic-rounding key "
              "(rng_key) but this optimizer " + ("rounds" if saved_key is None else "does not round")
              + " stochastically: the stochastic_round settings differ")
    key_value = None
    if saved_key is not None:
        try:
            key_value = StepKeys.check_loadable(saved_key)
        except ValueError as err:
            _fail(str(err))

    # Everything fits: write.
    def write():
        opt.step_count.value = jnp.asarray(step_count, jnp.int32)
        for name, target in counters.items():
            target.value = jnp.asarray(counter_values[name], jnp.int32)
        if weight_decay is not None and opt._decay.load(weight_decay):
            opt._compiled_step = None
        layout_changed = opt._set_step_offsets(offsets)
        if stored is not None:
            for g, values in stored.items():
                for name, value in values.items():
                    opt._storage[g].set_stored(name, value)
        else:
            opt._write_buffers_per_param(restored)
        if new_accumulator is not None:
            accumulator.value = new_accumulator
        for name, value in extra_values.items():
            extra_states[name].value = value
        if key_value is not None:
            opt._keys.state.value = StepKeys.as_array(key_value)
        for scheduler, saved in zip(schedulers, scheduler_values):
            scheduler.load_state_dict(saved)
        if lr_values is not None:
            opt._lr.load(lr_values, lr_piece.get('exact'))
        if layout_changed:
            opt._compiled_step = None

    if any(o != opt._step_offsets[i] for i, o in enumerate(offsets)) and opt._traced_by_caller:
        if opt._layout_depends_on_offsets(offsets):
            _fail("loading this checkpoint changes which parameters share a fused buffer (their step "
                  "offsets differ), which the step compiled into your jit cannot follow; load it before "
                  "the first traced update")
    return write, {'missing': missing, 'unexpected': shown(unexpected)}


def _stored_buffers(opt: 'Optimizer', state, missing, unexpected, offsets) -> Dict[int, Dict[str, List[Any]]]:
    """Buffers saved in their stored layout (``state_dict(opt, on_device=True)``), checked against ours."""
    if missing or unexpected:
        _fail("a checkpoint of buffers in their stored layout restores the same parameters only (missing "
              f"{missing}, unexpected {[n.lstrip(chr(0)) for n in unexpected]}); restore the per-parameter "
              f"form (opt.state_dict()) into a changed model")
    if opt._layout_depends_on_offsets(offsets):
        _fail("the checkpoint's parameters were registered at other steps, which changes how their buffers "
              "are laid out; restore the per-parameter form (opt.state_dict()) instead")
    saved_layout, layout = state.get('layout'), layout_record(opt)
    if saved_layout != layout:
        diff = sorted(g for g in set(layout) | set(saved_layout or {})
                      if layout.get(g) != (saved_layout or {}).get(g))
        _fail(f"the checkpoint's buffers are laid out differently from this optimizer's (group(s) "
              f"{', '.join(diff)}: another fused or shard_state setting, mesh size or parameter set); "
              f"restore the per-parameter form (opt.state_dict()) instead")
    out: Dict[int, Dict[str, List[Any]]] = {}
    for g, storage in opt._storage.items():
        saved = state['stored_state'][str(g)]
        out[g] = {name: [_array(v, f"stored buffer {name!r} of group {g} (slot {k})", now)
                         for k, (v, now) in enumerate(zip(_as_list(saved[name]), current.value))]
                  for name, current in storage.named_states().items()}
    return out
