"""Portable, atomic checkpoint files for nested dicts of arrays.

:func:`save` writes a nested structure of dicts, lists, strings, numbers,
``None`` and arrays (an optimizer's ``state_dict()``, or a model's parameter
values) to one ``.npz`` file: the arrays as plain ``.npy`` members, the
structure as JSON. Nothing is pickled, so a checkpoint can be read by any NumPy
and never executes code when loaded. The write goes to a temporary file in the
same directory, is flushed to disk, then renamed over the target: a crash
mid-save leaves the previous checkpoint intact.

>>> import os, tempfile, numpy as np
>>> path = os.path.join(tempfile.mkdtemp(), 'ckpt.npz')
>>> save(path, {'step': np.int32(3), 'moments': {'w': np.ones(2, np.float32)}, 'note': None})
>>> restored = load(path)
>>> int(restored['step']), restored['moments']['w'].tolist(), restored['note']
(3, [1.0, 1.0], None)
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any, Dict, List

import jax
import numpy as np

FORMAT = 'braintools_optim.checkpoint'
FORMAT_VERSION = 1
_META = '__structure__'


def _encode(tree: Any, arrays: List[np.ndarray]) -> Any:
    if isinstance(tree, dict):
        for key in tree:
            if not isinstance(key, str):
                raise TypeError(f"checkpoint dict keys must be strings, got {key!r}")
        return {key: _encode(value, arrays) for key, value in tree.items()}
    if isinstance(tree, (list, tuple)):
        return {'__list__': [_encode(value, arrays) for value in tree]}
    if tree is None or isinstance(tree, (bool, str)):
        return tree
    if isinstance(tree, (int, float)) and not isinstance(tree, bool):
        return {'__number__': tree}
    if hasattr(tree, 'mantissa') and hasattr(tree, 'unit'):
        raise TypeError("checkpoint.save stores plain arrays; save a Quantity as its mantissa "
                        "(and its unit in your own metadata)")
    if isinstance(tree, (np.ndarray, np.generic, jax.Array)):
        array = np.asarray(tree)
        arrays.append(array)
        return {'__array__': len(arrays) - 1, 'dtype': array.dtype.name}
    raise TypeError(f"checkpoint.save cannot store a {type(tree).__name__}")


def _decode(tree: Any, arrays: Dict[str, np.ndarray]) -> Any:
    if isinstance(tree, dict):
        if '__array__' in tree:
            raw = arrays[f"a{tree['__array__']}"]
            dtype = _dtype(tree['dtype'])
            return raw.view(dtype) if raw.dtype != dtype else raw
        if '__list__' in tree:
            return [_decode(value, arrays) for value in tree['__list__']]
        if '__number__' in tree:
            return tree['__number__']
        return {key: _decode(value, arrays) for key, value in tree.items()}
    return tree


def _dtype(name: str) -> np.dtype:
    try:
        return np.dtype(name)
    except TypeError:
        return np.dtype(getattr(jax.numpy, name))     # bfloat16 and other ml_dtypes


def _storable(array: np.ndarray) -> np.ndarray:
    """ml_dtypes (bfloat16, ...) are stored as same-size unsigned integers, to load without pickle."""
    if array.dtype.kind == 'V' or array.dtype.name not in np.sctypeDict:
        return array.view(f'u{array.dtype.itemsize}')
    return array


def save(path: str, tree: Any) -> None:
    """Write ``tree`` to ``path`` (``.npz``) atomically; see the module docstring."""
    arrays: List[np.ndarray] = []
    structure = {'format': FORMAT, 'version': FORMAT_VERSION, 'tree': _encode(tree, arrays)}
    members = {f'a{i}': _storable(array) for i, array in enumerate(arrays)}
    members[_META] = np.frombuffer(json.dumps(structure).encode('utf-8'), dtype=np.uint8)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix='.tmp-', suffix='.npz', dir=directory)
    try:
        with os.fdopen(handle, 'wb') as stream:
            np.savez(stream, **members)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def load(path: str) -> Any:
    """Read a tree written by :func:`save` (arrays come back as NumPy arrays)."""
    with np.load(path, allow_pickle=False) as archive:
        if _META not in archive.files:
            raise ValueError(f"{path} is not a braintools_optim checkpoint (no structure record)")
        structure = json.loads(archive[_META].tobytes().decode('utf-8'))
        if structure.get('format') != FORMAT:
            raise ValueError(f"{path} is not a braintools_optim checkpoint")
        if structure.get('version') != FORMAT_VERSION:
            raise ValueError(f"{path} has checkpoint format version {structure.get('version')}; "
                             f"this braintools_optim reads version {FORMAT_VERSION}")
        arrays = {name: archive[name] for name in archive.files if name != _META}
    return _decode(structure['tree'], arrays)
