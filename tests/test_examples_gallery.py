"""Smoke tests of the gallery scripts in ``examples/``, each in its ``--quick`` mode.

``examples`` is not a package: each script is loaded from its path and its ``main(argv)`` is
called in this process (``train_rate_rnn.py`` also starts and kills a child process). The
assertions check what each script claims to show, not just that it runs.
"""

from __future__ import annotations

import signal

import brainunit as u
import numpy as np
import pytest

from example_scripts import EXAMPLES, check_plot, run_quick


# ------------------------------------------------------------------------------------------------
# fit_neuron.py: physiological parameters with units, one parameter group each
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def fit(tmp_path_factory):
    return run_quick('fit_neuron', tmp_path_factory)


def test_fit_recovers_each_parameter_in_its_unit(fit):
    result, _ = fit
    for name, unit in (('tau_m', u.ms), ('g_max', u.nS), ('E_L', u.mV)):
        fitted, true = result['fitted'][name], result['true'][name]
        assert isinstance(fitted, u.Quantity) and fitted.unit == unit, (name, fitted)
        assert result['errors'][name] < 0.02, (name, fitted, true)
        # It moved from its initial guess, which was far off (>= 15 %).
        initial = result['initial'][name]
        assert abs(float((initial - true) / true)) >= 0.15


def test_fit_reaches_the_noise_floor(fit):
    result, _ = fit
    losses = result['losses']
    assert len(losses) == result['steps'] == 150
    noise_variance = 0.25                        # (0.5 mV)², the loss of the true parameters
    assert losses[0] > 20 * noise_variance
    assert losses[-1] == pytest.approx(noise_variance, rel=0.1)


def test_fit_figure(fit):
    check_plot(*fit)


# ------------------------------------------------------------------------------------------------
# train_rate_rnn.py: warm-up/cosine, gradient accumulation, killed and resumed
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def rnn(tmp_path_factory):
    return run_quick('train_rate_rnn', tmp_path_factory)


def test_rnn_child_was_killed_and_resumed_mid_window(rnn):
    result, _ = rnn
    if hasattr(signal, 'SIGKILL'):
        assert result['child_returncode'] == -signal.SIGKILL
    first = result['resumed_from']
    assert 0 < first < result['micro_batches']
    assert first % 4 != 0, 'the demo resumes inside an accumulation window'
    assert len(result['resumed_losses']) == result['micro_batches'] - first


def test_rnn_resumed_run_equals_uninterrupted(rnn):
    result, _ = rnn
    assert result['same_losses']
    assert result['max_difference'] == 0.0


def test_rnn_schedule_counts_real_steps(rnn):
    result, _ = rnn
    lrs = np.asarray(result['lrs'])              # the lr after each micro-batch
    assert result['steps'] == result['micro_batches'] // 4 == 40
    # The lr changes only when a real step is taken: after micro-batches 4, 8, 12, ...
    micro_batch = np.nonzero(np.diff(lrs))[0] + 2        # 1-based number of the micro-batch
    assert micro_batch.size > 0 and np.all(micro_batch % 4 == 0), micro_batch
    assert lrs.max() == pytest.approx(1e-2, rel=1e-5)   # warm-up reaches base_lr, then cosine
    assert lrs[-1] == pytest.approx(0.0, abs=1e-9)
    assert np.argmax(lrs) < len(lrs) // 3


def test_rnn_learns_the_task(rnn):
    result, _ = rnn
    assert np.mean(result['losses'][-20:]) < 0.5 * np.mean(result['losses'][:4])
    assert result['accuracy'] > 0.7
    assert result['accuracy_by_coherence'][0.2] > 0.9


def test_rnn_figure(rnn):
    check_plot(*rnn)


# ------------------------------------------------------------------------------------------------
# compare_optimizers.py
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope='module')
def comparison(tmp_path_factory):
    return run_quick('compare_optimizers', tmp_path_factory)


def test_every_optimizer_ran_and_learned(comparison):
    result, _ = comparison
    results = result['results']
    assert set(results) == {'SGD, momentum 0.9', 'Adam', 'AdamW (wd 1e-2)', 'RMSprop', 'Adagrad', 'Adadelta',
                            'Lion'}
    for name, r in results.items():
        assert len(r['losses']) == result['steps'] == 150
        assert np.all(np.isfinite(r['losses'])), name
        assert r['losses'][0] == pytest.approx(result['initial_loss']), name   # same start for all
        assert r['final'] < 0.1 * result['initial_loss'], (name, r['final'])


def test_comparison_figure(comparison):
    check_plot(*comparison)


def test_examples_readme_lists_every_script():
    readme = (EXAMPLES / 'README.md').read_text(encoding='utf-8')
    scripts = sorted(p.name for p in EXAMPLES.glob('*.py') if not p.name.startswith('_'))
    assert scripts, 'no example scripts found'
    for script in scripts:
        assert f'`{script}`' in readme, f'examples/README.md does not describe {script}'
