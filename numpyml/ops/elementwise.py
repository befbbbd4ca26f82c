"""Elementwise operations, matrix multiplication and selection.

Every operation has the same shape: compute the output, define the VJP, which returns one
gradient per input in that input's shape, and return ``make_result``. Binary operations
broadcast like numpy and hand their gradients to ``unbroadcast``.
"""

import math

import numpy as np
from scipy import special

from numpyml.engine import Tensor, as_tensor, make_result, unbroadcast

_SQRT_2 = math.sqrt(2.0)  # Python floats, so float32 inputs stay float32
_SQRT_2PI = math.sqrt(2.0 * math.pi)


def _pair(a, b):
    if isinstance(a, Tensor):
        return a, as_tensor(b, like=a)
    b = as_tensor(b)
    return as_tensor(a, like=b), b


def _zero_where_no_cotangent(grad, grad_output):
    """Return ``grad`` with 0 wherever ``grad_output`` is 0.

    A zero cotangent times an infinite local derivative is NaN in IEEE arithmetic, so
    without this ``where(x > 0, sqrt(x), 0)`` would leak NaN from the unselected branch
    at ``x = 0``. The check costs one pass and the fix only runs when needed.
    """
    if np.isfinite(grad).all():
        return grad
    return np.where(grad_output == 0, np.zeros((), grad.dtype), grad)


# ------------------------------------------------------------------------- arithmetic


def add(a, b):
    a, b = _pair(a, b)
    out = a.data + b.data

    def vjp(g):
        return unbroadcast(g, a.shape), unbroadcast(g, b.shape)

    return make_result(out, (a, b), vjp, "add")


def sub(a, b):
    a, b = _pair(a, b)
    out = a.data - b.data

    def vjp(g):
        return unbroadcast(g, a.shape), unbroadcast(-g, b.shape)

    return make_result(out, (a, b), vjp, "sub")


def mul(a, b):
    a, b = _pair(a, b)
    out = a.data * b.data

    def vjp(g):
        grad_a = unbroadcast(g * b.data, a.shape) if a.requires_grad else None
        grad_b = unbroadcast(g * a.data, b.shape) if b.requires_grad else None
        return grad_a, grad_b

    return make_result(out, (a, b), vjp, "mul")


def div(a, b):
    a, b = _pair(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = a.data / b.data

    def vjp(g):
        with np.errstate(divide="ignore", invalid="ignore"):
            grad_a = _zero_where_no_cotangent(g / b.data, g) if a.requires_grad else None
            grad_b = _zero_where_no_cotangent(-g * out / b.data, g) if b.requires_grad else None
        return (
            None if grad_a is None else unbroadcast(grad_a, a.shape),
            None if grad_b is None else unbroadcast(grad_b, b.shape),
        )

    return make_result(out, (a, b), vjp, "div")


def neg(a):
    a = as_tensor(a)
    out = -a.data

    def vjp(g):
        return (-g,)

    return make_result(out, (a,), vjp, "neg")


def pow(a, b):
    """Return ``a ** b`` elementwise.

    d/da = b * a**(b-1); d/db = a**b * log(a), taken as 0 where a <= 0 because the real
    power is only differentiable in the exponent for positive bases.
    """
    a, b = _pair(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = a.data ** b.data

    def vjp(g):
        grad_a = grad_b = None
        with np.errstate(divide="ignore", invalid="ignore"):
            if a.requires_grad:
                local = b.data * a.data ** (b.data - 1)
                grad_a = unbroadcast(_zero_where_no_cotangent(g * local, g), a.shape)
            if b.requires_grad:
                safe_log = np.log(np.where(a.data > 0, a.data, np.ones((), a.dtype)))
                grad_b = unbroadcast(_zero_where_no_cotangent(g * out * safe_log, g), b.shape)
        return grad_a, grad_b

    return make_result(out, (a, b), vjp, "pow")


# --------------------------------------------------------------------- unary functions


def exp(a):
    a = as_tensor(a)
    out = np.exp(a.data)

    def vjp(g):
        return (g * out,)

    return make_result(out, (a,), vjp, "exp")


def log(a):
    a = as_tensor(a)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.log(a.data)

    def vjp(g):
        with np.errstate(divide="ignore", invalid="ignore"):
            return (_zero_where_no_cotangent(g / a.data, g),)

    return make_result(out, (a,), vjp, "log")


def sqrt(a):
    a = as_tensor(a)
    with np.errstate(invalid="ignore"):
        out = np.sqrt(a.data)

    def vjp(g):
        with np.errstate(divide="ignore", invalid="ignore"):
            return (_zero_where_no_cotangent(g * 0.5 / out, g),)

    return make_result(out, (a,), vjp, "sqrt")


def tanh(a):
    a = as_tensor(a)
    out = np.tanh(a.data)

    def vjp(g):
        return (g * (1 - out * out),)

    return make_result(out, (a,), vjp, "tanh")


def sigmoid(a):
    a = as_tensor(a)
    out = special.expit(a.data)

    def vjp(g):
        return (g * out * (1 - out),)

    return make_result(out, (a,), vjp, "sigmoid")


def relu(a):
    a = as_tensor(a)
    out = np.maximum(a.data, 0)

    def vjp(g):
        # NOTE: the gradient at exactly 0 is 0, as in PyTorch.
        return (g * (a.data > 0),)

    return make_result(out, (a,), vjp, "relu")


def gelu(a):
    """Return x * Phi(x), the exact GELU with the normal CDF Phi (PyTorch's default).

    d/dx = Phi(x) + x * phi(x), where phi is the normal density.
    """
    a = as_tensor(a)
    cdf = 0.5 * (1 + special.erf(a.data / _SQRT_2))
    out = a.data * cdf

    def vjp(g):
        density = np.exp(-0.5 * a.data * a.data) / _SQRT_2PI
        return (g * (cdf + a.data * density),)

    return make_result(out, (a,), vjp, "gelu")


# ------------------------------------------------------------ matmul and selection


def matmul(a, b):
    """Return ``a @ b`` with numpy's rules: 1-d operands and batched stacks broadcast."""
    a, b = as_tensor(a), as_tensor(b)
    out = np.matmul(a.data, b.data)

    def vjp(g):
        # Promote 1-d operands to matrices, as numpy does, and give g the matching shape.
        a_data = a.data[None, :] if a.ndim == 1 else a.data
        b_data = b.data[:, None] if b.ndim == 1 else b.data
        batch = np.broadcast_shapes(a_data.shape[:-2], b_data.shape[:-2])
        grad = g.reshape(batch + (a_data.shape[-2], b_data.shape[-1]))
        grad_a = grad_b = None
        if a.requires_grad:
            grad_a = unbroadcast(grad @ np.swapaxes(b_data, -1, -2), a_data.shape)
            grad_a = grad_a.reshape(a.shape)
        if b.requires_grad:
            grad_b = unbroadcast(np.swapaxes(a_data, -1, -2) @ grad, b_data.shape)
            grad_b = grad_b.reshape(b.shape)
        return grad_a, grad_b

    return make_result(out, (a, b), vjp, "matmul")


def where(condition, a, b):
    """Select ``a`` where ``condition`` holds, else ``b``; the condition gets no gradient.

    Each branch receives exactly zero where it was not selected, and the ops that feed it
    keep a zero cotangent at zero even at their singular points, so no NaN leaks back.
    """
    condition = condition.data if isinstance(condition, Tensor) else np.asarray(condition)
    a, b = _pair(a, b)
    out = np.where(condition, a.data, b.data)

    def vjp(g):
        zero = np.zeros((), g.dtype)
        return (
            unbroadcast(np.where(condition, g, zero), a.shape),
            unbroadcast(np.where(condition, zero, g), b.shape),
        )

    return make_result(out, (a, b), vjp, "where")


def linear(x, weight, bias=None):
    """Return ``x @ weight.T + bias`` as one op (the Linear layer), x of shape (..., in).

    ``weight`` is (out, in) and ``bias`` (out,), as in PyTorch.
    """
    x, weight = as_tensor(x), as_tensor(weight)
    out = x.data @ weight.data.T
    if bias is not None:
        bias = as_tensor(bias)
        out += bias.data
    parents = (x, weight) if bias is None else (x, weight, bias)

    def vjp(g):
        rows = g.reshape(-1, g.shape[-1])
        grad_x = g @ weight.data if x.requires_grad else None
        grad_weight = rows.T @ x.data.reshape(-1, x.shape[-1])
        if bias is None:
            return grad_x, grad_weight
        return grad_x, grad_weight, rows.sum(axis=0)

    return make_result(out, parents, vjp, "linear")
