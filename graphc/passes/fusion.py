"""Fusion: group a graph into kernels (graphc/backends/kernel_ir.py).

The algorithm, in three steps.

1. Decide which values are *materialized*: computed at kernel level rather than
   inlined (recomputed) into every expression that uses them. Materialized are graph
   outputs, reductions (they are accumulators), opaque ops (matmul, scatter_add,
   argsort) and the operands of a matmul that cannot be handed to BLAS as a strided
   view (of an argsort: that are not a strided view of a value in memory). Every
   other value (elementwise ops, movement ops, sources such as const/iota/rand, gather)
   is inlined: a movement op becomes index arithmetic on its operand, never a copy.

2. Place the materialized values, in topological order, into kernels. A kernel is a
   loop nest over an *outer* domain with a sequence of stages over an *inner* domain
   (kernel_ir.py). Each value is first tried in the existing kernels, newest first:
     * a reduction joins a kernel whose reductions run over the same input shape and
       dims (softmax's max and sum, layernorm's mean and variance): a sibling stage;
     * an elementwise value whose shape is the kernel's full domain becomes an inner
       store stage (softmax's e / sum, the normalised output of layernorm); one whose
       shape is the kernel's outer domain becomes an outer store stage (mean = sum/n);
       a pointwise value of the same shape as a pointwise kernel joins it.
   Joining is legal when the value's expression, built at the kernel's canonical index,
   reads the kernel's own reductions only at the outer point being computed (else the
   reduction must go through memory: REDUCTION_INDEX_MISMATCH), and reads other
   kernels' results only from kernels that run earlier (else the kernels would depend on
   each other in a cycle: DEPENDENCY). A value that fits nowhere starts a new kernel:
   a reduction kernel over (kept dims) x (reduced dims), a pointwise kernel over its
   shape (collapsed to one loop when every access stays division-free), a matmul
   kernel, a sort kernel (argsort), or a serial scatter kernel.

   Only the newest few kernels at or after the value's dependencies are tried, which
   keeps placement linear in practice.

3. Never duplicate expensive work into several kernels: an inlined value that ended up
   in more than one kernel and costs more than a few cheap ops (a transcendental
   counts four) is materialized, and placement runs again, until nothing changes.
   Recomputing an inlined value in several stages of the same kernel is allowed: it
   saves a round trip through memory. Not so for a value with many loads that one
   kernel computes at more points than it has elements (read through a pool's
   backward: RECOMPUTED_LOADS): that is stored once. A materialized concat identical
   to an earlier one (a conv's patch matrix, rebuilt by its weight gradient) reads the
   earlier buffer. Independently, a value whose fully inlined
   expression tree would exceed 256 ops is materialized up front (EXPRESSION_SIZE),
   so chains such as an unrolled RNN's cell state cannot blow up code size.

Every edge of the graph gets a `Reason` saying why it was or was not fused;
`explain(graph)` prints the plan with them (for `graphc dump-ir --stage fused --explain`).

Invariants of the result (`FusedPlan`): kernels are in an order where each reads only
buffers written by earlier kernels or graph inputs; every graph output that is not a
graph input has a buffer; a buffer is written by one kernel, except an addmm's, which
two adjacent kernels write: the addend kernel stores the addend, then the GEMM kernel
adds the product to it.
"""
from __future__ import annotations

import enum
import itertools
import math
import re
from dataclasses import dataclass, field

import numpy as np

from ..backends import kernel_ir as K
from ..ir import dtypes as dt
from ..ir.graph import Graph, Node
from ..ir.registry import FusionClass, get_op, make_node


class Reason(enum.Enum):
    INLINED = "elementwise producer inlined into its consumer's loop"
    VIEW = "movement op folded into index arithmetic (no copy)"
    SOURCE = "constant/iota/random source computed in place"
    SAME_KERNEL = "producer computed earlier in the same kernel (prologue/epilogue/sibling)"
    GRAPH_INPUT = "value is a graph input: read from memory"
    GRAPH_OUTPUT = "value is a graph output: written to memory"
    REDUCTION = "reduction result read by another kernel: written to memory"
    OPAQUE = "matmul/scatter/argsort is a kernel of its own; its result goes through memory"
    OPAQUE_OPERAND = "matmul operand is not a BLAS-compatible strided view: materialized"
    STRIDED_VIEW = "movement ops feeding the matmul/argsort became strides/transpose flags"
    SORT_OPERAND = "argsort operand is not a strided view of a value in memory: materialized"
    LAID_OUT = ("stored with its dims permuted, so that a matmul reads it as a strided "
                "view instead of a copy")
    SHARED_EXPENSIVE = "expensive value used by several kernels: computed once and stored"
    RECOMPUTED_LOADS = ("value with many loads computed at more points than it has "
                        "elements: computed once and stored")
    EXPRESSION_SIZE = "inlined expression would grow too large: stored to bound code size"
    SHARED_TRANSPOSED = ("read transposed as the right operand of several matmuls: stored "
                         "once in the order they read row-major")
    DOMAIN_MISMATCH = "iteration domains differ"
    REDUCTION_INDEX_MISMATCH = "consumer reads the reduction at other points than it produces"
    DEPENDENCY = "fusing would make kernels depend on each other in a cycle"


class CannotFuse(Exception):
    def __init__(self, reason: Reason):
        super().__init__(reason.value)
        self.reason = reason


_MAX_INLINED_TREE = 256   # ops in one value's fully inlined expression tree
_JOIN_CANDIDATES = 8      # kernels tried (newest first) before starting a new one
_EXPENSIVE_COST = 4
_MAX_LAYOUT_RANK = 5      # dim orders of at most 5! are tried for a stored value


@dataclass
class KernelPlan:
    """A kernel being assembled: its domain and the materialized values placed in it."""
    index: int
    kind: str                       # "reduce", "pointwise", "matmul", "scatter", "sort"
    full_shape: tuple = ()
    dims: tuple = ()                # reduced dims of full_shape ("reduce" kernels)
    outer: tuple = ()               # Vars
    inner: tuple = ()               # Vars
    full_index: tuple = ()          # Lin per dim of full_shape
    entries: list = field(default_factory=list)   # (node, stage kind, payload)
    kernel: object = None           # the finished kernel_ir object
    alias_of: object = None         # a node whose (earlier) kernel stores the same values
    elided: bool = False            # a concat whose every piece is stored in place

    def outer_shape(self):
        return tuple(v.extent for v in self.outer)


@dataclass
class FusedPlan:
    graph: Graph
    kernels: list                   # kernel_ir Kernel / MatmulKernel, in execution order
    buffers: dict                   # id(node) -> Buffer of every materialized value in memory
    input_buffers: list             # Buffer per graph input
    output_buffers: list            # Buffer per graph output (an input's Buffer if it is one)
    edge_reasons: list              # (producer, consumer, fused: bool, Reason)
    node_kernel: dict               # id(node) -> kernel name for materialized nodes

    def explain(self) -> str:
        from ..ir.printer import value_names
        names = value_names(self.graph)
        lines = [f"fused plan: {len(self.kernels)} kernel(s)"]
        for k in self.kernels:
            lines.append(str(k))
            if k.nodes:
                lines.append("  computes: " + ", ".join(f"%{names[n]}" for n in k.nodes))
        lines.append("edges:")
        for p, c, fused, reason in self.edge_reasons:
            lines.append(f"  %{names[id(p)]} ({p.op}) -> %{names[id(c)]} ({c.op}): "
                         f"{'fused' if fused else 'not fused'}: {reason.name} "
                         f"({reason.value})")
        return "\n".join(lines) + "\n"


def explain(graph: Graph) -> str:
    """The fused plan of `graph` with the reason for every edge, as text."""
    return fuse(graph).explain()


# ----------------------------------------------------------------------------- helpers

def _fusion_class(node):
    if node.op == "input":
        return FusionClass.SOURCE
    return get_op(node.op).fusion


def _freeze(attrs):
    out = []
    for k, v in sorted(attrs.items()):
        if isinstance(v, list):
            v = tuple(v)
        out.append((k, v))
    return tuple(out)


def _movement_index(node: Node, idx: tuple) -> tuple:
    """Index into the operand of movement op `node` for index `idx` of its result.
    (pad and concat are handled by the expression builder: they select values.)"""
    src = node.inputs[0].shape
    a = node.attrs
    if node.op == "reshape":
        return _reshape_index(idx, node.shape, src)
    if node.op == "permute":
        out = [None] * len(src)
        for k, p in enumerate(a["dims"]):
            out[p] = idx[k]
        return tuple(out)
    if node.op == "expand":
        return tuple(K.ZERO if s == 1 else i for s, i in zip(src, idx))
    if node.op == "slice":
        return tuple(K.lin(st) + K.lin(i) * sp for i, st, sp in
                     zip(idx, a["starts"], a["steps"]))
    if node.op == "flip":
        # element i of a flipped dim of size n is element n - 1 - i: a negative
        # coefficient, so no copy; the result reads its operand backwards. (flip is
        # deliberately not in _view_base's chain: BLAS takes no negative strides, so a
        # matmul operand read through a flip is stored once by an elementwise kernel.)
        dims = set(a["dims"])
        return tuple(K.lin(s - 1) - K.lin(i) if d in dims else i
                     for d, (s, i) in enumerate(zip(src, idx)))
    raise AssertionError(node.op)


def _reshape_index(idx: tuple, shape: tuple, src: tuple) -> tuple:
    """Index into a value of shape `src` of point `idx` of its reshape to `shape`.

    A reshape splits and merges runs of adjacent dims, so it factors into independent
    groups whose sizes have equal products ((64, 512) -> (64, 4, 128) is {64 -> 64},
    {512 -> 4 x 128}). Each group is linearized and delinearized on its own: the same
    value as flattening the whole index, but the index expressions stay as short as
    the group, which keeps index arithmetic (a large part of fusing an unrolled RNN's
    graph) cheap."""
    if 0 in src:
        return K.delinearize(K.linearize(idx, shape), src)
    out, i, j = [], 0, 0
    while i < len(src) or j < len(shape):
        i0, j0 = i, j
        ps = pd = 1
        if i < len(src):
            ps, i = src[i], i + 1
        if j < len(shape):
            pd, j = shape[j], j + 1
        while ps != pd:   # the products are equal overall, so this ends
            if ps < pd:
                ps, i = ps * src[i], i + 1
            else:
                pd, j = pd * shape[j], j + 1
        if i - i0 == 1 and j - j0 == 1:
            out.append(idx[j0])
        else:
            out.extend(K.delinearize(K.linearize(idx[j0:j], shape[j0:j]), src[i0:i]))
    return tuple(out)


def _view_base(node: Node, is_buffer) -> tuple:
    """(base, index): the value under `node`'s chain of movement ops (stopping at a
    value in memory), and the index into it of `node`'s point (Var m<k> per dim)."""
    idx = tuple(K.lin(K.Var(f"m{k}", s)) for k, s in enumerate(node.shape))
    n = node
    while n.op in ("reshape", "permute", "expand", "slice") and not is_buffer(n):
        idx = _movement_index(n, idx)
        n = n.inputs[0]
    return n, idx


def _strided_view(node: Node, is_buffer, layout=None) -> tuple | None:
    """If `node` is movement ops (reshape/permute/expand/slice) over a value that is in
    memory, return (base node, offset, strides) of the affine map from node's index to
    the base buffer's flat index; else None. `layout(base)`: the base's stored dim order
    (None: its own)."""
    vars_ = tuple(K.Var(f"m{k}", s) for k, s in enumerate(node.shape))
    n, idx = _view_base(node, is_buffer)
    if n.op == "pad":
        return None
    perm = layout(n) if layout else None
    flat = K.linearize(_permuted(idx, perm), _permuted(n.shape, perm))
    coeff = {}
    for a, c in flat.terms:
        if not isinstance(a, K.Var):
            return None
        coeff[a] = c
    strides = tuple(coeff.get(v, 0) for v in vars_)
    return n, flat.const, strides


def _permuted(seq, perm):
    """`seq` (an index or a shape) in stored order: entry k is seq[perm[k]]."""
    return tuple(seq) if perm is None else tuple(seq[d] for d in perm)


def _layout_candidates(rank):
    """Dim orders to try for a stored value, its own first. Only the outer dims move:
    with the last dim kept last, the producing loop's stores and its other readers'
    loads stay unit-stride (an NHWC store from an NCHW loop ran 1.5x slower here)."""
    if rank > _MAX_LAYOUT_RANK:
        return [tuple(range(rank))]
    return [p + (rank - 1,) for p in itertools.permutations(range(rank - 1))]


def _blas_ok(shape, strides):
    """A 2-D operand BLAS can read: unit stride in one of the two matrix dims."""
    (r, c), (sr, sc) = shape[-2:], strides[-2:]
    if c == 1 or sc == 1:
        return sr >= max(c, 1) or r == 1 or c == 1
    if r == 1 or sr == 1:
        return sc >= max(r, 1)
    return False


def normalize_matmul_view(shape, strides):
    """(strides, transposed, leading dim) for BLAS, or None."""
    r, c = shape[-2:]
    sr, sc = strides[-2:]
    if r * c == 0:
        return strides[:-2] + (max(c, 1), 1), False, max(c, 1)
    if c == 1:
        sc = 1
    if r == 1:
        sr = max(c, 1) if sc == 1 else sr
    if sc == 1 and sr >= max(c, 1):
        return strides[:-2] + (sr, sc), False, sr
    if r == 1:
        sr = 1
    if sr == 1 and sc >= max(r, 1):
        return strides[:-2] + (sr, sc), True, sc
    return None


_BLAS_DTYPES = ("f32", "f64", "bf16")


def _is_gemm(n):
    """A matmul computed by a GEMM kernel (BLAS, tl.dot), not a loop of products."""
    return n.op == "addmm" or (n.op == "matmul" and n.dtype.short in _BLAS_DTYPES)


def _gemm_operands(n):
    """(a, b) of a matmul or of an addmm (c + alpha * a @ b)."""
    return n.inputs[1:3] if n.op == "addmm" else n.inputs


# ----------------------------------------------------------------------------- the pass

class _Fuser:
    def __init__(self, graph: Graph):
        self.graph = graph
        self.users = graph.users()
        self.out_ids = {id(o) for o in graph.outputs}
        self.pos = {id(n): k for k, n in enumerate(graph.nodes)}
        self.reason: dict[int, Reason] = {}      # materialized nodes and why
        self.views: dict[int, tuple] = {}        # matmul operand -> (base, offset, strides)
        self.layout: dict[int, tuple] = {}       # stored node -> dim order (see _permuted)
        for n in graph.nodes:
            fc = _fusion_class(n)
            if n.op == "input":
                continue
            if id(n) in self.out_ids:
                self.reason[id(n)] = Reason.GRAPH_OUTPUT
            elif fc is FusionClass.REDUCTION:
                self.reason[id(n)] = Reason.REDUCTION
            elif fc is FusionClass.OPAQUE and not _onehot_scatter(n):
                self.reason[id(n)] = Reason.OPAQUE
        gemms = [n for n in graph.nodes if _is_gemm(n)]
        operands = [x for n in gemms for x in _gemm_operands(n)]
        self._assign_layouts(operands)
        self._store_shared_transposed(gemms)
        for x in operands:
            self._plan_matmul_operand(x)
        for n in graph.nodes:
            if n.op == "argsort":
                self._plan_sort_operand(n.inputs[0])

    def _is_mat(self, n):
        return n.op == "input" or id(n) in self.reason

    def _assign_layouts(self, operands):
        """Layout assignment. A matmul operand that is a permutation of a value, such as
        a conv's output gradient in NCHW read as (C, N*H*W) by the weight gradient, is
        not a strided view of that value, and would be copied into the order the GEMM
        reads. When the value is ours to lay out (an elementwise result, not a graph
        input or output), store it with its dims permuted instead, in the order that
        makes the most of its matmul operands strided views; its other readers only
        index it differently."""
        by_base: dict[int, list] = {}
        for x in operands:
            base, _ = _view_base(x, self._is_mat)
            if _fusion_class(base) is FusionClass.ELEMENTWISE and base.op != "input" \
                    and id(base) not in self.out_ids and len(base.shape) > 1:
                by_base.setdefault(id(base), (base, []))[1].append(x)
        for base, xs in by_base.values():
            def score(perm):
                """(operands read row-major, operands read as strided views)"""
                row_major = strided = 0
                for x in xs:
                    view = _strided_view(x, self._is_mat, lambda n: perm)
                    blas = view and normalize_matmul_view(x.shape, view[2])
                    if blas is not None:
                        strided += 1
                        row_major += not blas[1]
                return row_major, strided
            scores = [(score(perm), perm) for perm in _layout_candidates(len(base.shape))]
            best = max(scores, key=lambda sp: sp[0])   # the first of the best: own order first
            # Only a layout that lets some GEMM read the value row-major pays: OpenBLAS
            # runs a long-K product with a transposed operand 1.2x (M, N = 144, 32) to
            # 2.2x (9, 16) slower than row-major, which can cost more than a copy.
            if best[0][0] > scores[0][0][0]:
                self.layout[id(base)] = best[1]
                self.reason[id(base)] = Reason.LAID_OUT

    def _store_shared_transposed(self, matmuls):
        """A right operand that several GEMMs read as a transposed view (an RNN's
        recurrent weight: h @ W_hh^T once per step) is stored once, row-major.
        OpenBLAS packs a transposed B more slowly: 64x128 @ 128x512 took 0.069 ms
        against 0.058 ms with B row-major, and the LSTM step (32 steps) ran 3-4%
        faster with the copy (a 0.06 ms kernel). With one reader the copy costs about
        what it saves (784x512: 0.035 ms), so a single reader keeps its view."""
        readers: dict[int, list] = {}
        for n in matmuls:
            x = _gemm_operands(n)[1]
            if self._is_mat(x) or _fusion_class(x) is not FusionClass.MOVEMENT:
                continue
            view = _strided_view(x, self._is_mat, lambda b: self.layout.get(id(b)))
            blas = view and normalize_matmul_view(x.shape, view[2])
            if blas is not None and blas[1]:
                readers.setdefault(id(x), [x, 0])[1] += 1
        for x, count in readers.values():
            if count >= 2:
                self.reason[id(x)] = Reason.SHARED_TRANSPOSED

    def _stored(self, n, idx):
        """The index at which materialized `n`'s point `idx` lies in its buffer."""
        return _permuted(idx, self.layout.get(id(n)))

    def _plan_matmul_operand(self, x):
        view = _strided_view(x, self._is_mat, lambda n: self.layout.get(id(n)))
        if view is not None and normalize_matmul_view(x.shape, view[2]) is not None:
            base = view[0]
            if not self._is_mat(base):
                self.reason[id(base)] = Reason.OPAQUE_OPERAND
            self.views[id(x)] = view
        else:
            self.reason[id(x)] = Reason.OPAQUE_OPERAND
            self.views[id(x)] = (x, 0, K.Buffer("v", x.shape, x.dtype).strides())

    def _plan_sort_operand(self, x):
        """The sort kernel reads its keys through strides (a permuted, sliced or
        broadcast value in memory costs no copy); anything else is stored first. A
        view already planned for a matmul is a strided view too."""
        if id(x) in self.views:
            return
        view = _strided_view(x, self._is_mat, lambda n: self.layout.get(id(n)))
        if view is not None:
            base = view[0]
            if not self._is_mat(base):
                self.reason[id(base)] = Reason.SORT_OPERAND
            self.views[id(x)] = view
        else:
            self.reason[id(x)] = Reason.SORT_OPERAND
            self.views[id(x)] = (x, 0, K.Buffer("v", x.shape, x.dtype).strides())

    # ------------------------------------------------------------------ placement
    def _bound_expression_size(self):
        """Materialize values whose inlined expression tree (a DAG unfolded: every use
        recomputes) would exceed _MAX_INLINED_TREE ops, e.g. a cell state threaded
        through the elementwise ops of an unrolled RNN."""
        size = {}
        for n in self.graph.nodes:
            if self._is_mat(n):
                size[id(n)] = 0
                continue
            s = 1 + sum(size[id(i)] for i in n.inputs)
            if s > _MAX_INLINED_TREE:
                self.reason[id(n)] = Reason.EXPRESSION_SIZE
                s = 0
            size[id(n)] = s

    def run(self) -> FusedPlan:
        self._bound_expression_size()
        for _ in range(len(self.graph.nodes) + 1):
            self._place_all()
            again = self._recomputed_loads()
            dup = self._duplicated_expensive({id(n) for n in again})
            if not dup and not again:
                break
            for n in dup:
                self.reason[id(n)] = Reason.SHARED_EXPENSIVE
            for n in again:
                self.reason.setdefault(id(n), Reason.RECOMPUTED_LOADS)
        return self._finish()

    def _place_all(self):
        self.kernels: list[KernelPlan] = []
        self.home: dict[int, KernelPlan] = {}       # materialized node -> its kernel
        self.inlined_in: dict[int, set] = {}        # inlined node -> kernel indices
        self.inlined_points: dict[int, int] = {}    # inlined node -> most points computed
        self.concat_keys: dict = {}                 # concat kernel signature -> node
        self.buffers: dict[int, K.Buffer] = {}
        self.input_buffers = []
        for k, n in enumerate(self.graph.inputs):
            b = K.Buffer(f"in{k}", n.shape, n.dtype, "input")
            self.buffers[id(n)] = b
            self.input_buffers.append(b)
        self.frontier = {}   # node -> lowest kernel index it may be computed in
        for n in self.graph.nodes:
            if n.op != "input" and id(n) in self.reason:
                self._place(n)
            self.frontier[id(n)] = self._frontier_of(n)

    def _frontier_of(self, n):
        """Kernels before this index cannot compute `n` (it reads a later kernel)."""
        if n.op == "input":
            return 0
        home = self.home.get(id(n))
        if home is not None:
            return home.index
        return max((self.frontier[id(i)] for i in n.inputs), default=0)

    def _candidates(self, n, kinds):
        lo = max((self.frontier[id(i)] for i in n.inputs), default=0)
        out = []
        for kp in reversed(self.kernels):
            if kp.index < lo or len(out) == _JOIN_CANDIDATES:
                break
            if kp.kind in kinds:
                out.append(kp)
        return out

    def _place(self, n: Node):
        fc = _fusion_class(n)
        if n.op == "matmul":
            if n.dtype.short in _BLAS_DTYPES:
                return self._new_kernel(n, "matmul")
            return self._place_reduction_like(n)
        if n.op == "addmm":   # its addend is stored into its buffer, then the GEMM adds
            self._new_kernel(n, "addend")
            return self._new_kernel(n, "matmul")
        if n.op == "argsort":
            return self._new_kernel(n, "sort")
        if fc is FusionClass.OPAQUE and not _onehot_scatter(n):
            return self._new_kernel(n, "scatter")
        if fc is FusionClass.REDUCTION:
            return self._place_reduction_like(n)
        if n.op == "concat":
            return self._new_kernel(n, "concat")
        for kp in self._candidates(n, ("reduce", "pointwise")):
            for stage in ("inner", "outer"):
                if stage == "inner" and (kp.kind == "pointwise" or n.shape != kp.full_shape):
                    continue
                if stage == "outer":
                    idx = self._outer_index_for(kp, n.shape)
                    if idx is None:
                        continue
                else:
                    idx = kp.full_index
                try:
                    value = self._build(n, idx, kp, top=True)
                except CannotFuse:
                    continue
                kp.entries.append((n, stage, (idx, value)))
                self.home[id(n)] = kp
                return
        self._new_kernel(n, "pointwise")

    def _outer_index_for(self, kp, shape):
        """The canonical outer index of `kp` as an index of a value of `shape` (the
        reduced shape with or without kept size-1 dims), or None."""
        if kp.kind == "pointwise":
            return kp.full_index if shape == kp.full_shape else None
        if shape == kp.outer_shape():
            return tuple(K.lin(v) for v in kp.outer)
        keep = tuple(1 if d in kp.dims else s for d, s in enumerate(kp.full_shape))
        if shape == keep:
            it = iter(kp.outer)
            return tuple(K.ZERO if d in kp.dims else K.lin(next(it))
                         for d in range(len(keep)))
        return None

    def _reduction_domain(self, n):
        if n.op == "matmul":   # loop matmul: out[..., m, n] = sum_k a[..., m, k] b[..., k, n]
            a, b = n.inputs
            return a.shape[:-1] + (b.shape[-1], a.shape[-1]), (len(a.shape),)
        x = n.inputs[0]
        if n.op in ("argmax", "argmin"):
            return x.shape, ((n.attrs["dim"],) if x.shape else ())
        return x.shape, tuple(n.attrs["dims"])

    def _place_reduction_like(self, n):
        full, dims = self._reduction_domain(n)
        for kp in self._candidates(n, ("reduce",)):
            if kp.full_shape == full and kp.dims == dims:
                try:
                    value = self._reduce_value(n, kp)
                except CannotFuse:
                    continue
                kp.entries.append((n, "reduce", value))
                self.home[id(n)] = kp
                return
        self._new_kernel(n, "reduce")

    def _reduce_value(self, n, kp):
        if n.op == "matmul":
            a, b = n.inputs
            idx = kp.full_index
            batch, m, nn, k = idx[:-3], idx[-3], idx[-2], idx[-1]
            f32 = dt.float32 if n.dtype.is_floating else n.dtype
            va = self._build(a, batch + (m, k), kp)
            vb = self._build(b, batch + (k, nn), kp)
            if f32 is not n.dtype:
                va, vb = K.Compute("cast", (va,), f32), K.Compute("cast", (vb,), f32)
            return K.Compute("mul", (va, vb), f32)
        return self._build(n.inputs[0], kp.full_index, kp)

    def _new_kernel(self, n, kind):
        kp = KernelPlan(len(self.kernels), kind)
        tag = f"k{kp.index}"
        if kind == "reduce":
            full, dims = self._reduction_domain(n)
            kp.full_shape, kp.dims = full, dims
            outer, inner, idx = [], [], []
            for d, s in enumerate(full):
                if d in dims:
                    v = K.Var(f"{tag}r{len(inner)}", s)
                    inner.append(v)
                else:
                    v = K.Var(f"{tag}o{len(outer)}", s)
                    outer.append(v)
                idx.append(K.lin(v))
            kp.outer, kp.inner, kp.full_index = tuple(outer), tuple(inner), tuple(idx)
            self.kernels.append(kp)
            kp.entries.append((n, "reduce", self._reduce_value(n, kp)))
        elif kind in ("pointwise", "addend"):
            # "addend": the pointwise kernel storing an addmm's addend (its first input)
            # into the addmm's buffer, which the GEMM kernel after it accumulates into
            kp.kind = "pointwise"
            src, top = (n.inputs[0], False) if kind == "addend" else (n, True)
            kp.full_shape = n.shape
            self.kernels.append(kp)
            value = None
            if len(n.shape) > 1 and id(n) not in self.layout:
                # one flat loop when that costs no division (a permuted store would)
                flat = K.Var(f"{tag}i", _numel(n.shape))
                idx = K.delinearize(K.lin(flat), n.shape)
                value = self._build(src, idx, kp, top=top, tentative=True)
                if value is None or _has_division(value):
                    value = None
                else:
                    kp.outer, kp.full_index = (flat,), idx
            if value is None:
                kp.outer = tuple(K.Var(f"{tag}o{d}", s) for d, s in enumerate(n.shape))
                kp.full_index = tuple(K.lin(v) for v in kp.outer)
                value = self._build(src, kp.full_index, kp, top=top)
            kp.entries.append((n, "outer" if kind == "pointwise" else "addend",
                               (kp.full_index, value)))
            if kind == "addend":
                return   # n's home is the GEMM kernel that follows
        elif kind == "concat":
            self.kernels.append(kp)
            self._concat_kernel(n, kp, tag)
            twin = self._same_concat(n, kp)
            if twin is not None:   # the kernel is skipped; n is read from twin's buffer
                kp.alias_of = twin
                self.buffers[id(n)] = self._buffer_for(twin)
        elif kind in ("matmul", "sort"):
            self.kernels.append(kp)
            # an addmm's alpha: a scalar expression the GEMM kernel evaluates once
            alpha = self._build(n.inputs[3], (), kp) if n.op == "addmm" else None
            kp.entries.append((n, kind, alpha))
        elif kind == "scatter":
            self.kernels.append(kp)
            x, idx_node, src = n.inputs
            d = n.attrs["dim"]
            xv = tuple(K.Var(f"{tag}x{j}", s) for j, s in enumerate(x.shape))
            iv = tuple(K.Var(f"{tag}s{j}", s) for j, s in enumerate(idx_node.shape))
            x_idx = tuple(K.lin(v) for v in xv)
            s_idx = tuple(K.lin(v) for v in iv)
            copy = self._build(x, x_idx, kp)
            target = self._build(idx_node, s_idx, kp)
            add = self._build(src, s_idx, kp)
            dst = tuple(K.lin(K.ValueIndex(target, x.shape[d])) if j == d else s_idx[j]
                        for j in range(len(x.shape)))
            kp.entries.append((n, "scatter", (xv, x_idx, copy, iv, dst, add)))
        self.home[id(n)] = kp

    def _same_concat(self, n, kp):
        """An earlier materialized concat whose kernel stores exactly what `kp` stores,
        or None. Different graph nodes can be one value: a convolution's forward patch
        matrix and the one its weight gradient builds (a convolution of the transposed
        input) slice the same padded input in the same order, through different chains
        of reshapes and permutes that only the index arithmetic shows to be equal.
        Kernels compare by their stages' text with this kernel's loop variables renamed
        (the repr is canonical: atoms are ordered by it, and cache keys print it)."""
        if id(n) in self.out_ids:
            return None
        key = (n.shape, n.dtype, _concat_signature(kp))
        twin = self.concat_keys.get(key)
        if twin is None:
            self.concat_keys[key] = n
        return twin

    def _concat_kernel(self, n, kp, tag):
        """A materialized concat: one store stage per piece, each looping over its own
        piece and writing its block of the output, so no element selects among the
        pieces (inlined, a concat of P pieces is a chain of P selects per element).
        The outer loops are the dims other than the concat dim and the last one (the
        largest first, so the thread split has work to share); each stage loops over
        its extent along the concat dim, then the last dim (if that is not the concat
        dim), so its innermost loop is contiguous in memory."""
        shape, d = n.shape, n.attrs["dim"]
        others = [j for j in range(len(shape)) if j != d]
        # the innermost loop walks the last dim (contiguous in memory)
        last = others[-1] if d != len(shape) - 1 else None
        outer_dims = [j for j in others if j != last]
        if outer_dims:
            big = max(outer_dims, key=lambda j: shape[j])
            outer_dims = [big] + [j for j in outer_dims if j != big]
        outer = {j: K.Var(f"{tag}o{j}", shape[j]) for j in outer_dims}
        kp.outer = tuple(outer[j] for j in outer_dims)
        kp.full_shape = shape
        start = 0
        for p, x in enumerate(n.inputs):
            size = x.shape[d]
            if size == 0 or _numel(shape) == 0:
                start += size
                continue
            inner = []
            along = K.Var(f"{tag}p{p}", size) if size > 1 else None
            if along is not None:
                inner.append(along)
            tail = K.Var(f"{tag}p{p}t", shape[last]) if last is not None else None
            if tail is not None:
                inner.append(tail)
            src, dst = [], []
            for j in range(len(shape)):
                if j == d:
                    i = K.lin(along) if along is not None else K.ZERO
                    src.append(i)
                    dst.append(i + start)
                else:
                    i = K.lin(tail) if j == last else K.lin(outer[j])
                    src.append(i)
                    dst.append(i)
            value = self._build(x, tuple(src), kp)
            kp.entries.append((n, "piece", (tuple(dst), tuple(inner), value)))
            start += size

    # ------------------------------------------------------------------ expressions
    def _build(self, n, idx, kp, top=False, tentative=False):
        """The value expression of `n` at index `idx`, evaluated inside kernel `kp`.
        Raises CannotFuse when that is illegal (or returns None if `tentative`)."""
        self._memo = {}
        self._touched = set()
        if not hasattr(self, "_intern"):
            self._intern = {}
            self._moved = {}     # (id(movement node), index) -> index into its operand
        try:
            v = self._ev(n, tuple(idx), kp, top)
        except CannotFuse:
            if tentative:
                return None
            raise
        points = _points(idx) if self._touched else 0
        for nid in self._touched:
            self.inlined_in.setdefault(nid, set()).add(kp.index)
            if points > self.inlined_points.get(nid, 0):
                self.inlined_points[nid] = points
        return v

    def _ev(self, n, idx, kp, top=False):
        key = (id(n), idx)
        if key in self._memo:
            return self._memo[key]
        v = self._ev_uncached(n, idx, kp, top)
        v = self._intern.setdefault(v, v)   # equal expressions become one object
        self._memo[key] = v
        return v

    def _ev_uncached(self, n, idx, kp, top):
        if not top and self._is_mat(n):
            if n.op == "input":
                return K.Load(self.buffers[id(n)], idx)
            home = self.home.get(id(n))
            if home is None:
                raise AssertionError(f"{n} used before it was placed")
            if home is not kp:
                if home.index > kp.index:
                    raise CannotFuse(Reason.DEPENDENCY)
                return K.Load(self._buffer_for(n), self._stored(n, idx))
            entry = next(e for e in kp.entries if e[0] is n)
            if entry[1] == "reduce":
                want = self._outer_index_for(kp, n.shape)
                if want is None or not _same_index(want, idx, n.shape):
                    raise CannotFuse(Reason.REDUCTION_INDEX_MISMATCH)
                return K.AccRef(f"v{self.pos[id(n)]}", n.dtype)
            # an inner/outer store of this kernel: recompute it here
        if not top:
            self._touched.add(id(n))
        op, a = n.op, n.attrs
        if op == "const":
            return K.Const(a["value"], n.dtype)
        if op == "iota":
            return K.IndexValue(idx[a["dim"]] if idx else K.ZERO, n.dtype)
        if op == "rand":
            seed = self._ev(n.inputs[0], (), kp)
            off = self._ev(n.inputs[1], (), kp)
            return K.RandValue(seed, off, K.linearize(idx, n.shape), bool(a.get("normal")),
                               n.dtype)
        if op in ("reshape", "permute", "expand", "slice", "flip"):
            key = (id(n), idx)
            src = self._moved.get(key)
            if src is None:    # index arithmetic is pure: kept across kernels and passes
                src = self._moved[key] = _movement_index(n, idx)
            return self._ev(n.inputs[0], src, kp)
        if op == "pad":
            return self._pad(n, idx, kp)
        if op == "concat":
            return self._concat(n, idx, kp)
        if op == "gather":
            x, ind = n.inputs
            d = a["dim"]
            where = K.lin(K.ValueIndex(self._ev(ind, idx, kp), x.shape[d]))
            xi = tuple(where if j == d else idx[j] for j in range(len(x.shape)))
            return K.CheckIndex(self._ev(x, xi, kp), where)
        if op == "scatter_add":   # one index per row: out = j == idx[i] ? x + src[i] : x
            x, ind, src = n.inputs
            d = a["dim"]
            row = tuple(K.ZERO if j == d else idx[j] for j in range(len(idx)))
            target = K.lin(K.ValueIndex(self._ev(ind, row, kp), x.shape[d]))
            hit = K.InRange(K.lin(idx[d]) - target, 0, 1)
            base = self._ev(x, idx, kp)
            # a select, not x + (hit ? src : 0): an element nothing is added to keeps
            # its -0.0, as PyTorch's scatter_add leaves it
            return K.Compute("where", (hit, K.Compute("add", (base, self._ev(src, row, kp)),
                                                      n.dtype), base), n.dtype)
        fc = _fusion_class(n)
        if fc is FusionClass.ELEMENTWISE:
            args = tuple(self._ev(i, idx, kp) for i in n.inputs)
            attrs = tuple((k, v) for k, v in _freeze(a) if k != "dtype")
            return K.Compute(op, args, n.dtype, attrs)
        raise AssertionError(f"cannot inline {op}")

    def _pad(self, n, idx, kp):
        x = n.inputs[0]
        zero = K.Const(0, n.dtype)
        if any(s == 0 for s in x.shape):
            return zero
        conds, src = [], []
        for i, size, lo, it in zip(idx, x.shape, n.attrs["low"], n.attrs["interior"]):
            step = it + 1
            hi = lo + (size - 1) * step + 1
            j = K.lin(i) - lo
            blo, bhi = K.lin(i).bounds()
            if bhi < lo or blo >= hi or (blo == bhi and (blo - lo) % step):
                # never inside x (step t of an unrolled RNN reading the gradient padded
                # around another step): a constant, so every such step has one body
                return zero
            if not (blo >= lo and bhi < hi and step == 1):
                conds.append(K.InRange(K.lin(i), lo, hi, step))
            src.append(K.clamp(K.floordiv(j, step) if step > 1 else j, 0, size - 1))
        val = self._ev(x, tuple(src), kp)
        for c in conds:
            val = K.Compute("where", (c, val, zero), n.dtype)
        return val

    def _concat(self, n, idx, kp):
        d = n.attrs["dim"]
        pieces, start = [], 0
        for x in n.inputs:
            size = x.shape[d]
            if size:
                pieces.append((x, start, size))
            start += size
        i = K.lin(idx[d])
        lo, hi = i.bounds()
        reached = [p for p in pieces if lo < p[1] + p[2] and hi >= p[1]]
        pieces = reached or pieces[-1:]     # an index out of every piece clamps to the last
        val = None
        for x, start, size in reversed(pieces):
            xi = tuple(K.clamp(i - start, 0, size - 1) if j == d else idx[j]
                       for j in range(len(idx)))
            v = self._ev(x, xi, kp)
            if val is None:
                val = v
            else:
                if lo >= start and hi < start + size:
                    val = v
                else:
                    val = K.Compute("where", (K.InRange(i, start, start + size), v, val),
                                    n.dtype)
        return val

    def _buffer_for(self, n):
        b = self.buffers.get(id(n))
        if b is None:
            kind = "output" if id(n) in self.out_ids else "temp"
            b = K.Buffer(f"t{len(self.buffers)}", self._stored(n, n.shape), n.dtype, kind)
            self.buffers[id(n)] = b
        return b

    # ------------------------------------------------------------------ duplication
    def _duplicated_expensive(self, stored):
        """Inlined values computed in several kernels that cost more than a few ops.
        A value's cost counts as stored the values taken before it in this round and
        `stored` (those _recomputed_loads takes): the movement ops between a conv's
        col2im sum and a pool's backward owe their cost to the sum, and are not stored
        as well once it is."""
        out, taken = [], set(stored)
        for n in self.graph.nodes:
            if self._is_mat(n) or len(self.inlined_in.get(id(n), ())) < 2:
                continue
            if self._cost(n, stored=taken) > _EXPENSIVE_COST:
                out.append(n)
                taken.add(id(n))
        return out

    def _recomputed_loads(self):
        """Inlined values that read memory many times (more than _EXPENSIVE_COST loads)
        and that a kernel computes at more points than the value has elements: the
        input gradient of a convolution (a sum of kh*kw taps of the col2im matrix) read
        through a 2x2 max pool's backward is computed 4 times per element. Stored once
        instead. Only the largest such value of an expression is taken (its partial
        sums then read it)."""
        out, covered = [], set()    # covered: taken, or part of a taken expression
        for n in reversed(self.graph.nodes):
            if self._is_mat(n):
                continue
            if any(id(u) in covered for u in self.users[id(n)]):
                covered.add(id(n))
                continue
            if _fusion_class(n) is FusionClass.MOVEMENT or \
                    self.inlined_points.get(id(n), 0) <= _numel(n.shape):
                continue
            if self._loads(n) > _EXPENSIVE_COST:
                out.append(n)
                covered.add(id(n))
        return out

    def _loads(self, n):
        """Memory reads in n's inlined expression (a DAG unfolded, as inlining does)."""
        memo = {}

        def count(v):
            if self._is_mat(v):
                return 1
            if id(v) not in memo:
                memo[id(v)] = sum(count(i) for i in v.inputs)
            return memo[id(v)]
        return sum(count(i) for i in n.inputs)

    def _cost(self, n, seen=None, stored=frozenset()):
        """Ops in n's inlined expression, each counted once; `stored`: ids of values
        to count as read from memory."""
        seen = set() if seen is None else seen
        if id(n) in seen or id(n) in stored or self._is_mat(n):
            return 0
        seen.add(id(n))
        fc = _fusion_class(n)
        own = 0
        if fc is FusionClass.ELEMENTWISE:
            own = 4 if n.op in K.TRANSCENDENTAL else 1
        elif n.op == "rand":
            own = 8
        return own + sum(self._cost(i, seen, stored) for i in n.inputs)

    # ------------------------------------------------------------------ assembly
    def _finish(self) -> FusedPlan:
        for o in self.graph.outputs:
            if o.op != "input":
                self._buffer_for(o)
        for kp in self.kernels:   # matmul and sort operands are read from memory
            if kp.kind in ("matmul", "sort"):
                n = kp.entries[0][0]
                for x in (_gemm_operands(n) if kp.kind == "matmul" else n.inputs):
                    base = self.views[id(x)][0]
                    if base.op != "input":
                        self._buffer_for(base)
        self._elide_concats()
        kernels = []
        for kp in self.kernels:
            if kp.alias_of is None and not kp.elided:
                kernels.append(self._assemble(kp))
        node_kernel = {nid: self.home[id(kp.alias_of)].kernel.name if kp.alias_of is not None
                       else "(stored in place by its pieces)" if kp.elided
                       else kp.kernel.name for nid, kp in self.home.items()}
        return FusedPlan(self.graph, kernels, dict(self.buffers), self.input_buffers,
                         [self.buffers[id(o)] for o in self.graph.outputs],
                         self._edge_reasons(), node_kernel)

    def _elide_concats(self):
        """Store pieces of a concatenation where the concatenation keeps them, instead
        of copying them there. A piece qualifies when it is a whole temp buffer that a
        loop or concat kernel stores (not a graph input or output, not a matmul's
        result, not itself holding pieces) and, in the concatenation's buffer, a
        contiguous block that starts on a 64-byte boundary (every dim before the concat
        dim has size 1). Its buffer then lies `within` the concatenation's (the memory
        plan places it there) and the concat kernel drops that piece's copy; with no
        copy left the kernel goes. A concat whose pieces all lie, in order, in another
        one's buffer lies over them, and so does one concatenating the very values of
        an earlier one in the same order (a stack of every step's gate gradient is
        read as (T, B, 4H) by the bias gradient and as (T*B, 4H) by the weight
        gradient, whatever its pieces are). An unrolled RNN stacks every step's hidden
        state and gate gradient this way (32 steps of an LSTM: 3 copy kernels)."""
        containers = set()   # ids of buffers holding pieces: those cannot be pieces
        owner = {id(b): nid for nid, b in self.buffers.items()}
        stacks = {}          # (dtype, piece values in order) -> an earlier container
        for kp in self.kernels:
            if kp.kind != "concat" or kp.alias_of is not None:
                continue
            n = kp.entries[0][0]
            d = n.attrs["dim"]
            container = self._buffer_for(n)
            if container.kind != "temp" or container.within is not None \
                    or any(s != 1 for s in n.shape[:d]):
                continue
            block = _numel(n.shape[d + 1:])     # elements per unit of the concat dim
            itemsize = n.dtype.np.itemsize
            pieces, start = [], 0
            for x in n.inputs:
                if x.shape[d]:
                    pieces.append((x, start))
                start += x.shape[d]
            key = (n.dtype, tuple((id(_unreshaped(x)), _numel(x.shape)) for x, _ in pieces))
            earlier = stacks.setdefault(key, container)
            if earlier is not container:     # the same bytes: lie over the earlier one
                container.within = earlier.within or (earlier, 0)
                kp.entries[:] = [(n, "elided", None)]
                kp.elided = True
                continue
            kept, bufs = [], []
            for entry, (x, start) in zip(kp.entries, pieces):
                buf = _whole_buffer(entry[2], x, start, d)
                bufs.append(buf)
                home = self.home.get(owner.get(id(buf)))
                if buf is not None and buf.kind == "temp" and buf.within is None and \
                        id(buf) not in containers and home is not None and \
                        home.kind in ("pointwise", "reduce", "concat") and not home.elided \
                        and (start * block * itemsize) % 64 == 0:
                    buf.within = (container, start * block)
                    containers.add(id(container))
                else:
                    kept.append(entry)
            if len(kept) == len(pieces) and id(container) not in containers:
                view = _lying_in_order(bufs, pieces, block)
                if view is not None:
                    container.within = view
                    kept = []
            kp.entries[:] = kept or [(n, "elided", None)]
            kp.elided = not kept

    def _assemble(self, kp):
        name = f"kernel{kp.index}"
        names = list(dict.fromkeys(id(e[0]) for e in kp.entries))
        if kp.kind == "matmul":
            n = kp.entries[0][0]
            views = []
            for x in _gemm_operands(n):
                base, off, strides = self.views[id(x)]
                views.append(K.StridedView(self._buffer_for(base) if base.op != "input"
                                           else self.buffers[id(base)],
                                           off, strides, x.shape))
            kp.kernel = K.MatmulKernel(name, views[0], views[1], self._buffer_for(n),
                                       n.dtype, names, kp.entries[0][2], n.op == "addmm")
            return kp.kernel
        if kp.kind == "sort":
            n = kp.entries[0][0]
            x = n.inputs[0]
            base, off, strides = self.views[id(x)]
            view = K.StridedView(self._buffer_for(base) if base.op != "input"
                                 else self.buffers[id(base)], off, strides, x.shape)
            kp.kernel = K.SortKernel(name, view, self._buffer_for(n), n.attrs["dim"],
                                     bool(n.attrs["descending"]), x.dtype, names)
            return kp.kernel
        stages = []
        for n, kind, payload in kp.entries:
            buf = self.buffers.get(id(n))
            if kind == "reduce":
                op = "sum" if n.op == "matmul" else n.op
                stages.append(K.Reduce(f"v{self.pos[id(n)]}", op, kp.inner, payload, n.dtype))
                if buf is not None:
                    idx = self._stored(n, self._outer_index_for(kp, n.shape))
                    stages.append(K.Store(buf, idx, (), K.AccRef(f"v{self.pos[id(n)]}", n.dtype)))
            elif kind == "addend":
                idx, value = payload
                stages.append(K.Store(self._buffer_for(n), self._stored(n, idx), (), value))
            elif kind in ("inner", "outer"):
                if buf is None:
                    continue
                idx, value = payload
                stages.append(K.Store(buf, self._stored(n, idx),
                                      kp.inner if kind == "inner" else (), value))
            elif kind == "piece":
                dst, inner, value = payload
                stages.append(K.Store(self._buffer_for(n), dst, inner, value))
            elif kind == "scatter":
                xv, x_idx, copy, iv, dst, add = payload
                buf = self._buffer_for(n)
                stages.append(K.Store(buf, x_idx, xv, copy))
                stages.append(K.Store(buf, dst, iv, add, accumulate="sum"))
        if kp.kind == "reduce":
            unrolled = _unrolled_reduction_stages(kp, stages)
            if unrolled is not None:
                kp.kernel = K.Kernel(name, kp.outer, unrolled, parallel=True, nodes=names)
                return kp.kernel
        if kp.kind == "reduce":
            swept = self._with_scratch_results(kp, stages)
            if _is_column_reduction(kp, swept):
                kp.kernel = K.Kernel(name, (), _column_reduction_stages(kp, swept),
                                     parallel=False, nodes=names)
                return kp.kernel
        kp.kernel = K.Kernel(name, kp.outer, stages, parallel=kp.kind != "scatter",
                             nodes=names)
        return kp.kernel

    @staticmethod
    def _with_scratch_results(kp, stages):
        """`stages` with each reduction whose result no stage stores (only later outer
        stages read it: an SGD update of a bias from its gradient) stored to a scratch
        temp of the outer shape, as a column reduction needs (_is_column_reduction),
        named after the kernel and stage (k13s0)."""
        out = []
        for j, st in enumerate(stages):
            out.append(st)
            if not isinstance(st, K.Reduce):
                continue
            result = K.AccRef(st.acc, st.dtype)
            nxt = stages[j + 1] if j + 1 < len(stages) else None
            if isinstance(nxt, K.Store) and not nxt.inner and nxt.value == result:
                continue
            scratch = K.Buffer(f"k{kp.index}s{j}", kp.outer_shape(), st.dtype, "temp")
            out.append(K.Store(scratch, tuple(K.lin(v) for v in kp.outer), (), result))
        return out

    def _edge_reasons(self):
        out = []
        for c in self.graph.nodes:
            for p in c.inputs:
                if p.op == "input":
                    out.append((p, c, False, Reason.GRAPH_INPUT))
                    continue
                if c.op in ("matmul", "addmm", "argsort") and id(p) in self.views and \
                        self.views[id(p)][0] is not p:
                    out.append((p, c, True, Reason.STRIDED_VIEW))
                    continue
                if not self._is_mat(p):
                    fc = _fusion_class(p)
                    r = Reason.VIEW if fc is FusionClass.MOVEMENT else \
                        Reason.SOURCE if fc is FusionClass.SOURCE else Reason.INLINED
                    out.append((p, c, True, r))
                    continue
                p_home = self.home.get(id(p))
                c_homes = {self.home[id(c)].index} if id(c) in self.home else \
                    self.inlined_in.get(id(c), set())
                if p_home is not None and c_homes == {p_home.index}:
                    out.append((p, c, True, Reason.SAME_KERNEL))
                else:
                    out.append((p, c, False, self.reason[id(p)]))
        return out


def _whole_buffer(payload, x, start, d):
    """The buffer a concat piece's copy stage reads if it copies that whole buffer in
    its own element order (the piece is the buffer, maybe reshaped), else None."""
    dst, _inner, value = payload
    if not isinstance(value, K.Load) or value.buffer.numel != _numel(x.shape):
        return None
    src = tuple(K.lin(i) - (start if j == d else 0) for j, i in enumerate(dst))

    def flat(index, shape):   # loop variables of extent 1 count as 0
        lin = K.linearize(index, shape)
        return lin.const, tuple((a, c) for a, c in lin.terms
                                if not (isinstance(a, K.Var) and a.extent == 1))
    return value.buffer if flat(value.index, value.buffer.shape) == flat(src, x.shape) \
        else None


def _unreshaped(x):
    while x.op == "reshape":     # a reshape keeps the elements' order
        x = x.inputs[0]
    return x


def _lying_in_order(bufs, pieces, block):
    """(container, offset) if every piece buffer lies `within` one container, one after
    the other as in the concatenation (a second stack of the same steps in the same
    order), else None."""
    first = None
    for buf, (_x, start) in zip(bufs, pieces):
        if buf is None or buf.within is None:
            return None
        container, offset = buf.within
        if first is None:
            first = (container, offset - start * block)
        elif first != (container, offset - start * block):
            return None
    return first


def _concat_signature(kp):
    """The stages of concat kernel `kp` as text, its loop variables renamed by position
    (they are named after the kernel: k12o0, k12p3t)."""
    tag = re.compile(rf"\bk{kp.index}(?=[a-z])")
    outer = ", ".join(f"{v.name}<{v.extent}" for v in kp.outer)
    parts = [outer] + [repr(payload) for _, _, payload in kp.entries]
    return tag.sub("k*", "\n".join(parts))


def _points(idx):
    """How many points an expression built at index `idx` is computed at: the product
    of the extents of the loop variables the index uses."""
    vars_ = {a for i in idx for a in K.lin(i).atoms() if isinstance(a, K.Var)}
    return _numel([v.extent for v in vars_])


def _numel(shape):
    n = 1
    for s in shape:
        n *= s
    return n


_COLUMN_DTYPES = ("f32", "f64", "i32", "i64")


def _column_pairs(stages):
    """How many leading stages are (reduction, store of its result) pairs."""
    n = 0
    while n + 1 < len(stages) and isinstance(stages[n], K.Reduce) and \
            isinstance(stages[n + 1], K.Store) and not stages[n + 1].inner and \
            stages[n + 1].value == K.AccRef(stages[n].acc, stages[n].dtype):
        n += 2
    return n // 2


def _is_column_reduction(kp, stages):
    """Reductions over leading dims only (e.g. a bias gradient: sum over rows), each
    stored straight to memory, then possibly outer stores that use them (an optimiser
    update of the bias): looping 'per kept point, over the reduced dims' would read
    memory with a large stride. Such kernels are rewritten to sweep the input in memory
    order, combining into the output row (contiguous, vectorisable); the outer stores
    then run over the kept points, reading the results back from memory."""
    full = kp.full_shape
    if not kp.dims or not full or (len(full) - 1) in kp.dims or not kp.outer:
        return False
    pairs = _column_pairs(stages)
    if not pairs:
        return False
    for red in stages[:2 * pairs:2]:
        if not (red.op in ("sum", "max", "min") and red.dtype.short in _COLUMN_DTYPES
                and K.value_dtype(red.value) is red.dtype):
            return False
        for v in K.walk_values(red.value):
            if isinstance(v, K.AccRef):
                return False
    results = _column_results(stages, pairs)
    for st in stages[2 * pairs:]:
        if not isinstance(st, K.Store) or st.inner or st.accumulate or \
                K.substitute(st.value, results) is None:
            return False
    return True


def _column_results(stages, pairs):
    """AccRef of each paired reduction -> a load of the buffer its result is stored in."""
    return {K.AccRef(red.acc, red.dtype): K.Load(st.buffer, st.index)
            for red, st in zip(stages[:2 * pairs:2], stages[1:2 * pairs:2])}


def _column_reduction_stages(kp, stages):
    out = []
    pairs = _column_pairs(stages)
    for red, st in zip(stages[:2 * pairs:2], stages[1:2 * pairs:2]):
        ident = {"sum": 0, "max": -math.inf, "min": math.inf}[red.op]
        if not red.dtype.is_floating and red.op != "sum":
            info = np.iinfo(red.dtype.np)
            ident = int(info.min if red.op == "max" else info.max)
        out.append(K.Store(st.buffer, st.index, kp.outer, K.Const(ident, red.dtype)))
        full_vars = tuple(a.terms[0][0] for a in kp.full_index)   # input order
        out.append(K.Store(st.buffer, st.index, full_vars, red.value, accumulate=red.op))
    results = _column_results(stages, pairs)
    for st in stages[2 * pairs:]:
        out.append(K.Store(st.buffer, st.index, kp.outer, K.substitute(st.value, results)))
    return out


_UNROLL_MAX_POINTS = 16     # a reduction over at most this many points is unrolled
_UNROLL_DTYPES = ("f32", "f64", "i32", "i64")
_UNROLLED = {"sum": "add", "prod": "mul", "max": "maximum", "min": "minimum"}


def _unrolled_reduction_stages(kp, stages):
    """A reduce kernel whose reductions run over a few points (a 2x2 or 3x3 window) as
    an elementwise kernel: each reduction unrolled into a chain of its op over its
    points, which later stages read in place of the accumulator. LLVM vectorises the
    outer loop of that, and not the short inner loops: a 2x2 max over a 64x16x28x28
    map ran in 0.10 ms unrolled against 0.49 ms as loops.

    Returns the stages, or None when the kernel does not qualify: inner stores (a
    softmax over a short row stores per point), an accumulator read inside an index,
    dtypes whose sums round differently in steps (float16) or widen (bool, int8), and
    argmax/argmin. Unrolled with their NaN rule (the first NaN wins), LLVM declined to
    vectorise those (1.0 ms against 0.52 ms as a loop), so a pool's forward, which
    finds the argmax and reads the max through it, stays a loop."""
    n_points = math.prod(v.extent for v in kp.inner)
    if not kp.inner or n_points > _UNROLL_MAX_POINTS or n_points == 0:
        return None
    points = [dict(zip(kp.inner, p))
              for p in itertools.product(*(range(v.extent) for v in kp.inner))]
    table, out = {}, []
    for st in stages:
        if isinstance(st, K.Store):
            value = K.substitute(st.value, table)
            if st.inner or st.accumulate or value is None:
                return None
            out.append(K.Store(st.buffer, st.index, (), value))
            continue
        src = K.value_dtype(st.value)
        value = K.substitute(st.value, table)
        if st.op not in _UNROLLED or st.inner != kp.inner or src != st.dtype or \
                src.short not in _UNROLL_DTYPES or value is None:
            return None
        elems = [K.bind(value, env) for env in points]
        acc = elems[0]
        if st.op == "sum" and src.is_floating:
            # from +0.0, as the loop (and PyTorch) starts: a sum of -0.0s is +0.0
            acc = K.Compute("add", (K.Const(0.0, src), acc), src)
        for x in elems[1:]:     # in loop order: the sum adds in the loop's order
            acc = K.Compute(_UNROLLED[st.op], (acc, x), src)
        table[K.AccRef(st.acc, st.dtype)] = acc
    return out


def _onehot_scatter(n):
    """scatter_add with one index per row (idx.shape[dim] == 1, src and idx alike and
    covering x elsewhere): exactly an elementwise select, so it fuses like one (the
    gradient of gather in NLL / cross-entropy)."""
    if n.op != "scatter_add":
        return False
    x, idx, src = n.inputs
    d = n.attrs["dim"]
    return (idx.shape[d] == 1 and src.shape == idx.shape and
            all(idx.shape[j] == x.shape[j] for j in range(len(x.shape)) if j != d))


def _has_division(value):
    for v in K.walk_values(value):
        if isinstance(v, K.Load):   # what matters is the address, after linearization
            idx = (K.linearize(v.index, v.buffer.shape),)
        else:
            idx = v.index if isinstance(v, (K.IndexValue, K.InRange, K.CheckIndex)) else \
                (v.flat,) if isinstance(v, K.RandValue) else ()
        if isinstance(idx, K.Lin):
            idx = (idx,)
        for i in idx:
            if any(isinstance(a, (K.FloorDiv, K.Mod)) for a in i.atoms()):
                return True
    return False


def _same_index(want, got, shape):
    for w, g, s in zip(want, got, shape):
        if s != 1 and w != g:
            return False
    return True


# ----------------------------------------------------------------------------- convolutions
#
# Convolutions are not kernels of their own: before fusion they are rewritten into
# primitives whose fused form is im2col + BLAS GEMM. The patch matrix is a concat of
# strided slices of the padded input, laid out so that it is a plain (or transposed)
# matrix in memory: the concat becomes one copy kernel with a store stage per slice
# (`_Fuser._concat_kernel`) and the GEMM reads it through a strided view. The slices
# are either the kh*kw kernel taps or the Ho*Wo output positions, whichever are fewer
# (a weight gradient is a convolution whose kernel is the whole output map: 784 taps,
# 3x3 positions):
#   taps:      cols[g, tap, c, n, ho, wo]   GEMM  W[g] [O/G, K*Cg] @ cols[g] [K*Cg, N*Ho*Wo]
#   positions: cols[g, pos, n, c, i, j]     GEMM  cols[g]   [P*N, Cg*K]     @ W[g] [Cg*K, O/G]
# W is the weight as a matrix (a strided view for positions; for taps a small copy,
# since its columns run tap-major). conv_transpose2d is either the conv2d of the
# stride-dilated, padded input with the flipped, channel-swapped weight, or (when its
# matrix is the smaller one) GEMM + col2im: cols = W^T @ x as [Co*K, N*H*W], then each
# tap's slab of cols placed at its output positions (a strided pad) and the K taps summed.
# The sum is elementwise and would be inlined into its reader; a reader that reads it at
# more points than it has elements (a max pool's backward) gets it stored instead
# (`_Fuser._recomputed_loads`).

_mk = make_node


def _conv2d_primitives(x, w, stride, padding, dilation, groups):
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    (sh, sw), (ph, pw), (dh, dw) = stride, padding, dilation
    if ph or pw:
        x = _mk("pad", x, low=(0, 0, ph, pw), high=(0, 0, ph, pw), interior=(0, 0, 0, 0))
    Ho = (H + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    Wo = (W + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    G, K, P, Og = groups, kh * kw, Ho * Wo, O // groups
    if K <= P:
        pieces = []
        for i in range(kh):
            for j in range(kw):
                sl = _mk("slice", x, starts=(0, 0, i * dh, j * dw),
                         stops=(N, C, i * dh + (Ho - 1) * sh + 1, j * dw + (Wo - 1) * sw + 1),
                         steps=(1, 1, sh, sw))                          # [N, C, Ho, Wo]
                sl = _mk("permute", _mk("reshape", sl, shape=(N, G, Cg, Ho, Wo)),
                         dims=(1, 2, 0, 3, 4))                          # [G, Cg, N, Ho, Wo]
                pieces.append(_mk("reshape", sl, shape=(G, 1, Cg, N, Ho, Wo)))
        cols = _concat(pieces, 1)                                       # [G, K, Cg, N, Ho, Wo]
        b = _mk("reshape", cols, shape=(G, K * Cg, N * P))
        wm = _mk("reshape", _mk("permute", _mk("reshape", w, shape=(G, Og, Cg, K)),
                                dims=(0, 1, 3, 2)), shape=(G, Og, K * Cg))
        # the output channels are the GEMM's rows: N*Ho*Wo columns keep BLAS's inner
        # loop long (a 16x288 @ 288x12544 product: 0.95 ms, its transpose 1.40 ms)
        y = _mk("matmul", wm, b)                                        # [G, O/G, N*Ho*Wo]
        y = _mk("permute", _mk("reshape", y, shape=(G, Og, N, Ho, Wo)), dims=(2, 0, 1, 3, 4))
        return _mk("reshape", y, shape=(N, O, Ho, Wo))
    pieces = []
    for ho in range(Ho):
        for wo in range(Wo):
            sl = _mk("slice", x, starts=(0, 0, ho * sh, wo * sw),
                     stops=(N, C, ho * sh + (kh - 1) * dh + 1, wo * sw + (kw - 1) * dw + 1),
                     steps=(1, 1, dh, dw))                              # [N, C, kh, kw]
            sl = _mk("permute", _mk("reshape", sl, shape=(N, G, Cg, kh, kw)),
                     dims=(1, 0, 2, 3, 4))                              # [G, N, Cg, kh, kw]
            pieces.append(_mk("reshape", sl, shape=(G, 1, N, Cg, kh, kw)))
    cols = _concat(pieces, 1)                                           # [G, P, N, Cg, kh, kw]
    a = _mk("reshape", cols, shape=(G, P * N, Cg * K))
    wm = _mk("permute", _mk("reshape", w, shape=(G, Og, Cg * K)), dims=(0, 2, 1))
    y = _mk("matmul", a, wm)                                            # [G, Ho*Wo*N, O/G]
    y = _mk("permute", _mk("reshape", y, shape=(G, Ho, Wo, N, Og)), dims=(3, 0, 4, 1, 2))
    return _mk("reshape", y, shape=(N, O, Ho, Wo))


def _concat(pieces, dim):
    return pieces[0] if len(pieces) == 1 else _mk("concat", *pieces, dim=dim)


def _flip_spatial(w):
    out = w
    for d in (2, 3):
        k = w.shape[d]
        if k == 1:
            continue
        iota = _mk("iota", shape=w.shape, dim=d, dtype=dt.int64)
        last = _mk("expand", _mk("reshape", _mk("const", value=k - 1, dtype=dt.int64),
                                 shape=(1, 1, 1, 1)), shape=w.shape)
        out = _mk("gather", out, _mk("sub", last, iota), dim=d)
    return out


def _conv_transpose2d_primitives(x, w, stride, padding, dilation, groups, output_padding):
    Ci, Cog, kh, kw = w.shape
    G = groups
    out_hw = tuple((n - 1) * s - 2 * p + d * (k - 1) + op + 1 for n, s, p, d, k, op in
                   zip(x.shape[2:], stride, padding, dilation, (kh, kw), output_padding))
    # GEMM + col2im writes a Co*K x N*H*W matrix; im2col of the dilated input a
    # Ci*K x N*Ho*Wo one: take the smaller (the input gradient of a conv that widens
    # 16 -> 32 channels: half the matrix, and no stride-dilated zeros to multiply)
    if G * Cog * x.shape[2] * x.shape[3] <= Ci * out_hw[0] * out_hw[1]:
        return _conv_transpose2d_col2im(x, w, stride, padding, dilation, groups, out_hw)
    lows, highs = [], []
    for k, p, d, op in zip((kh, kw), padding, dilation, output_padding):
        lows.append(d * (k - 1) - p)
        highs.append(d * (k - 1) - p + op)
    xd = _mk("pad", x, low=(0, 0) + tuple(max(v, 0) for v in lows),
             high=(0, 0) + tuple(max(v, 0) for v in highs),
             interior=(0, 0, stride[0] - 1, stride[1] - 1))
    if min(lows + highs) < 0:
        cut_lo = [max(-v, 0) for v in lows]
        cut_hi = [max(-v, 0) for v in highs]
        shp = xd.shape
        xd = _mk("slice", xd, starts=(0, 0, cut_lo[0], cut_lo[1]),
                 stops=(shp[0], shp[1], shp[2] - cut_hi[0], shp[3] - cut_hi[1]),
                 steps=(1, 1, 1, 1))
    wt = _mk("reshape", w, shape=(G, Ci // G, Cog, kh, kw))
    wt = _mk("reshape", _mk("permute", wt, dims=(0, 2, 1, 3, 4)),
             shape=(G * Cog, Ci // G, kh, kw))
    return _conv2d_primitives(xd, _flip_spatial(wt), (1, 1), (0, 0), dilation, groups)


def _conv_transpose2d_col2im(x, w, stride, padding, dilation, groups, out_hw):
    """GEMM + col2im: cols[g, (co, i, j), (n, y, x)] = W[g]^T @ x[g] (the weight as a
    transposed view, x channel-major), then each tap's slab of cols is placed at its
    output positions (a strided pad) and the taps are summed."""
    N, Ci, H, W = x.shape
    _, Cog, kh, kw = w.shape
    G, Cig = groups, Ci // groups
    xm = _mk("reshape", _mk("permute", _mk("reshape", x, shape=(N, G, Cig, H * W)),
                             dims=(1, 2, 0, 3)), shape=(G, Cig, N * H * W))
    wm = _mk("permute", _mk("reshape", w, shape=(G, Cig, Cog * kh * kw)), dims=(0, 2, 1))
    cols = _mk("reshape", _mk("matmul", wm, xm), shape=(G, Cog, kh, kw, N, H, W))
    total = None
    for i in range(kh):
        for j in range(kw):
            tap = _mk("slice", cols, starts=(0, 0, i, j, 0, 0, 0),
                      stops=(G, Cog, i + 1, j + 1, N, H, W), steps=(1,) * 7)
            tap = _mk("permute", _mk("reshape", tap, shape=(G, Cog, N, H, W)),
                      dims=(2, 0, 1, 3, 4))
            tap = _mk("reshape", tap, shape=(N, G * Cog, H, W))
            placed = _place_strided(tap, (i * dilation[0] - padding[0],
                                          j * dilation[1] - padding[1]), stride, out_hw)
            if placed is not None:
                total = placed if total is None else _mk("add", total, placed)
    if total is None:     # every tap falls outside the output (padding >= kernel)
        return _mk("expand", _mk("reshape", _mk("const", value=0.0, dtype=x.dtype),
                                 shape=(1, 1, 1, 1)), shape=(N, G * Cog) + tuple(out_hw))
    return total


def _place_strided(t, lows, stride, out_hw):
    """t [N, C, H, W] with element (y, x) moved to (low_h + y*s_h, low_w + x*s_w) of an
    out_hw map (zeros elsewhere; what falls outside is dropped), or None if nothing
    lands inside."""
    starts, stops, low, high = [0, 0], list(t.shape[:2]), [0, 0], [0, 0]
    for d, (size, lo, s, out) in enumerate(zip(t.shape[2:], lows, stride, out_hw)):
        first = max(0, -(lo // s))          # the first y with lo + y*s >= 0
        last = min(size - 1, (out - 1 - lo) // s)
        if first > last:
            return None
        starts.append(first)
        stops.append(last + 1)
        lo2 = lo + first * s
        low.append(lo2)
        high.append(out - (lo2 + (last - first) * s + 1))
    if starts[2:] != [0, 0] or stops[2:] != list(t.shape[2:]):
        t = _mk("slice", t, starts=tuple(starts), stops=tuple(stops), steps=(1, 1, 1, 1))
    return _mk("pad", t, low=tuple(low), high=tuple(high),
               interior=(0, 0, stride[0] - 1, stride[1] - 1))


def lower_convolutions(graph: Graph) -> Graph:
    """`graph` with conv2d / conv_transpose2d rewritten into primitive ops (or `graph`
    itself when it has none)."""
    if not any(n.op in ("conv2d", "conv_transpose2d") for n in graph.nodes):
        return graph
    from .lowering import rebuild

    def replace(n, new):
        ins = tuple(new[id(i)] for i in n.inputs)
        a = n.attrs
        if n.op == "conv2d":
            return _conv2d_primitives(*ins, a["stride"], a["padding"], a["dilation"],
                                      a["groups"])
        if n.op == "conv_transpose2d":
            return _conv_transpose2d_primitives(*ins, a["stride"], a["padding"],
                                                a["dilation"], a["groups"],
                                                a["output_padding"])
        return None
    return rebuild(graph, replace)


def fuse(graph: Graph) -> FusedPlan:
    """Group `graph` into kernels (see the module docstring). Sums of gradient
    contributions are first combined (passes/lowering.py) and convolutions lowered to
    primitives (`lower_convolutions`); the plan's `graph` is the lowered one,
    with the same inputs and outputs in the same order."""
    from .lowering import lower_for_backends
    return _Fuser(lower_convolutions(lower_for_backends(graph))).run()
