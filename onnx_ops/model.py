"""One-operator models around ``Narrow``, with the function body attached (SPEC.md X5, X6).

The models declare opset 26 (BitCast) and IR version 10 (function overloads), and run unchanged
in ``onnx.reference.ReferenceEvaluator`` (with or without the ``OpRun`` kernels) and in ONNX
Runtime.
"""

import logging

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_ops import function_body, schemas

logger = logging.getLogger(__name__)

IR_VERSION = 10


def narrow_model(container, *, anchor=False, noise=False, shape=("n",)):
    """Return a model computing ``Y = Narrow(X)`` for ``container`` (a ``reference.Container``).

    The widths are constants inside the model. ``anchor=True`` adds a 0-d int64 graph input
    ``anchor`` (the largest normal exponent), ``anchor="max"`` takes the anchor from X in-graph,
    ``anchor=False`` uses the container's bias. ``noise=True`` adds the uint32 graph input
    ``noise`` of X's shape; stochastic rounding needs it and the other modes reject it.
    ``shape`` is the shape of X and Y (ints or dimension names). The onnx 1.23 checker needs a
    shape on every graph input and output, so the default is one dimension of any length.
    """
    if anchor not in (False, True, "max"):
        raise ValueError(f"anchor must be False, True or 'max'; got {anchor!r}")
    if noise != (container.rounding == "stochastic"):
        raise ValueError(
            f"noise must be True exactly when rounding is 'stochastic'; got noise={noise!r} with "
            f"rounding {container.rounding!r}"
        )
    anchor_mode = {False: "bias", True: "input", "max": "max"}[anchor]
    attributes = schemas.attributes_of(container, anchor_mode)
    return build_model(attributes, container.exponent_bits, container.mantissa_bits, shape=shape)


def build_model(attributes, exponent_bits=None, mantissa_bits=None, shape=("n",)):
    """Return a one-``Narrow`` model for ``attributes``; a width given as None is a graph input.

    Widths as graph inputs let one session serve every width, which is what tests and
    benchmarks sweep over.
    """
    a = schemas.complete_attributes(attributes)
    element_type = schemas.BASE_ELEMENT_TYPES[a["base"]]
    inputs = [helper.make_tensor_value_info("X", element_type, list(shape))]
    initializers = []
    for name, value in (("exponent_bits", exponent_bits), ("mantissa_bits", mantissa_bits)):
        if value is None:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.INT64, []))
        else:
            initializers.append(numpy_helper.from_array(np.array(value, np.int64), name))
    node_inputs = ["X", "exponent_bits", "mantissa_bits"]
    if a["anchor_mode"] == "input":
        inputs.append(helper.make_tensor_value_info("anchor", TensorProto.INT64, []))
        node_inputs.append("anchor")
    if a["rounding"] == "stochastic":
        inputs.append(helper.make_tensor_value_info("noise", TensorProto.UINT32, list(shape)))
        node_inputs += [""] * (4 - len(node_inputs)) + ["noise"]

    node = narrow_node(node_inputs, "Y", attributes)
    graph = helper.make_graph(
        [node], "narrow", inputs, [helper.make_tensor_value_info("Y", element_type, list(shape))],
        initializer=initializers,
    )
    return make_model(graph, [function_body.narrow_function(attributes)])


def narrow_node(inputs, output, attributes, name=None):
    """Return a ``Narrow`` node whose overload matches ``narrow_function(attributes)``.

    Missing optional inputs are padded with "" to the function's five inputs, because
    ``ReferenceEvaluator`` maps node inputs to function inputs only when their counts agree.
    """
    inputs = list(inputs) + [""] * (len(function_body.INPUTS) - len(inputs))
    given = {k: v for k, v in schemas.complete_attributes(attributes).items()
             if v is not None and v != schemas.DEFAULTS[k]}
    return helper.make_node(
        "Narrow", inputs, [output], name=name, domain=schemas.DOMAIN,
        overload=function_body.overload_name(attributes), **given,
    )


def codes_model(op_type, attributes, exponent_bits=None, mantissa_bits=None, shape=("n",)):
    """Return a one-node ``NarrowEncode`` or ``NarrowDecode`` model with its function attached.

    A width given as None is a graph input; ``anchor`` is a graph input when ``anchor_mode``
    is "input". Encode maps X (float32 or bfloat16) to uint32 codes, decode maps codes to
    float32.
    """
    from onnx_ops import codes_body

    builders = {"NarrowEncode": codes_body.encode_function,
                "NarrowDecode": codes_body.decode_function}
    if op_type not in builders:
        raise ValueError(f"op_type must be 'NarrowEncode' or 'NarrowDecode'; got {op_type!r}")
    a = schemas.complete_attributes(attributes)
    values = schemas.BASE_ELEMENT_TYPES[a["base"]]
    input_type, output_type = ((values, TensorProto.UINT32) if op_type == "NarrowEncode"
                               else (TensorProto.UINT32, TensorProto.FLOAT))
    first = "X" if op_type == "NarrowEncode" else "codes"
    inputs = [helper.make_tensor_value_info(first, input_type, list(shape))]
    initializers = []
    for name, value in (("exponent_bits", exponent_bits), ("mantissa_bits", mantissa_bits)):
        if value is None:
            inputs.append(helper.make_tensor_value_info(name, TensorProto.INT64, []))
        else:
            initializers.append(numpy_helper.from_array(np.array(value, np.int64), name))
    node_inputs = [first, "exponent_bits", "mantissa_bits", ""]
    if a["anchor_mode"] == "input":
        inputs.append(helper.make_tensor_value_info("anchor", TensorProto.INT64, []))
        node_inputs[3] = "anchor"
    given = {k: v for k, v in a.items() if v is not None and v != schemas.DEFAULTS[k]}
    node = helper.make_node(op_type, node_inputs, ["Y"], domain=schemas.DOMAIN,
                            overload=function_body.overload_name(attributes), **given)
    graph = helper.make_graph(
        [node], op_type.lower(), inputs,
        [helper.make_tensor_value_info("Y", output_type, list(shape))], initializer=initializers,
    )
    return make_model(graph, [builders[op_type](attributes)])


def make_model(graph, functions):
    """Return a model of ``graph`` with the opsets and IR version the function bodies need."""
    model = helper.make_model(
        graph, functions=functions, ir_version=IR_VERSION,
        opset_imports=[
            helper.make_opsetid("", function_body.OPSET),
            helper.make_opsetid(schemas.DOMAIN, schemas.VERSION),
        ],
        producer_name="schrodinger-fp",
    )
    onnx.checker.check_model(model, full_check=True)
    return model
