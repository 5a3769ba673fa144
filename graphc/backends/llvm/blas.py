"""The BLAS that numpy links (OpenBLAS in numpy.libs), found once per process.

graphc never hand-writes a GEMM: matmul kernels call `cblas_sgemm`/`cblas_dgemm` from
the compiled code. numpy's wheel bundles scipy-openblas with ILP64 symbols
(`scipy_cblas_sgemm64_`, 64-bit integer arguments); a plain LP64 `cblas_sgemm` found in
the process is accepted too. The addresses are registered with LLVM under fixed names
(`graphc_cblas_sgemm`, `graphc_cblas_dgemm`), so cached object code, which refers to
those names and not to addresses, links in any process.
"""
from __future__ import annotations

import ctypes
import glob
import os

import llvmlite.binding as llvm

SYMBOLS = {"s": "graphc_cblas_sgemm", "d": "graphc_cblas_dgemm"}
_found = None


class BlasNotFound(RuntimeError):
    pass


def find():
    """{'s': address, 'd': address, 'ilp64': bool, 'library': path}."""
    global _found
    if _found is not None:
        return _found
    import numpy
    libdir = os.path.join(os.path.dirname(os.path.dirname(numpy.__file__)), "numpy.libs")
    candidates = sorted(glob.glob(os.path.join(libdir, "libscipy_openblas*.so*"))) + \
        sorted(glob.glob(os.path.join(libdir, "libopenblas*.so*")))
    for path in candidates:
        lib = ctypes.CDLL(path)
        for prefix, suffix, ilp64 in (("scipy_", "64_", True), ("", "64_", True),
                                      ("scipy_", "", False), ("", "", False)):
            try:
                s = getattr(lib, f"{prefix}cblas_sgemm{suffix}")
                d = getattr(lib, f"{prefix}cblas_dgemm{suffix}")
            except AttributeError:
                continue
            _found = {"s": ctypes.cast(s, ctypes.c_void_p).value,
                      "d": ctypes.cast(d, ctypes.c_void_p).value,
                      "ilp64": ilp64, "library": path, "lib": lib}
            return _found
    raise BlasNotFound(f"graphc's LLVM backend needs numpy's bundled OpenBLAS (cblas_sgemm); "
                       f"none found in {libdir}")


def register():
    """Make the BLAS entry points resolvable by name for JIT-linked code."""
    info = find()
    for k, name in SYMBOLS.items():
        llvm.add_symbol(name, info[k])
    return info
