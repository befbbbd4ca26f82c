"""The golden vectors match their generators and the specification version."""

import json

import pytest

from conformance import vectors
from conformance.vectors import HERE, INDEX_PATH


@pytest.mark.spec("G10")
def test_vectors_match_generators():
    assert [str(p.relative_to(HERE)) for p in vectors.stale_files()] == []


def test_vector_files_carry_spec_version():
    version = vectors.spec_version()
    for name in vectors.generators():
        header, records = vectors.load(name)
        assert header["spec_version"] == version
        assert records


def test_index_lists_every_vector_file():
    index = json.loads(INDEX_PATH.read_text())
    listed = set(index["files"])
    on_disk = {str(p.relative_to(HERE)) for p in HERE.rglob("*.jsonl")}
    assert listed == on_disk
    assert index["spec_version"] == vectors.spec_version()


def test_load_rejects_other_version(tmp_path, monkeypatch):
    (tmp_path / "old.jsonl").write_text('{"kind": "header", "spec_version": "0.0.1"}\n{}\n')
    monkeypatch.setattr(vectors, "HERE", tmp_path)
    with pytest.raises(ValueError, match="spec_version must be"):
        vectors.load("old.jsonl")


def test_spec_version_requires_line():
    with pytest.raises(ValueError, match="Specification version"):
        vectors.spec_version("# a spec without a version\n")


@pytest.mark.spec("C3", "C17")
def test_every_vector_record_names_rules():
    for name in vectors.generators():
        _, records = vectors.load(name)
        for record in records:
            assert record["rules"], record["name"]
