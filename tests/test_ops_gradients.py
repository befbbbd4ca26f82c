"""Gradient checks for every operation.

Every op test follows one template. It draws float64 inputs, with shapes from a fixed
quartet and, for binary ops, from hypothesis ``mutually_broadcastable_shapes``. Then
``check_gradients`` compares the VJPs against central differences along a random projection
and asserts each gradient's shape and dtype. A second check runs the op on float32 inputs
and asserts that the gradients stay float32.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import numpyml as nm
from numpyml.testing import check_gradients

QUARTET = [(), (4,), (3, 4), (1, 4)]


def positive(shape, rng):
    return rng.uniform(0.5, 2.0, size=shape)


def normal(shape, rng):
    return rng.standard_normal(shape)


def away_from_zero(shape, rng):
    return rng.uniform(0.5, 2.0, size=shape) * rng.choice([-1.0, 1.0], size=shape)


UNARY = {
    "neg": (nm.neg, normal),
    "exp": (nm.exp, normal),
    "log": (nm.log, positive),
    "sqrt": (nm.sqrt, positive),
    "tanh": (nm.tanh, normal),
    "sigmoid": (nm.sigmoid, normal),
    "relu": (nm.relu, away_from_zero),
    "gelu": (nm.gelu, normal),
}

BINARY = {
    "add": (nm.add, normal, normal),
    "sub": (nm.sub, normal, normal),
    "mul": (nm.mul, normal, normal),
    "div": (nm.div, normal, away_from_zero),
    "pow": (nm.pow, positive, normal),
}


def assert_float32_grads(op, inputs):
    tensors = [nm.Tensor(x.astype(np.float32), requires_grad=True) for x in inputs]
    output = op(*tensors)
    assert output.dtype == np.float32, f"output dtype {output.dtype}"
    output.backward(np.ones(output.shape, np.float32))
    for tensor in tensors:
        assert tensor.grad.dtype == np.float32, f"gradient dtype {tensor.grad.dtype}"
        assert tensor.grad.shape == tensor.shape


@pytest.mark.parametrize("shape", QUARTET)
@pytest.mark.parametrize("name", sorted(UNARY))
def test_unary_gradient(name, shape):
    op, draw = UNARY[name]
    rng = np.random.default_rng(1)
    inputs = [draw(shape, rng)]
    check_gradients(op, inputs)
    assert_float32_grads(op, inputs)


@pytest.mark.parametrize("shapes", [(a, b) for a in QUARTET for b in QUARTET])
@pytest.mark.parametrize("name", sorted(BINARY))
def test_binary_gradient_quartet(name, shapes):
    op, draw_a, draw_b = BINARY[name]
    rng = np.random.default_rng(2)
    inputs = [draw_a(shapes[0], rng), draw_b(shapes[1], rng)]
    check_gradients(op, inputs)
    assert_float32_grads(op, inputs)


@settings(max_examples=25)
@given(
    shapes=mutually_broadcastable_shapes(num_shapes=2, min_dims=0, max_dims=3, max_side=3),
    name=st.sampled_from(sorted(BINARY)),
)
def test_binary_gradient_broadcasting(shapes, name):
    op, draw_a, draw_b = BINARY[name]
    rng = np.random.default_rng(3)
    inputs = [draw_a(shapes.input_shapes[0], rng), draw_b(shapes.input_shapes[1], rng)]
    check_gradients(op, inputs)


@settings(max_examples=25)
@given(
    shapes=mutually_broadcastable_shapes(
        num_shapes=3, min_dims=0, max_dims=3, max_side=3
    ),
)
def test_where_gradient_broadcasting(shapes):
    rng = np.random.default_rng(4)
    condition = rng.random(shapes.input_shapes[0]) > 0.5
    inputs = [normal(shapes.input_shapes[1], rng), normal(shapes.input_shapes[2], rng)]
    check_gradients(lambda a, b: nm.where(condition, a, b), inputs)


@pytest.mark.parametrize(
    "shape_a, shape_b",
    [((3, 4), (4, 2)), ((4,), (4, 2)), ((3, 4), (4,)), ((4,), (4,)),
     ((2, 3, 4), (4, 5)), ((2, 1, 3, 4), (5, 4, 2))],
)
def test_matmul_gradient(shape_a, shape_b):
    rng = np.random.default_rng(5)
    inputs = [normal(shape_a, rng), normal(shape_b, rng)]
    check_gradients(nm.matmul, inputs)
    assert_float32_grads(nm.matmul, inputs)


REDUCTIONS = [
    ((), None, False), ((5,), None, False), ((3, 4), 0, False), ((3, 4), 1, True),
    ((1, 4), None, True), ((2, 3, 4), (0, 2), False), ((2, 3, 4), -1, True),
]


@pytest.mark.parametrize("shape, axis, keepdims", REDUCTIONS)
@pytest.mark.parametrize("op", [nm.sum, nm.mean, nm.max], ids=["sum", "mean", "max"])
def test_reduction_gradient(op, shape, axis, keepdims):
    rng = np.random.default_rng(6)
    inputs = [normal(shape, rng)]
    check_gradients(lambda x: op(x, axis=axis, keepdims=keepdims), inputs)
    assert_float32_grads(lambda x: op(x, axis=axis, keepdims=keepdims), inputs)


def test_max_ties_share_gradient():
    x = nm.Tensor([1.0, 3.0, 3.0, 2.0], requires_grad=True)
    nm.max(x).backward()
    assert x.grad.tolist() == [0.0, 0.5, 0.5, 0.0]


SHAPE_OPS = {
    "reshape": (lambda x: nm.reshape(x, (4, 3)), (3, 4)),
    "transpose": (lambda x: nm.transpose(x, (2, 0, 1)), (2, 3, 4)),
    "transpose_reversed": (lambda x: x.T, (3, 4)),
    "basic_index": (lambda x: x[1:, ::2], (3, 4)),
    "integer_index": (lambda x: x[1], (3, 4)),
    "repeated_advanced_index": (lambda x: x[np.array([0, 2, 0, 0])], (3, 4)),
    "boolean_index": (lambda x: x[np.array([True, False, True])], (3, 4)),
    "flatten": (lambda x: nm.flatten(x), (2, 3, 4)),
}


@pytest.mark.parametrize("name", sorted(SHAPE_OPS))
def test_shape_op_gradient(name):
    op, shape = SHAPE_OPS[name]
    rng = np.random.default_rng(7)
    inputs = [normal(shape, rng)]
    check_gradients(op, inputs)
    assert_float32_grads(op, inputs)


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_gradient(axis):
    rng = np.random.default_rng(8)
    shapes = {0: [(1, 3), (2, 3), (3, 3)], 1: [(2, 1), (2, 2), (2, 4)], -1: [(2, 1), (2, 2), (2, 4)]}
    inputs = [normal(shape, rng) for shape in shapes[axis]]
    op = lambda *xs: nm.concatenate(xs, axis=axis)  # noqa: E731
    check_gradients(op, inputs)
    assert_float32_grads(op, inputs)


@pytest.mark.parametrize(
    "stride, padding, bias",
    [(1, 0, True), (1, 1, True), (2, 1, False), ((2, 1), (0, 2), True)],
)
def test_conv2d_gradient(stride, padding, bias):
    rng = np.random.default_rng(9)
    inputs = [normal((2, 3, 6, 5), rng), normal((4, 3, 3, 2), rng)]
    if bias:
        inputs.append(normal((4,), rng))
    op = lambda *args: nm.conv2d(*args, stride=stride, padding=padding)  # noqa: E731
    check_gradients(op, inputs)
    assert_float32_grads(op, inputs)


@pytest.mark.parametrize("kernel, stride, padding", [(2, None, 0), (3, 2, 1), ((2, 3), 1, 0)])
@pytest.mark.parametrize("pool", [nm.max_pool2d, nm.avg_pool2d], ids=["max", "avg"])
def test_pool_gradient(pool, kernel, stride, padding):
    rng = np.random.default_rng(10)
    inputs = [normal((2, 3, 6, 6), rng)]
    op = lambda x: pool(x, kernel, stride=stride, padding=padding)  # noqa: E731
    check_gradients(op, inputs)
    assert_float32_grads(op, inputs)


@pytest.mark.parametrize("shape, axis", [((5,), -1), ((3, 4), 1), ((3, 4), 0), ((2, 3, 4), -1)])
def test_log_softmax_gradient(shape, axis):
    rng = np.random.default_rng(11)
    inputs = [normal(shape, rng) * 3]
    check_gradients(lambda x: nm.log_softmax(x, axis=axis), inputs)
    assert_float32_grads(lambda x: nm.log_softmax(x, axis=axis), inputs)


def test_cross_entropy_gradient():
    rng = np.random.default_rng(12)
    labels = np.array([0, 3, 3, 1, 2])
    inputs = [normal((5, 4), rng) * 3]
    check_gradients(lambda x: nm.cross_entropy(x, labels), inputs)
    assert_float32_grads(lambda x: nm.cross_entropy(x, labels), inputs)


def test_dropout_gradient():
    inputs = [normal((4, 6), np.random.default_rng(13))]

    def op(x):
        # A fresh generator per call keeps the mask identical across the difference quotient.
        return nm.dropout(x, 0.3, np.random.default_rng(0))

    check_gradients(op, inputs)
    assert_float32_grads(op, inputs)


@pytest.mark.parametrize("kernel, stride", [(2, None), (3, 1)], ids=["tiles", "windows"])
def test_max_pool_tie_goes_to_first_maximum(kernel, stride):
    x = nm.Tensor(np.ones((1, 1, 3, 3) if kernel == 3 else (1, 1, 2, 2), np.float32), requires_grad=True)
    nm.max_pool2d(x, kernel, stride=stride).sum().backward()
    expected = np.zeros(x.shape, np.float32)
    expected[0, 0, 0, 0] = 1.0
    np.testing.assert_array_equal(x.grad, expected)


def test_conv2d_rejects_channel_mismatch():
    with pytest.raises(ValueError, match="input channels must match the weight's 3; got 2"):
        nm.conv2d(np.zeros((1, 2, 4, 4)), np.zeros((4, 3, 3, 3)))


def test_conv2d_rejects_kernel_larger_than_input():
    with pytest.raises(ValueError, match="must fit inside the padded input"):
        nm.conv2d(np.zeros((1, 1, 2, 2)), np.zeros((1, 1, 3, 3)))


@pytest.mark.parametrize("x_shape, bias", [((5, 3), True), ((2, 5, 3), True), ((3,), False)])
def test_linear_gradient(x_shape, bias):
    rng = np.random.default_rng(14)
    inputs = [normal(x_shape, rng), normal((4, 3), rng)] + ([normal((4,), rng)] if bias else [])
    check_gradients(nm.linear, inputs)
    assert_float32_grads(nm.linear, inputs)
