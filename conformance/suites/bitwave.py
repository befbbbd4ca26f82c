"""Checks of SPEC.md section B: the BitChop/BitWave controller step, against a model of B2-B5.

The model below is written from the rules alone. It and the backend see the same losses and
learning rates, and the check compares the widths (e, m) after every step: the observable
output of a controller. State layouts and decision names are the backend's own.
"""

from dataclasses import dataclass
import math

from hypothesis import strategies as st

from conformance.registry import Mismatch, check, run_property
from reference.controller import ControllerConfig

SUITE = "bitwave"


@dataclass
class SpecController:
    """The controller of SPEC.md B2-B5, one step at a time."""

    config: ControllerConfig
    step: int = 0
    window_sum: float = 0.0
    window_count: int = 0
    reference: float = None
    reference_lr: float = None
    cooldown: int = 0

    def __post_init__(self):
        self.mantissa_bits = self.config.start_mantissa_bits
        self.exponent_bits = self.config.start_exponent_bits

    def update(self, loss, lr):
        """Fold one step in (B2, B5); return the widths (e, m) after it."""
        c = self.config
        self.cooldown = max(self.cooldown - 1, 0)
        self.step += 1
        if self.reference_lr is None:
            self.reference_lr = lr
        elif abs(lr - self.reference_lr) > c.lr_tolerance * abs(self.reference_lr):
            # B5: discard the reference and the window; this step's loss starts a new window.
            self.reference, self.reference_lr = None, lr
            self.window_sum, self.window_count = loss, 1
            return self.widths
        self.window_sum += loss
        self.window_count += 1
        if self.window_count < c.period:
            return self.widths
        mean = self.window_sum / self.window_count
        self.window_sum, self.window_count = 0.0, 0
        self._decide(mean)
        if math.isfinite(mean):  # B4: a non-finite window is left out of the reference
            self.reference = mean if self.reference is None else \
                c.ema_decay * self.reference + (1 - c.ema_decay) * mean
        return self.widths

    @property
    def widths(self):
        return self.exponent_bits, self.mantissa_bits

    def _decide(self, mean):
        c = self.config
        if not math.isfinite(mean):
            self._widen()  # at any step, warm-up included
            return
        if self.reference is None or self.step <= c.warmup_steps:
            return  # the window only updates the reference
        change = (mean - self.reference) / abs(self.reference)
        if change > c.dead_band:
            self._widen()
        elif self.cooldown > 0:
            return
        elif change < -c.dead_band:
            self._narrow()

    def _widen(self):
        # B3: the exponent comes back first, never above the starting widths.
        c = self.config
        if c.adapt_exponent and self.exponent_bits < c.start_exponent_bits:
            self.exponent_bits += 1
        elif self.mantissa_bits < c.start_mantissa_bits:
            self.mantissa_bits += 1
        self.cooldown = c.cooldown_steps

    def _narrow(self):
        c = self.config
        if self.mantissa_bits > c.mantissa_min:
            self.mantissa_bits = max(self.mantissa_bits - c.narrow_step, c.mantissa_min)
        elif c.adapt_exponent and self.exponent_bits > c.exponent_min:
            self.exponent_bits = max(self.exponent_bits - c.narrow_step, c.exponent_min)


@st.composite
def configs(draw):
    start_m = draw(st.integers(1, 23), label="start_mantissa_bits")
    start_e = draw(st.integers(2, 8), label="start_exponent_bits")
    return ControllerConfig(
        period=draw(st.integers(1, 6), label="period"),
        warmup_steps=draw(st.integers(0, 12), label="warmup_steps"),
        dead_band=draw(st.sampled_from([0.0, 0.02, 0.05, 0.2]), label="dead_band"),
        ema_decay=draw(st.sampled_from([0.0, 0.5, 0.8]), label="ema_decay"),
        cooldown_steps=draw(st.integers(0, 10), label="cooldown_steps"),
        lr_tolerance=draw(st.sampled_from([0.0, 0.1, 0.5]), label="lr_tolerance"),
        adapt_exponent=draw(st.booleans(), label="adapt_exponent"),
        start_mantissa_bits=start_m, start_exponent_bits=start_e,
        mantissa_min=draw(st.integers(0, start_m), label="mantissa_min"),
        exponent_min=draw(st.integers(1, start_e), label="exponent_min"),
        narrow_step=draw(st.integers(1, 3), label="narrow_step"),
    )


@st.composite
def trajectories(draw):
    """Draw a config and 20-80 steps of (loss, lr): falling, rising, noisy, non-finite, lr drops."""
    config = draw(configs(), label="config")
    steps = draw(st.integers(20, 80), label="steps")
    loss, lr, losses, lrs = 2.0, 0.1, [], []
    for _ in range(steps):
        move = draw(st.sampled_from(["fall", "fall", "rise", "jump", "flat", "noise", "nan", "inf",
                                     "lr_drop"]), label="move")
        if move == "fall":
            loss *= 0.9
        elif move == "rise":
            loss *= 1.2
        elif move == "jump":
            loss *= 2.0
        elif move == "noise":
            loss *= draw(st.sampled_from([0.97, 1.03]), label="noise")
        elif move == "lr_drop":
            lr *= 0.1
        value = {"nan": math.nan, "inf": math.inf}.get(move, loss)
        losses.append(value)
        lrs.append(lr)
    return config, losses, lrs


def compare_trajectory(backend, config, losses, lrs):
    """Run the backend and the model side by side; raise Mismatch at the first width difference."""
    model = SpecController(config)
    state = backend.controller_init(config)
    for step, (loss, lr) in enumerate(zip(losses, lrs), start=1):
        expected = model.update(loss, lr)
        state, decision = backend.controller_update(state, loss, lr, config)
        actual = (state.exponent_bits, state.mantissa_bits)
        if actual != expected:
            raise Mismatch(_rule_of(losses[:step], lrs[:step], config), "widths differ",
                           {"config": config._asdict(), "step": step,
                            "losses": [float(v).hex() for v in losses[:step]],
                            "lrs": [float(v).hex() for v in lrs[:step]]},
                           f"(e, m) = {expected}", f"(e, m) = {actual} ({decision})")


def _rule_of(losses, lrs, config):
    if not all(math.isfinite(v) for v in losses[-config.period:]):
        return "B4"
    if len(lrs) > 1 and lrs[-1] != lrs[0]:
        return "B5"
    return "B2"


@check(SUITE, "controller-trajectory", ("B1", "B2", "B3", "B4", "B5"), {"bitwave"})
def controller_trajectory(backend, examples):
    """Check the widths after every step against the rules, for BitChop and BitWave."""
    run_property(lambda case: compare_trajectory(backend, *case), trajectories(), examples)


@check(SUITE, "controller-defaults", ("B1", "B2"), {"bitwave"})
def controller_defaults(backend, examples):
    """Check that the defaults start at (8, 7) and narrow on a falling loss."""
    config = ControllerConfig()
    state = backend.controller_init(config)
    if (state.exponent_bits, state.mantissa_bits) != (8, 7):
        raise Mismatch("B1", "start widths", {"config": "defaults"}, "(8, 7)",
                       str((state.exponent_bits, state.mantissa_bits)))
    losses = [2.0 * 0.97**i for i in range(60)]
    compare_trajectory(backend, config, losses, [1e-3] * len(losses))


@check(SUITE, "controller-warmup", ("B2",), {"bitwave"})
def controller_warmup(backend, examples):
    """Check that a rising loss in warm-up starts no cooldown, so narrowing follows it."""
    config = ControllerConfig(period=1, warmup_steps=3, cooldown_steps=10, dead_band=0.05,
                              ema_decay=0.0)
    compare_trajectory(backend, config, [1.0, 2.0, 1.0, 0.5, 0.25, 0.1], [0.1] * 6)


@check(SUITE, "golden-vectors", ("B1", "B2", "B3", "B4", "B5"), {"bitwave"})
def golden_vectors(backend, examples):
    """Check that every controller vector gives its widths after every step."""
    from conformance import vectors

    _, records = vectors.load("bitwave.jsonl")
    for record in records:
        config = ControllerConfig(**record["config"])
        state = backend.controller_init(config)
        losses = [float.fromhex(v) for v in record["losses"]]
        lrs = [float.fromhex(v) for v in record["lrs"]]
        for step, (loss, lr, want) in enumerate(zip(losses, lrs, record["widths"]), start=1):
            state, decision = backend.controller_update(state, loss, lr, config)
            got = [state.exponent_bits, state.mantissa_bits]
            if got != want:
                raise Mismatch(record["rules"][-1], "widths differ from the vector",
                               {"vector": record["name"], "step": step}, f"(e, m) = {want}",
                               f"(e, m) = {got} ({decision})")
