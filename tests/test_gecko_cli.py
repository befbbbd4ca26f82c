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

    assert status == 2
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


def _error_line(capsys):
    """Return the one line that ``sfp`` printed to stderr; fail if there is more."""
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


@pytest.mark.spec("G11")
@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["pack", "{x}", "{out}", "--container", "bogus"], "container name must be one of"),
        (["pack", "{nan}", "{out}", "--container", "e2m1fn"], "has no NaN code"),
        (["pack", "{missing}", "{out}"], "missing.npy: no such file or directory"),
        (["pack", "{x}", "{x}"], "must differ from the input file"),
        (["pack", "{x}", "{tmp}/absent/out.gecko"], "absent does not exist"),
        (["pack", "{f64}", "{out}"], "pack needs a float32 array; got dtype float64"),
        (["pack", "{gecko}", "{out}"], "not a .npy file"),
        (["unpack", "{missing}", "{tmp}/y.npy"], "missing.npy: no such file or directory"),
        (["unpack", "{gecko}", "{gecko}"], "must differ from the input file"),
        (["pack", "{x}", "{tmp}"], "is a directory; pass a file path"),
        (["pack", "{npz}", "{out}"], "an .npz archive, not a .npy file"),
    ],
    ids=["bogus-container", "nan-e2m1fn", "missing-input", "same-path", "missing-folder",
         "float64", "gecko-input", "unpack-missing", "unpack-same-path", "output-directory", "npz-input"],
)
def test_failures_print_one_line(tmp_path, capsys, arguments, message):
    np.save(tmp_path / "x.npy", _weights((4, 3)))
    np.save(tmp_path / "nan.npy", np.float32([1.0, np.nan]))
    np.save(tmp_path / "f64.npy", np.zeros(3))
    (tmp_path / "x.gecko").write_bytes(b"SFPG")
    np.savez(tmp_path / "x.npz", x=_weights((4, 3)))
    paths = {"npz": tmp_path / "x.npz","x": tmp_path / "x.npy", "nan": tmp_path / "nan.npy", "f64": tmp_path / "f64.npy",
             "missing": tmp_path / "missing.npy", "gecko": tmp_path / "x.gecko",
             "out": tmp_path / "out.gecko", "tmp": tmp_path}
    before = sorted(p.name for p in tmp_path.iterdir())

    status = sfp.main(["gecko", *[a.format(**paths) for a in arguments]])
    line = _error_line(capsys)

    assert status == 2
    assert line.startswith("sfp gecko: ")
    assert message in line
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.mark.spec("G11")
def test_pack_reads_big_endian_file(tmp_path):
    x = _weights((5, 4))
    np.save(tmp_path / "x.npy", x.astype(">f4"))

    assert sfp.main(["gecko", "pack", str(tmp_path / "x.npy"), str(tmp_path / "x.gecko")]) == 0
    assert sfp.main(["gecko", "unpack", str(tmp_path / "x.gecko"), str(tmp_path / "y.npy")]) == 0
    y = np.load(tmp_path / "y.npy")

    np.testing.assert_array_equal(y.view(np.uint32), x.view(np.uint32))


@pytest.mark.spec("G6")
@pytest.mark.parametrize("container", ["fp32", "e4m3fn"])
def test_pack_big_endian_error_suggests_astype(container):
    from reference import Container
    from reference.gecko import pack

    with pytest.raises(ValueError, match=r"x\.astype\('<f4'\)"):
        pack(np.float32([1.0, 2.0]).astype(">f4"), Container.from_name(container))


@pytest.mark.spec("G11")
def test_stats_prints_na_for_empty_array(tmp_path, capsys):
    np.save(tmp_path / "empty.npy", np.zeros((0, 3), np.float32))

    assert sfp.main(["gecko", "stats", str(tmp_path / "empty.npy")]) == 0
    row = capsys.readouterr().out.splitlines()[2].split()

    assert row[:2] == ["empty.npy", "0"]
    assert set(row[2:]) == {"n/a"}


@pytest.mark.spec("G11")
def test_stats_names_expected_file_types(tmp_path, capsys):
    (tmp_path / "x.gecko").write_bytes(b"SFPG\x01")
    (tmp_path / "bad.onnx").write_bytes(b"garbage")

    status = sfp.main(["gecko", "stats", str(tmp_path / "x.gecko"), str(tmp_path / "bad.onnx")])
    lines = capsys.readouterr().err.strip().splitlines()

    assert status == 2
    assert len(lines) == 2
    assert lines[0].startswith("sfp gecko: cannot read tensors from ")
    assert "not a .npy file; stats and pack read .npy files" in lines[0]
    assert "not an ONNX model" in lines[1]


@pytest.mark.spec("G1", "G11")
def test_pack_help_states_no_checksum(capsys):
    with pytest.raises(SystemExit):
        sfp.main(["gecko", "pack", "--help"])

    assert "carries no checksum" in " ".join(capsys.readouterr().out.split())


@pytest.mark.spec("G11")
def test_failed_rename_leaves_no_temporary(tmp_path):
    from reference.gecko.cli import _write_atomically

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "occupied").write_text("a file inside makes the rename fail")

    with pytest.raises(OSError):
        _write_atomically(tmp_path / "out", b"data")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def _write_npy_header(path, shape, dtype="<f4", data=b""):
    """Write a .npy header that declares ``shape`` of ``dtype``, followed by ``data`` only."""
    with open(path, "wb") as stream:
        np.lib.format.write_array_header_1_0(
            stream, {"descr": dtype, "fortran_order": False, "shape": shape})
        stream.write(data)


@pytest.mark.spec("G11")
@pytest.mark.parametrize("action", ["pack", "stats"])
def test_empty_file_is_one_line(tmp_path, capsys, action):
    (tmp_path / "zero.npy").write_bytes(b"")
    outputs = [str(tmp_path / "z.gecko")] if action == "pack" else []

    status = sfp.main(["gecko", action, str(tmp_path / "zero.npy"), *outputs])

    assert status == 2
    assert "zero.npy: the file is empty (0 bytes)" in _error_line(capsys)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zero.npy"]


@pytest.mark.spec("G11")
@pytest.mark.parametrize("action", ["pack", "stats"])
def test_huge_header_rejected_before_allocating(tmp_path, capsys, action):
    _write_npy_header(tmp_path / "huge.npy", (10**12,), data=bytes(16))
    outputs = [str(tmp_path / "h.gecko")] if action == "pack" else []

    status = sfp.main(["gecko", action, str(tmp_path / "huge.npy"), *outputs])
    line = _error_line(capsys)

    assert status == 2
    assert "huge.npy: the file is shorter than its header claims" in line
    assert "shape (1000000000000,) of dtype float32 needs 4000000000000 bytes" in line
    assert "got 16" in line


@pytest.mark.spec("G11")
def test_pack_names_truncated_file(tmp_path, capsys):
    np.save(tmp_path / "full.npy", _weights((10, 10)))
    data = (tmp_path / "full.npy").read_bytes()
    (tmp_path / "cut.npy").write_bytes(data[:len(data) - 100])

    status = sfp.main(["gecko", "pack", str(tmp_path / "cut.npy"), str(tmp_path / "c.gecko")])
    line = _error_line(capsys)

    assert status == 2
    assert line.startswith(f"sfp gecko: {tmp_path / 'cut.npy'}: the file is shorter than its "
                           "header claims: shape (10, 10) of dtype float32 needs 400 bytes")
    assert not (tmp_path / "c.gecko").exists()


@pytest.mark.spec("G11")
def test_pack_rejects_object_dtype_by_name(tmp_path, capsys):
    np.save(tmp_path / "objects.npy", np.array([1.0, "a"], dtype=object), allow_pickle=True)

    status = sfp.main(["gecko", "pack", str(tmp_path / "objects.npy"),
                       str(tmp_path / "o.gecko")])
    line = _error_line(capsys)

    assert status == 2
    assert line.startswith(f"sfp gecko: {tmp_path / 'objects.npy'}: dtype object is not "
                           "supported")
    assert "save a numeric array such as float32" in line


@pytest.mark.spec("G11")
def test_pack_nan_error_suggests_containers(tmp_path, capsys):
    np.save(tmp_path / "special.npy", np.float32([1.0, np.inf, np.nan]))

    status = sfp.main(["gecko", "pack", "--container", "e2m1fn", str(tmp_path / "special.npy"),
                       str(tmp_path / "s.gecko")])
    line = _error_line(capsys)

    assert status == 2
    assert line.startswith(f"sfp gecko: {tmp_path / 'special.npy'}: contains NaN (first at "
                           "element 2: 0x7fc00000)")
    assert "pass --container with one of fp32, bf16" in line
    assert "omit --container" in line
    assert "specials" not in line


@pytest.mark.spec("G11")
def test_pack_with_suggested_container_keeps_nan(tmp_path):
    np.save(tmp_path / "special.npy", np.float32([1.0, np.inf, np.nan]))

    status = sfp.main(["gecko", "pack", "--container", "e4m3", str(tmp_path / "special.npy"),
                       str(tmp_path / "s.gecko")])

    assert status == 0
    assert sfp.main(["gecko", "unpack", str(tmp_path / "s.gecko"), str(tmp_path / "y.npy")]) == 0
    assert np.isnan(np.load(tmp_path / "y.npy")[2])


@pytest.mark.spec("G11")
def test_failed_write_names_output_not_temporary(tmp_path, capsys, monkeypatch):
    import errno
    import pathlib

    def disk_full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))

    np.save(tmp_path / "x.npy", _weights((4, 3)))
    monkeypatch.setattr(pathlib.Path, "write_bytes", disk_full)

    status = sfp.main(["gecko", "pack", str(tmp_path / "x.npy"), str(tmp_path / "x.gecko")])

    assert status == 2
    assert _error_line(capsys) == f"sfp gecko: {tmp_path / 'x.gecko'}: no space left on device"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npy"]


def test_stats_names_a_header_cut_off(tmp_path, capsys):
    whole = tmp_path / "whole.npy"
    np.save(whole, np.ones(100, np.float32))
    cut = tmp_path / "cut.npy"
    cut.write_bytes(whole.read_bytes()[:100])

    status = sfp.main(["gecko", "stats", str(cut)])

    assert status == 2
    assert "the .npy header is damaged or cut off" in capsys.readouterr().err
