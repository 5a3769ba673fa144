"""`graphc.jit.trace`: record a model's forward pass once, as a fixed IR graph.

Tracing calls the model on fresh tensors whose nodes are `input` nodes holding the
example values, then extracts the graph reachable from the outputs, stopping at every
node that holds a value (`Graph.from_outputs(..., boundary=n.data is not None)`). Each
such boundary becomes a named graph input and is mapped back to what it is:

  * an example input (by node identity, or by sharing the example's array);
  * a parameter or buffer of the model (`named_parameters()` / `named_buffers()`, duck
    typed), kept by reference, so later updates of the model are seen by the trace;
  * anything else (a tensor made inside forward, a Python float, a random seed): a
    constant `const_<k>` whose value is stored with the trace.

Invariants of a `TracedModule`:
  * `graph.inputs[k]` has a unique identifier as its name, and `_sources[k]` says what
    feeds it: ("arg", flat index into the example inputs), ("weight", name), or
    ("seed" | "offset", j): that input of the j-th `rand` node of the graph;
  * every tensor leaf of the example inputs (in `_input_spec` order) is a graph input;
  * `_output_spec` has exactly one tensor leaf per graph output.

Calling a traced module re-applies each graph node with `Tensor._apply` to the new
inputs and to the weights. The result is ordinary lazy tensors: the runtime realizes
them (cached by structure), autograd flows through them, and calling a traced module
inside another trace inlines its graph there.

Random ops (`rand`: randn, dropout) are the exception to "captured values are fixed":
their seed and offset inputs become `rng<j>_seed` / `rng<j>_offset` graph inputs, fed on
every call by a fresh draw from graphc's default generator, so a traced module draws
new numbers each call, as the model does (and as PyTorch's traced modules do).

What a trace cannot see it fixes, and says so with a `TracerWarning`: a tensor value
read as a Python value during tracing (`.item()`, `bool()`, `.tolist()`, printing: the
value and the Python control flow that used it are fixed, while the tensors themselves
stay computed from the inputs), a Python number passed as an
argument, Python floats the model uses (all listed in one warning), a runtime scalar
with a source (e.g. a scheduled learning rate).
"""
from __future__ import annotations

import inspect
import math
import os
import re
import sys
import warnings

import numpy as np

from .. import autograd, runtime
from ..ir.errors import DTypeError, GraphcError, IRError, ShapeError
from ..ir.graph import Graph, Node, toposort
from ..ir.printer import print_graph
from ..tensor import Tensor, default_generator

_RNG_ROLES = ("seed", "offset")   # the two inputs of a `rand` node
_PACKAGE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*$")
SPEC_KINDS = ("tensor", "tuple", "list", "dict", "value")


class TracerWarning(Warning):
    """The trace fixed something that the Python code computes: it may not generalise."""


class TracingCheckError(GraphcError, RuntimeError):
    """`check_trace` found the traced graph disagreeing with the Python model."""


# ============================================================================ specs
# A spec records the structure of a nested input or output as plain data (so it can be
# saved): {"kind": "tensor"} for a tensor leaf (leaves are numbered in traversal order),
# {"kind": "tuple"|"list", "items": [...]}, {"kind": "dict", "keys": [...],
# "items": [...]}, {"kind": "value", "value": v} for a Python value fixed by the trace.

def flatten(obj, path, leaves, paths, allow_values):
    """The spec of `obj`; appends its tensors to `leaves` and their paths to `paths`."""
    if isinstance(obj, Tensor):
        leaves.append(obj)
        paths.append(path)
        return {"kind": "tensor"}
    if isinstance(obj, (tuple, list)):
        return {"kind": "tuple" if isinstance(obj, tuple) else "list",
                "items": [flatten(v, f"{path}[{k}]", leaves, paths, allow_values)
                          for k, v in enumerate(obj)]}
    if isinstance(obj, dict):
        return {"kind": "dict", "keys": list(obj.keys()),
                "items": [flatten(v, f"{path}[{k!r}]", leaves, paths, allow_values)
                          for k, v in obj.items()]}
    if allow_values and (obj is None or isinstance(obj, (bool, int, float, str))):
        return {"kind": "value", "value": obj}
    what = "tensors (or tuples, lists and dicts of them)" if not allow_values else \
        "tensors, numbers, strings, None, or tuples, lists and dicts of those"
    raise TypeError(f"graphc.jit.trace: {path} is a {type(obj).__name__}; traced "
                    f"{'inputs' if allow_values else 'outputs'} must be {what}")


def unflatten(spec, leaves, position=None):
    """Rebuild the object `spec` describes, taking tensors from `leaves` in order."""
    position = position if position is not None else [0]
    kind = spec["kind"]
    if kind == "tensor":
        t = leaves[position[0]]
        position[0] += 1
        return t
    if kind == "value":
        return spec["value"]
    items = [unflatten(s, leaves, position) for s in spec["items"]]
    if kind == "tuple":
        return tuple(items)
    if kind == "list":
        return items
    return dict(zip(spec["keys"], items))


def count_leaves(spec, where="spec") -> int:
    """Number of tensor leaves of `spec`, checking that it is well formed (ValueError)."""
    if not isinstance(spec, dict) or spec.get("kind") not in SPEC_KINDS:
        raise ValueError(f"{where}: {spec!r:.60} is not a structure spec")
    kind = spec["kind"]
    if kind == "tensor":
        return 1
    if kind == "value":
        if "value" not in spec:
            raise ValueError(f"{where}: a value spec has no 'value'")
        return 0
    items = spec.get("items")
    if not isinstance(items, list):
        raise ValueError(f"{where}: a {kind} spec has no list of items")
    if kind == "dict":
        keys = spec.get("keys")
        if not isinstance(keys, list) or len(keys) != len(items):
            raise ValueError(f"{where}: a dict spec needs one key per item")
        try:
            if len(set(keys)) != len(keys):
                raise ValueError(f"{where}: a dict spec repeats a key")
        except TypeError:
            raise ValueError(f"{where}: a dict spec has an unhashable key") from None
    return sum(count_leaves(s, f"{where}[{k}]") for k, s in enumerate(items))


def _has_mutable_container(spec) -> str | None:
    if spec["kind"] in ("list", "dict"):
        return spec["kind"]
    for s in spec.get("items", ()):
        found = _has_mutable_container(s)
        if found:
            return found
    return None


# ============================================================================ the module

class TracedModule:
    """A model's forward pass as a fixed graph. Call it like the model."""

    def __init__(self, graph: Graph, sources, weights, weight_kinds, input_spec,
                 output_spec, arg_names, name="TracedModule", training=True):
        self.graph = graph
        # The mode the model was traced in (a function counts as training, as an
        # nn.Module starts). `training` is the flag train()/eval() set.
        self._traced_training = bool(training)
        self.training = bool(training)
        self._sources = list(sources)           # per graph input: ("arg", k) | ("weight", name)
        self._weights = dict(weights)           # name -> Tensor
        self._weight_kinds = dict(weight_kinds)  # name -> "parameter" | "buffer" | "constant"
        self._input_spec = input_spec           # spec of (args tuple, kwargs dict)
        self._output_spec = output_spec
        self._arg_names = list(arg_names)       # per flat tensor argument
        self._arg_types = [None] * len(arg_names)
        self._rand_nodes = [n for n in graph.nodes if n.op == "rand"]
        for node, (kind, key) in zip(graph.inputs, self._sources):
            if kind == "arg":
                self._arg_types[key] = node.type
            elif kind in _RNG_ROLES:
                if not (type(key) is int and 0 <= key < len(self._rand_nodes)
                        and self._rand_nodes[key].inputs[_RNG_ROLES.index(kind)] is node):
                    raise ValueError(f"graph input %{node.attrs.get('name')} is not the "
                                     f"{kind} of random op {key!r}")
        self.original_name = name

    # ------------------------------------------------------------------ module-like
    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def forward(self, *args, **kwargs):
        flat = self._bind(args, kwargs)
        env, draws = {}, {}
        for node, (kind, key) in zip(self.graph.inputs, self._sources):
            if kind in _RNG_ROLES:
                # Each call draws fresh numbers from graphc's default generator, as the
                # model's own randn/dropout would.
                if key not in draws:
                    draws[key] = default_generator.draw(self._rand_nodes[key].type.numel)
                env[id(node)] = draws[key][_RNG_ROLES.index(kind)]
                continue
            value = flat[key] if kind == "arg" else self._weights[key]
            if kind == "weight" and value._node.type != node.type:
                raise ShapeError(f"traced module: weight {key!r} is now {value._node.type} "
                                 f"but the trace was recorded with {node.type}")
            env[id(node)] = value
        for node in self.graph.nodes:
            if node.op == "input":
                continue
            # Nodes keep the source line of the model code they were traced from.
            with autograd.emitted_at(node.loc):
                result = Tensor._apply(node.op, *[env[id(i)] for i in node.inputs],
                                       **node.attrs)
            if result._node.type != node.type:
                raise IRError(f"traced module: node {node.op} gives {result._node.type} "
                              f"on replay but {node.type} in the trace")
            env[id(node)] = result
        return unflatten(self._output_spec, [env[id(o)] for o in self.graph.outputs])

    def _bind(self, args, kwargs):
        """Match call arguments against the traced structure; one tensor per flat arg."""
        leaves = []
        self._match(self._input_spec["items"][0], tuple(args), "args", leaves)
        self._match(self._input_spec["items"][1], dict(kwargs), "kwargs", leaves)
        return leaves

    def _match(self, spec, value, path, leaves):
        kind = spec["kind"]
        if kind == "tensor":
            k = len(leaves)
            name = self._arg_names[k]
            if not isinstance(value, Tensor):
                raise TypeError(f"traced module: input {name!r} ({path}) must be a tensor, "
                                f"got {type(value).__name__}")
            want = self._arg_types[k]
            if tuple(value.shape) != want.shape:
                raise ShapeError(f"traced module: input {name!r} ({path}) has shape "
                                 f"{list(value.shape)} but the trace was recorded for "
                                 f"{list(want.shape)} ({want}); shapes are fixed by the "
                                 "trace: trace again for other shapes")
            if value.dtype is not want.dtype:
                raise DTypeError(f"traced module: input {name!r} ({path}) has dtype "
                                 f"{value.dtype.name} but the trace was recorded for "
                                 f"{want.dtype.name} ({want})")
            leaves.append(value)
        elif kind == "value":
            fixed = spec["value"]
            same = value == fixed or (isinstance(fixed, float) and isinstance(value, float)
                                      and math.isnan(fixed) and math.isnan(value))
            if type(value) is not type(fixed) or not same:
                raise ValueError(f"traced module: {path} was {fixed!r} when traced and the "
                                 f"trace fixed it; got {value!r} (trace again for another "
                                 "value)")
        elif kind in ("tuple", "list"):
            n = len(spec["items"])
            if not isinstance(value, (tuple, list)) or len(value) != n:
                got = f"{type(value).__name__} of {len(value)}" \
                    if isinstance(value, (tuple, list)) else type(value).__name__
                raise TypeError(f"traced module: {path} must be a {kind} of {n} "
                                f"items as when traced, got {got}")
            for k, (s, v) in enumerate(zip(spec["items"], value)):
                self._match(s, v, f"{path}[{k}]", leaves)
        else:
            if not isinstance(value, dict) or set(value) != set(spec["keys"]):
                keys = sorted(map(repr, value)) if isinstance(value, dict) else type(value)
                raise TypeError(f"traced module: {path} must be a dict with the keys "
                                f"{sorted(map(repr, spec['keys']))} as when traced, got "
                                f"{keys}")
            for key, s in zip(spec["keys"], spec["items"]):
                self._match(s, value[key], f"{path}[{key!r}]", leaves)

    # ------------------------------------------------------------------ mode, device
    def train(self, mode: bool = True):
        """Set the `training` flag, as nn.Module.train does, and return self. The graph
        stays the one traced (as PyTorch's traced modules keep theirs): dropout and
        batch norm keep the mode the model had when traced, so asking for the other
        mode warns."""
        if not isinstance(mode, bool):
            raise ValueError("training mode is expected to be boolean")
        if mode != self._traced_training:
            was = "training" if self._traced_training else "eval"
            _warn(f"traced module: {'train()' if mode else 'eval()'} does not change the "
                  f"traced graph, which keeps the {was} mode the model was traced in "
                  f"(dropout, batch norm); trace the model again after "
                  f"model.{'train()' if mode else 'eval()'} for that mode")
        self.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, *args, **kwargs):
        """Move the weights to a device (nn.Module.to's signature). The traced graph
        fixes every dtype, so a dtype conversion is refused."""
        from ..device import device as _device, place
        from ..ir import dtypes as dt
        dtype, dev = kwargs.pop("dtype", None), kwargs.pop("device", None)
        kwargs.pop("non_blocking", None)
        if kwargs:
            raise TypeError(f"to() got unexpected keyword arguments {sorted(kwargs)}")
        for a in args:
            if isinstance(a, (dt.DType, Tensor)):
                dtype = a.dtype if isinstance(a, Tensor) else a
            elif a is not None:
                dev = a
        if dtype is not None:
            raise TypeError("traced module: to(dtype) is not supported: the trace fixed the "
                            "dtype of every value; convert the model, then trace it again")
        if dev is not None:
            place(list(self._weights.values()), _device(dev)._check_usable())
        return self

    def cpu(self):
        return self.to("cpu")

    def cuda(self, device=None):
        return self.to("cuda" if device is None else device)

    # ------------------------------------------------------------------ inspection
    @property
    def code(self) -> str:
        """The forward IR as text (graphc.ir.printer)."""
        return print_graph(self.graph)

    ir = code

    def _named(self, kind):
        return [(n, t) for n, t in self._weights.items() if self._weight_kinds[n] == kind]

    def named_parameters(self, prefix="", recurse=True):
        for name, t in self._named("parameter"):
            yield (f"{prefix}.{name}" if prefix else name), t

    def parameters(self, recurse=True):
        for _, t in self.named_parameters():
            yield t

    def named_buffers(self, prefix="", recurse=True):
        for name, t in self._named("buffer"):
            yield (f"{prefix}.{name}" if prefix else name), t

    def buffers(self, recurse=True):
        for _, t in self.named_buffers():
            yield t

    def named_constants(self):
        """Values the trace captured that are neither parameters nor buffers."""
        return self._named("constant")

    def state_dict(self):
        return {n: t.detach() for n, t in self._weights.items()
                if self._weight_kinds[n] != "constant"}

    def __repr__(self):
        n_ops = sum(1 for n in self.graph.nodes if n.op != "input")
        return (f"TracedModule(original={self.original_name}, inputs={self._arg_names}, "
                f"ops={n_ops}, weights={len(self._weights)})")


# ============================================================================ tracing

def trace(func, example_inputs=None, *, check_trace=True, check_inputs=None,
          check_tolerance=1e-5, strict=True, example_kwarg_inputs=None) -> TracedModule:
    """Run `func` (a module or function) once on the example inputs and record its
    forward IR. See the module docstring; PyTorch's argument names and defaults."""
    args = _as_args(example_inputs)
    if example_kwarg_inputs is not None and not isinstance(example_kwarg_inputs, dict):
        raise TypeError("graphc.jit.trace: example_kwarg_inputs must be a dict of keyword "
                        f"arguments, got {type(example_kwarg_inputs).__name__}")
    kwargs = dict(example_kwarg_inputs or {})
    params = _named_tensors(func, "named_parameters")
    buffers = _named_tensors(func, "named_buffers")

    example_leaves, paths = [], []
    input_spec = flatten((args, kwargs), "inputs", example_leaves, paths, allow_values=True)
    arg_names = _argument_names(func, input_spec, len(args))
    _warn_fixed_values(input_spec["items"][0], "args", _positional_names(func, len(args)))
    _warn_fixed_values(input_spec["items"][1], "kwargs", None)
    runtime.realize(*example_leaves, *[t for _, t in params + buffers])

    fresh = []
    for t, name in zip(example_leaves, arg_names):
        node = Node("input", (), {"name": name}, t._node.type, None)
        node.data = t._node.data
        fresh.append(Tensor._wrap(node, is_leaf=True))
    traced_args, traced_kwargs = unflatten(input_spec, fresh)

    with _ValueReadHook() as hook, runtime.capture():
        result = func(*traced_args, **traced_kwargs)

    outputs = []
    output_spec = flatten(result, "output", outputs, [], allow_values=False)
    container = _has_mutable_container(output_spec)
    if strict and container:
        raise TypeError(f"graphc.jit.trace: the output holds a {container}; a traced "
                        "module returns it with the structure seen while tracing, which is "
                        f"only right if the {container}'s structure never depends on the "
                        "inputs. If it does not, pass strict=False")
    traced = _build(func, fresh, params, buffers, outputs, input_spec, output_spec,
                    arg_names, hook.realized)
    del result, outputs, traced_args, traced_kwargs
    if check_trace:
        _check(func, traced, check_inputs, args, kwargs, check_tolerance)
    return traced


def _as_args(example_inputs) -> tuple:
    """PyTorch's rule: a tensor or a dict is the one positional argument, a tuple is
    the arguments, another sequence is converted to a tuple."""
    if example_inputs is None:
        return ()
    if isinstance(example_inputs, (Tensor, dict)):
        return (example_inputs,)
    if isinstance(example_inputs, tuple):
        return example_inputs
    if isinstance(example_inputs, list):
        return tuple(example_inputs)
    raise TypeError("graphc.jit.trace: example_inputs must be a tensor, a tuple of "
                    f"arguments or a dict, got {type(example_inputs).__name__}")


def _named_tensors(model, method):
    fn = getattr(model, method, None)
    if not callable(fn):
        return []
    out = []
    for name, t in fn():
        if not isinstance(t, Tensor):
            raise TypeError(f"graphc.jit.trace: {method}() gave {name!r} of type "
                            f"{type(t).__name__}, not a tensor")
        out.append((name, t))
    return out


def _positional_names(func, n):
    """Names of the first `n` positional parameters of the traced callable."""
    target = getattr(func, "forward", func)
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return [f"arg{k}" for k in range(n)]
    names = []
    for p in sig.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        elif p.kind is p.VAR_POSITIONAL:
            break
    return [names[k] if k < len(names) else f"arg{k}" for k in range(n)]


def _argument_names(func, input_spec, n_args):
    """One identifier per tensor leaf of the inputs: the parameter name, then keys and
    indices of nested containers (`batch.image`, `xs.0`)."""
    positional = _positional_names(func, n_args)
    names = []

    def walk(spec, base):
        if spec["kind"] == "tensor":
            names.append(base)
        elif spec["kind"] in ("tuple", "list"):
            for k, s in enumerate(spec["items"]):
                walk(s, f"{base}.{k}")
        elif spec["kind"] == "dict":
            for key, s in zip(spec["keys"], spec["items"]):
                walk(s, f"{base}.{key}")

    for name, spec in zip(positional, input_spec["items"][0]["items"]):
        walk(spec, name)
    for key, spec in zip(input_spec["items"][1]["keys"], input_spec["items"][1]["items"]):
        walk(spec, str(key))
    used = set()
    return [_unique_ident(n, used) for n in names]


def _unique_ident(name, used):
    name = re.sub(r"[^A-Za-z0-9_.]", "_", str(name)) or "input"
    if not _IDENT.match(name):
        name = "_" + name
    base, k = name, 1
    while name in used:
        name = f"{base}_{k}"
        k += 1
    used.add(name)
    return name


def _warn_fixed_values(spec, path, names):
    if spec["kind"] == "value":
        if spec["value"] is not None:
            _warn(f"the Python value {path} = {spec['value']!r} is fixed in the trace: "
                  "calling the traced module with another value is an error (pass a tensor "
                  "to make it an input)")
        return
    for k, s in enumerate(spec.get("items", ())):
        if names is not None:
            sub = names[k]
        elif spec["kind"] == "dict":
            sub = f"{path}[{spec['keys'][k]!r}]"
        else:
            sub = f"{path}[{k}]"
        _warn_fixed_values(s, sub, None)


def _warn(message):
    """A TracerWarning attributed to the innermost frame outside graphc (the model)."""
    frame, level = sys._getframe(1), 2
    while frame is not None and \
            os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE_DIR + os.sep):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, TracerWarning, stacklevel=level)


class _ValueReadHook:
    """While tracing, every read of a tensor value as a Python value goes through
    runtime.realize: warn at the model's line. The read also gives the realized nodes
    data (and the runtime drops their recipes); the hook puts the recipes back and
    remembers the nodes, so the extracted graph still computes them from the inputs:
    only the Python value read is fixed, not the tensors around it. Nested traces share
    the outermost hook."""
    active = None

    def __init__(self):
        self.realized: dict[int, Node] = {}   # id -> node realized while tracing

    def __enter__(self):
        outer = _ValueReadHook.active
        if outer is None:
            self.original = runtime.realize
            runtime.realize = self._realize
            _ValueReadHook.active = self
        else:
            self.realized = outer.realized
        return self

    def _realize(self, *tensors):
        _warn("converting a tensor to a Python value during tracing; the trace will not "
              "generalise: the value (and any Python control flow that used it) is fixed "
              "for every input")
        # realize() computes what is asked and every pending live tensor (runtime.py).
        targets = [t._node for t in tensors] + \
            [t._node for t in runtime.pending_tensors()]
        recipes = [(n, n.inputs) for n in targets if n.data is None]
        self.original(*tensors)
        for node, inputs in recipes:
            if node.data is not None:
                node.inputs = inputs
                self.realized[id(node)] = node

    def __exit__(self, *exc):
        if _ValueReadHook.active is self:
            runtime.realize = self.original
            _ValueReadHook.active = None
        return False


_KIND_RANK = {"arg": 0, "parameter": 1, "buffer": 2, "constant": 3}


def _build(func, fresh, params, buffers, outputs, input_spec, output_spec, arg_names,
           realized_while_tracing):
    """Extract the graph behind `outputs` and name and classify its boundary nodes."""
    by_node, by_data = {}, {}
    for k, t in enumerate(fresh):
        by_node.setdefault(id(t._node), ("arg", k))
        by_data.setdefault(id(t._node.data), ("arg", k))
    for kind, named in (("parameter", params), ("buffer", buffers)):
        for name, t in named:
            by_node.setdefault(id(t._node), (kind, name))
            by_data.setdefault(id(t._node.data), (kind, name))

    def boundary(n):
        return n.data is not None and id(n) not in realized_while_tracing

    out_nodes = [t._node for t in outputs]
    found = []   # (rank, discovery position, node, kind, key)
    seen_fresh = {id(t._node) for t in fresh}
    for pos, n in enumerate(toposort(out_nodes, stop=boundary)):
        if not boundary(n) or id(n) in seen_fresh:
            continue
        kind, key = by_node.get(id(n)) or by_data.get(id(n.data)) or ("constant", None)
        found.append((_KIND_RANK[kind], pos, n, kind, key))
    found.sort(key=lambda f: (f[0], f[1]))
    order = [t._node for t in fresh] + [f[2] for f in found]
    graph, boundary_nodes = Graph.from_outputs(out_nodes, boundary, input_order=order)

    rng_roles = {}   # graph input -> (role, ordinal of its rand node)
    for j, rand in enumerate(n for n in graph.nodes if n.op == "rand"):
        for role, i in zip(_RNG_ROLES, rand.inputs):
            if i.op == "input":
                rng_roles.setdefault(id(i), (role, j))
    used = set(arg_names)   # graph input names: unique identifiers, as the text form needs
    sources, weights, weight_kinds = [], {}, {}
    named = {name: t for name, t in params + buffers}
    n_const, fixed_floats = 0, []
    for k, node in enumerate(graph.inputs):
        if k < len(fresh):
            sources.append(("arg", k))
            continue
        _, _, original, kind, key = found[k - len(fresh)]
        if kind == "arg":   # the array of an example input, reached through .detach()
            sources.append(("arg", key))
            node.attrs = {"name": _unique_ident(arg_names[key], used)}
            continue
        if kind == "constant" and id(node) in rng_roles:
            role, j = rng_roles[id(node)]
            sources.append((role, j))
            node.attrs = {"name": _unique_ident(f"rng{j}_{role}", used)}
            continue
        if kind == "constant":
            _warn_captured(original, fixed_floats)
            while f"const_{n_const}" in named or f"const_{n_const}" in weights:
                n_const += 1
            key = f"const_{n_const}"
            n_const += 1
            value = Node("input", (), {"name": "data"}, original.type, original.loc)
            value.data = original.data
            weights[key] = Tensor._wrap(value, is_leaf=True)
        elif key not in weights:
            weights[key] = named[key]
        weight_kinds[key] = kind
        sources.append(("weight", key))
        node.attrs = {"name": _unique_ident(key, used)}
    if fixed_floats:
        _warn("Python floats used during tracing are fixed in the trace: "
              + ", ".join(fixed_floats) + "; pass a value that should change between calls "
              "as a tensor argument")
    graph.lint()
    name = type(func).__name__ if hasattr(func, "forward") else getattr(
        func, "__name__", type(func).__name__)
    return TracedModule(graph, sources, weights, weight_kinds, input_spec, output_spec,
                        arg_names, name, training=getattr(func, "training", True))


def _warn_captured(node, fixed_floats):
    where = f" (at {node.loc})" if node.loc else ""
    if node.op != "input":
        return
    if node.source is not None:
        _warn(f"the runtime scalar {node.data.item()!r}{where} is fixed in the trace: later "
              "changes to it (e.g. by a scheduler) do not reach the traced module")
    elif node.attrs.get("name") == "scalar":
        fixed_floats.append(f"{node.data.item()!r}{where}")


# ============================================================================ checking

def _check(func, traced, check_inputs, args, kwargs, tolerance):
    """Run the model and the trace on each check input set; they must agree."""
    sets = [(args, kwargs)] if check_inputs is None else [
        ((), dict(c)) if kwargs and isinstance(c, dict) else (_as_args(c), {})
        for c in check_inputs]
    random = bool(traced._rand_nodes)
    if random:
        _warn("the trace has random ops (" + ", ".join(sorted({
              n.loc or "rand" for n in traced._rand_nodes})) + "): it draws new numbers on "
              "every call. Did you forget to call .eval() on the model (dropout)?")
    for n_set, (a, kw) in enumerate(sets):
        expected = []
        state = default_generator.get_state()
        flatten(func(*a, **kw), "output", expected, [], allow_values=False)
        # The trace draws from the same stream as the model: start it where the model's
        # call started, so the two are compared on the same random numbers.
        default_generator.set_state(state)
        got = []
        flatten(traced(*a, **kw), "output", got, [], allow_values=False)
        if len(got) != len(expected):
            raise TracingCheckError(f"check input set {n_set}: the model returned "
                                    f"{len(expected)} tensors, the trace {len(got)}")
        runtime.realize(*expected, *got)
        for k, (e, g) in enumerate(zip(expected, got)):
            ev, gv = e._node.data, g._node.data
            if ev.shape != gv.shape or e.dtype is not g.dtype:
                raise TracingCheckError(
                    f"check input set {n_set}: output {k} is {e._node.type} from the model "
                    f"but {g._node.type} from the trace: the trace does not generalise")
            if not np.allclose(gv.astype(np.float64), ev.astype(np.float64),
                               rtol=tolerance, atol=tolerance, equal_nan=True):
                diff = np.max(np.abs(gv.astype(np.float64) - ev.astype(np.float64)))
                if random:
                    # PyTorch warns (does not raise) when a trace with nondeterministic
                    # ops disagrees with the model: random numbers may be the cause.
                    _warn(f"check input set {n_set}: output {k} of the trace differs from "
                          f"the model's (max abs difference {diff:.3g}); the trace has "
                          "random ops, which may explain it")
                    continue
                raise TracingCheckError(
                    f"check input set {n_set}: output {k} of the trace differs from the "
                    f"model's (max abs difference {diff:.3g}): the model's Python control "
                    "flow, a value read during tracing, or random numbers made the trace "
                    "specific to the example inputs; pass check_trace=False to keep it "
                    "anyway")
