"""Write tests/golden/state_dict_v1.npz: optimizer checkpoints of the first release (format 1).

The first release's package is taken from git history (commit 29282b6, the last
one with state_dict format 1), unpacked into a temporary directory and run in
a subprocess. For each case it trains a few steps, saves ``opt.state_dict()``
with that release's own ``checkpoint.save``, trains three more steps and
records where the parameters end. ``tests/test_checkpoints_v1.py`` loads each
checkpoint into today's optimizer, trains the same three steps and must land
on the recorded parameters: old checkpoints keep working.

Run from the repository root: ``python3 scripts/make_state_dict_v1_golden.py``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile

COMMIT = '29282b6'
OUT = os.path.join('tests', 'golden', 'state_dict_v1')

# The cases, shared with the test: name -> (optimizer expression, registration, groups).
CASES_SOURCE = r'''
import brainstate, jax.numpy as jnp, numpy as np, brainunit as u

def params():
    rng = np.random.default_rng(0)
    return {'w': brainstate.ParamState(jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)),
            'b': brainstate.ParamState(jnp.asarray(rng.normal(size=(2,)), jnp.float32)),
            'tau': brainstate.ParamState(jnp.asarray([5.0, 10.0], jnp.float32) * u.ms)}

def grads(step, keys):
    rng = np.random.default_rng(50 + step)
    out = {}
    for name, shape in (('w', (3, 2)), ('b', (2,)), ('tau', (2,))):
        g = jnp.asarray(rng.normal(size=shape), jnp.float32)
        out[name] = g * u.ms if name == 'tau' else g
    return {keys[name]: g for name, g in out.items()}

def build(bo, name, states):
    """The optimizer of case `name` with its parameters registered (same calls in both releases)."""
    if name == 'adam_groups_skip':
        opt = bo.Adam(lr=0.05, weight_decay=1e-3, skip_nonfinite=True)
        opt.register_trainable_weights({'w': states['w'], 'b': states['b']})
        opt.add_param_group({'tau': states['tau']}, lr=0.01, weight_decay=0.0)
        return opt
    if name == 'sgd_list_accumulate':
        opt = bo.SGD(lr=0.1, momentum=0.9, accumulate_steps=2)
        return opt.register_trainable_weights([states['w'], states['b'], states['tau']])
    if name == 'adamw_steplr':
        opt = bo.AdamW(lr=bo.StepLR(base_lr=0.1, step_size=2, gamma=0.5), weight_decay=0.01)
        return opt.register_trainable_weights(states)
    if name == 'lamb_per_tensor':
        return bo.Lamb(lr=0.05, weight_decay=0.01).register_trainable_weights(states)
    raise KeyError(name)

CASES = ['adam_groups_skip', 'sgd_list_accumulate', 'adamw_steplr', 'lamb_per_tensor']
'''

RUN_OLD = r'''
import sys, json
import numpy as np
sys.path.insert(0, sys.argv[1])
exec(open(sys.argv[2]).read())
import braintools_optim as bo
from braintools_optim import checkpoint
assert bo.__file__.startswith(sys.argv[1]), bo.__file__
out = sys.argv[3]
record = {}
for name in CASES:
    states = params()
    opt = build(bo, name, states)
    keys = {'w': ('w',), 'b': ('b',), 'tau': ('tau',)}
    if name == 'sgd_list_accumulate':
        keys = {'w': ('param_0',), 'b': ('param_1',), 'tau': ('param_2',)}
    for step in range(3):
        opt.update(grads(step, keys))
        sched = opt.lr_scheduler
        if sched is not None:
            sched.step()
    checkpoint.save(f'{out}_{name}.npz', opt.state_dict())
    for step in range(3, 6):
        opt.update(grads(step, keys))
        sched = opt.lr_scheduler
        if sched is not None:
            sched.step()
    for key, state in states.items():
        record[f'{name}/{key}'] = np.asarray(u.get_mantissa(state.value))
np.savez(f'{out}_continued.npz', **record)
'''


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        archive = subprocess.run(['git', 'archive', COMMIT, 'braintools_optim'], check=True,
                                 capture_output=True).stdout
        subprocess.run(['tar', '-x', '-C', tmp], input=archive, check=True)
        cases = os.path.join(tmp, 'cases.py')
        with open(cases, 'w') as stream:
            stream.write(CASES_SOURCE)
        runner = os.path.join(tmp, 'run_old.py')
        with open(runner, 'w') as stream:
            stream.write(RUN_OLD)
        env = dict(os.environ, PYTHONPATH=tmp)
        subprocess.run([sys.executable, runner, tmp, cases, OUT], check=True, env=env, cwd=os.getcwd())
    with open(os.path.join('tests', 'golden', 'state_dict_v1_cases.py'), 'w') as stream:
        stream.write('"""Cases of tests/golden/state_dict_v1_*.npz (written by scripts/make_state_dict_v1_golden.py)."""\n')
        stream.write(CASES_SOURCE)
    print('wrote', OUT + '_*.npz')


if __name__ == '__main__':
    main()
