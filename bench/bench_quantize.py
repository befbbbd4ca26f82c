"""Measure quantize throughput against a copy and the ml_dtypes round trip in the same process.

Run: .venv/bin/python bench/bench_quantize.py [--elements N] [--repeats R]

Prints one line per case: best wall time over the repeats, GB/s of float32 input, the ratio to
``np.copyto`` of the same array, and the ratio to the ml_dtypes float8_e4m3fn round trip
``x.astype(float8_e4m3fn).astype(float32)``. The input is standard normal float32 data with a
fixed seed, so a few percent of values fall into e4m3fn's subnormal range.
"""

import argparse
import os
import pathlib
import platform
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from reference import Container, max_anchor, quantize  # noqa: E402


def best_seconds(function, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=16 * 2**20, help="float32 values (default 16 Mi)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case; the best counts")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    x = rng.standard_normal(args.elements).astype(np.float32)
    noise = rng.integers(0, 2**32, x.shape, dtype=np.uint32)
    destination = np.empty_like(x)
    training = Container.training(3, 2)
    anchor = max_anchor(x, training)

    cases = {
        "np.copyto (baseline)": lambda: np.copyto(destination, x),
        "x.copy() (allocates, as quantize does)": lambda: x.copy(),
    }
    try:
        import ml_dtypes

        cases["ml_dtypes e4m3fn round trip"] = lambda: x.astype(ml_dtypes.float8_e4m3fn).astype(np.float32)
    except ImportError:
        print("ml_dtypes is not installed: the ml_dtypes ratio is skipped (pip install ml_dtypes)")
    cases.update({
        "quantize e4m3fn (fn specials, subnormals)": lambda: quantize(x, Container.from_name("e4m3fn")),
        "quantize e5m2 (ieee specials, subnormals)": lambda: quantize(x, Container.from_name("e5m2")),
        "quantize bf16 container on fp32": lambda: quantize(x, Container.from_name("bf16")),
        "quantize training e3m2, int anchor": lambda: quantize(x, training, anchor=anchor),
        "quantize training e3m2, anchor='max'": lambda: quantize(x, training, anchor="max"),
        "quantize training e3m2 stochastic": lambda: quantize(
            x, Container.training(3, 2, "stochastic"), anchor=anchor, noise=noise),
    })

    # Rounds of every case in turn, so that load from other processes hits all cases alike.
    seconds = {name: float("inf") for name in cases}
    for _ in range(args.repeats):
        for name, case in cases.items():
            seconds[name] = min(seconds[name], best_seconds(case, 1))
    copy = seconds["np.copyto (baseline)"]
    ml = seconds.get("ml_dtypes e4m3fn round trip")
    print(f"{args.elements} float32 values, best of {args.repeats}; {platform.machine()}, "
          f"{os.cpu_count()} cores, numpy {np.__version__}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'case':45s} {'ms':>8s} {'GB/s':>6s} {'/copy':>6s} {'/ml_dtypes':>10s}")
    for name, value in seconds.items():
        ratio_ml = f"{ml / value:10.2f}" if ml else f"{'-':>10s}"
        print(f"{name:45s} {value * 1e3:8.1f} {x.nbytes / value / 1e9:6.2f} {copy / value:6.2f} {ratio_ml}")


if __name__ == "__main__":
    main()
