"""The LLVM CPU backend: `compile(graph)` -> executable, as graphc/backends/interp.py.

Pipeline: fusion (passes/fusion.py) -> memory plan (passes/memory.py) -> LLVM IR per
kernel (codegen.py, blas_codegen.py) -> O3 for the host CPU -> object code, cached on
disk (cache.py) -> linked into the process (jit.py) -> `executor.Executable`.
See docs/backends.md.
"""
from __future__ import annotations

from ...passes.donation import donate_inputs
from ...passes.fusion import fuse
from ...passes.memory import plan_memory
from .. import kernel_ir as K
from . import cache, jit, parallel
from .codegen import module_text
from .executor import Executable, schedule

stats = {"llvm_compiles": 0, "disk_hits": 0}


def fingerprint(plan, memory) -> str:
    """Everything code generation reads, as text: kernels, loop extents, buffers, slots."""
    parts = []
    for k in plan.kernels:
        parts.append(str(k))
        if isinstance(k, K.MatmulKernel):
            parts.append(f"dtype {k.dtype.short} a {k.a.offset} {k.a.strides} {k.a.shape} "
                         f"b {k.b.offset} {k.b.strides} {k.b.shape}")
        elif isinstance(k, K.SortKernel):
            parts.append(f"dtype {k.dtype.short} x {k.x.offset} {k.x.strides} {k.x.shape}")
        else:
            vs = list(k.outer) + [v for st in k.stages for v in st.inner]
            parts.append(" ".join(f"{v.name}<{v.extent}" for v in vs) +
                         f" parallel={k.parallel}")
    for buf, slot in memory.slots.items():
        parts.append(f"slot {slot} {buf!r} {buf.kind}")
    return "\n".join(parts)


def build_module(plan, memory, steps=None):
    """(llvmlite.ir.Module, [(native function, ranges)]) for the plan: one function per
    kernel plus one driver per group of kernels the schedule runs in a single call."""
    steps = steps if steps is not None else schedule(plan.kernels)
    return _module_part(plan, memory, steps, range(len(plan.kernels)), True), \
        _calls(plan, steps)


def _module_part(plan, memory, steps, kernel_range, with_drivers):
    """The module holding the kernels of `kernel_range` (and the drivers, if asked):
    a driver calls its kernels by name, in this module or another one loaded beside it."""
    from .codegen import ModuleBuilder
    mb = ModuleBuilder(memory.slots, streaming_stores=True)   # executor aligns buffers
    for k in kernel_range:
        mb.add(plan.kernels[k])
    if with_drivers:
        for j, (kidx, ranges) in enumerate(steps):
            if len(kidx) > 1:
                for k in kidx:
                    if k not in kernel_range:
                        mb.declare_kernel(f"graphc_{plan.kernels[k].name}")
                mb.add_driver(f"graphc_run{j}",
                              [(plan.kernels[k], f"graphc_{plan.kernels[k].name}")
                               for k in kidx])
    mb.module.triple = jit.triple()
    mb.module.data_layout = jit.data_layout()
    return mb.module


def compile_plan(plan, use_cache=True):
    memory = plan_memory(plan.kernels, plan.input_buffers, plan.output_buffers)
    steps = schedule(plan.kernels)
    calls = _calls(plan, steps)
    objs = None
    key = None
    if use_cache:
        key = cache.make_key(fingerprint(plan, memory) + f"\nschedule {steps}")
        objs = cache.unpack(cache.load(key))
        if objs is not None:
            stats["disk_hits"] += 1
    if objs is None:
        n_parts = parallel.chunks_for(len(plan.kernels))
        ranges = parallel.split([_cost(k) for k in plan.kernels], n_parts)

        def build(j):
            return module_text(_module_part(plan, memory, steps, range(*ranges[j]), j == 0))
        objs = parallel.compile_modules(build, len(ranges), _compile_text)
        stats["llvm_compiles"] += 1
        if use_cache:
            cache.store(key, cache.pack(objs))
    loaded = jit.LoadedObject(objs)
    return Executable(plan, memory, loaded, calls)


def _compile_text(text: str) -> bytes:
    return jit.emit_object(jit.optimize(text))


def _cost(kernel) -> int:
    """A kernel's share of LLVM's work, roughly: its stages (each a loop nest) and the
    IR values it computes. Counted, not printed: printing every kernel again would cost
    a noticeable part of what the split saves."""
    if isinstance(kernel, (K.MatmulKernel, K.SortKernel)):
        return 10
    return 10 * len(kernel.stages) + len(kernel.nodes)


def _calls(plan, steps):
    """The (function, ranges) list build_module produces, without building anything."""
    out = []
    for j, (kidx, ranges) in enumerate(steps):
        kern = plan.kernels[kidx[0]]
        if len(kidx) == 1:
            extent = kern.outer[0].extent if getattr(kern, "outer", ()) else 1
            out.append((f"graphc_{kern.name}", [(0, extent)] if ranges == [(0, -1)] else ranges))
        else:
            out.append((f"graphc_run{j}", [(0, 1)]))
    return out


# graphc.compile may let outputs overwrite inputs (passes/donation.py); the executable's
# `donated` says which pairs it accepted.
DONATES_INPUTS = True


def compile(graph, donate=()):
    plan = fuse(graph)
    donated = donate_inputs(plan, donate) if donate else {}
    exe = compile_plan(plan)
    exe.donated = donated
    return exe


def llvm_ir(graph) -> str:
    """The LLVM IR the backend generates for `graph`, before LLVM's O3 pipeline (for
    `graphc dump-ir --stage llvm`)."""
    plan = fuse(graph)
    module, _ = build_module(plan, plan_memory(plan.kernels, plan.input_buffers,
                                               plan.output_buffers))
    return module_text(module)
