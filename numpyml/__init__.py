"""numpyml: a minimal numpy autodiff engine and trainer."""
