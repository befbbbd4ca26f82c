"""Container parameters, presets, derived limits and input validation (SPEC.md C1-C6, C15-C16)."""

import re

import numpy as np
import pytest

from reference import Container, decode, encode, max_anchor, quantize

PRESET_LIMITS = {
    # name: (bits, bias, max, min normal, min subnormal), from ml_dtypes 0.7 finfo and IEEE 754.
    "fp32": (32, 127, "0x1.fffffep+127", "0x1p-126", "0x1p-149"),
    "bf16": (16, 127, "0x1.fep+127", "0x1p-126", "0x1p-133"),
    "fp16": (16, 15, "0x1.ffcp+15", "0x1p-14", "0x1p-24"),
    "e5m2": (8, 15, "0x1.cp+15", "0x1p-14", "0x1p-16"),
    "e4m3": (8, 7, "0x1.ep+7", "0x1p-6", "0x1p-9"),
    "e4m3fn": (8, 7, "0x1.cp+8", "0x1p-6", "0x1p-9"),
    "e3m4": (8, 3, "0x1.fp+3", "0x1p-2", "0x1p-6"),
    "e3m2fn": (6, 3, "0x1.cp+4", "0x1p-2", "0x1p-4"),
    "e2m3fn": (6, 1, "0x1.ep+2", "0x1p+0", "0x1p-3"),
    "e2m1fn": (4, 1, "0x1.8p+2", "0x1p+0", "0x1p-1"),
}


@pytest.mark.spec("C3")
@pytest.mark.parametrize("name", list(PRESET_LIMITS))
def test_preset_limits(name):
    container = Container.from_name(name)
    bits, bias, max_value, min_normal, min_subnormal = PRESET_LIMITS[name]
    assert container.bits == bits
    assert container.bias == bias
    assert container.max_value == float.fromhex(max_value)
    assert container.min_normal == float.fromhex(min_normal)
    assert container.min_subnormal == float.fromhex(min_subnormal)
    assert container.name == name


@pytest.mark.spec("C3")
def test_preset_specials():
    for name in ("e5m2", "e3m4"):
        assert Container.from_name(name).has_inf
        assert Container.from_name(name).has_nan
    assert not Container.from_name("e4m3fn").has_inf
    assert Container.from_name("e4m3fn").has_nan
    for name in ("e3m2fn", "e2m3fn", "e2m1fn"):
        assert not Container.from_name(name).has_inf
        assert not Container.from_name(name).has_nan


@pytest.mark.spec("C2")
def test_e4m3_max_depends_on_specials():
    assert Container(4, 3).max_value == 240.0
    assert Container(4, 3, specials="fn").max_value == 448.0
    assert Container(4, 3, specials="none").max_value == 480.0


@pytest.mark.spec("C1")
def test_container_is_frozen():
    container = Container(4, 3)
    with pytest.raises(AttributeError):
        container.mantissa_bits = 2


@pytest.mark.spec("C4")
def test_training_container_fields():
    container = Container.training(3, 1, rounding="stochastic")
    assert container.specials == "none"
    assert container.subnormals is False
    assert container.saturate is True
    assert container.rounding == "stochastic"
    # All 2^3 - 1 nonzero exponent codes are normal binades; the IEEE bias 3 sets them at -2..4.
    assert container.min_exponent == -2
    assert container.max_exponent == 4


@pytest.mark.spec("C1")
@pytest.mark.parametrize("kwargs, message", [
    (dict(exponent_bits=9, mantissa_bits=3), "exponent_bits must be in 1..8; got 9"),
    (dict(exponent_bits=0, mantissa_bits=3), "exponent_bits must be in 1..8; got 0"),
    (dict(exponent_bits=4, mantissa_bits=24), "mantissa_bits must be in 0..23 with base 'fp32'; got 24"),
    (dict(exponent_bits=4, mantissa_bits=8, base="bf16"), "mantissa_bits must be in 0..7 with base 'bf16'; got 8"),
    (dict(exponent_bits=4, mantissa_bits=-1), "mantissa_bits must be in 0..23 with base 'fp32'; got -1"),
    (dict(exponent_bits=4, mantissa_bits=3, specials="fnuz"), "specials must be one of 'ieee', 'fn', 'none'; got 'fnuz'"),
    (dict(exponent_bits=4, mantissa_bits=3, rounding="nearest"), "rounding must be one of 'nearest_even', 'toward_zero', 'stochastic'; got 'nearest'"),
    (dict(exponent_bits=4, mantissa_bits=3, base="fp16"), "base must be one of 'fp32', 'bf16'; got 'fp16'"),
    (dict(exponent_bits=1, mantissa_bits=3), "specials='ieee' with exponent_bits=1, mantissa_bits=3 leaves no normal numbers"),
    (dict(exponent_bits=1, mantissa_bits=0, specials="fn"), "specials='fn' with exponent_bits=1, mantissa_bits=0 leaves no normal numbers"),
])
def test_invalid_parameters_raise(kwargs, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Container(**kwargs)


@pytest.mark.spec("C5")
def test_any_bias_builds_and_is_checked_on_use():
    # Callers that always pass an anchor may build containers with any bias.
    container = Container(8, 3, bias=-5)
    assert container.max_exponent == 259
    assert quantize(np.float32([1.0]), container, anchor=0)[0] == 1.0
    with pytest.raises(ValueError, match="got bias -5, largest exponent 259"):
        quantize(np.float32([1.0]), container)


@pytest.mark.spec("C5")
def test_window_above_fp32_raises_on_use():
    container = Container.training(8, 23)
    assert container.max_exponent == 128
    with pytest.raises(ValueError, match=re.escape(
        "bias must put the largest normal exponent in -149..127 (exponents of nonzero fp32 "
        "values); got bias 127, largest exponent 128 (pass an anchor or another bias)"
    )):
        quantize(np.float32([1.0]), container)
    assert quantize(np.float32([1.0]), container, anchor=127)[0] == 1.0


@pytest.mark.spec("C1")
@pytest.mark.parametrize("kwargs", [
    dict(exponent_bits=4.0, mantissa_bits=3),
    dict(exponent_bits=4, mantissa_bits=True),
    dict(exponent_bits=4, mantissa_bits=3, subnormals=1),
])
def test_parameters_of_wrong_type_raise(kwargs):
    with pytest.raises(TypeError, match="must be an? (int|bool); got"):
        Container(**kwargs)


@pytest.mark.spec("C3")
def test_unknown_name_lists_known_names():
    with pytest.raises(ValueError, match="must be one of fp32, bf16, .*e2m1fn; got 'e4m3fnuz'"):
        Container.from_name("e4m3fnuz")


@pytest.mark.spec("C5")
def test_anchor_places_largest_exponent():
    container = Container(3, 2, specials="none", subnormals=False)
    window = container.with_anchor(5)
    assert window.max_exponent == 5
    assert window.bias == 2**3 - 1 - 5
    assert Container(3, 2).with_anchor(5).bias == 2**3 - 2 - 5


@pytest.mark.spec("C5")
@pytest.mark.parametrize("base, anchor", [("fp32", 128), ("fp32", -150), ("bf16", -134)])
def test_anchor_out_of_range_raises(base, anchor):
    with pytest.raises(ValueError, match=r"anchor must be in -1(49|33)\.\.127 .*; got -?\d+"):
        quantize(np.float32([1.0]), Container(3, 2, base=base), anchor=anchor)


@pytest.mark.spec("C5")
def test_anchor_of_wrong_type_raises():
    with pytest.raises(TypeError, match="anchor must be None or an int; got 2.0"):
        quantize(np.float32([1.0]), Container(3, 2), anchor=2.0)
    with pytest.raises(ValueError, match="anchor must be None, an int or 'max'; got 'min'"):
        quantize(np.float32([1.0]), Container(3, 2), anchor="min")
    assert quantize(np.float32([3.0]), Container(3, 2), anchor=np.int64(1))[0] == 3.0


@pytest.mark.spec("C15")
def test_dtype_errors():
    with pytest.raises(ValueError, match="x dtype must be float32 .*; got float64"):
        quantize(np.float64([1.0]), Container(4, 3))
    with pytest.raises(TypeError, match="x must be a numpy array; got list"):
        quantize([1.0], Container(4, 3))
    with pytest.raises(ValueError, match=r"x must hold BF16 values .*element 1 is 0x3f800001"):
        quantize(np.uint32([0, 0x3F80_0001]).view(np.float32), Container(4, 3, base="bf16"))


@pytest.mark.spec("C15")
def test_bfloat16_input_needs_bf16_base():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.float32([1.0]).astype(ml_dtypes.bfloat16)
    with pytest.raises(ValueError, match="x dtype bfloat16 needs a container with base='bf16'"):
        quantize(x, Container(4, 3))
    out = quantize(x, Container(4, 3, base="bf16"))
    assert out.dtype == x.dtype


@pytest.mark.spec("C11")
def test_noise_errors():
    x = np.float32([1.0, 2.0])
    stochastic = Container(4, 3, rounding="stochastic")
    with pytest.raises(ValueError, match="noise is missing: stochastic rounding needs"):
        quantize(x, stochastic)
    with pytest.raises(ValueError, match=r"noise shape must equal x shape \(2,\); got \(3,\)"):
        quantize(x, stochastic, noise=np.zeros(3, np.uint32))
    with pytest.raises(ValueError, match="noise must be a uint32 numpy array; got int64"):
        quantize(x, stochastic, noise=np.zeros(2, np.int64))
    with pytest.raises(ValueError, match="noise is only used by stochastic rounding"):
        quantize(x, Container(4, 3), noise=np.zeros(2, np.uint32))


@pytest.mark.spec("C17")
def test_max_anchor_not_accepted_by_codes():
    container = Container.training(3, 1)
    with pytest.raises(ValueError, match="encode: anchor must be None or an explicit int"):
        encode(np.float32([1.0]), container, anchor="max")
    with pytest.raises(ValueError, match="decode: anchor must be None or an explicit int"):
        decode(np.uint8([1]), container, anchor="max")


@pytest.mark.spec("C6")
def test_max_anchor_counts_rounding_carry():
    container = Container.training(3, 1)
    assert max_anchor(np.float32([0b11111 / 2**4 * 8, -1.0]), container) == 4
    assert max_anchor(np.float32([0b11111 / 2**4 * 8]), Container.training(3, 1, "toward_zero")) == 3
    # Stochastic rounding can reach the upper neighbour whenever a dropped bit is set.
    assert max_anchor(np.float32([0b11001 / 2**4 * 8]), Container.training(3, 1, "stochastic")) == 4
    assert max_anchor(np.float32([0b11000 / 2**4 * 8]), Container.training(3, 1, "stochastic")) == 3


@pytest.mark.spec("C6")
def test_max_anchor_of_tensor_without_finite_nonzero():
    container = Container.training(3, 1)
    for x in (np.float32([0.0, -0.0]), np.float32([np.inf, np.nan]), np.float32([])):
        assert max_anchor(x, container) == container.max_exponent


@pytest.mark.spec("C6")
def test_max_anchor_clamps_at_fp32_top():
    x = np.float32([np.finfo(np.float32).max])
    assert max_anchor(x, Container.training(3, 1)) == 127
    out = quantize(x, Container.training(3, 1), anchor="max")
    assert out[0] == float.fromhex("0x1.8p+127")


@pytest.mark.spec("C15")
def test_quantize_returns_new_array_and_keeps_input():
    x = np.float32([[1.1, -2.3], [np.nan, 7.0]])
    before = x.copy()
    out = quantize(x, Container(4, 3, specials="fn"))
    assert out.shape == x.shape
    assert out.dtype == np.float32
    assert not np.shares_memory(out, x)
    assert np.array_equal(x.view(np.uint32), before.view(np.uint32))


@pytest.mark.spec("C1")
@pytest.mark.parametrize("integer_type", [np.uint8, np.int8, np.int64])
def test_container_numpy_integer_fields(integer_type):
    container = Container(integer_type(5), integer_type(2), bias=integer_type(15))
    assert container == Container(5, 2)
    assert type(container.exponent_bits) is int
    assert type(container.mantissa_bits) is int
    assert type(container.bias) is int
    assert container.max_value == 57344.0
    assert Container(integer_type(8), integer_type(7)).max_value == float.fromhex("0x1.fep+127")
