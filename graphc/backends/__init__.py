"""Backends turn a `Graph` into something that runs.

A backend module provides `compile(graph) -> Executable`, where an executable is called
with one numpy array per graph input (in `graph.inputs` order) and returns one numpy
array per graph output. `get_backend(name)` picks one by name; `GRAPHC_BACKEND` sets the
default.
"""
from __future__ import annotations

import importlib
import os

_BACKENDS = {"interp": "graphc.backends.interp", "llvm": "graphc.backends.llvm"}


def available() -> list[str]:
    return list(_BACKENDS)


def default_backend_name() -> str:
    return os.environ.get("GRAPHC_BACKEND") or "interp"


def get_backend(name: str | None = None):
    name = name or default_backend_name()
    if name not in _BACKENDS:
        raise ValueError(f"unknown backend {name!r}; choose one of {', '.join(_BACKENDS)}")
    return importlib.import_module(_BACKENDS[name])
