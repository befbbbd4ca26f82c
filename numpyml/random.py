"""The generator behind parameter initialization and dropout masks.

``manual_seed(seed)`` before building a model makes initialization and the dropout masks
of a run reproducible.
"""

import numpy as np

_generator = np.random.default_rng(0)


def manual_seed(seed):
    """Reset the shared generator to ``numpy.random.default_rng(seed)``."""
    global _generator
    _generator = np.random.default_rng(seed)


def generator():
    """Return the shared ``numpy.random.Generator``."""
    return _generator
