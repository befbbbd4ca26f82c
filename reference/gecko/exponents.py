"""Lossless coding of raw exponent fields: :func:`encode_exponents` and :func:`decode_exponents`.

A stream is the header of rule G1 with kind 0, then the group coding of rules G2 to G5 where
the zero mask marks exponent fields equal to 0.

>>> blob = encode_exponents(np.array([127, 128, 0, 126], np.uint8))
>>> decode_exponents(blob).tolist()
[127, 128, 0, 126]
"""

import numpy as np

from reference.gecko.groups import decode_groups, encode_groups_any_size
from reference.gecko.header import (
    GROUP_SIZES, MAX_COUNT, MAX_NDIM, MODES, Header, Reader, nonzero_extent, read_header,
    write_header,
)


def encode_exponents(exponents, *, mode="fixed", group_size=None):
    """Encode an array of exponent fields (integers in [0, 255], any shape) losslessly.

    ``mode`` is "fixed" (per-group top and width, rule G4) or "entropy" (one canonical
    Huffman code per tensor over top - exponent, rule G5). ``group_size`` is 8, 16, 32 or 64.
    None, the default, means 32 in fixed mode, and in entropy mode the size that symbol counts
    on a sample predict smallest. "auto" encodes with each size (in entropy mode with each
    reference too) and keeps the smallest stream, at 4 to 8 times the time of one encode.
    """
    check_options(mode, group_size)
    array = np.asarray(exponents)
    if array.dtype.kind not in "ui":
        raise TypeError(f"encode_exponents: exponents must be integers; got dtype {array.dtype}")
    check_shape(array.shape, "encode_exponents")
    if array.size and (array.min() < 0 or array.max() > 255):
        raise ValueError(f"encode_exponents: exponents must be in [0, 255]; got values in "
                         f"[{array.min()}, {array.max()}]")
    flat = array.astype(np.uint8, copy=False).ravel()
    group_size, body = encode_groups_any_size(flat, flat == 0, group_size, mode)
    return write_header(Header(mode, group_size, tuple(array.shape))) + body


def decode_exponents(blob):
    """Decode a stream from :func:`encode_exponents` into a uint8 array of its shape.

    Raises GeckoFormatError for any malformed stream.
    """
    reader = Reader(blob)
    header = read_header(reader, "exponents")
    flat, _ = decode_groups(reader, header.count, header.group_size, header.mode,
                            header.version)
    reader.finish()
    return flat.reshape(header.shape)


def check_options(mode, group_size):
    if mode not in MODES:
        raise ValueError(f"gecko: mode must be one of {tuple(MODES)}; got {mode!r}")
    if group_size not in GROUP_SIZES and group_size not in ("auto", None):
        raise ValueError(f"gecko: group_size must be one of {GROUP_SIZES}, 'auto' or None; "
                         f"got {group_size!r}")


def check_shape(shape, what):
    if len(shape) > MAX_NDIM:
        raise ValueError(f"{what}: at most {MAX_NDIM} dimensions fit the header; got {len(shape)}")
    if nonzero_extent(shape) >= MAX_COUNT:
        raise ValueError(f"{what}: the product of the non-zero dimensions must be below 2**48 "
                         f"to fit the header; got shape {shape}")
