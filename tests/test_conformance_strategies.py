"""The conformance strategies reach every hard case they claim to aim at."""

from fractions import Fraction

import pytest
from hypothesis import HealthCheck, Phase, find, settings

from conformance import oracle
from conformance.strategies import quantize_cases, stochastic_threshold
from conformance.suites.compare import is_tie

# No shrinking: finding one example is the proof, and shrinking it costs most of the time.
SEARCH = settings(max_examples=2000, derandomize=True, database=None, deadline=None,
                  phases=(Phase.generate,),
                  suppress_health_check=list(HealthCheck))


def magnitude(bits):
    return oracle.fp32_decode(bits)[0]


def has_tie(case):
    return case.container.rounding == "nearest_even" and any(
        is_tie(b, case.grid) for b in case.bits)


def has_container_subnormal(case):
    grid = case.grid
    if not grid.subnormals or grid.mantissa_bits == 0:
        return False
    low, high = oracle.TWO ** (grid.emin - grid.mantissa_bits), oracle.TWO**grid.emin
    return any(not isinstance(magnitude(b), str) and low <= magnitude(b) < high
               for b in case.bits)


def has_overflow_threshold(case):
    grid = case.grid
    threshold = grid.max_value + oracle.TWO ** (grid.emax - grid.mantissa_bits - 1)
    return any(magnitude(b) == threshold for b in case.bits)


def has_value_just_above_max(case):
    grid = case.grid
    return any(not isinstance(magnitude(b), str)
               and grid.max_value < magnitude(b) <= grid.max_value * Fraction(1001, 1000)
               for b in case.bits)


def has_negative_zero(case):
    return 0x8000_0000 in case.bits


def has_nan_payload(case):
    return any((b & 0x7FFF_FFFF) > 0x7F80_0000 and (b & 0x7FFF_FFFF) != 0x7FC0_0000
               for b in case.bits)


def has_value_below_power_of_two(case):
    # All 24 significand bits set: a float32 log2 rounds these up to the next integer.
    return any(0 < (b >> 23) & 0xFF < 0xFF and b & 0x7F_FFFF == 0x7F_FFFF for b in case.bits)


def has_fp32_subnormal(case):
    return any((b >> 23) & 0xFF == 0 and b & 0x7F_FFFF for b in case.bits)


def has_noise_at_threshold(case):
    return case.noise is not None and any(
        0 < stochastic_threshold(b, case.grid) == n for b, n in zip(case.bits, case.noise))


HARD_CASES = [
    ("tie", "fp32", has_tie),
    ("container subnormal", "fp32", has_container_subnormal),
    ("overflow threshold", "fp32", has_overflow_threshold),
    ("just above max", "fp32", has_value_just_above_max),
    ("negative zero", "fp32", has_negative_zero),
    ("NaN payload", "fp32", has_nan_payload),
    ("below power of two", "fp32", has_value_below_power_of_two),
    ("fp32 subnormal", "fp32", has_fp32_subnormal),
    ("bf16 tie", "bf16", has_tie),
    ("bf16 overflow threshold", "bf16", has_overflow_threshold),
]


@pytest.mark.spec("C8", "C12", "C13", "C14", "C16", "C7")
@pytest.mark.parametrize(("name", "base", "predicate"), HARD_CASES, ids=[c[0] for c in HARD_CASES])
def test_strategy_reaches_hard_case(name, base, predicate):
    case = find(quantize_cases(base), predicate, settings=SEARCH)
    assert predicate(case)


@pytest.mark.spec("C10")
def test_noise_strategy_reaches_threshold():
    strategy = quantize_cases("fp32", roundings=("stochastic",))
    case = find(strategy, has_noise_at_threshold, settings=SEARCH)
    assert has_noise_at_threshold(case)


@pytest.mark.spec("C6")
def test_max_anchor_cases_keep_anchor_max():
    case = find(quantize_cases("fp32", anchor_max=True), lambda c: True, settings=SEARCH)
    assert case.anchor == "max"


def widths_path(case):
    from conformance.suites.bitwave import SpecController

    config, losses, lrs = case
    model = SpecController(config)
    return [model.update(loss, lr) for loss, lr in zip(losses, lrs)]


def narrows_then_widens(case):
    path = widths_path(case)
    narrowed = [i for i in range(1, len(path)) if sum(path[i]) < sum(path[i - 1])]
    return bool(narrowed) and any(sum(path[i]) > sum(path[i - 1])
                                  for i in range(narrowed[0] + 1, len(path)))


def narrows_exponent(case):
    path = widths_path(case)
    return any(path[i][0] < path[i - 1][0] for i in range(1, len(path)))


def has_non_finite_loss(case):
    return any(loss != loss or loss in (float("inf"), float("-inf")) for loss in case[1])


def has_learning_rate_drop(case):
    return len(set(case[2])) > 1


TRAJECTORY_CASES = [
    ("narrow then widen", narrows_then_widens),
    ("exponent narrowed", narrows_exponent),
    ("non-finite loss", has_non_finite_loss),
    ("learning rate drop", has_learning_rate_drop),
]


@pytest.mark.spec("B2", "B3", "B4", "B5")
@pytest.mark.parametrize(("name", "predicate"), TRAJECTORY_CASES,
                         ids=[c[0] for c in TRAJECTORY_CASES])
def test_trajectory_strategy_reaches(name, predicate):
    from conformance.suites.bitwave import trajectories

    case = find(trajectories(), predicate, settings=SEARCH)
    assert predicate(case)
