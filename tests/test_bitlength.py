"""Quantum Mantissa and Quantum Exponent (SPEC.md section Q)."""

import numpy as np
import pytest
from scipy import stats

from reference.bitlength import (
    EXPONENT_RANGE,
    MANTISSA_RANGE,
    collapse,
    footprint_penalty,
    narrow,
    quantum_narrow,
    quantum_vjp,
    split_width,
    stored_width,
)
from reference.container import Container
from reference.quantize import max_anchor


def sample(shape=(64, 33), seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(shape) * np.exp(rng.uniform(-4, 2, shape))).astype(np.float32)


def interpolated(x, e, m):
    return quantum_narrow(x, e, m, mode="interpolate").value.astype(np.float64)


def squared_loss(x, target, e, m):
    return float(np.sum((interpolated(x, e, m) - target) ** 2))


@pytest.mark.spec("Q3", "Q4", "TQ2")
# Mantissa widths stay below about 11 bits here: above that, rounding the blend to float32 moves
# the loss as much as one Q step does, and the finite difference measures rounding noise.
@pytest.mark.parametrize("e, m", [(3.3, 2.6), (5.5, 0.2), (1.7, 9.9), (7.4, 10.5)])
def test_width_gradient_matches_finite_difference(e, m):
    x = sample()
    target = sample(seed=1) * 0.5
    result = quantum_narrow(x, e, m, mode="interpolate")
    grad_output = 2.0 * (result.value.astype(np.float64) - target)

    grad_x, grad_e, grad_m = quantum_vjp(result.context, grad_output)

    # The loss is quadratic in each width inside one step, so a central difference is exact
    # for any h that stays inside the step.
    h = 0.05
    fd_m = (squared_loss(x, target, e, m + h) - squared_loss(x, target, e, m - h)) / (2 * h)
    fd_e = (squared_loss(x, target, e + h, m) - squared_loss(x, target, e - h, m)) / (2 * h)
    assert grad_m == pytest.approx(fd_m, rel=1e-3, abs=1e-6)
    assert grad_e == pytest.approx(fd_e, rel=1e-3, abs=1e-6)
    assert grad_x.shape == x.shape
    assert grad_x.dtype == np.float32


@pytest.mark.spec("Q4", "TQ1")
def test_width_gradient_at_top_uses_step_below():
    x = sample()
    grad_output = np.ones_like(x, dtype=np.float64)
    result = quantum_narrow(x, 8.0, 23.0, mode="interpolate")
    _, grad_e, grad_m = quantum_vjp(result.context, grad_output)

    step_below_m = np.sum(narrow(x, 8, 23).astype(np.float64) - narrow(x, 8, 22))
    step_below_e = np.sum(narrow(x, 8, 23).astype(np.float64) - narrow(x, 7, 23))
    assert np.array_equal(result.value, x)
    assert grad_m == pytest.approx(float(step_below_m), rel=1e-12)
    assert grad_e == pytest.approx(float(step_below_e), rel=1e-12)
    assert grad_m != 0.0


@pytest.mark.spec("Q4")
def test_collapse_gradient_uses_collapsed_other_width():
    x = sample()
    grad_output = sample(seed=2)
    rng = np.random.default_rng(5)
    result = quantum_narrow(x, 4.5, 3.5, rng=rng)
    _, grad_e, grad_m = quantum_vjp(result.context, grad_output)

    e_c, m_c = result.exponent_bits, result.mantissa_bits
    g = grad_output.astype(np.float64)
    expected_m = np.sum(g * (narrow(x, e_c, 4).astype(np.float64) - narrow(x, e_c, 3)))
    expected_e = np.sum(g * (narrow(x, 5, m_c).astype(np.float64) - narrow(x, 4, m_c)))
    # float32 products round once each, so the sums agree to about 1e-7
    assert grad_m == pytest.approx(float(expected_m), rel=1e-6)
    assert grad_e == pytest.approx(float(expected_e), rel=1e-6)


@pytest.mark.spec("Q5")
def test_straight_through_at_flush_boundary():
    # Anchor 0 (max 1.0): with e = 2 the window contains exponents -2..0, so 2^-2 is the
    # smallest normal. A value just below it rounds up to it at m = 3; 0.9 of it flushes.
    min_normal = 0.25
    x = np.float32([1.0, min_normal, np.nextafter(np.float32(min_normal), 0), min_normal * 0.9,
                    -min_normal * 0.9, -min_normal / 4, 0.0, -0.0])
    result = quantum_narrow(x, 2.0, 3.0, mode="interpolate")
    grad_output = np.arange(1, x.size + 1, dtype=np.float64)

    grad_x, _, _ = quantum_vjp(result.context, grad_output)

    assert result.value[2] == min_normal
    assert result.value[3] == 0.0
    assert result.value[4] == 0.0
    assert np.signbit(result.value[4])
    assert np.array_equal(grad_x, grad_output.astype(np.float32))
    assert grad_x.dtype == np.float32


@pytest.mark.spec("Q2")
@pytest.mark.parametrize("n, n0", [(3.3, 3), (0.05, 0), (6.9, 6), (22.5, 22)])
def test_collapse_frequency_matches_fraction(n, n0):
    rng = np.random.default_rng(1234)
    draws = np.array([collapse(n, MANTISSA_RANGE, rng) for _ in range(4000)])
    ups = int(np.sum(draws == n0 + 1))

    assert set(np.unique(draws)) <= {n0, n0 + 1}
    assert stats.binomtest(ups, draws.size, n - n0).pvalue > 0.001


@pytest.mark.spec("Q2")
def test_collapse_frequency_detects_wrong_fraction():
    # The same test rejects a fraction that is off by 0.05, so it can fail.
    rng = np.random.default_rng(1234)
    draws = np.array([collapse(3.3, MANTISSA_RANGE, rng) for _ in range(4000)])
    assert stats.binomtest(int(np.sum(draws == 4)), draws.size, 0.35).pvalue < 0.001


@pytest.mark.spec("Q2")
def test_collapsed_tensor_is_member_of_its_container():
    from reference import encode

    x = sample()
    rng = np.random.default_rng(3)
    for e, m in [(3.4, 1.2), (1.0, 0.0), (8.0, 23.0), (4.9, 6.5)]:
        result = quantum_narrow(x, e, m, rng=rng)
        container = Container.training(result.exponent_bits, result.mantissa_bits)
        encode(result.value, container, anchor=max_anchor(x, container))
        assert np.array_equal(result.value, narrow(x, result.exponent_bits, result.mantissa_bits))


@pytest.mark.spec("Q2")
def test_integer_width_never_collapses_up():
    rng = np.random.default_rng(0)
    assert {collapse(5.0, MANTISSA_RANGE, rng) for _ in range(200)} == {5}
    assert {collapse(23.0, MANTISSA_RANGE, rng) for _ in range(200)} == {23}
    assert {collapse(1.0, EXPONENT_RANGE, rng) for _ in range(200)} == {1}


@pytest.mark.spec("Q2", "F1")
def test_interpolation_stores_ceiling_width():
    rng = np.random.default_rng(0)
    assert stored_width(3.2, MANTISSA_RANGE, "interpolate", rng) == 4
    assert stored_width(3.0, MANTISSA_RANGE, "interpolate", rng) == 3
    result = quantum_narrow(sample(), 4.1, 2.7, mode="interpolate")
    assert (result.exponent_bits, result.mantissa_bits) == (5, 3)


@pytest.mark.spec("Q2")
def test_interpolation_at_integer_width_is_container_value():
    x = sample()
    result = quantum_narrow(x, 4.0, 3.0, mode="interpolate")
    assert np.array_equal(result.value, narrow(x, 4, 3))


@pytest.mark.spec("Q1")
@pytest.mark.parametrize("n, width_range", [(-0.5, MANTISSA_RANGE), (23.5, MANTISSA_RANGE),
                                            (0.5, EXPONENT_RANGE), (8.01, EXPONENT_RANGE)])
def test_width_out_of_range_raises(n, width_range):
    with pytest.raises(ValueError, match="width: must be in"):
        split_width(n, width_range)


@pytest.mark.spec("Q6", "TQ2")
def test_footprint_penalty_gradient_matches_finite_difference():
    elements = np.array([100, 7, 4000])
    e = np.array([4.2, 8.0, 2.5])
    m = np.array([3.0, 23.0, 0.5])
    value, grad_e, grad_m = footprint_penalty(elements, e, m, gamma=0.03)

    h = 1e-6
    for t in range(3):
        step = np.zeros(3)
        step[t] = h
        fd_m = (footprint_penalty(elements, e, m + step, 0.03)[0]
                - footprint_penalty(elements, e, m - step, 0.03)[0]) / (2 * h)
        fd_e = (footprint_penalty(elements, e + step, m, 0.03)[0]
                - footprint_penalty(elements, e - step, m, 0.03)[0]) / (2 * h)
        assert grad_m[t] == pytest.approx(fd_m, rel=1e-6)
        assert grad_e[t] == pytest.approx(fd_e, rel=1e-6)

    mean_bits = np.sum(elements * (1 + e + m)) / elements.sum()
    assert value == pytest.approx(0.03 * mean_bits, rel=1e-12)


@pytest.mark.spec("Q3")
@pytest.mark.parametrize("e", [1, 3, 8])
def test_neighbour_difference_exact_in_float32(e):
    x = sample(shape=(4096,), seed=7)
    for m in range(0, 23):
        low = narrow(x, e, m)
        high = narrow(x, e, m + 1)
        exact = high.astype(np.float64) - low.astype(np.float64)
        assert np.array_equal((high - low).astype(np.float64), exact), m
