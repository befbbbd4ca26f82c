"""Gecko against zstd on real tensors: bits per exponent, whole-tensor ratios and speed.

Usage: python bench/bench_gecko.py [--cache DIR] [--speed-values N]
       python bench/bench_gecko.py --encoded-bits-timing

Prints markdown tables for docs/benchmarks.md. Bits per exponent are averaged over tensors
(each tensor weighs the same) per category and over all. A second table splits the fixed-mode
body (group size 32) into its parts, and a third gives the share of each width code among the
coded groups. Speed is measured on the exponents of all tensors tiled to N values, as the best
of 5 runs, next to zstd -3 in the same process, and entropy mode also on each tensor on its
own. Times are CPU seconds of this process (time.process_time), so other jobs on a shared
machine disturb them far less than wall-clock times; every coder here runs on one thread.

``--encoded-bits-timing`` prints only the cost of ``encoded_bits`` in fixed mode, as training
calls it on its stored tensors, next to ``pack`` of the same tensor in the same process: ReLU
outputs and normal values of the digits CNN's tensor sizes in an e4m2 training container,
with glibc's allocator tuned as ``sfp train`` tunes it. No real tensors are loaded.
"""

import argparse
import logging
import pathlib
import sys
import time

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

from numpyml.allocator import keep_freed_heap_memory  # noqa: E402
from reference import Container, max_anchor, quantize  # noqa: E402
from reference.gecko import decode_exponents, encode_exponents, encoded_bits, pack  # noqa: E402
from reference.gecko import fixed  # noqa: E402
from reference.gecko.bitfields import plane_bytes  # noqa: E402
from reference.gecko.groups import read_plane  # noqa: E402
from reference.gecko.header import Reader, read_header  # noqa: E402
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
        # "auto" encodes with every group size and keeps the smallest stream.
        table[f"gecko {mode}, group auto"] = (
            lambda e, m=mode: encode_exponents(e, mode=m, group_size="auto"))
    # The default of entropy mode chooses the group size from symbol counts on a sample.
    table["gecko entropy, group chosen (default)"] = (
        lambda e: encode_exponents(e, mode="entropy"))
    if zstandard is not None:
        for level in (3, 19):
            compressor = zstandard.ZstdCompressor(level=level)
            table[f"zstd -{level}"] = lambda e, c=compressor: c.compress(e.tobytes())
    return table


FIXED_PARTS = ("header", "zero modes", "zero masks", "tops", "width codes", "exception counts",
               "deltas", "exceptions")


def fixed_parts(stream):
    """Return ({part: bytes} of a version 2 fixed-mode exponent stream, width codes)."""
    reader = Reader(stream)
    header = read_header(reader, "exponents")
    sizes = {"header": reader.offset}
    group_count = -(-header.count // header.group_size)
    mode = read_plane(reader, group_count, fixed.ZERO_MODE_BITS, "zero modes")
    sizes["zero modes"] = reader.offset - sum(sizes.values())
    fixed.read_masks(reader, mode, header.group_size)
    sizes["zero masks"] = reader.offset - sum(sizes.values())
    coded = int((mode != fixed.ALL_ZERO).sum())
    fixed.read_reference_frame(reader, coded, "top")
    sizes["tops"] = reader.offset - sum(sizes.values())
    codes = read_plane(reader, coded, fixed.WIDTH_CODE_BITS, "width codes")
    sizes["width codes"] = reader.offset - sum(sizes.values())
    count_bits, high_bits = stream[reader.offset], stream[reader.offset + 1]
    counts = reader.take(2 + plane_bytes(coded, count_bits), "exception counts")
    sizes["exception counts"] = len(counts)
    total = sum(int(c) for c in read_plane(Reader(counts[2:]), coded, count_bits, "counts"))
    sizes["exceptions"] = (plane_bytes(total, fixed.lane_index_bits(header.group_size))
                           + plane_bytes(total, high_bits))
    sizes["deltas"] = len(stream) - sum(sizes.values())
    return sizes, codes


def fixed_breakdown(tensor_list):
    """Return {category: {part: mean bits per exponent}} and {category: width code shares}."""
    parts, shares = {}, {}
    for category, _, x in tensor_list:
        exponents = exponent_fields(x)
        sizes, codes = fixed_parts(encode_exponents(exponents))
        parts.setdefault(category, []).append([8 * sizes[p] / exponents.size
                                               for p in FIXED_PARTS])
        shares.setdefault(category, []).append(np.bincount(codes, minlength=8) / codes.size)
    return ({c: dict(zip(FIXED_PARTS, np.mean(v, axis=0))) for c, v in parts.items()},
            {c: np.mean(v, axis=0) for c, v in shares.items()})


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
    variants = {"gecko fixed": ("fixed", None), "gecko entropy, group 32": ("entropy", 32),
                "gecko entropy, group chosen (default)": ("entropy", None)}
    for name, (mode, group_size) in variants.items():
        blob = encode_exponents(exponents, mode=mode, group_size=group_size)
        assert np.array_equal(decode_exponents(blob), exponents)
        results[f"{name}, group {blob[7]}" if group_size is None else name] = (
            best_seconds(lambda m=mode, g=group_size: encode_exponents(exponents, mode=m,
                                                                       group_size=g)),
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


def tensor_speeds(tensor_list):
    """Return {coder: (encode M values/s, decode M values/s)} over the tensors one by one.

    Each time is the best of 5 runs per tensor, summed over the tensors, so small and
    mid-sized tensors, where sampling costs the most, count as they come.
    """
    exponent_list = [exponent_fields(x) for _, _, x in tensor_list]
    values = sum(e.size for e in exponent_list)
    results = {}
    for name, group_size in (("gecko entropy, group 32", 32),
                             ("gecko entropy, group chosen (default)", None)):
        encode = decode = 0.0
        for exponents in exponent_list:
            blob = encode_exponents(exponents, mode="entropy", group_size=group_size)
            encode += best_seconds(lambda e=exponents: encode_exponents(
                e, mode="entropy", group_size=group_size))
            decode += best_seconds(lambda b=blob: decode_exponents(b))
        results[name] = (values / encode / 1e6, values / decode / 1e6)
    return results


def encoded_bits_timing(sizes=(288, 4096, 18432, 73728)):
    """Return rows (data, values, encoded_bits ms, pack ms) per call, best of 5 rounds.

    A round makes 200,000 / values calls (at least 5), so small tensors are timed over many.
    """
    keep_freed_heap_memory()
    container = Container.training(4, 2)
    rng = np.random.default_rng(0)
    rows = []
    for data in ("relu", "normal"):
        for size in sizes:
            x = rng.standard_normal(size).astype(np.float32)
            if data == "relu":
                x = np.maximum(x, 0)
            anchor = max_anchor(x, container)
            x = quantize(x, container, anchor=anchor)
            repeats = max(5, 200_000 // size)
            seconds = [
                best_seconds(lambda f=f: [f(x, container, anchor=anchor) for _ in range(repeats)])
                for f in (encoded_bits, pack)
            ]
            rows.append((data, size, *(1e3 * s / repeats for s in seconds)))
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", help="directory for downloaded wheels")
    parser.add_argument("--speed-values", type=int, default=1 << 24,
                        help="exponents in the speed test (default 2**24)")
    parser.add_argument("--encoded-bits-timing", action="store_true",
                        help="time only encoded_bits against pack on training-size tensors")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.encoded_bits_timing:
        print("| data | values | encoded_bits ms | pack ms | encoded_bits / pack |\n"
              "|---|---|---|---|---|")
        for data, size, sizing, packing in encoded_bits_timing():
            print(f"| {data} | {size} | {sizing:.3f} | {packing:.3f} | {sizing / packing:.2f} |")
        return 0
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

    parts, shares = fixed_breakdown(tensor_list)
    print("\n| fixed mode, group 32, bits per exponent | " + " | ".join(FIXED_PARTS) + " |")
    print("|---|" + "---|" * len(FIXED_PARTS))
    for category, row in parts.items():
        print(f"| {category} | " + " | ".join(f"{row[p]:.3f}" for p in FIXED_PARTS) + " |")
    print("\n| share of coded groups | " + " | ".join(f"width {w}" for w in fixed.WIDTHS) + " |")
    print("|---|" + "---|" * len(fixed.WIDTHS))
    for category, row in shares.items():
        print(f"| {category} | " + " | ".join(f"{v:.3f}" for v in row) + " |")

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

    print("\n| speed, each tensor on its own | encode M/s | decode M/s |\n|---|---|---|")
    for name, (encode, decode) in tensor_speeds(tensor_list).items():
        print(f"| {name} | {encode:.0f} | {decode:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
