"""Write a traced module's forward graph as an ONNX model.

The ONNX graph mirrors the TracedModule (graphc/jit/trace.py):
  * each tensor argument is a graph input named after it (`x`, `batch.image`), with
    its traced static shape and dtype;
  * each weight (parameter, buffer, captured constant) is an initializer named after
    it (`l1.weight`, `const_0`);
  * each output leaf is a graph output named by graphc.onnx.naming (`out0`, `out1.0`,
    a dict key), unless `output_names` says otherwise;
  * every other value gets a plain generated name (`t12`, `c3`), and nodes are named
    after their ONNX op type: nothing else of graphc's shows in the graph.
Every IR node is lowered by graphc.onnx.lowering; before any ONNX node is built, the
graph is scanned so that an op without a lowering is reported with its source line.
"""
from __future__ import annotations

import os
import secrets

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..ir.errors import GraphcError
from .builder import Builder, onnx_elem_type, value_info
from .lowering import LOWERINGS, UNSUPPORTED, Unsupported
from .naming import output_leaf_names, unique

DEFAULT_OPSET = 17
MIN_OPSET = 17


class OnnxExportError(GraphcError, ValueError):
    """The model cannot be written as ONNX; the message says what and where."""


class UnsupportedOperatorError(OnnxExportError):
    """The graph holds an op with no ONNX mapping (the message names it and its line)."""


def _where(node) -> str:
    return f" at {node.loc}" if node.loc else ""


def _unsupported(node, reason) -> UnsupportedOperatorError:
    return UnsupportedOperatorError(f"graphc.onnx.export: op {node.op!r}{_where(node)} "
                                    f"cannot be exported: {reason}")


def check_exportable(graph) -> None:
    """Raise UnsupportedOperatorError for the first node no lowering covers."""
    for node in graph.nodes:
        if node.op == "input":
            continue
        if node.op in UNSUPPORTED:
            raise _unsupported(node, UNSUPPORTED[node.op])
        if node.op not in LOWERINGS:
            raise _unsupported(node, "no ONNX mapping is defined for this op "
                                     "(graphc/onnx/lowering.py)")
        for value in (node, *node.inputs):
            try:
                onnx_elem_type(value.type.dtype)
            except TypeError as e:
                raise _unsupported(node, str(e)) from None


def _resolve_opset(opset_version) -> int:
    newest = onnx.defs.onnx_opset_version()
    opset = DEFAULT_OPSET if opset_version is None else opset_version
    if type(opset) is not int or not MIN_OPSET <= opset <= newest:
        raise ValueError(f"graphc.onnx.export: opset_version must be an int from "
                         f"{MIN_OPSET} to {newest} (this onnx package's newest), got "
                         f"{opset_version!r}")
    return opset


def _names(given, default, what):
    if given is None:
        return default
    given = list(given)
    if len(given) != len(default) or not all(isinstance(n, str) and n for n in given):
        raise ValueError(f"graphc.onnx.export: {what} must be {len(default)} non-empty "
                         f"strings (one per {what[:-6]}), got {given!r}")
    return given


def to_model(traced, *, input_names=None, output_names=None, opset_version=None):
    """The ONNX ModelProto of TracedModule `traced` (not checked; see export)."""
    opset = _resolve_opset(opset_version)
    graph = traced.graph
    check_exportable(graph)

    arg_names = _names(input_names, list(traced._arg_names), "input_names")
    weight_names = [key for kind, key in traced._sources if kind == "weight"]
    taken = set(arg_names) | set(weight_names)
    if len(set(arg_names)) != len(arg_names) or set(arg_names) & set(weight_names):
        raise ValueError(f"graphc.onnx.export: input names {arg_names} repeat or clash with "
                         f"parameter names")
    out_names = _names(output_names, unique(output_leaf_names(traced._output_spec), taken),
                       "output_names")
    if len(set(out_names)) != len(out_names) or set(out_names) & taken:
        raise ValueError(f"graphc.onnx.export: output names {out_names} repeat or clash "
                         f"with input or parameter names")

    b = Builder(opset)
    env = {}                   # id(graphc node) -> ONNX value name
    inputs, initializers, seen_args, seen_weights = [], [], set(), set()
    for node, (kind, key) in zip(graph.inputs, traced._sources):
        if kind == "arg":
            env[id(node)] = name = arg_names[key]
            if key not in seen_args:   # an argument can feed several graph inputs
                seen_args.add(key)
                inputs.append((key, value_info(b.reserve(name), node.type.dtype,
                                               node.type.shape)))
        elif kind == "weight":
            env[id(node)] = key
            if key not in seen_weights:
                seen_weights.add(key)
                b.reserve(key)
                initializers.append(numpy_helper.from_array(
                    _weight_array(traced, key, node), key))
        else:  # a random op's seed/offset: check_exportable has refused `rand` already
            raise OnnxExportError(f"graphc.onnx.export: graph input {kind!r} has no ONNX "
                                  "form")
    inputs = [info for _, info in sorted(inputs, key=lambda p: p[0])]
    for name in out_names:
        b.reserve(name)

    first_output = {}          # id(graphc node) -> index of the first output it is
    for k, node in enumerate(graph.outputs):
        first_output.setdefault(id(node), k)
    for node in graph.nodes:
        if node.op == "input":
            continue
        mark = b.mark()
        try:
            value = LOWERINGS[node.op](b, node, [env[id(i)] for i in node.inputs])
        except Unsupported as e:
            raise _unsupported(node, str(e)) from None
        k = first_output.get(id(node))
        if k is not None and b.produced_since(mark, value):
            b.rename(value, out_names[k])   # the output's own name, no Identity node
            value = out_names[k]
        env[id(node)] = value
    outputs = []
    for k, node in enumerate(graph.outputs):
        if env[id(node)] != out_names[k]:   # an input, a weight or a repeated output
            b.identity(env[id(node)], out_names[k])
        outputs.append(value_info(out_names[k], node.type.dtype, node.type.shape))

    onnx_graph = helper.make_graph(b.node_protos(), "main_graph", inputs, outputs,
                                   initializer=initializers)
    from .. import __version__
    model = helper.make_model_gen_version(
        onnx_graph, opset_imports=[helper.make_opsetid("", opset)],
        producer_name="graphc", producer_version=str(__version__))
    return model


def _weight_array(traced, key, node):
    t = traced._weights[key]
    if t._node.type != node.type:
        raise OnnxExportError(f"graphc.onnx.export: weight {key!r} is now {t._node.type} "
                              f"but the trace was recorded with {node.type}")
    return np.array(t.detach().numpy(), order="C")   # 0-d stays 0-d


def write(model, f) -> None:
    """`f`: a path (written atomically: a temporary file, then os.replace) or a binary
    file object."""
    data = model.SerializeToString()
    if hasattr(f, "write"):
        f.write(data)
        return
    path = os.fspath(f)
    folder = os.path.dirname(os.path.abspath(path))
    # os.open with mode 0o666 honours the umask (tempfile.mkstemp would make it 0600)
    tmp = os.path.join(folder, f".{os.path.basename(path)}.{os.getpid()}."
                               f"{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
