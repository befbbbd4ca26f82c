"""Write a file so that a crash or an error leaves the old file or the new one, never a part."""

import os
import tempfile
from pathlib import Path


def write_atomically(path, write):
    """Call ``write(file)`` on a temporary file beside ``path``, fsync it, then rename it.

    A crash leaves either the old file or the new one, never a partial file.
    """
    path = Path(path)
    try:
        handle = tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.",
                                             delete=False)
    except OSError as error:
        if error.errno is None:
            raise
        raise _naming(error, path) from error
    try:
        with handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        # NamedTemporaryFile creates 0600 files; give the result the usual umask mode.
        os.chmod(handle.name, 0o666 & ~_current_umask())
        os.replace(handle.name, path)
    except BaseException as error:
        Path(handle.name).unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno is not None:
            # The caller requested ``path``, so the error names it and not the temporary file.
            raise _naming(error, path) from error
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


def _naming(error, path):
    """Return a copy of OSError ``error`` that names ``path`` instead of a temporary file."""
    return type(error)(error.errno, error.strerror, str(path))


def _current_umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask
