"""quantize(..., out=...) writes the same bits into a caller's array (SPEC.md C15).

Each case narrows once into a new array and once into ``out``, through the compiled kernel
when it is built and through the numpy path, and compares FP32 bit patterns.
"""

import contextlib

import numpy as np
import pytest

from reference import Container, native, quantize
from reference.quantize_blocked import BLOCK_ELEMENTS


@contextlib.contextmanager
def kernel_setting(enabled):
    """Run the body with the quantize kernel on (when built) or forced off."""
    saved = native._loaded.pop("quantize", None)
    native.reset()
    if not enabled:
        native._loaded["quantize"] = None
    try:
        yield
    finally:
        native.reset()
        if saved is not None:
            native._loaded["quantize"] = saved


PATHS = [pytest.param(True, id="kernel"), pytest.param(False, id="numpy")]
CASES = [
    ("e4m3fn preset", Container.from_name("e4m3fn"), None),
    ("e5m2 preset", Container.from_name("e5m2"), None),
    ("training, int anchor", Container.training(3, 2), 2),
    ("training, max anchor", Container.training(3, 2), "max"),
    ("training stochastic", Container.training(4, 1, "stochastic"), "max"),
]
SIZES = [0, 1, 1000, BLOCK_ELEMENTS + 17]  # empty, 0-d sized, the lean path, several blocks


def sample(size, seed=0):
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(size) * 4.0).astype(np.float32)
    noise = rng.integers(0, 2**32, size, dtype=np.uint32)
    return x, noise


@pytest.mark.spec("C15")
@pytest.mark.parametrize("enabled", PATHS)
@pytest.mark.parametrize("name, container, anchor", CASES, ids=[case[0] for case in CASES])
@pytest.mark.parametrize("size", SIZES)
def test_out_matches_new_array(enabled, name, container, anchor, size):
    x, noise = sample(size)
    if container.rounding != "stochastic":
        noise = None
    if anchor == 2 and size == 0:
        anchor = None  # an empty tensor has no values to place
    x_before = x.copy()
    with kernel_setting(enabled):
        expected = quantize(x, container, anchor=anchor, noise=noise)
        out = np.full_like(x, np.nan)
        result = quantize(x, container, anchor=anchor, noise=noise, out=out)
    assert result is out
    assert np.array_equal(out.view(np.uint32), expected.view(np.uint32))
    assert np.array_equal(x.view(np.uint32), x_before.view(np.uint32))


@pytest.mark.spec("C15")
@pytest.mark.parametrize("enabled", PATHS)
def test_out_keeps_shape_and_zero_dim(enabled):
    container = Container.from_name("e4m3fn")
    for x in (np.array(3.3, dtype=np.float32), np.arange(24, dtype=np.float32).reshape(2, 3, 4) - 11.5):
        with kernel_setting(enabled):
            expected = quantize(x, container)
            out = np.empty_like(x)
            quantize(x, container, out=out)
        assert out.shape == x.shape
        assert np.array_equal(out.view(np.uint32), expected.view(np.uint32))


@pytest.mark.spec("C15")
@pytest.mark.parametrize("enabled", PATHS)
def test_out_on_bf16_base(enabled):
    container = Container(4, 3, specials="fn", saturate=True, base="bf16")
    bits = np.arange(2**16, dtype=np.uint32) << np.uint32(16)
    x = bits.view(np.float32)
    x = x[np.isfinite(x)]
    with kernel_setting(enabled):
        expected = quantize(x, container)
        out = np.empty_like(x)
        quantize(x, container, out=out)
    assert np.array_equal(out.view(np.uint32), expected.view(np.uint32))


@pytest.mark.spec("C15")
@pytest.mark.parametrize("enabled", PATHS)
def test_out_on_bfloat16_array(enabled):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x, _ = sample(5000, seed=1)
    x = x.astype(ml_dtypes.bfloat16)
    container = Container(5, 2, base="bf16")
    with kernel_setting(enabled):
        expected = quantize(x, container)
        out = np.empty_like(x)
        result = quantize(x, container, out=out)
    assert result is out
    assert np.array_equal(out.view(np.uint16), expected.view(np.uint16))


def invalid_outs(x):
    read_only = np.empty_like(x)
    read_only.flags.writeable = False
    return [
        ("float64 out", np.empty(x.shape, np.float64), "dtype and shape"),
        ("wrong shape", np.empty(x.size + 1, np.float32), "dtype and shape"),
        ("strided", np.empty(2 * x.size, np.float32)[::2], "C-contiguous"),
        ("read-only", read_only, "writable"),
        ("x itself", x, "must not overlap x"),
        ("a view of x", x.reshape(x.shape), "must not overlap x"),
    ]


@pytest.mark.spec("C15")
@pytest.mark.parametrize("index", range(6))
def test_invalid_out_is_rejected(index):
    x, _ = sample(64)
    x_before = x.copy()
    name, out, message = invalid_outs(x)[index]
    with pytest.raises(ValueError, match=message):
        quantize(x, Container.from_name("e4m3fn"), out=out)
    assert np.array_equal(x.view(np.uint32), x_before.view(np.uint32)), name


@pytest.mark.spec("C15")
def test_out_must_be_an_array():
    x, _ = sample(8)
    with pytest.raises(TypeError, match="out must be a numpy array"):
        quantize(x, Container.from_name("e4m3fn"), out=[0.0] * 8)


@pytest.mark.spec("C13")
@pytest.mark.parametrize("enabled", PATHS)
def test_out_of_range_error_is_unchanged_by_out(enabled):
    # Without specials or saturation e4m3 cannot hold 1e6, and the error names index 2.
    x = np.float32([1.0, 2.0, 1e6, 3.0])
    container = Container(4, 3, specials="none")
    with kernel_setting(enabled):
        with pytest.raises(ValueError) as without_out:
            quantize(x, container)
        with pytest.raises(ValueError) as with_out:
            quantize(x, container, out=np.empty_like(x))
    assert "element 2" in str(without_out.value)
    assert str(with_out.value) == str(without_out.value)
