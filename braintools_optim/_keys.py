"""How parameters are named: keys as the user gave them, shown and stored without ambiguity.

A parameter is identified by the key its ``ParamState`` was registered under
(``'w'``, ``('layer', 'weight')``, ``3``: exactly as given) plus, for a State
holding a pytree (``brainstate.nn.Linear`` keeps ``{'weight': W, 'bias': b}``),
the path of the leaf inside it. Three spellings of that identity are needed:

* :func:`describe` — for messages: ``'w'``, ``('layer', 'weight')``,
  ``'l1'['bias']``; ``repr`` of the key, so ``'a/b'`` and ``('a', 'b')`` never
  look alike;
* :func:`encode` — the string a checkpoint stores; the same text as
  :func:`describe`, which is injective: ``repr`` of a key is one complete Python
  literal, and the leaf path that may follow it is a sequence of ``[...]`` or
  ``.name`` parts;
* :func:`dotted` — what path selectors (globs, regular expressions) match:
  ``'layer.weight'``, ``'l1.bias'``, ``'w'``; not injective, and never used as an
  identity.

>>> describe(('layer', 'weight')), describe('a/b'), describe(('a', 'b'))
("('layer', 'weight')", "'a/b'", "('a', 'b')")
>>> dotted(('layers', 0, 'w'), ('bias',))
'layers.0.w.bias'
>>> encode('l1', ('bias',))
"'l1'['bias']"
"""

from __future__ import annotations

from typing import Any, Hashable, Tuple

#: the path of an array inside a pytree-valued ParamState; ``()`` for a State holding one array
LeafPath = Tuple[Hashable, ...]


def _leaf_suffix(leaf_path: LeafPath) -> str:
    return ''.join(f'[{part!r}]' for part in leaf_path)


def describe(key: Any, leaf_path: LeafPath = ()) -> str:
    """The unambiguous display form of a parameter: ``repr`` of its key, then its leaf path."""
    return repr(key) + _leaf_suffix(leaf_path)


def encode(key: Any, leaf_path: LeafPath = ()) -> str:
    """The checkpoint form of a parameter's identity (injective; see the module docstring)."""
    return describe(key, leaf_path)


def dotted(key: Any, leaf_path: LeafPath = ()) -> str:
    """The dotted path selectors match against: ``('layer', 'tau')`` -> ``'layer.tau'``."""
    parts = (key if isinstance(key, tuple) else (key,)) + tuple(leaf_path)
    return '.'.join(str(part) for part in parts)


def legacy_encode(key: Any, leaf_path: LeafPath = ()) -> str:
    """The key of format-1 checkpoints: every part joined by ``'/'`` (not injective)."""
    parts = (key if isinstance(key, tuple) else (key,)) + tuple(leaf_path)
    return '/'.join(str(part) for part in parts)
