"""Round trips and sizes of the packed tensor format (SPEC.md rules G6 to G8)."""

import numpy as np
import pytest
from hypothesis import example, given, strategies as st
from hypothesis.extra import numpy as hnp

from reference import Container, max_anchor, quantize
from reference.gecko import GeckoFormatError, encoded_bits, pack, unpack

MODES = ("fixed", "entropy")
FP32 = Container.from_name("fp32")
BF16 = Container.from_name("bf16")
# Bit patterns that break codecs: signed zeros, subnormals, inf, quiet and signalling NaNs
# with payloads, and the extremes of the normal range.
NASTY_FP32 = np.array(
    [0x0000_0000, 0x8000_0000, 0x0000_0001, 0x807F_FFFF, 0x7F80_0000, 0xFF80_0000,
     0x7FC0_0000, 0xFFC0_0001, 0x7F80_0001, 0xFFBF_FFFF, 0x0080_0000, 0x7F7F_FFFF],
    np.uint32,
)


def fp32_bits(values):
    return np.ascontiguousarray(values).view(np.uint32)


@pytest.mark.spec("G6", "G7")
@given(bits=hnp.arrays(np.uint32, hnp.array_shapes(min_dims=0, max_dims=3, min_side=0,
                                                   max_side=40)),
       mode=st.sampled_from(MODES))
@example(bits=NASTY_FP32, mode="fixed")
@example(bits=NASTY_FP32, mode="entropy")
@example(bits=np.zeros(0, np.uint32), mode="fixed")
def test_fp32_patterns_round_trip(bits, mode):
    decoded = unpack(pack(bits.view(np.float32), FP32, mode=mode))

    assert decoded.dtype == np.float32
    assert decoded.shape == bits.shape
    np.testing.assert_array_equal(fp32_bits(decoded), bits)


@pytest.mark.spec("G7")
@pytest.mark.parametrize("mode", MODES)
def test_every_bf16_pattern_round_trips_as_float32(mode):
    bits = np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)
    decoded = unpack(pack(bits.view(np.float32), BF16, mode=mode))

    np.testing.assert_array_equal(fp32_bits(decoded), bits)


@pytest.mark.spec("G7")
@pytest.mark.parametrize("container", [BF16, Container(8, 7, base="bf16")], ids=["fp32", "bf16"])
def test_every_bf16_pattern_round_trips_as_bfloat16(container):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    patterns = np.arange(1 << 16, dtype=np.uint32)
    x = patterns.astype(np.uint16).view(ml_dtypes.bfloat16)
    decoded = unpack(pack(x, container))

    np.testing.assert_array_equal(fp32_bits(decoded) >> np.uint32(16), patterns)
    np.testing.assert_array_equal(fp32_bits(decoded) & np.uint32(0xFFFF), 0)


@st.composite
def quantized_tensors(draw):
    """A container, an anchor and a tensor of its members built from raw FP32 patterns."""
    kind = draw(st.sampled_from(["training", "preset"]), label="kind")
    if kind == "training":
        container = Container.training(draw(st.integers(1, 8), label="e"),
                                       draw(st.integers(0, 23), label="m"))
    else:
        container = Container.from_name(
            draw(st.sampled_from(["fp16", "e5m2", "e4m3fn", "e3m4", "e3m2fn", "e2m1fn"]),
                 label="name"))
    bits = draw(hnp.arrays(np.uint32, st.integers(0, 200)), label="bits")
    # Keep most values in a few binades, as tensors are, and add some zeros of both signs.
    exponent = draw(st.integers(100, 140), label="exponent")
    bits = (bits & np.uint32(0x83FF_FFFF)) | np.uint32(exponent << 23)
    bits[::5] &= np.uint32(0x8000_0000)
    x = bits.view(np.float32)
    anchor = max_anchor(x, container) if kind == "training" else None
    return container, anchor, quantize(x, container, anchor=anchor)


@pytest.mark.spec("G6", "G7")
@given(case=quantized_tensors(), mode=st.sampled_from(MODES))
def test_quantized_tensors_round_trip(case, mode):
    container, anchor, x = case
    decoded = unpack(pack(x, container, anchor=anchor, mode=mode))

    np.testing.assert_array_equal(fp32_bits(decoded), fp32_bits(x))


@pytest.mark.spec("G6")
def test_negative_zeros_keep_their_sign():
    x = np.float32([0.0, -0.0, 1.0, -0.0, 0.0])
    container = Container.training(3, 1)
    decoded = unpack(pack(x, container, anchor=0))

    np.testing.assert_array_equal(fp32_bits(decoded), fp32_bits(x))


@pytest.mark.spec("G6")
def test_positive_zeros_cost_one_mask_bit_each():
    x = np.zeros(1 << 12, np.float32)
    x[::32] = 1.0
    sizes = encoded_bits(x, Container.training(4, 3), anchor=0)

    # Per group of 32: zero mode 1 (2 bits), a 32-bit mask and width code 0 (3 bits); every
    # top is 127, so the top frame is 2 bytes and the top plane empty, and the exception frame
    # is 2 bytes with no counts. One sign, 3 mantissa.
    groups = x.size // 32
    assert sizes["exponent_bits"] == 8 * (groups * 2 // 8 + groups * 4 + 2 + groups * 3 // 8 + 2)
    assert sizes["sign_bits"] == groups
    assert sizes["mantissa_bits"] == groups * 3


@pytest.mark.spec("G6")
def test_negative_zeros_add_one_sign_bit_each():
    x = np.zeros(64, np.float32)
    x[1] = -0.0
    sizes = encoded_bits(x, Container.training(4, 3), anchor=0)

    assert sizes["sign_bits"] == 64


@pytest.mark.spec("G6")
def test_subnormals_are_not_zeros():
    bits = np.array([0x0000_0001, 0x8000_0000, 0x0000_0000, 0x0040_0000], np.uint32)
    sizes = encoded_bits(bits.view(np.float32), FP32)

    # Two subnormals store a sign and a mantissa; the two zeros store neither.
    assert sizes["mantissa_bits"] == 8 * -(-2 * 23 // 8)
    np.testing.assert_array_equal(fp32_bits(unpack(pack(bits.view(np.float32), FP32))), bits)


@pytest.mark.spec("G8")
@pytest.mark.parametrize("mode", MODES)
def test_encoded_bits_match_packed_length(mode):
    rng = np.random.default_rng(3)
    x = np.maximum(rng.standard_normal(5000).astype(np.float32), 0)
    container = Container.training(5, 2)
    anchor = max_anchor(x, container)
    x = quantize(x, container, anchor=anchor)
    sizes = encoded_bits(x, container, anchor=anchor, mode=mode)

    assert sizes["total_bits"] == 8 * len(pack(x, container, anchor=anchor, mode=mode))
    assert sizes["total_bits"] == sum(v for k, v in sizes.items() if k != "total_bits")


def test_pack_max_anchor_stores_the_anchor():
    x = np.float32([3.0, 0.25, -6.0])
    container = Container.training(3, 2)
    decoded = unpack(pack(x, container, anchor="max"))

    np.testing.assert_array_equal(decoded, x)


def test_pack_rejects_non_members():
    with pytest.raises(ValueError, match="quantize x first"):
        pack(np.float32([0.1]), Container.from_name("e4m3fn"))


def test_pack_rejects_non_bf16_values_in_bf16_container():
    with pytest.raises(ValueError, match="round x to BF16 first"):
        pack(np.float32([0.1]), BF16)


def test_unpack_rejects_exponent_stream():
    from reference.gecko import encode_exponents

    with pytest.raises(GeckoFormatError, match="kind"):
        unpack(encode_exponents(np.zeros(3, np.uint8)))
