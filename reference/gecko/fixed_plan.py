"""The fixed-mode encoder's choices (rule G4), and the body size that follows from them.

:func:`plan` picks each group's zero mode, top, width code and exceptions, and the tensor's
top frame and exception frame. Those choices fix the length of every plane, so
:func:`planned_size` returns the body's byte length without packing any plane, and
:func:`reference.gecko.fixed_writer.write` packs the body itself.
"""

import dataclasses

import numpy as np

from reference.gecko.bitfields import plane_bytes
from reference.gecko.fixed_layout import (
    ALL_ZERO, EXCEPTION_FRAME, INLINE, LARGEST, MASKED, MAX_COUNT_BITS, NO_ZEROS,
    REFERENCE_FRAME, WIDTH_CODE_BITS, WIDTHS, WIDTHS32, ZERO_MODE_BITS, count_zeros,
    lane_index_bits,
)

# The smallest width code that fits each value range 0..255.
CODE_OF_RANGE = np.searchsorted(LARGEST, np.arange(256)).astype(np.uint8)
_WIDTH_OF_RANGE = np.asarray(WIDTHS)[CODE_OF_RANGE]
_BIT_LENGTH = np.asarray([value.bit_length() for value in range(256)], np.int32)
# The count widths and high widths that the encoder tries.
_ENCODER_COUNT_BITS = (1, 2, 3)
_ENCODER_HIGH_BITS = (1, 2)


@dataclasses.dataclass(frozen=True)
class FixedPlan:
    """The choices of a fixed-mode body over (groups, group_size) lanes.

    Per-group arrays have one entry per group; per-coded arrays one per group of mode 0, 1 or
    2, in group order.
    """

    group_size: int
    mode: np.ndarray  # uint8 zero mode per group
    top: np.ndarray  # uint8 largest non-zero exponent per group, 0 in an all-zero group
    coded: np.ndarray  # indices of the coded groups
    top_min: int
    top_width: int  # bits of each top - top_min
    codes: np.ndarray  # width code per coded group
    stored: np.ndarray  # int64 lanes that store a delta, per coded group
    counts: np.ndarray  # int64 exceptions per coded group
    count_bits: int
    high_bits: int


def plan(lanes, zero_lanes):
    """Choose the fixed-mode coding of (groups, group_size) uint8 lanes with their zero mask.

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
    top_min, top_width = _top_frame(top[coded])
    return FixedPlan(group_size, mode, top, coded, top_min, top_width, codes, stored, counts,
                     count_bits, high_bits)


def planned_size(plan):
    """Return the byte length of the body that ``plan`` codes to, from the plane lengths."""
    group_size = plan.group_size
    coded_count = plan.coded.size
    masked_count = int(np.count_nonzero(plan.mode == MASKED))
    size = plane_bytes(plan.mode.size, ZERO_MODE_BITS) + masked_count * group_size // 8
    size += REFERENCE_FRAME.size + plane_bytes(coded_count, plan.top_width)
    size += plane_bytes(coded_count, WIDTH_CODE_BITS)
    size += EXCEPTION_FRAME.size + plane_bytes(coded_count, plan.count_bits)
    # Each delta plane contains the stored lanes of the groups of its code.
    lanes_of_code = np.bincount(plan.codes, weights=plan.stored, minlength=len(WIDTHS))
    for code in range(1, len(WIDTHS)):
        size += plane_bytes(int(lanes_of_code[code]), WIDTHS[code])
    exceptions = int(plan.counts.sum())
    size += plane_bytes(exceptions, lane_index_bits(group_size))
    return size + plane_bytes(exceptions, plan.high_bits)


def _top_frame(tops):
    # Returns top_min and the width of top - top_min over the coded groups' tops.
    low = int(tops.min()) if tops.size else 0
    width = (int(tops.max()) - low).bit_length() if tops.size else 0
    return low, width


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
        first_code > 0, top[coded] - LARGEST[narrower] + (mode[coded] == INLINE), 0)
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
    narrow_width = WIDTHS32.take(narrower)
    over_c = over[candidate].astype(np.intp)
    saving = stored[candidate].astype(np.int32) * (WIDTHS32.take(narrower + 1) - narrow_width)
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
