"""Running checks on a backend and summarising the results per check and per SPEC.md rule."""

from dataclasses import dataclass, field
import logging
import time

from conformance.registry import Mismatch, checks_of

logger = logging.getLogger(__name__)

PASSED = "passed"
FAILED = "failed"
NOT_IMPLEMENTED = "not implemented"
# A rule whose own inputs all passed, but a check covering it stopped early on another rule.
BLOCKED = "blocked"


@dataclass
class CheckResult:
    """Outcome of one check on one backend."""

    check: object
    status: str
    seconds: float = 0.0
    failure: Mismatch = None
    missing: tuple = ()
    """capabilities the backend lacks, when the status is "not implemented\""""

    def as_dict(self):
        result = {"check": self.check.id, "rules": list(self.check.rules), "status": self.status,
                  "seconds": round(self.seconds, 3)}
        if self.failure is not None:
            result["failure"] = self.failure.as_dict()
        if self.missing:
            result["missing_capabilities"] = list(self.missing)
        return result


@dataclass
class Report:
    """Results of one run: per check, and per rule derived from them."""

    backend: str
    examples: int
    results: list = field(default_factory=list)

    @property
    def failed(self):
        return any(r.status == FAILED for r in self.results)

    def rule_status(self):
        """Return {rule: status} over the rules of every check run.

        A rule is failed when a check failed on an input that the rule decides, whether or not
        the rule is in the check's list, or when a check covering it raised without naming a
        rule. It is blocked when a check covering it stopped on another rule, and passed when
        every check covering it passed. It is not implemented when the backend lacks what every
        check covering it needs.
        """
        status = {}
        for result in self.results:
            for rule, rule_result in _statuses(result):
                status[rule] = _merge(status.get(rule), rule_result)
        return status

    def as_dict(self):
        return {
            "backend": self.backend, "examples": self.examples, "failed": self.failed,
            "rules": self.rule_status(), "checks": [r.as_dict() for r in self.results],
        }


# Lower rank wins when several checks cover one rule.
_RANK = {FAILED: 0, BLOCKED: 1, PASSED: 2, NOT_IMPLEMENTED: 3}


def _merge(old, new):
    if old is None:
        return new
    return min(old, new, key=_RANK.__getitem__)


def _statuses(result):
    if result.status != FAILED:
        return [(rule, result.status) for rule in result.check.rules]
    failed_rule = result.failure.rule
    if failed_rule is None:
        # An exception names no rule, so every rule of the check may be the broken one.
        return [(rule, FAILED) for rule in result.check.rules]
    statuses = [(rule, FAILED if rule == failed_rule else BLOCKED) for rule in result.check.rules]
    if failed_rule not in result.check.rules:
        # The input broke a rule outside the check's list (a rounding error met in an overflow
        # check, say): that rule fails, and the check's own rules are not yet decided.
        statuses.append((failed_rule, FAILED))
    return statuses


def run_checks(backend, suites=None, examples=100, progress=None, names=None):
    """Run the checks of ``suites`` on ``backend`` with ``examples`` inputs per property.

    ``names`` keeps only the checks of those names. ``progress(index, total, result)`` is called
    after each check, for a progress display.
    """
    checks = [c for c in checks_of(suites) if names is None or c.name in names]
    report = Report(getattr(backend, "name", repr(backend)), examples)
    for index, check in enumerate(checks, start=1):
        result = run_one(backend, check, examples)
        report.results.append(result)
        if progress is not None:
            progress(index, len(checks), result)
    return report


def run_one(backend, check, examples):
    """Run one check; a check that needs an undeclared capability is not run."""
    missing = tuple(sorted(check.requires - set(backend.capabilities)))
    if missing:
        return CheckResult(check, NOT_IMPLEMENTED, missing=missing)
    start = time.perf_counter()
    try:
        check.run(backend, examples)
    except Mismatch as mismatch:
        logger.debug("%s failed: %s", check.id, mismatch.describe())
        return CheckResult(check, FAILED, time.perf_counter() - start, mismatch)
    except NotImplementedError as error:
        # A backend that declares a capability must implement its methods.
        declared = ", ".join(sorted(check.requires))
        mismatch = Mismatch(None, f"the backend declares {declared} but raised "
                            "NotImplementedError", {}, "an implementation", str(error))
        return CheckResult(check, FAILED, time.perf_counter() - start, mismatch)
    # A backend may fail outside the compared calls, in any way. SystemExit counts too: a
    # backend that exits must fail its check rather than end the run with status 0.
    except (Exception, SystemExit) as error:
        logger.exception("%s raised", check.id)
        mismatch = Mismatch(None, "the check raised an exception", {}, "no exception",
                            f"{type(error).__name__}: {error}")
        return CheckResult(check, FAILED, time.perf_counter() - start, mismatch)
    return CheckResult(check, PASSED, time.perf_counter() - start)
