"""Parameters with physical units (brainunit Quantities)."""

import re

import brainstate
import brainunit as u
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo
from optim_db import ALL, names


class Neuron(brainstate.nn.Module):
    def __init__(self):
        super().__init__()
        self.tau = brainstate.ParamState(jnp.array([10.0, 20.0]) * u.ms)
        self.g = brainstate.ParamState(jnp.array([1.0, 2.0, 3.0]) * u.nS)
        self.w = brainstate.ParamState(jnp.array([0.5, -0.5]))

    def loss(self):
        return (jnp.sum((self.tau.value / u.ms - 15.0) ** 2)
                + jnp.sum((self.g.value / u.nS) ** 2) + jnp.sum(self.w.value ** 2))


OPTIMIZERS = [
    lambda: bo.SGD(lr=0.01, momentum=0.9, weight_decay=1e-3),
    lambda: bo.Adam(lr=0.01, weight_decay=1e-3, grad_clip_norm=1.0),
    lambda: bo.AdamW(lr=0.01),
    lambda: bo.Adadelta(grad_clip_value=0.5),
    lambda: bo.RMSprop(lr=0.01, centered=True, momentum=0.5),
]


@pytest.mark.parametrize('make', OPTIMIZERS)
@pytest.mark.parametrize('unit_aware', [False, True])
def test_units_are_preserved_and_conventions_agree(make, unit_aware):
    """Labelled and unit-aware grads give the same numbers; the unit never changes."""
    neuron, reference = Neuron(), Neuron()
    opt = make().register_trainable_weights(neuron.states(brainstate.ParamState))
    ref_opt = make().register_trainable_weights(reference.states(brainstate.ParamState))
    for _ in range(5):
        opt.update(brainstate.transform.grad(neuron.loss, opt.param_states, unit_aware=unit_aware)())
        ref_opt.update(brainstate.transform.grad(reference.loss, ref_opt.param_states)())
    assert u.get_unit(neuron.tau.value) == u.ms
    assert u.get_unit(neuron.g.value) == u.nS
    assert not isinstance(neuron.w.value, u.Quantity)
    np.testing.assert_allclose(neuron.tau.value.mantissa, reference.tau.value.mantissa, rtol=1e-6)
    assert not np.allclose(neuron.tau.value.mantissa, [10.0, 20.0])


def test_quantity_parameter_trains_like_its_mantissa():
    """A parameter in mV follows exactly the trajectory of a plain array holding its mantissa."""
    with_unit = brainstate.ParamState(jnp.array([1.0, -2.0, 3.0]) * u.mV)
    plain = brainstate.ParamState(jnp.array([1.0, -2.0, 3.0]))
    a = bo.Adam(lr=0.1, weight_decay=0.01).register_trainable_weights([with_unit])
    b = bo.Adam(lr=0.1, weight_decay=0.01).register_trainable_weights([plain])
    for step in range(10):
        g = jnp.array([0.3, -1.0, 2.0]) * (step + 1)
        a.update({0: g / u.mV})
        b.update({0: g})
    np.testing.assert_array_equal(with_unit.value.mantissa, plain.value)
    assert with_unit.value.unit == u.mV


@pytest.mark.parametrize('info', ALL, ids=names(ALL))
def test_every_optimizer_trains_a_quantity_exactly_like_its_mantissa(info):
    """A matrix in mV and its plain twin, in one optimizer with the same gradient mantissas, stay bitwise equal.

    Every rule sees mantissas only, so whatever it couples (global norms,
    Prodigy's estimate, L-BFGS's curvature pairs, fused buckets) treats the two
    alike; the unit is kept.
    """
    start = jnp.array([[1.0, -2.0, 3.0], [0.5, 0.25, -1.0]])
    with_unit = brainstate.ParamState(start * u.mV)
    plain = brainstate.ParamState(start)
    opt = info.make().register_trainable_weights({'v': with_unit, 'p': plain})
    for step in range(4):
        g = jnp.array([[0.3, -1.0, 2.0], [1.5, -0.5, 0.1]]) * (step + 1)
        opt.update({'v': g / u.mV, 'p': g})          # unit-aware gradient: loss unit / mV
    assert with_unit.value.unit == u.mV
    np.testing.assert_array_equal(with_unit.value.mantissa, plain.value)
    assert not np.allclose(plain.value, start)


@pytest.mark.parametrize('unit_aware', [False, True])
def test_moments_carry_gradient_unit_and_its_square(unit_aware):
    neuron = Neuron()
    opt = bo.Adam(lr=0.01).register_trainable_weights(neuron.states(brainstate.ParamState))
    opt.update(brainstate.transform.grad(neuron.loss, opt.param_states, unit_aware=unit_aware)())
    buffers = opt.buffers()
    grad_unit = u.ms ** -1 if unit_aware else u.ms
    m, v = buffers['exp_avg'][('tau',)], buffers['exp_avg_sq'][('tau',)]
    assert m.unit.dim == grad_unit.dim
    assert v.unit.dim == (grad_unit ** 2).dim
    assert not isinstance(buffers['exp_avg'][('w',)], u.Quantity)


def test_adadelta_accumulated_update_has_the_parameter_unit_squared():
    neuron = Neuron()
    opt = bo.Adadelta().register_trainable_weights(neuron.states(brainstate.ParamState))
    opt.update(brainstate.transform.grad(neuron.loss, opt.param_states, unit_aware=True)())
    acc = opt.buffers()['acc_delta'][('g',)]
    assert acc.unit.dim == (u.nS ** 2).dim
    sq = opt.buffers()['square_avg'][('g',)]
    assert sq.unit.dim == (u.nS ** -2).dim


def test_gradient_in_another_scale_of_the_same_unit_is_converted():
    p = brainstate.ParamState(jnp.array([1.0]) * u.mV)
    q = brainstate.ParamState(jnp.array([1.0]) * u.mV)
    a = bo.SGD(lr=0.1).register_trainable_weights([p])
    b = bo.SGD(lr=0.1).register_trainable_weights([q])
    a.update({0: jnp.array([2.0]) / u.mV})
    b.update({0: jnp.array([2000.0]) / u.volt})   # the same gradient, per volt
    np.testing.assert_allclose(p.value.mantissa, q.value.mantissa, rtol=1e-6)


@pytest.mark.parametrize('grad', [jnp.array([1.0, 1.0]), jnp.array([1.0, 1.0]) * u.volt,
                                  jnp.array([1.0, 1.0]) * u.mV ** 2])
def test_unit_mismatch_raises_naming_the_parameter_and_changes_nothing(grad):
    neuron = Neuron()
    opt = bo.Adam(lr=0.1).register_trainable_weights(neuron.states(brainstate.ParamState))
    good = brainstate.transform.grad(neuron.loss, opt.param_states)()
    before = (neuron.tau.value, neuron.g.value, opt.buffers()['exp_avg'][('tau',)])
    with pytest.raises(bo.GradientMismatchError, match=re.escape("unit mismatch for ('tau',)")):
        opt.update({**good, ('tau',): grad})
    assert neuron.tau.value is before[0] and neuron.g.value is before[1]
    assert int(opt.step_count.value) == 0


def test_unitful_gradient_for_dimensionless_parameter_raises():
    neuron = Neuron()
    opt = bo.SGD(lr=0.1).register_trainable_weights(neuron.states(brainstate.ParamState))
    good = brainstate.transform.grad(neuron.loss, opt.param_states)()
    with pytest.raises(bo.GradientMismatchError, match="'w'"):
        opt.update({**good, ('w',): good[('w',)] * u.mV})


def test_units_survive_jit_and_for_loop():
    neuron = Neuron()
    opt = bo.RMSprop(lr=0.01).register_trainable_weights(neuron.states(brainstate.ParamState))

    @brainstate.transform.jit
    def train(steps):
        def body(i):
            opt.update(brainstate.transform.grad(neuron.loss, opt.param_states, unit_aware=True)())
            return neuron.loss()
        return brainstate.transform.for_loop(body, steps)

    losses = train(jnp.arange(20))
    assert losses[-1] < losses[0]
    assert neuron.tau.value.unit == u.ms and neuron.g.value.unit == u.nS
