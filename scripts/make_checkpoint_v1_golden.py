"""Write ``tests/golden/checkpoint_v1.npz`` with the format-1 writer, for the backward-compatibility test.

Run from the repository root (needs its git history)::

    python scripts/make_checkpoint_v1_golden.py

Format 1 is what ``braintools_optim.checkpoint.save`` wrote up to commit
``29282b6``. This script takes that module's source from git, runs its
``save`` on the tree below and writes the file; ``tests/test_checkpoint_file.py``
rebuilds the same tree on its own and checks that today's ``load`` reads the
file back as format 1 defined it (tuples were stored as lists, NumPy scalars
as 0-d arrays).
"""

from __future__ import annotations

import os
import subprocess
import types

import jax.numpy as jnp
import numpy as np

V1_COMMIT = '29282b6'
OUT = os.path.join(os.path.dirname(__file__), '..', 'tests', 'golden', 'checkpoint_v1.npz')


def v1_module() -> types.ModuleType:
    source = subprocess.run(['git', 'show', f'{V1_COMMIT}:braintools_optim/checkpoint.py'],
                            check=True, capture_output=True, text=True).stdout
    module = types.ModuleType('checkpoint_v1')
    exec(compile(source, 'checkpoint_v1.py', 'exec'), module.__dict__)
    assert module.FORMAT_VERSION == 1
    return module


def tree() -> dict:
    return {
        'step': np.int32(7),
        'bf16': np.asarray(jnp.array([1.5, -2.0, 0.0, 3.25], jnp.bfloat16)),
        'f16': np.array([[0.5, -0.0], [65504.0, 1e-4]], np.float16),
        'f64': np.array([np.pi, -0.0, np.nan, np.inf]),
        'scalar0d': np.array(-5, np.int8),
        'empty': np.zeros((0, 3), np.float32),
        'layer': {'weight': np.arange(6, dtype=np.float32).reshape(2, 3), 'bias': np.ones(3, np.float32)},
        'nested': [{'x': 1.5}, None, 'text', 3, True],
        'pair': (2, 3),
        'unicode': 'τ_m in µs',
    }


def main() -> None:
    v1_module().save(OUT, tree())
    print(f'wrote {os.path.normpath(OUT)} ({os.path.getsize(OUT)} bytes)')


if __name__ == '__main__':
    main()
