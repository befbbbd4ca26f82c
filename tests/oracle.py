"""The exact rational oracle for SPEC.md section C, re-exported from ``conformance.oracle``.

Tests import it as ``oracle``. The conformance suite needs it at run time, outside the tests,
so the code lives in the installed package: edit ``conformance/oracle.py``, not this file.
"""

from conformance.oracle import (  # noqa: F401
    ERROR, FP32_INF, FP32_QUIET_NAN, TWO, Grid, code_value, floor_log2, fp32_decode,
    fp32_encode, grid_of, max_anchor, out_of_range, quantize_bits, round_to_grid,
)
