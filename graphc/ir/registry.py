"""The op registry: everything graphc knows about an op, declared in one place.

Each `OpDef` gives
  * `infer(input_types, attrs) -> TensorType`: the result's shape and dtype; it raises
    `ShapeError`/`DTypeError` with a message naming the operands when they do not fit;
  * `impl(attrs, *arrays) -> ndarray`: the reference semantics, in numpy. The reference
    interpreter runs these and every other backend is tested against them;
  * `vjp(ctx, g) -> tuple`: the vector-Jacobian product, written with graphc tensor ops
    so the backward graph is ordinary IR (and can itself be differentiated). `ctx`
    gives the forward inputs (`ctx.inputs`), the forward output (`ctx.out`) and the
    attrs (`ctx.attrs`), all as tensors; the rule returns one gradient (or None) per
    input;
  * `fusion`: how the op may be grouped into kernels (see `FusionClass`).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Callable, Optional


class FusionClass(enum.Enum):
    """What a fusion pass may do with an op (the legality table lives here, once)."""
    SOURCE = "source"            # input/const/iota/rng: no computation of its own; inlined
    ELEMENTWISE = "elementwise"  # out[i] = f(in[i], ...): fuses with anything around it
    MOVEMENT = "movement"        # reshape/permute/expand/slice/pad/concat: index arithmetic
    REDUCTION = "reduction"      # reduces dims: fuses elementwise producers and consumers
    GATHER = "gather"            # data-dependent indexing: reads anywhere, fuses as a consumer
    OPAQUE = "opaque"            # matmul, conv, scatter: a kernel of its own


@dataclass
class OpDef:
    name: str
    infer: Callable
    impl: Callable
    vjp: Optional[Callable]
    fusion: FusionClass
    arity: Optional[int] = None   # None: variadic
    doc: str = ""


_REGISTRY: dict[str, OpDef] = {}


def register(opdef: OpDef) -> OpDef:
    if opdef.name in _REGISTRY:
        raise ValueError(f"op {opdef.name!r} registered twice")
    _REGISTRY[opdef.name] = opdef
    return opdef


def get_op(name: str) -> OpDef:
    _ensure_loaded()
    return _REGISTRY[name]


def make_node(op: str, *inputs, **attrs):
    """A node applying `op` to `inputs`, its type inferred by the op's rule (for passes
    and tests that build IR directly)."""
    from .graph import Node
    return Node(op, inputs, attrs, get_op(op).infer([i.type for i in inputs], attrs))


def all_ops() -> dict[str, OpDef]:
    _ensure_loaded()
    return dict(_REGISTRY)


_loaded = False


def _ensure_loaded():
    # A flag, not "registry empty": an op module imported first must not stop the
    # built-in ops from loading.
    global _loaded
    if not _loaded:
        _loaded = True
        from . import ops, ops_nn  # noqa: F401  (registers the built-in ops)
