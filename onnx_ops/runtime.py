"""Running models in ONNX Runtime with float32 and bfloat16 tensors.

The onnxruntime 1.32 Python API has no numpy type for bfloat16, so bfloat16 tensors pass as
uint16 bit patterns wrapped in typed ``OrtValue``s. Feeds are numpy arrays (ml_dtypes bfloat16
included); numpy scalars are turned into 0-d arrays, which ONNX Runtime requires.
"""

import ctypes

import numpy as np
from onnx import TensorProto


class OrtSession:
    """An ONNX Runtime session on the CPU that takes and returns bfloat16 as ml_dtypes arrays."""

    def __init__(self, model, threads=None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads is not None:
            options.intra_op_num_threads = threads
        self.session = onnxruntime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        self._ort = onnxruntime

    def run(self, feeds):
        """Return the outputs (a list of numpy arrays) for the dict of numpy arrays ``feeds``."""
        binding = self.session.io_binding()
        for name, value in feeds.items():
            binding.bind_ortvalue_input(name, self._ortvalue(np.asarray(value)))
        outputs = self.session.get_outputs()
        for output in outputs:
            binding.bind_output(output.name)
        self.session.run_with_iobinding(binding)
        return [self._numpy(value) for value in binding.get_outputs()]

    def _ortvalue(self, array):
        if array.dtype.name == "bfloat16":
            bits = np.ascontiguousarray(array).view(np.uint16)
            return self._ort.OrtValue.ortvalue_from_numpy_with_onnx_type(bits, TensorProto.BFLOAT16)
        return self._ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(array))

    def _numpy(self, value):
        if value.data_type() != "tensor(bfloat16)":
            return value.numpy()
        import ml_dtypes

        # Copy the bits out of the CPU buffer, since OrtValue.numpy() rejects bfloat16.
        bits = np.empty(value.shape(), np.uint16)
        ctypes.memmove(bits.ctypes.data, value.data_ptr(), bits.nbytes)
        return bits.view(ml_dtypes.bfloat16)
