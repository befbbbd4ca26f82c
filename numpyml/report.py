"""Footprint reports of narrowing runs: report.json fields, a terminal table and PNG plots.

The report.json fields written here (documented in docs/report.md):

- ``footprint_ratio_fp32``, ``footprint_ratio_bf16``: the run's stored bits against the same
  stored values at 32 and at 16 bits (SPEC.md F2).
- ``footprint_ratio_fp32_gecko``, ``footprint_ratio_bf16_gecko``: the same with every stored
  instance at its Gecko-packed size (SPEC.md F4), or None when no step was packed.
- ``tensors``: one entry per narrowed tensor with ``name``, ``kind``, ``elements`` (values of
  its largest stored instance), ``mantissa_bits`` and ``exponent_bits`` (the widths applied at
  evaluation), its own ``footprint_ratio_fp32`` and ``footprint_ratio_fp32_gecko``.
- ``narrow_tensors``: how many tensors ended at 1–2 mantissa bits and at 3–4 exponent bits.
- ``baseline_test_accuracy`` and ``accuracy_difference`` when an FP32 baseline ran.
"""

import logging
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

WIDTHS_PLOT = "bitlengths.png"
FOOTPRINT_PLOT = "footprint.png"


def footprint_fields(ledger, final_widths):
    """Return the footprint fields of report.json from a ledger and the final widths.

    ``final_widths`` maps ``(layer_name, kind)`` to the integer ``(exponent_bits,
    mantissa_bits)`` applied at evaluation.
    """
    tensors = []
    for tensor in ledger.tensors():
        exponent_bits, mantissa_bits = final_widths[(tensor.name, tensor.kind)]
        tensors.append({
            "name": tensor.name,
            "kind": tensor.kind,
            "elements": tensor.max_elements,
            "mantissa_bits": int(mantissa_bits),
            "exponent_bits": int(exponent_bits),
            "footprint_ratio_fp32": tensor.ratio_fp32,
            "footprint_ratio_fp32_gecko": tensor.ratio_fp32_gecko,
        })
    packed = ledger.gecko_instances() > 0
    return {
        "footprint_ratio_fp32": ledger.ratio_fp32(),
        "footprint_ratio_bf16": ledger.ratio_bf16(),
        "footprint_ratio_fp32_gecko": ledger.ratio_fp32_gecko() if packed else None,
        "footprint_ratio_bf16_gecko": ledger.ratio_bf16_gecko() if packed else None,
        "tensors": tensors,
        "narrow_tensors": {
            "total": len(tensors),
            "mantissa_1_to_2": sum(1 <= t["mantissa_bits"] <= 2 for t in tensors),
            "exponent_3_to_4": sum(3 <= t["exponent_bits"] <= 4 for t in tensors),
        },
    }


def add_baseline(report, baseline_report):
    """Add the FP32 baseline's test accuracy and the difference to ``report`` (in place)."""
    report["baseline_test_accuracy"] = baseline_report["test_accuracy"]
    report["accuracy_difference"] = report["test_accuracy"] - baseline_report["test_accuracy"]
    return report


def format_table(report):
    """Return the terminal summary of a narrowing run as a string of aligned lines."""
    lines = []
    if "baseline_test_accuracy" in report:
        lines.append(f"test accuracy {report['test_accuracy']:.2%}, FP32 baseline "
                     f"{report['baseline_test_accuracy']:.2%}, difference "
                     f"{100 * report['accuracy_difference']:+.2f} points")
    if "footprint_ratio_fp32" not in report:
        return "\n".join(lines)

    lines.append(f"footprint ratio {report['footprint_ratio_fp32']:.2f}x against FP32, "
                 f"{report['footprint_ratio_bf16']:.2f}x against BF16 "
                 "(bits of the same values at 32 or 16 bits / stored bits)")
    if report.get("footprint_ratio_fp32_gecko") is not None:
        lines.append(f"with Gecko {report['footprint_ratio_fp32_gecko']:.2f}x against FP32, "
                     f"{report['footprint_ratio_bf16_gecko']:.2f}x against BF16 "
                     f"(stored tensors packed every {report['gecko_every']} steps)")
    lines.append(f"{'tensor':<24} {'kind':<10} {'elements':>9} {'e':>2} {'m':>2} {'vs FP32':>8} "
                 f"{'with Gecko':>10}")
    for tensor in report["tensors"]:
        gecko = tensor.get("footprint_ratio_fp32_gecko")
        gecko_text = "-" if gecko is None else f"{gecko:.2f}x"
        lines.append(f"{tensor['name']:<24} {tensor['kind']:<10} {tensor['elements']:>9} "
                     f"{tensor['exponent_bits']:>2} {tensor['mantissa_bits']:>2} "
                     f"{tensor['footprint_ratio_fp32']:>7.2f}x {gecko_text:>10}")
    narrow = report["narrow_tensors"]
    lines.append(f"{narrow['mantissa_1_to_2']} of {narrow['total']} tensors end at 1-2 mantissa "
                 f"bits, {narrow['exponent_3_to_4']} of {narrow['total']} at 3-4 exponent bits")
    return "\n".join(lines)


def write_plots(out_dir, history, ledger):
    """Write the width and footprint plots to ``out_dir``; return the paths written.

    ``history`` rows are ``(step, layer_name, kind, exponent_bits, mantissa_bits)``. Without
    matplotlib nothing is written and a warning is logged.
    """
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        logger.warning("matplotlib is not installed, so no plots were written; install the "
                       "'plot' extra (pip install -e '.[plot]') to get them")
        return []
    out_dir = Path(out_dir)
    paths = [_plot_widths(plt, out_dir / WIDTHS_PLOT, history),
             _plot_footprint(plt, out_dir / FOOTPRINT_PLOT, ledger)]
    return [path for path in paths if path is not None]


def _plot_widths(plt, path, history):
    if not history:
        return None
    figure, (mantissa_axes, exponent_axes) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    series = {}
    for step, layer_name, kind, exponent_bits, mantissa_bits in history:
        series.setdefault(f"{layer_name} {kind}", []).append((step, exponent_bits, mantissa_bits))
    for label, rows in series.items():
        rows = np.asarray(rows, dtype=np.float64)
        mantissa_axes.plot(rows[:, 0], rows[:, 2], label=label, linewidth=1)
        exponent_axes.plot(rows[:, 0], rows[:, 1], label=label, linewidth=1)
    mantissa_axes.set_ylabel("mantissa bits")
    exponent_axes.set_ylabel("exponent bits")
    exponent_axes.set_xlabel("training step")
    mantissa_axes.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _plot_footprint(plt, path, ledger):
    if len(ledger) == 0:
        return None
    steps, stored, fp32 = ledger.per_step_bits()
    figure, axes = plt.subplots(figsize=(8, 3.5))
    values = fp32 / 32.0
    axes.plot(steps, stored / values, label="stored bits per value", linewidth=1)
    if ledger.gecko_instances() > 0:
        _, gecko = ledger.per_step_gecko_bits()
        axes.plot(steps, gecko / values, label="with Gecko", linewidth=1)
    axes.axhline(16, color="gray", linestyle="--", linewidth=1, label="BF16")
    axes.set_ylim(0, 33)
    axes.set_xlabel("training step")
    axes.set_ylabel("bits per stored value")
    axes.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def train_with_baseline(config, method, baseline, on_epoch=None):
    """Train ``config`` with ``method``; with ``baseline``, first train FP32 with the same seed.

    The baseline writes its own report to ``<out_dir>/baseline``. The method's report gains
    ``baseline_test_accuracy`` and ``accuracy_difference`` and is written again.
    """
    import dataclasses
    import json

    from numpyml.train import REPORT_FILE, train
    from reference.atomic_write import write_atomically

    baseline_report = None
    if baseline and config.method == "fp32" and method is None:
        logger.info("--baseline ignored: the method is already fp32")
    elif baseline:
        baseline_dir = None if config.out_dir is None else str(Path(config.out_dir) / "baseline")
        baseline_config = dataclasses.replace(config, method="fp32", out_dir=baseline_dir)
        logger.info("training the FP32 baseline (seed %d)", config.seed)
        baseline_report = train(baseline_config, on_epoch=on_epoch)
        logger.info("training %s (seed %d)", config.method, config.seed)
    report = train(config, method=method, on_epoch=on_epoch)
    if baseline_report is not None:
        add_baseline(report, baseline_report)
        if config.out_dir is not None:
            text = (json.dumps(report, indent=2) + "\n").encode()
            write_atomically(Path(config.out_dir) / REPORT_FILE, lambda handle: handle.write(text))
    return report
