"""Built-in backends: numpy (the reference), ONNX ReferenceEvaluator, ONNX Runtime, PyTorch."""
