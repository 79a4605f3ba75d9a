"""Catalog-B optimizers train: an ill-conditioned quadratic and a small MLP classifier.

For each optimizer one ``brainstate.transform.jit`` of one
``brainstate.transform.for_loop`` runs both problems side by side (two
optimizer instances, so each is compiled once):

* **quadratic**: ``L = 1/2 sum_i h_i (theta_i - theta*_i)^2`` over a matrix
  ``(4, 6)``, a vector ``(6,)`` and a scalar (31 numbers), curvatures ``h``
  log-spaced over [0.03, 3] (condition number 100), ``theta_0 = 0``; the
  initial loss is ~2.7. Pass: loss below ``QUAD_TARGET`` (1e-3, i.e. under
  0.04% of the initial loss) after the stated number of steps.
* **classifier**: a 2-16-2 tanh MLP (ParamStates ``w1 (2, 16)``, ``b1``, ``w2
  (16, 2)``, ``b2``) on 256 points labelled by the XOR of the signs of their
  coordinates, full-batch softmax cross-entropy; the initial loss is ~0.69.
  Pass: loss below ``MLP_TARGET`` (0.25) and training accuracy >= 90%.

Lamb, Lars and Muon take steps of a fixed relative or spectral size, which
settle only with a decaying learning rate: they get a cosine ``LRScheduler``
(``schedule_per_update=True``), which also exercises that path. Schedule-Free optimizers are evaluated at their averaged point (``eval_params``),
where the guarantee holds; Lookahead wraps Adam; L-BFGS runs its zoom line
search on the full batch (one iteration per step).

The file also checks the behaviour that the reference comparisons cannot see:
refused arguments, ``eval_params``, Lookahead registration, L-BFGS calling
conventions, checkpoints of the global states and the Muon fallback.
"""

from __future__ import annotations

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from braintools_optim.optimizers.adafactor import Adafactor
from braintools_optim.optimizers.adam import Adam, AdamW
from braintools_optim.optimizers.lamb import Lamb
from braintools_optim.optimizers.lars import Lars
from braintools_optim.optimizers.lbfgs import LBFGS
from braintools_optim.optimizers.lookahead import Lookahead
from braintools_optim.optimizers.muon import Muon
from braintools_optim.optimizers.prodigy import Prodigy
from braintools_optim.optimizers.schedule_free import ScheduleFreeAdamW, ScheduleFreeSGD
from braintools_optim.optimizers.sgd import SGD
from braintools_optim.schedulers import CosineAnnealingLR

QUAD_TARGET = 1e-3
MLP_TARGET = 0.25

_rng = np.random.default_rng(11)
QUAD_SHAPES = {'w': (4, 6), 'v': (6,), 's': ()}
QUAD_SIZE = 31
QUAD_H = np.logspace(np.log10(0.03), np.log10(3.0), QUAD_SIZE)
_rng.shuffle(QUAD_H)
QUAD_TARGET_THETA = _rng.normal(0.0, 0.5, QUAD_SIZE)
MLP_X = _rng.uniform(-1.0, 1.0, (256, 2))
MLP_Y = (MLP_X[:, 0] * MLP_X[:, 1] > 0).astype(np.int32)
MLP_INIT = {'w1': _rng.normal(0.0, 1.0, (2, 16)) / np.sqrt(2), 'b1': np.zeros(16),
            'w2': _rng.normal(0.0, 1.0, (16, 2)) / 4.0, 'b2': np.zeros(2)}


def _split_quad(flat):
    out, start = {}, 0
    for name, shape in QUAD_SHAPES.items():
        n = int(np.prod(shape))
        out[name] = flat[start:start + n].reshape(shape)
        start += n
    return out


def _quad_problem():
    states = {n: brainstate.ParamState(jnp.zeros(shape, jnp.float32)) for n, shape in QUAD_SHAPES.items()}
    h = {n: jnp.asarray(v, jnp.float32) for n, v in _split_quad(QUAD_H).items()}
    target = {n: jnp.asarray(v, jnp.float32) for n, v in _split_quad(QUAD_TARGET_THETA).items()}

    def loss():
        return sum(0.5 * jnp.sum(h[n] * (states[n].value - target[n]) ** 2) for n in states)

    return states, loss


def _mlp_problem():
    states = {n: brainstate.ParamState(jnp.asarray(v, jnp.float32)) for n, v in MLP_INIT.items()}
    x = jnp.asarray(MLP_X, jnp.float32)
    y = jnp.asarray(MLP_Y)

    def logits():
        hidden = jnp.tanh(x @ states['w1'].value + states['b1'].value)
        return hidden @ states['w2'].value + states['b2'].value

    def loss():
        out = logits()
        return jnp.mean(jax.nn.logsumexp(out, axis=-1) - jnp.take_along_axis(out, y[:, None], axis=-1)[:, 0])

    def accuracy():
        return jnp.mean((jnp.argmax(logits(), axis=-1) == y).astype(jnp.float32))

    return states, loss, accuracy


def _train(make_opt, steps, evaluate_at_average=False, line_search=False):
    """Final (quadratic loss, MLP loss, MLP accuracy) after ``steps`` steps in one jit + for_loop."""
    quad_states, quad_loss = _quad_problem()
    mlp_states, mlp_loss, mlp_accuracy = _mlp_problem()
    opt_q = make_opt().register_trainable_weights(quad_states)
    opt_m = make_opt().register_trainable_weights(mlp_states)
    grad_q = brainstate.transform.grad(quad_loss, opt_q.param_states, return_value=True)
    grad_m = brainstate.transform.grad(mlp_loss, opt_m.param_states, return_value=True)

    def step(_):
        for opt, grad_fn, loss_fn in ((opt_q, grad_q, quad_loss), (opt_m, grad_m, mlp_loss)):
            grads, value = grad_fn()
            if line_search:
                opt.update(grads, value=value, value_fn=loss_fn)
            else:
                opt.update(grads)

    def run():
        brainstate.transform.for_loop(step, jnp.arange(steps))
        if evaluate_at_average:
            with opt_q.eval_params(), opt_m.eval_params():
                return quad_loss(), mlp_loss(), mlp_accuracy()
        return quad_loss(), mlp_loss(), mlp_accuracy()

    return [float(v) for v in brainstate.transform.jit(run)()]


def _cosine(base_lr):
    """An lr argument: cosine annealing over the 400 steps (used with schedule_per_update=True)."""
    return CosineAnnealingLR(base_lr=base_lr, T_max=400)


# name -> (factory, steps, options of _train)
CONVERGENCE = {
    # trust-ratio steps are a fixed fraction of ||theta||: they need a decaying lr to settle
    'Lamb': (lambda: Lamb(lr=_cosine(0.02), schedule_per_update=True), 400, {}),
    'Lars': (lambda: Lars(lr=_cosine(1.0), momentum=0.9, trust_coefficient=0.01, eps=1e-6,
                               schedule_per_update=True), 400, {}),
    'Adafactor': (lambda: Adafactor(lr=0.1, relative_step=False, scale_parameter=False, beta1=0.9), 400, {}),
    # the orthogonalised step has a fixed size, so Muon needs a decaying lr to settle
    'Muon': (lambda: Muon(lr=_cosine(0.05), weight_decay=0.0, schedule_per_update=True), 400, {}),
    'ScheduleFreeSGD': (lambda: ScheduleFreeSGD(lr=0.3, warmup_steps=10), 400, dict(evaluate_at_average=True)),
    'ScheduleFreeAdamW': (lambda: ScheduleFreeAdamW(lr=0.05, warmup_steps=10), 400,
                          dict(evaluate_at_average=True)),
    'Prodigy': (lambda: Prodigy(), 400, {}),
    'Lookahead(Adam)': (lambda: Lookahead(Adam(lr=0.05), sync_period=5, alpha=0.5), 400, {}),
    'LBFGS(zoom)': (lambda: LBFGS(), 60, dict(line_search=True)),
    'LBFGS(backtracking)': (lambda: LBFGS(linesearch='backtracking', memory_size=5), 100, dict(line_search=True)),
}


@pytest.mark.parametrize('name', list(CONVERGENCE))
def test_converges(name):
    make_opt, steps, options = CONVERGENCE[name]
    quad, mlp, accuracy = _train(make_opt, steps, **options)
    assert quad < QUAD_TARGET, f'{name}: quadratic loss {quad:.3g} after {steps} steps'
    assert mlp < MLP_TARGET and accuracy >= 0.9, f'{name}: MLP loss {mlp:.3g}, accuracy {accuracy:.3f}'


# ----------------------------------------------------------------------------- behaviour

def _param(value):
    return brainstate.ParamState(jnp.asarray(value, jnp.float32))


@pytest.mark.parametrize('kwargs, match', [
    (dict(relative_step=False, warmup_init=True), 'warmup_init'),
    (dict(scale_parameter=False, eps=(1e-30, 1e-2)), r'eps\[1\]'),
    (dict(decay_rate=-0.8), 'decay_rate'),
    (dict(eps=1e-30), 'pair'),
])
def test_adafactor_refuses_arguments_that_cannot_act(kwargs, match):
    with pytest.raises((ValueError, TypeError), match=match):
        Adafactor(**kwargs)


def test_refused_arguments():
    with pytest.raises(TypeError, match='inner optimizer'):
        Lookahead(SGD(lr=0.1), lr=0.1)
    with pytest.raises(ValueError, match='line search'):
        LBFGS(grad_clip_norm=1.0)
    with pytest.raises(ValueError, match='line search'):
        LBFGS(linesearch=None, c1=1e-3)
    with pytest.raises(ValueError, match='zoom'):
        LBFGS(linesearch='backtracking', c2=0.5)
    with pytest.raises(ValueError, match='> 0'):
        ScheduleFreeSGD(momentum=0.0)
    with pytest.raises(ValueError, match='adjust_lr_fn'):
        Muon(adjust_lr_fn='other')
    for opt, name in ((Lamb(), 'eps'), (Muon(), 'ns_steps'), (Prodigy(), 'd0'), (LBFGS(), 'c1'),
                      (Adafactor(), 'clip_threshold'), (ScheduleFreeSGD(), 'momentum')):
        with pytest.raises(AttributeError, match='fixed at construction'):
            setattr(opt, name, 0.5)


def test_schedule_free_eval_params_swaps_x_in_and_back():
    w = _param([1.0, -2.0])
    opt = ScheduleFreeSGD(lr=0.2, momentum=0.8).register_trainable_weights({'w': w})
    for _ in range(3):
        opt.update({'w': w.value})
    y = np.asarray(w.value)
    z = np.asarray(opt.buffers()['z']['w'])
    x = (y - 0.2 * z) / 0.8
    np.testing.assert_allclose(np.asarray(opt.averaged_params()['w']), x, rtol=1e-6)
    with opt.eval_params():
        np.testing.assert_allclose(np.asarray(w.value), x, rtol=1e-6)
        with pytest.raises(RuntimeError, match='eval_params'):
            opt.update({'w': w.value})
    assert np.array_equal(np.asarray(w.value), y)          # restored exactly


def test_lookahead_registration_goes_through_the_wrapper():
    inner = SGD(lr=0.1)
    inner.register_trainable_weights({'a': _param([1.0])})
    with pytest.raises(ValueError, match='register the parameters through'):
        Lookahead(inner)
    inner = SGD(lr=0.1)
    opt = Lookahead(inner, sync_period=2).register_trainable_weights({'a': _param([1.0])})
    inner.register_trainable_weights({'b': _param([2.0])})
    with pytest.raises(RuntimeError, match='registered on the inner optimizer directly'):
        opt.update({'a': jnp.ones(1), 'b': jnp.ones(1)})


def test_lookahead_checkpoint_and_skipped_steps():
    w = _param([1.0, 1.0])
    opt = Lookahead(SGD(lr=0.1, skip_nonfinite=True), sync_period=2).register_trainable_weights({'w': w})
    opt.update({'w': jnp.ones(2)})
    opt.update({'w': jnp.array([jnp.nan, 1.0])})        # skipped: does not count towards k
    assert int(opt.steps_since_sync.value) == 1
    np.testing.assert_allclose(np.asarray(w.value), 0.9)
    state = opt.state_dict()
    opt.update({'w': jnp.ones(2)})                       # sync: 1 + 0.5 (0.8 - 1)
    np.testing.assert_allclose(np.asarray(w.value), 0.9, rtol=1e-6)
    opt.load_state_dict(state)
    assert int(opt.steps_since_sync.value) == 1
    np.testing.assert_allclose(np.asarray(opt.slow_params.value[0]), 1.0)


def test_lbfgs_calling_conventions():
    w = _param([2.0, -1.0])
    loss_fn = lambda: jnp.sum((w.value - 0.5) ** 2)
    opt = LBFGS().register_trainable_weights({'w': w})
    grads = {'w': 2.0 * (w.value - 0.5)}
    with pytest.raises(ValueError, match='value_fn'):
        opt.update(grads)
    opt.update(grads, value_fn=loss_fn)                     # value computed from value_fn
    # first step: the unit step along -g / ||g|| meets the strong Wolfe conditions
    np.testing.assert_allclose(np.asarray(w.value), [2.0 - 0.5 ** 0.5, -1.0 + 0.5 ** 0.5], rtol=1e-6)
    assert float(opt.last_stepsize.value) == 1.0 and int(opt.linesearch_evals.value) == 1
    for _ in range(3):
        value, grads = loss_fn(), {'w': 2.0 * (w.value - 0.5)}
        opt.update(grads, value=value, value_fn=loss_fn)
    np.testing.assert_allclose(np.asarray(w.value), 0.5, atol=1e-6)
    plain = LBFGS(linesearch=None, lr=0.25).register_trainable_weights({'w': _param([1.0])})
    with pytest.raises(ValueError, match='linesearch=None'):
        plain.update({'w': jnp.ones(1)}, value_fn=loss_fn)


def test_prodigy_keeps_its_global_estimate_in_checkpoints():
    w = _param([3.0, -4.0])
    opt = Prodigy(d0=1e-3).register_trainable_weights({'w': w})
    opt.update({'w': jnp.zeros(2)})                      # zero gradients: d stays finite
    assert float(opt.d.value) == pytest.approx(1e-3)
    for _ in range(5):
        opt.update({'w': w.value})
    state = opt.state_dict()
    d = float(opt.d.value)
    assert d > 1e-3 and set(state['extra']) == {'d', 'd_numerator'}
    opt.update({'w': w.value})
    opt.load_state_dict(state)
    assert float(opt.d.value) == d


def test_muon_fallback_is_adamw_and_matrices_are_orthogonalised():
    vector = np.array([0.5, -1.0, 2.0])
    a, b = _param(vector), _param(vector)
    muon = Muon(lr=0.1, weight_decay=0.1, adam_betas=(0.8, 0.9), adam_eps=1e-6).register_trainable_weights([a])
    adamw = AdamW(lr=0.1, weight_decay=0.1, betas=(0.8, 0.9), eps=1e-6).register_trainable_weights([b])
    for k in range(4):
        g = jnp.asarray(vector * (k + 1), jnp.float32)
        muon.update({0: g})
        adamw.update({0: g})
    np.testing.assert_allclose(np.asarray(a.value), np.asarray(b.value), rtol=1e-6)
    w = _param(np.zeros((3, 5)))
    opt = Muon(lr=1.0, weight_decay=0.0, momentum=0.0, ns_steps=10,
               ns_coefficients=(1.5, -0.5, 0.0)).register_trainable_weights([w])   # cubic NS: converges
    opt.update({0: jnp.asarray(np.random.default_rng(0).normal(size=(3, 5)), jnp.float32)})
    update = -np.asarray(w.value) / np.sqrt(5 / 3)          # undo lr * sqrt(fan_out / fan_in)
    np.testing.assert_allclose(update @ update.T, np.eye(3), atol=1e-3)


def test_in_rule_weight_decay_follows_parameter_groups():
    a, b = _param([1.0, 1.0]), _param([1.0, 1.0])
    opt = Lamb(lr=0.1, weight_decay=0.0).register_trainable_weights({'a': a})
    opt.add_param_group({'b': b}, weight_decay=1.0)
    opt.update({'a': jnp.zeros(2), 'b': jnp.zeros(2)})   # zero gradient: only decay moves b
    np.testing.assert_allclose(np.asarray(a.value), 1.0)
    np.testing.assert_allclose(np.asarray(b.value), 0.9, rtol=1e-6)  # -lr * ||b|| * b / ||b||


def test_lbfgs_refuses_parameters_added_after_it_started():
    w = _param([1.0])
    opt = LBFGS(linesearch=None).register_trainable_weights({'w': w})
    opt.update({'w': jnp.ones(1)})
    with pytest.raises(RuntimeError, match='before the first update'):
        opt.register_trainable_weights({'b': _param([2.0])})
