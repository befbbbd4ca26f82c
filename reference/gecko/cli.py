"""The ``sfp gecko`` command: exponent statistics, and packing .npy files to Gecko streams.

``sfp gecko stats FILE...`` reads ``.npy`` files and ONNX models (every float32, float16 and
bfloat16 initializer, widened exactly to float32). It prints, per tensor, the bits per exponent
of both modes, the exponent and whole-tensor compression ratios, and the same for zstd -3 and
-19 when the optional ``zstandard`` package is installed. ``sfp gecko pack`` and ``sfp gecko unpack`` convert
between ``.npy`` and Gecko files; outputs are written to a temporary file and renamed.
"""

import logging
import os
import pathlib

import numpy as np

logger = logging.getLogger(__name__)


def register(subparsers):
    parser = subparsers.add_parser("gecko", help="lossless exponent coding (Gecko)")
    commands = parser.add_subparsers(dest="gecko_command", metavar="ACTION", required=True)

    stats = commands.add_parser("stats", help="bits per exponent of .npy files and ONNX models")
    stats.add_argument("files", nargs="+", type=pathlib.Path, metavar="FILE")
    stats.set_defaults(run=run_stats)

    pack = commands.add_parser("pack", help="pack a float32 .npy file into a Gecko file")
    pack.add_argument("input", type=pathlib.Path, metavar="IN.npy")
    pack.add_argument("output", type=pathlib.Path, metavar="OUT.gecko")
    pack.add_argument("--container", default="fp32",
                      help="container name, e.g. fp32, bf16, e4m3fn (default fp32: lossless); "
                           "values that are not members are quantized to it first")
    pack.add_argument("--mode", choices=("fixed", "entropy"), default="fixed",
                      help="exponent coding mode (default fixed)")
    pack.set_defaults(run=run_pack)

    unpack = commands.add_parser("unpack", help="unpack a Gecko file into a float32 .npy file")
    unpack.add_argument("input", type=pathlib.Path, metavar="IN.gecko")
    unpack.add_argument("output", type=pathlib.Path, metavar="OUT.npy")
    unpack.set_defaults(run=run_unpack)


def run_stats(args):
    zstandard = _optional_zstandard()
    columns = ["fixed", "entropy", "exp x", "fp32 x"]
    if zstandard:
        columns += ["zstd-3", "zstd-19", "z3 fp32 x", "z19 fp32 x"]
    print(f"{'tensor':<48} {'values':>10} " + " ".join(f"{c:>10}" for c in columns))
    print(f"{'':<48} {'':>10} bits per exponent, then ratios (x) of exponent bytes and of "
          "FP32 bytes to coded bytes")
    status = 0
    for path in args.files:
        try:
            tensors = _read_tensors(path)
        except (OSError, ValueError) as error:
            logger.error("%s: cannot read tensors: %s", path, error)
            status = 1
            continue
        for name, x in tensors:
            cells = _tensor_stats(x, zstandard)
            print(f"{name[-48:]:<48} {x.size:>10} " + " ".join(f"{c:>10.2f}" for c in cells))
    return status


def _tensor_stats(x, zstandard):
    """Return bits per exponent (fixed, entropy), then exponent and FP32 ratios of entropy mode.

    With zstandard: zstd -3 and -19 bits per exponent, then their FP32 ratios on raw bytes.
    """
    from reference import Container
    from reference.gecko import encode_exponents, pack

    exponents = ((x.view(np.uint32) >> np.uint32(23)) & np.uint32(0xFF)).astype(np.uint8)
    per_value = 8 / max(x.size, 1)
    fixed = len(encode_exponents(exponents, mode="fixed")) * per_value
    coded = len(encode_exponents(exponents, mode="entropy")) * per_value
    packed = len(pack(x, Container.from_name("fp32"), mode="entropy"))
    cells = [fixed, coded, 8 / coded if coded else float("inf"), x.nbytes / packed]
    if zstandard:
        compressors = [zstandard.ZstdCompressor(level=level) for level in (3, 19)]
        cells += [len(c.compress(exponents.tobytes())) * per_value for c in compressors]
        cells += [x.nbytes / len(c.compress(x.tobytes())) for c in compressors]
    return cells


def _read_tensors(path):
    if path.suffix == ".onnx":
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path))
        arrays = [(f"{path.name}:{t.name}", numpy_helper.to_array(t))
                  for t in model.graph.initializer]
    else:
        arrays = [(path.name, np.load(path, allow_pickle=False))]
    # float16 and bfloat16 widen to float32 exactly, so their exponents are measured as FP32
    # exponent fields; float64 would need rounding and is skipped like integer tensors.
    float32_arrays = [(name, np.ascontiguousarray(a, dtype=np.float32)) for name, a in arrays
                      if a.dtype.name in ("float32", "float16", "bfloat16")]
    if len(float32_arrays) < len(arrays):
        logger.info("%s: skipped %d tensors that are not float32, float16 or bfloat16", path,
                    len(arrays) - len(float32_arrays))
    return float32_arrays


def _optional_zstandard():
    try:
        import zstandard
    except ImportError:
        logger.info("zstandard is not installed: the zstd columns are left out "
                    "(pip install zstandard)")
        return None
    return zstandard


def run_pack(args):
    from reference import Container, quantize
    from reference.gecko import pack

    container = Container.from_name(args.container)
    x = np.load(args.input, allow_pickle=False)
    if x.dtype != np.float32:
        logger.error("%s: pack needs a float32 array; got dtype %s", args.input, x.dtype)
        return 1
    narrowed = x if args.container == "fp32" else quantize(x, container)
    if not np.array_equal(narrowed.view(np.uint32), x.view(np.uint32)):
        logger.info("quantized %s to container %s before packing", args.input, args.container)
    blob = pack(narrowed, container, mode=args.mode)
    _write_atomically(args.output, blob)
    print(f"packed {x.size} values into {len(blob)} bytes "
          f"({8 * len(blob) / max(x.size, 1):.2f} bits per value): {args.output}")
    return 0


def run_unpack(args):
    from reference.gecko import GeckoFormatError, unpack

    try:
        x = unpack(args.input.read_bytes())
    except GeckoFormatError as error:
        logger.error("%s: not a valid Gecko tensor: %s", args.input, error)
        return 1
    with _atomic_path(args.output) as temporary, open(temporary, "wb") as stream:
        # A file object keeps np.save from appending ".npy" to the temporary name.
        np.save(stream, x, allow_pickle=False)
    print(f"unpacked {x.size} values of shape {x.shape}: {args.output}")
    return 0


def _write_atomically(path, data):
    with _atomic_path(path) as temporary:
        temporary.write_bytes(data)


class _atomic_path:
    """A temporary path beside ``path`` that replaces ``path`` only when the block succeeds."""

    def __init__(self, path):
        self.path = pathlib.Path(path)
        self.temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")

    def __enter__(self):
        return self.temporary

    def __exit__(self, kind, error, trace):
        if kind is None:
            os.replace(self.temporary, self.path)
        else:
            self.temporary.unlink(missing_ok=True)
        return False
