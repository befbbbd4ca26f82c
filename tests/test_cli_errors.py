"""Failing ``sfp`` commands print one line ``sfp CMD: message`` and exit with status 2."""

import logging

import numpy as np
import pytest

import sfp
from numpyml import methods
from numpyml.train import TrainConfig, TrainingDiverged, train


def error_line(capsys):
    """Return the one line that ``sfp`` printed to stderr; fail if there is more or none."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# ------------------------------------------------------------------------------ train


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--lr", "nan"], "--lr: must be finite and positive; got nan"),
        (["--lr", "inf"], "--lr: must be finite and positive; got inf"),
        (["--weight-decay", "-1"], "--weight-decay: must be finite and >= 0; got -1.0"),
        (["--epochs", "0"], "--epochs: must be at least 1; got 0"),
        (["--blas-threads", "0"], "--blas-threads: must be at least 1; got 0"),
        (["--method", "quantum", "--gamma", "nan"],
         "--gamma: must be >= 0 with --method quantum; got nan"),
        (["--method", "quantum", "--gamma", "-1"],
         "--gamma: must be >= 0 with --method quantum; got -1.0"),
        (["--method", "fp32", "--mantissa-bits", "3"],
         "--mantissa-bits: --method fp32 does not use it"),
        (["--method", "fixed", "--gamma", "0.1"], "--gamma: --method fixed does not use it"),
        (["--method", "bitchop", "--exponent-min", "4"],
         "--exponent-min: --method bitchop does not use it because BitChop narrows only the "
         "mantissa and keeps the exponent at its starting 8 bits"),
        (["--seed", "-1"], "--seed: must be >= 0; got -1"),
        (["--split-seed", "-1"], "--split-seed: must be >= 0; got -1"),
        (["--method", "bitwave", "--exponent-min", "9"],
         "--exponent-min: must be in [1, 8] with --method bitwave; got 9.0"),
        (["--method", "bitwave", "--mantissa-min", "1.5"],
         "--mantissa-min: must be a whole number of bits with --method bitwave; got 1.5"),
        (["--method", "quantum", "--mantissa-min", "24"],
         "--mantissa-min: must be in [0, 23] with --method quantum; got 24.0"),
        (["--method", "fixed", "--exponent-bits", "0"],
         "--exponent-bits: must be in [1, 8] with --method fixed; got 0"),
        (["--method", "fixed", "--gecko-every", "-1"], "--gecko-every: must be >= 0"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else None,
)
def test_train_rejects_invalid_option(tmp_path, capsys, arguments, message):
    status = sfp.main(["train", "--model", "mlp", "--out", str(tmp_path / "run"), *arguments])

    assert status == 2
    assert error_line(capsys).startswith(f"sfp train: {message}")
    assert not (tmp_path / "run").exists()


def test_train_rejects_out_that_is_a_file(tmp_path, capsys):
    (tmp_path / "run").write_text("not a directory")

    status = sfp.main(["train", "--model", "mlp", "--out", str(tmp_path / "run")])

    assert status == 2
    assert error_line(capsys) == (f"sfp train: --out: must be a directory (created if missing); "
                                  f"got {tmp_path / 'run'}, an existing file")


def test_train_reports_invalid_dataset_in_one_line(tmp_path, capsys):
    path = tmp_path / "set.npz"
    np.savez(path, x_train=np.zeros((0, 4, 4), np.uint8), y_train=np.zeros(0, np.int64),
             x_test=np.zeros((2, 4, 4), np.uint8), y_test=np.zeros(2, np.int64))

    status = sfp.main(["train", "--model", "mlp", "--dataset", str(path),
                       "--out", str(tmp_path / "run")])

    assert status == 2
    assert error_line(capsys) == (f"sfp train: {path}: x_train must contain at least one image; "
                                  "got shape (0, 1, 4, 4)")


def test_train_rejects_empty_out(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)

    status = sfp.main(["train", "--model", "mlp", "--epochs", "1", "--out", ""])

    assert status == 2
    assert error_line(capsys) == ("sfp train: --out: must name a directory (created if "
                                  "missing); got an empty path")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["report.json", "checkpoint.npz"])
def test_train_rejects_directory_at_output_file(tmp_path, capsys, name):
    (tmp_path / "run" / name).mkdir(parents=True)

    status = sfp.main(["train", "--model", "mlp", "--epochs", "1", "--out", str(tmp_path / "run")])

    assert status == 2
    assert error_line(capsys) == (f"sfp train: --out: {tmp_path / 'run' / name} is a directory, "
                                  "but training writes a file there; remove it or choose "
                                  "another --out")
    assert [p.name for p in (tmp_path / "run").iterdir()] == [name]


def test_train_rejects_unwritable_out_first(tmp_path, capsys, monkeypatch):
    import errno
    import tempfile

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system", str(tmp_path / "run" / "probe"))

    monkeypatch.setattr(tempfile, "TemporaryFile", read_only)

    status = sfp.main(["train", "--model", "mlp", "--epochs", "1", "--out", str(tmp_path / "run")])

    assert status == 2
    assert error_line(capsys) == (f"sfp train: --out {tmp_path / 'run'}: cannot write files "
                                  "there (read-only file system); choose a writable directory")
    assert not (tmp_path / "run").exists()


def _write_npz_members(path, members):
    """Write a zip archive whose members are the given raw .npy bytes, keyed by array name."""
    import zipfile

    with zipfile.ZipFile(path, "w") as archive:
        for key, data in members.items():
            archive.writestr(f"{key}.npy", data)


def _npy_bytes(array):
    import io

    stream = io.BytesIO()
    np.save(stream, array)
    return stream.getvalue()


def _npy_header_only(shape):
    import io

    stream = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        stream, {"descr": "<f4", "fortran_order": False, "shape": shape})
    return stream.getvalue() + bytes(16)


def test_train_rejects_empty_dataset_file(tmp_path, capsys):
    (tmp_path / "zero.npz").write_bytes(b"")

    status = sfp.main(["train", "--model", "mlp", "--dataset", str(tmp_path / "zero.npz"),
                       "--out", str(tmp_path / "run")])

    assert status == 2
    assert error_line(capsys).startswith(f"sfp train: {tmp_path / 'zero.npz'}: the file is "
                                         "empty (0 bytes); write the image set with np.savez")
    assert not (tmp_path / "run").exists()


def test_train_rejects_huge_header_in_dataset(tmp_path, capsys):
    members = {"x_train": _npy_header_only((10**12,)),
               "y_train": _npy_bytes(np.zeros(2, np.int64)),
               "x_test": _npy_bytes(np.zeros((2, 4, 4), np.uint8)),
               "y_test": _npy_bytes(np.zeros(2, np.int64))}
    _write_npz_members(tmp_path / "huge.npz", members)

    status = sfp.main(["train", "--model", "mlp", "--dataset", str(tmp_path / "huge.npz"),
                       "--out", str(tmp_path / "run")])
    line = error_line(capsys)

    assert status == 2
    assert line.startswith(f"sfp train: {tmp_path / 'huge.npz'}: x_train: the file is shorter "
                           "than its header claims")
    assert "shape (1000000000000,) of dtype float32 needs 4000000000000 bytes" in line
    assert not (tmp_path / "run").exists()


def test_train_rejects_truncated_dataset_member(tmp_path, capsys):
    labels = _npy_bytes(np.zeros(2, np.int64))
    images = _npy_bytes(np.zeros((2, 4, 4), np.uint8))
    members = {"x_train": images[:-8], "y_train": labels, "x_test": images, "y_test": labels}
    _write_npz_members(tmp_path / "cut.npz", members)

    status = sfp.main(["train", "--model", "mlp", "--dataset", str(tmp_path / "cut.npz"),
                       "--out", str(tmp_path / "run")])

    assert status == 2
    assert error_line(capsys).startswith(
        f"sfp train: {tmp_path / 'cut.npz'}: x_train: the file is shorter than its header "
        "claims: shape (2, 4, 4) of dtype uint8 needs 32 bytes of data; got 24")


@pytest.fixture
def missing_kernels(monkeypatch):
    """Make every compiled kernel fail to import, as on a machine without a C compiler."""
    import sys

    from reference import native

    for name in ("training", "quantize"):
        # A None entry in sys.modules makes the import raise ImportError.
        monkeypatch.setitem(sys.modules, f"reference.native._{name}", None)
    native.reset()
    yield
    native.reset()


def test_train_reports_missing_kernel_in_one_line(tmp_path, capsys, monkeypatch,
                                                  missing_kernels):
    monkeypatch.setenv("SFP_NATIVE", "require")

    status = sfp.main(["train", "--model", "mlp", "--method", "quantum", "--epochs", "1",
                       "--out", str(tmp_path / "run")])
    line = error_line(capsys)

    assert status == 2
    assert line.startswith("sfp train: SFP_NATIVE=require, but the compiled kernel "
                           "reference.native._")
    assert "is not built" in line
    assert not (tmp_path / "run").exists()


def test_failed_report_write_names_report(tmp_path):
    from reference.atomic_write import write_atomically

    (tmp_path / "report.json").mkdir()

    with pytest.raises(IsADirectoryError) as caught:
        write_atomically(tmp_path / "report.json", lambda handle: handle.write(b"{}"))

    assert caught.value.filename == str(tmp_path / "report.json")
    assert [p.name for p in tmp_path.iterdir()] == ["report.json"]


def test_train_help_states_pixel_scaling(capsys):
    with pytest.raises(SystemExit):
        sfp.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())

    assert "integer pixels must be in 0..255 and are divided by 255" in text
    assert "float pixels must be finite and are used as given" in text


def test_train_divergence_without_epoch_says_no_checkpoint(tmp_path, capsys):
    status = sfp.main(["train", "--model", "mlp", "--lr", "1e30", "--epochs", "1",
                       "--out", str(tmp_path / "run")])
    line = error_line(capsys)

    assert status == 3
    assert line.startswith("sfp train: training diverged: the loss is nan at step 1 ")
    assert line.endswith("No checkpoint was written because no epoch completed.")


# ----------------------------------------------------------------------------- export


class _NaNAtStep(methods.Method):
    name = "nan_at_step"

    def __init__(self, step):
        self.bad_step, self.step = step, 0

    def extra_loss(self, model):
        from numpyml.engine import Tensor

        return Tensor(np.float32(np.nan if self.step == self.bad_step else 0.0))

    def after_step(self, step, loss, learning_rate):
        self.step = step + 1


@pytest.fixture(scope="module")
def completed_run(tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("completed")
    train(TrainConfig(model="mlp", epochs=1, out_dir=str(run_dir)))
    return run_dir


@pytest.mark.spec("X8")
def test_export_rejects_missing_run_directory(tmp_path, capsys):
    status = sfp.main(["export", str(tmp_path / "absent"), "--out", str(tmp_path / "m.onnx")])

    assert status == 2
    assert error_line(capsys) == (f"sfp export: run directory {tmp_path / 'absent'}: not found; "
                                  "pass a directory written by `sfp train`")


@pytest.mark.spec("X8")
def test_export_rejects_diverged_run(tmp_path, capsys):
    # The run diverges in epoch 2, so it leaves the checkpoint of epoch 1 beside its report.
    with pytest.raises(TrainingDiverged):
        train(TrainConfig(model="mlp", epochs=2, out_dir=str(tmp_path / "run")),
              method=_NaNAtStep(25))
    assert (tmp_path / "run" / "checkpoint.npz").exists()

    status = sfp.main(["export", str(tmp_path / "run"), "--out", str(tmp_path / "m.onnx")])
    line = error_line(capsys)

    assert status == 2
    assert line.startswith(f"sfp export: run directory {tmp_path / 'run'}: export needs a "
                           "completed run; got status 'diverged' (training diverged: ")
    assert not (tmp_path / "m.onnx").exists()


@pytest.mark.spec("X8")
@pytest.mark.parametrize(
    ("out", "message"),
    [("absent/m.onnx", "directory {tmp}/absent does not exist; create it first"),
     (".", "is a directory; pass the path of an .onnx file")],
    ids=["missing-folder", "directory"],
)
def test_export_rejects_unwritable_out(completed_run, tmp_path, capsys, out, message):
    status = sfp.main(["export", str(completed_run), "--out", str(tmp_path / out)])

    assert status == 2
    assert error_line(capsys).endswith(message.format(tmp=tmp_path))


@pytest.mark.spec("X8")
def test_export_reports_written_file_once(completed_run, tmp_path, capsys, caplog):
    out = tmp_path / "m.onnx"

    with caplog.at_level(logging.INFO):
        status = sfp.main(["export", str(completed_run), "--out", str(out)])
    printed = capsys.readouterr().out

    assert status == 0
    assert printed.count("wrote") == 1
    assert [r.message for r in caplog.records if "wrote" in r.message] == []


# ------------------------------------------------------------------------------ sfp


def test_verbose_adds_traceback(tmp_path, capsys):
    status = sfp.main(["--verbose", "export", str(tmp_path / "absent"),
                       "--out", str(tmp_path / "m.onnx")])
    error = capsys.readouterr().err

    assert status == 2
    assert "Traceback (most recent call last)" in error
    assert error.strip().splitlines()[-1].startswith("sfp export: run directory ")


@pytest.mark.parametrize(
    "command",
    [["train", "--model", "mlp", "--method", "quantum", "--out", "{tmp}/run"],
     ["gecko", "stats", "{tmp}/x.npy"],
     ["export", "{tmp}/run", "--out", "{tmp}/m.onnx"]],
    ids=lambda command: command[0],
)
def test_invalid_native_setting_fails_every_command(tmp_path, capsys, monkeypatch, command):
    np.save(tmp_path / "x.npy", np.ones(4, np.float32))
    monkeypatch.setenv("SFP_NATIVE", "bogus")

    status = sfp.main([part.format(tmp=tmp_path) for part in command])

    assert status == 2
    assert error_line(capsys) == (f"sfp {command[0]}: SFP_NATIVE must be one of "
                                  "('auto', '0', 'require'); got 'bogus' (unset it to use "
                                  "compiled kernels where they are built)")
    assert [p.name for p in tmp_path.iterdir()] == ["x.npy"]


def test_os_error_reads_path_then_reason():
    error = FileNotFoundError(2, "No such file or directory", "x.npy")

    assert sfp.error_message(error) == "x.npy: no such file or directory"


def test_unexpected_error_keeps_traceback(monkeypatch, tmp_path):
    from onnx_ops import export

    def broken(run_dir):
        raise RuntimeError("a bug")

    monkeypatch.setattr(export, "export_run", broken)

    with pytest.raises(RuntimeError, match="a bug"):
        sfp.main(["export", str(tmp_path), "--out", str(tmp_path / "m.onnx")])


def test_module_entry_point_prints_one_line(tmp_path, capsys):
    from numpyml import cli

    (tmp_path / "file").write_text("")

    status = cli.main(["--model", "mlp", "--epochs", "1", "--out", str(tmp_path / "file" / "run")])

    assert status == 2
    assert error_line(capsys).startswith(f"sfp train: --out {tmp_path / 'file' / 'run'}: cannot "
                                         "write files there (not a directory)")
