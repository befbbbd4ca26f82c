"""Work shared across Quantum's quantize calls and Gecko sampling leaves results bit-identical.

Quantum narrows one C-order copy of a strided input for all its corners, and encode codes
training-container members in integers. These tests compare both against the reference
functions called directly on the original arrays.
"""

import numpy as np
import pytest

from numpyml import narrowing
from numpyml.train import TrainConfig, train
from reference import bitlength, codes, native, quantize_lean
from reference.bitlength import quantum_narrow, quantum_vjp
from reference.container import Container
from reference.quantize import quantize


def strided_sample(seed=0):
    # An NHWC-strided view, as the digits CNN stashes its second convolution's input.
    rng = np.random.default_rng(seed)
    data = rng.standard_normal((8, 6, 6, 32)) * np.exp(rng.uniform(-4, 2, (8, 6, 6, 32)))
    x = data.astype(np.float32).transpose(0, 3, 1, 2)
    assert not x.flags.c_contiguous
    return x


def corner(x, e, m):
    return quantize(x, Container.training(e, m), anchor="max")


def slope(g, low, high):
    return float(np.sum(g * (high - low), dtype=np.float64))


def identical(a, b):
    return a.shape == b.shape and np.array_equal(a.view(np.uint32), b.view(np.uint32))


@pytest.mark.spec("Q2", "Q4")
@pytest.mark.parametrize("e, m", [(3.3, 2.6), (8.0, 23.0), (1.0, 0.4), (4.9, 7.5)])
def test_collapse_matches_direct_quantize(e, m):
    x = strided_sample()
    g = strided_sample(seed=1)
    e0, fraction_e = bitlength.split_width(e, bitlength.EXPONENT_RANGE)
    m0, fraction_m = bitlength.split_width(m, bitlength.MANTISSA_RANGE)
    draws = np.random.default_rng(5)
    e_c = e0 + int(draws.random() < fraction_e)
    m_c = m0 + int(draws.random() < fraction_m)

    result = quantum_narrow(x, e, m, mode="collapse", rng=np.random.default_rng(5))
    grad_x, grad_e, grad_m = quantum_vjp(result.context, g)

    assert (result.exponent_bits, result.mantissa_bits) == (e_c, m_c)
    assert identical(result.value, corner(x, e_c, m_c))
    assert grad_m == slope(g, corner(x, e_c, m0), corner(x, e_c, m0 + 1))
    assert grad_e == slope(g, corner(x, e0, m_c), corner(x, e0 + 1, m_c))
    assert identical(grad_x, g)


@pytest.mark.spec("Q3", "Q4")
@pytest.mark.parametrize("e, m", [(3.3, 2.6), (4.0, 7.0), (1.5, 0.5)])
def test_interpolation_matches_direct_quantize(e, m):
    x = strided_sample()
    g = strided_sample(seed=1)
    e0, fe = bitlength.split_width(e, bitlength.EXPONENT_RANGE)
    m0, fm = bitlength.split_width(m, bitlength.MANTISSA_RANGE)
    q = {(i, j): corner(x, e0 + i, m0 + j) for i in (0, 1) for j in (0, 1)}
    weights_e = (1.0 - fe, fe)
    weights_m = (1.0 - fm, fm)
    blend = None
    for (i, j), value in q.items():
        weight = weights_e[i] * weights_m[j]
        if weight == 0.0:
            continue
        term = weight * value.astype(np.float64)
        blend = term if blend is None else blend + term

    result = quantum_narrow(x, e, m, mode="interpolate")
    _, grad_e, grad_m = quantum_vjp(result.context, g)

    assert identical(result.value, blend.astype(np.float32))
    expected_m = ((1.0 - fe) * slope(g, q[0, 0], q[0, 1]) + fe * slope(g, q[1, 0], q[1, 1]))
    expected_e = ((1.0 - fm) * slope(g, q[0, 0], q[1, 0]) + fm * slope(g, q[0, 1], q[1, 1]))
    assert grad_m == expected_m
    assert grad_e == expected_e


def short_run(method):
    method.set_gecko_every(1)
    report = train(TrainConfig(model="cnn", dataset="digits", epochs=1, seed=2), method=method)
    return report, method


def run_fields(report, method):
    return {
        "test_accuracy": report["test_accuracy"],
        "footprint": {key: value for key, value in report.items() if "ratio" in key},
        "learned_widths": report.get("learned_widths"),
        "records": method.ledger.records(),
        "gecko_instances": method.ledger.gecko_instances(),
        "gecko_bits": method.ledger.total_gecko_bits(),
    }


@pytest.mark.spec("Q2", "F4")
@pytest.mark.parametrize("make_method", [narrowing.QuantumNarrowing,
                                         lambda: narrowing.FixedNarrowing(4, 3)],
                         ids=["quantum", "fixed"])
def test_training_matches_unshared_path(make_method, monkeypatch):
    fast = run_fields(*short_run(make_method()))

    # The reference: without the compiled kernel, each corner quantizes the strided input
    # itself in its own quantize call, and encode checks every value with the general code
    # computation and decode.
    monkeypatch.setattr(bitlength, "_contiguous", lambda x: x)
    monkeypatch.setattr(codes, "_normal_member_codes", lambda bits, window: None)
    monkeypatch.setattr(quantize_lean, "narrow_max_anchor_widths",
                        lambda x, widths, rounding: None)
    monkeypatch.setitem(native._loaded, "training", None)
    slow = run_fields(*short_run(make_method()))

    assert fast["gecko_instances"] > 0
    for name in fast:
        assert fast[name] == slow[name], name
