"""The lean path of quantize equals the general path (SPEC.md C6-C13).

``reference.quantize_lean`` serves anchored containers without subnormals on small float32
tensors. ``reference.quantize.quantize_bits`` is the general path, and the exact oracle gives
it the anchor. Both are compared on every finite BF16 pattern and on random FP32
tensors. A test also checks that the lean path serves those tensors, so that a path that always
falls back cannot pass.
"""

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from conformance import oracle
from reference import Container, max_anchor, quantize
from reference.quantize import MAGNITUDE_MASK, quantize_bits, rounded_exponent
from reference.quantize_lean import quantize_lean

ROUNDINGS = ("nearest_even", "toward_zero", "stochastic")
ALL_BF16_BITS = np.arange(2**16, dtype=np.uint32) << np.uint32(16)
BF16_FIELD = (ALL_BF16_BITS >> np.uint32(23)) & np.uint32(0xFF)
# Zeros and FP32 normals below the exponent field cap, both signs.
NORMAL_OR_ZERO = (BF16_FIELD > 0) | ((ALL_BF16_BITS & MAGNITUDE_MASK) == 0)


def general(bits, container, anchor, noise):
    """Return the general path's bits, with ``"max"`` resolved by the exact oracle."""
    if anchor == "max":
        anchor = oracle.max_anchor([int((bits & MAGNITUDE_MASK).max())], container)
    return quantize_bits(bits, container.with_anchor(anchor), noise)


def noise_for(container, size, seed=0):
    if container.rounding != "stochastic":
        return None
    return np.random.default_rng(seed).integers(0, 2**32, size, dtype=np.uint32)


@pytest.mark.spec("C6", "C7", "C12", "C13")
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("e, m", [(1, 0), (2, 1), (3, 2), (4, 3), (5, 7), (7, 0), (8, 7), (8, 23)])
def test_lean_matches_general_every_bf16_pattern(e, m, rounding):
    container = Container.training(e, m, rounding=rounding)
    # The field cap sets the tensor's max and so the anchor, from the bottom of the FP32 normal
    # range (field 1) to its top (254). So windows both reach below 2^-126 (subnormal check)
    # and stop above it (flush).
    for cap in (1, 40, 127, 130, 254):
        bits = ALL_BF16_BITS[NORMAL_OR_ZERO & (BF16_FIELD <= cap)]
        noise = noise_for(container, bits.size, seed=cap)
        x = bits.view(np.float32)
        lean = quantize_lean(x, container, "max", noise)
        if cap == 254 and m < 7 and rounding != "toward_zero":
            # 0x7f7f0000 rounds up to 2^128, which overflows: the general path saturates.
            assert lean is None
            continue
        assert lean is not None
        expected = general(bits, container, "max", noise)
        assert np.array_equal(lean.view(np.uint32), expected)


@pytest.mark.spec("C5", "C13")
@pytest.mark.parametrize("anchor", [-100, 0, 5, 127])
def test_lean_int_anchor_matches_general(anchor):
    container = Container.training(4, 3)
    # The largest magnitude, 1.1111111b * 2^4, rounds to 2^5 at m = 3.
    bits = ALL_BF16_BITS[NORMAL_OR_ZERO & (BF16_FIELD <= 127 + 4)]
    x = bits.view(np.float32)
    lean = quantize_lean(x, container, anchor, None)
    if anchor < 5:
        assert lean is None  # values above the window overflow: the general path saturates
    else:
        assert np.array_equal(lean.view(np.uint32), general(bits, container, anchor, None))
    assert np.array_equal(quantize(x, container, anchor=anchor).view(np.uint32),
                          general(bits, container, anchor, None))


@pytest.mark.spec("C6", "C12", "C14")
def test_lean_falls_back_on_rare_inputs():
    container = Container.training(8, 3)
    subnormal = np.float32([1.0, 2.0**-140, -0.0])
    inf = np.float32([1.0, np.inf])
    zeros = np.zeros(4, np.float32)
    for x in (subnormal, inf, zeros):
        assert quantize_lean(x, container, "max", None) is None
        bits = x.view(np.uint32)
        expected = quantize_bits(bits, container.with_anchor(max_anchor(x, container)), None)
        assert np.array_equal(quantize(x, container, anchor="max").view(np.uint32), expected)


@pytest.mark.spec("C6")
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("m", [0, 1, 6, 22, 23])
def test_rounded_exponent_matches_oracle(m, rounding):
    container = Container.training(4, m, rounding=rounding)
    # Every BF16 normal pattern, and the FP32 neighbours of ties and binade tops.
    patterns = {int(b) for b in ALL_BF16_BITS[BF16_FIELD > 0] & MAGNITUDE_MASK
                if b & MAGNITUDE_MASK < 0x7F80_0000}
    for base in (0x3F80_0000, 0x0080_0000, 0x7F00_0000):
        for offset in itertools.chain(range(-3, 4), [(1 << 22) - 1, (1 << 22), 1 << 21]):
            for low in ((1 << (23 - m)) - 1, 1 << max(22 - m, 0), 0):
                pattern = base + offset + low
                if 0x0080_0000 <= pattern < 0x7F80_0000:
                    patterns.add(pattern)
    for pattern in sorted(patterns)[::7]:
        expected = oracle.max_anchor([pattern], container)
        assert min(rounded_exponent(pattern, m, rounding), 127) == expected, hex(pattern)


@st.composite
def training_cases(draw):
    e = draw(st.integers(1, 8))
    m = draw(st.integers(0, 23))
    container = Container.training(e, m, rounding=draw(st.sampled_from(ROUNDINGS)))
    size = draw(st.integers(1, 64))
    # Exponent fields near each other, as in a real tensor, with zeros and rare extremes.
    top = draw(st.integers(1, 254))
    fields = st.integers(max(top - 40, 0), top) | st.sampled_from([0, 255])
    patterns = st.tuples(st.integers(0, 1), fields, st.integers(0, 2**23 - 1)).map(
        lambda p: (p[0] << 31) | (p[1] << 23) | p[2]
    )
    bits = np.array(draw(st.lists(patterns, min_size=size, max_size=size)), np.uint32)
    anchor = draw(st.just("max") | st.integers(top - 140, min(top - 120, 127)))
    return container, bits, anchor


@pytest.mark.spec("C6", "C7", "C12", "C13")
@given(training_cases())
def test_quantize_matches_general_on_fp32(case):
    container, bits, anchor = case
    x = bits.view(np.float32)
    noise = noise_for(container, bits.size)
    try:
        expected = general(bits, container, anchor, noise)
    except ValueError:
        # NaN without a NaN code: the general path raises, and so must quantize.
        with pytest.raises(ValueError, match="has no NaN code"):
            quantize(x, container, anchor=anchor, noise=noise)
        return
    got = quantize(x, container, anchor=anchor, noise=noise)
    assert np.array_equal(got.view(np.uint32), expected)


@pytest.mark.spec("C5", "C15")
def test_lean_layouts_and_anchor_types():
    container = Container.training(4, 3)
    x = (np.random.default_rng(1).standard_normal((96, 48)) * 0.05).astype(np.float32)
    for view in (x.T, x[:, ::3], x.reshape(2, 48, 48)):
        lean = quantize_lean(view, container, "max", None)
        assert lean is not None
        assert lean.shape == view.shape
        bits = np.ascontiguousarray(view).reshape(-1).view(np.uint32)
        assert np.array_equal(lean.reshape(-1).view(np.uint32), general(bits, container, "max", None))
    anchor = max_anchor(x, container)
    expected = quantize(x, container, anchor=anchor)
    assert np.array_equal(quantize(x, container, anchor=np.int64(anchor)), expected)
    assert quantize_lean(x, container, True, None) is None
    assert quantize_lean(x, container, 128, None) is None
    with pytest.raises(TypeError, match="anchor must be None or an int; got True"):
        quantize(x, container, anchor=True)
    with pytest.raises(ValueError, match="anchor must be in -149..127"):
        quantize(x, container, anchor=128)
