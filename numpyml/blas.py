"""Set the thread count of the OpenBLAS that numpy loaded, without restarting the process.

Small training steps multiply matrices of a few hundred rows, where OpenBLAS threads cost
more in hand-off and spinning than they save. On a 2-core machine shared with other jobs,
the digits CNN step took 84 ms with two threads and 5 to 17 ms with one
(``bench/bench_train_step.py --threads``).
``OPENBLAS_NUM_THREADS`` only works before numpy is imported, so this module calls
OpenBLAS's own setter in the already loaded library, as threadpoolctl does.
"""

import ctypes
import logging

logger = logging.getLogger(__name__)

_SETTERS = (
    "scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads",
)
_GETTERS = (
    "scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads", "openblas_get_num_threads",
)


def _loaded_openblas_paths():
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "openblas" in line.lower()}
    except OSError:
        return []
    return sorted(path for path in paths if path.startswith("/"))


def _find_function(library, names):
    for name in names:
        function = getattr(library, name, None)
        if function is not None:
            return function
    return None


def get_blas_threads():
    """Return the thread count of numpy's OpenBLAS, or None where it cannot be found."""
    import numpy  # noqa: F401  (loads numpy's OpenBLAS so that it can be found)

    for path in _loaded_openblas_paths():
        getter = _find_function(ctypes.CDLL(path), _GETTERS)
        if getter is not None:
            return int(getter())
    return None


def set_blas_threads(count):
    """Set every loaded OpenBLAS to ``count`` threads; return how many libraries took it.

    Returns 0 where the libraries cannot be found (no /proc, another BLAS); the caller
    then keeps the BLAS defaults, which only costs speed.
    """
    import numpy  # noqa: F401  (loads numpy's OpenBLAS so that it can be found)

    if count < 1:
        raise ValueError(f"set_blas_threads: count must be at least 1; got {count}")
    changed = 0
    for path in _loaded_openblas_paths():
        setter = _find_function(ctypes.CDLL(path), _SETTERS)
        if setter is not None:
            setter(ctypes.c_int(count))
            changed += 1
    logger.debug("OpenBLAS threads set to %d in %d libraries", count, changed)
    return changed
