"""Bit planes: unsigned fields of one width, packed least significant bit first.

Field i of a plane of width w occupies stream bits [i*w, (i+1)*w), and stream bit k is bit
(k mod 8) of byte k // 8. A plane of n fields takes ceil(n*w / 8) bytes, and the unused high
bits of its last byte are zero.

>>> pack_fields(np.array([1, 2, 3]), 2).hex()
'39'
>>> unpack_fields(bytes.fromhex('39'), 3, 2).tolist()
[1, 2, 3]
"""

import functools

import numpy as np

MAX_WIDTH = 32
# Planes of at most this many fields go through a bit matrix, which takes fewer numpy calls
# than the word-wise paths and measured faster for small planes.
SMALL_PLANE = 256
_BIT_SHIFTS = np.arange(8, dtype=np.uint8)


def plane_bytes(count, width):
    """Return the byte length of a plane of ``count`` fields of ``width`` bits."""
    return (count * width + 7) // 8


def pack_fields(values, width):
    """Pack the low ``width`` bits of each value into a plane; higher bits must be zero."""
    if not 0 <= width <= MAX_WIDTH:
        raise ValueError(f"pack_fields: width must be in [0, {MAX_WIDTH}]; got {width}")
    values = np.asarray(values).ravel()
    if width == 0 or values.size == 0:
        return b""
    if width <= 8 and values.size <= SMALL_PLANE:
        bits = (values.astype(np.uint8)[:, None] >> _BIT_SHIFTS[:width]) & 1
        return np.packbits(bits, bitorder="little").tobytes()
    if width <= 8:
        return _pack_narrow(values, width)
    return _pack_wide(values, width)


def unpack_fields(plane, count, width):
    """Unpack ``count`` fields of ``width`` bits from ``plane`` (bytes, exactly sized).

    Returns uint8 for widths up to 8 and uint32 above.
    """
    dtype = np.uint8 if width <= 8 else np.uint32
    if width == 0 or count == 0:
        return np.zeros(count, dtype)
    buffer = np.frombuffer(plane, np.uint8)
    assert buffer.size == plane_bytes(count, width), "caller checks the plane length"
    if width <= 8 and count <= SMALL_PLANE:
        bits = np.unpackbits(buffer, count=count * width, bitorder="little")
        return np.packbits(bits.reshape(count, width), axis=1, bitorder="little").ravel()
    if width <= 8:
        return _unpack_narrow(buffer, count, width)
    return _unpack_wide(buffer, count, width).astype(dtype)


def padding_is_zero(plane, count, width):
    """Return whether the bits after the last field of ``plane`` are all zero."""
    used = count * width % 8
    return used == 0 or len(plane) == 0 or plane[-1] >> used == 0


def _pack_narrow(values, width):
    # Runs of 64 one-byte fields are read as eight little-endian uint64 words. Three SWAR
    # steps squeeze each word to its low 8w bits (pairs of bytes, then of 16-bit halves, then
    # of 32-bit halves), and the eight squeezed words are laid end to end into w words.
    count = values.size
    runs = -(-count // 64)
    octets = np.zeros(runs * 64, np.uint8)
    octets[:count] = values
    if width == 8:
        return octets[:count].tobytes()
    words = octets.view("<u8").copy()
    high = np.empty_like(words)
    for low, shift in zip(_SWAR_LOW, (8 - width, 16 - 2 * width, 32 - 4 * width)):
        np.bitwise_and(words, ~low, out=high)
        high >>= np.uint64(shift)
        words &= low
        words |= high
    squeezed = words.reshape(runs, 8)
    out = np.zeros((runs, width), "<u8")
    for j, (k, offset, spill) in enumerate(_run_layout(width)):
        out[:, k] |= squeezed[:, j] << np.uint64(offset)
        if spill:
            out[:, k + 1] |= squeezed[:, j] >> np.uint64(64 - offset)
    return out.tobytes()[: plane_bytes(count, width)]


def _unpack_narrow(buffer, count, width):
    if width == 8:
        return buffer[:count].copy()
    runs = -(-count // 64)
    padded = np.zeros(runs * width * 8, np.uint8)
    padded[: buffer.size] = buffer
    stream = padded.view("<u8").reshape(runs, width)
    squeezed = np.empty((runs, 8), np.uint64)
    field = np.uint64((1 << 8 * width) - 1)
    for j, (k, offset, spill) in enumerate(_run_layout(width)):
        column = stream[:, k] >> np.uint64(offset)
        if spill:
            column |= stream[:, k + 1] << np.uint64(64 - offset)
        squeezed[:, j] = column & field
    words = squeezed.ravel()
    # The SWAR steps of _pack_narrow in reverse: spread 32-bit halves, 16-bit halves, bytes.
    for unit, bits in ((32, 4 * width), (16, 2 * width), (8, width)):
        field = _repeat((1 << bits) - 1, unit)
        words = (words & field) | ((words << np.uint64(unit - bits)) & (field << np.uint64(unit)))
    return words.view(np.uint8)[:count]


# Masks of the low half of each 16-, 32- and 64-bit unit of a word.
_SWAR_LOW = tuple(np.uint64(m) for m in (0x00FF00FF00FF00FF, 0x0000FFFF0000FFFF,
                                         0x00000000FFFFFFFF))


def _repeat(value, unit):
    # ``value`` copied into the low ``unit`` bits of every 2*unit-bit unit of a uint64.
    out = 0
    for position in range(0, 64, 2 * unit):
        out |= value << position
    return np.uint64(out)


@functools.cache
def _run_layout(width):
    # Where squeezed word j (8w bits) of a run starts: output word k, bit offset, and whether
    # it spills into word k + 1. Cached because small planes pay it on every call.
    layout = []
    for j in range(8):
        start = 8 * width * j
        k, offset = divmod(start, 64)
        layout.append((k, offset, offset + 8 * width > 64))
    return tuple(layout)


def _pack_wide(values, width):
    position = np.arange(values.size, dtype=np.uint64) * np.uint64(width)
    plane = pack_at(values, position, np.uint64(width))
    return plane[: plane_bytes(values.size, width)]


def pack_at(values, position, width):
    """Pack fields of at most 32 bits that start at increasing bit ``position``s.

    ``width`` is one width or one per field. Fields must be contiguous and non-overlapping,
    so every 64-bit word of the output has a field starting in it. Returns bytes up to the
    last word touched; the caller trims to the plane length.
    """
    # Each field is shifted into the uint64 word where it starts, and the part that spills
    # past bit 63 goes into the next word. Bits of different fields never overlap, so
    # OR-reducing the contributions per word assembles the plane.
    # Everything stays uint64: mixing it with int64 would compute in float64.
    values = values.astype(np.uint64)
    position = position.astype(np.uint64)
    width = np.asarray(width).astype(np.uint64)
    word = position >> np.uint64(6)
    shift = position & np.uint64(63)
    word_count = int(word[-1]) + 2
    words = np.zeros(word_count, np.uint64)
    starts = np.searchsorted(word, np.arange(word_count - 1, dtype=np.uint64))
    words[:-1] = np.bitwise_or.reduceat(values << shift, starts)
    spill = shift + width > np.uint64(64)
    words[word[spill] + np.uint64(1)] |= values[spill] >> (np.uint64(64) - shift[spill])
    return words.astype("<u8").view(np.uint8).tobytes()


def _unpack_wide(buffer, count, width):
    word_count = -(-buffer.size // 8) + 1
    octets = np.zeros(word_count * 8, np.uint8)
    octets[: buffer.size] = buffer
    words = octets.view("<u8")
    position = np.arange(count, dtype=np.uint64) * np.uint64(width)
    word = position >> np.uint64(6)
    shift = position & np.uint64(63)
    low = words[word] >> shift
    # Shifting by 1 and then by 63 - shift avoids a shift by 64 when the field starts a word.
    high = (words[word + np.uint64(1)] << np.uint64(1)) << (np.uint64(63) - shift)
    return (low | high) & np.uint64((1 << width) - 1)
