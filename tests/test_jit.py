"""graphc.jit: trace a model into fixed IR, call it on new inputs, save it, and load it in
a process that has never seen the model's class. PyTorch is the reference for values.

Models here are small Module-like classes with `named_parameters()` / `named_buffers()`
(the duck typing `trace` relies on), so these tests do not depend on graphc.nn.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import graphc as gc
from graphc.ir.errors import DTypeError, ShapeError
from graphc.ir.graph import Graph
from graphc.ir.parser import parse
from graphc.jit import TracedModule, TracerWarning, TracingCheckError
from graphc.serialization import CheckpointError

from conftest import assert_close, to_graphc, to_torch

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class TinyModule:
    """What trace needs from a module: calling it, and its named tensors."""

    def named_parameters(self):
        return [(k, v) for k, v in vars(self).items()
                if isinstance(v, gc.Tensor) and v.requires_grad]

    def named_buffers(self):
        return [(k, v) for k, v in vars(self).items()
                if isinstance(v, gc.Tensor) and not v.requires_grad]

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)


class MLP(TinyModule):
    def __init__(self, seed=0, n_in=5, hidden=7, n_out=3):
        g = np.random.default_rng(seed)
        self.w1 = gc.tensor(g.standard_normal((n_in, hidden)).astype(np.float32),
                            requires_grad=True)
        self.b1 = gc.tensor(g.standard_normal(hidden).astype(np.float32),
                            requires_grad=True)
        self.w2 = gc.tensor(g.standard_normal((hidden, n_out)).astype(np.float32),
                            requires_grad=True)
        self.shift = gc.tensor(g.standard_normal(n_out).astype(np.float32))   # a buffer

    def forward(self, x):
        h = gc.tanh(x @ self.w1 + self.b1)
        return gc.softmax(h @ self.w2 - self.shift, dim=-1)

    def torch_forward(self, x):
        h = torch.tanh(x @ to_torch(self.w1.detach()) + to_torch(self.b1.detach()))
        return torch.softmax(h @ to_torch(self.w2.detach()) - to_torch(self.shift), dim=-1)


def _randn(*shape, seed=1, dtype=np.float32):
    return gc.tensor(np.random.default_rng(seed).standard_normal(shape).astype(dtype))


def _bits(t):
    return t.detach().numpy().tobytes()


def _trace_quietly(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("error", TracerWarning)   # a clean model warns nothing
        return gc.jit.trace(*args, **kwargs)


# ============================================================================ tracing

def test_trace_runs_new_inputs_like_the_model_and_like_torch():
    model = MLP()
    traced = _trace_quietly(model, _randn(4, 5, seed=1))
    assert isinstance(traced, TracedModule) and isinstance(traced.graph, Graph)
    for seed in (2, 3):
        x = _randn(4, 5, seed=seed)
        out = traced(x)
        assert _bits(out) == _bits(model(x))
        assert_close(out, model.torch_forward(to_torch(x)))


def test_the_graph_names_inputs_and_weights_and_prints_parseable_ir():
    model = MLP()
    traced = _trace_quietly(model, _randn(4, 5))
    names = [n.attrs["name"] for n in traced.graph.inputs]
    assert names == ["x", "w1", "b1", "w2", "shift"]
    assert [n.type.shape for n in traced.graph.inputs] == [(4, 5), (5, 7), (7,), (7, 3), (3,)]
    assert traced.code == traced.ir
    assert traced.code.startswith("graph(%x: f32[4,5], %w1: f32[5,7]")
    assert "tanh" in traced.code and "matmul" in traced.code
    assert parse(traced.code) == traced.graph
    assert [n for n, _ in traced.named_parameters()] == ["w1", "b1", "w2"]
    assert [n for n, _ in traced.named_buffers()] == ["shift"]
    assert set(traced.state_dict()) == {"w1", "b1", "w2", "shift"}


def test_parameters_are_shared_with_the_model_and_gradients_flow():
    model = MLP()
    traced = _trace_quietly(model, _randn(4, 5))
    with gc.no_grad():
        model.w2.mul_(2.0)      # an optimizer-style update is seen by the trace
    x = _randn(4, 5, seed=4)
    assert _bits(traced(x)) == _bits(model(x))
    weights = torch.arange(12, dtype=torch.float32).reshape(4, 3)
    (traced(x) * to_graphc(weights)).sum().backward()
    tw = [to_torch(p.detach(), requires_grad=True) for p in (model.w1, model.b1, model.w2)]
    h = torch.tanh(to_torch(x) @ tw[0] + tw[1])
    out = torch.softmax(h @ tw[2] - to_torch(model.shift), dim=-1)
    (out * weights).sum().backward()
    for p, t in zip((model.w1, model.b1, model.w2), tw):
        assert_close(p.grad, t.grad)


def test_a_function_with_several_inputs_and_outputs():
    def f(a, b):
        s = a + b
        return s * s, (a.exp(), s.sum(dim=0))

    a, b = _randn(2, 3, seed=1), _randn(2, 3, seed=2)
    traced = _trace_quietly(f, (a, b))
    a2, b2 = _randn(2, 3, seed=5), _randn(2, 3, seed=6)
    got = traced(a2, b2)
    assert isinstance(got, tuple) and isinstance(got[1], tuple)
    ta, tb = to_torch(a2), to_torch(b2)
    assert_close(got, ((ta + tb) * (ta + tb), (ta.exp(), (ta + tb).sum(dim=0))))


def test_dict_inputs_and_dict_outputs():
    class Net(TinyModule):
        def __init__(self):
            self.scale = gc.tensor([2.0, 3.0, 4.0])

        def forward(self, batch):
            return {"y": batch["image"] * self.scale, "n": batch["label"] + 1}

    batch = {"image": _randn(2, 3), "label": gc.tensor([1, 2])}
    with pytest.raises(TypeError, match="strict=False"):
        gc.jit.trace(Net(), (batch,))
    traced = _trace_quietly(Net(), (batch,), strict=False)
    assert [n.attrs["name"] for n in traced.graph.inputs] == ["batch.image", "batch.label",
                                                             "scale"]
    new = {"label": gc.tensor([5, 6]), "image": _randn(2, 3, seed=9)}
    out = traced(new)
    assert list(out) == ["y", "n"]
    assert out["n"].tolist() == [6, 7]
    assert_close(out["y"], to_torch(new["image"]) * torch.tensor([2.0, 3.0, 4.0]))
    with pytest.raises(TypeError, match="keys"):
        traced({"image": new["image"]})


def test_keyword_inputs():
    class Masked(TinyModule):
        def forward(self, x, mask):
            return gc.where(mask, x, gc.zeros_like(x)).sum(dim=1)

    x, mask = _randn(3, 4), gc.tensor(np.arange(12).reshape(3, 4) % 3 == 0)
    traced = _trace_quietly(Masked(), example_kwarg_inputs={"x": x, "mask": mask})
    x2 = _randn(3, 4, seed=7)
    mask2 = gc.tensor(np.arange(12).reshape(3, 4) % 2 == 0)
    assert _bits(traced(x=x2, mask=mask2)) == _bits(Masked()(x2, mask2))
    tx, tm = to_torch(x2), to_torch(mask2)
    assert_close(traced(mask=mask2, x=x2), torch.where(tm, tx, torch.zeros_like(tx)).sum(1))
    with pytest.raises(TypeError, match="keys"):
        traced(x=x2)


def test_calls_that_do_not_fit_the_trace_are_clear_errors():
    traced = _trace_quietly(MLP(), _randn(4, 5))
    with pytest.raises(ShapeError, match=r"input 'x'.*\[6, 5\].*\[4, 5\]"):
        traced(_randn(6, 5))
    with pytest.raises(DTypeError, match=r"input 'x' \(args\[0\]\) has dtype float64.*float32"):
        traced(_randn(4, 5, dtype=np.float64))
    with pytest.raises(TypeError, match="tuple of 1"):
        traced(_randn(4, 5), _randn(4, 5))
    with pytest.raises(TypeError, match="must be a tensor"):
        traced(np.zeros((4, 5), np.float32))


def test_dtypes_and_an_input_returned_as_is():
    def f(x, idx, h):
        return x, x[idx] * 2, (h.float() + 1).to(gc.bfloat16)

    x = gc.tensor(np.arange(10, dtype=np.int64))
    idx = gc.tensor([3, 1, 4])
    h = gc.tensor([0.5, 1.5], dtype=gc.bfloat16)
    traced = _trace_quietly(f, (x, idx, h))
    got = traced(x * 3, gc.tensor([0, 9, 9]), gc.tensor([2.5, -1.0], dtype=gc.bfloat16))
    assert got[1].tolist() == [0, 54, 54]
    assert got[2].dtype is gc.bfloat16 and got[2].tolist() == [3.5, 0.0]


# ============================================================================ warnings

def test_reading_a_value_during_tracing_warns_and_the_check_catches_divergence():
    class Branchy(TinyModule):
        def forward(self, x):
            if x.sum().item() > 0:      # Python control flow on a tensor value
                return x * 2
            return -x

    pos = gc.ones(3)
    with pytest.warns(TracerWarning, match="converting a tensor to a Python value") as rec:
        traced = gc.jit.trace(Branchy(), pos)
    assert any(r.filename == __file__ for r in rec)   # attributed to the model's line
    assert traced(gc.full((3,), -1.0)).tolist() == [-2.0, -2.0, -2.0]   # branch is fixed
    with pytest.warns(TracerWarning):
        with pytest.raises(TracingCheckError, match="differs from the model"):
            gc.jit.trace(Branchy(), pos, check_inputs=[(gc.full((3,), -1.0),)])


def test_a_value_read_fixes_only_that_value_not_the_tensors_around_it():
    def normalise(x):
        h = x * 2
        s = h.sum()
        if s.item() == 0:           # the branch is fixed; h and s stay computed
            return h
        return h / s

    with pytest.warns(TracerWarning, match="Python value"):
        traced = gc.jit.trace(normalise, gc.tensor([1.0, 3.0]))
    assert "div" in traced.code and "sum" in traced.code
    assert traced.named_constants() == []
    np.testing.assert_allclose(traced(gc.tensor([1.0, 4.0])).numpy(), [0.2, 0.8])


def test_bool_of_a_tensor_and_tolist_warn_too():
    def f(x):
        return x * len(x.tolist()) if bool((x > 0).all()) else x

    with pytest.warns(TracerWarning, match="Python value"):
        gc.jit.trace(f, gc.ones(2))


def test_python_numbers_fixed_by_the_trace_are_named():
    def scale(x, factor):
        return x * factor + 0.25

    with pytest.warns(TracerWarning) as rec:
        traced = gc.jit.trace(scale, (gc.ones(2), 3.0))
    messages = " | ".join(str(r.message) for r in rec)
    assert "factor = 3.0 is fixed" in messages
    assert "0.25" in messages and "floats used during tracing are fixed" in messages
    assert traced(gc.ones(2) * 2, 3.0).tolist() == [6.25, 6.25]
    with pytest.raises(ValueError, match="trace fixed it"):
        traced(gc.ones(2), 4.0)


def _noisy(x):
    return x + gc.randn(3) * gc.rand(2, 3).sum(dim=0)


def test_random_ops_draw_fresh_numbers_like_the_model(tmp_path):
    # As in PyTorch (torch.jit.trace warns "Trace had nondeterministic nodes" and does not
    # raise): the check compares the trace on the model's own random numbers and warns.
    with pytest.warns(TracerWarning, match="random ops"):
        gc.jit.trace(_noisy, gc.zeros(3))
    traced = _trace_quietly(_noisy, gc.zeros(3), check_trace=False)
    assert [n.attrs["name"] for n in traced.graph.inputs] == [
        "x", "rng0_seed", "rng0_offset", "rng1_seed", "rng1_offset"]
    x = _randn(3)
    assert _bits(traced(x)) != _bits(traced(x))
    gc.manual_seed(123)
    eager = _noisy(x)
    gc.manual_seed(123)
    assert _bits(traced(x)) == _bits(eager)   # the same stream as the model's own draws
    gc.jit.save(traced, tmp_path / "noisy.gcjit")
    loaded = gc.jit.load(tmp_path / "noisy.gcjit")
    gc.manual_seed(123)
    assert _bits(loaded(x)) == _bits(eager)


# ============================================================================ save / load

_LOAD_AND_RUN = """
import sys
import numpy as np
import graphc
m = graphc.jit.load(sys.argv[1])
x = graphc.from_numpy(np.load(sys.argv[2]))
np.save(sys.argv[3], m(x).detach().numpy())
assert 'test_jit' not in sys.modules and 'conftest' not in sys.modules
print(type(m).__name__, m.original_name)
"""


def test_save_then_load_in_a_fresh_process_gives_identical_outputs(tmp_path):
    model = MLP(seed=3)
    traced = _trace_quietly(model, _randn(4, 5))
    path = tmp_path / "mlp.gcjit"
    gc.jit.save(traced, path)
    x = np.random.default_rng(8).standard_normal((4, 5)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    env = dict(os.environ, PYTHONPATH=_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    proc = subprocess.run([sys.executable, "-c", _LOAD_AND_RUN, str(path),
                           str(tmp_path / "x.npy"), str(tmp_path / "y.npy")],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["TracedModule", "MLP"]
    expected = model(gc.from_numpy(x)).detach().numpy()
    assert np.load(tmp_path / "y.npy").tobytes() == expected.tobytes()


def test_a_loaded_module_keeps_its_graph_weights_and_structure(tmp_path):
    class TwoHeads(TinyModule):
        def __init__(self):
            self.w = gc.tensor(np.linspace(-1, 1, 6, dtype=np.float32).reshape(3, 2),
                               requires_grad=True)

        def forward(self, x, y):
            z = x @ self.w
            return [z, {"sum": z.sum() + y.sum(), "const": gc.tensor([1.0, 2.0]) * 2}]

    x, y = _randn(2, 3), _randn(5, seed=3)
    traced = _trace_quietly(TwoHeads(), (x, y), strict=False)
    buf = io.BytesIO()
    gc.jit.save(traced, buf)
    buf.seek(0)
    loaded = gc.jit.load(buf)
    assert loaded.graph == traced.graph and loaded.code == traced.code
    assert [n for n, _ in loaded.named_parameters()] == ["w"]
    assert [n for n, _ in loaded.named_constants()] == ["const_0"]
    assert dict(loaded.named_parameters())["w"].requires_grad
    x2, y2 = _randn(2, 3, seed=11), _randn(5, seed=12)
    a, b = traced(x2, y2), loaded(x2, y2)
    assert type(b) is list and list(b[1]) == ["sum", "const"]
    assert _bits(a[0]) == _bits(b[0]) and _bits(a[1]["sum"]) == _bits(b[1]["sum"])
    assert b[1]["const"].tolist() == [2.0, 4.0]
    loaded(x2, y2)[0].sum().backward()        # a loaded module can be fine-tuned
    w = dict(loaded.named_parameters())["w"]
    assert_close(w.grad, to_torch(x2).T @ torch.ones(2, 2))


def test_a_loaded_module_can_be_traced_again(tmp_path):
    inner = _trace_quietly(MLP(seed=5), _randn(4, 5))
    gc.jit.save(inner, tmp_path / "inner.gcjit")
    loaded = gc.jit.load(tmp_path / "inner.gcjit")

    class Outer(TinyModule):
        def __init__(self):
            self.bias = gc.tensor([1.0, -1.0, 0.5])

        def named_parameters(self):
            return [("inner." + n, p) for n, p in loaded.named_parameters()]

        def forward(self, x):
            return (loaded(x) + self.bias).log()

    outer = _trace_quietly(Outer(), _randn(4, 5))
    names = [n.attrs["name"] for n in outer.graph.inputs]
    # The inner module's buffer is not exposed by Outer: it is captured as a constant.
    assert names == ["x", "inner.w1", "inner.b1", "inner.w2", "bias", "const_0"]
    assert "tanh" in outer.code and "log" in outer.code      # the inner graph is inlined
    x = _randn(4, 5, seed=21)
    assert _bits(outer(x)) == _bits((MLP(seed=5)(x) + gc.tensor([1.0, -1.0, 0.5])).log())


def test_graphc_load_of_a_traced_file_is_data_and_jit_load_of_a_checkpoint_fails(tmp_path):
    traced = _trace_quietly(MLP(), _randn(4, 5))
    gc.jit.save(traced, tmp_path / "m.gcjit")
    root = gc.load(tmp_path / "m.gcjit")
    assert root["graphc.jit"] == 1 and root["ir"] == traced.code
    gc.save({"w": gc.ones(2)}, tmp_path / "plain.gcpt")
    with pytest.raises(CheckpointError, match="not a traced module"):
        gc.jit.load(tmp_path / "plain.gcpt")
    with pytest.raises(TypeError, match="graphc.jit.trace"):
        gc.jit.save(MLP(), tmp_path / "x")


def _mutated(tmp_path, change):
    traced = _trace_quietly(MLP(), _randn(4, 5))
    gc.jit.save(traced, tmp_path / "m.gcjit")
    root = gc.load(tmp_path / "m.gcjit")
    change(root)
    gc.save(root, tmp_path / "bad.gcjit")
    return tmp_path / "bad.gcjit"


@pytest.mark.parametrize("cut", [0.3, 0.6, 0.95])
def test_truncated_ir_text_is_a_clear_error(tmp_path, cut):
    def truncate(root):
        root["ir"] = root["ir"][:int(len(root["ir"]) * cut)]
    with pytest.raises(CheckpointError, match=r"bad\.gcjit: the traced module's IR is "
                                              r"invalid: line \d+, column \d+"):
        gc.jit.load(_mutated(tmp_path, truncate))


@pytest.mark.parametrize("change, fragment", [
    (lambda r: r.update({"graphc.jit": 2}), "format version 2"),
    (lambda r: r["weights"].update({"w1": gc.ones(2)}), "weight 'w1' is f32\\[2\\]"),
    (lambda r: r["weights"].pop("b1"), "name different weights"),
    (lambda r: r["inputs"].pop(), "lists 4 inputs"),
    (lambda r: r["inputs"][0].__setitem__(2, 5), "out of range"),
    (lambda r: r["inputs"][1].__setitem__(1, "code"), "kind 'code'"),
    (lambda r: r["inputs"][1].__setitem__(0, "zz"), "listed as 'zz'"),
    (lambda r: r["output_spec"].update({"kind": "tuple", "items": []}), "outputs"),
    (lambda r: r.update({"input_spec": {"kind": "eval"}}), "input_spec"),
    (lambda r: r.update({"ir": r["ir"].replace("tanh", "system")}), "unknown op 'system'"),
    (lambda r: r.update({"ir": r["ir"].replace("f32[4,5]", "f32[4,6]", 1)}), "IR is invalid"),
])
def test_inconsistent_traced_files_are_clear_errors(tmp_path, change, fragment):
    with pytest.raises(CheckpointError, match=fragment):
        gc.jit.load(_mutated(tmp_path, change))


def test_repeated_calls_reuse_the_compiled_program():
    traced = _trace_quietly(MLP(), _randn(4, 5))
    traced(_randn(4, 5, seed=30)).detach().numpy()
    compiles = gc.runtime.stats["compiles"]
    for seed in (31, 32, 33):
        traced(_randn(4, 5, seed=seed)).detach().numpy()
    assert gc.runtime.stats["compiles"] == compiles


def test_a_graphc_nn_model_traces_by_duck_typing(tmp_path):
    nn = pytest.importorskip("graphc.nn")
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    traced = _trace_quietly(model, _randn(3, 4))
    assert [n for n, _ in traced.named_parameters()] == [n for n, _ in
                                                         model.named_parameters()]
    reference = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(),
                                    torch.nn.Linear(8, 2))
    with torch.no_grad():
        for (name, p), (_, q) in zip(model.named_parameters(),
                                     reference.named_parameters()):
            q.copy_(to_torch(p.detach()))
    gc.jit.save(traced, tmp_path / "seq.gcjit")
    x = _randn(3, 4, seed=40)
    assert_close(gc.jit.load(tmp_path / "seq.gcjit")(x), reference(to_torch(x)))


# ============================================================================ mode, device

class _Affine(TinyModule):
    """y = x @ w + b, traced in eval mode (a module's `training` flag is duck typed)."""

    def __init__(self, lib, w, b):
        self.w, self.b = lib.tensor(w), lib.tensor(b)
        self.training = False

    def forward(self, x):
        return x @ self.w + self.b

    __call__ = forward


def test_a_loaded_module_takes_eval_train_to_and_cpu_like_pytorch(tmp_path):
    """`model = jit.load(path); model.eval(); model.to(device)` is the usual inference
    preamble: PyTorch's traced modules accept it and return themselves."""
    rng = np.random.default_rng(7)
    w, b, x = rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal((2, 4))
    t_model = torch.nn.Linear(4, 3).double().eval()
    with torch.no_grad():
        t_model.weight.copy_(torch.tensor(w.T))
        t_model.bias.copy_(torch.tensor(b))
    t_traced = torch.jit.trace(t_model, torch.tensor(x))
    gc.jit.save(gc.jit.trace(_Affine(gc, w, b), gc.tensor(x)), tmp_path / "affine.gcjit")
    loaded = gc.jit.load(tmp_path / "affine.gcjit")
    assert loaded.training is t_traced.training is False
    with warnings.catch_warnings():
        warnings.simplefilter("error")     # eval() on an eval-mode trace: nothing to say
        assert loaded.eval() is loaded and t_traced.eval() is t_traced
    assert loaded.to("cpu") is loaded and loaded.cpu() is loaded
    assert loaded.to(device="cpu") is loaded
    assert_close(loaded(gc.tensor(x)), t_traced(torch.tensor(x)))
    # the trace keeps the traced mode; asking for the other one says so
    with pytest.warns(TracerWarning, match="keeps the eval mode"):
        assert loaded.train() is loaded
    assert loaded.training is True and t_traced.train().training is True
    assert_close(loaded(gc.tensor(x)), t_traced(torch.tensor(x)))
    with pytest.raises(ValueError, match="boolean"):
        loaded.train("yes")
    with pytest.raises(TypeError, match="dtype"):
        loaded.to(gc.float32)


def test_a_model_with_random_ops_traces_with_a_warning_like_pytorch():
    """torch.jit.trace warns about nondeterministic nodes (a model left in training mode
    with dropout) and returns the trace; graphc checks the trace on the model's own
    random numbers, warns, and returns it too."""
    def t_noisy(x):
        return x + torch.randn(3)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.trace(t_noisy, torch.zeros(3))     # does not raise
    with pytest.warns(TracerWarning, match="Did you forget to call .eval"):
        traced = gc.jit.trace(_noisy, gc.zeros(3))
    gc.manual_seed(5)
    eager = _noisy(gc.ones(3))
    gc.manual_seed(5)
    assert _bits(traced(gc.ones(3))) == _bits(eager)


def test_indexing_a_traced_input_stays_an_op_of_the_trace():
    """Basic indexing of a computed tensor reads its value at once outside traces; inside
    one it must stay a graph op, or the traced function would return the example's rows
    for every input."""
    traced = gc.jit.trace(lambda x: x[1:3] * 2 + x[0], gc.tensor(np.ones((4, 2), np.float32)))
    other = np.arange(8, dtype=np.float32).reshape(4, 2)
    np.testing.assert_array_equal(traced(gc.tensor(other)).numpy(), other[1:3] * 2 + other[0])
