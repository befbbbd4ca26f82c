"""Write conformance/vectors/gecko/vectors.jsonl from the reference encoder."""

import logging
import os
import sys

from conformance.vectors.gecko import VECTOR_FILE, build_vectors, render


def main():
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    records = build_vectors()
    temporary = VECTOR_FILE.with_suffix(".tmp")
    temporary.write_text(render(records))
    os.replace(temporary, VECTOR_FILE)
    logging.getLogger(__name__).info("wrote %d vectors to %s", len(records), VECTOR_FILE)
    return 0


if __name__ == "__main__":
    sys.exit(main())
