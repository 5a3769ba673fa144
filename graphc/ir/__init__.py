"""The graphc IR: dtypes, nodes and graphs, the op registry, text form and verifier."""
from . import dtypes  # noqa: F401
from .errors import DTypeError, GraphcError, IRError, ParseError, ShapeError  # noqa: F401
from .graph import Graph, Node, TensorType, toposort  # noqa: F401
from .parser import parse  # noqa: F401
from .printer import print_graph  # noqa: F401
from .registry import FusionClass, OpDef, all_ops, get_op, register  # noqa: F401


def verify(graph: Graph) -> bool:
    """Check the IR invariants (see graph.py); raises IRError naming the bad node."""
    return graph.lint()
