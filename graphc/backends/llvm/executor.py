"""Running compiled kernels: the hot path of the LLVM backend.

An `Executable` is built once per graph. It owns a pointer table (one slot per buffer,
see passes/memory.py), an arena for intermediates allocated on the first run and reused
afterwards, and a precomputed list of steps (ctypes function pointer, range, thread
split). A run only converts inputs when their dtype or layout requires it, writes input
and fresh output addresses into the table, and calls the steps: nothing about the graph
is rebuilt or inspected.

Parallelism: a kernel whose outer loops are independent and whose work exceeds
`PARALLEL_MIN_WORK` elements has its first outer loop split into one range per thread.
In a plan that calls a BLAS, the ranges run on OpenBLAS's worker threads
(blas_threads.py: one pool for the GEMMs and these kernels, no GIL needed); otherwise,
or where that is unavailable or disabled (GRAPHC_BLAS_THREADS=0), on a
ThreadPoolExecutor, ctypes releasing the GIL around each foreign call. Matmul kernels
are one call here: OpenBLAS splits them itself.
Concurrent runs of one executable are serialised by a lock (they share the arena).
"""
from __future__ import annotations

import ctypes
import math
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import check_failure, index_error_message, kernel_ir as K
from ..interp import round_to_bfloat16
from . import blas_threads

# A worker thread needs the GIL to enter its ctypes call; while another Python thread
# (a DataLoader prefetcher, say) runs, that hand-off can wait for the interpreter's 5 ms
# switch interval. Below ~1M element-ops a kernel takes well under a millisecond on one
# core, so splitting it can only lose: measured on the LSTM example, a 64K threshold made
# each training step 25 ms instead of 1 ms while the loader thread was busy.
PARALLEL_MIN_WORK = 1 << 20
# In a plan that calls a BLAS, splits run on OpenBLAS's workers (blas_threads.py), which
# need no GIL and are already spinning after the plan's GEMMs: a few microseconds to
# hand out a part. The MLP step's 784x512 SGD update (400K) went 0.144 -> 0.117 ms
# split; at 64K its 128x512 bias+relu kernels split too and ran slower, and the step
# gained nothing more.
BLAS_PARALLEL_MIN_WORK = 1 << 18
OUTPUT_POOL_DEPTH = 3
KERNEL_CFUNC = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64,
                                ctypes.c_void_p)
_pool = None


def _pyobject_data_pointer(a):
    """ndarray data pointer read straight from the object (PyArrayObject's `data`
    follows PyObject_HEAD): 0.2-0.7 us against 1-3 us for `a.ctypes.data`."""
    return ctypes.c_void_p.from_address(id(a) + _DATA_OFFSET).value


def _ctypes_data_pointer(a):
    return a.ctypes.data


_DATA_OFFSET = 2 * ctypes.sizeof(ctypes.c_void_p)
_probe = np.arange(3.0)
data_pointer = _pyobject_data_pointer if _pyobject_data_pointer(_probe) == \
    _probe.ctypes.data and _pyobject_data_pointer(_probe[1:]) == _probe[1:].ctypes.data \
    else _ctypes_data_pointer
del _probe


ALIGN = 64   # bytes; as passes/memory.py aligns arena offsets
# Where in its 4 KiB page a large buffer we allocate starts. A load whose address
# matches a store still in flight in its low 12 bits waits for it ("4K aliasing"). numpy
# puts large arrays 16 bytes into a page, so an output starting 64 bytes into its page
# is written just ahead of where the loop next reads its input: measured on softmax
# 4096x4096, 9.3 ms with the input at page offset 16 and the output at 64, 6.3 ms with
# the output half a page away. Buffers we allocate (which feed later graphs) share one
# offset, and equal offsets measured as fast as distant ones.
PAGE = 4096
PAGE_OFFSET = 2048 + ALIGN
PAGE_OFFSET_MIN_BYTES = 1 << 16   # below this, not worth the extra page


def aligned_block(nbytes):
    """(owner byte array, start offset): `nbytes` bytes starting on a 64-byte boundary,
    and for large blocks at PAGE_OFFSET within a page."""
    if nbytes < PAGE_OFFSET_MIN_BYTES:
        owner = np.empty(nbytes + ALIGN, np.uint8)
        return owner, (-data_pointer(owner)) % ALIGN
    owner = np.empty(nbytes + PAGE, np.uint8)
    return owner, (PAGE_OFFSET - data_pointer(owner)) % PAGE


def calls_blas(kernels) -> bool:
    return any(isinstance(k, K.MatmulKernel) for k in kernels)


def schedule(kernels, threads=None):
    """[(kernel indices, ranges)]: each entry is one native call per range. A kernel
    worth splitting gets one range per thread; runs of other kernels are grouped into
    one entry, executed by a generated driver function (one foreign call for all)."""
    threads = threads or num_threads()
    profiling = profile_enabled()
    min_work = BLAS_PARALLEL_MIN_WORK if calls_blas(kernels) and blas_threads.enabled() \
        else PARALLEL_MIN_WORK
    out = []
    for k, kern in enumerate(kernels):
        extent = kern.outer[0].extent if getattr(kern, "outer", ()) else 1
        if kern.parallel and threads > 1 and extent > 1 and kern.work() >= min_work:
            parts = min(threads, extent)
            # cut at multiples of 64 iterations where the extent allows: a pointwise
            # kernel's ranges then start on whole 64-byte tiles (see codegen streaming)
            grain = 64 if extent >= 64 * parts else 1
            cuts = [min(extent, (extent * p // parts) // grain * grain) for p in range(parts)]
            cuts.append(extent)
            out.append(([k], [(cuts[p], cuts[p + 1]) for p in range(parts)]))
        elif out and len(out[-1][1]) == 1 and out[-1][1][0] == (0, -1) and not profiling:
            out[-1][0].append(k)
        else:
            out.append(([k], [(0, -1)]))   # (0, -1): whole extent, see Executable
    return out


def _blas_split_args(fn, ranges):
    """(kernel address, extent, parts, grain) of a step `schedule` split into `ranges`,
    as blas_threads.run_split takes them."""
    extent, parts = ranges[-1][1], len(ranges)
    grain = 64 if extent >= 64 * parts else 1     # as schedule cut them
    return ctypes.cast(fn, ctypes.c_void_p).value, extent, parts, grain


def _run_split(fn, table, status, ranges, blas_args):
    """Run kernel `fn` over its thread `ranges` (from `schedule`), concurrently: on
    OpenBLAS's worker threads if `blas_args` (see _blas_split_args) and blas_threads
    allows (see there why), else one range on this thread and the others on the
    executor's pool."""
    if blas_args is not None:
        addr, extent, parts, grain = blas_args
        if blas_threads.run_split(addr, table, status, extent, parts, grain):
            return
    pool = _thread_pool()
    futures = [pool.submit(fn, table, lo, hi, status) for lo, hi in ranges[1:]]
    lo, hi = ranges[0]
    fn(table, lo, hi, status)
    for f in futures:
        f.result()


def profile_enabled() -> bool:
    """GRAPHC_PROFILE=1: time every kernel call (see `profile_report`). Kernels are then
    called one by one instead of in driver groups, so set it before compiling."""
    return os.environ.get("GRAPHC_PROFILE", "") not in ("", "0")


# kernel name -> [total seconds, calls, one-line description]
PROFILE: dict = {}


def profile_report(top=20) -> str:
    """The kernels that took longest since profiling started (GRAPHC_PROFILE=1)."""
    rows = sorted(PROFILE.items(), key=lambda kv: -kv[1][0])[:top]
    total = sum(v[0] for v in PROFILE.values()) or 1.0
    lines = [f"{'kernel':<28} {'total ms':>9} {'calls':>6} {'ms/call':>8} {'share':>6}  what"]
    for name, (t, n, what) in rows:
        lines.append(f"{name:<28} {t * 1e3:9.2f} {n:6d} {t * 1e3 / n:8.3f} {t / total:6.1%}  "
                     f"{what}")
    return "\n".join(lines)


def _describe(kernel) -> str:
    text = " | ".join(line.strip() for line in str(kernel).splitlines()[1:3])
    return text if len(text) < 160 else text[:157] + "..."


def num_threads():
    return max(1, int(os.environ.get("GRAPHC_NUM_THREADS") or os.cpu_count() or 1))


def _thread_pool():
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=max(num_threads() - 1, 1),
                                   thread_name_prefix="graphc-llvm")
    return _pool


class Executable:
    def __init__(self, plan, memory, loaded, steps):
        """`steps`: [(native function name, ranges)] from `schedule` (a range's -1 end
        means the kernel's full extent, already baked into driver functions)."""
        self.plan = plan
        self.memory = memory
        self._loaded = loaded          # keeps the machine code alive
        # {input index: output index} whose output is stored over the input's array
        # (passes/donation.py): the caller binds arrays it may overwrite there
        self.donated = {}
        self._lock = threading.Lock()
        self.table = np.zeros(max(len(memory.slots), 1), np.uint64)
        self.status = np.zeros(1, np.int64)
        self._table_addr = self.table.ctypes.data
        self._status_addr = self.status.ctypes.data
        self._arena = None
        graph = plan.graph
        # inputs: (slot, storage dtype, shape, is bf16)
        self._inputs = []
        for node, buf in zip(graph.inputs, plan.input_buffers):
            slot = memory.slots.get(buf)
            self._inputs.append((slot, buf.dtype.np, tuple(node.shape), buf.dtype.short == "bf16"))
        # outputs: ('input', k) for an output that is a graph input, else ('fresh', j)
        self._fresh = []
        self._outputs = []
        fresh_index = {}
        for buf in plan.output_buffers:
            if buf.kind == "input":
                self._outputs.append(("input", plan.input_buffers.index(buf)))
                continue
            if id(buf) not in fresh_index:
                fresh_index[id(buf)] = len(self._fresh)
                self._fresh.append((memory.slots[buf], buf.shape, buf.dtype.np,
                                    math.prod(buf.shape) * buf.dtype.np.itemsize))
            self._outputs.append(("fresh", fresh_index[id(buf)]))
        self._pools = [[] for _ in self._fresh]
        # Only a plan that calls a BLAS splits its kernels on OpenBLAS's workers: those
        # spin for ~100 ms after any job, which a plan with GEMMs causes anyway, but a
        # plan without would cause only for this (and starve other libraries' threads)
        with_blas = calls_blas(plan.kernels)
        self._steps = []
        for name, ranges in steps:
            fn = KERNEL_CFUNC(loaded.address(name))
            blas_args = _blas_split_args(fn, ranges) if with_blas and len(ranges) > 1 \
                else None
            self._steps.append((fn, ranges, blas_args))
        if profile_enabled():
            by_name = {f"graphc_{k.name}": k for k in plan.kernels}
            self._step_info = [(f"{id(self) % 10000:04d}:{name}",
                                _describe(by_name[name]) if name in by_name else "driver")
                               for name, _ in steps]
        else:
            self._step_info = None

    def _setup_arena(self):
        raw, shift = aligned_block(self.memory.arena_bytes)
        self._arena = raw
        base = data_pointer(raw) + shift
        for buf, off in self.memory.offsets.items():
            self.table[self.memory.slots[buf]] = base + off

    @staticmethod
    def _output_array(pool, shape, np_dtype, nbytes):
        """An output array whose memory nobody references any more, if the pool has one.

        A pool entry is (owner, aligned view): the owner is a byte array, the view its
        64-byte-aligned part shaped as the output (the kernels' streaming stores rely
        on that alignment, see codegen.ModuleBuilder). numpy points every view's `base`
        at the owner, so every array on a block (the one returned, the runtime's tensor
        value, any view a user made of it) holds a reference to the owner, and an owner
        referenced only by its entry is free to overwrite. Reusing it avoids touching
        fresh pages (~1.7 us per 4 KiB page: 16-30 ms for a 64 MB output).

        `nbytes` is precomputed: this runs for every output of every call, and a numpy
        reduction for it (np.prod of the shape) cost 70 us of a training step's time
        with caches cold after the GEMMs, for a 0-d loss whose pool was full."""
        for owner, aligned in pool:
            # references: the entry, the entry view's base, `owner`, the call argument
            if sys.getrefcount(owner) == 4:
                return aligned.view()
        owner, shift = aligned_block(nbytes)
        aligned = owner[shift:shift + nbytes].view(np_dtype).reshape(shape)
        if len(pool) < OUTPUT_POOL_DEPTH:
            pool.append((owner, aligned))
            return aligned.view()
        return aligned

    def __call__(self, inputs):
        if len(inputs) != len(self._inputs):
            raise ValueError(f"graphc LLVM executable expects {len(self._inputs)} inputs, "
                             f"got {len(inputs)}")
        with self._lock:
            if self._arena is None:
                self._setup_arena()
            table = self.table
            keep = []
            for (slot, np_dtype, shape, bf16), value in zip(self._inputs, inputs):
                a = value if type(value) is np.ndarray else np.asarray(value)
                if a.dtype != np_dtype or not a.flags.c_contiguous:
                    a = np.ascontiguousarray(a, dtype=np_dtype)
                if a.shape != shape:
                    raise ValueError(f"graphc LLVM executable: input of shape {list(a.shape)} "
                                     f"where the graph expects {list(shape)}")
                if bf16:
                    a = round_to_bfloat16(a)
                keep.append(a)
                if slot is not None:
                    table[slot] = data_pointer(a)
            fresh = []
            for (slot, shape, np_dtype, nbytes), pool in zip(self._fresh, self._pools):
                out = self._output_array(pool, shape, np_dtype, nbytes)
                table[slot] = data_pointer(out)
                fresh.append(out)
            ta, sa = self._table_addr, self._status_addr
            info = self._step_info
            for step, (fn, ranges, blas_args) in enumerate(self._steps):
                if info is not None:
                    started = time.perf_counter()
                if len(ranges) == 1:
                    lo, hi = ranges[0]
                    fn(ta, lo, hi, sa)
                else:
                    _run_split(fn, ta, sa, ranges, blas_args)
                if info is not None:
                    entry = PROFILE.setdefault(info[step][0], [0.0, 0, info[step][1]])
                    entry[0] += time.perf_counter() - started
                    entry[1] += 1
            if self.status[0]:
                code, self.status[0] = self.status[0], 0
                if code == K.STATUS_NO_MEMORY:
                    raise MemoryError("graphc: a sort kernel could not allocate its "
                                      "scratch rows")
                if code == K.STATUS_INDEX_OUT_OF_RANGE:
                    raise IndexError(index_error_message(self.plan.graph))
                raise check_failure(self.plan.graph, int(code))
            return [keep[k] if kind == "input" else fresh[k] for kind, k in self._outputs]
