"""Entropy mode: every lane is one Huffman-coded symbol relative to its group's top (rule G5).

The body starts with top_max, the largest exponent, and a reference byte. With reference 0
each group's top, its largest non-zero exponent, is sent as top_max - top with one canonical
Huffman code (an all-zero group sends symbol 0). With reference 1 no tops are sent, and every
group's top is top_max. Each lane is then one symbol of a second code: 0 for a zero, and
1 + top - exponent otherwise. Zeros therefore cost as much as their share of the tensor makes
them cost, about one bit each when half the lanes are zero. Version 1 streams have no
reference byte and always send the tops.
"""

import numpy as np

from reference.gecko import huffman
from reference.gecko.errors import GeckoFormatError

GROUP_TOPS, TENSOR_TOP = 0, 1
# The encoder estimates both references on every SAMPLE_STEP-th group, starting at group 0,
# or on all groups when there are at most SAMPLE_ALL groups. A step prime to the powers of two
# keeps the sample from aliasing with the rows of a tensor.
SAMPLE_STEP = 31
SAMPLE_ALL = 8192


def encode(lanes, zero_lanes, reference=None):
    """Code (groups, group_size) uint8 exponent lanes with their zero mask.

    Zero lanes must hold exponent field 0, as they do in exponent streams and packed tensors.
    ``reference`` is GROUP_TOPS or TENSOR_TOP, or None to pick it on a sample of the groups.
    """
    top_max = int(lanes.max()) if lanes.size else 0
    if reference is None:
        step = 1 if lanes.shape[0] <= SAMPLE_ALL else SAMPLE_STEP
        tensor_top = _tensor_top_is_smaller(lanes[::step], zero_lanes[::step], top_max)
        reference = TENSOR_TOP if tensor_top else GROUP_TOPS
    if reference == TENSOR_TOP:
        top = np.full(lanes.shape[0], top_max, np.uint8)
        return bytes([top_max, TENSOR_TOP]) + huffman.write_code(
            _lane_symbols(lanes, zero_lanes, top, top_max).ravel())
    top = _group_tops(lanes, zero_lanes, top_max)
    return b"".join([
        bytes([top_max, GROUP_TOPS]),
        huffman.write_code(np.uint8(top_max) - top),
        huffman.write_code(_lane_symbols(lanes, zero_lanes, top, top_max).ravel()),
    ])


def _group_tops(lanes, zero_lanes, top_max):
    # The maxima of runs of 8 lanes, then pairwise maxima up to the group size. Reducing the
    # transposed copy along axis 0 measured 3x faster than lanes.max(axis=1) for groups of 32,
    # and a copy with rows of 8 lanes 2x faster than one with rows of 64.
    top = np.ascontiguousarray(lanes.reshape(-1, min(lanes.shape[1], 8)).T).max(axis=0)
    while top.size > lanes.shape[0]:
        top = np.maximum(top[0::2], top[1::2])
    # Only a group whose largest exponent field is 0 can be all zeros; it sends symbol 0.
    empty = np.flatnonzero(top == 0)
    empty = empty[zero_lanes[empty].all(axis=1)]
    top[empty] = top_max
    return top


def _lane_symbols(lanes, zero_lanes, top, top_max):
    if top_max < 255:
        # Every symbol is at most 1 + top_max <= 255, so uint8 arithmetic cannot wrap, and
        # the byte fast path of the Huffman coder applies.
        symbols = (top + np.uint8(1))[:, None] - lanes
    else:
        symbols = (top[:, None].astype(np.int16) + 1) - lanes
    symbols *= ~zero_lanes
    return symbols


def _tensor_top_is_smaller(lanes, zero_lanes, top_max):
    # Rule G5: compare the code lengths of the sampled groups' symbols under both references.
    if lanes.size == 0:
        return False
    top = _group_tops(lanes, zero_lanes, top_max)
    tensor_top = np.full(top.size, top_max, np.uint8)
    grouped = (_code_bits(_lane_symbols(lanes, zero_lanes, top, top_max))
               + _code_bits(np.uint8(top_max) - top))
    return _code_bits(_lane_symbols(lanes, zero_lanes, tensor_top, top_max)) < grouped


def _code_bits(symbols):
    # The bits of the optimal length-limited code of ``symbols``, without its table.
    counts = np.bincount(symbols.ravel(), minlength=1)
    return int((counts * huffman.code_lengths(counts)).sum())


def decode(reader, group_count, group_size, version):
    """Decode (groups, group_size) lanes and zero mask written by :func:`encode`.

    ``version`` is the stream's header version; version 1 has no reference byte.
    """
    (top_max,) = reader.take(1, "top max")
    reference = GROUP_TOPS
    if version >= 2:
        (reference,) = reader.take(1, "reference")
        if reference not in (GROUP_TOPS, TENSOR_TOP):
            raise GeckoFormatError(f"reference: must be {GROUP_TOPS} (group tops) or "
                                   f"{TENSOR_TOP} (tensor top); got {reference}")
    if reference == TENSOR_TOP:
        top = np.full(group_count, top_max, np.int16)
    else:
        top_symbols = huffman.read_code(reader, group_count, "group maxima")
        if top_symbols.size and top_symbols.max() > top_max:
            raise GeckoFormatError(f"group maxima: each symbol top_max - top must be at most "
                                   f"top_max {top_max}; got {int(top_symbols.max())}")
        top = top_max - top_symbols.astype(np.int16)
    symbols = huffman.read_code(reader, group_count * group_size, "lanes")
    symbols = symbols.reshape(group_count, group_size)
    zero_lanes = symbols == 0
    if symbols.dtype == np.uint8:
        exponents, too_large = _byte_exponents(symbols, zero_lanes, top.astype(np.uint8))
    else:
        largest = np.ascontiguousarray(symbols.T).max(axis=0) if symbols.size else top
        too_large = (largest > top + 1).any()
        exponents = (top[:, None] + 1 - symbols.astype(np.int16)).astype(np.uint8)
        exponents *= ~zero_lanes
    if too_large:
        raise GeckoFormatError("lanes: each symbol 1 + top - exponent must be at most 1 + top, "
                               "so that the exponent is at least 0; found a larger one")
    return exponents, zero_lanes


def _byte_exponents(symbols, zero_lanes, top):
    # Returns (exponents, whether some symbol exceeds 1 + top). In uint8, top + 1 - symbol
    # is the exponent for a symbol of at most top + 1. A larger symbol, at most 255, wraps to
    # 256 + top + 1 - symbol, which is above top, so one comparison with top finds it without
    # a per-group maximum. Symbol 0 with top 255 wraps as well, but zero lanes are cleared
    # before the comparison.
    exponents = (top + np.uint8(1))[:, None] - symbols
    exponents *= ~zero_lanes
    return exponents, bool((exponents > top[:, None]).any())
