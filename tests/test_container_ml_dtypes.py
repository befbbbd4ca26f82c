"""Bit-exact agreement with ml_dtypes round trips for every standard format (SPEC.md C3, C8, C12).

ml_dtypes differs by design in one place: its FP6/FP4 formats (no NaN code) map NaN to a zero
with the opposite sign, while quantize raises ValueError. Those NaN inputs are compared apart.
"""

import numpy as np
import pytest

from reference import Container, quantize

ml_dtypes = pytest.importorskip("ml_dtypes")

ML_DTYPES_NAMES = {
    "bf16": "bfloat16",
    "fp16": "float16",
    "e5m2": "float8_e5m2",
    "e4m3": "float8_e4m3",
    "e4m3fn": "float8_e4m3fn",
    "e3m4": "float8_e3m4",
    "e3m2fn": "float6_e3m2fn",
    "e2m3fn": "float6_e2m3fn",
    "e2m1fn": "float4_e2m1fn",
}


def all_bf16_as_float32():
    return (np.arange(2**16, dtype=np.uint32) << np.uint32(16)).view(np.float32)


def ml_dtypes_round_trip(x, name):
    dtype = np.float16 if name == "fp16" else getattr(ml_dtypes, ML_DTYPES_NAMES[name])
    with np.errstate(over="ignore", invalid="ignore"):
        return x.astype(dtype).astype(np.float32)


def assert_same_bits(actual, expected, inputs):
    """Compare float32 arrays by bit pattern, NaNs by class; report the first mismatch in hex."""
    actual_bits = actual.view(np.uint32)
    expected_bits = expected.view(np.uint32)
    both_nan = np.isnan(actual) & np.isnan(expected)
    same_nan_sign = (actual_bits >> 31) == (expected_bits >> 31)
    mismatch = (actual_bits != expected_bits) & ~(both_nan & same_nan_sign)
    if mismatch.any():
        i = int(np.flatnonzero(mismatch)[0])
        raise AssertionError(
            f"{int(mismatch.sum())} mismatches; first: input 0x{int(inputs.view(np.uint32)[i]):08x} "
            f"gave 0x{int(actual_bits[i]):08x}, expected 0x{int(expected_bits[i]):08x}"
        )


@pytest.mark.spec("C3", "C8", "C12", "C13")
@pytest.mark.parametrize("name", list(ML_DTYPES_NAMES))
def test_all_bf16_patterns_match_ml_dtypes(name):
    container = Container.from_name(name)
    x = all_bf16_as_float32()
    if not container.has_nan:
        x = x[~np.isnan(x)]
    assert_same_bits(quantize(x, container), ml_dtypes_round_trip(x, name), x)


@pytest.mark.spec("C3", "C14")
@pytest.mark.parametrize("name", ["e3m2fn", "e2m3fn", "e2m1fn"])
def test_nan_without_nan_code_raises_where_ml_dtypes_gives_zero(name):
    x = np.float32([1.0, np.nan])
    assert ml_dtypes_round_trip(x[1:], name)[0] == 0.0
    with pytest.raises(ValueError, match="no NaN code; .*element 1: 0x7fc00000"):
        quantize(x, Container.from_name(name))


@pytest.mark.spec("C3", "C8", "C12")
@pytest.mark.parametrize("name", list(ML_DTYPES_NAMES))
def test_strided_fp32_patterns_match_ml_dtypes(name):
    # Stride 65,521 (a prime) walks every low-bit residue and every exponent field.
    bits = np.arange(0, 2**32, 65_521, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    container = Container.from_name(name)
    if not container.has_nan:
        x = x[~np.isnan(x)]
    assert_same_bits(quantize(x, container), ml_dtypes_round_trip(x, name), x)


@pytest.mark.exhaustive
@pytest.mark.spec("C3", "C8", "C12")
@pytest.mark.parametrize("name", list(ML_DTYPES_NAMES))
def test_every_fp32_pattern_matches_ml_dtypes(name):
    container = Container.from_name(name)
    chunk = 2**24
    for start in range(0, 2**32, chunk):
        x = np.arange(start, start + chunk, dtype=np.uint64).astype(np.uint32).view(np.float32)
        if not container.has_nan:
            x = x[~np.isnan(x)]
        assert_same_bits(quantize(x, container), ml_dtypes_round_trip(x, name), x)
