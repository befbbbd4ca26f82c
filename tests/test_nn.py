"""Layers and modules: names, state, modes, initialization and the storage hook."""

import math

import numpy as np
import pytest

import numpyml as nm
from numpyml import models, nn
from numpyml.random import manual_seed
from numpyml.testing import check_gradients


@pytest.fixture(autouse=True)
def seeded():
    manual_seed(0)


def test_cnn_parameter_names_are_dotted():
    model = models.build("cnn", (1, 8, 8), 10)
    names = [name for name, _ in model.named_parameters()]
    assert names == [
        "features.0.weight", "features.0.bias", "features.2.weight", "features.2.bias",
        "classifier.1.weight", "classifier.1.bias", "classifier.4.weight", "classifier.4.bias",
    ]


def test_models_build_rejects_unknown_name():
    with pytest.raises(KeyError, match="unknown model 'resnet'"):
        models.build("resnet", (1, 8, 8), 10)


def test_linear_init_matches_pytorch_bounds():
    layer = nn.Linear(400, 300)
    bound = 1 / math.sqrt(400)
    assert np.abs(layer.weight.data).max() <= bound
    assert np.abs(layer.bias.data).max() <= bound
    # U(-b, b) has standard deviation b / sqrt(3).
    np.testing.assert_allclose(layer.weight.data.std(), bound / math.sqrt(3), rtol=0.02)


def test_conv_init_uses_kernel_fan_in():
    layer = nn.Conv2d(16, 8, 3)
    bound = 1 / math.sqrt(16 * 9)
    assert np.abs(layer.weight.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.9 * bound
    assert layer.weight.dtype == np.float32


def test_state_dict_round_trip():
    source = models.build("cnn", (1, 8, 8), 10)
    target = models.build("cnn", (1, 8, 8), 10)
    target.load_state_dict(source.state_dict())
    for (name, a), (_, b) in zip(source.named_parameters(), target.named_parameters()):
        np.testing.assert_array_equal(a.data, b.data, err_msg=name)


def test_state_dict_is_a_copy():
    model = nn.Linear(2, 2)
    state = model.state_dict()
    state["weight"][:] = 7.0
    assert not np.any(model.weight.data == 7.0)


def test_load_state_dict_reports_missing_and_unexpected():
    model = nn.Linear(2, 3)
    state = model.state_dict()
    del state["bias"]
    state["extra"] = np.zeros(1)
    with pytest.raises(KeyError, match=r"missing \['bias'\], unexpected \['extra'\]"):
        model.load_state_dict(state)


def test_load_state_dict_rejects_wrong_shape():
    model = nn.Linear(2, 3)
    state = model.state_dict()
    state["weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(ValueError, match=r"weight must have shape \(3, 2\); got \(2, 2\)"):
        model.load_state_dict(state)


def test_module_needs_super_init():
    class Broken(nn.Module):
        def __init__(self):
            self.layer = nn.Linear(1, 1)

    with pytest.raises(AttributeError, match="super"):
        Broken()


def test_storage_policy_sees_named_weights_and_activations():
    model = models.build("cnn", (1, 8, 8), 10)
    calls = []

    def policy(layer_name, kind, tensor):
        calls.append((layer_name, kind, tensor.shape))
        return tensor

    model.set_storage_policy(policy)
    model(nm.Tensor(np.zeros((2, 1, 8, 8), np.float32)))
    assert calls == [
        ("features.0", "weight", (32, 1, 3, 3)), ("features.0", "activation", (2, 1, 8, 8)),
        ("features.2", "weight", (64, 32, 3, 3)), ("features.2", "activation", (2, 32, 6, 6)),
        ("classifier.1", "weight", (128, 256)), ("classifier.1", "activation", (2, 256)),
        ("classifier.4", "weight", (10, 128)), ("classifier.4", "activation", (2, 128)),
    ]
    assert model.storage_layers() == ["features.0", "features.2", "classifier.1", "classifier.4"]


def test_storage_policy_output_feeds_layer():
    # The policy zeroes weight and input, so only the bias, which bypasses it, remains.
    layer = nn.Linear(3, 2)
    layer.set_storage_policy(lambda name, kind, tensor: tensor * 0.0)
    out = layer(nm.Tensor(np.ones((4, 3), np.float32)))
    np.testing.assert_array_equal(out.data, np.broadcast_to(layer.bias.data, (4, 2)))


def test_storage_policy_gradient_flows_through_policy():
    layer = nn.Linear(3, 2)
    layer.set_storage_policy(lambda name, kind, tensor: tensor * 2.0 if kind == "weight" else tensor)
    x = np.ones((1, 3), np.float32)
    layer(nm.Tensor(x)).sum().backward()
    np.testing.assert_array_equal(layer.weight.grad, np.full((2, 3), 2.0, np.float32))


def test_removed_storage_policy_returns_tensor_itself():
    layer = nn.Linear(3, 2)
    layer.set_storage_policy(lambda name, kind, tensor: tensor * 0.0)
    layer.set_storage_policy(None)
    x = nm.Tensor(np.ones((1, 3), np.float32))
    assert layer.stored(x, "activation") is x


def test_storage_policy_must_be_callable():
    with pytest.raises(TypeError, match="policy must be callable"):
        nn.Linear(1, 1).set_storage_policy("narrow")


def test_dropout_identity_in_eval_mode():
    layer = nn.Dropout(0.5)
    x = nm.Tensor(np.ones((10, 10), np.float32))
    layer.eval()
    assert layer(x) is x
    layer.train()
    out = layer(x).data
    assert set(np.unique(out)) <= {0.0, 2.0}
    assert 20 < (out == 0).sum() < 80


def test_batchnorm_train_normalizes_and_updates_running_stats():
    layer = nn.BatchNorm2d(3)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((8, 3, 4, 4)) * 2 + 5).astype(np.float32)
    out = layer(nm.Tensor(x)).data
    np.testing.assert_allclose(out.mean(axis=(0, 2, 3)), 0, atol=1e-5)
    np.testing.assert_allclose(out.var(axis=(0, 2, 3)), 1, atol=1e-3)
    expected_mean = 0.1 * x.mean(axis=(0, 2, 3))
    expected_var = 0.9 + 0.1 * x.var(axis=(0, 2, 3), ddof=1)
    np.testing.assert_allclose(layer.running_mean, expected_mean, rtol=1e-5)
    np.testing.assert_allclose(layer.running_var, expected_var, rtol=1e-5)


def test_batchnorm_eval_uses_running_stats():
    layer = nn.BatchNorm2d(2)
    layer.load_state_dict({
        "weight": np.ones(2, np.float32), "bias": np.zeros(2, np.float32),
        "running_mean": np.array([1.0, -1.0], np.float32),
        "running_var": np.array([4.0, 1.0], np.float32),
    })
    layer.eval()
    out = layer(nm.Tensor(np.ones((1, 2, 1, 1), np.float32))).data.ravel()
    np.testing.assert_allclose(out, [0.0, 2.0 / math.sqrt(1 + 1e-5)], rtol=1e-6)


def test_batchnorm_input_gradient():
    layer = nn.BatchNorm2d(2)
    check_gradients(layer, [np.random.default_rng(1).standard_normal((3, 2, 2, 2))], rtol=1e-4)


def test_layernorm_input_gradient():
    layer = nn.LayerNorm(4)
    check_gradients(layer, [np.random.default_rng(2).standard_normal((3, 4))], rtol=1e-4)


def test_layernorm_normalizes_last_axis():
    out = nn.LayerNorm(5)(nm.Tensor(np.arange(10, dtype=np.float32).reshape(2, 5))).data
    np.testing.assert_allclose(out.mean(axis=1), 0, atol=1e-6)
    np.testing.assert_allclose(out.var(axis=1), 1, atol=1e-4)


def test_embedding_repeated_indices_accumulate():
    layer = nn.Embedding(4, 3)
    layer(np.array([1, 1, 3])).sum().backward()
    np.testing.assert_array_equal(layer.weight.grad[:, 0], [0.0, 2.0, 0.0, 1.0])


def test_embedding_rejects_float_indices():
    with pytest.raises(TypeError, match="indices must be integers"):
        nn.Embedding(4, 3)(np.array([1.0]))


def test_sequential_indexing_and_length():
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2), nn.ReLU())
    assert len(model) == 3
    assert isinstance(model[1], nn.Linear)


def test_train_eval_reach_every_module():
    model = models.build("cnn", (1, 8, 8), 10)
    model.eval()
    assert all(not module.training for _, module in model.named_modules())
    model.train()
    assert all(module.training for _, module in model.named_modules())
