"""``sfp export`` on a damaged run directory prints one line naming the file and the fix."""

import json
import shutil

import pytest

import sfp
from numpyml.train import TrainConfig, train


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Return completed one-epoch runs of the mlp and cnn models, keyed by model name."""
    root = tmp_path_factory.mktemp("runs")
    for model in ("mlp", "cnn"):
        train(TrainConfig(model=model, epochs=1, out_dir=str(root / model)))
    return {model: root / model for model in ("mlp", "cnn")}


def _copy(runs, tmp_path, model="mlp"):
    run_dir = tmp_path / "run"
    shutil.copytree(runs[model], run_dir)
    return run_dir


def _export(run_dir, tmp_path, capsys):
    """Run ``sfp export``; return its exit status and its one line on stderr."""
    status = sfp.main(["export", str(run_dir), "--out", str(tmp_path / "m.onnx")])
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return status, lines[0]


def _fix(run_dir):
    return (f"; the run directory is damaged, so train again with `sfp train ... --out "
            f"{run_dir}` and export the new run")


@pytest.mark.spec("X8")
@pytest.mark.parametrize("keep", [0, 300])
def test_export_names_truncated_checkpoint(runs, tmp_path, capsys, keep):
    run_dir = _copy(runs, tmp_path)
    checkpoint = run_dir / "checkpoint.npz"
    checkpoint.write_bytes(checkpoint.read_bytes()[:keep])

    status, line = _export(run_dir, tmp_path, capsys)

    assert status == 2
    assert line.startswith(f"sfp export: {checkpoint}: not a readable .npz archive (")
    assert line.endswith(_fix(run_dir))
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.spec("X8")
def test_export_names_checkpoint_of_other_model(runs, tmp_path, capsys):
    run_dir = _copy(runs, tmp_path, "mlp")
    shutil.copy(runs["cnn"] / "report.json", run_dir / "report.json")

    status, line = _export(run_dir, tmp_path, capsys)

    assert status == 2
    assert line.startswith(f"sfp export: {run_dir / 'checkpoint.npz'}: its arrays do not match "
                           "the cnn model that report.json describes (")
    assert "so the two files come from different runs" in line
    assert line.endswith(_fix(run_dir))


@pytest.mark.spec("X8")
@pytest.mark.parametrize(
    ("text", "problem"),
    [("{bad", "invalid JSON (Expecting property name enclosed in double quotes"),
     ("[]", "must contain a JSON object; got a list"),
     ('{"status": "completed"}', 'missing the "config" object'),
     ('{"status": "completed", "config": {"model": "mlp"}}',
      "\"config\" is missing the fields ['dataset', 'split_seed']")],
    ids=["invalid-json", "list", "no-config", "partial-config"],
)
def test_export_names_damaged_report(runs, tmp_path, capsys, text, problem):
    run_dir = _copy(runs, tmp_path)
    (run_dir / "report.json").write_text(text)

    status, line = _export(run_dir, tmp_path, capsys)

    assert status == 2
    assert line.startswith(f"sfp export: {run_dir / 'report.json'}: {problem}")
    assert line.endswith(_fix(run_dir))


@pytest.mark.spec("X8")
def test_export_of_intact_copy_succeeds(runs, tmp_path, capsys):
    run_dir = _copy(runs, tmp_path, "cnn")
    report = json.loads((run_dir / "report.json").read_text())

    status = sfp.main(["export", str(run_dir), "--out", str(tmp_path / "m.onnx")])

    assert status == 0
    assert report["config"]["model"] == "cnn"
    assert (tmp_path / "m.onnx").stat().st_size > 0


@pytest.mark.spec("X8")
def test_failed_export_write_leaves_no_file(runs, tmp_path, capsys, monkeypatch):
    import errno

    import onnx

    def disk_full(model, target):
        # Writes part of the model, as a full disk would, then fails.
        handle = open(target, "wb") if isinstance(target, str) else target
        handle.write(model.SerializeToString()[:100])
        handle.flush()
        raise OSError(errno.ENOSPC, "No space left on device", getattr(handle, "name", target))

    monkeypatch.setattr(onnx, "save", disk_full)

    status, line = _export(runs["mlp"], tmp_path, capsys)

    assert status == 2
    assert line == f"sfp export: {tmp_path / 'm.onnx'}: no space left on device"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.spec("X8")
def test_export_rejects_huge_array_header(runs, tmp_path, capsys):
    import io
    import zipfile

    import numpy as np

    run_dir = _copy(runs, tmp_path)
    checkpoint = run_dir / "checkpoint.npz"
    with zipfile.ZipFile(checkpoint) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        header, {"descr": "<f4", "fortran_order": False, "shape": (10**12,)})
    members["epoch.npy"] = header.getvalue() + bytes(16)
    with zipfile.ZipFile(checkpoint, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)

    status, line = _export(run_dir, tmp_path, capsys)

    assert status == 2
    assert line.startswith(f"sfp export: {checkpoint}: array epoch.npy: the file is shorter "
                           "than its header claims: shape (1000000000000,) of dtype float32")
    assert line.endswith(_fix(run_dir))
