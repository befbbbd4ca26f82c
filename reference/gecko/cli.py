"""The ``sfp gecko`` command: exponent statistics, and packing .npy files to Gecko streams.

``sfp gecko stats FILE...`` reads ``.npy`` files and ONNX models (every float32, float16 and
bfloat16 initializer, widened exactly to float32). It prints, per tensor, the bits per exponent
of both modes, the exponent and whole-tensor compression ratios, and the same for zstd -3 and
-19 when the optional ``zstandard`` package is installed. ``sfp gecko pack`` and ``sfp gecko unpack`` convert
between ``.npy`` and Gecko files; outputs are written to a temporary file and renamed.

A failed action raises ValueError, TypeError or OSError, which ``sfp`` prints as one line
``sfp gecko: message`` with exit status 2.
"""

import logging
import os
import pathlib
import sys

import numpy as np

logger = logging.getLogger(__name__)


def register(subparsers):
    parser = subparsers.add_parser("gecko", help="lossless exponent coding (Gecko)")
    commands = parser.add_subparsers(dest="gecko_command", metavar="ACTION", required=True)

    stats = commands.add_parser("stats", help="bits per exponent of .npy files and ONNX models")
    stats.add_argument("files", nargs="+", type=pathlib.Path, metavar="FILE")
    stats.set_defaults(run=run_stats)

    pack = commands.add_parser(
        "pack", help="pack a float32 .npy file into a Gecko file",
        description="Pack a float32 .npy file into a Gecko file (SPEC.md section G). A Gecko "
        "stream carries no checksum: the format models the encoding at the memory interface, "
        "where error detection sits in a lower layer, so a corrupted file can unpack without "
        "an error into wrong values. Rely on the integrity checks of the file system or "
        "transport, or store a checksum beside the file.",
    )
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
        except (OSError, ValueError, TypeError) as error:
            # The other files still get their rows, so this error is reported and not raised.
            print(f"sfp gecko: cannot read tensors from {path}: {_reason(error)}",
                  file=sys.stderr)
            status = 2
            continue
        for name, x in tensors:
            cells = _tensor_stats(x, zstandard)
            print(f"{name[-48:]:<48} {x.size:>10} " + " ".join(_format_cell(c) for c in cells))
    return status


def _format_cell(value):
    return f"{'n/a':>10}" if value is None else f"{value:>10.2f}"


def _reason(error):
    if isinstance(error, OSError) and error.strerror:
        return error.strerror[0].lower() + error.strerror[1:]
    return str(error)


def _tensor_stats(x, zstandard):
    """Return bits per exponent (fixed, entropy), then exponent and FP32 ratios of entropy mode.

    With zstandard: zstd -3 and -19 bits per exponent, then their FP32 ratios on raw bytes.
    An empty tensor has no exponents, so every cell is None.
    """
    from reference import Container
    from reference.gecko import encode_exponents, pack

    if x.size == 0:
        return [None] * (8 if zstandard else 4)
    exponents = ((x.view(np.uint32) >> np.uint32(23)) & np.uint32(0xFF)).astype(np.uint8)
    per_value = 8 / x.size
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

        from google.protobuf.message import DecodeError

        try:
            model = onnx.load(str(path))
        except DecodeError as error:
            raise ValueError(f"not an ONNX model ({error})") from error
        arrays = [(f"{path.name}:{t.name}", numpy_helper.to_array(t))
                  for t in model.graph.initializer]
    else:
        arrays = [(path.name, _load_npy(path))]
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


_EXPECTED_FILES = ("stats and pack read .npy files (stats also reads .onnx models), and unpack "
                   "reads .gecko files")


def _load_npy(path):
    """Load the array of the .npy file at ``path``, checking its header before allocating."""
    from reference.npy_file import NotNpyError, load_npy

    with open(path, "rb") as stream:
        if stream.read(len(_ZIP_MAGIC)) == _ZIP_MAGIC:
            raise ValueError(f"an .npz archive, not a .npy file; {_EXPECTED_FILES}")
    try:
        return load_npy(path)
    except NotNpyError as error:
        raise ValueError(f"not a .npy file; {_EXPECTED_FILES}") from error


_ZIP_MAGIC = b"PK\x03\x04"


def _check_paths(input_path, output_path):
    if input_path.resolve() == output_path.resolve():
        raise ValueError(f"output {output_path}: must differ from the input file; choose "
                         "another path")
    if not output_path.resolve().parent.is_dir():
        raise FileNotFoundError(f"output {output_path}: directory {output_path.parent} does "
                                "not exist; create it first")
    if output_path.is_dir():
        raise IsADirectoryError(f"output {output_path}: is a directory; pass a file path")


def run_pack(args):
    from reference import Container, quantize
    from reference.gecko import pack

    _check_paths(args.input, args.output)
    container = Container.from_name(args.container)
    try:
        x = _load_npy(args.input)
    except ValueError as error:
        raise ValueError(f"{args.input}: {error}") from error
    except TypeError as error:
        raise TypeError(f"{args.input}: {error}") from error
    if not x.dtype.isnative:
        # Swapping to native byte order keeps every value and bit pattern.
        x = x.astype(x.dtype.newbyteorder("="))
    if x.dtype != np.float32:
        raise TypeError(f"{args.input}: pack needs a float32 array; got dtype {x.dtype}; "
                        "save x.astype(np.float32) to a new file and pack that")
    _check_nan_codes(args.input, x, container, args.container)
    narrowed = x if args.container == "fp32" else quantize(x, container)
    if not np.array_equal(narrowed.view(np.uint32), x.view(np.uint32)):
        logger.info("quantized %s to container %s before packing", args.input, args.container)
    blob = pack(narrowed, container, mode=args.mode)
    _write_atomically(args.output, blob)
    print(f"packed {x.size} values into {len(blob)} bytes "
          f"({8 * len(blob) / max(x.size, 1):.2f} bits per value): {args.output}")
    return 0


def _check_nan_codes(path, x, container, name):
    """Reject NaNs in ``x`` when ``container`` has no NaN code to keep them."""
    from reference.container import PRESETS, Container

    if container.has_nan:
        return
    nan = np.isnan(x.ravel())
    if not nan.any():
        return
    index = int(np.argmax(nan))
    code = int(x.ravel()[index:index + 1].view(np.uint32)[0])
    keeping = [preset for preset in PRESETS if Container.from_name(preset).has_nan]
    raise ValueError(
        f"{path}: contains NaN (first at element {index}: 0x{code:08x}), "
        f"but container {name} has no NaN code; pass --container with one of "
        f"{', '.join(keeping)}, omit --container to pack losslessly as fp32, or remove the NaNs"
    )


def run_unpack(args):
    from reference.gecko import GeckoFormatError, unpack

    _check_paths(args.input, args.output)
    try:
        x = unpack(args.input.read_bytes())
    except GeckoFormatError as error:
        raise GeckoFormatError(f"{args.input}: not a valid Gecko tensor: {error}") from error
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
        try:
            if kind is None:
                os.replace(self.temporary, self.path)
        except OSError as failure:
            raise _naming_target(failure, self.path) from failure
        finally:
            # Whether the block or the rename failed, no temporary file may stay behind.
            self.temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and _same_path(error.filename, self.temporary):
            # The user requested ``path``, and the temporary name beside it would only confuse.
            raise _naming_target(error, self.path) from error
        return False


def _same_path(filename, path):
    return filename is not None and os.fspath(filename) == os.fspath(path)


def _naming_target(error, path):
    """Return a copy of OSError ``error`` that names ``path`` instead of a temporary file."""
    if error.errno is None:
        return OSError(f"{path}: {error}")
    return type(error)(error.errno, error.strerror, str(path))
