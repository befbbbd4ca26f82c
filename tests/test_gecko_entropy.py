"""Entropy-mode references and the automatic group size (SPEC.md rules G1, G2, G5 and G9)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from reference import Container
from reference.gecko import GeckoFormatError, decode_exponents, encode_exponents, entropy
from reference.gecko import pack, unpack
from reference.gecko.header import GROUP_SIZES
from test_gecko_exponents import exponent_arrays


def reference_byte(stream):
    """Return the entropy-mode reference byte of an exponent stream (after top_max)."""
    return stream[9 + 8 * stream[8] + 1]


@pytest.mark.spec("G5")
@pytest.mark.parametrize("tensor_top", [False, True], ids=["group-tops", "tensor-top"])
@settings(max_examples=30)
@given(exponents=exponent_arrays(), group_size=st.sampled_from(GROUP_SIZES))
def test_both_references_round_trip(tensor_top, exponents, group_size):
    # The encoder's choice is replaced, so each reference codes every kind of input.
    original = entropy._tensor_top_is_smaller
    entropy._tensor_top_is_smaller = lambda *args: tensor_top
    try:
        stream = encode_exponents(exponents, mode="entropy", group_size=group_size)
    finally:
        entropy._tensor_top_is_smaller = original

    assert reference_byte(stream) == int(tensor_top)
    np.testing.assert_array_equal(decode_exponents(stream), exponents)


@pytest.mark.spec("G5")
def test_uniform_tops_use_the_tensor_top():
    # Every group's top is 127, so a top per group costs bits and saves none.
    exponents = (127 - np.arange(4096) % 8).astype(np.uint8)

    assert reference_byte(encode_exponents(exponents, mode="entropy")) == entropy.TENSOR_TOP


@pytest.mark.spec("G5")
def test_spread_tops_use_group_tops():
    # Tops 25 apart with lanes within 2 binades of them: per-group tops save about 4 bits
    # on every lane.
    group = np.arange(4096) // 32
    exponents = (20 + 25 * (group % 8) - np.arange(4096) % 3).astype(np.uint8)

    assert reference_byte(encode_exponents(exponents, mode="entropy")) == entropy.GROUP_TOPS


@pytest.mark.spec("G5", "G9")
@pytest.mark.parametrize("value", [2, 255])
def test_unknown_reference_raises(value):
    stream = bytearray(encode_exponents(np.arange(40, dtype=np.uint8), mode="entropy"))
    stream[9 + 8 + 1] = value

    with pytest.raises(GeckoFormatError, match="reference: must be 0"):
        decode_exponents(bytes(stream))


@pytest.mark.spec("G1", "G2")
@pytest.mark.parametrize("mode", ["fixed", "entropy"])
def test_auto_group_size_keeps_the_smallest_stream(mode):
    rng = np.random.default_rng(5)
    exponents = (120 + rng.integers(0, 6, 3000) - (rng.random(3000) < 0.03) * 30)
    exponents = exponents.astype(np.uint8)
    sizes = {size: len(encode_exponents(exponents, mode=mode, group_size=size))
             for size in GROUP_SIZES}
    stream = encode_exponents(exponents, mode=mode, group_size="auto")

    assert len(stream) == min(sizes.values())
    assert stream[7] == min(sizes, key=lambda size: (sizes[size], size))
    np.testing.assert_array_equal(decode_exponents(stream), exponents)


@pytest.mark.spec("G2", "G6")
def test_pack_with_auto_group_size_round_trips():
    rng = np.random.default_rng(6)
    x = (rng.standard_normal(2000) * 0.05).astype(np.float32)
    stream = pack(x, Container.from_name("fp32"), mode="entropy", group_size="auto")

    assert stream[7] in GROUP_SIZES
    np.testing.assert_array_equal(unpack(stream).view(np.uint32), x.view(np.uint32))


def test_bad_group_size_names_auto():
    with pytest.raises(ValueError, match="'auto' or None"):
        encode_exponents(np.zeros(4, np.uint8), group_size="best")
