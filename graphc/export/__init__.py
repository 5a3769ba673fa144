"""`graphc.export`: a traced model as a native shared library with a C header.

    import graphc.export
    graphc.export(model_or_traced, example_inputs=None, out_dir="export", name=None)
    lib = graphc.export.load("export")          # ctypes wrapper, for Python callers
    outputs = lib(x)                            # numpy arrays

writes into `out_dir`:

    lib<name>.so   the forward pass: the LLVM backend's kernels compiled ahead of time
                   (graphc/backends/llvm/aot.py), the generated entry points
                   (entry.py), the weights embedded as read-only data (build.py)
    <name>.h       the C API: <name>_create / _run / _run_arrays / _destroy /
                   _status_message, shapes and dtypes as comments and #defines
    <name>.json    the same facts for programs (graphc.export.load reads it)
    libscipy_openblas*.so and its libraries, when the model has a matrix product and
                   blas="bundle" (the default): see build.py for the choice

Pipeline: trace (if given a module) -> signature (signature.py: refuses random ops and
bfloat16) -> aot.lower (optimize, fuse, memory plan, kernel IR) -> entry points ->
O3 object code for the host CPU (or `cpu`) -> `cc -shared` with the weights object and
libm (+ OpenBLAS). Files appear in `out_dir` only once all of them are built (each moved
into place with os.replace). The format is documented in docs/formats.md ("Export").

Importing this package imports neither llvmlite nor numpy's BLAS; `export` does. The
module object is callable (`graphc.export(...)` is `graphc.export.export(...)`).
"""
from __future__ import annotations

import os
import sys
import tempfile
import types

from .signature import RESERVED_LIBRARY_NAMES, ExportError, check_library_name

__all__ = ["export", "load", "ExportError", "ExportedLibrary", "library_name_from"]


def library_name_from(text) -> str:
    """A library name made from `text` (a class name, a file stem): lower-case C
    identifier characters, at most 64, "model" if nothing is left."""
    from .signature import c_identifier
    name = c_identifier(str(text)).lower().strip("_") or "model"
    if name[0].isdigit():
        name = "m_" + name
    if name in RESERVED_LIBRARY_NAMES:
        name += "_model"
    return check_library_name(name[:64])


def export(model_or_traced, example_inputs=None, out_dir="export", name=None, *,
           blas="bundle", cpu="host"):
    """Compile `model_or_traced` (a TracedModule from graphc.jit.trace/load, or a module
    or function traced here with `example_inputs`) into a shared library in `out_dir`.

    `name` (a C identifier; default: the model's class name, lower-cased) prefixes every
    symbol and names the files. `blas`: "bundle" copies numpy's OpenBLAS next to the
    library (a self-contained folder), "numpy" points the library's RUNPATH at numpy's
    copy. `cpu`: "host" (this machine's CPU and features) or an LLVM CPU name such as
    "x86-64-v2" for a library that runs on older machines.

    Returns a dict of the paths written: library, header, manifest, extra (BLAS files).
    """
    from ..jit.trace import TracedModule
    if isinstance(model_or_traced, TracedModule):
        traced = model_or_traced
    elif example_inputs is None:
        raise ExportError(f"graphc.export: {type(model_or_traced).__name__} is not a traced "
                          "module; pass example_inputs to trace it, or a module from "
                          "graphc.jit.trace / graphc.jit.load")
    else:
        from .. import jit
        traced = jit.trace(model_or_traced, example_inputs)
    name = check_library_name(name) if name is not None else library_name_from(traced.original_name)
    if blas not in ("bundle", "numpy"):
        raise ExportError(f"blas={blas!r}: choose 'bundle' (copy numpy's OpenBLAS next to "
                          "the library) or 'numpy' (use it where numpy has it)")
    if not isinstance(cpu, str) or not cpu:
        raise ExportError(f"cpu={cpu!r}: 'host' or an LLVM CPU name such as 'x86-64-v2'")
    from ..backends.llvm.aot import check_cpu
    complaint = check_cpu(cpu)
    if complaint:
        raise ExportError(f"cpu={cpu!r} is not a CPU LLVM can generate code for "
                          f"({complaint}); use 'host' or a name such as 'x86-64-v2'")
    if not sys.platform.startswith("linux") or sys.byteorder != "little":
        raise ExportError("graphc export builds ELF shared libraries for little-endian "
                          f"Linux; this is {sys.platform} ({sys.byteorder}-endian)")
    out_dir = os.fspath(out_dir)
    if os.path.exists(out_dir) and not os.path.isdir(out_dir):
        raise ExportError(f"{out_dir} exists and is not a folder")
    return _build(traced, out_dir, name, blas, cpu)


def _build(traced, out_dir, name, blas_mode, cpu):
    from .. import __version__
    from ..backends.llvm import aot
    from . import build
    from .entry import EntryPoints
    from .header import header_text, manifest_text
    from .signature import signature_of

    sig = signature_of(traced)
    build.compiler()   # no C compiler: fail before compiling anything
    program = aot.lower(traced.graph)
    offsets, weights_bytes = build.weight_layout(sig.weights)
    weights_symbol = f"{name}_graphc_weights"
    EntryPoints(program, sig, name, offsets, weights_symbol).emit()
    tm = aot.target_machine(cpu)
    obj = aot.compile_object(program.module, tm)

    os.makedirs(out_dir, exist_ok=True)
    library = f"lib{name}.so"
    blas_info = None
    with tempfile.TemporaryDirectory(prefix=".graphc-export-", dir=out_dir) as tmp:
        objects = [os.path.join(tmp, f"{name}.o")]
        with open(objects[0], "wb") as f:
            f.write(obj)
        if sig.weights:
            blob = os.path.join(tmp, f"{name}.weights")
            build.write_weight_blob(blob, sig.weights, offsets)
            asm = os.path.join(tmp, f"{name}_weights.S")
            with open(asm, "w") as f:
                f.write(build.weights_assembly(weights_symbol, os.path.abspath(blob)))
            objects.append(os.path.join(tmp, f"{name}_weights.o"))
            build.run_compiler(["-c", asm, "-o", objects[1]], "assembling the weights")
        extra = []
        blas_lib = runpath = None
        if program.blas is not None:
            blas_lib = program.blas.library
            if blas_mode == "bundle":
                extra = build.bundle_blas(blas_lib, tmp)
                runpath = "$ORIGIN"
            else:
                runpath = os.path.dirname(os.path.abspath(blas_lib))
            blas_info = {"mode": blas_mode,
                         "soname": build.elf_soname(blas_lib) or os.path.basename(blas_lib),
                         "runpath": runpath, "files": extra,
                         "symbols": sorted(program.blas.symbols.values()),
                         "ilp64": program.blas.ilp64}
        build.link_shared(os.path.join(tmp, library), objects, library, blas_lib, runpath)
        info = {"model": traced.original_name, "version": __version__, "library": library,
                "cpu": tm.triple.split("-")[0] + " " + (
                    aot.host_cpu()[0] + " (this machine)" if cpu == "host" else cpu),
                "blas": blas_info, "arena_bytes": program.memory.arena_bytes,
                "weights_bytes": weights_bytes, "kernels": len(program.kernel_calls)}
        with open(os.path.join(tmp, f"{name}.h"), "w") as f:
            f.write(header_text(name, sig, info))
        with open(os.path.join(tmp, f"{name}.json"), "w") as f:
            f.write(manifest_text(name, sig, info))
        produced = extra + [f"{name}.h", f"{name}.json", library]   # the library last
        for file in produced:
            os.replace(os.path.join(tmp, file), os.path.join(out_dir, file))
    return {"library": os.path.join(out_dir, library),
            "header": os.path.join(out_dir, f"{name}.h"),
            "manifest": os.path.join(out_dir, f"{name}.json"),
            "extra": [os.path.join(out_dir, f) for f in extra]}


def load(path):
    """An exported library (its folder, its .so or its .json) loaded with ctypes."""
    from .library import ExportedLibrary
    return ExportedLibrary(path)


def __getattr__(attr):
    if attr == "ExportedLibrary":
        from .library import ExportedLibrary
        return ExportedLibrary
    raise AttributeError(f"module 'graphc.export' has no attribute {attr!r}")


class _CallableModule(types.ModuleType):
    """`graphc.export(...)` reads as PyTorch-style API while graphc.export stays a
    package (it has submodules): calling the module calls `export`."""

    def __call__(self, *args, **kwargs):
        return export(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
