"""Writing a benchmark's generated section into ``RESULTS.md`` (shared by the ``bench_*.py`` scripts).

Each script owns the text between its own pair of markers and leaves the rest
of the file, the hand-written interpretation included, as it is.
"""

from __future__ import annotations

import os


def write_section(path: str, begin: str, end: str, body: str, header: str = '') -> None:
    """Put ``body`` between the markers ``begin`` and ``end`` in file ``path``.

    The markers' old section is replaced in place; a file without them gets
    the section appended, a missing file is created as ``header`` + section.
    """
    block = f'{begin}\n\n{body.strip(chr(10))}\n\n{end}'
    if os.path.exists(path):
        with open(path, encoding='utf-8') as f:
            old = f.read()
    else:
        old = None
    if old is not None and begin in old and end in old[old.index(begin):]:
        start = old.index(begin)
        stop = old.index(end, start) + len(end)
        text = old[:start] + block + old[stop:]
    elif old is not None:
        text = old.rstrip('\n') + '\n\n' + block + '\n'
    else:
        text = header + block + '\n'
    with open(path, 'w', encoding='utf-8') as f:
        f.write(text)
