"""Smoke test of the README demo, ``examples/train_snn.py``, in its quick mode.

``examples`` is not a package, so the script is loaded from its path (``example_scripts``).
"""

import brainunit as u
import numpy as np
import pytest

from example_scripts import check_plot, load, run_quick


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
    return run_quick('train_snn', tmp_path_factory, plot_name='loss.png')


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
    check_plot(*quick_run, min_bytes=0)


def test_in_bfloat16_stochastic_rounding_trains_the_time_constants_that_nearest_rounding_freezes(quick_run):
    # tau_mem ~ 20 ms has a bfloat16 ulp of 0.125 ms; Adam moves it by at most lr <= 0.02 ms per
    # step, under half an ulp: rounded to nearest it never changes. Stochastic rounding (and float32
    # master weights) move it as much as float32 training does (measured: 0.46 ms float32, 0.48 ms
    # stochastic, 0.00 ms nearest; final losses 0.467, 0.470 and 0.496).
    demo = load('train_snn')
    result32, _ = quick_run
    change = lambda r: float(np.mean(np.abs(u.get_magnitude(r['tau_after'].to(u.ms)).astype(np.float32)
                                           - u.get_magnitude(r['tau_before'].to(u.ms)).astype(np.float32))))
    runs = {rounding: demo.main(['--quick', '--quiet', '--no-plot', '--dtype', 'bfloat16', '--rounding', rounding])
            for rounding in ('nearest', 'stochastic')}
    assert str(u.get_magnitude(runs['stochastic']['tau_after']).dtype) == 'bfloat16'
    assert change(runs['nearest']) == 0.0
    assert 0.5 * change(result32) < change(runs['stochastic']) < 2.0 * change(result32)
    assert abs(runs['stochastic']['losses'][-1] - result32['losses'][-1]) < 0.05 * result32['losses'][-1]
