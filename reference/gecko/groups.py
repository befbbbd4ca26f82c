"""Group coding of an exponent plane, shared by both modes (rules G2 and G3).

Exponents are cut into groups of ``group_size`` consecutive values, and the last group is
padded with zeros. A zero is a lane that the caller marks: an exponent field of 0 for bare
exponent streams, a code with exponent and mantissa fields 0 for packed tensors.
"""

import numpy as np

from reference.gecko.bitfields import padding_is_zero, plane_bytes, unpack_fields
from reference.gecko.errors import GeckoFormatError
from reference.gecko.header import GROUP_SIZES


# The group size of fixed mode when none is given (rule G2).
FIXED_GROUP_SIZE = 32


def encode_groups(exponents, zeros, group_size, mode, reference=None):
    """Code a flat uint8 exponent plane whose ``zeros`` lanes store no exponent.

    ``reference`` is passed to the entropy coder; fixed mode has none.
    """
    from reference.gecko import entropy, fixed

    lanes, zero_lanes = to_groups(exponents, zeros, group_size)
    if mode == "fixed":
        return fixed.encode(lanes, zero_lanes)
    return entropy.encode(lanes, zero_lanes, reference)


def encode_groups_any_size(exponents, zeros, group_size, mode):
    """Return (group size, body) of :func:`encode_groups` for any ``group_size`` option.

    None picks the default: 32 in fixed mode, and in entropy mode the group size and reference
    whose body :mod:`reference.gecko.group_choice` predicts smallest. "auto" encodes with every
    group size (in entropy mode with both references) and keeps the smallest body, ties going
    to the smaller group size, then to group tops.
    """
    from reference.gecko import group_choice

    if group_size is None and mode == "entropy":
        group_size, reference = group_choice.choose(exponents, zeros)
        return group_size, encode_groups(exponents, zeros, group_size, mode, reference)
    if group_size is None:
        group_size = FIXED_GROUP_SIZE
    if group_size != "auto":
        return group_size, encode_groups(exponents, zeros, group_size, mode)
    from reference.gecko import entropy

    # The default entropy reference is picked on a sample, so "auto" tries both to be exact.
    references = [None] if mode == "fixed" else [entropy.GROUP_TOPS, entropy.TENSOR_TOP]
    bodies = [(size, encode_groups(exponents, zeros, size, mode, reference))
              for size in GROUP_SIZES for reference in references]
    return min(bodies, key=lambda pair: len(pair[1]))


def decode_groups(reader, count, group_size, mode, version):
    """Decode what :func:`encode_groups` wrote; returns flat exponents and the zero mask.

    ``version`` is the stream's header version: version 1 has other fixed-mode and entropy-mode
    bodies.
    """
    from reference.gecko import entropy, fixed, fixed_v1

    group_count = -(-count // group_size)
    check_room(reader, group_count)
    if mode == "entropy":
        lanes, zero_lanes = entropy.decode(reader, group_count, group_size, version)
    else:
        coder = fixed_v1 if version == 1 else fixed
        lanes, zero_lanes = coder.decode(reader, group_count, group_size)
    padding = zero_lanes.ravel()[count:]
    if not padding.all():
        raise GeckoFormatError(f"padding lanes: the {padding.size} lanes after the last value "
                               "must be zeros; some are not")
    return lanes.ravel()[:count], zero_lanes.ravel()[:count]


def to_groups(exponents, zeros, group_size):
    """Return (group_count, group_size) views of exponents and zeros, padded with zeros."""
    count = exponents.size
    group_count = -(-count // group_size)
    if count == group_count * group_size:
        return exponents.reshape(-1, group_size), zeros.reshape(-1, group_size)
    lanes = np.zeros(group_count * group_size, np.uint8)
    lanes[:count] = exponents
    zero_lanes = np.ones(lanes.size, bool)
    zero_lanes[:count] = zeros
    return lanes.reshape(-1, group_size), zero_lanes.reshape(-1, group_size)


def check_room(reader, group_count):
    """Reject a header that claims more groups than the stream can hold, before allocating.

    Every group costs at least 2 bits in either mode (a zero mode, or a Huffman code for its
    maximum and 8 or more lane codes of at least 1 bit), so a stream of B bytes contains at most
    4 * B groups.
    """
    need = plane_bytes(group_count, 2)
    if need > reader.remaining:
        raise GeckoFormatError(
            f"header shape: {group_count} groups need at least {need} bytes after the header; "
            f"the stream has {reader.remaining}"
        )


def read_plane(reader, count, width, what):
    """Read a plane of ``count`` fields of ``width`` bits whose padding bits must be zero."""
    plane = reader.take(plane_bytes(count, width), what)
    if not padding_is_zero(plane, count, width):
        raise GeckoFormatError(f"{what}: padding bits after the last field must be zero; "
                               f"got last byte 0x{plane[-1]:02x}")
    return unpack_fields(plane, count, width)
