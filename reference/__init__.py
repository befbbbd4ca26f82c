"""Reference semantics: containers, learned bitlengths, BitWave, Gecko and footprint."""

from reference.codes import decode, encode
from reference.container import Container
from reference.quantize import max_anchor, quantize

__all__ = ["Container", "decode", "encode", "max_anchor", "quantize"]
