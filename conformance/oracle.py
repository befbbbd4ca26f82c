"""Exact rational oracle for SPEC.md section C, written from the rules and independent of reference/.

Every value is a ``fractions.Fraction``. The oracle decodes FP32 bit patterns to exact
rationals and builds the container's grid from its parameters (C2, C5). It picks a grid point
by the rounding rule (C7-C10), applies the underflow, overflow and NaN rules (C12-C14), and
encodes the result back to FP32 bits. It reads only the parameter fields of a Container, never
its derived properties, and it works on one scalar at a time, for clarity over speed.
"""

from dataclasses import dataclass
from fractions import Fraction

ERROR = "error"  # the rules require ValueError for this input
FP32_QUIET_NAN = 0x7FC0_0000
FP32_INF = 0x7F80_0000
TWO = Fraction(2)


@dataclass(frozen=True)
class Grid:
    """The value set of a container, with its window placed (C2, C5)."""

    exponent_bits: int
    mantissa_bits: int
    bias: int
    specials: str
    subnormals: bool
    saturate: bool
    rounding: str
    # Smallest subnormal of the base format: 2^-149 for fp32, 2^-133 for bf16 (C13).
    base_step: Fraction = TWO**-149

    @property
    def top_code(self):
        all_ones = 2**self.exponent_bits - 1
        if self.specials == "ieee" or (self.specials == "fn" and self.mantissa_bits == 0):
            return all_ones - 1
        return all_ones

    @property
    def emin(self):
        return 1 - self.bias

    @property
    def emax(self):
        return self.top_code - self.bias

    @property
    def max_value(self):
        m = self.mantissa_bits
        significand = 2 ** (m + 1) - 1
        if self.specials == "fn" and m > 0:
            significand -= 1
        return significand * TWO ** (self.emax - m)

    @property
    def has_inf(self):
        return self.specials == "ieee"

    @property
    def has_nan(self):
        return self.specials == "fn" or (self.specials == "ieee" and self.mantissa_bits > 0)


def grid_of(container, anchor=None):
    """Return the Grid of ``container`` with the window at ``anchor`` (None keeps the bias)."""
    base_step = TWO**-149 if container.base == "fp32" else TWO**-133
    grid = Grid(
        container.exponent_bits, container.mantissa_bits, container.bias, container.specials,
        container.subnormals, container.saturate, container.rounding, base_step,
    )
    if anchor is None:
        return grid
    return Grid(
        grid.exponent_bits, grid.mantissa_bits, grid.top_code - anchor, grid.specials,
        grid.subnormals, grid.saturate, grid.rounding, base_step,
    )


# FP32 bit patterns and exact values.


def fp32_decode(bits):
    """Return ("nan", sign), ("inf", sign) or (Fraction magnitude, sign) of FP32 ``bits``."""
    sign = bits >> 31
    exponent_field = (bits >> 23) & 0xFF
    fraction = bits & 0x7F_FFFF
    if exponent_field == 0xFF:
        return ("nan" if fraction else "inf"), sign
    if exponent_field == 0:
        return Fraction(fraction, 2**149), sign
    return Fraction(2**23 + fraction) * TWO ** (exponent_field - 150), sign


def floor_log2(value):
    """Return the exact floor(log2(value)) of a positive Fraction."""
    estimate = value.numerator.bit_length() - value.denominator.bit_length()
    if TWO**estimate > value:
        estimate -= 1
    return estimate


def fp32_encode(magnitude, sign):
    """Return FP32 bits of ±``magnitude``, which must be exactly representable."""
    if magnitude == 0:
        return sign << 31
    exponent = floor_log2(magnitude)
    if exponent >= -126:
        scaled = magnitude / TWO ** (exponent - 23)
        field = exponent + 127
        assert scaled.denominator == 1, magnitude
        assert field < 0xFF, magnitude
        return (sign << 31) | (field << 23) | (scaled.numerator - 2**23)
    scaled = magnitude * 2**149
    assert scaled.denominator == 1, magnitude
    return (sign << 31) | scaled.numerator


# Narrowing (C6-C16).


def round_to_grid(magnitude, grid, noise):
    """Return the grid point that ``magnitude`` rounds to (C7-C10), before C12 and C13."""
    exponent = floor_log2(magnitude)
    m = grid.mantissa_bits
    lsb = (max(exponent, grid.emin) if grid.subnormals else exponent) - m
    ulp = TWO**lsb
    steps = magnitude / ulp
    lower = steps.numerator // steps.denominator
    fraction = steps - lower  # D / 2^d
    if fraction == 0 or grid.rounding == "toward_zero":
        up = False
    elif grid.rounding == "nearest_even":
        up = fraction > Fraction(1, 2) or (fraction == Fraction(1, 2) and lower % 2 == 1)
    else:
        threshold = fraction * 2**32
        up = noise < threshold.numerator // threshold.denominator
    return (lower + up) * ulp


def quantize_bits(bits, grid, noise=0):
    """Return the FP32 bits that ``bits`` narrows to on ``grid``, or ERROR."""
    magnitude, sign = fp32_decode(bits)
    if magnitude == "nan":
        return FP32_QUIET_NAN | (sign << 31) if grid.has_nan else ERROR
    if magnitude == "inf":
        return out_of_range(grid, sign)
    if magnitude == 0:
        return sign << 31
    result = round_to_grid(magnitude, grid, noise)
    if not grid.subnormals and result < TWO**grid.emin:
        return sign << 31
    if result > grid.max_value:
        return out_of_range(grid, sign)
    return fp32_encode(result, sign)


def out_of_range(grid, sign):
    if grid.saturate:
        # The largest member that the base holds: max, or max rounded down to the base's
        # subnormal grid when the top binade's step is finer than that grid (C13).
        steps = grid.max_value // grid.base_step
        return fp32_encode(steps * grid.base_step, sign)
    if grid.has_inf:
        return FP32_INF | (sign << 31)
    if grid.has_nan:
        return FP32_QUIET_NAN | (sign << 31)
    return ERROR


def max_anchor(bits_list, container):
    """Return the anchor of C6 for the FP32 patterns ``bits_list``."""
    magnitudes = [fp32_decode(bits)[0] for bits in bits_list]
    finite = [v for v in magnitudes if not isinstance(v, str) and v != 0]
    if not finite:
        low = -149 if container.base == "fp32" else -133
        return min(max(grid_of(container).emax, low), 127)
    largest = max(finite)
    exponent = floor_log2(largest)
    ulp = TWO ** (exponent - container.mantissa_bits)
    steps = largest / ulp
    lower = steps.numerator // steps.denominator
    fraction = steps - lower
    if container.rounding == "nearest_even":
        up = fraction > Fraction(1, 2) or (fraction == Fraction(1, 2) and lower % 2 == 1)
    else:
        up = container.rounding == "stochastic" and fraction > 0
    rounded = (lower + up) * ulp
    return min(floor_log2(rounded), 127)


# Codes (C17, C19).


def code_value(code, grid):
    """Return ("nan", sign), ("inf", sign), (Fraction, sign) or (None, sign) for an invalid code."""
    e, m = grid.exponent_bits, grid.mantissa_bits
    sign = code >> (e + m)
    exponent_code = (code >> m) & (2**e - 1)
    mantissa = code & (2**m - 1)
    all_ones = 2**e - 1
    if grid.specials == "ieee" and exponent_code == all_ones:
        return ("nan" if mantissa else "inf"), sign
    if grid.specials == "fn" and exponent_code == all_ones and mantissa == 2**m - 1:
        return "nan", sign
    if exponent_code == 0:
        if mantissa and not grid.subnormals:
            return None, sign
        return mantissa * TWO ** (grid.emin - m), sign
    return (2**m + mantissa) * TWO ** (exponent_code - grid.bias - m), sign
