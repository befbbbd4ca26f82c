"""Training methods that store weights and activations in narrow containers.

Each method installs itself as the model's storage policy. Linear and Conv2d layers pass their
weight (as read from the FP32 master) and their input activation (as stashed for backward)
through it, and forward and backward both use what it returns. Master weights, gradients and
optimizer state stay FP32, and biases are never narrowed.

- ``fixed``: every tensor at fixed integer widths (e, m).
- ``bitchop`` and ``bitwave``: one network-wide (e, m) set by a loss-driven controller
  (:mod:`reference.controller`).
- ``quantum``: a learned real (e, m) per tensor (:mod:`reference.bitlength`).

Every stored instance of a training step is recorded in a :class:`FootprintLedger` at the
integer widths it was stored at. Every ``gecko_every`` steps each instance is also packed with
Gecko and its packed size recorded (SPEC.md F4). Evaluation passes (no gradient recording, or
``set_training(False)``) are not recorded and use the final containers.
"""

import json
import logging
import math

import numpy as np

from numpyml import optim
from numpyml import report as footprint_report
from numpyml.engine import Tensor, custom_op, is_grad_enabled
from reference import bitlength, controller, gecko
from reference.footprint import FootprintLedger
from reference.quantize import max_anchor

logger = logging.getLogger(__name__)

ROUNDINGS = ("nearest_even", "toward_zero", "stochastic")
# Stream of the run's seed that draws collapses and rounding noise, apart from initialization
# and batch order.
NARROWING_STREAM = 0x5F9
# Packing the eight stored tensors of the digits CNN costs about 10 ms of CPU per step, more
# than a quantum training step (8 ms), on a 2-core x86_64 machine. Packing one step in 20 added
# 5% to 6% CPU time to the main job (FP32 baseline, then quantum), 7% to 9% to quantum alone
# and 9% to 12% to bitwave alone (bench/bench_train_gecko.py).
DEFAULT_GECKO_EVERY = 20


class NarrowingMethod:
    """Base of the narrowing methods: the storage policy, footprint ledger and report.

    It implements every hook of :class:`numpyml.methods.Method` without subclassing it, so that
    ``numpyml.methods`` can import this module to register the methods. Subclasses define
    ``widths(key)``, the widths of a training step, and may override ``final_widths``,
    ``narrow_for_training`` and ``after_step``. ``key`` is ``(layer_name, kind)``.
    """

    def __init__(self, rounding="nearest_even"):
        if rounding not in ROUNDINGS:
            raise ValueError(f"narrowing rounding: must be one of {ROUNDINGS}; got {rounding!r}")
        self.rounding = rounding
        self.rng = np.random.default_rng([0, NARROWING_STREAM])
        self.ledger = FootprintLedger()
        self.step = 0
        self.training = True
        self.out_dir = None
        self.gecko_every = DEFAULT_GECKO_EVERY
        # rows (step, layer_name, kind, exponent_bits, mantissa_bits): the widths after each step
        self.history = []

    def attach(self, model, config):
        self.rng = np.random.default_rng([config.seed, NARROWING_STREAM])
        self.out_dir = config.out_dir
        model.set_storage_policy(self)
        return []

    def __call__(self, layer_name, kind, tensor):
        key = (layer_name, kind)
        if self.training and is_grad_enabled():
            return self.narrow_for_training(key, tensor)
        exponent_bits, mantissa_bits = self.final_widths(key)
        narrowed = bitlength.narrow(tensor.data, exponent_bits, mantissa_bits, self.rounding,
                                    self.rng)
        return custom_op([tensor], narrowed, _straight_through, name=f"narrow:{kind}")

    def narrow_for_training(self, key, tensor):
        exponent_bits, mantissa_bits = self.widths(key)
        narrowed = bitlength.narrow(tensor.data, exponent_bits, mantissa_bits, self.rounding,
                                    self.rng)
        self.record(key, tensor.data.size, exponent_bits, mantissa_bits)
        self.record_gecko(key, narrowed, tensor.data, exponent_bits, mantissa_bits)
        return custom_op([tensor], narrowed, _straight_through, name=f"narrow:{key[1]}")

    def record(self, key, elements, exponent_bits, mantissa_bits):
        self.ledger.record(self.step, key[0], key[1], elements, exponent_bits, mantissa_bits)

    def set_gecko_every(self, steps):
        """Pack the stored tensors with Gecko every ``steps`` training steps; 0 turns it off."""
        if isinstance(steps, bool) or int(steps) != steps or steps < 0:
            raise ValueError(f"gecko_every: must be a whole number of steps >= 0 (0 turns Gecko "
                             f"sizes off); got {steps!r}")
        self.gecko_every = int(steps)

    def record_gecko(self, key, stored, source, exponent_bits, mantissa_bits):
        """Record the Gecko-packed size of a stored instance, on sampled steps only.

        ``stored`` contains members of the training container at the integer widths, anchored at
        ``max_anchor(source)`` as :func:`reference.bitlength.narrow` anchors them.
        """
        if self.gecko_every == 0 or self.step % self.gecko_every != 0:
            return
        container = bitlength.training_container(exponent_bits, mantissa_bits, self.rounding)
        anchor = max_anchor(source, container)
        try:
            sizes = gecko.encoded_bits(stored, container, anchor=anchor, mode="fixed")
        except ValueError as error:
            # A stored value outside the container is a quantizer bug. The run keeps going
            # without this sample, so the tensor's other samples stand in for it (SPEC.md F4).
            logger.warning("step %d: Gecko packing of %s %s at e=%d m=%d failed, so the "
                           "sample is skipped: %s", self.step, key[0], key[1], exponent_bits,
                           mantissa_bits, error)
            return
        self.ledger.record_gecko(self.step, key[0], key[1], sizes["total_bits"])

    def widths(self, key):
        raise NotImplementedError

    def final_widths(self, key):
        """Return the integer widths applied at evaluation."""
        return self.widths(key)

    def extra_loss(self, model):
        return None

    def set_training(self, training):
        self.training = bool(training)

    def after_step(self, step, loss, learning_rate):
        self.step = step + 1

    def report(self):
        final = {(t.name, t.kind): self.final_widths((t.name, t.kind))
                 for t in self.ledger.tensors()}
        fields = {"method": self.name, "method_settings": self.settings(),
                  "gecko_every": self.gecko_every}
        if len(self.ledger):
            fields.update(footprint_report.footprint_fields(self.ledger, final))
        if self.out_dir is not None:
            footprint_report.write_plots(self.out_dir, self.history, self.ledger)
        return fields

    def settings(self):
        return {"rounding": self.rounding}

    def state_dict(self):
        return {"narrowing_step": np.asarray(self.step),
                "narrowing_rng": np.asarray(json.dumps(self.rng.bit_generator.state))}

    def load_state_dict(self, state):
        self.step = int(state["narrowing_step"])
        self.rng.bit_generator.state = json.loads(str(state["narrowing_rng"]))


def _straight_through(grad_output):
    return (grad_output,)


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


class QuantumConfig:
    """Constants of Quantum Mantissa and Quantum Exponent training (SPEC.md Q6-Q8).

    ``gamma`` weights the footprint term (mean stored bits per value) against the task loss
    and ramps up linearly over ``gamma_warmup_steps``. The widths follow Adam at ``fast_lr``
    for ``fast_steps`` steps, then at ``lr``. They start at (``start_exponent_bits``,
    ``start_mantissa_bits``) and are clamped to [``exponent_min``, 8] and [``mantissa_min``,
    23] after every update.
    """

    def __init__(self, gamma=0.03, gamma_warmup_steps=0, fast_lr=0.5, fast_steps=60, lr=0.1,
                 mode="collapse", adapt_exponent=True, mantissa_min=1.0, exponent_min=1.0,
                 start_exponent_bits=8.0, start_mantissa_bits=23.0):
        if mode not in bitlength.MODES:
            raise ValueError(f"quantum mode: must be one of {bitlength.MODES}; got {mode!r}")
        if not 0.0 <= mantissa_min <= start_mantissa_bits <= 23.0:
            raise ValueError("quantum widths: need 0 <= mantissa_min <= start_mantissa_bits <= 23; "
                             f"got {mantissa_min} and {start_mantissa_bits}")
        if not 1.0 <= exponent_min <= start_exponent_bits <= 8.0:
            raise ValueError("quantum widths: need 1 <= exponent_min <= start_exponent_bits <= 8; "
                             f"got {exponent_min} and {start_exponent_bits}")
        if gamma < 0 or fast_lr < 0 or lr < 0:
            raise ValueError(f"quantum gamma and learning rates: must be >= 0; got gamma={gamma}, "
                             f"fast_lr={fast_lr}, lr={lr}")
        self.gamma = float(gamma)
        self.gamma_warmup_steps = int(gamma_warmup_steps)
        self.fast_lr = float(fast_lr)
        self.fast_steps = int(fast_steps)
        self.lr = float(lr)
        self.mode = mode
        self.adapt_exponent = bool(adapt_exponent)
        self.mantissa_min = float(mantissa_min)
        self.exponent_min = float(exponent_min)
        self.start_exponent_bits = float(start_exponent_bits)
        self.start_mantissa_bits = float(start_mantissa_bits)

    def as_dict(self):
        return dict(vars(self))


class QuantumNarrowing(NarrowingMethod):
    """A learned real pair of widths per tensor, trained by gradient descent.

    The widths are two float64 vector parameters, ``exponent_bits`` and ``mantissa_bits``, with
    one entry per tracked tensor (in the order of ``keys``), in their own optimizer group. Both
    enter each tensor's narrowing op as inputs, so backward delivers the tensor's task gradient
    (:func:`reference.bitlength.quantum_vjp`) into its entries even when the narrowed tensor
    needs none, as the network input does. ``extra_loss`` adds the footprint term, and
    ``after_step`` clamps the widths to their ranges. Adam and the clamp work element by
    element, so each entry follows the same steps as a scalar width would.
    """

    name = "quantum"

    def __init__(self, config=None, rounding="nearest_even"):
        super().__init__(rounding)
        self.config = config or QuantumConfig()
        self.keys = []
        self.index = {}
        self.exponent_bits = Tensor(np.zeros(0))
        self.mantissa_bits = Tensor(np.zeros(0))
        self._step_elements = {}

    def attach(self, model, config):
        super().attach(model, config)
        self.keys = [(layer_name, kind) for layer_name in model.storage_layers()
                     for kind in ("weight", "activation")]
        self.index = {key: i for i, key in enumerate(self.keys)}
        count = len(self.keys)
        self.exponent_bits = Tensor(np.full(count, self.config.start_exponent_bits),
                                    requires_grad=self.config.adapt_exponent,
                                    name="exponent_bits")
        self.mantissa_bits = Tensor(np.full(count, self.config.start_mantissa_bits),
                                    requires_grad=True, name="mantissa_bits")
        widths = [self.mantissa_bits]
        if self.config.adapt_exponent:
            widths.append(self.exponent_bits)
        from numpyml.methods import ParameterGroup

        return [ParameterGroup("bitlengths", widths, optim.adam(self.width_learning_rate))]

    @property
    def exponents(self):
        """The exponent width of each tracked tensor, by ``(layer_name, kind)``."""
        return {key: float(self.exponent_bits.data[i]) for key, i in self.index.items()}

    @property
    def mantissas(self):
        """The mantissa width of each tracked tensor, by ``(layer_name, kind)``."""
        return {key: float(self.mantissa_bits.data[i]) for key, i in self.index.items()}

    def width_learning_rate(self, step):
        return bitlength.width_lr(step, self.config.fast_lr, self.config.fast_steps,
                                  self.config.lr)

    def _position(self, key):
        if key not in self.index:
            raise KeyError(f"quantum narrowing: tensor {key} has no widths; the model must "
                           "route it through the storage hook before attach()")
        return self.index[key]

    def _width_values(self, key):
        i = self._position(key)
        return float(self.exponent_bits.data[i]), float(self.mantissa_bits.data[i])

    def widths(self, key):
        return self._width_values(key)

    def final_widths(self, key):
        exponent_bits, mantissa_bits = self._width_values(key)
        return int(math.ceil(exponent_bits)), int(math.ceil(mantissa_bits))

    def narrow_for_training(self, key, tensor):
        i = self._position(key)
        exponent_bits = float(self.exponent_bits.data[i])
        mantissa_bits = float(self.mantissa_bits.data[i])
        result = bitlength.quantum_narrow(tensor.data, exponent_bits, mantissa_bits,
                                          mode=self.config.mode, rounding=self.rounding,
                                          rng=self.rng, prepare_vjp=True,
                                          need_exponent=self.config.adapt_exponent)
        self.record(key, tensor.data.size, result.exponent_bits, result.mantissa_bits)
        # In interpolate mode the stored value blends corners. The corner at the counted widths
        # (the ceilings) is always among them, and it is what gets packed.
        counted = result.context.corners[(result.exponent_bits, result.mantissa_bits)]
        self.record_gecko(key, counted, tensor.data, result.exponent_bits, result.mantissa_bits)
        self._step_elements[key] = self._step_elements.get(key, 0) + tensor.data.size
        need_exponent = self.config.adapt_exponent
        count = len(self.keys)

        def vjp(grad_output):
            grad_x, grad_e, grad_m = bitlength.quantum_vjp(
                result.context, grad_output, self.rng, need_exponent=need_exponent)
            grad_mantissa_bits = np.zeros(count)
            grad_mantissa_bits[i] = grad_m
            grad_exponent_bits = None
            if need_exponent:
                grad_exponent_bits = np.zeros(count)
                grad_exponent_bits[i] = grad_e
            return grad_x, grad_exponent_bits, grad_mantissa_bits

        inputs = [tensor, self.exponent_bits, self.mantissa_bits]
        return custom_op(inputs, result.value, vjp, name=f"quantum:{key[1]}")

    def extra_loss(self, model):
        """Return γ · Σ_t w_t (1 + e_t + m_t) over the tensors stored in this step."""
        if not self.training or not self._step_elements:
            return None
        keys = list(self._step_elements)
        positions = [self.index[key] for key in keys]
        gamma = bitlength.gamma_at(self.step, self.config.gamma, self.config.gamma_warmup_steps)
        value, grad_e, grad_m = bitlength.footprint_penalty(
            [self._step_elements[key] for key in keys],
            self.exponent_bits.data[positions].tolist(),
            self.mantissa_bits.data[positions].tolist(), gamma)
        # Tensors not stored in this step get no gradient from the term.
        grad_exponent_bits = np.zeros(len(self.keys))
        grad_exponent_bits[positions] = grad_e
        grad_mantissa_bits = np.zeros(len(self.keys))
        grad_mantissa_bits[positions] = grad_m

        # One op for the whole term: a graph of small additions per tensor would cost about as
        # much time per step as narrowing a tensor.
        def vjp(grad_output):
            scale = float(grad_output)
            return scale * grad_exponent_bits, scale * grad_mantissa_bits

        return custom_op([self.exponent_bits, self.mantissa_bits], np.float32(value), vjp,
                         name="footprint_penalty")

    def after_step(self, step, loss, learning_rate):
        config = self.config
        exponent_bits = np.clip(self.exponent_bits.data, config.exponent_min, 8.0)
        mantissa_bits = np.clip(self.mantissa_bits.data, config.mantissa_min, 23.0)
        self.exponent_bits.data = exponent_bits
        self.mantissa_bits.data = mantissa_bits
        for key, e, m in zip(self.keys, exponent_bits.tolist(), mantissa_bits.tolist()):
            self.history.append((step, key[0], key[1], e, m))
        self._step_elements = {}
        super().after_step(step, loss, learning_rate)

    def settings(self):
        return {**super().settings(), **self.config.as_dict()}

    def report(self):
        fields = super().report()
        fields["learned_widths"] = {
            f"{name} {kind}": list(self._width_values((name, kind))) for name, kind in self.keys
        }
        return fields

    def state_dict(self):
        # NOTE: the Adam moments of the width group belong to the trainer's optimizer and are not
        # part of this state, so a run restored from a checkpoint restarts them.
        return {**super().state_dict(),
                "quantum_keys": np.asarray([f"{name}|{kind}" for name, kind in self.keys]),
                "quantum_exponent_bits": np.array(self.exponent_bits.data),
                "quantum_mantissa_bits": np.array(self.mantissa_bits.data)}

    def load_state_dict(self, state):
        super().load_state_dict(state)
        exponent_bits = np.array(self.exponent_bits.data)
        mantissa_bits = np.array(self.mantissa_bits.data)
        for text, e, m in zip(state["quantum_keys"], state["quantum_exponent_bits"],
                              state["quantum_mantissa_bits"]):
            i = self._position(tuple(str(text).split("|")))
            exponent_bits[i] = e
            mantissa_bits[i] = m
        self.exponent_bits.data = exponent_bits
        self.mantissa_bits.data = mantissa_bits


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
                       "3 for bitchop and bitwave)")
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
