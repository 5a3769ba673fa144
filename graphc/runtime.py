"""Lazy realization: turning pending tensors into values.

Tensor ops only record nodes. When a value is read (`numpy()`, `item()`, `repr`, ...),
`realize` gathers the requested tensor together with every other live tensor whose
value is still pending (a parameter updated in place under `no_grad`, a gradient just
computed by `backward()`), extracts one graph for all of them (already-realized values
become its inputs), and runs it. Realizing the pending updates with what is read is
what keeps a training loop's graph from growing step after step.

Compiled programs are cached by the graph's structure (ops, attrs, types, edges) and
input signature. Python floats a user passes to ops are runtime inputs of that graph,
so a changing learning rate hits the cache. With `GRAPHC_LOG=recompiles`, each compile
is logged to stderr with its reason.
"""
from __future__ import annotations

import contextlib
import os
import sys
import threading
import time
import weakref

import numpy as np

from .backends import get_backend
from .ir.graph import Graph

# Tensors whose node had no value when they were made: id -> weak reference. A WeakSet
# would compare tensors with ==, which for tensors builds an op; a WeakValueDictionary
# runs two Python-level calls per tensor made and one per tensor freed, an eighth of the
# time it took to record a transformer's training step. Plain references cost nothing
# when the tensor dies; the entries of dead or realized tensors are dropped when
# `pending_tensors` reads the table, and by `track` once the table doubles in size (a
# loop that makes tensors and never reads one).
_pending: "dict[int, weakref.ref]" = {}
_prune_above = 1 << 16
_cache: dict = {}
_shapeless_keys: dict = {}
stats = {"compiles": 0, "cache_hits": 0, "realizations": 0, "data_movement_reads": 0}
tracer = None   # a graphc.compile Tracer while a step is being captured
_captures = 0   # graphc.jit traces in progress (see capturing())
_realize_backend = None   # overrides the default backend of lazy realization (run_once_on)


def track(tensor):
    if tensor._node.data is None:
        _pending[id(tensor)] = weakref.ref(tensor)
        if len(_pending) > _prune_above:
            _prune()


def _prune():
    global _prune_above
    pending_tensors()
    _prune_above = max(1 << 16, 2 * len(_pending))


def pending_tensors() -> list:
    """The live tensors whose value is still pending."""
    live = []
    # list(): another thread (a DataLoader prefetcher) may add tensors meanwhile
    for k, ref in list(_pending.items()):
        t = ref()
        if t is not None and t._node.data is None:
            live.append(t)
        elif _pending.get(k) is ref:
            del _pending[k]
    return live


def _log_enabled(topic):
    return topic in os.environ.get("GRAPHC_LOG", "").split(",")


def _shapeless(key):
    """Ops and edges only: attrs hold shapes too (expand, reshape), so keeping them would
    make every shape change look like a new graph."""
    return tuple((k[0], k[4]) if isinstance(k, tuple) and len(k) == 5 else k for k in key)


def _recompile_reason(graph, key, previous):
    """Why `graph` (structure key `key`) missed the cache: new, or the first node that
    differs from `previous`, the key of the last graph with the same ops and edges."""
    if previous is None:
        return f"new graph ({len(graph.nodes)} nodes, {len(graph.inputs)} inputs)"
    for k, (old, new) in enumerate(zip(previous, key)):
        if old != new and k < len(graph.nodes):
            n = graph.nodes[k]
            what = "input shapes or dtypes changed" if n.op == "input" else \
                "shapes, dtypes or attributes changed"
            at = f" at {n.loc}" if n.loc else ""
            return (f"{what}: node {k} ({n.op}{at}) was {_describe(old)}, "
                    f"now {_describe(new)}")
    return "outputs changed"


def _describe(item):
    op, attrs, shape, dtype, _ = item
    text = f"{dtype}[{','.join(map(str, shape))}]"
    return text + (f" {dict(attrs)}" if attrs and op != "input" else "")


def capturing() -> bool:
    """True while a trace records ops (graphc.compile, graphc.jit.trace): code that could
    read a computed value early (basic indexing of a computed tensor) must build the op
    instead, or the trace would keep the example's value for every later input."""
    return tracer is not None or _captures > 0


@contextlib.contextmanager
def capture():
    """Mark a graphc.jit trace in progress (graphc.compile installs `tracer`)."""
    global _captures
    _captures += 1
    try:
        yield
    finally:
        _captures -= 1


def compiled_for(graph, backend_name=None, structure_key=None, donate=()):
    """The cached executable for `graph`, compiling it on a miss.

    `graph` may be a callable that builds the graph: with the `structure_key` the
    caller already has, a cache hit then never builds it. `donate`: (input index,
    output index) pairs whose output may be stored over the input's array, for a
    caller that binds arrays it owns there (graphc.compile); a backend that can
    (`DONATES_INPUTS`) accepts the legal ones, and the executable's `donated` says
    which (an empty dict elsewhere)."""
    from . import backends
    backend_name = backend_name or backends.default_backend_name()
    if structure_key is None:
        structure_key = graph.structure_key()
    donate = tuple(donate) if getattr(get_backend(backend_name), "DONATES_INPUTS", False) \
        else ()
    key = (backend_name, structure_key) + ((donate,) if donate else ())
    exe = _cache.get(key)
    if exe is not None:
        stats["cache_hits"] += 1
        return exe
    if not isinstance(graph, Graph):
        graph = graph()
    if _log_enabled("recompiles"):
        sk = (backend_name, _shapeless(key[1]))
        reason = _recompile_reason(graph, key[1], _shapeless_keys.get(sk))
        log_recompile(f"graphc: compiling for {backend_name}: {reason}")
        _shapeless_keys[sk] = key[1]
    t0 = time.perf_counter()
    from .passes.pipeline import optimize  # keeps inputs and outputs, in order
    graph = optimize(graph)
    if donate:
        exe = _on_deep_stack(get_backend(backend_name).compile, graph, donate)
    else:
        exe = _on_deep_stack(get_backend(backend_name).compile, graph)
        exe.donated = {}
    exe.compile_seconds = time.perf_counter() - t0
    stats["compiles"] += 1
    _cache[key] = exe
    return exe


_DEEP_STACK_BYTES = 512 << 20    # virtual: only the pages a compile touches are committed
_DEEP_RECURSION = 100_000


def _on_deep_stack(fn, *args):
    """Run a backend compile on a thread with a large stack and recursion limit.

    Fused kernels are expression trees, and some graphs (the backward of a convolution
    over a 28x28 image, say) nest a few hundred selects deep; hashing and printing
    them recurses through C code, which the default 1000-frame limit and the main
    thread's 8 MB stack cannot hold. A dedicated thread can have both."""
    result, error = [], []

    def work():
        try:
            result.append(fn(*args))
        except BaseException as e:  # re-raised in the caller's thread
            error.append(e)

    old_limit, old_size = sys.getrecursionlimit(), threading.stack_size()
    threading.stack_size(_DEEP_STACK_BYTES)
    try:
        worker = threading.Thread(target=work, name="graphc-compile")
        sys.setrecursionlimit(max(old_limit, _DEEP_RECURSION))
        worker.start()
    finally:
        threading.stack_size(old_size)
    worker.join()
    sys.setrecursionlimit(old_limit)
    if error:
        raise error[0]
    return result[0]


def log_recompile(message):
    if _log_enabled("recompiles"):
        print(message, file=sys.stderr)


def realize_all():
    """Realize every pending live tensor. One whose value fails to compute (a bad index,
    a failed value check) stays pending: its error is raised to whoever reads it, not
    to this call (graphc.compile's, which only wants the step's state concrete)."""
    pending = pending_tensors()
    if not pending:
        return
    try:
        realize(*pending)
    except Exception:
        for t in pending:
            try:
                realize(t)
            except Exception:   # noqa: BLE001 (kept pending; reading it raises)
                pass


def _creation_order(node):
    return node.id


def realize(*tensors):
    """Compute the values of `tensors` and of every other pending live tensor."""
    wanted = [t._node for t in tensors if t._node.data is None]
    if not wanted:
        return
    if tracer is not None:
        tracer.on_realize()
    # in creation order: the graph's outputs, and so its cache key, must not depend on
    # which ids the allocator happened to reuse for this step's tensors
    others = sorted((t._node for t in pending_tensors()), key=_creation_order)
    seen, targets = set(), []
    for n in wanted + others:
        if id(n) not in seen:
            seen.add(id(n))
            targets.append(n)
    try:
        targets, values = _run(targets)
    except Exception:
        if len(targets) == len(wanted):
            raise
        # A pending value the caller did not ask for failed to compute: it must not make
        # every later read fail too. Compute what was asked for on its own.
        targets, values = _run(wanted)
    for n, v in zip(targets, values):
        n.data = v
        # A realized value that autodiff will never walk through (it needs no gradient,
        # or it is a leaf) no longer needs its recipe: drop it so old steps can be freed.
        if n.leaf is not None or not n.requires_grad:
            n.inputs = ()
    pending_tensors()   # drops what this realization computed


@contextlib.contextmanager
def realizing_on(backend_name):
    """Realize lazy tensors on `backend_name` (None: the default) inside the block."""
    global _realize_backend
    old, _realize_backend = _realize_backend, backend_name
    try:
        yield
    finally:
        _realize_backend = old


# Ops that only select, rearrange or place elements of their operands: a graph of
# nothing else computes no value, it reads values already computed.
_DATA_MOVEMENT = frozenset({"reshape", "permute", "expand", "slice", "flip", "concat", "pad"})


def _has_value(n):
    return n.data is not None


def _run(targets):
    key, boundary = Graph.structure_key_of(targets, _has_value)
    inputs = [n.data for n in boundary]
    if _only_moves_data(key, inputs):
        graph, _ = Graph.from_outputs(targets, boundary=_has_value)
        # x[i] of a computed tensor (a Dataset's __getitem__ reads one row per call, and
        # the loader stacks a batch of them): the start index is an attribute of the
        # slice, so every index would be a new graph to compile (15-25 ms each) and to
        # keep in the cache forever. Such a
        # graph computes nothing; the reference interpreter reads it out of the inputs
        # in microseconds. Copied, so no result aliases another tensor's value.
        from .backends import interp
        values = [np.array(v, copy=True) for v in interp.compile(graph)(inputs)]
        stats["data_movement_reads"] += 1
    else:
        graph = lambda: Graph.from_outputs(targets, boundary=_has_value)[0]  # noqa: E731
        values = compiled_for(graph, _realize_backend, structure_key=key)(inputs)
    stats["realizations"] += 1
    return targets, values


def _only_moves_data(key, inputs) -> bool:
    """Whether the graph of structure key `key` only moves data (key items start
    with the op; the last item lists the outputs)."""
    return all(type(v) is np.ndarray for v in inputs) and \
        all(item[0] in _DATA_MOVEMENT for item in key[:-1] if item[0] != "input")
