"""Checks of SPEC.md section G: Gecko exponent streams and packed tensors.

The encoder's choices (zero mode, width code, exceptions, entropy reference) are fixed by G4
and G5, so a conforming encoder writes exactly the reference's bytes; the checks compare
streams byte for byte. They also decode them both ways and run the golden vectors and damaged
streams.
"""

import numpy as np
from hypothesis import strategies as st

from conformance import oracle
from conformance.registry import Mismatch, check, run_property
from conformance.strategies import containers, element_bits
from conformance.suites.compare import call_backend, describe_container
from reference.container import Container

SUITE = "gecko"
MODE_RULES = {"fixed": "G4", "entropy": "G5"}
GROUP_SIZES = (8, 16, 32, 64)
# Fixed header bytes before the shape: magic, version, kind, mode, group size, ndim (G1).
HEADER_BYTES = 9


def header_length(shape, kind):
    return HEADER_BYTES + 8 * len(shape) + (7 if kind == "tensor" else 0)


def first_difference(expected, actual):
    for i, (a, b) in enumerate(zip(expected, actual)):
        if a != b:
            return i
    return min(len(expected), len(actual))


def stream_rule(expected, actual, shape, kind, mode):
    """Return the rule of the first differing byte: the header (G1) or the mode's body."""
    offset = first_difference(expected, actual)
    return ("G1" if offset < header_length(shape, kind) else MODE_RULES[mode]), offset


@st.composite
def exponent_arrays(draw):
    """Draw uint8 exponent fields shaped like tensors: clustered values, zeros, all widths."""
    shape = draw(st.sampled_from([(), (0,), (1,), (7,), (33,), (64,), (3, 5), (2, 3, 11),
                                  (130,)]), label="shape")
    count = int(np.prod(shape, dtype=np.int64))
    base = draw(st.integers(1, 255), label="base")
    span = draw(st.sampled_from([0, 1, 3, 7, 15, 63, 254]), label="span")
    zero_share = draw(st.sampled_from([0.0, 0.05, 0.4, 1.0]), label="zero share")
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    values = np.minimum(base + rng.integers(0, span + 1, count), 255)
    values[rng.random(count) < zero_share] = 0
    return values.astype(np.uint8).reshape(shape)


def _exponent_case(draw_array):
    return st.tuples(draw_array, st.sampled_from(["fixed", "entropy"]),
                     st.sampled_from(GROUP_SIZES))


@check(SUITE, "exponents-round-trip", ("G1", "G2", "G3", "G4", "G5"), {"gecko.exponents"})
def exponents_round_trip(backend, examples):
    """Check exponent streams against the reference bytes, and decoding both ways."""
    from reference.gecko import decode_exponents, encode_exponents

    def prop(case):
        exponents, mode, group_size = case
        inputs = {"exponents": exponents.tobytes().hex(), "shape": list(exponents.shape),
                  "mode": mode, "group_size": group_size}
        want = encode_exponents(exponents, mode=mode, group_size=group_size)
        got = call_backend(backend.encode_exponents, MODE_RULES[mode], inputs, want.hex(),
                           exponents, mode=mode, group_size=group_size)
        if bytes(got) != want:
            rule, offset = stream_rule(want, bytes(got), exponents.shape, "exponents", mode)
            raise Mismatch(rule, f"stream differs from byte {offset}", inputs, want.hex(),
                           bytes(got).hex())
        decoded = call_backend(backend.decode_exponents, MODE_RULES[mode], inputs,
                               exponents.tobytes().hex(), want)
        decoded = np.asarray(decoded)
        if decoded.shape != exponents.shape or not np.array_equal(decoded, exponents):
            raise Mismatch(MODE_RULES[mode], "decoded exponents differ", inputs,
                           f"{exponents.shape} {exponents.tobytes().hex()}",
                           f"{decoded.shape} {decoded.astype(np.uint8).tobytes().hex()}")
        if not np.array_equal(decode_exponents(bytes(got)), exponents):
            raise Mismatch(MODE_RULES[mode], "the reference cannot decode the stream", inputs,
                           exponents.tobytes().hex(), "a different array")

    run_property(prop, _exponent_case(exponent_arrays()), examples)


@st.composite
def packed_cases(draw):
    """Draw members of a container (rounded by the oracle), a mode and an anchor."""
    full = draw(st.booleans(), label="full format")
    if full:
        container, anchor = Container(8, 23), None
        bits = draw(st.lists(st.integers(0, 2**32 - 1), min_size=0, max_size=40), label="bits")
    else:
        container, anchor = draw(containers("fp32"), label="container")
        grid = oracle.grid_of(container, anchor)
        raw = draw(st.lists(element_bits(grid), min_size=0, max_size=40), label="x bits")
        bits = [b for b in (oracle.quantize_bits(r, grid) for r in raw) if b != oracle.ERROR]
    mode = draw(st.sampled_from(["fixed", "entropy"]), label="mode")
    return container, anchor, bits, mode


@check(SUITE, "pack-round-trip", ("G6", "G7"), {"gecko.pack"})
def pack_round_trip(backend, examples):
    """Check packed tensors against the reference bytes, and unpacking bit for bit."""
    from reference.gecko import pack

    def prop(case):
        container, anchor, bits, mode = case
        x = np.array(bits, np.uint32).view(np.float32)
        inputs = {"container": describe_container(container, anchor), "anchor": anchor,
                  "x": [f"0x{b:08x}" for b in bits], "mode": mode}
        full = container == Container(8, 23)
        rule = "G7" if full else "G6"
        # The group size is explicit: the protocol's default is 32, while the reference's
        # entropy mode chooses a size when none is given (G5).
        want = pack(x, container, anchor=anchor, mode=mode, group_size=32)
        got = bytes(call_backend(backend.pack, rule, inputs, want.hex(), x, container,
                                 anchor=anchor, mode=mode, group_size=32))
        if got != want:
            header_rule, offset = stream_rule(want, got, x.shape, "tensor", mode)
            raise Mismatch(header_rule if header_rule == "G1" else rule,
                           f"stream differs from byte {offset}", inputs, want.hex(), got.hex())
        unpacked = np.asarray(call_backend(backend.unpack, rule, inputs, "the input", want))
        if unpacked.dtype != np.float32 or unpacked.shape != x.shape:
            raise Mismatch(rule, "unpack must return float32 of the stored shape", inputs,
                           f"float32 {x.shape}", f"{unpacked.dtype} {unpacked.shape}")
        actual = unpacked.view(np.uint32)
        expected = np.array(bits, np.uint32)
        if not full:
            # Outside the full formats NaNs come back as the quiet NaN with their sign (C19).
            nan = (expected & 0x7FFF_FFFF) > 0x7F80_0000
            expected = np.where(nan, (expected & 0x8000_0000) | 0x7FC0_0000, expected)
        for i in np.flatnonzero(actual != expected):
            raise Mismatch(rule, "unpacked value differs", dict(inputs, element=int(i)),
                           f"0x{int(expected[i]):08x}", f"0x{int(actual[i]):08x}")

    run_property(prop, packed_cases(), examples)


@check(SUITE, "golden-vectors", ("G10",), {"gecko.exponents", "gecko.pack"})
def golden_vectors(backend, examples):
    """Check that every Gecko vector decodes to its input and encodes to its bytes."""
    from conformance.vectors.gecko import load

    for record in load():
        stream = bytes.fromhex(record["stream"])
        rule = MODE_RULES[record["mode"]]
        inputs = {"vector": record["name"]}
        if record["kind"] == "exponents":
            exponents = np.frombuffer(bytes.fromhex(record["exponents"]), np.uint8)
            exponents = exponents.reshape(record["shape"])
            got = bytes(call_backend(backend.encode_exponents, rule, inputs, record["stream"],
                                     exponents, mode=record["mode"],
                                     group_size=record["group_size"]))
            decoded = np.asarray(call_backend(backend.decode_exponents, rule, inputs,
                                              record["exponents"], stream))
            same = decoded.shape == exponents.shape and np.array_equal(decoded, exponents)
        else:
            bits = np.frombuffer(bytes.fromhex(record["bits"]), "<u4").reshape(record["shape"])
            container = Container(**record["container"])
            got = bytes(call_backend(backend.pack, rule, inputs, record["stream"],
                                     bits.view(np.float32), container, anchor=record["anchor"],
                                     mode=record["mode"], group_size=record["group_size"]))
            decoded = np.asarray(call_backend(backend.unpack, rule, inputs, record["bits"],
                                              stream))
            same = decoded.shape == bits.shape and np.array_equal(
                decoded.view(np.uint32), _canonical(bits, container))
        if got != stream:
            raise Mismatch("G10", "encoded bytes differ from the vector", inputs,
                           record["stream"], got.hex())
        if not same:
            raise Mismatch("G10", "decoded values differ from the vector", inputs,
                           "the vector's input", "different values")


def _canonical(bits, container):
    if container == Container(8, 23) or container == Container(8, 7, base=container.base):
        return bits
    nan = (bits & 0x7FFF_FFFF) > 0x7F80_0000
    return np.where(nan, (bits & 0x8000_0000) | 0x7FC0_0000, bits).astype(np.uint32)


@check(SUITE, "damaged-streams", ("G2", "G9"), {"gecko.exponents"})
def damaged_streams(backend, examples):
    """Check that a damaged stream raises ValueError and nothing else, and that a trailing
    byte is always rejected."""
    from reference.gecko import encode_exponents

    @st.composite
    def damaged(draw):
        exponents, mode, group_size = draw(_exponent_case(exponent_arrays()))
        stream = bytearray(encode_exponents(exponents, mode=mode, group_size=group_size))
        how = draw(st.sampled_from(["truncate", "flip", "append"]), label="damage")
        if how == "truncate":
            return bytes(stream[:draw(st.integers(0, len(stream) - 1), label="length")]), how
        if how == "append":
            return bytes(stream) + b"\x00", how
        position = draw(st.integers(0, len(stream) * 8 - 1), label="bit")
        stream[position // 8] ^= 1 << (position % 8)
        return bytes(stream), how

    def prop(case):
        stream, how = case
        try:
            backend.decode_exponents(stream)
        except ValueError:
            return
        except NotImplementedError:
            raise
        except Exception as error:  # G9 allows only the format error, a ValueError
            raise Mismatch("G9", f"a {how} stream must raise ValueError", {"stream": stream.hex()},
                           "ValueError or a decoded array", f"{type(error).__name__}: {error}")
        if how == "append":
            # A bit flip may leave a valid stream, but a byte after the last plane never does.
            raise Mismatch("G2", "a stream with a trailing byte must raise ValueError",
                           {"stream": stream.hex()}, "ValueError", "a decoded array")

    run_property(prop, damaged(), examples)
