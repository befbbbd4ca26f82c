"""The lean path of quantize for small tensors in anchored containers without subnormals.

Training narrows tensors of a few thousand values many times per step, so the fixed cost of a
call (checks, window construction, the anchor search) weighs as much as the rounding. This path
serves the common case in one short sequence of whole-array operations: float32 input, base
``fp32``, specials ``none``, subnormals off, and a tensor of finite values, all FP32 normals or
zeros. It finds the max anchor from one magnitude pass, rounds with the constant-d integer step
of ``reference.quantize_blocked`` and derives the window from the anchor in a few integer
operations, without building a Container per call. Whenever one of its conditions fails (an
inf or NaN, an FP32 subnormal input with a window that reaches below 2^-126, a value that would
overflow) it returns None, and ``quantize`` takes the general path. With the max anchor and
nearest-even or toward-zero rounding, the compiled kernel ``reference.native._training`` does
the same in two passes over x where it is built.
Tests check both paths for equality on every BF16 pattern and on random FP32 tensors.
"""

import functools
import numbers

import numpy as np

from reference import native
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
    if anchor == "max" and noise is None:
        out = _kernel_narrow_max_anchor(x, container)
        if out is not None:
            return out
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


# Rounding codes of the compiled training kernel; stochastic rounding stays in numpy.
KERNEL_ROUNDINGS = {"nearest_even": 0, "toward_zero": 1}


def _kernel_narrow_max_anchor(x, container):
    """Return ``x`` narrowed at the max anchor by the compiled kernel, or None for numpy."""
    kernel = native.kernel("training")
    code = KERNEL_ROUNDINGS.get(container.rounding)
    if kernel is None or code is None:
        return None
    narrowed = kernel_narrow(kernel, x, container.exponent_bits, container.mantissa_bits, code)
    return None if narrowed is None else narrowed[0]


def kernel_narrow(kernel, x, exponent_bits, mantissa_bits, code):
    """Return ``(Q(x; e, m), magnitudes)`` from the compiled kernel, or None where it declines.

    The output has x's memory layout. A convolution that reads a stashed NHWC activation then
    gathers its windows from NHWC memory, as it would from the unnarrowed activation, and x
    needs no C-order copy. ``magnitudes`` is the kernel's (largest, smallest nonzero) |x|.
    """
    out = np.empty_like(x)
    source, target = _memory_order(x), _memory_order(out)
    if source is None or target is None:
        x = np.ascontiguousarray(x)
        out = np.empty_like(x)
        source, target = x, out
    magnitudes = kernel.narrow(source, target, exponent_bits, mantissa_bits, code)
    return None if magnitudes is None else (out, magnitudes)


def _memory_order(a):
    """Return a C-contiguous view of all of ``a``'s memory, or None if ``a`` has gaps or overlaps.

    Narrowing works element by element, so it may visit the elements in memory order.
    """
    if a.flags.c_contiguous:
        return a
    view = a.transpose(np.argsort(a.strides, kind="stable")[::-1])
    return view if view.flags.c_contiguous else None


@functools.lru_cache(maxsize=None)
def _rounding_constants(mantissa_bits, rounding):
    return RoundingConstants(mantissa_bits, rounding)


def _flush(out, temp, min_normal_bits):
    """Clear the magnitude bits of rounded patterns below ``min_normal_bits``, keeping the sign."""
    np.bitwise_and(out, MAGNITUDE_MASK, out=temp)
    flags = np.less(temp, min_normal_bits)
    np.multiply(temp, flags, out=temp)
    np.bitwise_xor(out, temp, out=out)


def narrow_max_anchor_widths(x, widths, rounding):
    """Return ``{(e, m): quantize(x, Container.training(e, m, rounding), anchor="max")}``, or None.

    ``widths`` lists integer (exponent_bits, mantissa_bits) pairs. One magnitude pass finds the
    max for all of them. The max anchor and the rounded patterns depend on the mantissa width
    alone, so pairs of equal mantissa width share one rounding pass and differ only in where
    they flush. Stochastic rounding needs noise per pair, so it is not served. The result is
    None whenever ``quantize_lean`` would fall back for some pair, and the caller then narrows
    each pair with ``quantize``.
    """
    if rounding == "stochastic" or x.dtype != np.float32 or not 0 < x.size <= MAX_ELEMENTS:
        return None
    bits = np.ascontiguousarray(x).reshape(-1).view(np.uint32)
    magnitudes = np.bitwise_and(bits, MAGNITUDE_MASK)
    largest = int(magnitudes.max())
    if largest >= FP32_INF or largest < FP32_MIN_NORMAL_BITS:
        return None
    smallest_nonzero = None
    scratch = np.empty_like(bits)
    rounded = {}
    result = {}
    for exponent_bits, mantissa_bits in widths:
        anchor = rounded_exponent(largest, mantissa_bits, rounding)
        if anchor > 127:
            return None  # the max rounds to 2^128 and overflows
        min_exponent = anchor - (2**exponent_bits - 2)
        flushes = min_exponent > -126
        if not flushes:
            if smallest_nonzero is None:
                # Subtracting 1 wraps zeros to the top, so the minimum finds the smallest nonzero.
                np.subtract(magnitudes, np.uint32(1), out=scratch)
                smallest_nonzero = int(scratch.min()) + 1
            if smallest_nonzero < FP32_MIN_NORMAL_BITS:
                return None  # an FP32 subnormal input needs the exact path
        if mantissa_bits not in rounded:
            out = np.empty_like(bits)
            round_normal_range(bits, None, out, scratch,
                               _rounding_constants(mantissa_bits, rounding))
            rounded[mantissa_bits] = (out, np.bitwise_and(out, MAGNITUDE_MASK))
        out, out_magnitudes = rounded[mantissa_bits]
        if flushes:
            # Below min_normal the window flushes to zero of the same sign, FP32 subnormals too.
            flags = np.less(out_magnitudes, np.uint32((min_exponent + 127) << 23))
            np.multiply(out_magnitudes, flags, out=scratch)
            value = np.bitwise_xor(out, scratch)
        else:
            value = out.copy()
        result[(exponent_bits, mantissa_bits)] = value.view(np.float32).reshape(x.shape)
    return result
