"""Common-subexpression elimination.

Two nodes are the same computation when they apply the same op, with equal attrs and
type, to the same (already merged) input nodes; the later one is replaced by the
earlier one, which keeps its source location. For commutative ops (`add`, `mul`,
`eq`, `ne`, `logical_and/or/xor`: exactly commutative in IEEE arithmetic too) the order
of the two operands does not matter. `maximum`/`minimum` are not treated as
commutative: numpy's `maximum(-0.0, 0.0)` and `maximum(0.0, -0.0)` differ.

Inputs are never merged: two inputs are two runtime values even when their types
agree. `rand` is a pure function of its seed and offset inputs, so two `rand` nodes
merge only when those are the same nodes (then they draw the same numbers).
"""
from __future__ import annotations

from ..ir.graph import Graph, freeze_attrs
from .dce import rewrite

COMMUTATIVE = frozenset({"add", "mul", "eq", "ne", "logical_and", "logical_or",
                         "logical_xor"})


def common_subexpression_elimination(graph: Graph) -> Graph:
    seen = {}

    def rule(b, n, inputs):
        operands = tuple(id(i) for i in inputs)
        if n.op in COMMUTATIVE:
            operands = tuple(sorted(operands))
        key = (n.op, freeze_attrs(n.attrs), n.type, operands)
        if key not in seen:
            seen[key] = b.copy(n, inputs)
        return seen[key]

    return rewrite(graph, rule)
