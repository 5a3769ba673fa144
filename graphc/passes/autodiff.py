"""Reverse-mode autodiff as a pass over the IR.

Given output values and their upstream gradients, `backward_nodes` walks the nodes that
require a gradient in reverse topological order and asks each op's VJP rule (declared
in the op registry) for the gradients of its inputs. The rules are written with graphc
tensor ops, so what comes out is ordinary IR: it can be printed, optimised, fused,
compiled, and differentiated again (gradients of gradients need only `create_graph`).
Every backward node carries the source location of the forward node it comes from.

A node stops the walk when it is a leaf (`node.leaf` set: a parameter whose gradient is
accumulated) or when it does not require a gradient.
"""
from __future__ import annotations

from ..autograd import emitted_at, enable_grad, literal_scalars, no_grad
from ..ir import dtypes as dt
from ..ir.graph import Graph, Node, toposort
from ..ir.registry import FusionClass, get_op

_REDUCED_FLOATS = (dt.float16, dt.bfloat16)


class VJPContext:
    """What a VJP rule sees: forward inputs and output as tensors, and the attrs."""
    __slots__ = ("inputs", "out", "attrs")

    def __init__(self, node: Node):
        from ..tensor import Tensor
        self.inputs = tuple(Tensor._wrap(i) for i in node.inputs)
        self.out = Tensor._wrap(node)
        self.attrs = node.attrs


def backward_nodes(outputs, grads, create_graph=False,
                   retain=()) -> dict[int, tuple[Node, Node]]:
    """Gradients of sum(output * grad) with respect to every reachable leaf node.

    Returns {id(leaf node): (leaf node, gradient node)}, plus the same for the non-leaf
    nodes whose ids are in `retain` (Tensor.retain_grad). `grads` are tensors (the
    upstream gradients), one per output node.
    """
    from ..tensor import Tensor
    order = toposort(outputs, stop=lambda n: n.leaf is not None or not n.requires_grad)
    acc: dict[int, Tensor] = {}
    for o, g in zip(outputs, grads):
        acc[id(o)] = acc[id(o)] + g if id(o) in acc else g
    leaves = {}
    mode = enable_grad() if create_graph else no_grad()
    with mode, literal_scalars():
        for n in reversed(order):
            g = acc.pop(id(n), None)
            if g is None or not n.requires_grad:
                continue
            if id(n) in retain:
                leaves[id(n)] = (n, g._node)
            if n.leaf is not None:
                leaves[id(n)] = (n, g._node)
                continue
            opdef = get_op(n.op)
            rule = opdef.vjp
            if rule is None:
                continue
            with emitted_at(n.loc):
                if n.type.dtype in _REDUCED_FLOATS and opdef.fusion is FusionClass.ELEMENTWISE:
                    in_grads = _vjp_in_float32(rule, n, g)
                else:
                    in_grads = rule(VJPContext(n), g)
                for i, gi in zip(n.inputs, in_grads):
                    if gi is None or not i.requires_grad:
                        continue
                    if tuple(gi.shape) != i.shape or gi.dtype is not i.dtype:
                        raise AssertionError(
                            f"VJP of {n.op} gave {gi._node.type} for an input of type "
                            f"{i.type}")
                    acc[id(i)] = acc[id(i)] + gi if id(i) in acc else gi
    return leaves


def _vjp_in_float32(rule, n, g):
    """An elementwise VJP of a float16/bfloat16 node, computed in float32 and rounded
    once per input gradient, as PyTorch's CPU backward kernels do: a rule of several
    ops (gelu's, silu's, tanh's) rounded each of them, and the bfloat16 gradient of
    gelu at -3 was 5% off."""
    ctx = VJPContext(n)
    ctx.inputs = tuple(t._cast(dt.float32) if t.dtype in _REDUCED_FLOATS else t
                       for t in ctx.inputs)
    ctx.out = ctx.out._cast(dt.float32)
    grads = rule(ctx, g._cast(dt.float32))
    return [None if gi is None else gi._cast(i.type.dtype) for gi, i in zip(grads, n.inputs)]


def grad_graph(graph: Graph, wrt=None) -> Graph:
    """The backward graph of `graph` as a standalone graph.

    Its inputs are the forward graph's inputs plus one upstream gradient per output;
    its outputs are the forward outputs followed by the gradient of each input in `wrt`
    (default: every floating-point input)."""
    from ..tensor import Tensor
    fwd, _ = Graph.from_outputs(graph.outputs)
    inputs = fwd.inputs
    wrt_idx = [k for k, n in enumerate(inputs) if n.dtype.is_floating] if wrt is None \
        else list(wrt)
    for k in wrt_idx:
        inputs[k].requires_grad = True
        inputs[k].leaf = inputs[k]   # any non-None marks a leaf; no tensor owns it here
    _propagate_requires_grad(fwd)
    seeds = [Tensor._wrap(Node("input", (), {"name": f"grad_out{k}"}, o.type))
             for k, o in enumerate(fwd.outputs)]
    leaves = backward_nodes(fwd.outputs, seeds)
    grads = []
    for k in wrt_idx:
        n = inputs[k]
        if id(n) in leaves:
            grads.append(leaves[id(n)][1])
        else:  # the output does not depend on this input: its gradient is zero
            with literal_scalars():
                grads.append(Tensor._wrap(n)._zeros_like_node())
    order = list(inputs) + [s._node for s in seeds]
    out, _ = Graph.from_outputs(list(fwd.outputs) + grads,
                                input_order=order)
    return out


def _propagate_requires_grad(graph: Graph):
    for n in graph.nodes:
        if n.op != "input":
            n.requires_grad = any(i.requires_grad for i in n.inputs) and \
                get_op(n.op).vjp is not None
