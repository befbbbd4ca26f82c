"""Golden vectors of the Gecko formats: small inputs with their exact encoded bytes.

Each line of ``vectors.jsonl`` is one JSON object. ``kind`` is "exponents" (input ``exponents``,
uint8 as hex) or "tensor" (input ``bits``, FP32 bit patterns as little-endian hex, and the
``container`` and ``anchor`` it was packed with). ``stream`` is the encoded stream as hex, and
``rules`` names the SPEC.md rules the vector exercises. Another implementation passes if it
decodes every ``stream`` to the input and encodes every input to ``stream``.

Regenerate with ``python -m conformance.vectors.gecko``; the inputs are built from formulas,
not from a random generator, so they do not depend on the numpy version.

``version1.json`` holds the vectors as schrodinger-fp 0.1.0 wrote them, in stream version 1
(a JSON list of the same records). It is never regenerated: decoders must still read every
stream in it, and encoders now write version 2.
"""

import json
import pathlib

import numpy as np

from reference import Container
from reference.gecko import encode_exponents, pack

VECTOR_FILE = pathlib.Path(__file__).with_name("vectors.jsonl")
VERSION1_FILE = pathlib.Path(__file__).with_name("version1.json")
CONTAINER_FIELDS = ("exponent_bits", "mantissa_bits", "bias", "specials", "subnormals", "base")


def _relu_exponents(count):
    # Exponents around 126 with every third value zero, as a ReLU output has.
    exponents = (120 + (np.arange(count) * 7) % 9).astype(np.uint8)
    exponents[::3] = 0
    return exponents


def _width_code_exponents():
    # Eight groups of 32 with base 1 whose ranges need each width code 0..7.
    spans = [0, 1, 3, 7, 15, 31, 63, 254]
    lanes = [1 + np.where(np.arange(32) % 2, span, 0) for span in spans]
    return np.concatenate(lanes).astype(np.uint8)


def _weight_bits(count):
    # Small signed weights spread over about eight binades, with a few -0 and +0.
    magnitude = (0.001 + (np.arange(count) * 0.37) % 0.25).astype(np.float32)
    sign = np.where(np.arange(count) % 3 == 1, -1, 1).astype(np.float32)
    x = magnitude * sign
    x[5::17] = 0.0
    x[9::23] = -0.0
    return x.view(np.uint32)


def _outlier_exponents():
    # Four groups of 32 whose range is widened by a few small exponents, which fixed mode
    # stores as exceptions. They are a plain group, a masked group, an inline group, and a
    # group whose exception needs 2 high bits (width 8 narrowed to 6).
    lanes = 120 + np.arange(128) % 8
    lanes[[3, 17]] = 112
    lanes[32 + np.arange(0, 32, 2)] = 0
    lanes[32 + 7] = 110
    lanes[64 + 9] = 0
    lanes[64 + 20] = 108
    lanes[96:] = 200 + np.arange(32) % 40
    lanes[96 + 30] = 10
    return lanes.astype(np.uint8)


def _tensor_top_exponents():
    # 16 groups of 32 whose tops are all 127 and whose lanes spread over 8 binades below it:
    # sending the tops costs more than it saves, so entropy mode uses the tensor's top.
    lanes = 127 - (np.arange(512) * 5) % 8
    lanes[::32] = 127
    return lanes.astype(np.uint8)


def _group_top_exponents():
    # 8 groups of 32 with tops 20 apart and lanes within 2 binades of their top: the tops
    # are worth sending.
    group = np.arange(256) // 32
    return (20 + 25 * group - np.arange(256) % 3).astype(np.uint8)


SPECIAL_FP32 = np.array(
    [0x0000_0000, 0x8000_0000, 0x0000_0001, 0x807F_FFFF, 0x0080_0000, 0x3F80_0000,
     0xBFC0_0000, 0x7F7F_FFFF, 0x7F80_0000, 0xFF80_0000, 0x7FC0_0000, 0xFFC0_0001,
     0x7F80_0001, 0x7FBF_FFFF],
    np.uint32,
)


def exponent_cases():
    """Yield (name, rules, exponents, mode, group size) for the exponent stream vectors."""
    yield "empty", ["G1", "G2"], np.zeros(0, np.uint8), "fixed", 32
    yield "scalar", ["G1", "G4"], np.full((), 127, np.uint8), "fixed", 32
    yield "relu_partial_group", ["G3", "G4"], _relu_exponents(40), "fixed", 32
    yield "all_zero", ["G3"], np.zeros(64, np.uint8), "fixed", 32
    yield "every_width_code", ["G4"], _width_code_exponents(), "fixed", 32
    yield "exceptions", ["G3", "G4"], _outlier_exponents(), "fixed", 32
    yield "exceptions_group_8", ["G4"], _outlier_exponents()[:64], "fixed", 8
    yield "matrix_group_8", ["G1", "G2", "G4"], _relu_exponents(15).reshape(3, 5), "fixed", 8
    yield "relu_entropy", ["G3", "G5"], _relu_exponents(40), "entropy", 32
    yield "weights_entropy_group_16", ["G5"], _relu_exponents(100) + 1, "entropy", 16
    yield "every_value_entropy", ["G5"], np.arange(256).astype(np.uint8), "entropy", 64
    yield "tensor_top_entropy", ["G5"], _tensor_top_exponents(), "entropy", 32
    yield "group_tops_entropy", ["G5"], _group_top_exponents(), "entropy", 32


def tensor_cases():
    """Yield (name, rules, FP32 bits, container, anchor, mode) for the packed tensor vectors."""
    fp32 = Container.from_name("fp32")
    yield "fp32_specials", ["G6", "G7"], SPECIAL_FP32, fp32, None, "fixed"
    yield "fp32_specials_entropy", ["G6", "G7"], SPECIAL_FP32, fp32, None, "entropy"
    bf16_bits = np.array([0x0000, 0x8000, 0x0001, 0x3F80, 0xC049, 0x7F80, 0xFFC1, 0x7F81],
                         np.uint32) << np.uint32(16)
    yield "bf16_specials", ["G6", "G7"], bf16_bits, Container.from_name("bf16"), None, "fixed"
    e4m3 = Container.from_name("e4m3fn")
    e4m3_bits = np.float32([448.0, -0.0, 0.0, 0.015625, -3.5, 1.125, 0.001953125]).view(np.uint32)
    yield "e4m3fn", ["G6"], e4m3_bits, e4m3, None, "fixed"
    training = Container.training(3, 1)
    values = np.float32([0.75, -0.5, 0.0, -0.0, 0.375, -0.1875, 0.0, 0.5, -0.75, 0.0])
    yield "training_e3m1_negative_zero", ["G6"], values.view(np.uint32), training, -1, "fixed"
    yield "training_e3m1_entropy", ["G6"], values.view(np.uint32), training, -1, "entropy"
    e2m1 = Container.from_name("e2m1fn")
    e2m1_bits = np.float32([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6])
    yield "e2m1fn_every_code", ["G6"], e2m1_bits.view(np.uint32), e2m1, None, "fixed"


def build_vectors():
    """Return the vector records, each a dict ready for one JSON line."""
    records = []
    for name, rules, exponents, mode, group_size in exponent_cases():
        stream = encode_exponents(exponents, mode=mode, group_size=group_size)
        records.append({
            "name": name, "rules": rules, "kind": "exponents", "mode": mode,
            "group_size": group_size, "shape": list(exponents.shape),
            "exponents": exponents.tobytes().hex(), "stream": stream.hex(),
        })
    for name, rules, bits, container, anchor, mode in tensor_cases():
        # The group size is given, so the bytes do not depend on the entropy-mode choice.
        stream = pack(bits.view(np.float32), container, anchor=anchor, mode=mode, group_size=32)
        records.append({
            "name": name, "rules": rules, "kind": "tensor", "mode": mode, "group_size": 32,
            "shape": list(bits.shape),
            "container": {field: getattr(container, field) for field in CONTAINER_FIELDS},
            "anchor": anchor, "bits": bits.astype("<u4").tobytes().hex(), "stream": stream.hex(),
        })
    return records


def render(records):
    """Return the text of ``vectors.jsonl``: one sorted-key JSON object per line."""
    return "".join(json.dumps(record, sort_keys=True) + "\n" for record in records)


def load(path=VECTOR_FILE):
    """Return the records stored in ``path``."""
    return [json.loads(line) for line in pathlib.Path(path).read_text().splitlines()]


def load_version1():
    """Return the frozen version 1 records of ``version1.json``."""
    return json.loads(VERSION1_FILE.read_text())
