"""The fused narrowing of several widths equals ``quantize`` at each width, bit for bit.

``narrow_max_anchor_widths`` finds the max once and shares rounding passes between widths of
equal mantissa width. These tests compare it against ``quantize`` on all finite BF16 patterns,
and compare Quantum's forward and width gradients with and without it.
"""

import numpy as np
import pytest

from reference import native, quantize_lean
from reference.bitlength import quantum_narrow, quantum_vjp
from reference.container import Container
from reference.quantize import quantize
from reference.quantize_lean import narrow_max_anchor_widths

WIDTH_SETS = [
    [(3, 2), (3, 3), (4, 2)],
    [(1, 0), (1, 1), (2, 0)],
    [(5, 7), (5, 6), (4, 7)],
    [(8, 23), (8, 22), (7, 23)],
    [(2, 10), (2, 11)],
]


def finite_bf16_patterns():
    x = (np.arange(2**16, dtype=np.uint32) << 16).view(np.float32)
    return x[np.isfinite(x)]


def identical(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.spec("Q2", "Q4")
@pytest.mark.parametrize("rounding", ["nearest_even", "toward_zero"])
@pytest.mark.parametrize("widths", WIDTH_SETS, ids=str)
def test_fused_matches_quantize_on_bf16(widths, rounding):
    patterns = finite_bf16_patterns()
    served = 0
    # Limiting the magnitude moves the max anchor; dropping subnormal inputs lets windows that
    # reach below 2^-126 take the fused path too.
    for top in (-100, -20, 0, 1, 64, 127):
        for normals_only in (False, True):
            x = patterns[np.abs(patterns) < np.float32(2.0**top)]
            if normals_only:
                x = x[(x == 0) | (np.abs(x) >= np.float32(2.0**-126))]
            x = x[: quantize_lean.MAX_ELEMENTS]
            fused = narrow_max_anchor_widths(x, widths, rounding)
            if fused is None:
                continue
            served += 1
            assert sorted(fused) == sorted(widths)
            for (e, m), value in fused.items():
                expected = quantize(x, Container.training(e, m, rounding=rounding), anchor="max")
                assert identical(value, expected), (top, normals_only, e, m)
    assert served >= 6


@pytest.mark.spec("Q2")
def test_fused_falls_back_when_needed():
    x = np.float32([1.0, -2.5, 0.0, 3.0e-3])
    assert narrow_max_anchor_widths(x, [(3, 2)], "stochastic") is None
    assert narrow_max_anchor_widths(np.float32([1.0, np.inf]), [(3, 2)], "nearest_even") is None
    assert narrow_max_anchor_widths(np.zeros(4, np.float32), [(3, 2)], "nearest_even") is None
    subnormal = np.float32([1.0, 1e-40])
    assert narrow_max_anchor_widths(subnormal, [(8, 2)], "nearest_even") is None
    overflow = np.float32([np.finfo(np.float32).max])
    assert narrow_max_anchor_widths(overflow, [(3, 2)], "nearest_even") is None
    assert narrow_max_anchor_widths(x.astype(np.float64), [(3, 2)], "nearest_even") is None


@pytest.mark.spec("Q2", "Q3", "Q4")
@pytest.mark.parametrize("e, m", [(3.3, 2.6), (8.0, 23.0), (1.0, 0.4), (4.9, 7.5), (2.5, 0.0)])
@pytest.mark.parametrize("need_exponent", [True, False])
def test_prepared_vjp_matches_unprepared(e, m, need_exponent, monkeypatch):
    # The numpy path: with the compiled kernel, the forward pass computes no neighbours.
    monkeypatch.setitem(native._loaded, "training", None)
    rng = np.random.default_rng(3)
    data = rng.standard_normal((16, 9, 9)) * np.exp(rng.uniform(-6, 3, (16, 9, 9)))
    x = data.astype(np.float32).transpose(2, 0, 1)
    g = rng.standard_normal(x.shape).astype(np.float32)

    plain = quantum_narrow(x, e, m, rng=np.random.default_rng(7))
    prepared = quantum_narrow(x, e, m, rng=np.random.default_rng(7), prepare_vjp=True,
                              need_exponent=need_exponent)
    assert len(prepared.context.corners) == (3 if need_exponent else 2)
    plain_grads = quantum_vjp(plain.context, g, need_exponent=need_exponent)
    prepared_grads = quantum_vjp(prepared.context, g, need_exponent=need_exponent)

    assert (prepared.exponent_bits, prepared.mantissa_bits) == (plain.exponent_bits,
                                                                plain.mantissa_bits)
    assert identical(prepared.value, plain.value)
    assert identical(prepared_grads[0], plain_grads[0])
    assert prepared_grads[1] == plain_grads[1]
    assert prepared_grads[2] == plain_grads[2]
