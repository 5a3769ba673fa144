"""Dead-code elimination, and the graph rebuilding that every simplifying pass shares.

Passes never modify a graph: they build a new one (`rewrite`), node by node in the old
graph's order. Whatever a pass does, the new graph
  * has fresh `Node` objects (a node belongs to one graph only);
  * has the same inputs as the old one, in the same order and with the same types,
    including inputs that nothing uses any more: executables are called with one value
    per input of the graph they were compiled from;
  * has as many outputs as the old one, in the same order and with the same types (two
    outputs may become the same node, and an output may become an input node).

Dead-code elimination keeps the inputs and the nodes the outputs depend on. No op has
side effects (`rand` is a pure function of its seed and offset inputs), so any node
that no output reaches can go.
"""
from __future__ import annotations

from typing import Callable, Optional

from ..ir.graph import Graph, Node, TensorType, toposort


class GraphBuilder:
    """A new graph under construction: fresh copies of the old graph's inputs first,
    then whatever nodes a pass emits (each after its inputs, so the emission order is a
    topological order)."""

    def __init__(self, old: Graph):
        self.old = old
        self.inputs = []
        for n in old.inputs:
            c = Node("input", (), dict(n.attrs), n.type, n.loc)
            c.source = n.source  # where a runtime scalar comes from travels with the input
            self.inputs.append(c)
        self.nodes: list[Node] = list(self.inputs)
        self.mapping: dict[int, Node] = {id(o): c for o, c in zip(old.inputs, self.inputs)}

    def emit(self, op: str, inputs, attrs: dict, type: TensorType, loc) -> Node:
        n = Node(op, tuple(inputs), dict(attrs), type, loc)
        self.nodes.append(n)
        return n

    def copy(self, old: Node, inputs) -> Node:
        return self.emit(old.op, inputs, old.attrs, old.type, old.loc)

    def finish(self) -> Graph:
        return Graph(self.nodes, self.inputs, [self.mapping[id(o)] for o in self.old.outputs])


# A rule gets the builder, an old node and the new nodes standing for its inputs, and
# returns the new node standing for the old one: one it emits, or one already built.
Rule = Callable[[GraphBuilder, Node, tuple], Node]


def _copy_rule(b: GraphBuilder, n: Node, inputs: tuple) -> Node:
    return b.copy(n, inputs)


def rewrite(graph: Graph, rule: Rule = _copy_rule,
            keep: Optional[Callable[[Node], bool]] = None) -> Graph:
    """A new graph where each non-input node of `graph` (those for which `keep` holds,
    if given) is replaced by what `rule` returns for it."""
    b = GraphBuilder(graph)
    for n in graph.nodes:
        if n.op == "input" or (keep is not None and not keep(n)):
            continue
        new = rule(b, n, tuple(b.mapping[id(i)] for i in n.inputs))
        if new.type != n.type:
            raise AssertionError(f"pass replaced {n.op} of type {n.type} by {new.op} of "
                                 f"type {new.type}")
        b.mapping[id(n)] = new
    return b.finish()


def dead_code_elimination(graph: Graph) -> Graph:
    """`graph` without the nodes that no output depends on (inputs always stay)."""
    live = {id(n) for n in toposort(graph.outputs)}
    return rewrite(graph, keep=lambda n: id(n) in live)
