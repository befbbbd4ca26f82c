"""Custom ONNX operators for containers: schemas, function bodies, reference kernels, export."""

__all__ = ["narrow_model"]


def __getattr__(name):
    # Imported on first use, so that ``sfp --help`` does not load onnx.
    if name == "narrow_model":
        from onnx_ops.model import narrow_model

        return narrow_model
    raise AttributeError(f"module 'onnx_ops' has no attribute {name!r}")
