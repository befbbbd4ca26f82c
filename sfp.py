"""The ``sfp`` command: one entry point with a subcommand per capability.

Each capability keeps its command in its own package as a module with a
``register(subparsers)`` function. ``register`` adds one subparser and sets its
``run`` default to a function that takes the parsed arguments and returns an exit
code. Heavy imports belong inside ``run`` so that ``sfp --help`` stays fast.
"""

import argparse
import importlib
import logging
import sys
import traceback

# Modules that define subcommands, in the order ``sfp --help`` lists them.
COMMAND_MODULES = (
    "numpyml.cli",
    "onnx_ops.cli",
    "reference.gecko.cli",
    "conformance.cli",
)


# Exit status of a command that failed on an invalid argument, input file or path.
EXIT_USAGE = 2
EXPECTED_ERRORS = (ValueError, TypeError, OSError, ImportError)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sfp",
        description="Schrodinger's FP: training with shrinking floating-point containers.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages, and print the traceback of a command that fails")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if args.command is None:
        parser.print_help()
        return 2
    try:
        # An invalid SFP_NATIVE fails every command at once, not only when a kernel is needed.
        from reference import native

        native.setting()
        return args.run(args)
    except EXPECTED_ERRORS as error:
        # These are the errors that the library raises for bad input (ValueError covers
        # GeckoFormatError), the file system raises for a bad path, or reference.native raises
        # for a compiled kernel that SFP_NATIVE=require needs but is not built, so one line is
        # enough. Any other exception is a bug and keeps its traceback.
        if args.verbose:
            traceback.print_exc()
        print(f"sfp {args.command}: {error_message(error)}", file=sys.stderr)
        return EXIT_USAGE


def error_message(error):
    """Return the message of ``error``, an OSError as "path: reason" without its errno."""
    if isinstance(error, OSError) and error.strerror and error.filename is not None:
        return f"{error.filename}: {error.strerror[0].lower()}{error.strerror[1:]}"
    return str(error)


if __name__ == "__main__":
    sys.exit(main())
