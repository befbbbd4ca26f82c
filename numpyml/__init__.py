"""numpyml: a minimal numpy autodiff engine and trainer."""

from numpyml.engine import (
    Tensor, as_tensor, custom_op, is_grad_enabled, no_grad, unbroadcast,
)
from numpyml.ops import *  # noqa: F401,F403  (the differentiable operations)
from numpyml.ops import __all__ as _ops_all

__all__ = [
    "Tensor", "as_tensor", "custom_op", "is_grad_enabled", "no_grad", "unbroadcast", *_ops_all,
]
