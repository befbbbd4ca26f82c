"""Gecko-packed sizes in the training footprint (SPEC.md F4 and F5)."""

import json
import math

import numpy as np
import pytest

from numpyml import narrowing
from numpyml.report import format_table
from numpyml.train import TrainConfig, train
from reference import Container, max_anchor
from reference.bitlength import narrow
from reference.gecko import encoded_bits, pack

GROUP_SIZE = 32


class Captured:
    """Mixin that keeps every stored training instance: step, key, stored values and source."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.instances = []
        self._widths = None

    def record(self, key, elements, exponent_bits, mantissa_bits):
        self._widths = (int(exponent_bits), int(mantissa_bits))
        super().record(key, elements, exponent_bits, mantissa_bits)

    def narrow_for_training(self, key, tensor):
        out = super().narrow_for_training(key, tensor)
        self.instances.append((self.step, key, out.data.copy(), tensor.data.copy(),
                               *self._widths))
        return out


class CapturedQuantum(Captured, narrowing.QuantumNarrowing):
    pass


class CapturedFixed(Captured, narrowing.FixedNarrowing):
    pass


def packed_bits(stored, source, exponent_bits, mantissa_bits):
    """Return 8 times the length of the Gecko stream of one stored instance."""
    container = Container.training(exponent_bits, mantissa_bits)
    anchor = max_anchor(source, container)
    return 8 * len(pack(stored, container, anchor=anchor, mode="fixed"))


def run(method, gecko_every, out_dir=None):
    method.set_gecko_every(gecko_every)
    config = TrainConfig(model="cnn", dataset="digits", epochs=1, seed=3,
                         out_dir=None if out_dir is None else str(out_dir))
    report = train(config, method=method)
    return method, report


@pytest.fixture(scope="module")
def every_step():
    return run(CapturedQuantum(narrowing.QuantumConfig(fast_lr=1.0)), 1)


@pytest.fixture(scope="module")
def every_third_step():
    return run(CapturedQuantum(narrowing.QuantumConfig(fast_lr=1.0)), 3)


@pytest.mark.spec("F4")
def test_every_step_equals_packed_lengths(every_step):
    method, _ = every_step
    expected = {}
    for _, key, stored, source, e, m in method.instances:
        expected[key] = expected.get(key, 0) + packed_bits(stored, source, e, m)

    assert method.ledger.gecko_instances() == len(method.instances)
    assert method.ledger.total_gecko_bits() == sum(expected.values())
    for tensor in method.ledger.tensors():
        assert tensor.gecko_bits == expected[(tensor.name, tensor.kind)]


@pytest.mark.spec("F4", "TF1")
def test_every_third_step_estimates_between(every_step, every_third_step):
    exact, _ = every_step
    sampled, _ = every_third_step
    # Packing draws no random numbers, so both runs store the same tensors.
    assert [(s, k, e, m) for s, k, _, _, e, m in sampled.instances] == \
        [(s, k, e, m) for s, k, _, _, e, m in exact.instances]

    expected = 0.0
    latest_ratio = {}
    for step, key, stored, source, e, m in exact.instances:
        plain = stored.size * (1 + e + m)
        if step % 3 == 0:
            size = packed_bits(stored, source, e, m)
            latest_ratio[key] = size / plain
            expected += size
        else:
            expected += plain * latest_ratio[key]

    measured_steps = {s for s, *_ in exact.instances if s % 3 == 0}
    assert sampled.ledger.gecko_instances() == sum(s in measured_steps
                                                   for s, *_ in exact.instances)
    assert math.isclose(sampled.ledger.total_gecko_bits(), expected, rel_tol=1e-12)
    assert sampled.ledger.total_bits() == exact.ledger.total_bits()


@pytest.mark.spec("F5")
def test_packed_size_within_overhead_bound(every_step):
    method, _ = every_step
    for _, key, stored, source, e, m in method.instances:
        container = Container.training(e, m)
        sizes = encoded_bits(stored, container, anchor=max_anchor(source, container))
        plain = stored.size * (1 + e + m)
        assert sizes["total_bits"] <= plain + overhead_bound(stored.size, e, sizes), key


def overhead_bound(elements, exponent_bits, sizes):
    """Return the largest excess of a Gecko stream over the plain bits that F5 allows."""
    groups = -(-elements // GROUP_SIZE)
    delta_width = 8 if exponent_bits == 7 else exponent_bits
    per_group = 45 + GROUP_SIZE * (delta_width - exponent_bits)
    return sizes["header_bits"] + 144 + groups * per_group


@pytest.mark.spec("F5")
@pytest.mark.parametrize("exponent_bits, mantissa_bits", [(3, 1), (4, 3), (7, 2), (8, 7)])
def test_spread_exponents_cost_more(exponent_bits, mantissa_bits):
    # Exponent fields spread over the whole range with one zero per group: no group is cheap.
    rng = np.random.default_rng(exponent_bits)
    container = Container.training(exponent_bits, mantissa_bits)
    # float32 sources reach 2**-126, so e = 8 spreads over 126 of its 255 exponent fields.
    lowest = min(2**exponent_bits - 2, 125)
    x = np.exp2(rng.uniform(-lowest, 0, 4096)).astype(np.float32)
    x *= rng.choice([-1, 1], x.size).astype(np.float32)
    x[::GROUP_SIZE] = 0
    stored = narrow(x, exponent_bits, mantissa_bits)
    sizes = encoded_bits(stored, container, anchor=max_anchor(x, container))
    plain = x.size * (1 + exponent_bits + mantissa_bits)
    excess = sizes["total_bits"] - plain
    assert excess <= overhead_bound(x.size, exponent_bits, sizes)
    # Gecko loses to plain storage here: 0.1 bits per value, 1.2 for e = 7 (8-bit deltas).
    assert excess > 0


@pytest.mark.spec("F5")
def test_real_tensors_gain_except_tiny(every_step):
    _, report = every_step
    for tensor in report["tensors"]:
        gain = tensor["footprint_ratio_fp32_gecko"] / tensor["footprint_ratio_fp32"]
        if tensor["elements"] >= 4096:
            assert gain > 1.0, tensor
        else:
            # 288 and 1280 values: the header's share of a tiny stream can cancel the gain.
            assert gain > 0.9, tensor


@pytest.mark.spec("F4")
def test_interpolation_packs_ceiling_corner():
    config = narrowing.QuantumConfig(fast_lr=1.0, mode="interpolate")
    method, _ = run(CapturedQuantum(config), 1)
    expected = 0
    for _, _, _, source, e, m in method.instances:
        expected += packed_bits(narrow(source, e, m), source, e, m)
    assert method.ledger.total_gecko_bits() == expected


@pytest.mark.spec("F4")
def test_fixed_widths_pack_stored_values():
    method, _ = run(CapturedFixed(4, 3), 1)
    expected = sum(packed_bits(stored, source, e, m)
                   for _, _, stored, source, e, m in method.instances)
    assert method.ledger.total_gecko_bits() == expected
    assert all((e, m) == (4, 3) for *_, e, m in method.instances)


@pytest.mark.spec("F4")
def test_report_carries_gecko_keys(every_third_step):
    method, report = every_third_step
    assert report["gecko_every"] == 3
    assert report["footprint_ratio_fp32_gecko"] == method.ledger.ratio_fp32_gecko()
    assert report["footprint_ratio_bf16_gecko"] == report["footprint_ratio_fp32_gecko"] / 2
    for tensor, totals in zip(report["tensors"], method.ledger.tensors()):
        assert tensor["footprint_ratio_fp32_gecko"] == totals.ratio_fp32_gecko
    json.dumps(report)  # raises TypeError unless every value is JSON

    table = format_table(report)
    assert "with Gecko" in table
    assert f"{report['footprint_ratio_fp32_gecko']:.2f}x against FP32" in table


@pytest.mark.spec("F4")
def test_gecko_every_zero_turns_off():
    method, report = run(narrowing.FixedNarrowing(4, 3), 0)
    assert method.ledger.gecko_instances() == 0
    assert report["gecko_every"] == 0
    assert report["footprint_ratio_fp32_gecko"] is None
    assert report["footprint_ratio_bf16_gecko"] is None
    assert all(t["footprint_ratio_fp32_gecko"] is None for t in report["tensors"])
    assert "against FP32" in format_table(report)


@pytest.mark.spec("F4")
@pytest.mark.parametrize("steps", [-1, 2.5, True])
def test_gecko_every_rejects_invalid(steps):
    with pytest.raises(ValueError, match="gecko_every"):
        narrowing.FixedNarrowing().set_gecko_every(steps)


@pytest.mark.spec("F4")
def test_cli_gecko_every_flag(tmp_path, capsys):
    from sfp import main

    out_dir = tmp_path / "run"
    code = main(["train", "--method", "fixed", "--exponent-bits", "4", "--mantissa-bits", "3",
                 "--epochs", "1", "--gecko-every", "5", "--out", str(out_dir)])
    assert code == 0
    report = json.loads((out_dir / "report.json").read_text())
    assert report["gecko_every"] == 5
    assert report["footprint_ratio_fp32_gecko"] > 0
    assert "with Gecko" in capsys.readouterr().out

    code = main(["train", "--method", "fixed", "--epochs", "1", "--gecko-every", "-2",
                 "--out", str(tmp_path / "bad")])
    assert code == 2
    assert "--gecko-every: must be >= 0" in capsys.readouterr().err


@pytest.mark.spec("F4")
def test_failed_packing_skips_sample(caplog):
    method = narrowing.FixedNarrowing(4, 3)
    method.ledger.record(0, "fc1", "weight", 3, 4, 3)
    source = np.float32([1.0, 0.5, 0.25])
    outside = np.float32([1.0, 0.5, 0.3])          # 0.3 is not a member of e4m3
    with caplog.at_level("WARNING", logger="numpyml.narrowing"):
        method.record_gecko(("fc1", "weight"), outside, source, 4, 3)
    assert method.ledger.gecko_instances() == 0
    assert "Gecko packing of fc1 weight at e=4 m=3 failed" in caplog.text

    method.record_gecko(("fc1", "weight"), narrow(source, 4, 3), source, 4, 3)
    assert method.ledger.gecko_instances() == 1


@pytest.mark.spec("F3", "F4")
def test_footprint_plot_draws_gecko_line(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    from matplotlib.axes import Axes

    from numpyml.report import write_plots
    from reference.footprint import FootprintLedger

    labels = []
    original_plot = Axes.plot

    def recording_plot(self, *args, **kwargs):
        labels.append(kwargs.get("label"))
        return original_plot(self, *args, **kwargs)

    monkeypatch.setattr(Axes, "plot", recording_plot)
    ledger = FootprintLedger()
    ledger.record(0, "fc1", "weight", 100, 4, 1)
    write_plots(tmp_path, [], ledger)
    assert labels == ["stored bits per value"]

    labels.clear()
    ledger.record_gecko(0, "fc1", "weight", 400)
    write_plots(tmp_path, [], ledger)
    assert labels == ["stored bits per value", "with Gecko"]
