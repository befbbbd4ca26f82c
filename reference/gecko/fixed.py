"""Fixed mode: per group a zero mode, a top and a width code, then packed deltas (rule G4).

Each group has one of four zero modes. Mode 0: the group has no zeros. Mode 1: a mask of
``group_size`` bits marks the zeros, which store nothing. Mode 2: zeros are stored inline as
value 0, and every other lane as top - exponent + 1. Mode 3: every lane is zero, and the group
stores nothing more. In modes 0 and 1 a lane stores top - exponent, where top is the group's
largest exponent.

A lane stores the low W bits of its value. A few lanes of a group may not fit W bits. These
exceptions are listed by lane index, with their high bits, in two planes after the deltas. So a
group whose range is widened by one or two small exponents keeps a narrower width.
"""

import numpy as np

from reference.gecko.errors import GeckoFormatError
# The layout names are re-exported: the version 1 decoder, the benchmarks and the tests read
# them from this module.
from reference.gecko.fixed_layout import (  # noqa: F401
    ALL_ZERO, EXCEPTION_FRAME, INLINE, LARGEST, MASKED, MAX_COUNT_BITS, MAX_HIGH_BITS, NO_ZEROS,
    REFERENCE_FRAME, WIDTH_CODE_BITS, WIDTHS, WIDTHS32, ZERO_MODE_BITS, count_zeros,
    delta_order_keys, lane_index_bits, masked_keeps, stored_counts,
)
from reference.gecko.fixed_plan import plan, planned_size
from reference.gecko.fixed_writer import write
from reference.gecko.groups import read_plane


def encode(lanes, zero_lanes):
    """Code (groups, group_size) uint8 exponent lanes with their zero mask.

    Zero lanes must hold exponent field 0, as they do in exponent streams and packed tensors.
    """
    return write(plan(lanes, zero_lanes), lanes, zero_lanes)


def encoded_size(lanes, zero_lanes):
    """Return ``len(encode(lanes, zero_lanes))``, computed without packing any plane."""
    return planned_size(plan(lanes, zero_lanes))


def decode(reader, group_count, group_size):
    """Decode (groups, group_size) lanes and zero mask written by :func:`encode`."""
    mode = read_plane(reader, group_count, ZERO_MODE_BITS, "zero modes")
    zero_lanes = read_masks(reader, mode, group_size)
    coded = np.flatnonzero(mode != ALL_ZERO)
    top = read_reference_frame(reader, coded.size, "top")
    codes = read_plane(reader, coded.size, WIDTH_CODE_BITS, "width codes")
    counts, high_bits = _read_exception_frame(reader, coded.size)

    key = delta_order_keys(codes, mode[coded])
    by_key = np.argsort(key, kind="stable")
    order = coded[by_key]
    sorted_mode = mode[order]
    sorted_codes = codes[by_key]
    blocks = np.searchsorted(key[by_key], np.arange(2 * len(WIDTHS) + 1))
    keeps = masked_keeps(zero_lanes, order, blocks)
    sorted_counts = counts[by_key]
    _check_counts(sorted_counts, keeps, blocks, group_size)
    deltas = np.zeros((order.size, group_size), np.uint8)
    for code, width in enumerate(WIDTHS):
        start, split, end = blocks[2 * code : 2 * code + 3]
        whole = (split - start) * group_size
        keep = keeps.get(code)
        stored = whole + (int(np.count_nonzero(keep)) if keep is not None else 0)
        plane = read_plane(reader, stored, width, f"deltas of width {width}")
        if whole:
            deltas[start:split] = plane[:whole].reshape(-1, group_size)
        if keep is not None:
            deltas[split:end][keep] = plane[whole:]

    sorted_top = top[by_key]
    # A lane's value may be at most top (top + 1 inline), so that its exponent is at least 0.
    limit = sorted_top.astype(np.int64) + (sorted_mode == INLINE)
    _check_limit(deltas, limit, sorted_codes)
    _apply_exceptions(reader, deltas, zero_lanes, order, sorted_codes, sorted_counts, limit,
                      high_bits)
    exponents = sorted_top[:, None] - deltas
    for code, keep in keeps.items():
        exponents[blocks[2 * code + 1] : blocks[2 * code + 2]] *= keep.view(np.uint8)
    inline = np.flatnonzero(sorted_mode == INLINE)
    if inline.size:
        exponents[inline], zero_lanes[order[inline]] = _decode_inline(deltas[inline],
                                                                      sorted_top[inline])

    unsorted = np.empty_like(by_key)
    unsorted[by_key] = np.arange(by_key.size)
    if coded.size == group_count:
        return np.take(exponents, unsorted, axis=0), zero_lanes
    lanes = np.zeros((group_count, group_size), np.uint8)
    lanes[coded] = np.take(exponents, unsorted, axis=0)
    return lanes, zero_lanes


def _check_counts(sorted_counts, keeps, blocks, group_size):
    # A group has at most as many exceptions as stored lanes. Checked before the exception
    # planes are read, so that their arrays are never larger than the output.
    stored = np.full(sorted_counts.size, group_size, np.int64)
    for code, keep in keeps.items():
        stored[blocks[2 * code + 1] : blocks[2 * code + 2]] = np.count_nonzero(keep, axis=1)
    over = np.flatnonzero(sorted_counts > stored)
    if over.size:
        raise GeckoFormatError(
            f"exception counts: a group has at most as many exceptions as stored lanes; got "
            f"{int(sorted_counts[over[0]])} exceptions for {int(stored[over[0]])} stored lanes"
        )


def _read_exception_frame(reader, coded_count):
    count_bits, high_bits = reader.unpack(EXCEPTION_FRAME, "exception frame")
    if count_bits > MAX_COUNT_BITS:
        raise GeckoFormatError(f"exception frame: the count width must be at most "
                               f"{MAX_COUNT_BITS}; got {count_bits}")
    if high_bits > MAX_HIGH_BITS:
        raise GeckoFormatError(f"exception frame: the high width must be at most "
                               f"{MAX_HIGH_BITS}; got {high_bits}")
    counts = read_plane(reader, coded_count, count_bits, "exception counts")
    return counts.astype(np.int64), high_bits


def _apply_exceptions(reader, deltas, zero_lanes, order, sorted_codes, sorted_counts, limit,
                      high_bits):
    # Adds each exception's high part above the low bits of its lane.
    group_size = deltas.shape[1]
    index_bits = lane_index_bits(group_size)
    total = int(sorted_counts.sum())
    lanes = read_plane(reader, total, index_bits, "exception lanes")
    highs = read_plane(reader, total, high_bits, "exception highs")
    if total == 0:
        return
    rows = np.flatnonzero(sorted_counts)
    row = np.repeat(rows, sorted_counts[rows])
    # Rows are in order, so the lanes of each group increase exactly when the flat lane
    # positions increase.
    position = (row << index_bits) | lanes
    if (position[1:] <= position[:-1]).any():
        raise GeckoFormatError("exception lanes: the lanes of one group must be strictly "
                               "increasing; found a lane at or below the one before it")
    if zero_lanes.ravel().take((order.take(row) << index_bits) | lanes).any():
        raise GeckoFormatError("exception lanes: an exception must name a stored lane; found "
                               "one that the zero mask marks")
    if not highs.all():
        raise GeckoFormatError("exception highs: each high part must be at least 1; got 0")
    width = WIDTHS32.take(sorted_codes.take(row))
    flat = deltas.ravel()
    value = flat.take(position).astype(np.int32) + (highs.astype(np.int32) << width)
    excess = value - np.minimum(limit.take(row), 255)
    if excess.max() > 0:
        at = int(np.argmax(excess))
        raise GeckoFormatError(
            f"exception highs: low + high * 2**W must be at most top (top + 1 inline) and at "
            f"most 255, so that the exponent is at least 0; got {int(value[at])} with limit "
            f"{int(limit[row[at]])}"
        )
    flat.put(position, value)


def _check_limit(deltas, limit, codes):
    # Only rows whose limit is below the largest value of their width can contain a value
    # above it, so only those rows are read. Exceptions are checked where they are applied.
    rows = np.flatnonzero(limit < LARGEST[codes])
    if rows.size == 0:
        return
    excess = deltas[rows].max(axis=1).astype(np.int64) - limit[rows]
    if excess.max() > 0:
        row = rows[np.argmax(excess)]
        raise GeckoFormatError(f"deltas: a lane's value must be at most top (top + 1 inline), "
                               f"so that its exponent is at least 0; got "
                               f"{int(deltas[row].max())} with limit {int(limit[row])}")


def _decode_inline(deltas, top):
    # Value 0 is a zero; otherwise exponent = top - value + 1, checked to be at least 0.
    zeros = deltas == 0
    exponents = top[:, None].astype(np.int16) + 1 - deltas
    exponents[zeros] = 0
    return exponents.astype(np.uint8), zeros


def read_masks(reader, mode, group_size):
    """Read the zero masks of the masked groups; return the zero mask of every group."""
    masked = np.flatnonzero(mode == MASKED)
    plane = reader.take(masked.size * group_size // 8, "zero masks")
    zero_lanes = np.zeros((mode.size, group_size), bool)
    zero_lanes[mode == ALL_ZERO] = True
    packed = np.frombuffer(plane, np.uint8).reshape(masked.size, group_size // 8)
    masks = np.unpackbits(packed, axis=1, bitorder="little").astype(bool)
    zero_count = count_zeros(masks)
    if ((zero_count == 0) | (zero_count == group_size)).any():
        group = int(masked[(zero_count == 0) | (zero_count == group_size)][0])
        raise GeckoFormatError(
            f"zero masks: a mask must mark some but not all lanes (modes 0 and 3 cover those); "
            f"group {group} marks {int(zero_count[masked == group][0])} of {group_size}"
        )
    zero_lanes[masked] = masks
    return zero_lanes


def read_reference_frame(reader, count, name):
    """Read a uint8 minimum, a width and ``count`` offsets; return minimum + offset as uint8.

    ``name`` is the per-group value in messages: "top" (version 2) or "base" (version 1).
    """
    low, width = reader.unpack(REFERENCE_FRAME, f"{name} frame")
    if width > 8:
        raise GeckoFormatError(f"{name} frame: the {name} width must be at most 8; got {width}")
    values = read_plane(reader, count, width, f"{name}s").astype(np.int64) + low
    if values.size and values.max() > 255:
        raise GeckoFormatError(f"{name}s: {name}_min + offset must be at most 255; got "
                               f"{int(values.max())}")
    return values.astype(np.uint8)
