"""Adafactor against torch.optim.Adafactor golden trajectories (no torch needed to run).

``tests/golden/catalog_b_adafactor.npz`` (written by
``scripts/make_torch_golden_catalog_b.py``, torch 2.13.0 CPU, ``foreach=False``)
holds 25-step trajectories on the feedback problem ``g_k = c * theta_k + noise_k``
for four parameters of rank 0, 1, 2 and 3 (``()``, ``(5,)``, ``(3, 4)``,
``(2, 3, 2)``: the matrix and the 3-D tensor are factored over their last two
axes, the others are not). Each test replays the configuration with
``braintools_optim.optimizers.adafactor.Adafactor``, recomputing every gradient
from *our* parameters, and compares the whole 26 x 30 trajectory.

==========================================================  ===========================================
torch.optim.Adafactor                                       braintools_optim Adafactor
==========================================================  ===========================================
defaults (lr 1e-2, beta2_decay -0.8, d 1, eps (None, 1e-3))  defaults (relative step capped by lr)
lr 0.5, beta2_decay -0.6, d 1.5, eps2 1.0, wd 0.05           lr 0.5, decay_rate 0.6, clip_threshold 1.5,
                                                            eps (1e-30, 1.0), weight_decay 0.05
lr 0.1, wd 0.2                                              lr 0.1, weight_decay 0.2
==========================================================  ===========================================

The second configuration reaches the ``1/sqrt(t)`` branch of the relative step
(``lr`` caps it for ``t <= 4``) and the ``eps2`` floor of the parameter RMS.

Tolerances: float64 ``rtol=1e-12, atol=1e-14``. float32 ``rtol=1e-6, atol=3e-7``:
torch computes ``t**beta2_decay``, ``1/sqrt(t)`` and the parameter RMS on the
host in float64 (``.item()``), we in float32, a few ulp per step; parameters that
cross 0 after being O(1) keep an absolute error of ~2 ulp of 1 (2.4e-7 seen
with ``lr=0.5``), hence the absolute term.
The regularisers differ in form (torch floors the variance at ``eps1**2``, we add
``eps1`` to ``g**2``) but neither acts at this gradient scale.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from braintools_optim.optimizers.adafactor import Adafactor
from reference_problem import GOLDEN_DIR, PARAMS, STEPS, run_ours

TOLERANCES = {np.float32: dict(rtol=1e-6, atol=3e-7), np.float64: dict(rtol=1e-12, atol=1e-14)}


def _load():
    with np.load(os.path.join(GOLDEN_DIR, 'catalog_b_adafactor.npz'), allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    meta = json.loads(str(arrays.pop('meta')))
    assert meta['steps'] == STEPS
    assert [(p['name'], tuple(p['shape'])) for p in meta['params']] == list(PARAMS)
    return meta, arrays


META, ARRAYS = _load()


def _kwargs(config):
    kwargs = dict(config['ours']['kwargs'])
    if 'eps' in kwargs:
        kwargs['eps'] = tuple(kwargs['eps'])
    return kwargs


@pytest.mark.parametrize('dtype', [np.float32, np.float64], ids=['float32', 'float64'])
@pytest.mark.parametrize('config', META['configs'], ids=[c['name'] for c in META['configs']])
def test_adafactor_matches_torch(config, dtype):
    name = config['name']
    init, c, noise = ARRAYS[f'{name}.init'], ARRAYS[f'{name}.c'], ARRAYS[f'{name}.noise']
    expected = ARRAYS[f'{name}.traj32' if dtype == np.float32 else f'{name}.traj64']
    ours = run_ours(lambda: Adafactor(**_kwargs(config)), init, c, noise, dtype)
    np.testing.assert_allclose(ours, expected, err_msg=name, **TOLERANCES[dtype])


def test_golden_file_is_meaningful():
    assert META['torch_version'].startswith('2.13.0')
    for config in META['configs']:
        traj = ARRAYS[f"{config['name']}.traj64"]
        assert np.max(np.abs(traj[-1] - traj[0])) > 0.3, config['name']
