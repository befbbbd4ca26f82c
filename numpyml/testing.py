"""Gradient checks for operations, including ones added with ``custom_op``."""

import numpy as np

from numpyml.engine import Tensor


def central_difference(function, inputs, directions, step):
    """Return d/dt f(inputs + t * directions) at t = 0 by the central difference.

    (f(x + h d) - f(x - h d)) / 2h has error O(h^2) for smooth f.
    """
    plus = function(*[x + step * d for x, d in zip(inputs, directions)])
    minus = function(*[x - step * d for x, d in zip(inputs, directions)])
    return (plus - minus) / (2 * step)


def check_gradients(op, inputs, seed=0, step=1e-6, rtol=1e-5, atol=1e-7):
    """Compare the VJPs of ``op`` with central differences along a random projection.

    ``op`` maps Tensors to a Tensor; ``inputs`` are float64 arrays. With a random output
    cotangent v and random input directions d_i, the scalar sum_i <grad_i, d_i> from
    ``backward`` must match d/dt <v, op(x + t d)>, which covers the whole Jacobian with
    one number. Also asserts that each gradient has its input's shape and dtype.
    """
    rng = np.random.default_rng(seed)
    inputs = [np.asarray(x, dtype=np.float64) for x in inputs]
    tensors = [Tensor(x, requires_grad=True) for x in inputs]
    output = op(*tensors)
    cotangent = rng.standard_normal(output.shape)
    output.backward(cotangent)
    directions = [rng.standard_normal(x.shape) for x in inputs]
    for index, (tensor, x) in enumerate(zip(tensors, inputs)):
        grad = np.zeros_like(x) if tensor.grad is None else tensor.grad
        assert grad.shape == x.shape, f"input {index}: gradient shape {grad.shape} != {x.shape}"
        assert grad.dtype == x.dtype, f"input {index}: gradient dtype {grad.dtype} != {x.dtype}"

    def projected(*xs):
        return float(np.sum(op(*[Tensor(x) for x in xs]).data * cotangent))

    numeric = central_difference(projected, inputs, directions, step)
    analytic = sum(float(np.sum(t.grad * d)) for t, d in zip(tensors, directions) if t.grad is not None)
    tolerance = atol + rtol * max(abs(numeric), abs(analytic))
    assert abs(numeric - analytic) <= tolerance, (
        f"projected gradient: backward gives {analytic!r}, central difference {numeric!r}"
    )
