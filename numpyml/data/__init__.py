"""Image classification data: the vendored digits, user ``.npz`` sets, seeded batching."""

import gzip
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

DIGITS_TEST_SIZE = 599  # one third of the 1,797 images
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


class Dataset(NamedTuple):
    """A train/test split of images (N, C, H, W) float32 in [0, 1] and int64 labels (N,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int
    name: str

    @property
    def input_shape(self):
        """The (C, H, W) shape of one image."""
        return self.x_train.shape[1:]


def load_digits_arrays():
    """Return the 1,797 digits as uint8 pixels (1797, 8, 8) in 0..16 and int64 labels."""
    path = resources.files(__name__).joinpath("digits.csv.gz")
    with gzip.open(path.open("rb"), "rt") as stream:
        table = np.loadtxt(stream, delimiter=",", dtype=np.int64)
    return table[:, :64].astype(np.uint8).reshape(-1, 8, 8), table[:, 64]


def stratified_split(labels, test_size, seed):
    """Return (train_indices, test_indices) with each class in proportion in both parts.

    Procedure: class c with n_c images gets floor(n_c * test_size / N) test images. The
    remaining test places go to the classes with the largest fractional parts, and ties go
    to the lower class. One ``numpy.random.default_rng(seed)`` then permutes each class's indices,
    classes in ascending order, and the first images of each permutation are the test images.
    Both index arrays are returned sorted.
    """
    classes, counts = np.unique(labels, return_counts=True)
    exact = counts * test_size / len(labels)
    per_class = np.floor(exact).astype(np.int64)
    shortfall = test_size - per_class.sum()
    by_remainder = np.argsort(-(exact - per_class), kind="stable")
    per_class[by_remainder[:shortfall]] += 1
    rng = np.random.default_rng(seed)
    test_parts, train_parts = [], []
    for label, take in zip(classes, per_class):
        members = rng.permutation(np.flatnonzero(labels == label))
        test_parts.append(members[:take])
        train_parts.append(members[take:])
    return np.sort(np.concatenate(train_parts)), np.sort(np.concatenate(test_parts))


def load_digits(seed=0):
    """Return the digits split 1,198 train / 599 test, pixels scaled from 0..16 to [0, 1]."""
    pixels, labels = load_digits_arrays()
    images = (pixels.astype(np.float32) / 16)[:, None, :, :]
    train, test = stratified_split(labels, DIGITS_TEST_SIZE, seed)
    return Dataset(images[train], labels[train], images[test], labels[test], 10, "digits")


def _as_images(array, key, path):
    if array.ndim == 3:
        array = array[:, None]
    if array.ndim != 4:
        raise ValueError(
            f"{path}: {key} must be (N, H, W) or (N, C, H, W) images; got shape {array.shape}"
        )
    if array.dtype.kind in "iu":
        # Integer pixels are taken as 8-bit intensities.
        return array.astype(np.float32) / 255
    if array.dtype.kind != "f":
        raise TypeError(f"{path}: {key} must hold numbers; got dtype {array.dtype}")
    return array.astype(np.float32)


def _as_labels(array, key, path):
    if array.dtype.kind not in "iu":
        raise TypeError(
            f"{path}: {key} must hold integer class labels; got dtype {array.dtype}. "
            "Convert with labels.astype(np.int64) after checking that they are whole numbers."
        )
    if array.ndim != 1:
        raise ValueError(f"{path}: {key} must be 1-d; got shape {array.shape}")
    if array.size and array.min() < 0:
        raise ValueError(f"{path}: {key} must be non-negative; got minimum {array.min()}")
    return array.astype(np.int64)


def load_npz(path):
    """Return a Dataset from an ``.npz`` with arrays ``x_train, y_train, x_test, y_test``.

    Images are (N, H, W) or (N, C, H, W): integers are divided by 255 and floats are used as
    given, so float images should already lie in [0, 1]. Labels are integers 0..K-1.
    """
    path = Path(path)
    with np.load(path, allow_pickle=False) as archive:
        missing = [key for key in NPZ_KEYS if key not in archive.files]
        if missing:
            raise KeyError(
                f"{path}: missing arrays {missing}; an image set needs {list(NPZ_KEYS)}, "
                f"found {archive.files}"
            )
        arrays = {key: archive[key] for key in NPZ_KEYS}
    x_train = _as_images(arrays["x_train"], "x_train", path)
    x_test = _as_images(arrays["x_test"], "x_test", path)
    y_train = _as_labels(arrays["y_train"], "y_train", path)
    y_test = _as_labels(arrays["y_test"], "y_test", path)
    for x, y, part in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(x) != len(y):
            raise ValueError(
                f"{path}: x_{part} and y_{part} must have the same length; got {len(x)} and {len(y)}"
            )
    if x_train.shape[1:] != x_test.shape[1:]:
        raise ValueError(
            f"{path}: train and test images must have one shape; got {x_train.shape[1:]} "
            f"and {x_test.shape[1:]}"
        )
    num_classes = int(max(y_train.max(initial=0), y_test.max(initial=0))) + 1
    return Dataset(x_train, y_train, x_test, y_test, num_classes, path.stem)


def load_dataset(name_or_path, seed=0):
    """Return ``digits`` (split with ``seed``) or the ``.npz`` image set at a path."""
    if name_or_path == "digits":
        return load_digits(seed)
    path = Path(name_or_path)
    if path.suffix != ".npz" or not path.is_file():
        raise FileNotFoundError(
            f"dataset: expected 'digits' or the path of an existing .npz file; got {name_or_path!r}"
        )
    return load_npz(path)


def batches(x, y, batch_size, rng=None):
    """Yield (x_batch, y_batch) pairs; with a Generator ``rng`` the order is shuffled.

    The last batch is smaller when ``batch_size`` does not divide the number of samples.
    """
    if batch_size < 1:
        raise ValueError(f"batches: batch_size must be at least 1; got {batch_size}")
    order = np.arange(len(x)) if rng is None else rng.permutation(len(x))
    for start in range(0, len(x), batch_size):
        index = order[start:start + batch_size]
        yield x[index], y[index]
