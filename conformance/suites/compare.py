"""Comparing a backend's quantize with the exact oracle, and naming the rule a mismatch breaks."""

from fractions import Fraction

import numpy as np

from conformance import oracle
from conformance.registry import Mismatch


def hex32(bits):
    return "error" if bits == oracle.ERROR else f"0x{bits:08x}"


def describe_container(container, anchor):
    return f"{container.name} (bias {container.bias})"


def ieee_layout_max(grid):
    """Return the max of the same e, m and bias with the ieee layout (C2)."""
    e, m = grid.exponent_bits, grid.mantissa_bits
    top_code = max(2**e - 2, 1)
    return (2 ** (m + 1) - 1) * oracle.TWO ** (top_code - grid.bias - m)


def is_tie(bits, grid):
    """Return whether finite ``bits`` lies exactly halfway between two grid points of ``grid``."""
    magnitude, _ = oracle.fp32_decode(bits)
    if isinstance(magnitude, str) or magnitude == 0:
        return False
    exponent = oracle.floor_log2(magnitude)
    lsb = (max(exponent, grid.emin) if grid.subnormals else exponent) - grid.mantissa_bits
    steps = magnitude / oracle.TWO**lsb
    return steps - steps.numerator // steps.denominator == Fraction(1, 2)


def rule_of(bits, expected, actual, grid):
    """Return the SPEC.md rule that decides the result of quantizing ``bits`` on ``grid``.

    The order matters. A NaN, an infinity or a zero input is decided by its own rule in every
    mode, and a result that differs only in its sign breaks the sign rule. Anything above max is
    an overflow case. Then come the layout, the rounding mode, ties (also below min_normal) and
    underflow.
    """
    magnitude, _ = oracle.fp32_decode(bits)
    if magnitude == "nan":
        return "C14"
    if magnitude == "inf":
        return "C13"
    if magnitude == 0:
        return "C16"
    if isinstance(actual, int) and expected != oracle.ERROR and expected ^ actual == 1 << 31:
        return "C16"
    if magnitude > grid.max_value:
        return "C13"
    if expected != oracle.ERROR and grid.specials != "ieee":
        value, _ = oracle.fp32_decode(expected)
        if not isinstance(value, str) and value > ieee_layout_max(grid):
            return "C2"
    if grid.rounding == "stochastic":
        return "C10"
    if grid.rounding == "nearest_even" and is_tie(bits, grid):
        return "C8"
    if magnitude < oracle.TWO**grid.emin:
        return "C12"
    if grid.rounding == "toward_zero":
        return "C9"
    return "C7"


def call_backend(function, rule, inputs, expected, *args, **kwargs):
    """Return ``function(*args, **kwargs)``; turn any exception other than NotImplementedError
    into a Mismatch for ``rule``."""
    try:
        return function(*args, **kwargs)
    except NotImplementedError:
        raise
    except Exception as error:  # a backend may fail in any way; report it as a mismatch
        raise Mismatch(rule, "raised on a valid input", inputs, expected,
                       f"{type(error).__name__}: {error}") from error


def quantize_expected(case, bits, noise):
    """Return (the oracle's grid, expected FP32 bits) for ``bits`` and ``noise`` of ``case``."""
    container, anchor = case.container, case.anchor
    if isinstance(anchor, str):
        anchor = oracle.max_anchor(bits, container)
    grid = oracle.grid_of(container, anchor)
    noise = noise or [0] * len(bits)
    return grid, [oracle.quantize_bits(b, grid, n) for b, n in zip(bits, noise)]


def check_quantize_case(backend, case, with_errors):
    """Compare ``backend.quantize`` with the oracle on ``case``; raise Mismatch on a difference.

    Elements the oracle rejects are left out of the main call. With ``with_errors``, each of the
    first three of them is then passed alone and must raise ValueError.
    """
    grid, expected = quantize_expected(case, list(case.bits), case.noise)
    keep = [i for i, e in enumerate(expected) if e != oracle.ERROR]
    bits = [case.bits[i] for i in keep]
    noise = None if case.noise is None else [case.noise[i] for i in keep]
    if bits:
        grid, expected_kept = quantize_expected(case, bits, noise)
        _compare_kept(backend, case, grid, bits, noise, expected_kept)
    if with_errors:
        rejected = [i for i, e in enumerate(expected) if e == oracle.ERROR]
        for i in rejected[:3]:
            _expect_value_error(backend, case, grid, i)


def _inputs(case, bits, noise, index):
    inputs = {
        "container": describe_container(case.container, case.anchor),
        "rounding": case.container.rounding, "anchor": case.anchor,
        "x": hex32(bits[index]), "element": index,
    }
    if noise is not None:
        inputs["noise"] = hex32(noise[index])
    return inputs


def _compare_kept(backend, case, grid, bits, noise, expected):
    x = np.array(bits, np.uint32).view(np.float32)
    noise_array = None if noise is None else np.array(noise, np.uint32)
    actual = call_backend(
        backend.quantize, rule_of(bits[0], expected[0], None, grid), _inputs(case, bits, noise, 0),
        hex32(expected[0]), x, case.container, anchor=case.anchor, noise=noise_array,
    )
    actual = np.asarray(actual)
    if actual.dtype != np.float32 or actual.shape != x.shape:
        raise Mismatch("C15", "output must be float32 of x's shape", _inputs(case, bits, noise, 0),
                       f"float32 {x.shape}", f"{actual.dtype} {actual.shape}")
    actual_bits = actual.view(np.uint32).tolist()
    for i, (want, got) in enumerate(zip(expected, actual_bits)):
        if want != got:
            raise Mismatch(rule_of(bits[i], want, got, grid), "quantize result differs",
                           _inputs(case, bits, noise, i), hex32(want), hex32(got))


def _expect_value_error(backend, case, grid, index):
    bits = [case.bits[index]]
    noise = None if case.noise is None else [case.noise[index]]
    x = np.array(bits, np.uint32).view(np.float32)
    noise_array = None if noise is None else np.array(noise, np.uint32)
    rule = rule_of(bits[0], oracle.ERROR, None, grid)
    inputs = _inputs(case, bits, noise, 0)
    try:
        actual = backend.quantize(x, case.container, anchor=case.anchor, noise=noise_array)
    except ValueError:
        return
    except NotImplementedError:
        raise
    except Exception as error:  # the rule requires ValueError in particular
        raise Mismatch(rule, "must raise ValueError", inputs, "ValueError",
                       f"{type(error).__name__}: {error}") from error
    got = np.asarray(actual).view(np.uint32).tolist()[0]
    raise Mismatch(rule, "must raise ValueError", inputs, "ValueError", hex32(got))
