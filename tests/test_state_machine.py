"""A stateful property test: random sequences of what a user does, checked after every step.

hypothesis drives one optimizer (from a few representative configurations)
through a random sequence of updates (eager and jitted), bad updates, learning
rate changes, checkpoint round trips (good, corrupted, foreign), deep copies
and pickles. Invariants, after every step:

* a call that raised changed nothing, bitwise (parameters, buffers, counters, lr);
* saving, loading into a fresh optimizer and continuing equals never stopping;
* a copy is independent, and behaves exactly as the original would;
* counters stay int32 and non-negative, buffers keep their dtype, no State value
  is ever invalidated (every value stays readable).

Bounded for CI: a handful of examples of a dozen steps each.
"""

import copy
import pickle

import brainstate
import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

import braintools_optim as bo

FACTORIES = {
    'adam_groups': lambda: bo.AdamW(lr=0.05, weight_decay=1e-2, skip_nonfinite=True, param_groups=[
        {'params': 'tau', 'optimizer': bo.SGD(lr=0.1, momentum=0.9), 'weight_decay': 0.0}]),
    'sgd_fused_accumulate': lambda: bo.SGD(lr=0.1, momentum=0.9, accumulate_steps=2, fused=True),
    'lamb_scheduled': lambda: bo.Lamb(lr=bo.StepLR(base_lr=0.05, step_size=2, gamma=0.5), schedule_per_update=True,
                                      weight_decay=1e-3),
    'rmsprop_clip': lambda: bo.RMSprop(lr=0.01, momentum=0.5, centered=True, grad_clip_norm=1.0,
                                       skip_nonfinite=True),
}


def fresh_states():
    return {'w': brainstate.ParamState(jnp.array([[1.0, -2.0, 0.5], [0.3, 0.7, -1.1]])),
            'b': brainstate.ParamState(jnp.zeros(3)),
            'tau': brainstate.ParamState(jnp.array([10.0, 20.0, 30.0]) * u.ms)}


def grads_of(states, scale):
    def g(state):
        mantissa, unit = (state.value.mantissa, state.value.unit) if isinstance(state.value, u.Quantity) \
            else (state.value, None)
        out = jnp.sin(mantissa * 3.0 + scale) * scale
        return out if unit is None else out * unit
    return {k: g(s) for k, s in states.items()}


def everything(opt, states):
    """All numbers the optimizer and model hold, as NumPy copies (bitwise comparisons)."""
    state = opt.state_dict()
    out = {('param', k): np.array(u.get_mantissa(s.value)) for k, s in states.items()}
    for name, per in (state['opt_state'] or {}).items():
        for key, value in per.items():
            out[('buffer', name, key)] = np.array(value)
    for name, value in state['counters'].items():
        out[('counter', name)] = np.array(value)
    out[('step',)] = np.array(state['step_count'])
    out[('lr',)] = np.array(state['learning_rates']['lr'])
    for i, scheduler in enumerate(state['learning_rates']['schedulers']):
        for key, value in jax.tree_util.tree_flatten_with_path(scheduler['state'])[0]:
            out[('scheduler', i, jax.tree_util.keystr(key))] = np.array(value)
    return out


def assert_bitwise(a, b):
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=str(key))


BAD_CALLS = {
    'missing key': lambda g: {k: v for k, v in g.items() if k != 'b'},
    'extra key': lambda g: {**g, 'ghost': jnp.ones(2)},
    'wrong shape': lambda g: {**g, 'b': jnp.ones(4)},
    'wrong dtype': lambda g: {**g, 'b': g['b'].astype(jnp.float16)},
    'dropped unit': lambda g: {**g, 'tau': jnp.ones(3)},
    'not a dict': lambda g: list(g.values()),
}

CORRUPTIONS = {
    'nan lr': lambda s: s['learning_rates'].__setitem__('lr', np.full_like(s['learning_rates']['lr'], np.nan)),
    'negative step': lambda s: s.__setitem__('step_count', np.array(-3, np.int32)),
    'huge step': lambda s: s.__setitem__('step_count', np.array(2 ** 33, np.int64)),
    'buffer shape': lambda s: [per.__setitem__(k, np.zeros(7, np.float32))
                               for per in s['opt_state'].values() for k in list(per)[:1]],
    'other class': lambda s: s.__setitem__('optimizer', 'Adagrad'),
}


class OptimizerMachine(RuleBasedStateMachine):

    @initialize(name=st.sampled_from(sorted(FACTORIES)))
    def build(self, name):
        self.name = name
        self.states = fresh_states()
        self.opt = FACTORIES[name]().register_trainable_weights(self.states)
        self.jitted = None
        self.updates = 0

    def _step(self, scale, jit):
        grads = grads_of(self.states, scale)
        if jit:
            if self.jitted is None:
                self.jitted = brainstate.transform.jit(lambda g: self.opt.update(g))
            self.jitted(grads)
        else:
            self.opt.update(grads)
        self.updates += 1

    @rule(scale=st.floats(0.1, 2.0), jit=st.booleans())
    def update(self, scale, jit):
        self._step(scale, jit)

    @rule(scale=st.floats(0.1, 2.0), bad=st.sampled_from(sorted(BAD_CALLS)))
    def bad_update(self, scale, bad):
        before = everything(self.opt, self.states)
        try:
            self.opt.update(BAD_CALLS[bad](grads_of(self.states, scale)))
        except (TypeError, ValueError):
            pass
        else:
            raise AssertionError(f'{bad} was accepted')
        assert_bitwise(before, everything(self.opt, self.states))

    @rule(value=st.sampled_from([0.0, 1e-3, 0.02]))
    def set_lr(self, value):
        before = everything(self.opt, self.states)
        try:
            self.opt.set_lr(value)
        except RuntimeError:                       # the lr comes from a scheduler: refused, unchanged
            assert_bitwise(before, everything(self.opt, self.states))
            return
        assert self.opt.current_lr == value

    @rule(bad=st.sampled_from([-1.0, float('nan'), float('inf')]))
    def bad_lr(self, bad):
        before = everything(self.opt, self.states)
        try:
            self.opt.set_lr(bad)
        except (ValueError, RuntimeError):
            pass
        else:
            raise AssertionError(f'lr={bad} was accepted')
        assert_bitwise(before, everything(self.opt, self.states))

    @precondition(lambda self: self.jitted is None)       # a traced optimizer's scheduler cannot be swapped
    @rule(scale=st.floats(0.1, 2.0))
    def checkpoint_round_trip_equals_never_stopping(self, scale):
        saved = self.opt.state_dict()
        params = {k: s.value for k, s in self.states.items()}
        fresh = FACTORIES[self.name]().register_trainable_weights(self.states)
        fresh.load_state_dict(saved)
        assert_bitwise(everything(self.opt, self.states), everything(fresh, self.states))
        self.opt.update(grads_of(self.states, scale))       # never stopping ...
        straight = everything(self.opt, self.states)
        for k, s in self.states.items():
            s.value = params[k]
        fresh.update(grads_of(self.states, scale))          # ... equals resuming
        assert_bitwise(straight, everything(fresh, self.states))
        self.opt, self.jitted = fresh, None
        self.updates += 1

    @rule(corruption=st.sampled_from(sorted(CORRUPTIONS)))
    def corrupt_checkpoint_changes_nothing(self, corruption):
        saved = self.opt.state_dict()
        CORRUPTIONS[corruption](saved)
        before = everything(self.opt, self.states)
        try:
            self.opt.load_state_dict(saved)
        except bo.CheckpointMismatchError:
            pass
        else:
            raise AssertionError(f'{corruption} was loaded')
        assert_bitwise(before, everything(self.opt, self.states))

    @rule(scale=st.floats(0.1, 2.0))
    def copy_is_independent_and_equivalent(self, scale):
        twin = copy.deepcopy(self.opt)                   # shares the model's ParamStates
        params = {k: s.value for k, s in self.states.items()}
        before = everything(self.opt, self.states)
        twin.update(grads_of(self.states, scale))
        by_twin = {k: np.array(u.get_mantissa(s.value)) for k, s in self.states.items()}
        for k, s in self.states.items():
            s.value = params[k]
        assert_bitwise(before, everything(self.opt, self.states))       # the original did not move
        self.opt.update(grads_of(self.states, scale))
        for k, s in self.states.items():
            np.testing.assert_array_equal(by_twin[k], np.array(u.get_mantissa(s.value)))
        self.updates += 1

    @rule()
    def pickle_round_trip(self):
        clone = pickle.loads(pickle.dumps(self.opt))
        assert_bitwise(everything(self.opt, self.states), everything(clone, dict(clone.param_states)))

    @invariant()
    def counters_and_dtypes_never_drift(self):
        if not hasattr(self, 'opt'):
            return
        step = self.opt.step_count.value
        assert step.dtype == jnp.int32 and 0 <= int(step) <= self.updates
        for name, state in self.opt._guards.counters().items():
            assert state.value.dtype == jnp.int32 and int(state.value) >= 0, name
        for k, s in self.states.items():
            assert u.get_mantissa(s.value).dtype == jnp.float32, k
        for per in self.opt.buffers().values():
            for value in per.values():
                assert u.get_mantissa(value).dtype == jnp.float32
        assert np.all(np.isfinite(np.asarray(self.opt.get_last_lr(), dtype=np.float64)))


OptimizerMachine.TestCase.settings = settings(max_examples=12, stateful_step_count=12, deadline=None,
                                              suppress_health_check=[HealthCheck.too_slow])
TestOptimizerMachine = OptimizerMachine.TestCase
