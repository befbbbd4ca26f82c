"""Group coding of an exponent plane: zero flags and masks, then fixed or entropy payloads.

Exponents are cut into groups of ``group_size`` consecutive values; the last group is padded
with zeros. Lanes marked in the zero mask store no exponent. Layouts are rules G2 to G5.
"""

import numpy as np

from reference.gecko import entropy
from reference.gecko.bitfields import pack_fields, padding_is_zero, plane_bytes, unpack_fields
from reference.gecko.errors import GeckoFormatError

# Width code c stores each exponent - base in WIDTHS[c] bits.
WIDTHS = (0, 1, 2, 3, 4, 5, 6, 8)
WIDTH_CODE_BITS = 3
# The smallest width code whose width holds each group range max - min, 0..255.
CODE_OF_RANGE = np.searchsorted(
    [(1 << w) - 1 for w in WIDTHS], np.arange(256), side="left"
).astype(np.uint8)
# Entropy chunks span 2048 lanes, so a chunk's bit length (at most 2048 * 12) fits in 16 bits.
CHUNK_LANES = 2048


def encode_groups(exponents, zeros, group_size, mode):
    """Code a flat uint8 exponent plane whose ``zeros`` lanes store nothing."""
    lanes, zero_lanes = _to_groups(exponents, zeros, group_size)
    flags = zero_lanes.any(axis=1)
    masks = np.packbits(zero_lanes[flags], axis=1, bitorder="little")
    occupied = ~zero_lanes.all(axis=1) if flags.any() else np.ones(flags.size, bool)
    parts = [pack_fields(flags, 1), masks.tobytes()]
    if mode == "fixed":
        parts += _encode_fixed(lanes[occupied], zero_lanes[occupied])
    else:
        parts += _encode_entropy(lanes, zero_lanes, occupied, group_size)
    return b"".join(parts)


def decode_groups(reader, count, group_size, mode):
    """Decode what :func:`encode_groups` wrote; returns flat exponents and the zero mask."""
    group_count = -(-count // group_size)
    _check_room(reader, group_count)
    zero_lanes = _read_zero_planes(reader, count, group_count, group_size)
    occupied = ~zero_lanes.all(axis=1)
    lanes = np.zeros(zero_lanes.shape, np.uint8)
    if mode == "fixed":
        lanes[occupied] = _decode_fixed(reader, zero_lanes[occupied])
    else:
        lanes[occupied] = _decode_entropy(reader, zero_lanes, occupied, group_size)
    return lanes.ravel()[:count], zero_lanes.ravel()[:count]


def _to_groups(exponents, zeros, group_size):
    count = exponents.size
    group_count = -(-count // group_size)
    if count == group_count * group_size:
        return exponents.reshape(-1, group_size), zeros.reshape(-1, group_size)
    lanes = np.zeros(group_count * group_size, np.uint8)
    lanes[:count] = exponents
    zero_lanes = np.ones(lanes.size, bool)
    zero_lanes[:count] = zeros
    return lanes.reshape(-1, group_size), zero_lanes.reshape(-1, group_size)


def _check_room(reader, group_count):
    # Every group costs at least one byte (a base or a mask of >= 8 bits), so this bound
    # rejects a header that claims more values than the stream can hold before any allocation.
    need = group_count + plane_bytes(group_count, 1)
    if need > reader.remaining:
        raise GeckoFormatError(
            f"header shape: {group_count} groups need at least {need} bytes after the header; "
            f"the stream has {reader.remaining}"
        )


def _read_zero_planes(reader, count, group_count, group_size):
    flag_plane = reader.take(plane_bytes(group_count, 1), "zero flags")
    if not padding_is_zero(flag_plane, group_count, 1):
        raise GeckoFormatError("zero flags: padding bits after the last flag must be zero; got "
                               f"last byte 0x{flag_plane[-1]:02x}")
    flags = unpack_fields(flag_plane, group_count, 1).astype(bool)
    flagged = int(flags.sum())
    masks = np.frombuffer(reader.take(flagged * group_size // 8, "zero masks"), np.uint8)
    zero_lanes = np.zeros((group_count, group_size), bool)
    zero_lanes[flags] = np.unpackbits(
        masks.reshape(flagged, group_size // 8), axis=1, bitorder="little"
    ).astype(bool)
    if not zero_lanes.ravel()[count:].all():
        raise GeckoFormatError(
            f"zero masks: the {group_count * group_size - count} padding lanes of the last "
            "group must be marked zero; some are not"
        )
    if flagged and not zero_lanes[flags].any(axis=1).all():
        group = int(np.flatnonzero(flags)[~zero_lanes[flags].any(axis=1)][0])
        raise GeckoFormatError(f"zero masks: a flagged group must mark at least one zero; "
                               f"group {group} marks none")
    return zero_lanes


def _encode_fixed(lanes, zero_lanes):
    base = np.where(zero_lanes, 255, lanes).min(axis=1)
    top = np.where(zero_lanes, 0, lanes).max(axis=1)
    codes = CODE_OF_RANGE[top - base]
    parts = [base.tobytes(), pack_fields(codes, WIDTH_CODE_BITS)]
    for code in range(1, len(WIDTHS)):
        members = np.flatnonzero(codes == code)
        deltas = (lanes[members] - base[members, None])[~zero_lanes[members]]
        parts.append(pack_fields(deltas, WIDTHS[code]))
    return parts


def _decode_fixed(reader, zero_lanes):
    group_count = zero_lanes.shape[0]
    base = np.frombuffer(reader.take(group_count, "group bases"), np.uint8)
    code_plane = reader.take(plane_bytes(group_count, WIDTH_CODE_BITS), "width codes")
    if not padding_is_zero(code_plane, group_count, WIDTH_CODE_BITS):
        raise GeckoFormatError("width codes: padding bits after the last code must be zero; "
                               f"got last byte 0x{code_plane[-1]:02x}")
    codes = unpack_fields(code_plane, group_count, WIDTH_CODE_BITS)
    lanes = np.zeros(zero_lanes.shape, np.uint8)
    for code, width in enumerate(WIDTHS):
        members = np.flatnonzero(codes == code)
        stored = ~zero_lanes[members]
        deltas = _read_plane(reader, int(stored.sum()), width, f"payload of width {width}")
        values = np.repeat(base[members], stored.sum(axis=1)).astype(np.uint16) + deltas
        if values.size and values.max() > 255:
            raise GeckoFormatError(f"payload of width {width}: base + delta must be at most "
                                   f"255; got {int(values.max())}")
        block = np.zeros((members.size, zero_lanes.shape[1]), np.uint8)
        block[stored] = values
        lanes[members] = block
    return lanes


def _read_plane(reader, count, width, what):
    plane = reader.take(plane_bytes(count, width), what)
    if not padding_is_zero(plane, count, width):
        raise GeckoFormatError(f"{what}: padding bits after the last field must be zero; "
                               f"got last byte 0x{plane[-1]:02x}")
    return unpack_fields(plane, count, width)


def _chunk_counts(zero_lanes, group_size):
    stored = group_size - zero_lanes.sum(axis=1)
    groups_per_chunk = CHUNK_LANES // group_size
    starts = np.arange(0, stored.size, groups_per_chunk)
    return np.add.reduceat(stored, starts) if stored.size else np.zeros(0, np.int64)


def _encode_entropy(lanes, zero_lanes, occupied, group_size):
    top = np.where(zero_lanes[occupied], 0, lanes[occupied]).max(axis=1)
    symbols = (top[:, None] - lanes[occupied])[~zero_lanes[occupied]]
    lengths = entropy.code_lengths(np.bincount(symbols, minlength=entropy.MAX_SYMBOLS))
    chunk_counts = _chunk_counts(zero_lanes, group_size)
    return [top.tobytes(), entropy.write_table(lengths),
            entropy.encode_chunks(symbols, chunk_counts, lengths)]


def _decode_entropy(reader, zero_lanes, occupied, group_size):
    stored = ~zero_lanes[occupied]
    top = np.frombuffer(reader.take(stored.shape[0], "group maxima"), np.uint8)
    lengths = entropy.read_table(reader)
    symbols = entropy.decode_chunks(reader, _chunk_counts(zero_lanes, group_size), lengths)
    top_lanes = np.repeat(top, stored.sum(axis=1))
    if (symbols > top_lanes).any():
        raise GeckoFormatError("entropy code stream: each symbol (group max - exponent) must be "
                               "at most its group max; found a larger one")
    lanes = np.zeros(stored.shape, np.uint8)
    lanes[stored] = top_lanes - symbols
    return lanes
