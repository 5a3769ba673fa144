"""Ahead-of-time form of the LLVM backend: a graph's kernels as position-independent
object code for a shared library (graphc/export uses it), never loaded into this process.

`lower(graph)` runs the same pipeline as `compile(graph)` up to LLVM IR (optimize ->
fuse -> memory plan -> one function per kernel from codegen.ModuleBuilder) and returns
the llvmlite module with the kernel schedule and the memory plan. Differences from the
JIT path, all confined here:

  * single-threaded schedule: every kernel is one call over its whole first outer loop,
    in plan order (the JIT executor's thread split is a Python-side decision);
  * kernels get internal linkage: the caller adds its own entry points to the module and
    only those are exported (two exported models never clash on `graphc_kernel0`);
  * BLAS: the JIT resolves `graphc_cblas_sgemm/dgemm` to addresses in this process
    (blas.register). Here each becomes an internal forwarder to the library's real
    symbol (`scipy_cblas_sgemm64_` for numpy's ILP64 OpenBLAS), which the system linker
    resolves; the kernels' integer width already matches that library (blas.find);
  * code model and relocation for a shared object (`reloc="pic"`), for the host CPU or
    a named LLVM CPU (a library for other machines of the same architecture).
"""
from __future__ import annotations

import ctypes
from dataclasses import dataclass

import llvmlite.binding as llvm
from llvmlite import ir

from ...passes.fusion import FusedPlan, fuse
from ...passes.memory import MemoryPlan, plan_memory
from . import blas
from .codegen import module_text
from .jit import host_cpu


@dataclass
class BlasDependency:
    """The BLAS library the object code calls into, and the symbols it needs."""
    library: str          # path of the shared library found (numpy's bundled OpenBLAS)
    symbols: dict         # 's' / 'd' -> real symbol name used, for the precisions needed
    ilp64: bool           # 64-bit integer arguments


@dataclass
class AotProgram:
    plan: FusedPlan
    memory: MemoryPlan
    module: ir.Module            # kernels (internal) + BLAS forwarders; add entry points
    kernel_calls: list           # (function, extent): call function(table, 0, extent, status)
    blas: BlasDependency | None  # None when the graph has no BLAS matmul


def lower(graph) -> AotProgram:
    """The unoptimised LLVM module and the run order for `graph` (optimised first, as the
    runtime does before compiling; inputs and outputs keep their order)."""
    from ...passes.pipeline import optimize
    from .codegen import ModuleBuilder
    plan = fuse(optimize(graph))
    memory = plan_memory(plan.kernels, plan.input_buffers, plan.output_buffers)
    mb = ModuleBuilder(memory.slots)
    calls = []
    for kernel in plan.kernels:
        fn = mb.module.globals[mb.add(kernel)]
        fn.linkage = "internal"
        extent = kernel.outer[0].extent if getattr(kernel, "outer", ()) else 1
        calls.append((fn, extent))
    return AotProgram(plan, memory, mb.module, calls, _bind_blas(mb.module))


def _bind_blas(module) -> BlasDependency | None:
    """Give each declared `graphc_cblas_*gemm` a body calling the library's own symbol."""
    used = {p: module.globals[name] for p, name in blas.SYMBOLS.items()
            if name in module.globals}
    if not used:
        return None
    info = blas.find()
    symbols = {}
    for prec, fn in used.items():
        real = _symbol_name(info, prec)
        target = ir.Function(module, fn.function_type, real)
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        b.call(target, fn.args)
        b.ret_void()
        fn.linkage = "internal"
        symbols[prec] = real
    return BlasDependency(info["library"], symbols, info["ilp64"])


_CANDIDATE_NAMES = ("scipy_cblas_{p}gemm64_", "cblas_{p}gemm64_", "scipy_cblas_{p}gemm",
                    "cblas_{p}gemm")


def _symbol_name(info, prec) -> str:
    """The exported name behind the address blas.find chose (so the integer width the
    kernels were generated for is the one the named symbol takes)."""
    for pattern in _CANDIDATE_NAMES:
        name = pattern.format(p=prec)
        try:
            addr = ctypes.cast(getattr(info["lib"], name), ctypes.c_void_p).value
        except AttributeError:
            continue
        if addr == info[prec]:
            return name
    raise blas.BlasNotFound(f"no exported symbol of {info['library']} is the "
                            f"cblas_{prec}gemm graphc uses")


_PROBE = """
import sys
import llvmlite.binding as llvm
llvm.initialize_native_target()
llvm.initialize_native_asmprinter()
tm = llvm.Target.from_default_triple().create_target_machine(cpu=sys.argv[1], opt=0,
                                                             reloc="pic")
tm.emit_object(llvm.parse_assembly("define void @f() {\\n ret void\\n}"))
"""


def check_cpu(cpu: str) -> str | None:
    """None if LLVM knows `cpu` for this target, else LLVM's complaint. Checked in a
    child process: LLVM only warns about an unknown CPU name and may then abort the
    whole process while emitting code ("64-bit code requested on a subtarget ...")."""
    import subprocess
    import sys
    if cpu == "host":
        return None
    proc = subprocess.run([sys.executable, "-c", _PROBE, cpu], capture_output=True,
                          text=True)
    complaint = (proc.stderr or "").strip()
    if proc.returncode != 0 or complaint:
        lines = [ln for ln in complaint.splitlines() if ln.strip()]
        return lines[-1] if lines else f"LLVM exited with status {proc.returncode}"
    return None


def target_machine(cpu: str = "host"):
    """An O3 target machine emitting position-independent code for `cpu`: "host" (this
    CPU's name and features, as the JIT) or an LLVM CPU name such as "x86-64-v2"."""
    host_cpu()   # initialises the native target
    if cpu == "host":
        name, features = host_cpu()
    else:
        name, features = cpu, ""
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=name, features=features, opt=3, reloc="pic", codemodel="default")


def compile_object(module: ir.Module, tm) -> bytes:
    """Verify, optimise (the JIT's O3 pipeline with vectorisers) and emit `module`."""
    mod = llvm.parse_assembly(module_text(module))
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(tm, pto)
    pb.getModulePassManager().run(mod, pb)
    return tm.emit_object(mod)
