"""The training loop: seeded data order, per-epoch evaluation, atomic checkpoints, report.json.

``train(config)`` builds the model and the method named in ``config``, trains, evaluates on
the held-out split after every epoch, and writes ``report.json`` and ``checkpoint.npz`` to
``config.out_dir`` when it is set. A run with the same config and seed gives the same
numbers. A NaN or infinite loss raises ``TrainingDiverged`` before the update is applied,
and the checkpoint from the last completed epoch, if one completed, stays on disk.
"""

import dataclasses
import json
import logging
import math
import time
from pathlib import Path

import numpy as np

from numpyml import methods, models, optim, random, schedules
from numpyml.data import batches, load_dataset
from numpyml.engine import Tensor, no_grad
from numpyml.narrowing_method import NonFiniteTensor
from numpyml.ops import cross_entropy
from reference.atomic_write import write_atomically

logger = logging.getLogger(__name__)

REPORT_FILE = "report.json"
CHECKPOINT_FILE = "checkpoint.npz"


@dataclasses.dataclass
class TrainConfig:
    """Settings of one training run; ``report.json`` records them under "config"."""

    model: str = "cnn"  # a name in numpyml.models.MODELS
    dataset: str = "digits"  # "digits" or the path of an .npz image set
    method: str = "fp32"  # a name in numpyml.methods.METHODS
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    optimizer: str = "adam"  # a name in numpyml.optim.OPTIMIZERS
    weight_decay: float = 0.0
    schedule: str = "constant"  # "constant" or "cosine" (decays to 0 over the run)
    seed: int = 0  # initialization, batch order and dropout
    split_seed: int = 0  # the digits train/test split
    out_dir: str | None = None

    def validate(self):
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(
                f"TrainConfig: epochs and batch_size must be at least 1; got {self.epochs} "
                f"and {self.batch_size}"
            )
        if self.optimizer not in optim.OPTIMIZERS:
            raise ValueError(
                f"TrainConfig: unknown optimizer {self.optimizer!r}; choose one of "
                f"{sorted(optim.OPTIMIZERS)}"
            )
        if self.schedule not in ("constant", "cosine"):
            raise ValueError(
                f"TrainConfig: schedule must be 'constant' or 'cosine'; got {self.schedule!r}"
            )
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise ValueError(f"TrainConfig: lr must be finite and positive; got {self.lr}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise ValueError(
                f"TrainConfig: weight_decay must be finite and >= 0; got {self.weight_decay}"
            )


class TrainingDiverged(RuntimeError):
    """The loss became NaN or infinite; ``step`` is the 0-based step index."""

    def __init__(self, message, step):
        super().__init__(message)
        self.step = step


def _make_optimizer(config, steps_per_epoch):
    learning_rate = config.lr
    if config.schedule == "cosine":
        learning_rate = schedules.cosine_decay(config.lr, config.epochs * steps_per_epoch)
    factory = optim.OPTIMIZERS[config.optimizer]
    return factory(learning_rate, weight_decay=config.weight_decay)


def evaluate(model, x, y, method=None, batch_size=256):
    """Return (mean loss, accuracy) of ``model`` in eval mode on images ``x``, labels ``y``."""
    model.eval()
    if method is not None:
        method.set_training(False)
    total_loss, correct = 0.0, 0
    with no_grad():
        for x_batch, y_batch in batches(x, y, batch_size):
            logits = model(Tensor(x_batch))
            total_loss += cross_entropy(logits, y_batch).item() * len(y_batch)
            correct += int((logits.data.argmax(axis=1) == y_batch).sum())
    model.train()
    if method is not None:
        method.set_training(True)
    return total_loss / len(y), correct / len(y)


def save_checkpoint(path, model, method, epoch, step):
    arrays = {f"model/{name}": value for name, value in model.state_dict().items()}
    arrays.update({f"method/{name}": np.asarray(v) for name, v in method.state_dict().items()})
    arrays["epoch"] = np.asarray(epoch)
    arrays["step"] = np.asarray(step)
    write_atomically(path, lambda handle: np.savez(handle, **arrays))


def load_checkpoint(path, model, method=None):
    """Restore model (and method) arrays from ``path``; return (epoch, step) it was saved at."""
    with np.load(path, allow_pickle=False) as archive:
        model.load_state_dict({k[6:]: archive[k] for k in archive.files if k.startswith("model/")})
        if method is not None:
            method.load_state_dict(
                {k[7:]: archive[k] for k in archive.files if k.startswith("method/")}
            )
        return int(archive["epoch"]), int(archive["step"])


def _write_report(out_dir, report):
    text = json.dumps(report, indent=2, sort_keys=False) + "\n"
    write_atomically(Path(out_dir) / REPORT_FILE, lambda handle: handle.write(text.encode()))


class _Run:
    """The state of one training run between steps."""

    def __init__(self, config, method, dataset):
        random.manual_seed(config.seed)
        self.config, self.method, self.dataset = config, method, dataset
        self.model = models.build(config.model, dataset.input_shape, dataset.num_classes)
        self.steps_per_epoch = math.ceil(len(dataset.x_train) / config.batch_size)
        main = optim.ParameterOptimizer(
            _make_optimizer(config, self.steps_per_epoch), self.model.parameters()
        )
        groups = method.attach(self.model, config) or []
        self.optimizers = [main] + [
            optim.ParameterOptimizer(group.optimizer, group.parameters) for group in groups
        ]
        self.group_names = ["model"] + [group.name for group in groups]
        self.batch_rng = np.random.default_rng(config.seed)
        self.step = 0

    def train_step(self, x_batch, y_batch):
        # Overflow and NaN in the forward pass end in a non-finite loss, which the check
        # below turns into TrainingDiverged, so numpy's warnings about them are noise.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            try:
                logits = self.model(Tensor(x_batch))
            except NonFiniteTensor as error:
                raise TrainingDiverged(
                    f"training diverged: {error} at step {self.step} "
                    f"(epoch {self.step // self.steps_per_epoch + 1}); lower --lr.",
                    self.step,
                ) from error
            loss = cross_entropy(logits, y_batch)
            extra = self.method.extra_loss(self.model)
            if extra is not None:
                loss = loss + extra
            value = loss.item()
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"training diverged: the loss is {value} at step {self.step} "
                f"(epoch {self.step // self.steps_per_epoch + 1}); lower --lr or check the "
                "method's extra loss.",
                self.step,
            )

        for optimizer in self.optimizers:
            optimizer.zero_grad()
        loss.backward()
        learning_rate = self.optimizers[0].learning_rate
        for optimizer in self.optimizers:
            optimizer.step()

        self.method.after_step(self.step, value, learning_rate)
        self.step += 1
        correct = int((logits.data.argmax(axis=1) == y_batch).sum())
        return value, correct

    def train_epoch(self):
        total_loss, correct = 0.0, 0
        data = self.dataset
        for x_batch, y_batch in batches(data.x_train, data.y_train, self.config.batch_size, self.batch_rng):
            loss, batch_correct = self.train_step(x_batch, y_batch)
            total_loss += loss * len(y_batch)
            correct += batch_correct
        return total_loss / len(data.y_train), correct / len(data.y_train)


def train(config, method=None, on_epoch=None):
    """Train with the settings in ``config``; return the report dict, also written to out_dir.

    ``method`` overrides the method named in ``config`` (useful for tests and new
    methods). ``on_epoch(metrics)`` is called after each epoch with that epoch's entry of
    the report's "epochs" list, so that a command-line front end can show progress.
    """
    config.validate()
    method = methods.create(config.method) if method is None else method
    dataset = load_dataset(config.dataset, seed=config.split_seed)
    out_dir = None if config.out_dir is None else Path(config.out_dir)
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    run = _Run(config, method, dataset)
    logger.info("training %s with %s on %s for %d epochs", config.model, method.name,
                dataset.name, config.epochs)
    epochs = []
    report = {"config": dataclasses.asdict(config), "status": "running"}
    try:
        for epoch in range(1, config.epochs + 1):
            epoch_start = time.perf_counter()
            train_loss, train_accuracy = run.train_epoch()
            test_loss, test_accuracy = evaluate(run.model, dataset.x_test, dataset.y_test, method)
            metrics = {
                "epoch": epoch, "step": run.step, "train_loss": train_loss,
                "train_accuracy": train_accuracy, "test_loss": test_loss,
                "test_accuracy": test_accuracy, "time_s": time.perf_counter() - epoch_start,
            }
            epochs.append(metrics)
            if out_dir is not None:
                save_checkpoint(out_dir / CHECKPOINT_FILE, run.model, method, epoch, run.step)
            if on_epoch is not None:
                on_epoch(metrics)
    except TrainingDiverged as error:
        diverged = TrainingDiverged(f"{error} {_checkpoint_note(out_dir, epochs)}", error.step)
        report.update(status="diverged", error=str(diverged), epochs=epochs,
                      wall_time_s=time.perf_counter() - start)
        if out_dir is not None:
            _write_report(out_dir, report)
        raise diverged from error

    report.update(
        status="completed",
        test_accuracy=epochs[-1]["test_accuracy"],
        test_loss=epochs[-1]["test_loss"],
        train_accuracy=epochs[-1]["train_accuracy"],
        steps=run.step,
        parameters=int(sum(p.size for p in run.model.parameters())),
        dataset={"name": dataset.name, "train": len(dataset.y_train), "test": len(dataset.y_test)},
        epochs=epochs,
    )
    _merge_method_report(report, method.report())
    report["wall_time_s"] = time.perf_counter() - start
    if out_dir is not None:
        _write_report(out_dir, report)
    return report


def _checkpoint_note(out_dir, epochs):
    """Return the sentence that names the checkpoint a diverged run left on disk, if any."""
    if out_dir is None:
        return "No checkpoint is written without an output directory."
    if not epochs:
        return "No checkpoint was written because no epoch completed."
    return (f"The checkpoint of epoch {epochs[-1]['epoch']}, the last completed one, is kept in "
            f"{out_dir / CHECKPOINT_FILE}.")


def _merge_method_report(report, extra):
    clashes = sorted(set(extra) & set(report))
    if clashes:
        raise ValueError(
            f"method report: keys {clashes} are reserved by the training report; rename them"
        )
    report.update(extra)
