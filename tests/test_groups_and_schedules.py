"""Parameter groups, schedulers advanced by the optimizer, cycled momentum, decay scaling."""

import brainstate
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo


class HalvingLR(bo.LRScheduler):
    """lr = base * 0.5**epoch; with per-group base lrs when given a list."""

    def lr_at(self, epoch):
        return jnp.asarray(self.base_lr) * 0.5 ** epoch.astype(jnp.float32)


class CycledMomentum(HalvingLR):
    """A constant lr and a momentum that alternates 0.9 / 0.5 with the epoch."""

    cycle_momentum = True

    def lr_at(self, epoch):
        return jnp.asarray(self.base_lr, jnp.float32)

    @property
    def current_momentum(self):
        return jnp.where(self.last_epoch.value % 2 == 0, 0.9, 0.5)


def test_param_groups_have_their_own_lr_and_weight_decay():
    a = brainstate.ParamState(jnp.ones(2))
    b = brainstate.ParamState(jnp.ones(2))
    opt = bo.SGD(lr=0.1, weight_decay=0.0)
    opt.register_trainable_weights({'a': a})
    opt.add_param_group({'b': b}, lr=0.01, weight_decay=1.0)
    assert opt.num_groups == 2
    np.testing.assert_allclose(opt.get_last_lr(), [0.1, 0.01])
    opt.update({'a': jnp.ones(2), 'b': jnp.ones(2)})
    np.testing.assert_allclose(a.value, 0.9, rtol=1e-6)
    np.testing.assert_allclose(b.value, 1.0 - 0.01 * (1.0 + 1.0), rtol=1e-6)
    opt.set_lr(0.5, group=1)
    np.testing.assert_allclose(opt.get_last_lr(), [0.1, 0.5])


def test_group_lrs_from_a_per_group_scheduler():
    a = brainstate.ParamState(jnp.zeros(()))
    b = brainstate.ParamState(jnp.zeros(()))
    sched = HalvingLR(base_lr=[1.0, 0.1])
    opt = bo.SGD(lr=sched)
    opt.register_trainable_weights({'a': a})
    opt.add_param_group({'b': b})
    with pytest.raises(ValueError, match='LRScheduler'):
        opt.add_param_group({'c': brainstate.ParamState(jnp.zeros(()))}, lr=0.3)
    opt.update({'a': jnp.ones(()), 'b': jnp.ones(())})
    sched.step()
    opt.update({'a': jnp.ones(()), 'b': jnp.ones(())})
    np.testing.assert_allclose([a.value, b.value], [-1.5, -0.15], rtol=1e-6)


def test_scheduler_with_wrong_number_of_groups_is_refused():
    opt = bo.SGD(lr=HalvingLR(base_lr=[1.0, 0.1, 0.2]))
    opt.register_trainable_weights([brainstate.ParamState(jnp.zeros(()))])
    with pytest.raises(ValueError, match='3 learning rates'):
        opt.update({0: jnp.ones(())})


def test_schedule_per_update_advances_the_scheduler_on_every_real_step():
    w = brainstate.ParamState(jnp.zeros(()))
    sched = HalvingLR(base_lr=1.0)
    opt = bo.SGD(lr=sched, schedule_per_update=True, skip_nonfinite=True)
    opt.register_trainable_weights([w])

    @brainstate.transform.jit
    def step(g):
        opt.update({0: g})

    step(jnp.ones(()))
    step(jnp.full((), jnp.nan))        # skipped: neither the params nor the schedule move
    step(jnp.ones(()))
    assert int(sched.last_epoch.value) == 2
    np.testing.assert_allclose(w.value, -1.5, rtol=1e-6)
    np.testing.assert_allclose(opt.current_lr, 0.25)


def test_cycled_momentum_drives_sgd_momentum():
    w = brainstate.ParamState(jnp.zeros(()))
    sched = CycledMomentum(base_lr=1.0)
    opt = bo.SGD(lr=sched, momentum=0.1, schedule_per_update=True).register_trainable_weights([w])
    for _ in range(3):
        opt.update({0: jnp.ones(())})
    # b1 = 1; b2 = 0.5*1 + 1 = 1.5 (epoch 1: momentum 0.5); b3 = 0.9*1.5 + 1 = 2.35
    np.testing.assert_allclose(w.value, -(1.0 + 1.5 + 2.35), rtol=1e-6)


def test_cycled_momentum_replaces_adam_beta1():
    w = brainstate.ParamState(jnp.array([1.0]))
    reference = brainstate.ParamState(jnp.array([1.0]))
    opt = bo.Adam(lr=CycledMomentum(base_lr=0.1)).register_trainable_weights([w])
    fixed = bo.Adam(lr=0.1, betas=(0.9, 0.999)).register_trainable_weights([reference])
    opt.update({0: jnp.array([0.5])})
    fixed.update({0: jnp.array([0.5])})
    np.testing.assert_allclose(w.value, reference.value, rtol=1e-6)   # epoch 0: beta1 = 0.9


def test_cycling_momentum_of_an_optimizer_without_momentum_is_refused():
    with pytest.raises(ValueError, match='no momentum'):
        bo.Adadelta(lr=CycledMomentum(base_lr=1.0))


def test_decoupled_decay_can_follow_the_schedule_multiplier():
    sched = HalvingLR(base_lr=0.1)
    w = brainstate.ParamState(jnp.array([1.0]))
    opt = bo.AdamW(lr=sched, weight_decay=0.5, decoupled_decay_scale='schedule')
    opt.register_trainable_weights([w])
    sched.step()                                   # lr 0.05, multiplier 0.5
    opt.update({0: jnp.array([0.0])})   # zero gradient: decay only
    np.testing.assert_allclose(w.value, [1.0 - 0.5 * 0.5], rtol=1e-6)
    torch_style = brainstate.ParamState(jnp.array([1.0]))
    opt2 = bo.AdamW(lr=0.05, weight_decay=0.5).register_trainable_weights([torch_style])
    opt2.update({0: jnp.array([0.0])})
    np.testing.assert_allclose(torch_style.value, [1.0 - 0.05 * 0.5], rtol=1e-6)


def test_decoupled_decay_scale_is_refused_for_coupled_decay():
    with pytest.raises(ValueError, match='coupled'):
        bo.Adam(decoupled_decay_scale='schedule')
    with pytest.raises(ValueError, match='decoupled_decay_scale'):
        bo.AdamW(decoupled_decay_scale='sometimes')
