r"""Rounding to a narrow float format, and the dtype checks of the precision options.

Pure functions on arrays; the engine calls them when a parameter group asks for
``stochastic_round``, ``master_weights`` or narrower buffers (``docs/precision.md``).

Round to nearest (what ``x.astype(dtype)`` does, ties to even) sends every
value within half a unit in the last place (ulp) of a representable number to
that number. An update smaller than half an ulp of the weight it is added to is
then lost, every step: a bfloat16 weight of 1.0 (ulp 2^-7) ignores every step
smaller than 2^-8 ~ 0.004. **Stochastic rounding** instead rounds ``x`` to one
of its two neighbours ``lo <= x < hi`` at random, up with probability
``(x - lo) / (hi - lo)``, so that

.. math:: E[\mathrm{round}(x)] = lo + (hi - lo) \frac{x - lo}{hi - lo} = x :

small updates survive on average. :func:`stochastic_round` does it

* to **bfloat16** with the bit trick: bfloat16 is the upper half of a float32
  bit pattern, so adding 16 uniform random bits to the 16 bits that are
  discarded and then truncating rounds up exactly when the carry reaches the
  kept half, which happens with probability (discarded bits) / 2^16 — exactly
  the fraction above, for every finite float32 (subnormals included: 16 bits
  are discarded everywhere). 16 random bits per element; one integer add, one
  shift and two selects.
* to **float16**, which is not a truncation of float32 (5 exponent bits, not
  8), by finding both neighbours (round toward zero and the next float16 away
  from zero) and comparing 32 random bits with ``fraction * 2^32``, computed
  exactly: unbiased exactly wherever at most 32 bits are discarded, i.e. for
  ``|x| >= 2^-33``; below that (deep in float16's subnormal range) the bias is
  under ``2^-56`` in absolute value. 32 random bits per element, a few more
  operations than bfloat16.
* float32 and float64 targets are returned as they are (nothing is narrower
  than the arithmetic, see :func:`compute_dtype`): a documented no-op.

Edge cases, decided once for both formats: wherever round-to-nearest gives a
non-finite value (NaN, ``±inf``, or a finite value beyond the largest float16 /
bfloat16 plus half an ulp, which round-to-nearest overflows), stochastic
rounding gives the same value; everywhere else it never rounds up past the
largest finite value (a value between the largest finite number and the
overflow threshold rounds down to it). So stochastic rounding never creates an
infinity that round-to-nearest would not. Zeros keep their sign.

>>> import jax, jax.numpy as jnp
>>> key = jax.random.key(0)
>>> x = jnp.full(10000, 1.0 + 2.0 ** -10, jnp.float32)      # 1/8 of a bfloat16 ulp above 1
>>> sorted(set(x.astype(jnp.bfloat16).tolist()))             # round to nearest loses it
[1.0]
>>> r = stochastic_round(x, jnp.bfloat16, key)
>>> sorted(set(r.tolist()))                                   # stochastic: 1 or 1 + 2**-7
[1.0, 1.0078125]
>>> bool(abs(float(jnp.mean(r.astype(jnp.float32))) - (1.0 + 2.0 ** -10)) < 2e-4)
True
"""

from __future__ import annotations

from typing import Any, Dict, Mapping, NamedTuple, Optional, Tuple

import jax
import jax.numpy as jnp
from jax import lax

Array = jax.Array

#: dtypes a buffer may be stored in (``buffer_dtypes``, ``mu_dtype``, ``nu_dtype``)
BUFFER_DTYPES = ('bfloat16', 'float16', 'float32', 'float64')
#: parameter dtypes narrower than float32 that stochastic rounding and master weights act on
NARROW_DTYPES = ('bfloat16', 'float16')
#: the ``buffer_units`` (see :class:`~braintools_optim.rules.UpdateRule`) of a first moment and a second
#: moment, which ``mu_dtype`` and ``nu_dtype`` select
FIRST_MOMENT, SECOND_MOMENT = (1, 0), (2, 0)


# ---------------------------------------------------------------------------------------------
# dtypes
# ---------------------------------------------------------------------------------------------
def dtype_name(dtype: Any) -> str:
    return jnp.dtype(dtype).name


def is_narrow(dtype: Any) -> bool:
    """Whether ``dtype`` is a float format narrower than float32 (bfloat16, float16)."""
    return dtype_name(dtype) in NARROW_DTYPES


def compute_dtype(dtype: Any) -> jnp.dtype:
    """The dtype the arithmetic of a parameter of ``dtype`` runs in: float32, or ``dtype`` if wider.

    >>> compute_dtype(jnp.bfloat16).name, compute_dtype(jnp.float32).name
    ('float32', 'float32')
    """
    return jnp.promote_types(dtype, jnp.float32)


def check_buffer_dtype(what: str, value: Any) -> Optional[str]:
    """A buffer storage dtype as its name (``None`` stays ``None``); a clear error for anything else.

    Accepts a NumPy/JAX dtype, a scalar type (``jnp.bfloat16``) or a name
    (``'bfloat16'``); refuses integer, boolean and complex types, 8-bit floats, and
    float64 while JAX runs without ``jax_enable_x64`` (JAX would silently store float32).

    >>> check_buffer_dtype('mu_dtype', jnp.bfloat16)
    'bfloat16'
    >>> check_buffer_dtype('mu_dtype', 'int8')
    Traceback (most recent call last):
    ...
    ValueError: mu_dtype must be one of bfloat16, float16, float32, float64 (a floating-point buffer); got 'int8'
    """
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError(f"{what} must be a dtype such as 'bfloat16' or jnp.float32, got {value!r}")
    try:
        name = jnp.dtype(value).name
    except TypeError:
        raise TypeError(f"{what} must be a dtype such as 'bfloat16' or jnp.float32, got {value!r}") from None
    if name not in BUFFER_DTYPES:
        raise ValueError(f"{what} must be one of {', '.join(BUFFER_DTYPES)} (a floating-point buffer); "
                         f"got {value!r}")
    if name == 'float64' and not jax.config.jax_enable_x64:
        raise ValueError(f"{what}=float64 needs jax_enable_x64 (without it JAX stores float32); "
                         f"enable it first or choose float32")
    return name


def check_flag(what: str, value: Any) -> bool:
    if not isinstance(value, bool) and type(value).__name__ != 'bool_':
        raise TypeError(f"{what} must be True or False, got {value!r}")
    return bool(value)


def check_buffer_dtypes(what: str, value: Any) -> Dict[str, str]:
    """``buffer_dtypes``: a dict ``{buffer name: dtype}`` with checked dtypes (``None``: empty)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(f"{what} must be a dict {{buffer name: dtype}}, got {type(value).__name__}")
    out = {}
    for name, dtype in value.items():
        if not isinstance(name, str):
            raise TypeError(f"{what} keys must be buffer names (str), got {name!r}")
        checked = check_buffer_dtype(f"{what}[{name!r}]", dtype)
        if checked is not None:
            out[name] = checked
    return out


def resolve_buffer_dtypes(buffer_units: Mapping[str, Tuple[int, int]], buffer_names, buffer_dtypes: Mapping[str, str],
                          mu_dtype: Optional[str], nu_dtype: Optional[str], where: str) -> Dict[str, str]:
    """Each buffer's requested storage dtype: ``{buffer name: dtype name}`` (buffers left out keep the default).

    ``mu_dtype`` selects the first-moment buffers (``buffer_units == (1, 0)``),
    ``nu_dtype`` the second-moment ones (``(2, 0)``); an entry of
    ``buffer_dtypes`` names one buffer. A name the rule does not have, or two
    requests that disagree about one buffer, raise ``ValueError`` naming ``where``.

    >>> units = {'exp_avg': (1, 0), 'exp_avg_sq': (2, 0)}
    >>> resolve_buffer_dtypes(units, tuple(units), {}, 'bfloat16', None, 'Adam')
    {'exp_avg': 'bfloat16'}
    """
    unknown = [name for name in buffer_dtypes if name not in buffer_names]
    if unknown:
        have = ', '.join(repr(n) for n in buffer_names) or 'none'
        raise ValueError(f"{where}: buffer_dtypes names {', '.join(map(repr, unknown))}, which this rule does not "
                         f"keep (its buffers: {have})")
    out: Dict[str, str] = {}
    for name in buffer_names:
        units = tuple(buffer_units.get(name, (0, 0)))
        wanted = {}
        if mu_dtype is not None and units == FIRST_MOMENT:
            wanted['mu_dtype'] = mu_dtype
        if nu_dtype is not None and units == SECOND_MOMENT:
            wanted['nu_dtype'] = nu_dtype
        if name in buffer_dtypes:
            wanted[f"buffer_dtypes[{name!r}]"] = buffer_dtypes[name]
        if len(set(wanted.values())) > 1:
            raise ValueError(f"{where}: buffer {name!r} is given two dtypes: "
                             + ', '.join(f"{k}={v}" for k, v in wanted.items()))
        if wanted:
            out[name] = next(iter(wanted.values()))
    return out


# ---------------------------------------------------------------------------------------------
# a parameter group's precision options
# ---------------------------------------------------------------------------------------------
#: the options, as a parameter group (or the constructor) spells them, and their defaults
PRECISION_OPTIONS: Dict[str, Any] = dict(stochastic_round=False, master_weights=False, buffer_dtypes=None,
                                         mu_dtype=None, nu_dtype=None)


class GroupPrecision(NamedTuple):
    """One parameter group's precision options, checked (``docs/precision.md``).

    ``buffer_dtypes`` is kept as sorted ``(name, dtype name)`` pairs so the
    object is hashable and compares by value.

    >>> p = GroupPrecision.checked({'mu_dtype': jnp.bfloat16}, GroupPrecision(), 'Adam')
    >>> p.active, p.mu_dtype
    (True, 'bfloat16')
    >>> GroupPrecision().active
    False
    """

    stochastic_round: bool = False
    master_weights: bool = False
    buffer_dtypes: Tuple[Tuple[str, str], ...] = ()
    mu_dtype: Optional[str] = None
    nu_dtype: Optional[str] = None

    @classmethod
    def checked(cls, values: Mapping[str, Any], base: 'GroupPrecision', where: str) -> 'GroupPrecision':
        """``base`` with the options given in ``values`` (only :data:`PRECISION_OPTIONS` keys are read)."""
        out = base._asdict()
        for name in ('stochastic_round', 'master_weights'):
            if name in values:
                out[name] = check_flag(f"{where}: {name}", values[name])
        for name in ('mu_dtype', 'nu_dtype'):
            if name in values:
                out[name] = check_buffer_dtype(f"{where}: {name}", values[name])
        if 'buffer_dtypes' in values:
            out['buffer_dtypes'] = tuple(sorted(check_buffer_dtypes(f"{where}: buffer_dtypes",
                                                                    values['buffer_dtypes']).items()))
        return cls(**out)

    @property
    def active(self) -> bool:
        """Whether any option is set: the group's narrow parameters then compute in float32."""
        return bool(self.stochastic_round or self.master_weights or self.buffer_dtypes
                    or self.mu_dtype or self.nu_dtype)

    def without_buffer_names(self) -> 'GroupPrecision':
        """The options a group running another algorithm inherits (buffer names are the algorithm's own)."""
        return self._replace(buffer_dtypes=())

    def storage_dtypes(self, buffer_units, buffer_names, param_dtype: Any, where: str) -> Dict[str, str]:
        """Each buffer's storage dtype for a parameter of ``param_dtype`` (every buffer named).

        Unless set (``buffer_dtypes``, ``mu_dtype``, ``nu_dtype``), a buffer is
        stored in the dtype of the values the rule acts on: the float32 master
        copy for a narrow parameter with ``master_weights``, the parameter's
        own dtype otherwise.
        """
        default = dtype_name(compute_dtype(param_dtype) if self.master_weights and is_narrow(param_dtype)
                             else param_dtype)
        chosen = resolve_buffer_dtypes(buffer_units, buffer_names, dict(self.buffer_dtypes), self.mu_dtype,
                                       self.nu_dtype, where)
        return {name: chosen.get(name, default) for name in buffer_names}

    def record(self) -> Dict[str, Any]:
        """Plain values, for checkpoints and ``param_groups`` (dtypes as names)."""
        return {'stochastic_round': self.stochastic_round, 'master_weights': self.master_weights,
                'buffer_dtypes': dict(self.buffer_dtypes), 'mu_dtype': self.mu_dtype, 'nu_dtype': self.nu_dtype}

    def describe(self) -> str:
        """A short text for ``describe_groups`` (empty when nothing is set)."""
        parts = [name for name in ('stochastic_round', 'master_weights') if getattr(self, name)]
        parts += [f"{name}={getattr(self, name)}" for name in ('mu_dtype', 'nu_dtype') if getattr(self, name)]
        parts += [f"{name}:{dtype}" for name, dtype in self.buffer_dtypes]
        return ', '.join(parts)


# ---------------------------------------------------------------------------------------------
# rounding
# ---------------------------------------------------------------------------------------------
def round_nearest(x: Array, dtype: Any) -> Array:
    """``x`` rounded to ``dtype`` to nearest, ties to even (``astype``)."""
    return jnp.asarray(x).astype(dtype)


def random_bits_per_element(dtype: Any) -> int:
    """How many random bits :func:`stochastic_round` draws per element for target ``dtype`` (0: no-op).

    >>> random_bits_per_element(jnp.bfloat16), random_bits_per_element(jnp.float16)
    (16, 32)
    """
    return {'bfloat16': 16, 'float16': 32}.get(dtype_name(dtype), 0)


def random_bits(key: Array, shape, dtype: Any) -> Optional[Array]:
    """The random bits :func:`stochastic_round_with_bits` consumes for target ``dtype`` (``None``: none needed)."""
    bits = random_bits_per_element(dtype)
    if not bits:
        return None
    return jax.random.bits(key, tuple(shape), jnp.uint16 if bits == 16 else jnp.uint32)


def stochastic_round(x: Any, dtype: Any, key: Array) -> Any:
    """``x`` rounded to ``dtype`` stochastically and without bias, from the PRNG ``key`` (module docstring).

    ``x`` is an array (or a ``brainunit`` Quantity: its mantissa is rounded, its
    unit kept) of float32 or wider; to bfloat16 or float16 the result is
    unbiased, to float32 or wider it is ``x`` cast to ``dtype`` (a no-op for
    float32 parameters, whose arithmetic already runs in float32).
    """
    unit = getattr(x, 'unit', None) if type(x).__name__ == 'Quantity' else None
    mantissa = x.mantissa if unit is not None else x
    mantissa = jnp.asarray(mantissa)
    rounded = stochastic_round_with_bits(mantissa, dtype, random_bits(key, mantissa.shape, dtype))
    if unit is None:
        return rounded
    import brainunit as u
    return u.Quantity(rounded, unit=unit)


def stochastic_round_with_bits(x: Array, dtype: Any, bits: Optional[Array]) -> Array:
    """:func:`stochastic_round` with its random bits given (uint16 for bfloat16, uint32 for float16).

    Deterministic given ``bits``: the form the tests use to check exactness
    bit for bit, and the engine's (it draws the bits of a whole flat bucket at once).
    """
    name = dtype_name(dtype)
    if name not in NARROW_DTYPES:
        return jnp.asarray(x).astype(dtype)
    x = jnp.asarray(x)
    if jnp.dtype(x.dtype).itemsize < 4 or not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"stochastic rounding to {name} takes float32 (or wider) values, got {x.dtype}")
    x = x.astype(jnp.float32)          # a float64 value is first rounded to nearest float32 (its spare bits
    nearest = x.astype(dtype)          # lie far below half a bfloat16/float16 ulp)
    rounded = _bfloat16_from_bits(x, bits) if name == 'bfloat16' else _float16_from_bits(x, bits)
    return jnp.where(jnp.isfinite(nearest), rounded, nearest)


def _bfloat16_from_bits(x: Array, bits: Array) -> Array:
    """bfloat16 by adding 16 random bits below the kept half of the float32 pattern and truncating."""
    pattern = lax.bitcast_convert_type(x, jnp.uint32)
    # The magnitude occupies the low 31 bits: a carry out of the discarded half adds one ulp to it (one
    # exponent step up at a power of two, exactly as the value grows) and never reaches the sign bit
    # for a finite input, so negative values round their magnitude alike.
    upper = ((pattern + bits.astype(jnp.uint32)) >> 16).astype(jnp.uint16)
    rounded = lax.bitcast_convert_type(upper, jnp.bfloat16)
    # a carry from the largest finite bfloat16 reaches the infinity pattern: round down there instead
    largest = jnp.asarray(jnp.finfo(jnp.bfloat16).max, jnp.bfloat16)
    return jnp.where(jnp.isinf(rounded), jnp.where(x < 0, -largest, largest), rounded)


def _float16_from_bits(x: Array, bits: Array) -> Array:
    """float16 by choosing between the two neighbours with probability given by 32 random bits.

    The neighbours are found on the float16 bit pattern (sign and magnitude): the magnitude of
    the nearest value, one less if that rounded away from zero, and one more for the neighbour
    away from zero (integer steps stay exact through float16's subnormals, where some backends'
    ``nextafter`` flushes to zero).
    """
    nearest = x.astype(jnp.float16)
    pattern = lax.bitcast_convert_type(nearest, jnp.uint16)
    sign = pattern & jnp.uint16(0x8000)
    magnitude = jnp.abs(x)
    nearest_magnitude = pattern & jnp.uint16(0x7FFF)
    low = jnp.where(jnp.abs(nearest.astype(jnp.float32)) > magnitude, nearest_magnitude - jnp.uint16(1),
                    nearest_magnitude)
    high = low + jnp.uint16(1)                 # the infinity pattern after the largest finite float16
    low32 = lax.bitcast_convert_type(low, jnp.float16).astype(jnp.float32)
    gap = lax.bitcast_convert_type(high, jnp.float16).astype(jnp.float32) - low32   # a power of two, or inf
    # exact in float32: magnitude - low32 is exact (Sterbenz, or low32 == 0), the gap is a power of two,
    # and fraction * 2^32 only moves the exponent. The fraction has at most 24 significant bits; when its
    # lowest lies below 2^-32 (|x| < 2^-33) the product is truncated: a bias below 2^-56.
    fraction = jnp.where(jnp.isfinite(gap), (magnitude - low32) / gap, 0.0)
    threshold = (fraction * jnp.float32(2.0 ** 32)).astype(jnp.uint32)   # < 2^32 since fraction < 1
    chosen = jnp.where(bits.astype(jnp.uint32) < threshold, high, low)
    return lax.bitcast_convert_type(chosen | sign, jnp.float16)


def round_to(x: Array, dtype: Any, bits: Optional[Array] = None) -> Array:
    """``x`` in ``dtype``: stochastically from ``bits`` when given (see :func:`stochastic_round_with_bits`),
    to nearest otherwise."""
    if bits is None:
        return round_nearest(x, dtype)
    return stochastic_round_with_bits(x, dtype, bits)
