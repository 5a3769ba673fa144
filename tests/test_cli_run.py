"""`graphc run MODEL --input [NAME=]FILE.npy ... [-o OUTDIR]`: run a saved traced model on
.npy inputs and write its outputs as .npy files.

Most cases call `cli.main([...])` in-process; one runs `python -m graphc run` as a
subprocess. Output values are checked against numpy computing the same function, and
against the loaded module called in-process for the LSTM.
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import graphc as gc
import graphc.nn as nn
from graphc import cli

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class Affine:
    """y = x @ w + b, and its row sums: a dict output from two tensor arguments."""

    def __init__(self, w, b):
        self.w = gc.tensor(w, requires_grad=True)
        self.b = gc.tensor(b, requires_grad=True)

    def named_parameters(self):
        return [("w", self.w), ("b", self.b)]

    def __call__(self, x, shift):
        y = x @ self.w + self.b + shift
        return {"y": y, "row sum": y.sum(1)}


@pytest.fixture
def affine(tmp_path):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((3, 2)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    shift = rng.standard_normal((4, 2)).astype(np.float32)
    traced = gc.jit.trace(Affine(w, b), (gc.tensor(x), gc.tensor(shift)), strict=False)
    gc.jit.save(traced, tmp_path / "affine.gcjit")
    np.save(tmp_path / "x.npy", x)
    np.save(tmp_path / "shift.npy", shift)
    y = x @ w + b + shift
    return tmp_path, {"y": y, "row_sum": y.sum(1)}


def run(capsys, *argv):
    code = cli.main(["run", *map(str, argv)])
    out, err = capsys.readouterr()
    return code, out, err


def assert_usage_error(capsys, argv, *fragments):
    code, out, err = run(capsys, *argv)
    assert code == 2, (code, out, err)
    assert out == "" and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("graphc run: error: ")
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    return err


def test_named_inputs_write_one_file_per_output(affine, capsys):
    folder, expected = affine
    code, out, err = run(capsys, folder / "affine.gcjit", "--input", f"x={folder / 'x.npy'}",
                         "--input", f"shift={folder / 'shift.npy'}", "-o", folder / "out")
    assert (code, err) == (0, "")
    # dict keys name the files; the space in "row sum" becomes "_"
    assert out.splitlines() == [
        f"y [4, 2] float32 -> {folder / 'out' / 'y.npy'}",
        f"row_sum [4] float32 -> {folder / 'out' / 'row_sum.npy'}"]
    for name, want in expected.items():
        got = np.load(folder / "out" / f"{name}.npy", allow_pickle=False)
        assert got.dtype == np.float32
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert sorted(os.listdir(folder / "out")) == ["row_sum.npy", "y.npy"]   # no temp files


def test_positional_inputs_and_mixed(affine, capsys, monkeypatch):
    folder, expected = affine
    monkeypatch.chdir(folder)
    code, _, err = run(capsys, "affine.gcjit", "--input", "x.npy", "-i", "shift.npy")
    assert (code, err) == (0, "")
    np.testing.assert_allclose(np.load("y.npy"), expected["y"], rtol=1e-5, atol=1e-6)
    # a positional input is the next argument in order; a named one can come first
    code, _, err = run(capsys, "affine.gcjit", "--input", "shift=shift.npy", "-i", "x.npy",
                       "-o", "mixed")
    assert (code, err) == (0, "")
    np.testing.assert_allclose(np.load("mixed/y.npy"), expected["y"], rtol=1e-5, atol=1e-6)


def test_outputs_replace_existing_files_atomically(affine, capsys, monkeypatch):
    folder, expected = affine
    out = folder / "out"
    out.mkdir()
    np.save(out / "y.npy", np.zeros(1))
    args = (folder / "affine.gcjit", "-i", folder / "x.npy", "-i", folder / "shift.npy",
            "-o", out)

    def failing_save(fh, array, allow_pickle=False):
        fh.write(b"\x93NUMPY partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli.np, "save", failing_save)
    code, _, err = run(capsys, *args)
    assert code == 2 and "No space left on device" in err
    assert os.listdir(out) == ["y.npy"]                       # temp file removed
    assert np.load(out / "y.npy").shape == (1,)               # old file untouched
    monkeypatch.undo()
    assert run(capsys, *args)[0] == 0
    np.testing.assert_allclose(np.load(out / "y.npy"), expected["y"], rtol=1e-5, atol=1e-6)


def test_lstm_nested_outputs(tmp_path, capsys):
    gc.manual_seed(0)
    model = nn.LSTM(3, 5, batch_first=True)
    x = np.random.default_rng(1).standard_normal((2, 4, 3)).astype(np.float32)
    gc.jit.save(gc.jit.trace(model, gc.tensor(x)), tmp_path / "lstm.gcjit")
    np.save(tmp_path / "seq.npy", x)
    code, out, err = run(capsys, tmp_path / "lstm.gcjit", "-i", tmp_path / "seq.npy",
                         "-o", tmp_path)
    assert (code, err) == (0, "")
    assert [line.split(" -> ")[0] for line in out.splitlines()] == [
        "out0 [2, 4, 5] float32", "out1.0 [1, 2, 5] float32", "out1.1 [1, 2, 5] float32"]
    y, (h, c) = gc.jit.load(tmp_path / "lstm.gcjit")(gc.tensor(x))
    for name, want in (("out0", y), ("out1.0", h), ("out1.1", c)):
        np.testing.assert_allclose(np.load(tmp_path / f"{name}.npy"),
                                   want.detach().numpy(), rtol=1e-5, atol=1e-6)


def test_input_errors(affine, capsys):
    folder, _ = affine
    model = folder / "affine.gcjit"
    x, shift = folder / "x.npy", folder / "shift.npy"
    np.save(folder / "wide.npy", np.zeros((4, 5), np.float32))
    np.save(folder / "f64.npy", np.zeros((4, 3), np.float64))
    np.save(folder / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    np.savez(folder / "both.npz", x=np.zeros(3))
    (folder / "notes.npy").write_text("not an array")
    np.save(folder / "cut.npy", np.zeros((4, 3), np.float32))
    with open(folder / "cut.npy", "r+b") as fh:
        fh.truncate(100)

    assert_usage_error(capsys, [model, "-i", f"x={folder / 'missing.npy'}", "-i", shift],
                       "input 'x'", "no such file", "missing.npy")
    assert_usage_error(capsys, [model, "-i", f"x={folder / 'wide.npy'}", "-i", shift],
                       "input 'x'", "[4, 5]", "[4, 3]")
    assert_usage_error(capsys, [model, "-i", f"x={folder / 'f64.npy'}", "-i", shift],
                       "input 'x'", "float64", "float32")
    assert_usage_error(capsys, [model, "-i", f"x={folder / 'objects.npy'}", "-i", shift],
                       "input 'x'", "pickled")
    assert_usage_error(capsys, [model, "-i", f"x={folder / 'both.npz'}", "-i", shift],
                       ".npz archive")
    assert_usage_error(capsys, [model, "-i", f"x={folder / 'notes.npy'}", "-i", shift],
                       "not a .npy file")
    assert_usage_error(capsys, [model, "-i", f"x={folder / 'cut.npy'}", "-i", shift],
                       "input 'x'", "not a valid .npy file")
    assert_usage_error(capsys, [model, "-i", f"z={x}"], "no input 'z'", "x f32[4,3]",
                       "shift f32[4,2]")
    assert_usage_error(capsys, [model, "-i", x], "missing --input for shift f32[4,2]")
    assert_usage_error(capsys, [model, "-i", x, "-i", shift, "-i", x], "3 --input given",
                       "takes 2")
    assert_usage_error(capsys, [model, "-i", f"x={x}", "-i", f"x={x}"], "'x' is given twice")
    assert_usage_error(capsys, [model, "-i", f"shift={x}", "-i", x, "-i", x],
                       "3 --input given")


def test_model_and_output_errors(affine, capsys):
    folder, _ = affine
    x, shift = folder / "x.npy", folder / "shift.npy"
    assert_usage_error(capsys, [folder / "none.gcjit", "-i", x], "no such file")
    assert_usage_error(capsys, [x, "-i", x], "cannot load", "as a traced model")
    (folder / "taken").write_text("a file")
    assert_usage_error(capsys, [folder / "affine.gcjit", "-i", x, "-i", shift,
                                "-o", folder / "taken"], "not a directory")


def test_model_raising_exits_1(tmp_path, capsys):
    table = np.arange(6, dtype=np.float32).reshape(3, 2)
    traced = gc.jit.trace(lambda idx: gc.tensor(table).gather(0, idx),
                          gc.tensor(np.zeros((2, 2), np.int64)))
    gc.jit.save(traced, tmp_path / "lookup.gcjit")
    np.save(tmp_path / "ok.npy", np.array([[2, 0], [1, 1]], np.int64))
    np.save(tmp_path / "far.npy", np.array([[7, 0], [1, 1]], np.int64))
    code, _, err = run(capsys, tmp_path / "lookup.gcjit", "-i", tmp_path / "ok.npy",
                       "-o", tmp_path)
    assert code == 0
    np.testing.assert_array_equal(np.load(tmp_path / "out0.npy"), [[4, 1], [2, 3]])
    code, out, err = run(capsys, tmp_path / "lookup.gcjit", "-i", tmp_path / "far.npy")
    assert code == 1 and err.startswith("graphc run: error: the model raised IndexError")
    assert "Traceback" not in err and err.count("\n") == 1


def test_subprocess(affine):
    folder, expected = affine
    ok = subprocess.run([sys.executable, "-m", "graphc", "run", "affine.gcjit",
                         "--input", "x=x.npy", "--input", "shift=shift.npy", "-o", "res"],
                        cwd=folder, capture_output=True, text=True,
                        env={**os.environ, "PYTHONPATH": _ROOT})
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.splitlines()[0] == f"y [4, 2] float32 -> {os.path.join('res', 'y.npy')}"
    np.testing.assert_allclose(np.load(folder / "res" / "row_sum.npy"), expected["row_sum"],
                               rtol=1e-5, atol=1e-6)
