"""Property tests (hypothesis) that hold for every optimizer or for a whole family."""

import brainstate
import jax.numpy as jnp
import numpy as np
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

import braintools_optim as bo
from optim_db import ELEMENTWISE as ELEMENTWISE_INFOS

SHAPES = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
# XLA:CPU flushes subnormals to zero, so they are left out of the inputs.
FINITE = st.floats(-10.0, 10.0, allow_nan=False, width=32, allow_subnormal=False)
COMMON = settings(max_examples=10, deadline=None)


def arrays(shape):
    return hnp.arrays(np.float32, shape, elements=FINITE)


# Element-wise optimizers keep buffers shaped like the parameter; the per-tensor ones (Novograd,
# Fromage, SM3, ...) and those with scalar bookkeeping (Nadam's mu product, Rprop's previous lr) do not.
ELEMENTWISE = {info.name: info.make for info in ELEMENTWISE_INFOS}


@COMMON
@given(name=st.sampled_from(sorted(ELEMENTWISE)), shape=SHAPES, data=st.data())
def test_buffers_always_have_the_parameter_shape_and_dtype(name, shape, data):
    w = brainstate.ParamState(jnp.asarray(data.draw(arrays(shape))))
    opt = ELEMENTWISE[name]().register_trainable_weights([w])
    opt.update({0: jnp.asarray(data.draw(arrays(shape)))})
    assert w.value.shape == shape
    for buffers in opt.buffers().values():
        assert buffers[0].shape == shape
        assert buffers[0].dtype == jnp.float32


@COMMON
@given(name=st.sampled_from(['SGD', 'Momentum', 'MomentumNesterov', 'Adam', 'RMSprop', 'Adadelta']),
       shape=SHAPES, data=st.data())
def test_zero_gradients_without_decay_never_move_parameters(name, shape, data):
    start = data.draw(arrays(shape))
    w = brainstate.ParamState(jnp.asarray(start))
    opt = {'SGD': bo.SGD(lr=0.1, momentum=0.9), 'Momentum': bo.Momentum(lr=0.1),
           'MomentumNesterov': bo.MomentumNesterov(lr=0.1), 'Adam': bo.Adam(lr=0.1),
           'RMSprop': bo.RMSprop(lr=0.1, centered=True), 'Adadelta': bo.Adadelta()}[name]
    opt.register_trainable_weights([w])
    for _ in range(3):
        opt.update({0: jnp.zeros(shape, jnp.float32)})
    np.testing.assert_array_equal(w.value, start)


@COMMON
@given(shape=SHAPES, scale=st.floats(1e-2, 1e2), data=st.data())
def test_scaling_the_loss_does_not_change_adams_steps(shape, scale, data):
    # Scale invariance holds where |g| >> eps; tiny gradients are set to exactly 0.
    grads = [data.draw(arrays(shape).map(lambda x: np.where(np.abs(x) < 1e-3, 0, x).astype(np.float32)))
             for _ in range(3)]
    a = brainstate.ParamState(jnp.zeros(shape))
    b = brainstate.ParamState(jnp.zeros(shape))
    plain = bo.Adam(lr=0.1, eps=1e-12).register_trainable_weights([a])
    scaled = bo.Adam(lr=0.1, eps=1e-12).register_trainable_weights([b])
    for g in grads:
        plain.update({0: jnp.asarray(g)})
        scaled.update({0: jnp.asarray(g * np.float32(scale))})
    np.testing.assert_allclose(a.value, b.value, rtol=1e-4, atol=1e-6)


@COMMON
@given(shape=SHAPES, data=st.data())
def test_first_adam_step_is_lr_times_sign_of_gradient(shape, data):
    g = data.draw(arrays(shape).filter(lambda x: np.all(np.abs(x) > 1e-3)))
    w = brainstate.ParamState(jnp.zeros(shape))
    bo.Adam(lr=0.01).register_trainable_weights([w]).update({0: jnp.asarray(g)})
    np.testing.assert_allclose(w.value, -0.01 * np.sign(g), rtol=1e-4)


@COMMON
@given(shape=SHAPES, limit=st.floats(0.1, 5.0), data=st.data())
def test_clipped_parameters_stay_within_the_limit(shape, limit, data):
    w = brainstate.ParamState(jnp.asarray(data.draw(arrays(shape))))
    opt = bo.SGD(lr=1.0, param_clip_value=limit).register_trainable_weights([w])
    opt.update({0: jnp.asarray(data.draw(arrays(shape)))})
    assert np.all(np.abs(np.asarray(w.value)) <= np.float32(limit))
