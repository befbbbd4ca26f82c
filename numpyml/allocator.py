"""Tune glibc's allocator for training loops that free and allocate the same arrays each step."""

import ctypes
import logging
import os
import platform

logger = logging.getLogger(__name__)

# glibc mallopt parameter numbers, from <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_MMAP_THRESHOLD_BYTES = 16 * 2**20
_TRIM_THRESHOLD_BYTES = 64 * 2**20


def keep_freed_heap_memory():
    """Stop glibc from returning the memory of freed arrays to the kernel after each step.

    A training step allocates and frees a few MB of arrays between 64 KB and 2 MB. With
    glibc's defaults these come from fresh mmap pages or from heap memory that was just
    trimmed, so each step pays page faults on every new array. In bench/bench_train_step.py
    (1 thread, 2-core AMD EPYC) that was about 40% of the CNN step time. Raising the mmap and
    trim thresholds lets freed memory be reused. The cost: glibc keeps up to 64 MiB of free
    memory at the top of the heap instead of returning it, and arrays up to 16 MiB come
    from the heap, where fragmentation can hold memory longer. This changes the whole process's
    allocator, so the library never calls it on import: ``sfp train`` and the benchmarks do. It
    does nothing when the user set either threshold through glibc's environment variables, or
    off Linux with glibc.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return
    try:
        libc = ctypes.CDLL(None)
        applied = (
            libc.mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_BYTES)
            and libc.mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD_BYTES)
        )
    except (OSError, AttributeError) as error:
        logger.debug("mallopt unavailable, keeping glibc's allocator defaults: %s", error)
        return
    if not applied:
        logger.debug("mallopt rejected the thresholds; keeping glibc's allocator defaults")
