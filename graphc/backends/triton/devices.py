"""Where generated Triton kernels run: a CUDA GPU, or Triton's CPU interpreter.

Both devices offer what executor.Executable needs: an `allocator` (graphc/cuda/
allocator.py) of blocks, `upload`/`download`/`zero` of a block's bytes, `pointer` (the
argument a kernel receives for a buffer at an offset in a block), `prepare` (a launch
and config made runnable) and `run`.

CudaDevice: blocks are device memory (cuMemAlloc), launches are cubins compiled ahead of
time by Triton for the card's architecture (loader.binary_for, cached on disk) and
launched with cuLaunchKernel through graphc/cuda/driver.py. Triton's own launcher and
PyTorch are not used: graphc never imports torch.

InterpreterDevice: blocks are 64-byte-aligned numpy byte arrays and kernels run in
Triton's interpreter (TRITON_INTERPRET semantics), which only accepts PyTorch-like
tensors as pointer arguments. graphc does not depend on torch, so the caller injects an
*array carrier*: a function `carrier(array, pointer_type) -> object` that wraps a typed
numpy view without copying (tests use torch.from_numpy; `pointer_type` is Triton's name
of the element type, e.g. "*bf16", for the one type numpy lacks: bfloat16 arrives as a
uint16 view).
"""
from __future__ import annotations

import ctypes
import threading
import time

import numpy as np

from ...cuda.allocator import CachingAllocator
from .emitter import POINTER
from .loader import binary_for, load_module

_NUMPY_STORAGE = {"b8": np.bool_, "u8": np.uint8, "i32": np.int32, "i64": np.int64,
                  "f16": np.float16, "bf16": np.uint16, "f32": np.float32, "f64": np.float64}


def _register_pressure(device):
    """Out of device memory: move device-resident values to the host (values.py)."""
    from .values import spill_all
    device.allocator.pressure.append(lambda: spill_all(device))


# ----------------------------------------------------------------------------- interpreter

class InterpreterDevice:
    kind = "interpreter"
    can_time = False
    name = "triton-interpreter"
    arch = 0

    def __init__(self, carrier):
        self.carrier = carrier
        self.allocator = CachingAllocator(self._raw_alloc, lambda handle: None)
        _register_pressure(self)
        self.launches = 0

    @staticmethod
    def _raw_alloc(nbytes):
        raw = np.zeros(nbytes + 64, np.uint8)
        shift = (-raw.ctypes.data) % 64
        view = raw[shift:shift + nbytes]
        return view, view.ctypes.data

    def activate(self):
        pass

    def upload(self, block, host: np.ndarray):
        data = host.reshape(-1).view(np.uint8)
        block.handle[:data.size] = data

    def download(self, block, nbytes) -> np.ndarray:
        return block.handle[:nbytes].copy()

    def zero(self, block, nbytes):
        block.handle[:nbytes] = 0

    def pointer(self, block, offset, buf):
        if buf is None:   # the status word
            return self.carrier(block.handle[offset:offset + 4].view(np.int32), "*i32")
        sd = buf.dtype.short
        np_t = np.dtype(_NUMPY_STORAGE[sd])
        n = max(buf.numel, 1)
        view = block.handle[offset:offset + n * np_t.itemsize].view(np_t)
        return self.carrier(view, POINTER[sd])

    def prepare(self, generated, launch, cfg):
        module = load_module(generated.module_text("portable"), interpret=True)
        return getattr(module, launch.name)

    def run(self, fn, launch, cfg, args):
        self.launches += 1
        fn[launch.grid(cfg)](*args, **launch.constexpr_values(cfg))

    def launcher(self, fn, launch, cfg):
        return lambda args: self.run(fn, launch, cfg, args)

    def time(self, fn, reps) -> float:
        t0 = time.perf_counter()
        for _ in range(reps):
            fn()
        return (time.perf_counter() - t0) * 1e3 / reps

    def synchronize(self):
        pass


# ----------------------------------------------------------------------------- CUDA

class _CudaKernel:
    __slots__ = ("function", "module", "threads", "shared", "scratch", "nparams", "name")


class CudaDevice:
    kind = "cuda"
    can_time = True
    _instance = None
    _lock = threading.Lock()

    def __init__(self, driver):
        from ...cuda.driver import CudaOutOfMemory
        self.drv = driver
        self.name = driver.name()
        major, minor = driver.capability()
        self.arch = major * 10 + minor
        if self.arch < 70:
            raise RuntimeError(f"graphc: the triton backend needs compute capability 7.0 "
                               f"or newer; {self.name} has {major}.{minor}")
        self.allocator = CachingAllocator(self._raw_alloc, driver.mem_free,
                                          (CudaOutOfMemory,))
        _register_pressure(self)
        self._kernels = {}
        self.launches = 0

    @classmethod
    def get(cls) -> "CudaDevice":
        from ...cuda import driver
        with cls._lock:
            if cls._instance is None:
                cls._instance = CudaDevice(driver.get())
            return cls._instance

    def _raw_alloc(self, nbytes):
        ptr = self.drv.mem_alloc(nbytes)
        return ptr, ptr

    def activate(self):
        """Make the device's context current on the calling thread (realizations may
        come from any thread)."""
        self.drv.make_current()

    def upload(self, block, host: np.ndarray):
        host = np.ascontiguousarray(host)
        self.drv.copy_to_device(block.address, host.ctypes.data, host.nbytes)

    def download(self, block, nbytes) -> np.ndarray:
        out = np.empty(nbytes, np.uint8)
        self.drv.copy_to_host(out.ctypes.data, block.address, nbytes)
        return out

    def zero(self, block, nbytes):
        self.drv.memset(block.address, 0, nbytes)

    def pointer(self, block, offset, buf):
        return block.address + offset

    def prepare(self, generated, launch, cfg):
        # the signature is part of the key: equal text with other pointer types is
        # another kernel (the name hashes it too; this keeps the cache honest regardless)
        key = (launch.name, tuple(launch.signature().items()), cfg, launch.extra_constexprs)
        k = self._kernels.get(key)
        if k is not None:
            return k
        meta, cubin = binary_for(generated.module_text("device"), launch, cfg, self.arch)
        if meta.get("num_ctas", 1) != 1:
            raise RuntimeError(f"triton backend: {launch.name} needs thread-block clusters")
        k = _CudaKernel()
        k.module, k.function = self.drv.load_function(cubin, meta["name"], meta["shared"])
        k.threads = 32 * meta["num_warps"]
        k.shared = meta["shared"]
        k.scratch = (meta["global_scratch_size"], meta["global_scratch_align"],
                     meta.get("profile_scratch_size", 0))
        k.nparams = len(launch.buffers) + (1 if launch.status else 0)
        k.name = meta["name"]
        self._kernels[key] = k
        return k

    def run(self, k: _CudaKernel, launch, cfg, args):
        self.launcher(k, launch, cfg)(args)

    def launcher(self, k: _CudaKernel, launch, cfg):
        """`go(args)` launching `k`, with everything that does not depend on the argument
        values computed once: the grid, and the parameter arrays that cuLaunchKernel reads
        (it copies the values at the call, so one array serves every launch). This is the
        hot path of a replayed step: one ctypes call per kernel. Triton kernels end with
        two scratch pointers; a kernel that needs scratch gets blocks per launch."""
        g0, g1, g2 = launch.grid(cfg)
        n = k.nparams + 2
        values = (ctypes.c_uint64 * n)()
        params = (ctypes.c_void_p * n)(*[ctypes.addressof(values) + 8 * i for i in range(n)])
        nargs = k.nparams
        scratch = [(nargs + j, size * g0 * g1 * g2)
                   for j, size in enumerate((k.scratch[0], k.scratch[2])) if size]
        grid, launch_on_driver, alloc = (g0, g1, g2), self.drv.launch, self.allocator

        def go(args):
            if len(args) != nargs:
                raise ValueError(f"{k.name}: {len(args)} arguments where the kernel takes "
                                 f"{nargs}")
            values[:nargs] = args
            blocks = [alloc.allocate(nbytes) for _, nbytes in scratch]
            for (slot, _), blk in zip(scratch, blocks):
                values[slot] = blk.address
            try:
                launch_on_driver(k.function, grid, k.threads, k.shared, params)
                self.launches += 1
            finally:
                for blk in blocks:   # stream order: the next use comes after this kernel
                    alloc.release(blk)
        return go

    def time(self, fn, reps) -> float:
        fn()   # warm up (first launch loads code, fills caches)
        start, end = self.drv.event(), self.drv.event()
        try:
            self.drv.record(start)
            for _ in range(reps):
                fn()
            self.drv.record(end)
            return self.drv.elapsed_ms(start, end) / reps
        finally:
            self.drv.destroy_event(start)
            self.drv.destroy_event(end)

    def synchronize(self):
        self.drv.synchronize()
