"""Image classification data: the vendored digits, user ``.npz`` sets, seeded batching."""

import gzip
import zipfile
import zlib
from importlib import resources
from pathlib import Path
from typing import NamedTuple

import numpy as np

from reference.npy_file import read_npy

DIGITS_TEST_SIZE = 599  # one third of the 1,797 images
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
NPY_MAGIC = b"\x93NUMPY"
# The class count of an .npz set is its largest label + 1, and the output layer has one unit per
# class, so a stray label of 2e9 would ask for terabytes. The cap is ten times the 1,000 classes
# of ImageNet-1k.
MAX_CLASSES = 10_000


class Dataset(NamedTuple):
    """A train/test split of images (N, C, H, W) float32 and int64 labels (N,).

    Pixels are in [0, 1] for the digits and integer .npz images. Float .npz images keep their
    values, which ``load_npz`` checks only for being finite.
    """

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
    if len(array) == 0:
        raise ValueError(f"{path}: {key} must contain at least one image; got shape "
                         f"{array.shape}")
    if array.dtype.kind in "iu":
        # Integer pixels are taken as 8-bit intensities.
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ValueError(
                f"{path}: integer pixels of {key} must be in [0, 255], because they are divided "
                f"by 255; got values in [{low}, {high}]. Scale them to [0, 1] and save float32."
            )
        return array.astype(np.float32) / 255
    if array.dtype.kind != "f":
        raise TypeError(f"{path}: {key} must hold numbers; got dtype {array.dtype}")
    images = array.astype(np.float32)
    finite = np.isfinite(images)
    if not finite.all():
        image, channel, row, column = np.unravel_index(int(np.flatnonzero(~finite)[0]),
                                                       images.shape)
        raise ValueError(
            f"{path}: pixels of {key} must be finite; got "
            f"{images[image, channel, row, column]} at image {image}, channel {channel}, "
            f"row {row}, column {column}"
        )
    return images


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
    if array.size and array.max() >= MAX_CLASSES:
        index = int(np.argmax(array))
        raise ValueError(
            f"{path}: {key} labels must be class indices 0..K-1 with K at most {MAX_CLASSES}, "
            f"because the model gets one output per class up to the largest label; got label "
            f"{array[index]} at index {index}. Renumber the classes 0..K-1."
        )
    return array.astype(np.int64)


def load_npz(path):
    """Return a Dataset from an ``.npz`` with arrays ``x_train, y_train, x_test, y_test``.

    Images are (N, H, W) or (N, C, H, W) with N at least 1. Integer pixels must be in
    [0, 255] and are divided by 255. Float pixels must be finite and are used as given, so they
    should already lie in [0, 1]. Labels are integers 0..K-1 with K at most ``MAX_CLASSES``,
    and K is the largest label + 1. Raises ValueError or TypeError naming the array.
    """
    path = Path(path)
    arrays = _read_npz(path)
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


def _read_npz(path):
    """Return the arrays ``NPZ_KEYS`` of the .npz archive at ``path``."""
    how = f"write the image set with np.savez(path, {', '.join(f'{k}=...' for k in NPZ_KEYS)})"
    with open(path, "rb") as stream:
        start = stream.read(len(NPY_MAGIC))
    if not start:
        raise ValueError(f"{path}: the file is empty (0 bytes); {how}")
    if start == NPY_MAGIC:
        raise ValueError(f"{path}: contains one .npy array, not an .npz archive; {how}")
    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile as error:
        raise ValueError(f"{path}: not an .npz archive; {how}") from error
    with archive:
        stored = [name[:-len(".npy")] for name in archive.namelist() if name.endswith(".npy")]
        missing = [key for key in NPZ_KEYS if key not in stored]
        if missing:
            raise ValueError(
                f"{path}: missing arrays {missing}; an image set needs {list(NPZ_KEYS)}, "
                f"found {stored}"
            )
        return {key: _read_member(archive, key, path, how) for key in NPZ_KEYS}


def _read_member(archive, key, path, how):
    # Reading the member ourselves lets read_npy compare its header with the member's
    # uncompressed size before numpy allocates the array the header declares.
    info = archive.getinfo(f"{key}.npy")
    try:
        with archive.open(info) as stream:
            return read_npy(stream, info.file_size)
    except TypeError as error:
        raise ValueError(f"{path}: {key} cannot be read without pickle ({error})") from error
    except ValueError as error:
        raise ValueError(f"{path}: {key}: {error}") from error
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise ValueError(f"{path}: {key} is damaged in the archive ({error}); {how}") from error


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
