"""Schemas of the code operators NarrowEncode and NarrowDecode and the reference-only Gecko ones.

They share Narrow's container attributes and checks (``schemas``) and are registered with it.
"""

import onnx
from onnx import TensorProto
from onnx.defs import OpSchema

from onnx_ops.schemas import (
    BASE_ELEMENT_TYPES, DOMAIN, VERSION, check_constant_widths, complete_attributes,
    container_attributes, default_attribute, node_attributes,
)

CODES_DOC = """\
{summary}

The `OpRun` kernel calls `reference.{function}`; a function body of standard ONNX operators
(`onnx_ops.codes_body`) lets ONNX Runtime run it, exactly where the reference returns a result
(where the reference raises, the body returns unspecified bits). The container comes from
`exponent_bits`, `mantissa_bits` and the attributes of Narrow; `anchor_mode` must be "bias" or
"input", because decoding must be a pure function of the codes and a stored anchor. {detail}
"""

GECKO_DOC = """\
{summary}

Reference-only: the `OpRun` kernel calls `reference.gecko.{function}` (SPEC.md section G), and
ONNX Runtime cannot run it. {detail}
"""


def _width_inputs(first):
    return [
        first,
        OpSchema.FormalParameter("exponent_bits", "tensor(int64)", "0-d, 1..8"),
        OpSchema.FormalParameter(
            "mantissa_bits", "tensor(int64)", "0-d, 0..23 (fp32) or 0..7 (bf16)"
        ),
        OpSchema.FormalParameter(
            "anchor", "tensor(int64)", "0-d largest normal exponent (anchor_mode 'input')",
            param_option=OpSchema.FormalParameterOption.Optional,
        ),
    ]


def _infer_codes(output_type, check_x):
    """Return an inference function: check attributes and anchor, set Y's type, keep the shape."""
    def infer(ctx):
        attributes = complete_attributes(node_attributes(ctx))
        if attributes["anchor_mode"] == "max":
            raise ValueError(
                "NarrowEncode and NarrowDecode attribute anchor_mode must be 'bias' or 'input'; "
                "got 'max' (compute the anchor with Narrow's max rule and pass it as an input)"
            )
        has_anchor = ctx.get_num_inputs() > 3 and ctx.has_input(3)
        if (attributes["anchor_mode"] == "input") != has_anchor:
            raise ValueError(
                f"input anchor must be given exactly when anchor_mode is 'input'; got "
                f"anchor_mode {attributes['anchor_mode']!r} with anchor "
                f"{'given' if has_anchor else 'missing'}"
            )
        check_constant_widths(ctx, attributes)
        x_type = ctx.get_input_type(0)
        if x_type is None:
            return
        if check_x:
            _check_x_type(x_type, attributes)
        shape = x_type.tensor_type.shape if x_type.tensor_type.HasField("shape") else None
        dims = None if shape is None else [d.dim_value or d.dim_param or None for d in shape.dim]
        ctx.set_output_type(0, onnx.helper.make_tensor_type_proto(output_type, dims))
    return infer


def _check_x_type(x_type, attributes):
    expected = BASE_ELEMENT_TYPES[attributes["base"]]
    if x_type.tensor_type.elem_type not in (0, expected):
        got = TensorProto.DataType.Name(x_type.tensor_type.elem_type)
        raise ValueError(
            f"input X must be {TensorProto.DataType.Name(expected)} with base "
            f"{attributes['base']!r}; got {got}"
        )


def _encode_schema():
    schema = OpSchema(
        "NarrowEncode", DOMAIN, VERSION,
        CODES_DOC.format(
            summary="Pack container members into integer codes laid out sign'exponent'mantissa.",
            function="encode", detail="Y holds the codes in the low 1 + e + m bits of uint32; "
            "a value that is not a member raises, so narrow first.",
        ),
        inputs=_width_inputs(OpSchema.FormalParameter("X", "T", "container members")),
        outputs=[OpSchema.FormalParameter("Y", "tensor(uint32)", "codes, shape of X")],
        type_constraints=[("T", ["tensor(float)", "tensor(bfloat16)"], "float32 or bfloat16")],
        attributes=container_attributes("'bias' or 'input'"),
    )
    schema.set_type_and_shape_inference_function(_infer_codes(TensorProto.UINT32, True))
    return schema


def _decode_schema():
    schema = OpSchema(
        "NarrowDecode", DOMAIN, VERSION,
        CODES_DOC.format(
            summary="Unpack integer codes sign'exponent'mantissa into float32 values.",
            function="decode", detail="NaN codes become the quiet NaN with the code's sign; "
            "codes that encoding never emits raise.",
        ),
        inputs=_width_inputs(OpSchema.FormalParameter("codes", "tensor(uint32)", "codes")),
        outputs=[OpSchema.FormalParameter("Y", "tensor(float)", "values, shape of codes")],
        attributes=container_attributes("'bias' or 'input'"),
    )
    schema.set_type_and_shape_inference_function(_infer_codes(TensorProto.FLOAT, False))
    return schema


def _gecko_encode_schema():
    schema = OpSchema(
        "GeckoEncode", DOMAIN, VERSION,
        GECKO_DOC.format(
            summary="Pack container members into a Gecko tensor stream (lossless exponents).",
            function="pack", detail="Y is the stream as a 1-d uint8 tensor. anchor_mode 'max' "
            "stores the tensor's max anchor in the header.",
        ),
        inputs=_width_inputs(OpSchema.FormalParameter("X", "T", "container members")),
        outputs=[OpSchema.FormalParameter("stream", "tensor(uint8)", "1-d Gecko stream")],
        type_constraints=[("T", ["tensor(float)", "tensor(bfloat16)"], "float32 or bfloat16")],
        attributes=[
            *container_attributes("'bias', 'input' or 'max'"),
            default_attribute("mode", "fixed", "'fixed' (group widths) or 'entropy' (Huffman)"),
            default_attribute("group_size", 32, "exponents per group: 8, 16, 32 or 64"),
        ],
    )

    def infer(ctx):
        ctx.set_output_type(0, onnx.helper.make_tensor_type_proto(TensorProto.UINT8, [None]))

    schema.set_type_and_shape_inference_function(infer)
    return schema


def _gecko_decode_schema():
    schema = OpSchema(
        "GeckoDecode", DOMAIN, VERSION,
        GECKO_DOC.format(
            summary="Unpack a Gecko tensor stream into float32 values of the stored shape.",
            function="unpack", detail="A malformed stream raises GeckoFormatError.",
        ),
        inputs=[OpSchema.FormalParameter("stream", "tensor(uint8)", "1-d Gecko stream")],
        outputs=[OpSchema.FormalParameter("Y", "tensor(float)", "values of the stored shape")],
    )

    def infer(ctx):
        ctx.set_output_type(0, onnx.helper.make_tensor_type_proto(TensorProto.FLOAT, None))

    schema.set_type_and_shape_inference_function(infer)
    return schema


SCHEMA_BUILDERS = {
    "NarrowEncode": _encode_schema,
    "NarrowDecode": _decode_schema,
    "GeckoEncode": _gecko_encode_schema,
    "GeckoDecode": _gecko_decode_schema,
}
