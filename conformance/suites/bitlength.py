"""Checks of SPEC.md section Q: the learned-bitlength forward pass and its gradients.

Q(x; e, m) comes from the exact oracle (training container, anchor from the tensor), so these
checks share no code with ``reference/bitlength.py``.
"""

import math

import numpy as np
from hypothesis import strategies as st

from conformance import oracle
from conformance.registry import Mismatch, check, run_property
from conformance.strategies import element_bits
from conformance.suites.compare import call_backend, hex32
from reference.container import Container

SUITE = "bitlength"
MANTISSA_RANGE = (0, 23)
EXPONENT_RANGE = (1, 8)
# SPEC.md Q3 fixes float64 sums but not their order, so the checks accept the difference that
# SPEC.md T (row TQ1) allows, relative to the sum of |terms|.
GRADIENT_RTOL = 1e-12


def split_width(n, width_range):
    """Return (n0, f) of Q2: n0 = min(floor(n), n_max - 1), f = n - n0."""
    n0 = min(math.floor(n), width_range[1] - 1)
    return n0, n - n0


def q_bits(bits, e, m):
    """Return Q(x; e, m) of Q2 as FP32 bit patterns, by the oracle."""
    container = Container.training(e, m)
    grid = oracle.grid_of(container, oracle.max_anchor(bits, container))
    return [oracle.quantize_bits(b, grid) for b in bits]


def q_values(bits, e, m):
    return np.array(q_bits(bits, e, m), np.uint32).view(np.float32)


def collapsed(n, width_range, u):
    n0, f = split_width(n, width_range)
    return n0 + (u < f)


def expected_forward(bits, e, m, mode, uniforms):
    """Return the float32 bit patterns that Q2 prescribes."""
    if mode == "collapse":
        e_c = collapsed(e, EXPONENT_RANGE, uniforms[0])
        m_c = collapsed(m, MANTISSA_RANGE, uniforms[1])
        return q_bits(bits, e_c, m_c)
    (e0, fe), (m0, fm) = split_width(e, EXPONENT_RANGE), split_width(m, MANTISSA_RANGE)
    # NOTE: Q2 does not say how -0 sums. Like the reference, the sum skips terms of weight 0
    # and starts from the first term, so a blend of -0 stays -0 at integer widths.
    total = None
    for i, weight_e in ((0, 1 - fe), (1, fe)):
        for j, weight_m in ((0, 1 - fm), (1, fm)):
            if weight_e * weight_m == 0:
                continue
            term = weight_e * weight_m * q_values(bits, e0 + i, m0 + j).astype(np.float64)
            total = term if total is None else total + term
    return total.astype(np.float32).view(np.uint32).tolist()


def expected_gradients(bits, g, e, m, mode, uniforms):
    """Return ((grad_e, scale_e), (grad_m, scale_m)) of Q3, with the sum of |terms| as scale."""
    (e0, fe), (m0, fm) = split_width(e, EXPONENT_RANGE), split_width(m, MANTISSA_RANGE)

    g = np.asarray(g, np.float32)

    def slope(e_low, m_low, e_high, m_high):
        # Q3: the float32 difference is exact, the float32 product rounds once, and the sum
        # accumulates in float64.
        terms = (g * (q_values(bits, e_high, m_high) - q_values(bits, e_low, m_low)))
        terms = terms.astype(np.float64)
        return float(np.sum(terms)), float(np.sum(np.abs(terms)))

    if mode == "collapse":
        e_c = collapsed(e, EXPONENT_RANGE, uniforms[0])
        m_c = collapsed(m, MANTISSA_RANGE, uniforms[1])
        return slope(e0, m_c, e0 + 1, m_c), slope(e_c, m0, e_c, m0 + 1)
    grad_m = [slope(e0 + i, m0, e0 + i, m0 + 1) for i in (0, 1)]
    grad_e = [slope(e0, m0 + j, e0 + 1, m0 + j) for j in (0, 1)]
    return (_blend(grad_e, fm), _blend(grad_m, fe))


def _blend(pair, f):
    (low, low_scale), (high, high_scale) = pair
    return (1 - f) * low + f * high, (1 - f) * low_scale + f * high_scale


@st.composite
def cases(draw):
    """Draw (bits, e, m, mode, uniforms): finite inputs, real widths including both ends."""
    e = draw(st.sampled_from([1.0, 8.0, 3.5]) | st.floats(1.0, 8.0), label="exponent_bits")
    m = draw(st.sampled_from([0.0, 23.0, 2.25]) | st.floats(0.0, 23.0), label="mantissa_bits")
    grid = oracle.grid_of(Container.training(4, 4), 0)
    bits = draw(st.lists(element_bits(grid).filter(lambda b: (b & 0x7FFF_FFFF) < 0x7F80_0000),
                         min_size=1, max_size=12), label="x bits")
    mode = draw(st.sampled_from(["collapse", "interpolate"]), label="mode")
    uniforms = (draw(st.floats(0.0, 1.0, exclude_max=True), label="u_e"),
                draw(st.floats(0.0, 1.0, exclude_max=True), label="u_m"))
    return bits, e, m, mode, uniforms


def _inputs(bits, e, m, mode, uniforms):
    return {"x": [hex32(b) for b in bits], "exponent_bits": float(e).hex(),
            "mantissa_bits": float(m).hex(), "mode": mode,
            "uniforms": [float(u).hex() for u in uniforms]}


@check(SUITE, "quantum-forward", ("Q2",), {"bitlength.forward"})
def quantum_forward(backend, examples):
    """Check the forward pass at real widths against the collapse or blend of Q2."""

    def prop(case):
        bits, e, m, mode, uniforms = case
        inputs = _inputs(*case)
        expected = expected_forward(bits, e, m, mode, uniforms)
        x = np.array(bits, np.uint32).view(np.float32)
        y = call_backend(backend.quantum_forward, "Q2", inputs, "an array", x, e, m, mode=mode,
                         uniforms=uniforms)
        actual = np.asarray(y, np.float32).view(np.uint32).tolist()
        for i, (want, got) in enumerate(zip(expected, actual)):
            if want != got:
                raise Mismatch("Q2", f"{mode} forward differs at element {i}", inputs,
                               hex32(want), hex32(got))

    run_property(prop, cases(), examples)


@check(SUITE, "quantum-gradient", ("Q3", "Q4", "Q5"), {"bitlength.gradient"})
def quantum_gradient(backend, examples):
    """Check that dL/dx is g and the width gradients are the slopes of Q3 and Q4."""

    def prop(case):
        bits, e, m, mode, uniforms = case
        inputs = _inputs(*case)
        g = np.linspace(-1.5, 2.0, len(bits))
        x = np.array(bits, np.uint32).view(np.float32)
        grad_x, grad_e, grad_m = call_backend(
            backend.quantum_gradient, "Q3", inputs, "three gradients", x, g.astype(np.float32),
            e, m, mode=mode, uniforms=uniforms)
        if not np.array_equal(np.asarray(grad_x, np.float32), g.astype(np.float32)):
            raise Mismatch("Q5", "dL/dx must equal g", inputs,
                           str(g.astype(np.float32).tolist()), str(np.asarray(grad_x).tolist()))
        (want_e, scale_e), (want_m, scale_m) = expected_gradients(bits, g.astype(np.float32), e,
                                                                  m, mode, uniforms)
        rule = "Q4" if e == 8.0 or m == 23.0 else "Q3"
        for what, want, got, scale in (("dL/de", want_e, grad_e, scale_e),
                                       ("dL/dm", want_m, grad_m, scale_m)):
            if abs(float(got) - want) > GRADIENT_RTOL * scale:
                raise Mismatch(rule, f"{what} differs", inputs, float(want).hex(),
                               float(got).hex())

    run_property(prop, cases(), examples)


@check(SUITE, "golden-vectors", ("Q2", "Q3", "Q4", "Q5"),
       {"bitlength.forward", "bitlength.gradient"})
def golden_vectors(backend, examples):
    """Check that every bitlength vector gives its forward bits and gradients."""
    from conformance import vectors

    _, records = vectors.load("bitlength.jsonl")
    for record in records:
        bits = [int(h, 16) for h in record["x"]]
        x = np.array(bits, np.uint32).view(np.float32)
        e, m = float.fromhex(record["exponent_bits"]), float.fromhex(record["mantissa_bits"])
        uniforms = tuple(float.fromhex(u) for u in record["uniforms"])
        g = np.array([int(h, 16) for h in record["grad_output"]], np.uint32).view(np.float32)
        inputs = {"vector": record["name"]}
        y = call_backend(backend.quantum_forward, "Q2", inputs, "the vector's y", x, e, m,
                         mode=record["mode"], uniforms=uniforms)
        got = [hex32(b) for b in np.asarray(y, np.float32).view(np.uint32).tolist()]
        if got != record["y"]:
            raise Mismatch("Q2", "forward differs from the vector", inputs, record["y"], got)
        grad_x, grad_e, grad_m = call_backend(backend.quantum_gradient, "Q3", inputs, "gradients",
                                              x, g, e, m, mode=record["mode"], uniforms=uniforms)
        if not np.array_equal(np.asarray(grad_x, np.float32).view(np.uint32), g.view(np.uint32)):
            raise Mismatch("Q5", "dL/dx must equal grad_output", inputs, "grad_output",
                           str(np.asarray(grad_x).tolist()))
        for what, key, got_value in (("dL/de", "grad_exponent_bits", grad_e),
                                     ("dL/dm", "grad_mantissa_bits", grad_m)):
            want = float.fromhex(record[key])
            scale = max(abs(want), 1.0) * GRADIENT_RTOL * len(bits)
            if abs(float(got_value) - want) > scale:
                raise Mismatch(record["rules"][-1] if record["rules"][-1] == "Q4" else "Q3",
                               f"{what} differs from the vector", inputs, record[key],
                               float(got_value).hex())
