"""The ``sfp gecko`` command: stats, pack and unpack on real files (rule G11)."""

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

import sfp


def _weights(shape, seed=0):
    return (np.random.default_rng(seed).standard_normal(shape) * 0.05).astype(np.float32)


@pytest.mark.spec("G11")
def test_stats_reads_npy_and_onnx(tmp_path, capsys):
    np.save(tmp_path / "w.npy", _weights((64, 32)))
    initializers = [numpy_helper.from_array(_weights((40, 30), 1), "fc.weight"),
                    numpy_helper.from_array(np.arange(5, dtype=np.int64), "indices")]
    graph = helper.make_graph([], "g", [], [], initializer=initializers)
    onnx.save(helper.make_model(graph), tmp_path / "m.onnx")

    status = sfp.main(["gecko", "stats", str(tmp_path / "w.npy"), str(tmp_path / "m.onnx")])
    lines = capsys.readouterr().out.splitlines()

    assert status == 0
    rows = {line.split()[0]: line.split()[1:] for line in lines[2:]}
    assert set(rows) == {"w.npy", "m.onnx:fc.weight"}
    assert rows["w.npy"][0] == "2048"
    fixed, entropy = float(rows["w.npy"][1]), float(rows["w.npy"][2])
    assert 1.0 < entropy < fixed < 8.0


@pytest.mark.spec("G11")
@pytest.mark.parametrize("container", ["fp32", "e4m3fn"])
def test_pack_then_unpack_restores_values(tmp_path, container):
    x = _weights((10, 7))
    x[0, :3] = [-0.0, np.inf, np.nan]
    np.save(tmp_path / "x.npy", x)

    assert sfp.main(["gecko", "pack", str(tmp_path / "x.npy"), str(tmp_path / "x.gecko"),
                     "--container", container]) == 0
    assert sfp.main(["gecko", "unpack", str(tmp_path / "x.gecko"), str(tmp_path / "y.npy")]) == 0
    y = np.load(tmp_path / "y.npy")

    if container == "fp32":
        np.testing.assert_array_equal(y.view(np.uint32), x.view(np.uint32))
    else:
        from reference import Container, quantize

        expected = quantize(x, Container.from_name(container))
        np.testing.assert_array_equal(y.view(np.uint32), expected.view(np.uint32))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.gecko", "x.npy", "y.npy"]


@pytest.mark.spec("G11")
def test_unpack_rejects_garbage_without_writing(tmp_path):
    (tmp_path / "bad.gecko").write_bytes(b"not a gecko stream")

    status = sfp.main(["gecko", "unpack", str(tmp_path / "bad.gecko"), str(tmp_path / "y.npy")])

    assert status == 1
    assert not (tmp_path / "y.npy").exists()


@pytest.mark.spec("G11")
def test_stats_widens_float16_initializers(tmp_path, capsys):
    weights = _weights((40, 30)).astype(np.float16)
    initializers = [numpy_helper.from_array(weights, "half.weight")]
    graph = helper.make_graph([], "g", [], [], initializer=initializers)
    onnx.save(helper.make_model(graph), tmp_path / "half.onnx")

    assert sfp.main(["gecko", "stats", str(tmp_path / "half.onnx")]) == 0
    rows = capsys.readouterr().out.splitlines()[2:]
    assert [row.split()[:2] for row in rows] == [["half.onnx:half.weight", "1200"]]
