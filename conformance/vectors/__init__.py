"""Golden vectors: language-neutral inputs and exact outputs for every capability.

Each ``*.jsonl`` file here is one JSON object per line. The first line is a header with
``kind: "header"``, the ``spec_version`` of SPEC.md the vectors were generated for, and a
description of the record fields. Bit patterns are hex strings (``"0x3f800000"``), widths and
gradients are ``float.hex`` strings, and every record names the SPEC.md ``rules`` it exercises.
Inputs come from formulas, not from a random generator, and expected outputs come from the exact
oracle (``conformance.oracle``) and the rule models of the suites, not from ``reference/``.

    python -m conformance.vectors           # check that the files match the generators
    python -m conformance.vectors --write   # regenerate them (also conformance/vectors/gecko)

``index.json`` lists every vector file, Gecko's included, with its record count and SHA-256.
"""

import argparse
import hashlib
import json
import logging
import os
from pathlib import Path
import re
import sys

logger = logging.getLogger(__name__)

HERE = Path(__file__).resolve().parent
SPEC_PATH = HERE.parent.parent / "SPEC.md"
INDEX_PATH = HERE / "index.json"
VERSION_LINE = re.compile(r"^Specification version: (\d+\.\d+\.\d+)\.", re.MULTILINE)


def spec_version(text=None):
    """Return the version string stated in SPEC.md's preamble."""
    text = SPEC_PATH.read_text(encoding="utf-8") if text is None else text
    match = VERSION_LINE.search(text)
    if match is None:
        raise ValueError("SPEC.md must state 'Specification version: X.Y.Z.' in its preamble")
    return match.group(1)


def generators():
    """Return {file name: function returning (description, records)} of the vectors here."""
    from conformance.vectors import bitlength_vectors, bitwave_vectors, container_vectors

    return {
        "containers.jsonl": container_vectors.build,
        "bitlength.jsonl": bitlength_vectors.build,
        "bitwave.jsonl": bitwave_vectors.build,
    }


def render(description, records, version):
    header = {"kind": "header", "spec_version": version, "fields": description}
    lines = [header] + records
    return "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines)


def load(name):
    """Return (header, records) of vector file ``name``; raise ValueError on a version mismatch."""
    lines = (HERE / name).read_text(encoding="utf-8").splitlines()
    header, records = json.loads(lines[0]), [json.loads(line) for line in lines[1:]]
    if header.get("kind") != "header" or header.get("spec_version") != spec_version():
        raise ValueError(f"{name}: spec_version must be {spec_version()} (SPEC.md); got "
                         f"{header.get('spec_version')!r}; regenerate with "
                         f"python -m conformance.vectors --write")
    return header, records


def expected_texts():
    """Return {path: text} of every generated file, the index last."""
    version = spec_version()
    texts = {HERE / name: render(*build(), version) for name, build in generators().items()}
    from conformance.vectors import gecko

    texts[gecko.VECTOR_FILE] = gecko.render(gecko.build_vectors())
    texts[INDEX_PATH] = render_index(texts, version)
    return texts


def render_index(texts, version):
    files = {}
    for path, text in sorted(texts.items()):
        if path == INDEX_PATH:
            continue
        lines = text.splitlines()
        records = len(lines) - (1 if lines and '"kind": "header"' in lines[0] else 0)
        files[str(path.relative_to(HERE))] = {
            "records": records, "sha256": hashlib.sha256(text.encode()).hexdigest(),
        }
    return json.dumps({"spec_version": version, "files": files}, indent=2, sort_keys=True) + "\n"


def stale_files():
    """Return the generated files whose committed text differs from the generators' output."""
    return [path for path, text in expected_texts().items()
            if not path.exists() or path.read_text(encoding="utf-8") != text]


def write():
    for path, text in expected_texts().items():
        temporary = path.with_suffix(".tmp")
        temporary.write_text(text, encoding="utf-8")
        os.replace(temporary, path)
        logger.info("wrote %s", path.relative_to(HERE.parent.parent))


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m conformance.vectors",
                                     description="Check or regenerate the golden vectors.")
    parser.add_argument("--write", action="store_true", help="regenerate the vector files")
    args = parser.parse_args(argv)
    if args.write:
        write()
        print(f"vectors written for specification version {spec_version()}")
        return 0
    stale = stale_files()
    for path in stale:
        print(f"stale: {path.relative_to(HERE.parent.parent)} (run sfp conformance vectors "
              f"--write)", file=sys.stderr)
    if not stale:
        print(f"vectors up to date for specification version {spec_version()}")
    return 1 if stale else 0
