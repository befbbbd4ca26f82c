"""Differentiable operations, as functions and as Tensor methods and operators."""

from numpyml.engine import Tensor
from numpyml.ops.conv import avg_pool2d, conv2d, max_pool2d
from numpyml.ops.elementwise import (
    add, div, exp, gelu, linear, log, matmul, mul, neg, pow, relu, sigmoid, sqrt, sub, tanh,
    where,
)
from numpyml.ops.loss import cross_entropy, dropout, log_softmax
from numpyml.ops.shape import concatenate, flatten, getitem, max, mean, reshape, sum, transpose

__all__ = [
    "add", "avg_pool2d", "concatenate", "conv2d", "cross_entropy", "div", "dropout", "exp",
    "flatten", "gelu", "getitem", "linear", "log", "log_softmax", "matmul", "max", "max_pool2d", "mean",
    "mul", "neg", "pow", "relu", "reshape", "sigmoid", "sqrt", "sub", "sum", "tanh",
    "transpose", "where",
]


def _reshape_method(self, *shape):
    return reshape(self, shape[0] if len(shape) == 1 and not isinstance(shape[0], int) else shape)


def _transpose_method(self, *axes):
    return transpose(self, axes[0] if len(axes) == 1 and not isinstance(axes[0], int) else axes or None)


def _compare(ufunc):
    def compare(self, other):
        other = other.data if isinstance(other, Tensor) else other
        return Tensor(ufunc(self.data, other))

    return compare


def _install_methods():
    """Attach the operations to Tensor so that ``a + b`` and ``x.sum()`` record graphs."""
    import numpy as np

    methods = {
        "__add__": add,
        "__radd__": lambda self, other: add(other, self),
        "__sub__": sub,
        "__rsub__": lambda self, other: sub(other, self),
        "__mul__": mul,
        "__rmul__": lambda self, other: mul(other, self),
        "__truediv__": div,
        "__rtruediv__": lambda self, other: div(other, self),
        "__pow__": pow,
        "__rpow__": lambda self, other: pow(other, self),
        "__neg__": neg,
        "__matmul__": matmul,
        "__rmatmul__": lambda self, other: matmul(other, self),
        "__getitem__": getitem,
        "__lt__": _compare(np.less),
        "__le__": _compare(np.less_equal),
        "__gt__": _compare(np.greater),
        "__ge__": _compare(np.greater_equal),
        "exp": exp, "log": log, "sqrt": sqrt, "tanh": tanh, "sigmoid": sigmoid,
        "relu": relu, "gelu": gelu, "sum": sum, "mean": mean, "max": max,
        "flatten": flatten, "log_softmax": log_softmax,
        "reshape": _reshape_method, "transpose": _transpose_method,
        "T": property(lambda self: transpose(self)),
    }
    for name, function in methods.items():
        setattr(Tensor, name, function)


_install_methods()
