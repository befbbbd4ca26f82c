"""Round trips and sizes of the Gecko exponent codec (SPEC.md rules G1 to G5)."""

import numpy as np
import pytest
from hypothesis import example, given, strategies as st
from hypothesis.extra import numpy as hnp

from reference.gecko import (
    GeckoFormatError, bitfields, decode_exponents, encode_exponents, huffman,
)
from reference.gecko.fixed import WIDTHS
from reference.gecko.huffman import LENGTH_LIMIT, code_lengths
from reference.gecko.header import GROUP_SIZES, Reader

MODES = ("fixed", "entropy")
HEADER_BYTES = 9  # magic, version, kind, mode, group size, ndim; plus 8 bytes per dimension


@st.composite
def exponent_arrays(draw):
    """Exponent arrays shaped like real tensors: a centre, a spread, and a share of zeros."""
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=70), label="shape")
    size = int(np.prod(shape))
    centre = draw(st.integers(0, 255), label="centre")
    spread = draw(st.sampled_from([0, 1, 2, 5, 20, 255]), label="spread")
    zero_share = draw(st.sampled_from([0.0, 0.1, 0.5, 0.95, 1.0]), label="zero share")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    values = np.clip(centre + rng.integers(-spread, spread + 1, size), 0, 255)
    values[rng.random(size) < zero_share] = 0
    return values.astype(np.uint8).reshape(shape)


@pytest.mark.spec("G2", "G3", "G4", "G5")
@given(exponents=exponent_arrays(), mode=st.sampled_from(MODES),
       group_size=st.sampled_from((*GROUP_SIZES, None)))
@example(exponents=np.zeros(0, np.uint8), mode="fixed", group_size=32)
@example(exponents=np.full(5, 9, np.uint8), mode="entropy", group_size=None)
@example(exponents=np.zeros((), np.uint8) + 7, mode="entropy", group_size=32)
def test_exponents_round_trip(exponents, mode, group_size):
    blob = encode_exponents(exponents, mode=mode, group_size=group_size)
    decoded = decode_exponents(blob)

    assert decoded.dtype == np.uint8
    assert decoded.shape == exponents.shape
    np.testing.assert_array_equal(decoded, exponents)


@pytest.mark.spec("G2", "G3", "G4", "G5")
@given(raw=hnp.arrays(np.uint8, hnp.array_shapes(min_dims=1, max_dims=2, max_side=100)),
       mode=st.sampled_from(MODES))
def test_exponents_round_trip_raw_bytes(raw, mode):
    np.testing.assert_array_equal(decode_exponents(encode_exponents(raw, mode=mode)), raw)


@pytest.mark.spec("G2", "G4", "G5")
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("size", [1, 31, 32, 33, 2047, 2048, 2049, 4095, 4096 + 5])
def test_exponents_round_trip_every_value(mode, size):
    exponents = (np.arange(size) * 37 % 256).astype(np.uint8)
    np.testing.assert_array_equal(decode_exponents(encode_exponents(exponents, mode=mode)),
                                  exponents)


@pytest.mark.spec("G4")
def test_fixed_mode_reaches_every_width_code():
    # Eight groups without zeros whose lanes alternate between 1 and 1 + range. Half the lanes
    # of a group are far below its top, too many for exceptions, so each range needs its
    # width: 0, 1, 2, 3, 4, 5, 6 and 8.
    ranges = [0, 1, 3, 7, 15, 31, 63, 254]
    exponents = np.concatenate([1 + np.where(np.arange(32) % 2, span, 0) for span in ranges])
    exponents = exponents.astype(np.uint8)
    blob = encode_exponents(exponents, mode="fixed")
    body = blob[HEADER_BYTES + 8 :]
    modes, frame, tops, codes = body[:2], body[2:4], body[4:12], body[12:15]
    exception_frame, payload = body[15:17], body[17:]

    assert modes == b"\x00\x00"  # zero mode 0 in all eight groups
    assert frame == b"\x01\x08"  # top_min 1, top width 8
    assert list(tops) == ranges  # top - top_min
    assert int.from_bytes(codes, "little") == sum(code << (3 * code) for code in range(8))
    assert exception_frame == b"\x00\x00"  # no exception counts, no high parts
    assert len(payload) == sum(32 * width // 8 for width in WIDTHS)
    np.testing.assert_array_equal(decode_exponents(blob), exponents)


@pytest.mark.spec("G3", "G4")
def test_all_zero_groups_store_only_their_mode():
    blob = encode_exponents(np.zeros(64, np.uint8), mode="fixed")

    # Zero mode 3 in two groups, an empty top frame, an empty exception frame, nothing else.
    assert blob[HEADER_BYTES + 8 :] == b"\x0f\x00\x00\x00\x00"


@pytest.mark.spec("G3", "G4")
def test_group_without_zeros_stores_no_mask():
    blob = encode_exponents(np.full(32, 127, np.uint8), mode="fixed")

    # Zero mode 0, top frame (127, width 0), width code 0, exception frame and no deltas.
    assert blob[HEADER_BYTES + 8 :] == b"\x00\x7f\x00\x00\x00\x00"


@pytest.mark.spec("G3", "G4")
def test_last_group_padding_is_masked():
    blob = encode_exponents(np.full(3, 127, np.uint8), mode="fixed")

    # Lanes 3..31 of the only group are padding, marked as zeros in a mask (zero mode 1).
    assert blob[HEADER_BYTES + 8 :] == (b"\x01" + bytes([0xF8, 0xFF, 0xFF, 0xFF])
                                        + b"\x7f\x00\x00\x00\x00")


@pytest.mark.spec("G4")
def test_sparse_zeros_are_stored_inline():
    # One zero among 31 exponents of range 2: a mask costs 32 + 31 * 2 bits, inline 32 * 2.
    exponents = np.full(32, 120, np.uint8)
    exponents[1::2] = 122
    exponents[5] = 0
    blob = encode_exponents(exponents, mode="fixed")
    body = blob[HEADER_BYTES + 8 :]

    assert body[0] == 2  # zero mode 2
    assert len(body) == 1 + 2 + 1 + 2 + 8
    np.testing.assert_array_equal(decode_exponents(blob), exponents)


@pytest.mark.spec("G4", "G5")
@pytest.mark.parametrize("mode", MODES)
def test_relu_like_tensor_costs_under_four_bits(mode):
    rng = np.random.default_rng(0)
    values = np.maximum(rng.standard_normal(1 << 16).astype(np.float32), 0)
    exponents = ((values.view(np.uint32) >> 23) & 0xFF).astype(np.uint8)
    bits = 8 * len(encode_exponents(exponents, mode=mode)) / exponents.size

    assert bits < 4.0


@pytest.mark.spec("G4", "G5")
def test_entropy_mode_beats_fixed_mode_on_weights():
    rng = np.random.default_rng(1)
    values = (rng.standard_normal(1 << 16) * 0.02).astype(np.float32)
    exponents = ((values.view(np.uint32) >> 23) & 0xFF).astype(np.uint8)

    fixed = len(encode_exponents(exponents, mode="fixed"))
    coded = len(encode_exponents(exponents, mode="entropy"))
    assert coded < fixed


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"mode": "zstd"}, ValueError),
        ({"group_size": 48}, ValueError),
    ],
)
def test_encode_rejects_bad_options(kwargs, error):
    with pytest.raises(error, match="must be one of"):
        encode_exponents(np.zeros(4, np.uint8), **kwargs)


def test_encode_rejects_out_of_range_exponents():
    with pytest.raises(ValueError, match=r"\[0, 255\]"):
        encode_exponents(np.array([0, 256]))
    with pytest.raises(TypeError, match="integers"):
        encode_exponents(np.array([1.5]))


def test_decode_rejects_packed_tensor_kind():
    blob = bytearray(encode_exponents(np.zeros(4, np.uint8)))
    blob[5] = 1
    with pytest.raises(GeckoFormatError, match="kind"):
        decode_exponents(bytes(blob))


@pytest.mark.spec("G5")
def test_code_lengths_respect_the_limit():
    # Fibonacci counts make an unlimited Huffman code as deep as there are symbols.
    counts = [1, 1]
    while len(counts) < 40:
        counts.append(counts[-1] + counts[-2])
    lengths = code_lengths(np.array(counts))

    assert lengths.max() == LENGTH_LIMIT
    assert sum(2.0 ** -int(n) for n in lengths) <= 1.0


@pytest.mark.spec("G5")
def test_code_lengths_match_huffman_when_unlimited():
    lengths = code_lengths(np.array([5, 9, 12, 13, 16, 45]))

    assert lengths.tolist() == [4, 4, 3, 3, 3, 1]


def skewed_symbols(size, symbol_count, seed):
    """Byte symbols with a few frequent values and a tail that gets codes of up to 12 bits."""
    rng = np.random.default_rng(seed)
    weights = rng.random(symbol_count) ** 12
    return rng.choice(symbol_count, size, p=weights / weights.sum()).astype(np.uint8)


# 70,001 symbols use the decoder's 16-bit windows; the shorter streams use 12-bit windows.
CODE_SIZES = [1, 2, 3, 5, 2047, 2049, 4095, 4097, 70_001]


@pytest.mark.spec("G5")
@pytest.mark.parametrize("size", CODE_SIZES)
@pytest.mark.parametrize("symbol_count", [1, 3, 200])
def test_byte_code_matches_one_symbol_code(size, symbol_count):
    # The four-symbol encoder and multi-symbol decoder must give the one-symbol stream.
    symbols = skewed_symbols(size, symbol_count, seed=size + symbol_count)
    stream = huffman.write_code(symbols)

    assert stream == huffman.write_code(symbols.astype(np.int16))
    decoded = huffman.read_code(Reader(stream), size, "lanes")
    assert decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded, symbols)


@pytest.mark.spec("G5")
@pytest.mark.parametrize("size", [4095, 70_001])
def test_byte_code_rejects_wrong_chunk_length(size):
    symbols = skewed_symbols(size, 60, seed=size)
    stream = bytearray(huffman.write_code(symbols))
    table_bytes = len(huffman.write_table(code_lengths(np.bincount(symbols))))
    chunk_bits = np.frombuffer(stream, "<u2", 2, table_bytes).copy()
    # Moving one bit from chunk 0 to chunk 1 keeps the total, so only the chunk check fails.
    chunk_bits += np.array([1, -1], np.int16).astype(np.uint16)
    stream[table_bytes : table_bytes + 4] = chunk_bits.astype("<u2").tobytes()

    with pytest.raises(GeckoFormatError, match="chunk 0: its codes must take its stated"):
        huffman.read_code(Reader(bytes(stream)), size, "lanes")


@pytest.mark.spec("G5")
def test_byte_code_rejects_bits_outside_the_table():
    # One symbol of length 1 has code 0, so a 1 bit starts no code.
    stream = huffman.write_table(np.array([1], np.uint8)) + b"\x03\x00" + bytes([0b010])

    with pytest.raises(GeckoFormatError, match="every code must be in the table"):
        huffman.read_code(Reader(stream), 3, "lanes")


@pytest.mark.spec("G4")
@pytest.mark.parametrize("width", range(9))
def test_small_planes_match_word_planes(width, monkeypatch):
    # Planes up to SMALL_PLANE fields take the bit-matrix path; both paths must give one layout.
    rng = np.random.default_rng(width)
    for count in (1, 7, 8, 65, bitfields.SMALL_PLANE):
        values = rng.integers(0, 1 << width, count)
        small = bitfields.pack_fields(values, width)
        with monkeypatch.context() as patch:
            patch.setattr(bitfields, "SMALL_PLANE", 0)
            words = bitfields.pack_fields(values, width)
            unpacked_by_words = bitfields.unpack_fields(small, count, width)

        assert small == words
        np.testing.assert_array_equal(bitfields.unpack_fields(small, count, width), values)
        np.testing.assert_array_equal(unpacked_by_words, values)


@pytest.mark.parametrize("module", ["bitfields", "huffman", "exponents", "packing"])
def test_docstring_examples_run(module):
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(f"reference.gecko.{module}"))
    assert result.attempted > 0
    assert result.failed == 0
