"""Training methods that store weights and activations in narrow containers.

- ``fixed``: every tensor at fixed integer widths (e, m).
- ``bitchop`` and ``bitwave``: one network-wide (e, m) set by a loss-driven controller
  (:mod:`reference.controller`).
- ``quantum``: a learned real (e, m) per tensor (:mod:`numpyml.quantum`,
  :mod:`reference.bitlength`).

All of them build on :class:`numpyml.narrowing_method.NarrowingMethod`. This module also adds
their options to ``sfp train``.
"""

import logging

import numpy as np

from numpyml.narrowing_method import DEFAULT_GECKO_EVERY, ROUNDINGS, NarrowingMethod
from numpyml.quantum import QuantumConfig, QuantumNarrowing
from reference import bitlength, controller

logger = logging.getLogger(__name__)

__all__ = ["DEFAULT_GECKO_EVERY", "ROUNDINGS", "NarrowingMethod", "FixedNarrowing",
           "ControllerNarrowing", "QuantumConfig", "QuantumNarrowing", "bitchop", "bitwave",
           "METHODS", "add_arguments", "method_from_arguments"]


class FixedNarrowing(NarrowingMethod):
    """Every tracked tensor at the same fixed widths; the default is BF16's (8, 7)."""

    name = "fixed"

    def __init__(self, exponent_bits=8, mantissa_bits=7, rounding="nearest_even"):
        super().__init__(rounding)
        # Building the container checks the widths before training starts.
        bitlength.training_container(exponent_bits, mantissa_bits, rounding)
        self.exponent_bits = int(exponent_bits)
        self.mantissa_bits = int(mantissa_bits)

    def widths(self, key):
        return self.exponent_bits, self.mantissa_bits

    def settings(self):
        return {**super().settings(), "exponent_bits": self.exponent_bits,
                "mantissa_bits": self.mantissa_bits}


class ControllerNarrowing(NarrowingMethod):
    """One network-wide pair of widths, set by BitChop or BitWave from the training loss."""

    def __init__(self, config, rounding="nearest_even"):
        super().__init__(rounding)
        self.config = config
        self.name = "bitwave" if config.adapt_exponent else "bitchop"
        self.state = controller.init(config)

    def widths(self, key):
        return self.state.exponent_bits, self.state.mantissa_bits

    def after_step(self, step, loss, learning_rate):
        self.state, decision = controller.update(self.state, loss, learning_rate, self.config)
        self.history.append((step, "network", "all", self.state.exponent_bits,
                             self.state.mantissa_bits))
        if decision in (controller.NARROW, controller.WIDEN):
            logger.info("step %d: %s %s to e=%d m=%d", step, self.name, decision,
                        self.state.exponent_bits, self.state.mantissa_bits)
        super().after_step(step, loss, learning_rate)

    def settings(self):
        return {**super().settings(), **self.config._asdict()}

    def state_dict(self):
        fields = {f"controller_{name}": np.asarray(value)
                  for name, value in self.state._asdict().items()}
        return {**super().state_dict(), **fields}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        fields = {}
        for name, default in self.state._asdict().items():
            fields[name] = type(default)(state[f"controller_{name}"])
        self.state = controller.ControllerState(**fields)


def bitchop():
    return ControllerNarrowing(controller.bitchop_config())


def bitwave():
    return ControllerNarrowing(controller.bitwave_config())


# Method name -> factory taking no arguments, merged into numpyml.methods.METHODS.
METHODS = {
    "fixed": FixedNarrowing,
    "bitchop": bitchop,
    "bitwave": bitwave,
    "quantum": QuantumNarrowing,
}


def add_arguments(parser):
    """Add the options of the narrowing methods to the ``sfp train`` parser."""
    group = parser.add_argument_group("narrowing methods (fixed, bitchop, bitwave, quantum)")
    group.add_argument("--rounding", choices=ROUNDINGS, default="nearest_even",
                       help="rounding of stored tensors (default: %(default)s)")
    group.add_argument("--exponent-bits", type=int, default=8,
                       help="exponent bits of --method fixed, 1..8 (default: %(default)s)")
    group.add_argument("--mantissa-bits", type=int, default=7,
                       help="mantissa bits of --method fixed, 0..23 (default: %(default)s)")
    group.add_argument("--gamma", type=float, default=0.03,
                       help="weight of the footprint term (mean stored bits per value) in the "
                       "loss of --method quantum (default: %(default)s)")
    group.add_argument("--collapse-mode", choices=bitlength.MODES, default="collapse",
                       help="how --method quantum applies a fractional width: draw one of the "
                       "two neighbouring widths, or blend them (default: %(default)s)")
    group.add_argument("--mantissa-min", type=float, default=None,
                       help="smallest mantissa width, in bits (default: 1)")
    group.add_argument("--exponent-min", type=float, default=None,
                       help="smallest exponent width, in bits (default: 1 for quantum, "
                       "3 for bitwave; bitchop keeps the exponent at 8 bits and rejects "
                       "this option)")
    group.add_argument("--baseline", action="store_true",
                       help="also train FP32 with the same seed and report the difference")
    group.add_argument("--gecko-every", type=int, default=DEFAULT_GECKO_EVERY, metavar="STEPS",
                       help="pack every stored tensor with Gecko every STEPS training steps to "
                       "measure the footprint with Gecko; 0 turns it off (default: %(default)s)")


def method_from_arguments(args):
    """Return the method that ``sfp train`` options select, or None for ``fp32``."""
    method = _method_of(args)
    if method is not None:
        method.set_gecko_every(getattr(args, "gecko_every", DEFAULT_GECKO_EVERY))
    return method


def _method_of(args):
    if args.method == "fixed":
        return FixedNarrowing(args.exponent_bits, args.mantissa_bits, rounding=args.rounding)
    floors = {}
    if args.mantissa_min is not None:
        floors["mantissa_min"] = args.mantissa_min
    if args.exponent_min is not None:
        floors["exponent_min"] = args.exponent_min
    if args.method == "quantum":
        config = QuantumConfig(gamma=args.gamma, mode=args.collapse_mode, **floors)
        return QuantumNarrowing(config, rounding=args.rounding)
    if args.method in ("bitchop", "bitwave"):
        floors = {name: int(value) for name, value in floors.items()}
        make_config = (controller.bitwave_config if args.method == "bitwave"
                       else controller.bitchop_config)
        return ControllerNarrowing(make_config(**floors), rounding=args.rounding)
    return None