"""Build the optional compiled kernels in reference/native/ (all metadata is in pyproject.toml).

Each ``reference/native/NAME.c`` becomes the extension module ``reference.native._NAME``. The
extensions are optional: where no C compiler is available the build skips them with a warning
and the library uses its numpy paths, which give the same bits.
"""

import glob
import os

from setuptools import Extension, setup


def native_extensions():
    sources = sorted(glob.glob(os.path.join("reference", "native", "*.c")))
    return [
        Extension(
            "reference.native._" + os.path.splitext(os.path.basename(source))[0],
            [source],
            depends=sorted(glob.glob(os.path.join("reference", "native", "*.h"))),
            extra_compile_args=["-O3", "-std=c11", "-fno-strict-aliasing"],
            optional=True,
        )
        for source in sources
    ]


setup(ext_modules=native_extensions())
