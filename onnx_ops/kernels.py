"""``OpRun`` kernels of the ``ai.schrodinger_fp`` operators for ``onnx.reference``.

Each kernel checks its inputs and calls the numpy reference, so ``ReferenceEvaluator`` runs the
operators with exactly the reference semantics:

>>> from onnx.reference import ReferenceEvaluator
>>> evaluator = ReferenceEvaluator(model, new_ops=KERNELS)  # doctest: +SKIP
"""

import logging

import numpy as np
from onnx.reference.op_run import OpRun

from onnx_ops import schemas

logger = logging.getLogger(__name__)


class Narrow(OpRun):
    """``Narrow`` by ``reference.quantize``."""

    op_domain = schemas.DOMAIN

    def _run(self, X, exponent_bits, mantissa_bits, anchor=None, noise=None, bias=None,
             specials=None, subnormals=None, saturate=None, rounding=None, anchor_mode=None,
             base=None):
        from reference import quantize

        attributes = {
            "bias": bias, "specials": specials, "subnormals": subnormals, "saturate": saturate,
            "rounding": rounding, "anchor_mode": anchor_mode, "base": base,
        }
        container = schemas.container_of(attributes, exponent_bits, mantissa_bits)
        mode = schemas.complete_attributes(attributes)["anchor_mode"]
        return (quantize(_check_x(X, container), container, anchor=_anchor(mode, anchor),
                         noise=noise),)


def _check_x(x, container):
    expected = "bfloat16" if container.base == "bf16" else "float32"
    if x.dtype.name != expected:
        raise ValueError(
            f"Narrow input X must be {expected} with base {container.base!r}; got {x.dtype}"
        )
    return x


def _anchor(mode, anchor):
    if mode == "bias":
        if anchor is not None:
            raise ValueError(
                "Narrow input anchor is only used with anchor_mode 'input'; got an anchor with "
                "anchor_mode 'bias' (set anchor_mode='input' or drop the input)"
            )
        return None
    if mode == "max":
        return "max"
    if anchor is None:
        raise ValueError(
            "Narrow input anchor is missing: anchor_mode 'input' needs a 0-d int64 anchor"
        )
    return schemas.as_int(anchor, "anchor")


class NarrowEncode(OpRun):
    """``NarrowEncode`` by ``reference.encode``; codes are returned as uint32."""

    op_domain = schemas.DOMAIN

    def _run(self, X, exponent_bits, mantissa_bits, anchor=None, bias=None, specials=None,
             subnormals=None, saturate=None, rounding=None, anchor_mode=None, base=None):
        from reference import encode

        attributes = _container_attributes(locals())
        container = schemas.container_of(attributes, exponent_bits, mantissa_bits)
        anchor = _code_anchor(attributes, anchor)
        return (encode(_check_x(X, container), container, anchor=anchor).astype(np.uint32),)


class NarrowDecode(OpRun):
    """``NarrowDecode`` by ``reference.decode``."""

    op_domain = schemas.DOMAIN

    def _run(self, codes, exponent_bits, mantissa_bits, anchor=None, bias=None, specials=None,
             subnormals=None, saturate=None, rounding=None, anchor_mode=None, base=None):
        from reference import decode

        attributes = _container_attributes(locals())
        container = schemas.container_of(attributes, exponent_bits, mantissa_bits)
        return (decode(codes, container, anchor=_code_anchor(attributes, anchor)),)


class GeckoEncode(OpRun):
    """``GeckoEncode`` by ``reference.gecko.pack``; the stream is a 1-d uint8 tensor."""

    op_domain = schemas.DOMAIN

    def _run(self, X, exponent_bits, mantissa_bits, anchor=None, bias=None, specials=None,
             subnormals=None, saturate=None, rounding=None, anchor_mode=None, base=None,
             mode=None, group_size=None):
        from reference.gecko import pack

        attributes = _container_attributes(locals())
        container = schemas.container_of(attributes, exponent_bits, mantissa_bits)
        mode_anchor = _anchor(schemas.complete_attributes(attributes)["anchor_mode"], anchor)
        stream = pack(_check_x(X, container), container, anchor=mode_anchor,
                      mode=mode or "fixed", group_size=32 if group_size is None else group_size)
        return (np.frombuffer(stream, np.uint8).copy(),)


class GeckoDecode(OpRun):
    """``GeckoDecode`` by ``reference.gecko.unpack``."""

    op_domain = schemas.DOMAIN

    def _run(self, stream):
        from reference.gecko import unpack

        if stream.dtype != np.uint8 or stream.ndim != 1:
            raise ValueError(
                f"GeckoDecode input stream must be a 1-d uint8 tensor; got {stream.dtype} of "
                f"shape {stream.shape}"
            )
        return (unpack(stream.tobytes()),)


def _container_attributes(arguments):
    return {name: arguments[name] for name in schemas.DEFAULTS}


def _code_anchor(attributes, anchor):
    mode = schemas.complete_attributes(attributes)["anchor_mode"]
    if mode == "max":
        raise ValueError(
            "NarrowEncode and NarrowDecode attribute anchor_mode must be 'bias' or 'input'; got "
            "'max' (pass the anchor as an input)"
        )
    return _anchor(mode, anchor)


KERNELS = [Narrow, NarrowEncode, NarrowDecode, GeckoEncode, GeckoDecode]
