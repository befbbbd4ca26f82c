"""The entropy-mode group size and reference, chosen from symbol counts on a sample (rule G5).

For each group size and both references, the encoder predicts the size of the entropy-mode
body from symbol counts on a sample of blocks of 64 lanes. A block contains whole groups of
every size. The encoder then encodes once with the smallest prediction. The code bits of a
stream are sum(count * length) over the optimal length-limited code of its counts, so on a
sample of every block the prediction is the exact body size. On a sparser sample it is an
estimate.
"""

import numpy as np

from reference.gecko import huffman, multisymbol
from reference.gecko.entropy import GROUP_TOPS, TENSOR_TOP
from reference.gecko.header import GROUP_SIZES

BLOCK = max(GROUP_SIZES)
# Every block is sampled when there are at most SAMPLE_ALL. Otherwise every s-th block is,
# starting at block 0, where s is the smallest odd number of at least blocks / SAMPLE_ALL, and
# at most MAX_SAMPLE_STEP. An odd step is prime to the powers of two, which keeps the sample
# from aliasing with the rows of a tensor. On the bench tensors of docs/benchmarks.md, samples
# of 342 to 1024 blocks chose streams as small as counts over every block did, and the choice
# took 0.3 to 1 ms per tensor.
SAMPLE_ALL = 1024
MAX_SAMPLE_STEP = 31
# Ties go to the group size that codes fastest: 32, then 16, 64 and 8, as measured on the
# bench tensors of docs/benchmarks.md. A tie is common, because a body under the tensor top
# differs between group sizes only in its padding lanes.
TIE_ORDER = (32, 16, 64, 8)


def choose(exponents, zeros):
    """Return (group size, reference) whose predicted entropy-mode body is smallest.

    ``exponents`` is the flat uint8 plane and ``zeros`` its zero mask; zero lanes hold 0.
    Ties go to the group size earliest in TIE_ORDER, then to group tops.
    """
    sizes = predicted_bits(exponents, zeros)
    return min(sizes, key=lambda choice: (sizes[choice], TIE_ORDER.index(choice[0]),
                                          choice[1]))


def predicted_bits(exponents, zeros):
    """Return {(group size, reference): predicted bits of the entropy-mode body}."""
    count = exponents.size
    blocks, zero_blocks, step = _sample(exponents, zeros)
    top_max = int(exponents.max()) if count else 0
    sampled = blocks.size
    # A sample of every block counts the tensor and the padding of its last block to 64 lanes,
    # so the zero lanes and all-zero groups beyond padding to the group size come out of the
    # counts. A sparser sample counts no padding: its counts are scaled to the tensor's lanes,
    # and the padding to the group size goes in as zero lanes.
    factor = 1.0 if step == 1 or sampled == 0 else count / sampled
    covered = sampled if step == 1 else count
    tensor_counts = _counts(_lane_symbols(blocks, zero_blocks, np.uint8(top_max), top_max))
    # Under the tensor top the counts differ between group sizes only by padding, so the
    # cost of equal counts is computed once.
    tensor_bits = {}
    predictions = {}
    for group_size, top in zip(GROUP_SIZES, _group_tops(blocks, zero_blocks, top_max)):
        group_count = -(-count // group_size)
        padding = group_count * group_size - covered

        tensor = _scaled(tensor_counts, factor, padding)
        key = tensor.tobytes()
        if key not in tensor_bits:
            tensor_bits[key] = _stream_bits(tensor, group_count * group_size)
        predictions[group_size, TENSOR_TOP] = 16 + tensor_bits[key]

        lanes = _counts(_lane_symbols(blocks.reshape(-1, group_size),
                                      zero_blocks.reshape(-1, group_size), top[:, None],
                                      top_max))
        lanes = _scaled(lanes, factor, padding)
        maxima = _scaled(_counts(np.uint8(top_max) - top), factor,
                         padding // group_size if step == 1 else 0)
        predictions[group_size, GROUP_TOPS] = (
            16 + _stream_bits(lanes, group_count * group_size)
            + _stream_bits(maxima, group_count))
    return predictions


def _sample(exponents, zeros):
    # Returns (blocks, zero blocks, step), each block a row of BLOCK lanes.
    block_count = -(-exponents.size // BLOCK)
    if block_count <= SAMPLE_ALL:
        lanes = np.zeros(block_count * BLOCK, np.uint8)
        lanes[: exponents.size] = exponents
        zero_lanes = np.ones(lanes.size, bool)
        zero_lanes[: exponents.size] = zeros
        return lanes.reshape(-1, BLOCK), zero_lanes.reshape(-1, BLOCK), 1
    # Only whole blocks are sampled, so the last partial block is left out.
    step = min(-(-block_count // SAMPLE_ALL) | 1, MAX_SAMPLE_STEP)
    whole = exponents.size // BLOCK * BLOCK
    # One contiguous copy, because every group size reshapes the sample again.
    lanes = np.ascontiguousarray(exponents[:whole].reshape(-1, BLOCK)[::step])
    zero_lanes = np.ascontiguousarray(zeros[:whole].reshape(-1, BLOCK)[::step])
    return lanes, zero_lanes, step


def _group_tops(blocks, zero_blocks, top_max):
    # Yields the tops of the groups of each size in GROUP_SIZES order, from the tops of the
    # groups of 8 by pairwise maxima. An all-zero group takes top_max, as the encoder sets it.
    smallest = GROUP_SIZES[0]
    top = np.ascontiguousarray(blocks.reshape(-1, smallest).T).max(axis=0)
    empty = zero_blocks.reshape(-1, smallest).all(axis=1)
    for group_size in GROUP_SIZES:
        if group_size != smallest:
            top = np.maximum(top[0::2], top[1::2])
            empty = empty[0::2] & empty[1::2]
        yield np.where(empty, np.uint8(top_max), top)


def _lane_symbols(lanes, zero_lanes, top, top_max):
    # The lane symbols of rule G5: 0 for a zero, else 1 + top - exponent.
    if top_max < 255:
        symbols = (top + np.uint8(1)) - lanes
    else:
        symbols = (np.asarray(top).astype(np.int16) + 1) - lanes
    symbols *= ~zero_lanes
    return symbols


def _counts(symbols):
    symbols = np.ascontiguousarray(symbols).ravel()
    if symbols.dtype != np.uint8:
        return np.bincount(symbols, minlength=1)
    return multisymbol.byte_counts(symbols, multisymbol.byte_pairs(symbols))


def _scaled(counts, factor, zeros):
    # Counts times ``factor``, rounded, with ``zeros`` more (or fewer) of symbol 0.
    if factor != 1.0:
        counts = np.rint(counts * factor).astype(np.int64)
    else:
        counts = counts.copy()
    counts[0] += zeros
    return counts


def _stream_bits(counts, symbol_count):
    # Bits of huffman.write_code for ``symbol_count`` symbols with these counts: the table,
    # one uint16 per chunk, and the codes padded to whole bytes.
    used = np.flatnonzero(counts)
    table_size = int(used[-1]) + 1 if used.size else 0
    chunks = -(-symbol_count // huffman.CHUNK_SYMBOLS)
    code_bytes = -(-code_bits_of(counts) // 8)
    return 16 + 8 * (-(-table_size // 2)) + 16 * chunks + 8 * code_bytes


def code_bits_of(counts, limit=huffman.LENGTH_LIMIT):
    """Return sum(count * length) over the optimal code of at most ``limit`` bits for ``counts``.

    This is the cost of the code that :func:`reference.gecko.huffman.code_lengths` builds.
    Package-merge selects the 2n - 2 lightest items of its last list, where n counts the used
    symbols. Each selected item adds one bit to every symbol it contains, so the cost is the
    summed weight of those items, and tracking weights alone is enough.
    """
    coins = sorted(int(count) for count in counts if count)
    if len(coins) <= 1:
        # A lone symbol gets a 1-bit code.
        return coins[0] if coins else 0
    items = coins
    for _ in range(limit - 1):
        packages = [a + b for a, b in zip(items[0::2], items[1::2])]
        items = sorted(coins + packages)
    return sum(items[: 2 * len(coins) - 2])
