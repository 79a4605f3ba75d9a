"""Draw ``docs/figures/precision.png``: float32 against bfloat16 with each precision option.

Run with::

    python scripts/precision_figure.py [--out docs/figures/precision.png] [--steps 3000]

The problem is least squares, ``0.5 ||X w - y||^2 / n`` with 64 weights of size ~1 (bfloat16 ulp
2^-7 to 2^-6), trained with Adam at ``lr=1e-3``: every step is smaller than half a bfloat16 ulp of
the weights it moves, the regime where round to nearest loses updates. Four runs from the same
start: float32 parameters (the reference), bfloat16 rounded to nearest, bfloat16 with
``stochastic_round=True``, bfloat16 with ``master_weights=True``. The gradient is computed in
float32 from the parameter's value and handed over in the parameter's dtype, as a bfloat16 model
would. Left: the loss; right: the distance of the weights from the float32 run.
"""

from __future__ import annotations

import argparse
import os

import brainstate
import jax.numpy as jnp
import matplotlib
import numpy as np

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402

import braintools_optim as bo  # noqa: E402

RUNS = {
    'float32': (jnp.float32, {}),
    'bfloat16, round to nearest': (jnp.bfloat16, {}),
    'bfloat16 + stochastic_round': (jnp.bfloat16, {'stochastic_round': True}),
    'bfloat16 + master_weights': (jnp.bfloat16, {'master_weights': True}),
}
CHUNK = 50


def problem(seed=0, n=512, d=64):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w_true = (1.0 + rng.uniform(-0.5, 0.5, d)).astype(np.float32)
    y = x @ w_true + 0.01 * rng.normal(size=n).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(y)


def run(dtype, options, x, y, steps):
    """Losses and weights (float32) after every CHUNK steps."""
    w = brainstate.ParamState(jnp.full((x.shape[1],), 0.5, dtype))
    opt = bo.Adam(lr=1e-3, **options).register_trainable_weights({'w': w})
    n = x.shape[0]

    def step(_):
        value = w.value.astype(jnp.float32)
        opt.update({'w': (x.T @ (x @ value - y) / n).astype(dtype)})

    @brainstate.transform.jit
    def chunk():
        brainstate.transform.for_loop(step, jnp.arange(CHUNK))

    losses, weights = [], []
    for _ in range(steps // CHUNK):
        chunk()
        value = w.value.astype(jnp.float32)
        losses.append(float(0.5 * jnp.mean((x @ value - y) ** 2)))
        weights.append(np.asarray(value))
    return np.array(losses), np.array(weights)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--out', default=os.path.join('docs', 'figures', 'precision.png'))
    parser.add_argument('--steps', type=int, default=3000)
    args = parser.parse_args(argv)
    x, y = problem()
    results = {name: run(dtype, options, x, y, args.steps) for name, (dtype, options) in RUNS.items()}
    reference = results['float32'][1]
    steps = CHUNK * np.arange(1, args.steps // CHUNK + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    styles = [('-', 'k'), ('--', 'tab:red'), ('-', 'tab:blue'), (':', 'tab:green')]
    for (name, (losses, weights)), (style, color) in zip(results.items(), styles):
        left.semilogy(steps, losses, style, color=color, label=name)
        if name != 'float32':
            distance = np.sqrt(np.mean((weights - reference) ** 2, axis=1))
            right.semilogy(steps, distance, style, color=color, label=name)
        print(f"{name:30s} final loss {losses[-1]:.3e}"
              + ('' if name == 'float32' else f", rms distance to float32 {distance[-1]:.2e}"))
    left.set(xlabel='step', ylabel='loss', title='Adam, lr 1e-3, least squares')
    right.set(xlabel='step', ylabel='rms(w - w_float32)', title='distance from the float32 run')
    left.legend(fontsize=8)
    right.legend(fontsize=8)
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out) or '.', exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print('wrote', args.out)


if __name__ == '__main__':
    main()
