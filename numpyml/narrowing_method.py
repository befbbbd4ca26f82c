"""The base of the narrowing methods: storage policy, footprint ledger, Gecko sizes and report.

A narrowing method installs itself as the model's storage policy. Linear and Conv2d layers pass
their weight (as read from the FP32 master) and their input activation (as stashed for
backward) through it, and forward and backward both use what it returns. Master weights,
gradients and optimizer state stay FP32, and biases are never narrowed.

Every stored instance of a training step is recorded in a :class:`FootprintLedger` at the
integer widths it was stored at. Every ``gecko_every`` steps each instance is also packed with
Gecko and its packed size recorded (SPEC.md F4). Evaluation passes (no gradient recording, or
``set_training(False)``) are not recorded and use the final containers.
"""

import json
import logging

import numpy as np

from numpyml import report as footprint_report
from numpyml.engine import custom_op, is_grad_enabled
from reference import bitlength, gecko
from reference.footprint import FootprintLedger
from reference.quantize import max_anchor

logger = logging.getLogger(__name__)

ROUNDINGS = ("nearest_even", "toward_zero", "stochastic")
# Stream of the run's seed that draws collapses and rounding noise, apart from initialization
# and batch order.
NARROWING_STREAM = 0x5F9
# Sizing the eight stored tensors of a digits CNN step with Gecko costs about one FP32 training
# step. Doing it one step in 20 added 1% CPU time to the main job (FP32 baseline, then quantum)
# and 4% to bitwave alone on a 2-core x86_64 machine (bench/bench_train_gecko.py), while every
# step costs 35% to 76%.
DEFAULT_GECKO_EVERY = 20


class NonFiniteTensor(ValueError):
    """A tensor to be narrowed contains NaN or infinite values: training has diverged."""


class NarrowingMethod:
    """Base of the narrowing methods: the storage policy, footprint ledger and report.

    It implements every hook of :class:`numpyml.methods.Method` without subclassing it, so that
    ``numpyml.methods`` can register the methods without an import cycle. Subclasses define
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
        try:
            if self.training and is_grad_enabled():
                return self.narrow_for_training(key, tensor)
            exponent_bits, mantissa_bits = self.final_widths(key)
            narrowed = bitlength.narrow(tensor.data, exponent_bits, mantissa_bits,
                                        self.rounding, self.rng)
        except ValueError as error:
            # A training container has no NaN code, so a diverging run fails here, before its loss
            # exists. The trainer reports NonFiniteTensor as divergence.
            if np.isfinite(tensor.data).all():
                raise
            raise NonFiniteTensor(f"the {kind} of layer {layer_name} contains NaN or infinite "
                                  "values, which a training container cannot store") from error
        return custom_op([tensor], narrowed, straight_through, name=f"narrow:{kind}")

    def narrow_for_training(self, key, tensor):
        exponent_bits, mantissa_bits = self.widths(key)
        narrowed = bitlength.narrow(tensor.data, exponent_bits, mantissa_bits, self.rounding,
                                    self.rng)
        self.record(key, tensor.data.size, exponent_bits, mantissa_bits)
        self.record_gecko(key, narrowed, tensor.data, exponent_bits, mantissa_bits)
        return custom_op([tensor], narrowed, straight_through, name=f"narrow:{key[1]}")

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



def straight_through(grad_output):
    """Return the gradient of a narrowing op: dL/dx = dL/dQ (SPEC.md Q5)."""
    return (grad_output,)
