"""Fusion rules found on the CNN training step (conv, relu, 2x2 max pool, backward):
index arithmetic across a re-tiling reshape, and one patch matrix shared by a
convolution and its weight gradient. Each rule is checked on the plan it produces and
on the numbers (LLVM against the reference interpreter)."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

import graphc as gc
from graphc.backends import interp
from graphc.backends import kernel_ir as K
from graphc.backends import llvm as L
from graphc.ir.graph import Graph, Node, TensorType
from graphc.ir import dtypes as dt
from graphc.ir.registry import get_op
from graphc.passes.autodiff import grad_graph
from graphc.passes.fusion import Reason, fuse


# compiled kernels go to a cache directory of this module's own (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("private_cache")


def inp(shape, name="x"):
    return Node("input", (), {"name": name}, TensorType(tuple(shape), dt.float32))


def op(name, *ins, **attrs):
    return Node(name, ins, attrs, get_op(name).infer([i.type for i in ins], attrs))


# ----------------------------------------------------------------------------- index algebra

def _value(x, env):
    """Evaluate a Lin (or atom) at the integer point `env` (Var -> int)."""
    if isinstance(x, K.Lin):
        return x.const + sum(c * _value(a, env) for a, c in x.terms)
    if isinstance(x, K.Var):
        return env[x]
    if isinstance(x, K.FloorDiv):
        return _value(x.x, env) // x.c
    if isinstance(x, K.Mod):
        return _value(x.x, env) % x.c
    if isinstance(x, K.Clamp):
        return min(max(_value(x.x, env), x.lo), x.hi)
    raise TypeError(x)


def _divisors(x):
    return {a.c for a in x.atoms() if isinstance(a, (K.FloorDiv, K.Mod))}


def test_retiling_division_folds_to_the_tile_index():
    # The gradient of a 2x2 tile view of a 14x14 map reads (14*h + w) // 28 and
    # (14*h + w) % 28: with w < 14 these are h // 2 and 14*(h % 2) + w.
    h, w = K.Var("h", 14), K.Var("w", 14)
    flat = K.lin(h) * 14 + K.lin(w)
    assert K.floordiv(flat, 28) == K.floordiv(K.lin(h), 2)
    assert K.mod(flat, 28) == K.mod(K.lin(h), 2) * 14 + K.lin(w)
    assert K.floordiv(K.mod(flat, 28), 14) == K.mod(K.lin(h), 2)
    assert _divisors(K.floordiv(flat, 28)) == {2}


@pytest.mark.parametrize("seed", range(6))
def test_floordiv_and_mod_agree_with_integers(seed):
    """Every simplification is exact: brute force over all points of small domains."""
    rng = np.random.default_rng(seed)
    a, b, c = K.Var("a", int(rng.integers(1, 7))), K.Var("b", int(rng.integers(1, 7))), \
        K.Var("c", int(rng.integers(1, 5)))
    for _ in range(40):
        ka, kb, kc = (int(v) for v in rng.integers(-12, 30, 3))
        x = K.lin(a) * ka + K.lin(b) * kb + K.lin(c) * kc + int(rng.integers(-20, 20))
        if rng.random() < 0.3:
            x = x + K.mod(K.lin(b) * kb + 3, int(rng.integers(2, 9)))
        d = int(rng.choice([2, 3, 4, 6, 8, 12, 14, 28, 30]))
        q, r = K.floordiv(x, d), K.mod(x, d)
        for va, vb, vc in itertools.product(range(a.extent), range(b.extent), range(c.extent)):
            env = {a: va, b: vb, c: vc}
            v = _value(x, env)
            assert _value(q, env) == v // d, (x, d, q)
            assert _value(r, env) == v % d, (x, d, r)


# ----------------------------------------------------------------------------- plans

def _run_matches_interp(g, ins, tol):
    want = interp.compile(g)(ins)
    got = L.compile(g)(ins)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


def _concat_kernels(plan):
    cats = {id(n) for n in plan.graph.nodes if n.op == "concat"}
    return [k for k in plan.kernels if isinstance(k, K.Kernel) and
            any(i in cats for i in k.nodes)]


def test_conv_and_its_weight_gradient_share_one_patch_matrix():
    """The forward conv (taps layout) and its weight gradient (a conv whose kernel is the
    output map, positions layout) build the same patch matrix through different
    reshape/permute chains: one kernel writes it, both GEMMs read that buffer."""
    x, w = inp((4, 3, 10, 10)), inp((5, 3, 3, 3), "w")
    y = op("conv2d", x, w, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    loss = op("sum", op("mul", y, y), dims=(0, 1, 2, 3), keepdim=False)
    g, _ = Graph.from_outputs([loss], input_order=[x, w])
    both = grad_graph(g, wrt=[1])      # d(sum y*y)/dw = conv_w(x, 2y): y is computed too
    plan = fuse(both)
    concats = [n for n in plan.graph.nodes if n.op == "concat"]
    assert len(concats) == 2                       # two graph values ...
    (kern,) = _concat_kernels(plan)                # ... one kernel
    patches = {plan.buffers[id(n)] for n in concats}
    assert len(patches) == 1
    mms = [k for k in plan.kernels if isinstance(k, K.MatmulKernel)]
    assert sum(1 for m in mms for v in (m.a, m.b) if v.buffer in patches) == 2
    rng = np.random.default_rng(3)
    ins = [rng.standard_normal(n.shape).astype(np.float32) for n in both.inputs]
    _run_matches_interp(both, ins, 1e-4)


def test_concats_that_differ_are_not_shared():
    a, b = inp((4, 6)), inp((4, 6), "b")
    c1 = op("concat", a, b, dim=0)
    c2 = op("concat", b, a, dim=0)
    w = inp((6, 3), "w")
    outs = [op("matmul", c1, w), op("matmul", c2, w)]
    g, _ = Graph.from_outputs(outs, input_order=[a, b, w])
    plan = fuse(g)
    assert len(_concat_kernels(plan)) == 2
    rng = np.random.default_rng(4)
    _run_matches_interp(g, [rng.standard_normal(s).astype(np.float32)
                            for s in ((4, 6), (4, 6), (6, 3))], 1e-5)


def test_only_the_expensive_value_of_a_chain_is_stored_not_the_views_over_it():
    """The CNN step's gradients: the col2im sum of conv 2's input gradient reaches
    several kernels through a pool backward (reshape, expand, where, permute). It is
    stored once; the movement ops over it stay index arithmetic instead of each being
    stored as 'shared expensive' in the same round."""
    from graphc.nn import functional as F
    from graphc.passes.pipeline import optimize
    rng = np.random.default_rng(5)

    def param(*shape):
        return gc.tensor((rng.standard_normal(shape) * 0.3).astype(np.float32)).requires_grad_()
    w1, b1, w2, b2 = param(4, 1, 3, 3), param(4), param(6, 4, 3, 3), param(6)
    x = gc.tensor(rng.standard_normal((3, 1, 12, 12)).astype(np.float32))
    h = F.max_pool2d(F.relu(F.conv2d(x, w1, b1, padding=1)), 2)
    h = F.max_pool2d(F.relu(F.conv2d(h, w2, b2, padding=1)), 2)
    (h * h).sum().backward()
    g, boundary = Graph.from_outputs([p.grad._node for p in (w1, b1, w2, b2)],
                                     boundary=lambda n: n.data is not None)
    g = optimize(g)
    plan = fuse(g)
    stored_views = [p.op for p, c, fused, r in plan.edge_reasons
                    if r is Reason.SHARED_EXPENSIVE and
                    p.op in ("reshape", "permute", "expand", "slice")]
    assert stored_views == []
    _run_matches_interp(g, [n.data for n in boundary], 1e-4)


def test_cnn_training_step_matches_torch():
    """The whole CNN step (conv, relu, max pool twice, linear, cross-entropy, SGD)
    compiled on LLVM: loss and updated parameters against PyTorch."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(11)
    shapes = [(4, 1, 3, 3), (4,), (6, 4, 3, 3), (6,), (6 * 3 * 3, 5), (5,)]
    init = [(rng.standard_normal(s) * 0.3).astype(np.float32) for s in shapes]
    x = rng.standard_normal((3, 1, 12, 12)).astype(np.float32)
    y = rng.integers(0, 5, 3)

    def step(lib, params, xt, yt):   # the same code for graphc and for torch
        F = lib.nn.functional
        w1, b1, w2, b2, wl, bl = params
        h = F.max_pool2d(F.relu(F.conv2d(xt, w1, b1, padding=1)), 2)
        h = F.max_pool2d(F.relu(F.conv2d(h, w2, b2, padding=1)), 2)
        loss = F.cross_entropy(h.reshape(h.shape[0], -1) @ wl + bl, yt)
        loss.backward()
        with lib.no_grad():
            for p in params:
                p -= 0.1 * p.grad
                p.grad = None
        return loss

    params = [gc.tensor(a.copy()).requires_grad_() for a in init]
    compiled = gc.compile(lambda xt, yt: step(gc, params, xt, yt), backend="llvm")
    xt, yt = gc.tensor(x), gc.tensor(y)
    losses = [float(compiled(xt, yt).item()) for _ in range(3)]
    tp = [torch.tensor(a.copy(), requires_grad=True) for a in init]
    tx, ty = torch.tensor(x), torch.tensor(y)
    want = [float(step(torch, tp, tx, ty).detach()) for _ in range(3)]
    np.testing.assert_allclose(losses, want, rtol=1e-5, atol=1e-5)
    for p, t in zip(params, tp):
        np.testing.assert_allclose(p.detach().numpy(), t.detach().numpy(), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- col2im

@pytest.mark.parametrize("ci,co,hw,k,stride,pad,dil,groups,out_pad", [
    (6, 3, (5, 6), (3, 3), (1, 1), (1, 1), (1, 1), 1, (0, 0)),    # a conv's input gradient
    (4, 4, (4, 5), (3, 2), (2, 3), (1, 0), (1, 1), 2, (1, 2)),    # strides, groups, out pad
    (8, 2, (3, 3), (2, 3), (2, 2), (2, 1), (2, 1), 1, (1, 0)),    # dilation, wide padding
    (2, 2, (3, 3), (1, 1), (1, 1), (1, 1), (1, 1), 1, (0, 0)),    # taps fall outside
])
def test_conv_transpose_col2im_matches_torch(ci, co, hw, k, stride, pad, dil, groups, out_pad):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(sum(hw) + ci)
    x = rng.standard_normal((2, ci) + hw).astype(np.float32)
    w = rng.standard_normal((ci, co // groups) + k).astype(np.float32)
    xi, wi = inp(x.shape), inp(w.shape, "w")
    y = op("conv_transpose2d", xi, wi, stride=stride, padding=pad, dilation=dil,
           groups=groups, output_padding=out_pad)
    g, _ = Graph.from_outputs([y], input_order=[xi, wi])
    plan = fuse(g)
    assert not any(n.op == "concat" for n in plan.graph.nodes)     # no im2col
    (got,) = L.compile(g)([x, w])
    want = torch.nn.functional.conv_transpose2d(
        torch.tensor(x), torch.tensor(w), stride=stride, padding=pad, dilation=dil,
        groups=groups, output_padding=out_pad).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    _run_matches_interp(g, [x, w], 1e-4)


def test_conv_transpose_that_widens_keeps_im2col():
    # 2 -> 8 channels: the col2im matrix (8*9 rows) is larger than im2col's (2*9)
    xi, wi = inp((2, 2, 5, 5)), inp((2, 8, 3, 3), "w")
    y = op("conv_transpose2d", xi, wi, stride=(1, 1), padding=(1, 1), dilation=(1, 1),
           groups=1, output_padding=(0, 0))
    g, _ = Graph.from_outputs([y], input_order=[xi, wi])
    assert any(n.op == "concat" for n in fuse(g).graph.nodes)


def test_tap_sum_read_through_pool_backward_is_stored_once():
    """The input gradient of a conv (col2im: a sum of 9 taps) feeds a 2x2 max pool's
    backward, which reads it at every point of the 4x larger map: it is stored by a
    kernel of its own instead of being recomputed 4 times (36 loads per element)."""
    from graphc.nn import functional as F
    rng = np.random.default_rng(12)
    a = gc.tensor(rng.standard_normal((2, 3, 8, 8)).astype(np.float32)).requires_grad_()
    w = gc.tensor(rng.standard_normal((6, 3, 3, 3)).astype(np.float32)).requires_grad_()
    h = F.max_pool2d(gc.relu(a * 1.5), 2)
    loss = (F.conv2d(h, w, padding=1) ** 2).sum()
    loss.backward()
    g, boundary = Graph.from_outputs([a.grad._node, w.grad._node],
                                     boundary=lambda n: n.data is not None)
    plan = fuse(g)
    stored = [p for p, c, fused, r in plan.edge_reasons if r is Reason.RECOMPUTED_LOADS]
    assert stored and all(p.op == "add" and p.shape == (2, 3, 4, 4) for p in stored)
    # no kernel loads the col2im matrix at more points than it has elements
    cols = plan.buffers[id(next(n for n in plan.graph.nodes if n.op == "matmul"
                                and n.shape[1] == 3 * 9))]
    readers = [k for k in plan.kernels if isinstance(k, K.Kernel) and
               any(isinstance(v, K.Load) and v.buffer is cols
                   for st in k.stages for v in K.walk_values(st.value))]
    assert len(readers) == 1 and readers[0].work() <= 2 * 3 * 4 * 4 * 2
    ins = [n.data for n in boundary]
    _run_matches_interp(g, ins, 1e-4)


# ----------------------------------------------------------------------------- layout

def _grad_like_graph(permute_dims, reads_both):
    """g = relu'(x) * dy over NCHW (an elementwise value of our own), read by GEMMs as
    (C, N*H*W) (a conv's input gradient reads the output gradient so) and/or as
    (N*H*W, C) (its weight gradient). Returns (graph, g node)."""
    N, C, H, W = 2, 3, 4, 5
    x, dy = inp((N, C, H, W)), inp((N, C, H, W), "dy")
    a, b = inp((7, C), "a"), inp((9, N * H * W), "b")
    g = op("mul", op("relu", x), dy)
    c_major = op("reshape", op("permute", g, dims=(1, 0, 2, 3)), shape=(C, N * H * W))
    outs = [op("matmul", a, c_major)]                               # (7, NHW)
    if reads_both:
        rows = op("reshape", op("permute", g, dims=permute_dims), shape=(N * H * W, C))
        outs.append(op("matmul", b, rows))                          # (9, C)
    graph, _ = Graph.from_outputs(outs, input_order=[x, dy, a, b])
    return graph, _node(graph, "mul")


def _node(graph, name):
    (n,) = [n for n in graph.nodes if n.op == name]
    return n


def _copy_kernels(plan):
    return [k for k in plan.kernels if isinstance(k, K.Kernel) and len(k.stages) == 1
            and isinstance(k.stages[0].value, K.Load)]


@pytest.mark.parametrize("reads_both", [False, True])
def test_value_read_by_gemms_in_permuted_order_is_stored_in_that_order(reads_both):
    """Layout assignment: instead of storing g in NCHW and copying it into the (C, NHW)
    order the GEMM reads, g is stored as CNHW: the GEMM reads it in place (row-major),
    and a second GEMM reading (NHW, C) gets a transposed view of the same buffer."""
    graph, g = _grad_like_graph((0, 2, 3, 1), reads_both)
    plan = fuse(graph)
    buf = plan.buffers[id(g)]
    assert buf.shape == (3, 2, 4, 5)                  # C, N, H, W
    assert [r for p, c, f, r in plan.edge_reasons if p is g] and \
        all(r is Reason.LAID_OUT for p, c, f, r in plan.edge_reasons if p is g)
    assert _copy_kernels(plan) == []
    mms = [k for k in plan.kernels if isinstance(k, K.MatmulKernel)]
    assert all(k.b.buffer is buf for k in mms)
    rng = np.random.default_rng(1)
    _run_matches_interp(graph, [rng.standard_normal(n.shape).astype(np.float32)
                                for n in graph.inputs], 1e-5)


def test_value_a_gemm_would_read_transposed_keeps_its_order():
    """Read only as (NHW, C): storing CNHW makes that a transposed operand, which
    OpenBLAS runs slower on long-K products than a copy costs; and NHWC would move the
    innermost dim. g stays NCHW and the operand is copied."""
    N, C, H, W = 2, 3, 4, 5
    x, dy, b = inp((N, C, H, W)), inp((N, C, H, W), "dy"), inp((9, N * H * W), "b")
    g = op("mul", op("relu", x), dy)
    rows = op("reshape", op("permute", g, dims=(0, 2, 3, 1)), shape=(N * H * W, C))
    graph, _ = Graph.from_outputs([op("matmul", b, rows), op("sum", g, dims=(0,), keepdim=False)],
                                  input_order=[x, dy, b])
    plan = fuse(graph)
    assert all(r is not Reason.LAID_OUT for p, c, f, r in plan.edge_reasons)
    g = _node(graph, "mul")
    assert plan.buffers.get(id(g)) is None or plan.buffers[id(g)].shape == (N, C, H, W)
    rng = np.random.default_rng(2)
    _run_matches_interp(graph, [rng.standard_normal(n.shape).astype(np.float32)
                                for n in graph.inputs], 1e-5)


def test_graph_outputs_keep_their_layout():
    graph, g = _grad_like_graph((0, 2, 3, 1), True)
    graph, _ = Graph.from_outputs(list(graph.outputs) + [g], input_order=list(graph.inputs))
    g = _node(graph, "mul")
    plan = fuse(graph)
    assert plan.buffers[id(g)].shape == g.shape
    assert all(r is not Reason.LAID_OUT for p, c, f, r in plan.edge_reasons)
