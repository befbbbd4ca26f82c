"""The example backend in docs/conformance.md runs and passes what it declares."""

from pathlib import Path
import re
import types

from conformance.runner import FAILED, NOT_IMPLEMENTED, PASSED, run_checks

DOC = Path(__file__).resolve().parent.parent / "docs" / "conformance.md"


def example_module():
    text = DOC.read_text(encoding="utf-8")
    code = re.search(r"```python\n(.*?)```", text, re.DOTALL).group(1)
    module = types.ModuleType("example_backend")
    exec(compile(code, str(DOC), "exec"), module.__dict__)
    return module


def test_doc_example_backend_passes():
    backend = example_module().make_backend()
    report = run_checks(backend, ["containers"], 40)
    statuses = report.rule_status()
    assert [r.failure.describe() for r in report.results if r.status == FAILED] == []
    assert statuses["C8"] == PASSED
    assert statuses["C17"] == NOT_IMPLEMENTED


def test_doc_lists_every_capability():
    from conformance.backend import CAPABILITIES

    text = DOC.read_text(encoding="utf-8")
    for capability in CAPABILITIES:
        assert f"| `{capability}` |" in text
