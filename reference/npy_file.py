"""Read .npy arrays after checking the header against the bytes that follow it.

``numpy.load`` allocates the array that a header declares before it reads the data, so a
damaged header of a few bytes can request terabytes and end in MemoryError, and a zero-byte file
ends in EOFError. ``read_npy`` checks the header first and raises ValueError or TypeError with a
message that states what is wrong; callers prefix the file name.
"""

import math
import os

import numpy as np


class NotNpyError(ValueError):
    """The data does not start with the .npy magic string."""


def load_npy(path):
    """Return the array of the .npy file at ``path``; see ``read_npy`` for the errors."""
    with open(path, "rb") as stream:
        return read_npy(stream, os.fstat(stream.fileno()).st_size)


def read_npy(stream, size):
    """Return the array of the .npy data in the seekable binary ``stream`` of ``size`` bytes.

    Raises the errors of ``check_npy_header`` before allocating anything.
    """
    check_npy_header(stream, size)
    stream.seek(0)
    return np.lib.format.read_array(stream, allow_pickle=False)


def check_npy_header(stream, size):
    """Read the .npy header at the start of ``stream`` of ``size`` bytes; return (shape, dtype).

    Raises NotNpyError (a ValueError) when the data is not .npy, and ValueError when it is
    empty, its header is damaged, or it is shorter than its header declares. Raises TypeError
    when the dtype contains Python objects, which only pickle can read.
    """
    if size == 0:
        raise ValueError("the file is empty (0 bytes); write the array again with np.save")
    try:
        version = np.lib.format.read_magic(stream)
    except ValueError as error:
        raise NotNpyError(f"not a .npy file ({error})") from error
    # Version 3.0 differs from 2.0 only in the text encoding of the header.
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    try:
        shape, _, dtype = read_header(stream)
    except (ValueError, EOFError) as error:
        raise ValueError(f"the .npy header is damaged or cut off ({error}); write the array "
                         "again with np.save") from error

    if dtype.hasobject:
        raise TypeError(f"dtype {dtype} is not supported because it contains Python objects, "
                        "not numbers; save a numeric array such as float32")
    needed = math.prod(shape) * dtype.itemsize
    available = size - stream.tell()
    if needed > available:
        raise ValueError(
            f"the file is shorter than its header claims: shape {shape} of dtype {dtype} needs "
            f"{needed} bytes of data; got {available}. The file is truncated or damaged; "
            "write it again with np.save"
        )
    return shape, dtype
