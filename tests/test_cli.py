"""The `graphc` command line: `graphc dump-ir FILE.py:FUNCTION --input ...`.

Most cases call `cli.main([...])` in-process; one runs `python -m graphc` as a
subprocess. The printed IR is checked by parsing it back and running it on the
reference interpreter against numpy (forward) and torch (gradients).
"""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import graphc
from graphc import cli
from graphc.backends import interp
from graphc.ir import dtypes as dt
from graphc.ir import parse
from graphc.ir.graph import Graph, Node, TensorType
from graphc.passes.pipeline import optimize

MODEL = '''
import graphc as gc


def mlp(x, w):
    return (x @ w).relu()


def loss(x, w):
    return ((x @ w).tanh() * 0.5).sum()


def two_outputs(x):
    return x.exp(), x.sum()


def ignores_second(x, unused):
    return x * 2


def lookup(table, idx):
    return table[idx].sum(1)


def reads_a_value(x):
    scale = float(x.sum().item())
    return x * 1 + x.clone().t().t() * scale


def bad_shapes(x):
    return x @ x


def not_a_tensor(x):
    return 3
'''


def line_of(code):
    """The line number of `code` in MODEL."""
    return MODEL.splitlines().index(code) + 1


@pytest.fixture
def model(tmp_path):
    path = tmp_path / "model.py"
    path.write_text(MODEL)
    return str(path)


def run(capsys, *argv):
    """(exit status, stdout, stderr) of `graphc ARGV...` run in-process."""
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def graphs_of(text):
    """The graphs of a text dump, by name (each follows its `# name (stage)` header)."""
    found = {}
    for chunk in re.split(r"(?m)^(?=# \w+ \()", text):
        m = re.match(r"# (\w+) \(", chunk)
        if m:
            found[m.group(1)] = parse(chunk)
    return found


def assert_one_line_error(code, err, status, *fragments):
    assert code == status
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith("graphc dump-ir: error: ")
    for f in fragments:
        assert f in err, err


# ============================================================================ forward

def test_dump_ir_prints_the_forward_graph_named_after_the_inputs(model, capsys):
    code, out, err = run(capsys, "dump-ir", f"{model}:mlp", "--input", "x:f32[2,3]",
                         "--input", "w:f32[3,4]")
    assert code == 0 and err == ""
    assert out.startswith("# forward (traced)\ngraph(%x: f32[2,3], %w: f32[3,4]) {")
    g = graphs_of(out)["forward"]
    assert [n.op for n in g.nodes] == ["input", "input", "matmul", "relu"]
    assert g.nodes[2].loc == f"{model}:{line_of('    return (x @ w).relu()')}"
    rng = np.random.default_rng(1)
    x, w = rng.normal(size=(2, 3)).astype(np.float32), rng.normal(size=(3, 4)).astype(np.float32)
    (y,) = interp.compile(g)([x, w])
    np.testing.assert_array_equal(y, np.maximum(x @ w, 0))


def test_unused_inputs_stay_and_runtime_scalars_come_after_the_user_inputs(model, capsys):
    code, out, _ = run(capsys, "dump-ir", f"{model}:ignores_second", "-i", "x:f64[3]",
                       "-i", "unused:i64[2,2]")
    assert code == 0
    g = graphs_of(out)["forward"]
    assert [n.attrs["name"] for n in g.inputs][:2] == ["x", "unused"]
    assert [str(n.type) for n in g.inputs][:2] == ["f64[3]", "i64[2,2]"]


def test_integer_inputs_are_valid_indices(model, capsys):
    code, out, _ = run(capsys, "dump-ir", f"{model}:lookup", "--input", "table:f32[10,4]",
                       "--input", "idx:i64[5]")
    assert code == 0
    g = graphs_of(out)["forward"]
    assert "gather" in [n.op for n in g.nodes] and g.outputs[0].type == \
        TensorType((5,), dt.float32)


def test_values_read_inside_the_function_become_inputs(model, capsys):
    code, out, _ = run(capsys, "dump-ir", f"{model}:reads_a_value", "--input", "x:f32[2,2]")
    assert code == 0
    g = graphs_of(out)["forward"]
    g.lint()
    assert g.inputs[0].attrs["name"] == "x" and len(g.inputs) == 2  # x and the scale


def test_several_outputs_and_scalar_inputs(model, capsys):
    code, out, _ = run(capsys, "dump-ir", f"{model}:two_outputs", "--input", "x:f32[]")
    assert code == 0
    g = graphs_of(out)["forward"]
    assert [str(o.type) for o in g.outputs] == ["f32[]", "f32[]"]


# ============================================================================ backward

def _torch_grads(x, w, fn):
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    fn(tx, tw).backward()
    return tx.grad.numpy(), tw.grad.numpy()


def test_grad_prints_the_backward_graph_of_the_summed_output(model, capsys):
    code, out, _ = run(capsys, "dump-ir", f"{model}:mlp", "--input", "x:f64[2,3]",
                       "--input", "w:f64[3,4]", "--grad")
    assert code == 0
    assert "# note: the output f64[2,4] is not a scalar: differentiating its sum" in out
    graphs = graphs_of(out)
    bwd = graphs["backward"]
    assert [n.attrs["name"] for n in bwd.inputs] == ["x", "w", "grad_out0"]
    rng = np.random.default_rng(2)
    x, w = rng.normal(size=(2, 3)), rng.normal(size=(3, 4))
    total, gx, gw = interp.compile(bwd)([x, w, np.float64(1.0)])
    want_gx, want_gw = _torch_grads(x, w, lambda a, b: (a @ b).relu().sum())
    np.testing.assert_allclose(gx, want_gx, rtol=1e-12)
    np.testing.assert_allclose(gw, want_gw, rtol=1e-12)
    assert total == pytest.approx(np.maximum(x @ w, 0).sum())


def test_grad_of_a_scalar_output_has_no_note_and_the_stage_grad_implies_it(model, capsys):
    code, out, _ = run(capsys, "dump-ir", f"{model}:loss", "--input", "x:f64[2,3]",
                       "--input", "w:f64[3,4]", "--stage", "grad")
    assert code == 0 and "note" not in out
    bwd = graphs_of(out)["backward"]
    rng = np.random.default_rng(3)
    x, w = rng.normal(size=(2, 3)), rng.normal(size=(3, 4))
    inputs = [x, w] + [np.float64(0.5)] * (len(bwd.inputs) - 3) + [np.float64(1.0)]
    _, gx, gw = interp.compile(bwd)(inputs)
    want_gx, want_gw = _torch_grads(x, w, lambda a, b: ((a @ b).tanh() * 0.5).sum())
    np.testing.assert_allclose(gx, want_gx, rtol=1e-12)
    np.testing.assert_allclose(gw, want_gw, rtol=1e-12)


def test_grad_only_with_respect_to_float_inputs_and_only_the_first_output(model, capsys):
    code, out, _ = run(capsys, "dump-ir", f"{model}:lookup", "--input", "table:f32[10,4]",
                       "--input", "idx:i64[5]", "--grad")
    assert code == 0
    bwd = graphs_of(out)["backward"]
    assert len(bwd.outputs) == 2  # the summed output and d/dtable
    assert bwd.outputs[1].type == TensorType((10, 4), dt.float32)
    code, out, _ = run(capsys, "dump-ir", f"{model}:two_outputs", "--input", "x:f32[3]",
                       "--grad")
    assert code == 0 and "the function returned 2 tensors: differentiating the first" in out


# ============================================================================ stages

def test_stage_optimized_prints_the_pipeline_result(model, capsys):
    args = ["dump-ir", f"{model}:reads_a_value", "--input", "x:f32[2,2]", "--grad"]
    _, traced, _ = run(capsys, *args)
    code, optimized, _ = run(capsys, *args, "--stage", "optimized")
    assert code == 0
    for name in ("forward", "backward"):
        before, after = graphs_of(traced)[name], graphs_of(optimized)[name]
        assert after == optimize(before)
        assert len(after.nodes) < len(before.nodes)


def test_later_stages_get_the_optimized_graph(model, capsys, monkeypatch):
    from graphc.passes import fusion
    seen = []
    monkeypatch.setattr(fusion, "explain", lambda g: seen.append(g) or "PLAN\n")
    code, out, _ = run(capsys, "dump-ir", f"{model}:reads_a_value", "--input", "x:f32[2,2]",
                       "--stage", "fused")
    assert code == 0 and out == "# forward (fused)\nPLAN\n"
    assert optimize(seen[0]) == seen[0] and "permute" not in [n.op for n in seen[0].nodes]
    code, _, err = run(capsys, "dump-ir", f"{model}:mlp", "--input", "x:f32[2,3]",
                       "--input", "w:f32[3,4]", "--stage", "fused", "--format", "json")
    assert_one_line_error(code, err, 2, "stage 'fused' produces text")


def test_backend_stages_print_the_kernel_plan_memory_plan_and_llvm_ir(model, capsys):
    args = ["dump-ir", f"{model}:mlp", "--input", "x:f32[2,3]", "--input", "w:f32[3,4]"]
    code, fused, _ = run(capsys, *args, "--stage", "fused")
    assert code == 0 and "kernel" in fused and "matmul" in fused and "edges:" in fused
    code, memory, _ = run(capsys, *args, "--stage", "memory")
    assert code == 0 and "memory plan: arena" in memory and "peak" in memory
    code, llvm_ir, _ = run(capsys, *args, "--stage", "llvm")
    assert code == 0 and "define void @" in llvm_ir and "graphc_kernel0" in llvm_ir


def test_a_stage_whose_module_does_not_exist_is_reported(model, capsys, monkeypatch):
    missing = cli.Stage("future", "not written yet", "graphc.passes.no_such_pass:explain")
    no_function = cli.Stage("half", "module without it", "graphc.passes.dce:explain")
    monkeypatch.setattr(cli, "STAGES", cli.STAGES + [missing, no_function])
    for stage in ("future", "half"):
        code, out, err = run(capsys, "dump-ir", f"{model}:mlp", "--input", "x:f32[2,3]",
                             "--input", "w:f32[3,4]", "--stage", stage)
        assert_one_line_error(code, err, 2, f"stage {stage!r} is not available")
        assert out == ""


# ============================================================================ formats

def _decode_attr(v):
    if isinstance(v, dict):
        return float(v["float"]) if "float" in v else dt.from_short(v["dtype"])
    if isinstance(v, list):
        return tuple(_decode_attr(x) for x in v)
    return v


def graph_from_json(doc):
    """Rebuild a Graph from the documented JSON schema (see graphc/cli.py)."""
    env, nodes, inputs = {}, [], []
    for nd in doc["nodes"]:
        ty = TensorType(tuple(nd["type"]["shape"]), dt.from_short(nd["type"]["dtype"]))
        if nd["op"] == "input":
            n = Node("input", (), {"name": nd["name"]}, ty, nd["loc"])
            inputs.append(n)
        else:
            attrs = {k: _decode_attr(v) for k, v in nd["attrs"].items()}
            n = Node(nd["op"], [env[i] for i in nd["inputs"]], attrs, ty, nd["loc"])
        env[nd["name"]] = n
        nodes.append(n)
    assert [n.attrs["name"] for n in inputs] == doc["inputs"]
    return Graph(nodes, inputs, [env[o] for o in doc["outputs"]])


def test_json_holds_everything_the_text_form_holds(model, capsys):
    args = ["dump-ir", f"{model}:loss", "--input", "x:f32[2,3]", "--input", "w:f32[3,4]",
            "--grad"]
    _, text, _ = run(capsys, *args)
    code, out, _ = run(capsys, *args, "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert (doc["format"], doc["version"], doc["stage"]) == ("graphc-ir", 1, "traced")
    assert [g["name"] for g in doc["graphs"]] == ["forward", "backward"]
    for g in doc["graphs"]:
        rebuilt = graph_from_json(g)
        rebuilt.lint()
        assert rebuilt == graphs_of(text)[g["name"]]


def test_json_encodes_special_floats_and_dtypes_unambiguously():
    x = Node("input", (), {"name": "x"}, TensorType((), dt.float32))
    consts = [Node("const", (), {"value": v, "dtype": dt.float32}, x.type)
              for v in (float("inf"), float("-inf"), float("nan"), 4.0)]
    doc = json.loads(json.dumps(cli.graph_to_json(Graph([x] + consts, [x], consts), "g")))
    assert [n["attrs"]["value"] for n in doc["nodes"][1:4]] == [
        {"float": "inf"}, {"float": "-inf"}, {"float": "nan"}]
    assert isinstance(doc["nodes"][4]["attrs"]["value"], float)
    assert doc["nodes"][1]["attrs"]["dtype"] == {"dtype": "f32"}


def test_dot_has_a_node_per_value_labelled_by_op_and_type_and_an_edge_per_use(model, capsys):
    code, out, _ = run(capsys, "dump-ir", f"{model}:mlp", "--input", "x:f32[2,3]",
                       "--input", "w:f32[3,4]", "--format", "dot")
    assert code == 0
    assert out.startswith('digraph "forward" {') and out.rstrip().endswith("}")
    labels = re.findall(r'^  n\d+ \[label="([^"]*)"', out, re.M)
    assert labels == [r"%x\nf32[2,3]", r"%w\nf32[3,4]", r"%0 = matmul\nf32[2,4]",
                      r"%1 = relu\nf32[2,4]"]
    edges = re.findall(r"^  (\w+) -> (\w+);", out, re.M)
    assert edges == [("n0", "n2"), ("n1", "n2"), ("n2", "n3"), ("n3", "out0")]


# ============================================================================ errors and help

@pytest.mark.parametrize("argv, fragments", [
    (["{dir}/nope.py:mlp", "-i", "x:f32[2]"], ["no such file: {dir}/nope.py"]),
    (["{model}:missing", "-i", "x:f32[2]"], ["has no function 'missing'", "mlp"]),
    (["{model}", "-i", "x:f32[2]"], ["should be FILE.py:FUNCTION"]),
    (["{model}:mlp", "-i", "x:f33[2]"], ["unknown dtype 'f33'", "f32"]),
    (["{model}:mlp", "-i", "x[2,3]"], ["is not NAME:DTYPE[DIMS]"]),
    (["{model}:mlp", "-i", "x:f32[2,,3]"], ["empty dimension"]),
    (["{model}:mlp", "-i", "x:f32[2,3]", "-i", "x:f32[3,4]"], ["'x' given twice"]),
    (["{model}:mlp", "-i", "x:f32[2,3]"], ["mlp cannot be called with 1 --input",
                                           "'w'"]),
    (["{model}:not_a_tensor", "-i", "x:f32[2]"], ["not_a_tensor returned int"]),
    (["{model}:lookup", "-i", "t:i64[10,4]", "-i", "i:i64[5]", "--grad"],
     ["--grad needs at least one floating-point --input"]),
    (["{dir}/broken.py:f"], ["cannot load", "SyntaxError"]),
    (["{dir}/raises.py:f"], ["cannot load", "RuntimeError: no GPU here"]),
    (["{model}:mlp", "--stage", "nope"], ["invalid choice: 'nope'"]),
])
def test_user_errors_are_one_line_and_exit_2(model, capsys, argv, fragments):
    folder = os.path.dirname(model)
    Path(folder, "broken.py").write_text("def f(:\n")
    Path(folder, "raises.py").write_text("raise RuntimeError('no GPU here')\n")
    argv = [a.format(dir=folder, model=model) for a in argv]
    code, out, err = run(capsys, "dump-ir", *argv)
    assert_one_line_error(code, err, 2, *[f.format(dir=folder) for f in fragments])
    assert out == ""


def test_a_function_that_raises_is_one_line_naming_the_user_line_and_exits_1(model, capsys):
    code, out, err = run(capsys, "dump-ir", f"{model}:bad_shapes", "-i", "x:f32[2,3]")
    assert_one_line_error(code, err, 1, "bad_shapes raised ShapeError",
                          f"(at {model}:{line_of('    return x @ x')})")


def test_help_lists_commands_stages_and_examples(capsys):
    code, out, _ = run(capsys, "--help")
    assert code == 0 and "dump-ir" in out and "COMMAND --help" in out
    code, out, _ = run(capsys, "dump-ir", "--help")
    assert code == 0
    for fragment in ["FILE.py:FUNCTION", "NAME:DTYPE[DIMS]", "--grad", "--format",
                     "examples:", "exit status"] + [s.name for s in cli.STAGES]:
        assert fragment in out
    code, _, err = run(capsys)
    assert code == 2 and err.count("\n") == 1 and "required: COMMAND" in err


def test_python_dash_m_graphc_runs_the_cli(model):
    root = str(Path(graphc.__file__).resolve().parents[1])
    env = dict(os.environ, PYTHONPATH=root + os.pathsep + os.environ.get("PYTHONPATH", ""))
    ok = subprocess.run([sys.executable, "-m", "graphc", "dump-ir", f"{model}:mlp",
                         "--input", "x:f32[2,3]", "--input", "w:f32[3,4]",
                         "--stage", "optimized"],
                        capture_output=True, text=True, env=env, timeout=120)
    assert ok.returncode == 0, ok.stderr
    assert parse(ok.stdout).inputs[1].type == TensorType((3, 4), dt.float32)
    bad = subprocess.run([sys.executable, "-m", "graphc", "dump-ir", f"{model}:mlp",
                          "--input", "x:f32"], capture_output=True, text=True, env=env,
                         timeout=120)
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == "graphc dump-ir: error: --input 'x:f32' is not NAME:DTYPE[DIMS] " \
                         "(e.g. x:f32[32,784], s:f64[])\n"


def test_a_saved_traced_model_prints_its_graph_and_gradients(tmp_path, capsys):
    import graphc.jit
    x = graphc.tensor(np.ones((2, 3), np.float32))
    w = graphc.tensor(np.full((3, 4), 0.5, np.float32))
    traced = graphc.jit.trace(lambda x, w: (x @ w).tanh(), (x, w))
    path = tmp_path / "model.gcjit"
    graphc.jit.save(traced, str(path))
    code, out, _ = run(capsys, "dump-ir", str(path), "--grad")
    assert code == 0
    graphs = graphs_of(out)
    assert graphs["forward"] == traced.graph
    assert [str(o.type) for o in graphs["backward"].outputs] == ["f32[]", "f32[2,3]",
                                                                 "f32[3,4]"]
    code, _, err = run(capsys, "dump-ir", str(path), "--input", "x:f32[2,3]")
    assert_one_line_error(code, err, 2, "a saved traced model has its own inputs")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(b"not a model")
    code, _, err = run(capsys, "dump-ir", str(junk))
    assert_one_line_error(code, err, 2, f"cannot load {junk} as a traced model")
