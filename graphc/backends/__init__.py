"""Backends turn a `Graph` into something that runs.

A backend module provides `compile(graph) -> Executable`, where an executable is called
with one numpy array per graph input (in `graph.inputs` order) and returns one numpy
array per graph output. `get_backend(name)` picks one by name; `GRAPHC_BACKEND` sets the
default.
"""
from __future__ import annotations

import importlib
import os

_BACKENDS = {"interp": "graphc.backends.interp", "llvm": "graphc.backends.llvm",
             "triton": "graphc.backends.triton"}


def available() -> list[str]:
    return list(_BACKENDS)


def default_backend_name() -> str:
    """GRAPHC_BACKEND if set, else LLVM (the CPU default) where llvmlite imports, else the
    reference interpreter."""
    name = os.environ.get("GRAPHC_BACKEND")
    if name:
        return name
    return "llvm" if _llvmlite_importable() else "interp"


_llvm_ok = None


def _llvmlite_importable() -> bool:
    global _llvm_ok
    if _llvm_ok is None:
        try:
            importlib.import_module("llvmlite.binding")
            _llvm_ok = True
        except ImportError:
            _llvm_ok = False
    return _llvm_ok


def get_backend(name: str | None = None):
    name = name or default_backend_name()
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(_BACKENDS)}")
    return importlib.import_module(_BACKENDS[name])


def check_failure(graph, code: int):
    """The CheckFailed to raise when a compiled kernel stored `code` in its status word:
    the failing check's message, with the line(s) of user code that made it."""
    from ..ir.errors import CheckFailed
    from ..ir.ops import check_code
    checks = [n for n in graph.nodes
              if n.op == "check" and check_code(n.attrs["message"]) == code]
    if not checks:
        return CheckFailed(f"graphc: a value check failed (status {code})")
    locs = sorted({n.loc for n in checks if n.loc})
    return CheckFailed(checks[0].attrs["message"] +
                       (f" (at {' or '.join(locs)})" if locs else ""))


def index_error_message(graph, nodes=None) -> str:
    """What to tell the user when a compiled kernel (LLVM or Triton) found an index
    value out of range. The kernels only raise a flag (the check is a predicated store
    in a vectorised loop), so the message names every op of the graph that indexes by
    data, with the line of user code that made it: usually one (cross_entropy's or an
    Embedding's gather). The interpreter knows the node: `nodes`."""
    where = []
    for n in graph.nodes if nodes is None else nodes:
        if n.op in ("gather", "scatter_add"):
            size = n.inputs[0].shape[n.attrs["dim"]]
            # the IR op would count -size..-1 from the end, but every user-facing op
            # maps what PyTorch refuses past the end first (tensor_ops._nonnegative)
            where.append(f"{n.op} over a dim of size {size} (valid indices: "
                         f"0..{size - 1})" + (f" at {n.loc}" if n.loc else ""))
    text = "graphc: an index value is out of range for the dimension it indexes"
    if len(where) == 1:
        return f"{text}: {where[0]}"
    if where:
        return f"{text}, in one of: " + "; ".join(where[:4]) + \
            (f"; and {len(where) - 4} more" if len(where) > 4 else "")
    return text
