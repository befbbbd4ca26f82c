"""Packing container members into unsigned codes and back (SPEC.md C17-C20).

A code is laid out sign'exponent'mantissa at the container's widths, in the low ``bits`` bits of
a uint8, uint16 or uint32. Both directions are lossless for every member; ``encode`` of a value
that is not a member raises, so callers quantize first.
"""

import logging

import numpy as np

from reference.quantize import (
    FP32_INF, FP32_QUIET_NAN, MAGNITUDE_MASK, SIGN_MASK, _check_container, input_bits,
)

logger = logging.getLogger(__name__)


def code_dtype(container):
    """Return the narrowest unsigned dtype that can store a code of ``container``."""
    if container.bits <= 8:
        return np.dtype(np.uint8)
    if container.bits <= 16:
        return np.dtype(np.uint16)
    return np.dtype(np.uint32)


def nan_code(container):
    """Return the positive NaN code that ``encode`` emits (the sign bit is added for negative NaNs).

    ieee: all-ones exponent with only the leading mantissa bit set (the quiet NaN); fn: the
    all-ones code without the sign bit.
    """
    e, m = container.exponent_bits, container.mantissa_bits
    if container.specials == "ieee" and m > 0:
        return ((2**e - 1) << m) | (1 << (m - 1))
    if container.specials == "fn":
        return 2 ** (e + m) - 1
    return None


def encode(x, container, *, anchor=None):
    """Return the codes of the members ``x`` of ``container``, with the window at ``anchor``.

    ``anchor`` is None (the bias) or an int; ``"max"`` is rejected because decode must get the
    same explicit anchor to stay a pure function. Any NaN encodes to ``nan_code`` with its sign.

    >>> import numpy as np
    >>> from reference.container import Container
    >>> [hex(c) for c in encode(np.float32([448.0, -0.0]), Container.from_name("e4m3fn"))]
    ['0x7e', '0x80']
    """
    container = _check_container(container)
    window = container.with_anchor(_check_anchor(anchor, "encode"))
    bits = input_bits(x, container)
    codes = _normal_member_codes(bits, window)
    if codes is not None:
        return codes.astype(code_dtype(container)).reshape(np.shape(x))
    codes = _codes_of_bits(bits, window)

    # Membership: a member is exactly what its code decodes to (NaNs by class).
    decoded = _decode_codes(codes, window, check=False)
    is_nan = (bits & MAGNITUDE_MASK) > FP32_INF
    mismatch = np.where(is_nan, (decoded & MAGNITUDE_MASK) <= FP32_INF, decoded != bits)
    if mismatch.any():
        index = int(np.flatnonzero(mismatch)[0])
        raise ValueError(
            f"encode: x must contain only members of container {window.name} (bias "
            f"{window.bias}); element {index} is 0x{int(bits[index]):08x} "
            f"({bits[index:index + 1].view(np.float32)[0]!r}); quantize x first"
        )
    return codes.astype(code_dtype(container)).reshape(np.shape(x))


def decode(codes, container, *, anchor=None):
    """Return the float32 values of ``codes`` of ``container``, with the window at ``anchor``.

    NaN codes decode to the FP32 quiet NaN 0x7fc00000 with the code's sign. Codes that
    ``encode`` never emits raise: bits above the code width, a nonzero mantissa under exponent
    code 0 without subnormals, and values below FP32's smallest subnormal.
    """
    container = _check_container(container)
    window = container.with_anchor(_check_anchor(anchor, "decode"))
    codes = np.asarray(codes)
    if codes.dtype.kind != "u":
        raise ValueError(f"decode: codes must have an unsigned integer dtype; got {codes.dtype}")
    flat = codes.reshape(-1).astype(np.uint64)
    too_wide = flat >> np.uint64(container.bits) != 0
    if too_wide.any():
        index = int(np.flatnonzero(too_wide)[0])
        raise ValueError(
            f"decode: codes must fit in {container.bits} bits; element {index} is "
            f"0x{int(flat[index]):x}"
        )
    return _decode_codes(flat, window, check=True).view(np.float32).reshape(codes.shape)


def _check_anchor(anchor, function):
    if isinstance(anchor, str):
        raise ValueError(
            f"{function}: anchor must be None or an explicit int, so that decode is a pure "
            f"function; got {anchor!r} (compute it with max_anchor(x, container) and store it)"
        )
    return anchor


def _normal_member_codes(bits, window):
    """Return the uint32 codes of ``bits`` in integer arithmetic, or None if the fast case fails.

    The fast case is a window with specials ``none`` and no subnormals (the training
    containers) and a tensor whose values are all zeros or FP32 normals inside the window's
    binades with no set bits below its mantissa. Every such value is a member, and its code is
    the FP32 exponent field rebiased and the top mantissa bits, so no decode is needed to check
    membership. Any other tensor, non-members included, returns None, and the general path
    computes the codes and raises.
    """
    if window.specials != "none" or window.subnormals or bits.size == 0:
        return None
    e, m = window.exponent_bits, window.mantissa_bits
    magnitude = np.bitwise_and(bits, MAGNITUDE_MASK)
    if m < 23 and np.bitwise_and(magnitude, np.uint32((1 << (23 - m)) - 1)).any():
        return None  # bits below the container's mantissa: not a member

    # Exponent code = FP32 exponent field - 127 + bias, in 1 .. 2^e - 1 for a member. The
    # FP32 field must also be a normal one (1 .. 254).
    low_field = max(1, 128 - window.bias)
    high_field = min(254, 127 - window.bias + 2**e - 1)
    if low_field > high_field:
        return None  # no FP32 normal lies in the window
    if int(magnitude.max()) >= (high_field + 1) << 23:
        return None
    # Subtracting 1 wraps zeros to the top, so the minimum is the smallest nonzero minus 1.
    if int((magnitude - np.uint32(1)).min()) < (low_field << 23) - 1:
        return None

    # (magnitude >> (23 - m)) is field·2^m + mantissa, and adding (bias - 127)·2^m rebiases
    # the field. The uint32 sum wraps for a negative offset, but the result of every nonzero
    # member is in range; zeros stay code 0.
    codes = np.right_shift(magnitude, np.uint32(23 - m))
    offset = np.uint32(((window.bias - 127) << m) % 2**32)
    codes += offset * (magnitude != 0).astype(np.uint32)
    codes |= np.right_shift(bits, np.uint32(31)) << np.uint32(e + m)
    return codes


def _codes_of_bits(bits, window):
    e, m = window.exponent_bits, window.mantissa_bits
    sign = (bits >> np.uint32(31)).astype(np.uint64) << np.uint64(e + m)
    magnitude = bits & MAGNITUDE_MASK
    is_nan = magnitude > FP32_INF
    is_inf = magnitude == FP32_INF
    finite = ~(is_nan | is_inf)

    value = np.where(finite, magnitude, np.uint32(0)).view(np.float32).astype(np.float64)
    mantissa_field, exponent = np.frexp(value)  # value = mantissa_field * 2^exponent, in [0.5, 1)
    normal = value >= window.min_normal
    exponent_code = np.where(normal, exponent - 1 + window.bias, 0)
    scale = np.where(normal, exponent - 1 - m, window.min_exponent - m)
    significand = np.ldexp(value, -scale)  # integer for members
    mantissa = np.where(normal, significand - 2.0**m, significand)
    # Non-members give out-of-range fields here; clipping keeps them codes, and the decode
    # comparison in encode rejects them.
    exponent_code = np.clip(exponent_code, 0, 2**e - 1).astype(np.uint64)
    mantissa = np.clip(np.floor(mantissa), 0, 2**m - 1).astype(np.uint64)
    codes = (exponent_code << np.uint64(m)) | mantissa

    if window.has_inf:
        codes = np.where(is_inf, np.uint64((2**e - 1) << m), codes)
    if window.has_nan:
        codes = np.where(is_nan, np.uint64(nan_code(window)), codes)
    return codes | sign


def _decode_codes(codes, window, check):
    """Return FP32 bit patterns (uint32) of uint64 ``codes``; invalid codes raise when ``check``."""
    e, m = window.exponent_bits, window.mantissa_bits
    sign = ((codes >> np.uint64(e + m)) & np.uint64(1)).astype(np.uint32) << np.uint32(31)
    exponent_code = ((codes >> np.uint64(m)) & np.uint64(2**e - 1)).astype(np.int64)
    mantissa = (codes & np.uint64(2**m - 1)).astype(np.int64)
    all_ones_exponent = exponent_code == 2**e - 1

    normal = exponent_code > 0
    significand = np.where(normal, mantissa + 2**m, mantissa).astype(np.float64)
    scale = np.where(normal, exponent_code - window.bias, window.min_exponent) - m
    value = np.ldexp(significand, scale)
    is_inf = np.zeros(codes.shape, bool)
    if window.specials == "ieee":
        is_inf = all_ones_exponent & (mantissa == 0)
        is_nan = all_ones_exponent & (mantissa != 0)
    elif window.specials == "fn":
        is_nan = all_ones_exponent & (mantissa == 2**m - 1)
    else:
        is_nan = np.zeros(codes.shape, bool)

    value = np.where(is_nan | is_inf, 0.0, value)
    invalid = np.zeros(codes.shape, bool)
    if not window.subnormals:
        invalid |= ~normal & (mantissa != 0)
    # Values below FP32's range exist in wide anchored windows; quantize never produces them.
    invalid |= value.astype(np.float32).astype(np.float64) != value
    if check and invalid.any():
        index = int(np.flatnonzero(invalid)[0])
        raise ValueError(
            f"decode: code 0x{int(codes[index]):x} at element {index} is not one that encode "
            f"emits for container {window.name} (bias {window.bias}): a subnormal code with "
            f"subnormals off, or a value below FP32's smallest subnormal"
        )
    value = np.where(invalid, 0.0, value)
    out = value.astype(np.float32).view(np.uint32)
    out = np.where(is_inf, FP32_INF, out)
    out = np.where(is_nan, FP32_QUIET_NAN, out)
    return out | sign
