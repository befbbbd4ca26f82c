"""The loader of the optional compiled kernels in reference/native/."""

import glob
import os

import pytest

from reference import native

SOURCES = sorted(glob.glob(os.path.join(os.path.dirname(native.__file__), "*.c")))
NAMES = [os.path.splitext(os.path.basename(source))[0] for source in SOURCES]


@pytest.fixture
def fresh_loader(monkeypatch):
    native.reset()
    yield monkeypatch
    native.reset()


@pytest.mark.parametrize("name", NAMES)
def test_every_kernel_is_built_when_required(name):
    # CI runs with SFP_NATIVE=require, so a kernel that failed to compile fails here.
    if native.setting() != "require":
        pytest.skip("SFP_NATIVE is not 'require'; a missing kernel falls back to numpy")
    assert native.kernel(name) is not None


def test_zero_disables_every_kernel(fresh_loader):
    fresh_loader.setenv("SFP_NATIVE", "0")
    assert all(native.kernel(name) is None for name in NAMES + ["no_such_kernel"])


def test_require_names_the_missing_kernel(fresh_loader):
    fresh_loader.setenv("SFP_NATIVE", "require")
    with pytest.raises(ImportError, match="reference.native._no_such_kernel"):
        native.kernel("no_such_kernel")


def test_auto_missing_kernel_uses_numpy(fresh_loader):
    fresh_loader.setenv("SFP_NATIVE", "auto")
    assert native.kernel("no_such_kernel") is None


def test_unknown_setting_is_an_error(fresh_loader):
    fresh_loader.setenv("SFP_NATIVE", "yes")
    with pytest.raises(ValueError, match="SFP_NATIVE must be one of"):
        native.kernel("no_such_kernel")
