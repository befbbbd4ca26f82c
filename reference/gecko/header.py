"""The Gecko header: magic, version, kind, mode, group size, shape and the container fields.

All multi-byte fields are little-endian. The byte layout is the table in SPEC.md rule G1.
"""

import dataclasses
import struct

from reference.gecko.errors import GeckoFormatError

MAGIC = b"SFPG"
# Encoders write version 2. Version 1 streams differ only in the fixed-mode body (rule G4)
# and in the entropy-mode body, which lacks the reference byte (rule G5). Decoders read both.
VERSION = 2
READABLE_VERSIONS = (1, 2)
KINDS = {"exponents": 0, "tensor": 1}
MODES = {"fixed": 0, "entropy": 1}
GROUP_SIZES = (8, 16, 32, 64)
MAX_NDIM = 32
# A cap on the element count keeps every bit position of every plane below 2**63. The cap
# applies to the product of the non-zero dimensions, so it also bounds each dimension of a
# zero-element shape. numpy cannot reshape to a dimension of 2**63 or more, nor to a shape
# whose non-zero dimensions multiply to more bytes than it can address.
MAX_COUNT = 1 << 48
BASES = {"fp32": 0, "bf16": 1}
BASE_MANTISSA_BITS = {"fp32": 23, "bf16": 7}
SPECIALS = {"ieee": 0, "fn": 1, "none": 2}
FLAG_SUBNORMALS = 0x01
FLAG_ANCHORED = 0x02
FLAG_NEGATIVE_ZEROS = 0x04
KNOWN_FLAGS = FLAG_SUBNORMALS | FLAG_ANCHORED | FLAG_NEGATIVE_ZEROS

_COMMON = struct.Struct("<4sBBBBB")
_TENSOR = struct.Struct("<BBBBBh")


@dataclasses.dataclass(frozen=True)
class TensorFields:
    """The container that a packed tensor was encoded with, and its plane flags."""

    base: str
    exponent_bits: int
    mantissa_bits: int
    specials: str
    subnormals: bool
    anchored: bool
    offset: int  # the anchor when anchored, else the exponent bias
    negative_zeros: bool


@dataclasses.dataclass(frozen=True)
class Header:
    """A parsed header; ``tensor`` is None for a bare exponent stream."""

    mode: str
    group_size: int
    shape: tuple
    tensor: TensorFields | None = None
    version: int = VERSION

    @property
    def count(self):
        count = 1
        for dim in self.shape:
            count *= dim
        return count


class Reader:
    """A cursor over a blob that raises GeckoFormatError instead of reading past the end."""

    def __init__(self, blob):
        self.blob = memoryview(blob).cast("B")
        self.offset = 0

    @property
    def remaining(self):
        return len(self.blob) - self.offset

    def take(self, size, what):
        if size > self.remaining:
            raise GeckoFormatError(
                f"{what}: needs {size} bytes at offset {self.offset} but the stream has "
                f"{self.remaining} left; the stream is truncated"
            )
        chunk = self.blob[self.offset : self.offset + size]
        self.offset += size
        return bytes(chunk)

    def unpack(self, layout, what):
        return layout.unpack(self.take(layout.size, what))

    def finish(self):
        if self.remaining:
            raise GeckoFormatError(
                f"stream end: no bytes may follow the last plane; got {self.remaining} "
                f"trailing bytes at offset {self.offset}"
            )


def write_header(header):
    """Serialize ``header`` (rule G1)."""
    kind = "exponents" if header.tensor is None else "tensor"
    out = [
        _COMMON.pack(MAGIC, header.version, KINDS[kind], MODES[header.mode], header.group_size,
                     len(header.shape)),
        struct.pack(f"<{len(header.shape)}Q", *header.shape),
    ]
    if header.tensor is not None:
        fields = header.tensor
        flags = (
            FLAG_SUBNORMALS * fields.subnormals
            | FLAG_ANCHORED * fields.anchored
            | FLAG_NEGATIVE_ZEROS * fields.negative_zeros
        )
        out.append(_TENSOR.pack(BASES[fields.base], fields.exponent_bits, fields.mantissa_bits,
                                SPECIALS[fields.specials], flags, fields.offset))
    return b"".join(out)


def read_header(reader, kind):
    """Parse and validate a header of the expected ``kind`` from ``reader`` (rule G1)."""
    magic, version, kind_code, mode_code, group_size, ndim = reader.unpack(_COMMON, "header")
    if magic != MAGIC:
        raise GeckoFormatError(
            f"header magic: must be {MAGIC!r}; got {magic!r}; this is not a Gecko stream"
        )
    if version not in READABLE_VERSIONS:
        raise GeckoFormatError(
            f"header version: this decoder reads versions {READABLE_VERSIONS}; got {version}; "
            f"a newer version needs a newer schrodinger-fp"
        )
    if kind_code not in KINDS.values():
        raise GeckoFormatError(
            f"header kind: must be one of {sorted(KINDS.values())}; got {kind_code}; "
            f"this decoder reads no stream of kind {kind_code}"
        )
    if kind_code != KINDS[kind]:
        other = "unpack" if kind == "exponents" else "decode_exponents"
        raise GeckoFormatError(
            f"header kind: must be {KINDS[kind]} ({kind}); got {kind_code}; "
            f"a stream of kind {kind_code} is read with {other}"
        )
    mode = _lookup(MODES, mode_code, "header mode")
    if group_size not in GROUP_SIZES:
        raise GeckoFormatError(
            f"header group size: must be one of {GROUP_SIZES}; got {group_size}"
        )
    if ndim > MAX_NDIM:
        raise GeckoFormatError(f"header ndim: must be at most {MAX_NDIM}; got {ndim}")
    shape = struct.unpack(f"<{ndim}Q", reader.take(8 * ndim, "header shape"))
    if nonzero_extent(shape) >= MAX_COUNT:
        raise GeckoFormatError(
            f"header shape: the product of the non-zero dimensions must be below 2**48; "
            f"got {shape}"
        )
    header = Header(mode, group_size, tuple(shape), version=version)
    if kind == "tensor":
        header = dataclasses.replace(header, tensor=_read_tensor_fields(reader))
    return header


def nonzero_extent(shape):
    """Return the product of the non-zero dimensions of ``shape`` (1 when there are none).

    It equals the element count unless a dimension is 0, and rule G1 bounds it for every
    stream, so that a zero-element shape is one that numpy can create.
    """
    extent = 1
    for dim in shape:
        extent *= max(int(dim), 1)
    return extent


def _read_tensor_fields(reader):
    base_code, exponent_bits, mantissa_bits, specials_code, flags, offset = reader.unpack(
        _TENSOR, "header container fields"
    )
    base = _lookup(BASES, base_code, "header base format")
    specials = _lookup(SPECIALS, specials_code, "header specials")
    if not 1 <= exponent_bits <= 8:
        raise GeckoFormatError(f"header exponent bits: must be in [1, 8]; got {exponent_bits}")
    top = BASE_MANTISSA_BITS[base]
    if not 0 <= mantissa_bits <= top:
        raise GeckoFormatError(
            f"header mantissa bits: must be in [0, {top}] on base {base}; got {mantissa_bits}"
        )
    if flags & ~KNOWN_FLAGS:
        raise GeckoFormatError(
            f"header flags: only bits 0x{KNOWN_FLAGS:02x} are defined; got 0x{flags:02x}"
        )
    return TensorFields(
        base, exponent_bits, mantissa_bits, specials, bool(flags & FLAG_SUBNORMALS),
        bool(flags & FLAG_ANCHORED), offset, bool(flags & FLAG_NEGATIVE_ZEROS),
    )


def _lookup(table, code, what):
    for name, value in table.items():
        if value == code:
            return name
    raise GeckoFormatError(f"{what}: must be one of {sorted(table.values())}; got {code}")
