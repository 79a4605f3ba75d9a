"""Catalog-A optimizers train: an ill-conditioned quadratic and a small classification MLP.

Each optimizer (float32, with the learning rate in ``CONVERGENCE``) runs

* **quadratic**: ``L = 0.5 * sum_i h_i (theta_i - theta*_i)^2`` over one 5 x 6
  parameter, curvatures ``h`` log-spaced over
  ``[0.1, 10]`` (condition number 100), from ``L_0 = 59.5``: ``QUAD_STEPS = 500``
  steps must bring it below ``QUAD_TARGET = 0.05`` (8e-4 of ``L_0``);
* **MLP**: a 6-16-3 tanh network (``ParamState`` weights and zero biases) on 240
  points drawn from three Gaussian blobs, full-batch softmax cross-entropy from
  ``L_0 = 0.985``: ``MLP_STEPS = 300`` steps must bring it below
  ``MLP_TARGET = 0.25`` with training accuracy >= 0.9;

both inside one ``brainstate.transform.jit`` of two ``brainstate.transform.for_loop``
(one compilation per optimizer). Observed final losses (jax 0.10.2) are 2x to
1e12x below the targets; the tightest are Lion on the quadratic (0.004) and
RAdam (0.118, accuracy 0.958) and Fromage (0.096) on the MLP.

The end of the file checks what the catalog adds to the engine's contract:
refused arguments, fixed hyper-parameters, weight-decay modes, scalar and
per-axis buffers through ``buffers()``/``state_dict()`` and ``skip_nonfinite``,
Novograd's late start, a scheduler-cycled beta1 (``_rule_with_momentum`` with a
traced value equals the rule with that Python value, dtype kept), and
Novograd's in-rule decay per parameter group.
"""

from __future__ import annotations

import importlib

import brainstate
import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

QUAD_STEPS, QUAD_TARGET = 500, 0.05
MLP_STEPS, MLP_TARGET, MLP_ACCURACY = 300, 0.25, 0.9
# Compiling the training program dominates this file's run time; LLVM's lowest
# optimisation level compiles it ~30% faster (IEEE semantics are unchanged; the
# 800 small steps run in milliseconds either way).
FAST_COMPILE = {'xla_backend_optimization_level': 0}

# module.Class -> constructor arguments (learning rates tuned for these two problems)
CONVERGENCE = {
    'adagrad.Adagrad': dict(lr=0.5),
    'adamax.Adamax': dict(lr=0.05),
    'nadam.Nadam': dict(lr=0.05),
    'nadam.NAdamW': dict(lr=0.05, weight_decay=1e-4),
    'radam.RAdam': dict(lr=0.05),
    'rprop.Rprop': dict(lr=0.01),
    'lion.Lion': dict(lr=0.01, betas=(0.9, 0.9)),
    'yogi.Yogi': dict(lr=0.05),
    'adabelief.AdaBelief': dict(lr=0.05),
    'novograd.Novograd': dict(lr=0.1),
    'adan.Adan': dict(lr=0.1),
    'fromage.Fromage': dict(lr=0.01),
    'sm3.SM3': dict(lr=1.0),
}


def _cls(path):
    module, name = path.split('.')
    return getattr(importlib.import_module(f'braintools_optim.optimizers.{module}'), name)


def _quadratic():
    rng = np.random.default_rng(0)
    h = np.logspace(-1, 1, 30)
    rng.shuffle(h)
    return {'m': tuple(jnp.asarray(a, jnp.float32) for a in
                       (h.reshape(5, 6), rng.normal(0, 1, (5, 6)), rng.normal(0, 1, (5, 6))))}


def _blobs():
    rng = np.random.default_rng(1)
    n, dim, classes = 240, 6, 3
    centers = rng.normal(0.0, 1.2, (classes, dim))
    labels = np.arange(n) % classes
    x = centers[labels] + rng.normal(0.0, 0.8, (n, dim))
    return jnp.asarray(x, jnp.float32), jnp.asarray(labels)


@pytest.mark.parametrize('path', sorted(CONVERGENCE))
def test_trains_quadratic_and_mlp(path):
    cls, kwargs = _cls(path), CONVERGENCE[path]

    problem = _quadratic()
    theta = {k: brainstate.ParamState(x0) for k, (h, star, x0) in problem.items()}

    def quad_loss():
        return sum(0.5 * jnp.sum(h * (theta[k].value - star) ** 2) for k, (h, star, _) in problem.items())

    x, y = _blobs()
    rng = np.random.default_rng(2)
    net = {
        'w1': brainstate.ParamState(jnp.asarray(rng.normal(0, 1 / np.sqrt(6), (6, 16)), jnp.float32)),
        'b1': brainstate.ParamState(jnp.zeros(16, jnp.float32)),
        'w2': brainstate.ParamState(jnp.asarray(rng.normal(0, 1 / 4, (16, 3)), jnp.float32)),
        'b2': brainstate.ParamState(jnp.zeros(3, jnp.float32)),
    }

    def logits():
        return jnp.tanh(x @ net['w1'].value + net['b1'].value) @ net['w2'].value + net['b2'].value

    def mlp_loss():
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(logits()), y[:, None], axis=1))

    quad_opt = cls(**kwargs).register_trainable_weights(theta)
    mlp_opt = cls(**kwargs).register_trainable_weights(net)
    quad_grad = brainstate.transform.grad(quad_loss, quad_opt.param_states)
    mlp_grad = brainstate.transform.grad(mlp_loss, mlp_opt.param_states)
    quad_start, mlp_start = float(quad_loss()), float(mlp_loss())

    def train():
        brainstate.transform.for_loop(lambda i: quad_opt.update(quad_grad()), jnp.arange(QUAD_STEPS))
        brainstate.transform.for_loop(lambda i: mlp_opt.update(mlp_grad()), jnp.arange(MLP_STEPS))
        return quad_loss(), mlp_loss(), jnp.mean(jnp.argmax(logits(), axis=-1) == y)

    compiled = brainstate.transform.jit(train, compiler_options=FAST_COMPILE)
    quad_end, mlp_end, accuracy = map(float, compiled())
    assert abs(quad_start - 59.52) < 0.01 and abs(mlp_start - 0.985) < 0.001
    assert quad_end < QUAD_TARGET, f'{path}: quadratic {quad_start:.4g} -> {quad_end:.4g}'
    assert mlp_end < MLP_TARGET, f'{path}: MLP {mlp_start:.4g} -> {mlp_end:.4g}'
    assert accuracy >= MLP_ACCURACY, f'{path}: accuracy {accuracy:.3f}'
    assert int(quad_opt.step_count.value) == QUAD_STEPS and int(mlp_opt.step_count.value) == MLP_STEPS


# ----------------------------------------------------------------------------- construction


def test_refused_and_checked_arguments():
    Fromage, Rprop, Adan, Nadam = (_cls(p) for p in ('fromage.Fromage', 'rprop.Rprop', 'adan.Adan', 'nadam.Nadam'))
    with pytest.raises(ValueError, match='no momentum'):
        Fromage(lr=0.01, momentum=0.9)            # braintools accepted and ignored it
    assert Fromage(lr=0.01, momentum=0.0).min_norm == 1e-6
    with pytest.raises(ValueError, match='etas'):
        Rprop(etas=(1.2, 0.5))
    with pytest.raises(ValueError, match='step_sizes'):
        Rprop(step_sizes=(1.0, 0.1))
    with pytest.raises(ValueError, match='3 entries'):
        Adan(betas=(0.9, 0.9))
    with pytest.raises(ValueError, match=r'betas\[1\]'):
        Nadam(betas=(0.9, 1.0))
    with pytest.raises(ValueError, match='momentum_decay'):
        Nadam(momentum_decay=-1.0)
    opt = Nadam(momentum_decay=0.01)
    assert opt.momentum_decay == 0.01 and opt.betas == (0.9, 0.999)
    with pytest.raises(AttributeError, match='fixed at construction'):
        opt.momentum_decay = 0.02


def test_weight_decay_modes():
    modes = {path: _cls(path).weight_decay_mode for path in CONVERGENCE}
    decoupled = {'nadam.NAdamW', 'lion.Lion', 'adan.Adan'}
    assert {p for p, m in modes.items() if m == 'decoupled'} == decoupled
    assert modes['novograd.Novograd'] == 'in_rule'      # lambda * theta inside the momentum
    assert all(m == 'coupled' for p, m in modes.items() if p not in decoupled | {'novograd.Novograd'})
    assert _cls('novograd.Novograd')(weight_decay=0.1).weight_decay == 0.1


def test_scalar_and_per_axis_buffers_round_trip():
    """Shape-() buffers (Novograd, Nadam, Rprop) and SM3's per-axis accumulators work end to end."""
    Novograd, Nadam, SM3 = _cls('novograd.Novograd'), _cls('nadam.Nadam'), _cls('sm3.SM3')
    w = brainstate.ParamState(jnp.ones((3, 4)) * u.mV)
    b = brainstate.ParamState(jnp.ones(()))
    opt = Novograd(lr=0.1, skip_nonfinite=True).register_trainable_weights({'w': w, 'b': b})
    grads = {'w': jnp.full((3, 4), 2.0) * u.mV, 'b': jnp.asarray(1.0)}
    opt.update(grads)
    buffers = opt.buffers()
    assert buffers['exp_avg_sq']['w'].shape == ()
    assert u.get_unit(buffers['exp_avg_sq']['w']) == u.mV ** 2
    assert float(u.get_mantissa(buffers['exp_avg_sq']['w'])) == pytest.approx(48.0)
    saved = opt.state_dict()
    before = np.asarray(u.get_mantissa(w.value))
    opt.update({'w': jnp.full((3, 4), jnp.nan) * u.mV, 'b': jnp.asarray(1.0)})   # skipped
    assert int(opt.nonfinite_skips.value) == 1 and int(opt.step_count.value) == 1
    np.testing.assert_array_equal(np.asarray(u.get_mantissa(w.value)), before)
    opt.update(grads)
    fresh = Novograd(lr=0.1, skip_nonfinite=True).register_trainable_weights(
        {'w': brainstate.ParamState(jnp.ones((3, 4)) * u.mV), 'b': brainstate.ParamState(jnp.ones(()))})
    fresh.load_state_dict(saved)
    assert float(fresh.buffers()['exp_avg_sq']['b']) == pytest.approx(1.0)

    opt = Nadam(lr=0.1).register_trainable_weights({'b': brainstate.ParamState(jnp.ones(()))})
    opt.update({'b': jnp.asarray(1.0)})
    opt.update({'b': jnp.asarray(1.0)})
    mu = [0.9 * (1 - 0.5 * 0.96 ** (t * 4e-3)) for t in (1, 2)]
    assert float(opt.buffers()['mu_product']['b']) == pytest.approx(mu[0] * mu[1], rel=1e-6)

    opt = SM3(lr=0.1).register_trainable_weights({'t': brainstate.ParamState(jnp.ones((2, 3, 4)))})
    assert opt.buffers()['accumulator']['t'].shape == (9,)
    opt.update({'t': jnp.arange(24.0).reshape(2, 3, 4)})
    acc = np.asarray(opt.buffers()['accumulator']['t'])
    g2 = np.arange(24.0).reshape(2, 3, 4) ** 2
    np.testing.assert_allclose(acc, np.concatenate([g2.max(axis=(1, 2)), g2.max(axis=(0, 2)), g2.max(axis=(0, 1))]))


def test_novograd_starts_its_average_at_the_first_nonzero_gradient():
    """A parameter whose first step is not the optimizer's first (late registration) is not blown up."""
    from braintools_optim.rules.novograd import novograd
    rule = novograd(b1=0.9, b2=0.999, eps=0.0)
    p = jnp.zeros(2)
    g = jnp.array([3.0, 4.0])
    late, buffers = rule.update(g, rule.init(p), p, 0.1, 7)      # global step 7, its first
    first, _ = rule.update(g, rule.init(p), p, 0.1, 1)
    np.testing.assert_allclose(late, first)
    np.testing.assert_allclose(late, [-0.06, -0.08], rtol=1e-6)
    assert float(buffers['exp_avg_sq']) == 25.0


CYCLED = {   # optimizers whose beta1 / momentum a scheduler may cycle (torch: betas[0]), and the rule
    'adamax.Adamax': ('adamax', lambda m: dict(b1=m)),
    'lion.Lion': ('lion', lambda m: dict(b1=m)),
    'yogi.Yogi': ('yogi', lambda m: dict(b1=m)),
    'adabelief.AdaBelief': ('adabelief', lambda m: dict(b1=m)),
    'adan.Adan': ('adan', lambda m: dict(b1=m)),
    'sm3.SM3': ('sm3', lambda m: dict(momentum=m)),
}   # Nadam and RAdam: against torch's CyclicLR in test_catalog_a_torch.py


@pytest.mark.parametrize('path', sorted(CYCLED))
def test_cycled_momentum_is_beta1(path):
    """``_rule_with_momentum`` with a traced value computes what the rule with that Python beta1 does."""
    rule_name, as_kwargs = CYCLED[path]
    make_rule = getattr(importlib.import_module(f'braintools_optim.rules.{rule_name}'), rule_name)
    opt = _cls(path)(lr=0.1)
    p = jnp.array([[1.0, -2.0, 0.5], [0.3, 0.0, -1.0]])
    g = jnp.array([[0.5, -3.0, 0.1], [1.0, 2.0, -0.2]])
    reference_rule = make_rule(**as_kwargs(0.85), **{k: v for k, v in _rule_settings(opt).items()})
    buffers = jax.tree.map(lambda b: b + 0.25, reference_rule.init(p))     # a step with history
    expected = reference_rule.update(g, buffers, p, 0.1, 3)
    got = jax.jit(lambda m: opt._rule_with_momentum(m).update(g, buffers, p, 0.1, 3))(jnp.float32(0.85))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=2e-6, atol=1e-7), got, expected)
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(got))


def _rule_settings(opt):
    """The optimizer's other hyper-parameters, in the rule factory's spelling."""
    settings = {}
    betas = getattr(opt, 'betas', None)
    if betas is not None:
        settings.update({f'b{i + 1}': b for i, b in enumerate(betas) if i > 0})
    for name in ('eps', 'eps_root', 'initial_accumulator_value'):
        if name in opt._hyper:
            settings[name] = opt._hyper[name]
    return settings


def test_novograd_groups_and_cycled_momentum():
    """Novograd's in-rule weight decay follows each parameter group; a cycled beta1 reaches it."""
    from braintools_optim.rules.novograd import novograd
    from braintools_optim.schedulers import CyclicLR
    Novograd = _cls('novograd.Novograd')
    a = brainstate.ParamState(jnp.array([1.0, 2.0]))
    b = brainstate.ParamState(jnp.array([1.0, 2.0]))
    sched = CyclicLR(base_lr=[0.1, 0.1], max_lr=[0.1, 0.1], step_size_up=2, base_momentum=0.5,
                     max_momentum=0.5, cycle_momentum=True)
    opt = Novograd(lr=sched, weight_decay=0.0).register_trainable_weights({'a': a})
    opt.add_param_group({'b': b}, weight_decay=0.5)
    g = jnp.array([3.0, 4.0])
    for _ in range(2):
        opt.update({'a': g, 'b': g})
    expected = {}
    for name, wd in (('a', 0.0), ('b', 0.5)):
        rule, p = novograd(b1=0.5, b2=0.999, eps=1e-8, weight_decay=wd), jnp.array([1.0, 2.0])
        buffers = rule.init(p)
        for t in (1, 2):
            delta, buffers = rule.update(g, buffers, p, 0.1, t)
            p = p + delta
        expected[name] = p
    np.testing.assert_allclose(a.value, expected['a'], rtol=1e-6)
    np.testing.assert_allclose(b.value, expected['b'], rtol=1e-6)
    assert not np.allclose(expected['a'], expected['b'])
