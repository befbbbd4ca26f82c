"""The fixed-mode body of version 1 streams, which this package still decodes (rule G4).

Version 1 sends each coded group's smallest exponent as its base and stores exponent - base
in every lane, with no exceptions. Encoders write version 2 (:mod:`reference.gecko.fixed`).
"""

import numpy as np

from reference.gecko.errors import GeckoFormatError
from reference.gecko.fixed import (
    ALL_ZERO, INLINE, MASKED, WIDTH_CODE_BITS, WIDTHS, ZERO_MODE_BITS, read_masks,
    read_reference_frame, stored_counts,
)
from reference.gecko.groups import read_plane


def decode(reader, group_count, group_size):
    """Decode (groups, group_size) lanes and zero mask of a version 1 fixed-mode body."""
    mode = read_plane(reader, group_count, ZERO_MODE_BITS, "zero modes")
    zero_lanes = read_masks(reader, mode, group_size)
    coded = np.flatnonzero(mode != ALL_ZERO)
    base = read_reference_frame(reader, coded.size, "base")
    codes = read_plane(reader, coded.size, WIDTH_CODE_BITS, "width codes")

    by_code = np.argsort(codes, kind="stable")
    order = coded[by_code]
    sorted_mode = mode[order]
    sorted_zeros = np.take(zero_lanes, order, axis=0)
    stored = stored_counts(sorted_mode, sorted_zeros, group_size)
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
