"""One training step of the digits MLP and CNN in numpyml against PyTorch CPU, same process.

Usage: python bench/bench_train_step.py [--threads N] [--steps K] [--repeats R]

A step is forward, cross-entropy, backward and an Adam update on one batch of 64 digits
images, with the same initial weights in both frameworks. Each timing is the median over R
repeats of K steps, and the two frameworks take turns within each repeat. The best-of ratio
divides the fastest repeats of each framework. OpenBLAS (numpy) and PyTorch both run N threads (default 1). Peak
memory of the numpyml step comes from tracemalloc, which tracks numpy's allocations but not
PyTorch's, so PyTorch's column shows the process's peak RSS growth during its steps
(a lower bound when memory freed earlier is reused). Prints a markdown table for
docs/benchmarks.md. Without PyTorch the PyTorch columns are left out.
"""

import argparse
import pathlib
import platform
import resource
import statistics
import sys
import time
import tracemalloc

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import numpyml as nm  # noqa: E402
from numpyml import models, optim  # noqa: E402
from numpyml.allocator import keep_freed_heap_memory  # noqa: E402
from numpyml.blas import set_blas_threads  # noqa: E402
from numpyml.data import load_digits  # noqa: E402
from numpyml.random import manual_seed  # noqa: E402

BATCH = 64


def numpyml_step(model, optimizer, x, y):
    loss = nm.cross_entropy(model(nm.Tensor(x)), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def torch_step(torch, model, optimizer, x, y):
    loss = torch.nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def paired_step_seconds(steps_by_name, steps, repeats):
    """Return {name: median seconds per step}, timing the steps in turn within each repeat.

    Alternating the frameworks inside every repeat exposes both to the same machine load,
    which matters on a shared 2-core machine.
    """
    for step in steps_by_name.values():
        for _ in range(3):
            step()
    timings = {name: [] for name in steps_by_name}
    for _ in range(repeats):
        for name, step in steps_by_name.items():
            start = time.perf_counter()
            for _ in range(steps):
                step()
            timings[name].append((time.perf_counter() - start) / steps)
    return {name: statistics.median(values) for name, values in timings.items()}, timings


def numpyml_peak_bytes(step):
    tracemalloc.start()
    step()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def rss_growth_bytes(step, steps):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for _ in range(steps):
        step()
    return (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) * 1024


def bench_model(name, data, torch, steps, repeats):
    manual_seed(0)
    model = models.build(name, data.input_shape, data.num_classes)
    x, y = data.x_train[:BATCH], data.y_train[:BATCH]
    optimizer = optim.ParameterOptimizer(optim.adam(1e-3), model.parameters())
    row = {"model": name, "parameters": sum(p.size for p in model.parameters())}
    steps_by_name = {"numpyml": lambda: numpyml_step(model, optimizer, x, y)}
    # PyTorch's RSS growth is measured first so that numpyml's earlier peak cannot hide it.
    if torch is not None:
        sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "tests"))
        from test_nn_torch_parity import to_torch

        twin = to_torch(model)
        torch_optimizer = torch.optim.Adam(twin.parameters(), lr=1e-3)
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        steps_by_name["torch"] = lambda: torch_step(torch, twin, torch_optimizer, tx, ty)
        row["torch_rss_growth"] = rss_growth_bytes(steps_by_name["torch"], 5)
    medians, timings = paired_step_seconds(steps_by_name, steps, repeats)
    row["numpyml_s"] = medians["numpyml"]
    if torch is not None:
        row["torch_s"] = medians["torch"]
        ratios = [a / b for a, b in zip(timings["numpyml"], timings["torch"])]
        row["ratio_range"] = (min(ratios), max(ratios))
        row["best_ratio"] = min(timings["numpyml"]) / min(timings["torch"])
    row["numpyml_peak"] = numpyml_peak_bytes(steps_by_name["numpyml"])
    return row


def print_table(rows, threads):
    print(f"machine: {platform.machine()}, {platform.processor() or 'cpu'}, threads {threads}")
    print()
    print("| model | parameters | numpyml step | PyTorch step | numpyml / PyTorch (range) | "
          "best-of ratio | numpyml peak (tracemalloc) | PyTorch RSS growth |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        torch_s = row.get("torch_s")
        ratio = best = "n/a"
        if torch_s:
            best = f"{row['best_ratio']:.2f}x"
            low, high = row["ratio_range"]
            ratio = f"{row['numpyml_s'] / torch_s:.2f}x ({low:.2f} to {high:.2f})"
        torch_cell = f"{torch_s * 1e3:.2f} ms" if torch_s else "n/a"
        rss = f"{row['torch_rss_growth'] / 2**20:.1f} MiB" if torch_s else "n/a"
        print(f"| {row['model']} | {row['parameters']:,} | {row['numpyml_s'] * 1e3:.2f} ms | "
              f"{torch_cell} | {ratio} | {best} | {row['numpyml_peak'] / 2**20:.2f} MiB | {rss} |")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1, help="BLAS and PyTorch threads")
    parser.add_argument("--steps", type=int, default=50, help="steps per timed repeat")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats; the median is kept")
    args = parser.parse_args()
    set_blas_threads(args.threads)
    keep_freed_heap_memory()
    try:
        import torch
    except ImportError:
        print("PyTorch not installed (pip install torch==2.13.0): numpyml timings only",
              file=sys.stderr)
        torch = None
    if torch is not None:
        torch.set_num_threads(args.threads)
        print(f"numpy {np.__version__}, torch {torch.__version__}")
    data = load_digits()
    rows = [bench_model(name, data, torch, args.steps, args.repeats) for name in ("mlp", "cnn")]
    print_table(rows, args.threads)


if __name__ == "__main__":
    main()
