"""CPU time that Gecko packing adds to digits CNN training, against the same run without it.

Usage: python bench/bench_train_gecko.py [--every K ...] [--repeats R] [--seed S]

Each round trains FP32, then quantum and bitwave with packing off (``gecko_every`` 0) and at
every K, all with the ``sfp train`` defaults and one OpenBLAS thread, in the same process. CPU
time (``time.process_time``) is used because the machine is shared and wall time follows the
load. Each figure is the minimum over R rounds. The main job is FP32 then quantum, as ``sfp
train --method quantum --baseline`` runs it. Prints a markdown table for docs/benchmarks.md.
"""

import argparse
import logging
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from numpyml import narrowing  # noqa: E402
from numpyml.allocator import keep_freed_heap_memory  # noqa: E402
from numpyml.blas import set_blas_threads  # noqa: E402
from numpyml.train import TrainConfig, train  # noqa: E402


def cpu_seconds(config, method):
    start = time.process_time()
    train(config, method=method)
    return time.process_time() - start


def make_method(name, gecko_every):
    method = narrowing.QuantumNarrowing() if name == "quantum" else narrowing.bitwave()
    method.set_gecko_every(gecko_every)
    return method


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--every", type=int, nargs="+", default=[20],
                        help="packing intervals in steps to compare with no packing")
    parser.add_argument("--repeats", type=int, default=2, help="rounds; the minimum is kept")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    set_blas_threads(1)
    keep_freed_heap_memory()
    config = TrainConfig(seed=args.seed)

    times = {}
    for _ in range(args.repeats):
        times.setdefault(("fp32", None), []).append(cpu_seconds(config, None))
        for name in ("quantum", "bitwave"):
            for every in [0, *args.every]:
                seconds = cpu_seconds(config, make_method(name, every))
                times.setdefault((name, every), []).append(seconds)
    best = {key: min(values) for key, values in times.items()}

    print("| run | gecko_every | CPU s | vs no packing |")
    print("|---|---|---|---|")
    fp32 = best[("fp32", None)]
    for every in [0, *args.every]:
        main_job = fp32 + best[("quantum", every)]
        ratio = main_job / (fp32 + best[("quantum", 0)])
        print(f"| main job (FP32, then quantum) | {every} | {main_job:.2f} | {ratio:.3f} |")
    for name in ("quantum", "bitwave"):
        for every in [0, *args.every]:
            ratio = best[(name, every)] / best[(name, 0)]
            print(f"| {name} alone | {every} | {best[(name, every)]:.2f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
