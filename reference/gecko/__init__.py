"""Gecko: lossless exponent coding and the packed tensor format (SPEC.md section G)."""

from reference.gecko.errors import GeckoFormatError
from reference.gecko.exponents import decode_exponents, encode_exponents

__all__ = ["GeckoFormatError", "decode_exponents", "encode_exponents"]
