"""Function bodies of NarrowEncode and NarrowDecode made only of standard ONNX operators.

Codes are laid out sign'exponent'mantissa in the low 1 + e + m bits of a uint32, as
``reference.encode`` lays them out (SPEC.md C17 to C19). The bodies are exact for every input
that the reference accepts. Where the reference raises (a value that is not a member, a code
that encoding never emits), they return unspecified bits, because ONNX Runtime cannot raise.
"""

from onnx import TensorProto, helper

from onnx_ops import function_body, integer_rounding, schemas
from onnx_ops.graph_builder import INT32, UINT32, NodeBuilder

CODE_INPUTS = ("exponent_bits", "mantissa_bits", "anchor")


def encode_function(attributes):
    """Build the FunctionProto of ``NarrowEncode`` for one set of node attributes."""
    a = schemas.complete_attributes(attributes)
    b = NodeBuilder("c_")
    e, m = b.cast("exponent_bits", INT32), b.cast("mantissa_bits", INT32)
    e_min, top_code = _window(b, a, e, m)

    bits = function_body.input_bits(b, a["base"], "X")
    magnitude = b.op("BitwiseAnd", bits, b.u32(function_body.MAGNITUDE_MASK))
    exponent_field = b.op("Max", b.shift_right(magnitude, b.u32(23)), b.u32(1))
    base = b.shift_left(b.op("Sub", exponent_field, b.u32(1)), b.u32(23))
    significand = b.op("Sub", magnitude, base, hint="significand")
    scale = b.op("Sub", b.cast(exponent_field, INT32), b.i32(150), hint="scale")
    exponent = integer_rounding.true_exponent(b, magnitude)
    normal = b.op("GreaterOrEqual", exponent, e_min, hint="normal")

    # Normal: the m bits below the leading 1, whose position in S is exponent - scale.
    # Subnormal: S * 2**scale / 2**(e_min - m). Either may shift left or right.
    lead = b.op("Sub", exponent, scale)
    normal_shift = b.op("Sub", lead, m)
    subnormal_shift = b.op("Sub", b.op("Sub", e_min, m), scale)
    shift = b.where(normal, normal_shift, subnormal_shift)
    mantissa = _shift_signed(b, significand, shift)
    mantissa_mask = b.op("Sub", _shift_left_u(b, b.u32(1), m), b.u32(1), hint="mantissa_mask")
    mantissa = b.op("BitwiseAnd", mantissa, mantissa_mask)
    exponent_code = b.where(normal, b.op("Add", b.op("Sub", exponent, e_min), b.i32(1)),
                            b.i32(0))
    exponent_code = b.cast(b.op("Max", exponent_code, b.i32(0)), UINT32)
    code = b.op("BitwiseOr", _shift_left_u(b, exponent_code, m), mantissa, hint="code")
    zero = b.op("Equal", magnitude, b.u32(0))
    code = b.where(zero, b.u32(0), code)
    code = _encode_specials(b, a, e, m, magnitude, code, mantissa_mask)

    sign = _shift_left_u(b, b.shift_right(bits, b.u32(31)), b.op("Add", e, m))
    b.nodes.append(helper.make_node("BitwiseOr", [code, sign], ["Y"]))
    return _function("NarrowEncode", ["X", *CODE_INPUTS], b, attributes)


def decode_function(attributes):
    """Build the FunctionProto of ``NarrowDecode`` for one set of node attributes."""
    a = schemas.complete_attributes(attributes)
    b = NodeBuilder("d_")
    e, m = b.cast("exponent_bits", INT32), b.cast("mantissa_bits", INT32)
    e_min, _ = _window(b, a, e, m)

    codes = "codes"
    all_ones = b.op("Sub", _shift_left_u(b, b.u32(1), e), b.u32(1), hint="all_ones")
    mantissa_mask = b.op("Sub", _shift_left_u(b, b.u32(1), m), b.u32(1), hint="mantissa_mask")
    sign = b.shift_left(
        b.op("BitwiseAnd", _shift_right_u(b, codes, b.op("Add", e, m)), b.u32(1)), b.u32(31)
    )
    exponent_code = b.op("BitwiseAnd", _shift_right_u(b, codes, m), all_ones)
    mantissa = b.op("BitwiseAnd", codes, mantissa_mask)
    normal = b.op("Greater", exponent_code, b.u32(0))

    significand = b.where(normal, b.op("Add", mantissa, _shift_left_u(b, b.u32(1), m)),
                          mantissa)
    exponent = b.op("Sub", b.op("Add", b.cast(exponent_code, INT32), e_min), b.i32(1))
    low = b.op("Sub", b.where(normal, exponent, e_min), m, hint="low_exponent")
    bits = _bits_of_scaled(b, significand, low)
    bits = _decode_specials(b, a, e, m, exponent_code, mantissa, all_ones, mantissa_mask, bits)
    value = b.op("BitwiseOr", bits, sign)
    b.nodes.append(helper.make_node("BitCast", [value], ["Y"], to=TensorProto.FLOAT))
    return _function("NarrowDecode", ["codes", *CODE_INPUTS], b, attributes)


def _function(name, inputs, b, attributes):
    return helper.make_function(
        schemas.DOMAIN, name, inputs, ["Y"], b.nodes,
        [helper.make_opsetid("", function_body.OPSET)],
        overload=function_body.overload_name(attributes),
    )


def _window(b, a, e, m):
    """Return (e_min, top_code): the smallest normal exponent and the largest normal code."""
    top_code = function_body.max_exponent_code(b, a, e, m)
    if a["anchor_mode"] == "input":
        e_max = b.cast("anchor", INT32)
    else:
        e_max = b.op("Sub", top_code, function_body.bias_of(b, a, e))
    return b.op("Sub", e_max, b.op("Sub", top_code, b.i32(1)), hint="e_min"), top_code


def _shift_left_u(b, value, amount):
    """Return uint32 ``value`` shifted left by the int32 ``amount``."""
    return b.shift_left(value, b.cast(amount, UINT32))


def _shift_right_u(b, value, amount):
    """Return uint32 ``value`` shifted right by the int32 ``amount``."""
    return b.shift_right(value, b.cast(amount, UINT32))


def _shift_signed(b, value, shift):
    """Return value >> shift for shift >= 0 and value << -shift otherwise (shifts clamped)."""
    right = b.cast(b.op("Min", b.op("Max", shift, b.i32(0)), b.i32(31)), UINT32)
    left = b.cast(b.op("Min", b.op("Max", b.op("Neg", shift), b.i32(0)), b.i32(31)), UINT32)
    return b.shift_left(b.shift_right(value, right), left)


def _bits_of_scaled(b, significand, low):
    """Return the float32 bits of significand * 2**low (significand < 2**24, exact values).

    Casting the significand to float32 is exact. While the result is normal, its exponent field
    moves by ``low``; below that, the value is counted in units of 2**-149.
    """
    as_float = b.op("BitCast", b.cast(significand, TensorProto.FLOAT), to=INT32)
    float_field = b.cast(b.shift_right(b.cast(as_float, UINT32), b.u32(23)), INT32)
    field = b.op("Add", float_field, low, hint="field")
    normal_bits = b.cast(b.op("Add", as_float, b.op("Mul", low, b.i32(1 << 23))), UINT32)
    subnormal = _shift_signed(b, significand, b.op("Neg", b.op("Add", low, b.i32(149))))
    bits = b.where(b.op("GreaterOrEqual", field, b.i32(1)), normal_bits, subnormal)
    return b.where(b.op("Equal", significand, b.u32(0)), b.u32(0), bits)


def _encode_specials(b, a, e, m, magnitude, code, mantissa_mask):
    all_ones = b.op("Sub", _shift_left_u(b, b.u32(1), e), b.u32(1))
    top = _shift_left_u(b, all_ones, m)
    if a["specials"] == "ieee":
        is_inf = b.op("Equal", magnitude, b.u32(function_body.INF_BITS))
        code = b.where(is_inf, top, code)
        quiet = b.shift_right(b.op("Add", mantissa_mask, b.u32(1)), b.u32(1))
        nan_code = b.op("BitwiseOr", top, quiet)
    elif a["specials"] == "fn":
        nan_code = b.op("BitwiseOr", top, mantissa_mask)
    else:
        return code
    is_nan = b.op("Greater", magnitude, b.u32(function_body.INF_BITS))
    return b.where(is_nan, nan_code, code)


def _decode_specials(b, a, e, m, exponent_code, mantissa, all_ones, mantissa_mask, bits):
    top = b.op("Equal", exponent_code, all_ones)
    if a["specials"] == "ieee":
        zero_mantissa = b.op("Equal", mantissa, b.u32(0))
        bits = b.where(b.op("And", top, zero_mantissa), b.u32(function_body.INF_BITS), bits)
        is_nan = b.op("And", top, b.op("Not", zero_mantissa))
    elif a["specials"] == "fn":
        is_nan = b.op("And", top, b.op("Equal", mantissa, mantissa_mask))
    else:
        return bits
    return b.where(is_nan, b.u32(function_body.QUIET_NAN_BITS), bits)
