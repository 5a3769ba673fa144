"""The reference interpreter: runs any graph node by node with each op's numpy `impl`.

It is the oracle every other backend is tested against, so it stays simple: no fusion,
no buffer reuse, results cast to the node's recorded dtype after every op (and bfloat16
values rounded to bfloat16 precision, as PyTorch rounds on store).
"""
from __future__ import annotations

import numpy as np

from ..ir.errors import CheckFailed
from ..ir.ops import check_code
from ..ir.registry import get_op
from . import check_failure, index_error_message


def round_to_bfloat16(x: np.ndarray) -> np.ndarray:
    """Round float32 values to the nearest bfloat16 (ties to even), kept as float32."""
    shape = np.shape(x)
    x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1)  # view() needs >= 1 dim
    bits = x.view(np.uint32).astype(np.uint64)
    rounded = ((bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000).astype(np.uint32)
    out = rounded.view(np.float32)
    return np.where(np.isnan(x), x, out).reshape(shape)


def coerce(value: np.ndarray, node_type) -> np.ndarray:
    d = node_type.dtype
    out = np.asarray(value)
    if out.dtype != d.np:
        out = out.astype(d.np)
    if d.short == "bf16":
        out = round_to_bfloat16(out)
    if out.shape != node_type.shape:
        raise AssertionError(f"interp: produced shape {out.shape}, IR says {node_type}")
    return out


class Executable:
    def __init__(self, graph):
        self.graph = graph
        self.steps = []
        pos = {}
        for k, n in enumerate(graph.nodes):
            pos[id(n)] = k
            if n.op != "input":
                self.steps.append((k, get_op(n.op).impl, n.attrs,
                                   tuple(pos[id(i)] for i in n.inputs), n.type))
        self.input_pos = [pos[id(n)] for n in graph.inputs]
        self.output_pos = [pos[id(n)] for n in graph.outputs]
        self.n = len(graph.nodes)

    def __call__(self, inputs):
        env = [None] * self.n
        for p, v, n in zip(self.input_pos, inputs, self.graph.inputs):
            env[p] = coerce(v, n.type)
        with np.errstate(all="ignore"):
            for k, impl, attrs, args, ty in self.steps:
                try:
                    env[k] = coerce(impl(attrs, *[env[a] for a in args]), ty)
                # the same errors, naming the user's line, as a compiled kernel's
                except CheckFailed:
                    raise check_failure(self.graph, check_code(attrs["message"])) from None
                except IndexError:
                    node = self.graph.nodes[k]
                    if node.op not in ("gather", "scatter_add"):
                        raise
                    raise IndexError(index_error_message(self.graph, [node])) from None
        return [env[p] for p in self.output_pos]


def compile(graph):
    return Executable(graph)
