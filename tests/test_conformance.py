"""The conformance suite on the built-in backends, and on broken backends that it must reject."""

import importlib.util

import numpy as np
import pytest

from conformance import mutants
from conformance.backend import BUILTIN, BackendUnavailable, load_backend
from conformance.backends.numpy_backend import NumpyBackend
from conformance.runner import FAILED, NOT_IMPLEMENTED, PASSED, run_checks

# Inputs per property: the fast profile keeps the whole file near a minute on 2 cores.
FAST_EXAMPLES = {"numpy": 40, "onnx-reference": 20, "onnx-function": 20, "onnxruntime": 20,
                 "torch": 30}
DEEP_EXAMPLES = 1000
SUITES = ["containers", "gecko", "bitlength", "bitwave"]
# The checks a quantize-only backend runs; the others need capabilities the mutants lack.
MUTANT_CHECKS = ("quantize-fp32", "quantize-presets", "quantize-sign-symmetry", "quantize-vectors",
                 "quantize-array-contract")
SUITE_RULES = {
    "containers": ("C2", "C3", "C5", "C6", "C7", "C8", "C9", "C10", "C11", "C12", "C13", "C14",
                   "C15", "C16", "C17", "C18", "C19", "C20"),
    "gecko": ("G1", "G2", "G3", "G4", "G5", "G6", "G7", "G9", "G10"),
    "bitlength": ("Q2", "Q3", "Q4", "Q5"),
    "bitwave": ("B1", "B2", "B3", "B4", "B5"),
}


def backend_or_skip(name):
    if name == "torch" and importlib.util.find_spec("torch") is None:
        pytest.skip("torch backend: PyTorch is not installed (pip install torch==2.13.0, a CPU build, to run it)")
    try:
        return load_backend(name)
    except BackendUnavailable as error:
        pytest.skip(str(error))


def failures(report):
    return [r.failure.describe() for r in report.results if r.status == FAILED]


def backend_suite_cases():
    cases = []
    for name in sorted(BUILTIN):
        for suite in SUITES:
            marks = [pytest.mark.spec(*SUITE_RULES[suite])]
            cases.append(pytest.param(name, suite, marks=marks, id=f"{name}-{suite}"))
    return cases


@pytest.mark.parametrize(("name", "suite"), backend_suite_cases())
def test_builtin_backend_passes(name, suite):
    backend = backend_or_skip(name)
    report = run_checks(backend, [suite], FAST_EXAMPLES[name])
    assert failures(report) == []
    if name == "numpy":
        assert all(r.status == PASSED for r in report.results)


@pytest.mark.deep
@pytest.mark.parametrize(("name", "suite"), backend_suite_cases())
def test_builtin_backend_passes_deep(name, suite):
    backend = backend_or_skip(name)
    report = run_checks(backend, [suite], DEEP_EXAMPLES)
    assert failures(report) == []


@pytest.mark.spec("C7", "C8", "C12", "C13", "C16")
def test_float64_quantizer_without_mistakes_passes():
    report = run_checks(mutants.correct(), ["containers"], 40)
    assert failures(report) == []


@pytest.mark.spec("C2", "C7", "C8", "C12", "C13", "C14", "C15", "C16")
@pytest.mark.parametrize("factory", list(mutants.EXPECTED_RULES), ids=lambda f: f.__name__)
def test_mutant_fails_naming_its_rule(factory):
    report = run_checks(factory(), ["containers"], 40, names=MUTANT_CHECKS)
    failed = {rule for rule, status in report.rule_status().items() if status == FAILED}
    expected = mutants.EXPECTED_RULES[factory]
    assert expected in failed
    # The preset checks use every rule, so a mismatch there may be charged to C3 itself.
    assert failed <= {expected, "C3"} | mutants.ALSO_BROKEN.get(factory, set())


@pytest.mark.spec("C8", "C13", "C14")
def test_rounding_mutant_fails_only_its_rule():
    # Checks of overflow and NaN meet the wrong rounding too. They must block their own rules
    # rather than fail them, so that the table points at the one broken rule.
    report = run_checks(mutants.ties_away(), ["containers"], 40, names=MUTANT_CHECKS)
    status = report.rule_status()
    assert {rule for rule, value in status.items() if value == FAILED} == {"C8"}
    assert status["C13"] != FAILED
    assert status["C14"] != FAILED


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
    report = run_checks(mutants.ties_toward_zero(), ["containers"], 40, names=MUTANT_CHECKS)
    assert report.rule_status()["C8"] == FAILED


@pytest.mark.spec("G4")
def test_gecko_mutant_fails_naming_its_rule():
    report = run_checks(mutants.gecko_off_by_one_bit(), ["gecko"], 40)
    failed = {rule for rule, status in report.rule_status().items() if status == FAILED}
    assert failed == {"G4"}


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


class _BrokenController(NumpyBackend):
    name = "broken-controller"
    capabilities = frozenset({"bitwave"})

    def controller_update(self, state, loss, lr, config):
        raise TypeError("state is not a ControllerState")


def test_backend_exception_fails_check():
    report = run_checks(_BrokenController(), ["bitwave"], 5)
    assert report.failed
    assert all(r.status == FAILED for r in report.results)
    assert "TypeError" in report.results[0].failure.actual


@pytest.mark.spec("C15")
@pytest.mark.parametrize(
    ("factory", "what"),
    [(mutants.flattens_output, "output must be float32 of x's shape"),
     (mutants.overwrites_input, "x must not be modified")],
    ids=["flattens-output", "overwrites-input"],
)
def test_array_contract_check_names_mistake(factory, what):
    report = run_checks(factory(), ["containers"], 20, names=("quantize-array-contract",))

    assert report.rule_status()["C15"] == FAILED
    assert report.results[0].failure.what == what


class _ReturnsInput(NumpyBackend):
    """Narrowing to FP32 is the identity, so this backend returns x itself for it."""

    name = "returns-input"
    capabilities = frozenset({"quantize"})

    def quantize(self, x, container, *, anchor=None, noise=None):
        if container.name == "fp32":
            return x
        return super().quantize(x, container, anchor=anchor, noise=noise)


@pytest.mark.spec("C15")
def test_array_contract_needs_new_array():
    report = run_checks(_ReturnsInput(), ["containers"], 60, names=("quantize-array-contract",))

    assert report.rule_status()["C15"] == FAILED
    assert report.results[0].failure.what == "output must be a new array"


NOT_CALLABLE = 5


def _returns_none():
    return None


def _raises():
    raise RuntimeError("no device")


@pytest.mark.parametrize(
    ("factory", "message"),
    [("NOT_CALLABLE", "must be a callable that returns a backend; got an object of type int"),
     ("_returns_none", "the factory must return a backend object; got None"),
     ("_raises", "the factory raised RuntimeError: no device")],
)
def test_load_backend_rejects_bad_factory(factory, message):
    with pytest.raises(ValueError, match=message):
        load_backend(f"tests.test_conformance:{factory}")


class _DeclaresWithoutMethods(NumpyBackend):
    name = "declares-without-methods"
    capabilities = frozenset({"bitwave"})

    def controller_init(self, config):
        raise NotImplementedError("backend 'declares-without-methods' does not implement "
                                  "controller_init()")


def test_declared_unimplemented_capability_fails_check():
    report = run_checks(_DeclaresWithoutMethods(), ["bitwave"], 3)
    failure = report.results[0].failure

    assert report.results[0].status == FAILED
    assert failure.what == "the backend declares bitwave but raised NotImplementedError"
    assert "controller_init()" in failure.actual


class _TrailingByteTolerant(NumpyBackend):
    """Decodes a stream with a trailing byte by dropping it, against G2."""

    name = "trailing-byte-tolerant"

    def decode_exponents(self, blob):
        try:
            return super().decode_exponents(blob)
        except ValueError:
            return super().decode_exponents(blob[:-1])


@pytest.mark.spec("G2")
def test_trailing_byte_tolerance_fails_g2():
    report = run_checks(_TrailingByteTolerant(), ["gecko"], 40, names=("damaged-streams",))
    assert report.rule_status()["G2"] == FAILED
