"""passes/lowering.py: add trees of matmuls and of disjoint pads become one op.

Before/after graphs in the style of tests/test_fusion.py, then the fused plan run on
the LLVM backend against the interpreter (summation order changes: reduction tolerance).
"""
from __future__ import annotations


import numpy as np
import pytest

from graphc.backends import interp
from graphc.backends import kernel_ir as K
from graphc.backends import llvm as L
from graphc.ir.graph import Graph
from graphc.passes.autodiff import grad_graph
from graphc.passes.fusion import fuse
from graphc.passes.lowering import combine_sums, fold_matmul_updates, transpose_matmul_outputs
from graphc.testing import inp, op
from graphc.ir import dtypes as dt


# compiled kernels go to a cache directory of this module's own (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("private_cache")


def make(outputs, inputs):
    g, _ = Graph.from_outputs(outputs, input_order=inputs)
    return g


def ops(g):
    return [n.op for n in g.nodes if n.op != "input"]


def close_to_interp(g, rtol=1e-5, seed=0):
    rng = np.random.default_rng(seed)
    ins = [rng.standard_normal(n.shape).astype(n.dtype.np) for n in g.inputs]
    want = interp.compile(g)(ins)
    got = L.compile(g)(ins)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=rtol)


def test_sum_of_matmuls_is_one_matmul_over_a_longer_k():
    a = [inp((6, 4), dt.float32, f"a{t}") for t in range(5)]
    b = [inp((4, 3), dt.float32, f"b{t}") for t in range(5)]
    total = op("matmul", a[0], b[0])
    for t in range(1, 5):
        total = op("add", total, op("matmul", a[t], b[t]))
    g = make([total], a + b)
    after = combine_sums(g)
    assert ops(after).count("matmul") == 1 and "add" not in ops(after)
    (mm,) = [n for n in after.nodes if n.op == "matmul"]
    assert mm.inputs[0].shape == (6, 20) and mm.inputs[1].shape == (20, 3)
    assert sum(isinstance(k, K.MatmulKernel) for k in fuse(g).kernels) == 1
    close_to_interp(g)


def test_combined_matmuls_are_concatenated_in_graph_order():
    """Reverse mode lists an unrolled RNN's weight-gradient terms from the last step
    back; the combined operands follow the order their values were made in, so they
    match the other stacks of the same steps."""
    a = [inp((6, 4), dt.float32, f"a{t}") for t in range(4)]
    b = [inp((4, 3), dt.float32, f"b{t}") for t in range(4)]
    total = op("matmul", a[3], b[3])
    for t in (2, 1, 0):
        total = op("add", total, op("matmul", a[t], b[t]))
    g = make([total], a + b)
    (mm,) = [n for n in combine_sums(g).nodes if n.op == "matmul"]
    assert [x.attrs["name"] for x in mm.inputs[0].inputs] == ["a0", "a1", "a2", "a3"]
    assert [x.attrs["name"] for x in mm.inputs[1].inputs] == ["b0", "b1", "b2", "b3"]
    close_to_interp(g)


def test_a_constant_among_transposed_terms_keeps_the_stack_untransposed():
    """An RNN's first hidden state is a zero splat: its transpose is folded away, so the
    terms are not all transposes; the stack is still built untransposed (a row stack
    read through a transpose flag, not a transposing copy)."""
    h = [inp((6, 4), dt.float32, f"h{t}") for t in range(3)]
    g_ = [inp((6, 3), dt.float32, f"g{t}") for t in range(4)]
    zero = op("expand", op("reshape", op("const", value=0.0, dtype=dt.float32), shape=(1, 1)),
              shape=(4, 6))
    firsts = [zero] + [op("permute", x, dims=(1, 0)) for x in h]
    total = op("matmul", firsts[0], g_[0])
    for t in range(1, 4):
        total = op("add", total, op("matmul", firsts[t], g_[t]))
    g = make([total], h + g_)
    (mm,) = [n for n in combine_sums(g).nodes if n.op == "matmul"]
    a = mm.inputs[0]
    assert a.op == "permute" and a.inputs[0].op == "concat"
    assert a.inputs[0].shape == (24, 4)          # rows of h: the untransposed stack
    close_to_interp(g)


def test_transposed_terms_are_concatenated_before_the_transpose():
    """The RNN weight gradient: sum_t h_t^T @ g_t. The h_t are stacked untransposed
    (a copy along rows) and the GEMM reads the stack through a transpose flag."""
    h = [inp((8, 5), dt.float32, f"h{t}") for t in range(4)]
    gs = [inp((8, 7), dt.float32, f"g{t}") for t in range(4)]
    terms = [op("matmul", op("permute", h[t], dims=(1, 0)), gs[t]) for t in range(4)]
    total = terms[0]
    for t in terms[1:]:
        total = op("add", total, t)
    g = make([total], h + gs)
    after = combine_sums(g)
    (mm,) = [n for n in after.nodes if n.op == "matmul"]
    assert mm.inputs[0].op == "permute" and mm.inputs[0].inputs[0].op == "concat"
    assert mm.inputs[0].inputs[0].shape == (32, 5)
    plan = fuse(g)
    (kern,) = [k for k in plan.kernels if isinstance(k, K.MatmulKernel)]
    assert kern.a.strides[-2:] == (1, 5)    # transposed view of the [32, 5] stack
    close_to_interp(g)


def test_other_terms_stay_and_shapes_must_agree():
    a, b, c = inp((3, 4), dt.float32, "a"), inp((4, 2), dt.float32, "b"), inp((3, 2), dt.float32, "c")
    a2, b2 = inp((3, 6), dt.float32, "a2"), inp((6, 2), dt.float32, "b2")
    total = op("add", op("add", op("matmul", a, b), c), op("matmul", a2, b2))
    g = make([total], [a, b, c, a2, b2])
    after = combine_sums(g)
    assert ops(after).count("matmul") == 1 and ops(after).count("add") == 1
    close_to_interp(g)


def test_a_matmul_used_elsewhere_is_left_alone():
    a, b = inp((3, 4), dt.float32, "a"), inp((4, 2), dt.float32, "b")
    m1, m2 = op("matmul", a, b), op("matmul", op("neg", a), b)
    g = make([op("add", m1, m2), m1], [a, b])
    assert combine_sums(g) is g


def test_unbind_gradient_is_a_concat_not_a_select_chain():
    """Slicing a [T, N, C] tensor into T steps: the gradient is the sum of T pads, one
    slab each; it becomes a concat of the slice gradients."""
    x = inp((6, 4, 5), dt.float32)
    steps = [op("reshape", op("slice", x, starts=(t, 0, 0), stops=(t + 1, 4, 5),
                              steps=(1, 1, 1)), shape=(4, 5)) for t in range(6)]
    loss = steps[0]
    for t, s in enumerate(steps[1:], start=1):
        loss = op("add", loss, op("mul", s, op("exp", s)) if t % 2 else s)
    y = op("sum", loss, dims=(0, 1), keepdim=False)
    bg = grad_graph(make([y], [x]), wrt=[0])
    pads = sum(n.op == "pad" for n in bg.nodes)
    assert pads >= 6
    after = combine_sums(bg)
    assert not any(n.op == "pad" for n in after.nodes)
    assert any(n.op == "concat" and len(n.inputs) == 6 for n in after.nodes)
    close_to_interp(bg)


def test_pads_with_gaps_get_zero_pieces_and_overlaps_are_kept():
    a, b = inp((2, 3), dt.float32, "a"), inp((1, 3), dt.float32, "b")
    pa = op("pad", a, low=(0, 0), high=(4, 0), interior=(0, 0))       # rows 0-1 of 6
    pb = op("pad", b, low=(4, 0), high=(1, 0), interior=(0, 0))       # row 4 of 6
    g = make([op("add", pa, pb)], [a, b])
    after = combine_sums(g)
    (cat,) = [n for n in after.nodes if n.op == "concat"]
    assert [p.shape[0] for p in cat.inputs] == [2, 2, 1, 1]
    close_to_interp(g, rtol=0)
    c = inp((3, 3), dt.float32, "c")
    pc = op("pad", c, low=(1, 0), high=(2, 0), interior=(0, 0))       # rows 1-3: overlaps a
    g2 = make([op("add", pa, pc)], [a, c])
    assert combine_sums(g2) is g2


def test_bias_gradient_with_its_update_sweeps_memory_in_order():
    """A column reduction followed by an optimiser-style update of its result: one
    serial sweep in memory order, then the update over the kept points."""
    g_out = inp((64, 32), dt.float32, "g")
    bias = inp((32,), dt.float32, "bias")
    grad = op("sum", g_out, dims=(0,), keepdim=False)
    lr = op("expand", op("reshape", op("const", value=0.1, dtype=dt.float32), shape=(1,)),
            shape=(32,))
    new_bias = op("sub", bias, op("mul", lr, grad))
    g = make([grad, new_bias], [g_out, bias])
    plan = fuse(g)
    (kern,) = [k for k in plan.kernels if not isinstance(k, K.MatmulKernel)]
    assert not kern.parallel and not kern.outer
    assert [st.accumulate for st in kern.stages] == ["", "sum", ""]
    close_to_interp(g)


def test_bias_update_without_its_gradient_as_output_still_sweeps_in_memory_order():
    """The same update when the gradient is not kept (a compiled step that does not
    return .grad): the sum goes through a scratch buffer rather than striding down each
    column (128x512: 0.15 ms as strided loops, one vectorised sweep now)."""
    g_out = inp((64, 32), dt.float32, "g")
    bias = inp((32,), dt.float32, "bias")
    grad = op("sum", g_out, dims=(0,), keepdim=False)
    lr = op("expand", op("reshape", op("const", value=0.1, dtype=dt.float32), shape=(1,)),
            shape=(32,))
    g = make([op("sub", bias, op("mul", lr, grad))], [g_out, bias])
    (kern,) = fuse(g).kernels
    assert not kern.parallel and not kern.outer
    assert [st.accumulate for st in kern.stages] == ["", "sum", ""]
    scratch = kern.stages[0].buffer
    assert scratch.kind == "temp" and scratch.shape == (32,)
    assert kern.stages[1].buffer is scratch and scratch in kern.reads()
    close_to_interp(g)


def test_matmul_read_only_transposed_is_computed_transposed():
    """The weight gradient of x @ w.t(): (x^T @ g)^T becomes g^T @ x, so the optimiser
    update and the .grad output read it in memory order."""
    x, gy = inp((16, 12), dt.float32, "x"), inp((16, 5), dt.float32, "gy")
    dw_t = op("matmul", op("permute", x, dims=(1, 0)), gy)            # [12, 5]
    dw = op("permute", dw_t, dims=(1, 0))                              # [5, 12]
    w = inp((5, 12), dt.float32, "w")
    step = op("sub", w, op("mul", dw, dw))
    g = make([dw, step], [x, gy, w])
    after = transpose_matmul_outputs(g)
    (mm,) = [n for n in after.nodes if n.op == "matmul"]
    assert mm.shape == (5, 12) and mm.inputs[1] is after.inputs[0]
    assert not any(n.op == "permute" and n.inputs[0] is mm for n in after.nodes)
    close_to_interp(g)


def test_matmul_read_directly_somewhere_keeps_its_layout():
    a, b = inp((4, 3), dt.float32, "a"), inp((3, 6), dt.float32, "b")
    m = op("matmul", a, b)
    g = make([op("permute", m, dims=(1, 0)), op("neg", m)], [a, b])
    assert transpose_matmul_outputs(g) is g
    g2 = make([op("permute", m, dims=(1, 0)), m], [a, b])
    assert transpose_matmul_outputs(g2) is g2


# ------------------------------------------------------------------ fold_matmul_updates

def _splat(s, shape):
    """The 0-d `s` broadcast to `shape`, as the tensor API writes a scalar operand."""
    return op("expand", op("reshape", s, shape=(1,) * len(shape)), shape=shape)


def _update_graph(build, dtype=dt.float32):
    """A graph whose one output is `build(mm, e, e2, s, t)`: mm = x^T @ g (a weight
    gradient), e and e2 addends of its shape, s and t 0-d scalars."""
    x, g = inp((7, 5), dtype, "x"), inp((7, 3), dtype, "g")
    e, e2 = inp((5, 3), dtype, "e"), inp((5, 3), dtype, "e2")
    s, t = inp((), dtype, "s"), inp((), dtype, "t")
    mm = op("matmul", op("permute", x, dims=(1, 0)), g)
    return make([build(mm, e, e2, lambda v: _splat(v, (5, 3)), s, t)],
                [x, g, e, e2, s, t])


# every kind of step, with the chain on either side of a sub and of an add
_UPDATES = {
    "w - s*mm (SGD)": lambda mm, e, e2, sp, s, t: op("sub", e, op("mul", sp(s), mm)),
    "mm*s + e": lambda mm, e, e2, sp, s, t: op("add", op("mul", mm, sp(s)), e),
    "e + mm": lambda mm, e, e2, sp, s, t: op("add", e, mm),
    "mm - e": lambda mm, e, e2, sp, s, t: op("sub", mm, e),
    "-mm + e": lambda mm, e, e2, sp, s, t: op("add", op("neg", mm), e),
    "t*(e - s*(mm + e2)) (momentum-like)": lambda mm, e, e2, sp, s, t: op(
        "mul", sp(t), op("sub", e, op("mul", sp(s), op("add", mm, e2)))),
    "e - (mm - e2)": lambda mm, e, e2, sp, s, t: op("sub", e, op("sub", mm, e2)),
    "mu*buf + (1-d)*mm": lambda mm, e, e2, sp, s, t: op(
        "add", op("mul", e, sp(t)), op("mul", mm, sp(op("sub", op("const", value=1.0,
                                                                  dtype=s.dtype), s)))),
}


@pytest.mark.parametrize("dtype", [dt.float32, dt.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("name", list(_UPDATES))
def test_a_linear_update_of_a_matmul_is_one_accumulating_gemm(name, dtype):
    g = _update_graph(_UPDATES[name], dtype)
    after = fold_matmul_updates(g)
    assert "matmul" not in ops(after) and ops(after).count("addmm") == 1
    rng = np.random.default_rng(1)
    ins = [rng.standard_normal(n.shape).astype(n.dtype.np) for n in g.inputs]
    want = interp.compile(g)(ins)[0]
    np.testing.assert_allclose(interp.compile(after)(ins)[0], want, rtol=1e-5, atol=1e-5)
    (gemm,) = [k for k in fuse(g).kernels if isinstance(k, K.MatmulKernel)]
    assert gemm.accumulate
    np.testing.assert_allclose(L.compile(g)(ins)[0], want, rtol=1e-5, atol=1e-5)


def test_sgd_update_keeps_no_gradient_and_no_update_kernel():
    """w - lr * (x^T @ g): the addend kernel copies w into the output, the GEMM adds
    -lr times the product (alpha evaluated from the lr input), nothing else runs."""
    g = _update_graph(_UPDATES["w - s*mm (SGD)"])
    kernels = fuse(g).kernels
    assert [type(k).__name__ for k in kernels] == ["Kernel", "MatmulKernel"]
    copy, gemm = kernels
    assert gemm.out is copy.writes()[0] and gemm.out.kind == "output"
    assert "neg(in4[])" in repr(gemm.alpha) and "+=" in str(gemm)


def test_only_an_output_update_is_folded():
    """Inside a graph the sum is inlined into its reader (relu(x @ w + b): b is read in
    the relu's kernel); a matmul read twice, or kept as an output, stays a matmul."""
    x, w, b = inp((4, 6), dt.float32, "x"), inp((6, 3), dt.float32, "w"), \
        inp((4, 3), dt.float32, "b")
    mm = op("matmul", x, w)
    inner = make([op("relu", op("add", mm, b))], [x, w, b])
    assert fold_matmul_updates(inner) is inner
    twice = make([op("add", mm, b), op("mul", mm, b)], [x, w, b])
    assert fold_matmul_updates(twice) is twice
    kept = make([op("add", mm, b), mm], [x, w, b])
    assert fold_matmul_updates(kept) is kept
    by_tensor = make([op("mul", op("add", mm, b), b)], [x, w, b])   # not a scalar
    assert fold_matmul_updates(by_tensor) is by_tensor


def test_half_precision_products_are_not_folded():
    """A float16/bfloat16 product is rounded to its dtype before it is added."""
    for dtype in (dt.float16, dt.bfloat16):
        g = _update_graph(_UPDATES["e + mm"], dtype)
        assert fold_matmul_updates(g) is g


def test_folded_update_with_an_empty_k_leaves_the_addend():
    x, g = inp((0, 5), dt.float32, "x"), inp((0, 3), dt.float32, "g")
    w = inp((5, 3), dt.float32, "w")
    mm = op("matmul", op("permute", x, dims=(1, 0)), g)
    graph = make([op("sub", w, mm)], [x, g, w])
    assert "addmm" in ops(fold_matmul_updates(graph))
    ins = [np.zeros((0, 5), np.float32), np.zeros((0, 3), np.float32),
           np.arange(15, dtype=np.float32).reshape(5, 3)]
    np.testing.assert_array_equal(L.compile(graph)(ins)[0], ins[2])
