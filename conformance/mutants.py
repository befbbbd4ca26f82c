"""Deliberately broken backends, one per mistake that published quantizers and codecs make.

Each mutant is a complete, plausible implementation with exactly one mistake, so the suite can
show that it names the rule that the mistake breaks. They are test fixtures, and the
documentation uses them to show what a failure report looks like:

    sfp conformance --backend conformance.mutants:ties_away --suite containers

The quantizer below is written in float64 arithmetic, which is exact for every FP32 value and
every grid point, so each mutant differs from the specification only by the mistake its flag names.
"""

import dataclasses

import numpy as np

from conformance.backend import BaseBackend
from conformance.backends.numpy_backend import NumpyBackend


@dataclasses.dataclass(frozen=True)
class Mistakes:
    """Flags of :class:`FlawedQuantizer`; all False gives a correct quantizer."""

    ties_away: bool = False
    """round halfway cases away from zero instead of to even"""
    ties_toward_zero: bool = False
    """round halfway cases toward zero: the same squared error as ties to even"""
    loses_negative_zero: bool = False
    """apply the sign by multiplication, so -0 and values flushed to zero become +0"""
    m23_sign_flip: bool = False
    """with 23 mantissa bits a shift by -1 corrupts the sign bit"""
    double_rounds_subnormals: bool = False
    """round to m bits in the input's binade first, then again on the subnormal grid"""
    specials_to_max: bool = False
    """map inf and NaN to ±max"""
    nan_to_inf: bool = False
    """map NaN to inf of its sign"""
    log2_exponent: bool = False
    """take the binade from a float32 log2, which is wrong just below powers of two"""
    overflow_before_rounding: bool = False
    """judge overflow on the input instead of on the rounded result"""
    ieee_max_for_fn: bool = False
    """use the ieee layout's max 240 for e4m3 with the fn layout too (448)"""
    flattens_output: bool = False
    """return the result as a 1-d array instead of in x's shape"""
    overwrites_input: bool = False
    """reuse x as scratch space after computing the result, leaving zeros in it"""


class FlawedQuantizer(BaseBackend):
    """A quantizer for nearest_even and toward_zero on base fp32, with the given mistakes."""

    capabilities = frozenset({"quantize"})

    def __init__(self, name, **mistakes):
        self.name = name
        self.mistakes = Mistakes(**mistakes)

    def quantize(self, x, container, *, anchor=None, noise=None):
        with np.errstate(invalid="ignore", over="ignore"):
            result = self._quantize(x, container.with_anchor(anchor))
        if self.mistakes.overwrites_input:
            x[...] = 0
        if self.mistakes.flattens_output:
            result = result.reshape(-1)
        return result

    def _quantize(self, x, window):
        mistakes = self.mistakes
        value = x.astype(np.float64)
        negative = np.signbit(value)
        magnitude = np.abs(value)
        finite = np.isfinite(magnitude) & (magnitude > 0)

        safe = np.where(finite, magnitude, 1.0)
        if mistakes.log2_exponent:
            exponent = np.floor(np.log2(safe.astype(np.float32))).astype(np.int64)
        else:
            exponent = np.frexp(safe)[1].astype(np.int64) - 1
        m = window.mantissa_bits
        if mistakes.double_rounds_subnormals and window.subnormals:
            safe = self._round(safe, exponent - m, window.rounding, mistakes)
            exponent = np.frexp(safe)[1].astype(np.int64) - 1
        if window.subnormals:
            lsb = np.maximum(exponent, window.min_exponent) - m
        else:
            lsb = exponent - m
        rounded = self._round(safe, lsb, window.rounding, mistakes)
        if not window.subnormals:
            rounded = np.where(rounded < window.min_normal, 0.0, rounded)

        max_value = window.max_value
        e4m3fn = window.specials == "fn" and window.exponent_bits == 4
        if mistakes.ieee_max_for_fn and e4m3fn:
            max_value = float((2 ** (m + 1) - 1) * 2.0 ** (window.max_exponent - 1 - m))
        judged = safe if mistakes.overflow_before_rounding else rounded
        overflow = finite & (judged > max_value)
        result = np.where(finite, rounded, magnitude)
        result = np.where(overflow | np.isinf(magnitude), self._out_of_range(window, max_value),
                          result)
        is_nan = np.isnan(magnitude)
        if mistakes.specials_to_max:
            result = np.where(np.isinf(magnitude) | is_nan, max_value, result)
        elif mistakes.nan_to_inf:
            result = np.where(is_nan, np.inf, result)
        if mistakes.loses_negative_zero:
            out = (result * np.where(negative, -1.0, 1.0)).astype(np.float32)
            out = np.where(out == 0, np.float32(0.0), out)
        else:
            out = np.where(negative, -result, result).astype(np.float32)
        out = np.where(is_nan & ~mistakes.specials_to_max & ~mistakes.nan_to_inf,
                       np.copysign(np.float32(np.nan), out), out).astype(np.float32)
        bits = out.view(np.uint32)
        if mistakes.m23_sign_flip and m == 23:
            bits = bits ^ np.uint32(1 << 31)
        return bits.view(np.float32).reshape(x.shape)

    @staticmethod
    def _round(magnitude, lsb, rounding, mistakes):
        scaled = np.ldexp(magnitude, -lsb)
        lower = np.floor(scaled)
        fraction = scaled - lower
        if rounding == "toward_zero":
            up = np.zeros(scaled.shape, bool)
        elif mistakes.ties_away:
            up = fraction >= 0.5
        elif mistakes.ties_toward_zero:
            up = fraction > 0.5
        else:
            up = (fraction > 0.5) | ((fraction == 0.5) & (np.fmod(lower, 2) == 1))
        return np.ldexp(lower + up, lsb)

    @staticmethod
    def _out_of_range(window, max_value):
        if window.saturate:
            return max_value
        if window.has_inf:
            return np.inf
        return np.nan


class _OffByOneGecko(NumpyBackend):
    """The reference with one bit of each exponent stream's last payload byte flipped."""

    name = "gecko-off-by-one-bit"
    capabilities = frozenset({"gecko.exponents"})

    def encode_exponents(self, exponents, *, mode="fixed", group_size=32):
        blob = bytearray(super().encode_exponents(exponents, mode=mode, group_size=group_size))
        blob[-1] ^= 0x01
        return bytes(blob)


def correct():
    """Return the mistake-free :class:`FlawedQuantizer`, which the suite must pass."""
    return FlawedQuantizer("float64-quantizer")


def ties_away():
    return FlawedQuantizer("ties-away", ties_away=True)


def ties_toward_zero():
    return FlawedQuantizer("ties-toward-zero", ties_toward_zero=True)


def loses_negative_zero():
    return FlawedQuantizer("loses-negative-zero", loses_negative_zero=True)


def m23_sign_flip():
    return FlawedQuantizer("m23-sign-flip", m23_sign_flip=True)


def double_rounds_subnormals():
    return FlawedQuantizer("double-rounds-subnormals", double_rounds_subnormals=True)


def specials_to_max():
    return FlawedQuantizer("specials-to-max", specials_to_max=True)


def nan_to_inf():
    return FlawedQuantizer("nan-to-inf", nan_to_inf=True)


def log2_exponent():
    return FlawedQuantizer("log2-exponent", log2_exponent=True)


def overflow_before_rounding():
    return FlawedQuantizer("overflow-before-rounding", overflow_before_rounding=True)


def ieee_max_for_fn():
    return FlawedQuantizer("ieee-max-for-fn", ieee_max_for_fn=True)


def flattens_output():
    return FlawedQuantizer("flattens-output", flattens_output=True)


def overwrites_input():
    return FlawedQuantizer("overwrites-input", overwrites_input=True)


def gecko_off_by_one_bit():
    return _OffByOneGecko()


# Each mutant with the rule its mistake breaks.
EXPECTED_RULES = {
    ties_away: "C8",
    ties_toward_zero: "C8",
    loses_negative_zero: "C16",
    m23_sign_flip: "C16",
    double_rounds_subnormals: "C12",
    specials_to_max: "C13",
    nan_to_inf: "C14",
    log2_exponent: "C7",
    overflow_before_rounding: "C13",
    ieee_max_for_fn: "C2",
    flattens_output: "C15",
    overwrites_input: "C15",
}
# Rules a mutant breaks besides its own. A float32 log2 also picks the binade above for values
# just below 2^128, which then round past max. Taking e4m3fn's max as 240 turns the finite
# values from 256 to 448 into overflows, which the overflow checks may see first.
ALSO_BROKEN = {log2_exponent: {"C13"}, ieee_max_for_fn: {"C13"}}
