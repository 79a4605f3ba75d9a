"""Sphinx configuration of the braintools_optim documentation.

Build (from the repository root; see README.md):

    python3 -m pip install -e ".[docs]"
    python3 -m sphinx -W --keep-going -b html docs docs/_build/html

Pages are Markdown (MyST). The API reference under ``docs/api/optimizers`` and
``docs/api/schedulers`` is generated from the code at every build by
``docs/_ext/bo_apigen.py``. Nothing is executed at build time except imports; the
code blocks of the pages are run by ``tests/test_docs_code_blocks.py`` instead.
"""

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
sys.path.insert(0, ROOT)                        # document this checkout, not another installed copy
sys.path.insert(0, os.path.join(DOCS, '_ext'))

import braintools_optim  # noqa: E402

project = 'braintools_optim'
author = 'the braintools_optim authors'
copyright = '2026, the braintools_optim authors'
release = version = braintools_optim.__version__

extensions = [
    'myst_parser',
    'sphinx.ext.autodoc',
    'sphinx.ext.napoleon',       # the docstrings use Google style (Args:, Returns:)
    'sphinx.ext.mathjax',
    'bo_apigen',                 # writes docs/api/{optimizers,schedulers}/*.md
]

source_suffix = {'.md': 'markdown'}
root_doc = 'index'
exclude_patterns = ['_build', '_ext', 'Thumbs.db', '.DS_Store']

myst_enable_extensions = ['dollarmath', 'colon_fence']
myst_heading_anchors = 3          # [text](page.md#a-heading) links resolve to headings

napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_member_order = 'bysource'
autodoc_inherit_docstrings = False     # an override without a docstring adds no text
add_module_names = False

html_theme = 'furo'
html_title = f'braintools_optim {release}'
html_static_path = []
html_theme_options = {
    'navigation_with_keys': True,
}
# Literal blocks without a language (the formulas in the docstrings, written as ``::`` blocks)
# are shown as plain text rather than guessed to be Python; fenced blocks name their language.
highlight_language = 'text'
pygments_style = 'sphinx'
pygments_dark_style = 'monokai'


# ------------------------------------------------------------------------------------------------
# Docstring markup in files this documentation may not edit (the engine is being rewritten).
# Each entry repairs exactly one reST markup error in one object's docstring, at render time only;
# the source keeps its text. Remove an entry once its docstring is fixed (the replacement then no
# longer matches and the entry does nothing).
# ------------------------------------------------------------------------------------------------
#: docstring markup to repair at render time, {object name: [(old, new)]}; empty: every docstring
#: renders as written (keep it that way: fix the docstring instead of adding an entry)
DOCSTRING_MARKUP_FIXES = {}


def _fix_docstring_markup(app, what, name, obj, options, lines):
    for old, new in DOCSTRING_MARKUP_FIXES.get(name, ()):
        for i, line in enumerate(lines):
            lines[i] = line.replace(old, new)


def _init_signature(app, what, name, obj, options, signature, return_annotation):
    """brainstate's metaclass hides a class's signature (``(*args, **kwargs)``): show ``__init__``'s."""
    if what in ('class', 'exception') and signature == '(*args, **kwargs)' and '__init__' in vars(obj):
        import bo_apigen
        return bo_apigen.signature_text(obj)[len(obj.__name__):], return_annotation
    return None


def setup(app):
    app.connect('autodoc-process-docstring', _fix_docstring_markup)
    app.connect('autodoc-process-signature', _init_signature)
