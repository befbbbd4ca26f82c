"""The ``Narrow`` and code operators as backends: in ONNX's ReferenceEvaluator and in ONNX Runtime.

All three run one-node models from ``onnx_ops``. ``onnx-reference`` runs the ``OpRun`` kernels in
ReferenceEvaluator, which check their inputs and raise ValueError as SPEC.md requires.
``onnx-function`` expands the standard-op function bodies in ReferenceEvaluator instead, and
``onnxruntime`` runs the same bodies in ONNX Runtime. A function body cannot raise, so these two
declare neither ``quantize.errors`` nor ``codes.errors``. ``NarrowEncode`` returns uint32 codes,
which the adapter narrows to the dtype of C17. BF16 tensors need ml_dtypes for their numpy type;
without it the backends do not declare ``quantize.bf16``.
"""

import functools
import importlib.util
import logging

import numpy as np

from conformance.backend import BaseBackend

logger = logging.getLogger(__name__)

HAS_ML_DTYPES = importlib.util.find_spec("ml_dtypes") is not None
QUANTIZE = {"quantize", "quantize.stochastic", "quantize.max_anchor", "codes"} | (
    {"quantize.bf16"} if HAS_ML_DTYPES else set()
)
# Code dtypes of SPEC.md C17; NarrowEncode returns uint32 for every width.
CODE_DTYPES = ((8, np.uint8), (16, np.uint16), (32, np.uint32))


def _anchor_mode(anchor):
    if anchor is None:
        return False
    if isinstance(anchor, str):
        if anchor != "max":
            raise ValueError(f"anchor must be None, an int or 'max'; got {anchor!r}")
        return "max"
    return True


@functools.lru_cache(maxsize=512)
def _model(container, anchor_mode, noise):
    from onnx_ops.model import narrow_model

    # narrow_model raises ValueError when noise is given without stochastic rounding or
    # missing with it (C11).
    return narrow_model(container, anchor=anchor_mode, noise=noise)


class _NarrowBackend(BaseBackend):
    """Shared feeding and unpacking of one-node Narrow models."""

    def quantize(self, x, container, *, anchor=None, noise=None):
        mode = _anchor_mode(anchor)
        feeds = {"X": self._to_base(np.ascontiguousarray(x, np.float32), container)}
        if mode is True:
            feeds["anchor"] = np.array(anchor, np.int64)
        if noise is not None:
            feeds["noise"] = noise
        session = self._session(container, mode, noise is not None)
        (y,) = session.run(feeds)
        return self._from_base(np.asarray(y)).reshape(x.shape)

    def encode(self, x, container, *, anchor=None):
        codes = self._code_op("encode", self._to_base(np.ascontiguousarray(x, np.float32),
                                                      container), container, anchor)
        dtype = next(d for width, d in CODE_DTYPES if container.bits <= width)
        return np.asarray(codes).astype(dtype).reshape(x.shape)

    def decode(self, codes, container, *, anchor=None):
        codes = np.asarray(codes)
        if codes.dtype.kind != "u":
            raise ValueError(f"decode: codes must have an unsigned integer dtype; got {codes.dtype}")
        values = self._code_op("decode", codes.astype(np.uint32).reshape(-1), container, anchor)
        return np.asarray(values, np.float32).reshape(codes.shape)

    def _code_op(self, op_type, values, container, anchor):
        from onnx_ops import backends, schemas

        if isinstance(anchor, str):
            raise ValueError(f"{op_type}: anchor must be None or an int; got {anchor!r}")
        attributes = schemas.attributes_of(container, "bias" if anchor is None else "input")
        return backends.code_op(self.code_runner, op_type, values.reshape(-1), attributes,
                                container.exponent_bits, container.mantissa_bits, anchor=anchor)

    @staticmethod
    def _to_base(x, container):
        if container.base != "bf16":
            return x
        import ml_dtypes

        bits = x.reshape(-1).view(np.uint32)
        # The model's input is bfloat16, so a float32 value with low bits set cannot be passed
        # on; truncating it would hide a double rounding (C15). NaNs are exempt.
        not_bf16 = ((bits & np.uint32(0xFFFF)) != 0) & ~np.isnan(x.reshape(-1))
        if not_bf16.any():
            index = int(np.flatnonzero(not_bf16)[0])
            raise ValueError(
                f"x must hold BF16 values (low 16 bits zero) with base 'bf16'; element {index} "
                f"is 0x{int(bits[index]):08x} (round it to BF16 first, or use base 'fp32')"
            )
        return (x.view(np.uint32) >> np.uint32(16)).astype(np.uint16).view(ml_dtypes.bfloat16)

    @staticmethod
    def _from_base(y):
        if y.dtype.name != "bfloat16":
            return y
        return (y.view(np.uint16).astype(np.uint32) << np.uint32(16)).view(np.float32)


class _EvaluatorSession:
    def __init__(self, model, kernels=True):
        from onnx.reference import ReferenceEvaluator

        from onnx_ops.kernels import KERNELS

        self.evaluator = ReferenceEvaluator(model, new_ops=KERNELS if kernels else None)

    def run(self, feeds):
        # NaN and inf inputs make numpy warn inside ReferenceEvaluator's float operators. The
        # checks compare the output bits, which is what matters, so the warnings are silenced.
        with np.errstate(invalid="ignore", over="ignore"):
            return self.evaluator.run(None, feeds)


class OnnxReferenceBackend(_NarrowBackend):
    """``Narrow`` in ``onnx.reference.ReferenceEvaluator`` with the ``OpRun`` kernel."""

    name = "onnx-reference"
    capabilities = frozenset(QUANTIZE | {"quantize.errors", "codes.errors"})
    code_runner = "kernel"

    @functools.lru_cache(maxsize=512)
    def _session(self, container, mode, noise):
        return _EvaluatorSession(_model(container, mode, noise))


class OnnxFunctionBackend(_NarrowBackend):
    """``Narrow`` as its standard-op function body, expanded by ``ReferenceEvaluator``.

    This runs the same function body as ONNX Runtime in a second runtime, so a difference
    between the two points at one runtime's operator semantics rather than at the body.
    """

    name = "onnx-function"
    capabilities = frozenset(QUANTIZE)
    code_runner = "function"

    @functools.lru_cache(maxsize=512)
    def _session(self, container, mode, noise):
        return _EvaluatorSession(_model(container, mode, noise), kernels=False)


class OnnxRuntimeBackend(_NarrowBackend):
    """``Narrow`` as a standard-op function body in ONNX Runtime (CPU, one thread)."""

    name = "onnxruntime"
    capabilities = frozenset(QUANTIZE)
    code_runner = "onnxruntime"

    @functools.lru_cache(maxsize=512)
    def _session(self, container, mode, noise):
        from onnx_ops.runtime import OrtSession

        return OrtSession(_model(container, mode, noise), threads=1)
