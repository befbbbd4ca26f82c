"""Custom ONNX operators for containers: schemas, function bodies, reference kernels, export."""
