"""The fast path of quantize: integer rounding on FP32 bit patterns in cache-sized blocks.

Within a container's normal range every FP32 normal input drops the same d = 23 - m bits, so
rounding is a few whole-block integer operations on the bit patterns. A carry out of the
mantissa moves into the exponent field as it should and stops below the sign bit. Elements outside that range are rare in
real tensors and go to exact per-element paths: the container-subnormal range to a 32-bit
integer routine, and inf, NaN, overflow and FP32 subnormals below a wide window to the general
path, ``reference.quantize.quantize_bits``. Both paths are tested for equality on every BF16 pattern.
When the compiled kernel ``reference.native._quantize`` is built and enabled (``SFP_NATIVE``),
it serves ``quantize_bits_blocked`` with the same bits, and this numpy code is the fallback.
"""

import functools

import numpy as np

from reference import native
from reference.quantize import FP32_MIN_NORMAL_BITS, MAGNITUDE_MASK, SIGN_MASK, quantize_bits

BLOCK_ELEMENTS = 1 << 18  # 1 MiB of uint32 per buffer: fewer numpy calls, buffers stay in L3 cache


def quantize_bits_blocked(bits, window, noise, out=None):
    """Return the FP32 bit patterns of flat uint32 ``bits`` narrowed to the anchored ``window``.

    When ``out`` is given, the patterns are written there and ``out`` is returned. It must be a
    flat contiguous uint32 array of ``bits``'s size that does not overlap ``bits``.
    """
    result = quantize_native(bits, window, noise, out)
    if result is not None:
        return result
    plan = _Plan(window)
    if out is None:
        out = np.empty_like(bits)
    scratch = _Scratch(min(bits.size, BLOCK_ELEMENTS))
    for start in range(0, bits.size, BLOCK_ELEMENTS):
        stop = min(start + BLOCK_ELEMENTS, bits.size)
        block_noise = None if noise is None else noise[start:stop]
        _quantize_block(bits[start:stop], block_noise, out[start:stop], plan, scratch)
    return out


def quantize_native(bits, window, noise, out=None):
    """Return the compiled kernel's result, or None to take the numpy path.

    ``bits`` holds flat FP32 patterns (uint32) or, for a base-bf16 window, BF16 codes (uint16);
    the result has its dtype, and goes into ``out`` when given (flat, contiguous, that dtype).
    The kernel returns 1 for an element that the window cannot hold, and the numpy path then
    raises the error.
    """
    kernel = native.kernel("quantize")
    if kernel is None:
        return None
    dtype = np.uint16 if bits.dtype == np.uint16 else np.uint32
    bits = np.ascontiguousarray(bits, dtype)
    if out is None:
        out = np.empty(bits.shape, dtype)
    noise = None if noise is None else np.ascontiguousarray(noise, np.uint32)
    if kernel.quantize(bits, noise, out, native_plan(window)):
        return None
    return out


# Rounding codes of the compiled kernel's fast loop and general routine.
_FAST_ROUNDING = {"toward_zero": 0, "nearest_even": 1, "stochastic": 3}
_GENERAL_ROUNDING = {"nearest_even": 0, "toward_zero": 1, "stochastic": 2}


@functools.lru_cache(maxsize=256)
def native_plan(window):
    """Return the constants of ``window`` as the tuple that ``reference.native._quantize`` takes."""
    plan = _Plan(window)
    fast_rounding = _FAST_ROUNDING[window.rounding]
    if plan.dropped == 0:
        fast_rounding = 0  # nothing is dropped, so every mode keeps the pattern
    elif window.rounding == "nearest_even" and window.mantissa_bits == 0:
        fast_rounding = 2  # ties go up: see round_normal_range
    flushes = not window.subnormals and plan.min_normal_bits > 0
    return (
        fast_rounding, plan.dropped, int(plan.keep_mask), int(plan.half_minus_one),
        int(plan.low_mask), int(plan.exact_from), int(plan.max_bits),
        int(plan.min_normal_bits) if flushes else 0,
        _GENERAL_ROUNDING[window.rounding], window.mantissa_bits, int(window.subnormals),
        window.min_exponent, window.min_normal, window.max_value, window.saturate,
        window.has_inf, window.has_nan, int(plan.max_bits),
    )


class RoundingConstants:
    """Constants of the constant-d integer rounding to ``mantissa_bits``, as uint32."""

    def __init__(self, mantissa_bits, rounding):
        self.mantissa_bits = mantissa_bits
        self.rounding = rounding
        self.dropped = 23 - mantissa_bits
        self.keep_mask = np.uint32((0xFFFF_FFFF << self.dropped) & 0xFFFF_FFFF)
        self.half_minus_one = np.uint32((1 << self.dropped - 1) - 1 if self.dropped else 0)
        self.low_mask = np.uint32((1 << self.dropped) - 1)


class _Plan(RoundingConstants):
    """Constants of one container window, as uint32 bit patterns."""

    def __init__(self, window):
        super().__init__(window.mantissa_bits, window.rounding)
        self.window = window
        # Inputs are base values, so none lies between saturation_value and max_value, and
        # magnitudes above these bits are exactly the out-of-range ones.
        self.max_bits = np.uint32(np.float32(window.saturation_value).view(np.uint32))
        # FP32 magnitude bits of min_normal; 0 when min_normal is below FP32's smallest value.
        if window.min_exponent >= -149:
            self.min_normal_bits = np.uint32(np.float32(window.min_normal).view(np.uint32))
        else:
            self.min_normal_bits = np.uint32(0)
        # The constant-d rounding is exact for FP32 normal inputs at or above min_normal (or
        # anywhere without subnormals); below this bound, elements take a per-element path.
        if window.subnormals:
            self.exact_from = np.uint32(max(int(self.min_normal_bits), FP32_MIN_NORMAL_BITS))
        elif window.min_exponent <= -126:
            # FP32 subnormal inputs can round up to a member; above -126 they all flush.
            self.exact_from = np.uint32(FP32_MIN_NORMAL_BITS)
        else:
            self.exact_from = np.uint32(1)
        self.subnormal_routine = (
            window.subnormals and window.min_exponent >= -126 and window.rounding != "stochastic"
        )


class _Scratch:
    def __init__(self, size):
        self.temp = np.empty(size, np.uint32)
        self.flags = np.empty(size, bool)


def largest_magnitude(bits):
    """Return the largest magnitude bits of a nonempty uint32 block, by two reductions.

    As uint32, positive patterns sort before negative ones; as int32, negative patterns sort
    before positive ones. So the two maxima bound the magnitudes of both signs.
    """
    signed_max = int(bits.view(np.int32).max())
    unsigned_max = int(bits.max())
    negative_max = unsigned_max - 2**31 if unsigned_max >= 2**31 else 0
    return max(signed_max, negative_max)


def smallest_magnitude(bits):
    """Return the smallest magnitude bits of a nonempty uint32 block, by two reductions."""
    unsigned_min = int(bits.min())
    signed_min = int(bits.view(np.int32).min())
    positive_min = unsigned_min if unsigned_min < 2**31 else 2**31
    negative_min = signed_min + 2**31 if signed_min < 0 else 2**31
    return min(positive_min, negative_min)


def _quantize_block(bits, noise, out, plan, scratch):
    size = bits.size
    temp = scratch.temp[:size]
    # Rounding the whole pattern keeps the sign: for finite inputs the carry stops below bit 31.
    round_normal_range(bits, noise, out, temp, plan)

    if plan.exact_from > 1:
        smallest = smallest_magnitude(bits)
        if smallest < plan.exact_from:
            # Zeros round exactly on any path; leaving them out keeps the index short.
            low = 1 if smallest == 0 else 0
            _fix_low_range(bits, noise, out, temp, scratch.flags[:size], low, plan)
    if not plan.window.subnormals and plan.min_normal_bits > 0:
        _flush_below_min_normal(out, temp, scratch.flags[:size], plan)
    if largest_magnitude(bits) > plan.max_bits:
        _fix_high_range(bits, noise, out, temp, scratch.flags[:size], plan)


def _flush_below_min_normal(out, temp, flags, plan):
    """Clear the magnitude bits of rounded patterns below min_normal, keeping their sign."""
    np.bitwise_and(out, MAGNITUDE_MASK, out=temp)
    np.less(temp, plan.min_normal_bits, out=flags)
    np.multiply(temp, flags, out=temp)
    np.bitwise_xor(out, temp, out=out)


def round_normal_range(bits, noise, out, temp, plan):
    """Round every pattern with d = 23 - m dropped bits into ``out`` (``plan``: RoundingConstants)."""
    if plan.dropped == 0:
        np.copyto(out, bits)
        return
    rounding = plan.rounding
    if rounding == "nearest_even" and plan.mantissa_bits == 0:
        # The significand of every binade's grid point is 1 or 2, so ties go up. The low
        # exponent bit is no parity here: 2^E has an odd significand whatever E is.
        np.add(bits, plan.half_minus_one + np.uint32(1), out=out)
    elif rounding == "nearest_even":
        np.right_shift(bits, np.uint32(plan.dropped), out=temp)
        np.bitwise_and(temp, np.uint32(1), out=temp)
        np.add(temp, plan.half_minus_one, out=temp)
        np.add(bits, temp, out=out)
    elif rounding == "stochastic":
        # Up iff R < D * 2^(32 - d), which is iff (R >> (32 - d)) < D, which is iff
        # D + (2^d - 1 - (R >> (32 - d))) carries out of the d dropped bits.
        np.right_shift(noise, np.uint32(32 - plan.dropped), out=temp)
        np.subtract(plan.low_mask, temp, out=temp)
        np.add(bits, temp, out=out)
    else:
        np.copyto(out, bits)  # toward zero: truncate
    np.bitwise_and(out, plan.keep_mask, out=out)


def _magnitude_index(bits, temp, flags, low, high):
    """Return the indices of patterns whose magnitude m satisfies low <= m < high."""
    np.left_shift(bits, np.uint32(1), out=temp)  # the magnitude, doubled, without the sign
    if low > 0:
        np.subtract(temp, np.uint32(2 * low), out=temp)  # wraps below low
    np.less(temp, np.uint32(2 * (high - low)), out=flags)
    return np.flatnonzero(flags)


def _fix_low_range(bits, noise, out, temp, flags, low, plan):
    """Recompute magnitudes from ``low`` up to ``plan.exact_from`` exactly."""
    index = _magnitude_index(bits, temp, flags, low, int(plan.exact_from))
    sign = bits[index] & SIGN_MASK
    if plan.subnormal_routine:
        out[index] = _round_to_subnormal_grid(bits[index] & MAGNITUDE_MASK, plan.window) | sign
    else:
        out[index] = _general_patterns(bits, index, plan, noise)


def _fix_high_range(bits, noise, out, temp, flags, plan):
    """Apply the overflow, inf and NaN rules to magnitudes above max through the general path."""
    index = _magnitude_index(bits, temp, flags, int(plan.max_bits) + 1, 2**31)
    out[index] = _general_patterns(bits, index, plan, noise)


def _general_patterns(bits, index, plan, noise):
    # A ValueError from here names an index into the subset; quantize reruns the general path
    # on the whole tensor to report the element's own index.
    subset_noise = None if noise is None else noise[index]
    return quantize_bits(bits[index], plan.window, subset_noise)


def _round_to_subnormal_grid(magnitude, window):
    """Round magnitudes below min_normal (min_normal >= 2^-126) to the subnormal grid.

    The grid step 2^(min_exponent - m) is at least 2^-149, so every result is an FP32 value and
    scaling the integer result by that power of two is exact.
    """
    m = window.mantissa_bits
    field = (magnitude >> np.uint32(23)).astype(np.int32)
    significand = (magnitude & np.uint32(0x7F_FFFF)) | (field > 0).astype(np.uint32) << np.uint32(23)
    # Dropped bits: from the input's lsb 2^(max(field, 1) - 150) up to the grid step.
    dropped = (window.min_exponent - m + 150) - np.maximum(field, 1)
    # 0 <= dropped; 31 or more dropped bits leave 0 with the rest below half.
    dropped = np.minimum(dropped, 31).astype(np.uint32)
    kept = significand >> dropped
    rest = significand & ((np.uint32(1) << dropped) - np.uint32(1))
    if window.rounding == "nearest_even":
        # With no dropped bit, rest is 0 and half is 1, so nothing rounds up.
        half = np.uint32(1) << (np.maximum(dropped, np.uint32(1)) - np.uint32(1))
        kept = kept + ((rest > half) | ((rest == half) & (kept & np.uint32(1) == 1)))
    step = np.float32(2.0 ** (window.min_exponent - m))
    return (kept.astype(np.float32) * step).view(np.uint32)
