"""`sfp export`: ONNX Runtime reproduces numpyml's narrowed inference on the whole test split."""

import json

import numpy as np
import onnx
import pytest

from numpyml.engine import Tensor, no_grad
from numpyml.train import TrainConfig, train
from onnx_ops import export
from onnx_ops.runtime import OrtSession
from reference import bitlength

# Logit tolerance of SPEC.md T: matrix products sum in another order, so a logit may differ by
# float32 rounding, and a value on a rounding boundary of a later Narrow may move by one ulp.
LOGIT_ATOL = 1e-3
LOGIT_RTOL = 1e-3


def widths_for(model):
    """Return made-up final widths, different per layer, for every weight and activation."""
    widths = {}
    layers = [name for name, module in model.named_modules()
              if getattr(module, "uses_storage_hook", False)]
    for i, name in enumerate(layers):
        widths[(name, "weight")] = (3 + i % 3, 1 + i % 3)
        widths[(name, "activation")] = (4 + i % 2, 2 + i % 2)
    return widths


def write_tensors(run_dir, widths):
    """Add a container method's ``tensors`` list to the run's report.json."""
    path = run_dir / "report.json"
    report = json.loads(path.read_text())
    report["tensors"] = [
        {"name": name, "kind": kind, "elements": 0, "exponent_bits": e, "mantissa_bits": m}
        for (name, kind), (e, m) in widths.items()
    ]
    path.write_text(json.dumps(report))


def numpyml_logits(model, images, widths):
    """Return numpyml's logits with each listed tensor narrowed as at evaluation."""
    def policy(layer_name, kind, tensor):
        if (layer_name, kind) not in widths:
            return tensor
        e, m = widths[(layer_name, kind)]
        return Tensor(bitlength.narrow(tensor.data, e, m))

    model.set_storage_policy(policy)
    with no_grad():
        logits = model(Tensor(images)).data
    model.set_storage_policy(None)
    return logits


@pytest.fixture(scope="module", params=["mlp", "cnn"])
def narrowed_run(request, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp(request.param)
    train(TrainConfig(model=request.param, epochs=1, out_dir=str(run_dir)))
    _, model, _ = export.load_run(run_dir)
    widths = widths_for(model)
    write_tensors(run_dir, widths)
    return run_dir, widths


@pytest.mark.spec("X8", "TX1")
def test_export_matches_numpyml_on_test_split(narrowed_run):
    run_dir, widths = narrowed_run
    report, model, dataset = export.load_run(run_dir)
    onnx_model = export.export_run(run_dir)
    narrow_nodes = [node for node in onnx_model.graph.node if node.op_type == "Narrow"]
    assert len(narrow_nodes) == len(widths)

    images = dataset.x_test.astype(np.float32)
    want = numpyml_logits(model, images, widths)
    got = OrtSession(onnx_model).run({export.INPUT_NAME: images})[0]
    np.testing.assert_array_equal(got.argmax(axis=1), want.argmax(axis=1))
    np.testing.assert_allclose(got, want, rtol=LOGIT_RTOL, atol=LOGIT_ATOL)


@pytest.mark.spec("X8")
def test_exported_weights_are_narrowed_bit_exactly(narrowed_run):
    run_dir, widths = narrowed_run
    _, model, _ = export.load_run(run_dir)
    onnx_model = export.export_run(run_dir)
    name, kind = next(key for key in widths if key[1] == "weight")
    e, m = widths[(name, kind)]
    # Expose the narrowed weight as a graph output and compare it with the reference.
    output = onnx.helper.make_tensor_value_info(
        f"{name}.weight.narrowed", onnx.TensorProto.FLOAT, None
    )
    onnx_model.graph.output.append(output)
    images = np.zeros((1, *model_input_shape(run_dir)), np.float32)
    got = OrtSession(onnx_model).run({export.INPUT_NAME: images})[1]
    weight = dict(model.named_parameters())[f"{name}.weight"].data
    want = bitlength.narrow(weight, e, m)
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


def model_input_shape(run_dir):
    _, _, dataset = export.load_run(run_dir)
    return dataset.input_shape


@pytest.mark.spec("X8")
def test_sfp_export_writes_checked_model(narrowed_run, tmp_path, capsys):
    import sfp

    run_dir, widths = narrowed_run
    out = tmp_path / "model.onnx"
    assert sfp.main(["export", str(run_dir), "--out", str(out)]) == 0
    model = onnx.load(str(out))
    onnx.checker.check_model(model, full_check=True)
    assert f"{len(widths)} Narrow" in capsys.readouterr().out


@pytest.mark.spec("X8")
def test_fp32_run_exports_without_narrow(tmp_path):
    train(TrainConfig(model="mlp", epochs=1, out_dir=str(tmp_path)))
    onnx_model = export.export_run(tmp_path)
    assert not any(node.op_type == "Narrow" for node in onnx_model.graph.node)
    assert not onnx_model.functions


@pytest.mark.spec("X8")
def test_export_rejects_missing_run_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="has no report.json"):
        export.export_run(tmp_path)


@pytest.mark.spec("X8")
def test_export_rejects_stochastic_rounding(narrowed_run):
    run_dir, _ = narrowed_run
    report = json.loads((run_dir / "report.json").read_text())
    report["method_settings"] = {"rounding": "stochastic"}
    with pytest.raises(ValueError, match="got 'stochastic'"):
        export.rounding_of(report)


@pytest.mark.spec("X8", "TX1")
@pytest.mark.parametrize("model_name", ["mlp", "cnn"])
def test_export_of_fixed_method_matches_numpyml_evaluation(model_name, tmp_path):
    # The real container method, evaluated as numpyml.train.evaluate does: batches of 256, so
    # that each activation's max anchor comes from the same batch in both.
    from numpyml.data import batches
    from numpyml.narrowing import FixedNarrowing

    method = FixedNarrowing(4, 3)
    train(TrainConfig(model=model_name, epochs=1, out_dir=str(tmp_path)), method=method)
    _, model, dataset = export.load_run(tmp_path)
    session = OrtSession(export.export_run(tmp_path))
    model.set_storage_policy(method)
    method.set_training(False)

    for images, _ in batches(dataset.x_test, dataset.y_test, 256):
        with no_grad():
            want = model(Tensor(images)).data
        got = session.run({export.INPUT_NAME: images.astype(np.float32)})[0]
        np.testing.assert_array_equal(got.argmax(axis=1), want.argmax(axis=1))
        np.testing.assert_allclose(got, want, rtol=LOGIT_RTOL, atol=LOGIT_ATOL)
