"""Sizes of fixed-mode Gecko streams computed without packing them (SPEC.md rules G4 and G8).

``encoded_bits`` in fixed mode and ``fixed.encoded_size`` derive every plane's length from the
encoder's choices. Each test here compares them with the length of the stream that ``pack``
or ``fixed.encode`` writes, and the part sizes with the parts read back from that stream.
"""

import numpy as np
import pytest
from hypothesis import Phase, example, find, given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from reference import Container, max_anchor, quantize
from reference.codes import encode as encode_codes
from reference.gecko import encoded_bits, pack, unpack
from reference.gecko import fixed, fixed_plan
from reference.gecko.bitfields import plane_bytes
from reference.gecko.groups import to_groups
from reference.gecko.header import GROUP_SIZES, Reader, read_header

FP32 = Container.from_name("fp32")
BF16 = Container.from_name("bf16")
GROUP_OPTIONS = (None, *GROUP_SIZES, "auto")
# Exponent spreads within a group that reach every width code: code c covers ranges up to
# 2**WIDTHS[c] - 1, so the spreads step past 0, 1, 3, 7, 15, 31, 63 and 255.
SPREADS = (1, 2, 3, 4, 6, 9, 17, 33, 65, 129, 256)
ZERO_SHARES = (0.0, 0.03, 0.5, 0.97, 1.0)
FIND_SETTINGS = settings(database=None, derandomize=True, phases=[Phase.generate],
                         max_examples=2000)
# FP32 patterns that break codecs: signed zeros, subnormals, inf, NaNs with payloads, and the
# extremes of the normal range.
NASTY_FP32 = np.array(
    [0x0000_0000, 0x8000_0000, 0x0000_0001, 0x807F_FFFF, 0x7F80_0000, 0xFF80_0000,
     0x7FC0_0000, 0xFFC0_0001, 0x7F80_0001, 0x0080_0000, 0x7F7F_FFFF],
    np.uint32,
)


def packed_parts(stream, mantissa_bits):
    """Return the byte length of each part of a packed stream, read back from the stream.

    The header length is where its parser stops. A zero (rule G3) decodes to ±0.0, so the
    decoded values give the sign and mantissa plane lengths, and the exponent body is the rest.
    """
    reader = Reader(stream)
    header = read_header(reader, "tensor")
    values = unpack(stream).ravel()
    zero_count = int(np.count_nonzero(values == 0))
    stored_count = values.size - zero_count
    signs = plane_bytes(stored_count, 1)
    if header.tensor.negative_zeros:
        signs += plane_bytes(zero_count, 1)
    mantissas = plane_bytes(stored_count, mantissa_bits)
    return {
        "header_bits": 8 * reader.offset,
        "exponent_bits": 8 * (len(stream) - reader.offset - signs - mantissas),
        "sign_bits": 8 * signs,
        "mantissa_bits": 8 * mantissas,
        "total_bits": 8 * len(stream),
    }


def assert_sizes_match_pack(x, container, anchor, group_size):
    sizes = encoded_bits(x, container, anchor=anchor, mode="fixed", group_size=group_size)
    stream = pack(x, container, anchor=anchor, mode="fixed", group_size=group_size)
    expected = packed_parts(stream, container.mantissa_bits)

    assert sizes["total_bits"] == 8 * len(stream)
    for part in ("header_bits", "exponent_bits", "sign_bits", "mantissa_bits"):
        assert sizes[part] == expected[part], part
    assert sizes["total_bits"] == sum(v for k, v in sizes.items() if k != "total_bits")


@st.composite
def member_tensors(draw):
    """A container, its anchor and a tensor of its members, with controlled exponent spread.

    FP32 exponent fields sit within a drawn spread below a top, a share of values are far
    below it (exception candidates), and a share are zeros of either sign. Training
    containers cover e 1..8 and m 0..23.
    """
    kind = draw(st.sampled_from(["training", "preset", "fp32"]), label="kind")
    if kind == "training":
        container = Container.training(draw(st.integers(1, 8), label="e"),
                                       draw(st.integers(0, 23), label="m"))
    elif kind == "preset":
        container = Container.from_name(
            draw(st.sampled_from(["fp16", "bf16", "e5m2", "e4m3fn", "e3m4", "e2m1fn"]),
                 label="name"))
    else:
        container = FP32
    shape = draw(hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=70),
                 label="shape")
    size = int(np.prod(shape))
    top = draw(st.integers(1, 254), label="top")
    spread = draw(st.sampled_from(SPREADS), label="spread")
    outlier_share = draw(st.sampled_from([0.0, 0.02, 0.1]), label="outlier share")
    zero_share = draw(st.sampled_from(ZERO_SHARES), label="zero share")
    negative_zero_share = draw(st.sampled_from([0.0, 0.5, 1.0]), label="negative zero share")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))

    exponent = top - rng.integers(0, spread, size)
    outliers = rng.random(size) < outlier_share
    exponent[outliers] -= rng.integers(1, 256, int(outliers.sum()))
    bits = (np.clip(exponent, 1, 254).astype(np.uint32) << np.uint32(23))
    bits |= rng.integers(0, 1 << 23, size, dtype=np.uint32)
    bits |= rng.integers(0, 2, size, dtype=np.uint32) << np.uint32(31)
    zeros = rng.random(size) < zero_share
    bits[zeros] = np.where(rng.random(int(zeros.sum())) < negative_zero_share,
                           np.uint32(0x8000_0000), np.uint32(0))
    x = bits.view(np.float32).reshape(shape)
    if kind == "fp32":
        return container, None, x
    anchor = max_anchor(x, container) if kind == "training" else None
    return container, anchor, quantize(x, container, anchor=anchor)


def tensor_plan(x, container, anchor, group_size=32):
    """Return the fixed-mode plan of ``x``'s exponent fields, with zeros as in rule G3."""
    e, m = container.exponent_bits, container.mantissa_bits
    codes = encode_codes(x, container, anchor=anchor).ravel().astype(np.uint32)
    exponent = ((codes >> np.uint32(m)) & np.uint32((1 << e) - 1)).astype(np.uint8)
    zeros = (exponent == 0) & (codes & np.uint32((1 << m) - 1) == 0)
    return fixed_plan.plan(*to_groups(exponent, zeros, group_size))


@pytest.mark.spec("G8")
@given(case=member_tensors(), group_size=st.sampled_from(GROUP_OPTIONS))
@example(case=(FP32, None, NASTY_FP32.view(np.float32)), group_size=None)
@example(case=(FP32, None, np.zeros(0, np.float32)), group_size=None)
@example(case=(FP32, None, np.float32(-0.0)), group_size="auto")
@example(case=(Container.training(8, 23), 0, np.zeros((3, 0, 2), np.float32)), group_size=8)
def test_encoded_bits_match_pack(case, group_size):
    container, anchor, x = case

    assert_sizes_match_pack(x, container, anchor, group_size)


@pytest.mark.spec("G8")
@pytest.mark.parametrize("group_size", GROUP_OPTIONS)
def test_encoded_bits_match_pack_on_every_bf16_pattern(group_size):
    bits = np.arange(1 << 16, dtype=np.uint32) << np.uint32(16)

    assert_sizes_match_pack(bits.view(np.float32), BF16, None, group_size)


@pytest.mark.spec("G8")
def test_encoded_bits_match_pack_on_bfloat16_input():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    patterns = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
    x = patterns.view(ml_dtypes.bfloat16).reshape(256, 256)

    assert_sizes_match_pack(x, Container(8, 7, base="bf16"), None, None)


@pytest.mark.spec("G8")
@pytest.mark.parametrize("size", [1, 31, 33, 288, 4096, 18432])
@pytest.mark.parametrize("kind", ["relu", "normal"])
def test_encoded_bits_match_pack_on_training_tensors(size, kind):
    rng = np.random.default_rng(size)
    x = rng.standard_normal(size).astype(np.float32)
    if kind == "relu":
        x = np.maximum(x, 0)
    for e, m in ((8, 23), (5, 4), (3, 1), (1, 0)):
        container = Container.training(e, m)
        anchor = max_anchor(x, container)
        assert_sizes_match_pack(quantize(x, container, anchor=anchor), container, anchor, None)


@st.composite
def exponent_lanes(draw):
    """(groups, group_size) exponent lanes whose groups differ in spread, outliers and zeros."""
    group_size = draw(st.sampled_from(GROUP_SIZES), label="group size")
    groups = draw(st.integers(0, 12), label="groups")
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1), label="seed"))
    top = rng.integers(1, 256, (groups, 1))
    spread = rng.choice(SPREADS, (groups, 1))
    lanes = top - (rng.random((groups, group_size)) * spread).astype(np.int64)
    outliers = rng.random((groups, group_size)) < rng.choice([0.0, 0.05, 0.2], (groups, 1))
    lanes[outliers] -= rng.integers(1, 256, int(outliers.sum()))
    lanes = np.clip(lanes, 1, 255)
    lanes[rng.random((groups, group_size)) < rng.choice(ZERO_SHARES, (groups, 1))] = 0
    lanes = lanes.astype(np.uint8)
    return lanes, lanes == 0


def plan_of(case):
    return fixed_plan.plan(*case)


@pytest.mark.spec("G4")
@given(case=exponent_lanes())
def test_encoded_size_matches_encode(case):
    lanes, zero_lanes = case

    assert fixed.encoded_size(lanes, zero_lanes) == len(fixed.encode(lanes, zero_lanes))


@pytest.mark.spec("G4")
@pytest.mark.parametrize("group_size", GROUP_SIZES)
def test_encoded_size_of_no_groups_is_the_frames(group_size):
    lanes = np.zeros((0, group_size), np.uint8)
    size = fixed.encoded_size(lanes, lanes == 0)

    # Only the top frame and the exception frame: two bytes each.
    assert size == 4
    assert size == len(fixed.encode(lanes, lanes == 0))


@pytest.mark.spec("G4")
def test_encode_writes_what_the_plan_chose():
    lanes, zero_lanes = find(exponent_lanes(), lambda c: plan_of(c).count_bits > 0,
                             settings=FIND_SETTINGS)
    chosen = plan_of((lanes, zero_lanes))
    stream = fixed.encode(lanes, zero_lanes)
    # The exception frame follows the zero modes, masks, top frame and plane, and width codes.
    masked = int(np.count_nonzero(chosen.mode == fixed.MASKED))
    coded = chosen.coded.size
    offset = (plane_bytes(chosen.mode.size, 2) + masked * chosen.group_size // 8
              + 2 + plane_bytes(coded, chosen.top_width) + plane_bytes(coded, 3))

    assert stream[offset] == chosen.count_bits
    assert stream[offset + 1] == chosen.high_bits
    assert len(stream) == fixed_plan.planned_size(chosen)


@pytest.mark.parametrize("code", range(len(fixed.WIDTHS)))
def test_lane_strategy_reaches_every_width_code(code):
    # The size checks above only cover a width code if the strategy produces it.
    case = find(exponent_lanes(), lambda c: code in plan_of(c).codes, settings=FIND_SETTINGS)

    assert code in plan_of(case).codes


@pytest.mark.parametrize("mode", [fixed.NO_ZEROS, fixed.MASKED, fixed.INLINE, fixed.ALL_ZERO])
def test_lane_strategy_reaches_every_zero_mode(mode):
    case = find(exponent_lanes(), lambda c: mode in plan_of(c).mode, settings=FIND_SETTINGS)

    assert mode in plan_of(case).mode


@pytest.mark.parametrize("high_bits", [1, 2])
def test_lane_strategy_reaches_exceptions(high_bits):
    case = find(exponent_lanes(), lambda c: plan_of(c).high_bits == high_bits,
                settings=FIND_SETTINGS)

    assert plan_of(case).counts.sum() > 0


TENSOR_CASES = {
    "empty": lambda c, a, x: x.size == 0,
    "one value": lambda c, a, x: x.size == 1,
    "partial last group": lambda c, a, x: x.size > 32 and x.size % 32 != 0,
    "all zeros": lambda c, a, x: x.size > 0 and not np.any(x),
    "no zeros": lambda c, a, x: x.size > 32 and np.all(x != 0),
    "negative zero": lambda c, a, x: bool(np.any(np.signbit(x) & (x == 0))),
    "e = 8 and m = 23": lambda c, a, x: (c.exponent_bits, c.mantissa_bits) == (8, 23) and x.size,
    "e = 1 and m = 0": lambda c, a, x: (c.exponent_bits, c.mantissa_bits) == (1, 0) and x.size,
    "exceptions": lambda c, a, x: x.size > 0 and tensor_plan(x, c, a).count_bits > 0,
    "no exceptions": lambda c, a, x: x.size > 64 and tensor_plan(x, c, a).count_bits == 0,
    "width 8": lambda c, a, x: x.size > 0 and 7 in tensor_plan(x, c, a).codes,
}


@pytest.mark.parametrize("name", TENSOR_CASES)
def test_tensor_strategy_reaches_hard_cases(name):
    predicate = TENSOR_CASES[name]
    case = find(member_tensors(), lambda c: bool(predicate(*c)), settings=FIND_SETTINGS)

    assert predicate(*case)


BAD_ARGUMENTS = [
    ({"mode": "huffman"}, ValueError, "mode must be one of"),
    ({"group_size": 12}, ValueError, "group_size must be one of"),
    ({"container": "e4m3fn"}, TypeError, "container must be a reference.Container"),
    ({"x": np.float32([0.1]), "container": Container.from_name("e4m3fn")}, ValueError,
     "quantize x first"),
    ({"x": np.float32([0.1]), "container": BF16}, ValueError, "round x to BF16 first"),
    ({"x": np.zeros((1,) * 33, np.float32)}, ValueError, "at most 32 dimensions"),
    ({"x": np.float32([1.0]).astype(">f4")}, ValueError, "native byte order"),
]


@pytest.mark.spec("G8")
@pytest.mark.parametrize("changes, error, message", BAD_ARGUMENTS)
def test_encoded_bits_rejects_what_pack_rejects(changes, error, message):
    arguments = {"x": np.float32([1.0, 0.0]), "container": FP32, "mode": "fixed",
                 "group_size": None, **changes}
    x, container = arguments.pop("x"), arguments.pop("container")

    with pytest.raises(error, match=message):
        pack(x, container, **arguments)
    with pytest.raises(error, match=message):
        encoded_bits(x, container, **arguments)
