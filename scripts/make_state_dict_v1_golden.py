"""Write tests/golden/state_dict_v1.npz: optimizer checkpoints of the first release (format 1).

The first release's package is taken from git history (commit 29282b6, the last
one with state_dict format 1), unpacked into a temporary directory and run in
a subprocess. For each case of ``tests/golden/state_dict_v1_cases.py`` it trains a few steps, saves ``opt.state_dict()``
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

# The cases (optimizers, problem, gradients), shared with the test; a module that runs on both releases.
CASES = os.path.join('tests', 'golden', 'state_dict_v1_cases.py')

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
        cases = os.path.abspath(CASES)
        runner = os.path.join(tmp, 'run_old.py')
        with open(runner, 'w') as stream:
            stream.write(RUN_OLD)
        env = dict(os.environ, PYTHONPATH=tmp)
        subprocess.run([sys.executable, runner, tmp, cases, OUT], check=True, env=env, cwd=os.getcwd())
    print('wrote', OUT + '_*.npz')


if __name__ == '__main__':
    main()
