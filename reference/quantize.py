"""Narrowing FP32 or BF16 tensors to a container in one rounding step (SPEC.md C7-C16).

The rounding works on bit fields only: the exponent comes from the input's exponent field and
the significand is rounded as an integer, so no value is rounded twice and no float ``log2`` or
``floor(x + 0.5)`` takes part. ``quantize`` runs the lean path of ``reference.quantize_lean``
for small anchored tensors without subnormals, else the blocked fast path of
``reference.quantize_blocked``, which the compiled kernel ``reference.native._quantize`` serves
when it is built (for bfloat16 arrays, on their 16-bit codes). ``quantize_bits`` here is the general path that the fast paths
fall back on for rare elements and are tested against. It widens each finite value exactly to
float64 bits, whose 53-bit significand represents every FP32 and BF16 value (subnormals included) as
a normal number.
"""

import logging

import numpy as np

from reference import native
from reference.container import Container, anchor_range

logger = logging.getLogger(__name__)

SIGN_MASK = np.uint32(0x8000_0000)
MAGNITUDE_MASK = np.uint32(0x7FFF_FFFF)
FP32_INF = np.uint32(0x7F80_0000)
FP32_QUIET_NAN = np.uint32(0x7FC0_0000)
FP32_MIN_NORMAL_BITS = 0x0080_0000
FP64_FRACTION_MASK = np.uint64((1 << 52) - 1)
FP64_IMPLICIT_BIT = np.uint64(1 << 52)
FP64_BIAS = 1023


def quantize(x, container, *, anchor=None, noise=None, out=None):
    """Round ``x`` to the nearest member of ``container`` (in its rounding mode).

    ``x`` is float32, or for base ``bf16`` float32 holding BF16 values or an ml_dtypes bfloat16
    array. The output has ``x``'s dtype and shape; ``x`` is not modified. ``anchor=None`` uses
    the container's bias, an int places the window so that its largest normal exponent is
    ``anchor``, and ``"max"`` uses ``max_anchor(x, container)``. ``noise`` is a uint32 array of
    ``x``'s shape, required by stochastic rounding and rejected otherwise. The result goes to a
    new array, or into ``out`` when given: a writable C-contiguous array of ``x``'s dtype and
    shape that does not overlap ``x``, which is returned. Reusing ``out`` saves allocating
    fresh memory pages on every call. When the call raises, the contents of ``out`` are
    unspecified.

    >>> import numpy as np
    >>> quantize(np.float32([464.0, 1.0625, -0.0]), Container.from_name("e4m3fn")).tolist()
    [448.0, 1.0, -0.0]
    """
    container = _check_container(container)
    if isinstance(anchor, str) and anchor != "max":
        raise ValueError(f"anchor must be None, an int or 'max'; got {anchor!r}")
    if out is not None:
        _check_out(out, x)
    # Imported here because both paths build on this module's general path.
    from reference import quantize_lean
    from reference.quantize_blocked import quantize_bits_blocked

    if anchor is not None and isinstance(x, np.ndarray) and quantize_lean.serves(x, container):
        _check_noise(noise, x.shape, container)
        result = quantize_lean.quantize_lean(x, container, anchor, noise)
        if result is not None:
            return _deliver(result, out)
    result = _quantize_bfloat16_native(x, container, anchor, noise)
    if result is not None:
        return _deliver(result, out)
    bits = input_bits(x, container)
    _check_noise(noise, np.shape(x), container)
    if anchor == "max":
        anchor = _max_anchor_of_bits(bits, container)
    window = container.with_anchor(anchor)
    flat_noise = None if noise is None else noise.reshape(-1)
    # A float32 out receives the patterns directly; bfloat16 patterns are converted first.
    out_bits = None
    if out is not None and out.dtype == np.float32:
        out_bits = out.reshape(-1).view(np.uint32)
    try:
        result = quantize_bits_blocked(bits, window, flat_noise, out=out_bits)
    except ValueError:
        quantize_bits(bits, window, flat_noise)  # raises with the element's index in x
        raise
    return _deliver(output_array(result, x), out)


def _check_out(out, x):
    if not isinstance(out, np.ndarray):
        raise TypeError(f"out must be a numpy array or None; got {type(out).__name__}")
    if not isinstance(x, np.ndarray):
        return  # input_bits raises the error for x
    if out.dtype != x.dtype or out.shape != x.shape:
        raise ValueError(
            f"out must have x's dtype and shape {x.dtype} {x.shape}; got {out.dtype} {out.shape}"
        )
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise ValueError("out must be a writable C-contiguous array; got one that is not "
                         "(pass np.empty_like(x))")
    if np.may_share_memory(out, x):
        raise ValueError("out must not overlap x; pass a separate array (np.empty_like(x))")


def _deliver(result, out):
    """Return ``result``, copied into ``out`` unless ``out`` is None or already contains it."""
    if out is None:
        return result
    if not np.may_share_memory(result, out):
        np.copyto(out, result)
    return out


def max_anchor(x, container):
    """Return the anchor that ``quantize(..., anchor="max")`` uses for ``x``.

    It is the exponent of the largest finite magnitude after rounding to ``mantissa_bits`` in the
    container's mode, where stochastic rounding counts as rounding up so that no noise can make
    a value overflow. Example: 1.1111b * 2^3 at m = 1 rounds to 2^4, so the anchor is 4. A tensor
    with no finite nonzero value gets the container's own ``max_exponent`` (clamped to the anchor
    range), and the anchor is clamped to 127, so a value that rounds to 2^128 overflows.
    """
    container = _check_container(container)
    return _max_anchor_of_bits(input_bits(x, container), container)


def _quantize_bfloat16_native(x, container, anchor, noise):
    """Narrow an ml_dtypes bfloat16 array on its 16-bit codes with the compiled kernel.

    Returns None to take the FP32 flow of ``quantize``: without the kernel, for other dtypes,
    and when an element is out of range, so that the FP32 flow raises the error.
    """
    from reference.quantize_blocked import quantize_native

    kernel = native.kernel("quantize")
    if kernel is None or not isinstance(x, np.ndarray) or x.dtype.name != "bfloat16":
        return None
    if container.base != "bf16":
        return None  # input_bits raises the error
    _check_noise(noise, x.shape, container)
    codes = np.ascontiguousarray(x).reshape(-1).view(np.uint16)
    if anchor == "max":
        anchor = _max_anchor_of_largest(kernel.largest_finite_magnitude(codes), container)
    flat_noise = None if noise is None else noise.reshape(-1)
    out = quantize_native(codes, container.with_anchor(anchor), flat_noise)
    return None if out is None else out.view(x.dtype).reshape(x.shape)


# Input and output conversion.


def input_bits(x, container):
    """Return the FP32 bit patterns (flat uint32) of ``x``, after checking its dtype for ``container``."""
    if not isinstance(x, np.ndarray):
        raise TypeError(f"x must be a numpy array; got {type(x).__name__}")
    if x.dtype.name == "bfloat16":
        if container.base != "bf16":
            raise ValueError(
                "x dtype bfloat16 needs a container with base='bf16'; got base "
                f"{container.base!r} (cast x to float32 to narrow it as FP32)"
            )
        return x.reshape(-1).view(np.uint16).astype(np.uint32) << np.uint32(16)
    if x.dtype != np.float32:
        raise ValueError(f"x dtype must be float32 (or bfloat16 with base 'bf16'); got {x.dtype}")
    bits = np.ascontiguousarray(x).reshape(-1).view(np.uint32)
    if container.base == "bf16":
        _check_bf16_values(bits)
    return bits


def _check_bf16_values(bits):
    kernel = native.kernel("quantize")
    if kernel is not None and kernel.first_non_bf16(bits) < 0:
        return
    is_nan = (bits & MAGNITUDE_MASK) > FP32_INF
    not_bf16 = ((bits & np.uint32(0xFFFF)) != 0) & ~is_nan
    if not_bf16.any():
        index = int(np.flatnonzero(not_bf16)[0])
        raise ValueError(
            "x must hold BF16 values (low 16 bits zero) with base 'bf16'; element "
            f"{index} is 0x{int(bits[index]):08x} (round it to BF16 first, or use base 'fp32')"
        )


def output_array(bits, like):
    """Return FP32 bit patterns ``bits`` as an array of ``like``'s dtype and shape."""
    if like.dtype.name == "bfloat16":
        return (bits >> np.uint32(16)).astype(np.uint16).view(like.dtype).reshape(like.shape)
    return bits.view(np.float32).reshape(like.shape)


def _check_container(container):
    if not isinstance(container, Container):
        raise TypeError(f"container must be a reference.Container; got {type(container).__name__}")
    return container


def _check_noise(noise, shape, container):
    if container.rounding != "stochastic":
        if noise is not None:
            raise ValueError(
                f"noise is only used by stochastic rounding; got noise with rounding "
                f"{container.rounding!r} (pass noise=None)"
            )
        return
    if noise is None:
        raise ValueError(
            "noise is missing: stochastic rounding needs a uint32 array of x's shape "
            "(for example np.random.default_rng(seed).integers(0, 2**32, x.shape, np.uint32))"
        )
    if not isinstance(noise, np.ndarray) or noise.dtype != np.uint32:
        raise ValueError(
            f"noise must be a uint32 numpy array; got {getattr(noise, 'dtype', type(noise).__name__)}"
        )
    if noise.shape != tuple(shape):
        raise ValueError(f"noise shape must equal x shape {tuple(shape)}; got {noise.shape}")


# Rounding on FP32 bit patterns.


def _widen(magnitude_bits):
    """Return (E, significand) with value = significand * 2^(E - 52), significand in [2^52, 2^53)."""
    wide = magnitude_bits.view(np.float32).astype(np.float64).view(np.uint64)
    exponent = (wide >> np.uint64(52)).astype(np.int64) - FP64_BIAS
    significand = (wide & FP64_FRACTION_MASK) | FP64_IMPLICIT_BIT
    return exponent, significand


def round_significand(significand, dropped, rounding, noise):
    """Drop the ``dropped`` low bits of the integer ``significand`` (uint64) in mode ``rounding``.

    ``dropped`` is at least 1. Nearest-even rounds up when the dropped part D exceeds half an
    ulp, or equals it and the kept part is odd. Stochastic rounds up iff noise < D * 2^(32 - d);
    when d > 32 only the 32 leading dropped bits count, so the threshold is floor(D / 2^(d-32)).
    """
    # Significands are below 2^53, so dropping 54 or more bits leaves zero with D below half.
    clamped = np.minimum(dropped, 54).astype(np.uint64)
    kept = significand >> clamped
    rest = significand & ((np.uint64(1) << clamped) - np.uint64(1))
    if rounding == "toward_zero":
        return kept
    if rounding == "nearest_even":
        half = np.uint64(1) << (clamped - np.uint64(1))
        odd = (kept & np.uint64(1)).astype(bool)
        up = (rest > half) | ((rest == half) & odd)
        return kept + up
    threshold = np.where(
        dropped > 32,
        rest >> np.minimum(np.maximum(dropped - 32, 0), 63).astype(np.uint64),
        rest << np.maximum(32 - dropped, 0).astype(np.uint64),
    )
    return kept + (noise.astype(np.uint64) < threshold)


def quantize_bits(bits, container, noise):
    """Return the FP32 bit patterns of ``bits`` (flat uint32) narrowed to ``container`` (anchored)."""
    sign = bits & SIGN_MASK
    magnitude = bits & MAGNITUDE_MASK
    is_nan = magnitude > FP32_INF
    is_inf = magnitude == FP32_INF
    is_zero = magnitude == 0
    finite = ~(is_nan | is_inf | is_zero)

    # Rounding on the grid of the input's binade, or on the subnormal grid below min_normal.
    exponent, significand = _widen(np.where(finite, magnitude, np.uint32(0x3F80_0000)))
    m = container.mantissa_bits
    if container.subnormals:
        lsb_exponent = np.maximum(exponent, container.min_exponent) - m
    else:
        lsb_exponent = exponent - m
    dropped = lsb_exponent - (exponent - 52)
    kept = round_significand(significand, dropped, container.rounding, noise)
    value = np.ldexp(kept.astype(np.float64), lsb_exponent)

    # Underflow without subnormals flushes after rounding; overflow is judged after rounding.
    if not container.subnormals:
        value[value < container.min_normal] = 0.0
    overflow = finite & (value > container.max_value)
    # Zeroing overflowed values first keeps the float32 cast exact and free of warnings.
    value[overflow] = 0.0
    out = value.astype(np.float32).view(np.uint32)

    out = _apply_out_of_range(out, overflow | is_inf, container, bits, "overflows")
    out = np.where(is_zero, np.uint32(0), out)
    if is_nan.any():
        if not container.has_nan:
            _raise_first(
                is_nan, bits,
                f"x contains NaN but container {container.name} has no NaN code; remove NaNs "
                f"first or use specials 'ieee'/'fn'",
            )
        out = np.where(is_nan, FP32_QUIET_NAN, out)
    return out | sign


def _apply_out_of_range(out, out_of_range, container, bits, what):
    if not out_of_range.any():
        return out
    if container.saturate:
        replacement = np.float32(container.saturation_value).view(np.uint32)
    elif container.has_inf:
        replacement = FP32_INF
    elif container.has_nan:
        replacement = FP32_QUIET_NAN
    else:
        _raise_first(
            out_of_range, bits,
            f"x {what} container {container.name} (max {container.max_value!r}), which has no "
            f"inf or NaN; use saturate=True or a wider window",
        )
    return np.where(out_of_range, replacement, out)


def _raise_first(mask, bits, message):
    index = int(np.flatnonzero(mask)[0])
    raise ValueError(f"{message}; first at element {index}: 0x{int(bits[index]):08x}")


def _largest_finite_magnitude(bits):
    """Return the largest finite magnitude bits of flat uint32 ``bits`` (0 if there is none)."""
    from reference.quantize_blocked import BLOCK_ELEMENTS, largest_magnitude

    kernel = native.kernel("quantize")
    if kernel is not None:
        return kernel.largest_finite_magnitude(np.ascontiguousarray(bits, np.uint32))
    # FP32 magnitudes order like their bit patterns, so the largest pattern is the largest value.
    largest = 0
    for start in range(0, bits.size, BLOCK_ELEMENTS):
        block = bits[start:start + BLOCK_ELEMENTS]
        block_largest = largest_magnitude(block)
        if block_largest >= FP32_INF:
            magnitude = block & MAGNITUDE_MASK
            finite = magnitude[magnitude < FP32_INF]
            block_largest = int(finite.max()) if finite.size else 0
        largest = max(largest, block_largest)
    return largest


def rounded_exponent(magnitude_bits, mantissa_bits, rounding):
    """Return the exponent of the FP32 normal ``magnitude_bits`` rounded to ``mantissa_bits``.

    Stochastic rounding counts as rounding up whenever a dropped bit is set (C6). The result
    is 128 when the value rounds to 2^128. The integer step is the one of the blocked path: a
    carry out of the mantissa moves into the exponent field.
    """
    dropped = 23 - mantissa_bits
    low_mask = (1 << dropped) - 1
    if dropped == 0 or rounding == "toward_zero":
        rounded = magnitude_bits
    elif rounding == "stochastic":
        rounded = magnitude_bits + low_mask
    elif mantissa_bits == 0:
        rounded = magnitude_bits + (1 << (dropped - 1))  # ties go to significand 2, up
    else:
        odd = (magnitude_bits >> dropped) & 1
        rounded = magnitude_bits + (1 << (dropped - 1)) - 1 + odd
    return ((rounded & ~low_mask) >> 23) - 127


def _max_anchor_of_bits(bits, container):
    return _max_anchor_of_largest(_largest_finite_magnitude(bits), container)


def _max_anchor_of_largest(largest, container):
    if largest == 0:
        low, high = anchor_range(container.base)
        return min(max(container.max_exponent, low), high)
    if largest >= FP32_MIN_NORMAL_BITS:
        return min(rounded_exponent(largest, container.mantissa_bits, container.rounding), 127)
    # An FP32 subnormal: the float64 widening finds its binade from the leading 1.
    exponent, significand = _widen(np.array([largest], np.uint32))
    dropped = np.array([52 - container.mantissa_bits])
    if container.rounding == "stochastic":
        # The largest value noise can reach: up whenever any dropped bit is set.
        truncated = round_significand(significand, dropped, "toward_zero", None)
        kept = truncated + (truncated << dropped.astype(np.uint64) != significand)
    else:
        kept = round_significand(significand, dropped, container.rounding, None)
    carried = int(kept[0]) >> (container.mantissa_bits + 1)
    return min(int(exponent[0]) + carried, 127)
