"""encode's integer path for training containers gives the general path's codes and errors."""

import numpy as np
import pytest

from reference import Container, encode, quantize
from reference.codes import _codes_of_bits, _normal_member_codes
from reference.quantize import max_anchor

WIDTHS = [(e, m) for e in (1, 2, 3, 4, 5, 8) for m in (0, 1, 2, 3, 7, 10, 22, 23)]


def general_codes(values, window):
    return _codes_of_bits(values.view(np.uint32).reshape(-1), window)


@pytest.mark.spec("C17")
@pytest.mark.parametrize("widths", WIDTHS, ids=lambda w: f"e{w[0]}m{w[1]}")
def test_integer_codes_match_general_codes(widths):
    container = Container.training(*widths)
    rng = np.random.default_rng(sum(widths))
    for scale in (1e-30, 1e-3, 1.0, 1e4, 1e30):
        x = (rng.standard_normal(2000) * scale).astype(np.float32)
        x[:3] = 0.0
        x[3] = -0.0
        anchor = max_anchor(x, container)
        window = container.with_anchor(anchor)
        members = quantize(x, container, anchor=anchor)
        fast = _normal_member_codes(members.view(np.uint32).reshape(-1), window)
        assert fast is not None, f"scale {scale}: the integer path did not serve quantize output"
        assert np.array_equal(fast.astype(np.uint64), general_codes(members, window))


@pytest.mark.spec("C17")
def test_integer_codes_of_every_bf16_pattern():
    # Every finite BF16 pattern is a member of e8m7 at anchor 127, the window of BF16 itself.
    patterns = np.arange(2**16, dtype=np.uint32) << np.uint32(16)
    values = patterns.view(np.float32)
    values = values[np.isfinite(values)]
    container = Container.training(8, 7)
    window = container.with_anchor(127)
    fast = _normal_member_codes(values.view(np.uint32), window)
    subnormal = (values != 0) & (np.abs(values) < np.float32(2.0**-126))
    assert subnormal.any()
    assert fast is None  # FP32 subnormals take the general path
    normal = values[~subnormal]
    fast = _normal_member_codes(normal.view(np.uint32), window)
    assert fast is not None
    assert np.array_equal(fast.astype(np.uint64), general_codes(normal, window))


@pytest.mark.spec("C17", "C18")
@pytest.mark.parametrize("value", [1.0625, 2.0**20, 2.0**-20, np.inf, np.nan, 1e-45])
def test_integer_path_declines_non_members(value):
    container = Container.training(3, 2)
    window = container.with_anchor(0)
    bits = np.float32([0.5, value]).view(np.uint32)
    assert _normal_member_codes(bits, window) is None
    with pytest.raises(ValueError, match="element 1 is"):
        encode(np.float32([0.5, value]), container, anchor=0)


@pytest.mark.spec("C17")
@pytest.mark.parametrize("container", [Container.from_name("e4m3fn"), Container(4, 3)],
                         ids=lambda c: c.name)
def test_integer_path_declines_specials_and_subnormals(container):
    window = container.with_anchor(None)
    assert _normal_member_codes(np.float32([1.0]).view(np.uint32), window) is None


@pytest.mark.spec("C17")
def test_encode_of_all_zeros_keeps_signs():
    container = Container.training(3, 2)
    codes = encode(np.float32([0.0, -0.0, 0.0]), container, anchor=4)
    assert codes.tolist() == [0, 1 << 5, 0]


@pytest.mark.spec("C17")
def test_encode_of_empty_tensor():
    codes = encode(np.zeros((0, 3), np.float32), Container.training(3, 2), anchor=4)
    assert codes.shape == (0, 3)
