"""The fixed-mode writer: packs the planes of rule G4 as a :class:`FixedPlan` chose them."""

import numpy as np

from reference.gecko.bitfields import pack_fields
from reference.gecko.fixed_layout import (
    EXCEPTION_FRAME, INLINE, LARGEST, MASKED, REFERENCE_FRAME, WIDTH_CODE_BITS, WIDTHS,
    ZERO_MODE_BITS, delta_order_keys, lane_index_bits, masked_keeps,
)


def write(plan, lanes, zero_lanes):
    """Pack the fixed-mode body of (groups, group_size) lanes and zero mask under ``plan``.

    ``plan`` is :func:`reference.gecko.fixed_plan.plan` of the same lanes and zero mask.
    """
    mode, top, coded, codes, counts = plan.mode, plan.top, plan.coded, plan.codes, plan.counts
    count_bits, high_bits = plan.count_bits, plan.high_bits
    group_size = lanes.shape[1]
    masked = mode == MASKED
    masks = np.packbits(zero_lanes[masked], axis=1, bitorder="little")
    parts = [pack_fields(mode, ZERO_MODE_BITS), masks.tobytes()]
    parts.append(REFERENCE_FRAME.pack(plan.top_min, plan.top_width))
    parts.append(pack_fields(top[coded] - np.uint8(plan.top_min), plan.top_width))
    parts.append(pack_fields(codes, WIDTH_CODE_BITS))
    parts.append(EXCEPTION_FRAME.pack(count_bits, high_bits))
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
    assert exception_lanes.size == counts.sum(), "the plan counts every exception"
    for code in range(1, len(WIDTHS)):
        plane = values[blocks[2 * code] : blocks[2 * code + 1]].ravel()
        if code in keeps:
            masked_rows = values[blocks[2 * code + 1] : blocks[2 * code + 2]]
            plane = np.concatenate([plane, np.compress(keeps[code].ravel(), masked_rows.ravel())])
        parts.append(pack_fields(plane, WIDTHS[code]))
    parts.append(pack_fields(exception_lanes, lane_index_bits(group_size)))
    parts.append(pack_fields(highs, high_bits))
    return b"".join(parts)


def _split_exceptions(values, sorted_codes):
    # Returns the lane index and high part of every exception in delta-plane order, and
    # leaves the low bits in ``values``. Dropped lanes must contain 0.
    group_size = values.shape[1]
    largest = LARGEST.astype(np.uint8)[sorted_codes]
    position = np.flatnonzero(values > largest[:, None])
    row = position >> lane_index_bits(group_size)
    highs = values.ravel()[position] >> np.asarray(WIDTHS, np.uint8)[sorted_codes[row]]
    values &= largest[:, None]
    return (position & (group_size - 1)).astype(np.uint8), highs
