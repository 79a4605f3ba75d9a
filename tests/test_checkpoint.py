"""state_dict / load_state_dict / save / load: keyed by path, validated, atomic, bitwise resume."""

import os
import re

import brainstate
import brainunit as u
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo
from braintools_optim import checkpoint
from optim_db import ALL, OPTIM_DB


class Model(brainstate.nn.Module):
    def __init__(self, extra=False):
        super().__init__()
        self.w = brainstate.ParamState(jnp.linspace(-1.0, 1.0, 6).reshape(2, 3))
        self.tau = brainstate.ParamState(jnp.array([5.0, 8.0]) * u.ms)
        if extra:
            self.bias = brainstate.ParamState(jnp.zeros(3))

    def loss(self, x):
        out = jnp.tanh(x @ self.w.value) * jnp.sum(self.tau.value / u.ms)
        if hasattr(self, 'bias'):
            out = out + self.bias.value
        return jnp.mean((out - 0.3) ** 2)


X = jnp.linspace(-1.0, 1.0, 8).reshape(4, 2)


def build(name, model, **kw):
    sched = bo.StepLR(base_lr=0.05, step_size=3, gamma=0.5)
    opt = OPTIM_DB[name].make(**kw)
    opt.lr = sched
    return opt.register_trainable_weights(model.states(brainstate.ParamState)), sched


def save(opt, path):
    if isinstance(opt, bo.Lookahead):                  # Lookahead has no save/load of its own
        checkpoint.save(path, opt.state_dict())
    else:
        opt.save(path)


def load(opt, path):
    if isinstance(opt, bo.Lookahead):
        opt.load_state_dict(checkpoint.load(path))
    else:
        opt.load(path)


def train(model, opt, sched, steps):
    for _ in range(steps):
        opt.update(brainstate.transform.grad(model.loss, opt.param_states)(X))
        sched.step()


def params_of(model):
    return {'w': np.asarray(model.w.value), 'tau': np.asarray(model.tau.value.mantissa)}


@pytest.mark.parametrize('name', [info.name for info in ALL])
def test_resume_is_bitwise_identical(name, tmp_path):
    straight = Model()
    opt, sched = build(name, straight, skip_nonfinite=True)
    train(straight, opt, sched, 7)

    first = Model()
    opt1, sched1 = build(name, first, skip_nonfinite=True)
    train(first, opt1, sched1, 4)
    save(opt1, str(tmp_path / 'opt.npz'))
    checkpoint.save(str(tmp_path / 'model.npz'), params_of(first))

    resumed = Model()
    saved = checkpoint.load(str(tmp_path / 'model.npz'))
    resumed.w.value = jnp.asarray(saved['w'])
    resumed.tau.value = jnp.asarray(saved['tau']) * u.ms
    opt2, sched2 = build(name, resumed, skip_nonfinite=True)
    load(opt2, str(tmp_path / 'opt.npz'))
    assert float(opt2.current_lr) == float(opt1.current_lr)
    train(resumed, opt2, sched2, 3)

    for key, value in params_of(straight).items():
        np.testing.assert_array_equal(params_of(resumed)[key], value)
    assert int(opt2.step_count.value) == 7
    assert int(sched2.last_epoch.value) == 7


def test_state_dict_is_keyed_by_path_and_holds_no_parameter_values():
    model = Model()
    opt, sched = build('Adam', model)
    train(model, opt, sched, 2)
    state = opt.state_dict()
    # the module's keys as brainstate gives them, ('w',) and ('tau',), stored as their repr
    assert set(state['opt_state']['exp_avg']) == {"('w',)", "('tau',)"}
    assert state['params']["('tau',)"] == {'shape': [2], 'dtype': 'float32', 'unit': 'ms', 'group': 0}
    assert int(state['step_count']) == 2
    assert [s['class'] for s in state['learning_rates']['schedulers']] == ['StepLR']
    assert int(state['learning_rates']['schedulers'][0]['state']['last_epoch']) == 2
    flat = [leaf for buffers in state['opt_state'].values() for leaf in buffers.values()]
    assert not any(np.array_equal(leaf, np.asarray(model.w.value)) for leaf in flat)


def snapshot(opt):
    return {name: {key: np.asarray(u.get_mantissa(value)) for key, value in values.items()}
            for name, values in opt.buffers().items()}


@pytest.mark.parametrize('mutate, message', [
    (lambda s: s['opt_state']['exp_avg'].update({"('w',)": np.zeros((3, 2), np.float32)}), "exp_avg.*'w'"),
    (lambda s: s['opt_state']['exp_avg'].update({"('w',)": np.zeros((2, 3), np.float64)}), "exp_avg.*'w'"),
    (lambda s: s['params'].pop("('tau',)"), 'missing'),
    (lambda s: s['params'].update(extra={'shape': [1], 'dtype': 'float32', 'unit': '', 'group': 0}),
     'unexpected'),
    (lambda s: s['params']["('tau',)"].update(unit='mV'), "'tau'"),
    (lambda s: s.update(optimizer='SGD'), "'SGD'"),
    (lambda s: s.update(format_version=99), 'format_version'),
    (lambda s: s['learning_rates'].update(schedulers=[]), 'LRScheduler'),
], ids=['buffer shape', 'buffer dtype', 'missing parameter', 'unexpected parameter', 'unit', 'optimizer',
        'format version', 'scheduler missing'])
def test_bad_checkpoints_are_refused_and_change_nothing(mutate, message):
    model = Model()
    opt, sched = build('Adam', model)
    train(model, opt, sched, 2)
    state = opt.state_dict()
    mutate(state)
    other = Model()
    fresh, _ = build('Adam', other)
    train(other, fresh, _, 1)
    before = snapshot(fresh)
    with pytest.raises(ValueError, match=message):
        fresh.load_state_dict(state)
    after = snapshot(fresh)
    assert before.keys() == after.keys()
    for name in before:
        assert before[name].keys() == after[name].keys()
        for key in before[name]:
            np.testing.assert_array_equal(before[name][key], after[name][key])
    assert int(fresh.step_count.value) == 1


def test_checkpoint_of_another_optimizer_is_refused():
    model = Model()
    opt, sched = build('SGD', model)
    train(model, opt, sched, 1)
    adam, _ = build('Adam', Model())
    with pytest.raises(ValueError, match="for 'SGD'"):
        adam.load_state_dict(opt.state_dict())


def test_non_strict_load_for_a_model_that_gained_a_parameter():
    old = Model()
    opt, sched = build('Adam', old)
    train(old, opt, sched, 2)
    grown = Model(extra=True)
    opt2, _ = build('Adam', grown)
    with pytest.raises(ValueError, match=re.escape('''missing ["('bias',)"]''')):
        opt2.load_state_dict(opt.state_dict())
    report = opt2.load_state_dict(opt.state_dict(), strict=False)
    assert report == {'missing': ["('bias',)"], 'unexpected': []}
    np.testing.assert_array_equal(opt2.buffers()['exp_avg'][('w',)], opt.buffers()['exp_avg'][('w',)])
    assert int(opt2.step_count.value) == 2


def test_save_is_atomic(tmp_path, monkeypatch):
    path = str(tmp_path / 'opt.npz')
    model = Model()
    opt, sched = build('Adam', model)
    train(model, opt, sched, 1)
    opt.save(path)
    good = open(path, 'rb').read()
    train(model, opt, sched, 1)

    def crash(*args, **kwargs):
        raise KeyboardInterrupt('power cut')

    monkeypatch.setattr(np, 'savez', crash)
    with pytest.raises(KeyboardInterrupt):
        opt.save(path)
    assert open(path, 'rb').read() == good
    assert os.listdir(tmp_path) == ['opt.npz']


def test_checkpoint_files_need_no_pickle_and_keep_dtypes(tmp_path):
    tree = {'bf16': np.asarray(jnp.ones(2, jnp.bfloat16)), 'i': np.arange(3, dtype=np.int32),
            'nested': [{'x': np.float64(1.5)}, None, 'text', 3]}
    checkpoint.save(str(tmp_path / 'c.npz'), tree)
    with np.load(str(tmp_path / 'c.npz'), allow_pickle=False) as archive:
        assert all(archive[name].dtype != object for name in archive.files)
    back = checkpoint.load(str(tmp_path / 'c.npz'))
    assert back['bf16'].dtype == jnp.bfloat16 and back['i'].dtype == np.int32
    assert back['nested'][0]['x'] == 1.5 and back['nested'][1:] == [None, 'text', 3]
    checkpoint.save(str(tmp_path / 'q.npz'), {'q': jnp.ones(2) * u.mV})     # Quantities keep their unit
    q = checkpoint.load(str(tmp_path / 'q.npz'))['q']
    assert q.unit == u.mV and q.mantissa.tolist() == [1.0, 1.0]
