"""Reductions and shape operations: sum, mean, max, reshape, transpose, indexing, concatenate."""

import numpy as np

from numpyml.engine import Tensor, as_tensor, make_result


def _normalize_axis(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    axes = (axis,) if np.isscalar(axis) else tuple(axis)
    return tuple(int(a) % ndim if ndim else 0 for a in axes)


def _expand_reduced(grad, axes, keepdims):
    """Reinsert the reduced axes as size 1 so ``grad`` broadcasts against the input."""
    if keepdims or not axes:
        return grad
    return np.expand_dims(grad, tuple(sorted(axes)))


# ------------------------------------------------------------------------- reductions


def sum(a, axis=None, keepdims=False):
    a = as_tensor(a)
    axes = _normalize_axis(axis, a.ndim)
    out = np.sum(a.data, axis=axes, keepdims=keepdims)

    def vjp(g):
        return (np.broadcast_to(_expand_reduced(g, axes, keepdims), a.shape),)

    return make_result(out, (a,), vjp, "sum")


def mean(a, axis=None, keepdims=False):
    a = as_tensor(a)
    axes = _normalize_axis(axis, a.ndim)
    out = np.mean(a.data, axis=axes, keepdims=keepdims)
    count = int(np.prod([a.shape[axis] for axis in axes])) if axes else 1

    def vjp(g):
        return (np.broadcast_to(_expand_reduced(g, axes, keepdims) / count, a.shape),)

    return make_result(out, (a,), vjp, "mean")


def max(a, axis=None, keepdims=False):
    """Return the maximum over ``axis``; tied maxima share the gradient equally."""
    a = as_tensor(a)
    axes = _normalize_axis(axis, a.ndim)
    out = np.max(a.data, axis=axes, keepdims=keepdims)

    def vjp(g):
        is_max = a.data == _expand_reduced(out, axes, keepdims)
        ties = is_max.sum(axis=axes, keepdims=True)
        return (is_max * (_expand_reduced(g, axes, keepdims) / ties),)

    return make_result(out, (a,), vjp, "max")


# ---------------------------------------------------------------------- reshaping


def reshape(a, shape):
    a = as_tensor(a)
    out = a.data.reshape(shape)

    def vjp(g):
        return (g.reshape(a.shape),)

    return make_result(out, (a,), vjp, "reshape")


def transpose(a, axes=None):
    a = as_tensor(a)
    out = np.transpose(a.data, axes)
    inverse = None if axes is None else tuple(np.argsort(axes))

    def vjp(g):
        return (np.transpose(g, inverse),)

    return make_result(out, (a,), vjp, "transpose")


def _is_basic_index(index):
    parts = index if isinstance(index, tuple) else (index,)
    return all(isinstance(part, (int, slice, type(None), type(Ellipsis))) for part in parts)


def getitem(a, index):
    """Return ``a[index]`` for basic and advanced numpy indices.

    Repeated advanced indices accumulate their gradients (``np.add.at``).
    """
    a = as_tensor(a)
    if isinstance(index, Tensor):
        index = index.data
    out = a.data[index]

    def vjp(g):
        grad = np.zeros(a.shape, dtype=g.dtype)
        if _is_basic_index(index):
            grad[index] = g
        else:
            np.add.at(grad, index, g)
        return (grad,)

    return make_result(out, (a,), vjp, "getitem")


def concatenate(tensors, axis=0):
    tensors = [as_tensor(t) for t in tensors]
    out = np.concatenate([t.data for t in tensors], axis=axis)
    boundaries = np.cumsum([t.shape[axis] for t in tensors])[:-1]

    def vjp(g):
        return tuple(np.split(g, boundaries, axis=axis))

    return make_result(out, tensors, vjp, "concatenate")


def flatten(a, start_axis=1):
    """Return ``a`` with the axes from ``start_axis`` on merged into one."""
    a = as_tensor(a)
    return reshape(a, a.shape[:start_axis] + (-1,))
