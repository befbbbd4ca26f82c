"""Malformed Gecko streams: the decoders return or raise GeckoFormatError, within bounds (G9).

Every mutated stream is decoded under tracemalloc and a profiler hook that counts function
calls, so a decoder that allocates what the header claims before checking the stream length,
or that loops per value in Python, fails here without depending on wall-clock time.
"""

import struct
import sys
import tracemalloc

import numpy as np
import pytest
from hypothesis import given, strategies as st

from reference import Container, quantize
from reference.gecko import (
    GeckoFormatError, decode_exponents, encode_exponents, pack, unpack,
)

# Bounds, in the terms of rule G9: peak traced memory at most 32 bytes per claimed output
# byte plus 16 bytes per blob byte plus 1 MiB of tables, and at most 20,000 Python and C
# function calls per decode (the entropy decoder steps at most 2048 times per stream).
MEMORY_PER_OUTPUT_BYTE = 32
MEMORY_PER_BLOB_BYTE = 16
MEMORY_SLACK = 1 << 20
CALL_LIMIT = 20_000


def _exponent_streams():
    rng = np.random.default_rng(7)
    streams = []
    for size in (0, 1, 37, 300):
        exponents = rng.integers(110, 135, size).astype(np.uint8)
        exponents[rng.random(size) < 0.4] = 0
        for mode in ("fixed", "entropy"):
            streams.append(encode_exponents(exponents, mode=mode, group_size=16))
    return streams


def _tensor_streams():
    rng = np.random.default_rng(8)
    special = np.array([0x0000_0000, 0x8000_0000, 0x0000_0001, 0x7F80_0000, 0xFFC0_0001],
                       np.uint32).view(np.float32)
    weights = (rng.standard_normal(150) * 0.1).astype(np.float32)
    weights[::4] = -0.0
    e4m3 = Container.from_name("e4m3fn")
    training = Container.training(3, 1)
    streams = []
    for mode in ("fixed", "entropy"):
        streams.append(pack(np.concatenate([special, weights]), Container.from_name("fp32"),
                            mode=mode))
        streams.append(pack(quantize(weights * 64, e4m3), e4m3, mode=mode))
        streams.append(pack(quantize(weights, training, anchor=-2), training, anchor=-2,
                            mode=mode))
    return streams


EXPONENT_STREAMS = _exponent_streams()
TENSOR_STREAMS = _tensor_streams()


def _claimed_output_bytes(blob, itemsize):
    """Return the output size that the header claims, or 0 when the header does not parse."""
    if len(blob) < 9 or blob[8] > 32 or len(blob) < 9 + 8 * blob[8]:
        return 0
    count = 1
    for dim in struct.unpack_from(f"<{blob[8]}Q", blob, 9):
        count *= dim
    return count * itemsize


def decode_within_bounds(decoder, blob, itemsize):
    """Decode ``blob``; fail on any exception but GeckoFormatError or on exceeding a bound."""
    calls = 0

    def count_call(frame, event, arg):
        nonlocal calls
        calls += event in ("call", "c_call")

    # A stream of B bytes contains at most 4 * B groups of at most 64 values (rule G9).
    claimed = min(_claimed_output_bytes(blob, itemsize), 256 * itemsize * len(blob))
    tracemalloc.start()
    sys.setprofile(count_call)
    try:
        decoder(blob)
    except GeckoFormatError:
        pass
    finally:
        sys.setprofile(None)
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    memory_limit = (MEMORY_PER_OUTPUT_BYTE * claimed + MEMORY_PER_BLOB_BYTE * len(blob)
                    + MEMORY_SLACK)
    assert peak <= memory_limit, f"peak {peak} bytes over the limit {memory_limit}"
    assert calls <= CALL_LIMIT, f"{calls} calls over the limit {CALL_LIMIT}"


@st.composite
def mutated(draw, streams):
    """A valid stream with bit flips, a truncation, an extension or header field edits."""
    blob = bytearray(draw(st.sampled_from(streams), label="stream"))
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "header", "byte"]), label="kind")
    if kind == "flip":
        for position in draw(st.lists(st.integers(0, 8 * len(blob) - 1), min_size=1,
                                      max_size=4), label="bits"):
            blob[position // 8] ^= 1 << position % 8
    elif kind == "truncate":
        del blob[draw(st.integers(0, len(blob) - 1), label="length"):]
    elif kind == "extend":
        blob += draw(st.binary(min_size=1, max_size=16), label="tail")
    else:
        limit = 40 if kind == "header" else len(blob) - 1
        offset = draw(st.integers(0, min(limit, len(blob) - 1)), label="offset")
        blob[offset] = draw(st.integers(0, 255), label="value")
    return bytes(blob)


@pytest.mark.spec("G9")
@given(blob=mutated(EXPONENT_STREAMS))
def test_mutated_exponent_streams_decode_or_raise(blob):
    decode_within_bounds(decode_exponents, blob, itemsize=1)


@pytest.mark.spec("G9")
@given(blob=mutated(TENSOR_STREAMS))
def test_mutated_tensor_streams_decode_or_raise(blob):
    decode_within_bounds(unpack, blob, itemsize=4)


@pytest.mark.spec("G9")
@given(blob=st.binary(max_size=200))
def test_random_bytes_decode_or_raise(blob):
    decode_within_bounds(decode_exponents, blob, itemsize=1)
    decode_within_bounds(unpack, blob, itemsize=4)


@pytest.mark.spec("G9")
@pytest.mark.parametrize("decoder", [decode_exponents, unpack])
def test_huge_claimed_shape_raises_before_allocating(decoder):
    blob = bytearray(pack(np.zeros(3, np.float32), Container.from_name("fp32")))
    if decoder is decode_exponents:
        blob = bytearray(encode_exponents(np.zeros(3, np.uint8)))
    struct.pack_into("<Q", blob, 9, 10**12)
    blob = bytes(blob) + bytes(100)

    tracemalloc.start()
    with pytest.raises(GeckoFormatError, match="header shape"):
        decoder(blob)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < MEMORY_SLACK


@pytest.mark.spec("G9")
@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (0, ord("X"), "magic"),
        (4, 3, "version"),
        (6, 7, "mode"),
        (7, 12, "group size"),
        (8, 33, "ndim"),
    ],
)
def test_header_field_errors_name_the_field(offset, value, message):
    blob = bytearray(encode_exponents(np.arange(40, dtype=np.uint8)))
    blob[offset] = value
    with pytest.raises(GeckoFormatError, match=message):
        decode_exponents(bytes(blob))


@pytest.mark.spec("G9")
@pytest.mark.parametrize("stream", EXPONENT_STREAMS[2:], ids=lambda s: f"{len(s)}B")
def test_truncated_and_extended_streams_raise(stream):
    for length in range(len(stream)):
        with pytest.raises(GeckoFormatError):
            decode_exponents(stream[:length])
    with pytest.raises(GeckoFormatError, match="trailing"):
        decode_exponents(stream + b"\x00")


@pytest.mark.spec("G9")
@pytest.mark.parametrize("stream", TENSOR_STREAMS, ids=lambda s: f"{len(s)}B")
def test_every_valid_stream_stays_within_bounds(stream):
    decode_within_bounds(unpack, stream, itemsize=4)
    unpack(stream)


@pytest.mark.spec("G4", "G9")
@pytest.mark.parametrize("inline", [False, True], ids=["plain", "inline"])
def test_value_above_top_raises(inline):
    exponents = np.tile(np.array([1, 5], np.uint8), 16)
    if inline:
        exponents[3] = 0  # one zero among 32: zero mode 2, values up to 5 in 3 bits
    blob = bytearray(encode_exponents(exponents, mode="fixed"))
    # The last 12 bytes are the 32 three-bit deltas, and no exceptions follow. All ones makes
    # a value of 7, above top 5 (top + 1 = 6 inline), which would give an exponent below 0.
    blob[-12:] = b"\xff" * 12

    with pytest.raises(GeckoFormatError, match="exponent is at least 0"):
        decode_exponents(bytes(blob))


@pytest.mark.spec("G9")
@pytest.mark.parametrize("mode", ["fixed", "entropy"])
@pytest.mark.parametrize("container", ["fp32", "training"])
def test_large_valid_stream_stays_within_bounds(mode, container):
    rng = np.random.default_rng(9)
    x = np.maximum(rng.standard_normal(50_000).astype(np.float32), 0)
    if container == "fp32":
        blob = pack(x, Container.from_name("fp32"), mode=mode)
    else:
        training = Container.training(4, 3)
        blob = pack(quantize(x, training, anchor=2), training, anchor=2, mode=mode)

    decode_within_bounds(unpack, blob, itemsize=4)


def _empty_stream(decoder, shape):
    """Return a valid zero-element stream for ``decoder`` whose header claims ``shape``."""
    placeholder = tuple(0 if dim == 0 else 1 for dim in shape)
    if decoder is decode_exponents:
        blob = bytearray(encode_exponents(np.zeros(placeholder, np.uint8)))
    else:
        blob = bytearray(pack(np.zeros(placeholder, np.float32), Container.from_name("fp32")))
    struct.pack_into(f"<{len(shape)}Q", blob, 9, *shape)
    return bytes(blob)


@pytest.mark.spec("G1", "G9")
@pytest.mark.parametrize("decoder", [decode_exponents, unpack])
@pytest.mark.parametrize(
    "shape",
    [(0, 2**48), (0, 2**63), (0, 2**64 - 1), (2**63, 0), (2**40, 0, 2**40), (2**24, 0, 2**24)],
    ids=str,
)
def test_zero_element_shape_with_huge_dimension_raises(decoder, shape):
    with pytest.raises(GeckoFormatError, match="header shape: the product of the non-zero"):
        decoder(_empty_stream(decoder, shape))


@pytest.mark.spec("G1")
@pytest.mark.parametrize("decoder", [decode_exponents, unpack])
def test_zero_element_shape_below_limit_decodes(decoder):
    shape = (2**24, 0, 2**23)

    assert decoder(_empty_stream(decoder, shape)).shape == shape


@pytest.mark.spec("G9")
def test_packed_stream_with_dimension_2_pow_63_raises():
    # A 34-byte packed tensor of shape (0, 2**63) with a valid empty body: numpy cannot
    # reshape to that dimension, so the header check must reject it first.
    blob = bytes.fromhex("5346504701010020020000000000000000000000000000008000081700017f000000")

    with pytest.raises(GeckoFormatError, match="header shape"):
        unpack(blob)


@pytest.mark.spec("G1", "G9")
@given(
    dims=st.lists(st.integers(0, 2**64 - 1), min_size=1, max_size=4),
    zero_at=st.integers(0, 3),
)
def test_zero_element_shapes_decode_or_raise(dims, zero_at):
    dims[zero_at % len(dims)] = 0
    for decoder, itemsize in ((decode_exponents, 1), (unpack, 4)):
        decode_within_bounds(decoder, _empty_stream(decoder, tuple(dims)), itemsize)


@pytest.mark.spec("G1")
@pytest.mark.parametrize("encoder", ["encode_exponents", "pack"])
def test_encoders_reject_shape_over_limit(encoder):
    x = np.zeros((2**24, 0, 2**24), np.float32)

    with pytest.raises(ValueError, match="non-zero dimensions must be below 2\\*\\*48"):
        if encoder == "pack":
            pack(x, Container.from_name("fp32"))
        else:
            encode_exponents(x.astype(np.uint8))


@pytest.mark.spec("G1")
@pytest.mark.parametrize(("kind", "message"), [(1, "read with unpack"), (65, "no stream of kind")])
def test_header_kind_error_names_the_reader(kind, message):
    blob = bytearray(encode_exponents(np.arange(40, dtype=np.uint8)))
    blob[5] = kind

    with pytest.raises(GeckoFormatError, match=message):
        decode_exponents(bytes(blob))
