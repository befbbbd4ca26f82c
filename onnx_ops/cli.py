"""The ``sfp export`` command: a trained run as an ONNX model with Narrow at its final widths."""

import logging

logger = logging.getLogger(__name__)


def register(subparsers):
    parser = subparsers.add_parser(
        "export",
        help="export a trained run as an ONNX inference model",
        description="Export RUN_DIR (checkpoint.npz and report.json) as an ONNX model whose "
        "stored tensors pass through the Narrow operator at their final widths. The model "
        "carries Narrow's function body, so ONNX Runtime (tested with 1.32) runs it as is.",
    )
    parser.add_argument("run_dir", metavar="RUN_DIR", help="directory written by `sfp train`")
    parser.add_argument("--out", required=True, help="path of the .onnx file to write")
    parser.set_defaults(run=run)


def run(args):
    from pathlib import Path

    from onnx_ops import export

    out = Path(args.out)
    if not out.resolve().parent.is_dir():
        # Exporting takes seconds, so a path that cannot be written is rejected first.
        raise FileNotFoundError(f"--out {out}: directory {out.parent} does not exist; create it "
                                "first")
    if out.is_dir():
        raise IsADirectoryError(f"--out {out}: is a directory; pass the path of an .onnx file")
    model = export.export_run(args.run_dir)
    export.save(model, args.out)
    narrowed = sum(node.op_type == "Narrow" for node in model.graph.node)
    print(f"wrote {args.out}: {len(model.graph.node)} nodes, {narrowed} Narrow")
    return 0
