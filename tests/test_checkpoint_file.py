"""The checkpoint file format (braintools_optim.checkpoint): exact round trips, refusals before any
write, clear errors for damaged files, atomic replacement that keeps mode / symlinks, format 1 files,
brainstate States, and the model-checkpoint recipe of docs/robust_training.md run as written."""

import collections
import errno
import json
import os
import pathlib
import re
import stat
import zipfile

import brainstate
import brainunit as u
import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from braintools_optim import checkpoint
from braintools_optim.checkpoint import CheckpointError

ROOT = pathlib.Path(__file__).resolve().parent.parent


def same_bits(a, b):
    """Same type, dtype, shape and bytes (NaN payloads and -0.0 included)."""
    return (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
            and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes())


def random_array(dtype, shape, seed=0):
    """Arbitrary bit patterns of ``dtype`` (NaNs, infinities, -0.0, subnormals); bool as 0/1."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    size = int(np.prod(shape))
    if dtype == np.bool_:
        return rng.integers(0, 2, size).astype(bool).reshape(shape)
    raw = rng.integers(0, 256, size * dtype.itemsize, dtype=np.uint8)
    if dtype.name in ('int4', 'uint4'):
        raw &= 0x0F if dtype.name == 'uint4' else 0x07
    return raw.view(dtype).reshape(shape)


def roundtrip(tmp_path, tree, name='c.npz'):
    path = str(tmp_path / name)
    checkpoint.save(path, tree)
    return checkpoint.load(path)


DTYPES = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64,
          np.float16, np.float32, np.float64, np.complex64, np.complex128, ml_dtypes.bfloat16,
          ml_dtypes.float8_e4m3fn, ml_dtypes.float8_e5m2, ml_dtypes.int4, ml_dtypes.uint4]
SHAPES = [(), (0,), (5,), (2, 0, 3), (2, 3, 4)]


# --------------------------------------------------------------------------- exact round trips

@pytest.mark.parametrize('dtype', DTYPES, ids=lambda d: np.dtype(d).name)
def test_every_dtype_and_shape_comes_back_bit_for_bit(tmp_path, dtype):
    tree = {f'{len(s)}d_{i}': random_array(dtype, s, seed=i) for i, s in enumerate(SHAPES)}
    tree['scalar'] = random_array(dtype, ())[()]                   # a NumPy scalar stays a scalar
    back = roundtrip(tmp_path, tree)
    assert list(back) == list(tree)
    for key in tree:
        assert same_bits(back[key], tree[key]), key


def test_special_float_values_and_byte_order_survive(tmp_path):
    floats = np.array([np.nan, -np.nan, np.inf, -np.inf, -0.0, 5e-324, np.finfo(np.float64).max])
    payload = np.array([0x7FF0000000000123], np.uint64).view(np.float64)     # NaN with a payload
    big_endian = (np.arange(4, dtype=np.float32) - 1.5).astype('>f4')
    fortran = np.asfortranarray(np.arange(6.0).reshape(2, 3))
    back = roundtrip(tmp_path, {'f': floats, 'payload': payload, 'be': big_endian, 'fortran': fortran})
    assert same_bits(back['f'], floats) and same_bits(back['payload'], payload)
    assert same_bits(back['be'], big_endian) and back['be'].dtype.str == '>f4'
    np.testing.assert_array_equal(back['fortran'], fortran)


def test_jax_arrays_come_back_as_numpy_with_their_dtype(tmp_path):
    tree = {'bf16': jnp.array([1.5, -2.0, 3.0], jnp.bfloat16), 'f16': jnp.ones((2, 2), jnp.float16),
            'i32': jnp.arange(3, dtype=jnp.int32), 'zero_d': jnp.float32(2.5)}
    back = roundtrip(tmp_path, tree)
    for key, value in tree.items():
        assert isinstance(back[key], np.ndarray)
        assert same_bits(back[key], np.asarray(value)), key


def test_containers_and_python_values_round_trip_exactly(tmp_path):
    tree = {
        'tuple': (1, (2.5, [3, None]), ()),
        'list': [[], {}, [True, False], 'text'],
        'numbers': [0, -7, 2 ** 80, 1.5, -0.0, float('inf'), 1e-320],
        'unicode τ': 'µs',
        'empty': {},
        # keys that format 1 used as markers are ordinary keys now
        '__array__': {'__list__': 1, '__number__': None, '__dict__': 'x', '__tuple__': [2]},
        'ordered': collections.OrderedDict(b=1, a=2),
    }
    back = roundtrip(tmp_path, tree)
    assert back['tuple'] == (1, (2.5, [3, None]), ()) and type(back['tuple'][1]) is tuple
    assert type(back['tuple'][1][1]) is list
    assert back['list'] == [[], {}, [True, False], 'text'] and back['list'][2][0] is True
    assert back['numbers'][:2] == [0, -7] and back['numbers'][2] == 2 ** 80
    assert [type(x) for x in back['numbers']] == [int, int, int, float, float, float, float]
    assert np.copysign(1.0, back['numbers'][4]) == -1.0 and back['numbers'][5] == float('inf')
    assert back['numbers'][6] == 1e-320
    assert back['unicode τ'] == 'µs' and back['empty'] == {}
    assert back['__array__'] == tree['__array__']
    assert back['ordered'] == {'b': 1, 'a': 2} and list(back['ordered']) == ['b', 'a']


def test_nan_python_float_round_trips(tmp_path):
    value = roundtrip(tmp_path, {'x': float('nan')})['x']
    assert isinstance(value, float) and value != value


@pytest.mark.parametrize('unit', [u.mV, u.ms ** -1, u.siemens / u.cm ** 2, u.nS, u.mV ** 0.5, u.kmh ** -1,
                                  u.kcal_per_h, u.radian, u.UNITLESS, u.mM, u.mV * u.nA],
                         ids=str)
def test_quantities_come_back_with_their_unit(tmp_path, unit):
    tree = {'f32': np.array([1.25, -3.0], np.float32) * unit,
            'bf16': u.Quantity(np.asarray(jnp.array([0.5, 2.0], jnp.bfloat16)), unit=unit),
            'jax0d': u.Quantity(jnp.float32(7.0), unit=unit),
            'python': u.Quantity(2.5, unit=unit)}
    back = roundtrip(tmp_path, tree)
    for key, value in tree.items():
        assert isinstance(back[key], u.Quantity), key
        assert back[key].unit == value.unit and str(back[key].unit) == str(value.unit), key
    assert same_bits(back['f32'].mantissa, np.asarray(tree['f32'].mantissa))
    assert same_bits(back['bf16'].mantissa, tree['bf16'].mantissa)
    assert same_bits(np.asarray(back['jax0d'].mantissa), np.asarray(tree['jax0d'].mantissa))
    assert back['python'].mantissa == 2.5 and isinstance(back['python'].mantissa, float)
    # a restored Quantity takes part in unit arithmetic like the original
    assert u.math.allclose(back['f32'] + tree['f32'], 2 * tree['f32'])


def test_a_linear_layers_dict_round_trips_and_its_object_array_is_refused(tmp_path):
    linear = brainstate.nn.Linear(3, 2)
    back = roundtrip(tmp_path, {'linear': linear.weight.value})
    for key in ('weight', 'bias'):
        assert same_bits(back['linear'][key], np.asarray(linear.weight.value[key]))
    with pytest.raises(TypeError, match=r"\['linear'\].*dtype object.*save the dict or list itself"):
        checkpoint.save(str(tmp_path / 'bad.npz'), {'linear': np.asarray(linear.weight.value)})
    assert not (tmp_path / 'bad.npz').exists()


def test_no_member_is_pickled_and_the_structure_is_json(tmp_path):
    path = str(tmp_path / 'c.npz')
    checkpoint.save(path, {'q': np.ones(2) * u.mV, 'b': jnp.ones(2, jnp.bfloat16), 't': (1, 'a')})
    with np.load(path, allow_pickle=False) as archive:             # raises if anything needed pickle
        members = {name: archive[name] for name in archive.files}
    assert all(not array.dtype.hasobject for array in members.values())
    structure = json.loads(members['__structure__'].tobytes().decode('utf-8'))
    assert structure['format'] == checkpoint.FORMAT and structure['version'] == checkpoint.FORMAT_VERSION == 2
    assert structure['tree']['__dict__']['q']['unit'] == 'mV'
    assert members['a1'].dtype == np.uint16                          # bfloat16 stored as its bits


# --------------------------------------------------------------------------- refusals, before any file

class Pair(collections.namedtuple('Pair', 'a b')):
    pass


def _traced_value():
    seen = []

    @jax.jit
    def f(x):
        try:
            checkpoint.save('/nonexistent-dir-for-test/x.npz', {'x': x})
        except TypeError as err:
            seen.append(err)
        return x

    f(jnp.ones(2))
    return seen[0]


def _self_containing():
    loop = []
    loop.append(loop)
    return {'loop': loop}


UNSTORABLE = {
    'object array': ({'w': np.array([{'a': 1}], dtype=object)}, r"\['w'\].*dtype object"),
    'string array': ({'s': np.array(['a', 'b'])}, r"\['s'\].*dtype <U1"),
    'datetime array': ({'t': np.array(['2020-01-01'], 'datetime64[D]')}, r"\['t'\].*datetime64"),
    'structured array': ({'r': np.zeros(2, [('a', 'f4'), ('b', 'i4')])}, r"\['r'\].*dtype"),
    'set': ({'s': {1, 2}}, r"builtins\.set at \['s'\]"),
    'bytes': ({'nested': [b'raw']}, r"bytes at \['nested'\]\[0\]"),
    'complex number': ({'c': 1 + 2j}, r"complex at \['c'\]"),
    'tuple key': ({('layer', 'w'): np.ones(1)}, r"keys must be strings.*\('layer', 'w'\).*save_states"),
    'int key': ({'d': {0: 1}}, r"the dict at \['d'\] has the key 0"),
    'named tuple': ({'p': Pair(1, 2)}, r"Pair at \['p'\].*named tuple"),
    'State': ({'w': brainstate.ParamState(jnp.ones(2))}, r"ParamState at \['w'\].*\.value.*save_states"),
    'Unit alone': ({'unit': u.mV}, r"Unit at \['unit'\]"),
    'PRNG key': ({'key': jax.random.key(0)}, r"\['key'\]"),
    'cycle': (_self_containing(), r"list at \['loop'\]\[0\] is one of its own containers"),
    'object beside a Quantity': ({'q': np.ones(1) * u.mV, 'bad': object()}, r"builtins.object at \['bad'\]"),
}


@pytest.mark.parametrize('case', list(UNSTORABLE))
def test_unstorable_values_raise_type_error_before_any_file_is_touched(tmp_path, case):
    tree, message = UNSTORABLE[case]
    target = tmp_path / 'new_dir' / 'c.npz'
    with pytest.raises(TypeError, match=message):
        checkpoint.save(str(target), tree)
    assert os.listdir(tmp_path) == []                               # not even the directory was created

    existing = tmp_path / 'old.npz'
    checkpoint.save(str(existing), {'step': 1})
    before = existing.read_bytes()
    with pytest.raises(TypeError):
        checkpoint.save(str(existing), tree)
    assert existing.read_bytes() == before and os.listdir(tmp_path) == ['old.npz']


def test_a_traced_value_is_refused_with_a_clear_message():
    err = _traced_value()
    assert "cannot copy" in str(err) and "outside jit" in str(err)
    assert not os.path.exists('/nonexistent-dir-for-test')


# --------------------------------------------------------------------------- damaged and foreign files

def write_npz(path, structure=None, **members):
    """An .npz with the given members and (optionally) a structure record, written without checkpoint.save."""
    if structure is not None:
        text = structure if isinstance(structure, (str, bytes)) else json.dumps(structure)
        raw = text if isinstance(text, bytes) else text.encode('utf-8')
        members['__structure__'] = np.frombuffer(raw, dtype=np.uint8)
    np.savez(path, **members)


def huge_header_npz(path):
    """A member whose .npy header is longer than NumPy reads without being told the file is trusted."""
    header = b"{'descr': '|u1', 'fortran_order': False, 'shape': (0,), }" + b' ' * 20000 + b'\n'
    member = b'\x93NUMPY\x01\x00' + len(header).to_bytes(2, 'little') + header
    with zipfile.ZipFile(path, 'w') as archive:
        archive.writestr('__structure__.npy', member)


def good_structure(tree_node, version=2):
    return {'format': checkpoint.FORMAT, 'version': version, 'tree': tree_node}


ARRAY_NODE = {'__array__': 0, 'dtype': 'float32', 'shape': [2]}

FOREIGN = {
    'plain npz': (lambda p: np.savez(p, x=np.ones(2)), r"no __structure__ record.*members: \['x.npy'\]"),
    'pickled array member': (lambda p: write_npz(p, good_structure(ARRAY_NODE), a0=np.array([{}], dtype=object)),
                             r"member 'a0.npy' holds pickled Python objects"),
    'pickled structure': (lambda p: np.savez(p, __structure__=np.array([{'format': 1}], dtype=object)),
                          r"member '__structure__.npy' holds pickled Python objects"),
    'huge npy header': (lambda p: huge_header_npz(p), r"member '__structure__.npy' has a damaged .npy header"),
    'structure not json': (lambda p: write_npz(p, b'\xff\xfe not json'), r"not valid UTF-8 JSON"),
    'structure wrong dtype': (lambda p: np.savez(p, __structure__=np.zeros(3, np.float32)), r"not UTF-8 JSON"),
    'other format': (lambda p: write_npz(p, {'format': 'something.else', 'version': 1, 'tree': None}),
                     r"not a braintools_optim checkpoint"),
    'json list': (lambda p: write_npz(p, [1, 2]), r"not a braintools_optim checkpoint"),
    'newer version': (lambda p: write_npz(p, good_structure(None, version=3)),
                      r"version 3 \(written by a newer braintools_optim\).*reads versions \[1, 2\]"),
    'bad version': (lambda p: write_npz(p, good_structure(None, version='2')), r"version '2'"),
    'missing array member': (lambda p: write_npz(p, good_structure(ARRAY_NODE)),
                             r"refers to array 0 at the top level, which the file does not hold"),
    'dtype differs': (lambda p: write_npz(p, good_structure(ARRAY_NODE), a0=np.ones(2, np.int32)),
                      r"should be float32 but is stored as int32"),
    'shape differs': (lambda p: write_npz(p, good_structure(ARRAY_NODE), a0=np.ones(3, np.float32)),
                      r"should have shape \[2\], the file holds \[3\]"),
    'object dtype named': (lambda p: write_npz(p, good_structure({**ARRAY_NODE, 'dtype': 'object'}),
                                               a0=np.ones(2, np.float32)), r"unstorable dtype 'object'"),
    'bfloat16 stored wide': (lambda p: write_npz(p, good_structure({**ARRAY_NODE, 'dtype': 'bfloat16'}),
                                                 a0=np.ones(2, np.uint32)), r"should be bfloat16"),
    'unknown tag': (lambda p: write_npz(p, good_structure({'__set__': [1]})), r"unknown entry at the top level"),
    'untagged dict in v2': (lambda p: write_npz(p, good_structure({'a': 1})), r"unknown entry"),
    'number is a string': (lambda p: write_npz(p, good_structure({'__number__': '3'})), r"unknown entry"),
    'damaged unit': (lambda p: write_npz(p, good_structure({'__quantity__': {'__number__': 1.0}, 'unit': 'mV',
                                                            'dim': [1, 2], 'scale': 0, 'base': 10.0,
                                                            'factor': 1.0})),
                     r"unit record at the top level is damaged"),
    'nested too deeply': (lambda p: write_npz(p, '{"format": "braintools_optim.checkpoint", "version": 2, '
                                                 '"tree": ' + '[' * 100000 + ']' * 100000 + '}'),
                          r"damaged or truncated \(RecursionError"),
    'array index not int': (lambda p: write_npz(p, good_structure({**ARRAY_NODE, '__array__': '0'}),
                                                a0=np.ones(2, np.float32)), r"refers to array '0'"),
}


def assert_clear_error(excinfo, path, message):
    err = excinfo.value
    assert isinstance(err, ValueError) and err.path == str(path)
    assert str(path) in str(err)
    assert re.search(message, str(err)), str(err)
    assert 'allow_pickle' not in str(err)


@pytest.mark.parametrize('case', list(FOREIGN))
def test_foreign_npz_files_raise_checkpoint_error(tmp_path, case):
    make, message = FOREIGN[case]
    path = tmp_path / 'x.npz'
    make(str(path))
    with pytest.raises(CheckpointError) as excinfo:
        checkpoint.load(str(path))
    assert_clear_error(excinfo, path, message)


@pytest.mark.parametrize('content, message', [
    (b'', r"empty \(0 bytes\)"),
    (b'hello, this is text', r"not an .npz archive \(starts with b'hello, t'\)"),
    (b'\x80\x04\x95pickle', r"not an .npz archive"),
    (None, r"a single .npy array"),
    (b'PK\x03\x04' + b'\x00' * 20, r"truncated or damaged"),
])
def test_non_npz_files_raise_checkpoint_error(tmp_path, content, message):
    path = tmp_path / 'x.npz'
    if content is None:
        np.save(str(path) + '.npy', np.ones(3))
        os.replace(str(path) + '.npy', path)
    else:
        path.write_bytes(content)
    with pytest.raises(CheckpointError) as excinfo:
        checkpoint.load(path)
    assert_clear_error(excinfo, path, message)


def sample_file(tmp_path):
    tree = {'w': np.arange(6, dtype=np.float32).reshape(2, 3), 'q': np.ones(2) * u.ms, 'n': [1, (2, 'x')]}
    path = tmp_path / 'good.npz'
    checkpoint.save(path, tree)
    return path, path.read_bytes(), tree


def test_every_truncation_raises_checkpoint_error(tmp_path):
    path, data, _ = sample_file(tmp_path)
    bad = tmp_path / 'cut.npz'
    for length in range(0, len(data)):
        bad.write_bytes(data[:length])
        with pytest.raises(CheckpointError) as excinfo:
            checkpoint.load(bad)
        assert str(bad) in str(excinfo.value) and 'allow_pickle' not in str(excinfo.value), length


def test_any_flipped_byte_gives_the_same_tree_or_checkpoint_error(tmp_path):
    """Never another exception type (EOFError, BadZipFile, KeyError, ...), whatever byte is damaged."""
    path, data, tree = sample_file(tmp_path)
    bad = tmp_path / 'flipped.npz'
    refused = 0
    for position in range(len(data)):
        damaged = bytearray(data)
        damaged[position] ^= 0x55
        bad.write_bytes(bytes(damaged))
        try:
            back = checkpoint.load(bad)
        except CheckpointError as err:
            assert 'allow_pickle' not in str(err)
            refused += 1
            continue
        # zip fields nothing checks (timestamps, ...): the content must then be intact
        np.testing.assert_array_equal(back['w'], tree['w'])
        assert back['q'].unit == u.ms and back['n'] == [1, (2, 'x')]
    assert refused > len(data) // 2


def test_a_missing_file_is_an_os_error_not_a_checkpoint_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoint.load(tmp_path / 'absent.npz')


# --------------------------------------------------------------------------- format 1 files

def test_format_1_files_still_load():
    """tests/golden/checkpoint_v1.npz was written by the format-1 writer
    (scripts/make_checkpoint_v1_golden.py runs it from git history); format 1 stored tuples as lists
    and NumPy scalars as 0-d arrays, and that is what they load as."""
    path = ROOT / 'tests' / 'golden' / 'checkpoint_v1.npz'
    with np.load(path, allow_pickle=False) as archive:
        assert json.loads(archive['__structure__'].tobytes())['version'] == 1
    back = checkpoint.load(path)
    expected = {
        'step': np.array(7, np.int32),
        'bf16': np.array([1.5, -2.0, 0.0, 3.25], ml_dtypes.bfloat16),
        'f16': np.array([[0.5, -0.0], [65504.0, 1e-4]], np.float16),
        'f64': np.array([np.pi, -0.0, np.nan, np.inf]),
        'scalar0d': np.array(-5, np.int8),
        'empty': np.zeros((0, 3), np.float32),
    }
    for key, value in expected.items():
        assert same_bits(back[key], value), key
    assert same_bits(back['layer']['weight'], np.arange(6, dtype=np.float32).reshape(2, 3))
    assert same_bits(back['layer']['bias'], np.ones(3, np.float32))
    assert back['nested'] == [{'x': 1.5}, None, 'text', 3, True]
    assert back['pair'] == [2, 3] and back['unicode'] == 'τ_m in µs'
    assert list(back) == ['step', 'bf16', 'f16', 'f64', 'scalar0d', 'empty', 'layer', 'nested', 'pair', 'unicode']


def test_a_damaged_format_1_file_raises_checkpoint_error(tmp_path):
    path = tmp_path / 'v1.npz'
    write_npz(str(path), good_structure({'w': {'__array__': 3, 'dtype': 'float32'}}, version=1))
    with pytest.raises(CheckpointError, match=r"refers to array 3 at \['w'\]"):
        checkpoint.load(path)


# --------------------------------------------------------------------------- atomic replacement

@pytest.fixture
def umask():
    """``umask(value)`` sets the process umask for one test."""
    old = os.umask(0o022)
    os.umask(old)
    yield os.umask
    os.umask(old)


@pytest.mark.parametrize('mask', [0o022, 0o077, 0o002])
def test_a_new_file_gets_the_mode_open_would_give(tmp_path, umask, mask):
    umask(mask)
    checkpoint.save(tmp_path / 'new.npz', {'x': 1})
    with open(tmp_path / 'plain', 'wb'):
        pass
    assert stat.S_IMODE(os.stat(tmp_path / 'new.npz').st_mode) == 0o666 & ~mask
    assert stat.S_IMODE(os.stat(tmp_path / 'new.npz').st_mode) == stat.S_IMODE(os.stat(tmp_path / 'plain').st_mode)


@pytest.mark.parametrize('mode', [0o644, 0o640, 0o600, 0o664, 0o444])
def test_replacing_a_file_keeps_its_mode(tmp_path, umask, mode):
    umask(0o077)
    path = tmp_path / 'c.npz'
    checkpoint.save(path, {'x': 1})
    os.chmod(path, mode)
    checkpoint.save(path, {'x': 2})
    assert stat.S_IMODE(os.stat(path).st_mode) == mode
    assert checkpoint.load(path) == {'x': 2}


@pytest.mark.skipif(not hasattr(os, 'geteuid') or os.geteuid() != 0, reason='changing a file owner needs root')
def test_replacing_a_file_keeps_its_owner_where_allowed(tmp_path):
    path = tmp_path / 'c.npz'
    checkpoint.save(path, {'x': 1})
    os.chown(path, 12345, 23456)
    checkpoint.save(path, {'x': 2})
    assert (os.stat(path).st_uid, os.stat(path).st_gid) == (12345, 23456)


def test_the_directory_is_synced_after_the_rename(tmp_path, monkeypatch):
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append('fsync directory' if stat.S_ISDIR(os.fstat(fd).st_mode) else 'fsync file')
        real_fsync(fd)

    def replace(src, dst):
        events.append('rename')
        real_replace(src, dst)

    monkeypatch.setattr(os, 'fsync', fsync)
    monkeypatch.setattr(os, 'replace', replace)
    checkpoint.save(tmp_path / 'c.npz', {'x': 1})
    assert events == ['fsync file', 'rename', 'fsync directory']


def test_a_symlink_is_kept_and_its_target_replaced_in_place(tmp_path, monkeypatch):
    real = tmp_path / 'storage' / 'c.npz'
    real.parent.mkdir()
    checkpoint.save(real, {'x': 1})
    os.chmod(real, 0o640)
    link_dir = tmp_path / 'links'
    link_dir.mkdir()
    link = link_dir / 'latest.npz'
    link.symlink_to(os.path.relpath(real, link_dir))               # relative link
    chain = link_dir / 'chain.npz'
    chain.symlink_to(link)                                         # a link to the link

    renames = []
    real_replace = os.replace
    monkeypatch.setattr(os, 'replace', lambda src, dst: (renames.append((src, dst)), real_replace(src, dst)))
    checkpoint.save(chain, {'x': 2})

    assert chain.is_symlink() and link.is_symlink() and os.readlink(chain) == str(link)
    assert not real.is_symlink() and checkpoint.load(real) == {'x': 2}
    assert stat.S_IMODE(os.stat(real).st_mode) == 0o640
    (src, dst), = renames
    assert os.path.dirname(src) == str(real.parent) and dst == str(real)   # temp file beside the target
    assert sorted(os.listdir(link_dir)) == ['chain.npz', 'latest.npz'] and os.listdir(real.parent) == ['c.npz']


def test_a_dangling_symlink_gets_its_target_created(tmp_path):
    link = tmp_path / 'link.npz'
    link.symlink_to(tmp_path / 'target.npz')
    checkpoint.save(link, {'x': 3})
    assert link.is_symlink() and checkpoint.load(tmp_path / 'target.npz') == {'x': 3}


def raising(error):
    def fail(*args, **kwargs):
        raise error
    return fail


def write_half_then_fail(stream, **members):
    stream.write(b'PK\x03\x04 half a file')
    raise OSError(errno.EIO, 'Input/output error')


FAILURES = {      # simulated disk and system errors at each stage of a save
    'disk full in savez': (np, 'savez', raising(OSError(errno.ENOSPC, 'No space left on device'))),
    'I/O error after a partial write': (np, 'savez', write_half_then_fail),
    'fsync fails': (os, 'fsync', raising(OSError(errno.EIO, 'Input/output error'))),
    'rename fails': (os, 'replace', raising(OSError(errno.EXDEV, 'Invalid cross-device link'))),
    'interrupted': (np, 'savez', raising(KeyboardInterrupt())),
}


@pytest.mark.parametrize('failure', list(FAILURES))
def test_a_failed_save_keeps_the_previous_file_and_leaves_no_temporary(tmp_path, monkeypatch, failure):
    path = tmp_path / 'c.npz'
    checkpoint.save(path, {'step': 1, 'w': np.ones(3)})
    before = path.read_bytes()
    monkeypatch.setattr(*FAILURES[failure])
    with pytest.raises((OSError, KeyboardInterrupt)):
        checkpoint.save(path, {'step': 2, 'w': np.zeros(3)})
    with pytest.raises((OSError, KeyboardInterrupt)):
        checkpoint.save(tmp_path / 'fresh.npz', {'step': 2})
    monkeypatch.undo()
    assert path.read_bytes() == before and os.listdir(tmp_path) == ['c.npz']
    assert checkpoint.load(path)['step'] == 1


def test_saving_onto_a_directory_fails_cleanly(tmp_path):
    (tmp_path / 'd.npz').mkdir()
    with pytest.raises(OSError):
        checkpoint.save(tmp_path / 'd.npz', {'x': 1})
    assert os.listdir(tmp_path) == ['d.npz'] and os.listdir(tmp_path / 'd.npz') == []


def test_an_empty_path_or_a_directory_path_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError):
        checkpoint.save('', {'x': 1})
    with pytest.raises(IsADirectoryError):
        checkpoint.save(str(tmp_path / 'run') + os.sep, {'x': 1})
    assert os.listdir(tmp_path) == []


def test_path_is_used_as_given_and_parents_are_created(tmp_path):
    path = tmp_path / 'a' / 'b' / 'state.ckpt'
    checkpoint.save(path, {'x': 1})
    assert os.listdir(path.parent) == ['state.ckpt'] and checkpoint.load(str(path)) == {'x': 1}
    checkpoint.save(os.fsencode(path), {'x': 2})                    # bytes paths work too
    assert checkpoint.load(os.fsencode(path)) == {'x': 2}


# --------------------------------------------------------------------------- brainstate States

class Net(brainstate.nn.Module):
    def __init__(self, n_in=3, tau_unit=u.ms, dtype=jnp.float32):
        super().__init__()
        self.linear = brainstate.nn.Linear(n_in, 2)
        self.tau = brainstate.ParamState(jnp.array([5.0, 8.0], dtype) * tau_unit)
        self.gain = brainstate.ParamState(jnp.array(1.5, jnp.bfloat16))


def params(model):
    return model.states(brainstate.ParamState)


def host(model):
    return checkpoint.state_values(params(model))


def assert_same_values(a, b):
    leaves_a, tree_a = jax.tree.flatten(a, is_leaf=lambda x: isinstance(x, u.Quantity))
    leaves_b, tree_b = jax.tree.flatten(b, is_leaf=lambda x: isinstance(x, u.Quantity))
    assert tree_a == tree_b
    for x, y in zip(leaves_a, leaves_b):
        if isinstance(x, u.Quantity):
            assert isinstance(y, u.Quantity) and x.unit == y.unit
            x, y = x.mantissa, y.mantissa
        assert same_bits(np.asarray(x), np.asarray(y))


def test_save_states_and_load_states_restore_a_model_exactly(tmp_path):
    model = Net()
    path = tmp_path / 'model.npz'
    checkpoint.save_states(path, params(model))
    saved = host(model)
    assert set(saved) == {'linear/weight', 'tau', 'gain'} and set(saved['linear/weight']) == {'weight', 'bias'}

    other = Net()                                                  # different random init
    other.tau.value = jnp.array([1.0, 2.0]) * u.ms
    other.gain.value = jnp.array(0.25, jnp.bfloat16)
    assert checkpoint.load_states(path, params(other)) == {'missing': [], 'unexpected': []}
    assert_same_values(host(other), saved)
    assert isinstance(other.linear.weight.value['weight'], jax.Array)
    assert other.gain.value.dtype == jnp.bfloat16 and other.tau.value.unit == u.ms
    assert isinstance(other.tau.value.mantissa, jax.Array)
    assert other.linear.weight.value['weight'].sharding == model.linear.weight.value['weight'].sharding


@pytest.mark.parametrize('other, message', [
    (lambda: Net(n_in=4), r"'linear/weight'\['weight'\] is float32\[3, 2\] in the checkpoint, float32\[4, 2\]"),
    (lambda: Net(tau_unit=u.second), r"'tau' is float32\[2\] in ms in the checkpoint, float32\[2\] in s"),
    (lambda: Net(tau_unit=1.0), r"'tau' is float32\[2\] in ms in the checkpoint, float32\[2\] in the model"),
    (lambda: Net(dtype=jnp.float16), r"'tau' is float32\[2\] in ms in the checkpoint, float16\[2\] in ms"),
])
def test_a_states_file_that_does_not_fit_changes_nothing(tmp_path, other, message):
    path = tmp_path / 'model.npz'
    checkpoint.save_states(path, params(Net()))
    target = other()
    before = host(target)
    with pytest.raises(CheckpointError, match=message) as excinfo:
        checkpoint.load_states(path, params(target))
    assert str(path) in str(excinfo.value)
    assert_same_values(host(target), before)                       # not even the States that fit


def test_states_whose_structure_differs_are_refused(tmp_path):
    model = Net()
    path = tmp_path / 'model.npz'
    checkpoint.save_states(path, params(model))
    values = checkpoint.load(path)
    values['linear/weight'] = {'weight': values['linear/weight']['weight']}        # bias lost
    before = host(model)
    with pytest.raises(ValueError, match=r"'linear/weight' has the entries \[\"\['bias'\]\", \"\['weight'\]\"\]"):
        checkpoint.restore_states(params(model), values)
    assert_same_values(host(model), before)


def test_missing_and_unexpected_states(tmp_path):
    path = tmp_path / 'model.npz'
    small = brainstate.nn.Linear(3, 2)
    checkpoint.save_states(path, {'linear/weight': small.weight, 'old': brainstate.ParamState(jnp.ones(1))})
    model = Net()
    before = host(model)
    with pytest.raises(CheckpointError, match=r"missing \['gain', 'tau'\], unexpected \['old'\]"):
        checkpoint.load_states(path, params(model))
    assert_same_values(host(model), before)
    report = checkpoint.load_states(path, params(model), strict=False)
    assert report == {'missing': ['gain', 'tau'], 'unexpected': ['old']}
    assert same_bits(np.asarray(model.linear.weight.value['bias']), np.asarray(small.weight.value['bias']))
    assert_same_values(host(model)['tau'], before['tau'])


def test_state_keys_must_not_collide_and_values_must_be_states(tmp_path):
    a, b = brainstate.ParamState(jnp.ones(1)), brainstate.ParamState(jnp.ones(1))
    with pytest.raises(ValueError, match="both named 'x/y'"):
        checkpoint.save_states(tmp_path / 'c.npz', {('x', 'y'): a, 'x/y': b})
    with pytest.raises(TypeError, match="not a brainstate State"):
        checkpoint.save_states(tmp_path / 'c.npz', {'w': jnp.ones(1)})
    with pytest.raises(TypeError, match="dict of brainstate States"):
        checkpoint.load_states(tmp_path / 'c.npz', [a])
    assert os.listdir(tmp_path) == []


def test_load_states_refuses_a_damaged_file_without_changing_the_model(tmp_path):
    model = Net()
    path = tmp_path / 'model.npz'
    checkpoint.save_states(path, params(Net()))
    path.write_bytes(path.read_bytes()[:100])
    before = host(model)
    with pytest.raises(CheckpointError, match='truncated'):
        checkpoint.load_states(path, params(model))
    assert_same_values(host(model), before)


# --------------------------------------------------------------------------- the documented recipe

def recipe_code():
    text = (ROOT / 'docs' / 'robust_training.md').read_text(encoding='utf-8')
    found = re.findall(r'<!-- checkpoint-recipe:[^>]*-->\n```python\n(.*?)```', text, re.S)
    assert len(found) == 1, 'docs/robust_training.md must hold exactly one marked checkpoint recipe'
    return found[0]


def test_the_documented_checkpoint_recipe_runs_and_resumes_bitwise(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    namespace = {'__name__': 'recipe'}
    exec(compile(recipe_code(), 'docs/robust_training.md', 'exec'), namespace)

    assert os.listdir(tmp_path / 'run') == ['checkpoint.npz']
    model, resumed = namespace['model'], namespace['resumed_model']
    assert isinstance(model.linear.weight.value, dict)              # the recipe covers a dict-valued State
    assert_same_values(host(resumed), host(model))                  # resumed run ends where the first did
    opt, resumed_opt = namespace['opt'], namespace['resumed_opt']
    assert int(resumed_opt.step_count.value) == int(opt.step_count.value) == 7
    assert float(resumed_opt.current_lr) == float(opt.current_lr)
    assert_same_values(resumed_opt.buffers(), opt.buffers())
    saved = checkpoint.load(tmp_path / 'run' / 'checkpoint.npz')
    assert set(saved) == {'model', 'optimizer'} and saved['model']['tau'].unit == u.ms
