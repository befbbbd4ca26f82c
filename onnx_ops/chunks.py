"""Running an element-wise subgraph over cache-sized chunks of a tensor with ``Scan``.

ONNX Runtime executes each node over the whole tensor and writes a new tensor, so a body of
about 40 element-wise integer nodes on 16 Mi values makes about 40 passes over memory. Scanning
over rows of ``CHUNK`` values keeps every intermediate in cache; only the padding, the stacked
output and the final slice touch the whole tensor.
"""

import numpy as np
from onnx import TensorProto, helper

from onnx_ops.graph_builder import NodeBuilder

# 16 Ki values: 64 KiB per float32 intermediate.
CHUNK = 16384
INT64 = TensorProto.INT64


def aligned_view(b, name, chunk):
    """Return (aligned, view_shape) for reshaping ``name`` to rows of ``chunk`` with no copy.

    ``aligned`` is the 0-d bool "the size is a nonzero multiple of ``chunk``". ``view_shape`` is
    (-1, chunk) when aligned and (-1, 1) otherwise, so that ONNX Runtime's static inference of
    an ``If`` branch that is not taken (constant inputs whose size is not a multiple of chunk)
    still gets a valid Reshape.
    """
    # Shape, not Size: ONNX Runtime 1.32 has no Size kernel for bfloat16.
    size = b.op("ReduceProd", b.op("Shape", name), keepdims=0, hint="size")
    chunk_size = b.const(chunk, np.int64, hint="chunk")
    zero = b.const(0, np.int64, hint="zero")
    multiple = b.op("Equal", b.op("Mod", size, chunk_size), zero)
    # An empty tensor takes the padded path, because ReferenceEvaluator (onnx 1.23) rejects a
    # Scan of zero iterations.
    aligned = b.op("And", multiple, b.op("Greater", size, zero), hint="aligned")
    row_length = b.op("Where", aligned, chunk_size, b.const(1, np.int64, hint="one"))
    view_shape = b.op("Concat", b.const([-1], np.int64, hint="minus_one"),
                      b.op("Unsqueeze", row_length, b.const([0], np.int64, hint="axis")), axis=0,
                      hint="view_shape")
    return aligned, view_shape


def flat_rows(b, name, chunk, element_type):
    """Return (rows, count, aligned): ``name`` flattened, zero-padded and reshaped to (-1, chunk).

    ``aligned`` is the 0-d bool "no padding needed". An ``If`` on it skips the copy that Pad
    makes, so a tensor whose size is a multiple of ``chunk`` is only reshaped.
    """
    flat = b.op("Reshape", name, b.const([-1], np.int64, hint="flat_shape"), hint="flat")
    count = b.op("Shape", flat, hint="count")
    chunk_size = b.const([chunk], np.int64, hint="chunk")
    missing = b.op("Mod", b.op("Sub", chunk_size, b.op("Mod", count, chunk_size)), chunk_size)
    # An empty tensor still gets one row, because ReferenceEvaluator (onnx 1.23) rejects a Scan
    # of zero iterations.
    empty = b.cast(b.op("Equal", count, b.const([0], np.int64, hint="zero")), INT64)
    missing = b.op("Add", missing, b.op("Mul", empty, chunk_size), hint="missing")
    aligned = b.op("Squeeze", b.op("Equal", missing, b.const([0], np.int64, hint="zero")),
                   hint="aligned")
    rows_shape = b.const([-1, chunk], np.int64, hint="rows_shape")

    pads = b.op("Concat", b.const([0], np.int64, hint="zero"), missing, axis=0, hint="pads")
    padded = NodeBuilder(b.fresh("pad_"))
    padded_rows = padded.op("Reshape", padded.op("Pad", flat, pads), rows_shape)
    # The rows of the unpadded branch are (-1, chunk) when it runs and (-1, 1) otherwise, so
    # that ONNX Runtime's static inference of the branch not taken (constant inputs whose size
    # is not a multiple of chunk) gets a valid Reshape.
    row_length = b.op("Where", b.op("Unsqueeze", aligned, b.const([0], np.int64, hint="axis")),
                      chunk_size, b.const([1], np.int64, hint="one"), hint="row_length")
    view_shape = b.op("Concat", b.const([-1], np.int64, hint="minus_one"), row_length, axis=0)
    reshaped = NodeBuilder(b.fresh("view_"))
    reshaped_rows = reshaped.op("Reshape", flat, view_shape)
    rows = b.op("If", aligned,
                then_branch=_branch(reshaped, reshaped_rows, "rows", element_type),
                else_branch=_branch(padded, padded_rows, "rows", element_type), hint="rows")
    return rows, count, aligned


def _branch(builder, output, name, element_type):
    return helper.make_graph(builder.nodes, name, [],
                             [helper.make_tensor_value_info(output, element_type, None)])


def scan_rows(b, body, inputs, outputs, states=()):
    """Add a Scan of ``body`` over the rows ``inputs``; return the names of its outputs.

    ``states`` are the initial values of loop-carried states, which come first in the body's
    inputs and outputs, as Scan requires.
    """
    names = [b.fresh(f"scan_{o}") for o in outputs]
    b.nodes.append(helper.make_node(
        "Scan", [*states, *inputs], names, body=body, num_scan_inputs=len(inputs),
    ))
    return names


def unflatten(b, rows, count, aligned, like, output, element_type):
    """Write ``rows`` (-1, chunk) back to the shape of ``like``, dropping any padding."""
    shape = b.op("Shape", like)
    sliced = NodeBuilder(b.fresh("slice_"))
    flat = sliced.op("Reshape", rows, sliced.const([-1], np.int64))
    kept = sliced.op("Reshape", sliced.op("Slice", flat, sliced.const([0], np.int64), count),
                     shape)
    reshaped = NodeBuilder(b.fresh("view_"))
    whole = reshaped.op("Reshape", rows, shape)
    b.nodes.append(helper.make_node(
        "If", [aligned], [output],
        then_branch=_branch(reshaped, whole, "whole", element_type),
        else_branch=_branch(sliced, kept, "sliced", element_type),
    ))
