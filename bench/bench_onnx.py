"""Throughput of Narrow in ONNX Runtime (function body) against the numpy reference.

Usage: python bench/bench_onnx.py [--size 16777216] [--repeats 5] [--threads 1]

Prints one line per case: GB/s of float32 input for the reference and ONNX Runtime (best run),
the ratio of the best runs and the median ratio over pairs of runs. A numpy copy and (when
installed) an ml_dtypes round trip from the same process are the baselines. The reference and
ONNX Runtime runs alternate, so both see the same load on a shared machine.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from onnx_ops import schemas  # noqa: E402
from onnx_ops.model import narrow_model  # noqa: E402
from onnx_ops.runtime import OrtSession  # noqa: E402
from reference import Container, quantize  # noqa: E402

CASES = {
    "e4m3fn": (Container.from_name("e4m3fn"), False),
    "bf16": (Container.from_name("bf16"), False),
    "training e4m3 max anchor": (Container.training(4, 3), "max"),
}


def best_seconds(function, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def alternating_seconds(first, second, repeats):
    """Return the seconds of each run of ``first`` and of ``second``, run alternately."""
    pairs = [(best_seconds(first, 1), best_seconds(second, 1)) for _ in range(repeats)]
    return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16 * 2**20, help="values per tensor")
    parser.add_argument("--repeats", type=int, default=5,
                        help="timed runs of each side; the best and the median ratio count")
    parser.add_argument("--threads", type=int, default=1,
                        help="ONNX Runtime intra-op threads (the numpy reference uses one)")
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    x = (rng.standard_normal(args.size) * 10.0).astype(np.float32)
    gigabytes = x.nbytes / 1e9

    copy = best_seconds(lambda: x.copy(), args.repeats)
    print(f"numpy copy: {gigabytes / copy:.2f} GB/s")
    try:
        import ml_dtypes

        dtype = ml_dtypes.float8_e4m3fn
        seconds = best_seconds(lambda: x.astype(dtype).astype(np.float32), args.repeats)
        print(f"ml_dtypes e4m3fn round trip: {gigabytes / seconds:.2f} GB/s")
    except ImportError:
        print("ml_dtypes not installed: skipping its baseline")

    for name, (container, anchor) in CASES.items():
        reference_anchor = "max" if anchor == "max" else None
        session = OrtSession(narrow_model(container, anchor=anchor), threads=args.threads)
        want = quantize(x, container, anchor=reference_anchor)
        got = session.run({"X": x})[0]
        if not np.array_equal(got.view(np.uint32), want.view(np.uint32)):
            raise SystemExit(f"{name}: ONNX Runtime output differs from the reference")
        reference, onnxruntime = alternating_seconds(
            lambda: quantize(x, container, anchor=reference_anchor),
            lambda: session.run({"X": x}), args.repeats,
        )
        best_ratio = reference.min() / onnxruntime.min()
        median_ratio = np.median(reference / onnxruntime)
        print(
            f"{name}: reference {gigabytes / reference.min():.2f} GB/s, onnxruntime "
            f"{gigabytes / onnxruntime.min():.2f} GB/s, ratio {best_ratio:.2f}x best, "
            f"{median_ratio:.2f}x median (bit-exact)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
