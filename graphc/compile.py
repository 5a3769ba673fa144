"""graphc.compile: capture a whole step once, then replay it as one compiled program.

    step = graphc.compile(train_step)      # train_step calls backward() and opt.step()
    for x, y in loader:
        loss = step(x, y)

How it works
------------
The first call for an input signature runs `fn` normally (lazily, realized like any
graphc code): that call creates optimizer state and any other lazily-initialised
tensors, so it is not representative of the steady state. It runs once, so on the CPU
it is realized by the reference interpreter rather than compiled (a tier-0 run: see
`CompiledFunction._warmup_backend`). The second call *traces*:
`fn` runs with a tracer installed that records
  * which pre-existing tensors the step reads (parameters, buffers, optimizer state,
    gradients): their nodes become inputs of the program, bound at replay to the
    tensor's current value;
  * which tensors the step changes (in-place updates, `.grad` assignments): their final
    nodes become outputs of the program, written back into the same tensor objects;
  * runtime scalars with a `source` (learning rates, RNG counters): re-read at replay
    by calling the source, so a scheduler's new lr or a fresh dropout mask never
    recompiles;
  * what `fn` returns.
The graph of all those outputs is compiled once (through the runtime's cache) and every
later call with the same signature replays it: bind inputs, run native code, write back.

Guards: the input signature (shapes, dtypes, non-tensor arguments, grad mode, and the
train/eval mode of a compiled module) selects the program; at replay each recorded state
tensor must still exist with the same shape and dtype, and each tensor whose `.grad` the
step assigns must have had a gradient (or not) as at trace time. A failed guard retraces
and, with GRAPHC_LOG=recompiles, logs why.

Limits (stated, not hidden): reading a value inside the step (`.item()`, `print`) cannot
be replayed and raises; return the tensor instead. Python floats created inside the step
without a source are fixed at their traced value. Tensors returned by a replay carry no
autograd history.
"""
from __future__ import annotations

import weakref

from . import autograd, runtime
from .ir.errors import GraphcError
from .ir.graph import Graph, Node
from .tensor import Tensor


class CompileError(GraphcError, RuntimeError):
    pass


class Tracer:
    """Installed as runtime.tracer while a step is traced; Tensor calls its hooks."""

    def __init__(self):
        self.created: set[int] = set()                  # ids of tensors made during the trace
        self.readers: dict[int, weakref.ref] = {}        # id(node) -> tensor that held it
        self.mutated: dict[int, Tensor] = {}             # id(tensor) -> tensor
        self.grad_set: dict[int, tuple[Tensor, bool]] = {}  # id -> (tensor, had grad before)
        self.old_grads: dict[int, Tensor] = {}  # id(node of a previous .grad) -> its owner

    # hooks -------------------------------------------------------------------------
    def on_create(self, t: Tensor):
        self.created.add(id(t))

    def on_read(self, t: Tensor, node: Node | None = None):
        """`t` is read; `node` (default t._node) stands for its current value."""
        n = t._node if node is None else node
        if n.data is not None and id(t) not in self.created and id(n) not in self.readers:
            self.readers[id(n)] = weakref.ref(t)

    def on_assign(self, t: Tensor):
        self.mutated.setdefault(id(t), t)

    def on_grad(self, t: Tensor):
        if id(t) not in self.grad_set:
            self.grad_set[id(t)] = (t, t._grad is not None)
            if t._grad is not None:
                # The step may read the old gradient (accumulation). At replay it must
                # read whatever `t.grad` is then, not this object.
                self.old_grads[id(t._grad._node)] = t

    def on_realize(self):
        raise CompileError("graphc.compile: the compiled function reads a tensor's value "
                           "(item(), numpy(), print, bool()) while it is traced; a replayed "
                           "program cannot do that. Return the tensor and read it outside.")


def _flatten(obj, out):
    """Tensors of a nested structure, in order; returns a rebuild spec."""
    if isinstance(obj, Tensor):
        out.append(obj)
        return ("t",)
    if isinstance(obj, (list, tuple)):
        return (type(obj), [_flatten(x, out) for x in obj])
    if isinstance(obj, dict):
        return (dict, [(k, _flatten(v, out)) for k, v in obj.items()])
    return ("c", obj)


def _rebuild(spec, tensors):
    it = iter(tensors)

    def go(s):
        if s[0] == "t":
            return next(it)
        if s[0] == "c":
            return s[1]
        if s[0] is dict:
            return {k: go(v) for k, v in s[1]}
        return s[0](go(x) for x in s[1])
    return go(spec)


def _signature_of(tensors, spec, extra):
    return (tuple((tuple(t.shape), t.dtype.short) for t in tensors), repr(spec),
            autograd.is_grad_enabled(), extra)


def _data_node(value, like: Node) -> Node:
    n = Node("input", (), {"name": "data"}, like.type, like.loc)
    n.data = value
    return n


class _Program:
    """One traced step: how to bind its inputs and where its outputs go."""

    def __init__(self, exe, bindings, writes, grad_writes, result_spec, result_types, guards):
        self.exe = exe
        self.bindings = bindings          # callables returning each input array
        self.writes = writes              # (weakref tensor, output index)
        self.grad_writes = grad_writes    # (weakref tensor, output index or None)
        self.result_spec = result_spec
        # the traced types: a value's array does not say its graph dtype (bfloat16 is
        # held as float32)
        self.result_types = result_types
        self.guards = guards              # callables returning a failure reason or None

    def check(self):
        for g in self.guards:
            reason = g()
            if reason:
                return reason
        return None

    def run(self, arg_arrays):
        inputs = [b(arg_arrays) for b in self.bindings]
        return self._finish(self.exe(inputs))

    def _finish(self, outs):
        for ref, k in self.writes:
            t = ref()
            if t is None:
                continue
            leaf_rg = t._is_leaf and t._node.requires_grad
            node = _data_node(outs[k], t._node)
            if leaf_rg:
                node.requires_grad = True
                node.leaf = weakref.ref(t)
            t._node = node
        for ref, k in self.grad_writes:
            t = ref()
            if t is None:
                continue
            if k is None:
                t._grad = None
            elif t._grad is not None:
                t._grad._node = _data_node(outs[k], t._grad._node)
            else:   # a gradient has its parameter's type
                t._grad = Tensor._wrap(_data_node(outs[k], Node("input", (), {}, t._node.type)),
                                       is_leaf=True)
        results = [Tensor._wrap(_data_node(outs[k], Node("input", (), {}, ty)), is_leaf=True)
                   for k, ty in enumerate(self.result_types)]
        return _rebuild(self.result_spec, results)


class CompiledFunction:
    def __init__(self, fn, backend=None):
        self.fn = fn
        self.backend = backend
        self._programs: dict = {}
        self._seen: set = set()
        self.__wrapped__ = fn
        self.stats = {"traces": 0, "replays": 0, "eager_calls": 0}

    def _mode_key(self):
        modules = getattr(self.fn, "modules", None)
        if callable(modules):
            return tuple(bool(getattr(m, "training", True)) for m in modules())
        return None

    def __call__(self, *args, **kwargs):
        arg_tensors: list[Tensor] = []
        spec = _flatten((args, kwargs), arg_tensors)
        key = _signature_of(arg_tensors, spec, self._mode_key())
        prog = self._programs.get(key)
        if prog is not None:
            reason = prog.check()
            if reason is None:
                runtime.realize(*arg_tensors)
                self.stats["replays"] += 1
                return prog.run([t._node.data for t in arg_tensors])
            runtime.log_recompile(f"graphc.compile: retracing {self._name()}: {reason}")
            del self._programs[key]
        elif key not in self._seen:
            # First call for this signature: run eagerly so lazily created state
            # (optimizer moments, step counters) exists before the step is captured.
            self._seen.add(key)
            self.stats["eager_calls"] += 1
            with runtime.realizing_on(self._warmup_backend()):
                out = self.fn(*args, **kwargs)
                runtime.realize_all()
            return out
        return self._trace(key, args, kwargs, arg_tensors, spec)

    def _warmup_backend(self):
        """The backend of the warm-up call. Its graph (first optimizer step: state
        created, no old gradients) differs from the steady-state step and runs once, so
        on the CPU the reference interpreter runs it: compiling it with LLVM would cost
        as much as compiling the step itself (an LSTM over 100 steps: 6 s against 0.7 s
        interpreted). Other backends (Triton: values live on the GPU) run it as usual."""
        from . import backends
        name = self.backend or backends.default_backend_name()
        return "interp" if name == "llvm" else None

    def _name(self):
        return getattr(self.fn, "__qualname__", type(self.fn).__name__)

    def _trace(self, key, args, kwargs, arg_tensors, spec):
        runtime.realize_all()
        arg_nodes = {id(t._node): k for k, t in enumerate(arg_tensors)}
        tracer = Tracer()
        runtime.tracer = tracer
        try:
            result = self.fn(*args, **kwargs)
        finally:
            runtime.tracer = None
        self.stats["traces"] += 1
        res_tensors: list[Tensor] = []
        result_spec = _flatten(result, res_tensors)
        outputs = [t._node for t in res_tensors]
        writes, grad_writes = [], []
        for t in tracer.mutated.values():
            if id(t) in tracer.created:
                continue
            writes.append((weakref.ref(t), len(outputs)))
            outputs.append(t._node)
        for t, _had in tracer.grad_set.values():
            if t._grad is None:
                grad_writes.append((weakref.ref(t), None))
            else:
                grad_writes.append((weakref.ref(t), len(outputs)))
                outputs.append(t._grad._node)
        graph, boundary = Graph.from_outputs(outputs, boundary=lambda n: n.data is not None)
        bindings, guards = [], []
        for n in boundary:
            bindings.append(self._binding_for(n, arg_nodes, tracer, guards))
        for t, had in tracer.grad_set.values():
            ref = weakref.ref(t)
            guards.append(lambda ref=ref, had=had: None if ref() is not None and
                          (ref()._grad is not None) == had else
                          "a parameter's .grad changed between None and a tensor")
        exe = runtime.compiled_for(graph, self.backend)
        prog = _Program(exe, bindings, writes, grad_writes, result_spec,
                        [t._node.type for t in res_tensors], guards)
        self._programs[key] = prog
        return prog._finish(exe([n.data for n in boundary]))

    @staticmethod
    def _binding_for(n: Node, arg_nodes, tracer: Tracer, guards):
        if id(n) in arg_nodes:
            k = arg_nodes[id(n)]
            return lambda args, k=k: args[k]
        if n.source is not None:
            src, npd = n.source, n.type.dtype.np
            import numpy as np
            return lambda args, src=src, npd=npd: np.asarray(src(), dtype=npd)
        if id(n) in tracer.old_grads:
            owner = weakref.ref(tracer.old_grads[id(n)])
            return lambda args, owner=owner: _grad_value(owner())
        ref = tracer.readers.get(id(n))
        if ref is not None and ref() is not None:
            ty = n.type

            def state(args, ref=ref):
                t = ref()
                if t._node.data is None:
                    runtime.realize(t)
                return t._node.data

            guards.append(lambda ref=ref, ty=ty: None if ref() is not None and
                          ref()._node.type == ty else
                          "a tensor the step reads was freed or changed shape/dtype")
            return state
        value = n.data   # a value made outside any live tensor: fixed in the program
        return lambda args, value=value: value


def _grad_value(t):
    g = t._grad
    if g._node.data is None:
        runtime.realize(g)
    return g._node.data


def compile(fn=None, *, backend=None, fullgraph=True, dynamic=False, mode=None):
    """Compile `fn` (a function or module); see the module docstring."""
    if fn is None:
        return lambda f: compile(f, backend=backend)
    return CompiledFunction(fn, backend)

