"""Constants and shared layout helpers of the fixed-mode body (rule G4).

The encoder's choices (:mod:`reference.gecko.fixed_plan`), the writer
(:mod:`reference.gecko.fixed_writer`) and the decoder (:mod:`reference.gecko.fixed`) read the
same field widths, frames and delta order from here.
"""

import struct

import numpy as np

NO_ZEROS, MASKED, INLINE, ALL_ZERO = range(4)
ZERO_MODE_BITS = 2
# Width code c stores each delta in WIDTHS[c] bits.
WIDTHS = (0, 1, 2, 3, 4, 5, 6, 8)
WIDTH_CODE_BITS = 3
LARGEST = np.asarray([(1 << w) - 1 for w in WIDTHS], np.int64)
WIDTHS32 = np.asarray(WIDTHS, np.int32)
# Tops are sent as top_min (uint8) and a width, then top - top_min per coded group.
REFERENCE_FRAME = struct.Struct("<BB")
# The exception frame: the width of the per-group exception counts and of the high parts.
EXCEPTION_FRAME = struct.Struct("<BB")
MAX_COUNT_BITS = 7
MAX_HIGH_BITS = 8


def masked_keeps(zero_lanes, order, blocks):
    """Return {code: the lanes that masked groups of that code store}, for non-empty blocks.

    ``blocks`` are the delta-order row bounds: rows blocks[2c] to blocks[2c + 1] are the groups
    of code c without a mask, and rows up to blocks[2c + 2] the masked ones.
    """
    keeps = {}
    for code in range(len(WIDTHS)):
        start, end = blocks[2 * code + 1], blocks[2 * code + 2]
        if end > start:
            keeps[code] = ~np.take(zero_lanes, order[start:end], axis=0)
    return keeps


def delta_order_keys(codes, mode):
    """Return the sort key of each coded group in the delta planes: code, then masked last."""
    return codes.astype(np.int64) * 2 + (mode == MASKED)


def lane_index_bits(group_size):
    """Return the width of an exception's lane index: log2 of the group size."""
    return group_size.bit_length() - 1


def count_zeros(zero_lanes):
    """Return the number of zero lanes in each row of a (groups, group_size) bool array."""
    # Adding the rows' bytes as uint64 words keeps each byte's sum below 8, and multiplying by
    # 0x0101010101010101 gathers the eight byte sums (at most 64) into the top byte.
    words = np.ascontiguousarray(zero_lanes).view(np.uint64)
    total = words[:, 0].copy()
    for column in range(1, words.shape[1]):
        total += words[:, column]
    return ((total * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.int64)


def stored_counts(mode, zero_lanes, group_size):
    """Return the lanes of each group that store a delta: all but a masked group's zeros."""
    counts = np.full(mode.size, group_size, np.int64)
    masked = np.flatnonzero(mode == MASKED)
    counts[masked] -= count_zeros(zero_lanes[masked])
    return counts
