"""``sfp train``: train a model on the digits or an .npz image set and write a report."""

import argparse
import logging
import math
import sys
from pathlib import Path

logger = logging.getLogger(__name__)

EXIT_DIVERGED = 3
EXIT_USAGE = 2

# The narrowing options (numpyml.narrowing.add_arguments) that each method reads. A method
# ignores the others, so setting one of them is a mistake worth rejecting. Methods missing
# here, such as ones that tests register, are not checked.
OPTIONS_OF_METHOD = {
    "fp32": (),
    "fixed": ("rounding", "exponent_bits", "mantissa_bits", "gecko_every"),
    "bitchop": ("rounding", "mantissa_min", "gecko_every"),
    "bitwave": ("rounding", "mantissa_min", "exponent_min", "gecko_every"),
    "quantum": ("rounding", "gamma", "collapse_mode", "mantissa_min", "exponent_min",
                "gecko_every"),
}

# Reasons that a method ignores an option, where the method name does not make them plain.
IGNORED_BECAUSE = {
    ("bitchop", "exponent_min"): "BitChop narrows only the mantissa and keeps the exponent at "
    "its starting 8 bits, while bitwave narrows both",
}


def register(subparsers):
    from numpyml.data import MAX_CLASSES
    from numpyml.methods import METHODS
    from numpyml.models import MODELS
    from numpyml.optim import OPTIMIZERS
    from numpyml.train import TrainConfig

    defaults = TrainConfig()
    parser = subparsers.add_parser(
        "train",
        help="train a model and write report.json and checkpoint.npz",
        description="Train a model on the digits (or an .npz image set), evaluate it on the "
        "held-out split after every epoch, and write RUN_DIR/report.json and "
        "RUN_DIR/checkpoint.npz.",
    )
    parser.add_argument("--model", choices=sorted(MODELS), default=defaults.model,
                        help="model architecture (default: %(default)s)")
    parser.add_argument("--dataset", default=defaults.dataset,
                        help="'digits' or the path of an .npz file with x_train, y_train, "
                        "x_test, y_test. Images are (N, H, W) or (N, C, H, W): integer pixels "
                        "must be in 0..255 and are divided by 255, float pixels must be finite "
                        "and are used as given, so they should already be in [0, 1]. Labels "
                        f"are integers 0..K-1 with K at most {MAX_CLASSES} "
                        "(default: %(default)s)")
    parser.add_argument("--method", choices=sorted(METHODS), default=defaults.method,
                        help="how stored tensors are kept during training (default: %(default)s)")
    parser.add_argument("--epochs", type=int, default=defaults.epochs,
                        help="passes over the training set (default: %(default)s)")
    parser.add_argument("--batch-size", type=int, default=defaults.batch_size,
                        help="images per step (default: %(default)s)")
    parser.add_argument("--lr", type=float, default=defaults.lr,
                        help="learning rate of the model's optimizer (default: %(default)s)")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default=defaults.optimizer,
                        help="optimizer of the model's parameters (default: %(default)s)")
    parser.add_argument("--weight-decay", type=float, default=defaults.weight_decay,
                        help="weight decay of the model's optimizer (default: %(default)s)")
    parser.add_argument("--schedule", choices=("constant", "cosine"), default=defaults.schedule,
                        help="learning-rate schedule over the run (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=defaults.seed,
                        help="seed of initialization, batch order and dropout (default: %(default)s)")
    parser.add_argument("--split-seed", type=int, default=defaults.split_seed,
                        help="seed of the digits train/test split (default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="RUN_DIR",
                        help="directory for report.json and checkpoint.npz (created if missing)")
    parser.add_argument("--blas-threads", type=int, default=1,
                        help="OpenBLAS threads; 1 is fastest for these small matrices on a "
                        "shared 2-core machine (default: %(default)s)")
    from numpyml import narrowing

    narrowing.add_arguments(parser)
    parser.set_defaults(run=run)


def _print_epoch(metrics, epochs):
    print(
        f"epoch {metrics['epoch']:>3}/{epochs}  loss {metrics['train_loss']:.4f}  "
        f"train acc {metrics['train_accuracy']:.2%}  test acc {metrics['test_accuracy']:.2%}  "
        f"{metrics['time_s']:.1f} s",
        flush=True,
    )


def run(args):
    from numpyml import narrowing
    from numpyml.allocator import keep_freed_heap_memory
    from numpyml.blas import set_blas_threads
    from numpyml.report import format_table, train_with_baseline
    from numpyml.train import TrainConfig, TrainingDiverged

    problem = check_arguments(args)
    if problem:
        print(f"sfp train: {problem}", file=sys.stderr)
        return EXIT_USAGE
    config = TrainConfig(
        model=args.model, dataset=args.dataset, method=args.method, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed,
        split_seed=args.split_seed, out_dir=args.out,
    )
    set_blas_threads(args.blas_threads)
    keep_freed_heap_memory()
    method = narrowing.method_from_arguments(args)
    created = _prepare_out(Path(args.out))
    try:
        report = train_with_baseline(config, method, args.baseline,
                                     on_epoch=lambda metrics: _print_epoch(metrics, config.epochs))
    except TrainingDiverged as error:
        print(f"sfp train: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except BaseException:
        # A run that fails before writing anything leaves no empty folder behind.
        if created and not any(Path(args.out).iterdir()):
            Path(args.out).rmdir()
        raise
    # sfp's main prints the ValueError, TypeError or OSError of invalid data or paths.
    print(
        f"test accuracy {report['test_accuracy']:.2%} on {report['dataset']['test']} images, "
        f"{report['wall_time_s']:.1f} s; report in {args.out}/report.json"
    )
    table = format_table(report)
    if table:
        print(table)
    return 0


def _prepare_out(out):
    """Create ``out`` if missing and check that it takes new files; return True if created.

    Training takes seconds to hours, so an unwritable directory is reported before it starts.
    """
    import tempfile

    created = not out.exists()
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        if created and out.is_dir() and not any(out.iterdir()):
            out.rmdir()
        reason = error.strerror or str(error)
        raise OSError(f"--out {out}: cannot write files there ({reason.lower()}); "
                      "choose a writable directory") from error
    return created


def check_arguments(args):
    """Return a message naming the first invalid option of ``args``, or None when all are valid.

    Training would fail on these only after loading data and building the model, or not at
    all: a NaN learning rate diverges at step 1, and a flag that the method ignores is lost.
    """
    checks = [
        ("--epochs", args.epochs, args.epochs >= 1, "must be at least 1"),
        ("--batch-size", args.batch_size, args.batch_size >= 1, "must be at least 1"),
        ("--lr", args.lr, math.isfinite(args.lr) and args.lr > 0, "must be finite and positive"),
        ("--weight-decay", args.weight_decay,
         math.isfinite(args.weight_decay) and args.weight_decay >= 0, "must be finite and >= 0"),
        ("--blas-threads", args.blas_threads, args.blas_threads >= 1, "must be at least 1"),
        # numpy's default_rng takes only non-negative seeds.
        ("--seed", args.seed, args.seed >= 0, "must be >= 0"),
        ("--split-seed", args.split_seed, args.split_seed >= 0, "must be >= 0"),
    ]
    for option, value, valid, rule in checks:
        if not valid:
            return f"{option}: {rule}; got {value}"
    problem = _check_out(args.out)
    if problem:
        return problem
    return _check_narrowing_arguments(args)


def _check_out(text):
    from numpyml.train import CHECKPOINT_FILE, REPORT_FILE

    if not text:
        # Path("") is the current directory, which would fill it with run files.
        return "--out: must name a directory (created if missing); got an empty path"
    out = Path(text)
    if out.exists() and not out.is_dir():
        return f"--out: must be a directory (created if missing); got {out}, an existing file"
    for name in (REPORT_FILE, CHECKPOINT_FILE):
        if (out / name).is_dir():
            return (f"--out: {out / name} is a directory, but training writes a file there; "
                    "remove it or choose another --out")
    return None


def _check_narrowing_arguments(args):
    defaults = _narrowing_defaults()
    used = OPTIONS_OF_METHOD.get(args.method)
    if used is None:
        return None
    # An option that this table does not know yet is left alone rather than rejected.
    known = set().union(*OPTIONS_OF_METHOD.values())
    for name, default in vars(defaults).items():
        if name in known and name not in used and getattr(args, name) != default:
            reason = IGNORED_BECAUSE.get((args.method, name))
            return (f"--{name.replace('_', '-')}: --method {args.method} does not use it"
                    + (f" because {reason}" if reason else "")
                    + "; drop the option or choose a method that does")
    return _check_widths(args)


def _narrowing_defaults():
    from numpyml import narrowing

    parser = argparse.ArgumentParser(add_help=False)
    narrowing.add_arguments(parser)
    return parser.parse_args([])


def _check_widths(args):
    from numpyml.narrowing import QuantumConfig
    from reference import controller

    if args.method == "fixed":
        ranges = {"exponent_bits": (1, 8), "mantissa_bits": (0, 23)}
        whole = True
    elif args.method == "quantum":
        start = QuantumConfig()
        ranges = {"mantissa_min": (0, start.start_mantissa_bits),
                  "exponent_min": (1, start.start_exponent_bits), "gamma": (0, math.inf)}
        whole = False
    elif args.method in ("bitchop", "bitwave"):
        start = controller.ControllerConfig()
        ranges = {"mantissa_min": (0, start.start_mantissa_bits),
                  "exponent_min": (1, start.start_exponent_bits)}
        whole = True
    else:
        return None
    for name, (low, high) in ranges.items():
        value = getattr(args, name)
        if value is None:
            continue
        option = f"--{name.replace('_', '-')}"
        if not math.isfinite(value) or not low <= value <= high:
            bounds = f">= {low:g}" if math.isinf(high) else f"in [{low:g}, {high:g}]"
            return f"{option}: must be {bounds} with --method {args.method}; got {value}"
        if whole and value != int(value):
            return f"{option}: must be a whole number of bits with --method {args.method}; " \
                f"got {value}"
    if args.gecko_every < 0:
        return f"--gecko-every: must be >= 0 (0 turns Gecko sizes off); got {args.gecko_every}"
    return None


def main(argv=None):
    """Run ``sfp train`` alone, for ``python -m numpyml.cli``."""
    import sfp

    return sfp.main(["train", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
