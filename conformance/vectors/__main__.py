"""Check or regenerate the golden vectors: ``python -m conformance.vectors [--write]``."""

import logging
import sys

from conformance.vectors import main

logging.basicConfig(level=logging.INFO, format="%(message)s")
sys.exit(main())
