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
Where the backend can (LLVM), a state's new value is stored over its old array
(passes/donation.py): the update runs in place, as `optimizer.step()` does in PyTorch,
and the write-back has nothing to do. That needs an array nobody else can observe:
`_donatable` binds the tensor's own array when only its data node refers to it (no
other tensor, pending lazy value or numpy view), else a copy, which the tensor then
keeps.

Guards: the input signature (shapes, dtypes, non-tensor arguments, grad mode, and the
train/eval mode of a compiled module) selects the program, and so does the train/eval
mode of every module the step calls (one program per mode, see `_ModuleModes`, which
also replays `train()`/`eval()` calls made inside the step); at replay each recorded
state tensor must still exist with the same shape and dtype, and each tensor whose
`.grad` the step assigns must have had a gradient (or not) as at trace time, each tensor
it reads must keep its requires_grad, each optimizer it steps its param groups
(`Optimizer._structure`), and each module it calls its plain attributes (Dropout.p,
BatchNorm.momentum: constants of the program; `Module._config_version` counts their
assignments). A failed guard runs the step eagerly once (state it creates
lazily must exist before a capture), traces again at the next call and, with
GRAPHC_LOG=recompiles, logs why.

Limits (stated, not hidden): reading a value inside the step (`.item()`, `print`) cannot
be replayed and raises; return the tensor instead. Python floats created inside the step
without a source are fixed at their traced value. Tensors returned by a replay carry no
autograd history, so a function whose results require grad and that does not call
`backward()` itself (`graphc.compile(model)` with the backward pass outside) is not
replayed while grad mode is on: it runs lazily, with a warning (under `no_grad` it
replays). A guard that fails keeps its program (up to 8 per signature), so states that
alternate (a `.grad` that is None after `zero_grad()` and set after one micro-batch of
gradient accumulation) each get a program; `requires_grad_` calls inside the step are
guarded by each flag's value when the step began, and flags it leaves changed are set
again after each replay.
"""
from __future__ import annotations

import contextlib
import hashlib
import sys
import warnings
import weakref

import numpy as np

from . import autograd, runtime
from .ir import dtypes
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
        self.optimizers: dict[int, tuple] = {}  # id -> (weakref optimizer, its _structure())
        # id -> (tensor, requires_grad when the step began) of tensors whose flag the step
        # changes (a GAN's generator step freezes the discriminator, then unfreezes it)
        self.requires_grad_at_entry: dict[int, tuple[Tensor, bool]] = {}
        # Every object whose id() keys a table above, held until the trace is bound: an
        # id is unique only among live objects, and a node dropped mid-trace (the old
        # .grad that zero_grad() discards) would hand its id to a node created later,
        # which the binding would then take for it (a wrong input: a crash on its
        # shape, or wrong values where the shapes agree).
        self._keep: list = []

    # hooks -------------------------------------------------------------------------
    def on_create(self, t: Tensor):
        self.created.add(id(t))
        self._keep.append(t)

    def on_read(self, t: Tensor, node: Node | None = None):
        """`t` is read; `node` (default t._node) stands for its current value."""
        n = t._node if node is None else node
        if n.data is not None and id(t) not in self.created and id(n) not in self.readers:
            self.readers[id(n)] = weakref.ref(t)
            self._keep.append(n)

    def on_assign(self, t: Tensor):
        self.mutated.setdefault(id(t), t)

    def on_requires_grad(self, t: Tensor):
        if id(t) not in self.requires_grad_at_entry and id(t) not in self.created:
            self.requires_grad_at_entry[id(t)] = (t, t.requires_grad)

    def on_grad(self, t: Tensor):
        if id(t) not in self.grad_set:
            self.grad_set[id(t)] = (t, t._grad is not None)
            if t._grad is not None:
                # The step may read the old gradient (accumulation). At replay it must
                # read whatever `t.grad` is then, not this object.
                self.old_grads[id(t._grad._node)] = t
                self._keep.append(t._grad._node)

    def on_optimizer_step(self, optimizer):
        """`optimizer.step()` recorded an update: the program is valid while the
        optimizer's structure (its parameters and the options that shape the update)
        stays as it is now; add_param_group or amsgrad=True must retrace."""
        self.optimizers.setdefault(id(optimizer),
                                   (weakref.ref(optimizer), optimizer._structure()))

    def on_realize(self):
        raise CompileError("graphc.compile: the compiled function reads a tensor's value "
                           "(item(), numpy(), print, bool()) while it is traced; a replayed "
                           "program cannot do that. Return the tensor and read it outside.")


def _flatten(obj, out):
    """Tensors of a nested structure, in order; returns a rebuild spec."""
    if isinstance(obj, Tensor):
        out.append(obj)
        return ("t",)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        # a namedtuple's constructor takes its fields as separate arguments
        return ("namedtuple", type(obj), [_flatten(x, out) for x in obj])
    if isinstance(obj, (list, tuple)):
        return (type(obj), [_flatten(x, out) for x in obj])
    if isinstance(obj, dict):
        return (dict, [(k, _flatten(v, out)) for k, v in obj.items()])
    return ("c", obj)


def _key_of(spec):
    """The signature key of a flattened structure. Constants are keyed by repr(), except
    numpy arrays: their repr elides the middle of large arrays, so two different arrays
    could share a key and the second would replay a program that baked in the first's
    values. They are keyed by shape, dtype and a digest of their bytes."""
    if spec[0] == "c":
        v = spec[1]
        if isinstance(v, np.ndarray):
            data = np.ascontiguousarray(v).reshape(-1)
            payload = repr(data.tolist()).encode() if data.dtype.hasobject else \
                data.view(np.uint8)
            digest = hashlib.blake2b(payload, digest_size=16).hexdigest()
            return ("ndarray", v.shape, v.dtype.str, digest)
        return repr(v)
    if spec[0] == "t":
        return "t"
    if spec[0] == "namedtuple":
        return ("namedtuple", spec[1], tuple(_key_of(x) for x in spec[2]))
    if spec[0] is dict:
        return ("dict", tuple((repr(k), _key_of(v)) for k, v in spec[1]))
    return (spec[0], tuple(_key_of(x) for x in spec[1]))    # list or tuple (a type)


def _rebuild(spec, tensors):
    if spec[0] == "t":          # a step returning one tensor (its loss): every replay
        return tensors[0]
    it = iter(tensors)

    def go(s):
        if s[0] == "t":
            return next(it)
        if s[0] == "c":
            return s[1]
        if s[0] == "namedtuple":
            return s[1](*[go(x) for x in s[2]])
        if s[0] is dict:
            return {k: go(v) for k, v in s[1]}
        return s[0](go(x) for x in s[1])
    return go(spec)


def _signature_of(tensors, spec, extra):
    # the default float dtype (set_default_dtype) decides the dtype of every float the
    # step creates, so it selects the program too
    # (a TensorType is its shape and dtype, hashable: computed before every replay)
    return (tuple(t._node.type for t in tensors), _key_of(spec),
            autograd.is_grad_enabled(), dtypes.DEFAULT_FLOAT.short, extra)


def _data_node(value, ty, loc=None) -> Node:
    n = Node("input", (), {"name": "data"}, ty, loc)
    n.data = value
    return n


def _refcounts(node):
    """References to a data node and to its array, counted from here: the caller must
    hold neither in a variable of its own (as `_donatable` does not)."""
    a = node.data
    return sys.getrefcount(node), sys.getrefcount(a)


def _donatable(t):
    """Tensor `t`'s array if a kernel may overwrite it: it owns its memory, is
    writable, nothing but `t`'s data node refers to it, and nothing but `t` to that
    node (the counts are a probe's, held the same way, so they do not depend on the
    Python version); else a copy of it, which the write-back makes `t`'s own."""
    exclusive = _refcounts(t._node) == _EXCLUSIVE_REFCOUNTS
    a = t._node.data
    if exclusive and type(a) is np.ndarray and a.base is None and a.flags.writeable:
        return a
    return np.array(a, order="C")


class _Holder:
    """Holds a data node as a Tensor does (in `_node`), for `_EXCLUSIVE_REFCOUNTS`."""
    __slots__ = ("_node",)


def _probe_refcounts():
    holder = _Holder()
    holder._node = _data_node(np.zeros(2), None)
    return _refcounts(holder._node)


_EXCLUSIVE_REFCOUNTS = _probe_refcounts()


def _config_version(module) -> int:
    """How often a module's plain attributes were assigned (`Module.__setattr__` keeps
    the count in the instance dict; read there, a module that has none does not go
    through Module.__getattr__'s failing lookup on every replay)."""
    return module.__dict__.get("_config_version", 0)


class _ModuleModes:
    """The train/eval modes a traced step depends on, recorded while it is traced.

    A module's `training` flag picks the program's structure (dropout, batch-norm
    statistics) but is a Python attribute, invisible to the graph. Every module called
    during the trace before the step itself switched it (`train()`/`eval()` inside the
    step) is recorded with the flag it had; at a later call those flags must be the
    same for the program to be valid (`mismatch`). A module the step switches before
    calling it has its mode fixed by the step. Switches made inside the step are Python
    side effects a replay would lose, so their final flags are re-applied after each
    replay (`replay_switches`)."""

    def __init__(self):
        self.called: dict[int, tuple] = {}    # id -> (weakref module, flag when called)
        self.switched: dict[int, tuple] = {}  # id -> (weakref module, final flag)
        self.expected: list[tuple] = []       # (weakref module, flag, config version)

    @contextlib.contextmanager
    def recording(self):
        """Record module calls and mode switches inside the block. graphc.nn has no
        global module hook, so Module.__call__ and Module.train are wrapped at class
        level for the duration of the trace (the trace runs in the calling thread)."""
        try:
            from .nn.module import Module
        except ImportError:   # graphc.nn unavailable: no modules to track
            yield
            return
        original_call, original_train = Module.__call__, Module.train
        called, switched = self.called, self.switched

        def call(module, *args, **kwargs):
            if id(module) not in switched:
                called.setdefault(id(module), (weakref.ref(module), module.training))
            return original_call(module, *args, **kwargs)

        def train(module, mode=True):
            out = original_train(module, mode)
            for m in module.modules():
                switched[id(m)] = (weakref.ref(m), None)
            return out

        Module.__call__, Module.train = call, train
        try:
            yield
        finally:
            Module.__call__, Module.train = original_call, original_train
            for k, (ref, _) in list(switched.items()):
                m = ref()
                if m is None:
                    del switched[k]
                else:
                    switched[k] = (ref, m.training)
            # (module, flag when called, its plain attributes' version as the trace
            # leaves them): what `mismatch` compares, one list for every replay
            self.expected = [(ref, flag, _config_version(ref()))
                             for ref, flag in called.values() if ref() is not None]

    def mismatch(self):
        """Why the program does not fit the current modes, or None."""
        # `expected` holds only modules called before the step switched them (if it did)
        for ref, flag, config in self.expected:
            m = ref()
            if m is None:
                continue
            if m.training != flag:
                return (f"{type(m).__name__} is in {'training' if m.training else 'eval'} "
                        f"mode, the step was traced in {'training' if flag else 'eval'} "
                        "mode")
            if _config_version(m) != config:
                return (f"{type(m).__name__}.{getattr(m, '_config_changed', '?')} (a "
                        "plain attribute the step read as a constant) was assigned")
        return None

    def replay_switches(self):
        for ref, flag in self.switched.values():
            m = ref()
            if m is not None:
                object.__setattr__(m, "training", flag)


class _Guards:
    """What a replay checks first (module docstring, "Guards"), kept as plain lists and
    checked in one method: this runs before every replay, where a closure per check
    cost more than the checks. Each failed check names its reason."""

    def __init__(self):
        # (weakref tensor, traced type, requires_grad when traced or None: not checked)
        self.states: list[tuple] = []
        self.flags: list[tuple] = []       # (weakref tensor, requires_grad at entry)
        self.optimizers: list[tuple] = []  # (weakref optimizer, its _structure())
        self.grads: list[tuple] = []       # (weakref tensor, whether it had a .grad)

    def check(self):
        for ref, ty, flag in self.states:
            t = ref()
            if t is None or (t._node.type is not ty and t._node.type != ty):
                return "a tensor the step reads was freed or changed shape/dtype"
            if flag is not None and t._node.requires_grad != flag:
                return "a tensor the step reads changed requires_grad"
        for ref, flag in self.flags:
            t = ref()
            if t is not None and t._node.requires_grad != flag:
                return "a tensor the step reads changed requires_grad"
        for ref, structure in self.optimizers:
            opt = ref()
            if opt is not None and opt._structure() != structure:
                return (f"{type(opt).__name__}: its param groups changed (parameters, or "
                        "an option that changes the update's structure)")
        for ref, had in self.grads:
            t = ref()
            if t is None or (t._grad is not None) != had:
                return "a parameter's .grad changed between None and a tensor"
        return None


class _Program:
    """One traced step: how to bind its inputs and where its outputs go."""

    def __init__(self, exe, bindings, writes, grad_writes, result_spec, result_types, guards,
                 modes=None, flags=()):
        self.modes = modes if modes is not None else _ModuleModes()
        # (weakref tensor, requires_grad): flags the step leaves changed, re-applied after
        # each replay like the module modes (a replay runs no Python)
        self.flags = flags
        self.exe = exe
        self.bindings = bindings          # callables returning each input array
        self.writes = writes              # (weakref tensor, output index)
        self.grad_writes = grad_writes    # (weakref tensor, output index or None)
        self.result_spec = result_spec
        # the traced types: a value's array does not say its graph dtype (bfloat16 is
        # held as float32)
        self.result_types = result_types
        self.guards = guards              # _Guards

    def check(self):
        return self.guards.check()

    def run(self, arg_arrays):
        inputs = [b(arg_arrays) for b in self.bindings]
        return self._finish(self.exe(inputs))

    def _finish(self, outs):
        self.modes.replay_switches()
        for ref, flag in self.flags:
            t = ref()
            if t is not None and t.requires_grad != flag:
                t.requires_grad_(flag)
        for ref, k in self.writes:
            t = ref()
            if t is None:
                continue
            old = t._node
            if outs[k] is old.data:    # updated in place (a donated input)
                continue
            node = _data_node(outs[k], old.type, old.loc)
            if t._is_leaf and old.requires_grad:
                node.requires_grad = True
                node.leaf = weakref.ref(t)
            t._node = node
            if t._views:    # views of it (p.detach()) see the update, as after eager steps
                t._refresh_views()
        for ref, k in self.grad_writes:
            t = ref()
            if t is None:
                continue
            if k is None:
                t._grad = None
            elif t._grad is not None:
                old = t._grad._node
                t._grad._node = _data_node(outs[k], old.type, old.loc)
            else:   # a gradient has its parameter's type
                t._grad = Tensor._wrap(_data_node(outs[k], t._node.type), is_leaf=True)
        results = [Tensor._wrap(_data_node(outs[k], ty), is_leaf=True)
                   for k, ty in enumerate(self.result_types)]
        return _rebuild(self.result_spec, results)


class CompiledFunction:
    def __init__(self, fn, backend=None):
        self.fn = fn
        self.backend = backend
        self._programs: dict = {}
        self._seen: set = set()
        self._retrace: set = set()   # keys whose guard failed and that ran eagerly since
        # keys whose traced results need autograd (see _needs_autograd): they run lazily
        self._lazy: set = set()
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
        # One program per combination of module modes seen for this signature, so a
        # model switched between train() and eval() traces each mode once.
        if key in self._lazy:
            self.stats["eager_calls"] += 1
            return self.fn(*args, **kwargs)
        progs = self._programs.get(key)
        reason = None
        if progs:
            # A guard that fails (a .grad that is None in one call of a gradient
            # accumulation and not in the next) keeps its program: the state may come
            # back, and each state gets a program of its own.
            for prog in progs:
                reason = prog.modes.mismatch() or prog.check()
                if reason is None:
                    runtime.realize(*arg_tensors)
                    self.stats["replays"] += 1
                    return prog.run([t._node.data for t in arg_tensors])
            if key not in self._retrace:   # logged once: the eager call, then the trace
                runtime.log_recompile(f"graphc.compile: retracing {self._name()}: {reason}")
        # The first call for a signature, and the first call after a failed guard, run
        # eagerly so that state the step creates lazily (optimizer moments and step
        # counters, e.g. of a param group just added) exists before the step is
        # captured: state created during a trace would be frozen at its initial value.
        if key not in self._seen or (reason is not None and key not in self._retrace):
            self._seen.add(key)
            if reason is not None:
                self._retrace.add(key)   # the next call that fits no program traces
            self.stats["eager_calls"] += 1
            with runtime.realizing_on(self._warmup_backend()):
                out = self.fn(*args, **kwargs)
                runtime.realize_all()
            return out
        self._retrace.discard(key)
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
        modes = _ModuleModes()
        runtime.tracer = tracer
        try:
            with modes.recording():
                result = self.fn(*args, **kwargs)
        finally:
            runtime.tracer = None
        self.stats["traces"] += 1
        res_tensors: list[Tensor] = []
        result_spec = _flatten(result, res_tensors)
        if _needs_autograd(res_tensors, tracer):
            self._lazy.add(key)
            self._programs.pop(key, None)
            message = (f"graphc.compile: {self._name()} returns tensors that require grad and "
                       f"does not call backward() itself, so a replay (which has no autograd "
                       f"history) would cut the gradient of whatever the caller computes from "
                       f"them; it runs lazily instead, op by op. Compile the whole training "
                       f"step (forward, backward() and optimizer.step()) to replay it.")
            runtime.log_recompile(message)
            warnings.warn(message, stacklevel=3)
            return result
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
        bindings, state_input, guards = [], {}, _Guards()
        for i, n in enumerate(boundary):
            binding, state = self._binding_for(n, arg_nodes, tracer, guards)
            bindings.append(binding)
            if state is not None:
                state_input[id(state)] = i
        guards.optimizers += tracer.optimizers.values()
        guards.grads += [(weakref.ref(t), had) for t, had in tracer.grad_set.values()]
        guards.flags += [(weakref.ref(t), entry)
                         for t, entry in tracer.requires_grad_at_entry.values()]
        flags = [(weakref.ref(t), t.requires_grad)
                 for t, entry in tracer.requires_grad_at_entry.values()
                 if t.requires_grad != entry]
        # a state written back may be updated in place (module docstring)
        donate = [(state_input[id(ref())], k) for ref, k in writes
                  if id(ref()) in state_input]
        exe = runtime.compiled_for(graph, self.backend, donate=donate)
        inputs = [n.data for n in boundary]
        for i in exe.donated:
            bindings[i] = _state_binding(tracer.readers[id(boundary[i])], donated=True)
            inputs[i] = np.array(inputs[i], order="C")   # the trace's nodes still hold it
        prog = _Program(exe, bindings, writes, grad_writes, result_spec,
                        [t._node.type for t in res_tensors], guards, modes, flags)
        progs = self._programs.setdefault(key, [])
        progs.append(prog)
        del progs[:-_MAX_PROGRAMS_PER_SIGNATURE]
        return prog._finish(exe(inputs))

    @staticmethod
    def _binding_for(n: Node, arg_nodes, tracer: Tracer, guards):
        """(how to bind input `n` at replay, the tensor whose state it reads or None)."""
        if id(n) in arg_nodes:
            k = arg_nodes[id(n)]
            return (lambda args, k=k: args[k]), None
        if n.source is not None:
            src, npd = n.source, n.type.dtype.np
            return (lambda args, src=src, npd=npd: np.asarray(src(), dtype=npd)), None
        if id(n) in tracer.old_grads:
            owner = weakref.ref(tracer.old_grads[id(n)])
            return (lambda args, owner=owner: _grad_value(owner())), None
        ref = tracer.readers.get(id(n))
        if ref is not None and ref() is not None:
            ty, rg = n.type, n.requires_grad
            if id(ref()) in tracer.requires_grad_at_entry:
                rg = None   # its flag at entry is guarded in _trace
            # requires_grad decides which gradients backward() computes (unfreezing a
            # layer must not replay the program that kept it frozen)
            guards.states.append((ref, ty, rg))
            return _state_binding(ref), ref()
        value = n.data   # a value made outside any live tensor: fixed in the program
        return (lambda args, value=value: value), None


_MAX_PROGRAMS_PER_SIGNATURE = 8


def _state_binding(ref, donated=False):
    """Binds the current value of the tensor `ref` names: its own array, or for an
    input the program may overwrite (`donated`), one nobody else sees (`_donatable`)."""
    def state(args, ref=ref):
        t = ref()
        if t._node.data is None:
            runtime.realize(t)
        return _donatable(t) if donated else t._node.data
    return state


def _needs_autograd(results, tracer) -> bool:
    """Whether the caller will differentiate through the step's results: a result
    requires grad and the step computed no gradient itself (graphc.compile(model) with
    backward() outside). A replay returns values without history, so such a step must
    run lazily. (A training step returns its loss, which requires grad too, but it has
    called backward() already.)"""
    return autograd.is_grad_enabled() and not tracer.grad_set and \
        any(t.requires_grad for t in results)


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

