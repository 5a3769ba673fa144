"""graphc.onnx.export: traced models written as ONNX, checked with onnx.checker and run
in onnxruntime. The reference is graphc's own output for the same inputs (graphc's ops
are checked against PyTorch elsewhere); floats must agree to rtol 1e-4, integers and
bools exactly.

Skipped when onnx or onnxruntime is not installed (the optional extra `onnx`).
"""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

import graphc as gc  # noqa: E402
import graphc.nn as nn  # noqa: E402
import graphc.nn.functional as F  # noqa: E402
from graphc.testing import DIVMOD_EDGES  # noqa: E402
import graphc.onnx  # noqa: E402
from graphc.ir.registry import all_ops  # noqa: E402
from graphc.onnx.lowering import LOWERINGS, UNSUPPORTED  # noqa: E402
from graphc.tensor import Tensor  # noqa: E402

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# ============================================================================ helpers

def _leaves(obj):
    if isinstance(obj, Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for v in obj.values() for t in _leaves(v)]
    return [t for v in obj for t in _leaves(v)]


def run_onnx(proto, feeds):
    session = ort.InferenceSession(proto.SerializeToString(),
                                   providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, feeds)))


def assert_matches_graphc(traced, proto, inputs):
    """onnxruntime's outputs equal the traced module's on `inputs` (numpy arrays)."""
    expected = [t.detach().numpy() for t in _leaves(traced(*[gc.tensor(a) for a in inputs]))]
    feeds = {i.name: a for i, a in zip(proto.graph.input, inputs)}
    got = run_onnx(proto, feeds)
    assert list(got) == [o.name for o in proto.graph.output]
    assert len(got) == len(expected)
    for name, e in zip(got, expected):
        g = got[name]
        assert g.shape == e.shape and g.dtype == e.dtype, (name, g.shape, g.dtype, e.shape,
                                                           e.dtype)
        if e.dtype.kind == "f":
            np.testing.assert_allclose(g, e, rtol=1e-4, atol=1e-6, err_msg=name)
        else:
            np.testing.assert_array_equal(g, e, err_msg=name)


def all_names(proto):
    """Every name and op type that appears in the ONNX graph."""
    g = proto.graph
    names = [g.name] + [n.name for n in g.node] + [n.op_type for n in g.node]
    names += [v for n in g.node for v in (*n.input, *n.output)]
    names += [v.name for v in (*g.input, *g.output, *g.initializer, *g.value_info)]
    return names


# ============================================================================ models

class MLP(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 16)
        self.fc2 = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc2(F.gelu(self.fc1(x))).softmax(-1)


class CNN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 4, 3, padding=1)
        self.pool = nn.MaxPool2d(2)
        self.fc = nn.Linear(4 * 4 * 4, 5)

    def forward(self, x):
        return self.fc(self.pool(self.conv(x).relu()).flatten(1))


class Recurrent(nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = nn.LSTM(3, 5, num_layers=2, batch_first=True)

    def forward(self, x):
        return self.lstm(x)   # (output, (h_n, c_n))


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.mark.parametrize("opset", [17, 18, 20])
def test_mlp_runs_in_onnxruntime(opset, rng, tmp_path):
    gc.manual_seed(0)
    x = rng.standard_normal((4, 6)).astype(np.float32)
    traced = gc.jit.trace(MLP(), gc.tensor(x))
    path = tmp_path / "mlp.onnx"
    graphc.onnx.export(traced, f=path, opset_version=opset)
    proto = onnx.load(str(path))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version == opset
    ops = {n.op_type for n in proto.graph.node}
    # opset 20 has Gelu; before it gelu is written with Erf
    assert ("Gelu" in ops) == (opset >= 20) and ("Erf" in ops) == (opset < 20)
    assert_matches_graphc(traced, proto, [x])
    x2 = rng.standard_normal((4, 6)).astype(np.float32)   # other values, same shapes
    assert_matches_graphc(traced, proto, [x2])


def test_cnn_runs_in_onnxruntime(rng):
    gc.manual_seed(1)
    x = rng.standard_normal((2, 2, 8, 8)).astype(np.float32)
    traced = gc.jit.trace(CNN(), gc.tensor(x))
    proto = graphc.onnx.export(traced)
    assert {"Conv", "Relu", "MatMul"} <= {n.op_type for n in proto.graph.node}
    assert_matches_graphc(traced, proto, [x])
    assert_matches_graphc(traced, proto, [rng.standard_normal((2, 2, 8, 8)).astype(np.float32)])


def test_lstm_runs_in_onnxruntime(rng):
    gc.manual_seed(2)
    x = rng.standard_normal((2, 4, 3)).astype(np.float32)
    model = Recurrent()
    proto = graphc.onnx.export(model, (gc.tensor(x),), opset_version=18)
    traced = gc.jit.trace(model, gc.tensor(x))
    assert [o.name for o in proto.graph.output] == ["out0", "out1.0", "out1.1"]
    assert [list(d.dim_value for d in o.type.tensor_type.shape.dim)
            for o in proto.graph.output] == [[2, 4, 5], [2, 2, 5], [2, 2, 5]]
    assert_matches_graphc(traced, proto, [rng.standard_normal((2, 4, 3)).astype(np.float32)])


def test_names_are_the_models_own(rng):
    gc.manual_seed(3)
    model = MLP()
    x = rng.standard_normal((4, 6)).astype(np.float32)
    proto = graphc.onnx.export(model, gc.tensor(x))
    g = proto.graph
    assert [i.name for i in g.input] == ["x"]
    assert sorted(i.name for i in g.initializer) == sorted(n for n, _ in model.named_parameters())
    for init in g.initializer:
        want = dict(model.named_parameters())[init.name].detach().numpy()
        np.testing.assert_array_equal(onnx.numpy_helper.to_array(init), want)
    assert [o.name for o in g.output] == ["out0"]
    assert {n.domain for n in g.node} == {""}           # default ONNX domain only
    assert not any("graphc" in name.lower() for name in all_names(proto))
    ir_ops = set(all_ops())
    assert not any(n.op_type in ir_ops or n.name.split("_")[0] in ir_ops for n in g.node)
    assert proto.producer_name == "graphc"   # model metadata, as torch writes "pytorch"


def test_dict_outputs_and_given_names(rng):
    def heads(x, y):
        return {"sum": x + y, "prod": x * y}

    x, y = (rng.standard_normal((3,)).astype(np.float32) for _ in range(2))
    traced = gc.jit.trace(heads, (gc.tensor(x), gc.tensor(y)), strict=False)
    proto = graphc.onnx.export(traced)
    assert [i.name for i in proto.graph.input] == ["x", "y"]
    assert [o.name for o in proto.graph.output] == ["sum", "prod"]
    assert_matches_graphc(traced, proto, [x, y])
    named = graphc.onnx.export(traced, input_names=["a", "b"], output_names=["s", "p"])
    assert [i.name for i in named.graph.input] == ["a", "b"]
    assert [o.name for o in named.graph.output] == ["s", "p"]
    assert_matches_graphc(traced, named, [x, y])
    with pytest.raises(ValueError, match="output_names must be 2"):
        graphc.onnx.export(traced, output_names=["only"])
    with pytest.raises(ValueError, match="repeat or clash"):
        graphc.onnx.export(traced, input_names=["a", "a"])


def test_outputs_that_are_inputs_weights_or_repeated(rng):
    class PassThrough(nn.Module):
        def __init__(self):
            super().__init__()
            self.scale = nn.Parameter(gc.tensor(np.float32(2.0)))

        def forward(self, x):
            y = x * self.scale
            return x, y, y, self.scale

    x = rng.standard_normal((3,)).astype(np.float32)
    traced = gc.jit.trace(PassThrough(), gc.tensor(x))
    proto = graphc.onnx.export(traced)
    assert [o.name for o in proto.graph.output] == ["out0", "out1", "out2", "out3"]
    assert_matches_graphc(traced, proto, [x])


def test_loaded_model_exports_the_same(rng, tmp_path):
    gc.manual_seed(4)
    x = rng.standard_normal((2, 2, 8, 8)).astype(np.float32)
    traced = gc.jit.trace(CNN(), gc.tensor(x))
    gc.jit.save(traced, tmp_path / "cnn.gcjit")
    loaded = gc.jit.load(tmp_path / "cnn.gcjit")
    with open(tmp_path / "cnn.onnx", "wb") as fh:   # a file object works too
        graphc.onnx.export(loaded, f=fh)
    proto = onnx.load(str(tmp_path / "cnn.onnx"))
    assert_matches_graphc(traced, proto, [x])


# ============================================================================ every op

def _t(a):
    return gc.tensor(a)


def unary_float(x):
    p = x.abs() + 0.5
    return (-x, x.abs(), x.sign(), p.exp(), p.log(), p.log1p(), x.expm1(), p.sqrt(),
            p.rsqrt(), x.sin(), x.cos(), x.tanh(), x.sigmoid(), x.relu(), F.gelu(x),
            F.gelu(x, approximate="tanh"), F.silu(x), x.erf(), x.floor(), x.ceil(),
            x.round(), p.reciprocal())


def special_values(x):
    """sign(nan) = 0, isnan, isfinite on nan and inf."""
    return x.sign(), x.isnan(), x.isfinite(), x.isnan().logical_not()


def integer_ops(a, b, i32, j32):
    c = b.clamp(-1, 3)
    return (a // b, a % b, a ** c, -a, a.abs(), a.sign(), a.relu(), gc.maximum(a, b),
            gc.minimum(a, b), a + b, a - b, a * b, i32 // j32, i32 % j32,
            Tensor._apply("isnan", a), Tensor._apply("isfinite", a))


def bitwise_ops(a, b, i32, j32):
    """Integer bit operations: ONNX opset 18 (Bitwise*); earlier opsets refuse them."""
    return (a & b, a | b, a ^ b, ~a, i32 & j32, ~i32)


def float_arith(x, y):
    return (x // y, x % y, x ** 2, x.abs() ** y, x / y, gc.maximum(x, y), gc.minimum(x, y))


def floor_divmod_edges(x, y):
    return (x // y, x % y)


def math_functions(x, unit, ge1, pos, edge, a, c, i, j):
    """The trigonometric, hyperbolic and base-2/10 IR ops (through Tensor._apply: the
    tensor layer names them separately), on random values and on domain edges, and the
    binary math ops over every pair of special values (signed zeros, infinities, nan)."""
    ap = Tensor._apply
    unary = [ap(n, x) for n in ("tan", "atan", "sinh", "cosh", "asinh", "exp2")]
    unary += [ap(n, unit) for n in ("asin", "acos", "atanh")]
    unary += [ap("acosh", ge1), ap("log2", pos), ap("log10", pos)]
    # asin/acos/atanh at +-1 and 0, acosh at 1, log2/log10 of 0 and inf
    unary += [ap(n, edge) for n in ("asin", "acos", "atanh", "acosh", "log2", "log10")]
    binary = [ap(n, a, c) for n in ("fmod", "atan2", "hypot", "copysign")]
    return (*unary, *binary, ap("fmod", i, j), ap("flip", x, dims=(0,)),
            ap("flip", x, dims=(0, 1)), ap("flip", x, dims=()))


def compare_and_logic(x, y, p, q):
    m = x > y
    return (x == y, x != y, x < y, x <= y, x > y, x >= y, p < q, p >= q, p == q,
            p & q, p | q, p ^ q, ~p, gc.where(m, x, y), m.to(gc.float32),
            (x * 3).to(gc.int64), x.to(gc.bool), (x * 3).to(gc.int32).to(gc.float64))


def movement(x, idx, src, sidx):
    r = x.reshape(4, 6)
    e = x[:, :1].expand(2, 3, 4)
    s = x[:, ::2, 1:4:2]
    padded = F.pad(x, (1, 2, 0, 1))
    interior = x._pad([0, 1, 0], [1, 0, 2], [2, 0, 1])      # zeros between elements
    cat = gc.cat([x, x * 2], dim=1)
    iota = Tensor._apply("iota", shape=(2, 5), dim=1, dtype=gc.int64) * 2
    fiota = Tensor._apply("iota", shape=(3, 2), dim=0, dtype=gc.float32)
    iota1 = Tensor._apply("iota", shape=(4,), dim=0, dtype=gc.int32)
    gathered = x.gather(2, idx)                               # index smaller than x
    scattered = gc.zeros(3, 4).scatter_add(0, sidx, src)     # src larger than index
    bmm = x.permute(0, 2, 1) @ x                              # [2,4,3] @ [2,3,4]
    return (r, e, s, padded, interior, cat, iota, fiota, iota1, gathered, scattered, bmm,
            Tensor._apply("pad", x, low=(0, 0, 0), high=(0, 0, 0), interior=(0, 1, 0)))


def reductions(x, t):
    return (x.sum(), x.sum(1), x.sum((0, 2), keepdim=True), x.prod(2), x.amax(1),
            x.amin((1, 2), keepdim=True), x.argmax(2), x.argmin(1, keepdim=True),
            t.argmax(1), t.argmin(1),                          # ties: first index
            Tensor._apply("sum", x, dims=(), keepdim=False),  # no dims: the identity
            Tensor._apply("argmax", x.sum(), dim=0, keepdim=False))


def sorting(x, t):
    # argsort is TopK (ties: lower index first); tests/test_sort.py covers more
    return (gc.sort(x, 1).indices, gc.argsort(t, 0, descending=True), gc.topk(x, 2).values)


def convolutions(x, w, wt):
    return (F.conv2d(x, w, stride=2, padding=1, dilation=1),
            F.conv2d(x, w, padding=2, dilation=2),
            F.conv2d(x, w[:2, :1], groups=2),
            F.conv_transpose2d(x, wt, stride=2, padding=1, output_padding=1))


def value_checks(classes, probs):
    """one_hot's class range and binary_cross_entropy's [0, 1] are `check` nodes: the
    exported model computes the values (ONNX cannot fail a run)."""
    return F.one_hot(classes, 3), F.binary_cross_entropy(probs, probs.detach())


def _op_inputs(rng):
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -2.5, 3.0], np.float32)
    halves = np.array([0.5, 1.5, 2.5, -0.5, -1.5, 0.49, 3.7, -2.2], np.float32)
    a = np.array([7, -7, 7, -7, 0, 5], np.int64)
    b = np.array([2, 2, -2, -2, 3, -1], np.int64)
    i32 = np.array([9, -9, 4, -4], np.int32)
    j32 = np.array([-4, 4, -9, 9], np.int32)
    y = f(8)
    y[0] = halves[0] * 0 + 1.0
    x_cmp = np.array([1.0, 2.0, 3.0, -1.0], np.float32)
    y_cmp = np.array([1.0, 1.0, 4.0, -2.0], np.float32)
    p = np.array([True, True, False, False])
    q = np.array([True, False, True, False])
    idx = rng.integers(0, 4, size=(2, 2, 3)).astype(np.int64)   # torch.gather: 0..size-1
    sidx = np.array([[0, 2, 2], [1, 1, 0]], np.int64)
    tied = np.array([[1, 3, 3, 0], [2, 2, 1, 2]], np.float32)
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 2.5, -3.0],
                        np.float32)
    edge_a, edge_c = np.repeat(specials, len(specials)), np.tile(specials, len(specials))
    lo = np.iinfo(np.int64).min
    fmod_i = np.array([7, -7, 7, -7, 0, 5, lo, lo, 9], np.int64)
    fmod_j = np.array([2, 2, -2, -2, 3, 0, -1, 3, -4], np.int64)
    return [
        (math_functions, [f(3, 4), rng.uniform(-0.99, 0.99, (3, 4)).astype(np.float32),
                          (1 + np.abs(f(3, 4)) * 3).astype(np.float32),
                          (np.abs(f(3, 4)) + 0.1).astype(np.float32),
                          np.array([1.0, -1.0, 0.0, -0.0, np.inf], np.float32),
                          edge_a, edge_c, fmod_i, fmod_j]),
        (unary_float, [np.concatenate([halves, f(8)]).reshape(4, 4)]),
        (special_values, [special]),
        (integer_ops, [a, b, i32, j32]),
        (bitwise_ops, [np.array([7, -7, 0, -1, np.iinfo(np.int64).min, 5], np.int64), b,
                       i32, j32]),
        (float_arith, [f(8) * 3, np.abs(f(8)) + 0.5]),
        # PyTorch's fmod-based // and %: zero and infinite divisors, signed zeros
        (floor_divmod_edges, [np.array(e, np.float32) for e in zip(*DIVMOD_EDGES)]),
        (compare_and_logic, [x_cmp, y_cmp, p, q]),
        (movement, [f(2, 3, 4), idx, f(3, 5), sidx]),
        (reductions, [f(2, 3, 4), tied]),
        (sorting, [f(3, 5), tied]),
        (convolutions, [f(1, 2, 7, 7), f(4, 2, 3, 3), f(2, 3, 3, 3)]),
        (value_checks, [sidx, np.abs(f(2, 3)) % 1]),
    ]


@pytest.mark.filterwarnings("ignore::graphc.jit.TracerWarning")   # the 0.5 in unary_float
@pytest.mark.parametrize("opset", [17, 18])
def test_every_lowering_matches_graphc(opset, rng):
    traced_ops = set()
    for fn, arrays in _op_inputs(rng):
        traced = gc.jit.trace(fn, tuple(_t(a) for a in arrays))
        traced_ops |= {n.op for n in traced.graph.nodes}
        if fn is bitwise_ops and opset < 18:
            with pytest.raises(graphc.onnx.UnsupportedOperatorError, match="opset 18"):
                graphc.onnx.export(traced, opset_version=opset)
            continue
        proto = graphc.onnx.export(traced, opset_version=opset)
        try:
            assert_matches_graphc(traced, proto, arrays)
        except AssertionError as e:
            raise AssertionError(f"{fn.__name__}: {e}") from None
    # the functions above exercise every op that has a lowering
    assert set(LOWERINGS) - traced_ops == set()


def test_every_ir_op_is_mapped_or_refused_with_a_reason():
    ops = set(all_ops()) - {"input"}
    assert ops - set(LOWERINGS) - set(UNSUPPORTED) == set()
    assert not set(LOWERINGS) & set(UNSUPPORTED)


# ============================================================================ errors

@pytest.mark.filterwarnings("ignore::graphc.jit.TracerWarning")   # dropout's floats
def test_unsupported_op_names_the_op_and_the_line(rng):
    class Noisy(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4, 4)

        def forward(self, x):
            return F.dropout(self.fc(x), 0.5, training=True)   # random numbers

    x = gc.tensor(rng.standard_normal((2, 4)).astype(np.float32))
    traced = gc.jit.trace(Noisy(), x, check_trace=False)
    with pytest.raises(graphc.onnx.UnsupportedOperatorError) as info:
        graphc.onnx.export(traced)
    message = str(info.value)
    assert "'rand'" in message and "eval mode" in message
    assert f"{os.path.basename(__file__)}:" in message   # the model's source line


def test_bad_arguments_are_clear(rng):
    traced = gc.jit.trace(lambda x: x * 2, gc.tensor(np.ones(3, np.float32)))
    with pytest.raises(ValueError, match="opset_version must be an int from 17"):
        graphc.onnx.export(traced, opset_version=13)
    with pytest.raises(TypeError, match="pass example inputs"):
        graphc.onnx.export(MLP())
    bf = gc.jit.trace(lambda x: x * 2, gc.ones(3, dtype=gc.bfloat16))
    with pytest.raises(graphc.onnx.UnsupportedOperatorError, match="bfloat16"):
        graphc.onnx.export(bf)


def test_importing_graphc_onnx_does_not_import_onnx():
    code = "import sys, graphc.onnx; assert 'onnx' not in sys.modules, 'imported onnx'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=_ROOT)
