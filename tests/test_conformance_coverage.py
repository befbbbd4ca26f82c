"""The coverage table: every SPEC.md rule is covered, and docs/coverage.md is current."""

from conformance import coverage


def test_coverage_table_is_current():
    # Regenerate with: python -m conformance.coverage --write
    assert coverage.COVERAGE_PATH.read_text(encoding="utf-8") == coverage.render()


def test_every_rule_covered_or_listed_as_gap():
    assert set(coverage.uncovered_rules()) == set(coverage.KNOWN_GAPS)


def test_spec_rules_parsed_in_order():
    text = "**C1. Parameters.** a\n**C2. Value set.** b\n| TX1 | logits | 1e-3 |\n"
    assert coverage.spec_rules(text) == {"C1": "Parameters", "C2": "Value set", "TX1": "logits"}


def test_markers_found_on_functions_and_classes(tmp_path):
    (tmp_path / "test_sample.py").write_text(
        "import pytest\n"
        "pytestmark = pytest.mark.spec('G1')\n"
        "@pytest.mark.spec('C1', 'C2')\n"
        "def test_one():\n    pass\n"
        "@pytest.mark.spec('C3')\n"
        "class TestGroup:\n"
        "    def test_two(self):\n        pass\n"
        "def helper():\n    pass\n"
    )
    found = coverage.test_markers(tmp_path)
    assert found["C1"] == ["test_sample.py::test_one"]
    assert found["C3"] == ["test_sample.py::TestGroup::test_two"]
    assert sorted(found["G1"]) == [
        "test_sample.py::TestGroup::test_two", "test_sample.py::test_one",
    ]


def test_every_builtin_check_names_known_rules():
    known = set(coverage.spec_rules())
    for rules in coverage.check_markers():
        assert rules in known
