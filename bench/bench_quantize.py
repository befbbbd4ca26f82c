"""Measure quantize throughput against a copy and the ml_dtypes round trip in the same process.

Run: .venv/bin/python bench/bench_quantize.py [--elements N] [--repeats R] [--path P] [--bfloat16]
     .venv/bin/python bench/bench_quantize.py --small [--repeats R]

Prints one line per case: best wall time over the repeats, GB/s of float32 input, the ratio to
``np.copyto`` of the same array, and the ratio to the ml_dtypes float8_e4m3fn round trip
``x.astype(float8_e4m3fn).astype(float32)``. The input is standard normal float32 data with a
fixed seed, so a few percent of values fall into e4m3fn's subnormal range. Each quantize case
runs through the compiled kernel (``C``) and the numpy path (``numpy``) unless ``--path``
picks one; the kernel rows are skipped when ``reference.native._quantize`` is not built.
Rows marked ``out=`` write into a preallocated array, as ``np.copyto`` does.
``--bfloat16`` narrows the same values as an ml_dtypes bfloat16 array with base-bf16
containers, so GB/s and the copies count 2 bytes per value.

``--small`` instead times one call on the tensor sizes of a training step (288 to 73,728
values), where fixed costs dominate. It compares ``quantize(x, Container.training(e, m),
anchor="max")``, which takes the lean path, with the blocked path that served these calls
before (``max_anchor``, then ``quantize_bits_blocked``) and with ``x.copy()``.
"""

import argparse
import os
import pathlib
import platform
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
from reference import Container, max_anchor, native, quantize  # noqa: E402
from reference.quantize_blocked import quantize_bits_blocked  # noqa: E402

SMALL_SIZES = (288, 1280, 4608, 18432, 73728)
SMALL_WIDTHS = ((8, 7), (4, 3), (3, 1))


def best_seconds(function, repeats):
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        best = min(best, time.perf_counter() - start)
    return best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=16 * 2**20, help="values in the tensor (default 16 Mi)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per case; the best counts")
    parser.add_argument("--small", action="store_true",
                        help="time single calls on training-step tensor sizes instead")
    parser.add_argument("--path", choices=("both", "C", "numpy"), default="both",
                        help="quantize through the compiled kernel, the numpy path or both")
    parser.add_argument("--bfloat16", action="store_true",
                        help="narrow an ml_dtypes bfloat16 array with base-bf16 containers")
    args = parser.parse_args()
    if args.small:
        small_tensors(args.repeats)
        return

    rng = np.random.default_rng(0)
    x = rng.standard_normal(args.elements).astype(np.float32)
    noise = rng.integers(0, 2**32, x.shape, dtype=np.uint32)
    base = "fp32"
    if args.bfloat16:
        import ml_dtypes

        x = x.astype(ml_dtypes.bfloat16)
        base = "bf16"
    destination = np.empty_like(x)
    destination2 = np.empty_like(x)
    # With base fp32 these equal the presets e4m3fn, e5m2, bf16 and Container.training(3, 2).
    e4m3fn = Container(4, 3, specials="fn", base=base)
    e5m2 = Container(5, 2, base=base)
    bf16 = Container(8, 7, base=base)
    training = Container(3, 2, specials="none", subnormals=False, saturate=True, base=base)
    stochastic = Container(3, 2, specials="none", subnormals=False, saturate=True,
                           rounding="stochastic", base=base)
    anchor = max_anchor(x, training)

    cases = {
        "np.copyto (baseline)": lambda: np.copyto(destination, x),
        "x.copy() (allocates, as quantize does)": lambda: x.copy(),
    }
    try:
        import ml_dtypes

        cases["ml_dtypes e4m3fn round trip"] = lambda: x.astype(ml_dtypes.float8_e4m3fn).astype(x.dtype)
    except ImportError:
        print("ml_dtypes is not installed: the ml_dtypes ratio is skipped (pip install ml_dtypes)")
    quantize_cases = {
        "e4m3fn (fn specials, subnormals)": lambda: quantize(x, e4m3fn),
        "e5m2 (ieee specials, subnormals)": lambda: quantize(x, e5m2),
        f"bf16 container on {base}": lambda: quantize(x, bf16),
        "training e3m2, int anchor": lambda: quantize(x, training, anchor=anchor),
        "training e3m2, anchor='max'": lambda: quantize(x, training, anchor="max"),
        # Into a preallocated array, as np.copyto writes: the same memory traffic as the baseline.
        "training e3m2, anchor='max', out=": lambda: quantize(x, training, anchor="max", out=destination2),
        "e4m3fn, out=": lambda: quantize(x, e4m3fn, out=destination2),
        "training e3m2 stochastic": lambda: quantize(x, stochastic, anchor=anchor, noise=noise),
    }
    kernel = native.kernel("quantize")
    paths = {"C": kernel, "numpy": None}
    if args.path != "both":
        paths = {args.path: paths[args.path]}
    if "C" in paths and kernel is None:
        print("reference.native._quantize is not built: the C rows are skipped (pip install -e .)")
        del paths["C"]
    for path, module in paths.items():
        for name, case in quantize_cases.items():
            cases[f"quantize {name} [{path}]"] = on_path(module, case)

    # Rounds of every case in turn, so that load from other processes hits all cases alike.
    load_before = os.getloadavg()[0]
    seconds = {name: float("inf") for name in cases}
    for _ in range(args.repeats):
        for name, case in cases.items():
            seconds[name] = min(seconds[name], best_seconds(case, 1))
    native._loaded["quantize"] = kernel
    copy = seconds["np.copyto (baseline)"]
    ml = seconds.get("ml_dtypes e4m3fn round trip")
    print(f"{args.elements} {x.dtype} values, best of {args.repeats}; {platform.machine()}, "
          f"{os.cpu_count()} cores, numpy {np.__version__}, load average {load_before:.1f} "
          f"before and {os.getloadavg()[0]:.1f} after")
    print(f"{'case':52s} {'ms':>8s} {'GB/s':>6s} {'/copy':>6s} {'/ml_dtypes':>10s}")
    for name, value in seconds.items():
        ratio_ml = f"{ml / value:10.2f}" if ml else f"{'-':>10s}"
        print(f"{name:52s} {value * 1e3:8.1f} {x.nbytes / value / 1e9:6.2f} {copy / value:6.2f} {ratio_ml}")


def on_path(module, case):
    """Return ``case`` run with the quantize kernel set to ``module`` (None: the numpy path)."""
    def run():
        native._loaded["quantize"] = module
        return case()
    return run


def blocked_path(x, container):
    """Narrow ``x`` as quantize did before the lean path: anchor search, then the blocked path."""
    window = container.with_anchor(max_anchor(x, container))
    return quantize_bits_blocked(x.reshape(-1).view(np.uint32), window, None).view(np.float32)


def call_repeatedly(function, calls):
    # Results are dropped at once, so that memory is reused as in a training step.
    for _ in range(calls):
        function()


def small_tensors(repeats):
    """Print microseconds per call and the speedup of the lean path on training-step sizes."""
    rng = np.random.default_rng(0)
    calls = 200
    print(f"best of {repeats} x {calls} calls; {platform.machine()}, {os.cpu_count()} cores, "
          f"numpy {np.__version__}, load average {os.getloadavg()[0]:.1f}")
    print(f"{'values':>7s} {'e, m':>5s} {'copy us':>8s} {'lean us':>8s} {'blocked us':>10s} "
          f"{'speedup':>8s}")
    for size in SMALL_SIZES:
        x = (rng.standard_normal(size) * 0.05).astype(np.float32)
        for e, m in SMALL_WIDTHS:
            container = Container.training(e, m)
            assert np.array_equal(quantize(x, container, anchor="max"), blocked_path(x, container))
            times = {}
            for name, case in (("copy", x.copy),
                               ("lean", lambda: quantize(x, container, anchor="max")),
                               ("blocked", lambda: blocked_path(x, container))):
                times[name] = best_seconds(lambda: call_repeatedly(case, calls), repeats) / calls
            print(f"{size:7d} {e:2d},{m:2d} {times['copy'] * 1e6:8.1f} {times['lean'] * 1e6:8.1f} "
                  f"{times['blocked'] * 1e6:10.1f} {times['blocked'] / times['lean']:8.2f}")


if __name__ == "__main__":
    main()
