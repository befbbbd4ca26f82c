"""Gecko: lossless exponent coding and the packed tensor format (SPEC.md section G)."""

from reference.gecko.errors import GeckoFormatError
from reference.gecko.exponents import decode_exponents, encode_exponents
from reference.gecko.packing import encoded_bits, pack, unpack

__all__ = [
    "GeckoFormatError", "decode_exponents", "encode_exponents", "encoded_bits", "pack", "unpack",
]
