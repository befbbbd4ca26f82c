"""``sfp conformance``: run the suites on a backend and print a table per SPEC.md rule.

    sfp conformance --backend numpy
    sfp conformance --backend onnxruntime --suite containers --examples 500 --report out.json
    sfp conformance --backend mypackage.backend:make_backend
    sfp conformance vectors [--write]
    sfp conformance coverage [--write]

The exit status is 0 when at least one check passed and none failed, 1 when a check failed
or none passed, and 2 for a usage error.
"""

import json
import logging
import os
import sys

logger = logging.getLogger(__name__)

SUITES = ("containers", "gecko", "bitlength", "bitwave")


def register(subparsers):
    parser = subparsers.add_parser(
        "conformance", help="check a backend against SPEC.md",
        description="Run the conformance suites on a backend and report per SPEC.md rule.",
    )
    parser.add_argument("action", nargs="?", choices=("run", "vectors", "coverage"),
                        default="run",
                        help="run the suites (default), or check or write the golden vectors "
                             "or docs/coverage.md")
    parser.add_argument("--backend", default="numpy",
                        help="numpy, onnx-reference, onnx-function, onnxruntime, torch, or "
                             "module:factory (default: numpy)")
    parser.add_argument("--suite", default=",".join(SUITES),
                        help=f"comma-separated suites to run (default: {','.join(SUITES)})")
    parser.add_argument("--examples", type=int, default=100,
                        help="inputs per property check (default: 100)")
    parser.add_argument("--report", metavar="FILE", help="write the results as JSON to FILE")
    parser.add_argument("--write", action="store_true",
                        help="with 'vectors' or 'coverage': regenerate the files instead of "
                             "checking them")
    parser.set_defaults(run=run)


def run(args):
    if args.write and args.action not in ("vectors", "coverage"):
        print("sfp conformance: --write applies to the actions vectors and coverage; "
              f"got it with {args.action!r}", file=sys.stderr)
        return 2
    if args.action in ("vectors", "coverage"):
        from conformance import coverage, vectors

        module = vectors if args.action == "vectors" else coverage
        return module.main(["--write"] if args.write else [])
    from conformance.backend import BackendUnavailable, load_backend
    from conformance.runner import PASSED, run_checks
    from reference.atomic_write import write_atomically

    suites = [s.strip() for s in args.suite.split(",") if s.strip()]
    unknown = sorted(set(suites) - set(SUITES))
    problem = None
    if not suites:
        problem = f"--suite must name at least one suite; got {args.suite!r}"
    elif unknown:
        problem = f"unknown suite {', '.join(unknown)}"
    elif args.examples < 1:
        problem = f"--examples must be at least 1; got {args.examples}"
    if problem:
        print(f"sfp conformance: {problem} (suites: {', '.join(SUITES)})", file=sys.stderr)
        return 2
    if args.report:
        # Fail before a long run rather than after it.
        folder = os.path.dirname(os.path.abspath(args.report))
        if not os.path.isdir(folder) or not os.access(folder, os.W_OK) or os.path.isdir(args.report):
            print(f"sfp conformance: --report {args.report}: cannot write a file there "
                  "(the folder must exist and be writable)", file=sys.stderr)
            return 2
    try:
        backend = load_backend(args.backend)
    except (BackendUnavailable, ValueError, ImportError) as error:
        # load_backend's own messages start with the backend; an import error's does not.
        message = str(error)
        label = f"backend {args.backend!r}: "
        if not message.startswith(label):
            message = label + message
        print(f"sfp conformance: cannot load {message}", file=sys.stderr)
        return 2

    print(f"backend {backend.name}: {len(backend.capabilities)} capabilities, "
          f"{args.examples} examples per property")
    report = run_checks(backend, suites, args.examples, progress=print_progress)
    print_rule_table(report)
    print_failures(report)
    if args.report:
        # Through a temporary file, so a failed write leaves no partial report.
        text = json.dumps(report.as_dict(), indent=2)
        write_atomically(args.report, lambda handle: handle.write(text.encode()))
        print(f"report written to {args.report}")
    if not any(result.status == PASSED for result in report.results):
        # A backend that implements nothing has not shown conformance to anything.
        print("sfp conformance: no check passed; the backend declares none of the capabilities "
              "these suites need, or fails them all", file=sys.stderr)
        return 1
    return 1 if report.failed else 0


def print_progress(index, total, result):
    seconds = f"{result.seconds:6.2f} s" if result.seconds else "        "
    print(f"[{index:2d}/{total}] {result.status:15s} {seconds}  {result.check.id}", flush=True)


def print_rule_table(report):
    from conformance.coverage import rule_sort_key

    status = report.rule_status()
    checks_of_rule = {}
    for result in report.results:
        for rule in result.check.rules:
            checks_of_rule.setdefault(rule, []).append(result.check.name)
    print()
    print(f"{'rule':6s} {'status':15s} checks")
    for rule in sorted(status, key=rule_sort_key):
        print(f"{rule:6s} {status[rule]:15s} {', '.join(checks_of_rule.get(rule, []))}")
    counts = {}
    for value in status.values():
        counts[value] = counts.get(value, 0) + 1
    print("total: " + ", ".join(f"{count} {name}" for name, count in sorted(counts.items())))


def print_failures(report):
    for result in report.results:
        if result.failure is None:
            continue
        failure = result.failure
        # A failure outside the compared calls, such as a declared capability whose method
        # raises NotImplementedError, has no rule of its own and fails every rule of the check.
        rules = f"rule {failure.rule}" if failure.rule else f"rules {', '.join(result.check.rules)}"
        print()
        print(f"FAILED {result.check.id} ({rules}): {failure.what}")
        for key, value in failure.inputs.items():
            print(f"  {key}: {value}")
        print(f"  expected: {failure.expected}")
        print(f"  actual:   {failure.actual}")
