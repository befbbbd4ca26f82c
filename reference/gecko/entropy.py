"""Entropy mode: every lane is one Huffman-coded symbol relative to its group maximum (G5).

Per group, the maximum exponent over its non-zero lanes is sent as top_max - top with one
canonical Huffman code (an all-zero group sends symbol 0). Each lane is then one symbol of a
second code: 0 for a zero, and 1 + top - exponent otherwise. Zeros therefore cost as much as
their share of the tensor makes them cost, about one bit each when half the lanes are zero.
"""

import numpy as np

from reference.gecko import huffman
from reference.gecko.errors import GeckoFormatError


def encode(lanes, zero_lanes):
    """Code (groups, group_size) uint8 exponent lanes with their zero mask.

    Zero lanes must hold exponent field 0, as they do in exponent streams and packed tensors.
    """
    # Reducing the transposed copy along axis 0 measured 2.5x faster than lanes.max(axis=1).
    top = np.ascontiguousarray(lanes.T).max(axis=0)
    # Only a group whose largest exponent field is 0 can be all zeros.
    empty = np.flatnonzero(top == 0)
    empty = empty[zero_lanes[empty].all(axis=1)]
    top_max = int(top.max()) if top.size else 0
    top[empty] = top_max
    if top_max < 255:
        # Every symbol is at most 1 + top_max <= 255, so uint8 arithmetic cannot wrap, and
        # the byte fast path of the Huffman coder applies.
        symbols = (top + np.uint8(1))[:, None] - lanes
    else:
        symbols = (top[:, None].astype(np.int16) + 1) - lanes
    symbols *= ~zero_lanes
    return b"".join([
        bytes([top_max]),
        huffman.write_code(np.uint8(top_max) - top),
        huffman.write_code(symbols.ravel()),
    ])


def decode(reader, group_count, group_size):
    """Decode (groups, group_size) lanes and zero mask written by :func:`encode`."""
    (top_max,) = reader.take(1, "top max")
    top_symbols = huffman.read_code(reader, group_count, "group maxima")
    if top_symbols.size and top_symbols.max() > top_max:
        raise GeckoFormatError(f"group maxima: each symbol top_max - top must be at most "
                               f"top_max {top_max}; got {int(top_symbols.max())}")
    top = top_max - top_symbols.astype(np.int16)
    symbols = huffman.read_code(reader, group_count * group_size, "lanes")
    symbols = symbols.reshape(group_count, group_size)
    largest = np.ascontiguousarray(symbols.T).max(axis=0) if symbols.size else top
    if (largest > top + 1).any():
        raise GeckoFormatError("lanes: each symbol 1 + top - exponent must be at most 1 + top, "
                               "so that the exponent is at least 0; found a larger one")
    zero_lanes = symbols == 0
    if symbols.dtype == np.uint8:
        # Symbols are at most top + 1, so top + 1 - symbol lies in 0..256 and wraps only
        # for symbol 0 with top 255, a zero lane that is cleared below.
        exponents = (top.astype(np.uint8) + np.uint8(1))[:, None] - symbols
    else:
        exponents = (top[:, None] + 1 - symbols.astype(np.int16)).astype(np.uint8)
    exponents *= ~zero_lanes
    return exponents, zero_lanes
