"""Smoke test of the README demo, ``examples/train_snn.py``, in its quick mode.

``examples`` is not a package, so the script is loaded from its path.
"""

import importlib.util
import pathlib

import brainunit as u
import numpy as np
import pytest

EXAMPLE = pathlib.Path(__file__).resolve().parents[1] / 'examples' / 'train_snn.py'


def load_example():
    spec = importlib.util.spec_from_file_location('train_snn_example', EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
    demo = load_example()
    plot = tmp_path_factory.mktemp('snn') / 'loss.png'
    result = demo.main(['--quick', '--quiet', '--plot', str(plot)])
    return result, plot


def test_loss_decreases(quick_run):
    result, _ = quick_run
    losses = result['losses']
    assert len(losses) == 8
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.6 * losses[0], losses


def test_accuracy_well_above_chance(quick_run):
    result, _ = quick_run
    assert result['chance'] == pytest.approx(0.25)
    assert result['initial_accuracy'] < 0.45, result['initial_accuracy']
    assert result['final_accuracy'] >= 0.7, result['accuracies']


def test_trainable_time_constant_keeps_its_unit(quick_run):
    result, _ = quick_run
    before, after = result['tau_before'], result['tau_after']
    assert isinstance(after, u.Quantity)
    assert after.unit == u.ms == before.unit
    assert after.shape == before.shape
    # It was trained (the optimizer wrote new values) and stayed physically sensible.
    assert not np.allclose(u.get_magnitude(after), u.get_magnitude(before))
    assert bool(u.math.all(after > 1.0 * u.ms))


def test_step_lr_schedule_was_applied(quick_run):
    result, _ = quick_run
    # StepLR(base_lr=0.02, step_size=8 // 3, gamma=0.5), stepped once per epoch.
    expected = [0.02, 0.02, 0.01, 0.01, 0.005, 0.005, 0.0025, 0.0025]
    np.testing.assert_allclose(result['lrs'], expected, rtol=1e-6)
    assert result['steps'] == 8 * (1024 // 128)


def test_loss_curve_saved_or_skipped(quick_run):
    result, plot = quick_run
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert result['plot'] is None
    else:
        assert result['plot'] == str(plot)
        assert plot.stat().st_size > 0
