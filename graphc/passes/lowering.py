"""Lowering rewrites for the backends: gradient sums and GEMM output layouts.

Reverse mode sums the contributions of every use of a value. A weight used at every
step of an unrolled RNN gets the sum of T small matmuls; a tensor split into T slices
(`unbind`) gets the sum of T zero-padded slice gradients. Added up element by element,
the first costs T reads of every output element (from T separate buffers) and the
second a T-deep chain of selects. Two rewrites of an add tree (add nodes whose inner
nodes feed only their parent) fix both (`combine_sums`):

  * matmuls:  sum_i A_i @ B_i  ->  concat_i(A_i, dim=-1) @ concat_i(B_i, dim=-2)
              one GEMM with the summed dimension T times longer. An operand that is
              a transpose of the last two dims in every term is concatenated before
              the transpose, so the GEMM still reads it through a transpose flag.
  * pads:     sum of pads of pieces into disjoint slabs along one dim -> concat of the
              pieces (and zeros for the gaps): each element is written once.

A third rewrite picks a GEMM's output layout (`transpose_matmul_outputs`): the weight
gradient of `x @ w.t()` is `(x^T @ g)^T`, and every reader of it (the .grad output, the
optimiser update) would read the GEMM's result transposed, a cache miss per element on
a large weight. When a matmul is only read through a transpose of its last two dims,
it is computed transposed instead, `B^T @ A^T` (BLAS flags, no copies).

A fourth folds a matmul that only feeds a linear update into the GEMM
(`fold_matmul_updates`): `w - lr * (x^T @ g)`, SGD's update of a weight from its
gradient, becomes `addmm(w, x^T, g, -lr)`, which BLAS computes as one GEMM with
beta = 1 into a copy of w. The gradient is never stored, the update kernel goes, and so
does the pass in which BLAS zeroes a beta = 0 output (the MLP step's 784x512 weight,
`benchmarks/step_profile.py mlp_step --profile`: 0.64 ms as GEMM plus update kernel,
0.61 ms as copy plus accumulating GEMM). One difference: with alpha exactly 0 (a
learning rate scheduled to 0) BLAS skips the product, so a gradient holding inf or
nan leaves w as it is where `w - 0 * grad` would be nan.

These change the order in which floats are added, or the sign of an exact zero (-0 + 0
is +0), so they are not simplifications in the bit-exact sense of passes/simplify.py:
they run as part of the backends' lowering (`fusion.fuse`), where summation order is
already the backend's to choose, and the differential tests compare with the
interpreter at the tolerance of a reduction.
"""
from __future__ import annotations

import math

from ..ir.graph import Graph, Node
from ..ir.registry import make_node as _mk


def lower_for_backends(graph: Graph) -> Graph:
    """The four rewrites above, with the choice of GEMM orientations
    (passes/orientation.py) after the sums are combined and before a matmul read only
    transposed is turned round."""
    from .orientation import orient_matrix_regions   # it imports `rebuild` from here
    return fold_matmul_updates(transpose_matmul_outputs(
        orient_matrix_regions(combine_sums(graph))))


def rebuild(graph: Graph, replace) -> Graph:
    """A graph computing what `graph` computes, node by node in order: `replace(node,
    new)` returns the node standing for `node` (built from `new[id(input)]`, the nodes
    already standing for earlier ones), or None to copy it onto its new inputs. Inputs
    and outputs keep their order; nodes no output needs any more drop out."""
    new = {}
    for n in graph.nodes:
        r = None if n.op == "input" else replace(n, new)
        if r is None:
            ins = tuple(new[id(i)] for i in n.inputs)
            r = n if all(x is y for x, y in zip(ins, n.inputs)) else \
                Node(n.op, ins, n.attrs, n.type, n.loc)
        new[id(n)] = r
    out, _ = Graph.from_outputs([new[id(o)] for o in graph.outputs], input_order=graph.inputs)
    return out


def transpose_matmul_outputs(graph: Graph) -> Graph:
    """`graph` with every matmul whose only readers transpose its last two dims computed
    transposed (or `graph` itself when there is none)."""
    users = graph.users()
    outputs = {id(o) for o in graph.outputs}

    def read_transposed(n):
        us = users[id(n)]
        return (n.op == "matmul" and us and id(n) not in outputs and
                len(n.shape) >= 2 and all(_swaps_last_two(u) for u in us))
    if not any(read_transposed(n) for n in graph.nodes):
        return graph

    def replace(n, new):
        if _swaps_last_two(n) and read_transposed(n.inputs[0]):
            a, b = (new[id(i)] for i in n.inputs[0].inputs)
            return _mk("matmul", _transposed(b), _transposed(a))
        return None
    return rebuild(graph, replace)


def _transposed(x):
    """x with its last two dims swapped (undoing a transpose rather than stacking one)."""
    if _swaps_last_two(x):
        return x.inputs[0]
    k = len(x.shape)
    return _mk("permute", x, dims=tuple(range(k - 2)) + (k - 1, k - 2))


def combine_sums(graph: Graph) -> Graph:
    """`graph` with every add tree of matmuls or disjoint pads rewritten (or `graph`
    itself when there is none)."""
    if not any(n.op == "add" for n in graph.nodes):
        return graph
    users = graph.users()
    for o in graph.outputs:        # an output is one more use
        users[id(o)] = users[id(o)] + [None]

    def absorbed(n):   # an add node that is an inner node of its user's tree
        us = users[id(n)]
        return n.op == "add" and len(us) == 1 and us[0] is not None and \
            us[0].op == "add" and us[0].type == n.type

    def leaves(n):
        out = []
        for i in n.inputs:
            out.extend(leaves(i) if absorbed(i) and users[id(i)][0] is n else [i])
        return out

    changed = []
    position = {id(n): k for k, n in enumerate(graph.nodes)}

    def replace(n, new):
        if n.op != "add" or absorbed(n):
            return None
        terms = leaves(n)
        if len(terms) > 2 or any(t.op in ("matmul", "pad") for t in terms):
            r = _rewrite_sum(n, terms, new, users, position)
            if r is not None:
                changed.append(n)
            return r
        return None
    out = rebuild(graph, replace)
    return out if changed else graph


def _rewrite_sum(root, terms, new, users, position):
    """The sum of `terms` (old nodes) with matmuls and pads combined, built from their
    rewritten inputs (`new`), or None if nothing combines. Combined matmuls are
    concatenated in the order of their earliest operand in the graph, not in the order
    the add tree lists them: reverse mode accumulates an unrolled RNN's weight gradient
    from the last step back, and in step order its operands are the same stacks the
    other gradients use (fusion._elide_concats then stores them once)."""
    def only_here(t):
        return len(users[id(t)]) == 1
    used, parts = set(), []
    mms = [t for t in terms if t.op == "matmul" and only_here(t) and t.type == root.type]
    groups = {}
    for t in mms:
        a, b = t.inputs
        groups.setdefault((a.shape[:-1], b.shape[-1], a.dtype, b.dtype), []).append(t)
    for group in groups.values():
        if len(group) >= 2:
            group.sort(key=lambda t: min(position[id(_origin(i))] for i in t.inputs))
            parts.append(_combined_matmul(group, new))
            used.update(id(t) for t in group)
    pads = {}
    for t in terms:
        if t.op == "pad" and only_here(t) and id(t) not in used:
            d = _slab_dim(t)
            if d is not None:
                pads.setdefault(d, []).append(t)
    for d, group in pads.items():
        cat = _disjoint_concat(group, d, new) if len(group) >= 2 else None
        if cat is not None:
            parts.append(cat)
            used.update(id(t) for t in group)
    if not parts:
        return None
    rest = [new[id(t)] for t in terms if id(t) not in used]
    total = parts[0]
    for x in parts[1:] + rest:
        total = Node("add", (total, x), {}, root.type, root.loc)
    return total


def _origin(n):
    """The value `n` is a view of (through movement ops)."""
    while n.op in ("reshape", "permute", "expand", "slice"):
        n = n.inputs[0]
    return n


def _swaps_last_two(n):
    if n.op != "permute":
        return False
    dims, k = tuple(n.attrs["dims"]), len(n.shape)
    return k >= 2 and dims == tuple(range(k - 2)) + (k - 1, k - 2)


def _concat(xs, dim):
    return xs[0] if len(xs) == 1 else _mk("concat", *xs, dim=dim)


def _is_splat(n):
    """A constant broadcast to its shape (an RNN's zero initial state, say)."""
    return _origin(n).op == "const"


def _operand(xs, dim, new):
    """concat of the operands along `dim` (the summed one), or the transpose of the
    concat of their untransposed forms when every operand is a transpose (or a
    constant, whose untransposed form is its own transpose: the zero initial state
    among an RNN's transposed hidden states must not make the whole stack a transposing
    copy)."""
    k = len(xs[0].shape)
    swapped = [x for x in xs if _swaps_last_two(x)]
    if swapped and all(_swaps_last_two(x) or _is_splat(x) for x in xs):
        perm = tuple(swapped[0].attrs["dims"])
        inner = [new[id(x.inputs[0])] if _swaps_last_two(x) else
                 _mk("permute", new[id(x)], dims=perm) for x in xs]
        other = k - 1 if dim == k - 2 else k - 2
        return _mk("permute", _concat(inner, other), dims=perm)
    return _concat([new[id(x)] for x in xs], dim % k)


def _combined_matmul(group, new):
    k = len(group[0].inputs[0].shape)
    a = _operand([t.inputs[0] for t in group], k - 1, new)
    b = _operand([t.inputs[1] for t in group], len(group[0].inputs[1].shape) - 2, new)
    return _mk("matmul", a, b)


def _slab_dim(pad):
    """The one dim a pad pads (without interior padding), or None."""
    low, high, interior = pad.attrs["low"], pad.attrs["high"], pad.attrs["interior"]
    if any(interior):
        return None
    dims = [d for d in range(len(low)) if low[d] or high[d]]
    return dims[0] if len(dims) == 1 else None


def _disjoint_concat(group, d, new):
    """The pads' pieces concatenated along `d` with zeros in the gaps, if their slabs
    do not overlap; else None."""
    size = group[0].shape[d]
    group = sorted(group, key=lambda p: p.attrs["low"][d])
    pieces, at = [], 0
    for p in group:
        lo = p.attrs["low"][d]
        if lo < at:
            return None
        if lo > at:
            pieces.append(_zeros(p, d, lo - at))
        pieces.append(new[id(p.inputs[0])])
        at = lo + p.inputs[0].shape[d]
    if at < size:
        pieces.append(_zeros(group[0], d, size - at))
    return _concat(pieces, d)


def _zeros(like, d, n):
    shape = tuple(n if j == d else s for j, s in enumerate(like.shape))
    value = False if like.dtype.is_bool else 0.0 if like.dtype.is_floating else 0
    zero = _mk("const", value=value, dtype=like.dtype)
    return _mk("expand", _mk("reshape", zero, shape=(1,) * len(shape)), shape=shape)


# --------------------------------------------------------------------------- updates

# dtypes whose matmul is a GEMM call that can accumulate (LLVM: BLAS, Triton: tl.dot);
# a bfloat16 or float16 product is rounded to its dtype before it is added, which one
# accumulating GEMM would not do
_ACCUMULATING_DTYPES = ("f32", "f64")


def fold_matmul_updates(graph: Graph) -> Graph:
    """`graph` with every graph output that is a linear update `E + s * (A @ B)` of a
    matmul used nowhere else (a chain of adds, subs, negations and products with
    scalars above the matmul, each node of the chain used only by the next) rewritten
    as `addmm(E, A, B, s)`, or `graph` itself when there is none. E gathers every
    addend met on the way, scaled by the scalars above it, and s the product of the
    scalars and signs.

    Only an output: it is stored anyway, so storing E there first costs no more than the
    update kernel it replaces. Inside a graph the update would be inlined into its
    readers (a forward layer's `relu(x @ w + b)` reads b in the relu's kernel), and
    folding would add a kernel that stores it (the GEMM kernel has no epilogue)."""
    users = graph.users()
    outputs = {id(o) for o in graph.outputs}

    def next_step(n):
        """(user, kind, other operand) when n's only use continues a linear chain."""
        us = users[id(n)]
        if id(n) in outputs or len(us) != 1 or us[0].type != n.type:
            return None
        u = us[0]
        other = next((i for i in u.inputs if i is not n), None)
        if u.op == "neg":
            return u, "neg", None
        if u.op in ("add", "sub") and len(u.inputs) == 2 and other is not None:
            return u, ("rsub" if u.op == "sub" and u.inputs[1] is n else u.op), other
        if u.op == "mul" and other is not None and _scalar_base(other) is not None:
            return u, "mul", other
        return None

    chains = {}   # id(top node) -> (matmul, [(kind, other operand)])
    for mm in graph.nodes:
        if mm.op != "matmul" or mm.dtype.short not in _ACCUMULATING_DTYPES:
            continue
        steps, n = [], mm
        while (step := next_step(n)) is not None:
            n, kind, other = step
            steps.append((kind, other))
        # the chain ends at an output or at a node with other uses: only an output,
        # and only an update that adds something, is folded
        if id(n) in outputs and any(k in ("add", "sub", "rsub") for k, _ in steps):
            chains[id(n)] = (mm, steps)
    if not chains:
        return graph

    def replace(n, new):
        if id(n) not in chains:
            return None
        mm, steps = chains[id(n)]
        addend, scale, negative = None, None, False
        for kind, other in steps:
            if kind == "neg":
                negative = not negative
                addend = None if addend is None else _mk("neg", addend)
            elif kind == "mul":
                s = _scalar_base(other, new)
                scale = s if scale is None else _mk("mul", scale, s)
                addend = None if addend is None else _mk("mul", addend, new[id(other)])
            elif kind == "add":
                addend = new[id(other)] if addend is None else _mk("add", addend, new[id(other)])
            elif kind == "sub":
                addend = _mk("neg", new[id(other)]) if addend is None else \
                    _mk("sub", addend, new[id(other)])
            else:   # rsub: other - chain
                negative = not negative
                addend = new[id(other)] if addend is None else _mk("sub", new[id(other)], addend)
        if scale is None:
            scale = _mk("const", value=-1.0 if negative else 1.0, dtype=mm.dtype)
        elif negative:
            scale = _mk("neg", scale)
        a, b = (new[id(i)] for i in mm.inputs)
        return Node("addmm", (addend, a, b, scale), {}, n.type, n.loc)
    return rebuild(graph, replace)


def _scalar_base(x, new=None):
    """The 0-d value that `x` (one element, maybe reshaped and expanded) repeats, from
    the rewritten graph when `new` is given; None when x is not a repeated scalar."""
    while x.op in ("expand", "reshape") and math.prod(x.inputs[0].shape) == 1:
        x = x.inputs[0]
    if math.prod(x.shape) != 1:
        return None
    if new is None:
        return x
    x = new[id(x)]
    return x if x.shape == () else _mk("reshape", x, shape=())
