"""The entropy-mode group size chosen from symbol counts (SPEC.md rules G1, G2 and G5)."""

import numpy as np
import pytest
from hypothesis import assume, example, given, settings, strategies as st

from reference import Container
from reference.gecko import decode_exponents, encode_exponents, group_choice, huffman
from reference.gecko import pack, unpack
from reference.gecko.groups import encode_groups
from reference.gecko.header import GROUP_SIZES
from test_gecko_entropy import reference_byte
from test_gecko_exponents import exponent_arrays

REFERENCES = (group_choice.GROUP_TOPS, group_choice.TENSOR_TOP)


def body_bits(exponents, zeros, group_size, reference):
    """Return the bits of the entropy-mode body encoded with ``group_size`` and ``reference``."""
    return 8 * len(encode_groups(exponents, zeros, group_size, "entropy", reference))


@pytest.mark.spec("G5")
@settings(max_examples=20)
@given(exponents=exponent_arrays(), subnormal_share=st.sampled_from([0.0, 0.5]),
       seed=st.integers(0, 2**16))
@example(exponents=np.full(5, 255, np.uint8), subnormal_share=0.0, seed=0)
@example(exponents=np.zeros(0, np.uint8), subnormal_share=0.0, seed=0)
def test_prediction_is_exact_on_every_block(exponents, subnormal_share, seed):
    # Tensors of at most SAMPLE_ALL blocks are counted whole. In a packed tensor some lanes
    # with exponent field 0 are subnormals, not zeros.
    flat = exponents.ravel()
    assume(flat.size <= group_choice.SAMPLE_ALL * group_choice.BLOCK)
    zeros = flat == 0
    zeros &= np.random.default_rng(seed).random(flat.size) >= subnormal_share
    predictions = group_choice.predicted_bits(flat, zeros)

    for group_size in GROUP_SIZES:
        for reference in REFERENCES:
            assert predictions[group_size, reference] == body_bits(flat, zeros, group_size,
                                                                   reference)


@pytest.mark.spec("G1", "G5")
@settings(max_examples=10)
@given(exponents=exponent_arrays())
@example(exponents=np.full(3, 200, np.uint8))
def test_default_stream_is_never_larger_than_auto(exponents):
    # Larger tensors are sampled, and a prediction from a sample is an estimate.
    assume(exponents.size <= group_choice.SAMPLE_ALL * group_choice.BLOCK)
    chosen = encode_exponents(exponents, mode="entropy")
    auto = encode_exponents(exponents, mode="entropy", group_size="auto")

    assert len(chosen) <= len(auto)
    np.testing.assert_array_equal(decode_exponents(chosen), exponents)


@pytest.mark.spec("G1", "G5")
@settings(max_examples=20)
@given(exponents=exponent_arrays())
@example(exponents=np.zeros(0, np.uint8))
@example(exponents=np.random.default_rng(0).integers(0, 256, 100).astype(np.uint8))
def test_auto_stream_is_never_larger_than_default(exponents):
    # "auto" tries every group size and both references, so nothing the default picks is smaller.
    chosen = encode_exponents(exponents, mode="entropy")
    auto = encode_exponents(exponents, mode="entropy", group_size="auto")

    assert len(auto) <= len(chosen)
    np.testing.assert_array_equal(decode_exponents(auto), exponents)


@pytest.mark.spec("G1", "G5")
def test_sampled_choice_counts_padding():
    # 65,559 zeros are more than SAMPLE_ALL blocks. Every group size codes them in one bit a
    # lane, so only the padding to the group size makes them differ, and 8 pads least.
    exponents = np.zeros((39, 41, 41), np.uint8)
    chosen = encode_exponents(exponents, mode="entropy")

    assert len(chosen) == len(encode_exponents(exponents, mode="entropy", group_size="auto"))
    assert chosen[7] == 8


@pytest.mark.spec("G1", "G5")
def test_choice_is_deterministic():
    rng = np.random.default_rng(11)
    exponents = (100 + rng.integers(0, 9, (300, 70)) * (rng.random((300, 70)) < 0.7))
    exponents = exponents.astype(np.uint8)
    first = encode_exponents(exponents, mode="entropy")

    assert encode_exponents(exponents.copy(), mode="entropy") == first
    assert encode_exponents(np.asfortranarray(exponents), mode="entropy") == first


@pytest.mark.spec("G1", "G5")
def test_ties_go_to_group_32():
    # Every group's top is 127 and the size is a multiple of 64, so under the tensor top
    # every group size gives the same body.
    exponents = (127 - np.arange(4096) % 8).astype(np.uint8)
    stream = encode_exponents(exponents, mode="entropy")

    assert stream[7] == 32
    assert reference_byte(stream) == group_choice.TENSOR_TOP


@pytest.mark.spec("G1", "G5")
@pytest.mark.parametrize("group_size", [8, 64])
def test_sampled_choice_finds_clear_winner(group_size):
    # 2**19 lanes are more than SAMPLE_ALL blocks, so the sparse sample decides. Tops change
    # every ``group_size`` lanes. With 8, groups of 8 follow the tops and save bits on every
    # lane. With 64, every size codes the lanes alike, and groups of 64 send the fewest maxima.
    lanes = np.arange(1 << 19)
    tops = 40 + 30 * ((lanes // group_size) % 5)
    exponents = (tops - (lanes * 7) % 3).astype(np.uint8)
    flat = exponents.ravel()
    prediction = group_choice.predicted_bits(flat, flat == 0)
    stream = encode_exponents(exponents, mode="entropy")

    assert stream[7] == group_size
    assert reference_byte(stream) == group_choice.GROUP_TOPS
    actual = body_bits(flat, flat == 0, group_size, group_choice.GROUP_TOPS)
    assert abs(prediction[group_size, group_choice.GROUP_TOPS] - actual) < 0.01 * actual
    np.testing.assert_array_equal(decode_exponents(stream), exponents)


@pytest.mark.spec("G1", "G2")
@pytest.mark.parametrize("group_size", GROUP_SIZES)
def test_explicit_group_size_is_kept(group_size):
    exponents = (120 + np.arange(1000) % 7).astype(np.uint8)
    stream = encode_exponents(exponents, mode="entropy", group_size=group_size)

    assert stream[7] == group_size
    np.testing.assert_array_equal(decode_exponents(stream), exponents)


@pytest.mark.spec("G1", "G2")
def test_fixed_mode_defaults_to_group_32():
    exponents = (120 + np.arange(1000) % 7).astype(np.uint8)

    assert encode_exponents(exponents)[7] == 32
    assert encode_exponents(exponents) == encode_exponents(exponents, group_size=32)


@pytest.mark.spec("G5", "G6")
def test_pack_default_chooses_and_round_trips():
    # A gradient-like tensor whose magnitude drifts along its rows.
    rng = np.random.default_rng(12)
    scale = np.exp2(-np.arange(64) // 4)[:, None].astype(np.float32)
    x = (rng.standard_normal((64, 100)).astype(np.float32) * scale)
    x[rng.random(x.shape) < 0.2] = -0.0
    fp32 = Container.from_name("fp32")
    stream = pack(x, fp32, mode="entropy")
    sizes = [len(pack(x, fp32, mode="entropy", group_size=size)) for size in GROUP_SIZES]

    assert len(stream) <= min(sizes)
    np.testing.assert_array_equal(unpack(stream).view(np.uint32), x.view(np.uint32))


@pytest.mark.spec("G5")
@settings(max_examples=40)
@given(counts=st.lists(st.integers(0, 10**6), min_size=1, max_size=257))
@example(counts=[2**k for k in range(20)])
@example(counts=[0, 5])
@example(counts=[0])
def test_code_bits_match_package_merge(counts):
    counts = np.array(counts, np.int64)
    lengths = huffman.code_lengths(counts)

    assert group_choice.code_bits_of(counts) == int((counts * lengths).sum())
