"""Completeness: every exported optimizer is in the registry, referenced, trained and documented.

Fails when an optimizer exported by ``braintools_optim`` (a name of
``__all__`` that is an :class:`~braintools_optim.Optimizer` subclass, or one of
``braintools_optim.optimizers.__all__``; an alias such as ``RMSProp`` counts as
its class) is missing

* from the registry ``optim_db`` (or a registry row's facts disagree with its
  class: element-wise, weight-decay mode, whether a scheduler may cycle its
  momentum);
* from a reference table: the tables of ``test_reference_torch``,
  ``test_reference_optax`` and ``test_reference_formulas`` must cover exactly
  the optimizers whose registry row claims that kind of reference, and a row
  without any reference must say why (``no_reference``);
* from the convergence suite (``test_convergence``);
* from the catalog table of ``docs/optimizers.md``.
"""

from __future__ import annotations

import inspect
import os
import re

import pytest

import braintools_optim as bo
import test_convergence
import test_reference_formulas
import test_reference_optax
import test_reference_torch
from optim_db import ALL, OPTIM_DB, REFERENCE_KINDS, canonical, core, names

DOCS = os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, 'docs', 'optimizers.md')
TABLES = {'torch': test_reference_torch.REFERENCED, 'optax': test_reference_optax.REFERENCED,
          'formula': test_reference_formulas.REFERENCED}


def _exported():
    """Every exported optimizer name -> its object."""
    out = {}
    for name in bo.__all__:
        obj = getattr(bo, name)
        if inspect.isclass(obj) and issubclass(obj, bo.Optimizer) and obj is not bo.Optimizer:
            out[name] = obj
    for name in bo.optimizers.__all__:
        out[name] = getattr(bo.optimizers, name)
    return out


def _public_subclasses(cls):
    for sub in cls.__subclasses__():
        if sub.__module__.startswith('braintools_optim') and not sub.__name__.startswith('_'):
            yield sub
        yield from _public_subclasses(sub)


def test_every_exported_optimizer_is_in_the_registry():
    exported = _exported()
    missing = sorted(name for name in exported if not any(name == i.name or name in i.aliases for i in ALL))
    assert not missing, f'exported optimizers missing from tests/optim_db.py: {missing}'
    for name, obj in exported.items():
        assert obj is OPTIM_DB[canonical(name)].cls, f'{name} is not the class of its registry row'
    for info in ALL:
        assert info.name in exported and exported[info.name] is info.cls, f'{info.name} is not exported'
        for alias in info.aliases:
            assert exported.get(alias) is info.cls, f'alias {alias} is not exported as {info.name}'


def test_every_public_optimizer_class_is_exported():
    exported = set(_exported().values())
    hidden = sorted({cls.__name__ for cls in _public_subclasses(bo.Optimizer)} -
                    {cls.__name__ for cls in exported})
    assert not hidden, f'Optimizer subclasses that braintools_optim does not export: {hidden}'


@pytest.mark.parametrize('info', ALL, ids=names(ALL))
def test_registry_row_agrees_with_its_class(info):
    opt = info.make()
    assert type(opt) is info.cls
    assert core(info.make(skip_nonfinite=True)).skip_nonfinite is True      # engine options pass through
    assert info.wrapper == (not issubclass(info.cls, bo.Optimizer))
    if info.wrapper:
        assert info.decay is None and not info.elementwise and info.fused_layout == 'per-parameter'
        return
    cls = info.cls
    assert info.elementwise == cls.is_elementwise()
    assert info.fused_layout == (cls.fused_layout() or 'per-parameter')
    assert info.decay == cls.weight_decay_mode
    assert info.cycles_momentum == (cls.cycle_error(cls.default_settings()) is None)


@pytest.mark.parametrize('kind', REFERENCE_KINDS)
def test_reference_tables_cover_exactly_what_the_registry_claims(kind):
    table = TABLES[kind]
    assert all(cases for cases in table.values())
    unknown = sorted(set(table) - set(OPTIM_DB))
    assert not unknown, f'{kind} reference cases for optimizers not in the registry: {unknown}'
    claimed = {info.name for info in ALL if kind in info.references}
    unclaimed = sorted(set(table) - claimed)
    assert not unclaimed, f'optim_db rows should list {kind!r} in references: {unclaimed}'
    uncovered = sorted(claimed - set(table))
    assert not uncovered, f'optim_db claims a {kind} reference the {kind} tests do not have: {uncovered}'


@pytest.mark.parametrize('info', ALL, ids=names(ALL))
def test_every_optimizer_has_a_reference_or_says_why_not(info):
    assert set(info.references) <= set(REFERENCE_KINDS)
    if info.references:
        assert info.no_reference is None, 'a row with references needs no excuse'
    else:
        assert info.no_reference and len(info.no_reference.split()) >= 5, \
            f'{info.name}: no reference and no documented reason (OptimInfo.no_reference)'


def test_every_optimizer_is_in_the_convergence_suite():
    runs = [param.values[0].name for param in test_convergence._runs()]
    missing = sorted(set(OPTIM_DB) - set(runs))
    assert not missing, f'optimizers without a convergence run: {missing}'
    for info in ALL:
        assert info.convergence, info.name
        variants = [run.variant for run in info.convergence]
        assert len(set(variants)) == len(variants), f'{info.name}: convergence runs need distinct variants'
        for run in info.convergence:
            assert run.steps > 0 and run.lr > 0


def _documented():
    """The exported names in the first column of docs/optimizers.md's catalog table."""
    with open(DOCS, encoding='utf-8') as f:
        lines = f.read().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith('| optimizer |'))
    names_found = []
    for line in lines[start + 2:]:
        if not line.startswith('|'):
            break
        first_cell = line.split('|')[1]
        names_found += re.findall(r'`([A-Za-z_][A-Za-z0-9_]*)', first_cell)
    return names_found


def test_every_optimizer_is_in_the_documented_catalog():
    documented = _documented()
    exported = _exported()
    stale = sorted(name for name in documented if name not in exported)
    assert not stale, f'docs/optimizers.md lists names that are not exported optimizers: {stale}'
    covered = {canonical(name) for name in documented}
    missing = sorted(set(OPTIM_DB) - covered)
    assert not missing, f'optimizers missing from the table of docs/optimizers.md: {missing}'


def test_completeness_checks_would_notice_a_missing_row(monkeypatch):
    """The checks above are not vacuous: hiding one row makes them fail."""
    hidden = OPTIM_DB['Yogi']
    others = [info for info in ALL if info is not hidden]
    monkeypatch.setattr('optim_db.ALL', others)
    monkeypatch.setattr(__import__(__name__), 'ALL', others)
    with pytest.raises(AssertionError, match='Yogi'):
        test_every_exported_optimizer_is_in_the_registry()
    with pytest.raises(AssertionError, match='Yogi'):
        test_reference_tables_cover_exactly_what_the_registry_claims('optax')
