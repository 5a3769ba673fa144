"""Helpers for testing graphc's backends: build IR graphs by hand, make input data,
and draw random graphs (with hypothesis, imported only when asked for).

Shared by the LLVM and Triton differential tests and by the Triton backend's GPU
checks (benchmarks/gpu_check.py), so every backend is held to the same corpus.
"""
from __future__ import annotations

import numpy as np

from .backends.interp import round_to_bfloat16
from .ir.graph import Graph, Node, TensorType
from .ir.registry import make_node


def inp(shape, dtype, name="x") -> Node:
    """A graph input of the given shape and dtype."""
    return Node("input", (), {"name": name}, TensorType(tuple(shape), dtype))


def op(name, *ins, **attrs) -> Node:
    """A node applying op `name`, its type inferred by the registry."""
    return make_node(name, *ins, **attrs)


def graph(outputs, inputs) -> Graph:
    g, _ = Graph.from_outputs(list(outputs), input_order=list(inputs))
    return g


# (a, b) pairs where PyTorch's fmod-based floor division and remainder differ from
# floor(a / b): infinite and zero divisors, signed zeros, 1 // 0.1 (which is 9)
DIVMOD_EDGES = [(1, 0.1), (-5, np.inf), (5, np.inf), (-5, -np.inf), (-5, 3), (0, 0), (3, 0),
                (-3, 0), (0, 2), (-0.0, 2), (0, -2), (-0.0, -2), (6, 3), (-6, 3), (6, -3),
                (np.inf, 2), (-np.inf, 2), (np.nan, 1), (1, np.nan), (7.5, -2)]


# float -> integer cast edges: NaN, +-inf, values just outside and far outside each
# integer range, in-range values that must truncate toward zero (tests/test_cast_edges.py
# checks them against PyTorch; the Triton corpus runs them on a GPU)
CAST_EDGES = [np.nan, np.inf, -np.inf, 0.0, -0.0, 0.5, -0.5, 0.99, -0.99, 1.5, -1.5, 2.9,
              -2.9, 127.5, 128.0, -128.5, -129.0, 255.5, 256.0, 300.0, -1.0, -255.0,
              -256.0, 65504.0, -65504.0, 65520.0,
              2.0 ** 31 - 1, 2.0 ** 31 - 0.5, 2.0 ** 31, 2.0 ** 31 + 256, -2.0 ** 31,
              -2.0 ** 31 - 0.5, -2.0 ** 31 - 1, -2.0 ** 31 - 256, 3e9, -3e9, 2.0 ** 32 + 5,
              2.0 ** 62, 2.0 ** 63 - 1024, 2.0 ** 63, -2.0 ** 63, -2.0 ** 63 - 2048,
              1e19, -1e19, 1e30, -1e30, 3e38, -3e38, 1e300, -1e300]


def data(shape, dtype, rng, kind="any") -> np.ndarray:
    """Random values of `dtype` in its storage form. `kind`: 'pos' (> 0.1) or 'gt-1'
    (> -0.9) for ops whose domain needs it."""
    if dtype.is_bool:
        return rng.random(shape) < 0.5
    if not dtype.is_floating:
        lo = 0 if dtype.short == "u8" else -20
        return rng.integers(lo, 40 if dtype.short == "u8" else 20, size=shape).astype(dtype.np)
    x = rng.standard_normal(shape) * 2
    if kind == "pos":
        x = np.abs(x) + 0.1
    elif kind == "gt-1":
        x = np.abs(x) - 0.9
    x = np.asarray(x).astype(dtype.np)
    if dtype.short == "bf16":
        x = round_to_bfloat16(x)
    return x


def random_graphs(dtypes):
    """A hypothesis strategy of (graph, dtype, rng seed): chains of elementwise ops,
    reductions over random dims, broadcasts, transposes, slices and matmuls over two
    [rows, cols] inputs of one of `dtypes`."""
    from hypothesis import strategies as st

    @st.composite
    def draw_graph(draw):
        rng_seed = draw(st.integers(0, 2 ** 32 - 1))
        rows = draw(st.sampled_from([1, 3, 7, 16]))
        cols = draw(st.sampled_from([1, 5, 8, 33]))
        dtype = draw(st.sampled_from(list(dtypes)))
        x, y = inp((rows, cols), dtype, "x"), inp((rows, cols), dtype, "y")
        vals = [x, y]
        for _ in range(draw(st.integers(1, 8))):
            kind = draw(st.sampled_from(["unary", "binary", "reduce", "transpose", "bcast",
                                         "matmul", "slice"]))
            a = draw(st.sampled_from(vals))
            if kind == "unary":
                vals.append(op(draw(st.sampled_from(["exp", "tanh", "neg", "sigmoid", "abs",
                                                     "relu", "sin"])), a))
            elif kind == "binary":
                same = [v for v in vals if v.shape == a.shape]
                vals.append(op(draw(st.sampled_from(["add", "mul", "sub", "maximum"])), a,
                               draw(st.sampled_from(same))))
            elif kind == "reduce" and a.shape:
                dims = tuple(sorted(draw(st.sets(st.integers(0, len(a.shape) - 1),
                                                 min_size=1))))
                r = op(draw(st.sampled_from(["sum", "max", "min"])), a, dims=dims,
                       keepdim=True)
                vals.append(r)
                vals.append(op("sub", a, op("expand", r, shape=a.shape)))
            elif kind == "transpose" and len(a.shape) == 2:
                vals.append(op("permute", a, dims=(1, 0)))
            elif kind == "bcast" and len(a.shape) == 2:
                r = op("slice", a, starts=(0, 0), stops=(1, a.shape[1]), steps=(1, 1))
                vals.append(op("add", a, op("expand", r, shape=a.shape)))
            elif kind == "matmul" and len(a.shape) == 2:
                b = draw(st.sampled_from([v for v in vals if len(v.shape) == 2]))
                bt = b if b.shape[0] == a.shape[1] else (
                    op("permute", b, dims=(1, 0)) if b.shape[1] == a.shape[1] else None)
                if bt is not None:
                    vals.append(op("matmul", a, bt))
            elif kind == "slice" and len(a.shape) == 2 and a.shape[0] > 1:
                vals.append(op("slice", a, starts=(1, 0), stops=(a.shape[0], a.shape[1]),
                               steps=(2, 1)))
        outs = draw(st.lists(st.sampled_from(vals[2:] or vals), min_size=1, max_size=3))
        return graph(outs, [x, y]), dtype, rng_seed

    return draw_graph()
