"""Conformance suites that check a backend against SPEC.md bit for bit.

>>> from conformance import load_backend, run_checks
>>> report = run_checks(load_backend("numpy"), ["containers"], examples=5)
>>> report.rule_status()["C8"]
'passed'
"""

from conformance.backend import Backend, BaseBackend, load_backend
from conformance.runner import run_checks

__all__ = ["Backend", "BaseBackend", "load_backend", "run_checks"]
