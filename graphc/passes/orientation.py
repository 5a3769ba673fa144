"""Orientation of matrix regions: store the values between GEMMs transposed where BLAS
computes the products around them faster that way.

Why. A matrix product can be computed as `C = A @ B` or, transposed, as `C^T = B^T @
A^T` (BLAS transpose flags, no copies), and OpenBLAS's speed depends on which: on this
machine's SkylakeX kernels a product with fewer rows than columns, or one whose second
operand is a transposed view, runs 6-50% slower than the same product the other way
round (`python benchmarks/gemm_orientation.py orientation` prints the table). An MLP
layer `x @ W^T` (batch rows, feature columns, the weight read transposed) is both, and
`W @ x^T` is neither: 0.63 against 0.56 ms for 128x784x512.

Computing a product transposed only pays if its readers read it in that orientation
too: a pointwise kernel that reads one operand transposed and writes its result row
by row reads with a stride (the MLP step's bias + relu readers of a transposed product
went from 0.054 to 0.159 ms). So the choice is made for a whole region, not one
product:

  * **Regions.** Rank-2 elementwise nodes, the slices, pads and concats (which commute
    with a transpose, their per-dim attrs swapped), and the matmuls whose results they
    read, are joined along their edges (union-find). Every value of a region is stored
    in one orientation, so its kernels read and write straight through either way.
  * **Legality.** A region may flip only if no transpose has to be made in memory:
      - no value of the region is a graph output (its layout is the caller's);
      - every operand it reads from outside is cheap to read transposed: a broadcast
        (`expand` of something with a unit dim), a value computed from its index
        (`rand`, so a dropout mask does not block a layer), or itself a transpose (its
        input is then read as it is stored);
      - every reader outside the region takes the flip for free: a matmul (a
        transpose flag), a transpose (it becomes the flipped value itself), or a
        sum/max/min/prod reduction (its dims are swapped).
  * **Choice.** `gemm_cost` models a product's time from its shape and which operands
    are transposed views (a fit to the measured table). Regions are flipped greedily,
    one at a time, while a flip lowers the modelled time of all the graph's rank-2
    matmuls: a flip changes how the region's own products are computed and how every
    other matmul reads them, so a layer whose product gains can still stay as it is
    when its readers would lose more (the hand-written MLP's `x @ W` forward does).

Rewrite. A flipped elementwise node applies its op to the transposed operands; a
flipped matmul `A @ B` becomes `B^T @ A^T`; readers outside see a transpose view of the
flipped value, which fusion folds into a GEMM's flags or a reduction's indexing.
Like the rest of the lowering (lowering.py) this may change the summation order inside
a GEMM, so it runs in the backends' lowering, not among the bit-exact simplifications.
The Triton backend gets the same plan: its GEMM tiles read either orientation through
strides (the model is OpenBLAS's; on a GPU the choice is not tuned).
"""
from __future__ import annotations

from ..ir.graph import Graph, Node
from ..ir.registry import FusionClass, get_op, make_node as _mk
# the transpose helpers of the other lowering rewrites (rank 2 here)
from .lowering import _swaps_last_two as _is_swap, _transposed, rebuild

_MODELLED_DTYPES = ("f32", "f64")

# reductions whose dims can be renamed through a transpose
_REDUCTIONS = ("sum", "max", "min", "prod")


def _reversed_per_dim(*keys):
    return lambda attrs: {**attrs, **{k: tuple(reversed(attrs[k])) for k in keys}}


# Movement ops that commute with a transpose: `op(x)^T == op'(x^T)` with the attrs this
# gives. Elementwise ops commute with their attrs unchanged.
_TRANSPOSED_ATTRS = {
    "slice": _reversed_per_dim("starts", "stops", "steps"),
    "pad": _reversed_per_dim("low", "high", "interior"),
    "concat": lambda attrs: {**attrs, "dim": 1 - attrs["dim"]},
}


def orient_matrix_regions(graph: Graph) -> Graph:
    """`graph` with the regions that gain from it computed transposed (or `graph`
    itself when none does); see the module docstring."""
    users, outputs = graph.users(), {id(o) for o in graph.outputs}
    regions = [r for r in _regions(graph) if _may_flip(r, users, outputs)]
    if not regions:
        return graph
    flipped_ids = _choose(regions, [n for n in graph.nodes if n.op == "matmul" and
                                    len(n.shape) == 2])
    if not flipped_ids:
        return graph
    flipped: dict[int, Node] = {}     # id(old node) -> its transposed replacement

    def transposed_operand(i, new):
        return flipped[id(i)] if id(i) in flipped else _transposed(new[id(i)])

    def replace(n, new):
        if id(n) in flipped_ids:
            if n.op == "matmul":
                a, b = n.inputs
                t = _mk("matmul", transposed_operand(b, new), transposed_operand(a, new))
            else:
                attrs = _TRANSPOSED_ATTRS.get(n.op, dict)(n.attrs)
                t = _mk(n.op, *(transposed_operand(i, new) for i in n.inputs), **attrs)
            flipped[id(n)] = t
            return _transposed(t)        # what readers outside the region see
        if len(n.inputs) == 1 and id(n.inputs[0]) in flipped:
            src = flipped[id(n.inputs[0])]
            if _is_swap(n):
                return src
            if n.op in _REDUCTIONS:
                dims = tuple(sorted(1 - d for d in n.attrs["dims"]))
                r = _mk(n.op, src, **{**n.attrs, "dims": dims})
                return _transposed(r) if n.attrs["keepdim"] else r
        return None
    return rebuild(graph, replace)


def _is_member(n):
    """A rank-2 node a region holds besides its matmuls: elementwise, or a movement op
    that commutes with a transpose (column slices of a product, as an LSTM cell takes
    its gates; the pads and concats of their gradients)."""
    return len(n.shape) == 2 and n.op != "input" and (
        n.op in _TRANSPOSED_ATTRS or get_op(n.op).fusion is FusionClass.ELEMENTWISE)


def _regions(graph):
    """The regions (lists of nodes) that hold at least one matmul."""
    parent: dict[int, int] = {}

    def find(k):
        while parent[k] != k:
            parent[k] = parent[parent[k]]
            k = parent[k]
        return k
    by_id = {}
    for n in graph.nodes:
        if not _is_member(n):
            continue
        by_id[id(n)] = n
        parent.setdefault(id(n), id(n))
        for i in n.inputs:
            if _is_member(i) or (i.op == "matmul" and len(i.shape) == 2):
                by_id[id(i)] = i
                parent.setdefault(id(i), id(i))
                parent[find(id(i))] = find(id(n))
    groups: dict[int, list[Node]] = {}
    for k, n in by_id.items():
        groups.setdefault(find(k), []).append(n)
    # the cost model is OpenBLAS's sgemm/dgemm: regions whose products are all float32
    # or float64 (a float16 or integer product is a loop kernel with an epilogue)
    return [g for g in groups.values() if any(n.op == "matmul" for n in g) and
            all(n.dtype.short in _MODELLED_DTYPES for n in g if n.op == "matmul")]


def _may_flip(members, users, outputs) -> bool:
    """Whether flipping the region needs no transpose in memory (module docstring)."""
    ids = {id(n) for n in members}
    for n in members:
        if id(n) in outputs:
            return False
        if n.op != "matmul" and any(id(i) not in ids and not _cheap_transposed(i)
                                    for i in n.inputs):
            return False
        if any(id(u) not in ids and not (u.op == "matmul" or _is_swap(u) or
                                         u.op in _REDUCTIONS) for u in users[id(n)]):
            return False
    return True


# Relative time of a GEMM `X @ Y` (rank 2) by its shape and operand layouts, fitted to
# numpy's OpenBLAS (SkylakeX kernels, 2 threads) over MLP, LSTM and weight-gradient
# shapes with preallocated outputs: `python benchmarks/gemm_orientation.py orientation`
# prints the table and refits these. "wide": fewer rows than columns; "X^T", "Y^T": the
# operand is a transposed view of a row-major array.
WIDE, X_TRANSPOSED, Y_TRANSPOSED, WIDE_Y_TRANSPOSED = 0.12, 0.03, 0.07, 0.10


# The fit covers products whose result has at least this many rows and columns; a
# smaller one is modelled as costing the same either way (never a reason to flip).
MIN_MODELLED_SIDE = 32


def gemm_cost(rows, cols, depth, x_transposed, y_transposed) -> float:
    if min(rows, cols) < MIN_MODELLED_SIDE:
        return rows * cols * depth
    wide = rows < cols
    factor = 1 + WIDE * wide + X_TRANSPOSED * x_transposed + \
        (Y_TRANSPOSED + WIDE_Y_TRANSPOSED * wide) * y_transposed
    return rows * cols * depth * factor


# The flips must save at least this share of the graph's modelled GEMM time: the fit
# is within a few percent per product, and the hand-written MLP step, whose flips it
# models as saving 2%, ran 2-3% slower flipped.
MIN_GAIN = 0.03


def _choose(regions, matmuls) -> set[int]:
    """ids of the nodes of the regions to flip. Greedy: flip one region at a time while
    that lowers the modelled time of all the graph's matmuls (a region's flip changes
    how its own products are computed and how other matmuls read them); keep the
    result only if it saves MIN_GAIN in all."""
    flipped: set[int] = set()

    def stored_transposed(v):
        if _is_swap(v):
            return not stored_transposed(v.inputs[0])
        return id(v) in flipped

    def total():
        cost = 0.0
        for m in matmuls:
            a, b = m.inputs
            rows, depth = a.shape
            cols = b.shape[1]
            if id(m) in flipped:     # computed as B^T @ A^T
                cost += gemm_cost(cols, rows, depth, not stored_transposed(b),
                                  not stored_transposed(a))
            else:
                cost += gemm_cost(rows, cols, depth, stored_transposed(a),
                                  stored_transposed(b))
        return cost
    start = best = total()
    improved = True
    while improved:
        improved = False
        for members in regions:
            ids = {id(n) for n in members}
            flipped ^= ids
            cost = total()
            if cost < best * (1 - 1e-9):
                best, improved = cost, True
            else:
                flipped ^= ids
    return flipped if best <= start * (1 - MIN_GAIN) else set()


def _cheap_transposed(i):
    """Whether reading `i` transposed costs no strided pass over memory: a transpose
    (read as stored), a broadcast of something with a unit dim (a bias row), or a value
    computed from its index, not loaded (`rand`: a dropout mask draws the same number
    for an element in either orientation; `iota`)."""
    if _is_swap(i):
        return True
    if i.op != "input" and get_op(i.op).fusion is FusionClass.SOURCE:
        return True
    return i.op == "expand" and (len(i.inputs[0].shape) < 2 or 1 in i.inputs[0].shape)
