"""braintools_optim against PyTorch golden trajectories (no torch needed to run).

``tests/golden/torch_<family>.npz`` hold 25-step trajectories of
``torch.optim`` (torch 2.13.0, CPU, ``foreach=False``) on the feedback problem
of :mod:`reference_problem`, in float32 and float64, produced by
``scripts/make_torch_golden.py`` (run it to regenerate; it needs torch).
Each test replays one configuration with our optimizer, recomputing every
gradient in JAX from *our* current parameters, and compares the whole
trajectory.

Which reference matches which configuration (the generator's ``CONFIGS``;
each test id is ``<configuration>-<dtype>``):

* ``torch.optim.SGD(lr, momentum, dampening, weight_decay, nesterov)`` ->
  ``SGD(...)`` with the same arguments: plain + value clip, momentum + norm
  clip, Nesterov + rescale + parameter clip, dampening; all with weight decay.
* ``torch.optim.Adam(lr, betas, eps, weight_decay, amsgrad)`` -> ``Adam(...)``:
  defaults, weight decay, AMSGrad + weight decay + norm clip, rescale + value
  clip + parameter clip. (AMSGrad is checked here only: we follow torch.)
* ``torch.optim.AdamW(...)`` -> ``AdamW(...)`` (decoupled decay): weight
  decay; AMSGrad + norm clip + parameter clip.
* ``torch.optim.Adadelta(lr, rho, eps, weight_decay)`` -> ``Adadelta(...)``:
  torch defaults; rho 0.95 (neon-like) + weight decay + rescale + value clip;
  large eps + weight decay + norm clip + parameter clip.
* ``torch.optim.RMSprop(lr, alpha, eps, weight_decay, momentum, centered)`` ->
  ``RMSprop(...)`` (default ``eps_placement='outside'``, torch's
  ``sqrt(v) + eps``): default, centered + value clip, momentum + norm clip,
  centered + momentum + rescale + parameter clip; all with weight decay.

Clipping and rescaling, which torch's optimizers lack, were applied by hand
in the generator in our documented order (rescale, clip by value, clip by
global norm with ``min(1, c / ||g||)``, torch's coupled/decoupled decay inside
``step()``, then parameter clipping); they map to our ``rescale_grad``,
``grad_clip_value``, ``grad_clip_norm`` and ``param_clip_value``. Every
family has at least one configuration with clipping switched on, and the
generator refuses to write a configuration whose clip never triggers.

Tolerances (``np.testing.assert_allclose`` on the whole 26 x 30 trajectory,
i.e. ``|ours - torch| <= atol + rtol * |torch|`` element-wise):

* float64: ``rtol=1e-12, atol=1e-14``. Both sides evaluate the same formula
  with differently ordered but individually rounded operations (torch's
  ``lerp_``/``addcdiv_`` against our plain products, torch's
  ``sqrt(v)/sqrt(1-b2^t)`` against our ``sqrt(v/(1-b2^t))``, the order of the
  global-norm sum), so the two trajectories differ by a few units in the last
  place, amplified mildly by the feedback (observed: at most 2e-15 absolute).
  This is the sharp check: an epsilon misplaced by 1e-8, or a bias correction
  off in the 10th digit, fails it.
* float32: ``rtol=1e-6, atol=1e-6``, i.e. ``|error| <= 1e-6 * (1 + |theta|)``,
  about 8 float32 ulp at the problem's natural scale ``|theta| ~ 1``. The
  absolute part is inherent: a parameter that starts near 1 and later passes
  close to 0 keeps the absolute rounding error (a few ulp of 1, ~1e-7 to 4e-7
  observed) it accumulated while it was large, which is an arbitrarily large
  *relative* error near 0. A pure ``atol=1e-7`` therefore fails by luck of
  where the trajectory crosses zero, not because anything is wrong. Observed
  worst case of ``|error| / (1 + |theta|)``: 4.1e-7 (RMSprop centered).
"""

from __future__ import annotations

import numpy as np
import pytest

import braintools_optim as bo
from reference_problem import load_golden, run_ours

FAMILIES = ('sgd', 'adam', 'adamw', 'adadelta', 'rmsprop')
TOLERANCES = {np.float32: dict(rtol=1e-6, atol=1e-6), np.float64: dict(rtol=1e-12, atol=1e-14)}

_GOLDEN = {family: load_golden(family) for family in FAMILIES}


def _cases():
    for family in FAMILIES:
        meta, _ = _GOLDEN[family]
        for config in meta['configs']:
            for dtype in (np.float32, np.float64):
                yield pytest.param(family, config, dtype,
                                   id=f"{config['name']}-{np.dtype(dtype).name}")


@pytest.mark.parametrize('family, config, dtype', list(_cases()))
def test_trajectory_matches_torch(family, config, dtype):
    _, arrays = _GOLDEN[family]
    name = config['name']
    init, c, noise = arrays[f'{name}.init'], arrays[f'{name}.c'], arrays[f'{name}.noise']
    expected = arrays[f'{name}.traj32' if dtype == np.float32 else f'{name}.traj64']
    cls = getattr(bo, config['ours']['cls'])
    kwargs = config['ours']['kwargs']

    ours = run_ours(lambda: cls(**kwargs), init, c, noise, dtype)

    assert ours.shape == expected.shape == (noise.shape[0] + 1, init.shape[0])
    np.testing.assert_array_equal(ours[0], expected[0])
    np.testing.assert_allclose(ours, expected, err_msg=f'{name} ({np.dtype(dtype).name})',
                               **TOLERANCES[dtype])


def test_golden_files_are_complete():
    """Every family has a clipping configuration, and the problem really moves."""
    for family in FAMILIES:
        meta, arrays = _GOLDEN[family]
        assert meta['torch_version'].startswith('2.13.0')
        clipped = [cfg for cfg in meta['configs']
                   if set(cfg['processing']) & {'grad_clip_value', 'grad_clip_norm', 'param_clip_value'}]
        assert clipped, f'{family}: no configuration with clipping'
        for cfg in meta['configs']:
            for kind, count in cfg['clip_events']['float64'].items():
                assert count > 0, (cfg['name'], kind)
            traj = arrays[f"{cfg['name']}.traj64"]
            assert np.all(np.isfinite(traj))
            assert np.max(np.abs(traj[-1] - traj[0])) > 1e-2, cfg['name']


def test_float64_comparison_detects_a_misplaced_epsilon():
    """The float64 tolerance is sharp: moving RMSprop's eps=1e-8 also under the root fails it."""
    meta, arrays = _GOLDEN['rmsprop']
    config = next(cfg for cfg in meta['configs'] if cfg['name'] == 'rmsprop_defaults_wd')
    name = config['name']
    kwargs = dict(config['ours']['kwargs'], eps_placement='both')
    ours = run_ours(lambda: bo.RMSprop(**kwargs), arrays[f'{name}.init'], arrays[f'{name}.c'],
                    arrays[f'{name}.noise'], np.float64)
    expected = arrays[f'{name}.traj64']
    assert not np.allclose(ours, expected, **TOLERANCES[np.float64])
    assert np.max(np.abs(ours - expected)) < 1e-3            # ... though it is the same algorithm
