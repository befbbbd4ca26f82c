"""Parameter initializers with PyTorch's documented defaults."""

import math

import numpy as np

from numpyml.random import generator


def fan_in(shape):
    """Return the inputs per output unit: shape[1] times the kernel area for (out, in, ...)."""
    return int(np.prod(shape[1:]))


def uniform(shape, bound, dtype=np.float32):
    """Return an array of ``shape`` drawn from U(-bound, bound)."""
    return generator().uniform(-bound, bound, size=shape).astype(dtype)


def kaiming_uniform(shape, a=math.sqrt(5)):
    """Return U(-b, b) with b = gain * sqrt(3 / fan_in) and gain = sqrt(2 / (1 + a^2)).

    The default a = sqrt(5) gives b = 1 / sqrt(fan_in), PyTorch's default for Linear and
    Conv2d weights.
    """
    gain = math.sqrt(2.0 / (1 + a * a))
    return uniform(shape, gain * math.sqrt(3.0 / fan_in(shape)))


def bias_uniform(shape, weight_shape):
    """Return U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for a bias, fan_in taken from the weight."""
    return uniform(shape, 1 / math.sqrt(fan_in(weight_shape)))


def normal(shape, std=1.0, dtype=np.float32):
    """Return an array of ``shape`` drawn from N(0, std^2)."""
    return (generator().standard_normal(size=shape) * std).astype(dtype)
