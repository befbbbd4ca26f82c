"""Code operators (NarrowEncode, NarrowDecode) and the reference-only Gecko operators."""

import dataclasses

import ml_dtypes
import numpy as np
import onnx
import pytest
from hypothesis import assume, example, given, strategies as st
from onnx import TensorProto, helper
from onnx.reference import ReferenceEvaluator

from onnx_ops import schemas
from onnx_ops.backends import BACKENDS, code_op
from onnx_ops.kernels import KERNELS
from onnx_ops.model import make_model
from reference import Container, decode, encode, quantize
from reference.container import PRESETS, anchor_range
from reference.gecko import pack

# The function bodies compute inf - inf and inf * 0 for inf and NaN inputs on purpose;
# ReferenceEvaluator's numpy kernels warn about that.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:onnx.reference")

DOMAIN = schemas.DOMAIN


def codes_model(attributes, e, m, *, anchor=False, x_type=TensorProto.FLOAT):
    """Return a model X -> (codes, decoded, stream, unpacked) with constant widths."""
    widths = [
        helper.make_tensor("e", TensorProto.INT64, [], [e]),
        helper.make_tensor("m", TensorProto.INT64, [], [m]),
    ]
    inputs = ["e", "m", "anchor"] if anchor else ["e", "m"]
    nodes = [
        helper.make_node("NarrowEncode", ["X", *inputs], ["codes"], domain=DOMAIN, **attributes),
        helper.make_node("NarrowDecode", ["codes", *inputs], ["decoded"], domain=DOMAIN,
                         **attributes),
        helper.make_node("GeckoEncode", ["X", *inputs], ["stream"], domain=DOMAIN, **attributes),
        helper.make_node("GeckoDecode", ["stream"], ["unpacked"], domain=DOMAIN),
    ]
    graph_inputs = [helper.make_tensor_value_info("X", x_type, ["n"])]
    if anchor:
        graph_inputs.append(helper.make_tensor_value_info("anchor", TensorProto.INT64, []))
    outputs = [
        helper.make_tensor_value_info("codes", TensorProto.UINT32, ["n"]),
        helper.make_tensor_value_info("decoded", TensorProto.FLOAT, ["n"]),
        helper.make_tensor_value_info("stream", TensorProto.UINT8, ["bytes"]),
        helper.make_tensor_value_info("unpacked", TensorProto.FLOAT, ["n"]),
    ]
    graph = helper.make_graph(nodes, "codes", graph_inputs, outputs, initializer=widths)
    return make_model(graph, [])


@pytest.mark.spec("X9")
def test_e4m3fn_codes_match_reference():
    container = Container.from_name("e4m3fn")
    x = np.float32([448.0, -0.0, 1.5, -2.0, 0.0, 2.0**-9, np.nan])
    model = codes_model({"specials": "fn"}, 4, 3)
    codes, decoded, stream, unpacked = ReferenceEvaluator(model, new_ops=KERNELS).run(
        None, {"X": x}
    )
    np.testing.assert_array_equal(codes, np.uint32([0x7E, 0x80, 0x3C, 0xC0, 0x00, 0x01, 0x7F]))
    np.testing.assert_array_equal(codes, encode(x, container).astype(np.uint32))
    np.testing.assert_array_equal(decoded.view(np.uint32),
                                  decode(codes, container).view(np.uint32))
    assert stream.tobytes() == pack(x, container)
    np.testing.assert_array_equal(unpacked[:-1].view(np.uint32), x[:-1].view(np.uint32))
    assert unpacked[-1:].view(np.uint32)[0] == 0x7FC0_0000


@pytest.mark.spec("X9")
@pytest.mark.parametrize("anchor", [-20, 0, 9])
def test_anchored_training_codes_round_trip(anchor):
    container = Container.training(3, 2)
    rng = np.random.default_rng(anchor + 50)
    x = quantize((rng.standard_normal(500) * 2.0**anchor).astype(np.float32), container,
                 anchor=anchor)
    attributes = dict(schemas.attributes_of(container, "input"))
    model = codes_model(attributes, 3, 2, anchor=True)
    codes, decoded, _, unpacked = ReferenceEvaluator(model, new_ops=KERNELS).run(
        None, {"X": x, "anchor": np.array(anchor, np.int64)}
    )
    np.testing.assert_array_equal(codes, encode(x, container, anchor=anchor).astype(np.uint32))
    np.testing.assert_array_equal(decoded.view(np.uint32), x.view(np.uint32))
    np.testing.assert_array_equal(unpacked.view(np.uint32), x.view(np.uint32))


@pytest.mark.spec("X9")
def test_bf16_codes_round_trip():
    container = Container(5, 2, base="bf16")
    x = np.float32([1.25, -3.0, 0.0, 57344.0]).astype(ml_dtypes.bfloat16)
    model = codes_model({"base": "bf16"}, 5, 2, x_type=TensorProto.BFLOAT16)
    codes, decoded, _, unpacked = ReferenceEvaluator(model, new_ops=KERNELS).run(None, {"X": x})
    np.testing.assert_array_equal(codes, encode(x, container).astype(np.uint32))
    np.testing.assert_array_equal(decoded, x.astype(np.float32))
    np.testing.assert_array_equal(unpacked, x.astype(np.float32))


@pytest.mark.spec("X9")
def test_encode_rejects_non_member():
    model = codes_model({"specials": "fn"}, 4, 3)
    with pytest.raises(ValueError, match="must contain only members"):
        ReferenceEvaluator(model, new_ops=KERNELS).run(None, {"X": np.float32([1.0625])})


@pytest.mark.spec("X9", "X3")
def test_codes_reject_max_anchor_at_check():
    with pytest.raises(ValueError, match="anchor_mode must be 'bias' or 'input'; got 'max'"):
        codes_model({"anchor_mode": "max"}, 4, 3)


@pytest.mark.spec("X9", "X3")
def test_codes_missing_anchor_fails_check():
    with pytest.raises(ValueError, match="anchor_mode 'input' with anchor missing"):
        codes_model({"anchor_mode": "input"}, 4, 3)


@pytest.mark.spec("X9", "X3")
def test_codes_widths_checked_at_check():
    with pytest.raises(ValueError, match="exponent_bits must be in 1..8; got 10"):
        codes_model({}, 10, 3)


@pytest.mark.spec("X9")
def test_gecko_decode_rejects_corrupt_stream():
    from reference.gecko import GeckoFormatError

    model = codes_model({"specials": "fn"}, 4, 3)
    evaluator = ReferenceEvaluator(model, new_ops=KERNELS)
    stream = evaluator.run(["stream"], {"X": np.float32([1.0, 2.0])})[0].copy()
    stream[0] ^= 0xFF
    decoder = helper.make_graph(
        [helper.make_node("GeckoDecode", ["stream"], ["Y"], domain=DOMAIN)], "decode",
        [helper.make_tensor_value_info("stream", TensorProto.UINT8, ["bytes"])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["n"])],
    )
    with pytest.raises(GeckoFormatError):
        ReferenceEvaluator(make_model(decoder, []), new_ops=KERNELS).run(None, {"stream": stream})


@pytest.mark.spec("X9")
def test_onnxruntime_cannot_run_gecko_ops():
    import onnxruntime

    width = [helper.make_tensor(n, TensorProto.INT64, [], [v]) for n, v in (("e", 4), ("m", 3))]
    graph = helper.make_graph(
        [helper.make_node("GeckoEncode", ["X", "e", "m"], ["stream"], domain=DOMAIN,
                          specials="fn")],
        "gecko", [helper.make_tensor_value_info("X", TensorProto.FLOAT, ["n"])],
        [helper.make_tensor_value_info("stream", TensorProto.UINT8, ["bytes"])],
        initializer=width,
    )
    model = make_model(graph, [])
    with pytest.raises(Exception, match="GeckoEncode|ai.schrodinger_fp"):
        onnxruntime.InferenceSession(model.SerializeToString(),
                                     providers=["CPUExecutionProvider"])


# function bodies of NarrowEncode and NarrowDecode


def assert_code_backends_agree(op_type, values, attributes, e, m, anchor=None):
    want = code_op("reference", op_type, values, attributes, e, m, anchor=anchor)
    for backend in BACKENDS[1:]:
        got = code_op(backend, op_type, values, attributes, e, m, anchor=anchor)
        bad = np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))
        if bad.size:
            i = bad[0]
            pytest.fail(
                f"{op_type} in {backend} differs from the reference at {bad.size} elements; "
                f"first input {values[i:i + 1]!r}: want 0x{int(want.view(np.uint32)[i]):x}, got "
                f"0x{int(got.view(np.uint32)[i]):x} (e={e}, m={m}, {attributes}, anchor={anchor})"
            )
    return want


@st.composite
def code_cases(draw):
    """Draw members of a container, its attributes, widths and anchor."""
    base = draw(st.sampled_from(["fp32", "bf16"]), label="base")
    attributes = {
        "specials": draw(st.sampled_from(["ieee", "fn", "none"]), label="specials"),
        "subnormals": draw(st.integers(0, 1), label="subnormals"),
        "anchor_mode": draw(st.sampled_from(["bias", "input"]), label="anchor_mode"),
        "base": base,
    }
    e = draw(st.integers(1, 8), label="exponent_bits")
    m = draw(st.integers(0, 23 if base == "fp32" else 7), label="mantissa_bits")
    anchor = None
    if attributes["anchor_mode"] == "input":
        anchor = draw(st.integers(*anchor_range(base)), label="anchor")
    try:
        container = schemas.container_of(attributes, e, m)
        container.with_anchor(anchor)
    except ValueError:
        assume(False)

    size = draw(st.integers(1, 40), label="size")
    if base == "fp32":
        bits = draw(st.lists(st.integers(0, 2**32 - 1), min_size=size, max_size=size))
        x = np.array(bits, np.uint32).view(np.float32)
    else:
        bits = draw(st.lists(st.integers(0, 2**16 - 1), min_size=size, max_size=size))
        x = np.array(bits, np.uint16).view(ml_dtypes.bfloat16)
    if not container.has_nan:
        x = x[~np.isnan(x.astype(np.float32))]

    # Saturating quantization turns any input into a member, which encode requires.
    saturating = dataclasses.replace(container, saturate=True)
    members = quantize(x, saturating, anchor=anchor)
    try:
        encode(members, container, anchor=anchor)
    except ValueError:
        # C13 saturates to the largest member that the base holds, so encode should accept
        # every saturated output; a draw where it does not is skipped rather than failed.
        assume(False)
    return members, attributes, e, m, anchor


@pytest.mark.spec("X9")
@given(code_cases())
@example((np.float32([2.0**-148]), {"specials": "ieee", "subnormals": 0, "anchor_mode": "input"},
          2, 1, -148))
def test_code_bodies_match_reference(case):
    members, attributes, e, m, anchor = case
    codes = assert_code_backends_agree("encode", members, attributes, e, m, anchor)
    decoded = assert_code_backends_agree("decode", codes, attributes, e, m, anchor)
    np.testing.assert_array_equal(np.isnan(decoded), np.isnan(members.astype(np.float32)))


@pytest.mark.spec("X9")
@pytest.mark.parametrize("name", sorted(n for n, f in PRESETS.items()
                                         if f["exponent_bits"] + f["mantissa_bits"] < 16))
def test_code_bodies_every_code_of_preset(name):
    # Every code of the format decodes, and encodes back to itself (NaN codes by class).
    fields = dict(PRESETS[name])
    e, m = fields.pop("exponent_bits"), fields.pop("mantissa_bits")
    attributes = schemas.attributes_of(Container(e, m, **fields))
    codes = np.arange(2 ** (1 + e + m), dtype=np.uint32)
    decoded = assert_code_backends_agree("decode", codes, attributes, e, m)
    again = assert_code_backends_agree("encode", decoded, attributes, e, m)
    nan = np.isnan(decoded)
    np.testing.assert_array_equal(again[~nan], codes[~nan])
