"""Quantum Mantissa and Quantum Exponent: bitlengths learned by gradient descent.

Every tracked tensor t has a real mantissa width m_t in [0, 23] and exponent width e_t in [1, 8].
Write Q(x; e, m) for ``quantize(x, Container.training(e, m), anchor="max")``. For a width n let
n0 = min(⌊n⌋, n_max − 1) and f = n − n0 in [0, 1], so the top of the range is the upper end of
the step below it.

Forward, in one of two modes:

- ``"collapse"`` (default): each width independently becomes n0 + 1 with probability f, else n0,
  drawn from a seeded generator. The stored tensor Q(x; e_c, m_c) is a container member, and the
  expected width is n.
- ``"interpolate"``: the bilinear blend of the four corners Q(x; e0 + i, m0 + j), with weights
  (1 − f_e or f_e) · (1 − f_m or f_m). The blend is not a container member; storage is counted
  at (⌈e⌉, ⌈m⌉).

Backward, with g the gradient of the loss with respect to the narrowed tensor:

- dL/dm = Σ g ⊙ (Q(x; e_c, m0 + 1) − Q(x; e_c, m0)) in collapse mode, and the exact derivative
  of the blend, (1 − f_e) · Σ g ⊙ (Q01 − Q00) + f_e · Σ g ⊙ (Q11 − Q10), in interpolation mode;
  dL/de likewise with the roles of e and m swapped.
- dL/dx = g everywhere (straight-through), including at values that flush to zero. The anchor is
  the tensor maximum, so nothing saturates, and a zero gradient at flushed values would freeze a
  weight that fell below the window for the rest of training.

The footprint term γ · Σ_t w_t (1 + e_t + m_t), with w_t the share of tensor t in the stored
values, is the footprint-weighted bits per value; see :func:`footprint_penalty`.
"""

import functools
import math
from typing import NamedTuple

import numpy as np

from reference import native, quantize_lean
from reference.container import Container
from reference.quantize import quantize

MANTISSA_RANGE = (0.0, 23.0)
EXPONENT_RANGE = (1.0, 8.0)
MODES = ("collapse", "interpolate")


@functools.lru_cache(maxsize=None)
def training_container(exponent_bits, mantissa_bits, rounding="nearest_even"):
    """Return the (cached) training container with integer widths."""
    return Container.training(int(exponent_bits), int(mantissa_bits), rounding=rounding)


def narrow(x, exponent_bits, mantissa_bits, rounding="nearest_even", rng=None):
    """Return Q(x; e, m): ``x`` (float32) in the anchored training container of integer widths.

    ``rng`` supplies the uint32 noise of stochastic rounding and is ignored otherwise.
    """
    container = training_container(exponent_bits, mantissa_bits, rounding)
    noise = None
    if rounding == "stochastic":
        if rng is None:
            raise ValueError("narrow: stochastic rounding needs rng; got rng=None "
                             "(pass np.random.default_rng(seed))")
        noise = rng.integers(0, 2**32, size=x.shape, dtype=np.uint32)
    return quantize(x, container, anchor="max", noise=noise)


def split_width(n, width_range):
    """Return ``(n0, f)``: the lower integer width of n's step and the fraction above it.

    >>> split_width(3.25, MANTISSA_RANGE), split_width(23.0, MANTISSA_RANGE)
    ((3, 0.25), (22, 1.0))
    """
    low, high = width_range
    if not low <= n <= high:
        raise ValueError(f"width: must be in [{low:g}, {high:g}]; got {n!r} (clamp it first)")
    n0 = min(int(math.floor(n)), int(high) - 1)
    return n0, float(n) - n0


def collapse(n, width_range, rng):
    """Return the integer width n0 + 1 with probability f, else n0 (see :func:`split_width`)."""
    n0, fraction = split_width(n, width_range)
    return n0 + int(rng.random() < fraction)


def stored_width(n, width_range, mode, rng):
    """Return the integer width a tensor is stored and counted at this step."""
    if mode == "collapse":
        return collapse(n, width_range, rng)
    if mode == "interpolate":
        return int(math.ceil(n))
    raise ValueError(f"bitlength mode: must be one of {MODES}; got {mode!r}")


class QuantumContext(NamedTuple):
    """Forward-pass data of one tensor that :func:`quantum_vjp` needs."""

    x: np.ndarray
    """the unnarrowed input, C-contiguous unless the compiled kernel narrowed it"""
    exponent: tuple
    """(e0, f_e, e_c): lower width, fraction, and collapsed width (None in interpolation)"""
    mantissa: tuple
    """(m0, f_m, m_c), as for the exponent"""
    mode: str
    rounding: str
    corners: dict
    """narrowed tensors already computed, keyed by (exponent_bits, mantissa_bits)"""
    magnitudes: tuple = None
    """(largest, smallest nonzero) |x| as FP32 bits when the compiled kernel narrowed x"""


class QuantumResult(NamedTuple):
    """Narrowed tensor of one forward pass and the integer widths it is stored at."""

    value: np.ndarray
    exponent_bits: int
    mantissa_bits: int
    context: QuantumContext


def quantum_narrow(x, exponent_bits, mantissa_bits, *, mode="collapse",
                   rounding="nearest_even", rng=None, prepare_vjp=False, need_exponent=True):
    """Narrow ``x`` at real widths (e, m) in ``mode``; return a :class:`QuantumResult`.

    ``rng`` (a numpy Generator) draws the collapse and any stochastic-rounding noise. In
    collapse mode the compiled kernel ``reference.native._training``, where built, narrows x at
    the drawn widths, and :func:`quantum_vjp` then computes the width gradients from x without
    corners. Otherwise, with ``prepare_vjp``, the corners that :func:`quantum_vjp` needs (the
    exponent neighbour only if ``need_exponent``) are computed here in one fused pass where the
    lean path serves them. The results are the same bits on every path.
    """
    if mode not in MODES:
        raise ValueError(f"bitlength mode: must be one of {MODES}; got {mode!r}")
    if mode == "collapse" and rng is None:
        raise ValueError("quantum_narrow: collapse mode needs rng; got rng=None "
                         "(pass np.random.default_rng(seed))")
    e0, fraction_e = split_width(exponent_bits, EXPONENT_RANGE)
    m0, fraction_m = split_width(mantissa_bits, MANTISSA_RANGE)
    corners = {}
    magnitudes = None
    if mode == "collapse":
        e_c = e0 + int(rng.random() < fraction_e)
        m_c = m0 + int(rng.random() < fraction_m)
        magnitudes = _kernel_narrow(x, e_c, m_c, rounding, corners)
    if magnitudes is None:
        # Up to four corners narrow the same x, here and in quantum_vjp. One C-order copy of a
        # strided x (a stashed NHWC activation) serves them all, where each quantize call would
        # otherwise copy it. The corners do not depend on x's memory layout.
        x = _contiguous(x)

    def corner(e, m):
        if (e, m) not in corners:
            corners[(e, m)] = narrow(x, e, m, rounding, rng)
        return corners[(e, m)]

    if mode == "collapse":
        if magnitudes is None and prepare_vjp:
            neighbours = [(e_c, m_c), (e_c, 2 * m0 + 1 - m_c)]
            if need_exponent:
                neighbours.append((2 * e0 + 1 - e_c, m_c))
            fused = quantize_lean.narrow_max_anchor_widths(x, neighbours, rounding)
            if fused is not None:
                corners.update(fused)
        value = corner(e_c, m_c)
        stored = (e_c, m_c)
    else:
        e_c = m_c = None
        value = None
        for i, weight_e in ((0, 1.0 - fraction_e), (1, fraction_e)):
            for j, weight_m in ((0, 1.0 - fraction_m), (1, fraction_m)):
                weight = weight_e * weight_m
                if weight == 0.0:
                    continue
                # The blend is summed in float64 and rounded to float32 once. Starting from the
                # first term rather than from zeros keeps -0 at integer widths.
                term = weight * corner(e0 + i, m0 + j).astype(np.float64)
                value = term if value is None else value + term
        value = value.astype(x.dtype)
        stored = (int(math.ceil(exponent_bits)), int(math.ceil(mantissa_bits)))

    context = QuantumContext(x, (e0, fraction_e, e_c), (m0, fraction_m, m_c), mode, rounding,
                             corners, magnitudes)
    return QuantumResult(value, stored[0], stored[1], context)


def _contiguous(x):
    # np.ascontiguousarray would turn a 0-d x into shape (1,).
    return x if x.flags.c_contiguous else np.ascontiguousarray(x)


def _kernel_narrow(x, exponent_bits, mantissa_bits, rounding, corners):
    """Store Q(x; e, m) from the compiled kernel in ``corners``; return its magnitudes or None.

    None means the numpy path narrows x: the kernel is not built or disabled, or x or the
    rounding is a case that it leaves to the general rules.
    """
    kernel = native.kernel("training")
    code = quantize_lean.KERNEL_ROUNDINGS.get(rounding)
    if kernel is None or code is None or x.dtype != np.float32:
        return None
    narrowed = quantize_lean.kernel_narrow(kernel, x, exponent_bits, mantissa_bits, code)
    if narrowed is None:
        return None
    corners[(exponent_bits, mantissa_bits)] = narrowed[0]
    return narrowed[1]


def _kernel_collapse_gradients(context, g, need_exponent):
    """Return ``(grad_m, grad_e)`` of collapse mode from the compiled kernel, or None for numpy.

    The kernel sums in the order of ``np.sum(float32, dtype=np.float64)``, which depends on
    numpy's buffer size, so another buffer size takes the numpy path.
    """
    kernel = native.kernel("training")
    if (kernel is None or context.magnitudes is None or g.shape != context.x.shape
            or np.getbufsize() != kernel.SUM_BLOCK):
        return None
    largest, smallest_nonzero = context.magnitudes
    e0, _, e_c = context.exponent
    m0, _, m_c = context.mantissa
    # The other width of each step: n0 + 1 when the draw gave n0, else n0.
    other_e = 2 * e0 + 1 - e_c if need_exponent else 0
    code = quantize_lean.KERNEL_ROUNDINGS[context.rounding]
    # The sums run over x and g in C order, as numpy's sum over the C-order corners does.
    return kernel.collapse_gradients(np.ascontiguousarray(context.x), np.ascontiguousarray(g),
                                     largest, smallest_nonzero, code, e_c, m_c, other_e,
                                     2 * m0 + 1 - m_c)


def quantum_vjp(context, grad_output, rng=None, need_exponent=True):
    """Return ``(grad_x, grad_exponent_bits, grad_mantissa_bits)`` for one narrowed tensor.

    ``grad_output`` is dL/dQ. The width gradients are float64 scalars; ``grad_exponent_bits``
    is 0.0 without computing its corners when ``need_exponent`` is False. ``rng`` supplies
    stochastic-rounding noise for corners the forward pass did not compute.
    """
    x, corners = context.x, context.corners
    e0, fraction_e, e_c = context.exponent
    m0, fraction_m, m_c = context.mantissa
    g = np.asarray(grad_output, dtype=x.dtype)

    def corner(e, m):
        if (e, m) not in corners:
            corners[(e, m)] = narrow(x, e, m, context.rounding, rng)
        return corners[(e, m)]

    def slope(low, high):
        # The float32 difference is exact: both values round the same x, so they are within a
        # factor of 2 of each other (Sterbenz) or one is zero. The product rounds once, and the
        # sum accumulates in float64, over the values in C order whatever the corners' layout.
        product = np.asarray(np.subtract(high, low, order="C"))  # 0-d corners give a scalar
        np.multiply(g, product, out=product)
        return float(np.sum(product, dtype=np.float64))

    if context.mode == "collapse":
        sums = _kernel_collapse_gradients(context, g, need_exponent)
        if sums is not None:
            return g, sums[1], sums[0]
        grad_m = slope(corner(e_c, m0), corner(e_c, m0 + 1))
        grad_e = slope(corner(e0, m_c), corner(e0 + 1, m_c)) if need_exponent else 0.0
    else:
        grad_m = ((1.0 - fraction_e) * slope(corner(e0, m0), corner(e0, m0 + 1))
                  + fraction_e * slope(corner(e0 + 1, m0), corner(e0 + 1, m0 + 1)))
        grad_e = 0.0
        if need_exponent:
            grad_e = ((1.0 - fraction_m) * slope(corner(e0, m0), corner(e0 + 1, m0))
                      + fraction_m * slope(corner(e0, m0 + 1), corner(e0 + 1, m0 + 1)))

    grad_x = np.asarray(grad_output, dtype=x.dtype)
    return grad_x, grad_e, grad_m


def footprint_penalty(elements, exponent_bits, mantissa_bits, gamma):
    """Return ``(value, grad_exponent_bits, grad_mantissa_bits)`` of the footprint term.

    value = γ · Σ_t w_t (1 + e_t + m_t) with w_t = elements_t / Σ elements, so value/γ is the
    mean stored bits per value. The weights are constants, so dvalue/de_t = dvalue/dm_t = γ w_t.

    >>> value, _, grad_m = footprint_penalty([1, 3], [8.0, 4.0], [23.0, 3.0], gamma=1.0)
    >>> float(value), grad_m.tolist()
    (14.0, [0.25, 0.75])
    """
    elements = np.asarray(elements, dtype=np.float64)
    total = elements.sum()
    if total <= 0:
        raise ValueError(f"footprint_penalty elements: the total must be positive; got {total}")
    weights = elements / total
    bits = 1.0 + np.asarray(exponent_bits, np.float64) + np.asarray(mantissa_bits, np.float64)
    grad = gamma * weights
    return gamma * float(np.dot(weights, bits)), grad.copy(), grad


def width_lr(step, fast_lr=0.5, fast_steps=60, lr=0.1):
    """Return the width learning rate: ``fast_lr`` for ``fast_steps`` steps, then ``lr``.

    The widths start at (23, 8), so over a short run the whole-run footprint depends mostly on
    how fast they come down. The high rate brings them down within tens of steps. The lower rate
    after it lets the task gradient settle them near equilibrium.
    """
    return fast_lr if step < fast_steps else lr


def gamma_at(step, gamma, warmup_steps=0):
    """Return γ at ``step``: a linear ramp from 0 over ``warmup_steps``, then ``gamma``."""
    if warmup_steps <= 0 or step >= warmup_steps:
        return gamma
    return gamma * (step + 1) / warmup_steps
