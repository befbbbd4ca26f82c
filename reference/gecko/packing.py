"""The packed tensor: :func:`pack`, :func:`unpack` and :func:`encoded_bits` (rules G6 to G8).

A packed tensor is the header of rule G1 with kind 1, the group coding of the exponent fields,
then the sign plane, the zero sign plane and the mantissa plane. A zero is a code whose
exponent and mantissa fields are both 0. It stores no exponent and no mantissa, and it stores
a sign only when the tensor contains a -0.

>>> from reference import Container
>>> x = np.float32([1.5, 0.0, -2.0, 3.0])
>>> unpack(pack(x, Container.from_name("e4m3fn"))).tolist()
[1.5, 0.0, -2.0, 3.0]
"""

import dataclasses

import numpy as np

from reference.codes import decode, encode
from reference.container import Container
from reference.quantize import max_anchor
from reference.gecko import fixed
from reference.gecko.bitfields import pack_fields, plane_bytes
from reference.gecko.errors import GeckoFormatError
from reference.gecko.exponents import check_options, check_shape
from reference.gecko.groups import (
    FIXED_GROUP_SIZE, decode_groups, encode_groups_any_size, read_plane, to_groups,
)
from reference.gecko.header import (
    GROUP_SIZES, Header, Reader, TensorFields, read_header, write_header,
)

# The containers e8m23 (FP32) and e8m7 (BF16) with the IEEE layout, subnormals and bias 127
# are the formats themselves: their codes are the FP32 bit patterns shifted right by these bits.
_FULL_FORMAT_SHIFT = {23: 0, 7: 16}


def pack(x, container, *, anchor=None, mode="fixed", group_size=None):
    """Pack ``x``, whose values are members of ``container``, into a Gecko tensor stream.

    ``anchor`` places the window of an anchored container: None uses the bias, an int is
    stored as is, and "max" stores ``max_anchor(x, container)``. ``x`` is float32, or
    bfloat16 with a BF16-based container; quantize it first if it contains non-members.
    ``mode`` and ``group_size`` are those of :func:`reference.gecko.encode_exponents`.
    """
    check_options(mode, group_size)
    x = np.asarray(x)
    _check_container(container)
    if isinstance(anchor, str) and anchor == "max":
        anchor = max_anchor(x, container)
    check_shape(np.shape(x), "pack")
    sign, exponent, mantissa = _split_codes(x, container, anchor)
    return b"".join(_pack_parts(np.shape(x), sign, exponent, mantissa, container, anchor,
                                mode, group_size))


def unpack(blob):
    """Decode a stream from :func:`pack` into float32 values of the stored shape.

    BF16-based tensors come back as float32 with the BF16 pattern in the high 16 bits, which
    is exact. Raises GeckoFormatError for any malformed stream.
    """
    reader = Reader(blob)
    header = read_header(reader, "tensor")
    fields = header.tensor
    container = _container_of(fields)
    exponent, zeros = decode_groups(reader, header.count, header.group_size, header.mode,
                                    header.version)
    if exponent.size and int(exponent.max()) >> fields.exponent_bits:
        raise GeckoFormatError(
            f"exponent fields: must fit in {fields.exponent_bits} bits; got {int(exponent.max())}"
        )
    sign, mantissa = _read_sign_and_mantissa(reader, zeros, fields)
    reader.finish()
    codes = _join_codes(sign, exponent, mantissa, fields)
    return _decode(codes, container, fields).reshape(header.shape)


def encoded_bits(x, container, *, anchor=None, mode="fixed", group_size=None):
    """Return the sizes in bits of the parts of ``pack(x, container, anchor=anchor)``.

    Keys: ``header_bits``, ``exponent_bits`` (the group coding of the exponent fields),
    ``sign_bits`` (both sign planes), ``mantissa_bits`` and their sum ``total_bits``. Each
    part is a whole number of bytes, as stored. Arguments and errors are those of
    :func:`pack`. In fixed mode the sizes follow from plane lengths and the encoder's choices,
    so no plane is packed. Entropy mode packs the stream and measures it.
    """
    check_options(mode, group_size)
    x = np.asarray(x)
    _check_container(container)
    if isinstance(anchor, str) and anchor == "max":
        anchor = max_anchor(x, container)
    check_shape(np.shape(x), "pack")
    if mode == "fixed":
        codes = _codes(x, container, anchor)
        lengths = _fixed_part_lengths(np.shape(x), codes, container, anchor, group_size)
    else:
        sign, exponent, mantissa = _split_codes(x, container, anchor)
        header, groups, signs, zero_signs, mantissas = _pack_parts(
            np.shape(x), sign, exponent, mantissa, container, anchor, mode, group_size
        )
        lengths = (len(header), len(groups), len(signs) + len(zero_signs), len(mantissas))
    parts = ("header_bits", "exponent_bits", "sign_bits", "mantissa_bits")
    sizes = {part: 8 * length for part, length in zip(parts, lengths)}
    sizes["total_bits"] = sum(sizes.values())
    return sizes


def _pack_parts(shape, sign, exponent, mantissa, container, anchor, mode, group_size):
    zeros = (exponent == 0) & (mantissa == 0)
    stored = ~zeros
    negative_zeros = bool((sign & zeros).any())
    fields = dataclasses.replace(_fields_of(container, anchor), negative_zeros=negative_zeros)
    group_size, groups = encode_groups_any_size(exponent, zeros, group_size, mode)
    header = write_header(Header(mode, group_size, tuple(shape), fields))
    signs = pack_fields(np.compress(stored, sign), 1)
    zero_signs = pack_fields(np.compress(zeros, sign), 1) if negative_zeros else b""
    mantissas = pack_fields(np.compress(stored, mantissa), container.mantissa_bits)
    return header, groups, signs, zero_signs, mantissas


def _fixed_part_lengths(shape, codes, container, anchor, group_size):
    # The byte lengths of the header, exponent body, sign planes and mantissa plane that
    # _pack_parts returns in fixed mode, computed from the flat codes without packing. A zero
    # (rule G3) is a code whose bits below the sign bit are all 0.
    e, m = container.exponent_bits, container.mantissa_bits
    unsigned = codes.dtype.type
    magnitude = codes & unsigned((1 << (e + m)) - 1)
    zeros = magnitude == 0
    exponent = (magnitude >> unsigned(m)).astype(np.uint8)
    negative_zeros = bool((codes == unsigned(1 << (e + m))).any())
    fields = dataclasses.replace(_fields_of(container, anchor), negative_zeros=negative_zeros)
    group_size, body = _fixed_body_bytes(exponent, zeros, group_size)
    header = write_header(Header("fixed", group_size, tuple(shape), fields))
    stored_count = zeros.size - int(np.count_nonzero(zeros))
    signs = plane_bytes(stored_count, 1)
    if negative_zeros:
        signs += plane_bytes(zeros.size - stored_count, 1)
    return len(header), body, signs, plane_bytes(stored_count, container.mantissa_bits)


def _fixed_body_bytes(exponent, zeros, group_size):
    # Returns (group size, body length) for the group_size option as encode_groups_any_size
    # reads it. "auto" keeps the smallest body, and min keeps the first of equal bodies, which
    # is the smaller group size.
    if group_size is None:
        group_size = FIXED_GROUP_SIZE
    candidates = GROUP_SIZES if group_size == "auto" else (group_size,)
    bodies = [(size, fixed.encoded_size(*to_groups(exponent, zeros, size)))
              for size in candidates]
    return min(bodies, key=lambda pair: pair[1])


def _check_container(container):
    if not isinstance(container, Container):
        raise TypeError(f"pack: container must be a reference.Container; got "
                        f"{type(container).__name__}")


def _is_raw(fields):
    # The base format's own container: its codes are the input bit patterns, NaN payloads too.
    return (
        fields.exponent_bits == 8
        and fields.mantissa_bits in _FULL_FORMAT_SHIFT
        and fields.specials == "ieee"
        and fields.subnormals
        and not fields.anchored
        and fields.offset == 127
    )


def _fields_of(container, anchor):
    return TensorFields(container.base, container.exponent_bits, container.mantissa_bits,
                        container.specials, container.subnormals, anchor is not None,
                        container.bias if anchor is None else int(anchor), False)


def _split_codes(x, container, anchor):
    """Return flat (sign, exponent field, mantissa field) of the codes of ``x``."""
    e, m = container.exponent_bits, container.mantissa_bits
    codes = _codes(x, container, anchor).astype(np.uint32, copy=False)
    sign = (codes >> np.uint32(e + m)).astype(bool)
    exponent = ((codes >> np.uint32(m)) & np.uint32((1 << e) - 1)).astype(np.uint8)
    mantissa = codes & np.uint32((1 << m) - 1)
    return sign, exponent, mantissa


def _codes(x, container, anchor):
    """Return the flat codes of ``x`` in an unsigned dtype that has room for the sign bit."""
    if x.dtype.kind == "f" and not x.dtype.isnative:
        raise ValueError(f"pack: x must be in native byte order; got dtype {x.dtype.str}; "
                         f"convert it with x.astype({x.dtype.newbyteorder('=').str!r})")
    if _is_raw(_fields_of(container, anchor)):
        return _raw_codes(x, container)
    return encode(np.asarray(x), container, anchor=anchor).ravel()


def _raw_codes(x, container):
    x = np.asarray(x)
    if x.dtype.name == "bfloat16" and container.mantissa_bits == 7:
        return np.ascontiguousarray(x).reshape(-1).view(np.uint16)
    if x.dtype != np.float32:
        raise ValueError(f"pack: x dtype must be float32 (or bfloat16 with an e8m7 container); "
                         f"got {x.dtype}")
    bits = np.ascontiguousarray(x).reshape(-1).view(np.uint32)
    if container.mantissa_bits == 23:
        return bits
    low = bits & np.uint32(0xFFFF)
    if low.any():
        index = int(np.flatnonzero(low)[0])
        raise ValueError(
            f"pack: an e8m7 (BF16) container needs BF16 values (low 16 bits zero, NaNs too); "
            f"element {index} is 0x{int(bits[index]):08x}; round x to BF16 first"
        )
    return bits >> np.uint32(16)


def _container_of(fields):
    try:
        return Container(fields.exponent_bits, fields.mantissa_bits,
                         bias=None if fields.anchored else fields.offset,
                         specials=fields.specials, subnormals=fields.subnormals,
                         base=fields.base)
    except (TypeError, ValueError) as error:
        raise GeckoFormatError(f"header container fields: must describe a valid container; "
                               f"{error}") from error


def _read_sign_and_mantissa(reader, zeros, fields):
    stored = ~zeros
    stored_count = int(stored.sum())
    zero_count = zeros.size - stored_count
    if fields.negative_zeros and zero_count == 0:
        raise GeckoFormatError("header flags: the negative zero flag needs at least one zero; "
                               "the tensor has none")
    sign = np.zeros(zeros.size, bool)
    sign[stored] = read_plane(reader, stored_count, 1, "sign plane").astype(bool)
    if fields.negative_zeros:
        sign[zeros] = read_plane(reader, zero_count, 1, "zero sign plane").astype(bool)
    mantissa = np.zeros(zeros.size, np.uint32)
    mantissa[stored] = read_plane(reader, stored_count, fields.mantissa_bits, "mantissa plane")
    return sign, mantissa


def _join_codes(sign, exponent, mantissa, fields):
    e, m = fields.exponent_bits, fields.mantissa_bits
    codes = sign.astype(np.uint32) << np.uint32(e + m)
    codes |= exponent.astype(np.uint32) << np.uint32(m)
    return codes | mantissa


def _decode(codes, container, fields):
    if _is_raw(fields):
        return (codes << np.uint32(_FULL_FORMAT_SHIFT[fields.mantissa_bits])).view(np.float32)
    try:
        return decode(codes, container, anchor=fields.offset if fields.anchored else None)
    except ValueError as error:
        raise GeckoFormatError(f"codes: every code must be one that encode emits; {error}") \
            from error
