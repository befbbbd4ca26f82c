"""Run ``Narrow`` in every backend that must agree bit for bit (SPEC.md X2).

The backends are the numpy reference itself, ``ReferenceEvaluator`` with the ``OpRun`` kernel,
``ReferenceEvaluator`` expanding the function body, and ONNX Runtime running the function
body. Models take the widths (and the anchor) as runtime inputs, so one model and one session per
attribute set serve every width. They are cached by the function's overload name.
"""

import functools

import numpy as np

from onnx_ops import function_body, schemas
from onnx_ops.model import build_model, codes_model

BACKENDS = ("reference", "kernel", "function", "onnxruntime")


@functools.lru_cache(maxsize=None)
def _model(op_type, overload, attributes_items):
    if op_type == "Narrow":
        return build_model(dict(attributes_items))
    return codes_model(op_type, dict(attributes_items))


@functools.lru_cache(maxsize=None)
def _runner(backend, op_type, overload, attributes_items):
    from onnx.reference import ReferenceEvaluator

    from onnx_ops.kernels import KERNELS
    from onnx_ops.runtime import OrtSession

    model = _model(op_type, overload, attributes_items)
    if backend == "kernel":
        return ReferenceEvaluator(model, new_ops=KERNELS).run
    if backend == "function":
        return ReferenceEvaluator(model).run
    session = OrtSession(model)
    return lambda names, feeds: session.run(feeds)


def narrow(backend, x, attributes, exponent_bits, mantissa_bits, *, anchor=None, noise=None):
    """Return ``Narrow(x)`` computed by ``backend`` (one of BACKENDS)."""
    a = schemas.complete_attributes(attributes)
    if backend == "reference":
        from reference import quantize

        container = schemas.container_of(a, exponent_bits, mantissa_bits)
        anchor_argument = {"bias": None, "input": anchor, "max": "max"}[a["anchor_mode"]]
        return quantize(x, container, anchor=anchor_argument, noise=noise)
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}; got {backend!r}")

    feeds = {
        "X": x,
        "exponent_bits": np.array(exponent_bits, np.int64),
        "mantissa_bits": np.array(mantissa_bits, np.int64),
    }
    if anchor is not None:
        feeds["anchor"] = np.array(anchor, np.int64)
    if noise is not None:
        feeds["noise"] = noise
    items = tuple(sorted(a.items(), key=lambda item: item[0]))
    run = _runner(backend, "Narrow", function_body.overload_name(a), items)
    return run(None, feeds)[0]


def code_op(backend, op_type, values, attributes, exponent_bits, mantissa_bits, *,
            anchor=None):
    """Return ``NarrowEncode`` (op_type "encode") or ``NarrowDecode`` ("decode") by ``backend``."""
    a = schemas.complete_attributes(attributes)
    if backend == "reference":
        from reference import decode, encode

        container = schemas.container_of(a, exponent_bits, mantissa_bits)
        if op_type == "encode":
            return encode(values, container, anchor=anchor).astype(np.uint32)
        return decode(values, container, anchor=anchor)
    name = {"encode": "NarrowEncode", "decode": "NarrowDecode"}[op_type]
    feeds = {
        "X" if op_type == "encode" else "codes": values,
        "exponent_bits": np.array(exponent_bits, np.int64),
        "mantissa_bits": np.array(mantissa_bits, np.int64),
    }
    if anchor is not None:
        feeds["anchor"] = np.array(anchor, np.int64)
    items = tuple(sorted(a.items(), key=lambda item: item[0]))
    return _runner(backend, name, function_body.overload_name(a), items)(None, feeds)[0]
