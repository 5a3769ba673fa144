"""Running a split kernel on OpenBLAS's worker threads: one thread pool for the GEMMs
and graphc's own kernels.

Why: after a GEMM, OpenBLAS's workers spin on their cores for about 100 ms waiting for
the next one. A training step calls GEMMs throughout, so a kernel graphc splits over a
thread pool of its own finds one core taken and runs its second half at half speed
(the CNN step's non-GEMM kernels: 3.4-3.7 ms on two of our threads, the same as on one;
2.7 ms with OpenBLAS single-threaded). Handing the split to OpenBLAS's own threads,
which are spinning for work anyway, removes the contention.

How: OpenBLAS splits a level-1 operation over its threads with `blas_level1_thread(mode,
m, n, k, alpha, a, lda, b, ldb, c, ldc, function, nthreads)`: it cuts [0, m) into
`nthreads` contiguous widths, advances `a` by `width * lda * 4` bytes per part (single
precision), and calls `function(m_i, n, k, alpha[0], a_i, lda, b_i, ldb, c, ldc, sb)`
for each part, one on the calling thread, the others on its workers, returning when all
are done. `graphc_split_trampoline` is such a function: `a_i / 4` is where its part
starts (a starts at 0), `m_i` its width, and `c` a context {kernel, table, status,
grain, extent}; it runs the kernel over [start * grain, min((start + m_i) * grain,
extent)). The symbol is exported by numpy's OpenBLAS but is not public API, so its
behaviour is checked once per process (`available`) against a run that records the
ranges it is handed, and the executor falls back to its own thread pool if it is
missing or misbehaves.
"""
from __future__ import annotations

import ctypes
import os
import threading
from dataclasses import dataclass

from llvmlite import ir

from . import blas, jit

TRAMPOLINE = "graphc_split_trampoline"
_state: dict = {}
_lock = threading.Lock()

# void kernel(ptr table, i64 lo, i64 hi, ptr status)
_KERNEL = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                           ctypes.c_void_p)


class SplitContext(ctypes.Structure):
    """What the trampoline needs besides its part of the range."""
    _fields_ = [("kernel", ctypes.c_void_p), ("table", ctypes.c_void_p),
                ("status", ctypes.c_void_p), ("grain", ctypes.c_int64),
                ("extent", ctypes.c_int64), ("shift", ctypes.c_int64)]


def _trampoline_module() -> str:
    i64, f32, ptr = ir.IntType(64), ir.FloatType(), ir.PointerType(ir.IntType(8))
    mod = ir.Module(name="graphc_split")
    kernel_ty = ir.FunctionType(ir.VoidType(), [ptr, i64, i64, ptr])
    fn = ir.Function(mod, ir.FunctionType(i64, [i64, i64, i64, f32, ptr, i64, ptr, i64,
                                                ptr, i64, ptr]), TRAMPOLINE)
    m, _n, _k, _alpha, a, _lda, _b, _ldb, c, _ldc, _sb = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    ctx = b.bitcast(c, ir.PointerType(ir.LiteralStructType([ptr, ptr, ptr, i64, i64, i64])))

    def field(k):
        return b.load(b.gep(ctx, [ir.Constant(ir.IntType(32), 0),
                                  ir.Constant(ir.IntType(32), k)], inbounds=True))
    kernel, table, status, grain, extent, shift = (field(k) for k in range(6))
    start = b.lshr(b.ptrtoint(a, i64), shift)      # a advanced 2**shift bytes a unit
    lo = b.mul(start, grain)
    hi = b.mul(b.add(start, m), grain)
    hi = b.select(b.icmp_signed("<", hi, extent), hi, extent)
    b.call(b.bitcast(kernel, ir.PointerType(kernel_ty)), [table, lo, hi, status])
    b.ret(ir.Constant(i64, 0))
    return str(mod)


@dataclass(frozen=True)
class _Machinery:
    level1: object          # blas_level1_thread, as a ctypes function
    loaded: object          # keeps the trampoline's machine code alive
    trampoline: int         # its address
    threads: int            # OpenBLAS's thread count

    def split(self, ctx, units, parts):
        """The trampoline over `units` units, in at most `parts` parts."""
        self.level1(_MODE, units, 0, 0, ctypes.byref(_ONE), None, 1, None, 0,
                    ctypes.byref(ctx), 0, self.trampoline, min(parts, self.threads))


def _load():
    """The machinery, or None when numpy's OpenBLAS has no blas_level1_thread."""
    lib = blas.find()["lib"]
    try:
        level1 = lib.blas_level1_thread
    except AttributeError:
        return None
    level1.restype = ctypes.c_int
    level1.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64,
                       ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                       ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64, ctypes.c_void_p,
                       ctypes.c_int]
    threads = 1
    for name in ("scipy_openblas_get_num_threads64_", "openblas_get_num_threads"):
        get = getattr(lib, name, None)
        if get is not None:
            get.restype = ctypes.c_int
            threads = get()
            break
    loaded = jit.LoadedObject(jit.emit_object(jit.optimize(_trampoline_module())))
    return _Machinery(level1, loaded, loaded.address(TRAMPOLINE), threads)


_ONE = ctypes.c_float(1.0)
_MODE = 0x2      # BLAS_SINGLE | BLAS_REAL: the routine gets float alpha, `a` moves 4 bytes a unit
_SHIFT = 2


def _enabled_machinery():
    """available(), unless disabled (GRAPHC_BLAS_THREADS=0)."""
    if os.environ.get("GRAPHC_BLAS_THREADS", "") == "0":
        return None
    return available()


def enabled() -> bool:
    """Whether splits can run here: not disabled (GRAPHC_BLAS_THREADS=0) and available."""
    return _enabled_machinery() is not None


def run_split(kernel_addr, table, status, extent, parts, grain):
    """Run `kernel` over [0, extent) split into at most `parts` ranges of whole `grain`s
    on OpenBLAS's threads (the calling thread takes one). False when unavailable or
    disabled (GRAPHC_BLAS_THREADS=0): the caller then splits on a pool of its own."""
    machinery = _enabled_machinery()
    if machinery is None:
        return False
    machinery.split(SplitContext(kernel_addr, table, status, grain, extent, _SHIFT),
                    -(-extent // grain), parts)
    return True


def available():
    """The loaded machinery, if blas_level1_thread behaves as expected here (checked
    once: a recording kernel must see [0, extent) cut into contiguous ranges)."""
    with _lock:
        if "machinery" not in _state:
            _state["machinery"] = None
            try:
                machinery = _load()
                if machinery is not None and machinery.threads > 1 and \
                        _self_check(machinery):
                    _state["machinery"] = machinery
            except Exception:      # an OpenBLAS without the expected ABI: fall back
                _state["machinery"] = None
        return _state["machinery"]


def _self_check(machinery) -> bool:
    seen = []

    @_KERNEL
    def record(table, lo, hi, status):
        seen.append((lo, hi))
    ctx = SplitContext(ctypes.cast(record, ctypes.c_void_p).value, None, None, 64, 1000,
                       _SHIFT)
    machinery.split(ctx, 16, machinery.threads)
    seen.sort()
    return len(seen) == machinery.threads and seen[0][0] == 0 and seen[-1][1] == 1000 and \
        all(a[1] == b[0] for a, b in zip(seen, seen[1:]))
