"""Errors graphc raises, and how they find the user's line of code.

Shape and dtype errors subclass RuntimeError/TypeError, as PyTorch's do, so code that
catches PyTorch's exceptions keeps working; every message names the user's file:line.
"""
from __future__ import annotations

import functools
import os
import sys
import sysconfig

_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_STDLIB_DIR = os.path.abspath(sysconfig.get_paths()["stdlib"])


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


class CheckFailed(GraphcError, RuntimeError):
    """A `check` node found a value its op refuses (one_hot's class out of range,
    binary_cross_entropy's input outside [0, 1]): PyTorch raises RuntimeError there too."""


@functools.lru_cache(maxsize=4096)
def _inside_package(filename: str) -> bool:
    # cached: every IR node records its user location, and abspath per stack frame was
    # a tenth of a lazy training step's Python time
    return os.path.abspath(filename).startswith(_PACKAGE_DIR + os.sep)


@functools.lru_cache(maxsize=4096)
def _inside_stdlib(filename: str) -> bool:
    # Python's own modules are nobody's user code: a tensor the DataLoader's prefetch
    # thread stacks was reported "at concurrent/futures/thread.py:58"
    return os.path.abspath(filename).startswith(_STDLIB_DIR + os.sep) and \
        "site-packages" not in filename


def user_location(skip_internal=True) -> str | None:
    """file:line of the innermost stack frame outside the graphc package and the
    standard library (None when there is none: a value built in a library thread)."""
    f = sys._getframe(1)
    while f is not None:
        fn = f.f_code.co_filename
        if not (skip_internal and (_inside_package(fn) or _inside_stdlib(fn))):
            return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return None


def at_user_line(exc_type, message):
    loc = user_location()
    return exc_type(f"{message}" + (f" (at {loc})" if loc else ""))
