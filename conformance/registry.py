"""Conformance checks: what one check is, how it reports a mismatch, and the registry of all checks.

A check is a function ``run(backend, examples)`` that returns normally when the backend conforms
and raises :class:`Mismatch` on the first input where it does not. Each check names the SPEC.md
rules it covers and the backend capabilities it needs; a backend that lacks one of them gets the
check reported as "not implemented" instead of run.
"""

from dataclasses import dataclass, field
import logging

from hypothesis import HealthCheck, Phase, given, settings

logger = logging.getLogger(__name__)


class Mismatch(AssertionError):
    """A backend output that differs from the specification on one input.

    ``rule`` is the SPEC.md rule that decides the failing element (the first one), ``inputs``
    describes it (hex bit patterns, container, anchor, noise), and ``expected`` and ``actual``
    are hex bit patterns or short descriptions such as ``"ValueError"``.
    """

    def __init__(self, rule, what, inputs, expected, actual):
        self.rule = rule
        self.what = what
        self.inputs = dict(inputs)
        self.expected = expected
        self.actual = actual
        super().__init__(self.describe())

    def describe(self):
        details = ", ".join(f"{key}={value}" for key, value in self.inputs.items())
        return (f"{self.rule}: {self.what}; input {details}; expected {self.expected}, "
                f"got {self.actual}")

    def as_dict(self):
        return {
            "rule": self.rule, "what": self.what, "inputs": self.inputs,
            "expected": self.expected, "actual": self.actual,
        }


@dataclass(frozen=True)
class Check:
    """One conformance check: a name, the rules it covers and the capabilities it needs."""

    suite: str
    name: str
    rules: tuple
    requires: frozenset
    run: object = field(repr=False, compare=False)
    description: str = ""

    @property
    def id(self):
        return f"{self.suite}/{self.name}"


CHECKS = []


def check(suite, name, rules, requires):
    """Register the decorated ``run(backend, examples)`` function as a :class:`Check`."""

    def register(function):
        summary = (function.__doc__ or "").strip().splitlines()
        CHECKS.append(Check(
            suite=suite, name=name, rules=tuple(rules), requires=frozenset(requires),
            run=function, description=summary[0] if summary else "",
        ))
        return function

    return register


def checks_of(suites=None):
    """Return the registered checks of ``suites`` (all suites when None), in registration order."""
    from conformance import suites as _suites  # noqa: F401  (importing registers the checks)

    if suites is None:
        return list(CHECKS)
    unknown = set(suites) - {c.suite for c in CHECKS}
    if unknown:
        known = ", ".join(sorted({c.suite for c in CHECKS}))
        raise ValueError(f"suite must be one of {known}; got {', '.join(sorted(unknown))}")
    return [c for c in CHECKS if c.suite in suites]


def run_property(prop, strategy, examples):
    """Run ``prop`` on ``examples`` inputs drawn from ``strategy``; raise its shrunk Mismatch.

    The run is derandomized and keeps no example database, so the same backend, strategy and
    ``examples`` always test the same inputs, in CI as on a vendor's machine.
    """

    @settings(
        max_examples=examples, derandomize=True, database=None, deadline=None,
        suppress_health_check=list(HealthCheck), print_blob=False,
        phases=(Phase.explicit, Phase.generate, Phase.shrink),
    )
    @given(strategy)
    def run(case):
        prop(case)

    run()
