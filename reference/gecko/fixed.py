"""Fixed mode: a zero mode, a base and a width code per group, then packed deltas (rule G4).

Each group has one of four zero modes. Mode 0: the group has no zeros. Mode 1: a mask of
``group_size`` bits marks the zeros, which store nothing. Mode 2: zeros are stored inline as
delta 0, and every other lane as exponent - base + 1. Mode 3: every lane is zero, and the group
stores nothing more. The encoder picks mode 2 over mode 1 only when it is strictly smaller.
"""

import struct

import numpy as np

from reference.gecko.bitfields import pack_fields
from reference.gecko.errors import GeckoFormatError
from reference.gecko.groups import read_plane

NO_ZEROS, MASKED, INLINE, ALL_ZERO = range(4)
ZERO_MODE_BITS = 2
# Width code c stores each delta in WIDTHS[c] bits.
WIDTHS = (0, 1, 2, 3, 4, 5, 6, 8)
WIDTH_CODE_BITS = 3
# The smallest width code that fits each delta range 0..255.
CODE_OF_RANGE = np.searchsorted([(1 << w) - 1 for w in WIDTHS], np.arange(256)).astype(np.uint8)
_WIDTH_OF_RANGE = np.asarray(WIDTHS)[CODE_OF_RANGE]
# Bases are sent as base_min (uint8) and a width, then base - base_min per coded group.
_BASE_FRAME = struct.Struct("<BB")


def encode(lanes, zero_lanes):
    """Code (groups, group_size) uint8 exponent lanes with their zero mask."""
    mode, base, span = _choose_modes(lanes, zero_lanes)
    masked = mode == MASKED
    masks = np.packbits(zero_lanes[masked], axis=1, bitorder="little")
    parts = [pack_fields(mode, ZERO_MODE_BITS), masks.tobytes()]
    coded = np.flatnonzero(mode != ALL_ZERO)
    parts += _encode_bases(base[coded])
    codes = CODE_OF_RANGE[span[coded]]
    parts.append(pack_fields(codes, WIDTH_CODE_BITS))

    # The delta planes list the coded groups ordered by width code, then by group index.
    by_code = np.argsort(codes, kind="stable")
    order = coded[by_code]
    deltas = np.take(lanes, order, axis=0)
    deltas -= base[order, None]
    sorted_zeros = np.take(zero_lanes, order, axis=0)
    inline = np.flatnonzero(mode[order] == INLINE)
    if inline.size:
        deltas[inline] += 1
        deltas[inline] *= ~sorted_zeros[inline]
    if masked.any():
        keep = ~(sorted_zeros & masked[order, None])
        values = np.compress(keep.ravel(), deltas.ravel())
    else:
        values = deltas.ravel()
    stored = _stored_counts(mode[order], sorted_zeros, lanes.shape[1])
    group_bounds = np.searchsorted(codes[by_code], np.arange(len(WIDTHS) + 1))
    value_bounds = np.concatenate(([0], np.cumsum(stored)))[group_bounds]
    for code in range(1, len(WIDTHS)):
        plane = values[value_bounds[code] : value_bounds[code + 1]]
        parts.append(pack_fields(plane, WIDTHS[code]))
    return b"".join(parts)


def count_zeros(zero_lanes):
    """Return the number of zero lanes in each row of a (groups, group_size) bool array."""
    # Adding the rows' bytes as uint64 words keeps each byte's sum below 8, and multiplying by
    # 0x0101010101010101 gathers the eight byte sums (at most 64) into the top byte.
    words = np.ascontiguousarray(zero_lanes).view(np.uint64)
    total = words[:, 0].copy()
    for column in range(1, words.shape[1]):
        total += words[:, column]
    return ((total * np.uint64(0x0101010101010101)) >> np.uint64(56)).astype(np.int64)


def _stored_counts(mode, zero_lanes, group_size):
    # Lanes that store a delta: all of them, except the zeros of masked groups.
    counts = np.full(mode.size, group_size, np.int64)
    masked = np.flatnonzero(mode == MASKED)
    counts[masked] -= count_zeros(zero_lanes[masked])
    return counts


def _choose_modes(lanes, zero_lanes):
    group_size = lanes.shape[1]
    zero_count = count_zeros(zero_lanes)
    zero_bytes = zero_lanes.view(np.uint8)
    # A zero lane reads as 255 for the minimum and as 0 for the maximum. Reducing along the
    # short last axis is slow in numpy, so each array is transposed once and reduced
    # along its long contiguous rows.
    base = np.ascontiguousarray((lanes | (0 - zero_bytes)).T).min(axis=0)
    top = np.ascontiguousarray((lanes & (zero_bytes - 1)).T).max(axis=0)
    span = np.maximum(top.astype(np.int64) - base, 0)
    mode = np.full(lanes.shape[0], MASKED, np.uint8)
    mode[zero_count == 0] = NO_ZEROS
    mode[zero_count == group_size] = ALL_ZERO
    masked_bits = group_size + (group_size - zero_count) * _WIDTH_OF_RANGE[span]
    inline_bits = group_size * _WIDTH_OF_RANGE[np.minimum(span + 1, 255)]
    # Inline deltas go up to span + 1, which must fit 8 bits.
    better = (mode == MASKED) & (span < 255) & (inline_bits < masked_bits)
    mode[better] = INLINE
    span[better] += 1
    return mode, base, span


def _encode_bases(bases):
    low = int(bases.min()) if bases.size else 0
    width = (int(bases.max()) - low).bit_length() if bases.size else 0
    return [_BASE_FRAME.pack(low, width), pack_fields(bases - np.uint8(low), width)]


def decode(reader, group_count, group_size):
    """Decode (groups, group_size) lanes and zero mask written by :func:`encode`."""
    mode = read_plane(reader, group_count, ZERO_MODE_BITS, "zero modes")
    zero_lanes = _read_masks(reader, mode, group_size)
    coded = np.flatnonzero(mode != ALL_ZERO)
    base = _decode_bases(reader, coded.size)
    codes = read_plane(reader, coded.size, WIDTH_CODE_BITS, "width codes")

    by_code = np.argsort(codes, kind="stable")
    order = coded[by_code]
    sorted_mode = mode[order]
    sorted_zeros = np.take(zero_lanes, order, axis=0)
    stored = _stored_counts(sorted_mode, sorted_zeros, group_size)
    group_bounds = np.searchsorted(codes[by_code], np.arange(len(WIDTHS) + 1))
    value_bounds = np.concatenate(([0], np.cumsum(stored)))[group_bounds]
    values = np.zeros(int(value_bounds[-1]), np.uint8)
    for code, width in enumerate(WIDTHS):
        start, end = value_bounds[code], value_bounds[code + 1]
        values[start:end] = read_plane(reader, int(end - start), width, f"deltas of width {width}")

    masked = sorted_mode == MASKED
    if masked.any():
        keep = ~(sorted_zeros & masked[:, None])
        deltas = np.zeros((order.size, group_size), np.uint8)
        deltas.ravel()[np.flatnonzero(keep)] = values
    else:
        deltas = values.reshape(order.size, group_size)
    sorted_base = base[by_code]
    sorted_width = np.asarray(WIDTHS, np.int64)[codes[by_code]]
    _check_no_overflow(deltas, sorted_base, sorted_width, sorted_mode)
    exponents = deltas + sorted_base[:, None]
    if masked.any():
        exponents *= keep.view(np.uint8)
    inline = np.flatnonzero(sorted_mode == INLINE)
    if inline.size:
        exponents[inline], zero_lanes[order[inline]] = _decode_inline(deltas[inline],
                                                                      sorted_base[inline])

    lanes = np.zeros((group_count, group_size), np.uint8)
    unsorted = np.empty_like(by_code)
    unsorted[by_code] = np.arange(by_code.size)
    lanes[coded] = np.take(exponents, unsorted, axis=0)
    return lanes, zero_lanes


def _check_no_overflow(deltas, base, width, mode):
    # Only groups whose base plus the largest delta of their width passes 255 can overflow,
    # so only those rows are read. Inline groups subtract 1 and are checked on their own.
    suspect = np.flatnonzero((base.astype(np.int64) + (1 << width) - 1 > 255) & (mode != INLINE))
    if suspect.size == 0:
        return
    largest = deltas[suspect].max(axis=1).astype(np.int64) + base[suspect]
    if largest.max() > 255:
        raise GeckoFormatError(f"deltas: base + delta must be at most 255; got "
                               f"{int(largest.max())}")


def _decode_inline(deltas, base):
    # Delta 0 is a zero; otherwise exponent = base + delta - 1, which must be at most 255.
    zeros = deltas == 0
    exponents = deltas.astype(np.int16) + base[:, None] - 1
    if (exponents > 255).any():
        raise GeckoFormatError(f"deltas: base + delta - 1 of an inline group must be at most "
                               f"255; got {int(exponents.max())}")
    exponents[zeros] = 0
    return exponents.astype(np.uint8), zeros


def _read_masks(reader, mode, group_size):
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


def _decode_bases(reader, count):
    low, width = reader.unpack(_BASE_FRAME, "base frame")
    if width > 8:
        raise GeckoFormatError(f"base frame: the base width must be at most 8; got {width}")
    bases = read_plane(reader, count, width, "bases").astype(np.int64) + low
    if bases.size and bases.max() > 255:
        raise GeckoFormatError(f"bases: base_min + offset must be at most 255; got "
                               f"{int(bases.max())}")
    return bases.astype(np.uint8)
