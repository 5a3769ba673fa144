"""`graphc.onnx.export`: share a traced model as an ONNX file.

    traced = graphc.jit.trace(model, x)
    graphc.onnx.export(traced, f="model.onnx")          # or export(model, (x,), "model.onnx")

Needs the optional extra `onnx` (`pip install graphc[onnx]`: the onnx package, and
onnxruntime to run the result). Importing this package does not import onnx; `export`
does, and says how to install it when it is missing.

The exported graph has static shapes (those of the trace), the model's weights as
initializers, and only default-domain ONNX ops (opset 17 by default). See
graphc/onnx/exporter.py for the naming rules, graphc/onnx/lowering.py for what each IR op
becomes and docs/formats.md ("ONNX export") for the list of ops.
"""
from __future__ import annotations

from .naming import output_leaf_names  # noqa: F401  (no onnx import)

__all__ = ["export", "output_leaf_names"]


def export(model, args=None, f=None, *, input_names=None, output_names=None,
           opset_version=None, check=True):
    """Export `model` to ONNX and return the `onnx.ModelProto`.

    model          a TracedModule (graphc.jit.trace / graphc.jit.load), or a module or
                   function that is traced here with `args` (a tensor or a tuple)
    f              where to write the model: a path (written atomically) or a binary
                   file object; None writes nothing
    input_names    one name per tensor argument (default: the traced argument names)
    output_names   one name per output tensor (default: out0, out1.0, dict keys, ...)
    opset_version  the ONNX opset, 17 (default) or later
    check          run onnx.checker.check_model(full_check=True) on the result

    Raises UnsupportedOperatorError (naming the op and its source line) for an op that
    has no ONNX form, e.g. random numbers (dropout in training mode).
    """
    try:
        import onnx
    except ImportError:
        raise ImportError("graphc.onnx.export needs the onnx package: pip install "
                          "'graphc[onnx]' (or pip install onnx onnxruntime)") from None
    from ..jit import TracedModule, trace
    from .exporter import to_model, write

    if not isinstance(model, TracedModule):
        if args is None:
            raise TypeError("graphc.onnx.export: pass example inputs as `args` to trace "
                            f"a {type(model).__name__}, or pass a module made by "
                            "graphc.jit.trace")
        model = trace(model, args)
    proto = to_model(model, input_names=input_names, output_names=output_names,
                     opset_version=opset_version)
    if check:
        onnx.checker.check_model(proto, full_check=True)
    if f is not None:
        write(proto, f)
    return proto


def __getattr__(name):
    # The error classes live with the exporter, which imports onnx: load them on demand.
    if name in ("OnnxExportError", "UnsupportedOperatorError"):
        from . import exporter
        return getattr(exporter, name)
    raise AttributeError(f"module 'graphc.onnx' has no attribute {name!r}")
