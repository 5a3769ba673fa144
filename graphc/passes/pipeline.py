"""The optimisation pipeline: simplification, constant folding, CSE and dead-code
elimination, repeated until the graph stops changing.

`optimize(graph)` returns a new graph that computes bit-for-bit what `graph` computes on
the reference interpreter, with the same inputs (all of them, in order, even unused
ones) and the same outputs (in order). The runtime runs it on every graph it compiles
(runtime.compiled_for), after the cache lookup, so the cache key stays the graph as
traced.

Each pass can expose work for another (a simplified `x * 1` leaves a dead constant; a
folded constant makes two nodes equal for CSE; CSE makes `where(c, x, x)` visible), so
the sweep repeats; every pass only ever shrinks the graph or canonicalises it, so the
fixed point comes within a few rounds. `max_rounds` only guards against a rule that
would undo another.
"""
from __future__ import annotations

from ..ir.graph import Graph
from .cse import common_subexpression_elimination
from .dce import dead_code_elimination
from .fold import constant_folding
from .simplify import simplify

PASSES = (simplify, constant_folding, common_subexpression_elimination,
          dead_code_elimination)


def optimize(graph: Graph, max_rounds: int = 10) -> Graph:
    key = graph.structure_key(with_locs=True)
    for _ in range(max_rounds):
        for run_pass in PASSES:
            graph = run_pass(graph)
        new_key = graph.structure_key(with_locs=True)
        if new_key == key:
            break
        key = new_key
    return graph
