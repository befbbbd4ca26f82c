"""Schemas, checker, shape inference and clear failures of bad Narrow models."""

import importlib

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from onnx_ops import function_body, schemas
from onnx_ops.backends import narrow
from onnx_ops.model import build_model, narrow_model
from reference import Container


@pytest.mark.spec("X1")
def test_schema_registration_is_idempotent():
    importlib.reload(schemas)
    schemas.register()
    schema = onnx.defs.get_schema("Narrow", schemas.VERSION, schemas.DOMAIN)
    assert schema.since_version == schemas.VERSION
    assert [p.name for p in schema.inputs] == list(function_body.INPUTS)


@pytest.mark.spec("X1")
def test_shape_inference_copies_type_and_shape():
    node = helper.make_node("Narrow", ["X", "e", "m"], ["Y"], domain=schemas.DOMAIN)
    x_type = helper.make_tensor_type_proto(TensorProto.FLOAT, [2, "n", 5])
    width = helper.make_tensor_type_proto(TensorProto.INT64, [])
    schema = onnx.defs.get_schema("Narrow", schemas.VERSION, schemas.DOMAIN)
    outputs = onnx.shape_inference.infer_node_outputs(
        schema, node, {"X": x_type, "e": width, "m": width}
    )
    assert outputs["Y"] == x_type


@pytest.mark.spec("X4")
def test_function_body_uses_only_standard_ops():
    for attributes in ({}, {"rounding": "stochastic", "anchor_mode": "max", "base": "bf16"}):
        function = function_body.narrow_function(attributes)
        assert {node.domain for node in function.node} == {""}
        assert [(o.domain, o.version) for o in function.opset_import] == [("", 26)]
        assert function.overload == function_body.overload_name(attributes)


@pytest.mark.spec("X6")
def test_narrow_model_passes_full_check():
    model = narrow_model(Container.training(4, 3), anchor="max")
    onnx.checker.check_model(model, full_check=True)
    assert [i.name for i in model.graph.input] == ["X"]
    assert [o.name for o in model.graph.output] == ["Y"]
    assert model.graph.node[0].attribute


@pytest.mark.spec("X6")
def test_narrow_model_inputs_follow_request():
    stochastic = Container(5, 2, rounding="stochastic")
    model = narrow_model(stochastic, anchor=True, noise=True)
    assert [i.name for i in model.graph.input] == ["X", "anchor", "noise"]
    with pytest.raises(ValueError, match="noise must be True exactly when"):
        narrow_model(stochastic)
    with pytest.raises(ValueError, match="anchor must be False, True or 'max'; got 'min'"):
        narrow_model(Container(5, 2), anchor="min")


# bad models fail at check time, naming the value


@pytest.mark.spec("X3")
@pytest.mark.parametrize("widths, message", [
    ((9, 3), "exponent_bits must be in 1..8; got 9"),
    ((0, 3), "exponent_bits must be in 1..8; got 0"),
    ((4, 24), "mantissa_bits must be in 0..23 with base 'fp32'; got 24"),
    ((4, -1), "mantissa_bits must be in 0..23 with base 'fp32'; got -1"),
    ((1, 0), "leaves no normal numbers"),
])
def test_constant_widths_out_of_range_fail_check(widths, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_model({}, *widths)


@pytest.mark.spec("X3")
def test_bf16_widths_checked_against_base():
    with pytest.raises(ValueError, match="mantissa_bits must be in 0..7 with base 'bf16'; got 8"):
        build_model({"base": "bf16"}, 8, 8)


@pytest.mark.spec("X3")
@pytest.mark.parametrize("element_type, got", [
    (TensorProto.INT32, "INT32"),
    (TensorProto.BFLOAT16, "BFLOAT16"),
    (TensorProto.DOUBLE, "DOUBLE"),
])
def test_wrong_input_dtype_fails_check(element_type, got):
    model = build_model({})
    model.graph.input[0].type.tensor_type.elem_type = element_type
    model.graph.output[0].type.tensor_type.elem_type = element_type
    with pytest.raises(ValueError, match=f"X must be FLOAT with base 'fp32'; got {got}"):
        onnx.checker.check_model(model, full_check=True)


@pytest.mark.spec("X3")
def test_missing_anchor_fails_check():
    model = build_model({"anchor_mode": "input"})
    model.graph.node[0].input[3] = ""
    with pytest.raises(ValueError, match="anchor_mode 'input' with anchor missing"):
        onnx.checker.check_model(model, full_check=True)


@pytest.mark.spec("X3")
def test_missing_noise_fails_check():
    model = build_model({"rounding": "stochastic"})
    model.graph.node[0].input[4] = ""
    with pytest.raises(ValueError, match="rounding 'stochastic' with noise missing"):
        onnx.checker.check_model(model, full_check=True)


@pytest.mark.spec("X3")
@pytest.mark.parametrize("attributes, message", [
    ({"specials": "ieee754"},
     "attribute specials must be one of 'ieee', 'fn', 'none'; got 'ieee754'"),
    ({"rounding": "nearest"}, "attribute rounding must be one of"),
    ({"anchor_mode": "min"},
     "attribute anchor_mode must be one of 'bias', 'input', 'max'; got 'min'"),
    ({"saturate": 2}, "attribute saturate must be one of 0, 1; got 2"),
    ({"anchor_mode": "max", "bias": 7}, "bias is only used with anchor_mode 'bias'"),
])
def test_bad_attributes_fail_with_value(attributes, message):
    with pytest.raises(ValueError, match=message):
        build_model(attributes)


# bad runtime inputs fail in the kernel


@pytest.mark.spec("X3")
@pytest.mark.parametrize("e, m, message", [
    (12, 3, "exponent_bits must be in 1..8; got 12"),
    (4, 30, "mantissa_bits must be in 0..23 with base 'fp32'; got 30"),
])
def test_runtime_widths_out_of_range_fail_in_kernel(e, m, message):
    with pytest.raises(ValueError, match=message):
        narrow("kernel", np.float32([1.0]), {}, e, m)


@pytest.mark.spec("X3")
def test_runtime_anchor_out_of_range_fails_in_kernel():
    with pytest.raises(ValueError, match="anchor must be in -149..127 .*; got 200"):
        narrow("kernel", np.float32([1.0]), {"anchor_mode": "input"}, 4, 3, anchor=200)


@pytest.mark.spec("X3")
def test_wrong_noise_dtype_fails_in_kernel():
    with pytest.raises(ValueError, match="noise must be a uint32 numpy array; got int64"):
        narrow("kernel", np.float32([1.0]), {"rounding": "stochastic"}, 4, 3,
               noise=np.array([1], np.int64))


@pytest.mark.spec("X3")
def test_bias_outside_window_range_fails_check():
    with pytest.raises(ValueError, match="got bias 200, largest exponent -186"):
        build_model({"bias": 200}, 4, 3)
