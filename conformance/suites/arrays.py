"""Checks of the array contract of SPEC.md rule C15: what quantize returns, and what it leaves.

The value checks pass x as a fresh 1-d array, so they cannot see an output that loses x's
shape or a backend that writes into x after computing. This check passes x with 2 or 3
dimensions and compares x's bit patterns before and after the call.
"""

import numpy as np
from hypothesis import strategies as st

from conformance import oracle
from conformance.registry import Mismatch, check, run_property
from conformance.strategies import quantize_cases
from conformance.suites.compare import (
    call_backend, describe_container, hex32, quantize_expected,
)

SUITE = "containers"
# Shapes of n elements with more than one dimension, so that flattening changes the shape.
LAYOUTS = {
    "row": lambda n: (1, n),
    "column": lambda n: (n, 1),
    "cube": lambda n: (1, n, 1),
}


@check(SUITE, "quantize-array-contract", ("C15",), {"quantize"})
def quantize_array_contract(backend, examples):
    """Check that quantize returns a new float32 array of x's shape and leaves x unchanged."""
    strategy = st.tuples(quantize_cases("fp32"), st.sampled_from(sorted(LAYOUTS)))
    run_property(lambda pair: _check_contract(backend, *pair), strategy, examples)


def _check_contract(backend, case, layout):
    _, expected = quantize_expected(case, list(case.bits), None)
    bits = [b for b, e in zip(case.bits, expected) if e != oracle.ERROR]
    if not bits:
        return
    shape = LAYOUTS[layout](len(bits))
    x = np.array(bits, np.uint32).view(np.float32).reshape(shape)
    inputs = {"container": describe_container(case.container, case.anchor),
              "anchor": case.anchor, "shape": shape}

    actual = call_backend(backend.quantize, "C15", inputs, "a result", x, case.container,
                          anchor=case.anchor)

    after = x.view(np.uint32).ravel()
    for i in np.flatnonzero(after != np.array(bits, np.uint32)):
        raise Mismatch("C15", "x must not be modified", dict(inputs, element=int(i)),
                       f"x[{i}] still {hex32(bits[i])}", hex32(int(after[i])))
    actual = np.asarray(actual)
    if actual.dtype != np.float32 or actual.shape != shape:
        raise Mismatch("C15", "output must be float32 of x's shape", inputs,
                       f"float32 {shape}", f"{actual.dtype} {actual.shape}")
    if np.shares_memory(actual, x):
        raise Mismatch("C15", "output must be a new array", inputs, "a new array",
                       "x or a view of x")
    # The values themselves are the other checks' business. Here they must only match what
    # the same backend returns for the 1-d x, so that no element moves with the shape.
    flat = call_backend(backend.quantize, "C15", inputs, "a result", x.reshape(-1).copy(),
                        case.container, anchor=case.anchor)
    flat_bits = np.asarray(flat).view(np.uint32).ravel()
    actual_bits = actual.view(np.uint32).ravel()
    for i in np.flatnonzero(flat_bits != actual_bits):
        raise Mismatch("C15", "output must not depend on x's shape",
                       dict(inputs, x=hex32(bits[i]), element=int(i)),
                       f"{hex32(int(flat_bits[i]))} as for 1-d x", hex32(int(actual_bits[i])))
