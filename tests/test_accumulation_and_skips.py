"""Gradient accumulation and non-finite step skipping."""

import brainstate
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo


def test_accumulating_k_micro_batches_equals_one_step_on_their_mean():
    micro = [jnp.array([1.0, -2.0]), jnp.array([3.0, 0.5]), jnp.array([-1.0, 1.0])]
    accumulated = brainstate.ParamState(jnp.array([0.5, 0.5]))
    direct = brainstate.ParamState(jnp.array([0.5, 0.5]))
    opt = bo.Adam(lr=0.1, accumulate_steps=3).register_trainable_weights([accumulated])
    ref = bo.Adam(lr=0.1).register_trainable_weights([direct])
    for epoch in range(2):
        for i, g in enumerate(micro):
            opt.update({0: g * (epoch + 1)})
            if i < 2:
                assert int(opt.micro_step.value) == i + 1
        ref.update({0: sum(micro) / 3 * (epoch + 1)})
        np.testing.assert_allclose(accumulated.value, direct.value, rtol=1e-6)
    assert int(opt.step_count.value) == 2 and int(opt.micro_step.value) == 0


def test_accumulation_under_jit_with_sum_and_scheduler_counting_real_steps():
    w = brainstate.ParamState(jnp.zeros(()))
    sched = bo.StepLR(base_lr=1.0, step_size=1, gamma=0.5)
    opt = bo.SGD(lr=sched, accumulate_steps=2, accumulate_mean=False, schedule_per_update=True)
    opt.register_trainable_weights([w])

    @brainstate.transform.jit
    def step(g):
        opt.update({0: g})

    for g in [1.0, 2.0, 3.0, 4.0]:
        step(jnp.asarray(g))
    # real step 1: lr 1.0 * (1+2); real step 2: lr 0.5 * (3+4)
    np.testing.assert_allclose(w.value, -(3.0 + 3.5), rtol=1e-6)
    assert int(sched.last_epoch.value) == 2
    assert int(opt.step_count.value) == 2


def test_nan_in_a_micro_batch_skips_that_real_step_and_clears_the_window():
    w = brainstate.ParamState(jnp.zeros(()))
    opt = bo.SGD(lr=1.0, accumulate_steps=2, skip_nonfinite=True).register_trainable_weights([w])
    for g in [1.0, jnp.nan, 1.0, 3.0]:
        opt.update({0: jnp.asarray(g)})
    np.testing.assert_allclose(w.value, -2.0, rtol=1e-6)
    assert int(opt.nonfinite_skips.value) == 1
    assert int(opt.step_count.value) == 1


def test_consecutive_skips_stop_with_a_clear_error():
    w = brainstate.ParamState(jnp.ones(2))
    opt = bo.Adam(lr=0.1, skip_nonfinite=True, max_consecutive_skips=3).register_trainable_weights([w])

    @brainstate.transform.jit
    def step(g):
        opt.update({0: g})

    step(jnp.ones(2))
    bad = jnp.array([jnp.inf, 0.0])
    step(bad)
    step(bad)
    assert int(opt.consecutive_skips.value) == 2
    with pytest.raises(Exception, match='3 consecutive updates had non-finite'):
        step(bad)
    step(jnp.ones(2))                      # a finite step resets the run of skips
    assert int(opt.consecutive_skips.value) == 0
    assert int(opt.step_count.value) == 2


def test_max_consecutive_skips_needs_skip_nonfinite():
    with pytest.raises(ValueError, match='skip_nonfinite'):
        bo.Adam(max_consecutive_skips=3)
    with pytest.raises(ValueError, match='accumulate_steps'):
        bo.Adam(accumulate_steps=0)
