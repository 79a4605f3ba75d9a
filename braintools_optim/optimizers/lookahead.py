"""Lookahead (Zhang et al. 2019): slow weights that follow any of our optimizers."""

from __future__ import annotations

from typing import Any, Dict, Optional

import brainstate
import jax.numpy as jnp
import numpy as np

from .. import _checks as checks
from .. import _copying, _keys, _units
from .._checkpointing import STATE_DICT_VERSION
from .._errors import CheckpointMismatchError
from .._optimizer import Optimizer, _contains_tracer
from .._storage import OptimizerState

_REFUSED = ('lr', 'weight_decay', 'grad_clip_norm', 'grad_clip_value', 'param_clip_value', 'rescale_grad',
            'skip_nonfinite')


class Lookahead(brainstate.graph.Node):
    r"""Lookahead (Zhang et al. 2019) around any optimizer of this package.

    The wrapped ("fast", inner) optimizer updates the registered ParamStates as
    usual. Lookahead keeps a copy :math:`\phi` of every parameter (the "slow"
    weights, starting at the registered values) and, after every ``k``-th
    (``sync_period``) inner step::

        \phi \leftarrow \phi + \alpha(\theta - \phi),     \theta \leftarrow \phi

    so the ParamStates hold the fast weights :math:`\theta` between
    synchronisations and the new slow weights right after one. Gradients are
    taken at the fast weights (what the ParamStates hold).

    Learning rate, schedulers, weight decay (coupled or decoupled, as the
    inner optimizer documents) and clipping all belong to the inner
    optimizer: build it with them; ``Lookahead`` refuses those arguments.
    ``lr``, ``current_lr``, ``set_lr``, ``lr_scheduler`` and ``step_count`` are
    the inner optimizer's. A step the inner optimizer skips (``skip_nonfinite``)
    does not count towards ``k``. Extra ``update`` arguments (``LBFGS``'s
    ``value``/``value_fn``) are passed through.

    **Registration and updates must go through the wrapper**
    (``Lookahead.register_trainable_weights`` / ``add_param_group`` /
    ``update``): the inner optimizer must have no parameters when wrapped, and
    an update after parameters were registered on the inner optimizer
    directly raises.

    Conventions: optax ``lookahead(fast_optimizer, sync_period, slow_step_size)``
    with ``reset_state=False`` (the inner optimizer's buffers are kept at a
    synchronisation). braintools' defaults: ``sync_period=5``, ``alpha=0.5``.

    Args:
        base_optimizer: the inner optimizer (an :class:`Optimizer` or another ``Lookahead``).
        sync_period: :math:`k \ge 1`, inner steps between synchronisations.
        alpha: slow step size :math:`\alpha \in [0, 1]`.

    Example:

    >>> import brainstate, jax.numpy as jnp
    >>> from braintools_optim.optimizers.sgd import SGD
    >>> from braintools_optim.optimizers.lookahead import Lookahead
    >>> w = brainstate.ParamState(jnp.array([1.0]))
    >>> opt = Lookahead(SGD(lr=0.1), sync_period=2, alpha=0.5).register_trainable_weights({'w': w})
    >>> opt.update({'w': jnp.array([1.0])})     # fast step: 0.9
    >>> opt.update({'w': jnp.array([1.0])})     # fast 0.8, then sync: 1 + 0.5 * (0.8 - 1)
    >>> round(float(w.value[0]), 4)
    0.9
    """

    graph_invisible_attrs = ('_slow_owner', '_compiled', '_compiled_key', '_given')

    def __init__(self, base_optimizer, sync_period: int = 5, alpha: float = 0.5, lr=None,
                 weight_decay: Optional[float] = None, grad_clip_norm=None, grad_clip_value=None, **options):
        settings = dict(lr=lr, weight_decay=weight_decay, grad_clip_norm=grad_clip_norm,
                        grad_clip_value=grad_clip_value)
        given = {name: value for name, value in settings.items() if value is not None}
        given_optimizer = base_optimizer
        if _is_optax_transformation(base_optimizer):
            # braintools' form: Lookahead(optax.adam(1e-3), ...) builds the inner optimizer itself
            from .optax_optimizer import OptaxOptimizer
            base_optimizer = OptaxOptimizer(base_optimizer, **given, **options)
        else:
            refused = sorted(set(given) | set(options))
            if refused:
                known = [name for name in refused if name in _REFUSED]
                hint = (f"; {', '.join(known)} belong(s) to the inner optimizer: pass them when building it"
                        if known else '')
                raise TypeError(f"Lookahead got unexpected argument(s) {', '.join(refused)}{hint}")
        if not isinstance(base_optimizer, (Optimizer, Lookahead)):
            raise TypeError(f"Lookahead wraps an optimizer of braintools_optim or an optax "
                            f"GradientTransformation, got {type(base_optimizer).__name__}")
        _refuse_master_weights(base_optimizer, any(group.precision.master_weights
                                                   for group in getattr(base_optimizer, '_groups', ())))
        if len(base_optimizer.param_states):
            raise ValueError("the inner optimizer already has registered parameters; build it fresh and "
                             "register the parameters through Lookahead.register_trainable_weights")
        if isinstance(sync_period, bool) or int(sync_period) != sync_period or sync_period < 1:
            raise ValueError(f"sync_period must be an integer >= 1, got {sync_period!r}")
        self.inner_optimizer = base_optimizer
        self._given = given_optimizer
        self._sync_period = int(sync_period)
        self._alpha = checks.unit_interval('alpha', alpha, include_one=True)
        self.slow_params = OptimizerState([], name='Lookahead.slow_params')
        self.steps_since_sync = OptimizerState(jnp.zeros((), jnp.int32), name='Lookahead.steps_since_sync')
        self._slow_owner = []
        self._compiled = None
        self._compiled_key = None
        self._traced_by_caller = False

    # ------------------------------------------------------------------ settings
    @property
    def sync_period(self) -> int:
        """:math:`k`, fixed at construction."""
        return self._sync_period

    @property
    def alpha(self) -> float:
        r""":math:`\alpha`, fixed at construction."""
        return self._alpha

    @property
    def base_optimizer(self):
        """What was wrapped, as given: an optimizer of this package, or the optax transformation."""
        return self._given

    @property
    def opt_state(self):
        """braintools: the state, ``{'slow_params': [...], 'inner': inner buffers}`` (``None`` before registration)."""
        if not self._slow_owner:
            return None
        inner = self.inner_optimizer.opt_state
        return OptimizerState({'slow_params': list(self.slow_params.value),
                               'inner': None if inner is None else inner.value}, name='Lookahead.opt_state')

    # ------------------------------------------------------------------ registration
    def register_trainable_weights(self, param_states: Any, prefix: Optional[str] = None) -> 'Lookahead':
        """Register ParamStates with the inner optimizer and start their slow weights; returns ``self``."""
        self._check_not_traced()
        self.inner_optimizer.register_trainable_weights(param_states, prefix=prefix)
        self._rebuild_slow()
        return self

    def add_param_group(self, param_states: Any, **settings) -> 'Lookahead':
        """The inner optimizer's :meth:`Optimizer.add_param_group`, plus slow weights; returns ``self``."""
        self._check_not_traced()
        _refuse_master_weights(self.inner_optimizer, settings.get('master_weights', False))
        self.inner_optimizer.add_param_group(param_states, **settings)
        self._rebuild_slow()
        return self

    def _check_not_traced(self) -> None:
        if self._traced_by_caller:
            raise RuntimeError("Lookahead.update has already been compiled into a traced function; "
                               "register every weight before the first traced update")

    def _inner_handles(self):
        inner = self.inner_optimizer
        if isinstance(inner, Lookahead):
            return inner._inner_handles()
        params = inner._registry.params
        return [params[i].handle for i in inner._trainable]

    def _inner_params(self):
        inner = self.inner_optimizer
        if isinstance(inner, Lookahead):
            return inner._inner_params()
        params = inner._registry.params
        return [params[i] for i in inner._trainable]

    def _rebuild_slow(self) -> None:
        states = self._inner_handles()
        position = {id(state): i for i, state in enumerate(self._slow_owner)}
        old = self.slow_params.value
        self.slow_params.value = [old[position[id(s)]] if id(s) in position
                                  else jnp.array(_units.split(s.value)[0], copy=True) for s in states]
        self._slow_owner = states
        self._compiled = None

    @property
    def param_states(self) -> Dict[Any, brainstate.ParamState]:
        """The registered ParamStates (the inner optimizer's)."""
        return self.inner_optimizer.param_states

    @property
    def num_groups(self) -> int:
        return self.inner_optimizer.num_groups

    # ------------------------------------------------------------------ learning rate (inner's)
    @property
    def lr(self):
        """The inner optimizer's ``lr`` (assignable)."""
        return self.inner_optimizer.lr

    @lr.setter
    def lr(self, value) -> None:
        self.inner_optimizer.lr = value

    @property
    def current_lr(self):
        return self.inner_optimizer.current_lr

    def set_lr(self, value, group: Optional[int] = None) -> None:
        self.inner_optimizer.set_lr(value, group)

    @property
    def _lr_scheduler(self):
        return self.inner_optimizer.lr_scheduler

    @property
    def lr_scheduler(self):
        return self.inner_optimizer.lr_scheduler

    def get_last_lr(self):
        return self.inner_optimizer.get_last_lr()

    @property
    def step_count(self):
        """The inner optimizer's step counter State."""
        return self.inner_optimizer.step_count

    # ------------------------------------------------------------------ update
    def update(self, grads, **kwargs) -> None:
        """One inner step with ``grads`` (and any extra inner ``update`` arguments), then a sync every ``k``."""
        states = self._inner_handles()
        if not states:
            raise RuntimeError("Lookahead.update called before register_trainable_weights")
        if len(states) != len(self._slow_owner) or any(a is not b for a, b in zip(states, self._slow_owner)):
            raise RuntimeError("parameters were registered on the inner optimizer directly; register "
                               "them through Lookahead.register_trainable_weights so they get slow weights")
        if _contains_tracer(grads) or _contains_tracer(kwargs):
            self._traced_by_caller = True
            self._step(grads, **kwargs)
            return
        self.check_update(grads, **kwargs)         # the inner optimizer's checks, before compiling
        static = {k: v for k, v in kwargs.items() if callable(v)}
        dynamic = {k: v for k, v in kwargs.items() if not callable(v)}
        key = (tuple(sorted((k, id(v)) for k, v in static.items())) + (tuple(sorted(dynamic)),)
               + (self.program_version,))
        if self._compiled is None or self._compiled_key != key:
            self._compiled = brainstate.transform.jit(lambda g, dyn: self._step(g, **dyn, **static))
            self._compiled_key = key
        core = self._core()
        core.__dict__['_owned_trace'] = True       # this compiled step is ours: we rebuild it when the
        try:                                       # inner optimizer's program changes (program_version)
            self._compiled(grads, dynamic)
        finally:
            core.__dict__['_owned_trace'] = False

    def step(self, *args, **kwargs) -> None:
        """The torch / braintools spelling of :meth:`update`."""
        return self.update(*args, **kwargs)

    def _core(self):
        inner = self.inner_optimizer
        return inner._core() if isinstance(inner, Lookahead) else inner

    @property
    def program_version(self) -> int:
        """The inner optimizer's (see :attr:`Optimizer.program_version`)."""
        return self.inner_optimizer.program_version

    def check_update(self, grads, **kwargs) -> None:
        """The inner optimizer's :meth:`Optimizer.check_update`."""
        self.inner_optimizer.check_update(grads, **kwargs)

    def _step(self, grads, **kwargs) -> None:
        inner = self.inner_optimizer
        before = inner.step_count.value
        inner.update(grads, **kwargs)
        advanced = inner.step_count.value != before
        counter = self.steps_since_sync.value + advanced.astype(jnp.int32)
        sync = advanced & (counter >= self._sync_period)
        new_slow = []
        for state, slow in zip(self._slow_owner, self.slow_params.value):
            fast, unit = _units.split(state.value)
            synced = slow + self._alpha * (fast - slow)
            new_slow.append(jnp.where(sync, synced, slow))
            state.value = _units.merge(jnp.where(sync, synced, fast), unit)
        self.slow_params.value = new_slow
        self.steps_since_sync.value = jnp.where(sync, 0, counter).astype(jnp.int32)

    # ------------------------------------------------------------------ introspection, checkpoints
    def buffers(self) -> Dict[str, Dict[Any, Any]]:
        """The inner optimizer's buffers plus ``slow_params`` (with the parameters' units)."""
        out = self.inner_optimizer.buffers()
        out['slow_params'] = {param.ident: _units.merge(slow, _units.split(param.handle.value)[1])
                              for param, slow in zip(self._inner_params(), self.slow_params.value)}
        return out

    # ------------------------------------------------------------------ copies (see Optimizer)
    _UNCOPIED = ('_compiled', '_compiled_key')

    def __deepcopy__(self, memo):
        for param in self._inner_params():
            memo.setdefault(id(param.state), param.state)
        new = _copying.deepcopy_object(self, memo, drop=self._UNCOPIED)
        new.__dict__.update(_compiled=None, _compiled_key=None)
        return new

    def __getstate__(self):
        return _copying.frozen_state(self, drop=self._UNCOPIED)

    def __setstate__(self, state):
        self.__dict__.update(_copying.thawed_state(state))
        self.__dict__.update(_compiled=None, _compiled_key=None)

    def state_dict(self) -> Dict[str, Any]:
        """The inner optimizer's ``state_dict`` plus the slow weights and the sync counter."""
        keys = [_keys.encode(p.key, p.leaf_path) for p in self._inner_params()]
        inner = self.inner_optimizer.state_dict()
        return {'format_version': STATE_DICT_VERSION, 'optimizer': 'Lookahead',
                'step_count': np.asarray(self.step_count.value),
                'param_groups': inner['param_groups'],           # for reading (braintools' key)
                'inner': inner,
                'opt_state': {'slow_params': dict(zip(keys, map(np.array, self.slow_params.value))),
                              'steps_since_sync': np.asarray(self.steps_since_sync.value)}}

    def _prepare_load(self, state: Dict[str, Any], strict: bool = True):
        """Check ``state`` (the inner optimizer's part too); return ``(write, report)``, writing nothing."""
        if not isinstance(state, dict):
            raise TypeError(f"load_state_dict expects the dict returned by state_dict(), got "
                            f"{type(state).__name__}")
        if state.get('format_version') not in (1, STATE_DICT_VERSION) or state.get('optimizer') != 'Lookahead':
            raise CheckpointMismatchError("not a Lookahead state_dict (format_version and 'optimizer' do not fit)")
        inner = self.inner_optimizer
        write_inner, report = inner._prepare_load(state['inner'], strict)
        params = self._inner_params()
        keys = [_keys.encode(p.key, p.leaf_path) for p in params]
        own = state['opt_state'] if 'opt_state' in state else state       # the first release kept them on top
        saved = own['slow_params']
        if state['format_version'] == 1:
            legacy = {_keys.legacy_encode(p.key, p.leaf_path): k for p, k in zip(params, keys)}
            saved = {legacy.get(k, '\0' + k): v for k, v in saved.items()}
        missing = [k for k in keys if k not in saved]
        if strict and (missing or set(saved) - set(keys)):
            raise CheckpointMismatchError(f"state_dict slow_params are for {sorted(saved)}, not {sorted(keys)}")
        values = []
        for key, param, current in zip(keys, params, self.slow_params.value):
            if key not in saved:                          # strict=False: start from the current weights
                values.append(jnp.array(_units.split(param.handle.value)[0], copy=True))
                continue
            array = np.asarray(saved[key])
            if array.shape != current.shape or array.dtype != current.dtype:
                raise CheckpointMismatchError(f"state_dict slow_params for {key}: {array.dtype}{list(array.shape)}"
                                              f" != {current.dtype}{list(current.shape)}")
            values.append(jnp.asarray(array))
        counter = np.asarray(own['steps_since_sync'])
        if counter.shape != () or counter.dtype.kind not in 'iu' or not 0 <= int(counter) < self._sync_period:
            raise CheckpointMismatchError(f"state_dict steps_since_sync {counter!r} is not an integer in "
                                          f"[0, {self._sync_period})")

        def write():
            write_inner()
            self.slow_params.value = values
            self.steps_since_sync.value = jnp.asarray(int(counter), jnp.int32)

        return write, report

    def load_state_dict(self, state: Dict[str, Any], strict: bool = True) -> Dict[str, Any]:
        """Restore :meth:`state_dict` output; everything is checked first, so a failure changes nothing.

        ``strict=False`` as :meth:`Optimizer.load_state_dict`; parameters the
        checkpoint lacks start their slow weights at their current values.
        """
        write, report = self._prepare_load(state, strict)
        write()
        return report

    def save(self, path: str) -> None:
        """Write :meth:`state_dict` to ``path`` atomically (see :mod:`braintools_optim.checkpoint`)."""
        from .. import checkpoint
        checkpoint.save(path, self.state_dict())

    def load(self, path: str, strict: bool = True) -> Dict[str, Any]:
        """Read a file written by :meth:`save` and :meth:`load_state_dict` it."""
        from .. import checkpoint
        return self.load_state_dict(checkpoint.load(path), strict=strict)


def _refuse_master_weights(inner, asked: bool) -> None:
    if asked is True:
        raise ValueError(f"Lookahead moves the parameters itself at each sync, and the float32 master copies "
                         f"of {type(inner).__name__}(master_weights=True) would not follow them; use "
                         f"stochastic_round=True for bfloat16/float16 parameters under Lookahead")


def _is_optax_transformation(value) -> bool:
    try:
        import optax
    except ImportError:
        return False
    return isinstance(value, optax.GradientTransformation)
