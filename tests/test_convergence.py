"""Every optimizer of the registry trains: an ill-conditioned quadratic and a small MLP classifier.

For each run of ``optim_db`` (``OptimInfo.convergence``), one
``brainstate.transform.jit`` of one ``brainstate.transform.for_loop`` drives both
problems side by side (two optimizer instances, so each is compiled once):

* **quadratic**: ``L = 1/2 sum_i h_i (theta_i - theta*_i)^2`` over a matrix
  ``(4, 6)``, a vector ``(6,)`` and a scalar (31 numbers, so per-tensor rules
  and Muon's matrix/fallback split all act), curvatures ``h`` log-spaced over
  [0.03, 3] (condition number 100), ``theta_0 = 0``; the initial loss is
  ``QUAD_START`` (~2.4). Pass: below ``QUAD_TARGET`` (1e-3, i.e. under 0.04% of
  the initial loss).
* **classifier**: a 2-16-2 tanh MLP (ParamStates ``w1 (2, 16)``, ``b1``, ``w2
  (16, 2)``, ``b2``) on 256 points labelled by the XOR of the signs of their
  coordinates, full-batch softmax cross-entropy from ``MLP_START`` (~0.76).
  Pass: loss below ``MLP_TARGET`` (0.25) and training accuracy >= 90%.

Each run says (``Convergence``) its learning rate and number of steps (400
unless stated), whether it needs a decaying schedule (Lamb, Lars, Fromage, Muon
and Lion take steps of a fixed relative, spectral or sign size, which settle only
with a decaying learning rate: they get a cosine ``LRScheduler`` with
``schedule_per_update=True``, which also exercises that path), whether it is
evaluated at its averaged point
(schedule-free optimizers, inside ``eval_params``, where the guarantee holds)
and whether ``update`` takes L-BFGS's line-search arguments (the full batch,
one iteration per step).

Compiling dominates the run time; LLVM's lowest optimisation level compiles
these programs ~30% faster (IEEE semantics are unchanged).
"""

from __future__ import annotations

import brainstate
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import braintools_optim as bo
from optim_db import ALL, core

QUAD_START, QUAD_TARGET = 2.3856, 1e-3
MLP_START, MLP_TARGET, MLP_ACCURACY = 0.7551, 0.25, 0.9
FAST_COMPILE = {'xla_backend_optimization_level': 0}

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


def _make(run):
    """A fresh optimizer for one problem, as the run describes it."""
    if run.decaying_lr:
        schedule = bo.CosineAnnealingLR(base_lr=run.lr, T_max=run.steps)
        return run.build(schedule, schedule_per_update=True)
    return run.build(run.lr)


def _train(run):
    """Initial and final (quadratic loss, MLP loss, MLP accuracy), and both optimizers."""
    quad_states, quad_loss = _quad_problem()
    mlp_states, mlp_loss, mlp_accuracy = _mlp_problem()
    start = (float(quad_loss()), float(mlp_loss()))
    opt_q = _make(run).register_trainable_weights(quad_states)
    opt_m = _make(run).register_trainable_weights(mlp_states)
    grad_q = brainstate.transform.grad(quad_loss, opt_q.param_states, return_value=True)
    grad_m = brainstate.transform.grad(mlp_loss, opt_m.param_states, return_value=True)

    def step(_):
        for opt, grad_fn, loss_fn in ((opt_q, grad_q, quad_loss), (opt_m, grad_m, mlp_loss)):
            grads, value = grad_fn()
            if run.line_search:
                opt.update(grads, value=value, value_fn=loss_fn)
            else:
                opt.update(grads)

    def evaluate():
        return quad_loss(), mlp_loss(), mlp_accuracy()

    def program():
        brainstate.transform.for_loop(step, jnp.arange(run.steps))
        if run.at_average:
            with opt_q.eval_params(), opt_m.eval_params():
                return evaluate()
        return evaluate()

    end = [float(v) for v in brainstate.transform.jit(program, compiler_options=FAST_COMPILE)()]
    return start, end, (opt_q, opt_m)


def _runs():
    for info in ALL:
        for run in info.convergence:
            name = f'{info.name}({run.variant})' if run.variant else info.name
            yield pytest.param(info, run, id=name)


@pytest.mark.parametrize('info, run', list(_runs()))
def test_trains_quadratic_and_mlp(info, run):
    start, (quad, mlp, accuracy), optimizers = _train(run)
    assert start == pytest.approx((QUAD_START, MLP_START), abs=1e-3)
    assert quad < QUAD_TARGET, f'{info.name}: quadratic loss {start[0]:.4g} -> {quad:.3g} after {run.steps} steps'
    assert mlp < MLP_TARGET, f'{info.name}: MLP loss {start[1]:.4g} -> {mlp:.3g} after {run.steps} steps'
    assert accuracy >= MLP_ACCURACY, f'{info.name}: MLP accuracy {accuracy:.3f}'
    for opt in optimizers:
        assert int(core(opt).step_count.value) == run.steps
