"""Small helpers shared by the gallery scripts: a progress bar and optional matplotlib.

Nothing here is part of ``braintools_optim``; the examples stay runnable with the library's
own dependencies (``jax``, ``brainstate``, ``brainunit``), and draw figures when matplotlib is
installed (``pip install -e ".[examples]"``).
"""

from __future__ import annotations

import os
import sys
import time
from typing import Callable, Iterable, Iterator, Optional, TypeVar

T = TypeVar('T')

EXAMPLES = os.path.dirname(os.path.abspath(__file__))


def progress(items: Iterable[T], total: int, label: str = '', *, enabled: bool = True,
             status: Optional[Callable[[], str]] = None, width: int = 30,
             stream=None) -> Iterator[T]:
    """Yield ``items`` while drawing ``label [#####.....] k/total  <status()>``.

    On a terminal the bar is redrawn in place (at most ten times a second); in a log or a
    pipe it prints at most ten lines per loop, so long runs stay readable. ``status`` is
    called for the text after the bar (e.g. the current loss).
    """
    stream = stream or sys.stdout
    if not enabled or total <= 0:
        yield from items
        return
    interactive = hasattr(stream, 'isatty') and stream.isatty()
    last_draw, every = 0.0, max(1, total // 10)
    start = time.perf_counter()

    def draw(done: int, final: bool = False) -> None:
        filled = int(width * done / total)
        extra = f'  {status()}' if status is not None else ''
        line = (f'{label} [{"#" * filled}{"." * (width - filled)}] {done}/{total} '
                f'{time.perf_counter() - start:5.1f} s{extra}')
        if interactive:
            stream.write('\r' + line + ('\n' if final else ''))
        else:
            stream.write(line + '\n')
        stream.flush()

    done = 0
    for item in items:
        yield item
        done += 1
        now = time.perf_counter()
        if done == total:
            draw(done, final=True)
        elif interactive and now - last_draw > 0.1:
            draw(done)
            last_draw = now
        elif not interactive and done % every == 0:
            draw(done)


def pyplot(say: Callable[..., None] = print):
    """``matplotlib.pyplot`` with the file-only Agg backend, or ``None`` (and a message)."""
    try:
        import matplotlib
        matplotlib.use('Agg')
        import matplotlib.pyplot as plt
    except ImportError:
        say('matplotlib is not installed: skipping the figure (pip install -e ".[examples]" to get it)')
        return None
    return plt


def save_figure(fig, path: str, say: Callable[..., None] = print) -> str:
    """Save ``fig`` to ``path`` (directories created), close it and say where it went."""
    os.makedirs(os.path.dirname(os.path.abspath(path)) or '.', exist_ok=True)
    fig.savefig(path, dpi=100)
    import matplotlib.pyplot as plt
    plt.close(fig)
    say(f'figure saved to {path}')
    return path
