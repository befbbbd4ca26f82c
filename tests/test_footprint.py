"""Footprint accounting (SPEC.md section F)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from reference.footprint import FootprintLedger, bits_per_value

record_strategy = st.tuples(
    st.integers(0, 20),                      # step
    st.sampled_from(["conv1", "conv2", "fc1"]),
    st.sampled_from(["weight", "activation"]),
    st.integers(0, 10_000),                  # elements
    st.integers(1, 8),                       # exponent bits
    st.integers(0, 23),                      # mantissa bits
)


@pytest.mark.spec("F1")
def test_bits_per_value_counts_sign_exponent_mantissa():
    assert bits_per_value(8, 23) == 32
    assert bits_per_value(8, 7) == 16
    assert bits_per_value(3, 1) == 5


@pytest.mark.spec("F1", "F2", "F3")
@given(records=st.lists(record_strategy, min_size=1, max_size=60))
def test_totals_equal_independent_sums(records):
    ledger = FootprintLedger()
    for record in records:
        ledger.record(*record)

    expected_bits = sum(n * (1 + e + m) for _, _, _, n, e, m in records)
    expected_elements = sum(n for _, _, _, n, _, _ in records)
    assert ledger.total_bits() == expected_bits
    assert ledger.total_elements() == expected_elements
    if expected_bits > 0:
        assert ledger.ratio_fp32() == 32 * expected_elements / expected_bits
        assert ledger.ratio_bf16() == 16 * expected_elements / expected_bits

    for tensor in ledger.tensors():
        mine = [r for r in records if (r[1], r[2]) == (tensor.name, tensor.kind)]
        assert tensor.instances == len(mine)
        assert tensor.elements == sum(r[3] for r in mine)
        assert tensor.bits == sum(r[3] * (1 + r[4] + r[5]) for r in mine)
        assert tensor.max_elements == max(r[3] for r in mine)
    assert sum(t.bits for t in ledger.tensors()) == expected_bits
    assert ledger.records() == [tuple(r) for r in records]


@pytest.mark.spec("F3")
@given(records=st.lists(record_strategy, min_size=1, max_size=60))
def test_per_step_bits_sum_each_step(records):
    ledger = FootprintLedger()
    for record in records:
        ledger.record(*record)

    steps, stored, fp32 = ledger.per_step_bits()
    assert list(steps) == sorted({r[0] for r in records})
    for step, stored_bits, fp32_bits in zip(steps, stored, fp32):
        mine = [r for r in records if r[0] == step]
        assert stored_bits == sum(r[3] * (1 + r[4] + r[5]) for r in mine)
        assert fp32_bits == sum(32 * r[3] for r in mine)
    assert stored.sum() == ledger.total_bits()


@pytest.mark.spec("F2")
def test_fp32_widths_give_ratio_one():
    ledger = FootprintLedger()
    ledger.record(0, "fc1", "weight", 1000, 8, 23)
    ledger.record(0, "fc1", "activation", 640, 8, 23)
    assert ledger.ratio_fp32() == 1.0
    assert ledger.ratio_bf16() == 0.5


@pytest.mark.spec("F4")
def test_gecko_sizes_leave_plain_ratios():
    ledger = FootprintLedger()
    ledger.record(0, "fc1", "weight", 100, 4, 1)                       # 600 bits
    ledger.record_gecko(0, "fc1", "weight", 450)
    assert ledger.total_bits() == 600
    assert ledger.ratio_fp32() == 32 * 100 / 600
    assert ledger.ratio_fp32_gecko() == 32 * 100 / 450
    assert ledger.ratio_bf16_gecko() == 16 * 100 / 450


@pytest.mark.spec("F4")
def test_unsampled_instances_take_latest_ratio():
    ledger = FootprintLedger()
    # fc1 weight: plain 600 bits per step; packed at steps 0 (300 bits) and 2 (450 bits).
    # fc1 activation: first stored at step 1, packed at step 2 only (ratio 0.5).
    for step in range(4):
        ledger.record(step, "fc1", "weight", 100, 4, 1)
        if step == 0:
            ledger.record_gecko(step, "fc1", "weight", 300)
        if step == 2:
            ledger.record_gecko(step, "fc1", "weight", 450)
        if step >= 1:
            ledger.record(step, "fc1", "activation", 10 * step, 2, 1)   # 40 bits per 10 values
            if step == 2:
                ledger.record_gecko(step, "fc1", "activation", 40)

    weight = 300 + 600 * 0.5 + 450 + 600 * 0.75
    activation = 40 * 0.5 + 40 + 120 * 0.5
    assert ledger.total_gecko_bits() == weight + activation
    assert ledger.gecko_instances() == 3
    by_name = {t.kind: t for t in ledger.tensors()}
    assert by_name["weight"].gecko_bits == weight
    assert by_name["weight"].gecko_instances == 2
    assert by_name["activation"].gecko_bits == activation
    assert by_name["activation"].ratio_fp32_gecko == 32 * 60 / activation
    steps, gecko = ledger.per_step_gecko_bits()
    assert steps.tolist() == [0, 1, 2, 3]
    assert gecko.tolist() == [300, 300 + 20, 450 + 40, 450 + 60]


@pytest.mark.spec("F4")
def test_unsampled_tensor_keeps_plain_bits():
    ledger = FootprintLedger()
    ledger.record(0, "fc1", "weight", 100, 4, 1)
    ledger.record_gecko(0, "fc1", "weight", 500)
    ledger.record(0, "fc2", "weight", 50, 3, 0)                        # 200 bits, never packed
    assert ledger.total_gecko_bits() == 700
    fc2 = ledger.tensors()[1]
    assert fc2.gecko_instances == 0
    assert fc2.ratio_fp32_gecko is None


@pytest.mark.spec("F4")
@given(records=st.lists(record_strategy, min_size=1, max_size=40), data=st.data())
def test_gecko_every_record_sums_exactly(records, data):
    ledger = FootprintLedger()
    expected = 0
    for record in records:
        ledger.record(*record)
        gecko_bits = data.draw(st.integers(1, 10**9), label="gecko bits")
        ledger.record_gecko(record[0], record[1], record[2], gecko_bits)
        expected += gecko_bits
    assert ledger.total_gecko_bits() == expected
    assert sum(t.gecko_bits for t in ledger.tensors()) == expected


@pytest.mark.spec("F4")
def test_gecko_size_needs_its_record():
    ledger = FootprintLedger()
    with pytest.raises(ValueError, match="record the instance"):
        ledger.record_gecko(0, "fc1", "weight", 100)
    ledger.record(0, "fc1", "weight", 100, 4, 1)
    with pytest.raises(ValueError, match="at step 1 with record"):
        ledger.record_gecko(1, "fc1", "weight", 100)
    with pytest.raises(ValueError, match="positive number of bits"):
        ledger.record_gecko(0, "fc1", "weight", 0)
    with pytest.raises(ValueError, match="at least one measured"):
        ledger.ratio_fp32_gecko()


@pytest.mark.spec("F2")
def test_large_totals_stay_exact():
    ledger = FootprintLedger()
    big = 2**50
    ledger.record(0, "fc1", "weight", big, 8, 23)
    ledger.record(1, "fc1", "weight", 3, 1, 0)
    assert ledger.total_bits() == 32 * big + 6
    assert ledger.tensors()[0].bits == 32 * big + 6
    assert ledger.per_step_bits()[1].dtype == np.int64


@pytest.mark.spec("F1")
@pytest.mark.parametrize("kind, e, m", [("bias", 8, 23), ("weight", 0, 3), ("weight", 4, 24)])
def test_invalid_record_raises(kind, e, m):
    with pytest.raises(ValueError, match="footprint"):
        FootprintLedger().record(0, "fc1", kind, 10, e, m)


@pytest.mark.spec("F2")
def test_empty_ledger_ratio_raises():
    with pytest.raises(ValueError, match="at least one stored value"):
        FootprintLedger().ratio_fp32()
