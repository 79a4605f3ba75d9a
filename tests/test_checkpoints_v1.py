"""Checkpoints written by the first release (state_dict format 1) load into today's optimizers.

``scripts/make_state_dict_v1_golden.py`` ran the first release (from git
history): a few steps, ``state_dict()`` saved, three more steps recorded. Here
today's optimizer loads that checkpoint, takes the same three steps and must
land on the recorded parameters. Format 1 keyed parameters by ``'/'``-joined
tuples (a plain ``'w'`` became ``('w',)``, list items ``('param_i',)``);
today's keys are the user's own, and the loader maps them.
"""

import importlib.util
import os

import numpy as np
import pytest

import braintools_optim as bo
from braintools_optim import checkpoint

GOLDEN = os.path.join(os.path.dirname(__file__), 'golden')
_spec = importlib.util.spec_from_file_location('state_dict_v1_cases', os.path.join(GOLDEN, 'state_dict_v1_cases.py'))
cases = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(cases)


@pytest.mark.parametrize('name', cases.CASES)
def test_a_format_1_checkpoint_resumes_where_the_first_release_went(name):
    saved = checkpoint.load(os.path.join(GOLDEN, f'state_dict_v1_{name}.npz'))
    assert saved['format_version'] == 1
    states = cases.params()
    opt = cases.build(bo, name, states)
    keys = {'w': 0, 'b': 1, 'tau': 2} if name == 'sgd_list_accumulate' else {'w': 'w', 'b': 'b', 'tau': 'tau'}
    # the parameters themselves are saved with the model: replay the first three steps' values
    continued = np.load(os.path.join(GOLDEN, 'state_dict_v1_continued.npz'))
    reference = cases.params()
    ref_opt = cases.build(bo, name, reference)
    for step in range(3):
        ref_opt.update(cases.grads(step, keys))
        if ref_opt.lr_scheduler is not None:
            ref_opt.lr_scheduler.step()
    for key in states:
        states[key].value = reference[key].value
    assert opt.load_state_dict(saved) == {'missing': [], 'unexpected': []}
    assert int(opt.step_count.value) == int(ref_opt.step_count.value)
    for step in range(3, 6):
        opt.update(cases.grads(step, keys))
        if opt.lr_scheduler is not None:
            opt.lr_scheduler.step()
    for key, state in states.items():
        np.testing.assert_allclose(np.asarray(getattr(state.value, 'mantissa', state.value)),
                                   continued[f'{name}/{key}'], rtol=2e-6, atol=1e-7, err_msg=f'{name}/{key}')


def test_a_format_1_checkpoint_of_another_model_is_refused_and_changes_nothing():
    saved = checkpoint.load(os.path.join(GOLDEN, 'state_dict_v1_adamw_steplr.npz'))
    states = cases.params()
    opt = bo.AdamW(lr=bo.StepLR(base_lr=0.1, step_size=2, gamma=0.5), weight_decay=0.01)
    opt.register_trainable_weights({'w': states['w'], 'b': states['b']})
    before = opt.state_dict()
    with pytest.raises(bo.CheckpointMismatchError, match='unexpected'):
        opt.load_state_dict(saved)
    after = opt.state_dict()
    assert int(after['step_count']) == int(before['step_count']) == 0
