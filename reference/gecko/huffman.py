"""Canonical Huffman coding of small unsigned symbols, decoded in independent chunks.

One static code per tensor: the code lengths are sent as a table, codes are canonical
(shorter codes first, ties by symbol value, as in DEFLATE) and are written least significant
bit first with the first code bit lowest. The stream is cut into chunks whose bit lengths
are sent up front, so a decoder can run all chunks side by side (rule G5).

>>> lengths = code_lengths(np.bincount([0, 0, 0, 1, 2]))
>>> lengths.tolist()
[1, 2, 2]
>>> canonical_codes(lengths).tolist()
[0, 2, 3]
"""

import heapq
import struct

import numpy as np

from reference.gecko.bitfields import pack_at, plane_bytes
from reference.gecko.errors import GeckoFormatError

LENGTH_LIMIT = 12
MAX_SYMBOLS = 256
_TABLE_SIZE = struct.Struct("<H")


def code_lengths(counts, limit=LENGTH_LIMIT):
    """Return optimal code lengths of at most ``limit`` bits for symbol ``counts``.

    Uses package-merge (Larmore and Hirschberg, 1990), which is optimal under the limit.
    A lone used symbol gets length 1; unused symbols get 0.
    """
    counts = np.asarray(counts, np.int64)
    used = np.flatnonzero(counts)
    lengths = np.zeros(counts.size, np.uint8)
    if used.size == 1:
        lengths[used] = 1
    if used.size <= 1:
        return lengths
    if used.size > 1 << limit:
        raise ValueError(f"code_lengths: at most {1 << limit} symbols fit {limit}-bit codes; "
                         f"got {used.size}")
    # An item is (weight, order, symbols it contains); order makes ties deterministic.
    coins = [(int(counts[s]), i, (int(s),)) for i, s in enumerate(used)]
    coins.sort()
    items = coins
    for _ in range(limit - 1):
        packages = [
            (a[0] + b[0], a[1], a[2] + b[2]) for a, b in zip(items[0::2], items[1::2])
        ]
        items = list(heapq.merge(coins, packages))
    for _, _, symbols in items[: 2 * used.size - 2]:
        for symbol in symbols:
            lengths[symbol] += 1
    return lengths


def canonical_codes(lengths):
    """Return the canonical code of each symbol, most significant code bit first."""
    lengths = np.asarray(lengths, np.int64)
    codes = np.zeros(lengths.size, np.uint32)
    code = 0
    previous = 0
    for symbol in np.lexsort((np.arange(lengths.size), lengths)):
        length = int(lengths[symbol])
        if length == 0:
            continue
        code <<= length - previous
        codes[symbol] = code
        code += 1
        previous = length
    return codes


def reversed_codes(lengths):
    """Return each canonical code with its ``length`` bits reversed, ready for LSB-first output."""
    codes = canonical_codes(lengths).astype(np.int64)
    lengths = np.asarray(lengths, np.int64)
    flipped = np.zeros_like(codes)
    for bit in range(LENGTH_LIMIT):
        # Code bits at or above the code's length are zero, so clamping their target is safe.
        flipped |= ((codes >> bit) & 1) << np.maximum(lengths - 1 - bit, 0)
    return flipped.astype(np.uint32)


def write_table(lengths):
    """Serialize code lengths: a uint16 symbol count T, then T 4-bit lengths, low nibble first."""
    used = np.flatnonzero(lengths)
    size = int(used[-1]) + 1 if used.size else 0
    nibbles = np.zeros(2 * plane_bytes(size, 4), np.uint8)
    nibbles[:size] = lengths[:size]
    return _TABLE_SIZE.pack(size) + (nibbles[0::2] | nibbles[1::2] << 4).tobytes()


def read_table(reader):
    """Parse and validate a code length table; rejects codes that do not form a prefix code."""
    (size,) = reader.unpack(_TABLE_SIZE, "entropy table size")
    if size > MAX_SYMBOLS:
        raise GeckoFormatError(f"entropy table size: must be at most {MAX_SYMBOLS}; got {size}")
    packed = np.frombuffer(reader.take(plane_bytes(size, 4), "entropy table"), np.uint8)
    nibbles = np.stack([packed & 15, packed >> 4], axis=1).ravel()
    if nibbles[size:].any():
        raise GeckoFormatError("entropy table: the unused last nibble must be zero; got "
                               f"{int(nibbles[-1])}")
    lengths = nibbles[:size]
    if lengths.max(initial=0) > LENGTH_LIMIT:
        raise GeckoFormatError(f"entropy table: code lengths must be at most {LENGTH_LIMIT}; "
                               f"got {int(lengths.max())}")
    kraft = sum(1 << (LENGTH_LIMIT - int(n)) for n in lengths if n)
    if kraft > 1 << LENGTH_LIMIT:
        raise GeckoFormatError(
            f"entropy table: lengths must satisfy the Kraft inequality (sum of 2**-length <= 1); "
            f"got {kraft / (1 << LENGTH_LIMIT)}"
        )
    return lengths


def encode_chunks(symbols, chunk_counts, lengths):
    """Code ``symbols``; returns the uint16 bit length of each chunk, then the code stream."""
    symbol_lengths = lengths[symbols].astype(np.int64)
    ends = np.cumsum(symbol_lengths)
    chunk_ends = np.concatenate(([0], ends))[np.cumsum(chunk_counts, dtype=np.int64)]
    chunk_bits = np.diff(chunk_ends, prepend=0)
    prefix = chunk_bits.astype("<u2").tobytes()
    if symbols.size == 0:
        return prefix
    codes = reversed_codes(lengths)[symbols]
    stream = pack_at(codes, ends - symbol_lengths, symbol_lengths)
    return prefix + stream[: plane_bytes(int(ends[-1]), 1)]


def decode_chunks(reader, chunk_counts, lengths):
    """Decode the chunked stream that :func:`encode_chunks` writes; returns uint8 symbols."""
    chunk_bits = np.frombuffer(
        reader.take(2 * chunk_counts.size, "entropy chunk lengths"), "<u2"
    ).astype(np.int64)
    total_bits = int(chunk_bits.sum())
    stream = reader.take(plane_bytes(total_bits, 1), "entropy code stream")
    if total_bits % 8 and stream[-1] >> (total_bits % 8):
        raise GeckoFormatError("entropy code stream: padding bits after the last code must be "
                               f"zero; got last byte 0x{stream[-1]:02x}")
    symbol_count = int(chunk_counts.sum())
    if symbol_count == 0:
        if total_bits:
            raise GeckoFormatError(f"entropy chunk lengths: no symbols to decode, so they must "
                                   f"sum to 0 bits; got {total_bits}")
        return np.zeros(0, np.uint8)
    if total_bits < symbol_count:
        raise GeckoFormatError(f"entropy code stream: {symbol_count} symbols need at least "
                               f"{symbol_count} bits; got {total_bits}")
    if not lengths.any():
        raise GeckoFormatError(f"entropy table: {symbol_count} symbols need a non-empty code "
                               "table; got no code lengths")
    return _decode_lockstep(stream, chunk_bits, chunk_counts, _decode_table(lengths))


def _decode_table(lengths):
    # Entry for every LENGTH_LIMIT-bit window: symbol in the low byte, code length above it;
    # windows that start with no code keep length 0.
    table = np.zeros(1 << LENGTH_LIMIT, np.uint16)
    codes = reversed_codes(lengths)
    for symbol in np.flatnonzero(lengths):
        length = int(lengths[symbol])
        table[int(codes[symbol]) :: 1 << length] = symbol | length << 8
    return table


def _decode_lockstep(stream, chunk_bits, chunk_counts, table):
    # Chunks are independent, so step t decodes the t-th symbol of every chunk that has one.
    # Ordering chunks by symbol count, longest first, makes the active chunks a prefix.
    order = np.argsort(-chunk_counts, kind="stable")
    counts = chunk_counts[order]
    starts = (np.cumsum(chunk_bits) - chunk_bits)[order]
    first_symbol = (np.cumsum(chunk_counts) - chunk_counts)[order]
    steps = int(counts[0])
    # A window of 24 bits starting at every byte; the padding covers positions that a
    # corrupt stream may push past its end (at most LENGTH_LIMIT bits per step).
    padded = np.zeros(len(stream) + plane_bytes(steps * LENGTH_LIMIT, 1) + 4, np.uint32)
    padded[: len(stream)] = np.frombuffer(stream, np.uint8)
    windows = padded[:-2] | padded[1:-1] << 8 | padded[2:] << 16
    active = np.searchsorted(-counts, -np.arange(steps), side="left")
    entries = np.zeros(int(chunk_counts.sum()), np.uint16)
    position = starts.copy()
    window_mask = (1 << LENGTH_LIMIT) - 1
    for step in range(steps):
        live = active[step]
        at = position[:live]
        entry = table[(windows[at >> 3] >> (at & 7).astype(np.uint32)) & window_mask]
        entries[first_symbol[:live] + step] = entry
        position[:live] += entry >> 8
    if not (entries >> 8).all():
        raise GeckoFormatError("entropy code stream: every code must be in the table; found "
                               "bits that start no code")
    ends = starts + chunk_bits[order]
    if (position != ends).any():
        bad = int(np.flatnonzero(position != ends)[0])
        raise GeckoFormatError(
            f"entropy chunk {int(order[bad])}: its codes must take its stated "
            f"{int(chunk_bits[order[bad]])} bits; they take {int(position[bad] - starts[bad])}"
        )
    return (entries & 0xFF).astype(np.uint8)
