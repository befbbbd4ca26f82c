"""Golden vectors of SPEC.md section Q: forward values and gradients at real widths."""

import numpy as np

from conformance.suites.bitlength import expected_forward, expected_gradients

DESCRIPTION = (
    "kind 'quantum': x (FP32 bits), exponent_bits and mantissa_bits (float.hex), mode, uniforms "
    "(u_e, u_m as float.hex), y (FP32 bits of the forward pass), grad_output (FP32 bits of g), "
    "grad_exponent_bits and grad_mantissa_bits (float.hex); dL/dx equals grad_output (Q5)."
)


def x_bits(count, scale):
    """Return FP32 bits of a deterministic signed ramp with a zero and a -0."""
    x = (np.sin(np.arange(count) * 1.7) * scale).astype(np.float32)
    x[3] = 0.0
    x[5] = -0.0
    return x.view(np.uint32).tolist()


CASES = [
    ("collapse_mid", ["Q2", "Q3"], 12, 3.0, 4.4, 2.3, "collapse", (0.2, 0.9)),
    ("collapse_up", ["Q2", "Q3"], 12, 0.01, 3.5, 1.75, "collapse", (0.1, 0.5)),
    ("collapse_top", ["Q2", "Q4"], 9, 100.0, 8.0, 23.0, "collapse", (0.5, 0.5)),
    ("collapse_floor", ["Q2", "Q3"], 9, 1.0, 1.0, 0.0, "collapse", (0.99, 0.99)),
    ("interpolate_mid", ["Q2", "Q3"], 12, 3.0, 4.4, 2.3, "interpolate", (0.0, 0.0)),
    ("interpolate_top", ["Q2", "Q4"], 10, 0.5, 8.0, 23.0, "interpolate", (0.0, 0.0)),
    ("interpolate_integer", ["Q2", "Q5"], 10, 7.0, 3.0, 1.0, "interpolate", (0.0, 0.0)),
]


def record(name, rules, count, scale, e, m, mode, uniforms):
    bits = x_bits(count, scale)
    g = np.linspace(-1.0, 1.5, count).astype(np.float32)
    y = expected_forward(bits, e, m, mode, uniforms)
    (grad_e, _), (grad_m, _) = expected_gradients(bits, g, e, m, mode, uniforms)
    return {
        "kind": "quantum", "name": name, "rules": rules, "x": [f"0x{b:08x}" for b in bits],
        "exponent_bits": float(e).hex(), "mantissa_bits": float(m).hex(), "mode": mode,
        "uniforms": [float(u).hex() for u in uniforms], "y": [f"0x{b:08x}" for b in y],
        "grad_output": [f"0x{b:08x}" for b in g.view(np.uint32).tolist()],
        "grad_exponent_bits": float(grad_e).hex(), "grad_mantissa_bits": float(grad_m).hex(),
    }


def build():
    return DESCRIPTION, [record(*case) for case in CASES]
