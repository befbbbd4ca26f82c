"""One test per mistake that published quantizers have made (SPEC.md C2, C7, C8, C12-C16).

Each test names the mistake and shows an input on which a quantizer with that mistake gives a
different bit pattern.
"""

import numpy as np
import pytest

from reference import Container, encode, quantize

E4M3FN = Container.from_name("e4m3fn")


def bits_of(values):
    return [hex(int(b)) for b in np.asarray(values, np.float32).view(np.uint32)]


def narrow(values, container, **kwargs):
    return quantize(np.asarray(values, np.float32), container, **kwargs)


@pytest.mark.spec("C8")
def test_ties_round_to_even_not_away():
    # 1.0625 lies halfway between 1.0 and 1.125; 1.1875 between 1.125 and 1.25.
    out = narrow([1.0625, 1.1875, -1.0625, -1.1875], E4M3FN)
    assert out.tolist() == [1.0, 1.25, -1.0, -1.25]


@pytest.mark.spec("C8")
def test_ties_with_no_mantissa_round_up():
    # With m = 0 the grid of a binade is 1 * 2^E and 2 * 2^E; the even significand is 2.
    out = narrow([1.5, 3.0, 6.0, -1.5], Container(5, 0))
    assert out.tolist() == [2.0, 4.0, 8.0, -2.0]


@pytest.mark.spec("C8")
def test_squared_error_cannot_see_ties():
    # Both neighbours of the tie 1.0625 have the same squared error. So a rounding check by
    # mean squared error passes an away-from-zero implementation, and only the bits show it.
    assert (1.0625 - 1.0) ** 2 == (1.125 - 1.0625) ** 2
    assert bits_of(narrow([1.0625], E4M3FN)) == bits_of([1.0])


@pytest.mark.spec("C7", "C16")
@pytest.mark.parametrize("mantissa_bits", [23, 22])
def test_full_mantissa_keeps_signs(mantissa_bits):
    # A shift by 0 (m = 23) or by -1 must not wrap and must not touch the sign bit.
    rng = np.random.default_rng(mantissa_bits)
    bits = rng.integers(0, 2**32, 100_000, dtype=np.uint64).astype(np.uint32)
    x = bits.view(np.float32)
    x = x[np.isfinite(x)]
    out = narrow(x, Container(8, mantissa_bits))
    assert np.array_equal(np.signbit(out), np.signbit(x))
    if mantissa_bits == 23:
        assert np.array_equal(out.view(np.uint32), x.view(np.uint32))


@pytest.mark.spec("C12")
def test_subnormals_rounded_once():
    # x = 1.0001b * 2^-10 is above half of e4m3fn's subnormal step 2^-9, so it rounds to 2^-9.
    # Rounding first to 3 mantissa bits (1.000b * 2^-10, a tie) and then to the subnormal grid
    # (tie to even: 0) gives 0.
    x = np.float32(2.0**-10 * (1 + 2.0**-4))
    assert narrow([x], E4M3FN).tolist() == [2.0**-9]


@pytest.mark.spec("C12")
def test_flush_after_rounding_without_subnormals():
    container = Container(4, 3, subnormals=False)
    just_below_min = 2.0**-6 * (1 - 2.0**-5)  # rounds up to min_normal on the unbounded grid
    assert narrow([just_below_min, -just_below_min], container).tolist() == [2.0**-6, -(2.0**-6)]
    assert bits_of(narrow([2.0**-6 * 0.9, -(2.0**-6) * 0.9], container)) == bits_of([0.0, -0.0])


@pytest.mark.spec("C16")
@pytest.mark.parametrize("container", [E4M3FN, Container(4, 3, subnormals=False),
                                       Container.training(3, 1)], ids=lambda c: c.name)
def test_negative_zero_survives(container):
    out = narrow([-0.0, -1e-30, -(2.0**-149)], container)
    assert bits_of(out) == bits_of([-0.0, -0.0, -0.0])


@pytest.mark.spec("C13", "C14")
def test_inf_and_nan_are_not_turned_into_numbers():
    e5m2 = Container.from_name("e5m2")
    assert bits_of(narrow([np.inf, -np.inf, np.nan, -np.nan], e5m2)) == bits_of(
        [np.inf, -np.inf, np.nan, -np.nan])
    # e4m3fn has no inf: inf becomes NaN, never max and never a finite value.
    out = narrow([np.inf, -np.inf], E4M3FN)
    assert bits_of(out) == ["0x7fc00000", "0xffc00000"]
    # Saturating maps inf to max but keeps NaN a NaN.
    saturating = Container(4, 3, specials="fn", saturate=True)
    assert bits_of(narrow([np.inf, -np.inf, np.nan], saturating)) == bits_of([448.0, -448.0, np.nan])


@pytest.mark.spec("C14")
def test_nan_payloads_become_quiet_nan_with_sign():
    payloads = np.uint32([0x7F80_0001, 0xFF80_0001, 0x7FBF_FFFF, 0xFFFF_FFFF]).view(np.float32)
    for container in (Container.from_name("e5m2"), E4M3FN, Container.from_name("fp32")):
        out = quantize(payloads, container)
        assert bits_of(out) == ["0x7fc00000", "0xffc00000", "0x7fc00000", "0xffc00000"]


@pytest.mark.spec("C7")
def test_binade_from_bits_not_log2():
    # Just below a power of two, float32 log2 rounds up to the next integer, which selects the
    # wrong binade and so the wrong grid. Every such value must stay put at m = 23 and round
    # to the power of two at m = 3.
    powers = np.float32(2.0) ** np.arange(-125, 127, dtype=np.float32)
    below = np.nextafter(powers, np.float32(0))
    assert np.any(np.floor(np.log2(below)) == np.log2(powers))  # log2 really is wrong here
    assert np.array_equal(narrow(below, Container(8, 23)).view(np.uint32), below.view(np.uint32))
    assert np.array_equal(narrow(below, Container(8, 3)), powers)
    assert np.array_equal(narrow(below, Container(8, 22)).view(np.uint32), powers.view(np.uint32))


@pytest.mark.spec("C13")
def test_overflow_judged_after_rounding():
    assert narrow([449.0, 463.0, 464.0], E4M3FN).tolist() == [448.0, 448.0, 448.0]
    assert np.isnan(narrow([465.0], E4M3FN)[0])
    e5m2 = Container.from_name("e5m2")
    assert narrow([57344.0, 61439.0], e5m2).tolist() == [57344.0, 57344.0]
    assert narrow([61440.0], e5m2).tolist() == [np.inf]


@pytest.mark.spec("C2")
def test_e4m3_max_follows_specials():
    x = np.float32([1000.0, 250.0])
    assert np.isinf(narrow(x, Container(4, 3))).tolist() == [True, True]
    assert narrow(x, Container(4, 3, saturate=True)).tolist() == [240.0, 240.0]
    assert narrow(x, Container(4, 3, specials="fn", saturate=True)).tolist() == [448.0, 256.0]
    assert narrow(x, Container(4, 3, specials="none", saturate=True)).tolist() == [480.0, 256.0]


@pytest.mark.spec("C15")
def test_narrowing_through_bf16_rounds_twice():
    ml_dtypes = pytest.importorskip("ml_dtypes")
    x = np.uint32([0x3F82_8001]).view(np.float32)
    one_step = narrow(x, Container(8, 6))
    through_bf16 = quantize(x.astype(ml_dtypes.bfloat16), Container(8, 6, base="bf16"))
    assert float(one_step[0]) == float.fromhex("0x1.04p+0")
    assert float(through_bf16[0]) == float.fromhex("0x1.08p+0")


@pytest.mark.spec("C9", "C13")
def test_toward_zero_overflow_judged_after_rounding():
    e5m2 = Container(5, 2, rounding="toward_zero")
    assert narrow([61439.0, 65535.0], e5m2).tolist() == [57344.0, 57344.0]
    # 65536 is on the grid of the next binade, beyond max: unlike IEEE roundTowardZero it
    # overflows to inf, and saturate gives max.
    assert narrow([65536.0], e5m2).tolist() == [np.inf]
    assert narrow([65536.0], Container(5, 2, rounding="toward_zero", saturate=True)).tolist() == [57344.0]


@pytest.mark.spec("C7")
def test_no_double_rounding_through_wider_format():
    # One FP32 ulp above each e4m3fn tie must round up and one below must round down. Rounding
    # through FP16 first turns both neighbours into the tie itself, which then goes to even.
    values_above, values_below, up, down = [], [], [], []
    for exponent in range(-6, 9):
        for significand in range(8, 16):
            tie = np.float32((significand + 0.5) * 2.0 ** (exponent - 3))
            values_above.append(np.nextafter(tie, np.float32(np.inf)))
            values_below.append(np.nextafter(tie, np.float32(0)))
            up.append((significand + 1) * 2.0 ** (exponent - 3))
            down.append(significand * 2.0 ** (exponent - 3))
    container = Container(4, 3, specials="fn", saturate=True)
    above = np.array(values_above, np.float32)
    below = np.array(values_below, np.float32)
    assert narrow(above, container).tolist() == [min(v, 448.0) for v in up]
    assert narrow(below, container).tolist() == [min(v, 448.0) for v in down]
    # The same test catches a quantizer that rounds through FP16 first.
    through_fp16 = narrow(above.astype(np.float16).astype(np.float32), container)
    assert through_fp16.tolist() != [min(v, 448.0) for v in up]


@pytest.mark.spec("C15")
def test_layouts_and_empty_inputs():
    container = Container.from_name("e4m3fn")
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4) * np.float32(1.03)
    expected = narrow(x.reshape(-1), container).reshape(x.shape)
    assert np.array_equal(quantize(np.asfortranarray(x), container), expected)
    assert np.array_equal(quantize(x[:, ::2], container), expected[:, ::2])
    scalar = quantize(np.array(1.0625, np.float32), container)
    assert scalar.shape == ()
    assert scalar == 1.0
    assert quantize(np.zeros((0, 3), np.float32), container).shape == (0, 3)


@pytest.mark.spec("C13", "C18")
def test_saturation_below_fp32_grid_is_member():
    # Anchored at -149, e2m1 without subnormals has max 1.1b * 2^-149, which FP32 cannot hold.
    # Rounding it to nearest gave 2^-148, above the window, and encode rejected the output.
    container = Container(2, 1, subnormals=False, saturate=True)
    window = container.with_anchor(-149)
    assert window.max_value == 1.5 * 2.0**-149
    assert window.saturation_value == 2.0**-149
    x = np.float32([1.0, -np.inf, 2.0**-148, 2.0**-149])
    out = narrow(x, container, anchor=-149)
    assert bits_of(out) == ["0x1", "0x80000001", "0x1", "0x1"]
    assert encode(out, container, anchor=-149).tolist() == [4, 12, 4, 4]


@pytest.mark.spec("C13")
def test_saturation_value_rounds_down_to_base_grid():
    # e3m4 anchored at -131 under base bf16: max 1.1111b * 2^-131 = 31 * 2^-135, and BF16's
    # smallest subnormal is 2^-133, so the largest BF16 member is 28 * 2^-135 = 7 * 2^-133.
    window = Container(3, 4, specials="none", saturate=True, base="bf16").with_anchor(-131)
    assert window.max_value == 31 * 2.0**-135
    assert window.saturation_value == 7 * 2.0**-133
    assert Container.from_name("e4m3fn").saturation_value == 448.0
