"""The interface a backend implements to be checked against SPEC.md, and how backends are found.

A backend is any object with a ``name``, a set of ``capabilities`` and the methods of
:class:`Backend` that those capabilities name. The suite runs the checks whose capabilities the
backend declares and reports the rest as "not implemented". Subclass :class:`BaseBackend` to get
a method for every capability that raises ``NotImplementedError``, then override what you support.

Containers arrive as ``reference.Container`` objects: read their eight fields (exponent_bits,
mantissa_bits, bias, specials, subnormals, saturate, rounding, base) and nothing else.
"""

import importlib
import logging
from typing import Protocol, runtime_checkable

logger = logging.getLogger(__name__)

# Every capability a backend can declare, with the methods it needs and what it promises.
CAPABILITIES = {
    "quantize": "quantize() with nearest_even and toward_zero rounding on base fp32, with the "
                "bias or an int anchor",
    "quantize.bf16": "quantize() with base bf16 (float32 arrays that hold BF16 values)",
    "quantize.stochastic": "quantize() with stochastic rounding and explicit uint32 noise",
    "quantize.max_anchor": "quantize(..., anchor='max')",
    "quantize.errors": "quantize() raises ValueError where SPEC.md requires it (C11, C13, C14)",
    "codes": "encode() and decode()",
    "codes.errors": "encode() and decode() raise ValueError where SPEC.md requires it (C18, C20)",
    "gecko.exponents": "encode_exponents() and decode_exponents()",
    "gecko.pack": "pack() and unpack()",
    "bitlength.forward": "quantum_forward(): the learned-bitlength forward pass",
    "bitlength.gradient": "quantum_gradient(): its gradients with respect to x, e and m",
    "bitwave": "controller_init() and controller_update(): the BitChop/BitWave step",
}


@runtime_checkable
class Backend(Protocol):
    """Interface that the conformance suite calls.

    Arrays are numpy arrays, and errors are ValueError.
    """

    name: str
    capabilities: frozenset

    def quantize(self, x, container, *, anchor=None, noise=None):
        """Return ``x`` (float32, shape any) narrowed to ``container`` (SPEC.md C5-C16).

        ``anchor`` is None, an int or ``"max"``; ``noise`` is a uint32 array of x's shape for
        stochastic rounding and None otherwise. Returns float32 of x's shape.
        """

    def encode(self, x, container, *, anchor=None):
        """Return the codes of the members ``x`` (C17-C19) as uint8, uint16 or uint32."""

    def decode(self, codes, container, *, anchor=None):
        """Return float32 values of ``codes`` (C17, C19, C20)."""

    def encode_exponents(self, exponents, *, mode="fixed", group_size=32):
        """Return the Gecko stream (bytes) of uint8 exponent fields of any shape."""

    def decode_exponents(self, blob):
        """Return the uint8 exponent fields of a Gecko exponent stream, in its shape."""

    def pack(self, x, container, *, anchor=None, mode="fixed", group_size=32):
        """Return the Gecko tensor stream (bytes) of the members ``x`` of ``container``."""

    def unpack(self, blob):
        """Return the float32 values of a Gecko tensor stream, in its shape."""

    def quantum_forward(self, x, exponent_bits, mantissa_bits, *, mode, uniforms):
        """Return x narrowed at real widths (e, m) in ``mode`` ("collapse" or "interpolate").

        ``uniforms`` is ``(u_e, u_m)``, two floats in [0, 1) that decide the collapse: a width
        n = n0 + f becomes n0 + 1 when u < f, else n0. Interpolation ignores them.
        """

    def quantum_gradient(self, x, grad_output, exponent_bits, mantissa_bits, *, mode, uniforms):
        """Return ``(grad_x, grad_exponent_bits, grad_mantissa_bits)`` for the same forward."""

    def controller_init(self, config):
        """Return the controller state at step 0 for a ``reference.controller.ControllerConfig``."""

    def controller_update(self, state, loss, lr, config):
        """Return ``(state, decision)`` after one training step with ``loss`` at rate ``lr``."""


class BaseBackend:
    """A backend that implements nothing: subclass it and override what you declare."""

    name = "base"
    capabilities = frozenset()

    def _missing(self, method):
        raise NotImplementedError(f"backend {self.name!r} does not implement {method}()")

    def quantize(self, x, container, *, anchor=None, noise=None):
        self._missing("quantize")

    def encode(self, x, container, *, anchor=None):
        self._missing("encode")

    def decode(self, codes, container, *, anchor=None):
        self._missing("decode")

    def encode_exponents(self, exponents, *, mode="fixed", group_size=32):
        self._missing("encode_exponents")

    def decode_exponents(self, blob):
        self._missing("decode_exponents")

    def pack(self, x, container, *, anchor=None, mode="fixed", group_size=32):
        self._missing("pack")

    def unpack(self, blob):
        self._missing("unpack")

    def quantum_forward(self, x, exponent_bits, mantissa_bits, *, mode, uniforms):
        self._missing("quantum_forward")

    def quantum_gradient(self, x, grad_output, exponent_bits, mantissa_bits, *, mode, uniforms):
        self._missing("quantum_gradient")

    def controller_init(self, config):
        self._missing("controller_init")

    def controller_update(self, state, loss, lr, config):
        self._missing("controller_update")


# Built-in backends by name: "module:factory", loaded only when asked for.
BUILTIN = {
    "numpy": "conformance.backends.numpy_backend:NumpyBackend",
    "onnx-reference": "conformance.backends.onnx_backend:OnnxReferenceBackend",
    "onnx-function": "conformance.backends.onnx_backend:OnnxFunctionBackend",
    "onnxruntime": "conformance.backends.onnx_backend:OnnxRuntimeBackend",
    "torch": "conformance.backends.torch_backend:TorchBackend",
}


class BackendUnavailable(RuntimeError):
    """A backend that exists but cannot run here, such as torch when PyTorch is not installed."""


def load_backend(spec):
    """Return the backend named ``spec``: a built-in name or ``"module:factory"``.

    ``factory`` is called with no arguments. Raises ValueError for an unknown name or a factory
    that does not return a backend, and BackendUnavailable when its dependencies are missing.
    """
    target = BUILTIN.get(spec, spec)
    if ":" not in target:
        known = ", ".join(BUILTIN)
        raise ValueError(
            f"backend must be one of {known} or 'module:factory'; got {spec!r}"
        )
    module_name, _, factory_name = target.partition(":")
    module = importlib.import_module(module_name)
    try:
        factory = getattr(module, factory_name)
    except AttributeError:
        raise ValueError(f"backend {spec!r}: module {module_name} has no {factory_name}") from None
    if not callable(factory):
        raise ValueError(
            f"backend {spec!r}: {module_name}.{factory_name} must be a callable that returns a "
            f"backend; got an object of type {type(factory).__name__}"
        )
    try:
        backend = factory()
    except BackendUnavailable:
        raise
    except Exception as error:  # a user's factory may fail in any way; name it and go on
        raise ValueError(f"backend {spec!r}: the factory raised {type(error).__name__}: "
                         f"{error}") from error
    check_backend(backend, spec)
    return backend


def check_backend(backend, spec=None):
    """Raise ValueError unless ``backend`` has a name and declares only known capabilities."""
    label = spec or getattr(backend, "name", repr(backend))
    if backend is None:
        raise ValueError(f"backend {label!r}: the factory must return a backend object; got None")
    if not hasattr(backend, "name") and not hasattr(backend, "capabilities"):
        raise ValueError(
            f"backend {label!r}: the factory must return a backend object with a name and "
            f"capabilities; got {backend!r} of type {type(backend).__name__} "
            "(see docs/conformance.md)"
        )
    if not isinstance(getattr(backend, "name", None), str):
        name = getattr(backend, "name", None)
        raise ValueError(f"backend {label!r}: name must be a str; got {name!r}")
    capabilities = getattr(backend, "capabilities", None)
    if not isinstance(capabilities, (set, frozenset)):
        raise ValueError(f"backend {label!r}: capabilities must be a set of names; got "
                         f"{capabilities!r}")
    unknown = set(capabilities) - set(CAPABILITIES)
    if unknown:
        raise ValueError(f"backend {label!r}: unknown capabilities {sorted(unknown)}; known: "
                         f"{', '.join(CAPABILITIES)}")
