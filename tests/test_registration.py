"""Registering weights: what is accepted, how keys are formed, what is refused."""

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo


class Layer(brainstate.nn.Module):
    def __init__(self, n_in=3, n_out=2, scale=1.0):
        super().__init__()
        self.weight = brainstate.ParamState(jnp.full((n_in, n_out), scale))
        self.bias = brainstate.ParamState(jnp.zeros(n_out))
        self.counter = brainstate.ShortTermState(jnp.zeros(()))


def test_register_returns_optimizer_and_keys_match_module_paths():
    layer = Layer()
    opt = bo.SGD(lr=0.1)
    assert opt.register_trainable_weights(layer.states(brainstate.ParamState)) is opt
    assert set(opt.param_states) == {('weight',), ('bias',)}
    assert opt.param_states[('weight',)] is layer.weight


def test_grad_keys_equal_param_state_keys():
    layer = Layer()
    opt = bo.Adam(lr=0.1).register_trainable_weights(layer.states(brainstate.ParamState))
    grads = brainstate.transform.grad(lambda: jnp.sum(layer.weight.value) + jnp.sum(layer.bias.value),
                                      opt.param_states)()
    assert set(grads) == set(opt.param_states)
    opt.update(grads)
    assert int(opt.step_count.value) == 1


def test_two_modules_with_the_same_relative_paths_are_both_trained():
    encoder, decoder = Layer(scale=1.0), Layer(scale=2.0)
    opt = bo.SGD(lr=0.5)
    opt.register_trainable_weights(encoder.states(brainstate.ParamState))
    opt.register_trainable_weights(decoder.states(brainstate.ParamState))
    assert len(opt.param_states) == 4

    def loss():
        return sum(jnp.sum(m.weight.value) + jnp.sum(m.bias.value) for m in (encoder, decoder))

    opt.update(brainstate.transform.grad(loss, opt.param_states)())
    assert jnp.allclose(encoder.weight.value, 0.5)
    assert jnp.allclose(decoder.weight.value, 1.5)


def test_prefix_names_a_registration():
    encoder, decoder = Layer(), Layer()
    opt = bo.SGD(lr=0.1)
    opt.register_trainable_weights(encoder.states(brainstate.ParamState), prefix='encoder')
    opt.register_trainable_weights(decoder.states(brainstate.ParamState), prefix='decoder')
    assert ('encoder', 'weight') in opt.param_states
    assert opt.param_states[('decoder', 'bias')] is decoder.bias


def test_registering_the_same_state_twice_is_a_no_op():
    layer = Layer()
    opt = bo.Adam(lr=0.1)
    opt.register_trainable_weights(layer.states(brainstate.ParamState))
    opt.register_trainable_weights(layer.states(brainstate.ParamState))
    opt.register_trainable_weights([layer.weight])
    assert len(opt.param_states) == 2
    assert len(opt.buffers()['exp_avg']) == 2


def test_plain_dict_list_and_single_state_are_accepted():
    a = brainstate.ParamState(jnp.ones(2))
    b = brainstate.ParamState(jnp.ones(3))
    c = brainstate.ParamState(jnp.ones(4))
    opt = bo.SGD(lr=0.1)
    opt.register_trainable_weights({'a': a})
    opt.register_trainable_weights([b])
    opt.register_trainable_weights(c)
    states = list(opt.param_states.values())
    assert states[0] is a and states[1] is b and states[2] is c
    # keys as given: 'a' stays a string, list items are keyed by position, and a later
    # position that is already taken moves under ('registration<n>', position)
    assert list(opt.param_states) == ['a', 0, ('registration2', 0)]


@pytest.mark.parametrize('bad', [brainstate.ShortTermState(jnp.ones(2)), brainstate.State(jnp.ones(2)),
                                 jnp.ones(2)])
def test_non_param_states_are_refused_and_nothing_is_registered(bad):
    good = brainstate.ParamState(jnp.ones(2))
    opt = bo.SGD(lr=0.1)
    with pytest.raises(TypeError, match='ParamState'):
        opt.register_trainable_weights({'good': good, 'bad': bad})
    assert opt.param_states == {}


def test_integer_parameters_are_refused():
    opt = bo.SGD(lr=0.1)
    with pytest.raises(TypeError, match='floating'):
        opt.register_trainable_weights([brainstate.ParamState(jnp.arange(3))])


def test_module_state_filter_leaves_other_states_alone():
    layer = Layer()
    opt = bo.SGD(lr=0.1).register_trainable_weights(layer.states(brainstate.ParamState))
    assert all(isinstance(s, brainstate.ParamState) for s in opt.param_states.values())


def test_keys_that_cannot_be_sorted_together_become_strings():
    a = brainstate.ParamState(jnp.ones(2))
    b = brainstate.ParamState(jnp.ones(2))
    opt = bo.SGD(lr=1.0)
    opt.register_trainable_weights({('layers', 0, 'w'): a})
    opt.register_trainable_weights({('layers', 'norm'): b})
    grads = brainstate.transform.grad(lambda: jnp.sum(a.value) + jnp.sum(b.value), opt.param_states)()
    opt.update(grads)
    assert jnp.allclose(a.value, 0.0) and jnp.allclose(b.value, 0.0)


def test_registering_after_a_traced_update_raises_instead_of_skipping():
    first = brainstate.ParamState(jnp.ones(2))
    opt = bo.Adam(lr=0.1).register_trainable_weights([first])

    @brainstate.transform.jit
    def step():
        opt.update(brainstate.transform.grad(lambda: jnp.sum(first.value ** 2), opt.param_states)())

    step()
    with pytest.raises(RuntimeError, match='Register every weight'):
        opt.register_trainable_weights([brainstate.ParamState(jnp.ones(2))])


def test_registering_after_eager_updates_works_and_keeps_moments():
    first = brainstate.ParamState(jnp.ones(2))
    opt = bo.Adam(lr=0.1).register_trainable_weights({'first': first})
    opt.update({'first': jnp.ones(2)})
    moment = opt.buffers()['exp_avg']['first']
    second = brainstate.ParamState(jnp.ones(3))
    opt.register_trainable_weights({'second': second})
    assert jnp.array_equal(opt.buffers()['exp_avg']['first'], moment)
    opt.update({'first': jnp.ones(2), 'second': jnp.ones(3)})
    # its own first Adam step (fresh bias correction, as torch's per-parameter step): -lr * sign(g)
    np.testing.assert_allclose(second.value, 1.0 - 0.1, rtol=1e-5)


def test_update_before_registration_raises():
    with pytest.raises(RuntimeError, match='register_trainable_weights'):
        bo.Adam().update({})


def test_optimizer_states_are_named_and_typed():
    opt = bo.Adam(lr=0.1).register_trainable_weights([brainstate.ParamState(jnp.ones(2))])
    names = {state.name for state in jax.tree.leaves(brainstate.graph.states(opt), is_leaf=lambda x: isinstance(x, brainstate.State)) if 'exp' in state.name}
    assert names == {'Adam.exp_avg', 'Adam.exp_avg_sq'}
    assert isinstance(opt.step_count, bo.OptimizerState)
    assert opt.step_count.name == 'Adam.step_count'
