"""Checkpointing for optimizers: ``state_dict``, ``load_state_dict``, ``save``, ``load``.

A mixin of :class:`braintools_optim.Optimizer`, kept apart from the update
engine. The dict is keyed by parameter path and buffer name, never by
position, and :meth:`load_state_dict` checks everything before it writes
anything; the file format is :mod:`braintools_optim.checkpoint`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List

import jax
import jax.numpy as jnp
import numpy as np

from . import _units
from ._registry import path_str
from .schedulers._base import float_dtype

if TYPE_CHECKING:
    from ._optimizer import OptimizerState

STATE_DICT_VERSION = 1


class CheckpointMixin:
    """``state_dict`` / ``load_state_dict`` / ``save`` / ``load`` for :class:`Optimizer`."""

    def _counters(self) -> Dict[str, 'OptimizerState']:
        counters = {'step_count': self.step_count}
        for name in ('nonfinite_skips', 'consecutive_skips', 'micro_step'):
            if getattr(self, name) is not None:
                counters[name] = getattr(self, name)
        return counters

    def state_dict(self) -> Dict[str, Any]:
        """The optimizer's state as plain nested dicts of NumPy arrays.

        Keyed by parameter path (``'layer/weight'``) and buffer name, never by
        position: the step counter and other counters, the learning rate or the
        scheduler's state, the parameter groups, every buffer, the gradient
        accumulator, and a description (shape, dtype, unit) of each parameter
        so :meth:`load_state_dict` can check it fits. Parameter values themselves
        are not included: save them with the model.
        """
        keys = [path_str(k) for k in self._registry.keys()]
        states = self._registry.states()
        return {
            'format_version': STATE_DICT_VERSION,
            'optimizer': type(self).__name__,
            'counters': {name: np.asarray(state.value) for name, state in self._counters().items()},
            'lr': None if self._lr_state is None else np.asarray(self._lr_state.value),
            'scheduler': None if self._scheduler is None else {
                'class': type(self._scheduler).__name__,
                'state': jax.tree.map(np.asarray, self._scheduler.state_dict())},
            'param_groups': [dict(group) for group in self._groups],
            'params': {key: _describe(state.value, group)
                       for key, state, group in zip(keys, states, self._registry.groups())},
            'step_offsets': dict(zip(keys, self._param_step_offsets())),
            'buffers': {name: dict(zip(keys, map(np.array, self._buffer_values(name))))   # copies
                        for name in self._buffers},
            'grad_accumulator': (None if self._grad_accumulator is None else
                                 dict(zip(keys, map(np.asarray, self._grad_accumulator.value)))),
            'extra': {name: jax.tree.map(np.asarray, state.value)
                      for name, state in self._extra_states().items()},
        }

    def load_state_dict(self, state: Dict[str, Any], strict: bool = True) -> Dict[str, List[str]]:
        """Restore :meth:`state_dict` output, checking it first; nothing changes if it does not fit.

        Checked: format version, optimizer class, parameter paths, each
        parameter's shape, dtype and unit, every buffer's shape and dtype, the
        parameter groups and the scheduler. An error names what differs.

        ``strict=False`` is for a model that gained or lost parameters since
        the checkpoint: parameters missing from it keep their fresh buffers,
        parameters it has but the optimizer does not are ignored. Everything
        else is still checked. Returns ``{'missing': [...], 'unexpected': [...]}``.
        """
        self._check_header(state)
        keys = [path_str(k) for k in self._registry.keys()]
        saved_params = state['params']
        missing = [k for k in keys if k not in saved_params]
        unexpected = [k for k in saved_params if k not in set(keys)]
        if strict and (missing or unexpected):
            raise ValueError(f"checkpoint parameters differ from the registered ones: missing {missing}, "
                             f"unexpected {unexpected} (load_state_dict(..., strict=False) keeps fresh "
                             f"state for missing ones and ignores unexpected ones)")
        current = {key: _describe(s.value, g) for key, s, g in
                   zip(keys, self._registry.states(), self._registry.groups())}
        for key in keys:
            if key in saved_params and dict(saved_params[key]) != current[key]:
                raise ValueError(f"checkpoint parameter {key!r} is {dict(saved_params[key])}, the registered "
                                 f"one is {current[key]}")
        new_buffers = {name: self._restored_list(f'buffer {name!r}', state['buffers'][name], keys,
                                                 self._buffer_values(name))
                       for name in self._buffers}
        accumulator = None
        if self._grad_accumulator is not None:
            accumulator = self._restored_list('grad_accumulator', state['grad_accumulator'], keys,
                                              self._grad_accumulator.value)
        extra = {name: jax.tree.map(jnp.asarray, state['extra'][name]) for name in self._extra_states()}
        counters = {name: jnp.asarray(state['counters'][name], dtype=jnp.int32) for name in self._counters()}
        if self._scheduler is not None:
            self._scheduler._check_state_dict(state['scheduler']['state']) \
                if hasattr(self._scheduler, '_check_state_dict') else None
        # parameters the checkpoint lacks (strict=False) start their own step count now
        restart = int(counters['step_count'])
        offsets = [int(state.get('step_offsets', {}).get(key, restart)) for key in keys]
        layout = self._layout_for_offsets(offsets)     # fused buckets follow the step offsets

        # Everything fits: write.
        if accumulator is not None:
            self._grad_accumulator.value = accumulator
        for name, target in self._extra_states().items():
            target.value = extra[name]
        for name, target in self._counters().items():
            target.value = counters[name]
        for key, param_state, offset in zip(keys, self._registry.states(), offsets):
            self._step_offsets[id(param_state)] = offset
        self._layout = layout
        for name, values in new_buffers.items():
            self._set_buffer_values(name, values)
        if self._scheduler is not None:
            self._scheduler.load_state_dict(state['scheduler']['state'])
        else:
            for group, saved in zip(self._groups, state['param_groups']):
                group['lr'] = saved['lr']
            self._base_lr = jnp.asarray(self._lr_values(), dtype=float_dtype())
            self._lr_state.value = jnp.asarray(state['lr'], dtype=float_dtype())
        return {'missing': missing, 'unexpected': unexpected}

    def _check_header(self, state) -> None:
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict expects the dict returned by state_dict(), got {type(state).__name__}")
        if state.get('format_version') != STATE_DICT_VERSION:
            raise ValueError(f"unsupported optimizer state_dict format_version {state.get('format_version')!r} "
                             f"(this version reads {STATE_DICT_VERSION})")
        if state.get('optimizer') != type(self).__name__:
            raise ValueError(f"the checkpoint is for {state.get('optimizer')!r}, not {type(self).__name__}")
        saved_decay = [group['weight_decay'] for group in state['param_groups']]
        decay = [group['weight_decay'] for group in self._groups]
        if saved_decay != decay:
            raise ValueError(f"checkpoint has {len(saved_decay)} parameter groups with weight decay "
                             f"{saved_decay}; the optimizer has {len(decay)} with {decay}")
        if set(state['buffers']) != set(self._buffers):
            raise ValueError(f"checkpoint buffers {sorted(state['buffers'])} differ from "
                             f"{type(self).__name__}'s {sorted(self._buffers)}")
        if set(state['counters']) != set(self._counters()):
            raise ValueError(f"checkpoint counters {sorted(state['counters'])} differ from "
                             f"{sorted(self._counters())} (skip_nonfinite / accumulate_steps settings differ)")
        if (state.get('grad_accumulator') is None) != (self._grad_accumulator is None):
            raise ValueError("the checkpoint and the optimizer disagree on gradient accumulation")
        if set(state.get('extra', {})) != set(self._extra_states()):
            raise ValueError(f"checkpoint extra state {sorted(state.get('extra', {}))} differs from "
                             f"{sorted(self._extra_states())}")
        saved_scheduler = state.get('scheduler')
        if (saved_scheduler is None) != (self._scheduler is None):
            raise ValueError("the checkpoint and the optimizer disagree on whether an LRScheduler is attached")
        if saved_scheduler is not None and saved_scheduler['class'] != type(self._scheduler).__name__:
            raise ValueError(f"the checkpoint's scheduler is a {saved_scheduler['class']}, the attached one a "
                             f"{type(self._scheduler).__name__}")
        if saved_scheduler is None and np.shape(state['lr']) != tuple(self._lr_state.value.shape):
            raise ValueError(f"checkpoint lr has shape {np.shape(state['lr'])}, expected "
                             f"{tuple(self._lr_state.value.shape)}")

    @staticmethod
    def _restored_list(what: str, saved: Dict[str, Any], keys: List[str], current: List) -> List:
        values = []
        for key, now in zip(keys, current):
            if key not in saved:
                values.append(now)
                continue
            array = np.asarray(saved[key])           # NumPy: no silent float64 -> float32
            if array.shape != now.shape or array.dtype != now.dtype:
                raise ValueError(f"checkpoint {what} for {key!r} is {array.dtype}{list(array.shape)}, "
                                 f"expected {now.dtype}{list(now.shape)}")
            values.append(jnp.asarray(array))
        return values

    def save(self, path: str) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (see :mod:`braintools_optim.checkpoint`)."""
        from . import checkpoint
        checkpoint.save(path, self.state_dict())

    def load(self, path: str, strict: bool = True) -> Dict[str, List[str]]:
        """Read a file written by :meth:`save` and :meth:`load_state_dict` it."""
        from . import checkpoint
        return self.load_state_dict(checkpoint.load(path), strict=strict)


def _describe(value, group: int) -> Dict[str, Any]:
    mantissa, unit = _units.split(value)
    return {'shape': list(mantissa.shape), 'dtype': str(mantissa.dtype),
            'unit': '' if unit is None else str(unit), 'group': int(group)}
