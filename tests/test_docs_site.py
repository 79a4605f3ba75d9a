"""The documentation site builds with warnings as errors, has an API page for every exported
optimizer and scheduler, and every internal link in it resolves.

The build is the documented one (``python3 -m sphinx -W --keep-going -b html docs <out>``), run
once per test session into a temporary directory. It needs the ``docs`` packages (sphinx,
myst-parser, furo), which the ``test`` extra installs; without them these tests are skipped.
"""

from __future__ import annotations

import html.parser
import importlib.util
import inspect
import pathlib
import posixpath
import subprocess
import sys
import urllib.parse

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / 'docs'

MISSING = [name for name in ('sphinx', 'myst_parser', 'furo') if importlib.util.find_spec(name) is None]
NEEDS_SPHINX = f"the docs build needs {', '.join(MISSING)} (pip install -e \".[docs]\" or \".[test]\")"


@pytest.fixture(scope='module')
def site(tmp_path_factory):
    if MISSING:
        pytest.skip(NEEDS_SPHINX)
    out = tmp_path_factory.mktemp('html')
    doctrees = tmp_path_factory.mktemp('doctrees')
    command = [sys.executable, '-m', 'sphinx', '-W', '--keep-going', '-q', '-E', '-b', 'html',
               '-d', str(doctrees), str(DOCS), str(out)]
    build = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if build.returncode != 0:
        pytest.fail(f'the docs build failed (exit {build.returncode}):\n{build.stderr}\n{build.stdout}')
    return out


def exported_classes():
    """``{class: [names]}`` of the optimizers and schedulers the package exports."""
    import braintools_optim as bo
    from braintools_optim import optimizers, schedulers
    found = {}
    for module, names in ((optimizers, optimizers.__all__), (schedulers, schedulers.__all__)):
        for name in names:
            obj = getattr(module, name)
            if inspect.isclass(obj) and obj is not bo.LRScheduler:
                found.setdefault(obj, []).append(name)
    return found


def kind(cls):
    import braintools_optim as bo
    return 'schedulers' if issubclass(cls, bo.LRScheduler) else 'optimizers'


class _Page(html.parser.HTMLParser):
    """The links, ids and text of one HTML page."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.links, self.ids, self.text = [], set(), []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if attrs.get('id'):
            self.ids.add(attrs['id'])
        if tag == 'a' and attrs.get('name'):
            self.ids.add(attrs['name'])
        for attr in ('href', 'src'):
            if attrs.get(attr) and not (tag == 'link' and attrs.get('rel') in ('canonical',)):
                self.links.append(attrs[attr])

    def handle_data(self, data):
        self.text.append(data)


def parse(path: pathlib.Path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding='utf-8'))
    return page


def plain(text: str) -> str:
    """Text with Sphinx's smart quotes undone and whitespace collapsed, for comparisons."""
    for quote in '"\'“”‘’':
        text = text.replace(quote, '')
    return ' '.join(text.split())


def section(path: pathlib.Path, section_id: str) -> str:
    """The text of the ``<section id=...>`` of a page, up to the next section."""
    raw = path.read_text(encoding='utf-8')
    start = raw.index(f'id="{section_id}"')
    end = raw.find('<section', start)
    page = _Page()
    page.feed(raw[start:end if end > 0 else len(raw)].split('>', 1)[1])
    return ' '.join(page.text)


def test_core_pages_exist(site):
    for page in ('index', 'getting_started', 'gallery', 'units', 'groups', 'schedulers',
                 'robust_training', 'performance', 'distributed', 'conventions', 'optimizers', 'api/index',
                 'api/optimizers/index', 'api/schedulers/index', 'api/core', 'search', 'genindex'):
        assert (site / f'{page}.html').is_file(), page


def test_api_page_for_every_exported_optimizer_and_scheduler(site):
    classes = exported_classes()
    assert len([c for c in classes if kind(c) == 'optimizers']) >= 25
    assert len([c for c in classes if kind(c) == 'schedulers']) >= 15
    for cls, names in classes.items():
        page = site / 'api' / kind(cls) / f'{cls.__name__.lower()}.html'
        assert page.is_file(), f'no API page for {cls.__name__}'
        text = ' '.join(parse(page).text)
        summary = inspect.getdoc(cls).split('\n')[0].split(':math:')[0].split('``')[0].strip()
        assert summary and plain(summary) in plain(text), (cls.__name__, summary)
        for name in names:                                   # aliases are named on the page
            assert name in text, (cls.__name__, name)


def test_defaults_tables_list_every_argument_with_its_default(site):
    for cls in exported_classes():
        page = site / 'api' / kind(cls) / f'{cls.__name__.lower()}.html'
        defaults = section(page, 'defaults')
        params = list(inspect.signature(cls.__init__).parameters.values())[1:]
        for p in params:
            assert p.name in defaults, (cls.__name__, p.name)
            if p.default is not p.empty and isinstance(p.default, (bool, int, str, type(None))):
                assert repr(p.default) in defaults, (cls.__name__, p.name, p.default)


def test_keywords_passed_on_to_a_parent_are_listed(site):
    adamw = section(site / 'api' / 'optimizers' / 'adamw.html', 'defaults')
    for name in ('beta1', 'eps_root', 'eps_hat'):           # AdamW(**kwargs) -> Adam
        assert name in adamw, name
    momentum = section(site / 'api' / 'optimizers' / 'momentum.html', 'defaults')
    assert 'dampening' in momentum
    assert 'nesterov' not in momentum                       # Momentum fixes it in its super() call


def test_catalogs_list_every_export(site):
    classes = exported_classes()
    for catalog in ('optimizers', 'schedulers'):
        page = parse(site / 'api' / catalog / 'index.html')
        text = ' '.join(page.text)
        targets = {posixpath.basename(urllib.parse.urlsplit(h).path) for h in page.links}
        for cls, names in classes.items():
            if kind(cls) == catalog:
                assert f'{cls.__name__.lower()}.html' in targets, cls.__name__
                for name in names:
                    assert name in text, name


def broken_links(site: pathlib.Path):
    """``(links checked, ['page: link (why)'])`` for every relative href/src of every page."""
    broken, checked = [], 0
    pages = {path.resolve(): parse(path) for path in site.rglob('*.html')}
    for path, page in pages.items():
        for link in page.links:
            parts = urllib.parse.urlsplit(link)
            if parts.scheme or parts.netloc or link.startswith(('mailto:', 'javascript:', 'data:')):
                continue
            target = path if not parts.path else (path.parent / urllib.parse.unquote(parts.path)).resolve()
            if target.is_dir():
                target = target / 'index.html'
            checked += 1
            where = path.relative_to(site.resolve())
            if not target.is_file():
                broken.append(f'{where}: {link} (no file)')
            elif parts.fragment and target.suffix == '.html':
                ids = (pages.get(target) or parse(target)).ids
                if urllib.parse.unquote(parts.fragment) not in ids:
                    broken.append(f'{where}: {link} (no anchor)')
    return checked, broken


def test_link_checker_finds_broken_links(tmp_path):
    (tmp_path / 'sub').mkdir()
    (tmp_path / 'a.html').write_text('<a href="sub/b.html#here">ok</a> <a href="sub/b.html#gone">x</a> '
                                     '<img src="missing.png"> <a href="https://example.org/x.html">ext</a> '
                                     '<a href="#top">self</a> <p id="top"></p>')
    (tmp_path / 'sub' / 'b.html').write_text('<h1 id="here">b</h1><a href="../a.html">back</a>')
    checked, broken = broken_links(tmp_path)
    assert checked == 5
    assert sorted(broken) == ['a.html: missing.png (no file)', 'a.html: sub/b.html#gone (no anchor)']


def test_every_internal_link_resolves(site):
    checked, broken = broken_links(site)
    assert checked > 500, checked
    assert not broken, '\n'.join(broken[:50])


def test_gallery_embeds_every_figure_and_links_every_script(site):
    page = parse(site / 'gallery.html')
    sources = ' '.join(page.links)
    for figure in ('train_snn.png', 'fit_neuron.png', 'rate_rnn.png', 'compare_optimizers.png', 'ensemble_fit.png'):
        assert figure in sources, figure
        assert (DOCS / 'figures' / figure).is_file(), figure
    for script in sorted(p.name for p in (ROOT / 'examples').glob('*.py') if not p.name.startswith('_')):
        assert script in sources, script
