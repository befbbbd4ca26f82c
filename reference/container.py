"""Floating-point containers: the value sets that stored tensors are narrowed to (SPEC.md C1-C6).

A container has 1 sign bit, ``exponent_bits`` e and ``mantissa_bits`` m. Exponent code 0 encodes
zero (and the subnormals when they are on); codes 1 up to the largest normal code encode normals
``(1 + f / 2^m) * 2^(code - bias)``. The special-value layout decides what the top codes mean:

- ``ieee``: the all-ones exponent holds inf (mantissa 0) and NaN (mantissa not 0).
- ``fn``: only the all-ones code s'1..1'1..1 is NaN; there is no inf.
- ``none``: every code is a number; there is no inf and no NaN.

>>> Container.from_name("e4m3fn").max_value
448.0
>>> Container(4, 3).max_value
240.0
"""

from dataclasses import dataclass
import logging

logger = logging.getLogger(__name__)

SPECIALS = ("ieee", "fn", "none")
ROUNDINGS = ("nearest_even", "toward_zero", "stochastic")
# Mantissa bits of each base format: the input and output value sets of quantize.
BASE_MANTISSA_BITS = {"fp32": 23, "bf16": 7}
# Both bases share FP32's exponent range: normals 2^-126 .. 2^127.
BASE_MAX_EXPONENT = 127
BASE_MIN_NORMAL_EXPONENT = -126


@dataclass(frozen=True)
class Container:
    """Floating-point value set with 1 sign, ``exponent_bits`` and ``mantissa_bits`` bits.

    ``bias=None`` means the IEEE bias 2^(e-1) - 1. ``saturate`` maps out-of-range values and inf
    to the signed max. ``base`` is the format of the tensors that are narrowed (``fp32`` or
    ``bf16``); it bounds ``mantissa_bits``.
    """

    exponent_bits: int
    mantissa_bits: int
    bias: int = None
    specials: str = "ieee"
    subnormals: bool = True
    saturate: bool = False
    rounding: str = "nearest_even"
    base: str = "fp32"

    def __post_init__(self):
        _check_widths(self)
        if self.bias is None:
            object.__setattr__(self, "bias", 2 ** (self.exponent_bits - 1) - 1)
        _check_fields(self)

    @classmethod
    def from_name(cls, name):
        """Return the standard container ``name`` (``e4m3fn``, ``bf16``, ...), as ml_dtypes means it."""
        try:
            fields = PRESETS[name]
        except KeyError:
            known = ", ".join(PRESETS)
            raise ValueError(f"container name must be one of {known}; got {name!r}") from None
        return cls(**fields)

    @classmethod
    def training(cls, exponent_bits, mantissa_bits, rounding="nearest_even"):
        """Return the container of stored training tensors: anchored, no specials, no subnormals.

        No code is inf or NaN, so all 2^e - 1 nonzero exponent codes are normal binades at and
        below the anchor, and exponent code 0 is zero. Out-of-range values and inf saturate to
        the signed max.
        """
        return cls(
            exponent_bits, mantissa_bits, specials="none", subnormals=False, saturate=True,
            rounding=rounding,
        )

    # Derived properties. Every value is exact: powers of two and short binary fractions.

    @property
    def bits(self):
        """Width of one code in bits: 1 + e + m."""
        return 1 + self.exponent_bits + self.mantissa_bits

    @property
    def max_exponent_code(self):
        """Largest exponent code of normal numbers."""
        all_ones = 2**self.exponent_bits - 1
        if self.specials == "ieee":
            return all_ones - 1
        if self.specials == "fn" and self.mantissa_bits == 0:
            # With m = 0 the only code of the all-ones exponent is the NaN code.
            return all_ones - 1
        return all_ones

    @property
    def max_exponent(self):
        """Unbiased exponent of the largest normal binade."""
        return self.max_exponent_code - self.bias

    @property
    def min_exponent(self):
        """Unbiased exponent of the smallest normal binade (exponent code 1)."""
        return 1 - self.bias

    @property
    def max_significand(self):
        """Largest integer significand (implicit bit included) of the top binade."""
        significand = 2 ** (self.mantissa_bits + 1) - 1
        if self.specials == "fn" and self.max_exponent_code == 2**self.exponent_bits - 1:
            significand -= 1  # the all-ones mantissa of the top binade is NaN
        return significand

    @property
    def max_value(self):
        """Largest finite value, as an exact Python float."""
        return float(self.max_significand * 2.0 ** (self.max_exponent - self.mantissa_bits))

    @property
    def saturation_value(self):
        """Largest finite member that the base format holds: the target of saturation.

        It equals ``max_value`` unless the top binade's grid step 2^(max_exponent - m) lies
        below the base's smallest subnormal (2^-149 for fp32, 2^-133 for bf16). Then it is
        ``max_value`` rounded down to that subnormal grid, which is still a member.
        """
        step = 2.0 ** (BASE_MIN_NORMAL_EXPONENT - BASE_MANTISSA_BITS[self.base])
        return float(self.max_value // step * step)

    @property
    def min_normal(self):
        """Smallest positive normal value."""
        return 2.0**self.min_exponent

    @property
    def min_subnormal(self):
        """Smallest positive value: a subnormal, or ``min_normal`` when subnormals are off."""
        if not self.subnormals or self.mantissa_bits == 0:
            return self.min_normal
        return 2.0 ** (self.min_exponent - self.mantissa_bits)

    @property
    def has_inf(self):
        return self.specials == "ieee"

    @property
    def has_nan(self):
        # ieee with m = 0 has only inf in its all-ones exponent.
        return self.specials == "fn" or (self.specials == "ieee" and self.mantissa_bits > 0)

    @property
    def name(self):
        """Standard name (``e4m3fn``, ``bf16``) when this is a preset, else an explicit description."""
        for preset_name, fields in PRESETS.items():
            if self == Container(**fields):
                return preset_name
        name = f"e{self.exponent_bits}m{self.mantissa_bits}"
        defaults = dict(
            bias=2 ** (self.exponent_bits - 1) - 1, specials="ieee", subnormals=True,
            saturate=False, rounding="nearest_even", base="fp32",
        )
        extras = [
            f"{field}={getattr(self, field)}"
            for field, default in defaults.items()
            if getattr(self, field) != default
        ]
        return f"{name}[{','.join(extras)}]" if extras else name

    def with_anchor(self, anchor):
        """Return this container with its window placed so that the largest normal exponent is ``anchor``.

        ``anchor=None`` returns the container unchanged after checking that its bias puts the
        largest normal exponent in the exponent range of nonzero base values (-149..127 for fp32,
        -133..127 for bf16). An int anchor must lie in that range.
        """
        if anchor is None:
            _check_window(self)
            return self
        if isinstance(anchor, bool) or not _is_integer(anchor):
            raise TypeError(f"anchor must be None or an int; got {anchor!r}")
        anchor = int(anchor)
        low, high = anchor_range(self.base)
        if not low <= anchor <= high:
            raise ValueError(
                f"anchor must be in {low}..{high} (exponents of nonzero {self.base} values); "
                f"got {anchor}"
            )
        return _replace_bias(self, self.max_exponent_code - anchor)


def anchor_range(base):
    """Return the (low, high) unbiased exponents of nonzero values of ``base``."""
    return BASE_MIN_NORMAL_EXPONENT - BASE_MANTISSA_BITS[base], BASE_MAX_EXPONENT


def _is_integer(value):
    return hasattr(value, "__index__")


def _replace_bias(container, bias):
    # dataclasses.replace would rerun the preset lookup in name; building directly is enough.
    fields = {f: getattr(container, f) for f in _FIELDS}
    fields["bias"] = bias
    return Container(**fields)


_FIELDS = (
    "exponent_bits", "mantissa_bits", "bias", "specials", "subnormals", "saturate", "rounding",
    "base",
)


def _check_int(container, field):
    value = getattr(container, field)
    if isinstance(value, bool) or not _is_integer(value):
        raise TypeError(f"{field} must be an int; got {value!r}")
    # A numpy integer would wrap in the derived limits (2**e - 1 in uint8 is 255 at most) and
    # compare equal to a differently built container, so every field is kept as a Python int.
    object.__setattr__(container, field, int(value))


def _check_widths(container):
    _check_int(container, "exponent_bits")
    _check_int(container, "mantissa_bits")
    e, m = container.exponent_bits, container.mantissa_bits
    if container.base not in BASE_MANTISSA_BITS:
        raise ValueError(f"base must be one of 'fp32', 'bf16'; got {container.base!r}")
    if not 1 <= e <= 8:
        raise ValueError(f"exponent_bits must be in 1..8; got {e}")
    base_m = BASE_MANTISSA_BITS[container.base]
    if not 0 <= m <= base_m:
        raise ValueError(
            f"mantissa_bits must be in 0..{base_m} with base {container.base!r}; got {m}"
        )


def _check_fields(container):
    _check_int(container, "bias")
    e, m = container.exponent_bits, container.mantissa_bits
    if container.specials not in SPECIALS:
        raise ValueError(f"specials must be one of 'ieee', 'fn', 'none'; got {container.specials!r}")
    if container.rounding not in ROUNDINGS:
        raise ValueError(
            f"rounding must be one of 'nearest_even', 'toward_zero', 'stochastic'; "
            f"got {container.rounding!r}"
        )
    for field in ("subnormals", "saturate"):
        if not isinstance(getattr(container, field), bool):
            raise TypeError(f"{field} must be a bool; got {getattr(container, field)!r}")
    if container.max_exponent_code < 1:
        raise ValueError(
            f"specials={container.specials!r} with exponent_bits={e}, mantissa_bits={m} leaves "
            f"no normal numbers; use more exponent bits or specials='none'"
        )


def _check_window(container):
    # Checked on use, not on construction, so that Container.training(8, m), whose IEEE bias
    # puts the top binade at 2^128, exists and is used with an anchor.
    low, high = anchor_range(container.base)
    if not low <= container.max_exponent <= high:
        raise ValueError(
            f"bias must put the largest normal exponent in {low}..{high} (exponents of nonzero "
            f"{container.base} values); got bias {container.bias}, largest exponent "
            f"{container.max_exponent} (pass an anchor or another bias)"
        )


# The standard formats, with exactly the value sets of ml_dtypes 0.5+ (float8_e5m2,
# float8_e4m3, float8_e4m3fn, float8_e3m4, float6_e3m2fn, float6_e2m3fn, float4_e2m1fn) and
# IEEE 754. The FP6/FP4 formats have no inf and no NaN, and ml_dtypes saturates them on
# overflow. The fnuz formats (no -0, NaN at 1'0..0'0..0) and e8m0fnu (no sign) have no
# Container layout.
PRESETS = {
    "fp32": dict(exponent_bits=8, mantissa_bits=23),
    "bf16": dict(exponent_bits=8, mantissa_bits=7),
    "fp16": dict(exponent_bits=5, mantissa_bits=10),
    "e5m2": dict(exponent_bits=5, mantissa_bits=2),
    "e4m3": dict(exponent_bits=4, mantissa_bits=3),
    "e4m3fn": dict(exponent_bits=4, mantissa_bits=3, specials="fn"),
    "e3m4": dict(exponent_bits=3, mantissa_bits=4),
    "e3m2fn": dict(exponent_bits=3, mantissa_bits=2, specials="none", saturate=True),
    "e2m3fn": dict(exponent_bits=2, mantissa_bits=3, specials="none", saturate=True),
    "e2m1fn": dict(exponent_bits=2, mantissa_bits=1, specials="none", saturate=True),
}
