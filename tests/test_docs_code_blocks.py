"""Every ```python block of README.md and of each docs page runs, as written.

A page's blocks run in order in one fresh namespace, so a page must define (or import) what its
snippets use, as a reader copying them in order would. Blocks that are deliberately not runnable
use another fence language (```text, ```bash). Each page runs in an empty temporary directory, so
snippets that write files (checkpoints) leave nothing behind.
"""

from __future__ import annotations

import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / 'docs'
PYTHON_LANGUAGES = {'python', 'py', 'python3'}

# Pages whose code is known not to run yet: (page, reason). Each would be an expected failure,
# reported as such, and its entry removed when the page is fixed. Empty: every page runs.
NOT_YET_RUNNABLE = {}


def pages():
    found = [ROOT / 'README.md', ROOT / 'examples' / 'README.md']
    found += sorted(p for p in DOCS.rglob('*.md') if '_build' not in p.parts)
    return found


_FENCE = re.compile(r'^( {0,3})(`{3,}|~{3,})(.*)$')


def code_blocks(text: str):
    """``[(first line number, language, code)]`` of the fenced blocks of a Markdown text."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = _FENCE.match(lines[i])
        if not match:
            i += 1
            continue
        indent, fence, info = len(match.group(1)), match.group(2), match.group(3).strip()
        words = info.split()
        language = words[0].lower() if words else ''
        if language in ('{code-block}', '{code}', '{code-cell}') and len(words) > 1:
            language = words[1].lower()
        start, body = i + 1, []
        i += 1
        while i < len(lines):
            close = re.match(r'^ {0,3}(`{3,}|~{3,})\s*$', lines[i])
            if close and close.group(1)[0] == fence[0] and len(close.group(1)) >= len(fence):
                break
            # CommonMark: a fence indented n spaces (inside a list item) removes up to n from its lines
            line = lines[i]
            body.append(line[min(indent, len(line) - len(line.lstrip(' '))):])
            i += 1
        blocks.append((start + 1, language, '\n'.join(body) + '\n'))
        i += 1
    return blocks


def python_blocks(path: pathlib.Path):
    return [(line, code) for line, language, code in code_blocks(path.read_text(encoding='utf-8'))
            if language in PYTHON_LANGUAGES]


def _page_id(path):
    return str(path.relative_to(ROOT))


def test_parser_strips_the_indentation_of_an_indented_fence():
    text = '1. item\n\n   ```python\n   a = 1\n   if a:\n       b = 2\n   ```\n'
    assert code_blocks(text) == [(4, 'python', 'a = 1\nif a:\n    b = 2\n')]


def test_parser_reads_fences():
    text = ('intro\n```python\na = 1\n```\n\n````text\n```python\nnot code\n```\n````\n'
            '~~~py\nb = 2\n~~~\n```{code-block} python\nc = 3\n```\n```bash\nls\n```\n')
    found = [(language, code) for _, language, code in code_blocks(text)]
    assert found == [('python', 'a = 1\n'), ('text', '```python\nnot code\n```\n'), ('py', 'b = 2\n'),
                     ('python', 'c = 3\n'), ('bash', 'ls\n')]


def test_readme_example_is_collected():
    blocks = python_blocks(ROOT / 'README.md')
    assert blocks, 'README.md has no python block'
    assert any('register_trainable_weights' in code for _, code in blocks)


@pytest.mark.parametrize('page', [p for p in pages() if python_blocks(p)], ids=_page_id)
def test_page_code_runs_as_written(page, tmp_path, monkeypatch):
    reason = NOT_YET_RUNNABLE.get(_page_id(page))
    if reason:
        pytest.xfail(reason)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv('MPLBACKEND', 'Agg')
    namespace = {'__name__': '__docs__'}
    try:
        for line, code in python_blocks(page):
            try:
                exec(compile(code, f'{_page_id(page)}:{line}', 'exec'), namespace)
            except Exception as error:
                raise AssertionError(f'the python block at {_page_id(page)}, line {line}, fails: '
                                     f'{type(error).__name__}: {error}') from error
    finally:
        _close_figures()


def _close_figures():
    try:
        import sys
        if 'matplotlib.pyplot' in sys.modules:
            sys.modules['matplotlib.pyplot'].close('all')
    except Exception:
        pass
