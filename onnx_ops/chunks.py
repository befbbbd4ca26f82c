"""Running an element-wise subgraph over cache-sized chunks of a tensor with ``Scan``.

ONNX Runtime executes each node over the whole tensor and writes a new tensor, so a body of
about 40 element-wise integer nodes on 16 Mi values makes about 40 passes over memory. Scanning
over rows of ``CHUNK`` values keeps every intermediate in cache; only the padding, the stacked
output and the final slice touch the whole tensor.
"""

import numpy as np
from onnx import TensorProto, helper

# 16 Ki values: 64 KiB per float32 intermediate.
CHUNK = 16384
INT64 = TensorProto.INT64


def flat_rows(b, name, chunk):
    """Return (rows, count): ``name`` flattened, zero-padded and reshaped to (-1, chunk)."""
    flat = b.op("Reshape", name, b.const([-1], np.int64, hint="flat_shape"), hint="flat")
    count = b.op("Shape", flat, hint="count")
    chunk_size = b.const([chunk], np.int64, hint="chunk")
    missing = b.op("Mod", b.op("Sub", chunk_size, b.op("Mod", count, chunk_size)), chunk_size)
    # An empty tensor still gets one row, because ReferenceEvaluator (onnx 1.23) rejects a Scan
    # of zero iterations.
    empty = b.cast(b.op("Equal", count, b.const([0], np.int64, hint="zero")), INT64)
    missing = b.op("Add", missing, b.op("Mul", empty, chunk_size), hint="missing")
    pads = b.op("Concat", b.const([0], np.int64, hint="zero"), missing, axis=0, hint="pads")
    padded = b.op("Pad", flat, pads, hint="padded")
    rows = b.op("Reshape", padded, b.const([-1, chunk], np.int64, hint="rows_shape"), hint="rows")
    return rows, count


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


def unflatten(b, rows, count, like, output):
    """Write ``rows`` (-1, chunk) back to the shape of ``like``, dropping the padding."""
    flat = b.op("Reshape", rows, b.const([-1], np.int64, hint="flat_shape"), hint="flat_out")
    start = b.const([0], np.int64, hint="start")
    kept = b.op("Slice", flat, start, count, hint="kept")
    b.nodes.append(helper.make_node("Reshape", [kept, b.op("Shape", like)], [output]))
