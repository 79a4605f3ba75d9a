"""Smoke test of ``examples/ensemble_fit.py`` in its ``--quick`` mode: what the script claims, checked.

A population of resonator models is fitted at once (one optimizer object, vmapped); the best
member recovers the true frequency, time constant and gain in their units, while members that
started far away are stuck, which is why the population is there.
"""

from __future__ import annotations

import brainunit as u
import numpy as np
import pytest

from example_scripts import check_plot, run_quick


@pytest.fixture(scope='module')
def ensemble(tmp_path_factory):
    return run_quick('ensemble_fit', tmp_path_factory)


def test_the_best_member_recovers_every_parameter_in_its_unit(ensemble):
    result, _ = ensemble
    for name, unit, tolerance in (('freq', u.Hz, 0.005), ('tau', u.ms, 0.03), ('gain', u.mV, 0.02)):
        fitted, true = result['fitted'][name], result['true'][name]
        assert isinstance(fitted, u.Quantity) and fitted.unit == unit, (name, fitted)
        assert abs(float((fitted - true) / true)) < tolerance, (name, fitted, true)
    noise_variance = 0.04                                  # (0.2 mV)²: the loss of the true parameters
    assert result['final'][result['best']] == pytest.approx(noise_variance, rel=0.05)


def test_members_far_from_the_truth_are_stuck_so_the_population_matters(ensemble):
    result, _ = ensemble
    final, best = result['final'], result['best']
    stuck = ~np.isfinite(final) | (final > 10 * final[best])
    assert result['stuck'] == int(stuck.sum()) >= 1
    assert (~stuck).sum() >= 2                              # ... and several found the valley
    assert np.all(result['start_freq'][stuck] > 15.0)       # the far starts


def test_one_optimizer_ran_every_member_with_its_own_learning_rate(ensemble):
    result, _ = ensemble
    assert result['losses'].shape == (result['steps'], result['members']) == (250, 8)
    assert len(set(result['lrs'].tolist())) == 4
    # a member's step counter counts its applied steps: all of them unless some were skipped
    np.testing.assert_array_equal(result['step_count'], result['steps'] - result['skips'])


def test_the_figure(ensemble):
    check_plot(*ensemble)
