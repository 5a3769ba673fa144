"""Errors graphc raises, and how they find the user's line of code.

Shape and dtype errors subclass RuntimeError/TypeError, as PyTorch's do, so code that
catches PyTorch's exceptions keeps working; every message names the user's file:line.
"""
from __future__ import annotations

import functools
import os
import sys

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class GraphcError(Exception):
    """Base of graphc's own errors."""


class IRError(GraphcError, ValueError):
    """A graph breaks an invariant of the IR (see graphc/ir/graph.py)."""


class ParseError(GraphcError, ValueError):
    def __init__(self, message, line, col):
        super().__init__(f"line {line}, column {col}: {message}")
        self.line = line
        self.col = col


class ShapeError(GraphcError, RuntimeError):
    """Operands whose shapes do not fit the op."""


class DTypeError(GraphcError, TypeError):
    """Operands whose dtypes the op does not accept."""


@functools.lru_cache(maxsize=4096)
def _inside_package(filename: str) -> bool:
    # cached: every IR node records its user location, and abspath per stack frame was
    # a tenth of a lazy training step's Python time
    return os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep)


def user_location(skip_internal=True) -> str | None:
    """file:line of the innermost stack frame outside the graphc package."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not (skip_internal and _inside_package(fn)):
            return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return None


def at_user_line(exc_type, message):
    loc = user_location()
    return exc_type(f"{message}" + (f" (at {loc})" if loc else ""))
