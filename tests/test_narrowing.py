"""Narrowing training methods in the numpyml trainer (SPEC.md sections Q, B and F)."""

import numpy as np
import pytest

from numpyml import narrowing
from numpyml.engine import Tensor
from numpyml.train import TrainConfig, load_checkpoint, train
from reference import Container, controller, encode, max_anchor
from reference.bitlength import narrow

REPORT_KEYS = ("test_accuracy", "footprint_ratio_fp32", "footprint_ratio_bf16", "tensors")


class Checked:
    """Mixin that checks every stored training tensor and keeps its own record of widths."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.stored = []
        self._last_widths = None

    def record(self, key, elements, exponent_bits, mantissa_bits):
        self._last_widths = (exponent_bits, mantissa_bits)
        super().record(key, elements, exponent_bits, mantissa_bits)

    def narrow_for_training(self, key, tensor):
        out = super().narrow_for_training(key, tensor)
        exponent_bits, mantissa_bits = self._last_widths
        container = Container.training(int(exponent_bits), int(mantissa_bits))
        # encode raises ValueError for any value that is not a member of the container.
        encode(out.data, container, anchor=max_anchor(tensor.data, container))
        self.stored.append((self.step, key, tensor.data.size, int(exponent_bits),
                            int(mantissa_bits)))
        return out


class CheckedQuantum(Checked, narrowing.QuantumNarrowing):
    pass


class CheckedController(Checked, narrowing.ControllerNarrowing):
    pass


class CheckedFixed(Checked, narrowing.FixedNarrowing):
    pass


def short_config(tmp_path=None, epochs=1):
    out_dir = None if tmp_path is None else str(tmp_path)
    return TrainConfig(model="cnn", dataset="digits", epochs=epochs, seed=3, out_dir=out_dir)


@pytest.fixture(scope="module")
def quantum_run(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("quantum")
    method = CheckedQuantum(narrowing.QuantumConfig(fast_lr=1.0))
    report = train(short_config(out_dir), method=method)
    return method, report, out_dir


@pytest.mark.spec("Q1", "Q2")
def test_quantum_stores_container_members(quantum_run):
    method, report, _ = quantum_run
    steps = {step for step, *_ in method.stored}
    assert steps == set(range(report["steps"]))
    # 4 layers, a weight and an activation each, at every step
    assert len(method.stored) == 8 * report["steps"]


@pytest.mark.spec("F1", "F2", "TF1")
def test_quantum_footprint_equals_stored_sum(quantum_run):
    method, report, _ = quantum_run
    bits = sum(n * (1 + e + m) for _, _, n, e, m in method.stored)
    values = sum(n for _, _, n, _, _ in method.stored)
    assert method.ledger.total_bits() == bits
    assert report["footprint_ratio_fp32"] == pytest.approx(32 * values / bits, rel=1e-12)
    assert report["footprint_ratio_bf16"] == pytest.approx(16 * values / bits, rel=1e-12)


@pytest.mark.spec("Q6", "Q7")
def test_quantum_widths_come_down(quantum_run):
    method, report, _ = quantum_run
    first_step = [r for r in method.stored if r[0] == 0]
    last_step = [r for r in method.stored if r[0] == report["steps"] - 1]
    assert all((e, m) == (8, 23) for *_, e, m in first_step)
    mean_bits_last = np.mean([1 + e + m for *_, e, m in last_step])
    assert mean_bits_last < 16


@pytest.mark.spec("Q9", "F1")
def test_quantum_report_fields(quantum_run):
    method, report, out_dir = quantum_run
    for key in REPORT_KEYS:
        assert key in report
    assert report["method"] == "quantum"
    names = {(t["name"], t["kind"]) for t in report["tensors"]}
    assert len(names) == 8
    for tensor in report["tensors"]:
        learned_e, learned_m = report["learned_widths"][f"{tensor['name']} {tensor['kind']}"]
        assert tensor["exponent_bits"] == int(np.ceil(learned_e))
        assert tensor["mantissa_bits"] == int(np.ceil(learned_m))
        assert tensor["elements"] > 0
    assert (out_dir / "report.json").exists()


@pytest.mark.spec("Q9")
def test_quantum_evaluation_uses_final_containers(quantum_run):
    method, _, _ = quantum_run
    recorded = len(method.ledger)
    key = ("classifier.1", "weight")
    x = np.random.default_rng(0).standard_normal((4, 5)).astype(np.float32)

    method.set_training(False)
    out = method(key[0], key[1], Tensor(x))
    method.set_training(True)

    exponent_bits, mantissa_bits = method.final_widths(key)
    assert np.array_equal(out.data, narrow(x, exponent_bits, mantissa_bits))
    assert len(method.ledger) == recorded


@pytest.mark.spec("Q7")
def test_quantum_checkpoint_restores_widths(quantum_run, tmp_path):
    method, _, out_dir = quantum_run
    from numpyml import models

    fresh = narrowing.QuantumNarrowing()
    model = models.build("cnn", (1, 8, 8), 10)
    fresh.attach(model, short_config())
    load_checkpoint(out_dir / "checkpoint.npz", model, fresh)
    for key in method.mantissas:
        assert fresh.widths(key) == method.widths(key)


@pytest.mark.spec("B1", "B2", "F1")
def test_bitwave_stores_controller_widths():
    config = controller.bitwave_config(warmup_steps=5, period=2)
    method = CheckedController(config)
    report = train(short_config(), method=method)

    # history[s] contains the widths after step s, so step s stored at those of step s - 1.
    start = controller.init(config)
    widths_by_step = {0: (start.exponent_bits, start.mantissa_bits)}
    for step, _, _, e, m in method.history:
        widths_by_step[step + 1] = (e, m)
    for step, _, _, e, m in method.stored:
        assert (e, m) == widths_by_step[step]
    assert report["method"] == "bitwave"
    assert len(method.history) == report["steps"]


@pytest.mark.spec("F1", "F2")
def test_fixed_bf16_widths_give_ratio_two():
    method = CheckedFixed(8, 7)
    report = train(short_config(), method=method)
    assert report["footprint_ratio_fp32"] == 2.0
    assert report["footprint_ratio_bf16"] == 1.0
    assert all((e, m) == (8, 7) for *_, e, m in method.stored)


@pytest.mark.spec("Q8")
def test_quantum_clamps_widths_to_floors():
    config = narrowing.QuantumConfig(gamma=5.0, fast_lr=2.0, mantissa_min=1.0,
                                     exponent_min=3.0)
    method = narrowing.QuantumNarrowing(config)
    train(short_config(), method=method)
    for key in method.mantissas:
        exponent_bits, mantissa_bits = method.widths(key)
        assert exponent_bits >= 3.0
        assert mantissa_bits >= 1.0
    assert min(m for _, _, _, _, m in method.history) == 1.0


@pytest.mark.spec("Q2")
def test_quantum_config_rejects_bad_mode():
    with pytest.raises(ValueError, match="quantum mode"):
        narrowing.QuantumConfig(mode="round")




@pytest.mark.spec("F2")
def test_cli_fixed_with_baseline(tmp_path, capsys):
    import json

    import sfp

    code = sfp.main(["train", "--method", "fixed", "--exponent-bits", "5", "--mantissa-bits",
                     "2", "--epochs", "1", "--baseline", "--out", str(tmp_path)])
    output = capsys.readouterr().out
    report = json.loads((tmp_path / "report.json").read_text())
    baseline = json.loads((tmp_path / "baseline" / "report.json").read_text())

    assert code == 0
    assert report["footprint_ratio_fp32"] == 32 / 8
    assert report["baseline_test_accuracy"] == baseline["test_accuracy"]
    assert report["accuracy_difference"] == report["test_accuracy"] - baseline["test_accuracy"]
    assert all((t["exponent_bits"], t["mantissa_bits"]) == (5, 2) for t in report["tensors"])
    assert "footprint ratio 4.00x against FP32" in output


@pytest.mark.spec("B6")
def test_bitwave_evaluation_uses_final_widths():
    method = narrowing.ControllerNarrowing(controller.bitwave_config(warmup_steps=5, period=2))
    train(short_config(), method=method)
    recorded = len(method.ledger)
    x = np.random.default_rng(1).standard_normal((3, 7)).astype(np.float32)

    method.set_training(False)
    out = method("classifier.1", "activation", Tensor(x))
    method.set_training(True)

    expected = narrow(x, method.state.exponent_bits, method.state.mantissa_bits)
    assert np.array_equal(out.data, expected)
    assert len(method.ledger) == recorded


@pytest.mark.spec("Q2", "F1")
def test_interpolation_counts_ceiling_widths():
    method = narrowing.QuantumNarrowing(narrowing.QuantumConfig(mode="interpolate"))
    report = train(short_config(), method=method)

    # Widths in use at step s are those after step s - 1 (the start widths at step 0).
    in_use = {(0, name, kind): (8.0, 23.0) for name, kind in method.mantissas}
    for step, name, kind, e, m in method.history:
        in_use[(step + 1, name, kind)] = (e, m)
    tensors_seen = 0
    for step, name, kind, _, stored_e, stored_m in method.ledger.records():
        e, m = in_use[(step, name, kind)]
        assert (stored_e, stored_m) == (int(np.ceil(e)), int(np.ceil(m)))
        tensors_seen += 1
    assert tensors_seen == 8 * report["steps"]



@pytest.mark.spec("F3")
def test_plots_skipped_without_matplotlib(tmp_path, monkeypatch, caplog):
    import sys

    from numpyml import report as run_report

    ledger = narrowing.FixedNarrowing().ledger
    ledger.record(0, "fc", "weight", 10, 8, 7)
    # A None entry in sys.modules makes "import matplotlib" raise ImportError.
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with caplog.at_level("WARNING"):
        paths = run_report.write_plots(tmp_path, [(0, "fc", "weight", 8, 7)], ledger)
    assert paths == []
    assert list(tmp_path.iterdir()) == []
    assert "matplotlib is not installed" in caplog.text


@pytest.mark.spec("F3")
def test_plots_written_with_matplotlib(tmp_path):
    pytest.importorskip("matplotlib")
    from numpyml import report as run_report

    ledger = narrowing.FixedNarrowing().ledger
    ledger.record(0, "fc", "weight", 10, 8, 7)
    ledger.record(1, "fc", "weight", 10, 4, 3)
    history = [(0, "fc", "weight", 8, 7), (1, "fc", "weight", 4, 3)]
    paths = run_report.write_plots(tmp_path, history, ledger)
    assert sorted(p.name for p in paths) == ["bitlengths.png", "footprint.png"]
    assert all(p.stat().st_size > 0 for p in paths)
