"""The blocked fast path of quantize equals the general path (SPEC.md C7-C16).

``quantize`` runs the blocked path; ``reference.quantize.quantize_bits`` is the general path.
Both take FP32 bit patterns, so they are compared on every BF16 pattern, on both signs, for a
grid of containers and every rounding mode.
"""

import itertools

import numpy as np
import pytest

from reference import Container, quantize
from reference.quantize import quantize_bits
from reference.quantize_blocked import BLOCK_ELEMENTS, quantize_bits_blocked

ALL_BF16_BITS = np.arange(2**16, dtype=np.uint32) << np.uint32(16)


def configurations():
    for e, m, specials, subnormals, saturate, rounding in itertools.product(
        (2, 4, 8), (0, 1, 3, 7), ("ieee", "fn", "none"), (True, False), (True, False),
        ("nearest_even", "toward_zero", "stochastic"),
    ):
        try:
            container = Container(
                e, m, specials=specials, subnormals=subnormals, saturate=saturate, rounding=rounding,
            )
        except ValueError:
            continue
        for anchor in (None, -130, 3, 127):
            try:
                yield container.with_anchor(anchor)
            except ValueError:
                continue


CONFIGURATIONS = list(configurations())[::5] + [
    Container.from_name(name).with_anchor(None)
    for name in ("fp32", "bf16", "fp16", "e5m2", "e4m3fn", "e3m4", "e3m2fn", "e2m3fn", "e2m1fn")
] + [Container(8, 23, specials="none", subnormals=False, rounding="stochastic").with_anchor(-20)]


def general_or_error(bits, window, noise):
    try:
        return quantize_bits(bits, window, noise)
    except ValueError as error:
        return error


@pytest.mark.spec("C7", "C8", "C9", "C10", "C12", "C13", "C14")
@pytest.mark.parametrize("window", CONFIGURATIONS, ids=lambda c: f"{c.name}")
def test_blocked_equals_general_on_all_bf16(window):
    noise = None
    if window.rounding == "stochastic":
        noise = np.random.default_rng(window.bits).integers(0, 2**32, ALL_BF16_BITS.shape, np.uint32)
    # Also FP32 subnormals and patterns with low bits set: BF16 patterns plus a low-bit offset.
    bits = ALL_BF16_BITS | (ALL_BF16_BITS >> np.uint32(16)) % np.uint32(97)
    for inputs in (ALL_BF16_BITS, bits):
        expected = general_or_error(inputs, window, noise)
        if isinstance(expected, ValueError):
            # Errors are checked by the oracle tests; here both paths must agree elsewhere.
            keep = ~np.isnan(inputs.view(np.float32)) & np.isfinite(inputs.view(np.float32))
            if not window.saturate:
                keep &= np.abs(inputs.view(np.float32)) <= window.max_value
            inputs = inputs[keep]
            sub_noise = None if noise is None else noise[keep]
            expected = quantize_bits(inputs, window, sub_noise)
        else:
            sub_noise = noise
        actual = quantize_bits_blocked(inputs, window, sub_noise)
        mismatch = np.flatnonzero(actual != expected)
        assert mismatch.size == 0, (
            f"input 0x{int(inputs[mismatch[0]]):08x}: blocked 0x{int(actual[mismatch[0]]):08x}, "
            f"general 0x{int(expected[mismatch[0]]):08x}"
        )


@pytest.mark.spec("C13", "C14")
def test_error_names_index_beyond_first_block():
    x = np.ones(3 * BLOCK_ELEMENTS + 5, np.float32)
    x[2 * BLOCK_ELEMENTS + 7] = np.nan
    with pytest.raises(ValueError, match=f"first at element {2 * BLOCK_ELEMENTS + 7}: 0x7fc00000"):
        quantize(x, Container.training(3, 2), anchor=0)


@pytest.mark.spec("C10")
def test_noise_follows_elements_across_blocks():
    rng = np.random.default_rng(5)
    x = rng.standard_normal(2 * BLOCK_ELEMENTS + 3).astype(np.float32)
    noise = rng.integers(0, 2**32, x.shape, dtype=np.uint32)
    container = Container.training(4, 1, "stochastic")
    window = container.with_anchor(2)
    expected = quantize_bits(x.view(np.uint32), window, noise)
    actual = quantize(x, container, anchor=2, noise=noise)
    assert np.array_equal(actual.view(np.uint32), expected)
