"""Constant folding.

A node is constant when everything it depends on comes from `const` and `iota` nodes.
Its value is computed with the ops' numpy `impl`s exactly as the reference interpreter
computes it (each result cast to the node's recorded dtype, bfloat16 rounded), so
folding never changes a bit of any output.

The IR has scalar constants only, so a folded value must be *uniform* (every element
the same) to be written back: it becomes a "splat" in canonical form,

    const                                   for shape []
    reshape(const) {shape=[1,...,1]}        for shapes of ones
    expand(reshape(const) {shape=[1,...,1]}) {shape=S}   otherwise,

and a constant that is not uniform (an `iota`, a triangular mask) is left as it is.
Uniform values are tracked without materialising them: an elementwise op whose
operands are all splats is computed on one element, and reshape/expand/permute/slice
of a splat is the same splat. Anything else is evaluated on whole arrays, with the
same impl calls on the same arrays as the interpreter (numpy's float sums depend on
the operand's memory layout, so a reduction is only evaluated on the interpreter's
own arrays), and only when the result has at most `max_elements` elements, which
bounds the work. An op whose impl raises (an out-of-range `gather`) is left for the
runtime to report.

Never folded: `input` nodes (runtime values) and `rand` (its seed and offset are
runtime inputs; a `rand` with constant operands is still left alone).

One caveat on "never changes a bit": a canonical splat runs as a broadcast view, so a
float reduction too large to fold that reads it (through movement ops) may see another
memory layout than before on the interpreter, and numpy may then add in another order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backends.interp import coerce
from ..ir.graph import Graph, Node, TensorType
from ..ir.registry import FusionClass, get_op
from .dce import GraphBuilder, rewrite

DEFAULT_MAX_ELEMENTS = 4096
NEVER_FOLDED = frozenset({"input", "rand"})
SPLAT_PRESERVING = frozenset({"reshape", "expand", "permute", "slice"})


@dataclass(frozen=True)
class Known:
    """What is known of a constant node's value: `splat`, the 0-d value every element
    has (None if not uniform or not known to be), and `array`, the whole value exactly
    as the reference interpreter computes it, memory layout included (None if larger
    than the evaluation limit)."""
    splat: np.ndarray | None
    array: np.ndarray | None


def _coerce(value, type: TensorType) -> np.ndarray:
    """The interpreter's cast to the node's dtype. A 0-d value goes through a 1-element
    array: the interpreter's bfloat16 rounding returns 0-d values as 1-d."""
    if type.shape:
        return coerce(value, type)
    one = coerce(np.reshape(value, (1,)), TensorType((1,), type.dtype))
    return one.reshape(())


def python_scalar(value: np.ndarray, dtype):
    """The `const` attribute for a 0-d value of `dtype` (kept exact: a float32 or
    bfloat16 value is a Python float exactly)."""
    if dtype.is_bool:
        return bool(value)
    if dtype.is_floating:
        return float(value)
    return int(value)


def splat_scalar(node: Node, memo: dict) -> np.ndarray | None:
    """The 0-d value of `node` if it is a scalar constant seen through movement ops
    (const, or reshape/expand/permute/slice chains over one), else None. Structural
    only: nothing is evaluated beyond the const itself. Iterative: chains can be long."""
    chain = []
    while id(node) not in memo and node.op in SPLAT_PRESERVING:
        chain.append(node)
        node = node.inputs[0]
    if id(node) not in memo:
        memo[id(node)] = _coerce(get_op("const").impl(node.attrs), node.type) \
            if node.op == "const" else None
    value = memo[id(node)]
    for n in chain:
        memo[id(n)] = value
    return value


def _uniform(a: np.ndarray) -> bool:
    """All elements bitwise equal (so -0.0 and 0.0 differ, and NaNs may count)."""
    if a.size == 0:
        return True
    flat = np.ascontiguousarray(a).reshape(-1)
    raw = flat.view(np.uint8).reshape(flat.size, -1)
    return bool((raw == raw[0]).all())


def _evaluate(n: Node, known: list, max_elements: int) -> Known | None:
    """What can be known of `n` from its operands, or None. Whole arrays are computed
    from the operands' arrays by the same impl calls the interpreter makes (numpy's
    float sums depend on the operands' memory layout, so a reduction is only ever
    evaluated on the interpreter's own arrays). An impl that raises (an index out of
    range) leaves the node to the runtime, which reports the error."""
    opdef = get_op(n.op)
    splat = array = None
    try:
        with np.errstate(all="ignore"):
            if known and all(k.splat is not None for k in known):
                if opdef.fusion is FusionClass.ELEMENTWISE:
                    one = TensorType((1,), n.type.dtype)  # impls expect arrays, not 0-d
                    args = [k.splat.reshape(1) for k in known]
                    splat = coerce(opdef.impl(n.attrs, *args), one).reshape(())
                elif n.op in SPLAT_PRESERVING:
                    splat = known[0].splat
            if n.type.numel <= max_elements and all(k.array is not None for k in known):
                array = _coerce(opdef.impl(n.attrs, *[k.array for k in known]), n.type)
                if splat is None and _uniform(array):
                    splat = array.reshape(-1)[0].reshape(()) if array.size else \
                        np.zeros((), array.dtype)
    except Exception:
        pass
    return Known(splat, array) if splat is not None or array is not None else None


def constant_values(graph: Graph, max_elements: int = DEFAULT_MAX_ELEMENTS) -> dict:
    """id(node) -> Known, for every constant node of `graph` with something known."""
    out: dict[int, Known] = {}
    for n in graph.nodes:
        if n.op in NEVER_FOLDED:
            continue
        known = [out.get(id(i)) for i in n.inputs]
        if any(k is None for k in known):
            continue
        k = _evaluate(n, known, max_elements)
        if k is not None:
            out[id(n)] = k
    return out


def _is_canonical_splat(op: str, inputs, shape) -> bool:
    """Whether a node `op(inputs)` of shape `shape` is a splat in the canonical form."""
    if op == "const":
        return True
    if op == "reshape":
        return len(shape) > 0 and all(s == 1 for s in shape) and inputs[0].op == "const"
    if op == "expand":
        src = inputs[0]
        return src.op == "reshape" and src.type.shape != shape and \
            _is_canonical_splat(src.op, src.inputs, src.type.shape)
    return False


def emit_splat(b: GraphBuilder, value: np.ndarray, type: TensorType, loc) -> Node:
    """Emit the canonical splat of the 0-d `value` with type `type`."""
    c = b.emit("const", (), {"value": python_scalar(value, type.dtype), "dtype": type.dtype},
               TensorType((), type.dtype), loc)
    if not type.shape:
        return c
    ones = (1,) * len(type.shape)
    r = b.emit("reshape", (c,), {"shape": ones}, TensorType(ones, type.dtype), loc)
    if ones == type.shape:
        return r
    return b.emit("expand", (r,), {"shape": type.shape}, type, loc)


def constant_folding(graph: Graph, max_elements: int = DEFAULT_MAX_ELEMENTS) -> Graph:
    """Replace every uniform constant that is not yet a canonical splat by one."""
    values = constant_values(graph, max_elements)

    def rule(b, n, inputs):
        k = values.get(id(n))
        if k is not None and k.splat is not None and \
                not _is_canonical_splat(n.op, inputs, n.type.shape):
            return emit_splat(b, k.splat, n.type, n.loc)
        return b.copy(n, inputs)

    return rewrite(graph, rule)
