"""The `graphc` command line.

    graphc dump-ir model.py:mlp --input x:f32[32,784] --input w:f32[784,10] [--grad]
                   [--stage traced|grad|optimized|fused|...] [--format text|json|dot]
    graphc dump-ir model.gcjit                  # a model saved by graphc.jit.save

Commands are argparse sub-commands, each added by a `register_<command>(subparsers)`
function listed in `COMMANDS`; a command's handler returns the exit status. Exit
status: 0 success; 1 the user's function raised; 2 a usage error (bad arguments, a
file that does not load, a missing function, a malformed --input, an unavailable
stage). Every error is one line on stderr, never a traceback.

Stages (`STAGES`) are the points of the compilation pipeline whose form can be printed.
A stage names a function `module:function` that takes a Graph and returns a Graph
(printed in the chosen --format) or text (printed as is); the module is imported only
when the stage is asked for, so a stage whose module does not exist yet reports "stage
X is not available". Stages marked `after_optimize` receive the optimized graph, as
the backends do. To add a stage, append a `Stage` to `STAGES`.

JSON schema (`--format json`), version 1:

    {"format": "graphc-ir", "version": 1, "stage": "<stage>",
     "graphs": [{"name": "forward" | "backward",
                 "notes": ["<why the graph is what it is>", ...],
                 "inputs": ["<value name>", ...],       # in call order
                 "outputs": ["<value name>", ...],      # in return order
                 "nodes": [{"name": "<value name>",    # as in the text form, no %
                            "op": "<op>",               # "input" for inputs
                            "inputs": ["<value name>", ...],
                            "attrs": {"<key>": <attr>, ...},
                            "type": {"dtype": "<f32|...>", "shape": [<int>, ...]},
                            "loc": "<file:line>" | null}, ...]}]}

where an <attr> is a JSON int, bool, string, null or list of attrs; a finite float is a
JSON number written with a decimal point or exponent (so 4.0 and 4 stay apart);
a non-finite float is {"float": "inf" | "-inf" | "nan"}; a dtype is {"dtype": "f32"}.
Nodes are in topological order; an input node's attrs are empty (its name is the
node's name).
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import inspect
import json
import math
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

EXIT_OK, EXIT_FUNCTION_RAISED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A mistake in how graphc was called: reported in one line, exit status 2."""


class FunctionRaised(Exception):
    """The user's function raised: reported in one line, exit status 1."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (argparse prints the whole usage block)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


# ============================================================================ stages

@dataclass(frozen=True)
class Stage:
    name: str
    help: str
    function: str | None          # "module:function" taking a Graph; None: the graph
    needs_grad: bool = False      # the stage is about the backward graph
    after_optimize: bool = False  # it gets the optimized graph, as the backends do


STAGES = [
    Stage("traced", "the graph as traced from the function (default)", None),
    Stage("grad", "after autodiff: the forward graph and the backward graph (implies "
          "--grad)", None, needs_grad=True),
    Stage("optimized", "after simplification, constant folding, CSE and DCE",
          "graphc.passes.pipeline:optimize"),
    Stage("fused", "the kernel plan of the fusion pass, with the reason for every edge",
          "graphc.passes.fusion:explain", after_optimize=True),
    Stage("memory", "the buffer and arena plan", "graphc.passes.memory:memory_report",
          after_optimize=True),
    Stage("llvm", "the generated LLVM IR", "graphc.backends.llvm:llvm_ir",
          after_optimize=True),
    Stage("triton", "the generated Triton source", "graphc.backends.triton:triton_source",
          after_optimize=True),
]


def stage_function(stage: Stage):
    """The callable of a stage, or UsageError when its module or function is missing."""
    if stage.function is None:
        return lambda graph: graph
    module_name, _, attr = stage.function.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        # Only the stage's own module (or a package above it) missing means "not yet
        # written"; a missing import inside an existing module is a real error.
        if e.name is None or not (module_name + ".").startswith(e.name + "."):
            raise
        module = None
    fn = getattr(module, attr, None) if module is not None else None
    if not callable(fn):
        raise UsageError(f"stage {stage.name!r} is not available ({stage.function} does "
                         f"not exist yet)")
    return fn


# ============================================================================ inputs

_SPEC = re.compile(r"^([A-Za-z_][A-Za-z0-9_]*):([A-Za-z0-9_]+)\[([0-9,\s]*)\]$")


@dataclass(frozen=True)
class InputSpec:
    name: str
    dtype: object   # graphc DType
    shape: tuple


def parse_input_spec(text: str) -> InputSpec:
    """`NAME:DTYPE[D0,D1,...]`, e.g. `x:f32[32,784]`; `s:f64[]` is a scalar."""
    from .ir import dtypes as dt
    m = _SPEC.match(text.strip())
    if not m:
        raise UsageError(f"--input {text!r} is not NAME:DTYPE[DIMS] (e.g. x:f32[32,784], "
                         f"s:f64[])")
    name, dtype_name, dims = m.groups()
    try:
        dtype = dt.to_dtype(dtype_name)
    except (ValueError, KeyError, TypeError):
        raise UsageError(f"--input {text!r}: unknown dtype {dtype_name!r}; known: "
                         f"{', '.join(d.short for d in dt.ALL)}") from None
    parts = [p.strip() for p in dims.split(",")] if dims.strip() else []
    if any(not p for p in parts):
        raise UsageError(f"--input {text!r}: empty dimension in [{dims}]")
    return InputSpec(name, dtype, tuple(int(p) for p in parts))


def make_inputs(specs, grad: bool, seed: int):
    """One tensor per spec: standard normal floats (requiring grad with --grad), integers
    in [0, 10) (usable as class indices), random bools."""
    import graphc as gc
    rng = np.random.default_rng(seed)
    tensors = []
    for s in specs:
        if s.dtype.is_floating:
            values = rng.standard_normal(s.shape)
        elif s.dtype.is_bool:
            values = rng.random(s.shape) < 0.5
        else:
            values = rng.integers(0, 10, size=s.shape)
        tensors.append(gc.tensor(values, dtype=s.dtype,
                                 requires_grad=grad and s.dtype.is_floating))
    return tensors


# ============================================================================ targets

def load_function(target: str):
    """The function named by `FILE.py:FUNCTION`, loading the file as a module."""
    path_text, sep, fn_name = target.rpartition(":")
    if not sep or not path_text or not fn_name:
        raise UsageError(f"target {target!r} should be FILE.py:FUNCTION")
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"no such file: {path_text}")
    module_name = "graphc_target_" + re.sub(r"\W", "_", path.stem)
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise UsageError(f"{path_text} is not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module       # dataclasses and pickling look modules up
    folder = str(path.parent.resolve())
    sys.path.insert(0, folder)              # the file may import its neighbours
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # a syntax error, a failing import: the user's file's problem
        sys.modules.pop(module_name, None)
        raise UsageError(f"cannot load {path_text}: {type(e).__name__}: {e}") from None
    finally:
        if folder in sys.path:
            sys.path.remove(folder)
    fn = getattr(module, fn_name, None)
    if not callable(fn):
        defined = sorted(k for k, v in vars(module).items()
                         if inspect.isfunction(v) and v.__module__ == module_name)
        raise UsageError(f"{path_text} has no function {fn_name!r} (it defines: "
                         f"{', '.join(defined) or 'no functions'})")
    return fn


def _output_tensors(result, fn_name):
    from .tensor import Tensor
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    if not items or not all(isinstance(t, Tensor) for t in items):
        raise UsageError(f"{fn_name} returned {type(result).__name__}; dump-ir needs a "
                         f"tensor or a tuple/list of tensors")
    return items


def call_function(fn, tensors):
    try:
        inspect.signature(fn).bind(*tensors)
    except TypeError as e:
        raise UsageError(f"{fn.__name__} cannot be called with {len(tensors)} --input "
                         f"tensor(s): {e}") from None
    except ValueError:  # no signature (a builtin): let the call decide
        pass
    try:
        return _output_tensors(fn(*tensors), fn.__name__)
    except UsageError:
        raise
    except Exception as e:
        raise FunctionRaised(f"{fn.__name__} raised {type(e).__name__}: {e}") from None


# ============================================================================ graphs

def traced_graph(outputs, inputs, names):
    """The graph computing `outputs` from the tensors `inputs` (all of them, in order,
    named `names`); values computed before the call become further inputs."""
    from .ir.graph import Graph
    g, _ = Graph.from_outputs([t._node for t in outputs],
                              boundary=lambda n: n.op == "input" or n.data is not None,
                              input_order=[t._node for t in inputs])
    for node, name in zip(g.inputs, names):
        # Fresh nodes of a graph nobody has seen yet. The tensors were made here, so
        # their recorded location would be graphc's caller, not the user's code.
        node.attrs = {"name": name}
        node.loc = None
    return g


def backward_graph(forward, wrt=None):
    """(graph, notes): autodiff.grad_graph of the first output of `forward` (summed if
    it is not a scalar) with respect to the inputs at positions `wrt` (default: every
    floating-point input)."""
    from .ir.graph import Graph, Node, TensorType
    from .passes.autodiff import grad_graph
    if wrt is not None and not wrt:
        raise UsageError("--grad needs at least one floating-point --input")
    out, notes = forward.outputs[0], []
    if len(forward.outputs) > 1:
        notes.append(f"the function returned {len(forward.outputs)} tensors: "
                     f"differentiating the first")
    if not out.type.dtype.is_floating:
        raise UsageError(f"--grad needs a floating-point output, got {out.type.dtype.name}")
    if out.type.numel != 1:
        notes.append(f"the output {out.type} is not a scalar: differentiating its sum")
        out = Node("sum", (out,), {"dims": tuple(range(out.type.ndim)), "keepdim": False},
                   TensorType((), out.type.dtype), out.loc)
    loss, _ = Graph.from_outputs([out], input_order=forward.inputs)
    return grad_graph(loss, wrt=wrt), notes


# ============================================================================ formats

def _json_attr(v):
    from .ir.dtypes import DType
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, DType):
        return {"dtype": v.short}
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)):
        v = float(v)
        if math.isnan(v):
            return {"float": "nan"}
        if math.isinf(v):
            return {"float": "inf" if v > 0 else "-inf"}
        return v
    if isinstance(v, (list, tuple)):
        return [_json_attr(x) for x in v]
    if v is None or isinstance(v, str):
        return v
    raise TypeError(f"attribute value {v!r} has no JSON form")


def graph_to_json(graph, name, notes=()):
    from .ir.printer import value_names
    names = value_names(graph)
    return {
        "name": name,
        "notes": list(notes),
        "inputs": [names[id(n)] for n in graph.inputs],
        "outputs": [names[id(n)] for n in graph.outputs],
        "nodes": [{"name": names[id(n)], "op": n.op,
                   "inputs": [names[id(i)] for i in n.inputs],
                   "attrs": {} if n.op == "input" else
                   {k: _json_attr(v) for k, v in sorted(n.attrs.items())},
                   "type": {"dtype": n.type.dtype.short, "shape": list(n.type.shape)},
                   "loc": n.loc} for n in graph.nodes],
    }


def _dot_string(text):
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def graph_to_dot(graph, name, notes=()):
    """Graphviz text: a box per node labelled `%name = op` and its type, an edge per use,
    and a plain `output k` node per output."""
    from .ir.printer import value_names
    names = value_names(graph)
    pos = {id(n): k for k, n in enumerate(graph.nodes)}
    lines = [f"// {note}" for note in notes]
    lines += [f"digraph {_dot_string(name)} {{",
              '  node [shape=box, fontname="monospace"];']
    for k, n in enumerate(graph.nodes):
        label = f"%{names[id(n)]}" + ("" if n.op == "input" else f" = {n.op}") + \
            f"\n{n.type}"
        shape = ", shape=ellipse" if n.op == "input" else ""
        lines.append(f"  n{k} [label={_dot_string(label)}{shape}];")
    for n in graph.nodes:
        for i in n.inputs:
            lines.append(f"  n{pos[id(i)]} -> n{pos[id(n)]};")
    for k, o in enumerate(graph.outputs):
        lines.append(f'  out{k} [label="output {k}", shape=plaintext];')
        lines.append(f"  n{pos[id(o)]} -> out{k};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(results, fmt, stage):
    """`results`: (name, notes, Graph or text) triples."""
    from .ir.graph import Graph
    from .ir.printer import print_graph
    texts = [r for r in results if not isinstance(r[2], Graph)]
    if texts and fmt != "text":
        raise UsageError(f"stage {stage!r} produces text; --format {fmt} applies to graphs")
    if fmt == "json":
        doc = {"format": "graphc-ir", "version": 1, "stage": stage,
               "graphs": [graph_to_json(g, name, notes) for name, notes, g in results]}
        return json.dumps(doc, indent=1, allow_nan=False) + "\n"
    if fmt == "dot":
        return "".join(graph_to_dot(g, name, notes) for name, notes, g in results)
    parts = []
    for name, notes, g in results:
        header = f"# {name} ({stage})\n" + "".join(f"# note: {note}\n" for note in notes)
        parts.append(header + (print_graph(g) if isinstance(g, Graph) else g))
    return "\n".join(parts)


# ============================================================================ dump-ir

def _function_graph(args, grad):
    """(forward graph, wrt) for a FILE.py:FUNCTION target."""
    specs = [parse_input_spec(s) for s in args.input]
    seen = set()
    for s in specs:
        if s.name in seen:
            raise UsageError(f"--input name {s.name!r} given twice")
        seen.add(s.name)
    fn = load_function(args.target)
    inputs = make_inputs(specs, grad, args.seed)
    outputs = call_function(fn, inputs)
    graph = traced_graph(outputs, inputs, [s.name for s in specs])
    return graph, [k for k, s in enumerate(specs) if s.dtype.is_floating]


def _saved_model_graph(args):
    """(forward graph, wrt=None: every float input, weights included) for a file
    written by graphc.jit.save."""
    if args.input:
        raise UsageError("--input applies to FILE.py:FUNCTION targets; a saved traced "
                         "model has its own inputs")
    try:
        from . import jit
        return jit.load(args.target).graph, None
    except Exception as e:  # not a traced model, corrupt, from another program
        raise UsageError(f"cannot load {args.target} as a traced model (graphc.jit.save): "
                         f"{e}") from None


def run_dump_ir(args) -> int:
    stage = next(s for s in STAGES if s.name == args.stage)
    grad = args.grad or stage.needs_grad
    transform = stage_function(stage)   # fail early, before running the user's code
    path_text, sep, _ = args.target.rpartition(":")
    if sep and path_text.endswith(".py") or args.target.endswith(".py"):
        forward, wrt = _function_graph(args, grad)
    elif Path(args.target).is_file():
        forward, wrt = _saved_model_graph(args)
    else:
        raise UsageError(f"target {args.target!r} should be FILE.py:FUNCTION or a traced "
                         f"model file (no such file)")
    graphs = [("forward", [], forward)]
    if grad:
        graph, notes = backward_graph(forward, wrt)
        graphs.append(("backward", notes, graph))
    results = []
    for name, notes, graph in graphs:
        if stage.after_optimize:
            from .passes.pipeline import optimize
            graph = optimize(graph)
        results.append((name, notes, transform(graph)))
    sys.stdout.write(render(results, args.format, stage.name))
    return EXIT_OK


def register_dump_ir(subparsers):
    stages = "\n".join(f"  {s.name:<10} {s.help}" for s in STAGES)
    p = subparsers.add_parser(
        "dump-ir", help="print the IR of a function at a stage of the compiler",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load FILE.py as a module, call FUNCTION with random tensors of the "
                    "given shapes and dtypes,\nand print the IR graph of what it returns "
                    "(inputs named after the --input names).\nA TARGET saved by "
                    "graphc.jit.save prints its recorded graph (--grad: gradients w.r.t. "
                    "its\nfloating-point inputs, weights included).",
        epilog=f"stages:\n{stages}\n\n"
               "examples:\n"
               "  graphc dump-ir model.py:mlp --input x:f32[32,784] --input w:f32[784,10]\n"
               "  graphc dump-ir model.py:loss --input x:f32[8,4] --grad --stage optimized\n"
               "  graphc dump-ir model.py:mlp --input x:f32[2,3] --format dot | dot -Tsvg\n\n"
               "exit status: 0 ok, 1 the function raised, 2 usage error")
    p.add_argument("target", metavar="TARGET",
                   help="FILE.py:FUNCTION, a function to call and trace; or a traced "
                        "model saved by graphc.jit.save")
    p.add_argument("--input", "-i", action="append", default=[],
                   metavar="NAME:DTYPE[DIMS]",
                   help="one positional argument of the function, in order: a tensor of "
                        "random values, e.g. x:f32[32,784], s:f64[] (repeat per argument)")
    p.add_argument("--grad", action="store_true",
                   help="also print the backward graph: the gradient of the output (its "
                        "sum, if not a scalar) w.r.t. every floating-point input")
    p.add_argument("--stage", choices=[s.name for s in STAGES], default="traced",
                   help="which form of the graph to print (see 'stages' below)")
    p.add_argument("--format", choices=["text", "json", "dot"], default="text",
                   help="text: the IR text form (each graph parses with graphc.ir.parse); "
                        "json: the schema in graphc/cli.py and docs/ir.md; dot: Graphviz")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random input values (default 0)")
    p.set_defaults(handler=run_dump_ir)


def register_bench(subparsers):
    from . import bench   # building the parser does not import torch
    p = subparsers.add_parser("bench", help="run the benchmark suite beside numpy and PyTorch",
                              description="Time graphc's workloads beside numpy, PyTorch "
                                          "(eager, torch.compile) and jax where installed; "
                                          "print a table and write a JSON file.")
    bench.add_arguments(p)
    p.set_defaults(handler=bench.run)


# ============================================================================ run
#
#   graphc run MODEL --input x=x.npy [--input ...] [-o OUTDIR]
#
# Runs a model saved by graphc.jit.save on arrays read from .npy files and writes one
# .npy file per output tensor, named by graphc.onnx.naming (out0, out1.0, dict keys).
# An --input is NAME=FILE (NAME: a traced argument name) or FILE (the next argument not
# given by name). Inputs must have exactly the traced shapes and dtypes. Each output
# file is written whole or not at all (a temporary file, then os.replace).

_RUN_ARG_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*$")


def _read_npy(name, path_text):
    """The array stored in the .npy file `path_text`, for the model input `name`."""
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"input {name!r}: no such file: {path_text}")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
            if magic != b"\x93NUMPY":
                what = "an .npz archive; pass one .npy file per input" \
                    if magic.startswith(b"PK") else "not a .npy file"
                raise UsageError(f"input {name!r}: {path_text} is {what}")
            fh.seek(0)
            return np.load(fh, allow_pickle=False)
    except OSError as e:
        raise UsageError(f"input {name!r}: cannot read {path_text}: {e.strerror or e}") \
            from None
    except (ValueError, EOFError) as e:
        if "allow_pickle" in str(e):   # an object array: reading it would unpickle
            raise UsageError(f"input {name!r}: {path_text} holds pickled Python objects; "
                             "graphc run reads numeric arrays only") from None
        raise UsageError(f"input {name!r}: {path_text} is not a valid .npy file: {e}") \
            from None


def _run_inputs(module, texts):
    """One tensor per traced tensor argument, from the --input texts."""
    import graphc as gc
    names, types = module._arg_names, module._arg_types
    expected = ", ".join(f"{n} {t}" for n, t in zip(names, types)) or "no tensors"
    chosen = [None] * len(names)
    positional = []
    for text in texts:
        name, sep, path = text.partition("=")
        if not (sep and _RUN_ARG_NAME.match(name)):
            positional.append(text)
            continue
        if name not in names:
            raise UsageError(f"--input {text!r}: the model has no input {name!r} (it "
                             f"takes: {expected})")
        k = names.index(name)
        if chosen[k] is not None:
            raise UsageError(f"input {name!r} is given twice")
        chosen[k] = path
    # FILE without NAME= fills the arguments not given by name, in order
    free = [k for k, p in enumerate(chosen) if p is None]
    if len(positional) > len(free):
        raise UsageError(f"{len(texts)} --input given but the model takes {len(names)}: "
                         f"{expected}")
    for k, path in zip(free, positional):
        chosen[k] = path
    missing = [f"{n} {t}" for n, t, p in zip(names, types, chosen) if p is None]
    if missing:
        raise UsageError(f"missing --input for {', '.join(missing)} (the model takes: "
                         f"{expected})")
    tensors = []
    for name, want, path in zip(names, types, chosen):
        array = _read_npy(name, path)
        if not array.dtype.isnative:
            array = array.astype(array.dtype.newbyteorder("="))
        if tuple(array.shape) != want.shape:
            raise UsageError(f"input {name!r} ({path}) has shape {list(array.shape)} but "
                             f"the model was traced for shape {list(want.shape)}")
        if array.dtype != want.dtype.np:
            raise UsageError(f"input {name!r} ({path}) has dtype {array.dtype} but the "
                             f"model takes {want.dtype.name} ({want})")
        tensors.append(gc.tensor(array, dtype=want.dtype))
    return tensors


def _save_npy_atomically(path, array):
    import os
    import secrets
    # os.open with mode 0o666 honours the umask (tempfile.mkstemp would make it 0600)
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.save(fh, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def run_run(args) -> int:
    import graphc as gc
    from .jit.trace import flatten, unflatten
    from .onnx.naming import output_leaf_names
    if not Path(args.model).is_file():
        raise UsageError(f"no such file: {args.model}")
    try:
        module = gc.jit.load(args.model)
    except Exception as e:  # not a traced model, corrupt, from another program
        raise UsageError(f"cannot load {args.model} as a traced model (graphc.jit.save): "
                         f"{e}") from None
    call_args, call_kwargs = unflatten(module._input_spec, _run_inputs(module, args.input))
    outdir = Path(args.output_dir)
    if outdir.exists() and not outdir.is_dir():
        raise UsageError(f"-o {args.output_dir}: not a directory")
    try:
        with gc.no_grad():
            outputs = []
            flatten(module(*call_args, **call_kwargs), "output", outputs, [],
                    allow_values=False)
            arrays = [t.numpy() for t in outputs]   # computes every output
    except Exception as e:
        raise FunctionRaised(f"the model raised {type(e).__name__}: {e}") from None
    try:
        outdir.mkdir(parents=True, exist_ok=True)
        names = output_leaf_names(module._output_spec)
        for name, t, array in zip(names, outputs, arrays):
            path = outdir / f"{name}.npy"
            _save_npy_atomically(path, array)
            print(f"{name} {list(array.shape)} {t.dtype.name} -> {path}")
    except OSError as e:
        raise UsageError(f"cannot write to {args.output_dir}: {e.strerror or e}") from None
    return EXIT_OK


def register_run(subparsers):
    p = subparsers.add_parser(
        "run", help="run a traced model (graphc.jit.save) on .npy inputs",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Load a model saved by graphc.jit.save, run it on arrays read from "
                    ".npy files and write\neach output tensor to OUTDIR/NAME.npy (NAME: "
                    "out0, out1, ... by position, out1.0 inside\na nested tuple, or the "
                    "key of a dict output). Prints one line per output: name, shape,\n"
                    "dtype, file.",
        epilog="examples:\n"
               "  graphc run mlp.gcjit --input x=batch.npy -o out\n"
               "  graphc run lstm.gcjit --input seq.npy           # inputs in order\n\n"
               "Inputs must have the shapes and dtypes the model was traced with.\n"
               "exit status: 0 ok, 1 the model raised, 2 usage error")
    p.add_argument("model", metavar="MODEL", help="a traced model saved by graphc.jit.save")
    p.add_argument("--input", "-i", action="append", default=[], metavar="[NAME=]FILE.npy",
                   help="a model input from a .npy file: NAME=FILE for the argument NAME, "
                        "or FILE for the next argument not given by name (repeat per "
                        "input)")
    p.add_argument("-o", "--output-dir", default=".", metavar="OUTDIR",
                   help="folder for the output .npy files (created if missing; default: "
                        "the current folder)")
    p.set_defaults(handler=run_run)


# ============================================================================ export
#
#   graphc export MODEL -o DIR [--name NAME] [--blas bundle|numpy] [--cpu CPU]
#
# Compiles a model saved by graphc.jit.save into DIR/lib<NAME>.so + <NAME>.h +
# <NAME>.json (graphc/export; the format is in docs/formats.md, "Export").

def run_export(args) -> int:
    import graphc as gc
    from .export import ExportError, export, library_name_from
    if not Path(args.model).is_file():
        raise UsageError(f"no such file: {args.model}")
    try:
        module = gc.jit.load(args.model)
    except Exception as e:  # not a traced model, corrupt, from another program
        raise UsageError(f"cannot load {args.model} as a traced model (graphc.jit.save): "
                         f"{e}") from None
    try:
        name = args.name if args.name is not None else library_name_from(Path(args.model).stem)
        paths = export(module, out_dir=args.output_dir, name=name, blas=args.blas,
                       cpu=args.cpu)
    except ExportError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"cannot write to {args.output_dir}: {e.strerror or e}") from None
    for what in ("library", "header", "manifest"):
        print(f"{what}: {paths[what]}")
    for extra in paths["extra"]:
        print(f"dependency: {extra}")
    return EXIT_OK


def register_export(subparsers):
    p = subparsers.add_parser(
        "export", help="compile a traced model (graphc.jit.save) into a C shared library",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Compile a model saved by graphc.jit.save ahead of time into a native "
                    "shared library\nthat runs its forward pass without Python: "
                    "OUTDIR/lib<NAME>.so, the C header\nOUTDIR/<NAME>.h (create / run / "
                    "destroy, shapes and dtypes) and OUTDIR/<NAME>.json.\nWeights are "
                    "embedded in the library. Needs a C compiler (cc, or $CC) to link.",
        epilog="examples:\n"
               "  graphc export mlp.gcjit -o build/mlp\n"
               "  graphc export cnn.gcjit -o out --name digits --cpu x86-64-v3\n\n"
               "exit status: 0 ok, 2 usage error (unreadable model, bad name, a model "
               "that cannot be\nexported, no C compiler)")
    p.add_argument("model", metavar="MODEL", help="a traced model saved by graphc.jit.save")
    p.add_argument("-o", "--output-dir", required=True, metavar="OUTDIR",
                   help="folder for the library, header and manifest (created if missing)")
    p.add_argument("--name", default=None,
                   help="C identifier prefixing every symbol and naming the files "
                        "(default: from MODEL's file name)")
    p.add_argument("--blas", choices=["bundle", "numpy"], default="bundle",
                   help="bundle: copy numpy's OpenBLAS next to the library (self-contained "
                        "folder, default); numpy: use it from this Python environment")
    p.add_argument("--cpu", default="host",
                   help="CPU to generate code for: host (default) or an LLVM CPU name, "
                        "e.g. x86-64-v2 for older machines")
    p.set_defaults(handler=run_export)


COMMANDS = [register_dump_ir, register_bench, register_run, register_export]


def build_parser():
    parser = _Parser(prog="graphc",
                     description="graphc: a PyTorch-compatible define-then-run deep-learning "
                                 "framework. Inspect and compile programs.",
                     epilog="Run 'graphc COMMAND --help' for a command's options.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for register in COMMANDS:
        register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a usage error already printed by argparse
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    prog = f"graphc {args.command}"
    try:
        return args.handler(args)
    except UsageError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except FunctionRaised as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return EXIT_FUNCTION_RAISED
