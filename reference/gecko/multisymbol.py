"""Fast paths of the Huffman code streams of rule G5 for byte symbols (0..255).

The stream format is the one :mod:`reference.gecko.huffman` defines, and only the work per
symbol differs. The encoder looks up the codes of two adjacent symbols at once and packs four
symbols per field. The decoder decodes up to eight symbols per lookup of a 12- or 16-bit
window and advances every chunk of the stream side by side. Both produce what the one-symbol
paths produce; those remain for tables that use symbol 256.
"""

import numpy as np

from reference.gecko.errors import GeckoFormatError

# The code length limit of rule G5 (huffman.LENGTH_LIMIT, which imports this module).
LENGTH_LIMIT = 12
WIDE_WINDOW_BITS = 16
WIDE_MIN_SYMBOLS = 1 << 16
SYMBOLS_PER_LOOKUP = 8
# Finished chunks leave at the end of each block of steps. Blocks of 16 measured faster than
# 8, 32, 64 or 128 on the bench tensors, because a few slow chunks outlast the rest.
_STEP_BLOCK = 16
_PAIR_LENGTH_SHIFT = 27
_PAIR_CODE_MASK = np.uint32((1 << _PAIR_LENGTH_SHIFT) - 1)


def pair_table(lengths, codes):
    """Return the code of every pair of byte symbols (a, b), indexed a | b << 8.

    An entry is the two codes, a's first (``codes`` are bit-reversed canonical codes), in its
    low 27 bits and their total length above.
    """
    byte_lengths = np.zeros(256, np.uint32)
    byte_codes = np.zeros(256, np.uint32)
    byte_lengths[: min(256, lengths.size)] = lengths[:256]
    byte_codes[: min(256, codes.size)] = codes[:256]
    pair_lengths = byte_lengths[None, :] + byte_lengths[:, None]
    pair_codes = byte_codes[None, :] | byte_codes[:, None] << byte_lengths[None, :]
    return (pair_codes | pair_lengths << _PAIR_LENGTH_SHIFT).ravel()


def byte_pairs(symbols):
    """Return the pairs (a, b) of adjacent symbols of a uint8 array as intp a | b << 8.

    Both the counts and the pair table lookups index by these, and numpy converts any
    other index type to intp first, so the conversion is done once.
    """
    return symbols[: symbols.size & ~1].view("<u2").astype(np.intp)


def byte_counts(symbols, pairs):
    """Return the count of each value of a uint8 array, counting it as pairs (half the work)."""
    # Only rows up to the largest second symbol are counted, so streams of small symbols do
    # not pay for a table of all 2**16 pairs.
    pair_counts = np.bincount(pairs)
    rows = -(-pair_counts.size // 256)
    grid = np.zeros(rows * 256, np.int64)
    grid[: pair_counts.size] = pair_counts
    grid = grid.reshape(rows, 256)
    counts = grid.sum(axis=0)
    counts[:rows] += grid.sum(axis=1)
    if symbols.size % 2:
        counts[symbols[-1]] += 1
    return counts


def quad_fields(symbols, pairs, lengths, codes):
    """Return (field lengths, fields) of a uint8 symbol stream coded four symbols per field.

    Fields are uint64 of at most 48 bits, the first symbol's code lowest. The last 1 to 3
    symbols of a stream whose length is not a multiple of 4 form a shorter last field.
    """
    whole = symbols.size & ~3
    entries = pair_table(lengths, codes).take(pairs[: whole // 2])
    first, second = entries[0::2], entries[1::2]
    first_lengths = first >> _PAIR_LENGTH_SHIFT
    field_lengths = first_lengths + (second >> _PAIR_LENGTH_SHIFT)
    fields = (second & _PAIR_CODE_MASK).astype(np.uint64) << first_lengths.astype(np.uint64)
    fields |= first & _PAIR_CODE_MASK
    if whole < symbols.size:
        tail = symbols[whole:]
        tail_lengths = lengths[tail].astype(np.int64)
        tail_starts = np.cumsum(tail_lengths) - tail_lengths
        tail_field = int(np.bitwise_or.reduce(codes[tail].astype(np.uint64)
                                              << tail_starts.astype(np.uint64)))
        field_lengths = np.append(field_lengths, np.uint32(tail_lengths.sum()))
        fields = np.append(fields, np.uint64(tail_field))
    return field_lengths, fields


def pack_fields64(fields, starts):
    """Pack uint64 fields of 1 to 48 bits that start at consecutive bit positions ``starts``.

    Every 64-bit word then has a field starting in it, so OR-reducing the fields shifted to
    their start words, plus the parts that spill past bit 63 into the next word, assembles
    the stream. Returns whole little-endian words; the caller trims to the stream length.
    """
    word = starts >> np.uint64(6)
    shift = starts & np.uint64(63)
    first = np.flatnonzero(word[1:] != word[:-1]) + 1
    first = np.concatenate(([0], first))
    words = np.zeros(first.size + 1, np.uint64)
    words[:-1] = np.bitwise_or.reduceat(fields << shift, first)
    # Only the last field of a word can spill, because the next field starts after it. The
    # spilled part is field >> (64 - shift), written as two shifts so that shift 0 (no
    # spill) never shifts by 64.
    last = np.append(first[1:] - 1, fields.size - 1)
    words[1:] |= (fields[last] >> np.uint64(1)) >> (np.uint64(63) - shift[last])
    return words.astype("<u8").view(np.uint8)


class DecodeTables:
    """Lookup tables that decode a window of ``window_bits`` stream bits at a time.

    Built from the one-symbol table of 12-bit windows (symbol | length << 16, length 0 where
    no code starts). A window decodes as many whole codes as fit it, up to eight. Index
    ``dropped`` (one past the last window) is a lookup that yields nothing.
    """

    def __init__(self, single_table, window_bits):
        size = 1 << window_bits
        windows = np.arange(size, dtype=np.int64)
        single = single_table.astype(np.int64)
        taken = np.zeros(size, np.int64)
        count = np.zeros(size, np.int64)
        live = np.ones(size, bool)
        words = np.zeros(size + 1, np.uint64)
        # cumulative[v, t] is the number of bits the first t symbols of window v take.
        self.cumulative = np.zeros((size, SYMBOLS_PER_LOOKUP + 1), np.uint8)
        for k in range(SYMBOLS_PER_LOOKUP):
            entry = single[(windows >> taken) & ((1 << LENGTH_LIMIT) - 1)]
            length = entry >> 16
            live &= (length > 0) & (taken + length <= window_bits)
            words[:size] |= (np.where(live, entry & 0xFF, 0) << (8 * k)).astype(np.uint64)
            taken += np.where(live, length, 0)
            count += live
            self.cumulative[:, k + 1] = taken
        self.window_bits = window_bits
        self.dropped = size
        self.words = words
        self.counts = np.zeros(size + 1, np.uint8)
        self.counts[:size] = count
        self.advance = np.zeros(size + 1, np.uint8)
        self.advance[:size] = taken

    def cap(self, segment, needed, block_position):
        """Drop the lookups of each row of ``segment`` after its ``needed``-th symbol.

        Returns the stream position just after each row's last needed symbol, and how many
        symbols the row's last kept lookup decodes beyond it.
        """
        lookups = segment.astype(np.intp)
        count = self.counts[lookups].astype(np.int64)
        decoded = np.cumsum(count, axis=1)
        rows = np.arange(segment.shape[0])
        last = np.argmax(decoded >= needed[:, None], axis=1)
        take = needed - (decoded[rows, last] - count[rows, last])
        advance = self.advance[lookups].astype(np.int64)
        last_start = block_position + np.cumsum(advance, axis=1)[rows, last] - advance[rows, last]
        last_lookup = lookups[rows, last]
        segment[np.arange(segment.shape[1]) > last[:, None]] = self.dropped
        return (last_start + self.cumulative[last_lookup, take],
                count[rows, last] - take)

    def symbols(self, segments, segment_chunks):
        """Return the symbols that the lookups of all segments decode, chunk by chunk."""
        chunks = np.concatenate(segment_chunks)
        lookups = np.concatenate(segments)[np.argsort(chunks, kind="stable")]
        lookups = lookups.astype(np.intp).ravel()
        counts = self.counts.take(lookups)
        offsets = np.cumsum(counts, dtype=np.intp) - counts
        total = int(offsets[-1] + counts[-1]) if counts.size else 0
        # Each lookup's 8 symbol bytes are stored at its offset through an overlapping view
        # of 8-byte words that start at every byte. Bytes past a lookup's count are garbage.
        # The next lookup is stored later and overwrites them, and the garbage of the last
        # lookup lands in the 8 bytes of slack.
        # NOTE: this relies on numpy storing an index assignment in index order, which holds
        # for a 1-D integer index (numpy 2.4) but which numpy does not promise.
        out = np.zeros(total + 8, np.uint8)
        words_at = np.ndarray((total + 1,), "<u8", out, strides=(1,))
        words_at[offsets] = self.words.take(lookups)
        return out[:total]


def decode_lockstep(windows, starts, chunk_counts, single_table):
    """Decode every chunk side by side; return (symbols, end positions, decoded counts).

    ``windows[i]`` contains stream bits 8i .. 8i + 31, ``starts`` are the chunks' first bits and
    ``single_table`` is the one-symbol table of 12-bit windows. Step t decodes one lookup in
    every unfinished chunk. A chunk may decode past its last symbol within a block of
    _STEP_BLOCK steps. Those symbols are dropped, and its end position is taken after its last
    symbol.
    A chunk whose bits start no code stops there and decodes fewer symbols than stated.
    """
    # Wider windows decode more symbols per step, but building their tables takes a few MiB
    # and about 10 ms, which only streams of many symbols repay.
    total = int(chunk_counts.sum())
    tables = DecodeTables(single_table, WIDE_WINDOW_BITS if total >= WIDE_MIN_SYMBOLS
                          else LENGTH_LIMIT)
    final_position = starts.astype(np.int64)
    final_done = np.zeros(starts.size, np.int64)
    extra = np.zeros(starts.size, np.int64)
    live = np.arange(starts.size)
    # Positions and lookups are intp because numpy converts any other index type first.
    position = starts.astype(np.intp)
    done = np.zeros(starts.size, np.intp)
    remaining = chunk_counts.astype(np.intp)
    mask = (1 << tables.window_bits) - 1
    counts, advance = tables.counts, tables.advance
    lookups = np.zeros((_STEP_BLOCK, starts.size), np.int32)
    segments = []
    segment_chunks = []
    steps = int(remaining.max(initial=0))
    for first in range(0, steps, _STEP_BLOCK):
        rows = min(_STEP_BLOCK, steps - first)
        block_position = position.copy()
        block_done = done.copy()
        # Only operators run per step: the loop never calls a function per step.
        for row in range(rows):
            lookup = (windows[position >> 3] >> (position & 7)) & mask
            position += advance[lookup]
            lookups[row] = lookup
        segment = np.full((live.size, _STEP_BLOCK), tables.dropped, np.int32)
        segment[:, :rows] = lookups[:rows].T
        done += counts.take(segment).sum(axis=1, dtype=np.intp)
        finished = np.flatnonzero(done >= remaining)
        if finished.size:
            capped = segment[finished]
            final_position[live[finished]], extra[live[finished]] = tables.cap(
                capped, remaining[finished] - block_done[finished], block_position[finished])
            segment[finished] = capped
        segments.append(segment)
        segment_chunks.append(live)
        final_done[live] = np.minimum(done, remaining)
        unfinished = np.flatnonzero(done < remaining)
        final_position[live[unfinished]] = position[unfinished]
        # A lookup that decodes nothing means bits that start no code: the chunk stops.
        keep = np.flatnonzero((done < remaining) & (counts[lookups[rows - 1]] > 0))
        live, position, done, remaining = live[keep], position[keep], done[keep], remaining[keep]
        if live.size == 0:
            break
        lookups = np.ascontiguousarray(lookups[:, keep])
    symbols = tables.symbols(segments, segment_chunks)
    return _drop_extra(symbols, final_done + extra, extra), final_position, final_done


def _drop_extra(symbols, run_lengths, extra):
    # Each chunk's run of decoded symbols ends with ``extra`` symbols past its last one.
    if not extra.any():
        return symbols
    run_ends = np.cumsum(run_lengths)
    first = np.repeat(run_ends - extra, extra)
    offset = np.arange(first.size) - np.repeat(np.cumsum(extra) - extra, extra)
    keep = np.ones(symbols.size, bool)
    keep[first + offset] = False
    return symbols[keep]


def check_complete(done, chunk_counts, stream_name):
    """Raise when a chunk stopped early, which only bits that start no code cause."""
    if (done != chunk_counts).any():
        raise GeckoFormatError(f"{stream_name} code stream: every code must be in the table; "
                               "found bits that start no code")
