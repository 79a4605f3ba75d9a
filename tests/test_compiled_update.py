"""update() eagerly, under jit and inside for_loop: same numbers, no re-tracing."""

import brainstate
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo

MAKERS = {
    'sgd': lambda lr=0.05: bo.SGD(lr=lr, momentum=0.9, nesterov=True, weight_decay=1e-3),
    'adam': lambda lr=0.05: bo.Adam(lr=lr, weight_decay=1e-3, grad_clip_norm=1.0, amsgrad=True),
    'adamw': lambda lr=0.05: bo.AdamW(lr=lr, grad_clip_value=0.5),
    'adadelta': lambda lr=1.0: bo.Adadelta(lr=lr, rho=0.95, param_clip_value=5.0),
    'rmsprop': lambda lr=0.05: bo.RMSprop(lr=lr, centered=True, momentum=0.5, rescale_grad=0.5),
}


class Model(brainstate.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = brainstate.ParamState(jnp.linspace(-1.0, 1.0, 12).reshape(3, 4))
        self.b = brainstate.ParamState(jnp.array([0.1, -0.2, 0.3, 0.0]))

    def loss(self, x):
        return jnp.mean((jnp.tanh(x @ self.w.value + self.b.value) - 0.5) ** 2)


X = jnp.linspace(-2.0, 2.0, 15).reshape(5, 3)
STEPS = 12


def train_eager(make):
    model = Model()
    opt = make().register_trainable_weights(model.states(brainstate.ParamState))
    for _ in range(STEPS):
        opt.update(brainstate.transform.grad(model.loss, opt.param_states)(X))
    return model, opt


def train_jit(make):
    model = Model()
    opt = make().register_trainable_weights(model.states(brainstate.ParamState))

    @brainstate.transform.jit
    def step(x):
        grads, loss = brainstate.transform.grad(model.loss, opt.param_states, return_value=True)(x)
        opt.update(grads)
        return loss

    for _ in range(STEPS):
        step(X)
    return model, opt


def train_for_loop(make):
    model = Model()
    opt = make().register_trainable_weights(model.states(brainstate.ParamState))

    @brainstate.transform.jit
    def run(xs):
        def body(x):
            opt.update(brainstate.transform.grad(model.loss, opt.param_states)(x))
        brainstate.transform.for_loop(body, xs)

    run(jnp.broadcast_to(X, (STEPS,) + X.shape))
    return model, opt


@pytest.mark.parametrize('name', list(MAKERS))
def test_eager_jit_and_for_loop_agree(name):
    results = [train(MAKERS[name]) for train in (train_eager, train_jit, train_for_loop)]
    reference_model, reference_opt = results[0]
    for model, opt in results[1:]:
        np.testing.assert_allclose(model.w.value, reference_model.w.value, rtol=2e-6, atol=1e-6)
        np.testing.assert_allclose(model.b.value, reference_model.b.value, rtol=2e-6, atol=1e-6)
        assert int(opt.step_count.value) == STEPS
        for buffer, values in opt.buffers().items():
            for key, value in values.items():
                # centered RMSprop divides by sqrt(v - mean(g)^2): a cancellation that
                # turns ulp-level fusion differences into ~1e-5 relative ones.
                np.testing.assert_allclose(value, reference_opt.buffers()[buffer][key], rtol=2e-5, atol=1e-6)
    assert not np.allclose(reference_model.w.value, Model().w.value)


def test_eager_update_compiles_once():
    model, opt = train_eager(MAKERS['adam'])
    assert opt._num_traces == 1


def test_changing_lr_never_retraces_and_is_applied():
    w = brainstate.ParamState(jnp.zeros(3))
    opt = bo.SGD(lr=0.1).register_trainable_weights([w])
    traces = []

    @brainstate.transform.jit
    def step(g):
        traces.append(1)
        opt.update({0: g})

    g = jnp.ones(3)
    expected = 0.0
    for lr in [0.1, 0.5, 0.0, 2.0]:
        opt.lr = lr
        assert float(opt.current_lr) == pytest.approx(lr)
        step(g)
        expected -= lr
        np.testing.assert_allclose(w.value, expected, rtol=1e-6)
        opt.update({0: g})      # eager too
        expected -= lr
    assert len(traces) == 1
    assert opt._num_traces == 2            # once inside `step`, once for the eager cache


def test_scheduler_lr_is_read_from_state_without_retracing():
    w = brainstate.ParamState(jnp.zeros(()))
    sched = bo.StepLR(base_lr=1.0, step_size=2, gamma=0.5)
    opt = bo.SGD(lr=sched).register_trainable_weights([w])
    traces = []

    @brainstate.transform.jit
    def step():
        traces.append(1)
        opt.update({0: jnp.ones(())})

    applied = []
    for epoch in range(6):
        before = float(w.value)
        reported = float(opt.current_lr)
        step()
        applied.append(before - float(w.value))
        assert applied[-1] == pytest.approx(reported)
        sched.step()
    assert applied == pytest.approx([1.0, 1.0, 0.5, 0.5, 0.25, 0.25])
    assert len(traces) == 1


def test_scheduler_stepped_inside_jit_and_for_loop():
    w = brainstate.ParamState(jnp.zeros(()))
    sched = bo.StepLR(base_lr=1.0, step_size=1, gamma=0.5)
    opt = bo.SGD(lr=sched).register_trainable_weights([w])

    @brainstate.transform.jit
    def epochs(n):
        def body(i):
            opt.update({0: jnp.ones(())})
            sched.step()
        brainstate.transform.for_loop(body, n)

    epochs(jnp.arange(4))
    np.testing.assert_allclose(w.value, -(1 + 0.5 + 0.25 + 0.125), rtol=1e-6)
    assert int(sched.last_epoch.value) == 4
    assert float(opt.current_lr) == pytest.approx(0.0625)


def test_attaching_a_scheduler_before_tracing_is_applied():
    w = brainstate.ParamState(jnp.zeros(()))
    opt = bo.SGD(lr=0.1).register_trainable_weights([w])
    opt.update({0: jnp.ones(())})           # eager: our own cache may be rebuilt
    opt.lr = bo.StepLR(base_lr=2.0, step_size=10)
    assert float(opt.current_lr) == pytest.approx(2.0)
    opt.update({0: jnp.ones(())})
    np.testing.assert_allclose(w.value, -2.1, rtol=1e-6)
    assert opt.lr_scheduler is opt.lr


def test_float64_parameters_stay_float64():
    import jax
    with jax.enable_x64(True):
        w = brainstate.ParamState(jnp.ones(3, dtype=jnp.float64))
        v = brainstate.ParamState(jnp.ones(3, dtype=jnp.float32))
        opt = bo.Adam(lr=1e-3).register_trainable_weights([w, v])
        opt.update({0: jnp.ones(3, jnp.float64), 1: jnp.ones(3, jnp.float32)})
        assert w.value.dtype == jnp.float64 and v.value.dtype == jnp.float32
        moments = opt.buffers()['exp_avg']
        assert moments[0].dtype == jnp.float64 and moments[1].dtype == jnp.float32


def test_bfloat16_parameters_keep_their_dtype():
    w = brainstate.ParamState(jnp.ones(4, dtype=jnp.bfloat16))
    opt = bo.RMSprop(lr=1e-2).register_trainable_weights([w])
    opt.update({0: jnp.ones(4, dtype=jnp.bfloat16)})
    assert w.value.dtype == jnp.bfloat16
    assert float(w.value[0]) < 1.0
