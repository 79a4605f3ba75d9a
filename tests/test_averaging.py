"""EMA and SWA of the weights: formulas, jit, units, swapping, checkpoints."""

import brainstate
import brainunit as u
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo
from braintools_optim.averaging import EMA, SWA

SNAPSHOTS = [np.array([1.0, -2.0]), np.array([3.0, 0.5]), np.array([-1.0, 4.0]), np.array([2.0, 2.0])]


def reference_ema(decay, warmup):
    # torch AveragedModel(multi_avg_fn=get_ema_multi_avg_fn(decay)): copy first, then decay;
    # warm-up as TensorFlow's ExponentialMovingAverage(num_updates=n).
    average = None
    for n, value in enumerate(SNAPSHOTS):
        if average is None:
            average = value.copy()
            continue
        d = min(decay, (1 + n) / (10 + n)) if warmup else decay
        average = d * average + (1 - d) * value
    return average


@pytest.mark.parametrize('warmup', [False, True])
def test_ema_matches_the_reference_formula(warmup):
    w = brainstate.ParamState(jnp.zeros(2))
    ema = EMA([w], decay=0.9, warmup=warmup)
    for value in SNAPSHOTS:
        w.value = jnp.asarray(value, jnp.float32)
        ema.update()
    np.testing.assert_allclose(ema.average.value[0], reference_ema(0.9, warmup), rtol=1e-6)


def test_swa_is_the_running_mean_and_runs_under_jit():
    w = brainstate.ParamState(jnp.zeros(2))
    swa = SWA({'w': w})

    @brainstate.transform.jit
    def snapshot(value):
        w.value = value
        swa.update()

    for value in SNAPSHOTS:
        snapshot(jnp.asarray(value, jnp.float32))
    np.testing.assert_allclose(swa.average.value[0], np.mean(SNAPSHOTS, axis=0), rtol=1e-6)
    assert int(swa.num_updates.value) == 4


def test_ema_in_a_training_loop_with_units_and_swap():
    tau = brainstate.ParamState(jnp.array([10.0, 20.0]) * u.ms)
    opt = bo.SGD(lr=0.1).register_trainable_weights({'tau': tau})
    ema = EMA(opt.param_states, decay=0.5)

    @brainstate.transform.jit
    def step():
        grads = brainstate.transform.grad(lambda: jnp.sum((tau.value / u.ms - 5.0) ** 2), opt.param_states)()
        opt.update(grads)
        ema.update()

    for _ in range(3):
        step()
    trained = tau.value
    averaged = ema.averaged_params['tau']
    assert averaged.unit == u.ms
    with ema.applied():
        np.testing.assert_array_equal(tau.value.mantissa, averaged.mantissa)
        assert tau.value.unit == u.ms
    assert tau.value is trained


def test_swap_restores_the_weights_even_if_evaluation_fails():
    w = brainstate.ParamState(jnp.ones(2))
    swa = SWA([w])
    swa.update()
    w.value = jnp.full(2, 5.0)
    with pytest.raises(RuntimeError):
        with swa.applied():
            raise RuntimeError('evaluation failed')
    np.testing.assert_array_equal(w.value, [5.0, 5.0])


def test_average_state_dict_roundtrip_and_validation():
    w = brainstate.ParamState(jnp.ones(2))
    ema = EMA({'w': w}, decay=0.9)
    ema.update()
    w.value = jnp.zeros(2)
    ema.update()
    state = ema.state_dict()
    other = EMA({'w': brainstate.ParamState(jnp.ones(2))}, decay=0.9)
    other.load_state_dict(state)
    np.testing.assert_array_equal(other.average.value[0], ema.average.value[0])
    with pytest.raises(ValueError, match="for 'EMA'"):
        SWA({'w': brainstate.ParamState(jnp.ones(2))}).load_state_dict(state)
    with pytest.raises(ValueError, match='decay'):
        EMA([w], decay=1.5)
