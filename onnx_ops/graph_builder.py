"""A small builder for ONNX node lists: each call appends one node and returns its output name."""

import numpy as np
from onnx import TensorProto, helper, numpy_helper

UINT32 = TensorProto.UINT32
INT32 = TensorProto.INT32


class NodeBuilder:
    """Collect nodes of one graph or function body under unique, readable value names."""

    def __init__(self, prefix):
        self.prefix = prefix
        self.nodes = []
        self._count = 0

    def fresh(self, hint):
        self._count += 1
        return f"{self.prefix}{hint}_{self._count}"

    def op(self, op_type, *inputs, hint=None, **attributes):
        output = self.fresh(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, list(inputs), [output], **attributes))
        return output

    def const(self, value, dtype, hint="c"):
        """Add a 0-d constant of numpy ``dtype``."""
        tensor = numpy_helper.from_array(np.array(value, dtype=dtype))
        return self.op("Constant", hint=hint, value=tensor)

    def u32(self, value):
        return self.const(value, np.uint32, hint=f"u{value:x}")

    def i32(self, value):
        return self.const(value, np.int32, hint=f"i{value}".replace("-", "m"))

    def cast(self, value, to):
        return self.op("Cast", value, to=to)

    def shift_left(self, value, amount):
        return self.op("BitShift", value, amount, direction="LEFT", hint="shl")

    def shift_right(self, value, amount):
        return self.op("BitShift", value, amount, direction="RIGHT", hint="shr")

    def where(self, condition, if_true, if_false):
        return self.op("Where", condition, if_true, if_false)
