"""Bit planes: unsigned fields of one width, packed least significant bit first.

Field i of a plane of width w occupies stream bits [i*w, (i+1)*w), and stream bit k is bit
(k mod 8) of byte k // 8. A plane of n fields takes ceil(n*w / 8) bytes, and the unused high
bits of its last byte are zero.

>>> pack_fields(np.array([1, 2, 3]), 2).hex()
'39'
>>> unpack_fields(bytes.fromhex('39'), 3, 2).tolist()
[1, 2, 3]
"""

import numpy as np

MAX_WIDTH = 32


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
    if width <= 8:
        return _unpack_narrow(buffer, count, width)
    return _unpack_wide(buffer, count, width).astype(dtype)


def padding_is_zero(plane, count, width):
    """Return whether the bits after the last field of ``plane`` are all zero."""
    used = count * width % 8
    return used == 0 or len(plane) == 0 or plane[-1] >> used == 0


def _pack_narrow(values, width):
    # Eight fields of w <= 8 bits fill exactly w bytes, so each run of eight becomes one
    # little-endian uint64 word of which the low w bytes are kept.
    count = values.size
    padded = np.zeros(-(-count // 8) * 8, np.uint64)
    padded[:count] = values
    lanes = padded.reshape(-1, 8)
    words = lanes[:, 0].copy()
    for j in range(1, 8):
        words |= lanes[:, j] << np.uint64(width * j)
    octets = words.astype("<u8").view(np.uint8).reshape(-1, 8)[:, :width]
    return octets.tobytes()[: plane_bytes(count, width)]


def _unpack_narrow(buffer, count, width):
    runs = -(-count // 8)
    octets = np.zeros((runs, 8), np.uint8)
    flat = np.zeros(runs * width, np.uint8)
    flat[: buffer.size] = buffer
    octets[:, :width] = flat.reshape(runs, width)
    words = octets.view("<u8").ravel()
    mask = np.uint64((1 << width) - 1)
    lanes = np.empty((runs, 8), np.uint8)
    for j in range(8):
        lanes[:, j] = (words >> np.uint64(width * j)) & mask
    return lanes.ravel()[:count]


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
    values = values.astype(np.uint64)
    position = position.astype(np.uint64)
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
