"""Golden vectors of the Gecko formats decode and re-encode to the same bytes (rule G10)."""

import numpy as np
import pytest

from conformance.vectors.gecko import VECTOR_FILE, build_vectors, load, render
from reference import Container
from reference.gecko import decode_exponents, encode_exponents, pack, unpack

VECTORS = load()


@pytest.mark.spec("G10")
def test_vector_file_is_up_to_date():
    # On failure, rerun `python -m conformance.vectors.gecko` if the format change is intended.
    assert VECTOR_FILE.read_text() == render(build_vectors())


def test_vectors_cover_every_rule_of_the_formats():
    covered = {rule for record in VECTORS for rule in record["rules"]}
    assert covered >= {"G1", "G2", "G3", "G4", "G5", "G6", "G7"}


@pytest.mark.spec("G10")
@pytest.mark.parametrize("record", [r for r in VECTORS if r["kind"] == "exponents"],
                         ids=lambda r: r["name"])
def test_exponent_vector_round_trips(record):
    exponents = np.frombuffer(bytes.fromhex(record["exponents"]), np.uint8)
    exponents = exponents.reshape(record["shape"])
    stream = bytes.fromhex(record["stream"])

    np.testing.assert_array_equal(decode_exponents(stream), exponents)
    reencoded = encode_exponents(exponents, mode=record["mode"], group_size=record["group_size"])
    assert reencoded.hex() == record["stream"]


@pytest.mark.spec("G10")
@pytest.mark.parametrize("record", [r for r in VECTORS if r["kind"] == "tensor"],
                         ids=lambda r: r["name"])
def test_tensor_vector_round_trips(record):
    bits = np.frombuffer(bytes.fromhex(record["bits"]), "<u4").reshape(record["shape"])
    container = Container(**record["container"])
    stream = bytes.fromhex(record["stream"])

    np.testing.assert_array_equal(unpack(stream).view(np.uint32), bits)
    reencoded = pack(bits.view(np.float32), container, anchor=record["anchor"],
                     mode=record["mode"], group_size=record["group_size"])
    assert reencoded.hex() == record["stream"]
