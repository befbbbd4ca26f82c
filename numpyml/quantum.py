"""Quantum Mantissa and Quantum Exponent: a learned real pair of widths per stored tensor.

The widths train by gradient descent with the model (:mod:`reference.bitlength` contains the
narrowing and its gradients), pushed down by a footprint term in the loss (SPEC.md Q1-Q9).
"""

import math

import numpy as np

from numpyml import optim
from numpyml.engine import Tensor, custom_op
from numpyml.narrowing_method import NarrowingMethod
from reference import bitlength


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
