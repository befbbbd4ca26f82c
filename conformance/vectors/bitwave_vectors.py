"""Golden vectors of SPEC.md section B: controller widths after every step."""

import math

from conformance.suites.bitwave import SpecController
from reference.controller import ControllerConfig

DESCRIPTION = (
    "kind 'controller': config (every ControllerConfig field), losses and lrs (float.hex, one "
    "per step; 'nan' and 'inf' included), widths ([e, m] after each step)."
)


def falling(steps, rate=0.97):
    return [2.0 * rate**i for i in range(steps)]


CASES = [
    ("bitwave_defaults_falling", ["B1", "B2", "B3"], ControllerConfig(), falling(200), None),
    ("bitchop_defaults_falling", ["B1", "B3"], ControllerConfig(adapt_exponent=False),
     falling(200), None),
    ("rise_then_fall", ["B2", "B3"], ControllerConfig(warmup_steps=5, cooldown_steps=10),
     falling(40) + [3.0] * 10 + falling(60, 0.95), None),
    ("rise_in_warmup", ["B2"], ControllerConfig(period=1, warmup_steps=3, cooldown_steps=10,
                                                 ema_decay=0.0),
     [1.0, 2.0, 1.0, 0.5, 0.25, 0.1], None),
    ("non_finite_window", ["B4"], ControllerConfig(warmup_steps=0),
     falling(30) + [math.nan] + falling(20) + [math.inf] + falling(30), None),
    ("learning_rate_drop", ["B5"], ControllerConfig(warmup_steps=0),
     falling(120), [0.1] * 60 + [0.01] * 60),
]


def record(name, rules, config, losses, lrs):
    lrs = lrs or [1e-3] * len(losses)
    model = SpecController(config)
    widths = [list(model.update(loss, lr)) for loss, lr in zip(losses, lrs)]
    return {
        "kind": "controller", "name": name, "rules": rules, "config": config._asdict(),
        "losses": [float(v).hex() for v in losses], "lrs": [float(v).hex() for v in lrs],
        "widths": widths,
    }


def build():
    return DESCRIPTION, [record(*case) for case in CASES]
