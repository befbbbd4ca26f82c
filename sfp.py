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

# Modules that define subcommands, in the order ``sfp --help`` lists them.
COMMAND_MODULES = (
    "numpyml.cli",
    "onnx_ops.cli",
    "reference.gecko.cli",
    "conformance.cli",
)


def build_parser():
    parser = argparse.ArgumentParser(
        prog="sfp",
        description="Schrodinger's FP: training with shrinking floating-point containers.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
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
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
