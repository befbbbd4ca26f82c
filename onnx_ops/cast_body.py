"""Narrowing to the bf16 container by a round trip through ONNX's bfloat16 type.

The bf16 container (e = 8, m = 7, IEEE bias and specials, subnormals, no saturation) has the
values, the rounding and the specials of bfloat16 itself, so ``Cast`` to BFLOAT16 and back
narrows X. ONNX Runtime 1.32 (CPU) and onnx 1.23's ReferenceEvaluator both round float32 to
bfloat16 to nearest even and map every NaN to the quiet NaN 0x7FC0 with the input's sign, as
the reference does. ONNX Runtime's Cast is vectorized: about 1 ms per 16 Mi values on a 2-core
x86_64 machine, against about 15 operators per value in the other bodies.

NOTE: the Cast specification of opset 26 does not fix how float32 rounds to bfloat16, so
another runtime may truncate. tests/test_onnx_bodies.py checks the two runtimes above.
"""

from onnx import TensorProto, helper

from onnx_ops.graph_builder import NodeBuilder


def applies(a):
    """Return whether the attribute set ``a`` can describe the bf16 container on float32 input.

    The widths are only known at run time, so ``condition`` decides the rest. A bfloat16 input
    is left to the other bodies: ONNX Runtime 1.32 removes a Cast from bfloat16 to float32
    and back as a no-op, which keeps NaN payloads that the reference makes quiet.
    """
    return (
        a["base"] == "fp32" and a["rounding"] == "nearest_even" and a["subnormals"]
        and a["specials"] == "ieee" and not a["saturate"]
    )


def condition(b, m, e_min, e_max):
    """Return the 0-d bool "the container is bf16": m = 7 and exponents -126 to 127."""
    seven = b.op("Equal", m, b.i32(7))
    lowest = b.op("Equal", e_min, b.i32(-126))
    highest = b.op("Equal", e_max, b.i32(127))
    return b.op("And", b.op("And", seven, lowest), highest, hint="bf16_container")


def branch(name, output):
    """Return the If branch graph that narrows the float32 ``name`` to bf16 values."""
    b = NodeBuilder("cast_")
    narrow = b.cast(name, TensorProto.BFLOAT16)
    b.nodes.append(helper.make_node("Cast", [narrow], [output], to=TensorProto.FLOAT))
    return helper.make_graph(
        b.nodes, "bf16_cast", [], [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)]
    )
