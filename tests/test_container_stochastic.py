"""Stochastic rounding with explicit uint32 noise (SPEC.md C10, C11)."""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

import oracle
from reference import Container, quantize

STOCHASTIC = Container(4, 3, specials="fn", rounding="stochastic")


def narrow(values, container, noise, anchor=None):
    x = np.asarray(values, np.float32)
    return quantize(x, container, anchor=anchor, noise=np.asarray(noise, np.uint32))


@pytest.mark.spec("C10")
def test_same_noise_same_result():
    rng = np.random.default_rng(0)
    x = rng.standard_normal(10_000).astype(np.float32)
    noise = rng.integers(0, 2**32, x.shape, dtype=np.uint32)
    first = quantize(x, STOCHASTIC, noise=noise)
    second = quantize(x, STOCHASTIC, noise=noise.copy())
    assert np.array_equal(first.view(np.uint32), second.view(np.uint32))


@pytest.mark.spec("C10")
@pytest.mark.parametrize("dropped_bits", [1, 2, 5, 8])
def test_probability_up_is_exact_over_enumerated_noise(dropped_bits):
    # e8m(23 - d): a value with d dropped bits D rounds up for exactly D of the 2^d noise
    # values j * 2^(32 - d), which sample the uint32 range evenly.
    container = Container(8, 23 - dropped_bits, rounding="stochastic")
    noise = np.arange(2**dropped_bits, dtype=np.uint64) << np.uint64(32 - dropped_bits)
    for dropped_value in range(2**dropped_bits):
        bits = np.uint32(0x3F80_0000 | (0b101 << dropped_bits) | dropped_value)
        x = np.full(noise.shape, bits, np.uint32).view(np.float32)
        out = quantize(x, container, noise=noise.astype(np.uint32)).view(np.uint32)
        rounded_up = int(np.count_nonzero(out > bits))
        assert rounded_up == dropped_value
        assert np.all((out == bits - dropped_value) | (out == bits - dropped_value + 2**dropped_bits))


@pytest.mark.spec("C10")
def test_threshold_is_d_times_two_to_32_minus_d():
    container = Container(8, 20, rounding="stochastic")  # 3 dropped bits on FP32 normals
    bits = np.uint32(0x3F80_0005)  # D = 5
    threshold = 5 * 2**29
    x = np.full(4, bits, np.uint32).view(np.float32)
    out = narrow(x, container, [0, threshold - 1, threshold, 2**32 - 1]).view(np.uint32)
    assert [int(b) for b in out] == [0x3F80_0008, 0x3F80_0008, 0x3F80_0000, 0x3F80_0000]


@pytest.mark.spec("C10")
def test_more_than_32_dropped_bits_use_leading_32():
    # e2m0 anchored at -100 has min_normal 2^-102 and no subnormals, so below it the grid step
    # is 2^-102. The FP32 subnormal 2^-130 + 2^-149 has D = 2^19 + 1 over d = 47 dropped bits.
    container = Container(2, 0, specials="none", rounding="stochastic")
    x = np.float32([2.0**-130 + 2.0**-149] * 3)
    grid = oracle.grid_of(container, -100)
    lsb = Fraction(2) ** (grid.emin - 0)
    fraction = Fraction(float(x[0])) / lsb
    threshold = (fraction * 2**32).numerator // (fraction * 2**32).denominator
    out = narrow(x, container, [threshold - 1, threshold, 0], anchor=-100)
    assert out[0] == float(lsb)
    assert out[1] == 0.0
    assert out[2] == float(lsb)
    assert threshold == (2**19 + 1) >> (47 - 32)


@pytest.mark.spec("C10")
def test_members_ignore_noise():
    container = Container(4, 3, specials="fn", rounding="stochastic")
    members = np.float32([0.0, -0.0, 1.0, 1.125, 448.0, -2.0**-9, np.nan])
    for noise in (0, 1, 2**31, 2**32 - 1):
        out = narrow(members, container, [noise] * members.size)
        assert np.array_equal(out.view(np.uint32)[:-1], members.view(np.uint32)[:-1])
        assert np.isnan(out[-1])


@pytest.mark.spec("C10")
@pytest.mark.parametrize("value", [1.0 + 1 / 3, 2.0**-8 * 1.7, -300.0])
def test_unbiased_in_expectation(value):
    container = Container(4, 3, specials="fn", rounding="stochastic")
    count = 20_000
    rng = np.random.default_rng(12345)
    noise = rng.integers(0, 2**32, count, dtype=np.uint32)
    x = np.full(count, value, np.float32)
    out = quantize(x, container, noise=noise)
    low = quantize(x[:1], Container(4, 3, specials="fn", rounding="toward_zero"))[0]
    high = np.unique(out[out != low])
    assert high.size == 1
    exact = Fraction(float(x[0]))
    probability = float((exact - Fraction(float(low))) / (Fraction(float(high[0])) - Fraction(float(low))))
    rounded_up = int(np.count_nonzero(out != low))
    assert stats.binomtest(rounded_up, count, probability).pvalue > 1e-3
    # The sample mean agrees with the input within 4 standard errors.
    spread = abs(float(high[0]) - float(low))
    standard_error = spread * np.sqrt(probability * (1 - probability) / count)
    assert abs(out.astype(np.float64).mean() - float(exact)) < 4 * standard_error


@pytest.mark.spec("C10", "C12", "C13")
@pytest.mark.parametrize("container", [
    STOCHASTIC,
    Container.training(3, 2, "stochastic"),
    Container(5, 2, rounding="stochastic"),
    Container(3, 1, specials="none", subnormals=True, saturate=True, rounding="stochastic"),
], ids=lambda c: c.name)
def test_matches_oracle_with_random_noise(container):
    anchor = 2 if container.specials == "none" else None
    grid = oracle.grid_of(container, anchor)

    @settings(max_examples=300)
    @given(st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1))
    def check(bits, noise):
        expected = oracle.quantize_bits(bits, grid, noise)
        if expected == oracle.ERROR:
            return
        out = narrow(np.array([bits], np.uint32).view(np.float32), container, [noise], anchor)
        assert hex(int(out.view(np.uint32)[0])) == hex(expected)

    check()


@pytest.mark.spec("C10")
def test_all_bf16_patterns_match_oracle_with_noise():
    container = Container(3, 2, specials="fn", saturate=True, rounding="stochastic")
    grid = oracle.grid_of(container, None)
    bits = np.arange(2**16, dtype=np.uint32)[::3] << np.uint32(16)
    noise = np.random.default_rng(3).integers(0, 2**32, bits.shape, dtype=np.uint32)
    expected = [oracle.quantize_bits(int(b), grid, int(r)) for b, r in zip(bits, noise)]
    out = quantize(bits.view(np.float32), container, noise=noise).view(np.uint32)
    assert [hex(int(b)) for b in out] == [hex(b) for b in expected]


@pytest.mark.spec("C10", "C15")
def test_bf16_base_stochastic_matches_fp32_view():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    bits = np.arange(2**16, dtype=np.uint32) << np.uint32(16)
    finite = np.isfinite(bits.view(np.float32))
    x32 = bits[finite].view(np.float32)
    noise = np.random.default_rng(11).integers(0, 2**32, x32.shape, dtype=np.uint32)
    container = Container(3, 2, specials="none", saturate=True, rounding="stochastic", base="bf16")
    from_float32 = quantize(x32, container, noise=noise)
    from_bfloat16 = quantize(x32.astype(ml_dtypes.bfloat16), container, noise=noise)
    assert np.array_equal(from_bfloat16.astype(np.float32).view(np.uint32), from_float32.view(np.uint32))
    fp32_base = Container(3, 2, specials="none", saturate=True, rounding="stochastic")
    assert np.array_equal(quantize(x32, fp32_base, noise=noise).view(np.uint32), from_float32.view(np.uint32))
