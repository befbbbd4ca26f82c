"""Layers with PyTorch's default initialization and semantics."""

import numpy as np

from numpyml import ops
from numpyml.engine import Tensor
from numpyml.nn import init
from numpyml.nn.module import Module
from numpyml.random import generator


class Linear(Module):
    """y = x W^T + b with W (out_features, in_features); routes W and x through the hook."""

    uses_storage_hook = True

    def __init__(self, in_features, out_features, bias=True):
        super().__init__()
        shape = (out_features, in_features)
        self.weight = Tensor(init.kaiming_uniform(shape), requires_grad=True)
        self.bias = Tensor(init.bias_uniform((out_features,), shape), requires_grad=True) if bias else None

    def forward(self, x):
        weight = self.stored(self.weight, "weight")
        x = self.stored(x, "activation")
        return ops.linear(x, weight, self.bias)


class Conv2d(Module):
    """2-d cross-correlation over NCHW input; routes the weight and input through the hook."""

    uses_storage_hook = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True):
        super().__init__()
        kh, kw = (kernel_size, kernel_size) if np.isscalar(kernel_size) else kernel_size
        shape = (out_channels, in_channels, kh, kw)
        self.stride, self.padding = stride, padding
        self.weight = Tensor(init.kaiming_uniform(shape), requires_grad=True)
        self.bias = Tensor(init.bias_uniform((out_channels,), shape), requires_grad=True) if bias else None

    def forward(self, x):
        weight = self.stored(self.weight, "weight")
        x = self.stored(x, "activation")
        return ops.conv2d(x, weight, self.bias, stride=self.stride, padding=self.padding)


class BatchNorm2d(Module):
    """Normalize each channel by batch statistics in training and running ones in eval.

    Running statistics update as r = (1 - momentum) r + momentum * s, with the unbiased
    batch variance, as in PyTorch.
    """

    def __init__(self, num_features, eps=1e-5, momentum=0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = Tensor(np.ones(num_features, np.float32), requires_grad=True)
        self.bias = Tensor(np.zeros(num_features, np.float32), requires_grad=True)
        self.register_buffer("running_mean", np.zeros(num_features, np.float32))
        self.register_buffer("running_var", np.ones(num_features, np.float32))

    def forward(self, x):
        axes = (0, 2, 3)
        if self.training:
            mean = ops.mean(x, axis=axes, keepdims=True)
            centered = x - mean
            variance = ops.mean(centered * centered, axis=axes, keepdims=True)
            self._update_running(mean.data, variance.data, x.size // x.shape[1])
        else:
            mean = Tensor(self.running_mean.reshape(1, -1, 1, 1))
            variance = Tensor(self.running_var.reshape(1, -1, 1, 1))
            centered = x - mean
        normalized = centered / ops.sqrt(variance + self.eps)
        return normalized * self.weight.reshape(1, -1, 1, 1) + self.bias.reshape(1, -1, 1, 1)

    def _update_running(self, mean, variance, count):
        unbiased = variance.reshape(-1) * (count / max(count - 1, 1))
        m = self.momentum
        self.set_buffer("running_mean", (1 - m) * self.running_mean + m * mean.reshape(-1))
        self.set_buffer("running_var", (1 - m) * self.running_var + m * unbiased)


class LayerNorm(Module):
    """Normalize over the last ``len(normalized_shape)`` axes, then scale and shift."""

    def __init__(self, normalized_shape, eps=1e-5):
        super().__init__()
        shape = (normalized_shape,) if np.isscalar(normalized_shape) else tuple(normalized_shape)
        self.eps = eps
        self.axes = tuple(range(-len(shape), 0))
        self.weight = Tensor(np.ones(shape, np.float32), requires_grad=True)
        self.bias = Tensor(np.zeros(shape, np.float32), requires_grad=True)

    def forward(self, x):
        centered = x - ops.mean(x, axis=self.axes, keepdims=True)
        variance = ops.mean(centered * centered, axis=self.axes, keepdims=True)
        return centered / ops.sqrt(variance + self.eps) * self.weight + self.bias


class Embedding(Module):
    """Rows of a (num_embeddings, embedding_dim) table, initialized N(0, 1) as in PyTorch."""

    def __init__(self, num_embeddings, embedding_dim):
        super().__init__()
        self.weight = Tensor(init.normal((num_embeddings, embedding_dim)), requires_grad=True)

    def forward(self, indices):
        indices = np.asarray(indices.data if isinstance(indices, Tensor) else indices)
        if indices.dtype.kind not in "iu":
            raise TypeError(f"Embedding: indices must be integers; got dtype {indices.dtype}")
        return self.weight[indices]


class Dropout(Module):
    """Inverted dropout with probability ``p`` in training mode, identity in eval mode."""

    def __init__(self, p=0.5):
        super().__init__()
        if not 0 <= p < 1:
            raise ValueError(f"Dropout: p must be in [0, 1); got {p}")
        self.p = p

    def forward(self, x):
        return ops.dropout(x, self.p, generator(), training=self.training)


class Flatten(Module):
    """Merge all axes after the first (the batch axis)."""

    def forward(self, x):
        return ops.flatten(x, 1)


class ReLU(Module):
    def forward(self, x):
        return ops.relu(x)


class MaxPool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        return ops.max_pool2d(x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(MaxPool2d):
    def forward(self, x):
        return ops.avg_pool2d(x, self.kernel_size, self.stride, self.padding)
