"""Canonical Huffman coding of symbols 0..256, decoded in independent chunks (rule G5).

One static code per stream: the code lengths are sent as a table, codes are canonical
(shorter codes first, ties by symbol value, as in DEFLATE) and are written least significant
bit first with the first code bit lowest. The symbols are cut into chunks of 2048 whose bit
lengths are sent up front, so a decoder steps through all chunks side by side.

>>> lengths = code_lengths(np.bincount([0, 0, 0, 1, 2]))
>>> lengths.tolist()
[1, 2, 2]
>>> canonical_codes(lengths).tolist()
[0, 2, 3]
"""

import heapq
import struct

import numpy as np

from reference.gecko import multisymbol
from reference.gecko.bitfields import pack_at, plane_bytes
from reference.gecko.errors import GeckoFormatError

LENGTH_LIMIT = 12
MAX_SYMBOLS = 257
# A chunk of 2048 codes of at most 12 bits fits the uint16 chunk length.
CHUNK_SYMBOLS = 2048
_TABLE_SIZE = struct.Struct("<H")


def code_lengths(counts, limit=LENGTH_LIMIT):
    """Return optimal code lengths of at most ``limit`` bits for symbol ``counts``.

    Uses the package-merge algorithm, which is optimal under the limit.
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


def read_table(reader, stream_name):
    """Parse and validate a code length table; rejects codes that do not form a prefix code."""
    (size,) = reader.unpack(_TABLE_SIZE, f"{stream_name} table size")
    if size > MAX_SYMBOLS:
        raise GeckoFormatError(
            f"{stream_name} table size: must be at most {MAX_SYMBOLS}; got {size}"
        )
    packed = np.frombuffer(reader.take(plane_bytes(size, 4), f"{stream_name} table"), np.uint8)
    nibbles = np.stack([packed & 15, packed >> 4], axis=1).ravel()
    if nibbles[size:].any():
        raise GeckoFormatError(f"{stream_name} table: the unused last nibble must be zero; got "
                               f"{int(nibbles[-1])}")
    lengths = nibbles[:size].astype(np.int64)
    if lengths.max(initial=0) > LENGTH_LIMIT:
        raise GeckoFormatError(f"{stream_name} table: code lengths must be at most {LENGTH_LIMIT}; "
                               f"got {int(lengths.max())}")
    kraft = sum(1 << (LENGTH_LIMIT - int(n)) for n in lengths if n)
    if kraft > 1 << LENGTH_LIMIT:
        raise GeckoFormatError(
            f"{stream_name} table: lengths must satisfy the Kraft inequality "
            f"(sum of 2**-length <= 1); got {kraft / (1 << LENGTH_LIMIT)}"
        )
    return lengths


def write_code(symbols):
    """Return the table, chunk lengths and code stream of ``symbols`` (integers 0..256)."""
    symbols = np.asarray(symbols)
    if symbols.dtype == np.uint8:
        return _write_byte_code(np.ascontiguousarray(symbols))
    lengths = code_lengths(np.bincount(symbols, minlength=MAX_SYMBOLS))
    symbol_lengths = lengths[symbols]
    # 32-bit positions halve the memory traffic whenever the stream is shorter than 2**32 bits.
    narrow = symbols.size * LENGTH_LIMIT < (1 << 32) - 64
    ends = np.cumsum(symbol_lengths, dtype=np.uint32 if narrow else np.int64)
    chunk_ends = ends[CHUNK_SYMBOLS - 1 :: CHUNK_SYMBOLS]
    if symbols.size % CHUNK_SYMBOLS:
        chunk_ends = np.append(chunk_ends, ends[-1])
    chunk_bits = np.diff(chunk_ends.astype(np.int64), prepend=0).astype("<u2")
    parts = [write_table(lengths), chunk_bits.tobytes()]
    if symbols.size:
        codes = reversed_codes(lengths)[symbols]
        starts = ends - symbol_lengths
        if narrow:
            stream = _pack_codes_narrow(codes, starts)
        else:
            stream = pack_at(codes, starts, symbol_lengths)
        parts.append(stream[: plane_bytes(int(ends[-1]), 1)])
    return b"".join(parts)


def _write_byte_code(symbols):
    # The stream of write_code for uint8 symbols, built four symbols per field. A field has
    # at most 48 bits, and positions and packing cost a quarter of one field per symbol.
    pairs = multisymbol.byte_pairs(symbols)
    lengths = code_lengths(multisymbol.byte_counts(symbols, pairs))
    if symbols.size == 0:
        return write_table(lengths)
    field_lengths, fields = multisymbol.quad_fields(symbols, pairs, lengths,
                                                    reversed_codes(lengths))
    ends = np.cumsum(field_lengths, dtype=np.uint64)
    # A chunk of 2048 symbols is 512 fields. A short last field belongs to the last chunk,
    # so only full chunks are read off the field ends.
    full_chunks = symbols.size // CHUNK_SYMBOLS
    chunk_ends = ends[CHUNK_SYMBOLS // 4 - 1 :: CHUNK_SYMBOLS // 4][:full_chunks]
    if symbols.size % CHUNK_SYMBOLS:
        chunk_ends = np.append(chunk_ends, ends[-1])
    chunk_bits = np.diff(chunk_ends.astype(np.int64), prepend=0).astype("<u2")
    stream = multisymbol.pack_fields64(fields, ends - field_lengths)
    return b"".join([write_table(lengths), chunk_bits.tobytes(),
                     stream[: plane_bytes(int(ends[-1]), 1)].tobytes()])


def _pack_codes_narrow(codes, position):
    # pack_at with uint32 words: every code has 1 to 12 bits, so a code starts in every
    # 32-bit word, and the part of a code that passes bit 31 spills into the next word.
    word = position >> np.uint32(5)
    shift = position & np.uint32(31)
    words = np.zeros(int(word[-1]) + 2, np.uint32)
    starts = np.concatenate(([0], np.flatnonzero(word[1:] != word[:-1]) + 1))
    words[:-1] = np.bitwise_or.reduceat(codes << shift, starts)
    # The spilled part is code >> (32 - shift), written as two shifts so that shift 0 (no
    # spill) never shifts by 32. Only the last code of a word can spill.
    spilled = (codes >> np.uint32(1)) >> (np.uint32(31) - shift)
    words[1:] |= np.bitwise_or.reduceat(spilled, starts)
    return words.astype("<u4").view(np.uint8).tobytes()


def read_code(reader, count, stream_name):
    """Decode ``count`` symbols written by :func:`write_code`.

    Returns uint8 symbols when the table has no symbol 256, else uint16.
    """
    lengths = read_table(reader, stream_name)
    chunk_count = -(-count // CHUNK_SYMBOLS)
    chunk_bits = np.frombuffer(
        reader.take(2 * chunk_count, f"{stream_name} chunk lengths"), "<u2"
    ).astype(np.int64)
    total_bits = int(chunk_bits.sum())
    stream = reader.take(plane_bytes(total_bits, 1), f"{stream_name} code stream")
    if total_bits % 8 and stream[-1] >> (total_bits % 8):
        raise GeckoFormatError(
            f"{stream_name} code stream: padding bits after the last code must be zero; "
            f"got last byte 0x{stream[-1]:02x}"
        )
    if count == 0:
        return np.zeros(0, np.uint8)
    if total_bits < count:
        # Every code takes at least one bit; checked before allocating per-symbol arrays.
        raise GeckoFormatError(f"{stream_name} chunk lengths: {count} symbols need at least "
                               f"{count} bits; got {total_bits}")
    if not lengths.any():
        raise GeckoFormatError(
            f"{stream_name} table: {count} symbols need at least one code; got an empty table"
        )
    chunk_counts = np.full(chunk_count, CHUNK_SYMBOLS)
    chunk_counts[-1] = count - CHUNK_SYMBOLS * (chunk_count - 1)
    if lengths.size <= 256:
        return _decode_bytes(stream, chunk_bits, chunk_counts, _decode_table(lengths),
                             stream_name)
    return _decode_lockstep(stream, chunk_bits, chunk_counts, _decode_table(lengths), stream_name)


def _decode_table(lengths):
    # Each LENGTH_LIMIT-bit window maps to its symbol (low 16 bits) and code length (above).
    # Windows that start with no code keep length 0.
    table = np.zeros(1 << LENGTH_LIMIT, np.uint32)
    codes = reversed_codes(lengths)
    for symbol in np.flatnonzero(lengths):
        length = int(lengths[symbol])
        table[int(codes[symbol]) :: 1 << length] = symbol | length << 16
    return table


_STEP_BLOCK = 64


def _decode_lockstep(stream, chunk_bits, chunk_counts, table, stream_name):
    # Chunks are independent, so step t decodes the t-th symbol of every chunk. Only the last
    # chunk can be shorter, so the active chunks are always a prefix.
    starts = np.cumsum(chunk_bits) - chunk_bits
    steps = int(chunk_counts[0])
    # A 24-bit window starting at every byte. The zero padding covers positions that a
    # corrupt stream pushes past its end, at most LENGTH_LIMIT bits per step.
    padded = np.zeros(len(stream) + plane_bytes(steps * LENGTH_LIMIT, 1) + 4, np.uint32)
    padded[: len(stream)] = np.frombuffer(stream, np.uint8)
    windows = padded[:-2] | padded[1:-1] << 8 | padded[2:] << 16

    # Steps fill a block of rows, and each full block is copied transposed into the
    # chunk-major output. This measured faster than writing one strided column per step.
    entries = np.zeros((chunk_counts.size, steps), np.uint32)
    block = np.zeros((_STEP_BLOCK, chunk_counts.size), np.uint32)
    position = starts.copy()
    window_mask = (1 << LENGTH_LIMIT) - 1
    last_steps = int(chunk_counts[-1])
    for step in range(steps):
        live = chunk_counts.size if step < last_steps else chunk_counts.size - 1
        at = position[:live]
        entry = table[(windows[at >> 3] >> (at & 7)) & window_mask]
        block[step % _STEP_BLOCK, :live] = entry
        position[:live] += entry >> 16
        if step % _STEP_BLOCK == _STEP_BLOCK - 1 or step == steps - 1:
            first = step - step % _STEP_BLOCK
            entries[:, first : step + 1] = block[: step + 1 - first].T
    entries = entries.ravel()[: int(chunk_counts.sum())]
    if not (entries >> 16).all():
        raise GeckoFormatError(f"{stream_name} code stream: every code must be in the table; found "
                               "bits that start no code")
    ends = starts + chunk_bits
    if (position != ends).any():
        bad = int(np.flatnonzero(position != ends)[0])
        raise GeckoFormatError(
            f"{stream_name} chunk {bad}: its codes must take its stated "
            f"{int(chunk_bits[bad])} bits; they take {int(position[bad] - starts[bad])}"
        )
    return (entries & 0xFFFF).astype(np.uint16)


def _decode_bytes(stream, chunk_bits, chunk_counts, table, stream_name):
    # Several symbols per step; a step advances at most WIDE_WINDOW_BITS bits, and the zero
    # padding covers that many bits per step past the end of a corrupt stream.
    starts = np.cumsum(chunk_bits) - chunk_bits
    steps = int(chunk_counts[0])
    padded = np.zeros(len(stream) + plane_bytes(steps * multisymbol.WIDE_WINDOW_BITS, 1) + 4,
                      np.uint8)
    padded[: len(stream)] = np.frombuffer(stream, np.uint8)
    # windows[i] is the little-endian uint32 at byte i: an overlapping, unaligned view that
    # costs no copy. Bits above 24 are masked off by the decoder.
    windows = np.ndarray((padded.size - 3,), "<u4", padded, strides=(1,))
    symbols, position, done = multisymbol.decode_lockstep(
        windows, starts, chunk_counts, table)
    multisymbol.check_complete(done, chunk_counts, stream_name)
    ends = starts + chunk_bits
    if (position != ends).any():
        bad = int(np.flatnonzero(position != ends)[0])
        raise GeckoFormatError(
            f"{stream_name} chunk {bad}: its codes must take its stated "
            f"{int(chunk_bits[bad])} bits; they take {int(position[bad] - starts[bad])}"
        )
    return symbols
