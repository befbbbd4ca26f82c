"""Module: a tree of layers with named parameters, buffers, modes and a storage hook.

The storage hook lets a narrowing method see every stored tensor without editing layers:
Linear and Conv2d pass their weight and their input through ``self.stored(tensor, kind)``,
which calls the policy installed with ``model.set_storage_policy(policy)`` as
``policy(layer_name, kind, tensor)`` and uses its return value. ``layer_name`` is the
dotted module name ("features.0"), and ``kind`` is "weight" or "activation". Without a
policy, ``stored`` returns the tensor itself.
"""

import logging

import numpy as np

from numpyml.engine import Tensor

logger = logging.getLogger(__name__)

STORAGE_KINDS = ("weight", "activation")


class Module:
    """Base class of layers and models; subclasses define ``forward``."""

    def __init__(self):
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_storage_policy", None)
        object.__setattr__(self, "_storage_name", "")

    def __setattr__(self, name, value):
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"{type(self).__name__}: call super().__init__() before assigning {name!r}"
            )
        if isinstance(value, Tensor) and value.requires_grad:
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name, array):
        """Store a non-trainable array (such as a running mean) that ``state_dict`` saves."""
        self._buffers[name] = np.asarray(array)
        object.__setattr__(self, name, self._buffers[name])

    def set_buffer(self, name, array):
        """Replace the buffer ``name`` with ``array``."""
        self._buffers[name] = array
        object.__setattr__(self, name, array)

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} must define forward()")

    # ------------------------------------------------------------------ traversal

    def named_modules(self, prefix=""):
        """Yield (dotted name, module) for this module and all below it, depth first."""
        stack = [(prefix, self)]
        while stack:
            name, module = stack.pop()
            yield name, module
            children = [(f"{name}.{key}" if name else key, child)
                        for key, child in module._modules.items()]
            stack.extend(reversed(children))

    def named_parameters(self):
        """Yield (dotted name, parameter) pairs, e.g. ("features.0.weight", tensor)."""
        for module_name, module in self.named_modules():
            for key, parameter in module._parameters.items():
                yield (f"{module_name}.{key}" if module_name else key), parameter

    def parameters(self):
        return [parameter for _, parameter in self.named_parameters()]

    def named_buffers(self):
        for module_name, module in self.named_modules():
            for key, buffer in module._buffers.items():
                yield (f"{module_name}.{key}" if module_name else key), buffer

    def zero_grad(self):
        for parameter in self.parameters():
            parameter.grad = None

    # ---------------------------------------------------------------------- modes

    def train(self, mode=True):
        """Set training mode (batch statistics, dropout on) on every module; return self."""
        for _, module in self.named_modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    # ---------------------------------------------------------------------- state

    def state_dict(self):
        """Return {dotted name: array copy} for every parameter and buffer."""
        state = {name: np.array(p.data) for name, p in self.named_parameters()}
        state.update({name: np.array(b) for name, b in self.named_buffers()})
        return state

    def load_state_dict(self, state):
        """Copy arrays from ``state`` into parameters and buffers; names and shapes must match."""
        owners = {}
        for module_name, module in self.named_modules():
            for key in (*module._parameters, *module._buffers):
                owners[f"{module_name}.{key}" if module_name else key] = (module, key)
        missing = sorted(set(owners) - set(state))
        unexpected = sorted(set(state) - set(owners))
        if missing or unexpected:
            raise KeyError(
                f"load_state_dict: state names must match the model's; missing {missing}, "
                f"unexpected {unexpected}"
            )
        for name, (module, key) in owners.items():
            self._load_entry(name, module, key, np.asarray(state[name]))

    @staticmethod
    def _load_entry(name, module, key, array):
        current = module._parameters[key].data if key in module._parameters else module._buffers[key]
        if array.shape != current.shape:
            raise ValueError(
                f"load_state_dict: {name} must have shape {current.shape}; got {array.shape}"
            )
        array = np.array(array, dtype=current.dtype)
        if key in module._parameters:
            module._parameters[key].data = array
        else:
            module.set_buffer(key, array)

    # --------------------------------------------------------------- storage hook

    def set_storage_policy(self, policy):
        """Install ``policy(layer_name, kind, tensor) -> Tensor`` on every module (None removes).

        Linear and Conv2d route their weight ("weight") and input ("activation") through
        it. Biases and normalization parameters are not routed.
        """
        if policy is not None and not callable(policy):
            raise TypeError(
                f"set_storage_policy: policy must be callable or None; got {type(policy).__name__}"
            )
        for name, module in self.named_modules():
            object.__setattr__(module, "_storage_policy", policy)
            object.__setattr__(module, "_storage_name", name)
        logger.debug("storage policy %r installed on %s", policy, type(self).__name__)

    def stored(self, tensor, kind):
        """Return ``tensor`` as the installed storage policy stores it (unchanged without one)."""
        policy = self._storage_policy
        if policy is None:
            return tensor
        return policy(self._storage_name, kind, tensor)

    def storage_layers(self):
        """Return the dotted names of the modules that route tensors through ``stored``."""
        return [name for name, module in self.named_modules() if module.uses_storage_hook]

    uses_storage_hook = False


class Sequential(Module):
    """Apply child modules in order; children are named "0", "1", ..."""

    def __init__(self, *layers):
        super().__init__()
        for index, layer in enumerate(layers):
            setattr(self, str(index), layer)

    def __getitem__(self, index):
        return list(self._modules.values())[index]

    def __len__(self):
        return len(self._modules)

    def forward(self, x):
        for layer in self._modules.values():
            x = layer(x)
        return x
