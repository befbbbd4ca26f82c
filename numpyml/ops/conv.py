"""Two-dimensional convolution and pooling over NCHW arrays.

Convolution uses im2col: a strided window view of the padded input is copied once into a
(N*Ho*Wo, C*kh*kw) matrix, so both the forward pass and the weight gradient are single
BLAS matrix products. The input gradient scatters back with one strided add per kernel
tap (kh*kw adds), never one per output pixel.
"""

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from numpyml.engine import as_tensor, make_result


def _pair(value, name):
    pair = (value, value) if np.isscalar(value) else tuple(value)
    if len(pair) != 2 or any(int(v) != v or v < 0 for v in pair):
        raise ValueError(f"{name}: must be a non-negative integer or a pair of them; got {value!r}")
    return int(pair[0]), int(pair[1])


def _windows(x, kernel, stride, padding):
    """Return the (N, C, Ho, Wo, kh, kw) window view of ``x`` after zero padding."""
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    if x.shape[2] < kh or x.shape[3] < kw:
        raise ValueError(
            f"conv2d/pool: the kernel {kernel} must fit inside the padded input of spatial "
            f"size {x.shape[2:]}; reduce the kernel or add padding"
        )
    return sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]


def _scatter_windows(grad_windows, input_shape, stride, padding):
    """Add (N, C, Ho, Wo, kh, kw) window gradients back onto an input of ``input_shape``."""
    n, c, height, width = input_shape
    (sh, sw), (ph, pw) = stride, padding
    _, _, out_h, out_w, kh, kw = grad_windows.shape
    padded = np.zeros((n, c, height + 2 * ph, width + 2 * pw), dtype=grad_windows.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, :, i:i + sh * out_h:sh, j:j + sw * out_w:sw] += grad_windows[..., i, j]
    return padded[:, :, ph:ph + height, pw:pw + width]


def _check_nchw(x, op):
    if x.ndim != 4:
        raise ValueError(f"{op}: input must be 4-d (N, C, H, W); got shape {x.shape}")


# ---------------------------------------------------------------------- convolution


def conv2d(x, weight, bias=None, stride=1, padding=0):
    """Return the cross-correlation of ``x`` (N, C, H, W) with ``weight`` (O, C, kh, kw).

    out[n, o, i, j] = bias[o] + sum_{c, u, v} x_pad[n, c, i*sh + u, j*sw + v] * w[o, c, u, v]
    """
    x, weight = as_tensor(x), as_tensor(weight)
    _check_nchw(x, "conv2d")
    out_channels, in_channels, kh, kw = weight.shape
    if x.shape[1] != in_channels:
        raise ValueError(
            f"conv2d: input channels must match the weight's {in_channels}; got {x.shape[1]}"
        )
    stride, padding = _pair(stride, "conv2d stride"), _pair(padding, "conv2d padding")
    # Columns are ordered (kh, kw, C) so that channel runs stay contiguous in memory, which
    # makes the im2col copy and the scatter of the input gradient cheap.
    windows = _windows(x.data, (kh, kw), stride, padding)
    n, _, out_h, out_w = windows.shape[:4]
    columns = np.ascontiguousarray(windows.transpose(0, 2, 3, 4, 5, 1))
    columns = columns.reshape(n * out_h * out_w, kh * kw * in_channels)
    weight_matrix = weight.data.transpose(0, 2, 3, 1).reshape(out_channels, -1)
    out = columns @ weight_matrix.T
    if bias is not None:
        out += bias.data
    out = out.reshape(n, out_h, out_w, out_channels).transpose(0, 3, 1, 2)
    parents = (x, weight) if bias is None else (x, weight, as_tensor(bias))

    def vjp(g):
        grad_rows = g.transpose(0, 2, 3, 1).reshape(-1, out_channels)
        grad_weight = (grad_rows.T @ columns).reshape(out_channels, kh, kw, in_channels)
        grad_weight = grad_weight.transpose(0, 3, 1, 2)
        grad_x = None
        if x.requires_grad:
            # One (rows, O) @ (O, C) product per kernel tap writes each tap's column
            # gradient to its own contiguous block, ready for the strided adds.
            tap_weights = weight.data.transpose(2, 3, 0, 1).reshape(kh * kw, out_channels, -1)
            grad_taps = (grad_rows @ tap_weights).reshape(kh, kw, n, out_h, out_w, in_channels)
            grad_x = _scatter_taps(grad_taps, x.shape, stride, padding)
        if bias is None:
            return grad_x, grad_weight
        return grad_x, grad_weight, grad_rows.sum(axis=0)

    return make_result(out, parents, vjp, "conv2d")


def _scatter_taps(grad_taps, input_shape, stride, padding):
    """Add (kh, kw, N, Ho, Wo, C) per-tap column gradients back onto an NCHW input gradient."""
    n, c, height, width = input_shape
    (sh, sw), (ph, pw) = stride, padding
    kh, kw, _, out_h, out_w, _ = grad_taps.shape
    padded = np.zeros((n, height + 2 * ph, width + 2 * pw, c), dtype=grad_taps.dtype)
    for i in range(kh):
        for j in range(kw):
            padded[:, i:i + sh * out_h:sh, j:j + sw * out_w:sw] += grad_taps[i, j]
    return padded[:, ph:ph + height, pw:pw + width].transpose(0, 3, 1, 2)


# -------------------------------------------------------------------------- pooling


def max_pool2d(x, kernel_size, stride=None, padding=0):
    """Return the maximum over each window. Padding counts as -inf, so it never wins.

    NOTE: a tie sends the whole gradient to the first maximum in the window (row-major), as
    PyTorch does. Ties between positive values are rare, and ReLU's zero gradient at 0
    cancels the common all-zero windows.
    """
    x = as_tensor(x)
    _check_nchw(x, "max_pool2d")
    kernel = _pair(kernel_size, "max_pool2d kernel_size")
    stride = kernel if stride is None else _pair(stride, "max_pool2d stride")
    padding = _pair(padding, "max_pool2d padding")
    if padding == (0, 0) and stride == kernel and _tiles(x.shape, kernel):
        return _max_pool_tiles(x, kernel)
    source = x.data
    if padding != (0, 0):
        pad = ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2)
        source = np.pad(source, pad, constant_values=-np.inf)
    windows = _windows(source, kernel, stride, (0, 0))
    flat = windows.reshape(windows.shape[:4] + (-1,))
    winner = flat.argmax(axis=-1)[..., None]
    out = np.take_along_axis(flat, winner, axis=-1)[..., 0]

    def vjp(g):
        grad_windows = np.zeros(flat.shape, g.dtype)
        np.put_along_axis(grad_windows, winner, g[..., None], axis=-1)
        grad_windows = grad_windows.reshape(windows.shape)
        grad = _scatter_windows(grad_windows, source.shape, stride, (0, 0))
        height, width = x.shape[2:]
        return (grad[:, :, padding[0]:padding[0] + height, padding[1]:padding[1] + width],)

    return make_result(out, (x,), vjp, "max_pool2d")


def avg_pool2d(x, kernel_size, stride=None, padding=0):
    """Return the mean over each window; zero padding counts in the mean (PyTorch default)."""
    x = as_tensor(x)
    _check_nchw(x, "avg_pool2d")
    kernel = _pair(kernel_size, "avg_pool2d kernel_size")
    stride = kernel if stride is None else _pair(stride, "avg_pool2d stride")
    padding = _pair(padding, "avg_pool2d padding")
    windows = _windows(x.data, kernel, stride, padding)
    area = kernel[0] * kernel[1]
    out = windows.mean(axis=(4, 5))

    def vjp(g):
        per_tap = np.broadcast_to((g / area)[..., None, None], g.shape + kernel)
        return (_scatter_windows(per_tap, x.shape, stride, padding),)

    return make_result(out, (x,), vjp, "avg_pool2d")


def _tiles(shape, kernel):
    return shape[2] % kernel[0] == 0 and shape[3] % kernel[1] == 0


def _max_pool_tiles(x, kernel):
    """Max pooling over non-overlapping tiles that cover the input exactly.

    Works on the kh*kw strided sub-grids of the input (one per tap) instead of a 6-d view,
    which is several times faster in numpy for small kernels.
    """
    kh, kw = kernel
    taps = [x.data[:, :, i::kh, j::kw] for i in range(kh) for j in range(kw)]
    out = taps[0]
    for tap in taps[1:]:
        out = np.maximum(out, tap)

    def vjp(g):
        # The taps cover the input exactly, so every element of grad is written below. Its
        # memory layout follows x's, which keeps the next op's products free of copies.
        grad = np.empty_like(x.data, dtype=g.dtype)
        unclaimed = np.ones(out.shape, dtype=bool)
        wins = np.empty(out.shape, dtype=bool)
        for index, tap in enumerate(taps):
            # The first tap in row-major order that equals the maximum takes the gradient.
            np.equal(tap, out, out=wins)
            wins &= unclaimed
            unclaimed ^= wins
            i, j = divmod(index, kw)
            np.multiply(g, wins, out=grad[:, :, i::kh, j::kw])
        return (grad,)

    return make_result(out, (x,), vjp, "max_pool2d")
