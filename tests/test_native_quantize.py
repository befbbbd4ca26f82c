"""The compiled quantize kernel gives the numpy path's bits (SPEC.md C5-C16).

``reference.native._quantize`` serves ``quantize_bits_blocked``, the max anchor and the BF16
input check whenever it is built. Each test runs the same call once through the kernel and
once with the kernel forced off, and compares the FP32 bit patterns, or the error messages.
The numpy path itself is checked against the general path ``quantize_bits`` with the kernel
off, so both paths stay tested whichever one a machine runs.
"""

import contextlib
import itertools

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reference import Container, max_anchor, native, quantize
from reference.quantize import quantize_bits
from reference.quantize_blocked import BLOCK_ELEMENTS, native_plan, quantize_bits_blocked

try:
    from reference.native import _quantize as KERNEL
except ImportError:
    KERNEL = None

pytestmark = pytest.mark.skipif(
    KERNEL is None, reason="reference.native._quantize is not built (pip install -e . with a C compiler)"
)

ALL_BF16_BITS = np.arange(2**16, dtype=np.uint32) << np.uint32(16)
# Every BF16 pattern with a few low bits set too: FP32 subnormals, ties and near-ties.
ALL_BF16_WITH_LOW_BITS = ALL_BF16_BITS | (ALL_BF16_BITS >> np.uint32(16)) % np.uint32(97)
KERNEL_BLOCK = 2048  # BLOCK_ELEMENTS of quantize.c
ROUNDINGS = ("nearest_even", "toward_zero", "stochastic")
PRESETS = ("fp32", "bf16", "fp16", "e5m2", "e4m3", "e4m3fn", "e3m4", "e3m2fn", "e2m3fn", "e2m1fn")


@contextlib.contextmanager
def numpy_path():
    """Force the numpy path, as SFP_NATIVE=0 does, for the calls inside the block."""
    saved = native._loaded.get("quantize", KERNEL)
    native._loaded["quantize"] = None
    try:
        yield
    finally:
        native._loaded["quantize"] = saved


@pytest.fixture(autouse=True)
def kernel_enabled():
    """Serve every call outside ``numpy_path`` by the kernel, whatever SFP_NATIVE is set to."""
    saved = native._loaded.get("quantize")
    native._loaded["quantize"] = KERNEL
    yield
    if saved is None:
        native._loaded.pop("quantize", None)
    else:
        native._loaded["quantize"] = saved


def windows():
    """Yield a grid of anchored containers over every field, for both bases."""
    fields = itertools.product(
        (1, 2, 3, 4, 5, 8), (0, 1, 2, 3, 7, 10, 23), ("ieee", "fn", "none"), (True, False),
        (True, False), ROUNDINGS, ("fp32", "bf16"),
    )
    for e, m, specials, subnormals, saturate, rounding, base in fields:
        try:
            container = Container(
                e, m, specials=specials, subnormals=subnormals, saturate=saturate,
                rounding=rounding, base=base,
            )
        except ValueError:
            continue
        for anchor in (None, -149, -133, -126, -120, -3, 0, 15, 126, 127):
            try:
                yield container.with_anchor(anchor)
            except ValueError:
                continue


def custom_bias_windows():
    # Biases that place the window by themselves, as anchor=None uses them.
    for bias, rounding in itertools.product((-97, 1, 60, 140, 179), ROUNDINGS):
        yield Container(5, 3, bias=bias, rounding=rounding).with_anchor(None)


WINDOWS = (
    # A prime stride walks every field's values in many combinations.
    list(windows())[::19]
    + list(custom_bias_windows())
    + [Container.from_name(name).with_anchor(None) for name in PRESETS]
    + [Container.training(e, m, r).with_anchor(a)
       for (e, m), r, a in itertools.product(((3, 2), (4, 3), (8, 7)), ROUNDINGS, (-130, 0, 127))]
)


def noise_for(window, size, seed=0):
    if window.rounding != "stochastic":
        return None
    return np.random.default_rng(seed).integers(0, 2**32, size, dtype=np.uint32)


def noise_cases(window, size):
    """Return random noise, and for stochastic rounding also the extremes 0 and 2^32 - 1.

    Noise 0 rounds up exactly when a dropped bit is set, so it separates < from <= in the
    comparison with the threshold; 2^32 - 1 never rounds up.
    """
    noise = noise_for(window, size, seed=window.bits)
    if noise is None:
        return [None]
    return [noise, np.zeros(size, np.uint32), np.full(size, 2**32 - 1, np.uint32)]


def run_kernel(bits, window, noise):
    """Return (status, output bits) of one direct kernel call."""
    out = np.empty_like(bits)
    status = KERNEL.quantize(bits, noise, out, native_plan(window))
    return status, out


def numpy_or_error(bits, window, noise):
    with numpy_path():
        try:
            return quantize_bits_blocked(bits, window, noise)
        except ValueError as error:
            return error


def assert_same_bits(actual, expected, inputs):
    mismatch = np.flatnonzero(actual != expected)
    assert mismatch.size == 0, (
        f"{mismatch.size} mismatches; first: input 0x{int(inputs[mismatch[0]]):08x} gave "
        f"0x{int(actual[mismatch[0]]):08x} in the kernel, 0x{int(expected[mismatch[0]]):08x} "
        "in the numpy path"
    )


def representable(bits, window):
    """Return a mask of the patterns that the window narrows without raising."""
    with np.errstate(invalid="ignore"):  # signaling NaNs
        values = bits.view(np.float32).astype(np.float64)  # max_value need not be FP32
    keep = np.isfinite(values) | (np.isnan(values) & window.has_nan)
    if not window.saturate and not window.has_inf and not window.has_nan:
        keep &= np.abs(values) <= window.max_value
    return keep


@pytest.mark.spec("C5", "C7", "C8", "C9", "C10", "C12", "C13", "C14", "C16")
@pytest.mark.parametrize("window", WINDOWS, ids=lambda window: window.name)
def test_kernel_matches_numpy_on_all_bf16(window):
    inputs = [ALL_BF16_BITS] if window.base == "bf16" else [ALL_BF16_BITS, ALL_BF16_WITH_LOW_BITS]
    for bits, noise in itertools.product(inputs, noise_cases(window, ALL_BF16_BITS.size)):
        expected = numpy_or_error(bits, window, noise)
        status, actual = run_kernel(bits, window, noise)
        if isinstance(expected, ValueError):
            assert status == 1, f"numpy path raised {expected}, kernel returned {status}"
            keep = representable(bits, window)
            bits = bits[keep]
            noise = None if noise is None else noise[keep]
            expected = numpy_or_error(bits, window, noise)
            status, actual = run_kernel(bits, window, noise)
        assert status == 0
        assert_same_bits(actual, expected, bits)
        if window.base == "bf16":
            # The same patterns as 16-bit BF16 codes, as a bfloat16 array passes them.
            codes = (bits >> np.uint32(16)).astype(np.uint16)
            status, codes_out = run_kernel(codes, window, noise)
            assert status == 0
            assert_same_bits(codes_out.astype(np.uint32) << np.uint32(16), expected, bits)


@pytest.mark.spec("C7", "C12", "C13")
@pytest.mark.parametrize("window", WINDOWS[::4], ids=lambda window: window.name)
def test_numpy_path_matches_general_path(window):
    bits = ALL_BF16_WITH_LOW_BITS
    bits = bits[representable(bits, window)]
    noise = noise_for(window, bits.size, seed=1)
    with numpy_path():
        blocked = quantize_bits_blocked(bits, window, noise)
    assert_same_bits(blocked, quantize_bits(bits, window, noise), bits)


def container_strategy():
    @st.composite
    def draw_container(draw):
        e = draw(st.integers(1, 8), label="exponent_bits")
        m = draw(st.integers(0, 23), label="mantissa_bits")
        fields = dict(
            specials=draw(st.sampled_from(("ieee", "fn", "none")), label="specials"),
            subnormals=draw(st.booleans(), label="subnormals"),
            saturate=draw(st.booleans(), label="saturate"),
            rounding=draw(st.sampled_from(ROUNDINGS), label="rounding"),
        )
        try:
            container = Container(e, m, **fields)
        except ValueError:
            container = Container(e, m, **dict(fields, specials="none"))
        anchor = draw(st.one_of(st.just("max"), st.integers(-149, 127)), label="anchor")
        return container, anchor

    return draw_container()


def result_or_message(x, container, anchor, noise):
    try:
        return quantize(x, container, anchor=anchor, noise=noise).view(np.uint32)
    except ValueError as error:
        return str(error)


@pytest.mark.spec("C6", "C7", "C8", "C9", "C10", "C12", "C13", "C14", "C16")
@settings(max_examples=300)
@given(
    hnp.arrays(np.uint32, st.integers(0, 300), elements=st.integers(0, 2**32 - 1)),
    container_strategy(),
    st.integers(0, 2**32 - 1),
)
@example(np.uint32([0x7FC0_0001, 0x3F80_0000]), (Container.training(3, 2), 0), 0)
@example(np.uint32([0x0000_0001, 0x8080_0000]), (Container(4, 3), -126), 0)
def test_kernel_matches_numpy_on_fp32_patterns(bits, container_anchor, seed):
    container, anchor = container_anchor
    x = bits.view(np.float32)
    noise = noise_for(container, x.shape, seed)
    with numpy_path():
        expected = result_or_message(x, container, anchor, noise)
    actual = result_or_message(x, container, anchor, noise)
    if isinstance(expected, str):
        assert actual == expected
    else:
        assert not isinstance(actual, str), actual
        assert_same_bits(actual, expected, bits)


def tensor_with_rare_values(size, seed):
    """Standard normal values with inf, NaN, FP32 subnormals and zeros at block edges."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(size).astype(np.float32)
    specials = np.float32([np.inf, -np.inf, np.nan, 1e-40, -1e-45, 0.0, -0.0, 1e30, -1e-30])
    for edge in range(0, size, KERNEL_BLOCK):
        for offset, value in zip((0, 1, KERNEL_BLOCK - 1, 7, 8), rng.choice(specials, 5)):
            if edge + offset < size:
                x[edge + offset] = value
    return x


@pytest.mark.spec("C7", "C10", "C13", "C14", "C15")
@pytest.mark.parametrize("name", ["e4m3fn", "e5m2", "bf16", "e3m2fn"])
@pytest.mark.parametrize("size", [1, 7, KERNEL_BLOCK + 9, BLOCK_ELEMENTS + 3])
def test_kernel_matches_numpy_across_blocks(name, size):
    container = Container.from_name(name)
    x = tensor_with_rare_values(size, seed=size)
    if not container.has_nan:
        x[np.isnan(x)] = 1.0
    original = x.copy()
    with numpy_path():
        expected = quantize(x, container)
    actual = quantize(x, container)
    assert actual.shape == x.shape
    assert actual.dtype == np.float32
    assert_same_bits(actual.view(np.uint32), expected.view(np.uint32), x.view(np.uint32))
    assert np.array_equal(x.view(np.uint32), original.view(np.uint32))


@pytest.mark.spec("C6", "C10", "C12")
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_training_max_anchor_matches_numpy_across_blocks(rounding):
    container = Container.training(4, 2, rounding)
    x = tensor_with_rare_values(3 * BLOCK_ELEMENTS + 11, seed=3)
    # The training container has no NaN code; inf saturates and leaves the max anchor alone.
    x[np.isnan(x) | (np.isfinite(x) & (np.abs(x) > 100))] = 0.0
    x[x.size // 2] = float.fromhex("0x1.ffp10")  # up to 2^11 at m = 2 unless toward zero
    noise = noise_for(container, x.shape, seed=4)
    with numpy_path():
        expected = quantize(x, container, anchor="max", noise=noise)
        expected_anchor = max_anchor(x, container)
    assert max_anchor(x, container) == expected_anchor == (10 if rounding == "toward_zero" else 11)
    actual = quantize(x, container, anchor="max", noise=noise)
    assert_same_bits(actual.view(np.uint32), expected.view(np.uint32), x.view(np.uint32))


@pytest.mark.spec("C6")
@pytest.mark.parametrize("values", [
    [], [0.0, -0.0], [np.inf, np.nan, -np.inf], [1e-45, -3e-39], [-5.0, 2.0, np.inf],
    [3.4e38, -np.nan], [float.fromhex("0x1.fffffep127")],
], ids=str)
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_max_anchor_matches_numpy(values, rounding):
    x = np.array(values, np.float32)
    container = Container.training(5, 1, rounding)
    with numpy_path():
        expected = max_anchor(x, container)
    assert max_anchor(x, container) == expected


@pytest.mark.spec("C6")
def test_largest_finite_magnitude_skips_inf_and_nan():
    bits = np.uint32([0xFF80_0000, 0x7FC0_0000, 0x8000_0005, 0x0000_0003, 0xFFFF_FFFF])
    assert KERNEL.largest_finite_magnitude(bits) == 5
    assert KERNEL.largest_finite_magnitude(np.uint32([0x7F80_0000])) == 0
    assert KERNEL.largest_finite_magnitude(np.empty(0, np.uint32)) == 0


@pytest.mark.spec("C15")
def test_shapes_strides_and_zero_dim():
    container = Container.from_name("e4m3")
    rng = np.random.default_rng(2)
    matrix = (rng.standard_normal((300, 41)) * 100).astype(np.float32)
    cases = {
        "0-d": np.array(300.0, np.float32),
        "empty": np.empty((0, 5), np.float32),
        "strided": matrix[::3, 1::2],
        "transposed": matrix.T,
        "negative stride": matrix[::-1],
    }
    for label, x in cases.items():
        original = x.copy()
        with numpy_path():
            expected = quantize(x, container)
        actual = quantize(x, container)
        assert actual.shape == x.shape, label
        assert actual.flags.c_contiguous, label
        assert np.array_equal(actual.view(np.uint32), expected.view(np.uint32)), label
        assert np.array_equal(x, original), label


@pytest.mark.spec("C10", "C11")
def test_strided_noise_follows_elements():
    container = Container.training(3, 1, "stochastic")
    rng = np.random.default_rng(6)
    x = rng.standard_normal((64, 80)).astype(np.float32)[:, ::2]
    noise = rng.integers(0, 2**32, (40, 64), dtype=np.uint32).T
    with numpy_path():
        expected = quantize(x, container, anchor=1, noise=noise)
    actual = quantize(x, container, anchor=1, noise=noise)
    assert np.array_equal(actual.view(np.uint32), expected.view(np.uint32))


@pytest.mark.spec("C13", "C14")
@pytest.mark.parametrize("index", [0, KERNEL_BLOCK - 1, KERNEL_BLOCK, 3 * BLOCK_ELEMENTS + 2])
def test_error_message_names_same_element(index):
    x = np.ones(3 * BLOCK_ELEMENTS + 5, np.float32)
    x[index] = np.nan
    x[-1] = np.nan
    with numpy_path():
        with pytest.raises(ValueError) as expected:
            quantize(x, Container.training(3, 2), anchor=0)
    with pytest.raises(ValueError) as actual:
        quantize(x, Container.training(3, 2), anchor=0)
    assert str(actual.value) == str(expected.value)
    assert f"first at element {index}: 0x7fc00000" in str(actual.value)


@pytest.mark.spec("C13")
def test_overflow_without_inf_or_nan_is_reported():
    window = Container(3, 2, specials="none").with_anchor(None)
    status, _ = run_kernel(np.float32([1.0, 1e6]).view(np.uint32), window, None)
    assert status == 1
    with pytest.raises(ValueError, match="first at element 1: 0x49742400"):
        quantize(np.float32([1.0, 1e6]), Container(3, 2, specials="none"))


@pytest.mark.spec("C15")
def test_bf16_check_names_first_bad_element():
    container = Container(8, 7, base="bf16")
    bits = np.full(KERNEL_BLOCK * 2 + 3, 0x3F80_0000, np.uint32)
    bits[5] = 0x7FC0_1234  # a NaN payload in the low bits is allowed
    bits[KERNEL_BLOCK + 1] = 0x3F80_0001
    x = bits.view(np.float32)
    with numpy_path():
        with pytest.raises(ValueError) as expected:
            quantize(x, container)
    with pytest.raises(ValueError) as actual:
        quantize(x, container)
    assert str(actual.value) == str(expected.value)
    assert f"element {KERNEL_BLOCK + 1} is 0x3f800001" in str(actual.value)
    assert KERNEL.first_non_bf16(bits[:KERNEL_BLOCK]) == -1


BFLOAT16_CASES = [
    (Container(5, 2, specials="fn", base="bf16"), None),
    (Container(8, 7, base="bf16"), None),
    (Container(4, 3, subnormals=False, saturate=True, base="bf16"), -20),
    (Container(3, 1, specials="none", saturate=True, rounding="toward_zero", base="bf16"), "max"),
    (Container(3, 2, specials="none", saturate=True, rounding="stochastic", base="bf16"), "max"),
    (Container(2, 0, specials="none", subnormals=False, saturate=True, base="bf16"), -130),
]


@pytest.mark.spec("C6", "C10", "C15")
@pytest.mark.parametrize("container, anchor", BFLOAT16_CASES, ids=str)
def test_bfloat16_input_matches_numpy(container, anchor):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    codes = (ALL_BF16_BITS >> np.uint32(16)).astype(np.uint16)
    if not container.has_nan:
        codes = codes[(codes & 0x7FFF) <= 0x7F80]
    x = codes.view(ml_dtypes.bfloat16).reshape(-1, 2)[:, ::-1]  # 2-d and not contiguous
    noise = noise_for(container, x.shape, seed=8)
    with numpy_path():
        expected = quantize(x, container, anchor=anchor, noise=noise)
    actual = quantize(x, container, anchor=anchor, noise=noise)
    assert actual.dtype == x.dtype
    assert actual.shape == x.shape
    assert np.array_equal(actual.view(np.uint16), expected.view(np.uint16))


@pytest.mark.spec("C14", "C15")
def test_bfloat16_error_message_matches_numpy():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.ones(KERNEL_BLOCK + 5, ml_dtypes.bfloat16)
    x[KERNEL_BLOCK + 2] = np.nan
    container = Container(3, 2, specials="none", saturate=True, base="bf16")
    with numpy_path():
        with pytest.raises(ValueError) as expected:
            quantize(x, container, anchor=0)
    with pytest.raises(ValueError) as actual:
        quantize(x, container, anchor=0)
    assert str(actual.value) == str(expected.value)
    assert f"element {KERNEL_BLOCK + 2}: 0x7fc00000" in str(actual.value)


@pytest.mark.spec("C6")
def test_largest_finite_magnitude_of_bf16_codes():
    codes = np.uint16([0xFF80, 0x7FC0, 0x8005, 0x0003, 0xFFFF, 0x7F7F])
    assert KERNEL.largest_finite_magnitude(codes) == 0x7F7F_0000
    assert KERNEL.largest_finite_magnitude(codes[:5]) == 0x0005_0000


@pytest.mark.spec("C7")
def test_quantize_calls_the_kernel():
    calls = []

    class Recorder:
        def quantize(self, bits, *args):
            calls.append(("quantize", bits.itemsize))
            return KERNEL.quantize(bits, *args)

        def largest_finite_magnitude(self, bits):
            calls.append(("largest_finite_magnitude", bits.itemsize))
            return KERNEL.largest_finite_magnitude(bits)

    native._loaded["quantize"] = Recorder()
    quantize(np.ones(10, np.float32), Container.from_name("e5m2"))
    quantize(np.ones(BLOCK_ELEMENTS + 1, np.float32), Container.training(3, 2), anchor="max")
    assert calls == [("quantize", 4), ("largest_finite_magnitude", 4), ("quantize", 4)]
    ml_dtypes = pytest.importorskip("ml_dtypes")
    calls.clear()
    x = np.ones(10, ml_dtypes.bfloat16)
    quantize(x, Container(3, 2, specials="none", saturate=True, base="bf16"), anchor="max")
    assert calls == [("largest_finite_magnitude", 2), ("quantize", 2)]  # on the 16-bit codes


def test_kernel_rejects_invalid_buffers():
    window = Container.from_name("e4m3fn")
    plan = native_plan(window)
    bits = np.zeros(8, np.uint32)
    with pytest.raises(ValueError, match="bits must hold 4-byte items"):
        KERNEL.quantize(np.zeros(8, np.uint8), None, bits.copy(), plan)
    with pytest.raises(ValueError, match="out must have the item size of bits"):
        KERNEL.quantize(np.zeros(8, np.uint16), None, bits.copy(), plan)
    with pytest.raises(ValueError, match="noise must hold 4-byte items"):
        KERNEL.quantize(bits, np.zeros(8, np.uint16), bits.copy(), plan)
    with pytest.raises(ValueError, match="must have one length"):
        KERNEL.quantize(bits, None, np.zeros(7, np.uint32), plan)
    with pytest.raises(ValueError, match="noise must be given exactly when rounding is stochastic"):
        KERNEL.quantize(bits, bits, bits.copy(), plan)
    with pytest.raises(ValueError, match="not C-contiguous"):
        KERNEL.quantize(bits, None, np.zeros((8, 2), np.uint32)[:, 0], plan)
    with pytest.raises(TypeError):
        KERNEL.quantize(bits, None, bits.copy(), list(plan))
    with pytest.raises(ValueError, match="constants out of range"):
        KERNEL.quantize(bits, None, bits.copy(), (9,) + plan[1:])
    with pytest.raises(ValueError, match="constants out of range"):
        KERNEL.quantize(bits, None, bits.copy(), (3,) + plan[1:])  # stochastic loop, no noise
    read_only = bits.copy()
    read_only.flags.writeable = False
    with pytest.raises((TypeError, ValueError)):
        KERNEL.quantize(bits, None, read_only, plan)
