"""`graphc.export` / `graphc export`: traced models as native shared libraries.

An MLP (Linear/ReLU/Linear) and a small CNN (conv2d, relu, max_pool, linear) are traced,
saved with graphc.jit.save, loaded back and exported once per module. Each library is
run (1) in this process through ctypes (the typed `<name>_run`, and graphc.export.load)
and (2) by a C program compiled here with `cc` against the header and the library, run
as a subprocess on inputs read from a binary file. Outputs are compared with graphc's
own outputs for the same inputs, and the MLP also with numpy computing the network
in float64. Tests that build a library skip when no C compiler is installed.
"""
from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess

import numpy as np
import pytest

import graphc as gc
import graphc.export  # noqa: F401  (makes graphc.export the callable package)
import graphc.nn as nn
from graphc import cli
from graphc.export import ExportError
from graphc.export.build import elf_needed

needs_cc = pytest.mark.skipif(shutil.which(os.environ.get("CC") or "cc") is None,
                              reason="no C compiler (cc) to link the exported library")
RTOL = 1e-5


def _saved_and_loaded(model, example, path):
    gc.jit.save(gc.jit.trace(model, example), path)
    return gc.jit.load(path)


def _graphc_outputs(traced, *arrays):
    with gc.no_grad():
        out = traced(*[gc.tensor(a) for a in arrays])
    return [t.detach().numpy() for t in (out if isinstance(out, (tuple, list)) else [out])]


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    gc.manual_seed(1)
    model = nn.Sequential(nn.Linear(12, 32), nn.ReLU(), nn.Linear(32, 5))
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 12)).astype(np.float32)
    root = tmp_path_factory.mktemp("mlp")
    traced = _saved_and_loaded(model, gc.tensor(x), root / "mlp.gcjit")
    paths = gc.export(traced, out_dir=root / "out", name="mlp")
    params = [p.detach().numpy().astype(np.float64) for p in model.parameters()]
    return {"traced": traced, "paths": paths, "name": "mlp", "x": x, "params": params,
            "make_input": lambda seed: np.random.default_rng(seed).standard_normal(
                (4, 12)).astype(np.float32)}


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    gc.manual_seed(2)
    model = nn.Sequential(nn.Conv2d(1, 3, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                          nn.Flatten(), nn.Linear(3 * 4 * 4, 6))
    x = np.random.default_rng(2).standard_normal((2, 1, 8, 8)).astype(np.float32)
    root = tmp_path_factory.mktemp("cnn")
    traced = _saved_and_loaded(model, gc.tensor(x), root / "cnn.gcjit")
    paths = gc.export(traced, out_dir=root / "out", name="cnn")
    return {"traced": traced, "paths": paths, "name": "cnn", "x": x,
            "make_input": lambda seed: np.random.default_rng(seed).standard_normal(
                (2, 1, 8, 8)).astype(np.float32)}


def _model(request, which):
    return request.getfixturevalue(which)


# ----------------------------------------------------------------------------- files

@needs_cc
def test_files_header_and_manifest(mlp):
    paths = mlp["paths"]
    folder = os.path.dirname(paths["library"])
    names = sorted(os.listdir(folder))
    assert {"libmlp.so", "mlp.h", "mlp.json"} <= set(names)
    assert not [n for n in names if n.startswith(".graphc-export")]   # no leftovers
    manifest = json.load(open(paths["manifest"]))
    assert manifest["inputs"] == [{"name": "input", "c_name": "input", "dtype": "float32",
                                   "c_type": "float", "shape": [4, 12], "nbytes": 192}]
    assert manifest["outputs"][0]["shape"] == [4, 5]
    assert manifest["weights_bytes"] >= 4 * (12 * 32 + 32 + 32 * 5 + 5)
    header = open(paths["header"]).read()
    for text in ("#define MLP_INPUT0_SHAPE {4, 12}", "#define MLP_OUTPUT0_NBYTES 80",
                 "#define MLP_STATUS_INDEX_OUT_OF_RANGE 1",
                 "int mlp_run(mlp_model *model, const float *input, float *out0);",
                 "mlp_model *mlp_create(void);", "void mlp_destroy(mlp_model *model);"):
        assert text in header
    # the matmuls call numpy's OpenBLAS: bundled next to the library, found via $ORIGIN
    blas = manifest["blas"]
    assert blas["mode"] == "bundle" and blas["soname"] in names
    assert blas["soname"] in elf_needed(paths["library"])
    for f in blas["files"]:
        assert os.path.isfile(os.path.join(folder, f))


# ----------------------------------------------------------------------------- ctypes

@needs_cc
def test_mlp_ctypes_typed_run_matches_graphc_and_numpy(mlp):
    lib = ctypes.CDLL(mlp["paths"]["library"])
    lib.mlp_create.restype = ctypes.c_void_p
    lib.mlp_run.argtypes = [ctypes.c_void_p] * 3
    lib.mlp_run.restype = ctypes.c_int
    lib.mlp_destroy.argtypes = [ctypes.c_void_p]
    handle = lib.mlp_create()
    assert handle
    try:
        w1, b1, w2, b2 = mlp["params"]
        for seed in (10, 11):   # a second run reuses the handle's arena
            x = mlp["make_input"](seed)
            out = np.full((4, 5), np.nan, np.float32)
            assert lib.mlp_run(handle, x.ctypes.data, out.ctypes.data) == 0
            np.testing.assert_allclose(out, _graphc_outputs(mlp["traced"], x)[0], rtol=RTOL,
                                       atol=1e-6)
            expected = np.maximum(x.astype(np.float64) @ w1.T + b1, 0) @ w2.T + b2
            np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-5)
        # a NULL buffer is a status code, not a crash
        assert lib.mlp_run(handle, None, out.ctypes.data) == 2
        assert lib.mlp_run(None, x.ctypes.data, out.ctypes.data) == 2
    finally:
        lib.mlp_destroy(handle)
    lib.mlp_destroy(None)   # ignored, as free(NULL)


@needs_cc
@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_load_helper_matches_graphc(request, which):
    m = _model(request, which)
    with gc.export.load(os.path.dirname(m["paths"]["library"])) as lib:
        for seed in (20, 21):
            x = m["make_input"](seed)
            got = lib(x)
            assert len(got) == 1
            np.testing.assert_allclose(got[0], _graphc_outputs(m["traced"], x)[0],
                                       rtol=RTOL, atol=1e-6)
        with pytest.raises(ValueError, match="must be float32"):
            lib(x.astype(np.float64))


# ----------------------------------------------------------------------------- C program

C_PROGRAM = r"""
#include <stdio.h>
#include <stdlib.h>
#include "@name@.h"

/* usage: app INPUT.bin OUTPUT.bin: reads input 0, runs the model, writes output 0 */
int main(int argc, char **argv) {
    static const int64_t in_shape[] = @P@_INPUT0_SHAPE;
    static const int64_t out_shape[] = @P@_OUTPUT0_SHAPE;
    float *x = malloc(@P@_INPUT0_NBYTES), *y = malloc(@P@_OUTPUT0_NBYTES);
    FILE *f;
    @name@_model *model;
    int status;
    if (argc != 3 || !x || !y) return 10;
    if (sizeof in_shape / sizeof in_shape[0] != @P@_INPUT0_NDIM ||
        sizeof out_shape / sizeof out_shape[0] != @P@_OUTPUT0_NDIM) return 11;
    f = fopen(argv[1], "rb");
    if (!f || fread(x, 1, @P@_INPUT0_NBYTES, f) != @P@_INPUT0_NBYTES) return 12;
    fclose(f);
    model = @name@_create();
    if (!model) return 13;
    status = @name@_run(model, x, y);
    if (status != @P@_STATUS_OK) {
        fprintf(stderr, "run failed: %s\n", @name@_status_message(status));
        return 14;
    }
    if (@name@_run_arrays(model, NULL, NULL) != @P@_STATUS_NULL_ARGUMENT) return 15;
    @name@_destroy(model);
    f = fopen(argv[2], "wb");
    if (!f || fwrite(y, 1, @P@_OUTPUT0_NBYTES, f) != @P@_OUTPUT0_NBYTES) return 16;
    fclose(f);
    printf("%s %d inputs %d outputs, output dims %lld\n", @P@_INPUT0_NAME,
           @P@_NUM_INPUTS, @P@_NUM_OUTPUTS, (long long)@P@_OUTPUT0_NDIM);
    free(x);
    free(y);
    return 0;
}
"""


def _build_c_program(tmp_path, folder, name):
    src = tmp_path / "app.c"
    src.write_text(C_PROGRAM.replace("@name@", name).replace("@P@", name.upper()))
    exe = tmp_path / "app"
    cc = (os.environ.get("CC") or "cc").split()
    subprocess.run(cc + ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", str(src),
                         f"-I{folder}", f"-L{folder}", f"-l{name}", f"-Wl,-rpath,{folder}",
                         "-o", str(exe)], check=True, capture_output=True, text=True)
    return exe


def _run_c_program(exe, tmp_path, x, out_shape):
    (tmp_path / "in.bin").write_bytes(x.tobytes())
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    proc = subprocess.run([str(exe), str(tmp_path / "in.bin"), str(tmp_path / "out.bin")],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 0, (proc.returncode, proc.stderr)
    return proc.stdout, np.fromfile(tmp_path / "out.bin", np.float32).reshape(out_shape)


@needs_cc
@pytest.mark.parametrize("which", ["mlp", "cnn"])
def test_c_program_matches_graphc(request, tmp_path, which):
    m = _model(request, which)
    folder = os.path.dirname(m["paths"]["library"])
    exe = _build_c_program(tmp_path, folder, m["name"])
    x = m["make_input"](30)
    expected = _graphc_outputs(m["traced"], x)[0]
    stdout, got = _run_c_program(exe, tmp_path, x, expected.shape)
    assert stdout.startswith('input 1 inputs 1 outputs, output dims 2')
    np.testing.assert_allclose(got, expected, rtol=RTOL, atol=1e-6)


@needs_cc
def test_bundled_folder_is_relocatable(mlp, tmp_path):
    """The folder carries its OpenBLAS: moved elsewhere, a program linked against the
    copy runs with no library path set (LD_LIBRARY_PATH removed)."""
    moved = tmp_path / "moved"
    shutil.copytree(os.path.dirname(mlp["paths"]["library"]), moved)
    exe = _build_c_program(tmp_path, moved, "mlp")
    x = mlp["make_input"](40)
    _, got = _run_c_program(exe, tmp_path, x, (4, 5))
    np.testing.assert_allclose(got, _graphc_outputs(mlp["traced"], x)[0], rtol=RTOL,
                               atol=1e-6)


# ----------------------------------------------------------------------------- other graphs

class _Mixed(nn.Module):
    """Outputs that no kernel writes (an argument, a weight, a repeated value), float64
    BLAS, an int64 result and a gather by a runtime index."""

    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(gc.randn(4, 3, dtype=gc.float64))

    def forward(self, x, idx):
        y = (x.gather(1, idx) @ self.w).relu()
        return x, self.w, y, y, idx * 2


@needs_cc
def test_outputs_not_written_by_kernels_and_gather_status(tmp_path):
    gc.manual_seed(3)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((5, 4))
    idx = rng.integers(0, 4, size=(5, 4))
    # a module (not a trace) with example inputs; generic CPU; BLAS used in place
    model = _Mixed()
    paths = gc.export(model, (gc.tensor(x), gc.tensor(idx)), out_dir=tmp_path,
                      name="mixed", blas="numpy", cpu="x86-64")
    manifest = json.load(open(paths["manifest"]))
    assert manifest["blas"]["symbols"] == ["scipy_cblas_dgemm64_"] and not paths["extra"]
    traced = gc.jit.trace(model, (gc.tensor(x), gc.tensor(idx)))
    with gc.export.load(paths["library"]) as lib:
        got = lib(x, idx)
        expected = _graphc_outputs(traced, x, idx)
        assert [g.dtype for g in got] == [np.float64] * 4 + [np.int64]
        for g, e in zip(got, expected):
            np.testing.assert_allclose(g, e, rtol=RTOL)
        np.testing.assert_array_equal(got[0], x)
        np.testing.assert_array_equal(got[4], idx * 2)
        bad = idx.copy()
        bad[2, 1] = 4          # dimension 1 has 4 entries: valid indices are 0..3
        with pytest.raises(IndexError, match="out of range"):
            lib(x, bad)
        np.testing.assert_allclose(lib(x, idx)[2], expected[2], rtol=RTOL)  # recovers


@needs_cc
def test_failed_value_check_returns_its_code_and_message(tmp_path):
    """one_hot's class range is a `check`: the library returns its code (16 and above)
    and status_message its message; a good input then runs."""
    class OneHot(gc.nn.Module):
        def forward(self, classes):
            return gc.nn.functional.one_hot(classes, 4) * 2
    classes = np.array([0, 3, 1])
    paths = gc.export(OneHot(), (gc.tensor(classes),), out_dir=tmp_path, name="onehot",
                      cpu="x86-64")
    with gc.export.load(paths["library"]) as lib:
        with pytest.raises(RuntimeError, match="status .*Class values must be smaller"):
            lib(np.array([0, 4, 1]))
        np.testing.assert_array_equal(lib(classes)[0], np.eye(4, dtype=np.int64)[classes] * 2)


@needs_cc
def test_no_matmul_means_no_blas_dependency(tmp_path):
    def lookup(table, idx):
        return table.gather(0, idx).exp().sum(1)
    table = np.random.default_rng(4).standard_normal((6, 3)).astype(np.float32)
    idx = np.array([[5, 0, 1], [2, 2, 3]])
    traced = gc.jit.trace(lookup, (gc.tensor(table), gc.tensor(idx)))
    paths = graphc.export.export(traced, out_dir=tmp_path, name="lookup")
    assert json.load(open(paths["manifest"]))["blas"] is None
    assert not any("openblas" in n for n in elf_needed(paths["library"]))
    assert not any("openblas" in n for n in os.listdir(tmp_path))
    with gc.export.load(tmp_path) as lib:
        np.testing.assert_allclose(lib(table, idx)[0], _graphc_outputs(traced, table, idx)[0],
                                   rtol=RTOL)
        with pytest.raises(IndexError):
            lib(table, np.array([[6, 0, 1], [2, 2, 3]]))


@needs_cc
def test_exported_sort_kernels_match_graphc(tmp_path):
    """topk and median run the argsort kernel, whose scratch rows are malloc'ed: the
    exported library must link and run it like the in-process executable."""
    def ranked(x):
        top = x.topk(3, dim=1)
        return top.values, top.indices, x.median(0).values
    x = np.random.default_rng(5).standard_normal((4, 9)).astype(np.float32)
    x[1, 2] = x[1, 5]   # a tie: stable order
    traced = gc.jit.trace(ranked, (gc.tensor(x),))
    graphc.export.export(traced, out_dir=tmp_path, name="ranked")
    with gc.export.load(tmp_path) as lib:
        for got, want in zip(lib(x), _graphc_outputs(traced, x)):
            np.testing.assert_array_equal(got, want)


def _mixed_dtypes(h, i, u):
    return (h * 2 + 1).exp(), h > 0, i + 3, u * 2, h.float().sum()


@needs_cc
def test_every_abi_dtype_and_a_scalar_output(tmp_path):
    """float16 (as its IEEE bits), bool (bytes), int32, uint8 and a 0-d float32 output
    cross the ABI as numpy stores them; results equal graphc's bit for bit."""
    h = np.linspace(-2, 2, 12).reshape(3, 4).astype(np.float16)
    i = np.arange(-3, 3, dtype=np.int32)
    u = np.arange(250, 255, dtype=np.uint8)
    traced = gc.jit.trace(_mixed_dtypes, (gc.tensor(h), gc.tensor(i), gc.tensor(u)))
    paths = gc.export(traced, out_dir=tmp_path, name="dtypes")
    header = open(paths["header"]).read()
    assert "const uint16_t *h, const int32_t *i, const uint8_t *u, uint16_t *out0, " \
        "uint8_t *out1, int32_t *out2, uint8_t *out3, float *out4" in header
    assert "#define DTYPES_OUTPUT4_NDIM 0" in header and "OUTPUT4_SHAPE" not in header
    with gc.export.load(tmp_path) as lib:
        got = lib(h, i, u)
    for g, e in zip(got, _graphc_outputs(traced, h, i, u)):
        assert g.dtype == e.dtype and g.shape == e.shape
        np.testing.assert_array_equal(g, e)


@needs_cc
def test_separate_handles_run_concurrently(mlp):
    """Each handle owns its arena: two handles in two threads (ctypes releases the GIL)
    give the single-threaded results."""
    import threading
    folder = os.path.dirname(mlp["paths"]["library"])
    inputs = [mlp["make_input"](50 + k) for k in range(2)]
    expected = [_graphc_outputs(mlp["traced"], x)[0] for x in inputs]
    failures = []

    def worker(k):
        with gc.export.load(folder) as lib:
            for _ in range(200):
                got = lib(inputs[k])[0]
                if not np.allclose(got, expected[k], rtol=RTOL, atol=1e-6):
                    failures.append(k)
                    return
    threads = [threading.Thread(target=worker, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


# ----------------------------------------------------------------------------- refusals

@pytest.mark.filterwarnings("ignore::graphc.jit.TracerWarning")
def test_refuses_random_ops_bfloat16_and_bad_requests(tmp_path):
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(0.5))
    x = gc.randn(2, 4)
    with pytest.raises(ExportError, match="eval mode"):
        gc.export(gc.jit.trace(model.train(), x, check_trace=False), out_dir=tmp_path)
    with pytest.raises(ExportError, match="bfloat16"):
        gc.export(lambda a: a * 2, (x.to(gc.bfloat16),), out_dir=tmp_path)
    traced = gc.jit.trace(model.eval(), x)
    with pytest.raises(ExportError, match="C identifier"):
        gc.export(traced, out_dir=tmp_path, name="3d-model")
    with pytest.raises(ExportError, match="system library"):
        gc.export(traced, out_dir=tmp_path, name="m")
    with pytest.raises(ExportError, match="example_inputs"):
        gc.export(model, out_dir=tmp_path)
    with pytest.raises(ExportError, match="blas="):
        gc.export(traced, out_dir=tmp_path, blas="system")
    with pytest.raises(ExportError, match="not a CPU"):
        gc.export(traced, out_dir=tmp_path, cpu="no-such-cpu")
    assert os.listdir(tmp_path) == []


def test_missing_compiler_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("CC", "graphc-no-such-compiler")
    traced = gc.jit.trace(nn.Linear(3, 2), gc.randn(1, 3))
    with pytest.raises(ExportError, match="no C compiler"):
        gc.export(traced, out_dir=tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ----------------------------------------------------------------------------- CLI

@needs_cc
def test_cli_export(tmp_path, capsys):
    gc.manual_seed(5)
    model = nn.Sequential(nn.Linear(3, 4), nn.Tanh())
    x = gc.randn(2, 3)
    gc.jit.save(gc.jit.trace(model, x), tmp_path / "tiny-net.gcjit")
    code = cli.main(["export", str(tmp_path / "tiny-net.gcjit"), "-o", str(tmp_path / "o"),
                     "--blas", "numpy"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert f"library: {tmp_path / 'o' / 'libtiny_net.so'}" in out
    with gc.export.load(tmp_path / "o") as lib:
        np.testing.assert_allclose(lib(x.numpy())[0], model(x).detach().numpy(), rtol=RTOL)


@pytest.mark.parametrize("argv, fragment", [
    (["export", "{tmp}/missing.gcjit", "-o", "{tmp}/o"], "no such file"),
    (["export", "{tmp}/not-a-model.gcjit", "-o", "{tmp}/o"], "cannot load"),
    (["export", "{tmp}/ok.gcjit", "-o", "{tmp}/o", "--name", "a-b"], "C identifier"),
    (["export", "{tmp}/ok.gcjit", "-o", "{tmp}/ok.gcjit"], "not a folder"),
])
def test_cli_export_usage_errors(tmp_path, capsys, argv, fragment):
    (tmp_path / "not-a-model.gcjit").write_bytes(b"hello")
    gc.jit.save(gc.jit.trace(nn.Linear(2, 2), gc.randn(1, 2)), tmp_path / "ok.gcjit")
    code = cli.main([a.format(tmp=tmp_path) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("graphc export: error: ")
    assert fragment in err
