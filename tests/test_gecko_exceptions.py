"""Fixed-mode exceptions and version 1 streams (SPEC.md rules G1, G4, G9 and G10).

Streams are built here field by field from the rule G4 layout, with a model of the decoded
exponents written from the rule text, so the decoder is checked against the specification and
not against the encoder.
"""

import struct

import numpy as np
import pytest
from hypothesis import Phase, find, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from conformance.vectors.gecko import load_version1
from reference import Container
from reference.gecko import GeckoFormatError, decode_exponents, encode_exponents, pack, unpack
from reference.gecko.bitfields import pack_fields
from reference.gecko.fixed import WIDTHS
from test_gecko_fuzz import decode_within_bounds

NO_ZEROS, MASKED, INLINE, ALL_ZERO = range(4)


def build_stream(group_size, groups, count_bits, high_bits):
    """Return a version 2 fixed-mode exponent stream and the exponents it decodes to.

    Each group is a dict with ``mode``. Coded groups also have ``top``, ``code``, ``values``
    (one per lane, None for a masked group's zero lanes) and ``exceptions``, a list of
    (lane, high). Stored values are the low bits, and the model adds high * 2**W.
    """
    coded = [g for g in groups if g["mode"] != ALL_ZERO]
    tops = [g["top"] for g in coded]
    low = min(tops, default=0)
    width = (max(tops, default=0) - low).bit_length()
    parts = [pack_fields(np.array([g["mode"] for g in groups]), 2)]
    for g in groups:
        if g["mode"] == MASKED:
            mask = np.array([v is None for v in g["values"]])
            parts.append(np.packbits(mask, bitorder="little").tobytes())
    parts.append(struct.pack("<BB", low, width))
    parts.append(pack_fields(np.array([t - low for t in tops]), width))
    parts.append(pack_fields(np.array([g["code"] for g in coded]), 3))
    parts.append(struct.pack("<BB", count_bits, high_bits))
    parts.append(pack_fields(np.array([len(g["exceptions"]) for g in coded]), count_bits))
    # Delta order: by width code, groups without a mask first, then by group index.
    ordered = sorted(coded, key=lambda g: (g["code"], g["mode"] == MASKED))
    for code in range(1, len(WIDTHS)):
        values = [v for g in ordered if g["code"] == code for v in g["values"] if v is not None]
        parts.append(pack_fields(np.array(values, np.int64), WIDTHS[code]))
    exceptions = [e for g in ordered for e in g["exceptions"]]
    parts.append(pack_fields(np.array([lane for lane, _ in exceptions]),
                             group_size.bit_length() - 1))
    parts.append(pack_fields(np.array([high for _, high in exceptions]), high_bits))
    count = group_size * len(groups)
    header = b"SFPG" + bytes([2, 0, 0, group_size, 1]) + struct.pack("<Q", count)
    return header + b"".join(parts), _model(groups, group_size)


def _model(groups, group_size):
    # Rule G4: value = low + high * 2**W; modes 0 and 1 decode top - value, mode 2 decodes
    # value 0 as a zero and top - value + 1 otherwise; zeros decode as exponent 0.
    out = []
    for g in groups:
        if g["mode"] == ALL_ZERO:
            out += [0] * group_size
            continue
        values = [0 if v is None else v for v in g["values"]]
        for lane, high in g["exceptions"]:
            values[lane] += high << WIDTHS[g["code"]]
        for v, stored in zip(values, g["values"]):
            if stored is None:
                out.append(0)
            elif g["mode"] == INLINE:
                out.append(0 if v == 0 else g["top"] - v + 1)
            else:
                out.append(g["top"] - v)
    return np.array(out, np.int64)  # invalid streams may model values outside 0..255


def group(mode, top, code, values, exceptions=()):
    return {"mode": mode, "top": top, "code": code, "values": list(values),
            "exceptions": list(exceptions)}


@pytest.mark.spec("G4")
def test_outlier_group_takes_narrower_width():
    # Lanes 120..127 with two at 112: value 15 needs width 4, and two exceptions at width 3
    # cost 2 * (5 + 1) bits, less than the 32 bits that width 4 adds.
    exponents = (120 + np.arange(32) % 8).astype(np.uint8)
    exponents[[3, 17]] = 112
    values = [(127 - int(e)) & 7 for e in exponents]
    expected, model = build_stream(32, [group(NO_ZEROS, 127, 3, values, [(3, 1), (17, 1)])],
                                   count_bits=2, high_bits=1)

    assert encode_exponents(exponents) == expected
    np.testing.assert_array_equal(model, exponents)
    np.testing.assert_array_equal(decode_exponents(expected), exponents)


@pytest.mark.spec("G4")
def test_width_8_exception_needs_two_high_bits():
    # Values up to 39 and one of 190: width 8, or width 6 with one exception of high 2.
    exponents = (200 + np.arange(32) % 40).astype(np.uint8)
    exponents[30] = 10
    top = int(exponents.max())
    values = [(top - int(e)) & 63 for e in exponents]
    expected, _ = build_stream(32, [group(NO_ZEROS, top, 6, values, [(30, (top - 10) >> 6)])],
                               count_bits=1, high_bits=2)

    assert encode_exponents(exponents) == expected
    np.testing.assert_array_equal(decode_exponents(expected), exponents)


@pytest.mark.spec("G4")
def test_too_many_outliers_keep_the_wide_width():
    # Eight lanes at 112 would need a count of 8, and at most 3 count bits are tried.
    exponents = (120 + np.arange(32) % 8).astype(np.uint8)
    exponents[::4] = 112
    blob = encode_exponents(exponents)

    assert exception_frame(blob) == (0, 0)
    np.testing.assert_array_equal(decode_exponents(blob), exponents)


@st.composite
def outlier_exponents(draw):
    """Exponents near a top with a few far smaller ones, zeros, and a partial last group."""
    shape = draw(hnp.array_shapes(min_dims=1, max_dims=2, min_side=1, max_side=90), label="shape")
    size = int(np.prod(shape))
    top = draw(st.integers(1, 255), label="top")
    spread = draw(st.sampled_from([1, 2, 4, 8, 16, 64]), label="spread")
    outlier_share = draw(st.sampled_from([0.0, 0.02, 0.1]), label="outlier share")
    zero_share = draw(st.sampled_from([0.0, 0.05, 0.5]), label="zero share")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    values = top - rng.integers(0, spread, size)
    outliers = rng.random(size) < outlier_share
    values[outliers] -= rng.integers(1, 256, int(outliers.sum()))
    values[rng.random(size) < zero_share] = 0
    return np.clip(values, 0, 255).astype(np.uint8).reshape(shape)


@pytest.mark.spec("G4")
@settings(max_examples=30)
@given(exponents=outlier_exponents(), group_size=st.sampled_from([8, 16, 32, 64]))
def test_outlier_exponents_round_trip(exponents, group_size):
    decoded = decode_exponents(encode_exponents(exponents, group_size=group_size))

    assert decoded.shape == exponents.shape
    np.testing.assert_array_equal(decoded, exponents)


@pytest.mark.spec("G4")
def test_outlier_strategy_reaches_exceptions():
    # The round trip above only checks exceptions if its strategy produces them.
    found = find(outlier_exponents(), lambda e: exception_frame(encode_exponents(e))[0] > 0,
                 settings=settings(database=None, derandomize=True, phases=[Phase.generate]))

    assert exception_frame(encode_exponents(found))[0] > 0


@st.composite
def coded_groups(draw, group_size):
    """One group of any mode, width code and exception pattern, valid under rule G4."""
    mode = draw(st.sampled_from([NO_ZEROS, MASKED, INLINE, ALL_ZERO]), label="mode")
    if mode == ALL_ZERO:
        return {"mode": ALL_ZERO}
    code = draw(st.integers(0, 7), label="code")
    width = WIDTHS[code]
    zeros = [False] * group_size
    if mode == MASKED:
        marked = draw(st.sets(st.integers(0, group_size - 1), min_size=1,
                              max_size=group_size - 1), label="zero lanes")
        zeros = [lane in marked for lane in range(group_size)]
    stored = [lane for lane in range(group_size) if not zeros[lane]]
    pattern = draw(st.sampled_from(["none", "one", "all", "some"]), label="exceptions")
    chosen = {"none": [], "one": stored[:1], "all": stored,
              "some": sorted(draw(st.sets(st.sampled_from(stored)), label="lanes"))}[pattern]
    room = 255 >> width  # the largest high part that keeps every value at most 255
    exceptions = [(lane, draw(st.integers(1, max(room, 1)), label="high")) for lane in chosen]
    if width == 8:
        exceptions = []  # no high part fits above 8 low bits
    seed = draw(st.integers(0, 2**32 - 1), label="seed")
    rng = np.random.default_rng(seed)
    values = [None if z else int(rng.integers(0, 1 << width)) for z in zeros]
    largest = max((values[lane] or 0) + (high << width) for lane, high in exceptions) \
        if exceptions else max(v for v in values if v is not None)
    if mode == INLINE:
        top = draw(st.integers(max(largest - 1, 0), 255), label="top")
    else:
        top = draw(st.integers(largest, 255), label="top")
    return group(mode, top, code, values, exceptions)


@st.composite
def fixed_streams(draw):
    group_size = draw(st.sampled_from([8, 16, 32, 64]), label="group size")
    groups = draw(st.lists(coded_groups(group_size), min_size=1, max_size=4), label="groups")
    largest = max([len(g.get("exceptions", ())) for g in groups] + [0])
    high = max([h for g in groups for _, h in g.get("exceptions", ())] + [0])
    count_bits = draw(st.integers(largest.bit_length(), 7), label="count bits")
    high_bits = draw(st.integers(high.bit_length(), 8), label="high bits")
    return build_stream(group_size, groups, count_bits, high_bits)


@pytest.mark.spec("G4")
@settings(max_examples=30)
@given(case=fixed_streams())
def test_built_streams_decode_to_the_rule_model(case):
    stream, expected = case

    np.testing.assert_array_equal(decode_exponents(stream), expected)


@pytest.mark.spec("G4")
@pytest.mark.parametrize("code", range(8))
@pytest.mark.parametrize("pattern", ["none", "one", "all"])
def test_every_width_code_with_exceptions_decodes(code, pattern):
    width = WIDTHS[code]
    lanes = {"none": [], "one": [5], "all": list(range(32))}[pattern] if width < 8 else []
    values = [lane % (1 << width) for lane in range(32)]
    exceptions = [(lane, 1) for lane in lanes]
    stream, expected = build_stream(32, [group(NO_ZEROS, 255, code, values, exceptions)],
                                    count_bits=6, high_bits=1)

    np.testing.assert_array_equal(decode_exponents(stream), expected)


def _one_group(values=None, exceptions=((3, 1),), mode=NO_ZEROS, top=200, code=2, **frame):
    values = [lane % 4 for lane in range(32)] if values is None else values
    frame = {"count_bits": 2, "high_bits": 1, **frame}
    return build_stream(32, [group(mode, top, code, values, exceptions)], **frame)[0]


@pytest.mark.spec("G4", "G9")
@pytest.mark.parametrize(
    ("stream", "message"),
    [
        (_one_group(exceptions=[(7, 1), (3, 1)]), "strictly increasing"),
        (_one_group(exceptions=[(3, 1), (3, 1)]), "strictly increasing"),
        (_one_group(exceptions=[(3, 0)]), "at least 1"),
        (_one_group(top=3, exceptions=[(3, 1)]), "exponent is at least 0"),
        (_one_group(mode=INLINE, top=255, code=6, values=[63] * 32, exceptions=[(0, 4)],
                    high_bits=3), "at most 255"),
        (_one_group(mode=MASKED, values=[None] + [1] * 31, exceptions=[(0, 1)]),
         "must name a stored lane"),
        (_one_group(mode=MASKED, values=[None] * 30 + [1, 1],
                    exceptions=[(30, 1), (31, 1), (0, 1)], count_bits=2),
         "at most as many exceptions as stored lanes|strictly increasing"),
        (_one_group(count_bits=8), "count width must be at most 7"),
        (_one_group(high_bits=9), "high width must be at most 8"),
    ],
    ids=["decreasing", "duplicate", "high-zero", "below-zero", "inline-256", "masked-lane",
         "too-many", "count-width", "high-width"],
)
def test_bad_exception_fields_raise(stream, message):
    with pytest.raises(GeckoFormatError, match=message):
        decode_exponents(stream)


@pytest.mark.spec("G4", "G9")
def test_count_above_stored_lanes_raises():
    # Two stored lanes and a count of 3: rejected before the exception planes are read.
    stream = _one_group(mode=MASKED, values=[None] * 30 + [1, 1], exceptions=[(30, 1), (31, 1)])
    counts_at = 17 + 1 + 4 + 2 + 0 + 1 + 2  # header, modes, mask, top frame, code, frame
    broken = bytearray(stream)
    broken[counts_at] = 3

    with pytest.raises(GeckoFormatError, match="at most as many exceptions as stored lanes"):
        decode_exponents(bytes(broken))


@pytest.mark.spec("G4", "G9")
def test_exception_plane_padding_must_be_zero():
    stream = bytearray(_one_group())
    stream[-1] |= 0x80  # the high plane has one bit, and the other seven are padding

    with pytest.raises(GeckoFormatError, match="exception highs: padding bits"):
        decode_exponents(bytes(stream))


def _mutated_tail(draw, streams):
    # Exceptions sit at the end of a fixed-mode body, so mutations aim at the last bytes.
    blob = bytearray(draw(st.sampled_from(streams), label="stream"))
    for _ in range(draw(st.integers(1, 3), label="edits")):
        offset = len(blob) - 1 - draw(st.integers(0, min(24, len(blob) - 1)), label="from end")
        blob[offset] = draw(st.integers(0, 255), label="value")
    return bytes(blob)


def _streams_with_exceptions():
    rng = np.random.default_rng(11)
    streams = []
    # With groups of 8 an exception saves less, so that stream has a narrower range and no
    # zeros. The others have masked and inline groups too.
    for group_size, spread, outlier, zero_share in ((8, 4, 114, 0.0), (32, 8, 100, 0.3),
                                                     (64, 8, 100, 0.3)):
        exponents = (118 + rng.integers(0, spread, 640)).astype(np.uint8)
        exponents[rng.random(640) < 0.05] = outlier
        exponents[rng.random(640) < zero_share] = 0
        streams.append(encode_exponents(exponents, group_size=group_size))
    streams.append(_one_group(exceptions=[(lane, 1) for lane in range(32)], count_bits=7))
    return streams


EXCEPTION_STREAMS = _streams_with_exceptions()


@pytest.mark.spec("G9")
@settings(max_examples=30)
@given(blob=st.composite(_mutated_tail)(EXCEPTION_STREAMS))
def test_mutated_exception_fields_decode_or_raise(blob):
    decode_within_bounds(decode_exponents, blob, itemsize=1)


def exception_frame(stream):
    """Return (count width, high width) of a version 2 fixed-mode exponent stream."""
    group_size, ndim = stream[7], stream[8]
    count = int(np.prod(struct.unpack_from(f"<{ndim}Q", stream, 9)))
    groups = -(-count // group_size)
    at = 9 + 8 * ndim
    modes = np.unpackbits(np.frombuffer(stream, np.uint8, -(-groups // 4), at),
                          bitorder="little").reshape(-1, 2)[:groups]
    modes = modes[:, 0] + 2 * modes[:, 1]
    at += -(-groups // 4) + int((modes == MASKED).sum()) * group_size // 8
    coded = int((modes != ALL_ZERO).sum())
    at += 2 + -(-coded * stream[at + 1] // 8)  # top frame and tops
    at += -(-coded * 3 // 8)  # width codes
    return stream[at], stream[at + 1]


@pytest.mark.spec("G9")
def test_fuzzed_streams_carry_exceptions():
    # The fuzz test above is only meaningful if its streams have exceptions to mutate.
    for stream in EXCEPTION_STREAMS:
        assert exception_frame(stream)[0] > 0
    assert exception_frame(EXCEPTION_STREAMS[3]) == (7, 1)


@pytest.mark.spec("G9")
def test_every_lane_an_exception_stays_within_bounds():
    # The largest exception planes a stream can have: groups of 64 where every lane is an
    # exception, with 7 count bits and 8 high bits.
    groups = [group(NO_ZEROS, 255, 0, [0] * 64, [(lane, 1 + lane) for lane in range(64)])
              for _ in range(100)]
    stream, expected = build_stream(64, groups, count_bits=7, high_bits=8)

    decode_within_bounds(decode_exponents, stream, itemsize=1)
    np.testing.assert_array_equal(decode_exponents(stream), expected)


VERSION1 = load_version1()


@pytest.mark.spec("G1", "G10")
@pytest.mark.parametrize("record", VERSION1, ids=lambda r: r["name"])
def test_version1_streams_still_decode(record):
    stream = bytes.fromhex(record["stream"])
    assert stream[4] == 1

    if record["kind"] == "exponents":
        exponents = np.frombuffer(bytes.fromhex(record["exponents"]), np.uint8)
        decoded = decode_exponents(stream)
        np.testing.assert_array_equal(decoded, exponents.reshape(record["shape"]))
        again = encode_exponents(decoded, mode=record["mode"], group_size=record["group_size"])
    else:
        bits = np.frombuffer(bytes.fromhex(record["bits"]), "<u4").reshape(record["shape"])
        decoded = unpack(stream)
        np.testing.assert_array_equal(decoded.view(np.uint32), bits)
        again = pack(decoded, Container(**record["container"]), anchor=record["anchor"],
                     mode=record["mode"], group_size=record["group_size"])
    assert again[4] == 2


@pytest.mark.spec("G1")
@pytest.mark.parametrize("version", [0, 3, 255])
def test_unknown_version_names_the_versions_read(version):
    stream = bytearray(encode_exponents(np.arange(40, dtype=np.uint8)))
    stream[4] = version

    with pytest.raises(GeckoFormatError, match=r"reads versions \(1, 2\); got"):
        decode_exponents(bytes(stream))
