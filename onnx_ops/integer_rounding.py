"""Rounding float32 magnitude bits to a container's grid with uint32 operators only.

This is the integer body of ``Narrow``'s function (see ``function_body``): the input's integer
significand ``S`` (value ``S * 2**s``) is rounded to the grid ``2**t`` by one integer decision
per mode, so nothing is rounded twice. Every node is a standard ONNX operator.
"""

from onnx import TensorProto

from onnx_ops.graph_builder import INT32, UINT32

# Fewer than 24 significand bits never survive a shift of 25 or more, and 30 keeps ``S << 1``
# plus half an ulp inside uint32.
MAX_SHIFT = 30


def has_fast_rounding(a):
    """Tell whether ``round_nearest_even_fast`` applies to the attribute set ``a``.

    It needs nearest-even rounding, subnormals, and a bias in -103..127, so that the smallest
    normal 2**e_min is a float32 normal and the constant 2**(e_min - m + 23) is finite.
    """
    return (
        a["rounding"] == "nearest_even" and a["subnormals"] and a["anchor_mode"] == "bias"
        and (a["bias"] is None or -103 <= a["bias"] <= 127)
    )


def fast_rounding_scalars(b, e_min, m):
    m_u = b.cast(m, UINT32)
    dropped = b.op("Sub", b.u32(23), m_u, hint="dropped")
    # Half an ulp minus one is (2**d - 1) >> 1, which is 0 for d = 0, where nothing is dropped
    # and the odd bit must not count either.
    ulp_minus_one = b.op("Sub", b.shift_left(b.u32(1), dropped), b.u32(1))
    return {
        "dropped": dropped,
        "half_minus_one": b.shift_right(ulp_minus_one, b.u32(1)),
        "odd_bit": b.cast(b.op("Greater", dropped, b.u32(0)), UINT32),
        "kept_mask": b.op("BitwiseNot", ulp_minus_one, hint="kept_mask"),
        "min_normal": b.shift_left(b.cast(b.op("Add", e_min, b.i32(127)), UINT32), b.u32(23)),
        "magic": b.op("BitCast", b.shift_left(
            b.cast(b.op("Add", b.op("Sub", e_min, m), b.i32(150)), UINT32), b.u32(23)
        ), to=TensorProto.FLOAT, hint="magic"),
    }


def round_nearest_even_fast(b, magnitude, scalars):
    """Round to nearest even with a fixed shift above the smallest normal, float below it.

    At or above 2**e_min every input is a float32 normal and the grid drops d = 23 - m bits of
    the magnitude bits, whose carry moves into the exponent field correctly. Below 2**e_min
    the grid is fixed at 2**(e_min - m): adding C = 2**(e_min - m + 23), whose ulp is that
    grid, rounds once to nearest even in IEEE arithmetic (ties go to an even multiple, since
    C's mantissa is 0), and subtracting C again is exact. This needs float32 subnormals, which
    ONNX Runtime keeps unless a session sets denormals to zero.
    """
    odd = b.op("BitwiseAnd", b.shift_right(magnitude, scalars["dropped"]), scalars["odd_bit"])
    biased = b.op("Add", b.op("Add", magnitude, scalars["half_minus_one"]), odd)
    normal = b.op("BitwiseAnd", biased, scalars["kept_mask"], hint="normal")

    value = b.op("BitCast", magnitude, to=TensorProto.FLOAT)
    shifted = b.op("Add", value, scalars["magic"])
    subnormal = b.op("BitCast", b.op("Sub", shifted, scalars["magic"]), to=UINT32)
    return b.where(b.op("Less", magnitude, scalars["min_normal"]), subnormal, normal)


def round_magnitude(b, a, magnitude, m, e_min, noise):
    """Round float32 magnitude bits to the container grid; finite inputs only.

    With ``S * 2**s`` the input (``S`` < 2**24) and ``2**t`` the grid spacing at the input,
    ``d = t - s`` bits are dropped and ``R`` is ``S / 2**d`` rounded. Inside one binade the
    magnitude bits are linear in the value, so ``base + (R << d)`` encodes ``R * 2**t``, a carry
    into the next binade included.
    """
    exponent_field = b.op("Max", b.shift_right(magnitude, b.u32(23)), b.u32(1))
    base = b.shift_left(b.op("Sub", exponent_field, b.u32(1)), b.u32(23))
    significand = b.op("Sub", magnitude, base, hint="significand")
    scale = b.op("Sub", b.cast(exponent_field, INT32), b.i32(150), hint="scale")

    exponent = _input_exponent(b, a, magnitude, significand, scale, e_min)
    grid = b.op("Max", exponent, e_min) if a["subnormals"] else exponent
    grid = b.op("Sub", grid, m, hint="grid")
    dropped = b.op("Sub", grid, scale, hint="dropped")
    shift = b.op("Min", b.op("Max", dropped, b.i32(0)), b.i32(MAX_SHIFT))
    shift = b.cast(shift, UINT32)

    kept = _ROUNDERS[a["rounding"]](b, significand, shift, dropped, noise)
    bits = b.op("Add", base, b.shift_left(kept, shift))
    if a["rounding"] == "stochastic":
        # Only stochastic rounding keeps a unit after dropping more bits than the binade holds;
        # the result is then the grid step itself.
        step = b.shift_left(b.cast(b.op("Add", grid, b.i32(127)), UINT32), b.u32(23))
        bits = b.where(b.op("Greater", dropped, b.i32(24)), step, bits)
    return b.where(b.op("Equal", kept, b.u32(0)), b.u32(0), bits)


def _input_exponent(b, a, magnitude, significand, scale, e_min):
    """Return the unbiased exponent of the input, exact for float32 subnormals when it matters.

    With subnormals kept and a smallest normal exponent of at least -126, every float32
    subnormal lies in the container's subnormal range, so -126 serves for all of them.
    """
    cheap = a["subnormals"] and a["anchor_mode"] == "bias" and (
        a["bias"] is None or a["bias"] <= 127
    )
    if cheap:
        return b.op("Add", scale, b.i32(23))
    # Casting S (< 2**24) to float32 is exact, and its exponent field gives S's bit length.
    length = b.shift_right(b.op("BitCast", b.cast(significand, TensorProto.FLOAT), to=UINT32),
                           b.u32(23))
    return b.op("Add", scale, b.op("Sub", b.cast(length, INT32), b.i32(127)), hint="exponent")


def round_nearest_even_bits(b, significand, shift, dropped, noise):
    # Work on 2*S and shift d + 1, so that half an ulp is an integer also for d = 0.
    doubled = b.shift_left(significand, b.u32(1))
    shift_plus_one = b.op("Add", shift, b.u32(1))
    half = b.shift_left(b.u32(1), shift)
    odd = b.op("BitwiseAnd", b.shift_right(doubled, shift_plus_one), b.u32(1), hint="odd")
    biased = b.op("Add", b.op("Add", doubled, b.op("Sub", half, b.u32(1))), odd)
    return b.shift_right(biased, shift_plus_one)


def _round_toward_zero(b, significand, shift, dropped, noise):
    return b.shift_right(significand, shift)


def _round_stochastic(b, significand, shift, dropped, noise):
    """Round up iff noise < D * 2**(32 - d), D the d dropped bits.

    For d > 32 only the 32 leading dropped bits count: the threshold is floor(D / 2**(d - 32)).
    """
    truncated = b.shift_right(significand, shift)
    dropped_bits = b.op("Sub", significand, b.shift_left(truncated, shift))
    # d <= 30: two shifts, because a shift by 32 is undefined for d = 0 (where D = 0).
    few = b.shift_left(b.shift_left(dropped_bits, b.op("Sub", b.u32(31), shift)), b.u32(1))
    # d >= 25 drops all of S (< 2**24), so D * 2**(32 - d) = (S << 7) >> (d - 25), which is 0
    # once the shift reaches 31.
    many_shift = b.op("Min", b.op("Max", b.op("Sub", dropped, b.i32(25)), b.i32(0)), b.i32(31))
    many = b.shift_right(b.shift_left(significand, b.u32(7)), b.cast(many_shift, UINT32))
    threshold = b.where(b.op("GreaterOrEqual", dropped, b.i32(25)), many, few)
    up = b.cast(b.op("Less", noise, threshold), UINT32)
    return b.op("Add", truncated, up)


_ROUNDERS = {
    "nearest_even": round_nearest_even_bits,
    "toward_zero": _round_toward_zero,
    "stochastic": _round_stochastic,
}


def true_exponent(b, magnitude):
    """Return the unbiased exponent of float32 magnitude bits, exact for subnormals."""
    exponent_field = b.op("Max", b.shift_right(magnitude, b.u32(23)), b.u32(1))
    base = b.shift_left(b.op("Sub", exponent_field, b.u32(1)), b.u32(23))
    significand = b.op("Sub", magnitude, base)
    scale = b.op("Sub", b.cast(exponent_field, INT32), b.i32(150))
    exact = {"subnormals": 0, "anchor_mode": "max", "bias": None}
    return _input_exponent(b, exact, magnitude, significand, scale, None)
