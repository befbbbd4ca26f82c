"""Benchmark the narrowing methods against FP32 training, paired by seed.

For every seed, trains FP32, then each requested method, with the same seed (same
initialization and batch order), on the digits CNN with the trainer's defaults. Prints, per
method, the mean footprint ratios, the mean test-accuracy difference to FP32 with its standard
error over the seeds, the final widths and the training time per step relative to FP32 in the
same process.

    python bench/bench_methods.py --seeds 0 1 2 --methods quantum bitwave fixed

With ``--timing ROUNDS``, it instead times short runs (``--epochs``, seed 0) of FP32 and each
method, interleaved round by round. For each method it prints the median over rounds of its
time per step divided by FP32's in the same round, and the best (lowest) such ratio. Time
per step is the sum of the epochs' times, less the time spent in the per-epoch evaluation,
divided by the steps.

    python bench/bench_methods.py --timing 7 --epochs 5 --methods fixed bitwave quantum

``--gecko-every 0`` leaves out the Gecko sizes that training records every 20 steps by
default, to separate their cost from that of narrowing.
"""

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from numpyml import narrowing  # noqa: E402
from numpyml import train as train_module  # noqa: E402
from numpyml.allocator import keep_freed_heap_memory  # noqa: E402
from numpyml.blas import set_blas_threads  # noqa: E402
from numpyml.train import TrainConfig, train  # noqa: E402
from reference import controller  # noqa: E402


def make_method(name, args):
    if name == "fp32":
        return None
    if name == "quantum":
        config = narrowing.QuantumConfig(gamma=args.gamma, mantissa_min=args.mantissa_min,
                                         exponent_min=args.quantum_exponent_min,
                                         fast_lr=args.fast_lr)
        return narrowing.QuantumNarrowing(config)
    if name == "quantum_e3":
        config = narrowing.QuantumConfig(gamma=args.gamma, mantissa_min=args.mantissa_min,
                                         exponent_min=3.0)
        return narrowing.QuantumNarrowing(config)
    if name == "quantum_interpolate":
        config = narrowing.QuantumConfig(gamma=args.gamma, mode="interpolate",
                                         mantissa_min=args.mantissa_min,
                                         exponent_min=args.quantum_exponent_min)
        return narrowing.QuantumNarrowing(config)
    if name == "bitwave":
        return narrowing.ControllerNarrowing(controller.bitwave_config(**controller_options(args)))
    if name == "bitchop":
        return narrowing.ControllerNarrowing(controller.bitchop_config())
    if name == "fixed":
        return narrowing.FixedNarrowing(8, 7)
    raise ValueError(f"bench_methods: unknown method {name!r}")


def controller_options(args):
    """Return ``--controller NAME=VALUE`` overrides, typed like the ControllerConfig defaults."""
    defaults = controller.ControllerConfig()
    options = {}
    for option in args.controller:
        name, _, value = option.partition("=")
        options[name] = type(getattr(defaults, name))(float(value))
    return options


class EvaluationTimer:
    """Wraps ``numpyml.train.evaluate`` to add up its time, so it can be left out of step time."""

    def __init__(self):
        self.seconds = 0.0
        self._evaluate = train_module.evaluate

    def __enter__(self):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return self._evaluate(*args, **kwargs)
            finally:
                self.seconds += time.perf_counter() - start

        train_module.evaluate = timed
        return self

    def __exit__(self, *exc_info):
        train_module.evaluate = self._evaluate


def run_one(name, seed, args):
    config = TrainConfig(method="fp32", seed=seed, epochs=args.epochs)
    method = make_method(name, args)
    if method is not None and args.gecko_every is not None:
        method.set_gecko_every(args.gecko_every)
    start = time.perf_counter()
    with EvaluationTimer() as evaluation:
        report = train(config, method=method)
    seconds = sum(epoch["time_s"] for epoch in report["epochs"]) - evaluation.seconds
    row = {
        "method": name, "seed": seed, "test_accuracy": report["test_accuracy"],
        "steps": report["steps"], "ms_per_step": 1e3 * seconds / report["steps"],
        "wall_s": time.perf_counter() - start,
    }
    if "footprint_ratio_fp32" in report:
        row["footprint_ratio_fp32"] = report["footprint_ratio_fp32"]
        row["footprint_ratio_bf16"] = report["footprint_ratio_bf16"]
        row["widths"] = [(t["exponent_bits"], t["mantissa_bits"]) for t in report["tensors"]]
        row["narrow_tensors"] = report["narrow_tensors"]
    print(json.dumps(row), flush=True)
    return row


def mean_and_standard_error(values):
    values = np.asarray(values, dtype=np.float64)
    if values.size < 2:
        return float(values.mean()), float("nan")
    return float(values.mean()), float(values.std(ddof=1) / np.sqrt(values.size))


def summarize(rows, methods):
    baseline = {row["seed"]: row for row in rows if row["method"] == "fp32"}
    lines = ["| method | ratio vs FP32 | ratio vs BF16 | accuracy | difference to FP32 (points) "
             "| time per step vs FP32 | tensors at m 1-2 / e 3-4 |",
             "|---|---|---|---|---|---|---|"]
    fp32_accuracy = np.mean([row["test_accuracy"] for row in baseline.values()])
    fp32_ms = np.mean([row["ms_per_step"] for row in baseline.values()])
    lines.append(f"| fp32 | 1.00 | 0.50 | {100 * fp32_accuracy:.2f}% | 0 | 1.00 "
                 f"({fp32_ms:.0f} ms) | - |")
    for name in methods:
        mine = [row for row in rows if row["method"] == name]
        differences = [100 * (row["test_accuracy"] - baseline[row["seed"]]["test_accuracy"])
                       for row in mine]
        slowdowns = [row["ms_per_step"] / baseline[row["seed"]]["ms_per_step"] for row in mine]
        difference, error = mean_and_standard_error(differences)
        narrow = [row["narrow_tensors"] for row in mine]
        counts = " ".join(f"{n['mantissa_1_to_2']}/{n['exponent_3_to_4']} of {n['total']}"
                          for n in narrow)
        lines.append(
            f"| {name} | {np.mean([row['footprint_ratio_fp32'] for row in mine]):.2f} "
            f"| {np.mean([row['footprint_ratio_bf16'] for row in mine]):.2f} "
            f"| {100 * np.mean([row['test_accuracy'] for row in mine]):.2f}% "
            f"| {difference:+.2f} ± {error:.2f} | {np.mean(slowdowns):.2f} | {counts} |"
        )
    return "\n".join(lines)


def time_methods(rounds, methods, args):
    ratios = {name: [] for name in methods}
    fp32_ms = []
    for _ in range(rounds):
        baseline = run_one("fp32", 0, args)["ms_per_step"]
        fp32_ms.append(baseline)
        for name in methods:
            ratios[name].append(run_one(name, 0, args)["ms_per_step"] / baseline)
    # On a shared machine the best round is the one least disturbed by other jobs, and the
    # median shows what a typical round costs.
    lines = ["| method | time per step vs FP32: median | best round | range over rounds |",
             "|---|---|---|---|",
             f"| fp32 | 1.00 (median {np.median(fp32_ms):.1f} ms per step, best "
             f"{np.min(fp32_ms):.1f} ms) | 1.00 | - |"]
    for name in methods:
        values = np.asarray(ratios[name])
        spread = f"{values.min():.2f} to {values.max():.2f}"
        lines.append(f"| {name} | {np.median(values):.2f} | {values.min():.2f} | {spread} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--methods", nargs="+", default=["quantum", "bitwave", "fixed"])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--gamma", type=float, default=0.03)
    parser.add_argument("--mantissa-min", type=float, default=1.0)
    parser.add_argument("--quantum-exponent-min", type=float, default=1.0)
    parser.add_argument("--fast-lr", type=float, default=0.5,
                        help="width learning rate of the first 60 steps of quantum")
    parser.add_argument("--controller", action="append", default=[], metavar="NAME=VALUE",
                        help="override a BitWave constant, e.g. --controller period=10")
    parser.add_argument("--rows", help="JSON-lines file of earlier rows to summarize instead")
    parser.add_argument("--timing", type=int, metavar="ROUNDS",
                        help="time interleaved short runs instead of comparing accuracy")
    parser.add_argument("--gecko-every", type=int, metavar="STEPS",
                        help="pack the stored tensors with Gecko every STEPS steps; 0 turns it "
                        f"off (default: the trainer's {narrowing.DEFAULT_GECKO_EVERY})")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    set_blas_threads(1)
    keep_freed_heap_memory()

    if args.timing:
        print(time_methods(args.timing, args.methods, args))
        return
    if args.rows:
        rows = [json.loads(line) for line in Path(args.rows).read_text().splitlines() if line]
    else:
        rows = []
        for seed in args.seeds:
            for name in ["fp32", *args.methods]:
                rows.append(run_one(name, seed, args))
    print(summarize(rows, args.methods))


if __name__ == "__main__":
    main()
