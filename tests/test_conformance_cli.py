"""``sfp conformance``: the per-rule table, the failure report and the exit status."""

import json

import pytest

import sfp


def test_cli_passes_numpy_backend(tmp_path, capsys):
    report_path = tmp_path / "report.json"
    status = sfp.main(["conformance", "--backend", "numpy", "--suite", "containers",
                       "--examples", "5", "--report", str(report_path)])
    output = capsys.readouterr().out
    assert status == 0
    assert "C8     passed" in output
    assert "[ 1/" in output
    report = json.loads(report_path.read_text())
    assert report["failed"] is False
    assert report["rules"]["C8"] == "passed"


@pytest.mark.spec("C8")
def test_cli_reports_first_failing_input_in_hex(capsys):
    status = sfp.main(["conformance", "--backend", "conformance.mutants:ties_away",
                       "--suite", "containers", "--examples", "30"])
    output = capsys.readouterr().out
    assert status == 1
    assert "C8     failed" in output
    assert "FAILED containers/quantize-fp32 (rule C8)" in output
    assert "  x: 0x" in output
    assert "  expected: 0x" in output
    assert "  actual:   0x" in output


def test_cli_marks_missing_capabilities(capsys):
    status = sfp.main(["conformance", "--backend", "conformance.mutants:correct",
                       "--suite", "containers,bitwave", "--examples", "3"])
    output = capsys.readouterr().out
    assert status == 0
    assert "B2     not implemented" in output


def test_cli_rejects_unknown_suite(capsys):
    status = sfp.main(["conformance", "--suite", "containers,nosuch"])
    assert status == 2
    assert "unknown suite nosuch" in capsys.readouterr().err


def test_cli_rejects_unknown_backend(capsys):
    status = sfp.main(["conformance", "--backend", "nosuch"])
    assert status == 2
    assert "cannot load backend" in capsys.readouterr().err


def test_cli_checks_vectors(capsys):
    assert sfp.main(["conformance", "vectors"]) == 0
    assert "up to date" in capsys.readouterr().out


def test_cli_checks_coverage_table(capsys):
    assert sfp.main(["conformance", "coverage"]) == 0
    assert "up to date" in capsys.readouterr().out


class _DeclaresWithoutMethods:
    name = "declares-without-methods"
    capabilities = frozenset({"gecko.exponents"})

    def encode_exponents(self, exponents, *, mode="fixed", group_size=32):
        raise NotImplementedError("encode_exponents() is not written yet")

    def decode_exponents(self, blob):
        raise NotImplementedError("decode_exponents() is not written yet")


def declares_without_methods():
    return _DeclaresWithoutMethods()


NOT_CALLABLE = 5


def test_cli_names_rules_of_unimplemented_capability(capsys):
    status = sfp.main(["conformance", "--backend",
                       "tests.test_conformance_cli:declares_without_methods",
                       "--suite", "gecko", "--examples", "3"])
    output = capsys.readouterr().out

    assert status == 1
    assert "rule None" not in output
    assert ("FAILED gecko/exponents-round-trip (rules G1, G2, G3, G4, G5): the backend "
            "declares gecko.exponents but raised NotImplementedError") in output


def test_cli_rejects_factory_that_is_not_callable(capsys):
    status = sfp.main(["conformance", "--backend", "tests.test_conformance_cli:NOT_CALLABLE"])
    error = capsys.readouterr().err

    assert status == 2
    assert error == ("sfp conformance: cannot load backend 'tests.test_conformance_cli:"
                     "NOT_CALLABLE': tests.test_conformance_cli.NOT_CALLABLE must be a callable "
                     "that returns a backend; got an object of type int\n")


class _ExitingBackend:
    """A backend whose quantize ends the process with status 0."""

    name = "exits"
    capabilities = frozenset({"quantize"})

    def quantize(self, x, container, *, anchor=None, noise=None):
        raise SystemExit(0)


def exiting_backend():
    return _ExitingBackend()


def returns_a_number():
    return 42


def test_cli_fails_a_backend_that_exits(capsys):
    status = sfp.main(["conformance", "--backend", f"{__name__}:exiting_backend",
                       "--suite", "containers", "--examples", "3"])
    output = capsys.readouterr().out
    assert status == 1
    assert "SystemExit" in output


def test_cli_rejects_an_empty_suite_list(capsys):
    status = sfp.main(["conformance", "--backend", "numpy", "--suite", ""])
    assert status == 2
    assert "--suite must name at least one suite" in capsys.readouterr().err


def test_cli_fails_when_no_check_passed(capsys):
    # A backend that declares no capability runs no check, which shows no conformance.
    status = sfp.main(["conformance", "--backend", "conformance.mutants:correct",
                       "--suite", "bitwave", "--examples", "3"])
    assert status == 1
    assert "no check passed" in capsys.readouterr().err


def test_cli_checks_report_path_before_running(tmp_path, capsys):
    missing_folder = tmp_path / "missing" / "report.json"
    status = sfp.main(["conformance", "--backend", "numpy", "--suite", "containers",
                       "--report", str(missing_folder)])
    captured = capsys.readouterr()
    assert status == 2
    assert "cannot write a file there" in captured.err
    assert "[ 1/" not in captured.out


def test_cli_rejects_write_with_run(capsys):
    status = sfp.main(["conformance", "run", "--write"])
    assert status == 2
    assert "--write applies to the actions vectors and coverage" in capsys.readouterr().err


def test_cli_names_a_factory_that_returns_no_backend(capsys):
    status = sfp.main(["conformance", "--backend", f"{__name__}:returns_a_number"])
    error = capsys.readouterr().err
    assert status == 2
    assert "got 42 of type int" in error
