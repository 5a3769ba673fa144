"""`graphc.jit`: trace a model's forward pass into a fixed IR graph, save it, load it
without the model's Python code. See trace.py (tracing, `TracedModule`) and format.py
(the file format, documented in docs/formats.md)."""
from .format import load, save  # noqa: F401
from .trace import TracedModule, TracerWarning, TracingCheckError, trace  # noqa: F401

__all__ = ["trace", "save", "load", "TracedModule", "TracerWarning", "TracingCheckError"]
