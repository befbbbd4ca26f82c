"""BitChop and BitWave: loss-driven, network-wide bitlength controllers.

A controller stores one (mantissa_bits, exponent_bits) pair for every narrowed tensor of the
network and adjusts it from the training loss alone. Every ``period`` steps it compares the mean
loss of the last ``period`` steps with an exponential moving average of earlier window means:

- window mean < reference · (1 − dead_band): the loss is clearly better, so remove one bit;
- window mean > reference · (1 + dead_band), or not finite: clearly worse, so add one bit back
  and hold the widths for ``cooldown_steps``;
- otherwise hold.

BitChop moves only the mantissa. BitWave moves the mantissa first, down to ``mantissa_min``, and
only then the exponent, down to ``exponent_min``. Widening undoes the most recent narrowing: the
exponent is restored first whenever it is below its starting width. This order keeps precision
(cheap to remove while the loss still falls) ahead of range (whose loss flushes whole binades).

Both start from the BF16 widths (m = 7, e = 8), because a start at FP32 widths spends 16
one-bit decisions before it stores fewer bits than BF16, which caps the whole-run ratio of a
short run far below that of the learned widths. They remove one bit per narrowing decision by
default (``narrow_step``). Two bits per decision reach a higher ratio but lose more accuracy
on some seeds.

The controller is a pure ``init``/``update`` pair over an immutable :class:`ControllerState`,
so a checkpoint is the state tuple itself.

>>> config = bitwave_config(period=2, warmup_steps=0)
>>> state = init(config)
>>> for loss in [4.0, 4.0, 2.0, 2.0]:
...     state, decision = update(state, loss, lr=1e-3, config=config)
>>> decision, state.mantissa_bits, state.exponent_bits
('narrow', 6, 8)
"""

import logging
import math
from typing import NamedTuple

logger = logging.getLogger(__name__)

# Decisions returned by ``update``. NONE means that no window ended at this step.
NONE = "none"
WARMUP = "warmup"
HOLD = "hold"
NARROW = "narrow"
WIDEN = "widen"
COOLDOWN = "cooldown"
RESET = "reset"


class ControllerConfig(NamedTuple):
    """Constants of a BitChop or BitWave controller (see the module docstring for the rule)."""

    period: int = 5
    """steps per loss window, and so steps between decisions"""
    warmup_steps: int = 20
    """steps before the first decision; their windows only build the reference"""
    dead_band: float = 0.05
    """relative change of the window mean against the reference that counts as a change"""
    ema_decay: float = 0.8
    """weight of the old reference when a window mean is folded in (per window, in [0, 1))"""
    cooldown_steps: int = 20
    """steps after a widening in which the controller does not narrow"""
    lr_tolerance: float = 0.1
    """relative learning-rate change that restarts the reference instead of being judged"""
    adapt_exponent: bool = True
    """False for BitChop (mantissa only), True for BitWave"""
    start_mantissa_bits: int = 7
    start_exponent_bits: int = 8
    mantissa_min: int = 1
    exponent_min: int = 3
    narrow_step: int = 1
    """bits removed per narrowing decision (widening always adds one bit)"""


class ControllerState(NamedTuple):
    """Immutable controller state; every field is a Python scalar."""

    step: int
    """steps seen so far"""
    mantissa_bits: int
    exponent_bits: int
    window_sum: float
    """sum of the losses of the current window"""
    window_count: int
    reference_loss: float
    """exponential moving average of window means; NaN until the first window ends"""
    reference_lr: float
    """learning rate when the reference started; NaN before the first step"""
    cooldown: int
    """steps left in which no narrowing happens"""


def bitchop_config(**overrides):
    """Return the BitChop constants: mantissa only, exponent fixed at its starting width."""
    return _checked(ControllerConfig(adapt_exponent=False)._replace(**overrides))


def bitwave_config(**overrides):
    """Return the BitWave constants: mantissa first, then exponent."""
    return _checked(ControllerConfig(adapt_exponent=True)._replace(**overrides))


def init(config):
    """Return the state at step 0: starting widths, no reference, no cooldown."""
    config = _checked(config)
    return ControllerState(
        step=0,
        mantissa_bits=config.start_mantissa_bits,
        exponent_bits=config.start_exponent_bits,
        window_sum=0.0,
        window_count=0,
        reference_loss=math.nan,
        reference_lr=math.nan,
        cooldown=0,
    )


def update(state, loss, lr, config):
    """Fold one step's training loss into the state; return ``(new_state, decision)``.

    ``loss`` is the step's task loss (a float; NaN and inf count as clearly worse). ``lr`` is the
    learning rate the trainer used at this step. A change of ``lr`` by more than
    ``config.lr_tolerance`` relative to the rate at which the reference started discards the
    reference and the current window, because a scheduled drop makes the loss fall at once and
    would otherwise read as "clearly better".
    """
    loss = float(loss)
    lr = float(lr)
    cooldown = max(state.cooldown - 1, 0)
    if math.isnan(state.reference_lr):
        state = state._replace(reference_lr=lr)
    elif abs(lr - state.reference_lr) > config.lr_tolerance * abs(state.reference_lr):
        logger.debug("step %d: learning rate %g -> %g, reference restarted",
                     state.step, state.reference_lr, lr)
        restarted = state._replace(
            step=state.step + 1, window_sum=loss, window_count=1,
            reference_loss=math.nan, reference_lr=lr, cooldown=cooldown,
        )
        return restarted, RESET

    state = state._replace(
        step=state.step + 1,
        window_sum=state.window_sum + loss,
        window_count=state.window_count + 1,
        cooldown=cooldown,
    )
    if state.window_count < config.period:
        return state, NONE

    window_mean = state.window_sum / state.window_count
    state = state._replace(window_sum=0.0, window_count=0)
    decision = _decide(state, window_mean, config)
    state = _apply(state, decision, config)
    state = _fold_reference(state, window_mean, config)
    if decision in (NARROW, WIDEN):
        logger.debug("step %d: %s to m=%d e=%d (window %.4g, reference %.4g)",
                     state.step, decision, state.mantissa_bits, state.exponent_bits,
                     window_mean, state.reference_loss)
    return state, decision


def _decide(state, window_mean, config):
    if not math.isfinite(window_mean):
        return WIDEN
    if math.isnan(state.reference_loss) or state.step <= config.warmup_steps:
        return WARMUP
    relative_change = (window_mean - state.reference_loss) / abs(state.reference_loss)
    if relative_change > config.dead_band:
        return WIDEN
    if state.cooldown > 0:
        return COOLDOWN
    if relative_change < -config.dead_band:
        return NARROW
    return HOLD


def _apply(state, decision, config):
    if decision == NARROW:
        return _narrowed(state, config)
    if decision == WIDEN:
        return _widened(state, config)._replace(cooldown=config.cooldown_steps)
    return state


def _narrowed(state, config):
    if state.mantissa_bits > config.mantissa_min:
        mantissa_bits = max(state.mantissa_bits - config.narrow_step, config.mantissa_min)
        return state._replace(mantissa_bits=mantissa_bits)
    if config.adapt_exponent and state.exponent_bits > config.exponent_min:
        exponent_bits = max(state.exponent_bits - config.narrow_step, config.exponent_min)
        return state._replace(exponent_bits=exponent_bits)
    return state


def _widened(state, config):
    if config.adapt_exponent and state.exponent_bits < config.start_exponent_bits:
        return state._replace(exponent_bits=state.exponent_bits + 1)
    if state.mantissa_bits < config.start_mantissa_bits:
        return state._replace(mantissa_bits=state.mantissa_bits + 1)
    return state


def _fold_reference(state, window_mean, config):
    # A non-finite window would poison the average for good, so it is left out.
    if not math.isfinite(window_mean):
        return state
    if math.isnan(state.reference_loss):
        return state._replace(reference_loss=window_mean)
    folded = config.ema_decay * state.reference_loss + (1.0 - config.ema_decay) * window_mean
    return state._replace(reference_loss=folded)


def _checked(config):
    checks = (
        ("period", config.period >= 1, "must be >= 1"),
        ("warmup_steps", config.warmup_steps >= 0, "must be >= 0"),
        ("dead_band", config.dead_band >= 0, "must be >= 0"),
        ("ema_decay", 0 <= config.ema_decay < 1, "must be in [0, 1)"),
        ("cooldown_steps", config.cooldown_steps >= 0, "must be >= 0"),
        ("lr_tolerance", config.lr_tolerance >= 0, "must be >= 0"),
        ("narrow_step", config.narrow_step >= 1, "must be >= 1"),
        ("mantissa_min", 0 <= config.mantissa_min <= config.start_mantissa_bits <= 23,
         "must satisfy 0 <= mantissa_min <= start_mantissa_bits <= 23"),
        ("exponent_min", 1 <= config.exponent_min <= config.start_exponent_bits <= 8,
         "must satisfy 1 <= exponent_min <= start_exponent_bits <= 8"),
    )
    for name, holds, rule in checks:
        if not holds:
            raise ValueError(f"controller config {name}: {rule}; got {config} (fix the constant)")
    return config
