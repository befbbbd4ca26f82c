"""The ONNX operators as backends: in ONNX's ReferenceEvaluator and in ONNX Runtime.

All three run one-node models from ``onnx_ops``. ``onnx-reference`` runs the ``OpRun`` kernels in
ReferenceEvaluator, which check their inputs and raise ValueError as SPEC.md requires.
``onnx-function`` expands the standard-op function bodies in ReferenceEvaluator instead, and
``onnxruntime`` runs the same bodies in ONNX Runtime. A function body cannot raise, so these two
declare neither ``quantize.errors`` nor ``codes.errors``. ``NarrowEncode`` returns uint32 codes,
which the adapter narrows to the dtype of C17. ``onnx-reference`` also packs and unpacks Gecko
tensors with ``GeckoEncode`` and ``GeckoDecode``, which have kernels only. BF16 tensors need
ml_dtypes for their numpy type; without it the backends do not declare ``quantize.bf16``.
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
        # The models take X of rank 1, which ONNX Runtime enforces. Narrow is elementwise and
        # its max anchor covers the whole tensor, so flattening x (and noise of x's shape)
        # keeps every result.
        flat = np.ascontiguousarray(x, np.float32).reshape(-1)
        feeds = {"X": self._to_base(flat, container)}
        if mode is True:
            feeds["anchor"] = np.array(anchor, np.int64)
        if noise is not None:
            noise = np.asarray(noise)
            feeds["noise"] = noise.reshape(-1) if noise.shape == np.shape(x) else noise
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
            raise ValueError(
                f"decode: codes must have an unsigned integer dtype; got {codes.dtype}")
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
    capabilities = frozenset(QUANTIZE | {"quantize.errors", "codes.errors", "gecko.pack"})
    code_runner = "kernel"

    def pack(self, x, container, *, anchor=None, mode="fixed", group_size=32):
        if anchor is None:
            anchor_mode = "bias"
        elif isinstance(anchor, str):
            anchor_mode = _anchor_mode(anchor)  # "max", or ValueError for another string
        else:
            anchor_mode = "input"
        model = _gecko_encode_model(container, anchor_mode, mode, group_size, x.shape)
        feeds = {"X": self._to_base(np.ascontiguousarray(x, np.float32), container)}
        if anchor_mode == "input":
            feeds["anchor"] = np.array(anchor, np.int64)
        (stream,) = _EvaluatorSession(model).run(feeds)
        return np.asarray(stream, np.uint8).tobytes()

    def unpack(self, blob):
        stream = np.frombuffer(bytes(blob), np.uint8).copy()
        (values,) = _EvaluatorSession(_gecko_decode_model()).run({"stream": stream})
        return np.asarray(values, np.float32)

    @functools.lru_cache(maxsize=512)
    def _session(self, container, mode, noise):
        return _EvaluatorSession(_model(container, mode, noise))


def _gecko_encode_model(container, anchor_mode, mode, group_size, shape):
    from onnx import TensorProto, helper, numpy_helper

    from onnx_ops import schemas
    from onnx_ops.model import make_model

    attributes = schemas.attributes_of(container, anchor_mode)
    given = {k: v for k, v in attributes.items() if v is not None and v != schemas.DEFAULTS[k]}
    given.update({k: v for k, v in (("mode", mode), ("group_size", group_size))
                  if v != {"mode": "fixed", "group_size": 32}[k]})
    element_type = schemas.BASE_ELEMENT_TYPES[container.base]
    inputs = [helper.make_tensor_value_info("X", element_type, list(shape))]
    node_inputs = ["X", "exponent_bits", "mantissa_bits", ""]
    if anchor_mode == "input":
        inputs.append(helper.make_tensor_value_info("anchor", TensorProto.INT64, []))
        node_inputs[3] = "anchor"
    widths = [numpy_helper.from_array(np.array(value, np.int64), name) for name, value in
              (("exponent_bits", container.exponent_bits),
               ("mantissa_bits", container.mantissa_bits))]
    node = helper.make_node("GeckoEncode", node_inputs, ["stream"], domain=schemas.DOMAIN,
                            **given)
    graph = helper.make_graph(
        [node], "gecko_encode", inputs,
        [helper.make_tensor_value_info("stream", TensorProto.UINT8, [None])], initializer=widths,
    )
    return make_model(graph, [])


@functools.lru_cache(maxsize=1)
def _gecko_decode_model():
    from onnx import TensorProto, helper

    from onnx_ops import schemas
    from onnx_ops.function_body import OPSET
    from onnx_ops.model import IR_VERSION

    node = helper.make_node("GeckoDecode", ["stream"], ["Y"], domain=schemas.DOMAIN)
    graph = helper.make_graph(
        [node], "gecko_decode", [helper.make_tensor_value_info("stream", TensorProto.UINT8,
                                                                ["n"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, None)],
    )
    # The output's rank comes from the stream, and the onnx 1.23 checker, which make_model
    # runs, rejects an output without a shape; ReferenceEvaluator runs the model unchecked.
    return helper.make_model(graph, ir_version=IR_VERSION, opset_imports=[
        helper.make_opsetid("", OPSET), helper.make_opsetid(schemas.DOMAIN, schemas.VERSION)])


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
