"""The sorting primitive (`argsort` IR op) and torch's sort/argsort/topk/msort/kthvalue/
median/nanmedian built on it: values and indices against torch, gradients against torch
and finite differences, the LLVM sort kernel and the Triton sort kernels (in Triton's
interpreter) against the reference interpreter, ONNX export through onnxruntime,
graphc.compile, and a vocabulary-sized row (the kernel is O(n log n))."""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")   # before the first `import triton`

import time  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

import graphc as gc  # noqa: E402
from conftest import numerical_grad, tensor_graph, triton_interpreter  # noqa: E402
from graphc.backends import interp, kernel_ir as K  # noqa: E402
from graphc.backends import llvm as L  # noqa: E402
from graphc.backends.triton import configs as C  # noqa: E402
from graphc.ir.parser import parse  # noqa: E402
from graphc.ir.printer import print_graph  # noqa: E402
from graphc.passes.fusion import fuse  # noqa: E402

NAN, INF = float("nan"), float("inf")
THIS_FILE = "test_sort.py"

NP_DTYPES = {"float32": np.float32, "float64": np.float64, "int32": np.int32,
             "int64": np.int64, "bool": np.bool_, "float16": np.float16,
             "uint8": np.uint8}


def sample(shape, dtype, rng, special=True):
    """Values with many ties; floats also NaN, +-inf, -0.0 and 0.0 where there is room."""
    x = rng.integers(-3, 4, size=shape)
    if dtype == "bool":
        return (x > 0)
    if dtype == "uint8":
        return (x + 3).astype(np.uint8)
    x = x.astype(NP_DTYPES[dtype])
    if NP_DTYPES[dtype]().dtype.kind == "f":
        x = x * 0.5
        flat = x.reshape(-1)
        if special and flat.size >= 8:
            pos = rng.permutation(flat.size)[:8]
            flat[pos] = [NAN, NAN, INF, -INF, -0.0, 0.0, -0.0, NAN]
    return x


def same(a, b):
    """Equal values, NaNs equal, and the sign of zero too."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    np.testing.assert_array_equal(a, b)
    if a.dtype.kind == "f":
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))


def same_up_to_tie(a, b):
    """Equal values, NaNs equal; -0.0 and 0.0 tie, and which of the two torch's partial
    sort picks is unspecified."""
    a, b = np.asarray(a), np.asarray(b)
    assert a.shape == b.shape and a.dtype == b.dtype, (a.shape, a.dtype, b.shape, b.dtype)
    np.testing.assert_array_equal(a, b)


def tt(x):
    return torch.from_numpy(np.array(x))


# ============================================================================ sort / argsort

SHAPES_DIMS = [((17,), 0), ((5, 9), 1), ((5, 9), 0), ((5, 9), -1), ((3, 4, 6), 0),
               ((3, 4, 6), 1), ((3, 4, 6), 2), ((4, 1), 1), ((1, 4), 0), ((0, 5), 1),
               ((5, 0), 1), ((0,), 0), ((), 0), ((), -1)]


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64", "bool", "float16",
                                   "uint8"])
@pytest.mark.parametrize("shape,dim", SHAPES_DIMS)
@pytest.mark.parametrize("descending", [False, True])
def test_sort_and_argsort_match_torch(dtype, shape, dim, descending, rng):
    x = sample(shape, dtype, rng)
    want = torch.sort(tt(x), dim=dim, descending=descending, stable=True)
    got = gc.sort(gc.tensor(x), dim, descending)
    assert type(got).__name__ == "sort" and got._fields == ("values", "indices")
    same(got.values.numpy(), want.values.numpy())
    same(got.indices.numpy(), want.indices.numpy())
    # torch's default (stable=False) may order ties otherwise; graphc is always stable
    same(gc.argsort(gc.tensor(x), dim=dim, descending=descending).numpy(),
         want.indices.numpy())
    same(gc.sort(gc.tensor(x), dim, descending).values.numpy(),
         torch.sort(tt(x), dim=dim, descending=descending).values.numpy())
    # and the Tensor methods
    m = gc.tensor(x).sort(dim, descending=descending, stable=True)
    same(m.indices.numpy(), want.indices.numpy())
    same(gc.tensor(x).argsort(dim, descending).numpy(), want.indices.numpy())


def test_nan_infinities_and_signed_zeros_order_as_torch():
    x = np.array([1.0, NAN, 0.0, -0.0, 1.0, -INF, NAN, INF, 1.0, -0.0], np.float32)
    for desc in (False, True):
        want = torch.sort(tt(x), descending=desc)
        got = gc.sort(gc.tensor(x), descending=desc)
        same(got.indices.numpy(), want.indices.numpy())
        same(got.values.numpy(), want.values.numpy())
    # NaN last ascending, first descending; ties (the 1.0s, the zeros) in index order
    assert gc.argsort(gc.tensor(x)).tolist() == [5, 2, 3, 9, 0, 4, 8, 7, 1, 6]
    assert gc.argsort(gc.tensor(x), descending=True).tolist() == [1, 6, 7, 0, 4, 8, 2, 3, 9, 5]


@pytest.mark.parametrize("view", ["transpose", "step-slice", "expand", "permute3"])
def test_non_contiguous_inputs(view, rng):
    base = sample((6, 10), "float32", rng)
    views = {"transpose": lambda t: t.t(), "step-slice": lambda t: t[1::2, ::3],
             "expand": lambda t: t[:1].expand(4, 10),
             "permute3": lambda t: t.reshape(2, 3, 10).permute(2, 0, 1)}
    for dim in range(-1, views[view](tt(base)).ndim):
        for desc in (False, True):
            want = torch.sort(views[view](tt(base)), dim=dim, descending=desc, stable=True)
            got = gc.sort(views[view](gc.tensor(base)), dim, desc)
            same(got.values.numpy(), want.values.numpy())
            same(got.indices.numpy(), want.indices.numpy())


def test_msort(rng):
    x = sample((7, 3), "float64", rng)
    same(gc.msort(gc.tensor(x)).numpy(), torch.msort(tt(x)).numpy())
    same(gc.tensor(x).msort().numpy(), torch.msort(tt(x)).numpy())


# ============================================================================ topk

@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
@pytest.mark.parametrize("largest", [True, False])
def test_topk_every_k(dtype, largest, rng):
    tied = sample((4, 9), dtype, rng)
    distinct = rng.permutation(36).reshape(4, 9).astype(NP_DTYPES[dtype])
    for dim in (0, 1, -1):
        n = tied.shape[dim]
        for k in range(n + 1):
            # distinct values: indices are determined, equal torch's
            want = torch.topk(tt(distinct), k, dim, largest)
            got = gc.topk(gc.tensor(distinct), k, dim, largest)
            assert type(got).__name__ == "topk"
            same(got.values.numpy(), want.values.numpy())
            same(got.indices.numpy(), want.indices.numpy())
            # ties: torch's tie order is unspecified; values equal, indices point at them
            want = torch.topk(tt(tied), k, dim, largest)
            got = gc.tensor(tied).topk(k, dim, largest, True)
            same_up_to_tie(got.values.numpy(), want.values.numpy())
            idx = got.indices.numpy()
            same(np.take_along_axis(tied, idx, dim), got.values.numpy())
            rows = np.moveaxis(idx, dim, -1).reshape(-1, k) if k else []
            assert all(len(set(r)) == k for r in rows)


def test_topk_of_zero_and_one_sized():
    for shape, k in [((2, 0), 0), ((3, 1), 1), ((3, 1), 0)]:
        x = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
        want = torch.topk(tt(x), k)
        got = gc.topk(gc.tensor(x), k)
        same(got.values.numpy(), want.values.numpy())
        same(got.indices.numpy(), want.indices.numpy())
    got = gc.topk(gc.tensor(2.5), 1)
    assert got.values.shape == () and got.values.item() == 2.5 and got.indices.item() == 0


# ============================================================================ kthvalue, median

@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_kthvalue_median_nanmedian_values(dtype, rng):
    tied = sample((5, 7, 6), dtype, rng)
    for dim in (0, 1, 2, -1):
        n = tied.shape[dim]
        for keepdim in (False, True):
            for k in (1, n // 2, n):
                want = torch.kthvalue(tt(tied), k, dim, keepdim)
                got = gc.kthvalue(gc.tensor(tied), k, dim, keepdim)
                assert type(got).__name__ == "kthvalue"
                same_up_to_tie(got.values.numpy(), want.values.numpy())
                _points_at(tied, got, dim, keepdim)
            for name in ("median", "nanmedian"):
                want = getattr(torch, name)(tt(tied), dim, keepdim)
                got = getattr(gc, name)(gc.tensor(tied), dim, keepdim)
                assert type(got).__name__ == name
                same_up_to_tie(got.values.numpy(), want.values.numpy())
                _points_at(tied, got, dim, keepdim)
    for name in ("median", "nanmedian"):
        same_up_to_tie(getattr(gc, name)(gc.tensor(tied)).numpy(),
                       getattr(torch, name)(tt(tied)).numpy())
        same_up_to_tie(getattr(gc.tensor(tied), name)().numpy(),
                       getattr(torch, name)(tt(tied)).numpy())


def _points_at(x, got, dim, keepdim):
    """The indices select the values (NaN where the value is NaN)."""
    idx = got.indices.numpy()
    if not keepdim:
        idx = np.expand_dims(idx, dim)
    picked = np.take_along_axis(x, idx, dim)
    want = got.values.numpy() if keepdim else np.expand_dims(got.values.numpy(), dim)
    np.testing.assert_array_equal(picked, want)


def test_indices_equal_torch_without_ties(rng):
    x = rng.permutation(60).reshape(3, 4, 5).astype(np.float32)
    x[0, 1, 2] = NAN
    for dim in range(3):
        for fn, args in [("kthvalue", (2,)), ("median", ()), ("nanmedian", ())]:
            want = getattr(torch, fn)(tt(x), *args, dim=dim)
            got = getattr(gc, fn)(gc.tensor(x), *args, dim=dim)
            same(got.values.numpy(), want.values.numpy())
            same(got.indices.numpy(), want.indices.numpy())


def test_median_rows_with_nan_follow_torch():
    x = np.array([[1.0, NAN, 3.0, NAN], [2.0, 1.0, NAN, 0.0], [4, 3, 2, 1],
                  [5.0, -0.0, 0.0, 7.0]], np.float32)
    want = torch.median(tt(x), 1)
    got = gc.median(gc.tensor(x), 1)
    same(got.values.numpy(), want.values.numpy())
    same(got.indices.numpy(), want.indices.numpy())     # the row's first NaN
    want = torch.nanmedian(tt(x), 1)
    got = gc.nanmedian(gc.tensor(x), 1)
    same(got.values.numpy(), want.values.numpy())
    same(got.indices.numpy(), want.indices.numpy())
    # even counts: the lower median
    assert gc.median(gc.tensor([3.0, 1.0, 2.0, 4.0])).item() == 2.0
    assert np.isnan(gc.median(gc.tensor(np.zeros(0, np.float32))).item())
    assert np.isnan(gc.nanmedian(gc.tensor([NAN, NAN])).item())


def test_zero_dim_inputs():
    x = gc.tensor(2.0)
    for fn, args in [("kthvalue", (1,)), ("median", (0,)), ("nanmedian", (0,))]:
        got = getattr(gc, fn)(x, *args)
        want = getattr(torch, fn)(torch.tensor(2.0), *args)
        same(got.values.numpy(), want.values.numpy())
        same(got.indices.numpy(), want.indices.numpy())
    assert gc.sort(x).indices.shape == () and gc.sort(x).values.item() == 2.0


# ============================================================================ errors

@pytest.mark.parametrize("call,exc,text", [
    (lambda x: gc.topk(x, 6), RuntimeError, "selected index k out of range"),
    (lambda x: gc.topk(x, -1), RuntimeError, "selected index k out of range"),
    (lambda x: gc.topk(x > 0, 1), RuntimeError, "topk does not support bool"),
    (lambda x: gc.kthvalue(x, 0), RuntimeError, "kthvalue(): selected number k out of range"),
    (lambda x: gc.kthvalue(x, 6), RuntimeError, "kthvalue(): selected number k out of range"),
    (lambda x: gc.sort(x, 2), IndexError, "Dimension out of range"),
    (lambda x: gc.argsort(x, -3), IndexError, "Dimension out of range"),
    (lambda x: gc.median(x[:, :0], 1), IndexError, "Expected reduction dim 1 to have non-zero"),
    (lambda x: gc.kthvalue(x[:, :0], 1), IndexError, "Expected reduction dim 1"),
    (lambda x: gc.median(x > 0, 1), NotImplementedError, "not implemented for 'Bool'"),
    (lambda x: gc.topk(x, 1.5), TypeError, "argument 'k' must be int"),
])
def test_errors_name_the_problem_at_the_users_line(call, exc, text):
    x = gc.tensor(np.ones((3, 5), np.float32))
    with pytest.raises(exc) as info:
        call(x)
    assert text in str(info.value)
    if exc is not TypeError:
        assert THIS_FILE in str(info.value)


def test_torch_errors_agree():
    """The same calls fail in torch with the same exception types."""
    x = torch.ones(3, 5)
    for call, exc in [(lambda: torch.topk(x, 6), RuntimeError),
                      (lambda: torch.kthvalue(x, 0), RuntimeError),
                      (lambda: torch.median(x[:, :0], 1), IndexError),
                      (lambda: torch.sort(x, 2), IndexError)]:
        with pytest.raises(exc):
            call()


# ============================================================================ gradients

def _grad_pair(fn_gc, fn_torch, x):
    xg = gc.tensor(x, requires_grad=True)
    fn_gc(xg).backward()
    xt = tt(x).requires_grad_(True)
    fn_torch(xt).backward()
    return xg.grad.numpy(), xt.grad.numpy()


GRAD_CASES = [
    ("sort", lambda m, x: (m.sort(x, 1)[0] * m.arange(6.0, dtype=x.dtype)).sum()),
    ("sort-desc-dim0", lambda m, x: (m.sort(x, 0, descending=True).values ** 2
                                     * m.arange(6.0, dtype=x.dtype)).sum()),
    ("topk", lambda m, x: (m.topk(x, 3, 1).values * m.tensor([3.0, 2.0, 1.0],
                                                             dtype=x.dtype)).sum()),
    ("topk-smallest", lambda m, x: m.topk(x, 2, 0, largest=False).values.exp().sum()),
    ("kthvalue", lambda m, x: (m.kthvalue(x, 2, 1).values ** 3).sum()),
    ("median", lambda m, x: (m.median(x, 1, keepdim=True).values * x).sum()),
    ("median-all", lambda m, x: m.median(x) * 3.0),
    ("msort", lambda m, x: (m.msort(x)[0] * 2.0).sum()),
]


@pytest.mark.parametrize("name,fn", GRAD_CASES, ids=[c[0] for c in GRAD_CASES])
def test_gradients_match_torch_and_finite_differences(name, fn, rng):
    x = rng.permutation(24).reshape(4, 6) * 0.25 + rng.uniform(0, 0.1, (4, 6))  # no ties
    got, want = _grad_pair(lambda t: fn(gc, t), lambda t: fn(torch, t), x)
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)

    def value(a):
        with gc.no_grad():
            return float(fn(gc, gc.tensor(a)).item())
    (num,) = numerical_grad(value, [x.copy()])
    np.testing.assert_allclose(got, num, rtol=1e-6, atol=1e-6)


def test_gradient_with_ties_goes_to_the_selected_index():
    x = np.array([[1.0, 3.0, 3.0, 0.0]])
    xg = gc.tensor(x, requires_grad=True)
    r = gc.topk(xg, 1)
    r.values.sum().backward()
    want = np.zeros_like(x)
    want[0, r.indices.item()] = 1.0
    np.testing.assert_array_equal(xg.grad.numpy(), want)


# ============================================================================ backends



def _llvm_vs_interp(fn, *arrays):
    g, ins = tensor_graph(fn, arrays)
    want = interp.compile(g)(ins)
    got = L.compile(g)(ins)
    for a, b in zip(got, want):
        same(a, b)
    return g


@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16", "int32",
                                   "int64", "uint8", "bool"])
@pytest.mark.parametrize("descending", [False, True])
def test_llvm_sort_kernel_matches_interpreter(dtype, descending, rng):
    np_name = "float32" if dtype == "bfloat16" else dtype
    for shape, dim in [((3, 70), 1), ((70, 3), 0), ((2, 33, 5), 1), ((1,), 0), ((0, 4), 1),
                       ((4, 0), 1), ((), 0), ((5, 1000), 1)]:
        x = sample(shape, np_name, rng)

        def fn(t):
            t = t.to(getattr(gc, dtype)) if dtype == "bfloat16" else t
            return gc.argsort(t, dim, descending=descending)
        g = _llvm_vs_interp(fn, x)
        kinds = [type(k).__name__ for k in fuse(g).kernels]
        if np.prod(shape):
            assert "SortKernel" in kinds, kinds


# sorts of views and of computed operands, feeding gathers (x is 8x40)
VIEW_SORTS = {"transpose": lambda t: gc.sort(t.t(), 1, descending=True),
              "slice": lambda t: gc.topk(t[1::3, 5:], 4, 1),
              "expand": lambda t: gc.sort(t[:1].expand(3, 40), 1),
              "fused-operand": lambda t: gc.median(t * 2.0 - 1.0, 0),
              "chain": lambda t: gc.sort(gc.sort(t, 0).values.abs(), 1)}


@pytest.mark.parametrize("case", list(VIEW_SORTS))
def test_llvm_sort_reads_views_and_feeds_gathers(case, rng):
    x = sample((8, 40), "float32", rng)
    g = _llvm_vs_interp(VIEW_SORTS[case], x)
    sorts = [k for k in fuse(g).kernels if isinstance(k, K.SortKernel)]
    assert sorts
    if case in ("transpose", "slice", "expand"):   # read in place, through strides
        assert sorts[0].x.buffer.kind == "input"


def test_llvm_sort_threads_split_rows(rng, monkeypatch):
    """A sort worth splitting runs its rows on several threads: same answer."""
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "3")
    x = sample((96, 20000), "float32", rng, special=False)
    g, ins = tensor_graph(lambda t: gc.argsort(t, 1, descending=True), [x])
    from graphc.backends.llvm.executor import schedule
    plan = fuse(g)
    steps = schedule(plan.kernels)
    assert any(len(r) > 1 for _, r in steps)
    got = L.compile(g)(ins)[0]
    same(got, torch.sort(tt(x), dim=1, descending=True, stable=True).indices.numpy())


def test_ir_text_round_trip():
    g, _ = tensor_graph(lambda t: gc.sort(t, 0, descending=True).values,
                        [np.ones((3, 2), np.float32)])
    assert any(n.op == "argsort" for n in g.nodes)
    assert parse(print_graph(g)) == g
    g.lint()


# ---------------------------------------------------------------------------- Triton
# The Triton sort kernels (graphc/backends/triton/sort.py) run in Triton's interpreter
# against the reference interpreter; tests/test_triton_backend.py compiles the corpus's
# sort cases (checks.py) for sm_90.

# generated kernels and Triton's caches go to a directory of this module's own
on_triton = pytest.mark.usefixtures("private_cache")


def _triton_vs_interp(fn, *arrays):
    T, device = triton_interpreter()
    g, ins = tensor_graph(fn, arrays)
    want = interp.compile(g)(ins)
    exe = T.compile(g, device=device)
    for a, b in zip(exe(ins), want):
        same(np.asarray(a), b)
    return exe


@pytest.fixture
def short_rows(monkeypatch):
    """sort.ROW_LIMIT = 16: rows past 16 take the merge steps over memory, so many
    phases run at sizes the interpreter gets through quickly."""
    from graphc.backends.triton import sort
    monkeypatch.setattr(sort, "ROW_LIMIT", 16)
    return sort


@on_triton
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16", "bfloat16", "int32",
                                   "int64", "uint8", "bool"])
@pytest.mark.parametrize("descending", [False, True])
def test_triton_sort_kernel_matches_interpreter(dtype, descending, rng):
    np_name = "float32" if dtype == "bfloat16" else dtype
    for shape, dim in [((3, 70), 1), ((70, 3), 0), ((2, 33, 5), 1), ((1,), 0), ((0, 4), 1),
                       ((4, 0), 1), ((), 0), ((5, 1000), 1), ((6, 1), 1)]:
        x = sample(shape, np_name, rng)

        def fn(t):
            t = t.to(getattr(gc, dtype)) if dtype == "bfloat16" else t
            return gc.argsort(t, dim, descending=descending)
        _triton_vs_interp(fn, x)


@on_triton
@pytest.mark.parametrize("case", list(VIEW_SORTS))
def test_triton_sort_reads_views_and_feeds_gathers(case, rng):
    _triton_vs_interp(VIEW_SORTS[case], sample((8, 40), "float32", rng))


@on_triton
@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "bool"])
@pytest.mark.parametrize("descending", [False, True])
def test_triton_rows_longer_than_one_program_merge_in_memory(dtype, descending, rng,
                                                             short_rows):
    """Rows past ROW_LIMIT (16 here): sorted chunks, then every merge phase's mirrored
    and plain steps over memory and its last steps in registers; along the last dim
    and along dim 0 (strided), row lengths just past a power of two and far past."""
    for shape, dim in [((3, 17), 1), ((100, 2), 0), ((2, 1000), 1), ((1000, 1), 0)]:
        x = sample(shape, dtype, rng)
        exe = _triton_vs_interp(lambda t: gc.argsort(t, dim, descending=descending), x)
        n = shape[dim]
        phases = (C.next_pow2(n) // short_rows.ROW_LIMIT).bit_length() - 1
        # one chunk sort; per phase p (1, 2, ...): a mirrored step, p - 1 plain steps,
        # and the in-register finish
        assert len(exe.generated.launches) == 1 + phases * (phases + 3) // 2


@on_triton
def test_triton_sort_launches_may_run_twice(rng, short_rows, monkeypatch):
    """Every sort launch (chunk sort, merge step, finish) leaves a result it would
    compute again unchanged, so the autotuner may rerun one on its real inputs (should
    a sort launch get several candidate configurations)."""
    T, device = triton_interpreter()
    real = device.launcher
    monkeypatch.setattr(device, "launcher", lambda fn, launch, cfg: (
        lambda args, go=real(fn, launch, cfg): (go(args), go(args))))
    x = sample((3, 300), "float32", rng)
    g, ins = tensor_graph(lambda t: gc.argsort(t, 1, descending=True), [x])
    same(T.compile(g, device=device)(ins)[0], interp.compile(g)(ins)[0])


def test_triton_sort_launches_at_the_row_limit():
    """Rows up to ROW_LIMIT sort in one launch; 64 rows of 50000 (padded to 2^16, chunks
    of 2^12): the chunk sort, then 4 phases of 1 to 4 steps over memory and a finish."""
    from graphc.backends import triton as T
    from graphc.backends.triton import sort
    for n, launches in [(1, 1), (7, 1), (sort.ROW_LIMIT, 1), (sort.ROW_LIMIT + 1, 3),
                        (50000, 15)]:
        g, _ = tensor_graph(lambda t: gc.argsort(t, 1), [np.zeros((64, n), np.float32)])
        gen = T.plan(g)[2]
        assert len(gen.launches) == launches, (n, [la.source[:80] for la in gen.launches])
        assert all(la.kernel == gen.launches[0].kernel for la in gen.launches)
    text = gen.module_text("device")
    assert text.count("def _gc_sort_rows(") == 1 and sort.NETWORK_DIGEST in text
    compile(text, "<generated>", "exec")


@on_triton
def test_sorting_functions_on_the_triton_backend(rng, monkeypatch):
    """sort, argsort, msort, topk, kthvalue, median, nanmedian (all on argsort) through
    the runtime with GRAPHC_BACKEND=triton: the values and indices torch gives."""
    T, device = triton_interpreter()
    monkeypatch.setenv("GRAPHC_BACKEND", "triton")
    old = T.set_default_device(device)
    try:
        tied = sample((5, 9), "float32", rng)
        distinct = rng.permutation(45).reshape(5, 9).astype(np.float64)
        distinct[1, 2] = NAN
        for x in (tied, distinct):
            want = torch.sort(tt(x), dim=1, descending=True, stable=True)
            got = gc.sort(gc.tensor(x), 1, descending=True)
            same(got.values.numpy(), want.values.numpy())
            same(got.indices.numpy(), want.indices.numpy())
            same(gc.argsort(gc.tensor(x), 0).numpy(),
                 torch.argsort(tt(x), dim=0, stable=True).numpy())
            same(gc.msort(gc.tensor(x)).numpy(), torch.msort(tt(x)).numpy())
        for name, args in [("topk", (3, 1)), ("kthvalue", (4, 0)), ("median", (1,)),
                           ("nanmedian", (0,))]:
            want = getattr(torch, name)(tt(distinct), *args)
            got = getattr(gc, name)(gc.tensor(distinct), *args)
            same(got.values.numpy(), want.values.numpy())
            same(got.indices.numpy(), want.indices.numpy())
    finally:
        T.set_default_device(old)


@on_triton
def test_repeated_index_writes_on_the_triton_backend(monkeypatch):
    """The last write wins on a GPU too (it sorts the positions, as the CPU backends)."""
    from test_indexing import _repeated_writes_story
    T, device = triton_interpreter()
    monkeypatch.setenv("GRAPHC_BACKEND", "triton")
    old = T.set_default_device(device)
    try:
        assert _repeated_writes_story(gc) == _repeated_writes_story(torch)
    finally:
        T.set_default_device(old)


def test_onnx_export_runs_in_onnxruntime(rng):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    import graphc.onnx

    def f(x, i, b):
        return (gc.sort(x, 1).indices, gc.argsort(x, 0, descending=True),
                gc.topk(i, 3).values, gc.sort(b, 1, descending=True).indices,
                gc.median(x, 1).values)
    x = np.array([[1.0, NAN, 0.0, -0.0, 1.0, -INF, NAN, INF, 1.0]] * 2, np.float32)
    x[1] = x[1][::-1]
    i = sample((3, 9), "int64", rng)
    b = sample((2, 9), "bool", rng)
    traced = gc.jit.trace(f, (gc.tensor(x), gc.tensor(i), gc.tensor(b)))
    proto = graphc.onnx.export(traced)
    assert "TopK" in {n.op_type for n in proto.graph.node}
    sess = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    got = sess.run(None, {a.name: v for a, v in zip(proto.graph.input, (x, i, b))})
    want = [t.numpy() for t in f(gc.tensor(x), gc.tensor(i), gc.tensor(b))]
    for a, w in zip(got, want):
        same(a, w)


def test_inside_graphc_compile(rng):
    """A compiled training step whose loss reads a top-k: same values and gradients as
    torch, step after step (replays)."""
    w0 = rng.permutation(40).reshape(4, 10) * 0.1

    def losses(m, w, steps):
        out = []
        for _ in range(steps):
            loss = (m.topk(w, 3, 1).values ** 2).sum() + m.median(w, 0).values.sum()
            loss.backward()
            with (gc.no_grad() if m is gc else torch.no_grad()):
                w -= 0.01 * w.grad
                w.grad.zero_()
            out.append(float(loss.item()))
        return out

    wt = tt(w0).requires_grad_(True)
    want = losses(torch, wt, 4)
    wg = gc.tensor(w0, requires_grad=True)

    @gc.compile
    def step():
        loss = (gc.topk(wg, 3, 1).values ** 2).sum() + gc.median(wg, 0).values.sum()
        loss.backward()
        with gc.no_grad():
            wg.sub_(0.01 * wg.grad)
            wg.grad.zero_()
        return loss
    got = [float(step().item()) for _ in range(4)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    np.testing.assert_allclose(wg.detach().numpy(), wt.detach().numpy(), rtol=1e-12)


# ============================================================================ large rows

def test_vocabulary_sized_topk_matches_torch(rng):
    logits = rng.standard_normal((4, 50257)).astype(np.float32)
    want = torch.topk(tt(logits), 50)
    got = gc.topk(gc.tensor(logits), 50)
    same(got.values.numpy(), want.values.numpy())
    same(got.indices.numpy(), want.indices.numpy())


def test_sort_kernel_is_n_log_n(rng):
    """16x the elements costs about 16 * log(16n)/log(n) (~20x) the time, nowhere near
    the 256x of a quadratic sort. Best of several runs of the compiled kernel."""
    def best_time(n):
        x = rng.standard_normal((1, n)).astype(np.float32)
        g, ins = tensor_graph(lambda t: gc.argsort(t, 1), [x])
        ex = L.compile(g)
        got = ex(ins)[0]
        same(got, np.argsort(x, 1, kind="stable"))
        times = []
        for _ in range(7):
            t0 = time.perf_counter()
            ex(ins)
            times.append(time.perf_counter() - t0)
        return min(times)
    small, large = best_time(1 << 14), best_time(1 << 18)
    assert large / small < 64, (small, large)
