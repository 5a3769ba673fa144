"""The graphc IR: SSA values in a DAG, and graphs that order them.

A `Node` is one SSA value: the result of applying `op` to `inputs` with `attrs`. Every
node has exactly one result, of type `type` (a shape and a dtype), and remembers the
line of user code that created it (`loc`). Nodes are immutable recipes: once built,
their op, inputs, attrs and type never change, which is what lets lazy tensors share
them, lets autodiff read the forward values they stand for, and lets caches key on them.

Two kinds of node have no inputs:
  * `input`  a value supplied when the graph runs (a realized buffer, a Python scalar
             that may change between steps, a parameter). `attrs["name"]` names it.
  * `const`  a scalar literal baked into the graph (`attrs["value"]`); it is part of
             the cache key, so only library literals (the 0.5 in gelu, the 1 in 1-y)
             become constants, never a user's learning rate.

A `Graph` is an ordered list of nodes (every node after its inputs), a list of input
nodes and a list of output nodes; the nodes in `graph.nodes` belong to that graph only.
`Graph.from_outputs` extracts a graph from the DAG reachable from some nodes, turning
the nodes chosen as boundaries into `input` nodes. Invariants (checked by `lint`):
  1. nodes are in topological order and each appears once;
  2. every input of a node is an earlier node of the same graph;
  3. `inputs` are exactly the `input` nodes, `outputs` are nodes of the graph;
  4. each node's op is registered, gets as many inputs as its arity says, and its type
     is what the op's inference rule gives for its inputs and attrs;
  5. a `const` holds a Python scalar of its dtype's kind (bool, int or float).

Two graphs are equal when they compute the same thing the same way: same ops, attrs,
types, edges, source locations and outputs, node for node. An input's `name` is a
label, like the printer's names for other values, and not part of that structure: the
text form must rename inputs whose names clash or are not identifiers.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Iterable, Sequence

import numpy as np

from . import dtypes as _dt

_ids = itertools.count()


@dataclass(frozen=True, slots=True)
class TensorType:
    shape: tuple
    dtype: _dt.DType

    @property
    def ndim(self):
        return len(self.shape)

    @property
    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    def __str__(self):
        return f"{self.dtype.short}[{','.join(map(str, self.shape))}]"


class Node:
    """One SSA value. `data`, `leaf` and `requires_grad` are runtime state used by lazy
    tensors and autograd; they are not part of the IR and never printed."""

    __slots__ = ("op", "inputs", "attrs", "type", "loc", "id", "requires_grad", "data",
                 "leaf", "source", "__weakref__")

    def __init__(self, op: str, inputs: Sequence["Node"], attrs: dict, type: TensorType,
                 loc: str | None = None):
        self.op = op
        self.inputs = tuple(inputs)
        self.attrs = attrs
        self.type = type
        self.loc = loc
        self.id = next(_ids)
        self.requires_grad = False
        self.data = None   # realized numpy value, once computed
        self.leaf = None   # weakref to the leaf Tensor whose grad this node accumulates
        self.source = None  # for a runtime scalar input: a callable giving its current value

    @property
    def shape(self):
        return self.type.shape

    @property
    def dtype(self):
        return self.type.dtype

    def __repr__(self):
        return f"<Node {self.id} {self.op} {self.type}>"


def toposort(outputs: Iterable[Node], stop=lambda n: False) -> list[Node]:
    """Nodes reachable from `outputs`, every node after its inputs. Nodes for which
    `stop(node)` is true are included but not walked through. Iterative: graphs of
    training loops are deep."""
    order, state = [], {}
    for root in outputs:
        if id(root) in state:
            continue
        stack = [(root, False)]
        while stack:
            n, expanded = stack.pop()
            if expanded:
                state[id(n)] = 2
                order.append(n)
                continue
            if state.get(id(n)):
                continue
            state[id(n)] = 1
            stack.append((n, True))
            if not stop(n):
                for i in reversed(n.inputs):
                    if not state.get(id(i)):
                        stack.append((i, False))
    return order


class Graph:
    def __init__(self, nodes: list[Node], inputs: list[Node], outputs: list[Node]):
        self.nodes = nodes
        self.inputs = inputs
        self.outputs = outputs

    # ------------------------------------------------------------------ building
    @staticmethod
    def from_outputs(outputs: Sequence[Node], boundary=lambda n: n.op == "input",
                     input_order: Sequence[Node] = ()) -> tuple["Graph", list[Node]]:
        """Copy the DAG reachable from `outputs` into a fresh graph.

        Nodes for which `boundary(node)` holds become `input` nodes of the new graph.
        Returns the graph and the original boundary nodes, in the order of
        `graph.inputs` (nodes in `input_order` first, then the others as reached)."""
        order = toposort(outputs, stop=boundary)
        mapping: dict[int, Node] = {}
        boundary_nodes = [n for n in input_order]
        seen = {id(n) for n in boundary_nodes}
        for n in order:
            if boundary(n) and id(n) not in seen:
                boundary_nodes.append(n)
                seen.add(id(n))
        inputs = []
        for k, n in enumerate(boundary_nodes):
            name = n.attrs.get("name") if n.op == "input" else None
            c = Node("input", (), {"name": name or f"in{k}"}, n.type, n.loc)
            mapping[id(n)] = c
            inputs.append(c)
        nodes = list(inputs)
        for n in order:
            if id(n) in mapping:
                continue
            c = Node(n.op, tuple(mapping[id(i)] for i in n.inputs), n.attrs, n.type, n.loc)
            mapping[id(n)] = c
            nodes.append(c)
        return Graph(nodes, inputs, [mapping[id(o)] for o in outputs]), boundary_nodes

    @staticmethod
    def structure_key_of(outputs: Sequence[Node], boundary) -> tuple[tuple, list[Node]]:
        """`Graph.from_outputs(outputs, boundary)`'s structure key and boundary nodes,
        without building that graph: the same walk, the same positions, no node copies.

        Lazy realization looks every step's graph up in a cache by this key, and copying
        a few thousand nodes only to hash them was half of that lookup (a transformer
        step of 2,700 nodes); the copy is made only when the cache misses."""
        order = toposort(outputs, stop=boundary)
        boundary_nodes = [n for n in order if boundary(n)]
        pos: dict[int, int] = {}
        key = []
        for k, n in enumerate(boundary_nodes):
            pos[id(n)] = k
            key.append(("input", (), n.type.shape, n.type.dtype.short, ()))
        k = len(boundary_nodes)
        for n in order:
            if id(n) in pos:
                continue
            pos[id(n)] = k
            k += 1
            key.append(_key_item(n, pos))
        key.append(tuple([pos[id(o)] for o in outputs]))
        return tuple(key), boundary_nodes

    # ------------------------------------------------------------------ checking
    def lint(self):
        """Check the invariants in the module docstring; raise `IRError` naming the node."""
        from .errors import IRError
        pos = {}
        for k, n in enumerate(self.nodes):
            if not isinstance(n, Node):
                raise IRError(f"node {k} is a {type(n).__name__}, not a Node")
            if id(n) in pos:
                raise IRError(f"node {k} ({n.op}) appears twice")
            for i in n.inputs:
                if id(i) not in pos:
                    raise IRError(f"node {k} ({n.op}) uses a value that is not defined "
                                  f"earlier in the graph")
            pos[id(n)] = k
            problem = node_problem(n)
            if problem:
                raise IRError(f"node {k} ({n.op}): {problem}")
        ins = [n for n in self.nodes if n.op == "input"]
        if [id(n) for n in ins] != [id(n) for n in self.inputs]:
            raise IRError("graph.inputs must list exactly the input nodes, in order")
        for o in self.outputs:
            if id(o) not in pos:
                raise IRError(f"output {o} is not a node of the graph")
        return True

    # ------------------------------------------------------------------ comparing
    def structure_key(self, with_locs=False) -> tuple:
        """A hashable key of everything that makes two graphs compute the same thing:
        ops, attrs, types and edges (and, if asked, source locations)."""
        pos = {id(n): k for k, n in enumerate(self.nodes)}
        key = []
        for n in self.nodes:
            item = _key_item(n, pos)
            key.append(item + ((n.loc,) if with_locs else ()))
        key.append(tuple(pos[id(o)] for o in self.outputs))
        return tuple(key)

    def __eq__(self, other):
        return isinstance(other, Graph) and \
            self.structure_key(True) == other.structure_key(True)

    def __hash__(self):
        return hash(self.structure_key())

    def __str__(self):
        from .printer import print_graph
        return print_graph(self)

    def users(self) -> dict[int, list[Node]]:
        """Map id(node) -> nodes that use it (each user listed once per use)."""
        out = {id(n): [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                out[id(i)].append(n)
        return out


def _key_item(n: Node, pos: dict) -> tuple:
    """One node's part of a structure key: op, attrs (an input's name is a label, not
    structure), type, and the positions of its inputs."""
    attrs = freeze_attrs(n.attrs) if n.attrs and n.op != "input" else ()
    return (n.op, attrs, n.type.shape, n.type.dtype.short, tuple([pos[id(i)] for i in n.inputs]))


def node_problem(n: Node) -> str | None:
    """What is wrong with one node on its own (invariants 4 and 5), or None. The parser
    calls this as it reads each node, so that its errors point at the node's line."""
    from .registry import all_ops
    if n.op == "input":
        return "an input node has inputs" if n.inputs else None
    opdef = all_ops().get(n.op)
    if opdef is None:
        return f"unknown op {n.op!r}"
    if opdef.arity is not None and len(n.inputs) != opdef.arity:
        return f"takes {opdef.arity} input(s), got {len(n.inputs)}"
    try:
        expected = opdef.infer([i.type for i in n.inputs], n.attrs)
    except KeyError as e:
        return f"missing attribute {e.args[0]!r}"
    except Exception as e:  # the rule's own message names the problem
        return str(e)
    if expected != n.type:
        return f"recorded type {n.type} but inputs give {expected}"
    if n.op == "const":
        v, d = n.attrs.get("value"), n.type.dtype
        kind = bool if d.is_bool else (float if d.is_floating else int)
        if type(v) is not kind:
            return f"value {v!r} is not a Python {kind.__name__} (dtype {d.short})"
    return None


def _freeze_value(v):
    t = type(v)
    if t is int or t is str or v is None:     # most attrs: dims, shapes, names
        return v
    if (t is tuple or t is list) and all(type(x) is int for x in v):
        return tuple(v)
    if isinstance(v, (list, tuple)):
        return tuple(_freeze_value(x) for x in v)
    if isinstance(v, (bool, np.bool_)):  # keep 1, 1.0, True and 0.0, -0.0 apart
        return ("bool", repr(bool(v)))
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, (float, np.floating)):
        return ("float", repr(float(v)))
    if isinstance(v, _dt.DType):
        return ("dtype", v.short)
    return v


def freeze_attrs(attrs: dict):
    if len(attrs) == 1:   # most ops: one dim, shape or dtype
        for k, v in attrs.items():
            return ((k, _freeze_value(v)),)
    return tuple(sorted([(k, _freeze_value(v)) for k, v in attrs.items()]))
