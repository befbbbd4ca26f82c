"""Export a trained numpyml run as an ONNX inference graph with ``Narrow`` at its final widths.

A run directory contains ``checkpoint.npz`` (the FP32 master arrays) and ``report.json`` (the
config and, for container methods, a ``tensors`` list with the final ``exponent_bits`` and
``mantissa_bits`` of each layer's weight and input activation). Every listed tensor passes
through ``Narrow`` with the training container (no specials, no subnormals, saturating) and
the in-graph max anchor, exactly as numpyml narrows it at evaluation (SPEC.md X8).
"""

import json
import logging
import zipfile
import zlib
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from onnx_ops import function_body, schemas
from onnx_ops.model import make_model, narrow_node

logger = logging.getLogger(__name__)

REPORT_FILE = "report.json"
CHECKPOINT_FILE = "checkpoint.npz"
INPUT_NAME = "images"
OUTPUT_NAME = "logits"
# Stochastic rounding at evaluation draws noise from the run's generator, which a graph cannot
# reproduce, so only the deterministic modes export.
EXPORTABLE_ROUNDINGS = ("nearest_even", "toward_zero")


def load_run(run_dir):
    """Return (report dict, numpyml model with the checkpoint loaded, dataset) of ``run_dir``."""
    from numpyml import models
    from numpyml.data import load_dataset
    from numpyml.train import load_checkpoint

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise FileNotFoundError(f"run directory {run_dir}: not found; pass a directory written "
                                "by `sfp train`")
    for name in (REPORT_FILE, CHECKPOINT_FILE):
        if not (run_dir / name).is_file():
            raise FileNotFoundError(
                f"run directory {run_dir} has no {name}; pass a directory written by `sfp train`"
            )
    report = _read_report(run_dir)
    status = report.get("status")
    if status != "completed":
        # The checkpoint of a diverged run predates its report, which has no final widths.
        raise ValueError(
            f"run directory {run_dir}: export needs a completed run; got status {status!r}"
            + (f" ({report['error']})" if report.get("error") else "")
        )
    config = report["config"]
    dataset = load_dataset(config["dataset"], seed=config["split_seed"])
    model = models.build(config["model"], dataset.input_shape, dataset.num_classes)
    _check_archive(run_dir)
    try:
        load_checkpoint(run_dir / CHECKPOINT_FILE, model)
    except (KeyError, ValueError) as error:
        raise _damaged(run_dir, CHECKPOINT_FILE,
                       f"its arrays do not match the {config['model']} model that "
                       f"{REPORT_FILE} describes ({error.args[0]}), so the two files come from "
                       "different runs") from error
    model.eval()
    return report, model, dataset


# The report fields that export reads to rebuild the model and its data.
CONFIG_FIELDS = ("model", "dataset", "split_seed")


def _read_report(run_dir):
    """Return the report dict of ``run_dir``, checking the fields that export reads."""
    try:
        report = json.loads((run_dir / REPORT_FILE).read_text(encoding="utf-8"))
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError
        raise _damaged(run_dir, REPORT_FILE, f"invalid JSON ({error})") from error
    if not isinstance(report, dict):
        raise _damaged(run_dir, REPORT_FILE,
                       f"must contain a JSON object; got a {type(report).__name__}")
    config = report.get("config")
    if not isinstance(config, dict):
        raise _damaged(run_dir, REPORT_FILE, "missing the \"config\" object")
    missing = [field for field in CONFIG_FIELDS if field not in config]
    if missing:
        raise _damaged(run_dir, REPORT_FILE, f"\"config\" is missing the fields {missing}")
    return report


def _check_archive(run_dir):
    """Raise ValueError unless every array of the checkpoint passes its CRC and header checks.

    The header check runs before numpy allocates the array that a damaged header may declare.
    """
    try:
        with zipfile.ZipFile(run_dir / CHECKPOINT_FILE) as archive:
            failed = archive.testzip()
            problem = _first_bad_header(archive) if failed is None else None
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        raise _damaged(run_dir, CHECKPOINT_FILE, f"not a readable .npz archive ({error})") \
            from error
    if failed is not None:
        raise _damaged(run_dir, CHECKPOINT_FILE, f"array {failed} fails its CRC check")
    if problem is not None:
        raise _damaged(run_dir, CHECKPOINT_FILE, problem)


def _first_bad_header(archive):
    """Return what is wrong with the first array whose .npy header is invalid, or None."""
    from reference.npy_file import check_npy_header

    for info in archive.infolist():
        try:
            with archive.open(info) as stream:
                check_npy_header(stream, info.file_size)
        except (ValueError, TypeError) as error:
            return f"array {info.filename}: {error}"
    return None


def _damaged(run_dir, name, problem):
    return ValueError(
        f"{run_dir / name}: {problem}; the run directory is damaged, so train again with "
        f"`sfp train ... --out {run_dir}` and export the new run"
    )


def final_widths(report):
    """Return {(layer name, kind): (exponent_bits, mantissa_bits)} from a report's ``tensors``."""
    return {
        (t["name"], t["kind"]): (int(t["exponent_bits"]), int(t["mantissa_bits"]))
        for t in report.get("tensors", [])
    }


def rounding_of(report):
    rounding = report.get("method_settings", {}).get("rounding", "nearest_even")
    if rounding not in EXPORTABLE_ROUNDINGS:
        raise ValueError(
            f"export: rounding must be one of {', '.join(EXPORTABLE_ROUNDINGS)}; got {rounding!r} "
            "(stochastic evaluation noise comes from the run's generator and cannot be exported)"
        )
    return rounding


def export_run(run_dir):
    """Return the inference model of the run in ``run_dir``, checked with full_check."""
    report, model, dataset = load_run(run_dir)
    return export_model(model, dataset.input_shape, dataset.num_classes, final_widths(report),
                        rounding_of(report))


def export_model(model, input_shape, num_classes, widths, rounding="nearest_even"):
    """Return an ONNX graph of numpyml ``model`` with ``Narrow`` on the tensors in ``widths``."""
    graph = _GraphWriter(widths, rounding)
    value = INPUT_NAME
    for name, module in _leaf_modules(model):
        value = graph.add_layer(name, module, value)
    graph.nodes.append(helper.make_node("Identity", [value], [OUTPUT_NAME]))

    unused = sorted(set(widths) - graph.narrowed)
    if unused:
        raise ValueError(
            f"export: report lists tensors that the model does not store: {unused}; "
            "check that report.json and checkpoint.npz come from the same run"
        )
    inputs = [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT,
                                            ["batch", *input_shape])]
    outputs = [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT,
                                             ["batch", num_classes])]
    onnx_graph = helper.make_graph(graph.nodes, "numpyml", inputs, outputs,
                                   initializer=graph.initializers)
    functions = [function_body.narrow_function(graph.attributes)] if graph.narrowed else []
    return make_model(onnx_graph, functions)


def _leaf_modules(model):
    # The registered numpyml models run their leaf modules in definition order, which is the
    # depth-first order of named_modules.
    for name, module in model.named_modules():
        if not module._modules:
            yield name, module


class _GraphWriter:
    """Append ONNX nodes and initializers for numpyml layers, narrowing the listed tensors."""

    def __init__(self, widths, rounding):
        self.widths = widths
        self.attributes = {
            "specials": "none", "subnormals": 0, "saturate": 1, "rounding": rounding,
            "anchor_mode": "max",
        }
        self.nodes = []
        self.initializers = []
        self.narrowed = set()

    def add_layer(self, name, module, value):
        kind = type(module).__name__
        writer = getattr(self, f"_add_{kind.lower()}", None)
        if writer is None:
            raise ValueError(
                f"export: layer {name!r} of type {kind} has no ONNX translation; supported: "
                "Linear, Conv2d, ReLU, MaxPool2d, AvgPool2d, Flatten, Dropout"
            )
        return writer(name, module, value)

    def _initializer(self, name, array):
        self.initializers.append(numpy_helper.from_array(np.asarray(array), name))
        return name

    def _op(self, op_type, inputs, output, **attributes):
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attributes))
        return output

    def _stored(self, layer, kind, value):
        """Return ``value`` narrowed when the report lists (layer, kind), else ``value``."""
        key = (layer, kind)
        if key not in self.widths:
            return value
        self.narrowed.add(key)
        exponent_bits, mantissa_bits = self.widths[key]
        prefix = f"{layer}.{kind}"
        e = self._initializer(f"{prefix}.exponent_bits", np.int64(exponent_bits))
        m = self._initializer(f"{prefix}.mantissa_bits", np.int64(mantissa_bits))
        narrowed = f"{prefix}.narrowed"
        self.nodes.append(narrow_node([value, e, m], narrowed, self.attributes, name=narrowed))
        return narrowed

    def _parameters(self, name, module):
        weight = self._initializer(f"{name}.weight", module.weight.data.astype(np.float32))
        inputs = [self._stored(name, "weight", weight)]
        if module.bias is not None:
            inputs.append(self._initializer(f"{name}.bias", module.bias.data.astype(np.float32)))
        return inputs

    def _add_linear(self, name, module, value):
        x = self._stored(name, "activation", value)
        return self._op("Gemm", [x, *self._parameters(name, module)], f"{name}.output",
                        transB=1)

    def _add_conv2d(self, name, module, value):
        x = self._stored(name, "activation", value)
        pad, stride = _pair(module.padding), _pair(module.stride)
        return self._op("Conv", [x, *self._parameters(name, module)], f"{name}.output",
                        pads=[pad[0], pad[1], pad[0], pad[1]], strides=list(stride))

    def _add_relu(self, name, module, value):
        return self._op("Relu", [value], f"{name}.output")

    def _add_flatten(self, name, module, value):
        return self._op("Flatten", [value], f"{name}.output", axis=1)

    def _add_dropout(self, name, module, value):
        return value  # identity at inference

    def _add_maxpool2d(self, name, module, value):
        return self._pool("MaxPool", name, module, value)

    def _add_avgpool2d(self, name, module, value):
        if _pair(module.padding) != (0, 0):
            # Padded averages differ between frameworks in whether the padding is counted.
            raise ValueError(
                f"export: AvgPool2d {name!r} must have padding 0; got {module.padding}"
            )
        return self._pool("AveragePool", name, module, value)

    def _pool(self, op_type, name, module, value):
        kernel = _pair(module.kernel_size)
        stride = _pair(module.stride if module.stride is not None else module.kernel_size)
        pad = _pair(module.padding)
        return self._op(op_type, [value], f"{name}.output", kernel_shape=list(kernel),
                        strides=list(stride), pads=[pad[0], pad[1], pad[0], pad[1]])


def _pair(value):
    return (int(value), int(value)) if np.isscalar(value) else tuple(int(v) for v in value)


def save(model, path):
    """Write ``model`` to ``path`` after checking it once more with full_check.

    The model goes to a temporary file that replaces ``path`` only when complete, so a failed
    write leaves no half-written model.
    """
    from reference.atomic_write import write_atomically

    onnx.checker.check_model(model, full_check=True)
    write_atomically(path, lambda handle: onnx.save(model, handle))
    logger.debug("wrote %s (%d nodes)", path, len(model.graph.node))
