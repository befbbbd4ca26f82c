"""One training step of the reference models in numpyml and in PyTorch, same weights and batch.

Skipped without PyTorch; install the CPU wheel with ``pip install torch==2.13.0``.
"""

import numpy as np
import pytest

import numpyml as nm
from numpyml import models, nn, optim
from numpyml.data import load_digits
from numpyml.random import manual_seed

torch = pytest.importorskip("torch", reason="PyTorch is not installed (pip install torch==2.13.0)")


def to_torch(module):
    """Return the PyTorch twin of a numpyml module tree, sharing no memory."""
    if isinstance(module, nn.Linear):
        twin = torch.nn.Linear(module.weight.shape[1], module.weight.shape[0])
    elif isinstance(module, nn.Conv2d):
        out_channels, in_channels, kh, kw = module.weight.shape
        twin = torch.nn.Conv2d(in_channels, out_channels, (kh, kw), module.stride, module.padding)
    elif isinstance(module, nn.ReLU):
        return torch.nn.ReLU()
    elif isinstance(module, nn.Flatten):
        return torch.nn.Flatten()
    elif isinstance(module, nn.Dropout):
        return torch.nn.Dropout(module.p)
    elif isinstance(module, nn.MaxPool2d):
        return torch.nn.MaxPool2d(module.kernel_size, module.stride, module.padding)
    else:
        return torch.nn.Sequential(*[to_torch(child) for child in module._modules.values()])
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(np.array(module.weight.data)))
        twin.bias.copy_(torch.from_numpy(np.array(module.bias.data)))
    return twin


def torch_parameters_by_name(numpyml_model, torch_model):
    """Pair numpyml parameter names with PyTorch parameters in registration order."""
    names = [name for name, _ in numpyml_model.named_parameters()]
    return dict(zip(names, torch_model.parameters()))


@pytest.mark.parametrize("name", ["mlp", "cnn"])
def test_step_matches_pytorch(name):
    manual_seed(0)
    data = load_digits()
    model = models.build(name, data.input_shape, data.num_classes).eval()
    twin = to_torch(model).eval()
    x, y = data.x_train[:64], data.y_train[:64]

    loss = nm.cross_entropy(model(nm.Tensor(x)), y)
    loss.backward()
    torch_loss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y))
    torch_loss.backward()

    np.testing.assert_allclose(loss.item(), torch_loss.item(), rtol=1e-5)
    twins = torch_parameters_by_name(model, twin)
    for param_name, parameter in model.named_parameters():
        expected = twins[param_name].grad.numpy()
        assert parameter.grad.shape == expected.shape, param_name
        np.testing.assert_allclose(parameter.grad, expected, rtol=1e-4, atol=1e-6, err_msg=param_name)


def test_adam_steps_match_pytorch():
    manual_seed(0)
    data = load_digits()
    model = models.build("mlp", data.input_shape, data.num_classes)
    twin = to_torch(model)
    optimizer = optim.ParameterOptimizer(optim.adam(1e-2, weight_decay=1e-3), model.parameters())
    torch_optimizer = torch.optim.Adam(twin.parameters(), lr=1e-2, weight_decay=1e-3)
    for step in range(3):
        x, y = data.x_train[64 * step:64 * (step + 1)], data.y_train[64 * step:64 * (step + 1)]
        optimizer.zero_grad()
        nm.cross_entropy(model(nm.Tensor(x)), y).backward()
        optimizer.step()
        torch_optimizer.zero_grad()
        torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        torch_optimizer.step()
    twins = torch_parameters_by_name(model, twin)
    for param_name, parameter in model.named_parameters():
        np.testing.assert_allclose(
            parameter.data, twins[param_name].detach().numpy(), rtol=1e-4, atol=1e-5,
            err_msg=param_name,
        )
