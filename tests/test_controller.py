"""BitChop and BitWave controllers (SPEC.md section B)."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference import controller
from reference.controller import bitchop_config, bitwave_config


def run(config, losses, lrs=None):
    """Feed ``losses`` to a fresh controller; return the final state and all decisions."""
    state = controller.init(config)
    decisions = []
    for step, loss in enumerate(losses):
        lr = 1e-3 if lrs is None else lrs[step]
        state, decision = controller.update(state, loss, lr, config)
        decisions.append(decision)
    return state, decisions


def falling_losses(steps, rate=0.97):
    return [2.0 * rate**t for t in range(steps)]


@pytest.mark.spec("B1")
def test_init_starts_at_bf16_widths():
    state = controller.init(bitwave_config())
    assert (state.mantissa_bits, state.exponent_bits) == (7, 8)


@pytest.mark.spec("B2", "B4")
@given(
    losses=st.lists(
        st.one_of(
            st.floats(min_value=1e-3, max_value=1e3),
            st.sampled_from([math.nan, math.inf]),
        ),
        min_size=1, max_size=300,
    ),
    adapt_exponent=st.booleans(),
)
def test_widths_stay_in_range(losses, adapt_exponent):
    config = controller.ControllerConfig(
        adapt_exponent=adapt_exponent, period=2, warmup_steps=0, cooldown_steps=3,
        start_mantissa_bits=5, start_exponent_bits=6, mantissa_min=1, exponent_min=3,
    )
    state = controller.init(config)
    for loss in losses:
        state, _ = controller.update(state, loss, 1e-3, config)
        assert 1 <= state.mantissa_bits <= 5
        assert 3 <= state.exponent_bits <= 6
        if not adapt_exponent:
            assert state.exponent_bits == 6


@pytest.mark.spec("B2", "B3")
def test_falling_loss_narrows_mantissa_then_exponent():
    config = bitwave_config(warmup_steps=10)
    state = controller.init(config)
    mantissa_at_first_exponent_move = None
    decisions = []
    for loss in falling_losses(200):
        state, decision = controller.update(state, loss, 1e-3, config)
        decisions.append(decision)
        if state.exponent_bits < 8 and mantissa_at_first_exponent_move is None:
            mantissa_at_first_exponent_move = state.mantissa_bits

    assert (state.mantissa_bits, state.exponent_bits) == (1, 3)
    assert mantissa_at_first_exponent_move == 1
    assert "widen" not in decisions


@pytest.mark.spec("B2")
def test_bitchop_keeps_exponent():
    state, _ = run(bitchop_config(warmup_steps=10), falling_losses(200))
    assert state.mantissa_bits == 1
    assert state.exponent_bits == 8


@pytest.mark.spec("B2")
def test_no_decision_during_warmup():
    config = bitwave_config(warmup_steps=50)
    _, decisions = run(config, falling_losses(50))
    assert set(decisions) <= {"none", "warmup"}


@pytest.mark.spec("B2", "B3")
def test_loss_jump_widens_and_holds():
    config = bitwave_config(warmup_steps=10, cooldown_steps=20)
    state, _ = run(config, falling_losses(200))
    assert (state.mantissa_bits, state.exponent_bits) == (1, 3)

    for loss in [state.reference_loss * 2.0] * 5:
        state, decision = controller.update(state, loss, 1e-3, config)
    assert decision == "widen"
    assert (state.mantissa_bits, state.exponent_bits) == (1, 4)

    # The loss falls clearly again, but the cooldown keeps the widths for 20 steps.
    decisions_in_cooldown = []
    for loss in falling_losses(15, rate=0.9):
        state, decision = controller.update(state, loss * 1e-3, 1e-3, config)
        decisions_in_cooldown.append(decision)
    assert "narrow" not in decisions_in_cooldown
    assert (state.mantissa_bits, state.exponent_bits) == (1, 4)


@pytest.mark.spec("B3")
def test_widen_restores_mantissa_when_exponent_is_full():
    config = bitwave_config(warmup_steps=0, period=2, cooldown_steps=0)
    state = controller.init(config)._replace(mantissa_bits=2, reference_loss=1.0)
    for loss in [5.0, 5.0]:
        state, decision = controller.update(state, loss, 1e-3, config)
    assert decision == "widen"
    assert (state.mantissa_bits, state.exponent_bits) == (3, 8)


@pytest.mark.spec("B2")
def test_noise_inside_dead_band_holds():
    rng = np.random.default_rng(0)
    losses = 1.0 + rng.uniform(-0.03, 0.03, size=400)
    state, decisions = run(bitwave_config(dead_band=0.05), losses)
    assert (state.mantissa_bits, state.exponent_bits) == (7, 8)
    assert "narrow" not in decisions
    assert "widen" not in decisions


@pytest.mark.spec("B2")
def test_noise_beyond_dead_band_moves():
    # The same noise with a dead-band below its spread makes the controller move, so the test
    # above is not passing merely because nothing ever moves.
    rng = np.random.default_rng(0)
    losses = 1.0 + rng.uniform(-0.03, 0.03, size=400)
    _, decisions = run(bitwave_config(dead_band=0.001), losses)
    assert "narrow" in decisions or "widen" in decisions


def lr_drop_schedule():
    lrs = [1e-3] * 100 + [1e-4] * 100
    losses = [1.0] * 100 + [0.5] * 100
    return losses, lrs


@pytest.mark.spec("B5")
def test_scheduled_lr_drop_is_not_improvement():
    losses, lrs = lr_drop_schedule()
    state, decisions = run(bitwave_config(), losses, lrs)
    assert decisions[100] == "reset"
    assert (state.mantissa_bits, state.exponent_bits) == (7, 8)


@pytest.mark.spec("B5")
def test_lr_drop_without_guard_narrows():
    losses, lrs = lr_drop_schedule()
    state, _ = run(bitwave_config(lr_tolerance=math.inf), losses, lrs)
    assert state.mantissa_bits < 7


@pytest.mark.spec("B4")
def test_nonfinite_loss_widens_without_poisoning_reference():
    config = bitwave_config(warmup_steps=0, period=2)
    state = controller.init(config)._replace(mantissa_bits=3, reference_loss=1.0)
    for loss in [1.0, math.nan]:
        state, decision = controller.update(state, loss, 1e-3, config)
    assert decision == "widen"
    assert state.mantissa_bits == 4
    assert state.reference_loss == 1.0


@pytest.mark.spec("B2")
def test_narrow_step_removes_several_bits():
    config = bitwave_config(warmup_steps=0, period=2, narrow_step=3)
    state = controller.init(config)._replace(reference_loss=2.0)
    for loss in [1.0, 1.0]:
        state, decision = controller.update(state, loss, 1e-3, config)
    assert decision == "narrow"
    assert state.mantissa_bits == 4


@pytest.mark.spec("B1")
@pytest.mark.parametrize("override", [
    {"period": 0},
    {"ema_decay": 1.0},
    {"dead_band": -0.1},
    {"mantissa_min": 8},
    {"exponent_min": 0},
    {"start_mantissa_bits": 24, "mantissa_min": 1},
    {"narrow_step": 0},
])
def test_invalid_config_raises(override):
    with pytest.raises(ValueError, match="controller config"):
        bitwave_config(**override)


@pytest.mark.spec("B5")
def test_fast_decaying_lr_takes_no_decisions():
    # Each step moves the rate by 20%, more than lr_tolerance, so every step restarts R.
    lrs = [1e-3 * 0.8**t for t in range(100)]
    state, decisions = run(bitwave_config(warmup_steps=0), falling_losses(100), lrs)
    assert set(decisions[1:]) == {"reset"}
    assert (state.mantissa_bits, state.exponent_bits) == (7, 8)
