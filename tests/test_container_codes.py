"""encode and decode: lossless for every member, strict for everything else (SPEC.md C17-C20)."""

import itertools

import numpy as np
import pytest

from hypothesis import given
from hypothesis import strategies as st

from reference import Container, decode, encode, quantize
from reference.container import anchor_range
from reference.codes import nan_code

SMALL_CONTAINERS = [
    Container(e, m, specials=specials, subnormals=subnormals)
    for e, m, specials, subnormals in itertools.product(
        (1, 2, 3, 4, 5), (0, 1, 2, 3), ("ieee", "fn", "none"), (True, False),
    )
    if not (specials == "ieee" and e == 1) and not (specials == "fn" and e == 1 and m == 0)
] + [Container.from_name(name) for name in ("fp16", "bf16")]


def all_codes(container):
    codes = np.arange(2**container.bits, dtype=np.uint64)
    if not container.subnormals:
        # Exponent code 0 with a nonzero mantissa is no code of a container without subnormals.
        exponent_zero = (codes >> np.uint64(container.mantissa_bits)) % 2**container.exponent_bits == 0
        codes = codes[~exponent_zero | (codes % 2**container.mantissa_bits == 0)]
    return codes.astype(encode(np.float32([0.0]), container).dtype)


@pytest.mark.spec("C17", "C18", "C19")
@pytest.mark.parametrize("container", SMALL_CONTAINERS, ids=lambda c: c.name)
def test_every_code_round_trips(container):
    codes = all_codes(container)
    values = decode(codes, container)
    again = encode(values, container)
    is_nan = np.isnan(values)
    assert np.array_equal(again[~is_nan], codes[~is_nan])
    sign_bit = np.uint64(1) << np.uint64(container.bits - 1)
    expected_nan = np.uint64(nan_code(container) or 0) | (codes[is_nan].astype(np.uint64) & sign_bit)
    assert np.array_equal(again[is_nan].astype(np.uint64), expected_nan)
    assert np.array_equal(decode(again, container).view(np.uint32), values.view(np.uint32))


@pytest.mark.spec("C19")
def test_nan_codes_decode_to_quiet_nan_with_sign():
    container = Container.from_name("e5m2")
    codes = np.uint8([0b0_11111_01, 0b1_11111_10, 0b0_11111_11])
    assert [hex(b) for b in decode(codes, container).view(np.uint32)] == [
        "0x7fc00000", "0xffc00000", "0x7fc00000",
    ]
    assert [hex(c) for c in encode(np.float32([np.nan, -np.nan]), container)] == ["0x7e", "0xfe"]
    assert [hex(c) for c in encode(np.float32([-np.nan]), Container.from_name("e4m3fn"))] == ["0xff"]


@pytest.mark.spec("C17", "C19")
@pytest.mark.parametrize("name", ["fp16", "bf16", "e5m2", "e4m3fn", "e3m4", "e3m2fn", "e2m3fn", "e2m1fn"])
def test_quantized_bf16_patterns_round_trip(name):
    container = Container.from_name(name)
    x = (np.arange(2**16, dtype=np.uint32) << np.uint32(16)).view(np.float32)
    if not container.has_nan:
        x = x[~np.isnan(x)]
    members = quantize(x, container)
    decoded = decode(encode(members, container), container)
    assert np.array_equal(decoded.view(np.uint32), members.view(np.uint32))


@pytest.mark.spec("C17")
def test_code_dtypes():
    assert encode(np.float32([1.0]), Container(4, 3)).dtype == np.uint8
    assert encode(np.float32([1.0]), Container(5, 10)).dtype == np.uint16
    assert encode(np.float32([1.0]), Container(8, 10)).dtype == np.uint32
    assert encode(np.float32([[1.0]]), Container(2, 1)).shape == (1, 1)


@pytest.mark.spec("C17")
def test_code_layout_is_sign_exponent_mantissa():
    container = Container.from_name("e4m3fn")
    x = np.float32([448.0, -1.0, 2.0**-9, -0.0, 0.0])
    assert encode(x, container).tolist() == [0b0_1111_110, 0b1_0111_000, 0b0_0000_001, 0b1_0000_000, 0]


@pytest.mark.spec("C18")
@pytest.mark.parametrize("value, bits", [(1.0625, "0x3f880000"), (np.inf, "0x7f800000"), (1e-3, "0x3a83126f")])
def test_encode_of_non_member_raises(value, bits):
    with pytest.raises(ValueError, match=f"must contain only members .*element 1 is {bits}.*quantize x first"):
        encode(np.float32([1.0, value]), Container.from_name("e4m3fn"))


@pytest.mark.spec("C18")
def test_encode_without_subnormals_rejects_subnormal():
    container = Container(4, 3, subnormals=False)
    with pytest.raises(ValueError, match="element 0 is 0x3b000000"):
        encode(np.float32([2.0**-9]), container)


@pytest.mark.spec("C18")
def test_encode_of_nan_without_nan_code_raises():
    with pytest.raises(ValueError, match="element 0 is 0x7fc00000"):
        encode(np.float32([np.nan]), Container.from_name("e2m1fn"))


@pytest.mark.spec("C20")
def test_decode_rejects_invalid_codes():
    with pytest.raises(ValueError, match="codes must fit in 4 bits; element 0 is 0x10"):
        decode(np.uint8([16]), Container.from_name("e2m1fn"))
    with pytest.raises(ValueError, match="code 0x1 at element 0 is not one that encode emits"):
        decode(np.uint8([1]), Container(4, 3, subnormals=False))
    with pytest.raises(ValueError, match="codes must have an unsigned integer dtype; got int64"):
        decode(np.int64([1]), Container(4, 3))


@pytest.mark.spec("C20")
def test_decode_rejects_values_below_fp32():
    # Anchored at -149, an e8m2 window reaches far below FP32's smallest subnormal.
    container = Container(8, 2, specials="none", subnormals=False)
    assert decode(np.uint16([0x3FC]), container, anchor=-149)[0] == 2.0**-149
    with pytest.raises(ValueError, match="value below FP32's smallest subnormal"):
        decode(np.uint16([0x004]), container, anchor=-149)


@pytest.mark.spec("C17")
def test_anchored_codes_round_trip():
    container = Container.training(3, 2)
    x = np.float32([0.0, -0.0, 3.5, -2.0**-3, 2.0**-2])
    for anchor in (1, 2):
        codes = encode(x, container, anchor=anchor)
        assert np.array_equal(decode(codes, container, anchor=anchor).view(np.uint32), x.view(np.uint32))


@pytest.mark.spec("C2", "C17", "C19", "C20")
@pytest.mark.parametrize("container", [c for c in SMALL_CONTAINERS if c.bits <= 9][::3],
                         ids=lambda c: c.name)
def test_decode_matches_oracle_code_table(container):
    import oracle

    grid = oracle.grid_of(container)
    codes = np.arange(2**container.bits, dtype=np.uint64)
    for code in codes.tolist():
        value, sign = oracle.code_value(code, grid)
        array = np.array([code]).astype(all_codes(container).dtype)
        if value is None or (not isinstance(value, str) and 0 < value < 2.0**-149):
            with pytest.raises(ValueError, match="is not one that encode emits"):
                decode(array, container)
            continue
        out = int(decode(array, container).view(np.uint32)[0])
        if value == "nan":
            expected = oracle.FP32_QUIET_NAN | sign << 31
        elif value == "inf":
            expected = oracle.FP32_INF | sign << 31
        else:
            expected = oracle.fp32_encode(value, sign)
        assert hex(out) == hex(expected), hex(code)


@st.composite
def anchored_containers(draw):
    """Draw (container, anchor) over every layout, with the window anywhere C5 allows."""
    base = draw(st.sampled_from(["fp32", "bf16"]))
    e = draw(st.integers(1, 8))
    m = draw(st.integers(0, 23 if base == "fp32" else 7))
    specials = draw(st.sampled_from(["ieee", "fn", "none"]))
    if (specials == "ieee" and e == 1) or (specials == "fn" and e == 1 and m == 0):
        specials = "none"  # no normal numbers otherwise (C1)
    container = Container(
        e, m, specials=specials, subnormals=draw(st.booleans()), saturate=draw(st.booleans()),
        base=base,
    )
    low, high = anchor_range(base)
    # Most draws sit at the bottom of the range, where the window falls below the base grid.
    anchor = draw(st.integers(low, low + 30) | st.integers(low, high))
    return container, anchor


def base_patterns(base):
    if base == "fp32":
        return st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=16)
    return st.lists(st.integers(0, 2**16 - 1).map(lambda b: b << 16), min_size=1, max_size=16)


@pytest.mark.spec("C13", "C18")
@given(data=st.data())
def test_quantize_output_is_accepted_by_encode(data):
    container, anchor = data.draw(anchored_containers())
    bits = np.array(data.draw(base_patterns(container.base)), np.uint32)
    x = bits.view(np.float32)
    if not container.has_nan:
        x = x[~np.isnan(x)]
    try:
        members = quantize(x, container, anchor=anchor)
    except ValueError as error:
        # Only an overflow without inf, NaN or saturation may raise.
        assert "which has no inf or NaN" in str(error)
        assert not container.saturate
        return
    codes = encode(members, container, anchor=anchor)
    again = decode(codes, container, anchor=anchor)
    is_nan = np.isnan(members)
    assert np.array_equal(again.view(np.uint32)[~is_nan], members.view(np.uint32)[~is_nan])
