"""The documented processing order: rescale, clip value, clip global norm, decay, rule, param clip."""

import brainstate
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo


def one_sgd_step(params, grads, **kw):
    states = [brainstate.ParamState(jnp.asarray(p, jnp.float32)) for p in params]
    opt = bo.SGD(lr=1.0, **kw).register_trainable_weights(states)
    opt.update({i: jnp.asarray(g, jnp.float32) for i, g in enumerate(grads)})
    return [np.asarray(s.value) for s in states]


def test_rescale_happens_before_value_clipping():
    # 10 * 0.05 = 0.5 survives a clip at 1; clipping first would give 0.05.
    (p,) = one_sgd_step([[0.0]], [[10.0]], rescale_grad=0.05, grad_clip_value=1.0)
    np.testing.assert_allclose(p, [-0.5])


def test_value_clipping_happens_before_norm_clipping():
    # clip value 1 -> g = (1, 1), norm sqrt(2) -> scaled to norm 1.
    a, b = one_sgd_step([[0.0], [0.0]], [[10.0], [-10.0]], grad_clip_value=1.0, grad_clip_norm=1.0)
    np.testing.assert_allclose([a[0], b[0]], [-1 / np.sqrt(2), 1 / np.sqrt(2)], rtol=1e-6)


def test_norm_clipping_is_global_across_parameters():
    a, b = one_sgd_step([[0.0], [0.0, 0.0]], [[3.0], [0.0, 4.0]], grad_clip_norm=1.0)
    np.testing.assert_allclose(np.concatenate([a, b]), [-0.6, 0.0, -0.8], rtol=1e-6)


def test_norm_below_threshold_is_untouched():
    (p,) = one_sgd_step([[0.0, 0.0]], [[0.3, 0.4]], grad_clip_norm=1.0)
    np.testing.assert_allclose(p, [-0.3, -0.4], rtol=1e-6)


def test_coupled_decay_is_added_after_clipping():
    # clip g=10 to 1, then add 0.5 * theta(=2) -> 2; theta = 2 - 2 = 0.
    (p,) = one_sgd_step([[2.0]], [[10.0]], grad_clip_value=1.0, weight_decay=0.5)
    np.testing.assert_allclose(p, [0.0], atol=1e-7)


def test_param_clipping_is_applied_last():
    (p,) = one_sgd_step([[0.5, -0.5]], [[-10.0, 10.0]], param_clip_value=1.0)
    np.testing.assert_allclose(p, [1.0, -1.0])


def test_adamw_decay_is_decoupled_and_scaled_by_lr():
    w = brainstate.ParamState(jnp.array([2.0]))
    opt = bo.AdamW(lr=0.1, weight_decay=0.5).register_trainable_weights([w])
    opt.update({0: jnp.array([1.0])})
    # theta (1 - lr wd) - lr * sign(g)
    np.testing.assert_allclose(w.value, [2.0 * (1 - 0.05) - 0.1], rtol=1e-5)


def test_adam_decay_is_coupled():
    w = brainstate.ParamState(jnp.array([2.0]))
    opt = bo.Adam(lr=0.1, weight_decay=0.5).register_trainable_weights([w])
    opt.update({0: jnp.array([-1.0])})      # g + wd*theta = 0 -> no step
    np.testing.assert_allclose(w.value, [2.0], rtol=1e-6)


@pytest.mark.parametrize('make', [lambda: bo.SGD(lr=0.1, momentum=0.9), lambda: bo.Adam(lr=0.1),
                                  lambda: bo.AdamW(lr=0.1, weight_decay=0.0), lambda: bo.RMSprop(lr=0.1),
                                  lambda: bo.Adadelta()])
def test_zero_gradients_without_decay_never_move_parameters(make):
    w = brainstate.ParamState(jnp.array([1.0, -2.0, 3.0]))
    opt = make().register_trainable_weights([w])
    for _ in range(3):
        opt.update({0: jnp.zeros(3)})
    np.testing.assert_array_equal(w.value, [1.0, -2.0, 3.0])
