"""Fixed mode: a zero mode, a base and a width code per group, then packed deltas (rule G4).

Zero modes: 0 the group has no zeros; 1 a mask of ``group_size`` bits marks the zeros, which
store nothing; 2 zeros are stored inline as delta 0 and every other lane as
exponent - base + 1; 3 every lane is zero and the group stores nothing more. The encoder
picks mode 2 over mode 1 only when it is strictly smaller.
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
# The smallest width code that holds each delta range 0..255.
CODE_OF_RANGE = np.searchsorted([(1 << w) - 1 for w in WIDTHS], np.arange(256)).astype(np.uint8)
_WIDTH_OF_RANGE = np.asarray(WIDTHS)[CODE_OF_RANGE]
# Bases are sent as base_min (uint8) and a width, then base - base_min per coded group.
_BASE_FRAME = struct.Struct("<BB")


def encode(lanes, zero_lanes):
    """Code (groups, group_size) uint8 exponent lanes with their zero mask."""
    group_size = lanes.shape[1]
    mode, base, span = _choose_modes(lanes, zero_lanes)
    coded = np.flatnonzero(mode != ALL_ZERO)
    masked = mode == MASKED
    masks = np.packbits(zero_lanes[masked], axis=1, bitorder="little")
    parts = [pack_fields(mode, ZERO_MODE_BITS), masks.tobytes()]
    parts += _encode_bases(base[coded])
    group_code = np.full(mode.size, 255, np.uint8)
    group_code[coded] = CODE_OF_RANGE[span[coded]]
    parts.append(pack_fields(group_code[coded], WIDTH_CODE_BITS))
    for code in range(1, len(WIDTHS)):
        members = np.flatnonzero(group_code == code)
        deltas = lanes[members] - base[members, None]
        inline = mode[members] == INLINE
        if inline.any():
            deltas[inline] += 1
            deltas[inline] *= ~zero_lanes[members][inline]
        keep = ~(zero_lanes[members] & masked[members, None])
        parts.append(pack_fields(np.compress(keep.ravel(), deltas.ravel()), WIDTHS[code]))
    return b"".join(parts)


def _choose_modes(lanes, zero_lanes):
    group_size = lanes.shape[1]
    zero_count = zero_lanes.sum(axis=1)
    base = np.where(zero_lanes, 255, lanes).min(axis=1)
    top = np.where(zero_lanes, 0, lanes).max(axis=1)
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
    base = np.zeros(group_count, np.uint16)
    base[coded] = _decode_bases(reader, coded.size)
    group_code = np.full(group_count, 255, np.uint8)
    group_code[coded] = read_plane(reader, coded.size, WIDTH_CODE_BITS, "width codes")
    lanes = np.zeros((group_count, group_size), np.uint8)
    for code, width in enumerate(WIDTHS):
        members = np.flatnonzero(group_code == code)
        member_mode = mode[members]
        stored = np.ones((members.size, group_size), bool)
        stored[member_mode == MASKED] = ~zero_lanes[members[member_mode == MASKED]]
        deltas = np.zeros(stored.shape, np.uint16)
        deltas[stored] = read_plane(reader, int(stored.sum()), width, f"deltas of width {width}")
        inline = member_mode == INLINE
        inline_zero = (deltas == 0) & inline[:, None]
        values = deltas + base[members, None] - inline[:, None]
        values[~stored | inline_zero] = 0
        if values.size and values.max() > 255:
            raise GeckoFormatError(f"deltas of width {width}: base + delta must be at most 255; "
                                   f"got {int(values.max())}")
        lanes[members] = values
        zero_lanes[members[inline]] = inline_zero[inline]
    return lanes, zero_lanes


def _read_masks(reader, mode, group_size):
    masked = np.flatnonzero(mode == MASKED)
    plane = reader.take(masked.size * group_size // 8, "zero masks")
    zero_lanes = np.zeros((mode.size, group_size), bool)
    zero_lanes[mode == ALL_ZERO] = True
    packed = np.frombuffer(plane, np.uint8).reshape(masked.size, group_size // 8)
    masks = np.unpackbits(packed, axis=1, bitorder="little").astype(bool)
    zero_count = masks.sum(axis=1)
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
    bases = read_plane(reader, count, width, "bases").astype(np.uint16) + low
    if bases.size and bases.max() > 255:
        raise GeckoFormatError(f"bases: base_min + offset must be at most 255; got "
                               f"{int(bases.max())}")
    return bases
