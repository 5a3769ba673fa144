"""Algebraic simplification: local rewrites that are exact.

Every rule gives bit-for-bit the values the reference interpreter gives for the
original node, for every input, including NaN, infinities and the sign of zero. That
is why some familiar rules are narrower than in textbooks:

  * `x + 0 -> x` holds for floats only when the zero is -0.0 (-0.0 + +0.0 is +0.0),
    and `x - 0 -> x` only when the zero is +0.0; both hold for integers and bools.
  * `x * 0 -> 0` holds for integers only (NaN * 0 is NaN, -1.0 * 0 is -0.0).
  * `sum` over dims of size 1 is a reshape for integers and bools only: numpy's sum
    starts from +0.0, so the sum of [-0.0] is +0.0. `prod`, `max` and `min` over size-1
    dims are reshapes for every dtype.
  * `cast(cast(x, B), A)` is `x` when A is x's dtype and B holds every value of it;
    other cast chains are kept (numpy's int-to-float16 and out-of-range float-to-int
    conversions make their composition platform-dependent).

Constants are recognised through movement ops: in the IR `x * 1` is `mul(x,
expand(reshape(const 1)))`, since elementwise operands must have equal shapes. The
rules (see `_RULES`):

    add(x, zero) / add(zero, x) -> x        sub(x, zero) -> x
    mul(x, 1) / mul(1, x) -> x               mul(x, 0) -> 0 (integers)
    div(x, 1) -> x                           neg(neg(x)) -> x, logical_not likewise
    cast(x) to x's dtype -> x                cast(cast(x, B), dtype(x)) -> x (B lossless)
    reshape(x) to x's shape -> x             reshape(reshape(x)) -> reshape(x)
    permute(x, identity) -> x                permute(permute(x, p), q) -> permute(x, p.q)
    expand(x) to x's shape -> x              expand(expand(x)) -> expand(x)
    slice of everything -> x                 pad by nothing -> x
    concat of one operand -> it              reductions over size-1 dims -> reshape
    where(c, x, x) -> x                      where(true, x, y) -> x, where(false, ...) -> y
    maximum/minimum/logical_and/logical_or(x, x) -> x

Folding an elementwise op whose operands are all expanded scalar constants is done by
constant folding (fold.py), which computes it on one element.

"Bit for bit" is about values. The interpreter's float reductions (numpy's sum, prod,
matmul) add in an order that depends on their operand's memory layout, and a rule
that replaces a fresh array by a view of another (a reduction over size-1 dims,
`where(c, x, x)`, a pad of nothing) can hand a downstream reduction a transposed
layout: its result may then differ in the last bits, as any two summation orders do.
"""
from __future__ import annotations

import numpy as np

from ..ir import dtypes as dt
from ..ir.graph import Graph, TensorType
from .dce import rewrite
from .fold import splat_scalar

# For each dtype, the dtypes that hold every one of its values exactly.
_LOSSLESS_TO = {
    dt.bool_: set(dt.ALL),
    dt.uint8: {dt.int32, dt.int64, dt.float16, dt.bfloat16, dt.float32, dt.float64},
    dt.int32: {dt.int64, dt.float64},
    dt.int64: set(),
    dt.float16: {dt.float32, dt.float64},
    dt.bfloat16: {dt.float32, dt.float64},
    dt.float32: {dt.float64},
    dt.float64: set(),
}


def is_lossless(src: dt.DType, dst: dt.DType) -> bool:
    return src is dst or dst in _LOSSLESS_TO[src]


def _equals(value, target) -> bool:
    return value is not None and bool(value == target)


def _is_additive_identity(value, dtype, negative_zero: bool) -> bool:
    """`value` is the zero that leaves every x unchanged under + (negative_zero=True)
    or - (negative_zero=False): for floats that zero must have the right sign."""
    if not _equals(value, 0):
        return False
    return not dtype.is_floating or bool(np.signbit(value)) == negative_zero


def _movement(b, op, x, out_shape, loc, attrs):
    """`op(x)` with result shape `out_shape`, or x itself when a reshape/expand would
    change nothing."""
    out_shape = tuple(out_shape)
    if x.type.shape == out_shape and op in ("reshape", "expand"):
        return x
    return b.emit(op, (x,), attrs, TensorType(out_shape, x.type.dtype), loc)


# Each rule gets the builder, `splat` (node -> its 0-d value if it is a scalar constant
# seen through movement ops, else None), the old node and the new nodes standing for
# its inputs; it returns the replacement, or None to keep the node.

def _add(b, splat, n, x, y):
    dtype = n.type.dtype
    if _is_additive_identity(splat(y), dtype, negative_zero=True):
        return x
    if _is_additive_identity(splat(x), dtype, negative_zero=True):
        return y
    return None


def _sub(b, splat, n, x, y):
    return x if _is_additive_identity(splat(y), n.type.dtype, negative_zero=False) else None


def _mul(b, splat, n, x, y):
    for value, constant in ((x, y), (y, x)):
        if _equals(splat(constant), 1):
            return value
        if not n.type.dtype.is_floating and _equals(splat(constant), 0):
            return constant
    return None


def _div(b, splat, n, x, y):
    return x if _equals(splat(y), 1) else None


def _involution(b, splat, n, x):
    return x.inputs[0] if x.op == n.op else None


def _cast(b, splat, n, x):
    if x.type.dtype is n.type.dtype:
        return x
    if x.op == "cast":
        y = x.inputs[0]
        if y.type.dtype is n.type.dtype and is_lossless(y.type.dtype, x.type.dtype):
            return y
    return None


def _reshape(b, splat, n, x):
    if x.type.shape == n.type.shape:
        return x
    if x.op == "reshape":
        return _movement(b, "reshape", x.inputs[0], n.type.shape, n.loc, n.attrs)
    return None


def _permute(b, splat, n, x):
    perm = tuple(n.attrs["dims"])
    if perm == tuple(range(len(perm))):
        return x
    if x.op == "permute":
        inner = tuple(x.attrs["dims"])
        composed = tuple(inner[p] for p in perm)
        if composed == tuple(range(len(composed))):
            return x.inputs[0]
        return _movement(b, "permute", x.inputs[0], n.type.shape, n.loc, {"dims": composed})
    return None


def _expand(b, splat, n, x):
    if x.type.shape == n.type.shape:
        return x
    if x.op == "expand":
        return _movement(b, "expand", x.inputs[0], n.type.shape, n.loc, n.attrs)
    return None


def _slice(b, splat, n, x):
    whole = all(start == 0 and stop == size and step == 1 for start, stop, step, size in
                zip(n.attrs["starts"], n.attrs["stops"], n.attrs["steps"], x.type.shape))
    return x if whole else None


def _pad(b, splat, n, x):
    nothing = not any(n.attrs["low"]) and not any(n.attrs["high"]) and \
        not any(n.attrs["interior"])
    return x if nothing else None


def _concat(b, splat, n, *xs):
    return xs[0] if len(xs) == 1 else None


def _reduction(b, splat, n, x):
    if n.op == "sum" and n.type.dtype.is_floating:
        return None  # sum([-0.0]) is +0.0
    if all(x.type.shape[d] == 1 for d in n.attrs["dims"]):
        return _movement(b, "reshape", x, n.type.shape, n.loc, {"shape": n.type.shape})
    return None


def _where(b, splat, n, cond, x, y):
    if x is y:
        return x
    v = splat(cond)
    if v is not None:
        return x if bool(v) else y
    return None


def _idempotent(b, splat, n, x, y):
    return x if x is y else None


_RULES = {
    "add": _add, "sub": _sub, "mul": _mul, "div": _div,
    "neg": _involution, "logical_not": _involution, "cast": _cast,
    "reshape": _reshape, "permute": _permute, "expand": _expand, "slice": _slice,
    "pad": _pad, "concat": _concat,
    "sum": _reduction, "prod": _reduction, "max": _reduction, "min": _reduction,
    "where": _where,
    "maximum": _idempotent, "minimum": _idempotent, "logical_and": _idempotent,
    "logical_or": _idempotent,
}


def simplify(graph: Graph) -> Graph:
    """One sweep of the rules over `graph` (run to a fixed point by pipeline.optimize)."""
    memo = {}

    def splat(node):
        return splat_scalar(node, memo)

    def rule(b, n, inputs):
        r = _RULES.get(n.op)
        out = r(b, splat, n, *inputs) if r is not None else None
        return out if out is not None else b.copy(n, inputs)

    return rewrite(graph, rule)
