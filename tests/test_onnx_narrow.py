"""Narrow agrees bit for bit in the reference, the OpRun kernel, the function body in
ReferenceEvaluator and the function body in ONNX Runtime."""

import ml_dtypes
import numpy as np
import pytest
from hypothesis import assume, example, given, strategies as st

from onnx_ops import schemas
from onnx_ops.backends import BACKENDS, narrow
from reference import Container, max_anchor, quantize
from reference.container import PRESETS, anchor_range

# The function bodies compute inf - inf and inf * 0 for inf and NaN inputs on purpose;
# ReferenceEvaluator's numpy kernels warn about that.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:onnx.reference")

BF16_PATTERNS = np.arange(2**16, dtype=np.uint32).astype(np.uint16)
ALL_BF16 = BF16_PATTERNS.view(ml_dtypes.bfloat16)
ALL_BF16_AS_FP32 = (BF16_PATTERNS.astype(np.uint32) << 16).view(np.float32)
NAN_BITS = 0x7FC0_0000


def bits_of(array):
    """Return the bit patterns of a float32 or bfloat16 array."""
    return array.view(np.uint16 if array.dtype.name == "bfloat16" else np.uint32)


def assert_backends_agree(x, attributes, e, m, **kwargs):
    """Assert that every backend returns the reference's bits; report the first difference."""
    want = bits_of(narrow("reference", x, attributes, e, m, **kwargs))
    for backend in BACKENDS[1:]:
        got = bits_of(narrow(backend, x, attributes, e, m, **kwargs))
        bad = np.flatnonzero(got != want)
        if bad.size:
            i = bad[0]
            pytest.fail(
                f"{backend} differs from the reference at {bad.size} elements; first x="
                f"0x{int(bits_of(x)[i]):x}: want 0x{int(want[i]):x}, got 0x{int(got[i]):x} "
                f"(e={e}, m={m}, {attributes}, {kwargs})"
            )
    return want


def preset_attributes(name, base="fp32"):
    fields = dict(PRESETS[name])
    e, m = fields.pop("exponent_bits"), fields.pop("mantissa_bits")
    container = Container(e, m, base=base, **fields)
    return schemas.attributes_of(container), e, m, container


def without_nan(x):
    return x[~np.isnan(x.astype(np.float32))]


# every BF16 pattern


@pytest.mark.spec("X2", "X4")
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_presets_every_bf16_pattern_as_fp32(name):
    attributes, e, m, container = preset_attributes(name)
    x = ALL_BF16_AS_FP32 if container.has_nan else without_nan(ALL_BF16_AS_FP32)
    assert_backends_agree(x, attributes, e, m)


@pytest.mark.spec("X2", "X4")
@pytest.mark.parametrize("name", sorted(n for n, f in PRESETS.items() if f["mantissa_bits"] <= 7))
def test_presets_every_bf16_pattern_on_bf16_base(name):
    attributes, e, m, container = preset_attributes(name, base="bf16")
    x = ALL_BF16 if container.has_nan else without_nan(ALL_BF16)
    assert_backends_agree(x, attributes, e, m)


@pytest.mark.spec("X4")
@pytest.mark.parametrize("name, dtype", [
    ("bf16", ml_dtypes.bfloat16), ("fp16", np.float16), ("e5m2", ml_dtypes.float8_e5m2),
    ("e4m3fn", ml_dtypes.float8_e4m3fn), ("e3m4", ml_dtypes.float8_e3m4),
    ("e3m2fn", ml_dtypes.float6_e3m2fn), ("e2m3fn", ml_dtypes.float6_e2m3fn),
    ("e2m1fn", ml_dtypes.float4_e2m1fn),
])
def test_function_body_matches_ml_dtypes(name, dtype):
    # ml_dtypes is an independent oracle; it maps NaN to -0/+0 in formats without NaN, so
    # NaNs are left out there.
    attributes, e, m, container = preset_attributes(name)
    x = ALL_BF16_AS_FP32 if container.has_nan else without_nan(ALL_BF16_AS_FP32)
    got = narrow("onnxruntime", x, attributes, e, m)
    with np.errstate(over="ignore", invalid="ignore"):
        want = x.astype(dtype).astype(np.float32)
    is_nan = np.isnan(want)
    np.testing.assert_array_equal(np.isnan(got), is_nan)
    np.testing.assert_array_equal(bits_of(got)[~is_nan], bits_of(want)[~is_nan])


# hypothesis over attributes, widths and bit patterns


@st.composite
def narrow_cases(draw):
    """Draw (x, attributes, e, m, kwargs) for which the reference returns a result."""
    base = draw(st.sampled_from(["fp32", "bf16"]), label="base")
    attributes = {
        "specials": draw(st.sampled_from(["ieee", "fn", "none"]), label="specials"),
        "subnormals": draw(st.integers(0, 1), label="subnormals"),
        "saturate": draw(st.integers(0, 1), label="saturate"),
        "rounding": draw(st.sampled_from(["nearest_even", "toward_zero", "stochastic"])),
        "anchor_mode": draw(st.sampled_from(["bias", "input", "max"]), label="anchor_mode"),
        "base": base,
    }
    if attributes["anchor_mode"] == "bias" and draw(st.booleans(), label="explicit bias"):
        attributes["bias"] = draw(st.integers(-30, 170), label="bias")
    e = draw(st.integers(1, 8), label="exponent_bits")
    m = draw(st.integers(0, 23 if base == "fp32" else 7), label="mantissa_bits")
    try:
        container = schemas.container_of(attributes, e, m)
    except ValueError:
        assume(False)

    size = draw(st.integers(1, 40), label="size")
    if base == "fp32":
        bits = draw(st.lists(st.integers(0, 2**32 - 1), min_size=size, max_size=size))
        x = np.array(bits, np.uint32).view(np.float32)
    else:
        bits = draw(st.lists(st.integers(0, 2**16 - 1), min_size=size, max_size=size))
        x = np.array(bits, np.uint16).view(ml_dtypes.bfloat16)
    kwargs = {}
    if attributes["anchor_mode"] == "input":
        kwargs["anchor"] = draw(st.integers(*anchor_range(base)), label="anchor")
    if attributes["rounding"] == "stochastic":
        noise = draw(st.lists(st.integers(0, 2**32 - 1), min_size=size, max_size=size))
        kwargs["noise"] = np.array(noise, np.uint32)
    if not container.has_nan:
        x = x[~np.isnan(x.astype(np.float32))]
        if "noise" in kwargs:
            kwargs["noise"] = kwargs["noise"][: x.size]
    try:
        narrow("reference", x, attributes, e, m, **kwargs)
    except ValueError:
        assume(False)  # overflow in a container without inf, NaN or saturation
    return x, attributes, e, m, kwargs


@pytest.mark.spec("X2", "X4")
@given(narrow_cases())
@example((np.array([0x207D9CEA], np.uint32).view(np.float32),
          {"bias": 33, "rounding": "stochastic"}, 7, 22,
          {"noise": np.array([0x37ADB43], np.uint32)}))
@example((np.array([0x9885], np.uint16).view(ml_dtypes.bfloat16),
          {"rounding": "stochastic", "base": "bf16"}, 7, 7,
          {"noise": np.array([0x138F05F], np.uint32)}))
@example((np.array([], np.uint16).view(ml_dtypes.bfloat16),
          {"specials": "none", "subnormals": 0, "base": "bf16"}, 1, 0, {}))
def test_backends_agree_on_random_bits(case):
    x, attributes, e, m, kwargs = case
    assert_backends_agree(x, attributes, e, m, **kwargs)


# named hard cases


SIGNED_ZERO_ATTRIBUTES = [
    {}, {"specials": "fn"}, {"specials": "none", "saturate": 1, "subnormals": 0},
    {"rounding": "toward_zero"}, {"anchor_mode": "max", "specials": "none", "subnormals": 0},
]


@pytest.mark.spec("X4")
@pytest.mark.parametrize("attributes", SIGNED_ZERO_ATTRIBUTES)
def test_negative_zero_survives_every_backend(attributes):
    # -0, and negative values that flush to zero, keep the sign bit.
    x = np.float32([-0.0, 0.0, -2.0**-140, 2.0**-140, -1e-30, -1.0])
    want = assert_backends_agree(x, attributes, 4, 3)
    assert want[0] == 0x8000_0000
    assert want[1] == 0
    assert want[2] == 0x8000_0000
    assert want[4] == 0x8000_0000


@pytest.mark.spec("X4")
@pytest.mark.parametrize("base", ["fp32", "bf16"])
def test_nan_payloads_become_signed_quiet_nan(base):
    payloads = np.array(
        [0x7F80_0001, 0x7FBF_FFFF, 0x7FC0_0000, 0x7FFF_FFFF, 0x7FD0_1000], np.uint32
    )
    bits = np.concatenate([payloads, payloads | np.uint32(0x8000_0000)])
    x = bits.view(np.float32)
    if base == "bf16":
        x = (bits >> 16).astype(np.uint16).view(ml_dtypes.bfloat16)
        x = x[np.isnan(x.astype(np.float32))]
    for attributes in ({"base": base}, {"base": base, "specials": "fn"}):
        want = assert_backends_agree(x, attributes, 4, 3)
        shift = 16 if base == "bf16" else 0
        signs = (bits_of(x).astype(np.uint32) << shift) & np.uint32(0x8000_0000)
        np.testing.assert_array_equal(want.astype(np.uint32) << shift, signs | NAN_BITS)


@pytest.mark.spec("X2")
def test_ties_round_to_even_in_every_backend():
    # e4m3fn near 1: ulp 1/8. Midpoints between codes, nudged one float32 step both ways.
    codes = np.float32([1.0, 1.125, 1.25, 1.375, 16.0, 2.0**-6])
    midpoints = codes + np.float32([1 / 16, 1 / 16, 1 / 16, 1 / 16, 1.0, 2.0**-10])
    x = np.concatenate([
        midpoints, np.nextafter(midpoints, np.float32(0)), np.nextafter(midpoints, np.float32(9e9)),
    ])
    attributes, e, m, _ = preset_attributes("e4m3fn")
    got = assert_backends_agree(x, attributes, e, m).view(np.float32)
    np.testing.assert_array_equal(got[:6], np.float32([1.0, 1.25, 1.25, 1.5, 16.0, 2.0**-6]))
    np.testing.assert_array_equal(got[6:12], codes)
    np.testing.assert_array_equal(got[12:], codes + 2 * (midpoints - codes))


@pytest.mark.spec("X2")
@pytest.mark.parametrize("name, max_value, threshold, beyond", [
    ("e4m3fn", 448.0, 464.0, np.nan),
    ("e5m2", 57344.0, 61440.0, np.inf),
    ("e3m2fn", 28.0, 30.0, 28.0),
])
def test_overflow_threshold_is_half_ulp_above_max(name, max_value, threshold, beyond):
    # The threshold itself is a tie: it rounds to even, which is max for e4m3fn (mantissa 110)
    # and the next power of two (overflow) for e5m2 and e3m2fn (mantissa 11).
    attributes, e, m, _ = preset_attributes(name)
    below = np.nextafter(np.float32(threshold), np.float32(0))
    above = np.nextafter(np.float32(threshold), np.float32(np.inf))
    x = np.float32([below, threshold, above, -above])
    got = assert_backends_agree(x, attributes, e, m).view(np.float32)
    assert got[0] == max_value
    tie = max_value if name == "e4m3fn" else beyond
    np.testing.assert_array_equal(got[1:3], np.float32([tie, beyond]))
    assert np.signbit(got[3])


@pytest.mark.spec("X2", "X3")
@pytest.mark.parametrize("anchor", [-149, -140, -126, -20, 0, 7, 127])
def test_anchored_window_every_bf16_pattern(anchor):
    training = schemas.attributes_of(Container.training(4, 2), anchor_mode="input")
    x = without_nan(ALL_BF16_AS_FP32)
    assert_backends_agree(x, training, 4, 2, anchor=anchor)


@pytest.mark.spec("X2", "X3")
@pytest.mark.parametrize("rounding", ["nearest_even", "toward_zero", "stochastic"])
def test_max_anchor_in_graph_matches_reference(rounding):
    container = Container.training(3, 1, rounding=rounding)
    attributes = schemas.attributes_of(container, anchor_mode="max")
    rng = np.random.default_rng(7)
    x = (rng.standard_normal(4096) * 3.0).astype(np.float32)
    # 1.1111b * 2^3 rounds up to 2^4 at m = 1 and sets the anchor, unless rounding truncates.
    x[17] = 15.5
    noise = rng.integers(0, 2**32, x.shape, np.uint32) if rounding == "stochastic" else None
    got = assert_backends_agree(x, attributes, 3, 1, noise=noise).view(np.float32)
    anchor = 3 if rounding == "toward_zero" else 4
    assert max_anchor(x, container) == anchor
    assert np.abs(got).max() in (2.0**anchor, 1.5 * 2.0**anchor)


@pytest.mark.spec("X3")
def test_max_anchor_of_zero_tensor_uses_bias():
    attributes = schemas.attributes_of(Container.training(4, 3), anchor_mode="max")
    x = np.float32([0.0, -0.0, 0.0])
    got = assert_backends_agree(x, attributes, 4, 3)
    np.testing.assert_array_equal(got, bits_of(x))


@pytest.mark.spec("X2")
def test_stochastic_threshold_is_exact():
    # 1 + 3/16 at m = 2 drops d = 21 bits (float32 view) with D * 2^(32-d) = 3/4 * 2^32:
    # noise just below rounds up, noise at the threshold rounds down.
    threshold = 3 * 2**30
    x = np.float32([1.1875] * 4)
    noise = np.array([0, threshold - 1, threshold, 2**32 - 1], np.uint32)
    got = assert_backends_agree(x, {"rounding": "stochastic"}, 5, 2, noise=noise)
    np.testing.assert_array_equal(got.view(np.float32), np.float32([1.25, 1.25, 1.0, 1.0]))


@pytest.mark.spec("X3")
def test_widths_change_without_new_session():
    x = np.float32([1.2345, -3.75, 1000.0])
    results = {m: narrow("onnxruntime", x, {}, 8, m) for m in (0, 3, 23)}
    np.testing.assert_array_equal(results[0], np.float32([1.0, -4.0, 1024.0]))
    np.testing.assert_array_equal(results[3], np.float32([1.25, -3.75, 1024.0]))
    np.testing.assert_array_equal(results[23], x)


@pytest.mark.spec("X5")
def test_function_body_returns_nan_where_reference_raises():
    # A container with no inf and no NaN code cannot hold NaN or an unsaturated overflow: the
    # reference raises, and ONNX Runtime, which cannot raise, returns the quiet NaN.
    attributes = {"specials": "none"}
    x = np.float32([np.nan, 1e9, 1.0])
    with pytest.raises(ValueError, match="no NaN code"):
        narrow("reference", x[:1], attributes, 4, 3)
    with pytest.raises(ValueError, match="overflows"):
        narrow("kernel", x[1:], attributes, 4, 3)
    got = bits_of(narrow("onnxruntime", x, attributes, 4, 3))
    np.testing.assert_array_equal(got, np.uint32([NAN_BITS, NAN_BITS, 0x3F80_0000]))


@pytest.mark.spec("X3")
def test_max_anchor_of_nonfinite_tensor_clamps_to_127():
    # Training containers with e = 8 have their IEEE-bias top binade at 2^128.
    attributes = schemas.attributes_of(Container.training(8, 3), anchor_mode="max")
    x = np.float32([np.inf, 0.0, -np.inf])
    got = assert_backends_agree(x, attributes, 8, 3).view(np.float32)
    assert got[0] == float.fromhex("0x1.ep+127")
