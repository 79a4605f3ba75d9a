"""Portable, atomic checkpoint files for nested structures of arrays.

:func:`save` writes a tree of dicts (string keys), lists, tuples, ``None``,
booleans, numbers, strings, NumPy/JAX arrays and ``brainunit`` Quantities (an
optimizer's ``state_dict()``, a model's parameter values) to one ``.npz`` file:
every array is a plain ``.npy`` member, the structure is a JSON record.
:func:`load` gives the tree back exactly: same containers (a tuple stays a
tuple), same dtypes (bfloat16, float16 and the other ``ml_dtypes`` included),
same shapes (0-d included), the same bits, Quantities in the same unit. JAX
arrays come back as NumPy arrays.

Nothing is pickled, ever: a checkpoint can be read by any NumPy and loading one
never executes code. A value that cannot be stored that way (an object array
such as ``np.asarray`` of a dict, a string array, a set, a brainstate ``State``
itself, a traced value inside ``jit``, ...) raises ``TypeError`` naming where
it is in the tree, before any file is touched.

Writing is atomic: the file is written to a hidden temporary file in the
target's directory, flushed and ``fsync``-ed, renamed over the target, and the
directory is ``fsync``-ed (where the OS allows it). A crash or an error at any
point leaves the previous file as it was and no temporary file behind. The
file replaced keeps its permission bits (and owner, where allowed); a new file
gets the permissions a plain ``open(path, 'wb')`` would give it (``0o666``
less the umask). A symbolic link is kept: the file it points to is replaced.

A file that is empty, truncated, damaged, not an ``.npz`` archive, or an
``.npz`` written by something else makes :func:`load` raise
:class:`CheckpointError` (a ``ValueError``) naming the file and the problem.

For a model's :class:`brainstate.State` objects (``model.states()``), use
:func:`save_states` / :func:`load_states` (or :func:`state_values` /
:func:`restore_states` to combine them with other things in one file): they
check names, structures, shapes, dtypes and units before writing anything.

>>> import os, tempfile, numpy as np, brainunit as u
>>> path = os.path.join(tempfile.mkdtemp(), 'ckpt.npz')
>>> save(path, {'step': np.int32(3), 'moments': {'w': np.ones(2, np.float32)},
...             'tau': np.array([5.0, 8.0]) * u.ms, 'shape': (2, 3), 'note': None})
>>> restored = load(path)
>>> int(restored['step']), restored['moments']['w'].tolist(), restored['shape'], restored['note']
(3, [1.0, 1.0], (2, 3), None)
>>> restored['tau'].unit == u.ms, restored['tau'].mantissa.tolist()
(True, [5.0, 8.0])

File layout (format version 2): members ``a0.npy``, ``a1.npy``, ... hold the
arrays (a dtype NumPy cannot name, such as bfloat16, as the unsigned integers
of the same width); ``__structure__.npy`` holds UTF-8 JSON
``{"format": "braintools_optim.checkpoint", "version": 2, "tree": node}``
where a node is ``null``, ``true``/``false``, a string, or an object with one
tag: ``{"__dict__": {key: node}}``, ``{"__list__": [node]}``,
``{"__tuple__": [node]}``, ``{"__number__": n}``,
``{"__array__": i, "dtype": name, "shape": [..], "scalar": bool}`` or
``{"__quantity__": node, "unit": text, "dim": [7 SI exponents], "scale": s,
"base": b, "factor": f}``. Version 1 files (written before tuples and
Quantities could be stored) are still read.
"""

from __future__ import annotations

import errno
import json
import os
import secrets
import stat
import zipfile
from typing import Any, Dict, List, Mapping, Tuple

import brainstate
import brainunit as u
import jax
import numpy as np

__all__ = ['CheckpointError', 'FORMAT', 'FORMAT_VERSION', 'load', 'load_states', 'restore_states', 'save',
           'save_states', 'state_values']

FORMAT = 'braintools_optim.checkpoint'
FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
_META = '__structure__'
_SI_BASE = ('m', 'kg', 's', 'A', 'K', 'mol', 'cd')       # order of the "dim" exponents in a unit record


class CheckpointError(ValueError):
    """A checkpoint file that cannot be read, or does not fit what it is loaded into.

    ``path`` is the file; the message says what is wrong with it.
    """

    def __init__(self, path: Any, problem: str):
        self.path = path
        self.problem = problem
        super().__init__(f"checkpoint {str(path)!r}: {problem}")


class _Damaged(Exception):
    """Raised while decoding; :func:`load` turns it into a :class:`CheckpointError` with the path."""


def _where(parts: Tuple) -> str:
    return 'the top level' if not parts else ''.join(f'[{part!r}]' for part in parts)


# --------------------------------------------------------------------------- dtypes

def _is_ml_dtype(dtype: np.dtype) -> bool:
    """bfloat16, float8_*, int4, ...: dtypes from ``ml_dtypes`` that a ``.npy`` header cannot name."""
    return dtype.type.__module__.split('.')[0] == 'ml_dtypes'


def _is_plain_numeric(dtype: np.dtype) -> bool:
    return (dtype.kind in 'biufc' and dtype.type.__module__ == 'numpy'
            and dtype.fields is None and dtype.subdtype is None)


def _storable_dtype(dtype: np.dtype) -> bool:
    return _is_plain_numeric(dtype) or _is_ml_dtype(dtype)


def _dtype_named(name: Any) -> np.dtype:
    """The dtype a structure record names, or ``_Damaged``; only storable dtypes are accepted."""
    dtype = None
    if isinstance(name, str):
        try:
            dtype = np.dtype(name)
        except TypeError:
            scalar_type = getattr(jax.numpy, name, None)   # an ml_dtype that NumPy does not know by name
            try:
                dtype = None if scalar_type is None else np.dtype(scalar_type)
            except TypeError:
                dtype = None
    if dtype is None or not _storable_dtype(dtype):
        raise _Damaged(f"its structure names an unknown or unstorable dtype {name!r}")
    return dtype


# --------------------------------------------------------------------------- units

def _unit_record(unit: u.Unit, where: Tuple) -> Dict[str, Any]:
    dims = [unit.dim.get_dimension(name) for name in _SI_BASE]
    record = {'unit': str(unit),
              'dim': [int(d) if float(d).is_integer() else float(d) for d in dims],
              'scale': _plain(unit.scale), 'base': _plain(unit.base), 'factor': _plain(unit.factor)}
    try:
        exact = _unit_from_record(record) == unit
    except Exception:                                   # noqa: BLE001 - any failure means "not representable"
        exact = False
    if not exact:
        raise TypeError(f"checkpoint.save cannot store the unit {unit!r} at {_where(where)} exactly")
    return record


def _plain(number: Any) -> Any:
    """A Python int or float for JSON (units may hold NumPy scalars)."""
    return number.item() if isinstance(number, np.generic) else number


def _unit_from_record(record: Dict[str, Any]) -> u.Unit:
    """The unit a record describes: brainunit's parse of its text when that gives the same unit shown the same
    way (``'1 / ms'`` parses to an equal ``kHz``), else the unit built from its parts, shown as its text."""
    built = u.Unit(u.get_or_create_dimension([float(d) for d in record['dim']]), scale=record['scale'],
                   base=record['base'], factor=record['factor'], name=record['unit'], dispname=record['unit'])
    parse = getattr(u, 'parse_unit', None)
    if parse is not None:
        try:
            parsed = parse(record['unit'])
        except ValueError:
            parsed = None
        if parsed is not None and parsed == built and str(parsed) == record['unit']:
            return parsed                               # the registered unit, as it was displayed
    return built


# --------------------------------------------------------------------------- encoding (save)

class _Encoder:
    """Turns a tree into a JSON-able structure plus a list of arrays, or raises ``TypeError``."""

    def __init__(self):
        self.arrays: List[np.ndarray] = []
        self._open: set = set()          # ids of the containers being encoded, to refuse cycles

    def node(self, tree: Any, where: Tuple) -> Any:
        if tree is None or isinstance(tree, (bool, str)):
            return str(tree) if isinstance(tree, str) else tree
        if isinstance(tree, u.Quantity):
            return {'__quantity__': self._mantissa(tree.mantissa, where), **_unit_record(tree.unit, where)}
        if isinstance(tree, (np.ndarray, np.generic, jax.Array)):
            return self._array(tree, where)
        if isinstance(tree, (int, float)):
            return {'__number__': int(tree) if isinstance(tree, int) else float(tree)}
        if isinstance(tree, dict) or (type(tree) in (list, tuple)):
            return self._container(tree, where)
        raise TypeError(self._refusal(tree, where))

    def _container(self, tree, where: Tuple) -> Dict[str, Any]:
        if id(tree) in self._open:
            raise TypeError(f"checkpoint.save: the {type(tree).__name__} at {_where(where)} is one of its own "
                            f"containers (a cycle)")
        self._open.add(id(tree))
        try:
            if isinstance(tree, dict):
                for key in tree:
                    if not isinstance(key, str):
                        raise TypeError(f"checkpoint.save: dict keys must be strings; the dict at {_where(where)} "
                                        f"has the key {key!r} (for a model's states use save_states)")
                return {'__dict__': {str(key): self.node(value, where + (str(key),))
                                     for key, value in tree.items()}}
            tag = '__list__' if isinstance(tree, list) else '__tuple__'
            return {tag: [self.node(value, where + (i,)) for i, value in enumerate(tree)]}
        finally:
            self._open.discard(id(tree))

    def _mantissa(self, mantissa: Any, where: Tuple) -> Dict[str, Any]:
        if isinstance(mantissa, (int, float)) and not isinstance(mantissa, bool):
            return {'__number__': mantissa}
        if isinstance(mantissa, (np.ndarray, np.generic, jax.Array)):
            return self._array(mantissa, where)
        raise TypeError(f"checkpoint.save cannot store a Quantity whose mantissa is a "
                        f"{type(mantissa).__name__} (at {_where(where)})")

    def _array(self, value: Any, where: Tuple) -> Dict[str, Any]:
        try:
            array = np.asarray(value)
        except Exception as err:                        # noqa: BLE001 - tracers, key arrays, deleted buffers
            raise TypeError(f"checkpoint.save cannot copy the {type(value).__name__} at {_where(where)} to the "
                            f"host ({type(err).__name__}); save concrete values, outside jit") from err
        if not _storable_dtype(array.dtype):
            hint = (' (np.asarray of a dict or list gives one: save the dict or list itself)'
                    if array.dtype.kind == 'O' else '')
            raise TypeError(f"checkpoint.save stores arrays of numeric dtypes only; the array at {_where(where)} "
                            f"has dtype {array.dtype}{hint}")
        self.arrays.append(array)
        record = {'__array__': len(self.arrays) - 1, 'dtype': array.dtype.name, 'shape': list(array.shape)}
        if isinstance(value, np.generic):
            record['scalar'] = True
        return record

    @staticmethod
    def _refusal(tree: Any, where: Tuple) -> str:
        if isinstance(tree, brainstate.State):
            hint = '; save its .value, or use checkpoint.save_states for a dict of States'
        elif isinstance(tree, tuple):
            hint = '; a named tuple would come back as a plain tuple: save tuple(x) or a dict'
        elif isinstance(tree, u.Unit):
            hint = '; a Unit on its own is not stored: save a Quantity, or str(unit)'
        else:
            hint = ('; storable are dicts with string keys, lists, tuples, None, bool, int, float, str, '
                    'numeric NumPy/JAX arrays and brainunit Quantities')
        return f"checkpoint.save cannot store a {type(tree).__module__}.{type(tree).__name__} at {_where(where)}{hint}"


def _member_array(array: np.ndarray) -> np.ndarray:
    """What goes into the ``.npy`` member: ml_dtypes as unsigned integers of the same width."""
    return array.view(f'u{array.dtype.itemsize}') if _is_ml_dtype(array.dtype) else array


# --------------------------------------------------------------------------- atomic write

def _fsync_directory(directory: str) -> None:
    """Make a rename in ``directory`` durable; a no-op where directories cannot be opened or synced."""
    if not hasattr(os, 'O_DIRECTORY'):                  # e.g. Windows
        return
    try:
        handle = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    except (PermissionError, FileNotFoundError):
        return
    try:
        os.fsync(handle)
    except OSError as err:
        if err.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EBADF):
            raise
    finally:
        os.close(handle)


def _create_temporary(directory: str, name: str) -> Tuple[int, str]:
    """A new, exclusive file next to the target, created with mode 0o666 so the umask applies as for open()."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, 'O_BINARY', 0)
    for _ in range(100):
        temporary = os.path.join(directory, f'.{name}.{secrets.token_hex(6)}.tmp')
        try:
            return os.open(temporary, flags, 0o666), temporary
        except FileExistsError:
            continue
    raise FileExistsError(errno.EEXIST, 'could not create a unique temporary file', directory)


def _copy_metadata(handle: int, temporary: str, target: str) -> None:
    """Give the new file the permission bits (and, where allowed, owner) of the file it replaces."""
    try:
        old = os.stat(target)
    except FileNotFoundError:
        return                                          # new file: mode from the umask, like open()
    mode = stat.S_IMODE(old.st_mode)
    if hasattr(os, 'fchmod'):
        os.fchmod(handle, mode)
    else:
        os.chmod(temporary, mode)
    if hasattr(os, 'fchown'):
        new = os.fstat(handle)
        if (new.st_uid, new.st_gid) != (old.st_uid, old.st_gid):
            try:
                os.fchown(handle, old.st_uid, old.st_gid)
            except PermissionError:
                pass                                    # only the owner's choice of group, or root, may do it


def save(path: str, tree: Any) -> None:
    """Write ``tree`` to ``path`` atomically, as described in the module docstring.

    ``path`` is used as given (no ``.npz`` is appended); missing parent
    directories are created; a symbolic link is followed and kept. Raises
    ``TypeError`` for a value that cannot be stored, before any file is
    touched; on any error the previous file is left intact.
    """
    path = os.fsdecode(path)
    if not path:
        raise FileNotFoundError(errno.ENOENT, 'checkpoint.save needs a file path', path)
    if path.endswith(('/', os.sep)):
        raise IsADirectoryError(errno.EISDIR, 'checkpoint.save needs a file path, not a directory', path)
    encoder = _Encoder()
    structure = {'format': FORMAT, 'version': FORMAT_VERSION, 'tree': encoder.node(tree, ())}
    members = {f'a{i}': _member_array(array) for i, array in enumerate(encoder.arrays)}
    members[_META] = np.frombuffer(json.dumps(structure, ensure_ascii=False).encode('utf-8'), dtype=np.uint8)

    target = os.path.realpath(path)                     # write through a symbolic link, keeping it
    directory, name = os.path.split(target)
    os.makedirs(directory, exist_ok=True)
    handle, temporary = _create_temporary(directory, name)
    try:
        try:
            _copy_metadata(handle, temporary, target)
            stream = os.fdopen(handle, 'wb')
        except BaseException:
            os.close(handle)
            raise
        with stream:
            np.savez(stream, **members)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, target)
    except BaseException:
        try:
            os.remove(temporary)
        except FileNotFoundError:
            pass
        raise
    _fsync_directory(directory)


# --------------------------------------------------------------------------- reading (load)

class _Archive:
    """The members of an open ``.npz`` archive, read one at a time and only when the structure asks."""

    def __init__(self, archive: zipfile.ZipFile):
        self._archive = archive
        self.names = set(archive.namelist())

    def read(self, member: str) -> np.ndarray:
        with self._archive.open(member) as stream:
            try:
                version = np.lib.format.read_magic(stream)
                if version not in ((1, 0), (2, 0)):
                    raise _Damaged(f"member {member!r} uses .npy format {version}, which checkpoints never use")
                read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                               else np.lib.format.read_array_header_2_0)
                header = read_header(stream)
            except ValueError as err:                   # numpy's text may advise allow_pickle: not ours to give
                raise _Damaged(f"member {member!r} has a damaged .npy header") from err
            if header[2].hasobject:
                raise _Damaged(f"member {member!r} holds pickled Python objects, which checkpoints never contain")
        with self._archive.open(member) as stream:
            array = np.lib.format.read_array(stream, allow_pickle=False)
            if stream.read(1):
                raise _Damaged(f"member {member!r} has data after its array")
        return array

    def array(self, record: Dict[str, Any], where: Tuple, version: int) -> Any:
        index = record.get('__array__')
        member = f'a{index}.npy'
        if not isinstance(index, int) or isinstance(index, bool) or member not in self.names:
            raise _Damaged(f"its structure refers to array {index!r} at {_where(where)}, which the file does not hold")
        raw = self.read(member)
        dtype = _dtype_named(record.get('dtype'))
        if _is_ml_dtype(dtype):
            if raw.dtype.kind != 'u' or raw.dtype.itemsize != dtype.itemsize:
                raise _Damaged(f"array at {_where(where)} should be {dtype.name} but is stored as {raw.dtype}")
            array = raw.view(dtype)
        elif raw.dtype.name != dtype.name:
            raise _Damaged(f"array at {_where(where)} should be {dtype.name} but is stored as {raw.dtype}")
        else:
            array = raw
        if version >= 2:
            if record.get('shape') != list(array.shape):
                raise _Damaged(f"array at {_where(where)} should have shape {record.get('shape')}, "
                               f"the file holds {list(array.shape)}")
            if record.get('scalar'):
                return array[()]
        return array


def _decode_v2(node: Any, archive: _Archive, where: Tuple) -> Any:
    if node is None or isinstance(node, (bool, str)):
        return node
    if isinstance(node, dict):
        if '__dict__' in node and isinstance(node['__dict__'], dict):
            return {key: _decode_v2(value, archive, where + (key,)) for key, value in node['__dict__'].items()}
        if '__list__' in node and isinstance(node['__list__'], list):
            return [_decode_v2(value, archive, where + (i,)) for i, value in enumerate(node['__list__'])]
        if '__tuple__' in node and isinstance(node['__tuple__'], list):
            return tuple(_decode_v2(value, archive, where + (i,)) for i, value in enumerate(node['__tuple__']))
        if '__number__' in node and _is_number(node['__number__']):
            return node['__number__']
        if '__array__' in node:
            return archive.array(node, where, 2)
        if '__quantity__' in node:
            mantissa = _decode_v2(node['__quantity__'], archive, where)
            if not (_is_number(mantissa) or isinstance(mantissa, (np.ndarray, np.generic))):
                raise _Damaged(f"the Quantity at {_where(where)} has no numeric mantissa")
            try:
                unit = _unit_from_record(node)
            except Exception as err:                    # noqa: BLE001 - a damaged record, whatever fails
                raise _Damaged(f"the unit record at {_where(where)} is damaged ({err})") from err
            return u.Quantity(mantissa, unit=unit)
    raise _Damaged(f"its structure has an unknown entry at {_where(where)}: {str(node)[:80]}")


def _decode_v1(node: Any, archive: _Archive, where: Tuple) -> Any:
    """Format 1: plain JSON objects are dicts; lists and tuples were both stored as ``__list__``."""
    if isinstance(node, dict):
        if '__array__' in node:
            return archive.array(node, where, 1)
        if '__list__' in node:
            return [_decode_v1(value, archive, where + (i,)) for i, value in enumerate(node['__list__'])]
        if '__number__' in node:
            return node['__number__']
        return {key: _decode_v1(value, archive, where + (key,)) for key, value in node.items()}
    if isinstance(node, list):
        raise _Damaged(f"its structure has a bare list at {_where(where)}")
    return node


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _read(stream) -> Any:
    """The tree in an open checkpoint file; raises ``_Damaged`` (or whatever zipfile/NumPy raise) if damaged."""
    head = stream.read(8)
    if not head:
        raise _Damaged("the file is empty (0 bytes)")
    if not head.startswith(b'PK\x03\x04'):
        kind = 'a single .npy array' if head.startswith(b'\x93NUMPY') else f'starts with {head!r}'
        raise _Damaged(f"not an .npz archive ({kind})")
    stream.seek(0)
    try:
        zipped = zipfile.ZipFile(stream)
    except zipfile.BadZipFile as err:
        raise _Damaged(f"the .npz archive is truncated or damaged ({err})") from err
    with zipped:
        archive = _Archive(zipped)
        if f'{_META}.npy' not in archive.names:
            members = sorted(archive.names)
            raise _Damaged(f"an .npz archive with no {_META} record, so not a braintools_optim checkpoint "
                           f"(members: {members[:5]}{' ...' if len(members) > 5 else ''})")
        record = archive.read(f'{_META}.npy')
        if record.dtype != np.uint8 or record.ndim != 1:
            raise _Damaged(f"its {_META} record is not UTF-8 JSON bytes")
        try:
            structure = json.loads(record.tobytes().decode('utf-8'))
        except ValueError as err:                       # UnicodeDecodeError and JSONDecodeError
            raise _Damaged(f"its {_META} record is not valid UTF-8 JSON ({err})") from err
        if not isinstance(structure, dict) or structure.get('format') != FORMAT or 'tree' not in structure:
            raise _Damaged("an .npz archive whose structure record is not a braintools_optim checkpoint's")
        version = structure.get('version')
        if type(version) is not int or version not in READABLE_VERSIONS:
            newer = ' (written by a newer braintools_optim)' if _is_number(version) and version > FORMAT_VERSION else ''
            raise _Damaged(f"checkpoint format version {version!r}{newer}; this braintools_optim reads versions "
                           f"{list(READABLE_VERSIONS)}")
        decode = _decode_v1 if version == 1 else _decode_v2
        return decode(structure['tree'], archive, ())


def load(path: str) -> Any:
    """Read a tree written by :func:`save` (format version 1 or 2); arrays come back as NumPy arrays.

    Raises :class:`CheckpointError` naming ``path`` if the file is empty,
    truncated, damaged, not an ``.npz`` archive, or not a braintools_optim
    checkpoint; ``OSError`` if it cannot be opened (missing, not permitted).
    """
    path = os.fsdecode(path)
    with open(path, 'rb') as stream:
        try:
            return _read(stream)
        except _Damaged as err:
            raise CheckpointError(path, str(err)) from err
        except MemoryError:
            raise
        except Exception as err:                        # noqa: BLE001 - zip/npy/OS errors inside a damaged file
            detail = f"{type(err).__name__}: {err}" if 'pickle' not in str(err) else type(err).__name__
            raise CheckpointError(path, f"the file is damaged or truncated ({detail})") from err


# --------------------------------------------------------------------------- brainstate States

def _state_names(states: Mapping) -> Dict[str, Any]:
    """``{'layer/weight': state}`` from a dict keyed by path tuples (``model.states()``) or by strings."""
    if not isinstance(states, Mapping):
        raise TypeError(f"expected a dict of brainstate States (e.g. model.states()), got {type(states).__name__}")
    named: Dict[str, Any] = {}
    for key, state in states.items():
        if not isinstance(state, brainstate.State):
            raise TypeError(f"{key!r} is a {type(state).__name__}, not a brainstate State")
        name = '/'.join(str(part) for part in key) if isinstance(key, tuple) else str(key)
        if name in named:
            raise ValueError(f"two states are both named {name!r} once their keys are joined with '/'")
        named[name] = state
    return named


def _leaf(x: Any) -> bool:
    return isinstance(x, u.Quantity)


def _host_copy(value: Any) -> Any:
    if isinstance(value, u.Quantity):
        return u.Quantity(_host_copy(value.mantissa), unit=value.unit)
    if isinstance(value, (jax.Array, np.ndarray)):
        return np.array(value)
    return value


def state_values(states: Mapping) -> Dict[str, Any]:
    """Host (NumPy) copies of the States' values, keyed ``'layer/weight'``, ready for :func:`save`.

    ``states`` is a dict of :class:`brainstate.State` (``model.states(brainstate.ParamState)``,
    keyed by path tuples, or any string-keyed dict). Values that are pytrees
    (a ``brainstate.nn.Linear`` keeps ``{'weight': W, 'bias': b}`` in one State)
    keep their structure; Quantities keep their unit.
    """
    return {name: jax.tree.map(_host_copy, state.value, is_leaf=_leaf)
            for name, state in _state_names(states).items()}


def _describe(leaf: Any) -> str:
    mantissa, unit = (leaf.mantissa, leaf.unit) if isinstance(leaf, u.Quantity) else (leaf, None)
    shape, dtype = (mantissa.shape, mantissa.dtype) if hasattr(mantissa, 'dtype') else ((), type(mantissa).__name__)
    return f"{dtype}{list(shape)}" + ('' if unit is None else f" in {unit}")


def _fitted_leaf(saved: Any, current: Any, where: str) -> Any:
    """``saved`` in the form of ``current`` (array type, placement, unit object), or ``ValueError``."""
    current_mantissa, current_unit = ((current.mantissa, current.unit) if isinstance(current, u.Quantity)
                                      else (current, None))
    saved_mantissa, saved_unit = (saved.mantissa, saved.unit) if isinstance(saved, u.Quantity) else (saved, None)
    units_fit = (saved_unit is None) == (current_unit is None) and (current_unit is None or saved_unit == current_unit)
    if isinstance(current_mantissa, (int, float, bool)):
        values_fit = type(saved_mantissa) is type(current_mantissa)
    else:
        values_fit = (hasattr(saved_mantissa, 'dtype') and np.dtype(saved_mantissa.dtype) == current_mantissa.dtype
                      and tuple(np.shape(saved_mantissa)) == tuple(current_mantissa.shape))
    if not (units_fit and values_fit):
        raise ValueError(f"{where} is {_describe(saved)} in the checkpoint, {_describe(current)} in the model")
    if isinstance(current_mantissa, jax.Array):
        mantissa = jax.device_put(np.asarray(saved_mantissa), current_mantissa.sharding)
    else:
        mantissa = saved_mantissa
    return mantissa if current_unit is None else u.Quantity(mantissa, unit=current_unit)


def _fitted_value(saved: Any, current: Any, name: str) -> Any:
    current_leaves, treedef = jax.tree_util.tree_flatten_with_path(current, is_leaf=_leaf)
    saved_leaves, _ = jax.tree_util.tree_flatten_with_path(saved, is_leaf=_leaf)
    current_paths = [jax.tree_util.keystr(p) for p, _ in current_leaves]
    saved_paths = [jax.tree_util.keystr(p) for p, _ in saved_leaves]
    if current_paths != saved_paths:
        raise ValueError(f"state {name!r} has the entries {current_paths} in the model, {saved_paths} in the "
                         f"checkpoint")
    leaves = [_fitted_leaf(s, c, f"state {name!r}{p}")
              for p, (_, s), (_, c) in zip(current_paths, saved_leaves, current_leaves)]
    return jax.tree_util.tree_unflatten(treedef, leaves)


def restore_states(states: Mapping, values: Mapping, strict: bool = True) -> Dict[str, List[str]]:
    """Write :func:`state_values` output back into ``states``, after checking all of it.

    Every State's value must have the same structure (dict keys, list
    lengths), and every array the same shape, dtype and unit as the saved one;
    otherwise ``ValueError`` names the first difference and no State changes.
    Restored arrays are placed like the values they replace (same device or
    sharding). ``strict=False`` skips States the checkpoint lacks and ignores
    values it has for no State. Returns ``{'missing': [...], 'unexpected': [...]}``.
    """
    named = _state_names(states)
    if not isinstance(values, Mapping):
        raise ValueError(f"expected a dict of state values (from state_values or a states file), "
                         f"got {type(values).__name__}")
    missing = [name for name in named if name not in values]
    unexpected = [name for name in values if name not in named]
    if strict and (missing or unexpected):
        raise ValueError(f"the checkpoint's states differ from the model's: missing {missing}, unexpected "
                         f"{unexpected} (strict=False restores the ones both have)")
    fitted = {name: _fitted_value(values[name], state.value, name)
              for name, state in named.items() if name in values}
    for name, value in fitted.items():                  # everything fits: write
        named[name].value = value
    return {'missing': missing, 'unexpected': unexpected}


def save_states(path: str, states: Mapping) -> None:
    """:func:`save` the values of a dict of States (``model.states()``) to ``path``; see :func:`state_values`.

    >>> import os, tempfile, brainstate, jax.numpy as jnp
    >>> model = brainstate.nn.Linear(3, 2)
    >>> path = os.path.join(tempfile.mkdtemp(), 'model.npz')
    >>> save_states(path, model.states(brainstate.ParamState))
    >>> model.weight.value = {'weight': jnp.zeros((3, 2)), 'bias': jnp.zeros(2)}
    >>> load_states(path, model.states(brainstate.ParamState))
    {'missing': [], 'unexpected': []}
    >>> bool(jnp.any(model.weight.value['weight'] != 0))
    True
    """
    save(path, state_values(states))


def load_states(path: str, states: Mapping, strict: bool = True) -> Dict[str, List[str]]:
    """Restore a :func:`save_states` file into ``states``; see :func:`restore_states`.

    A file that does not fit raises :class:`CheckpointError` naming the file and
    the difference; no State changes then.
    """
    _state_names(states)                                # a bad `states` argument fails before the file is read
    values = load(path)
    try:
        return restore_states(states, values, strict=strict)
    except ValueError as err:
        raise CheckpointError(os.fsdecode(path), str(err)) from err
