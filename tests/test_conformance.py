"""The conformance suite on the built-in backends, and on broken backends that it must reject."""

import importlib.util

import numpy as np
import pytest

from conformance import mutants
from conformance.backend import BUILTIN, BackendUnavailable, load_backend
from conformance.runner import FAILED, NOT_IMPLEMENTED, PASSED, run_checks

# Inputs per property: the fast profile keeps the whole file near a minute on 2 cores.
FAST_EXAMPLES = {"numpy": 60, "onnx-reference": 25, "onnxruntime": 25, "torch": 40}
DEEP_EXAMPLES = 1000
SUITES = ["containers"]


def backend_or_skip(name):
    if name == "torch" and importlib.util.find_spec("torch") is None:
        pytest.skip("torch backend: PyTorch is not installed (pip install torch to run it)")
    try:
        return load_backend(name)
    except BackendUnavailable as error:
        pytest.skip(str(error))


def failures(report):
    return [r.failure.describe() for r in report.results if r.status == FAILED]


@pytest.mark.spec("C2", "C3", "C5", "C6", "C7", "C8", "C9", "C10", "C12", "C13", "C14", "C16")
@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_backend_passes(name):
    backend = backend_or_skip(name)
    report = run_checks(backend, SUITES, FAST_EXAMPLES[name])
    assert failures(report) == []
    assert any(r.status == PASSED for r in report.results)


@pytest.mark.deep
@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_builtin_backend_passes_deep(name):
    backend = backend_or_skip(name)
    report = run_checks(backend, SUITES, DEEP_EXAMPLES)
    assert failures(report) == []


@pytest.mark.spec("C7", "C8", "C12", "C13", "C16")
def test_float64_quantizer_without_mistakes_passes():
    report = run_checks(mutants.correct(), ["containers"], 60)
    assert failures(report) == []


@pytest.mark.spec("C2", "C7", "C8", "C12", "C13", "C14", "C16")
@pytest.mark.parametrize("factory", list(mutants.EXPECTED_RULES), ids=lambda f: f.__name__)
def test_mutant_fails_naming_its_rule(factory):
    report = run_checks(factory(), ["containers"], 60)
    failed = {rule for rule, status in report.rule_status().items() if status == FAILED}
    expected = mutants.EXPECTED_RULES[factory]
    assert expected in failed
    # C3 fails with any broken rule, because the presets use every rule.
    assert failed <= {expected, "C3"}


@pytest.mark.spec("C8")
def test_squared_error_cannot_see_tie_rule():
    # Ties are halfway, so rounding them either way gives the same squared error: a check by
    # mean squared error passes the ties-toward-zero mutant, and the exact check does not.
    container = mutants.correct().quantize
    x = np.float32([1.0625, 1.1875, -1.3125, 2.125, 0.5 + 2.0**-5])
    from reference import Container

    e4m3 = Container(4, 3)
    reference = container(x, e4m3)
    flawed = mutants.ties_toward_zero().quantize(x, e4m3)
    squared_error = np.mean((x - reference) ** 2)
    flawed_squared_error = np.mean((x - flawed) ** 2)
    assert squared_error == flawed_squared_error
    assert not np.array_equal(reference.view(np.uint32), flawed.view(np.uint32))
    report = run_checks(mutants.ties_toward_zero(), ["containers"], 60)
    assert report.rule_status()["C8"] == FAILED


def test_missing_capability_is_not_implemented():
    report = run_checks(mutants.correct(), ["containers"], 5)
    statuses = {r.check.name: r.status for r in report.results}
    assert statuses["codes-enumeration"] == NOT_IMPLEMENTED
    assert report.rule_status()["C17"] == NOT_IMPLEMENTED


def test_load_backend_from_module_factory():
    backend = load_backend("conformance.mutants:ties_away")
    assert backend.name == "ties-away"


def test_load_backend_rejects_unknown_name():
    with pytest.raises(ValueError, match="backend must be one of"):
        load_backend("no-such-backend")


def test_load_backend_rejects_unknown_capability():
    with pytest.raises(ValueError, match="unknown capabilities"):
        load_backend("tests.test_conformance:_backend_with_unknown_capability")


def _backend_with_unknown_capability():
    backend = mutants.correct()
    backend.capabilities = frozenset({"quantize", "teleport"})
    return backend
