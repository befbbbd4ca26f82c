"""Narrow's faster bodies: the bf16 Cast, the short-mantissa float body, whole rows."""

import numpy as np
import pytest

from onnx_ops import chunks, function_body, schemas
from onnx_ops.backends import BACKENDS, narrow

# ReferenceEvaluator warns about the inf - inf that the other bodies compute on purpose.
pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning:onnx.reference")

BF16_ATTRIBUTES = {}  # e = 8, m = 7 with the defaults is the bf16 container


def cast_branches(function):
    """Return the If branches of ``function`` that Cast to bfloat16 and back."""
    branches = []
    for node in function.node:
        for attribute in node.attribute:
            graph = attribute.g
            if attribute.name == "then_branch" and graph.name == "bf16_cast":
                branches.append(graph)
    return branches


def float32_near_bf16_ties(seed):
    """Return float32 values whose low 16 bits sit at, just below and just above a bf16 tie.

    Every exponent is covered, so are subnormals, zero, the largest finite values, inf and
    NaN payloads, both signs, and random bits.
    """
    high = np.arange(2**16, dtype=np.uint32) << 16
    low = np.array([0, 1, 0x7FFF, 0x8000, 0x8001, 0xFFFF], np.uint32)
    structured = (high[:, None] | low[None, :]).ravel()
    rng = np.random.default_rng(seed)
    random_bits = rng.integers(0, 2**32, 2**16, dtype=np.uint32)
    return np.concatenate([structured, random_bits]).view(np.float32)


@pytest.mark.spec("X4")
def test_bf16_container_has_cast_branch():
    function = function_body.narrow_function(BF16_ATTRIBUTES)
    branches = cast_branches(function)
    assert len(branches) == 1
    casts = [(node.op_type, node.attribute[0].i) for node in branches[0].node]
    assert casts == [("Cast", 16), ("Cast", 1)]  # BFLOAT16, then FLOAT


@pytest.mark.spec("X4")
@pytest.mark.parametrize("attributes", [
    {"base": "bf16"}, {"saturate": 1}, {"specials": "fn"}, {"subnormals": 0},
    {"rounding": "toward_zero"},
])
def test_other_attribute_sets_have_no_cast_branch(attributes):
    assert cast_branches(function_body.narrow_function(attributes)) == []


@pytest.mark.spec("X2", "X4")
def test_bf16_container_matches_reference_near_ties():
    x = float32_near_bf16_ties(seed=0)
    want = narrow("reference", x, BF16_ATTRIBUTES, 8, 7).view(np.uint32)
    for backend in BACKENDS[1:]:
        got = narrow(backend, x, BF16_ATTRIBUTES, 8, 7).view(np.uint32)
        bad = np.flatnonzero(got != want)
        assert bad.size == 0, (
            f"{backend}: {bad.size} elements differ; first x=0x{x.view(np.uint32)[bad[0]]:x}: "
            f"want 0x{want[bad[0]]:x}, got 0x{got[bad[0]]:x}"
        )


@pytest.mark.spec("X2", "X4")
@pytest.mark.parametrize("anchor", [127, 126])
def test_anchored_e8m7_matches_reference_near_ties(anchor):
    # Anchor 127 is the bf16 container and takes the Cast branch; 126 must not.
    attributes = {"anchor_mode": "input"}
    x = float32_near_bf16_ties(seed=1)
    want = narrow("reference", x, attributes, 8, 7, anchor=anchor).view(np.uint32)
    got = narrow("onnxruntime", x, attributes, 8, 7, anchor=anchor).view(np.uint32)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (
        f"{bad.size} elements differ; first x=0x{x.view(np.uint32)[bad[0]]:x}: "
        f"want 0x{want[bad[0]]:x}, got 0x{got[bad[0]]:x}"
    )


def float32_near_grid_ties(mantissa_bits):
    """Return float32 values at every exponent near ties of an m-bit grid and the binade top."""
    dropped = 23 - mantissa_bits
    half = 1 << (dropped - 1)
    low = [half - 1, half, half + 1, 3 * half - 1, 3 * half, 3 * half + 1]
    top = [0x7F_FFFF, 0x7F_FFFF - half, 0x7F_FFFF - half + 1, 0x7F_7FFF, 0x7F_8000, 0x7F_C000]
    mantissas = np.array([*low, *top, 0x40_0000 + half], np.uint32)
    exponents = np.arange(256, dtype=np.uint32) << 23
    magnitudes = (exponents[:, None] | (mantissas[None, :] & 0x7F_FFFF)).ravel()
    return np.concatenate([magnitudes, magnitudes | 0x8000_0000]).view(np.float32)


@pytest.mark.spec("X2", "X4")
@pytest.mark.parametrize("mantissa_bits", range(8))
@pytest.mark.parametrize("attributes", [
    {}, {"specials": "fn", "saturate": 1},
    {"specials": "none", "subnormals": 0, "saturate": 1, "anchor_mode": "max"},
])
def test_short_mantissa_body_near_ties(mantissa_bits, attributes):
    # m <= 7 takes the float addition body whose power comes from a bfloat16 Cast; the top of
    # each binade is where that Cast rounds up to the next power of two.
    x = float32_near_grid_ties(mantissa_bits)
    if not schemas.container_of(attributes, 5, mantissa_bits).has_nan:
        x = x[~np.isnan(x)]
    want = narrow("reference", x, attributes, 5, mantissa_bits).view(np.uint32)
    got = narrow("onnxruntime", x, attributes, 5, mantissa_bits).view(np.uint32)
    bad = np.flatnonzero(got != want)
    assert bad.size == 0, (
        f"{bad.size} elements differ; first x=0x{x.view(np.uint32)[bad[0]]:x}: "
        f"want 0x{want[bad[0]]:x}, got 0x{got[bad[0]]:x}"
    )


@pytest.mark.spec("X2", "X4")
@pytest.mark.parametrize("size", [2 * chunks.CHUNK, chunks.CHUNK + 3])
@pytest.mark.parametrize("rounding", ["nearest_even", "stochastic"])
def test_whole_and_padded_rows_match_reference(size, rounding):
    # A multiple of the row length is viewed as rows; other sizes are padded and sliced.
    rng = np.random.default_rng(size)
    x = (rng.standard_normal(size) * 10).astype(np.float32)
    attributes = {"specials": "fn", "rounding": rounding}
    kwargs = {}
    if rounding == "stochastic":
        kwargs["noise"] = rng.integers(0, 2**32, size, dtype=np.uint32)
    want = narrow("reference", x, attributes, 4, 3, **kwargs).view(np.uint32)
    got = narrow("onnxruntime", x, attributes, 4, 3, **kwargs).view(np.uint32)
    np.testing.assert_array_equal(got, want)


TRAINING_MAX = {"specials": "none", "subnormals": 0, "saturate": 1, "anchor_mode": "max"}


@pytest.mark.spec("X2", "X4")
@pytest.mark.parametrize("extra", [[], [np.inf], [-np.inf, 3.0]])
def test_max_anchor_finite_and_infinite_inputs(extra):
    # A finite X takes the body without the NaN check; inf takes the body with it.
    x = np.concatenate([float32_near_grid_ties(3), np.float32(extra)])
    x = x[np.isfinite(x) | np.isinf(x)]
    want = narrow("reference", x, TRAINING_MAX, 4, 3).view(np.uint32)
    got = narrow("onnxruntime", x, TRAINING_MAX, 4, 3).view(np.uint32)
    np.testing.assert_array_equal(got, want)


@pytest.mark.spec("X4", "X5")
def test_max_anchor_nan_input_gives_quiet_nan():
    # NaN has no code in this container: ONNX Runtime returns the signed quiet NaN for it and
    # narrows the rest as the reference does without it.
    finite = (np.random.default_rng(3).standard_normal(1000) * 10).astype(np.float32)
    x = np.concatenate([finite, np.array([0x7F80_0001, 0xFFC0_1234], np.uint32).view(np.float32)])
    want = narrow("reference", finite, TRAINING_MAX, 4, 3).view(np.uint32)
    got = narrow("onnxruntime", x, TRAINING_MAX, 4, 3).view(np.uint32)
    np.testing.assert_array_equal(got[:-2], want)
    assert got[-2] == 0x7FC0_0000
    assert got[-1] == 0xFFC0_0000
