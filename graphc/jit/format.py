"""`graphc.jit.save` / `graphc.jit.load`: a traced module in one versioned file.

The file is a graphc checkpoint (graphc/serialization.py; docs/formats.md gives both
formats byte by byte) whose root object is a dict:

    "graphc.jit"    1, the traced-module format version
    "name"          the traced model's class or function name (information only)
    "ir"            the forward graph as IR text (ir.printer.print_graph)
    "inputs"        one [name, kind, key] per graph input, in order: kind "arg" with
                    key the index of a tensor argument, "weight" with key a weight name,
                    or "seed" / "offset" with key j: that input of the graph's j-th
                    `rand` node, drawn from the default generator on each call
    "arg_names"     the name of each tensor argument, in argument order
    "input_spec"    structure of the (args, kwargs) pair; "output_spec" of the result
    "weights"       {name: tensor}
    "weight_kinds"  {name: "parameter" | "buffer" | "constant"}
    "training"      optional bool: the mode the model was traced in (absent: True)

Loading reads data only: the IR text goes through the IR parser (which evaluates
nothing) and the verifier, the weights through the checkpoint loader. The model's Python
class is never imported. Every inconsistency is a `CheckpointError` naming the file.
"""
from __future__ import annotations

import os

from .. import serialization
from ..ir.errors import GraphcError
from ..ir.parser import parse
from ..ir.printer import print_graph
from ..serialization import CheckpointError
from ..tensor import Tensor
from .trace import SPEC_KINDS, TracedModule, count_leaves

JIT_FORMAT_VERSION = 1
_KEY = "graphc.jit"
_WEIGHT_KINDS = ("parameter", "buffer", "constant")


def save(m: TracedModule, f) -> None:
    """Write traced module `m` to `f` (a path, written atomically, or a binary file)."""
    if not isinstance(m, TracedModule):
        raise TypeError("graphc.jit.save expects a module returned by graphc.jit.trace or "
                        f"graphc.jit.load, got {type(m).__name__}")
    root = {
        _KEY: JIT_FORMAT_VERSION,
        "name": m.original_name,
        "ir": print_graph(m.graph),
        "inputs": [[node.attrs["name"], kind, key]
                   for node, (kind, key) in zip(m.graph.inputs, m._sources)],
        "arg_names": list(m._arg_names),
        "input_spec": m._input_spec,
        "output_spec": m._output_spec,
        # Parameters keep requires_grad in the file: a loaded module can be fine-tuned.
        "weights": dict(m._weights),
        "weight_kinds": dict(m._weight_kinds),
        "training": m._traced_training,
    }
    serialization.save(root, f)


def load(f, map_location=None) -> TracedModule:
    """Read a traced module written by `save`."""
    where = os.fspath(f) if isinstance(f, (str, os.PathLike)) else \
        (getattr(f, "name", None) or "traced module stream")
    root = serialization.load(f, map_location)
    try:
        return _from_root(root)
    except CheckpointError:
        raise
    except GraphcError as e:   # the IR text does not parse or verify
        raise CheckpointError(f"{where}: the traced module's IR is invalid: {e}") from None
    except (ValueError, TypeError, KeyError, IndexError) as e:
        raise CheckpointError(f"{where}: not a valid traced module: {e}") from None


def _from_root(root) -> TracedModule:
    if not isinstance(root, dict) or _KEY not in root:
        raise ValueError("this is a graphc checkpoint but not a traced module (no "
                         f"{_KEY!r} entry); read it with graphc.load")
    version = root[_KEY]
    if version != JIT_FORMAT_VERSION or type(version) is not int:
        raise ValueError(f"traced-module format version {version!r}; this graphc reads "
                         f"version {JIT_FORMAT_VERSION}")
    for key, kind in (("ir", str), ("inputs", list), ("arg_names", list),
                      ("input_spec", dict), ("output_spec", dict), ("weights", dict),
                      ("weight_kinds", dict), ("name", str)):
        if not isinstance(root.get(key), kind):
            raise ValueError(f"the entry {key!r} is missing or not a {kind.__name__}")
    weights, kinds, arg_names = root["weights"], root["weight_kinds"], root["arg_names"]
    for name, t in weights.items():
        if not isinstance(name, str) or not isinstance(t, Tensor):
            raise ValueError(f"weight {name!r} is not a named tensor")
        if kinds.get(name) not in _WEIGHT_KINDS:
            raise ValueError(f"weight {name!r} has kind {kinds.get(name)!r}, not one of "
                             f"{', '.join(_WEIGHT_KINDS)}")
    if set(kinds) != set(weights):
        raise ValueError("'weight_kinds' and 'weights' name different weights")
    if not all(isinstance(n, str) for n in arg_names):
        raise ValueError("'arg_names' holds a non-string")
    input_spec = root["input_spec"]
    if input_spec.get("kind") != "tuple" or len(input_spec.get("items", ())) != 2 or \
            [s.get("kind") if isinstance(s, dict) else None
             for s in input_spec["items"]] != ["tuple", "dict"]:
        raise ValueError("'input_spec' is not the spec of an (args, kwargs) pair")
    if count_leaves(input_spec, "input_spec") != len(arg_names):
        raise ValueError(f"'input_spec' has a different number of tensors than the "
                         f"{len(arg_names)} in 'arg_names'")
    _check_values(root["output_spec"])

    graph = parse(root["ir"])
    if count_leaves(root["output_spec"], "output_spec") != len(graph.outputs):
        raise ValueError(f"'output_spec' does not describe the graph's "
                         f"{len(graph.outputs)} outputs")
    if len(root["inputs"]) != len(graph.inputs):
        raise ValueError(f"'inputs' lists {len(root['inputs'])} inputs, the graph has "
                         f"{len(graph.inputs)}")
    sources, arg_seen = [], set()
    for node, entry in zip(graph.inputs, root["inputs"]):
        if not (isinstance(entry, list) and len(entry) == 3):
            raise ValueError(f"input entry {entry!r:.60} is not [name, kind, key]")
        name, kind, key = entry
        if node.attrs.get("name") != name:
            raise ValueError(f"graph input %{node.attrs.get('name')} is listed as {name!r}")
        if kind == "arg":
            if type(key) is not int or not 0 <= key < len(arg_names):
                raise ValueError(f"input {name!r} refers to argument {key!r}, out of range")
            arg_seen.add(key)
        elif kind == "weight":
            if key not in weights:
                raise ValueError(f"input {name!r} refers to the missing weight {key!r}")
            if weights[key]._node.type != node.type:
                raise ValueError(f"weight {key!r} is {weights[key]._node.type} but the "
                                 f"graph input %{name} is {node.type}")
        elif kind not in ("seed", "offset"):   # TracedModule checks those against the graph
            raise ValueError(f"input {name!r} has kind {kind!r}, not 'arg', 'weight', "
                             "'seed' or 'offset'")
        sources.append((kind, key))
    if arg_seen != set(range(len(arg_names))):
        raise ValueError("some tensor arguments are not inputs of the graph")
    training = root.get("training", True)
    if not isinstance(training, bool):
        raise ValueError(f"the entry 'training' is {training!r}, not a bool")
    module = TracedModule(graph, sources, weights, kinds, input_spec, root["output_spec"],
                          arg_names, root["name"], training)
    for node, (kind, key) in zip(graph.inputs, sources):
        if kind == "arg" and module._arg_types[key] != node.type:
            raise ValueError(f"argument {arg_names[key]!r} feeds graph inputs of "
                             "different types")
    return module


def _check_values(spec):
    """Output specs hold tensors and containers only."""
    if spec.get("kind") == "value":
        raise ValueError("'output_spec' holds a Python value; traced outputs are tensors")
    if spec.get("kind") in SPEC_KINDS:
        for s in spec.get("items", ()) or ():
            if isinstance(s, dict):
                _check_values(s)
