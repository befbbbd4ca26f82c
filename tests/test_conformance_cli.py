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
