"""The ``Narrow`` operator as a FunctionProto made only of standard ONNX operators.

ONNX Runtime runs such a model-local function with no native code. The container's scalars are
computed once. The bf16 container is narrowed by the Cast round trip of ``cast_body``. Other
containers run by ``Scan`` over cache-sized rows, with one of two bodies. The integer body of
``integer_rounding`` makes one integer rounding decision on uint32 bits. For nearest-even
rounding, where an ``If`` on the scalars finds it exact, the float addition of ``fast_body``
runs instead.
Variants of the float body for m <= 7 leave out the overflow or NaN checks that a reduction of
X has shown to be unneeded. The sign is carried as the difference of the input bits and the magnitude
bits, so -0 survives (a float ``Where`` in ONNX Runtime 1.32 turns a selected -0 into +0).
BitCast needs opset 26.

A body is specialised to one set of attributes; models tell the sets apart by the function's
``overload`` name (IR version 10 and later).
"""

import numpy as np
from onnx import TensorProto, helper

from onnx_ops import cast_body, chunks, fast_body, integer_rounding, schemas
from onnx_ops.graph_builder import INT32, UINT32, NodeBuilder

OPSET = 26
INPUTS = ("X", "exponent_bits", "mantissa_bits", "anchor", "noise")

SIGN_MASK = 0x8000_0000
MAGNITUDE_MASK = 0x7FFF_FFFF
INF_BITS = 0x7F80_0000
QUIET_NAN_BITS = 0x7FC0_0000
MAX_FINITE_BITS = 0x7F7F_FFFF


def overload_name(attributes):
    """Return the overload name that distinguishes bodies built for different attribute sets."""
    a = schemas.complete_attributes(attributes)
    bias = "ieee" if a["bias"] is None else str(a["bias"]).replace("-", "m")
    return (
        f"{a['base']}_{a['anchor_mode']}_bias{bias}_{a['specials']}_sub{a['subnormals']}"
        f"_sat{a['saturate']}_{a['rounding']}"
    )


def narrow_function(attributes, chunk=chunks.CHUNK):
    """Build the FunctionProto of ``Narrow`` for one set of node attributes.

    The scalars of the container (exponent range, largest value) are computed once. Where
    ``cast_body`` finds the bf16 container, an ``If`` narrows by a Cast round trip. Otherwise the
    element-wise body runs by ``Scan`` over rows of ``chunk`` values, so that its intermediates
    stay in cache. With nearest-even rounding an ``If`` on those scalars picks the float
    addition body of ``fast_body`` where it is exact, and the integer body elsewhere.
    """
    a = schemas.complete_attributes(attributes)
    b = NodeBuilder("n_")
    e = b.cast("exponent_bits", INT32)
    m = b.cast("mantissa_bits", INT32)
    element_type = schemas.BASE_ELEMENT_TYPES[a["base"]]
    largest, finite = None, None
    if a["anchor_mode"] == "max":
        largest, finite = _largest_finite(b, a, chunk)
    limits = _exponent_limits(b, a, e, m, largest)
    if finite is not None:
        limits["finite"] = finite
        limits["largest_finite"] = largest
    if not cast_body.applies(a):
        _narrow_rows(b, a, m, limits, chunk, "Y")
    else:
        rows = NodeBuilder("rows_")
        _narrow_rows(rows, a, m, limits, chunk, "rows_y")
        by_rows = helper.make_graph(rows.nodes, "narrow_rows", [],
                                    [helper.make_tensor_value_info("rows_y", element_type, None)])
        by_cast = cast_body.branch("X", "cast_y")
        condition = cast_body.condition(b, m, limits["e_min"], limits["e_max"])
        b.nodes.append(helper.make_node("If", [condition], ["Y"], then_branch=by_cast,
                                        else_branch=by_rows))
    return helper.make_function(
        schemas.DOMAIN, "Narrow", list(INPUTS), ["Y"], b.nodes,
        [helper.make_opsetid("", OPSET)], overload=overload_name(attributes),
    )


def _narrow_rows(b, a, m, limits, chunk, output):
    """Add the nodes that narrow X row by row with ``Scan`` and write ``output``.

    An ``If`` around the whole pipeline views a tensor whose size is a multiple of ``chunk`` as
    rows with no copy. Where the ``If`` sat between the reshape and the Scan instead, ONNX
    Runtime 1.32 copied the rows in and the result out, about 4 ms per 16 Mi values.
    """
    element_type = schemas.BASE_ELEMENT_TYPES[a["base"]]
    stochastic = a["rounding"] == "stochastic"
    body_inputs = [_row_info("x_row", a, chunk)]
    if stochastic:
        body_inputs.append(helper.make_tensor_value_info("noise_row", UINT32, [chunk]))
    general = _element_body(a, m, limits, body_inputs, chunk, fast=False)
    choices = []
    if a["rounding"] == "nearest_even":
        # Where X contains no NaN, inf or value above the container's maximum, the short body
        # needs no overflow or NaN check, each a compare and a Where per value.
        short = _element_body(a, m, limits, body_inputs, chunk, True, True, in_range=True)
        condition = b.op("And", limits["short_condition"], _in_range(b, a, limits))
        choices.append((condition, short))
        if "finite" in limits and _checks_nan(a):
            # The max anchor rules out NaN at no cost, which leaves out the NaN check alone.
            short = _element_body(a, m, limits, body_inputs, chunk, True, True, nan_free=True)
            condition = b.op("And", limits["short_condition"], limits["finite"])
            choices.append((condition, short))
        for power_by_cast in (True, False):
            fast = _element_body(a, m, limits, body_inputs, chunk, True, power_by_cast)
            condition = limits["short_condition" if power_by_cast else "fast_condition"]
            choices.append((condition, fast))
    aligned, view_shape = chunks.aligned_view(b, "X", chunk)

    whole = NodeBuilder("whole_")
    scan_inputs = [whole.op("Reshape", "X", view_shape)]
    if stochastic:
        scan_inputs.append(whole.op("Reshape", "noise", view_shape))
    narrowed = _scan_choice(whole, choices, general, scan_inputs, a, "whole_")
    whole.nodes.append(helper.make_node("Reshape", [narrowed, whole.op("Shape", "X")],
                                        ["whole_y"]))

    padded = NodeBuilder("padded_")
    rows, count, padded_aligned = chunks.flat_rows(padded, "X", chunk, element_type)
    scan_inputs = [rows]
    if stochastic:
        scan_inputs.append(chunks.flat_rows(padded, "noise", chunk, UINT32)[0])
    narrowed = _scan_choice(padded, choices, general, scan_inputs, a, "padded_")
    chunks.unflatten(padded, narrowed, count, padded_aligned, "X", "padded_y", element_type)

    branches = [
        helper.make_graph(builder.nodes, builder.prefix + "rows", [],
                          [helper.make_tensor_value_info(name, element_type, None)])
        for builder, name in ((whole, "whole_y"), (padded, "padded_y"))
    ]
    b.nodes.append(helper.make_node("If", [aligned], [output], then_branch=branches[0],
                                    else_branch=branches[1]))


def _in_range(b, a, limits):
    """Return the 0-d bool "X contains no NaN, no inf and no magnitude above the maximum".

    The max anchor has reduced X already. Other anchors reduce it here, which costs less
    than the compare and Where per value that the check saves.
    """
    if "finite" in limits:
        largest = limits["largest_finite"]
        below = b.op("LessOrEqual", largest, limits["max_below"])
        return b.op("And", limits["finite"], below, hint="in_range")
    value = "X" if a["base"] == "fp32" else b.cast("X", TensorProto.FLOAT)
    magnitude = b.op("BitCast", b.op("Abs", value), to=INT32)
    # NaN and inf have the largest int32 magnitude bits, so they fail the compare too.
    largest = b.cast(b.op("ReduceMax", magnitude, keepdims=0), UINT32)
    return b.op("LessOrEqual", largest, limits["max_below"], hint="in_range")


def _scan_choice(b, choices, last_body, scan_inputs, a, prefix):
    """Add a Scan of the first body in ``choices`` whose condition holds, else of ``last_body``.

    ``choices`` is a list of (0-d bool, Scan body); each one becomes an ``If``.
    """
    if not choices:
        return chunks.scan_rows(b, last_body, scan_inputs, ["y_rows"])[0]
    element_type = schemas.BASE_ELEMENT_TYPES[a["base"]]
    (condition, body), rest = choices[0], choices[1:]
    then_builder = NodeBuilder(f"then_{prefix}")
    then_rows = chunks.scan_rows(then_builder, body, scan_inputs, ["y_rows"])[0]
    else_builder = NodeBuilder(f"else_{prefix}")
    else_rows = _scan_choice(else_builder, rest, last_body, scan_inputs, a, f"{prefix}else_")
    branches = [
        helper.make_graph(builder.nodes, f"{builder.prefix}narrow", [],
                          [helper.make_tensor_value_info(rows, element_type, None)])
        for builder, rows in ((then_builder, then_rows), (else_builder, else_rows))
    ]
    return b.op("If", condition, then_branch=branches[0], else_branch=branches[1], hint="rows")


def _row_info(name, a, chunk):
    return helper.make_tensor_value_info(name, schemas.BASE_ELEMENT_TYPES[a["base"]], [chunk])


def _element_body(a, m, limits, inputs, chunk, fast, power_by_cast=False, nan_free=False,
                  in_range=False):
    """Return the Scan body that narrows one row; it reads the scalars from the outer scope.

    ``fast`` picks the float addition body, and ``power_by_cast`` its variant for m <= 7.
    ``nan_free`` leaves out the NaN check, for use only when X contains no NaN. ``in_range``
    leaves out all of ``_apply_limits``, for use only when ``_in_range`` is true.
    """
    if not fast:
        prefix = "r_"
    elif in_range:
        prefix = "i_"
    elif nan_free:
        prefix = "s_"
    else:
        prefix = "c_" if power_by_cast else "f_"
    b = NodeBuilder(prefix)
    if fast:
        value = "x_row" if a["base"] == "fp32" else b.cast("x_row", TensorProto.FLOAT)
        absolute = b.op("Abs", value)
        magnitude = b.op("BitCast", absolute, to=UINT32, hint="magnitude")
        bits = b.op("BitCast", value, to=UINT32)
        rounded = fast_body.round_nearest_even(b, a["subnormals"], absolute, magnitude,
                                               limits["fast_values"], power_by_cast)
    else:
        bits = input_bits(b, a["base"], "x_row")
        magnitude = b.op("BitwiseAnd", bits, b.u32(MAGNITUDE_MASK), hint="magnitude")
        if integer_rounding.has_fast_rounding(a):
            rounded = integer_rounding.round_nearest_even_fast(b, magnitude, limits["fast"])
        else:
            rounded = integer_rounding.round_magnitude(
                b, a, magnitude, m, limits["e_min"], "noise_row"
            )
    # The sign is the difference of the bits and the magnitude, an Add and a Sub being much
    # cheaper than bitwise operators in ONNX Runtime.
    sign = b.op("Sub", bits, magnitude, hint="sign")
    if not a["subnormals"]:
        rounded = _flush_below(b, rounded, limits["e_min"], fast)
    if not in_range:
        rounded = _apply_limits(b, a, magnitude, rounded, limits, fast, nan_free)
    result = b.op("Add", sign, rounded, hint="signed")
    if fast and a["base"] == "bf16":
        # Exact: the result is a BF16 value or a NaN.
        value = b.op("BitCast", result, to=TensorProto.FLOAT)
        b.nodes.append(helper.make_node("Cast", [value], ["y_row"], to=TensorProto.BFLOAT16))
    else:
        _output_bits(b, a["base"], result, "y_row")
    return helper.make_graph(b.nodes, "narrow_row", inputs, [_row_info("y_row", a, chunk)])


def _largest_finite(b, a, chunk):
    """Return the largest finite magnitude (uint32 bits, 0-d) and "X is finite" (0-d bool).

    The largest magnitude of all, by float Abs and an int32 ReduceMax, is the result unless it
    is inf or NaN. Only then does an ``If`` run the slower Scan that skips non-finite values.
    """
    value = "X" if a["base"] == "fp32" else b.cast("X", TensorProto.FLOAT)
    magnitude = b.op("BitCast", b.op("Abs", value), to=INT32)
    largest = b.op("ReduceMax", magnitude, keepdims=0, hint="largest_magnitude")
    finite = b.op("Less", largest, b.i32(INF_BITS))
    quick = NodeBuilder(b.fresh("quick_"))
    quick_largest = quick.op("Identity", largest)
    scanned = NodeBuilder(b.fresh("scanned_"))
    element_type = schemas.BASE_ELEMENT_TYPES[a["base"]]
    rows, _, _ = chunks.flat_rows(scanned, "X", chunk, element_type)
    scanned_largest = _largest_finite_by_scan(scanned, a, rows, chunk)
    outputs = [(quick, quick_largest), (scanned, scanned_largest)]
    then_branch, else_branch = [
        helper.make_graph(builder.nodes, "largest", [],
                          [helper.make_tensor_value_info(output, INT32, [])])
        for builder, output in outputs
    ]
    chosen = b.op("If", finite, then_branch=then_branch, else_branch=else_branch)
    return b.cast(chosen, UINT32), finite


def _largest_finite_by_scan(b, a, rows, chunk):
    """Return the largest finite magnitude (int32 bits, 0-d) over all rows, by Scan."""
    body = NodeBuilder("m_")
    magnitude = body.op("BitwiseAnd", input_bits(body, a["base"], "x_row"),
                        body.u32(MAGNITUDE_MASK))
    finite = body.where(body.op("Less", magnitude, body.u32(INF_BITS)), magnitude, body.u32(0))
    row_max = body.op("ReduceMax", body.cast(finite, INT32), keepdims=0)
    body.nodes.append(helper.make_node("Max", ["largest_in", row_max], ["largest_out"]))
    graph = helper.make_graph(
        body.nodes, "largest_row",
        [helper.make_tensor_value_info("largest_in", INT32, []), _row_info("x_row", a, chunk)],
        [helper.make_tensor_value_info("largest_out", INT32, [])],
    )
    return chunks.scan_rows(b, graph, [rows], ["largest"], states=[b.i32(0)])[0]


def input_bits(b, base, name):
    if base == "bf16":
        half = b.op("BitCast", name, to=TensorProto.UINT16)
        return b.shift_left(b.cast(half, UINT32), b.u32(16))
    return b.op("BitCast", name, to=UINT32)


def _output_bits(b, base, bits, output):
    if base == "bf16":
        half = b.cast(b.shift_right(bits, b.u32(16)), TensorProto.UINT16)
        b.nodes.append(helper.make_node("BitCast", [half], [output], to=TensorProto.BFLOAT16))
    else:
        b.nodes.append(helper.make_node("BitCast", [bits], [output], to=TensorProto.FLOAT))


# exponent range


def _exponent_limits(b, a, e, m, largest):
    """Return ``e_min`` (smallest normal exponent) and ``max_bits`` (largest finite magnitude)."""
    top_code = max_exponent_code(b, a, e, m)
    bias = bias_of(b, a, e)
    if a["anchor_mode"] == "bias":
        e_max = b.op("Sub", top_code, bias, hint="e_max")
    else:
        e_max = _anchor(b, a, m, largest, b.op("Sub", top_code, bias))
    e_min = b.op("Sub", e_max, b.op("Sub", top_code, b.i32(1)), hint="e_min")
    max_below, max_nearest = _max_bits(b, a, e_max, m)
    limits = {"e_min": e_min, "e_max": e_max, "max_below": max_below,
              "max_nearest": max_nearest}
    if integer_rounding.has_fast_rounding(a):
        limits["fast"] = integer_rounding.fast_rounding_scalars(b, e_min, m)
    if a["rounding"] == "nearest_even":
        limits["fast_condition"] = fast_body.condition(b, m, e_min, e_max)
        limits["short_condition"] = fast_body.short_condition(b, m, limits["fast_condition"])
        limits["fast_values"] = fast_body.scalars(b, m, e_min)
    return limits


def max_exponent_code(b, a, e, m):
    """Return the largest exponent code of normal numbers."""
    all_ones = b.op("Sub", _power_of_two(b, e), b.i32(1), hint="all_ones")
    if a["specials"] == "ieee":
        return b.op("Sub", all_ones, b.i32(1))
    if a["specials"] == "fn":
        # With m = 0 the only code of the all-ones exponent is the NaN code.
        return b.op("Sub", all_ones, b.cast(b.op("Equal", m, b.i32(0)), INT32))
    return all_ones


def _power_of_two(b, exponent):
    """Return ``2**exponent`` as int32 for 0 <= exponent <= 30."""
    shifted = b.shift_left(b.u32(1), b.cast(exponent, UINT32))
    return b.cast(shifted, INT32)


def bias_of(b, a, e):
    if a["bias"] is not None:
        return b.i32(a["bias"])
    return b.op("Sub", _power_of_two(b, b.op("Sub", e, b.i32(1))), b.i32(1), hint="bias")


def _anchor(b, a, m, largest, bias_e_max):
    if a["anchor_mode"] == "input":
        return b.cast("anchor", INT32)
    # "max": the exponent of the largest finite magnitude after mantissa rounding. Rounding is
    # monotone, so rounding the largest magnitude alone gives the largest rounded exponent.
    # Stochastic rounding counts as rounding up here (noise 0 rounds up whenever a dropped bit
    # is set), so that no noise can make a value overflow.
    noise = b.u32(0) if a["rounding"] == "stochastic" else None
    rounded = integer_rounding.round_magnitude(b, dict(a, subnormals=0), largest, m, None, noise)
    # A tensor with no finite nonzero value takes the container's own largest exponent, which
    # is at least 0 with the IEEE bias. Both are clamped to 127, the largest float32 exponent.
    exponent = integer_rounding.true_exponent(b, rounded)
    anchor = b.where(b.op("Equal", largest, b.u32(0)), bias_e_max, exponent)
    return b.op("Min", anchor, b.i32(127), hint="anchor")


def _max_bits(b, a, e_max, m):
    """Return float32 bits of the container's largest finite magnitude: (below, nearest).

    The largest significand is all ones, except with ``fn`` specials and m > 0, where the
    all-ones code is NaN. With e_max < -126 the maximum can fall between float32 subnormals:
    ``below`` (rounded toward zero) then decides overflow exactly and is the saturation value.
    ``nearest`` (rounded to nearest even) is used only by the fast body, where both agree.
    """
    m_u = b.cast(m, UINT32)
    significand = b.op("Sub", b.shift_left(b.u32(2), m_u), b.u32(1), hint="max_significand")
    if a["specials"] == "fn":
        not_nan = b.cast(b.op("Greater", m, b.i32(0)), UINT32)
        significand = b.op("Sub", significand, not_nan, hint="max_significand")

    exponent_field = b.shift_left(b.cast(b.op("Add", e_max, b.i32(126)), UINT32), b.u32(23))
    normal = b.op("Add", exponent_field, b.shift_left(significand, b.op("Sub", b.u32(23), m_u)))

    # Below the normal range, count in units of the smallest subnormal 2**-149.
    scale = b.op("Add", b.op("Sub", e_max, m), b.i32(149), hint="max_scale")
    up_shift = b.cast(b.op("Max", scale, b.i32(0)), UINT32)
    down_shift = b.cast(b.op("Min", b.op("Max", b.op("Neg", scale), b.i32(0)), b.i32(30)), UINT32)
    below = b.shift_right(b.shift_left(significand, up_shift), down_shift)
    nearest = integer_rounding.round_nearest_even_bits(
        b, b.shift_left(significand, up_shift), down_shift, None, None
    )

    is_normal = b.op("GreaterOrEqual", e_max, b.i32(-126))
    return b.where(is_normal, normal, below), b.where(is_normal, normal, nearest)


# underflow, overflow and specials


def _flush_below(b, bits, e_min, fast=False):
    """Flush magnitudes below the smallest normal to zero (the sign is added later).

    The fast body has e_min >= -125 and multiplies by the 0/1 comparison, which ONNX Runtime
    computes faster than Where.
    """
    normal = b.shift_left(b.cast(b.op("Add", e_min, b.i32(127)), UINT32), b.u32(23))
    if fast:
        return b.op("Mul", bits, b.cast(b.op("GreaterOrEqual", bits, normal), UINT32))
    subnormal = b.shift_left(
        b.u32(1), b.cast(b.op("Max", b.op("Add", e_min, b.i32(149)), b.i32(0)), UINT32)
    )
    smallest = b.where(b.op("Less", e_min, b.i32(-126)), subnormal, normal)
    return b.where(b.op("Less", bits, smallest), b.u32(0), bits)


def _checks_nan(a):
    """Return whether ``_apply_limits`` maps NaN inputs with a check of their own."""
    return bool(a["saturate"]) or a["specials"] == "ieee"


def _apply_limits(b, a, magnitude, rounded, limits, fast=False, nan_free=False):
    """Map overflow, infinities and NaN to the values the container's specials allow.

    Both bodies round inf and NaN inputs to bits above any finite maximum, so one compare finds
    overflow, inf and NaN. A container with neither inf nor NaN codes and no saturation cannot
    hold an overflow or a NaN; the reference raises there, and this body returns the quiet NaN.
    """
    if a["saturate"]:
        # Saturation goes to the largest member that float32 holds (C13), max rounded down.
        overflow_bits = limits["max_below"]
    elif a["specials"] == "ieee":
        # NOTE: ieee with m = 0 has inf but no NaN, which only matters for NaN inputs below.
        overflow_bits = b.u32(INF_BITS)
    else:
        overflow_bits = b.u32(QUIET_NAN_BITS)
    if fast and a["saturate"]:
        # The fast body's maximum is a float32 normal, so both maxima agree and Min saturates.
        result = b.op("Min", rounded, limits["max_nearest"])
    else:
        result = b.where(b.op("Greater", rounded, limits["max_below"]), overflow_bits, rounded)
    if _checks_nan(a) and not nan_free:
        is_nan = b.op("Greater", magnitude, b.u32(INF_BITS))
        result = b.where(is_nan, b.u32(QUIET_NAN_BITS), result)
    return result
