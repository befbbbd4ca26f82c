"""Nearest-even narrowing by one float32 addition, for the containers where it is exact.

Adding C = 2**(E + 23 - m), whose ulp is the container's grid step 2**(E - m), to a magnitude
x in [2**E, 2**(E+1)) rounds the sum once, to nearest even, in IEEE arithmetic: the sum stays in
C's binade, and C's mantissa is 0, so an even sum is an even grid point. Subtracting C again is
exact. Below the smallest normal 2**e_min the grid is fixed, so E is raised to e_min. Float
adds, multiplies and Abs are several times faster in ONNX Runtime 1.32 than the bitwise
operators and shifts of the general integer body.

The addition is exact when, checked at run time on the container's scalars:

- m <= 22, so that C >= 2x and the sum stays in C's binade;
- e_max <= 104 + m, so that C is finite for every input that does not overflow (a larger
  input gives C = inf and a NaN sum, which the overflow check maps like any overflow);
- e_min >= m - 125, so that C is normal and every float32 subnormal input lies below the
  smallest normal; it is flushed, or rounded on the fixed subnormal grid.

This needs float32 subnormal arithmetic, which ONNX Runtime keeps unless a session sets
denormals to zero.
"""

from onnx import TensorProto

from onnx_ops.graph_builder import UINT32

EXPONENT_MASK = 0x7F80_0000


def condition(b, m, e_min, e_max):
    """Return the 0-d bool "the float addition is exact" (conditions in the module doc)."""
    small_mantissa = b.op("LessOrEqual", m, b.i32(22))
    finite_magic = b.op("LessOrEqual", e_max, b.op("Add", m, b.i32(104)))
    normal_magic = b.op("GreaterOrEqual", e_min, b.op("Sub", m, b.i32(125)))
    return b.op("And", b.op("And", small_mantissa, finite_magic), normal_magic, hint="fast")


def short_condition(b, m, fast_condition):
    """Return the 0-d bool "the addition is exact with the power from a bfloat16 Cast"."""
    return b.op("And", fast_condition, b.op("LessOrEqual", m, b.i32(7)), hint="short")


def scalars(b, m, e_min):
    """Return the float32 scalars of the addition: 2**(23 - m) and 2**e_min (clamped)."""
    scale = b.shift_left(b.cast(b.op("Sub", b.i32(150), m), UINT32), b.u32(23))
    # Clamped so that the bits stay a number when the condition fails and the branch is unused.
    field = b.op("Max", b.op("Add", e_min, b.i32(127)), b.i32(1))
    smallest = b.shift_left(b.cast(field, UINT32), b.u32(23))
    return {
        "grid_scale": b.op("BitCast", scale, to=TensorProto.FLOAT, hint="grid_scale"),
        "min_normal": b.op("BitCast", smallest, to=TensorProto.FLOAT, hint="min_normal_value"),
    }


def round_nearest_even(b, subnormals, absolute, magnitude, values, power_by_cast=False):
    """Return the uint32 bits of the float32 magnitudes ``absolute`` rounded to the grid.

    ``magnitude`` is the uint32 view of ``absolute``. Without subnormals the result is on the
    unbounded grid; the caller flushes what falls below the smallest normal. With
    ``power_by_cast`` (m <= 7 only), see ``_power_by_cast``.
    """
    if power_by_cast:
        power = _power_by_cast(b, absolute)
    else:
        power = b.op("BitCast", b.op("BitwiseAnd", magnitude, b.u32(EXPONENT_MASK)),
                     to=TensorProto.FLOAT, hint="power")
    if subnormals:
        power = b.op("Max", power, values["min_normal"])
    magic = b.op("Mul", power, values["grid_scale"], hint="magic")
    rounded = b.op("Sub", b.op("Add", absolute, magic), magic, hint="rounded")
    return b.op("BitCast", rounded, to=UINT32)


def _power_by_cast(b, absolute):
    """Return ``absolute`` rounded to bfloat16, a stand-in for 2**E that needs no BitwiseAnd.

    For x in [2**E, 2**(E+1)) the rounded P is 2**E (1 + k/128) with k < 128, or 2**(E+1).
    C = P * 2**(23 - m) has at most 8 significant bits, so its last significand bit is 0 and
    ties still go to even. Below 2**(E+1), C lies in the binade of 2**(E + 23 - m), whose ulp
    is the grid step, and x + C stays in it because x < 2**(E+1) <= 2**(E + 16 - m) for
    m <= 15. P = 2**(E+1) doubles the step, but then x lies within 2**(E-8) of 2**(E+1),
    which is less than half the step for m <= 7, so both steps round x to 2**(E+1).
    Float32 subnormals lie below the smallest normal and meet the Max or the flush instead.
    A BitwiseAnd costs about 9 ms per 16 Mi values in ONNX Runtime 1.32, two Casts about 2 ms.
    """
    narrow = b.cast(absolute, TensorProto.BFLOAT16)
    return b.op("Cast", narrow, to=TensorProto.FLOAT, hint="power")
