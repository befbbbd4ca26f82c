"""Optional compiled kernels that give the same bits as the numpy paths, faster.

Each C file here builds the extension module ``reference.native._NAME`` (see setup.py). The
numpy code stays the reference: a kernel serves a call only when it is built and enabled, and
the tests compare the two paths bit for bit. The environment variable ``SFP_NATIVE`` selects:

- unset or ``auto``: use a kernel when it is built, else the numpy path;
- ``0``: never use a kernel (to compare paths, or to rule a kernel out when hunting a bug);
- ``require``: raise ImportError when a kernel is missing (CI sets this, so a failed build
  cannot pass unnoticed).
"""

import importlib
import logging
import os

logger = logging.getLogger(__name__)

CHOICES = ("auto", "0", "require")
_loaded = {}


def setting():
    """Return the value of ``SFP_NATIVE`` (``auto`` when unset); raise ValueError if unknown."""
    value = os.environ.get("SFP_NATIVE", "auto") or "auto"
    if value not in CHOICES:
        raise ValueError(f"SFP_NATIVE must be one of {CHOICES}; got {value!r} (unset it to "
                         "use compiled kernels where they are built)")
    return value


def kernel(name):
    """Return the compiled module ``reference.native._NAME``, or None to use the numpy path.

    The result is cached per process, so ``SFP_NATIVE`` is read at the first call for a name.
    """
    if name in _loaded:
        return _loaded[name]
    choice = setting()
    module = None
    if choice != "0":
        try:
            module = importlib.import_module(f"reference.native._{name}")
        except ImportError as error:
            if choice == "require":
                raise ImportError(
                    f"SFP_NATIVE=require, but the compiled kernel reference.native._{name} "
                    f"is not built ({error}); install a C compiler and reinstall the project "
                    "(pip install -e .), or unset SFP_NATIVE to use the numpy path"
                ) from error
            logger.info("compiled kernel %s not built; using the numpy path", name)
    _loaded[name] = module
    return module


def reset():
    """Forget loaded kernels, so the next ``kernel`` call reads ``SFP_NATIVE`` again (tests)."""
    _loaded.clear()
