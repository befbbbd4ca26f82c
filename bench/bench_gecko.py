"""Gecko against zstd on real tensors: bits per exponent, whole-tensor ratios and speed.

Usage: python bench/bench_gecko.py [--cache DIR] [--speed-values N]

Prints markdown tables for docs/benchmarks.md. Bits per exponent are averaged over tensors
(each tensor weighs the same) per category and over all. Speed is measured on the exponents of
all tensors tiled to N values, as the best of 5 runs, next to zstd -3 in the same process. Times
are CPU seconds of this process (time.process_time), so other jobs on a shared machine disturb
them far less than wall-clock times; every coder here runs on one thread.
"""

import argparse
import logging
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from reference import Container  # noqa: E402
from reference.gecko import decode_exponents, encode_exponents, pack  # noqa: E402
import tensors as real_tensors  # noqa: E402

CATEGORIES = ("weight", "activation", "gradient")
GROUP_SIZES = (16, 32, 64)


def exponent_fields(x):
    return ((x.view(np.uint32) >> np.uint32(23)) & np.uint32(0xFF)).astype(np.uint8)


def bits_per_exponent(tensor_list, coder):
    """Return {category: mean bits per exponent}, the mean over all tensors ("all") and the
    total coded bits over the total exponent count ("by value")."""
    rows = {}
    total_bits = total_values = 0
    for category, _, x in tensor_list:
        exponents = exponent_fields(x)
        coded_bits = 8 * len(coder(exponents))
        rows.setdefault(category, []).append(coded_bits / exponents.size)
        total_bits += coded_bits
        total_values += exponents.size
    means = {category: float(np.mean(values)) for category, values in rows.items()}
    means["all"] = float(np.mean([v for values in rows.values() for v in values]))
    means["by value"] = total_bits / total_values
    return means


def coders(zstandard):
    table = {}
    for group_size in GROUP_SIZES:
        for mode in ("fixed", "entropy"):
            table[f"gecko {mode} g{group_size}"] = (
                lambda e, m=mode, g=group_size: encode_exponents(e, mode=m, group_size=g)
            )
    for mode in ("fixed", "entropy"):
        # The header stores the group size, so an encoder may pick it per tensor.
        table[f"gecko {mode}, best group per tensor"] = lambda e, m=mode: min(
            (encode_exponents(e, mode=m, group_size=g) for g in GROUP_SIZES), key=len)
    if zstandard is not None:
        for level in (3, 19):
            compressor = zstandard.ZstdCompressor(level=level)
            table[f"zstd -{level}"] = lambda e, c=compressor: c.compress(e.tobytes())
    return table


def whole_tensor_ratios(tensor_list, zstandard):
    """Return mean FP32 bytes / coded bytes for Gecko fixed and entropy, and zstd on raw bytes."""
    fp32 = Container.from_name("fp32")
    ratios = {"gecko fixed": [], "gecko entropy": []}
    if zstandard is not None:
        ratios.update({"zstd -3": [], "zstd -19": []})
    for _, _, x in tensor_list:
        raw = x.nbytes
        for mode in ("fixed", "entropy"):
            ratios[f"gecko {mode}"].append(raw / len(pack(x, fp32, mode=mode)))
        if zstandard is not None:
            for level in (3, 19):
                coded = zstandard.ZstdCompressor(level=level).compress(x.tobytes())
                ratios[f"zstd -{level}"].append(raw / len(coded))
    return {name: float(np.mean(values)) for name, values in ratios.items()}


def best_seconds(function, repeats=5):
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        function()
        best = min(best, time.process_time() - start)
    return best


def speeds(tensor_list, count, zstandard):
    """Return {coder: (encode M values/s, decode M values/s)} on ``count`` tiled exponents."""
    pool = np.concatenate([exponent_fields(x).ravel() for _, _, x in tensor_list])
    exponents = np.resize(pool, count)
    results = {}
    for mode in ("fixed", "entropy"):
        blob = encode_exponents(exponents, mode=mode)
        assert np.array_equal(decode_exponents(blob), exponents)
        results[f"gecko {mode}"] = (
            best_seconds(lambda m=mode: encode_exponents(exponents, mode=m)),
            best_seconds(lambda b=blob: decode_exponents(b)),
        )
    if zstandard is not None:
        compressor = zstandard.ZstdCompressor(level=3)
        decompressor = zstandard.ZstdDecompressor()
        blob = compressor.compress(exponents.tobytes())
        results["zstd -3"] = (best_seconds(lambda: compressor.compress(exponents.tobytes())),
                              best_seconds(lambda: decompressor.decompress(blob)))
    results["numpy copy"] = (best_seconds(lambda: exponents.copy()),) * 2
    return {name: (count / e / 1e6, count / d / 1e6) for name, (e, d) in results.items()}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help="directory for downloaded wheels")
    parser.add_argument("--speed-values", type=int, default=1 << 24,
                        help="exponents in the speed test (default 2**24)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        import zstandard
    except ImportError:
        zstandard = None
        logging.warning("zstandard is not installed: the zstd columns are left out")

    tensor_list = real_tensors.load_all(args.cache)
    counts = {c: sum(1 for t in tensor_list if t[0] == c) for c in CATEGORIES}
    values = sum(t[2].size for t in tensor_list)
    print(f"{len(tensor_list)} tensors ({counts}), {values} values\n")

    print("| coder | " + " | ".join(CATEGORIES) + " | all | by value |")
    print("|---|" + "---|" * (len(CATEGORIES) + 2))
    for name, coder in coders(zstandard).items():
        means = bits_per_exponent(tensor_list, coder)
        cells = [f"{means.get(c, float('nan')):.2f}" for c in (*CATEGORIES, "all", "by value")]
        print(f"| {name} | " + " | ".join(cells) + " |")

    print("\n| whole tensor, FP32 bytes / coded bytes | mean ratio |\n|---|---|")
    for name, ratio in whole_tensor_ratios(tensor_list, zstandard).items():
        print(f"| {name} | {ratio:.3f} |")

    print(f"\n| speed on {args.speed_values} exponents | encode M/s | decode M/s | "
          "encode / zstd -3 | decode / zstd -3 |\n|---|---|---|---|---|")
    table = speeds(tensor_list, args.speed_values, zstandard)
    reference = table.get("zstd -3", (float("nan"),) * 2)
    for name, (encode, decode) in table.items():
        print(f"| {name} | {encode:.0f} | {decode:.0f} | {encode / reference[0]:.2f} | "
              f"{decode / reference[1]:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
