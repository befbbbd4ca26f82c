"""The lean path of quantize for small tensors in anchored containers without subnormals.

Training narrows tensors of a few thousand values many times per step, so the fixed cost of a
call (checks, window construction, the anchor search) weighs as much as the rounding. This path
serves the common case in one short sequence of whole-array operations: float32 input, base
``fp32``, specials ``none``, subnormals off, and a tensor of finite values, all FP32 normals or
zeros. It finds the max anchor from one magnitude pass, rounds with the constant-d integer step
of ``reference.quantize_blocked`` and derives the window from the anchor in a few integer
operations, without building a Container per call. Whenever one of its conditions fails (an
inf or NaN, an FP32 subnormal input with a window that reaches below 2^-126, a value that would
overflow) it returns None, and ``quantize`` takes the general path.
Tests check both paths for equality on every BF16 pattern and on random FP32 tensors.
"""

import functools
import numbers

import numpy as np

from reference.quantize import FP32_INF, FP32_MIN_NORMAL_BITS, MAGNITUDE_MASK, rounded_exponent
from reference.quantize_blocked import BLOCK_ELEMENTS, RoundingConstants, round_normal_range

# Larger tensors take the blocked path, which works in cache-sized blocks.
MAX_ELEMENTS = BLOCK_ELEMENTS


def serves(x, container):
    """Return whether the lean path can narrow ``x`` in ``container`` (before looking at values)."""
    return (
        container.specials == "none"
        and not container.subnormals
        and container.base == "fp32"
        and x.dtype == np.float32
        and 0 < x.size <= MAX_ELEMENTS
    )


def quantize_lean(x, container, anchor, noise):
    """Return ``quantize(x, container, anchor=anchor, noise=noise)``, or None to fall back.

    ``anchor`` is ``"max"`` or an int. The caller has checked ``serves(x, container)`` and the
    noise.
    """
    if anchor != "max" and (isinstance(anchor, bool) or not isinstance(anchor, numbers.Integral)):
        return None  # the general path raises the error
    bits = np.ascontiguousarray(x).reshape(-1).view(np.uint32)
    temp = np.bitwise_and(bits, MAGNITUDE_MASK)
    largest = int(temp.max())
    if largest >= FP32_INF or largest < FP32_MIN_NORMAL_BITS:
        return None  # inf or NaN, or no FP32 normal value: the general path's rules apply
    m = container.mantissa_bits
    top = rounded_exponent(largest, m, container.rounding)
    if anchor == "max":
        anchor = top
    elif top > anchor:
        return None  # at least one value overflows the window
    if anchor > 127:
        return None  # the max rounds to 2^128 and overflows, or the anchor is out of range

    # With specials none every exponent code above 0 is a binade, so the window is
    # anchor - (2^e - 2) .. anchor (C4, C5), and no rounded value exceeds the max: its
    # exponent is at most the anchor, and the top binade contains the all-ones mantissa.
    min_exponent = int(anchor) - (2**container.exponent_bits - 2)
    flushes = min_exponent > -126
    if not flushes:
        # The window reaches below 2^-126, where FP32 subnormal inputs need the exact path.
        # Subtracting 1 wraps zeros to the top, so the minimum finds the smallest nonzero.
        np.subtract(temp, np.uint32(1), out=temp)
        if int(temp.min()) < FP32_MIN_NORMAL_BITS - 1:
            return None

    out = np.empty_like(bits)
    flat_noise = None if noise is None else noise.reshape(-1)
    round_normal_range(bits, flat_noise, out, temp, _rounding_constants(m, container.rounding))
    if flushes:
        # Below min_normal the window flushes, FP32 subnormals included (C12).
        _flush(out, temp, np.uint32((min_exponent + 127) << 23))
    return out.view(np.float32).reshape(x.shape)


@functools.lru_cache(maxsize=None)
def _rounding_constants(mantissa_bits, rounding):
    return RoundingConstants(mantissa_bits, rounding)


def _flush(out, temp, min_normal_bits):
    """Clear the magnitude bits of rounded patterns below ``min_normal_bits``, keeping the sign."""
    np.bitwise_and(out, MAGNITUDE_MASK, out=temp)
    flags = np.less(temp, min_normal_bits)
    np.multiply(temp, flags, out=temp)
    np.bitwise_xor(out, temp, out=out)
