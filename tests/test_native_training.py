"""The compiled training kernel gives the numpy path's bits (SPEC.md C4-C9, C12, Q3, Q5).

``reference.native._training`` narrows a tensor in the training container at the max anchor and
computes Quantum's collapse-mode width gradients. The numpy path is the reference: the lean
path of ``quantize`` for narrowing (``quantize_lean.narrow_max_anchor_widths`` also decides which
tensors the kernel must decline), and float32 products summed with
``np.sum(..., dtype=np.float64)`` for the gradients. Every comparison is bit for bit.
"""

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from reference import bitlength, native
from reference.bitlength import quantum_narrow, quantum_vjp
from reference.container import Container
from reference.quantize import quantize
from reference.quantize_lean import KERNEL_ROUNDINGS, narrow_max_anchor_widths

kernel = native.kernel("training")
pytestmark = pytest.mark.skipif(
    kernel is None, reason="reference.native._training is disabled (SFP_NATIVE=0) or not built; "
    "reinstall with a C compiler (pip install -e .)")

ROUNDINGS = tuple(KERNEL_ROUNDINGS)
ALL_BF16 = (np.arange(2**16, dtype=np.uint32) << np.uint32(16)).view(np.float32)
FINITE_BF16 = ALL_BF16[np.isfinite(ALL_BF16)]
FP32_MIN_NORMAL = np.float32(2.0**-126)


@pytest.fixture
def numpy_path(monkeypatch):
    """Force the numpy path for the rest of the test, as SFP_NATIVE=0 does."""
    monkeypatch.setitem(native._loaded, "training", None)


def bits_of(a):
    return np.asarray(a).view(np.uint32 if np.asarray(a).dtype == np.float32 else np.uint64)


def reference_narrow(x, e, m, rounding):
    """Return the numpy lean path's Q(x; e, m), or None where it falls back."""
    result = narrow_max_anchor_widths(x, [(e, m)], rounding)
    return None if result is None else result[(e, m)]


def kernel_narrow(x, e, m, rounding):
    out = np.empty_like(x)
    magnitudes = kernel.narrow(x, out, e, m, KERNEL_ROUNDINGS[rounding])
    return None if magnitudes is None else out


def first_difference(got, expected):
    index = int(np.flatnonzero(bits_of(got) != bits_of(expected))[0])
    return (f"first difference at index {index}: got 0x{int(bits_of(got)[index]):08x}, "
            f"expected 0x{int(bits_of(expected)[index]):08x}")


def assert_same_narrowing(x, e, m, rounding):
    expected = reference_narrow(x, e, m, rounding)
    got = kernel_narrow(x, e, m, rounding)
    if expected is None:
        assert got is None, f"kernel served e={e} m={m} {rounding} where numpy falls back"
        return
    assert got is not None, f"kernel declined e={e} m={m} {rounding} where numpy serves"
    assert np.array_equal(bits_of(got), bits_of(expected)), first_difference(got, expected)


# Narrowing.


@pytest.mark.spec("C4", "C5", "C6", "C8", "C9", "C12")
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("below, min_served", [(np.inf, 24), (2.0**100, 7 * 24),
                                               (2.0**-20, 6 * 24)])
def test_narrow_matches_numpy_on_bf16(rounding, below, min_served):
    # Every finite BF16 pattern below a bound, so that the max anchor and the flush point move.
    # Without a bound the max rounds up to 2^128 at narrow mantissas, which only numpy serves,
    # and windows that reach below 2^-126 meet FP32 subnormal inputs, which only numpy serves.
    x = FINITE_BF16[np.abs(FINITE_BF16) < below]
    served = 0
    for e in range(1, 9):
        for m in range(24):
            assert_same_narrowing(x, e, m, rounding)
            served += kernel_narrow(x, e, m, rounding) is not None
    assert served >= min_served


@pytest.mark.spec("C4", "C8", "C12")
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_narrow_matches_numpy_without_subnormal_inputs(rounding):
    magnitude = np.abs(FINITE_BF16)
    x = FINITE_BF16[((magnitude >= FP32_MIN_NORMAL) | (magnitude == 0)) & (magnitude < 2.0**100)]
    for m in range(24):
        assert kernel_narrow(x, 8, m, rounding) is not None
        assert_same_narrowing(x, 8, m, rounding)


@pytest.mark.spec("C6", "C13", "C14", "C15")
@pytest.mark.parametrize("values, e, m", [
    ([1.0, np.inf], 3, 2),
    ([1.0, -np.nan], 3, 2),
    ([0.0, -0.0], 3, 2),
    ([1e-40, -1e-45], 3, 2),  # no FP32 normal value
    ([1.0, 1e-40], 8, 2),  # a subnormal input inside an e = 8 window
], ids=["inf", "nan", "zeros", "subnormals", "subnormal_in_window"])
def test_narrow_declines_numpy_cases(values, e, m):
    x = np.array(values, dtype=np.float32)
    for rounding in ROUNDINGS:
        assert reference_narrow(x, e, m, rounding) is None
        assert kernel_narrow(x, e, m, rounding) is None


@pytest.mark.spec("C6", "C13")
def test_narrow_declines_overflowing_max():
    # At m = 2 the FP32 max rounds to 2^128.
    x = np.array([3.4028235e38, 1.0], dtype=np.float32)
    assert reference_narrow(x, 3, 2, "nearest_even") is None
    assert kernel_narrow(x, 3, 2, "nearest_even") is None


@pytest.mark.spec("C6", "C9")
def test_narrow_toward_zero_serves_the_fp32_max():
    x = np.array([3.4028235e38, -1.5], dtype=np.float32)
    assert kernel_narrow(x, 3, 2, "toward_zero") is not None
    assert_same_narrowing(x, 3, 2, "toward_zero")


@pytest.mark.spec("C4", "C6", "C8", "C9", "C12")
@given(
    x=hnp.arrays(np.uint32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=40),
                 elements=st.integers(0, 2**32 - 1)).map(lambda a: a.view(np.float32)),
    e=st.integers(1, 8), m=st.integers(0, 23), rounding=st.sampled_from(ROUNDINGS),
)
@example(x=np.float32([1.0, 2.0**-126, -2.0**-127]), e=8, m=3, rounding="nearest_even")
@example(x=np.float32([1.5, 1.75, -1.25]), e=1, m=0, rounding="nearest_even")
def test_narrow_matches_numpy_on_fp32_patterns(x, e, m, rounding):
    assert_same_narrowing(x, e, m, rounding)


@pytest.mark.spec("C4", "C6", "C8", "C12")
@given(
    x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=2, max_side=300),
                 elements=st.floats(-1e6, 1e6, width=32)),
    e=st.integers(1, 8), m=st.integers(0, 23), rounding=st.sampled_from(ROUNDINGS),
)
def test_narrow_matches_numpy_on_finite_tensors(x, e, m, rounding):
    assert_same_narrowing(x, e, m, rounding)


@pytest.mark.spec("C4", "C6", "C15")
@pytest.mark.parametrize("rounding", ROUNDINGS)
def test_quantize_matches_numpy_path(rounding, monkeypatch):
    # quantize reaches the kernel through its lean path; a strided input must not matter.
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((8, 6, 6, 5)) * np.exp(rng.uniform(-8, 8, (8, 6, 6, 5))))
    x = x.astype(np.float32).transpose(0, 3, 1, 2)
    containers = [Container.training(e, m, rounding) for e, m in [(3, 1), (5, 7), (8, 23)]]
    fast = [quantize(x, c, anchor="max") for c in containers]
    monkeypatch.setitem(native._loaded, "training", None)
    for container, got in zip(containers, fast):
        expected = quantize(x, container, anchor="max")
        assert got.shape == expected.shape
        assert np.array_equal(bits_of(got), bits_of(expected))


# Width gradients.


def numpy_slope(x, g, low, high, rounding):
    q_low = reference_narrow(x, *low, rounding)
    q_high = reference_narrow(x, *high, rounding)
    return float(np.sum(g * (q_high - q_low), dtype=np.float64))


def assert_same_gradients(x, g, e, m, other_e, other_m, rounding):
    out = np.empty_like(x)
    magnitudes = kernel.narrow(x, out, e, m, KERNEL_ROUNDINGS[rounding])
    if magnitudes is None:
        return False
    got = kernel.collapse_gradients(x, g, *magnitudes, KERNEL_ROUNDINGS[rounding], e, m,
                                    other_e, other_m)
    corners = [(e, m), (e, other_m)] + ([(other_e, m)] if other_e else [])
    if any(reference_narrow(x, *corner, rounding) is None for corner in corners):
        assert got is None
        return False
    grad_m = numpy_slope(x, g, (e, min(m, other_m)), (e, max(m, other_m)), rounding)
    grad_e = 0.0
    if other_e:
        grad_e = numpy_slope(x, g, (min(e, other_e), m), (max(e, other_e), m), rounding)
    assert bits_of(np.float64(got[0])) == bits_of(np.float64(grad_m)), (got[0], grad_m)
    assert bits_of(np.float64(got[1])) == bits_of(np.float64(grad_e)), (got[1], grad_e)
    return True


def neighbour(width, low, high, up):
    return width + 1 if (up and width < high) or width == low else width - 1


@pytest.mark.spec("Q3", "Q4")
@pytest.mark.parametrize("size", [1, 7, 8, 9, 127, 128, 129, 1000, 8191, 8192, 8193, 16385,
                                  73728])
def test_gradients_match_numpy_sum_order(size):
    # Sizes around numpy's pairwise runs (8, 128) and its buffer of 8192 values.
    rng = np.random.default_rng(size)
    x = (rng.standard_normal(size) * np.exp(rng.uniform(-6, 3, size))).astype(np.float32)
    x[rng.random(size) < 0.1] = 0.0
    g = (rng.standard_normal(size) * np.exp(rng.uniform(-20, 20, size))).astype(np.float32)
    compared = 0
    for rounding in ROUNDINGS:
        for e, m in [(1, 0), (3, 2), (4, 1), (8, 23), (5, 12)]:
            for up in (True, False):
                other_e, other_m = neighbour(e, 1, 8, up), neighbour(m, 0, 23, not up)
                compared += assert_same_gradients(x, g, e, m, other_e, other_m, rounding)
                compared += assert_same_gradients(x, g, e, m, 0, other_m, rounding)
    assert compared >= 30


@pytest.mark.spec("Q3")
@given(
    x=hnp.arrays(np.uint32, st.integers(1, 600), elements=st.integers(0, 2**32 - 1))
    .map(lambda a: a.view(np.float32)),
    g_seed=st.integers(0, 2**32 - 1),
    e=st.integers(1, 8), m=st.integers(0, 23), up_e=st.booleans(), up_m=st.booleans(),
    with_exponent=st.booleans(), rounding=st.sampled_from(ROUNDINGS),
)
def test_gradients_match_numpy_on_fp32_patterns(x, g_seed, e, m, up_e, up_m, with_exponent,
                                                rounding):
    g = np.random.default_rng(g_seed).standard_normal(x.shape).astype(np.float32)
    other_e = neighbour(e, 1, 8, up_e) if with_exponent else 0
    assert_same_gradients(x, g, e, m, other_e, neighbour(m, 0, 23, up_m), rounding)


@pytest.mark.spec("Q3")
@given(
    x=hnp.arrays(np.float32, st.integers(1, 2000),
                 elements=st.floats(-2.0**40, 2.0**40, width=32)),
    g_seed=st.integers(0, 2**32 - 1),
    e=st.integers(1, 8), m=st.integers(0, 23), up_e=st.booleans(), up_m=st.booleans(),
    with_exponent=st.booleans(), rounding=st.sampled_from(ROUNDINGS),
)
def test_gradients_match_numpy_on_finite_tensors(x, g_seed, e, m, up_e, up_m, with_exponent,
                                                 rounding):
    g = np.random.default_rng(g_seed).standard_normal(x.shape).astype(np.float32)
    other_e = neighbour(e, 1, 8, up_e) if with_exponent else 0
    assert_same_gradients(x, g, e, m, other_e, neighbour(m, 0, 23, up_m), rounding)


@pytest.mark.spec("Q3")
def test_gradients_of_cancelling_terms_are_positive_zero():
    # numpy's float64 sum starts from +0.0, so a zero total is +0.0 whatever the terms' signs.
    x = np.float32([1.0, 1.0, 1.5, 1.5])
    g = np.float32([1.0, -1.0, 2.0, -2.0])
    out = np.empty_like(x)
    magnitudes = kernel.narrow(x, out, 3, 1, 0)
    for other_m in (0, 2):
        got = kernel.collapse_gradients(x, g, *magnitudes, 0, 3, 1, 2, other_m)
        assert bits_of(np.float64(got[0])) == bits_of(np.float64(0.0))
        assert bits_of(np.float64(got[1])) == bits_of(np.float64(0.0))


# Quantum through its public functions, with and without the kernel.


def quantum_step(x, g, e, m, rounding, need_exponent, seed=5):
    result = quantum_narrow(x, e, m, rounding=rounding, rng=np.random.default_rng(seed),
                            prepare_vjp=True, need_exponent=need_exponent)
    grads = quantum_vjp(result.context, g, need_exponent=need_exponent)
    return result, grads


def assert_same_quantum_step(x, g, e, m, rounding, need_exponent, monkeypatch):
    fast, fast_grads = quantum_step(x, g, e, m, rounding, need_exponent)
    with monkeypatch.context() as patch:
        patch.setitem(native._loaded, "training", None)
        slow, slow_grads = quantum_step(x, g, e, m, rounding, need_exponent)
    assert (fast.exponent_bits, fast.mantissa_bits) == (slow.exponent_bits, slow.mantissa_bits)
    assert fast.value.shape == slow.value.shape
    assert fast.value.dtype == slow.value.dtype
    assert np.array_equal(bits_of(fast.value), bits_of(slow.value))
    assert fast_grads[0].shape == slow_grads[0].shape
    assert np.array_equal(bits_of(fast_grads[0]), bits_of(slow_grads[0]))
    assert bits_of(np.float64(fast_grads[1])) == bits_of(np.float64(slow_grads[1]))
    assert bits_of(np.float64(fast_grads[2])) == bits_of(np.float64(slow_grads[2]))
    return fast


@pytest.mark.spec("Q2", "Q3", "Q4", "Q5")
@pytest.mark.parametrize("e, m", [(3.3, 2.6), (8.0, 23.0), (1.0, 0.4), (4.9, 7.5), (2.5, 0.0)])
@pytest.mark.parametrize("rounding", ROUNDINGS)
@pytest.mark.parametrize("need_exponent", [True, False])
def test_quantum_matches_numpy_path(e, m, rounding, need_exponent, monkeypatch):
    rng = np.random.default_rng(3)
    data = rng.standard_normal((16, 9, 9, 4)) * np.exp(rng.uniform(-6, 3, (16, 9, 9, 4)))
    x = data.astype(np.float32).transpose(0, 3, 1, 2)  # strided, as a stashed activation
    g = rng.standard_normal(x.shape).astype(np.float32).transpose(0, 2, 3, 1)
    g = np.ascontiguousarray(g).transpose(0, 3, 1, 2)  # a strided gradient of x's shape
    fast = assert_same_quantum_step(x, g, e, m, rounding, need_exponent, monkeypatch)
    assert fast.context.magnitudes is not None


@pytest.mark.spec("Q3", "Q5")
@pytest.mark.parametrize("values", [
    [1.0, np.inf], [3.4028235e38, 1.0], [1.0, 1e-40], [0.0, -0.0], [2.5],
], ids=["inf", "overflow", "subnormal", "zeros", "one_value"])
def test_quantum_falls_back_to_numpy(values, monkeypatch):
    x = np.array(values, dtype=np.float32)
    g = np.ones_like(x)
    for e, m in [(8.0, 23.0), (3.5, 2.5)]:
        assert_same_quantum_step(x, g, e, m, "nearest_even", True, monkeypatch)


@pytest.mark.spec("Q2", "Q5")
def test_quantum_of_zero_dim_input_matches_numpy_path(monkeypatch):
    x = np.array(1.75, dtype=np.float32)
    fast = assert_same_quantum_step(x, np.float32(-2.0), 3.2, 1.5, "nearest_even", True,
                                    monkeypatch)
    assert fast.value.shape == ()


@pytest.mark.spec("Q3")
def test_quantum_uses_numpy_sum_at_another_buffer_size(monkeypatch):
    # The kernel reproduces the order of numpy's default buffer size only.
    rng = np.random.default_rng(8)
    x = rng.standard_normal(20000).astype(np.float32)
    g = rng.standard_normal(20000).astype(np.float32)
    previous = np.setbufsize(4096)
    try:
        assert_same_quantum_step(x, g, 4.5, 3.5, "nearest_even", True, monkeypatch)
    finally:
        np.setbufsize(previous)


@pytest.mark.spec("Q3")
def test_stochastic_rounding_stays_in_numpy():
    x = np.float32([1.0, 0.3, -0.7])
    result = quantum_narrow(x, 3.5, 2.5, rounding="stochastic", rng=np.random.default_rng(0))
    assert result.context.magnitudes is None


# Argument checks.


def test_narrow_rejects_bad_buffers():
    x = np.ones(4, np.float32)
    with pytest.raises(TypeError, match="x: must hold float32"):
        kernel.narrow(np.ones(4), np.empty(4), 3, 2, 0)
    with pytest.raises(TypeError, match="x: must be a C-contiguous"):
        kernel.narrow(np.ones(8, np.float32)[::2], np.empty(4, np.float32), 3, 2, 0)
    with pytest.raises(TypeError, match="out: must be a C-contiguous, writable"):
        read_only = np.empty(4, np.float32)
        read_only.flags.writeable = False
        kernel.narrow(x, read_only, 3, 2, 0)
    with pytest.raises(ValueError, match="out: must have the size of x"):
        kernel.narrow(x, np.empty(3, np.float32), 3, 2, 0)


@pytest.mark.parametrize("e, m, rounding, message", [
    (0, 2, 0, "exponent_bits: must be in 1..8; got 0"),
    (9, 2, 0, "exponent_bits: must be in 1..8; got 9"),
    (3, 24, 0, "mantissa_bits: must be in 0..23; got 24"),
    (3, 2, 2, "rounding: must be 0"),
])
def test_narrow_rejects_bad_widths(e, m, rounding, message):
    x = np.ones(4, np.float32)
    with pytest.raises(ValueError, match=message):
        kernel.narrow(x, np.empty_like(x), e, m, rounding)


def test_collapse_gradients_rejects_bad_arguments():
    x = np.float32([1.0, 0.5])
    magnitudes = kernel.narrow(x, np.empty_like(x), 3, 2, 0)
    with pytest.raises(ValueError, match="other_mantissa_bits: must be one step"):
        kernel.collapse_gradients(x, x, *magnitudes, 0, 3, 2, 4, 4)
    with pytest.raises(ValueError, match="other_exponent_bits: must be one step"):
        kernel.collapse_gradients(x, x, *magnitudes, 0, 3, 2, 5, 3)
    with pytest.raises(ValueError, match="largest, smallest_nonzero"):
        kernel.collapse_gradients(x, x, 0x7F800000, 1, 0, 3, 2, 4, 3)
    with pytest.raises(ValueError, match="g: must have the size of x"):
        kernel.collapse_gradients(x, x[:1], *magnitudes, 0, 3, 2, 4, 3)
    with pytest.raises(TypeError, match="g: must hold float32"):
        kernel.collapse_gradients(x, np.ones(2), *magnitudes, 0, 3, 2, 4, 3)


def test_quantum_vjp_checks_gradient_shape_on_both_paths(monkeypatch):
    # A gradient of another shape takes the numpy path, which broadcasts as before.
    x = np.float32([[1.0, 0.5], [0.25, -2.0]])
    g = np.float32([1.0, -1.0])
    fast = quantum_step(x, g, 3.5, 2.5, "nearest_even", True)[1]
    monkeypatch.setitem(native._loaded, "training", None)
    slow = quantum_step(x, g, 3.5, 2.5, "nearest_even", True)[1]
    assert fast[1:] == slow[1:]


def test_bitlength_reads_the_kernel_setting(numpy_path):
    # With the kernel disabled, collapse mode keeps the fused numpy corners.
    x = np.float32([1.0, 0.3, -0.7])
    result = bitlength.quantum_narrow(x, 3.5, 2.5, rng=np.random.default_rng(0),
                                      prepare_vjp=True)
    assert result.context.magnitudes is None
    assert len(result.context.corners) == 3
