"""All 65,536 BF16 patterns through a grid of containers, compared with the exact oracle.

Covers the rounding, underflow, overflow, NaN and sign rules (SPEC.md C2, C5, C7-C10, C12-C16)
by bit pattern. NaNs compare by class and sign: the implementation and the oracle both emit
the quiet NaN, so here they compare by bits too.
"""

import functools

import numpy as np
import pytest

import oracle
from reference import Container, max_anchor, quantize

ALL_BF16_BITS = np.arange(2**16, dtype=np.uint32) << np.uint32(16)


def sampled_configurations(count, seed):
    """Return ``count`` valid (container, anchor) pairs drawn with a fixed seed."""
    rng = np.random.default_rng(seed)
    configurations = []
    while len(configurations) < count:
        e = int(rng.integers(1, 9))
        m = int(rng.choice([0, 1, 2, 3, 4, 7]))
        fields = dict(
            specials=str(rng.choice(["ieee", "fn", "none"])),
            subnormals=bool(rng.integers(2)),
            saturate=bool(rng.integers(2)),
            rounding=str(rng.choice(["nearest_even", "toward_zero"])),
        )
        anchor = None if rng.integers(3) == 0 else int(rng.integers(-140, 128))
        try:
            container = Container(e, m, **fields)
            container.with_anchor(anchor)
        except ValueError:
            continue
        configurations.append((container, anchor))
    return configurations


HAND_PICKED = [
    (Container.from_name(name), None)
    for name in ("fp16", "bf16", "e5m2", "e4m3fn", "e3m4", "e3m2fn", "e2m3fn", "e2m1fn")
] + [
    (Container.training(3, 1), 0),
    (Container.training(1, 0), 5),
    (Container.training(4, 2, "toward_zero"), -120),
    (Container.training(8, 7), 127),
    (Container.training(8, 2), -100),
    (Container(2, 0, specials="none"), 3),
    (Container(2, 0, specials="fn"), None),
    (Container(5, 0), None),
    (Container(4, 3, specials="none", saturate=False), None),
    (Container(8, 0, subnormals=True, specials="none"), -10),
    (Container(3, 2, saturate=True, specials="fn"), -126),
]
CONFIGURATIONS = HAND_PICKED + sampled_configurations(24, seed=20260)


def configuration_id(configuration):
    container, anchor = configuration
    return f"{container.name}@{anchor}"


@functools.lru_cache(maxsize=None)
def oracle_positive_half(container, anchor):
    grid = oracle.grid_of(container, anchor)
    return [oracle.quantize_bits(int(bits), grid) for bits in ALL_BF16_BITS[: 2**15]]


def oracle_all_bf16(container, anchor):
    """Return the oracle's bits for every BF16 pattern (negatives by the sign rule C16)."""
    positive = oracle_positive_half(container, anchor)
    negative = [bits if bits == oracle.ERROR else bits | 0x8000_0000 for bits in positive]
    return positive + negative


def assert_bits_equal(actual_bits, expected_bits, inputs):
    mismatch = actual_bits != expected_bits
    if mismatch.any():
        i = int(np.flatnonzero(mismatch)[0])
        raise AssertionError(
            f"{int(mismatch.sum())} mismatches; first: input 0x{int(inputs[i]):08x} gave "
            f"0x{int(actual_bits[i]):08x}, oracle 0x{int(expected_bits[i]):08x}"
        )


@pytest.mark.spec("C2", "C5", "C7", "C8", "C9", "C12", "C13", "C14", "C16")
@pytest.mark.parametrize("configuration", CONFIGURATIONS, ids=configuration_id)
def test_all_bf16_patterns_match_oracle(configuration):
    container, anchor = configuration
    expected = oracle_all_bf16(container, anchor)
    valid = np.array([bits != oracle.ERROR for bits in expected])
    inputs = ALL_BF16_BITS[valid]
    expected_bits = np.array([bits for bits in expected if bits != oracle.ERROR], np.uint32)

    actual = quantize(inputs.view(np.float32), container, anchor=anchor)
    assert_bits_equal(actual.view(np.uint32), expected_bits, inputs)

    # Inputs that the rules reject raise ValueError, alone or among valid values.
    if not valid.all():
        first_error = ALL_BF16_BITS[~valid][:1]
        with pytest.raises(ValueError, match=f"first at element 1: 0x{int(first_error[0]):08x}"):
            quantize(np.concatenate([inputs[:1], first_error]).view(np.float32), container, anchor=anchor)


@pytest.mark.spec("C15")
@pytest.mark.parametrize("configuration", HAND_PICKED[1:8] + CONFIGURATIONS[-4:], ids=configuration_id)
def test_bf16_base_matches_fp32_base_on_bf16_values(configuration):
    ml_dtypes = pytest.importorskip("ml_dtypes")
    container, anchor = configuration
    if container.mantissa_bits > 7:
        pytest.skip("base bf16 allows at most 7 mantissa bits")
    fields = {f: getattr(container, f) for f in (
        "exponent_bits", "mantissa_bits", "bias", "specials", "subnormals", "saturate", "rounding")}
    bf16_container = Container(**fields, base="bf16")
    expected = oracle_all_bf16(container, anchor)
    valid = np.array([bits != oracle.ERROR for bits in expected])
    inputs = ALL_BF16_BITS[valid]
    expected_bits = np.array([bits for bits in expected if bits != oracle.ERROR], np.uint32)

    as_bfloat16 = (inputs >> np.uint32(16)).astype(np.uint16).view(ml_dtypes.bfloat16)
    out = quantize(as_bfloat16, bf16_container, anchor=anchor)
    assert out.dtype == as_bfloat16.dtype
    assert_bits_equal(out.view(np.uint16).astype(np.uint32) << np.uint32(16), expected_bits, inputs)

    out32 = quantize(inputs.view(np.float32), bf16_container, anchor=anchor)
    assert_bits_equal(out32.view(np.uint32), expected_bits, inputs)


@pytest.mark.spec("C6")
@pytest.mark.parametrize("rounding", ["nearest_even", "toward_zero", "stochastic"])
@pytest.mark.parametrize("m", [0, 1, 3, 7])
def test_max_anchor_matches_oracle(rounding, m):
    container = Container.training(4, m, rounding)
    rng = np.random.default_rng(m)
    finite = ALL_BF16_BITS[(ALL_BF16_BITS & 0x7F80_0000) != 0x7F80_0000]
    for _ in range(40):
        sample = rng.choice(finite, size=5)
        assert max_anchor(sample.view(np.float32), container) == oracle.max_anchor(
            [int(b) for b in sample], container
        ), [hex(b) for b in sample]
    # Every positive BF16 value alone: covers each binade and each carry into the next one.
    for bits in finite[: 2**15 : 7]:
        one = np.array([bits], np.uint32)
        assert max_anchor(one.view(np.float32), container) == oracle.max_anchor([int(bits)], container)


@pytest.mark.spec("C6")
def test_quantize_with_max_anchor_never_overflows():
    container = Container.training(3, 1, "stochastic")
    x = (ALL_BF16_BITS[: 2**15 - 2**7]).view(np.float32)  # the positive finite BF16 values
    rng = np.random.default_rng(7)
    for lo in range(0, x.size, 4096):
        block = x[lo : lo + 4096]
        noise = rng.integers(0, 2**32, block.shape, dtype=np.uint32)
        out = quantize(block, container, anchor="max", noise=noise)
        window = container.with_anchor(max_anchor(block, container))
        assert np.all(out <= window.max_value)


@pytest.mark.spec("C13")
@pytest.mark.parametrize("exponent_bits, mantissa_bits, anchor, base", [
    (2, 1, -149, "fp32"), (1, 3, -148, "fp32"), (3, 2, -147, "fp32"), (2, 2, -133, "bf16"),
])
def test_saturation_below_base_grid_matches_oracle(exponent_bits, mantissa_bits, anchor, base):
    # The top binade's step is finer than the base's smallest subnormal, so saturation goes
    # to max rounded down to that subnormal grid, which the oracle computes exactly.
    container = Container(exponent_bits, mantissa_bits, subnormals=False, saturate=True,
                          specials="none", base=base)
    inputs = ALL_BF16_BITS[(ALL_BF16_BITS & 0x7FFF_FFFF) < 0x7F80_0000]
    actual = quantize(inputs.view(np.float32), container, anchor=anchor).view(np.uint32)
    grid = oracle.grid_of(container, anchor)
    expected = np.array([oracle.quantize_bits(int(bits), grid) for bits in inputs], np.uint32)
    assert_bits_equal(actual, expected, inputs)
