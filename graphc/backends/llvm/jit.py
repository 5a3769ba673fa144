"""LLVM machinery: host target machine, O3 optimisation, object code, loading.

The target machine uses the host CPU's name and features (AVX-512 where present), so
object code is only valid on the same CPU: the disk cache key includes both. Modules go
through the new pass manager at speed level 3 with loop and SLP vectorisation on, then
become object code; the same object code is what the disk cache stores and what is
loaded (MCJIT `add_object_file`), so a fresh compile and a cache hit run identical code.
"""
from __future__ import annotations

import llvmlite.binding as llvm

_state = {}


def _init():
    if not _state:
        llvm.initialize_native_target()
        llvm.initialize_native_asmprinter()
        cpu, features = llvm.get_host_cpu_name(), llvm.get_host_cpu_features().flatten()
        _state["cpu"] = (cpu, features)
        _state["tm"] = tm = _new_target_machine()
        # as plain strings: code generation reads them from several threads while
        # another one holds llvmlite's lock through a long optimisation (parallel.py)
        _state["triple"], _state["data_layout"] = tm.triple, str(tm.target_data)
        from . import blas
        try:
            blas.register()
        except blas.BlasNotFound:
            pass   # reported when a matmul kernel is compiled
    return _state


def _new_target_machine():
    cpu, features = _state["cpu"]
    return llvm.Target.from_default_triple().create_target_machine(
        cpu=cpu, features=features, opt=3, reloc="default", codemodel="jitdefault")


def target_machine():
    return _init()["tm"]


def triple() -> str:
    return _init()["triple"]


def data_layout() -> str:
    return _init()["data_layout"]


def host_cpu():
    """(cpu name, feature string)"""
    return _init()["cpu"]


def optimize(ir_text: str):
    """Parse, verify and optimise (O3) a module; returns the llvmlite ModuleRef."""
    tm = target_machine()
    mod = llvm.parse_assembly(ir_text)
    mod.triple = tm.triple
    mod.data_layout = str(tm.target_data)
    mod.verify()
    pto = llvm.create_pipeline_tuning_options(speed_level=3)
    pto.loop_vectorization = True
    pto.slp_vectorization = True
    pto.loop_unrolling = True
    pb = llvm.create_pass_builder(tm, pto)
    mpm = pb.getModulePassManager()
    mpm.run(mod, pb)
    return mod


def emit_object(mod) -> bytes:
    return target_machine().emit_object(mod)


def emit_assembly(mod) -> str:
    return target_machine().emit_assembly(mod)


class LoadedObject:
    """Object code linked into the process; keeps the engine alive with its functions.
    `objs` is one object file or a list of them (a plan compiled as several modules,
    parallel.py): the engine resolves calls from one into another."""

    def __init__(self, objs):
        _init()
        tm = _new_target_machine()   # the engine takes ownership of its target machine
        empty = llvm.parse_assembly("")
        empty.triple = tm.triple
        self.engine = llvm.create_mcjit_compiler(empty, tm)
        for obj in [objs] if isinstance(objs, bytes) else objs:
            self.engine.add_object_file(llvm.ObjectFileRef.from_data(obj))
        self.engine.finalize_object()

    def address(self, name: str) -> int:
        addr = self.engine.get_function_address(name)
        if not addr:
            raise RuntimeError(f"graphc LLVM: function {name} missing from object code")
        return addr
