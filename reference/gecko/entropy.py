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
    """Code (groups, group_size) uint8 exponent lanes with their zero mask."""
    top = np.where(zero_lanes, 0, lanes).max(axis=1)
    empty = zero_lanes.all(axis=1)
    top_max = int(top.max()) if top.size else 0
    top[empty] = top_max
    symbols = (top[:, None].astype(np.int16) + 1) - lanes
    symbols *= ~zero_lanes
    return b"".join([
        bytes([top_max]),
        huffman.write_code(top_max - top),
        huffman.write_code(symbols.ravel()),
    ])


def decode(reader, group_count, group_size):
    """Decode (groups, group_size) lanes and zero mask written by :func:`encode`."""
    (top_max,) = reader.take(1, "top max")
    top_symbols = huffman.read_code(reader, group_count, "group maxima")
    if top_symbols.size and top_symbols.max() > top_max:
        raise GeckoFormatError(f"group maxima: each symbol top_max - top must be at most "
                               f"top_max {top_max}; got {int(top_symbols.max())}")
    top = (top_max - top_symbols.astype(np.int16))[:, None]
    symbols = huffman.read_code(reader, group_count * group_size, "lanes")
    symbols = symbols.reshape(group_count, group_size).view(np.int16)
    zero_lanes = symbols == 0
    # Symbols are at most 256, so top + 1 - symbol fits int16 without overflow.
    exponents = top + 1 - symbols
    if (exponents < 0).any():
        raise GeckoFormatError("lanes: each symbol 1 + top - exponent must be at most 1 + top, "
                               "so that the exponent is at least 0; found a larger one")
    exponents *= ~zero_lanes
    return exponents.astype(np.uint8), zero_lanes
