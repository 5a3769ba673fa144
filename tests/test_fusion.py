"""Fusion tests in the style of TVM's: a graph before, the expected grouping after.

Each test builds a graph with graphc tensor ops (or raw IR nodes), fuses it and checks
the kernels (how many, which kind, which values each computes) and the reasons recorded
on the edges. Results of the fused kernels are checked against the interpreter in
tests/test_llvm_backend.py; a few end-to-end checks here make sure the groupings asserted
are also correct when run.
"""
from __future__ import annotations


import numpy as np
import pytest

import graphc as gc
from graphc.backends import interp
from graphc.backends import kernel_ir as K
from graphc.backends import llvm as L
from graphc.ir import dtypes as dt
from graphc.ir.graph import Graph, Node, TensorType
from graphc.ir.registry import get_op
from graphc.passes.autodiff import grad_graph
from graphc.passes.fusion import Reason, explain, fuse


# compiled kernels go to a cache directory of this module's own (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("private_cache")


def tensor_graph(fn, *shapes, seed=0):
    rng = np.random.default_rng(seed)
    ts = [gc.tensor(rng.standard_normal(s).astype(np.float32)) for s in shapes]
    outs = fn(*ts)
    outs = list(outs) if isinstance(outs, (list, tuple)) else [outs]
    g, boundary = Graph.from_outputs([o._node for o in outs],
                                     boundary=lambda n: n.data is not None)
    return g, [n.data for n in boundary]


def inp(shape, name="x", dtype=dt.float32):
    return Node("input", (), {"name": name}, TensorType(tuple(shape), dtype))


def op(name, *ins, **attrs):
    return Node(name, ins, attrs, get_op(name).infer([i.type for i in ins], attrs))


def kinds(plan):
    return [k.kind for k in plan.kernels]


def reasons(plan, producer_op=None, consumer_op=None):
    return {r for p, c, fused, r in plan.edge_reasons
            if (producer_op is None or p.op == producer_op)
            and (consumer_op is None or c.op == consumer_op)}


def run_matches_interp(g, ins, tol=2e-5):
    want = interp.compile(g)(ins)
    got = L.compile(g)(ins)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol)


# ----------------------------------------------------------------------------- groupings

def test_gelu_of_affine_is_one_elementwise_kernel():
    g, ins = tensor_graph(lambda x, w, b: gc.nn.functional.gelu(x * w + b),
                          (64, 32), (64, 32), (32,))
    plan = fuse(g)
    assert kinds(plan) == ["loops"]
    (k,) = plan.kernels
    # the broadcast bias is read as b[j]: the loop nest stays 2-d (no i % 32 per element)
    assert [v.extent for v in k.outer] == [64, 32]
    assert len(k.stages) == 1 and isinstance(k.stages[0], K.Store)
    assert reasons(plan, "expand") == {Reason.VIEW}
    run_matches_interp(g, ins)


def test_same_shape_elementwise_chain_is_one_flat_loop():
    g, ins = tensor_graph(lambda x, w, b: gc.nn.functional.gelu(x * w + b).reshape(32, 64),
                          (64, 32), (64, 32), (64, 32))
    plan = fuse(g)
    (k,) = plan.kernels
    assert len(k.outer) == 1 and k.outer[0].extent == 64 * 32   # collapsed: no division
    run_matches_interp(g, ins)


def test_softmax_is_a_single_kernel_with_three_stages():
    g, ins = tensor_graph(lambda x: gc.softmax(x, dim=1), (8, 33))
    plan = fuse(g)
    assert len(plan.kernels) == 1
    (k,) = plan.kernels
    assert [type(s).__name__ for s in k.stages] == ["Reduce", "Reduce", "Store"]
    assert [s.op for s in k.stages[:2]] == ["max", "sum"]
    assert Reason.SAME_KERNEL in reasons(plan, "max")
    assert not plan.kernels[0].reads()[0].kind == "temp"
    run_matches_interp(g, ins)


def test_softmax_forward_and_backward_fit_two_kernels():
    g, ins = tensor_graph(lambda x: gc.softmax(x, dim=1), (8, 33))
    bg = grad_graph(g)
    plan = fuse(bg)
    assert len(plan.kernels) <= 2
    rng = np.random.default_rng(1)
    run_matches_interp(bg, ins + [rng.standard_normal((8, 33)).astype(np.float32)])


def test_layernorm_is_one_kernel():
    def layernorm(x, w, b):
        return gc.nn.functional.layer_norm(x, (x.shape[-1],), w, b)
    g, ins = tensor_graph(layernorm, (16, 40), (40,), (40,))
    plan = fuse(g)
    assert len(plan.kernels) == 1
    assert [type(s).__name__ for s in plan.kernels[0].stages][-1] == "Store"
    run_matches_interp(g, ins)


def test_layernorm_backward_kernel_count():
    def layernorm(x, w, b):
        return gc.nn.functional.layer_norm(x, (x.shape[-1],), w, b)
    g, ins = tensor_graph(layernorm, (16, 40), (40,), (40,))
    bg = grad_graph(g, wrt=[k for k, n in enumerate(g.inputs) if n.shape != ()])
    plan = fuse(bg)
    # row statistics, the output and dx in one row kernel; dw and db reduce over rows:
    # a second domain, one more kernel.
    assert len(plan.kernels) == 2, explain(bg)
    rng = np.random.default_rng(2)
    run_matches_interp(bg, ins + [rng.standard_normal((16, 40)).astype(np.float32)], 1e-4)


def test_log_softmax_nll_is_at_most_two_kernels():
    def loss(x):
        target = gc.tensor(np.array([1, 0, 3, 2, 2, 1], np.int64))
        return gc.nn.functional.cross_entropy(x, target)
    g, ins = tensor_graph(loss, (6, 5))
    plan = fuse(g)
    assert len(plan.kernels) <= 2, explain(g)
    run_matches_interp(g, ins)
    bg = grad_graph(g)
    assert len(fuse(bg).kernels) <= 3, explain(bg)
    run_matches_interp(bg, ins + [np.array(1.0, np.float32)])


def test_matmul_stays_its_own_kernel_with_epilogue_after():
    g, ins = tensor_graph(lambda x, w, b: (x @ w + b).relu(), (8, 16), (16, 4), (4,))
    plan = fuse(g)
    assert kinds(plan) == ["matmul", "loops"]
    assert reasons(plan, "matmul") == {Reason.OPAQUE}
    run_matches_interp(g, ins)


def test_transposed_operand_becomes_a_blas_flag_not_a_copy():
    g, ins = tensor_graph(lambda x, w: x @ w.t(), (8, 16), (4, 16))
    plan = fuse(g)
    assert kinds(plan) == ["matmul"]
    assert Reason.STRIDED_VIEW in reasons(plan, consumer_op="matmul")
    k = plan.kernels[0]
    assert k.b.buffer.kind == "input" and k.b.strides == (1, 16)
    run_matches_interp(g, ins)


def test_operand_several_matmuls_read_transposed_is_copied_once_row_major():
    """An RNN's h_t @ W_hh^T, once per step: one copy of W^T, read row-major by all."""
    def unrolled(h, w):
        wt = w.t()     # as CSE leaves the graph: one permute node for every step
        for _ in range(3):
            h = (h @ wt).tanh()
        return h
    g, ins = tensor_graph(unrolled, (4, 16), (16, 16))
    plan = fuse(g)
    mms = [k for k in plan.kernels if isinstance(k, K.MatmulKernel)]
    assert len(mms) == 3 and len({id(k.b.buffer) for k in mms}) == 1
    (copy,) = {k.b.buffer for k in mms}
    assert copy.kind == "temp" and all(k.b.strides == (16, 1) for k in mms)
    assert Reason.SHARED_TRANSPOSED in reasons(plan, "permute", "matmul")
    run_matches_interp(g, ins)
    # with one reader the view stays a BLAS transpose flag
    g1, _ = tensor_graph(lambda h, w: (h @ w.t()).tanh() @ w, (4, 16), (16, 16))
    assert Reason.SHARED_TRANSPOSED not in reasons(fuse(g1))


def test_matmul_operand_that_is_computed_is_materialized_with_reason():
    g, ins = tensor_graph(lambda x, w: x.exp() @ w, (8, 16), (16, 4))
    plan = fuse(g)
    assert kinds(plan) == ["loops", "matmul"]
    assert Reason.OPAQUE_OPERAND in reasons(plan, "exp", "matmul")


def test_expensive_value_shared_by_two_kernels_is_computed_once():
    x = inp((6, 7))
    e = op("tanh", op("exp", op("sin", x)))
    r0 = op("sum", e, dims=(0,), keepdim=False)
    r1 = op("sum", e, dims=(1,), keepdim=False)
    g, _ = Graph.from_outputs([r0, r1], input_order=[x])
    plan = fuse(g)
    assert any(r is Reason.SHARED_EXPENSIVE for _, _, _, r in plan.edge_reasons)
    stores = [s for k in plan.kernels for s in k.stages if isinstance(s, K.Store)
              and s.buffer.kind == "temp"]
    assert len(stores) == 1   # tanh(exp(sin(x))) written once, read by both reductions
    run_matches_interp(g, [np.random.default_rng(0).standard_normal((6, 7)).astype(np.float32)])


def test_cheap_value_shared_by_two_kernels_is_recomputed():
    x = inp((6, 7))
    e = op("add", x, x)
    r0 = op("sum", e, dims=(0,), keepdim=False)
    r1 = op("sum", e, dims=(1,), keepdim=False)
    g, _ = Graph.from_outputs([r0, r1], input_order=[x])
    plan = fuse(g)
    assert len(plan.kernels) == 2
    assert all(b.kind != "temp" for k in plan.kernels for b in k.writes())


def test_reduction_read_at_other_points_goes_through_memory():
    x = inp((5, 5))
    s = op("sum", x, dims=(1,), keepdim=False)                 # s[i]
    col = op("expand", op("reshape", s, shape=(1, 5)), shape=(5, 5))   # reads s[j] at (i, j)
    y = op("add", x, col)
    g, _ = Graph.from_outputs([y], input_order=[x])
    plan = fuse(g)
    assert len(plan.kernels) == 2
    assert any(b.kind == "temp" for b in plan.kernels[1].reads())
    run_matches_interp(g, [np.arange(25, dtype=np.float32).reshape(5, 5)])


def test_movement_ops_never_copy():
    x = inp((4, 6, 5))
    y = op("exp", op("reshape", op("permute", op("slice", x, starts=(0, 1, 0),
                                                  stops=(4, 6, 5), steps=(2, 1, 1)),
                                       dims=(2, 1, 0)), shape=(5, 10)))
    g, _ = Graph.from_outputs([y], input_order=[x])
    plan = fuse(g)
    assert len(plan.kernels) == 1
    assert reasons(plan, "permute") == {Reason.VIEW}


def test_flip_is_index_arithmetic_not_a_copy():
    """flip reads its operand at n - 1 - i: fused into the consumer's loop (no temp
    buffer), also inside chains of other movement ops and under a reduction."""
    x = inp((4, 6, 5))
    y = op("exp", op("flip", op("permute", op("flip", x, dims=(0, 2)), dims=(2, 0, 1)),
                     dims=(1,)))
    s = op("sum", op("flip", x, dims=(1,)), dims=(1,), keepdim=False)
    g, _ = Graph.from_outputs([y, s], input_order=[x])
    plan = fuse(g)
    assert reasons(plan, "flip") == {Reason.VIEW}
    assert not any(b.kind == "temp" for k in plan.kernels for b in k.writes())
    # the load of x walks dim 0 backwards: a negative coefficient, no division
    (k,) = [k for k in plan.kernels if any(isinstance(st, K.Store) and st.buffer.shape ==
                                           (5, 4, 6) for st in k.stages)]
    loads = [v for st in k.stages for v in K.walk_values(st.value) if isinstance(v, K.Load)]
    flat = K.linearize(loads[0].index, loads[0].buffer.shape)
    assert any(c < 0 for _, c in flat.terms)
    assert not any(isinstance(a, (K.FloorDiv, K.Mod)) for a, _ in flat.terms)
    a = np.random.default_rng(0).standard_normal((4, 6, 5)).astype(np.float32)
    run_matches_interp(g, [a])
    got = L.compile(g)([a])
    np.testing.assert_allclose(got[0], np.exp(np.flip(np.transpose(a[::-1, :, ::-1],
                                                                   (2, 0, 1)), 1)), rtol=1e-6)
    np.testing.assert_allclose(got[1], a.sum(1), rtol=1e-6)


def test_flipped_matmul_operand_is_stored_once():
    """BLAS takes no negative strides: a matmul operand read through a flip is stored by
    an elementwise kernel (OPAQUE_OPERAND) and the GEMM reads that buffer row-major."""
    a, w = inp((8, 16), "a"), inp((16, 4), "w")
    y = op("matmul", op("flip", a, dims=(1,)), w)
    g, _ = Graph.from_outputs([y], input_order=[a, w])
    plan = fuse(g)
    assert kinds(plan) == ["loops", "matmul"]
    assert Reason.OPAQUE_OPERAND in reasons(plan, "flip", "matmul")
    rng = np.random.default_rng(1)
    av, wv = rng.standard_normal((8, 16)).astype(np.float32), \
        rng.standard_normal((16, 4)).astype(np.float32)
    run_matches_interp(g, [av, wv])
    np.testing.assert_allclose(L.compile(g)([av, wv])[0], av[:, ::-1] @ wv, rtol=1e-5,
                               atol=1e-5)


def test_explain_lists_every_edge_with_a_reason():
    g, _ = tensor_graph(lambda x: gc.softmax(x, dim=1), (4, 6))
    text = explain(g)
    n_edges = sum(len(n.inputs) for n in g.nodes)
    edge_lines = [ln for ln in text.splitlines() if " -> " in ln]
    assert len(edge_lines) == n_edges
    assert "fused plan: 1 kernel(s)" in text
    assert all(("not fused" in ln) or ("fused" in ln) for ln in edge_lines)


def test_kernel_ir_is_backend_neutral():
    import graphc.backends.kernel_ir as kir
    import graphc.passes.fusion as fus
    for mod in (kir, fus):
        src = open(mod.__file__).read()
        assert "llvmlite" not in src and "import llvm" not in src


def test_index_simplification_folds_reshape_division():
    i = K.Var("i", 12)
    idx = K.delinearize(K.lin(i), (3, 4))
    assert K.linearize(idx, (3, 4)) == K.lin(i)
    a, b = K.Var("a", 3), K.Var("b", 4)
    flat = K.linearize((K.lin(a), K.lin(b)), (3, 4))
    assert K.floordiv(flat, 4) == K.lin(a) and K.mod(flat, 4) == K.lin(b)


def _eval_index(e, env):
    """Value of an index expression at the point `env` (Var name -> int)."""
    if isinstance(e, K.Lin):
        return e.const + sum(c * _eval_index(a, env) for a, c in e.terms)
    if isinstance(e, K.Var):
        return env[e.name]
    if isinstance(e, K.FloorDiv):
        return _eval_index(e.x, env) // e.c
    if isinstance(e, K.Mod):
        return _eval_index(e.x, env) % e.c
    raise TypeError(e)


@pytest.mark.parametrize("shape,src", [
    ((64, 4, 128), (64, 512)), ((64, 512), (64, 4, 128)), ((6, 4), (2, 3, 4)),
    ((4, 6), (2, 3, 4)), ((2, 1, 6), (3, 1, 4, 1)), ((12,), (3, 4)), ((3, 4), (12,)),
    ((1, 6, 1), (6,)), ((6,), (1, 6, 1)), ((5, 1, 1), (5,)), ((), (1, 1)), ((4, 9), (6, 6)),
    ((0, 3), (3, 0)),
])
def test_reshape_index_groups_dims_and_matches_row_major_order(shape, src):
    """Each point of a reshape reads the operand element numpy's reshape would; the
    index of a group of dims the reshape leaves alone (the 64 above) stays that dim's
    variable, with no division."""
    from graphc.passes.fusion import _reshape_index
    vs = [K.Var(f"v{d}", n) for d, n in enumerate(shape)]
    idx = _reshape_index(tuple(K.lin(v) for v in vs), shape, src)
    assert len(idx) == len(src)
    for point in np.ndindex(*shape):
        env = {v.name: p for v, p in zip(vs, point)}
        got = tuple(_eval_index(e, env) for e in idx)
        want = np.unravel_index(np.ravel_multi_index(point, shape), src) if src else ()
        assert got == tuple(int(w) for w in want), (point, idx)
    if shape[:1] == src[:1] == (64,):
        assert idx[0] == K.lin(vs[0])


def test_one_index_per_row_scatter_add_fuses_as_elementwise():
    x = inp((6, 5))
    idx = inp((6, 1), "idx", dt.int64)
    src = inp((6, 1), "src")
    y = op("exp", op("scatter_add", x, idx, src, dim=1))
    g, _ = Graph.from_outputs([y], input_order=[x, idx, src])
    plan = fuse(g)
    assert len(plan.kernels) == 1 and plan.kernels[0].parallel
    rng = np.random.default_rng(3)
    ins = [rng.standard_normal((6, 5)).astype(np.float32), rng.integers(-5, 5, (6, 1)),
           rng.standard_normal((6, 1)).astype(np.float32)]
    run_matches_interp(g, ins)
    with pytest.raises(IndexError):
        L.compile(g)([ins[0], np.full((6, 1), 5), ins[2]])


def test_column_reduction_sweeps_memory_in_order():
    x = inp((64, 48))
    db = op("sum", x, dims=(0,), keepdim=False)              # a bias gradient
    g, _ = Graph.from_outputs([db, op("max", x, dims=(0,), keepdim=True)], input_order=[x])
    plan = fuse(g)
    (k,) = plan.kernels
    assert k.outer == () and [s.accumulate for s in k.stages] == ["", "sum", "", "max"]
    inner = k.stages[1].inner
    assert [v.extent for v in inner] == [64, 48]             # rows outer, columns inner
    run_matches_interp(g, [np.random.default_rng(4).standard_normal((64, 48))
                           .astype(np.float32)], 1e-5)


def _concat_piece_counts(graph):
    from graphc.passes.fusion import lower_convolutions
    return [len(n.inputs) for n in lower_convolutions(graph).nodes if n.op == "concat"]


@pytest.mark.parametrize("stride,dilation,groups", [((1, 1), (1, 1), 1), ((2, 1), (1, 2), 2)])
def test_im2col_concatenates_over_the_fewer_of_taps_and_positions(stride, dilation, groups):
    # A weight gradient is a convolution whose kernel is the whole output map: 49 taps
    # here. Concatenating per tap would inline a 49-deep select chain per element;
    # concatenating per output position needs only Ho*Wo pieces.
    x = inp((2, 4, 9, 9))
    big = inp((6, 4 // groups, 7, 6), "w")
    small = inp((6, 4 // groups, 2, 2), "v")
    attrs = dict(stride=stride, padding=(1, 1), dilation=dilation, groups=groups)
    y_big = op("conv2d", x, big, **attrs)
    y_small = op("conv2d", x, small, **attrs)
    g, _ = Graph.from_outputs([y_big, y_small], input_order=[x, big, small])
    positions = y_big.shape[2] * y_big.shape[3]
    assert positions < 7 * 6 and y_small.shape[2] * y_small.shape[3] > 2 * 2
    assert sorted(_concat_piece_counts(g)) == sorted([positions, 4])
    rng = np.random.default_rng(5)
    ins = [rng.standard_normal(s).astype(np.float32) for s in (x.shape, big.shape, small.shape)]
    run_matches_interp(g, ins, 1e-4)


def test_conv_weight_gradient_has_no_deep_select_chain():
    # The weight gradient of a 3x3 conv over a 12x12 map is a conv with a 12x12 kernel
    # and a 3x3 output: 9 concat pieces (per output position), not 144 (per tap).
    x, w = inp((4, 2, 12, 12)), inp((3, 2, 3, 3), "w")
    y = op("sum", op("conv2d", x, w, stride=(1, 1), padding=(1, 1), dilation=(1, 1),
                     groups=1), dims=(0, 1, 2, 3), keepdim=False)
    g, _ = Graph.from_outputs([y], input_order=[x, w])
    bg = grad_graph(g, wrt=[1])
    assert any(n.op == "conv2d" and n.inputs[1].shape[2:] == (12, 12) for n in bg.nodes)
    assert max(_concat_piece_counts(bg)) == 9
    rng = np.random.default_rng(6)
    ins = [rng.standard_normal(n.shape).astype(np.float32) for n in bg.inputs]
    run_matches_interp(bg, ins, 1e-4)


def test_materialized_concat_is_one_store_stage_per_piece():
    """No element selects among the pieces: each piece is copied by its own stage, over
    its own extent along the concat dim, with the output offset in the store index."""
    a, b, c = inp((5, 3, 7)), inp((5, 1, 7), "b"), inp((5, 4, 7), "c")
    cat = op("concat", op("exp", a), b, c, dim=1)
    g, _ = Graph.from_outputs([cat], input_order=[a, b, c])
    (kern,) = fuse(g).kernels
    assert len(kern.stages) == 3
    assert [tuple(v.extent for v in st.inner) for st in kern.stages] == [(3, 7), (7,), (4, 7)]
    for st in kern.stages:
        assert not any(isinstance(v, K.Compute) and v.op == "where"
                       for v in K.walk_values(st.value))
    rng = np.random.default_rng(7)
    run_matches_interp(g, [rng.standard_normal(s).astype(np.float32)
                           for s in (a.shape, b.shape, c.shape)], 1e-6)


def test_concat_along_last_dim_keeps_rows_outer():
    a, b = inp((64, 10)), inp((64, 5), "b")
    g, _ = Graph.from_outputs([op("concat", a, b, dim=1)], input_order=[a, b])
    (kern,) = fuse(g).kernels
    assert [v.extent for v in kern.outer] == [64]
    assert [tuple(v.extent for v in st.inner) for st in kern.stages] == [(10,), (5,)]
    rng = np.random.default_rng(8)
    run_matches_interp(g, [rng.standard_normal(s).astype(np.float32) for s in ((64, 10), (64, 5))], 0)



def _has_select(kern):
    return any(isinstance(v, (K.InRange,)) or (isinstance(v, K.Compute) and v.op == "where")
               for st in kern.stages for v in K.walk_values(st.value))


@pytest.mark.parametrize("row,interior", [(1, 0), (6, 0), (4, 1)])
def test_index_that_never_reaches_the_padded_value_folds_to_zero(row, interior):
    """Step t of an unrolled RNN reads the gradient of its output from a sequence that
    is zero except at another step (a pad): that read is the constant 0, not a select on
    a range check, so every such step gets the same kernel body."""
    x, y = inp((3, 4)), inp((4,), "y")
    padded = op("pad", op("exp", x), low=[3, 0], high=[1, 0], interior=[interior, 0])
    one = op("slice", padded, starts=[row, 0], stops=[row + 1, 4], steps=[1, 1])
    out = op("add", op("reshape", one, shape=[4]), y)
    g, _ = Graph.from_outputs([out], input_order=[x, y])
    (kern,) = fuse(g).kernels
    assert not _has_select(kern)
    assert not any(b.name == "in0" for b in kern.reads())   # x is never read
    rng = np.random.default_rng(3)
    run_matches_interp(g, [rng.standard_normal(s).astype(np.float32) for s in ((3, 4), (4,))], 0)


def test_index_inside_one_concat_piece_reads_only_that_piece():
    a, b = inp((2, 5)), inp((3, 5), "b")
    cat = op("concat", op("exp", a), op("neg", b), dim=0)
    out = op("slice", cat, starts=[3, 0], stops=[5, 5], steps=[1, 1])
    g, _ = Graph.from_outputs([out], input_order=[a, b])
    (kern,) = fuse(g).kernels
    assert not _has_select(kern)
    assert [buf.name for buf in kern.reads()] == ["in1"]
    rng = np.random.default_rng(4)
    run_matches_interp(g, [rng.standard_normal(s).astype(np.float32) for s in ((2, 5), (3, 5))], 0)


def _lstm_step_graph(seq):
    """The graph of an LSTM's forward and backward over `seq` steps (as realized)."""
    from graphc.passes.pipeline import optimize
    gc.manual_seed(0)
    lstm = gc.nn.LSTM(4, 8)
    x = gc.tensor(np.random.default_rng(0).standard_normal((seq, 2, 4)).astype(np.float32))
    out, _ = lstm(x)
    loss = (out[-1] * out[-1]).sum()
    loss.backward()
    outs = [loss._node] + [p.grad._node for p in lstm.parameters()]
    g, _ = Graph.from_outputs(outs, boundary=lambda n: n.data is not None)
    return optimize(g)


def test_unrolled_rnn_steps_share_kernel_bodies():
    """Compile time of an unrolled recurrence: LLVM optimises one body per distinct
    loop nest, so doubling the sequence adds kernels but (almost) no new bodies. The
    first and last steps differ from the others, and fusion does not always group the
    backward of a step the same way (a few more bodies), but the count stays bounded:
    before constant pad reads folded, 12 more steps made some 20 more bodies."""
    import re
    from graphc.passes.memory import plan_memory

    def bodies(seq):
        plan = fuse(_lstm_step_graph(seq))
        memory = plan_memory(plan.kernels, plan.input_buffers, plan.output_buffers)
        module, _ = L.build_module(plan, memory)
        text = str(module)
        return (len(re.findall(r'^define .*_body"', text, re.M)),
                len(re.findall(r'^define void @"graphc_kernel', text, re.M)))
    (b12, k12), (b24, k24) = bodies(12), bodies(24)
    assert k24 >= k12 + 4 * 12                 # the steps are unrolled: more kernels...
    assert b24 - b12 <= (k24 - k12) // 5       # ...most of them over existing bodies

@pytest.mark.parametrize("kernel_hw", [(3, 3), (12, 12)])
def test_conv_patch_matrix_is_a_strided_gemm_operand(kernel_hw):
    """im2col writes the patch matrix once (the concat kernel) and the GEMM reads it in
    place, for taps (3x3 kernel) and positions (kernel as large as the map) alike."""
    x, w = inp((4, 2, 12, 12)), inp((3, 2) + kernel_hw, "w")
    y = op("conv2d", x, w, stride=(1, 1), padding=(1, 1), dilation=(1, 1), groups=1)
    g, _ = Graph.from_outputs([y], input_order=[x, w])
    plan = fuse(g)
    (mm,) = [k for k in plan.kernels if isinstance(k, K.MatmulKernel)]
    cat = [n for n in plan.graph.nodes if n.op == "concat"]
    patches = plan.buffers[id(cat[0])]
    # taps: weight-matrix @ patches (output channels as rows); positions: patches @ weight
    operand = mm.b if kernel_hw == (3, 3) else mm.a
    assert len(cat) == 1 and operand.buffer is patches
    assert operand.strides[-1] == 1          # read in place, no transposed copy
    assert not any(r is Reason.OPAQUE_OPERAND and p is not cat[0]
                   for p, c, fused, r in plan.edge_reasons if c.op == "matmul" and p.op != "input"
                   and p.shape == operand.shape)
    rng = np.random.default_rng(9)
    run_matches_interp(g, [rng.standard_normal(s).astype(np.float32) for s in (x.shape, w.shape)],
                       1e-4)


# ----------------------------------------------------------------------------- small reductions

@pytest.mark.parametrize("reduce_op,window", [("max", (2, 2)), ("sum", (3, 3)), ("min", (2, 3)),
                                              ("prod", (2, 1))])
def test_reduction_over_a_small_window_is_unrolled_into_elementwise_code(reduce_op, window):
    """A pooling window's max (or an average pool's sum) over a few points becomes an
    elementwise kernel, its op chained over the points in loop order: LLVM vectorises
    the outer loop then. NaN propagates as the loop's max does."""
    kh, kw = window
    x = inp((3, 4, 6 * kh, 5 * kw))
    tiles = op("reshape", x, shape=(3, 4, 6, kh, 5, kw))
    g, _ = Graph.from_outputs([op(reduce_op, tiles, dims=(3, 5), keepdim=False)],
                              input_order=[x])
    plan = fuse(g)
    (k,) = plan.kernels
    assert not any(isinstance(st, K.Reduce) for st in k.stages)
    rng = np.random.default_rng(0)
    a = rng.standard_normal(x.shape).astype(np.float32)
    a[0, 0, 0, 0] = np.nan
    want = interp.compile(g)([a])
    got = L.compile(g)([a])
    np.testing.assert_allclose(got[0], want[0], rtol=1e-5, atol=1e-6, equal_nan=True)
    assert np.isnan(got[0][0, 0, 0, 0])


def test_argmax_and_large_reductions_stay_loops():
    cases = [op("argmax", inp((3, 4, 6, 2)), dim=3, keepdim=False),  # NaN rule: not vectorised
             op("sum", inp((3, 17)), dims=(1,), keepdim=False)]           # over 16 points
    for out in cases:
        g, _ = Graph.from_outputs([out], input_order=list(out.inputs))
        plan = fuse(g)
        assert any(isinstance(st, K.Reduce) for k in plan.kernels for st in k.stages), out.op
