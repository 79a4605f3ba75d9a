"""Running the scripts of ``examples/`` from tests (shared by ``test_examples_*.py``).

``examples`` is not a package: a script is loaded from its path and its
``main(argv)`` is called in this process.
"""

from __future__ import annotations

import importlib.util
import pathlib

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / 'examples'


def load(name: str):
    """The module of ``examples/<name>.py``, freshly executed."""
    spec = importlib.util.spec_from_file_location(f'example_{name}', EXAMPLES / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_quick(name: str, tmp_path_factory, plot_name: str = ''):
    """``(result, plot path)`` of ``main(['--quick', '--quiet', '--plot', plot])``."""
    plot = tmp_path_factory.mktemp(name) / (plot_name or f'{name}.png')
    return load(name).main(['--quick', '--quiet', '--plot', str(plot)]), plot


def check_plot(result, plot, min_bytes: int = 10_000):
    """The figure was written (more than ``min_bytes``), or skipped because matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert result['plot'] is None
    else:
        assert result['plot'] == str(plot)
        assert plot.stat().st_size > min_bytes
