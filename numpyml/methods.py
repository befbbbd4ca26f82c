"""Training methods: the hooks through which a storage method plugs into the training loop.

A method changes how tensors are stored during training without editing the loop. The
loop in ``numpyml.train`` calls, in order:

1. ``attach(model, config)`` once, after the model is built: install a storage policy with
   ``model.set_storage_policy`` and return a list of ``ParameterGroup`` for extra trainable
   tensors (such as learned bitlengths), each with its own optimizer.
2. Per step, ``extra_loss(model)`` after the forward pass: a scalar Tensor added to the
   task loss, or None.
3. Per step, ``after_step(step, loss, learning_rate)`` after every optimizer update, with
   the 0-based step index, the total loss as a float and the model's learning rate.
4. ``set_training(False)`` before each evaluation and ``set_training(True)`` after it, so
   that evaluation can apply the final containers deterministically.
5. ``report()`` at the end: a dict of JSON values merged into report.json.
6. ``state_dict()`` at each checkpoint: {name: ndarray} saved beside the model's arrays,
   and ``load_state_dict(state)`` to restore it.

``Method`` implements every hook as a no-op, so a subclass overrides only what it needs.
"""

from typing import NamedTuple

from numpyml import narrowing, optim


class ParameterGroup(NamedTuple):
    """Extra trainable tensors with their own optimizer, e.g. ``optim.adam(0.5)``."""

    name: str
    parameters: list
    optimizer: optim.Optimizer


class Method:
    """A training method with no-op hooks; see the module docstring for the call order."""

    name = "base"

    def attach(self, model, config):
        return []

    def extra_loss(self, model):
        return None

    def after_step(self, step, loss, learning_rate):
        pass

    def set_training(self, training):
        pass

    def report(self):
        return {}

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


class FP32(Method):
    """Plain float32 training: every tensor is stored as computed."""

    name = "fp32"

    def report(self):
        return {"method": self.name}


# Method name -> factory taking no arguments and returning a fresh Method.
METHODS = {"fp32": FP32, **narrowing.METHODS}


def create(name):
    """Return a new instance of the method registered as ``name``."""
    if name not in METHODS:
        raise KeyError(f"methods: unknown method {name!r}; choose one of {sorted(METHODS)}")
    return METHODS[name]()
