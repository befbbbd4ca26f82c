"""Data loading, the training loop, method hooks, checkpoints and the ``sfp train`` command."""

import json

import numpy as np
import pytest

import numpyml as nm
from numpyml import methods, optim
from numpyml.data import MAX_CLASSES, batches, load_digits, load_npz, stratified_split
from numpyml.train import TrainConfig, TrainingDiverged, load_checkpoint, train
from numpyml import models
from numpyml.blas import get_blas_threads, set_blas_threads
import sfp


@pytest.fixture(autouse=True, scope="module")
def single_blas_thread():
    # Multithreaded OpenBLAS is several times slower on these small matrices.
    previous = get_blas_threads()
    set_blas_threads(1)
    yield
    if previous is not None:
        set_blas_threads(previous)


# ------------------------------------------------------------------------------- data


def test_digits_split_sizes_and_range():
    data = load_digits()
    assert data.x_train.shape == (1198, 1, 8, 8)
    assert data.x_test.shape == (599, 1, 8, 8)
    assert data.x_train.dtype == np.float32
    assert data.x_train.min() == 0.0
    assert data.x_train.max() == 1.0
    assert data.num_classes == 10


def test_digits_split_is_stratified_and_disjoint():
    labels = np.repeat(np.arange(10), [178, 182, 177, 183, 181, 182, 181, 179, 174, 180])
    train_index, test_index = stratified_split(labels, 599, seed=0)
    assert len(test_index) == 599
    assert len(np.intersect1d(train_index, test_index)) == 0
    assert len(train_index) + len(test_index) == len(labels)
    per_class = np.bincount(labels[test_index])
    expected = np.bincount(labels) / 3
    assert np.all(np.abs(per_class - expected) < 1)


def test_digits_split_depends_only_on_seed():
    first, second, other = load_digits(0), load_digits(0), load_digits(1)
    np.testing.assert_array_equal(first.y_test, second.y_test)
    np.testing.assert_array_equal(first.x_test, second.x_test)
    assert not np.array_equal(first.x_test, other.x_test)


def test_batches_are_seeded_and_complete():
    x, y = np.arange(10)[:, None], np.arange(10)
    first = [b for _, b in batches(x, y, 4, np.random.default_rng(3))]
    second = [b for _, b in batches(x, y, 4, np.random.default_rng(3))]
    assert [len(b) for b in first] == [4, 4, 2]
    assert all(np.array_equal(a, b) for a, b in zip(first, second))
    assert sorted(np.concatenate(first).tolist()) == list(range(10))


def write_npz(path, **overrides):
    arrays = {
        "x_train": np.zeros((6, 4, 4), np.uint8), "y_train": np.array([0, 1, 2, 0, 1, 2]),
        "x_test": np.full((3, 4, 4), 255, np.uint8), "y_test": np.array([0, 1, 2]),
    }
    arrays.update(overrides)
    arrays = {key: value for key, value in arrays.items() if value is not None}
    np.savez(path, **arrays)
    return path


def test_npz_loader_scales_and_adds_channel(tmp_path):
    data = load_npz(write_npz(tmp_path / "set.npz"))
    assert data.x_train.shape == (6, 1, 4, 4)
    assert data.x_test.max() == 1.0
    assert data.num_classes == 3
    assert data.name == "set"


def test_npz_loader_reports_missing_keys(tmp_path):
    path = write_npz(tmp_path / "set.npz", y_test=None)
    with pytest.raises(ValueError, match=r"missing arrays \['y_test'\]"):
        load_npz(path)


def test_npz_loader_reports_length_mismatch(tmp_path):
    path = write_npz(tmp_path / "set.npz", y_train=np.array([0, 1]))
    with pytest.raises(ValueError, match="x_train and y_train must have the same length; got 6 and 2"):
        load_npz(path)


def test_npz_loader_rejects_float_labels(tmp_path):
    path = write_npz(tmp_path / "set.npz", y_test=np.array([0.0, 1.0, 2.0]))
    with pytest.raises(TypeError, match="y_test must hold integer class labels"):
        load_npz(path)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"y_train": np.array([2_000_000_000, 1, 2, 0, 1, 2])},
         "K at most 10000, .* got label 2000000000 at index 0"),
        ({"y_test": np.array([0, 1, MAX_CLASSES])}, f"got label {MAX_CLASSES} at index 2"),
        ({"x_train": np.zeros((0, 4, 4), np.uint8), "y_train": np.zeros(0, np.int64)},
         "x_train must contain at least one image"),
        ({"x_test": np.zeros((0, 1, 4, 4), np.float32), "y_test": np.zeros(0, np.int64)},
         "x_test must contain at least one image"),
        ({"x_train": np.full((6, 4, 4), np.nan, np.float32)},
         "pixels of x_train must be finite; got nan at image 0, channel 0, row 0, column 0"),
        ({"x_test": np.pad(np.full((1, 4, 4), np.inf, np.float32), ((2, 0), (0, 0), (0, 0)))},
         "pixels of x_test must be finite; got inf at image 2"),
        ({"x_train": np.full((6, 4, 4), 256, np.int32)},
         r"integer pixels of x_train must be in \[0, 255\]"),
        ({"x_test": np.full((3, 4, 4), -1, np.int16)},
         r"integer pixels of x_test must be in \[0, 255\], .* got values in \[-1, -1\]"),
    ],
    ids=["huge-label", "label-at-limit", "empty-train", "empty-test", "nan", "inf",
         "int-above-255", "int-below-0"],
)
def test_npz_loader_rejects_invalid_arrays(tmp_path, overrides, message):
    path = write_npz(tmp_path / "set.npz", **overrides)

    with pytest.raises(ValueError, match=message):
        load_npz(path)


def test_npz_loader_accepts_largest_label(tmp_path):
    path = write_npz(tmp_path / "set.npz", y_test=np.array([0, 1, MAX_CLASSES - 1]))

    assert load_npz(path).num_classes == MAX_CLASSES


def test_npz_loader_rejects_file_that_is_not_npz(tmp_path):
    (tmp_path / "text.npz").write_text("x_train,y_train\n")
    np.save(tmp_path / "array.npy", np.zeros(3))
    (tmp_path / "array.npy").rename(tmp_path / "array.npz")

    with pytest.raises(ValueError, match="text.npz: not an .npz archive; write the image set "
                                         "with np.savez"):
        load_npz(tmp_path / "text.npz")
    with pytest.raises(ValueError, match="array.npz: contains one .npy array"):
        load_npz(tmp_path / "array.npz")


def test_npz_loader_rejects_object_array(tmp_path):
    path = tmp_path / "set.npz"
    write_npz(path, x_train=np.array([np.zeros((4, 4))] * 6, dtype=object))

    with pytest.raises(ValueError, match="x_train cannot be read without pickle"):
        load_npz(path)


# --------------------------------------------------------------------------- training


def quick_config(tmp_path, **overrides):
    settings = dict(model="mlp", epochs=3, seed=1, out_dir=str(tmp_path / "run"))
    settings.update(overrides)
    return TrainConfig(**settings)


def test_mlp_reaches_accuracy_floor(tmp_path):
    report = train(quick_config(tmp_path, epochs=15))
    assert report["test_accuracy"] >= 0.95


def test_same_seed_same_numbers(tmp_path):
    first = train(quick_config(tmp_path, out_dir=str(tmp_path / "a")))
    second = train(quick_config(tmp_path, out_dir=str(tmp_path / "b")))
    strip = lambda epochs: [{k: v for k, v in e.items() if k != "time_s"} for e in epochs]  # noqa: E731
    assert strip(first["epochs"]) == strip(second["epochs"])


def test_report_and_checkpoint_written(tmp_path):
    config = quick_config(tmp_path, epochs=2)
    train(config)
    run_dir = tmp_path / "run"
    report = json.loads((run_dir / "report.json").read_text())
    assert 0 <= report["test_accuracy"] <= 1
    assert report["wall_time_s"] > 0
    assert report["status"] == "completed"
    assert report["config"]["model"] == "mlp"
    assert [e["epoch"] for e in report["epochs"]] == [1, 2]
    assert sorted(p.name for p in run_dir.iterdir()) == ["checkpoint.npz", "report.json"]
    model = models.build("mlp", (1, 8, 8), 10)
    assert load_checkpoint(run_dir / "checkpoint.npz", model) == (2, 38)


class NaNAtStep(methods.Method):
    """Adds a NaN loss term at one step, to exercise the divergence stop."""

    name = "nan_at_step"

    def __init__(self, step):
        self.bad_step, self.step = step, 0

    def extra_loss(self, model):
        value = np.nan if self.step == self.bad_step else 0.0
        return nm.Tensor(np.float32(value))

    def after_step(self, step, loss, learning_rate):
        self.step = step + 1


def test_nan_loss_stops_with_step_and_keeps_checkpoint(tmp_path):
    config = quick_config(tmp_path, epochs=3)
    with pytest.raises(TrainingDiverged, match="loss is nan at step 25 \\(epoch 2\\)") as caught:
        train(config, method=NaNAtStep(25))
    assert caught.value.step == 25
    run_dir = tmp_path / "run"
    model = models.build("mlp", (1, 8, 8), 10)
    assert load_checkpoint(run_dir / "checkpoint.npz", model) == (1, 19)
    assert all(np.isfinite(p.data).all() for p in model.parameters())
    report = json.loads((run_dir / "report.json").read_text())
    assert report["status"] == "diverged"
    assert "step 25" in report["error"]
    assert "The checkpoint of epoch 1, the last completed one, is kept" in str(caught.value)


def test_divergence_in_first_epoch_says_no_checkpoint(tmp_path):
    with pytest.raises(TrainingDiverged) as caught:
        train(quick_config(tmp_path, epochs=2), method=NaNAtStep(3))

    assert "No checkpoint was written because no epoch completed." in str(caught.value)
    assert "is kept" not in str(caught.value)
    assert not (tmp_path / "run" / "checkpoint.npz").exists()


def test_diverging_run_emits_no_runtime_warning(tmp_path):
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(TrainingDiverged, match="at step 1 "):
            train(quick_config(tmp_path, lr=1e30, epochs=1))

    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []


@pytest.mark.parametrize(
    ("overrides", "message"),
    [({"lr": float("nan")}, "lr must be finite and positive; got nan"),
     ({"lr": float("inf")}, "lr must be finite and positive; got inf"),
     ({"lr": 0.0}, "lr must be finite and positive; got 0.0"),
     ({"weight_decay": -1.0}, "weight_decay must be finite and >= 0; got -1.0")],
    ids=["lr-nan", "lr-inf", "lr-zero", "negative-weight-decay"],
)
def test_config_rejects_invalid_numbers(tmp_path, overrides, message):
    with pytest.raises(ValueError, match=message):
        quick_config(tmp_path, **overrides).validate()


class Recorder(methods.Method):
    """Records every hook call and trains one extra scalar toward 3 with its own SGD."""

    name = "recorder"

    def __init__(self):
        self.calls = []
        self.target = nm.Tensor(np.float32(0.0), requires_grad=True)

    def attach(self, model, config):
        self.calls.append("attach")
        model.set_storage_policy(lambda layer, kind, tensor: tensor)
        return [methods.ParameterGroup("target", [self.target], optim.sgd(0.1))]

    def extra_loss(self, model):
        return (self.target - 3.0) ** 2

    def after_step(self, step, loss, learning_rate):
        self.calls.append(("step", step, learning_rate))

    def set_training(self, training):
        self.calls.append(("training", training))

    def report(self):
        return {"target": float(self.target.data)}

    def state_dict(self):
        return {"target": self.target.data}


def test_method_hooks_run_in_order(tmp_path):
    method = Recorder()
    report = train(quick_config(tmp_path, epochs=2), method=method)
    assert method.calls[0] == "attach"
    steps = [call[1] for call in method.calls if call[0] == "step"]
    assert steps == list(range(38))
    assert method.calls[20:22] == [("training", False), ("training", True)]
    assert all(call[2] == TrainConfig.lr for call in method.calls if call[0] == "step")
    assert abs(report["target"] - 3.0) < 0.01
    with np.load(tmp_path / "run" / "checkpoint.npz") as archive:
        assert abs(float(archive["method/target"]) - 3.0) < 0.01


def test_method_report_cannot_overwrite_core_keys(tmp_path):
    class Clashing(methods.Method):
        def report(self):
            return {"test_accuracy": 1.0}

    with pytest.raises(ValueError, match=r"keys \['test_accuracy'\] are reserved"):
        train(quick_config(tmp_path, epochs=1), method=Clashing())


# -------------------------------------------------------------------------------- CLI


def test_cli_train_writes_report(tmp_path, capsys):
    run_dir = tmp_path / "cli"
    code = sfp.main(["train", "--model", "mlp", "--epochs", "2", "--seed", "3", "--out", str(run_dir)])
    assert code == 0
    output = capsys.readouterr().out
    assert "epoch   2/2" in output
    assert "test accuracy" in output
    report = json.loads((run_dir / "report.json").read_text())
    assert report["config"]["seed"] == 3


def test_cli_rejects_missing_dataset(tmp_path, capsys):
    code = sfp.main(["train", "--dataset", str(tmp_path / "none.npz"), "--out", str(tmp_path)])
    assert code == 2
    assert "expected 'digits' or the path of an existing .npz file" in capsys.readouterr().err


def test_cli_divergence_exits_nonzero(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(methods.METHODS, "nan_at_step", lambda: NaNAtStep(5))
    code = sfp.main(["train", "--model", "mlp", "--method", "nan_at_step", "--epochs", "2",
                     "--out", str(tmp_path / "nan")])
    assert code == 3
    assert "loss is nan at step 5" in capsys.readouterr().err


def test_blas_threads_round_trip():
    previous = get_blas_threads()
    if previous is None:
        pytest.skip("numpy's OpenBLAS was not found in /proc/self/maps")
    assert set_blas_threads(2) >= 1
    assert get_blas_threads() == 2
    set_blas_threads(previous)
    assert get_blas_threads() == previous


@pytest.mark.parametrize("method", ["quantum", "bitwave"])
def test_narrowed_run_with_huge_lr_reports_divergence(tmp_path, capsys, method):
    # The weights blow up before any loss is NaN, so the narrowing of a NaN activation stops
    # the run. The message must report divergence, not a container error.
    run_dir = tmp_path / method
    code = sfp.main(["train", "--model", "cnn", "--method", method, "--lr", "1e30",
                     "--epochs", "1", "--out", str(run_dir)])
    error = capsys.readouterr().err
    assert code == 3
    assert "training diverged: the activation of layer" in error
    assert "lower --lr" in error
    assert json.loads((run_dir / "report.json").read_text())["status"] == "diverged"
