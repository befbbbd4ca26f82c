"""The documented Narrow examples are test vectors, and docs/operators.md is up to date."""

from pathlib import Path

import numpy as np
import pytest

from onnx_ops import docs_gen
from onnx_ops.backends import BACKENDS, narrow
from onnx_ops.examples import EXAMPLES

# The function bodies compute inf - inf and inf * 0 for inf and NaN inputs on purpose;
# ReferenceEvaluator's numpy kernels warn about that.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:onnx.reference")

OPERATORS_MD = Path(__file__).resolve().parents[1] / "docs" / "operators.md"


def bits_of(array):
    return array.view(np.uint16 if array.dtype.name == "bfloat16" else np.uint32)


@pytest.mark.spec("X2", "X7")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("example", EXAMPLES, ids=lambda example: example.name)
def test_example_output_in_every_backend(example, backend):
    got = narrow(
        backend, example.x_array(), example.attributes, example.exponent_bits,
        example.mantissa_bits, anchor=example.anchor, noise=example.noise_array(),
    )
    want = example.y_array()
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(bits_of(got), bits_of(want))


@pytest.mark.spec("X7")
def test_operators_md_is_up_to_date():
    committed = OPERATORS_MD.read_text(encoding="utf-8")
    assert committed == docs_gen.render(), (
        "docs/operators.md is stale; regenerate it with `python -m onnx_ops.docs_gen`"
    )
