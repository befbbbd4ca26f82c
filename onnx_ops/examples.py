"""Examples of ``Narrow``: written once, shown in docs/operators.md and checked as test vectors.

Each expected output is written by hand from the rules of SPEC.md section C; the tests run every
example in all four backends and compare bit patterns (a NaN is the quiet NaN with its sign).
"""

from dataclasses import dataclass, field

import numpy as np

NAN = float("nan")
INF = float("inf")
# Exact constants as hexadecimal floats.
H = float.fromhex


@dataclass(frozen=True)
class Example:
    """One call of Narrow: attributes, widths, optional anchor and noise, input and output."""

    name: str
    summary: str
    attributes: dict
    exponent_bits: int
    mantissa_bits: int
    x: list
    y: list
    anchor: int = None
    noise: list = field(default=None)

    def x_array(self):
        return _array(self.x, self.attributes.get("base", "fp32"))

    def y_array(self):
        return _array(self.y, self.attributes.get("base", "fp32"))

    def noise_array(self):
        return None if self.noise is None else np.array(self.noise, np.uint32)


def _array(values, base):
    x = np.array(values, np.float32)
    if base == "bf16":
        import ml_dtypes

        return x.astype(ml_dtypes.bfloat16)
    return x


EXAMPLES = [
    Example(
        "e4m3fn",
        "float8_e4m3fn: ties go to the even code; 464 (half an ulp above the max 448) is a tie "
        "and rounds to 448, anything above it overflows to NaN, since e4m3fn has no inf.",
        {"specials": "fn"}, 4, 3,
        x=[1.0625, 1.1875, 464.0, 464.5, INF, H("0x1.8p-10"), H("0x1p-10"), -0.0],
        y=[1.0, 1.25, 448.0, NAN, NAN, H("0x1p-9"), 0.0, -0.0],
    ),
    Example(
        "e5m2",
        "float8_e5m2 keeps inf: 61440 is the tie above the max 57344 and rounds to even, which "
        "is 2^16 and overflows.",
        {}, 5, 2,
        x=[57344.0, 61439.99609375, 61440.0, -INF, H("0x1p-17"), H("0x1.8p-17")],
        y=[57344.0, 57344.0, INF, -INF, 0.0, H("0x1p-16")],
    ),
    Example(
        "signed_zero_and_nan",
        "-0 stays -0, a negative value that underflows becomes -0, and every NaN (any payload, "
        "signaling or quiet) becomes the quiet NaN with its sign.",
        {}, 4, 3,
        x=[-0.0, -1e-9, NAN, -NAN, 1.0],
        y=[-0.0, -0.0, NAN, -NAN, 1.0],
    ),
    Example(
        "training_anchor_input",
        "A training container (no specials, no subnormals, saturating) with its window at "
        "anchor 0: normals 2^-6 .. 1.5. 1.75 rounds to 2 and saturates to 1.5; 0.01 rounds "
        "below 2^-6 and flushes to zero.",
        {"specials": "none", "subnormals": 0, "saturate": 1, "anchor_mode": "input"}, 3, 1,
        x=[0.75, 1.75, 3.0, 0.01, -0.02],
        y=[0.75, 1.5, 1.5, 0.0, -H("0x1.8p-6")],
        anchor=0,
    ),
    Example(
        "training_anchor_max",
        "The anchor comes from the tensor: its largest magnitude 7 rounds to 8 at m = 1, so the "
        "anchor is 3 and normals span 2^-3 .. 12. 2.5 is a tie and rounds to even (2).",
        {"specials": "none", "subnormals": 0, "saturate": 1, "anchor_mode": "max"}, 3, 1,
        x=[0.3, -7.0, 2.5, 0.1],
        y=[0.25, -8.0, 2.0, 0.0],
    ),
    Example(
        "stochastic",
        "Stochastic rounding of 1.1875 to m = 2 drops the bits 0.11b of an ulp, so it rounds up "
        "iff noise < 3/4 * 2^32 = 0xC0000000.",
        {"rounding": "stochastic"}, 5, 2,
        x=[1.1875, 1.1875, 1.1875],
        y=[1.25, 1.25, 1.0],
        noise=[0, 0xBFFFFFFF, 0xC0000000],
    ),
    Example(
        "bf16_base",
        "BF16 tensors narrow in BF16: the same rules with 16-bit input and output.",
        {"base": "bf16", "specials": "fn"}, 4, 3,
        x=[1.0625, 1.1875, 480.0, -H("0x1p-12")],
        y=[1.0, 1.25, NAN, -0.0],
    ),
]
