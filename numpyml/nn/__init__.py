"""Layers and the Module base class."""

from numpyml.nn.layers import (
    AvgPool2d, BatchNorm2d, Conv2d, Dropout, Embedding, Flatten, LayerNorm, Linear, MaxPool2d,
    ReLU,
)
from numpyml.nn.module import STORAGE_KINDS, Module, Sequential

__all__ = [
    "AvgPool2d", "BatchNorm2d", "Conv2d", "Dropout", "Embedding", "Flatten", "LayerNorm",
    "Linear", "MaxPool2d", "Module", "ReLU", "STORAGE_KINDS", "Sequential",
]
