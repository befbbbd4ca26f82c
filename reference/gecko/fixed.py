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
_LARGEST = np.asarray([(1 << w) - 1 for w in WIDTHS], np.int64)
# The smallest width code that fits each value range 0..255.
CODE_OF_RANGE = np.searchsorted(_LARGEST, np.arange(256)).astype(np.uint8)
_WIDTH_OF_RANGE = np.asarray(WIDTHS)[CODE_OF_RANGE]
_WIDTHS32 = np.asarray(WIDTHS, np.int32)
_BIT_LENGTH = np.asarray([value.bit_length() for value in range(256)], np.int32)
# Tops are sent as top_min (uint8) and a width, then top - top_min per coded group.
_REFERENCE_FRAME = struct.Struct("<BB")
# The exception frame: the width of the per-group exception counts and of the high parts.
_EXCEPTION_FRAME = struct.Struct("<BB")
MAX_COUNT_BITS = 7
MAX_HIGH_BITS = 8
# The count widths and high widths that the encoder tries.
_ENCODER_COUNT_BITS = (1, 2, 3)
_ENCODER_HIGH_BITS = (1, 2)


def encode(lanes, zero_lanes):
    """Code (groups, group_size) uint8 exponent lanes with their zero mask.

    Zero lanes must hold exponent field 0, as they do in exponent streams and packed tensors.
    """
    group_size = lanes.shape[1]
    mode, top, value_range, zero_count, low_lanes = _choose_modes(lanes, zero_lanes)
    coded = np.flatnonzero(mode != ALL_ZERO)
    first_code = CODE_OF_RANGE[value_range[coded]]
    stored = np.where(mode[coded] == MASKED, group_size - zero_count[coded], group_size)
    over = _count_over(low_lanes, top, mode, first_code, coded)
    codes, counts, count_bits, high_bits = _choose_exceptions(first_code, value_range[coded],
                                                              stored, over, group_size)
    masked = mode == MASKED
    masks = np.packbits(zero_lanes[masked], axis=1, bitorder="little")
    parts = [pack_fields(mode, ZERO_MODE_BITS), masks.tobytes()]
    parts += _encode_tops(top[coded])
    parts.append(pack_fields(codes, WIDTH_CODE_BITS))
    parts.append(_EXCEPTION_FRAME.pack(count_bits, high_bits))
    parts.append(pack_fields(counts, count_bits))

    # The delta planes list the coded groups by width code. Within a code the groups without
    # a mask come first, so that only the masked groups' lanes need compressing.
    key = delta_order_keys(codes, mode[coded])
    by_key = np.argsort(key, kind="stable")
    order = coded[by_key]
    values = np.take(lanes, order, axis=0)
    np.subtract(top[order, None], values, out=values)
    inline = np.flatnonzero(mode[order] == INLINE)
    if inline.size:
        values[inline] += 1
        values[inline] *= ~np.take(zero_lanes, order[inline], axis=0)
    blocks = np.searchsorted(key[by_key], np.arange(2 * len(WIDTHS) + 1))
    keeps = masked_keeps(zero_lanes, order, blocks)
    exception_lanes = highs = np.zeros(0, np.uint8)
    if count_bits:
        for code, keep in keeps.items():
            # A zero lane contains top - 0, which must not read as an exception.
            values[blocks[2 * code + 1] : blocks[2 * code + 2]] *= keep.view(np.uint8)
        exception_lanes, highs = _split_exceptions(values, codes[by_key])
    for code in range(1, len(WIDTHS)):
        plane = values[blocks[2 * code] : blocks[2 * code + 1]].ravel()
        if code in keeps:
            masked_rows = values[blocks[2 * code + 1] : blocks[2 * code + 2]]
            plane = np.concatenate([plane, np.compress(keeps[code].ravel(), masked_rows.ravel())])
        parts.append(pack_fields(plane, WIDTHS[code]))
    parts.append(pack_fields(exception_lanes, lane_index_bits(group_size)))
    parts.append(pack_fields(highs, high_bits))
    return b"".join(parts)


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


def _choose_modes(lanes, zero_lanes):
    # Returns each group's zero mode, its top, the largest value one of its lanes stores, its
    # zero count, and the lanes transposed with every zero read as 255.
    group_size = lanes.shape[1]
    zero_count = count_zeros(zero_lanes)
    zero_bytes = zero_lanes.view(np.uint8)
    # Reducing along the short last axis is slow in numpy, so each array is transposed once
    # and reduced along its long contiguous rows.
    low_lanes = np.ascontiguousarray((lanes | (0 - zero_bytes)).T)
    low = low_lanes.min(axis=0)
    top = np.ascontiguousarray((lanes & (zero_bytes - 1)).T).max(axis=0)
    value_range = np.maximum(top.astype(np.int64) - low, 0)
    mode = np.full(lanes.shape[0], MASKED, np.uint8)
    mode[zero_count == 0] = NO_ZEROS
    mode[zero_count == group_size] = ALL_ZERO
    masked_bits = group_size + (group_size - zero_count) * _WIDTH_OF_RANGE[value_range]
    inline_bits = group_size * _WIDTH_OF_RANGE[np.minimum(value_range + 1, 255)]
    # Inline values go up to the range + 1, which must fit 8 bits.
    better = (mode == MASKED) & (value_range < 255) & (inline_bits < masked_bits)
    mode[better] = INLINE
    value_range[better] += 1
    return mode, top, value_range, zero_count, low_lanes


def _count_over(low_lanes, top, mode, first_code, coded):
    # The stored lanes of each coded group whose value does not fit the next narrower width
    # code: non-zero exponents below top - largest(code - 1), plus 1 in an inline group.
    # Zeros read as 255 in ``low_lanes``, and no threshold passes 255, so none is counted.
    narrower = np.maximum(first_code.astype(np.int64) - 1, 0)
    threshold = np.zeros(low_lanes.shape[1], np.int64)
    threshold[coded] = np.where(
        first_code > 0, top[coded] - _LARGEST[narrower] + (mode[coded] == INLINE), 0)
    # An inline group never has width code 1 (width 1 inline is never strictly smaller than
    # the mask), so the narrower code stores at least 1 and the threshold is at most 255.
    threshold = np.clip(threshold, 0, 255).astype(np.uint8)
    below = (low_lanes < threshold).view(np.uint8).sum(axis=0, dtype=np.uint8)
    return below[coded].astype(np.int64)


def _choose_exceptions(first_code, value_range, stored, over, group_size):
    # Rule G4: under each (count width, high width) pair, a group takes width code first - 1
    # with exceptions where that is strictly smaller. The pair with the smallest body wins,
    # and ties go to the narrower count width, then to the narrower high width.
    candidate = np.flatnonzero((first_code > 0) & (over > 0))
    if candidate.size == 0:
        return first_code, np.zeros(first_code.size, np.int64), 0, 0
    narrower = first_code[candidate].astype(np.intp) - 1
    narrow_width = _WIDTHS32.take(narrower)
    over_c = over[candidate].astype(np.intp)
    saving = stored[candidate].astype(np.int32) * (_WIDTHS32.take(narrower + 1) - narrow_width)
    high_needed = _BIT_LENGTH.take(value_range[candidate] >> narrow_width)
    index_bits = lane_index_bits(group_size)
    # Summing each high width's positive gains by exception count gives every pair's total.
    gains = {}
    sums = {}
    for high_bits in _ENCODER_HIGH_BITS:
        gain = saving - over_c.astype(np.int32) * (index_bits + high_bits)
        gain[high_needed > high_bits] = 0
        np.maximum(gain, 0, out=gain)
        gains[high_bits] = gain
        sums[high_bits] = np.bincount(over_c, weights=gain, minlength=1 << MAX_COUNT_BITS)
    best_gain, best = 0, (0, 0)
    for count_bits in _ENCODER_COUNT_BITS:
        for high_bits in _ENCODER_HIGH_BITS:
            total = int(sums[high_bits][: 1 << count_bits].sum()) - count_bits * first_code.size
            if total > best_gain:
                best_gain, best = total, (count_bits, high_bits)
    count_bits, high_bits = best
    codes = first_code.copy()
    counts = np.zeros(first_code.size, np.int64)
    if count_bits:
        chosen = candidate[(gains[high_bits] > 0) & (over_c < 1 << count_bits)]
        codes[chosen] -= 1
        counts[chosen] = over[chosen]
    return codes, counts, count_bits, high_bits


def _split_exceptions(values, sorted_codes):
    # Returns the lane index and high part of every exception in delta-plane order, and
    # leaves the low bits in ``values``. Dropped lanes must contain 0.
    group_size = values.shape[1]
    largest = _LARGEST.astype(np.uint8)[sorted_codes]
    position = np.flatnonzero(values > largest[:, None])
    row = position >> lane_index_bits(group_size)
    highs = values.ravel()[position] >> np.asarray(WIDTHS, np.uint8)[sorted_codes[row]]
    values &= largest[:, None]
    return (position & (group_size - 1)).astype(np.uint8), highs


def _encode_tops(tops):
    low = int(tops.min()) if tops.size else 0
    width = (int(tops.max()) - low).bit_length() if tops.size else 0
    return [_REFERENCE_FRAME.pack(low, width), pack_fields(tops - np.uint8(low), width)]


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
    count_bits, high_bits = reader.unpack(_EXCEPTION_FRAME, "exception frame")
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
    width = _WIDTHS32.take(sorted_codes.take(row))
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
    rows = np.flatnonzero(limit < _LARGEST[codes])
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
    low, width = reader.unpack(_REFERENCE_FRAME, f"{name} frame")
    if width > 8:
        raise GeckoFormatError(f"{name} frame: the {name} width must be at most 8; got {width}")
    values = read_plane(reader, count, width, f"{name}s").astype(np.int64) + low
    if values.size and values.max() > 255:
        raise GeckoFormatError(f"{name}s: {name}_min + offset must be at most 255; got "
                               f"{int(values.max())}")
    return values.astype(np.uint8)
