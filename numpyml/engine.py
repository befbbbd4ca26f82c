"""Reverse-mode automatic differentiation over numpy arrays.

A :class:`Tensor` wraps an ``ndarray``. Every differentiable operation records its inputs
(``parents``) and a vector-Jacobian product ``vjp(grad_output) -> tuple`` that returns one
gradient per input. ``Tensor.backward`` walks the recorded graph in reverse topological
order without recursion, accumulates gradients into the leaves' ``.grad`` and then frees
the graph so that intermediate arrays can be collected.

Graph tensors are immutable: their arrays are read-only and item assignment raises, so
that an array saved for a backward pass cannot change under it.
"""

import contextlib
import logging

import numpy as np

logger = logging.getLogger(__name__)

DEFAULT_DTYPE = np.float32


_grad_enabled = True


@contextlib.contextmanager
def no_grad():
    """Disable graph recording inside a ``with`` block (or a decorated function).

    Operations inside return tensors with ``requires_grad=False`` and keep no references
    to their inputs, as evaluation and optimizer updates need.

    >>> x = Tensor([1.0, 2.0], requires_grad=True)
    >>> with no_grad():
    ...     y = x * 2
    >>> y.requires_grad
    False
    """
    global _grad_enabled
    previous = _grad_enabled
    _grad_enabled = False
    try:
        yield
    finally:
        _grad_enabled = previous


def is_grad_enabled():
    """Return whether operations currently record a graph."""
    return _grad_enabled


def _as_array(data, dtype):
    """Return ``data`` as an ndarray: numbers and lists become float32, arrays keep their dtype."""
    if isinstance(data, Tensor):
        data = data.data
    if dtype is not None:
        return np.asarray(data, dtype=dtype)
    if isinstance(data, np.ndarray):
        return data
    array = np.asarray(data)
    if array.dtype.kind in "fiu" and not isinstance(data, np.generic):
        return array.astype(DEFAULT_DTYPE)
    return array


class Tensor:
    """An n-dimensional array that records the operations applied to it.

    ``data`` is the ``ndarray``; Python numbers and lists become float32 unless ``dtype``
    sets another, and numpy arrays keep their dtype. A leaf created with
    ``requires_grad=True`` (a parameter) owns a read-only copy of its data and receives
    ``.grad`` from ``backward()``. Replace a parameter's values by assigning a new array
    to ``.data``, never by writing into it.
    """

    __slots__ = ("_data", "grad", "requires_grad", "_parents", "_vjp", "_freed", "name")
    __array_priority__ = 1000  # makes ndarray + Tensor call Tensor.__radd__

    def __init__(self, data, requires_grad=False, dtype=None, name=None):
        array = _as_array(data, dtype)
        if requires_grad:
            if array.dtype.kind != "f":
                raise TypeError(
                    f"Tensor: requires_grad needs a floating-point dtype; got {array.dtype}. "
                    "Pass dtype=np.float32 or float data."
                )
            array = np.array(array, copy=True)
            array.flags.writeable = False
        self._data = array
        self.grad = None
        self.requires_grad = bool(requires_grad)
        self._parents = ()
        self._vjp = None
        self._freed = False
        self.name = name

    # ----------------------------------------------------------------- data and metadata

    @property
    def data(self):
        """The wrapped ``ndarray``, read-only for parameters and graph results.

        Assigning an array to a parameter's ``data`` hands the array over: it becomes
        read-only, because earlier graphs may still hold it for their backward pass.
        """
        return self._data

    @data.setter
    def data(self, value):
        if self._vjp is not None:
            raise RuntimeError(
                f"Tensor.data: cannot replace the data of a graph result ({self._describe()}); "
                "compute a new tensor instead, or call detach() first."
            )
        array = _as_array(value, self._data.dtype)
        if self.requires_grad:
            # The tensor takes ownership: arrays saved by earlier graphs must not change.
            array.flags.writeable = False
        self._data = array

    @property
    def shape(self):
        return self._data.shape

    @property
    def dtype(self):
        return self._data.dtype

    @property
    def ndim(self):
        return self._data.ndim

    @property
    def size(self):
        return self._data.size

    @property
    def is_leaf(self):
        """True for tensors that no recorded operation produced."""
        return self._vjp is None and not self._freed

    def numpy(self):
        """Return the wrapped array (read-only for graph tensors)."""
        return self._data

    def item(self):
        return self._data.item()

    def detach(self):
        """Return a tensor with the same data and no graph history."""
        return Tensor(self._data)

    def __len__(self):
        return len(self._data)

    def __repr__(self):
        grad = ", requires_grad=True" if self.requires_grad else ""
        return f"Tensor({self._data!r}{grad})"

    def _describe(self):
        label = self.name or "tensor"
        return f"{label} of shape {self.shape} and dtype {self.dtype}"

    # ------------------------------------------------------------------------- mutation

    def __setitem__(self, index, value):
        raise TypeError(
            "Tensor does not support item assignment: tensors are immutable so that arrays "
            "saved for backward stay valid. Build a new tensor instead, e.g. "
            "numpyml.where(mask, value, t) or numpyml.concatenate([...]); for a parameter, "
            "assign a new array to t.data."
        )

    # ------------------------------------------------------------------------- backward

    def backward(self, grad_output=None, retain_graph=False):
        """Accumulate d(self)/d(leaf) into every leaf's ``.grad``.

        ``grad_output`` is the cotangent of ``self``; it defaults to 1 for a scalar and is
        required otherwise. Unless ``retain_graph`` is true, the graph is freed afterwards
        and a second ``backward()`` through it raises.
        """
        if not self.requires_grad:
            raise RuntimeError(
                "backward: this tensor does not require grad; create the inputs with "
                "requires_grad=True and run the forward pass outside no_grad()."
            )
        if grad_output is None:
            if self.size != 1:
                raise RuntimeError(
                    f"backward: grad_output is required for a non-scalar output; "
                    f"got shape {self.shape}. Pass an array of that shape, or reduce first."
                )
            grad_output = np.ones(self.shape, dtype=self.dtype)
        grad_output = _as_array(grad_output, self.dtype)
        if grad_output.shape != self.shape:
            raise ValueError(
                f"backward: grad_output must have the output's shape {self.shape}; "
                f"got {grad_output.shape}"
            )
        order = _reverse_topological_order(self)
        _backpropagate(order, self, grad_output)
        if not retain_graph:
            _free_graph(order)


def _reverse_topological_order(root):
    """Return the graph's nodes with every node before its parents (iterative DFS)."""
    postorder = []
    visited = set()
    stack = [(root, False)]
    while stack:
        node, parents_done = stack.pop()
        if parents_done:
            postorder.append(node)
            continue
        if id(node) in visited:
            continue
        if node._freed:
            raise RuntimeError(
                f"backward: the graph through {node._describe()} was already freed by an "
                "earlier backward(). Run the forward pass again, or pass retain_graph=True "
                "to the first backward()."
            )
        visited.add(id(node))
        stack.append((node, True))
        for parent in node._parents:
            if parent.requires_grad and id(parent) not in visited:
                stack.append((parent, False))
    postorder.reverse()
    return postorder


def _backpropagate(order, root, grad_output):
    grads = {id(root): grad_output}
    for node in order:
        grad = grads.pop(id(node), None)
        if grad is None:
            continue
        if node._vjp is None:
            if node.grad is not None:
                node.grad = node.grad + grad
            elif grad.flags.writeable and grad.flags.owndata:
                node.grad = grad
            else:
                node.grad = np.array(grad)  # a leaf owns its gradient, never a view
            continue
        parent_grads = node._vjp(grad)
        _check_vjp_result(node, parent_grads)
        for parent, parent_grad in zip(node._parents, parent_grads):
            if parent_grad is None or not parent.requires_grad:
                continue
            parent_grad = _conform(parent_grad, parent, node)
            key = id(parent)
            previous = grads.get(key)
            # Never add in place: a VJP may return the same array for several inputs.
            grads[key] = parent_grad if previous is None else previous + parent_grad


def _check_vjp_result(node, parent_grads):
    if not isinstance(parent_grads, tuple) or len(parent_grads) != len(node._parents):
        count = len(parent_grads) if isinstance(parent_grads, tuple) else type(parent_grads)
        raise TypeError(
            f"{node.name}: vjp must return a tuple with one gradient (or None) per input, "
            f"{len(node._parents)} in all; got {count}"
        )


def _conform(grad, parent, node):
    grad = np.asarray(grad)
    if grad.shape != parent.shape:
        raise ValueError(
            f"{node.name}: vjp returned a gradient of shape {grad.shape} for an input of "
            f"shape {parent.shape}; reduce broadcast axes with numpyml.unbroadcast"
        )
    if grad.dtype != parent.dtype:
        grad = grad.astype(parent.dtype)
    return grad


def _free_graph(order):
    for node in order:
        if node._vjp is not None:
            node._vjp = None
            node._parents = ()
            node._freed = True


# ----------------------------------------------------------------------- building ops


def unbroadcast(grad, shape):
    """Sum ``grad`` over the axes that broadcasting added or stretched to reach ``shape``.

    This is the only place where broadcast gradients are reduced.

    >>> unbroadcast(np.ones((4, 2, 3)), (2, 1)).tolist()
    [[12.0], [12.0]]
    """
    if grad.shape == shape:
        return grad
    extra = grad.ndim - len(shape)
    if extra > 0:
        grad = grad.sum(axis=tuple(range(extra)))
    stretched = tuple(axis for axis, size in enumerate(shape) if size == 1 and grad.shape[axis] != 1)
    if stretched:
        grad = grad.sum(axis=stretched, keepdims=True)
    return grad


def as_tensor(value, like=None):
    """Return ``value`` as a Tensor; numbers take the dtype of ``like`` if given."""
    if isinstance(value, Tensor):
        return value
    if like is not None and not isinstance(value, np.ndarray):
        return Tensor(np.asarray(value, dtype=like.dtype))
    return Tensor(value)


def make_result(output_data, parents, vjp, name):
    """Wrap ``output_data`` as the result of an operation on ``parents``.

    Records the graph edge only when grad mode is on and some parent requires grad.
    """
    output_data = np.asarray(output_data)
    result = Tensor.__new__(Tensor)
    result._data = output_data
    result.grad = None
    result._freed = False
    result.name = name
    if _grad_enabled and any(parent.requires_grad for parent in parents):
        if not any(output_data is parent._data for parent in parents):
            output_data.flags.writeable = False
        result.requires_grad = True
        result._parents = tuple(parents)
        result._vjp = vjp
    else:
        result.requires_grad = False
        result._parents = ()
        result._vjp = None
    return result


def custom_op(inputs, output_data, vjp, name="custom_op"):
    """Return a tensor whose value is ``output_data`` and whose gradient comes from ``vjp``.

    ``inputs`` is a sequence of Tensors (arrays and numbers are wrapped as constants).
    ``vjp(grad_output)`` receives the cotangent of the output, an array of its shape, and
    returns a tuple with one gradient per input: an array of that input's shape, or None
    for no gradient. The engine checks the count and the shapes and casts each gradient
    to its input's dtype.

    >>> x = Tensor([1.0, -2.0], requires_grad=True)
    >>> y = custom_op([x], np.abs(x.data), lambda g: (g * np.sign(x.data),), name="abs")
    >>> y.sum().backward()
    >>> x.grad.tolist()
    [1.0, -1.0]
    """
    inputs = [as_tensor(value) for value in inputs]
    if not callable(vjp):
        raise TypeError(f"custom_op {name}: vjp must be callable; got {type(vjp).__name__}")
    return make_result(output_data, inputs, vjp, name)
