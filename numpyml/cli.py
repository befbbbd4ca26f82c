"""``sfp train``: train a model on the digits or an .npz image set and write a report."""

import argparse
import logging
import sys

logger = logging.getLogger(__name__)

EXIT_DIVERGED = 3


def register(subparsers):
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
                        "x_test, y_test (default: %(default)s)")
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
    from numpyml.blas import set_blas_threads
    from numpyml.report import format_table, train_with_baseline
    from numpyml.train import TrainConfig, TrainingDiverged

    config = TrainConfig(
        model=args.model, dataset=args.dataset, method=args.method, epochs=args.epochs,
        batch_size=args.batch_size, lr=args.lr, optimizer=args.optimizer,
        weight_decay=args.weight_decay, schedule=args.schedule, seed=args.seed,
        split_seed=args.split_seed, out_dir=args.out,
    )
    set_blas_threads(args.blas_threads)
    try:
        method = narrowing.method_from_arguments(args)
        report = train_with_baseline(config, method, args.baseline,
                                     on_epoch=lambda metrics: _print_epoch(metrics, config.epochs))
    except TrainingDiverged as error:
        print(f"sfp train: {error}", file=sys.stderr)
        return EXIT_DIVERGED
    except (ValueError, KeyError, TypeError, FileNotFoundError) as error:
        print(f"sfp train: {error}", file=sys.stderr)
        return 2
    print(
        f"test accuracy {report['test_accuracy']:.2%} on {report['dataset']['test']} images, "
        f"{report['wall_time_s']:.1f} s; report in {args.out}/report.json"
    )
    print(format_table(report))
    return 0


def main(argv=None):
    """Run ``sfp train`` alone, for ``python -m numpyml.cli``."""
    parser = argparse.ArgumentParser(prog="sfp")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["train", *(sys.argv[1:] if argv is None else argv)])
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
