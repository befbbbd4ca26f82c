"""Properties of quantize on raw FP32 bit patterns, checked with hypothesis and the oracle.

The strategy draws raw patterns and, for the container under test, the values where rounding
is hard: exact ties on its grid, ties one FP32 ulp away, the overflow threshold, the flush
threshold, subnormals, inf and NaN payloads (SPEC.md C7-C16).
"""

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, example, find, given, settings
from hypothesis import strategies as st

import oracle
from reference import Container, quantize

CONTAINERS = [
    Container.from_name("fp32"),
    Container.from_name("bf16"),
    Container.from_name("fp16"),
    Container.from_name("e5m2"),
    Container.from_name("e4m3fn"),
    Container.from_name("e2m1fn"),
    Container(8, 22),
    Container(8, 0),
    Container(6, 12, subnormals=False, saturate=True),
    Container(3, 5, specials="fn", subnormals=False),
    Container.training(4, 2),
    Container.training(8, 23),
]
ANCHORS = {Container.training(4, 2): 3, Container.training(8, 23): 127}
IDS = [c.name for c in CONTAINERS]


def fp32_bits_of(value):
    with np.errstate(over="ignore"):  # values past FP32's max become inf, which is wanted here
        return int(np.array([value], np.float32).view(np.uint32)[0])


def fp32_bits_of_exact(value):
    """Return the FP32 bits of an exact Fraction or float that FP32 represents."""
    bits = fp32_bits_of(float(value))
    assert Fraction(float(np.uint32(bits).view(np.float32))) == Fraction(value)
    return bits


@st.composite
def grid_tie_bits(draw, container, anchor=None):
    """Return FP32 bits of an exact tie on ``container``'s grid, or one FP32 ulp beside it."""
    grid = oracle.grid_of(container, anchor)
    m = grid.mantissa_bits
    exponent = draw(st.integers(max(grid.emin - 1, -126), min(grid.emax, 126)), label="binade")
    lsb = (max(exponent, grid.emin) if grid.subnormals else exponent) - m
    if lsb - 1 < -149:
        return draw(st.integers(0, 2**31 - 1))
    low_significand = 2**m if exponent >= grid.emin else 0
    k = draw(st.integers(low_significand, 2 ** (m + 1) - 1), label="significand")
    tie = (Fraction(k) + Fraction(1, 2)) * Fraction(2) ** lsb
    fp32_lsb = Fraction(2) ** (max(oracle.floor_log2(tie), -126) - 23)
    if tie >= Fraction(2) ** 128 or (tie / fp32_lsb).denominator != 1:
        # No FP32 value sits on this tie: the container's grid is as fine as FP32's here.
        return draw(st.integers(0, 2**31 - 1))
    bits = fp32_bits_of_exact(tie)
    offset = draw(st.sampled_from([-1, 0, 0, 1]), label="ulp offset")
    sign = draw(st.sampled_from([0, 0x8000_0000]))
    return (bits + offset) | sign


@st.composite
def threshold_bits(draw, container, anchor=None):
    """Return FP32 bits near max, max + ½ ulp, min_normal or min_normal − ½ ulp."""
    grid = oracle.grid_of(container, anchor)
    half_top_ulp = Fraction(2) ** (grid.emax - grid.mantissa_bits - 1)
    candidates = [grid.max_value, Fraction(2) ** grid.emin]
    if grid.max_value + half_top_ulp < Fraction(2) ** 128:
        candidates.append(grid.max_value + half_top_ulp)
    below_min = Fraction(2) ** grid.emin - Fraction(2) ** (grid.emin - grid.mantissa_bits - 2)
    candidates.append(below_min)
    value = draw(st.sampled_from(candidates))
    if value < Fraction(2) ** -149 or value >= Fraction(2) ** 128:
        return draw(st.integers(0, 2**32 - 1))
    nearest = fp32_bits_of(float(value))
    offset = draw(st.integers(-2, 2), label="ulp offset")
    return max(nearest + offset, 0) | draw(st.sampled_from([0, 0x8000_0000]))


SPECIAL_BITS = st.sampled_from([
    0x0000_0000, 0x8000_0000, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0xFFC0_0000,
    0x7F80_0001, 0xFFBF_FFFF, 0x7FFF_FFFF, 0x0000_0001, 0x807F_FFFF, 0x0040_0000,
    0x7F7F_FFFF, 0xFF7F_FFFF, 0x0080_0000,
])


def fp32_patterns(container, anchor=None):
    return st.one_of(
        st.integers(0, 2**32 - 1),
        st.integers(0, 0x007F_FFFF).map(lambda b: b | 0x8000_0000 * (b & 1)),
        SPECIAL_BITS,
        grid_tie_bits(container, anchor),
        threshold_bits(container, anchor),
    )


def quantize_one(bits, container, anchor):
    x = np.array([bits], np.uint32).view(np.float32)
    return int(quantize(x, container, anchor=anchor).view(np.uint32)[0])


def expected_or_raises(bits, container, anchor):
    expected = oracle.quantize_bits(bits, oracle.grid_of(container, anchor))
    if expected == oracle.ERROR:
        with pytest.raises(ValueError):
            quantize_one(bits, container, anchor)
        return None
    return expected


def is_nan_bits(bits):
    return bits & 0x7FFF_FFFF > 0x7F80_0000


# The oracle: every drawn pattern, every container.


@pytest.mark.spec("C7", "C8", "C12", "C13", "C14", "C16")
@pytest.mark.parametrize("container", CONTAINERS, ids=IDS)
def test_matches_oracle(container):
    anchor = ANCHORS.get(container)

    @settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
    @given(fp32_patterns(container, anchor))
    @example(0x3F82_8001)
    @example(0xBF7F_FFFF)
    @example(0x4040_0000)  # 3.0: with m = 0 a tie rounds up, whatever the exponent's parity
    @example(0x40E0_0000)  # 7.0: the tie above e2m1fn's max rounds to 8 and then saturates
    def check(bits):
        expected = expected_or_raises(bits, container, anchor)
        if expected is not None:
            assert hex(quantize_one(bits, container, anchor)) == hex(expected)

    check()


@pytest.mark.spec("C7")
@pytest.mark.parametrize("container", [Container.from_name("e4m3fn"), Container.training(4, 2)],
                         ids=lambda c: c.name)
def test_strategy_reaches_hard_cases(container):
    anchor = ANCHORS.get(container)
    grid = oracle.grid_of(container, anchor)
    strategy = fp32_patterns(container, anchor)
    search = settings(max_examples=5000, database=None, suppress_health_check=list(HealthCheck))

    def exact_tie(bits):
        magnitude, _ = oracle.fp32_decode(bits)
        if isinstance(magnitude, str) or magnitude == 0:
            return False
        exponent = oracle.floor_log2(magnitude)
        lsb = (max(exponent, grid.emin) if grid.subnormals else exponent) - grid.mantissa_bits
        steps = magnitude / Fraction(2) ** lsb
        return steps.denominator == 2

    def beside_tie(bits):
        return exact_tie(bits + 1) or exact_tie(bits - 1)

    def value_is(bits, value):
        return oracle.fp32_decode(bits)[0] == value

    goals = {
        "+0": lambda b: b == 0,
        "-0": lambda b: b == 0x8000_0000,
        "subnormal": lambda b: 0 < b & 0x7FFF_FFFF < 0x0080_0000,
        "normal": lambda b: 0x0080_0000 <= b & 0x7FFF_FFFF < 0x7F80_0000,
        "max": lambda b: value_is(b, grid.max_value),
        "min_normal": lambda b: value_is(b, Fraction(2) ** grid.emin),
        "inf": lambda b: b & 0x7FFF_FFFF == 0x7F80_0000,
        "NaN payload": lambda b: 0x7F80_0000 < b & 0x7FFF_FFFF != 0x7FC0_0000,
        "tie": exact_tie,
        "tie +- 1 ulp": beside_tie,
        "negative tie": lambda b: b >> 31 == 1 and exact_tie(b),
    }
    for name, goal in goals.items():
        found = find(strategy, goal, settings=search)
        assert goal(found), name


# Properties that hold for every container.


@pytest.mark.spec("C7")
@pytest.mark.parametrize("container", CONTAINERS, ids=IDS)
def test_idempotent_on_members(container):
    anchor = ANCHORS.get(container)

    @settings(max_examples=150)
    @given(fp32_patterns(container, anchor))
    def check(bits):
        if expected_or_raises(bits, container, anchor) is None:
            return
        once = quantize_one(bits, container, anchor)
        twice = quantize_one(once, container, anchor)
        assert twice == once or (is_nan_bits(once) and is_nan_bits(twice))

    check()


@pytest.mark.spec("C7", "C13")
@pytest.mark.parametrize("container", CONTAINERS, ids=IDS)
def test_monotonic(container):
    anchor = ANCHORS.get(container)

    @settings(max_examples=150)
    @given(fp32_patterns(container, anchor), fp32_patterns(container, anchor))
    def check(bits_a, bits_b):
        if is_nan_bits(bits_a) or is_nan_bits(bits_b):
            return
        if expected_or_raises(bits_a, container, anchor) is None:
            return
        if expected_or_raises(bits_b, container, anchor) is None:
            return
        x = np.array([bits_a, bits_b], np.uint32).view(np.float32)
        q = quantize(x, container, anchor=anchor)
        if x[0] <= x[1]:
            assert q[0] <= q[1] or np.isnan(q[0]) or np.isnan(q[1])
        else:
            assert q[0] >= q[1] or np.isnan(q[0]) or np.isnan(q[1])

    check()


@pytest.mark.spec("C16")
@pytest.mark.parametrize("container", CONTAINERS, ids=IDS)
def test_odd_symmetry(container):
    anchor = ANCHORS.get(container)

    @settings(max_examples=150)
    @given(fp32_patterns(container, anchor))
    def check(bits):
        if expected_or_raises(bits, container, anchor) is None:
            return
        positive = quantize_one(bits & 0x7FFF_FFFF, container, anchor)
        negative = quantize_one(bits | 0x8000_0000, container, anchor)
        assert negative == positive | 0x8000_0000

    check()


@pytest.mark.spec("C8")
@pytest.mark.parametrize("container", CONTAINERS, ids=IDS)
def test_error_at_most_half_ulp_in_range(container):
    anchor = ANCHORS.get(container)
    grid = oracle.grid_of(container, anchor)

    @settings(max_examples=150)
    @given(fp32_patterns(container, anchor))
    def check(bits):
        x, _ = oracle.fp32_decode(bits & 0x7FFF_FFFF)
        if isinstance(x, str) or x == 0 or x > grid.max_value:
            return
        if not grid.subnormals and x < Fraction(2) ** grid.emin:
            return
        q, _ = oracle.fp32_decode(quantize_one(bits & 0x7FFF_FFFF, container, anchor))
        exponent = oracle.floor_log2(x)
        ulp = Fraction(2) ** (max(exponent, grid.emin) - grid.mantissa_bits)
        assert abs(q - x) <= ulp / 2

    check()


@pytest.mark.spec("C8")
@pytest.mark.parametrize("container", CONTAINERS, ids=IDS)
def test_ties_round_to_even_significand(container):
    anchor = ANCHORS.get(container)
    grid = oracle.grid_of(container, anchor)

    @settings(max_examples=150)
    @given(grid_tie_bits(container, anchor))
    def check(bits):
        x, _ = oracle.fp32_decode(bits & 0x7FFF_FFFF)
        if isinstance(x, str) or x == 0:
            return
        exponent = oracle.floor_log2(x)
        lsb = (max(exponent, grid.emin) if grid.subnormals else exponent) - grid.mantissa_bits
        steps = x / Fraction(2) ** lsb
        if steps.denominator != 2 or expected_or_raises(bits, container, anchor) is None:
            return
        q, _ = oracle.fp32_decode(quantize_one(bits & 0x7FFF_FFFF, container, anchor))
        if x > grid.max_value or q == 0 and not grid.subnormals:
            return  # the even neighbour overflowed or flushed; C12 and C13 decide, not C8
        significand = q / Fraction(2) ** lsb
        assert significand.denominator == 1
        assert significand.numerator % 2 == 0 or significand.numerator == 2 ** (grid.mantissa_bits + 1)

    check()
