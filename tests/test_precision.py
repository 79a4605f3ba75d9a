"""Stochastic rounding and the dtype checks of the precision options (braintools_optim._precision).

Three kinds of evidence that the rounding is unbiased:

* exact, no randomness: for bfloat16 every one of the 2^16 random-bit values is tried for each input,
  and the number that round up is exactly the discarded bits (so the mean over all of them IS x);
  for float16 the up/down boundary sits exactly at ``fraction * 2^32``, computed here in exact
  rational arithmetic;
* statistical, with the real PRNG: a z-test on the mean rounding error at a computed threshold
  with a stated false-failure probability, and a distribution-free Hoeffding bound over inputs of
  every magnitude; the same tests reject round-to-nearest and truncation (they have power);
* the edge cases decided in the module docstring (non-finite values as round-to-nearest, no
  overflow by rounding up, signed zeros, representable values unchanged).
"""

from __future__ import annotations

import math
import statistics
from fractions import Fraction

import brainunit as u
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from braintools_optim import _precision as precision
from braintools_optim._precision import stochastic_round, stochastic_round_with_bits

NARROW = [jnp.bfloat16, jnp.float16]

# ---------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------


def neighbours(x: np.ndarray, dtype):
    """The two representable neighbours of each float32 ``x`` in ``dtype`` (toward and away from zero), as float64.

    Computed independently of the code under test: for bfloat16 by cutting the float32 pattern, for
    float16 with NumPy's own float16 (correct through the subnormals).
    """
    x = np.asarray(x, np.float32)
    if dtype is jnp.bfloat16:
        cut = x.view(np.uint32) & np.uint32(0xFFFF0000)
        exact = (x.view(np.uint32) & np.uint32(0xFFFF)) == 0
        toward = cut.view(np.float32).astype(np.float64)
        away = (cut + np.uint32(0x10000)).view(np.float32).astype(np.float64)
        return toward, np.where(exact, toward, away)
    nearest = x.astype(np.float16)
    toward = np.where(np.abs(nearest.astype(np.float64)) > np.abs(x.astype(np.float64)),
                      np.nextafter(nearest, np.float16(0)), nearest)
    with np.errstate(over='ignore'):
        away = np.nextafter(toward, np.where(x < 0, np.float16(-np.inf), np.float16(np.inf)))
    return toward.astype(np.float64), away.astype(np.float64)


def spread_values(n: int, seed: int, lo_exp: int, hi_exp: int) -> np.ndarray:
    """``n`` float32 values of both signs with magnitudes log-uniform in [2^lo_exp, 2^hi_exp], none representable
    in bfloat16 or float16 (their low mantissa bits are random and non-zero)."""
    rng = np.random.default_rng(seed)
    magnitude = np.exp2(rng.uniform(lo_exp, hi_exp, n)).astype(np.float32)
    bits = magnitude.view(np.uint32) | np.uint32(1)           # at least one discarded bit set
    sign = np.where(rng.random(n) < 0.5, -1.0, 1.0).astype(np.float32)
    return bits.view(np.float32) * sign


# ---------------------------------------------------------------------------------------------
# exact unbiasedness (no randomness)
# ---------------------------------------------------------------------------------------------
def test_bfloat16_every_bit_pattern_rounds_up_exactly_the_discarded_fraction():
    # For each x, all 65536 values of the random bits: the rounded values are only the two neighbours,
    # and the count that rounds away from zero equals the 16 discarded bits of x's float32 pattern.
    # The mean over all bit values is therefore x itself, exactly: the rounding is unbiased for any
    # uniform source of 16 bits.
    x = np.concatenate([spread_values(24, 0, -20, 20), spread_values(4, 1, -140, -127),   # normal, subnormal
                        np.float32([1.0 + 2 ** -16, -(1.0 + 2 ** -16), 3.0e38])])
    bits = jnp.arange(2 ** 16, dtype=jnp.uint32).astype(jnp.uint16)
    rounded = jax.vmap(lambda v: stochastic_round_with_bits(jnp.full(2 ** 16, v), jnp.bfloat16, bits))(x)
    rounded = np.asarray(rounded.astype(jnp.float32), np.float64)
    toward, away = neighbours(x, jnp.bfloat16)
    discarded = (x.view(np.uint32) & np.uint32(0xFFFF)).astype(np.int64)
    for k in range(len(x)):
        assert set(np.unique(rounded[k])) <= {toward[k], away[k]}, x[k]
        assert int(np.sum(rounded[k] == away[k])) == discarded[k], x[k]
        exact_mean = sum(Fraction(float(v)) for v in rounded[k]) / 2 ** 16
        assert exact_mean == Fraction(float(x[k])), x[k]


@pytest.mark.parametrize('lo_exp, hi_exp', [(-14, 15), (-24, -14), (-33, -24)],
                         ids=['normal', 'subnormal', 'deep-subnormal'])
def test_float16_rounds_up_exactly_below_the_exact_threshold(lo_exp, hi_exp):
    # float16 compares 32 random bits with T = fraction * 2^32: it rounds away from zero iff bits < T,
    # so P(up) = T / 2^32. Here T is computed in exact rational arithmetic and the boundary checked on
    # both sides: P(up) equals the fraction exactly (hence E[round(x)] = x) wherever T is an integer,
    # which is every |x| >= 2^-33.
    x = spread_values(200, 2, lo_exp, hi_exp)
    toward, away = neighbours(x, jnp.float16)
    threshold = []
    for v, lo, hi in zip(x, toward, away):
        fraction = (abs(Fraction(float(v))) - abs(Fraction(lo))) / abs(Fraction(hi) - Fraction(lo))
        assert 0 < fraction < 1
        t = fraction * 2 ** 32
        assert t.denominator == 1, v                         # exact: P(up) == fraction
        threshold.append(int(t))
    threshold = np.array(threshold, np.int64)
    for offset, expect_up in [(-1, True), (0, False)]:
        bits = jnp.asarray(np.clip(threshold + offset, 0, 2 ** 32 - 1).astype(np.uint32))
        got = np.asarray(stochastic_round_with_bits(jnp.asarray(x), jnp.float16, bits).astype(jnp.float32),
                         np.float64)
        valid = threshold + offset >= 0
        assert np.array_equal(got[valid], np.where(expect_up, away, toward)[valid])
    # bits 0 always rounds up, the largest bits never (for any non-representable x)
    up = stochastic_round_with_bits(jnp.asarray(x), jnp.float16, jnp.zeros(x.shape, jnp.uint32))
    down = stochastic_round_with_bits(jnp.asarray(x), jnp.float16, jnp.full(x.shape, 2 ** 32 - 1, jnp.uint32))
    assert np.array_equal(np.asarray(up.astype(jnp.float32), np.float64), away)
    assert np.array_equal(np.asarray(down.astype(jnp.float32), np.float64), toward)


def test_float16_below_2_to_minus_33_the_bias_is_below_2_to_minus_56():
    # Documented limit: a fraction with bits below 2^-32 is truncated to the 32-bit grid.
    x = spread_values(200, 3, -60, -34)
    toward, away = neighbours(x, jnp.float16)
    for v, lo, hi in zip(x, toward, away):
        fraction = (abs(Fraction(float(v))) - abs(Fraction(lo))) / abs(Fraction(hi) - Fraction(lo))
        p_up = Fraction(math.floor(fraction * 2 ** 32), 2 ** 32)
        bias = abs((p_up - fraction) * (Fraction(hi) - Fraction(lo)))
        assert bias < Fraction(1, 2 ** 56)


# ---------------------------------------------------------------------------------------------
# statistical tests with the real PRNG
# ---------------------------------------------------------------------------------------------
#: false-failure probability of each z-test below (two-sided), and its threshold
ALPHA = 1e-6
Z_THRESHOLD = statistics.NormalDist().inv_cdf(1 - ALPHA / 2)       # 4.89
N_SAMPLES = 1 << 20
#: round-up probabilities tested (one input value each, built exactly)
FRACTIONS = (1 / 1024, 0.1, 0.3, 0.5, 0.77, 0.999)


def value_with_fraction(base: float, fraction: float, dtype) -> float:
    """A float32 just above ``base`` (representable in ``dtype``) by ``fraction`` of its gap, on the float32 grid."""
    base = np.float32(base)
    toward, away = neighbours(np.float32([base * (1 + 2 ** -20)]), dtype)
    assert toward[0] == base
    return float(np.float32(float(base) + fraction * (away[0] - float(base))))


def z_score(samples: np.ndarray, x: float, toward: float, away: float) -> float:
    """z of the mean rounding error, under H0: each sample is ``away`` with probability p = (x - toward)/gap."""
    gap = away - toward
    p = (x - toward) / gap
    errors = samples.astype(np.float64) - x
    sd_of_mean = abs(gap) * math.sqrt(p * (1 - p) / len(samples))
    return float(np.mean(errors) / sd_of_mean)


@pytest.mark.parametrize('dtype', NARROW, ids=['bfloat16', 'float16'])
def test_mean_error_z_test(dtype):
    # H0: E[round(x)] = x. Under H0 each rounding error is (gap) * (Bernoulli(p) - p) with p known,
    # so the mean of N = 2^20 errors has standard deviation gap * sqrt(p (1 - p) / N), and
    # |z| > 4.89 has probability 1e-6 (normal approximation; N p >= 1024 events in the rarest case).
    # Six probabilities x two signs: the whole test fails falsely with probability <= 12e-6 (Bonferroni).
    key = jax.random.key(20261201)
    for k, fraction in enumerate(FRACTIONS):
        for sign in (1.0, -1.0):
            x = sign * value_with_fraction(1.5, fraction, dtype)
            toward, away = neighbours(np.float32([x]), dtype)
            sample_key = jax.random.fold_in(key, 2 * k + (sign < 0))
            samples = stochastic_round(jnp.full(N_SAMPLES, x, jnp.float32), dtype, sample_key)
            samples = np.asarray(samples.astype(jnp.float32))
            assert set(np.unique(samples)) <= {toward[0], away[0]}
            z = z_score(samples, float(np.float32(x)), toward[0], away[0])
            assert abs(z) < Z_THRESHOLD, (fraction, sign, z)


@pytest.mark.parametrize('dtype', NARROW, ids=['bfloat16', 'float16'])
def test_the_z_test_rejects_round_to_nearest_and_truncation(dtype):
    # The same statistic on biased roundings is far beyond the threshold (the test has power).
    x = value_with_fraction(1.5, 0.3, dtype)
    toward, away = neighbours(np.float32([x]), dtype)
    nearest = np.full(N_SAMPLES, float(jnp.asarray(x).astype(dtype).astype(jnp.float32)))
    truncated = np.full(N_SAMPLES, toward[0])
    for biased in (nearest, truncated):
        assert abs(z_score(biased, float(np.float32(x)), toward[0], away[0])) > 100 * Z_THRESHOLD


#: false-failure probability of the distribution-free test below
ALPHA_HOEFFDING = 1e-9


def hoeffding_bound(n: int, alpha: float) -> float:
    """t with P(|mean of n independent [a, a+1]-valued zero-mean variables| >= t) <= alpha (Hoeffding)."""
    return math.sqrt(math.log(2 / alpha) / (2 * n))


@pytest.mark.parametrize('dtype', NARROW, ids=['bfloat16', 'float16'])
def test_mean_relative_error_over_every_magnitude_hoeffding(dtype):
    # 2^20 inputs of both signs across the dtype's range (float16: normal and subnormal), each rounded
    # once. The error divided by its gap, e = (round(x) - x) / gap, lies in [-p, 1 - p] (an interval
    # of length 1) and has mean 0 under H0, so by Hoeffding's inequality its average exceeds
    # t = sqrt(ln(2/alpha) / 2N) = 0.0032 with probability <= alpha = 1e-9, whatever the p's are.
    # Round-to-nearest's average relative error on the same inputs is checked to be far above t.
    lo_exp, hi_exp = (-120, 120) if dtype is jnp.bfloat16 else (-24, 15)
    x = spread_values(N_SAMPLES, 4, lo_exp, hi_exp)
    toward, away = neighbours(x, dtype)
    keep = np.isfinite(away)
    x, toward, away = x[keep], toward[keep], away[keep]
    gap = np.abs(away - toward)
    rounded = np.asarray(stochastic_round(jnp.asarray(x), dtype, jax.random.key(7)).astype(jnp.float32),
                         np.float64)
    # signed toward "away from zero", so the test sees a bias toward either neighbour
    relative = (np.abs(rounded) - np.abs(x.astype(np.float64))) / gap
    t = hoeffding_bound(len(x), ALPHA_HOEFFDING)
    assert t < 0.005
    assert abs(float(np.mean(relative))) < t
    nearest = np.asarray(jnp.asarray(x).astype(dtype).astype(jnp.float32), np.float64)
    relative_nearest = (np.abs(nearest) - np.abs(x.astype(np.float64))) / gap
    truncated = (np.abs(toward) - np.abs(x.astype(np.float64))) / gap
    # round-to-nearest is unbiased only on average over uniform fractions; its error is not zero-mean
    # given x: its mean |error| is ~1/4 of a gap, stochastic rounding's ~1/3 with zero mean.
    assert abs(float(np.mean(truncated))) > 100 * t
    assert float(np.mean(np.abs(relative_nearest))) < float(np.mean(np.abs(relative)))


# ---------------------------------------------------------------------------------------------
# determinism
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize('dtype', NARROW, ids=['bfloat16', 'float16'])
def test_equal_keys_give_equal_results_different_keys_differ(dtype):
    x = jnp.asarray(spread_values(4096, 5, -8, 8))
    a = stochastic_round(x, dtype, jax.random.key(1))
    b = stochastic_round(x, dtype, jax.random.key(1))
    c = stochastic_round(x, dtype, jax.random.key(2))
    assert np.array_equal(np.asarray(a.astype(jnp.float32)), np.asarray(b.astype(jnp.float32)))
    differ = np.mean(np.asarray(a.astype(jnp.float32)) != np.asarray(c.astype(jnp.float32)))
    assert 0.2 < differ < 0.8          # each element differs with probability 2p(1-p); p uniform: 1/3 on average


def test_the_same_under_jit():
    x = jnp.asarray(spread_values(1000, 6, -8, 8))
    key = jax.random.key(3)
    for dtype in NARROW:
        eager = stochastic_round(x, dtype, key)
        traced = jax.jit(lambda v, k: stochastic_round(v, dtype, k))(x, key)
        assert np.array_equal(np.asarray(eager.astype(jnp.float32)), np.asarray(traced.astype(jnp.float32)))


# ---------------------------------------------------------------------------------------------
# edge cases
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize('dtype', NARROW, ids=['bfloat16', 'float16'])
def test_non_finite_inputs_round_as_round_to_nearest(dtype):
    x = jnp.array([np.nan, -np.nan, np.inf, -np.inf], jnp.float32)
    for bits_value in (0, 2 ** 16 - 1):
        out = stochastic_round_with_bits(x, dtype, jnp.full(x.shape, bits_value,
                                                            jnp.uint16 if dtype is jnp.bfloat16 else jnp.uint32))
        out = np.asarray(out.astype(jnp.float32))
        assert np.isnan(out[:2]).all() and out[2] == np.inf and out[3] == -np.inf


@pytest.mark.parametrize('dtype', NARROW, ids=['bfloat16', 'float16'])
def test_the_largest_finite_value_never_rounds_up_to_infinity(dtype):
    # Between the largest finite value and round-to-nearest's overflow threshold (largest + half an
    # ulp), round-to-nearest gives the largest value; stochastic rounding rounds down to it too
    # (it never creates an infinity round-to-nearest would not). At and beyond the threshold both
    # overflow.
    largest = float(jnp.finfo(dtype).max)
    half_ulp = 2.0 ** (math.floor(math.log2(largest)) - jnp.finfo(dtype).nmant - 1)
    inside = np.float32([largest, np.nextafter(np.float32(largest), np.float32(np.inf)),
                         np.float32(largest + 0.99 * half_ulp)])
    assert np.isfinite(np.asarray(jnp.asarray(inside).astype(dtype).astype(jnp.float32))).all()
    beyond = np.float32([largest + half_ulp, largest * 1.01 if dtype is jnp.float16 else 3.4e38])
    for sign in (1.0, -1.0):
        for key in range(20):
            out = np.asarray(stochastic_round(jnp.asarray(sign * inside), dtype, jax.random.key(key))
                             .astype(jnp.float32))
            assert np.array_equal(out, np.float32(sign * largest) * np.ones(3))
        out = np.asarray(stochastic_round(jnp.asarray(sign * beyond), dtype, jax.random.key(0)).astype(jnp.float32))
        nearest = np.asarray(jnp.asarray(sign * beyond).astype(dtype).astype(jnp.float32))
        assert np.array_equal(out, nearest) and np.isinf(out).all()


@pytest.mark.parametrize('dtype', NARROW, ids=['bfloat16', 'float16'])
def test_representable_values_and_signed_zeros_are_unchanged(dtype):
    rng = np.random.default_rng(8)
    x = jnp.asarray(rng.standard_normal(1000).astype(np.float32)).astype(dtype).astype(jnp.float32)
    x = jnp.concatenate([x, jnp.array([0.0, -0.0], jnp.float32)])
    for key in range(5):
        out = stochastic_round(x, dtype, jax.random.key(key))
        assert out.dtype == jnp.dtype(dtype)
        assert np.array_equal(np.asarray(out.astype(jnp.float32)), np.asarray(x))
    assert np.signbit(np.asarray(out[-1].astype(jnp.float32))) and not np.signbit(np.asarray(out[-2].astype(jnp.float32)))


def test_float32_target_is_a_no_op_and_narrow_inputs_are_refused():
    x = jnp.asarray(spread_values(100, 9, -8, 8))
    out = stochastic_round(x, jnp.float32, jax.random.key(0))
    assert out.dtype == jnp.float32 and np.array_equal(np.asarray(out), np.asarray(x))
    assert precision.random_bits_per_element(jnp.float32) == 0
    with pytest.raises(TypeError, match='float32'):
        stochastic_round(x.astype(jnp.bfloat16), jnp.bfloat16, jax.random.key(0))


def test_a_quantity_keeps_its_unit_and_its_mantissa_is_rounded():
    x = jnp.asarray(spread_values(64, 10, -4, 4)) * u.mV
    out = stochastic_round(x, jnp.bfloat16, jax.random.key(0))
    assert isinstance(out, u.Quantity) and out.unit == u.mV
    plain = stochastic_round(x.mantissa, jnp.bfloat16, jax.random.key(0))
    assert np.array_equal(np.asarray(out.mantissa.astype(jnp.float32)), np.asarray(plain.astype(jnp.float32)))


# ---------------------------------------------------------------------------------------------
# dtype checks and buffer-dtype resolution
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize('value', [jnp.bfloat16, 'bfloat16', np.dtype('float16'), jnp.float32])
def test_check_buffer_dtype_accepts_float_dtypes(value):
    assert precision.check_buffer_dtype('mu_dtype', value) == jnp.dtype(value).name


@pytest.mark.parametrize('value, error, message', [
    ('int8', ValueError, "mu_dtype must be one of bfloat16, float16, float32, float64"),
    (jnp.complex64, ValueError, 'floating-point'),
    (bool, ValueError, 'floating-point'),
    (True, TypeError, 'must be a dtype'),
    ('float8_e4m3fn', ValueError, 'floating-point'),
    ('bfloat', TypeError, 'must be a dtype'),
    (3, TypeError, 'must be a dtype'),
])
def test_check_buffer_dtype_refuses_with_a_clear_error(value, error, message):
    with pytest.raises(error, match=message):
        precision.check_buffer_dtype('mu_dtype', value)


def test_float64_buffers_need_x64():
    if jax.config.jax_enable_x64:
        pytest.skip('x64 is on')
    with pytest.raises(ValueError, match='jax_enable_x64'):
        precision.check_buffer_dtype('nu_dtype', 'float64')


def test_buffer_dtypes_must_be_a_dict_of_names():
    assert precision.check_buffer_dtypes('buffer_dtypes', None) == {}
    assert precision.check_buffer_dtypes('buffer_dtypes', {'exp_avg': jnp.bfloat16}) == {'exp_avg': 'bfloat16'}
    with pytest.raises(TypeError, match='dict'):
        precision.check_buffer_dtypes('buffer_dtypes', [('exp_avg', 'bfloat16')])
    with pytest.raises(TypeError, match='buffer names'):
        precision.check_buffer_dtypes('buffer_dtypes', {0: 'bfloat16'})
    with pytest.raises(ValueError, match=r"buffer_dtypes\['exp_avg'\]"):
        precision.check_buffer_dtypes('buffer_dtypes', {'exp_avg': 'int8'})


ADAM_UNITS = {'exp_avg': (1, 0), 'exp_avg_sq': (2, 0), 'max_exp_avg_sq': (2, 0)}


def test_mu_and_nu_select_buffers_by_their_units():
    names = tuple(ADAM_UNITS)
    assert precision.resolve_buffer_dtypes(ADAM_UNITS, names, {}, 'bfloat16', 'float32', 'Adam') == {
        'exp_avg': 'bfloat16', 'exp_avg_sq': 'float32', 'max_exp_avg_sq': 'float32'}
    assert precision.resolve_buffer_dtypes(ADAM_UNITS, names, {'max_exp_avg_sq': 'bfloat16'}, None, None,
                                           'Adam') == {'max_exp_avg_sq': 'bfloat16'}
    # Adadelta's accumulated squared updates are in the parameter's unit squared: neither mu nor nu
    assert precision.resolve_buffer_dtypes({'square_avg': (2, 0), 'acc_delta': (0, 2)},
                                           ('square_avg', 'acc_delta'), {}, 'bfloat16', 'bfloat16',
                                           'Adadelta') == {'square_avg': 'bfloat16'}


def test_unknown_buffer_names_and_conflicts_are_refused():
    names = tuple(ADAM_UNITS)
    with pytest.raises(ValueError, match=r"'momentum_buffer', which this rule does not keep \(its buffers: "
                                         r"'exp_avg', 'exp_avg_sq', 'max_exp_avg_sq'\)"):
        precision.resolve_buffer_dtypes(ADAM_UNITS, names, {'momentum_buffer': 'bfloat16'}, None, None, 'Adam')
    with pytest.raises(ValueError, match=r"buffer 'exp_avg' is given two dtypes: mu_dtype=bfloat16, "
                                         r"buffer_dtypes\['exp_avg'\]=float16"):
        precision.resolve_buffer_dtypes(ADAM_UNITS, names, {'exp_avg': 'float16'}, 'bfloat16', None, 'Adam')
    # the same dtype twice is no conflict
    assert precision.resolve_buffer_dtypes(ADAM_UNITS, names, {'exp_avg': 'bfloat16'}, 'bfloat16', None,
                                           'Adam') == {'exp_avg': 'bfloat16'}


# ---------------------------------------------------------------------------------------------
# a group's options
# ---------------------------------------------------------------------------------------------
def test_group_precision_checks_and_inherits():
    base = precision.GroupPrecision.checked({'stochastic_round': True, 'mu_dtype': 'bfloat16',
                                             'buffer_dtypes': {'exp_avg_sq': jnp.float32}},
                                            precision.GroupPrecision(), 'Adam')
    assert base == precision.GroupPrecision(True, False, (('exp_avg_sq', 'float32'),), 'bfloat16', None)
    group = precision.GroupPrecision.checked({'master_weights': True}, base, 'group 1')
    assert group.stochastic_round and group.master_weights and group.mu_dtype == 'bfloat16'
    assert group.without_buffer_names().buffer_dtypes == ()
    assert base.record() == {'stochastic_round': True, 'master_weights': False,
                             'buffer_dtypes': {'exp_avg_sq': 'float32'}, 'mu_dtype': 'bfloat16', 'nu_dtype': None}
    assert base.describe() == 'stochastic_round, mu_dtype=bfloat16, exp_avg_sq:float32'
    with pytest.raises(TypeError, match="group 1: stochastic_round must be True or False"):
        precision.GroupPrecision.checked({'stochastic_round': 1}, base, 'group 1')
    with pytest.raises(ValueError, match="group 1: nu_dtype must be one of"):
        precision.GroupPrecision.checked({'nu_dtype': 'int8'}, base, 'group 1')


def test_storage_dtypes_default_to_what_the_rule_acts_on():
    names = ('exp_avg', 'exp_avg_sq')
    sr = precision.GroupPrecision(stochastic_round=True)
    assert sr.storage_dtypes(ADAM_UNITS, names, jnp.bfloat16, 'Adam') == {'exp_avg': 'bfloat16',
                                                                          'exp_avg_sq': 'bfloat16'}
    master = precision.GroupPrecision(master_weights=True, mu_dtype='bfloat16')
    assert master.storage_dtypes(ADAM_UNITS, names, jnp.bfloat16, 'Adam') == {'exp_avg': 'bfloat16',
                                                                              'exp_avg_sq': 'float32'}
    # a float32 parameter has no master copy: its buffers stay float32 unless set
    assert master.storage_dtypes(ADAM_UNITS, names, jnp.float32, 'Adam') == {'exp_avg': 'bfloat16',
                                                                             'exp_avg_sq': 'float32'}


# =============================================================================================
# the engine: options on optimizers and groups (braintools_optim._mixed)
# =============================================================================================
import brainstate  # noqa: E402

import braintools_optim as bo  # noqa: E402

FUSED = [None, True, False]


def bf16_model(seed: int = 0):
    """Two same-shaped bfloat16 matrices (one flat bucket / one stack), a bfloat16 vector, a float32 bias."""
    rng = np.random.default_rng(seed)
    value = lambda shape, dtype: jnp.asarray(rng.standard_normal(shape).astype(np.float32)).astype(dtype)
    return {'w1': brainstate.ParamState(value((3, 4), jnp.bfloat16)),
            'w2': brainstate.ParamState(value((3, 4), jnp.bfloat16)),
            'v': brainstate.ParamState(value((5,), jnp.bfloat16)),
            'b': brainstate.ParamState(value((4,), jnp.float32))}


def grads_of(states, step: int):
    """Deterministic gradients of each parameter's dtype (a pull towards 0.3 plus a step-dependent term)."""
    return {k: (0.5 * (s.value.astype(jnp.float32) - 0.3) + 0.01 * (step + 1)).astype(s.value.dtype)
            for k, s in states.items()}


def values(states):
    return {k: np.asarray(s.value.astype(jnp.float32)) for k, s in states.items()}


def dtypes_of(opt):
    return {name: {str(k): str(v.dtype) for k, v in column.items()} for name, column in opt.buffers().items()}


@pytest.mark.parametrize('fused', FUSED)
def test_every_buffer_is_stored_in_its_dtype_and_parameters_keep_theirs(fused):
    ws = bf16_model()
    opt = bo.Adam(lr=1e-2, fused=fused, mu_dtype='bfloat16', nu_dtype='float32',
                  param_groups=[{'params': 'v', 'master_weights': True, 'mu_dtype': None, 'nu_dtype': None,
                                 'buffer_dtypes': {'exp_avg_sq': 'float16'}}])
    opt.register_trainable_weights(ws)
    expected = {'exp_avg': {'w1': 'bfloat16', 'w2': 'bfloat16', 'v': 'float32', 'b': 'bfloat16'},
                'exp_avg_sq': {'w1': 'float32', 'w2': 'float32', 'v': 'float16', 'b': 'float32'},
                'master': {'v': 'float32'}}
    assert dtypes_of(opt) == expected
    for step in range(2):
        opt.update(grads_of(ws, step))
    assert dtypes_of(opt) == expected                        # the step stores them back alike
    assert {k: str(s.value.dtype) for k, s in ws.items()} == {'w1': 'bfloat16', 'w2': 'bfloat16',
                                                               'v': 'bfloat16', 'b': 'float32'}
    assert 'rng_key' not in opt.state_dict()
    assert [(g['master_weights'], g['mu_dtype'], g['nu_dtype'], g['buffer_dtypes']) for g in opt.param_groups] == [
        (False, 'bfloat16', 'float32', {}), (True, None, None, {'exp_avg_sq': 'float16'})]


def sgd_momentum_reference(w0, grads, lr, momentum):
    """Hand-written float32 SGD with momentum on a master copy, one jitted step at a time (XLA may
    contract a multiply-add into one rounding, so the reference is compiled like the optimizer)."""
    @jax.jit
    def step(master, buf, g):
        buf = momentum * buf + g.astype(jnp.float32)
        return master - lr * buf, buf

    master, buf = jnp.asarray(w0, jnp.float32), jnp.zeros(jnp.shape(w0), jnp.float32)
    for g in grads:
        master, buf = step(master, buf, g)
    return master, master.astype(jnp.bfloat16)


def adam_reference(w0, grads, lr, b1=0.9, b2=0.999, eps=1e-8):
    """Hand-written float32 Adam (torch/optax form) on a master copy, one jitted step at a time; the
    bias corrections 1 - beta^t written as -expm1(t log beta), as this package's Adam documents."""
    @jax.jit
    def step(master, m, v, g, t, lr):
        g = g.astype(jnp.float32)
        m = b1 * m + (1.0 - b1) * g
        v = b2 * v + (1.0 - b2) * g * g
        c1, c2 = -jnp.expm1(t * math.log(b1)), -jnp.expm1(t * math.log(b2))
        return master + (-(lr / c1) * m / (jnp.sqrt(v / c2) + eps)), m, v

    master = jnp.asarray(w0, jnp.float32)
    m = v = jnp.zeros(jnp.shape(w0), jnp.float32)
    for t, g in enumerate(grads, start=1):
        master, m, v = step(master, m, v, g, jnp.float32(t), jnp.float32(lr))
    return master


@pytest.mark.parametrize('fused', FUSED)
def test_master_weights_follow_a_hand_written_float32_reference(fused):
    # Bit for bit: the master copy equals a hand-written float32 SGD with momentum and Adam, and the
    # same optimizer run on float32 parameters given the same gradients; the parameter is its rounding.
    rng = np.random.default_rng(3)
    w0 = jnp.asarray(rng.standard_normal((3, 4)).astype(np.float32)).astype(jnp.bfloat16)
    grads = [jnp.asarray(rng.standard_normal((3, 4)).astype(np.float32)).astype(jnp.bfloat16) for _ in range(4)]
    for cls, kw in ((bo.SGD, dict(lr=0.05, momentum=0.9)), (bo.Adam, dict(lr=0.01))):
        w = brainstate.ParamState(w0)
        opt = cls(fused=fused, master_weights=True, **kw).register_trainable_weights({'w': w})
        w32 = brainstate.ParamState(w0.astype(jnp.float32))
        ref = cls(fused=fused, **kw).register_trainable_weights({'w': w32})
        for g in grads:
            opt.update({'w': g})
            ref.update({'w': g.astype(jnp.float32)})
        master = np.asarray(opt.buffers()['master']['w'])
        assert np.array_equal(master, np.asarray(w32.value))
        assert w.value.dtype == jnp.bfloat16
        assert np.array_equal(np.asarray(w.value.astype(jnp.float32)),
                              np.asarray(jnp.asarray(master).astype(jnp.bfloat16).astype(jnp.float32)))
        if cls is bo.SGD:
            want, _ = sgd_momentum_reference(w0, grads, 0.05, 0.9)
            assert np.array_equal(master, np.asarray(want))
        else:
            assert np.array_equal(master, np.asarray(adam_reference(w0, grads, 0.01)))


def quadratic_run(options, steps=400, lr=2e-3, dtype=jnp.bfloat16, seed=0):
    """SGD on 0.5 ||w - target||^2 under for_loop; returns the parameter as float32 after ``steps``.

    The target lies 0.5 above the start (values in [1, 2.5], bfloat16 ulp 2^-7 or 2^-6), and
    every update lr * (w - target) <= 1e-3 is below half a bfloat16 ulp of w: round to nearest
    never moves w.
    """
    rng = np.random.default_rng(11)
    start = jnp.asarray(1.0 + rng.uniform(0, 1, 512).astype(np.float32))
    target = start.astype(dtype).astype(jnp.float32) + 0.5
    w = brainstate.ParamState(start.astype(dtype))
    opt = bo.SGD(lr=lr, seed=seed, **options).register_trainable_weights({'w': w})

    def step(_):
        opt.update({'w': (w.value.astype(jnp.float32) - target).astype(w.value.dtype)})

    brainstate.transform.for_loop(step, jnp.arange(steps))
    return np.asarray(w.value.astype(jnp.float32)), np.asarray(target), opt


def test_stochastic_rounding_tracks_float32_where_round_to_nearest_stalls():
    exact, target, _ = quadratic_run({}, dtype=jnp.float32)
    rtn, _, _ = quadratic_run({})
    sr, _, _ = quadratic_run({'stochastic_round': True})
    master, _, opt = quadratic_run({'master_weights': True})
    error = lambda x: float(np.sqrt(np.mean((x - exact) ** 2)))
    moved = float(np.sqrt(np.mean((exact - (target - 0.5)) ** 2)))     # how far float32 went: 0.28
    assert moved > 0.25
    assert error(rtn) > 0.99 * moved                 # round to nearest did not move at all
    # stochastic rounding: a random walk around the float32 run (noise ~ ulp sqrt(p(1-p) / 2 lr) ~ 0.03
    # per element) without drift: measured rms 0.031
    assert error(sr) < 0.2 * error(rtn)
    assert abs(float(np.mean(sr - exact))) < 0.01
    ulp = np.spacing(np.abs(exact).astype(np.float32)) * 2.0 ** 16   # one bfloat16 ulp of each value
    assert np.all(np.abs(master - exact) <= ulp)     # master weights: the float32 run to bfloat16 rounding
    assert error(master) < 0.25 * error(sr)          # measured 0.0035: the last rounding only


def test_equal_seeds_give_equal_runs_different_seeds_differ():
    a, _, opt = quadratic_run({'stochastic_round': True}, steps=20, seed=1)
    b, _, _ = quadratic_run({'stochastic_round': True}, steps=20, seed=1)
    c, _, _ = quadratic_run({'stochastic_round': True}, steps=20, seed=2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert opt.state_dict()['rng_key'].dtype == np.uint32


@pytest.mark.parametrize('fused', [None, False])
def test_every_parameter_draws_its_own_bits(fused):
    # equal parameters with equal gradients, in one flat bucket (fused=None), one parameter each
    # (fused=False), and in another group: no two round alike
    ws = {k: brainstate.ParamState(jnp.ones((256,), jnp.bfloat16)) for k in ('a', 'b', 'c')}
    opt = bo.SGD(lr=1e-3, fused=fused, stochastic_round=True, param_groups=[{'params': 'c'}])
    opt.register_trainable_weights(ws)
    opt.update({k: jnp.full((256,), 0.5, jnp.bfloat16) for k in ws})
    rounded = {k: np.asarray(s.value.astype(jnp.float32)) for k, s in ws.items()}
    assert all(0.03 < np.mean(r < 1.0) < 0.25 for r in rounded.values())    # 1 - 5e-4: down with p = 0.128
    assert not np.array_equal(rounded['a'], rounded['b']) and not np.array_equal(rounded['a'], rounded['c'])


OPTIONS = {'sr': dict(stochastic_round=True), 'master': dict(master_weights=True),
           'moments': dict(mu_dtype='bfloat16', nu_dtype='float16'),
           'sr+master': dict(stochastic_round=True, master_weights=True)}


def group_model(fused, option, seed=5):
    """Adam with ``option`` in two non-default groups: Lamb (per-tensor: stacks) on the matrices, Adam
    (element-wise: flat buckets) on the vector; the float32 bias stays in the plain default group."""
    return bo.Adam(lr=1e-2, fused=fused, seed=seed, param_groups=[
        {'params': 'w?', 'optimizer': bo.Lamb, **OPTIONS[option]},
        {'params': 'v', **OPTIONS[option]}])


def bitwise(states):
    return {k: v.tobytes() for k, v in values(states).items()}


@pytest.mark.parametrize('fused', FUSED)
@pytest.mark.parametrize('option', list(OPTIONS))
def test_checkpoint_round_trip_in_a_group_is_bitwise(option, fused):
    # Every option in non-default groups, under jit: state_dict after 2 steps, 2 more steps; then
    # the parameters and the checkpoint are restored and the same 2 steps repeat bit for bit
    # (master copies and key included). The optimizer's compiled step is reused (compile time);
    # the next test restores into a fresh optimizer.
    ws = bf16_model(1)
    opt = group_model(fused, option).register_trainable_weights(ws)
    for step in range(2):
        opt.update(grads_of(ws, step))
    saved, saved_params = opt.state_dict(), {k: s.value for k, s in ws.items()}
    for step in range(2, 4):
        opt.update(grads_of(ws, step))
    first = bitwise(ws)
    assert all(first[k] != np.asarray(saved_params[k].astype(jnp.float32)).tobytes() for k in ('w1', 'w2', 'v'))
    for k, s in ws.items():
        s.value = saved_params[k]
    opt.load_state_dict(saved)
    for step in range(2, 4):
        opt.update(grads_of(ws, step))
    assert bitwise(ws) == first
    assert ('master' in opt.buffers()) == ('master' in option)
    assert ('rng_key' in saved) == ('sr' in option)


@pytest.mark.parametrize('on_device', [False, True])
def test_a_fresh_optimizer_resumes_bitwise_from_either_checkpoint_form(on_device):
    from braintools_optim import _checkpointing
    ws = bf16_model(1)
    opt = group_model(None, 'sr+master').register_trainable_weights(ws)
    opt.update(grads_of(ws, 0))
    saved = _checkpointing.state_dict(opt, on_device=on_device)
    saved_params = {k: s.value for k, s in ws.items()}
    opt.update(grads_of(ws, 1))
    ws2 = bf16_model(1)
    for k, s in ws2.items():
        s.value = saved_params[k]
    opt2 = group_model(None, 'sr+master', seed=9).register_trainable_weights(ws2)   # the key comes from the file
    opt2.load_state_dict(saved)
    opt2.update(grads_of(ws2, 1))
    assert bitwise(ws2) == bitwise(ws)
    assert {k: np.asarray(v).tobytes() for k, v in opt2.buffers()['master'].items()} == \
        {k: np.asarray(v).tobytes() for k, v in opt.buffers()['master'].items()}


def test_a_skipped_step_changes_nothing_key_and_master_copies_included():
    ws = bf16_model(2)
    opt = bo.Adam(lr=1e-2, skip_nonfinite=True, stochastic_round=True, master_weights=True, seed=3)
    opt.register_trainable_weights(ws)
    opt.update(grads_of(ws, 0))
    before = (opt.state_dict(), values(ws))
    bad = grads_of(ws, 1)
    bad['v'] = bad['v'].at[0].set(jnp.nan)
    opt.update(bad)
    after = (opt.state_dict(), values(ws))
    assert after[0]['rng_key'].tobytes() == before[0]['rng_key'].tobytes()
    for name in ('master', 'exp_avg', 'exp_avg_sq'):
        for k, v in before[0]['opt_state'][name].items():
            assert after[0]['opt_state'][name][k].tobytes() == v.tobytes()
    assert all(after[1][k].tobytes() == v.tobytes() for k, v in before[1].items())
    opt.update(grads_of(ws, 1))                       # the next good step moves on
    assert opt.state_dict()['rng_key'].tobytes() != before[0]['rng_key'].tobytes()


def test_gradient_accumulation_draws_one_key_per_applied_step():
    # accumulate_steps=2 over 4 updates = 2 applied steps = the same key as 2 plain steps
    keys = []
    for accumulate in (1, 2):
        ws = bf16_model(2)
        opt = bo.SGD(lr=1e-2, stochastic_round=True, accumulate_steps=accumulate).register_trainable_weights(ws)
        for step in range(2 * accumulate):
            opt.update(grads_of(ws, 0))
        keys.append(opt.state_dict()['rng_key'].tobytes())
    assert keys[0] == keys[1]


def test_units_are_kept_and_float16_parameters_round_stochastically():
    w = brainstate.ParamState(jnp.full((64,), 1.0, jnp.bfloat16) * u.mV)
    h = brainstate.ParamState(jnp.full((64,), 1.0, jnp.float16))
    opt = bo.SGD(lr=1e-3, stochastic_round=True, master_weights=True)
    opt.register_trainable_weights({'w': w, 'h': h})
    opt.update({'w': jnp.full((64,), 0.25, jnp.bfloat16) * u.mV, 'h': jnp.full((64,), 0.25, jnp.float16)})
    assert isinstance(w.value, u.Quantity) and w.value.unit == u.mV and w.value.mantissa.dtype == jnp.bfloat16
    assert h.value.dtype == jnp.float16
    master = opt.buffers()['master']
    assert master['w'].unit == u.mV and master['w'].mantissa.dtype == jnp.float32
    assert np.allclose(np.asarray(master['w'].mantissa), 1.0 - 2.5e-4)
    # 1 - 2.5e-4 lies between the neighbours 1 - 2^-11 and 1 (float16), 1 - 2^-8 and 1 (bfloat16):
    # both occur, and nothing else
    assert set(np.asarray(h.value, np.float64).tolist()) == {1.0 - 2.0 ** -11, 1.0}
    assert set(np.asarray(w.value.mantissa.astype(jnp.float32), np.float64).tolist()) <= {1.0 - 2.0 ** -8, 1.0}


def test_float32_parameters_have_no_master_copy_and_no_rounding():
    w = brainstate.ParamState(jnp.linspace(0.0, 1.0, 8))
    plain = brainstate.ParamState(jnp.linspace(0.0, 1.0, 8))
    opt = bo.Adam(lr=0.1, stochastic_round=True, master_weights=True).register_trainable_weights({'w': w})
    ref = bo.Adam(lr=0.1).register_trainable_weights({'w': plain})
    for _ in range(2):
        opt.update({'w': w.value - 0.3})
        ref.update({'w': plain.value - 0.3})
    assert 'master' not in opt.buffers()
    assert np.array_equal(np.asarray(w.value), np.asarray(plain.value))


@pytest.mark.parametrize('build, error, message', [
    (lambda: bo.Adam(mu_dtype='int8'), ValueError, "Adam: mu_dtype must be one of bfloat16, float16"),
    (lambda: bo.Adam(buffer_dtypes={'momentum_buffer': 'bfloat16'}), ValueError,
     r"buffer_dtypes names 'momentum_buffer', which this rule does not keep"),
    (lambda: bo.SGD(stochastic_round='yes'), TypeError, "stochastic_round must be True or False"),
    (lambda: bo.SGD(seed=-1), ValueError, r"seed must be in \[0, 2\*\*32\)"),
    (lambda: bo.LBFGS(stochastic_round=True), ValueError, "LBFGS runs a step of its own"),
    (lambda: bo.Lookahead(bo.Adam(master_weights=True)), ValueError, "master copies of Adam"),
    (lambda: bo.Prodigy(mu_dtype='bfloat16'), ValueError, "buffer_dtypes, mu_dtype and nu_dtype apply to the "
                                                          "engine's step only"),
])
def test_bad_options_are_refused_clearly(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_a_refused_group_changes_nothing():
    ws = bf16_model()
    opt = bo.Adam(lr=1e-2).register_trainable_weights(ws)
    before = (opt.num_groups, dtypes_of(opt), opt._keys)
    with pytest.raises(ValueError, match=r"parameter group 'bad' \(SGD\).*'exp_avg', which this rule does not keep"):
        opt.add_param_group(params='v', name='bad', optimizer=bo.SGD, stochastic_round=True,
                            buffer_dtypes={'exp_avg': 'bfloat16'})
    with pytest.raises(ValueError, match="nu_dtype must be one of"):
        opt.add_param_group(params='v', nu_dtype='int8')
    assert (opt.num_groups, dtypes_of(opt), opt._keys) == before


def test_checkpoints_of_other_precision_settings_are_refused():
    from braintools_optim import CheckpointMismatchError

    def trained(cls=bo.Adam, **options):
        ws = bf16_model()
        opt = cls(lr=1e-2, **options).register_trainable_weights(ws)
        opt.update(grads_of(ws, 0))
        return opt

    sr, moments, plain = trained(stochastic_round=True), trained(mu_dtype='bfloat16'), trained()
    master, master_adam, plain_sgd = trained(bo.SGD, master_weights=True), trained(master_weights=True), \
        trained(bo.SGD)
    cases = [(plain, sr, "has a stochastic-rounding key"), (sr, plain, "has no stochastic-rounding key"),
             (plain_sgd, master, "buffer 'master' is not kept"), (master, plain_sgd, "no buffer 'master'"),
             (plain, moments, r"buffer 'exp_avg' for 'b' is bfloat16\[4\], expected float32"),
             (plain, master_adam, r"buffer 'exp_avg' for 'w1' is float32\[3, 4\], expected bfloat16")]
    for target, source, message in cases:
        state = source.state_dict()
        before = target.state_dict()
        with pytest.raises(CheckpointMismatchError, match=message):
            target.load_state_dict(state)
        assert target.state_dict()['step_count'] == before['step_count']
    bad = sr.state_dict()
    bad['rng_key'] = np.zeros(3, np.uint32)
    with pytest.raises(CheckpointMismatchError, match=r"rng_key must be uint32\[2\]"):
        sr.load_state_dict(bad)


def test_prodigy_runs_its_own_step_on_master_copies_and_rounds_it():
    def run(ws, **options):
        opt = bo.Prodigy(d0=1e-2, seed=1, **options).register_trainable_weights(ws)
        for step in range(3):
            opt.update(grads_of(ws, step))
        return opt

    ws, ws32 = bf16_model(), bf16_model()
    for s in ws32.values():
        s.value = s.value.astype(jnp.float32)
    opt = run(ws, master_weights=True, stochastic_round=True)
    run(ws32)                                   # the float32 reference run
    assert {k: str(s.value.dtype) for k, s in ws.items()} == {'w1': 'bfloat16', 'w2': 'bfloat16',
                                                               'v': 'bfloat16', 'b': 'float32'}
    master = opt.buffers()['master']
    assert sorted(master) == ['v', 'w1', 'w2']
    # the master copies follow Prodigy in float32 given (nearly) the same gradients: gradients are
    # computed from the rounded parameters here, so agreement is to a few bfloat16 ulp, not bitwise
    for k in master:
        assert np.max(np.abs(np.asarray(master[k]) - np.asarray(ws32[k].value))) < 0.05
    state = opt.state_dict()
    assert 'rng_key' in state and len(state['opt_state']['master']) == 3


def test_zero1_partitions_the_master_copies_and_changes_no_number():
    from jax.sharding import Mesh
    mesh = Mesh(np.array(jax.devices()[:1]), ('data',))
    runs = []
    for shard_state in (None, (mesh, 'data')):
        ws = bf16_model(4)
        opt = bo.Adam(lr=1e-2, shard_state=shard_state, master_weights=True, stochastic_round=True,
                      mu_dtype='bfloat16').register_trainable_weights(ws)
        if shard_state is not None:       # the ZeRO-1 path: one flat bucket per dtype, on the mesh axis
            assert [a.sharding.spec for a in opt._storage[0].named_states()['master'].value] == [
                jax.sharding.PartitionSpec('data')]
        for step in range(2):
            opt.update(grads_of(ws, step))
        runs.append(bitwise(ws))
    assert runs[0] == runs[1]
