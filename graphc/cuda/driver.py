"""The CUDA driver API through ctypes: just what graphc's Triton backend needs.

No CUDA toolkit, no torch, no compiled extension: `libcuda.so.1` (installed with the
NVIDIA driver) is opened with ctypes and the few entry points below are given exact
prototypes. The exported names are the ones `cuda.h` maps its public names to
(`cuMemAlloc` is `cuMemAlloc_v2`: the unsuffixed symbols are the legacy 32-bit-size
versions and must never be called); tests/test_triton_backend.py checks every name and
argument count of `PROTOTYPES` against the header when one is installed.

Everything runs in the device's *primary* context (the one the runtime API and PyTorch
share), made current on the calling thread before each use, on the legacy default
stream (0): launches and copies are ordered, and a device-to-host copy waits for the
kernels before it.

`probe()` answers "is there a usable GPU" without raising: a machine without the driver
(no libcuda), with the driver but no device, or with a broken driver gives a reason
string instead. Nothing here runs at import time.
"""
from __future__ import annotations

import ctypes
import os
import threading
import types

c_int, c_uint, c_size_t, c_void_p, c_char_p, c_float = (
    ctypes.c_int, ctypes.c_uint, ctypes.c_size_t, ctypes.c_void_p, ctypes.c_char_p,
    ctypes.c_float)
c_uint64 = ctypes.c_uint64
P = ctypes.POINTER

CUDA_SUCCESS = 0
CUDA_ERROR_OUT_OF_MEMORY = 2
CUDA_ERROR_NO_DEVICE = 100
ATTR_CC_MAJOR = 75                 # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
ATTR_CC_MINOR = 76
ATTR_SM_COUNT = 16                 # CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT
ATTR_SHARED_OPTIN = 97             # CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN
FUNC_MAX_DYNAMIC_SHARED = 8        # CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES

# exported symbol -> argument types (every function returns CUresult, an int)
PROTOTYPES = {
    "cuInit": (c_uint,),
    "cuDriverGetVersion": (P(c_int),),
    "cuDeviceGetCount": (P(c_int),),
    "cuDeviceGet": (P(c_int), c_int),
    "cuDeviceGetName": (c_char_p, c_int, c_int),
    "cuDeviceGetAttribute": (P(c_int), c_int, c_int),
    "cuDeviceTotalMem_v2": (P(c_size_t), c_int),
    "cuDevicePrimaryCtxRetain": (P(c_void_p), c_int),
    "cuCtxSetCurrent": (c_void_p,),
    "cuCtxSynchronize": (),
    "cuMemGetInfo_v2": (P(c_size_t), P(c_size_t)),
    "cuMemAlloc_v2": (P(c_uint64), c_size_t),
    "cuMemFree_v2": (c_uint64,),
    "cuMemcpyHtoD_v2": (c_uint64, c_void_p, c_size_t),
    "cuMemcpyDtoH_v2": (c_void_p, c_uint64, c_size_t),
    "cuMemcpyDtoD_v2": (c_uint64, c_uint64, c_size_t),
    "cuMemsetD8_v2": (c_uint64, ctypes.c_ubyte, c_size_t),
    "cuModuleLoadData": (P(c_void_p), c_void_p),
    "cuModuleGetFunction": (P(c_void_p), c_void_p, c_char_p),
    "cuModuleUnload": (c_void_p,),
    "cuFuncSetAttribute": (c_void_p, c_int, c_int),
    "cuLaunchKernel": (c_void_p, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint, c_uint,
                       c_void_p, P(c_void_p), P(c_void_p)),
    "cuEventCreate": (P(c_void_p), c_uint),
    "cuEventRecord": (c_void_p, c_void_p),
    "cuEventSynchronize": (c_void_p,),
    "cuEventElapsedTime_v2": (P(c_float), c_void_p, c_void_p),
    "cuEventDestroy_v2": (c_void_p,),
    "cuGetErrorName": (c_int, P(c_char_p)),
    "cuGetErrorString": (c_int, P(c_char_p)),
}

# drivers older than CUDA 12.8 lack these newer entry points; the older one has the
# same prototype and is still exported by newer drivers
FALLBACKS = {"cuEventElapsedTime_v2": "cuEventElapsedTime"}

LIBRARY_NAMES = ("libcuda.so.1", "libcuda.so")


class CudaError(RuntimeError):
    """A CUDA driver call failed; `code` is the CUresult."""

    def __init__(self, call, code, name, text):
        super().__init__(f"CUDA driver error in {call}: {name} ({code}): {text}")
        self.code = code


class CudaOutOfMemory(CudaError, MemoryError):
    pass


class Driver:
    """An initialised driver bound to one device's primary context."""

    def __init__(self, lib, ordinal=0):
        self.lib = lib
        self._bind()
        self.check("cuInit", self.f.cuInit(0))
        n = c_int(0)
        self.check("cuDeviceGetCount", self.f.cuDeviceGetCount(ctypes.byref(n)))
        self.count = n.value
        if not 0 <= ordinal < self.count:
            raise CudaError("cuDeviceGet", 101, "CUDA_ERROR_INVALID_DEVICE",
                            f"device ordinal {ordinal} with {self.count} device(s)")
        dev = c_int(0)
        self.check("cuDeviceGet", self.f.cuDeviceGet(ctypes.byref(dev), ordinal))
        self.device = dev.value
        ctx = c_void_p(0)
        self.check("cuDevicePrimaryCtxRetain",
                   self.f.cuDevicePrimaryCtxRetain(ctypes.byref(ctx), self.device))
        self.context = ctx
        self.make_current()

    def _bind(self):
        self.f = types.SimpleNamespace()
        for name, argtypes in PROTOTYPES.items():
            try:
                fn = getattr(self.lib, name)
            except AttributeError:
                if name not in FALLBACKS:
                    raise
                fn = getattr(self.lib, FALLBACKS[name])
            fn.argtypes = list(argtypes)
            fn.restype = c_int
            setattr(self.f, name, fn)

    # ------------------------------------------------------------------ errors
    def check(self, call, code):
        if code == CUDA_SUCCESS:
            return
        name, text = c_char_p(), c_char_p()
        try:
            self.f.cuGetErrorName(code, ctypes.byref(name))
            self.f.cuGetErrorString(code, ctypes.byref(text))
        except Exception:   # a failing error query must not hide the original error
            pass
        cls = CudaOutOfMemory if code == CUDA_ERROR_OUT_OF_MEMORY else CudaError
        raise cls(call, code, (name.value or b"?").decode(), (text.value or b"").decode())

    def make_current(self):
        self.check("cuCtxSetCurrent", self.f.cuCtxSetCurrent(self.context))

    # ------------------------------------------------------------------ device facts
    def attribute(self, attr) -> int:
        v = c_int(0)
        self.check("cuDeviceGetAttribute",
                   self.f.cuDeviceGetAttribute(ctypes.byref(v), attr, self.device))
        return v.value

    def name(self) -> str:
        buf = ctypes.create_string_buffer(256)
        self.check("cuDeviceGetName", self.f.cuDeviceGetName(buf, 256, self.device))
        return buf.value.decode()

    def capability(self) -> tuple[int, int]:
        return self.attribute(ATTR_CC_MAJOR), self.attribute(ATTR_CC_MINOR)

    def total_memory(self) -> int:
        v = c_size_t(0)
        self.check("cuDeviceTotalMem_v2", self.f.cuDeviceTotalMem_v2(ctypes.byref(v),
                                                                       self.device))
        return v.value

    def mem_info(self) -> tuple[int, int]:
        free, total = c_size_t(0), c_size_t(0)
        self.check("cuMemGetInfo_v2", self.f.cuMemGetInfo_v2(ctypes.byref(free),
                                                               ctypes.byref(total)))
        return free.value, total.value

    # ------------------------------------------------------------------ memory
    def mem_alloc(self, nbytes: int) -> int:
        ptr = c_uint64(0)
        self.check("cuMemAlloc_v2", self.f.cuMemAlloc_v2(ctypes.byref(ptr), max(nbytes, 1)))
        return ptr.value

    def mem_free(self, ptr: int):
        self.check("cuMemFree_v2", self.f.cuMemFree_v2(ptr))

    def copy_to_device(self, dst: int, host_addr: int, nbytes: int):
        if nbytes:
            self.check("cuMemcpyHtoD_v2", self.f.cuMemcpyHtoD_v2(dst, host_addr, nbytes))

    def copy_to_host(self, host_addr: int, src: int, nbytes: int):
        if nbytes:
            self.check("cuMemcpyDtoH_v2", self.f.cuMemcpyDtoH_v2(host_addr, src, nbytes))

    def copy_on_device(self, dst: int, src: int, nbytes: int):
        if nbytes:
            self.check("cuMemcpyDtoD_v2", self.f.cuMemcpyDtoD_v2(dst, src, nbytes))

    def memset(self, dst: int, byte: int, nbytes: int):
        if nbytes:
            self.check("cuMemsetD8_v2", self.f.cuMemsetD8_v2(dst, byte, nbytes))

    def synchronize(self):
        self.check("cuCtxSynchronize", self.f.cuCtxSynchronize())

    # ------------------------------------------------------------------ code
    def load_function(self, image: bytes, name: str, shared_bytes: int) -> tuple:
        """(module, function) for kernel `name` of a cubin; a kernel needing more than
        the 48 KiB of shared memory every device gives by default is allowed the opt-in
        maximum (Triton's GEMMs do)."""
        mod, fn = c_void_p(0), c_void_p(0)
        keep = ctypes.create_string_buffer(image, len(image))
        self.check("cuModuleLoadData", self.f.cuModuleLoadData(ctypes.byref(mod), keep))
        self.check("cuModuleGetFunction",
                   self.f.cuModuleGetFunction(ctypes.byref(fn), mod, name.encode()))
        if shared_bytes > 48 * 1024:
            optin = self.attribute(ATTR_SHARED_OPTIN)
            if shared_bytes > optin:
                raise CudaError("cuFuncSetAttribute", 1, "CUDA_ERROR_INVALID_VALUE",
                                f"kernel {name} needs {shared_bytes} bytes of shared "
                                f"memory; the device allows {optin}")
            self.check("cuFuncSetAttribute",
                       self.f.cuFuncSetAttribute(fn, FUNC_MAX_DYNAMIC_SHARED, shared_bytes))
        return mod, fn

    def launch(self, fn, grid, threads, shared_bytes, params):
        """`params`: a ctypes array of void* pointing at each argument's storage."""
        self.check("cuLaunchKernel",
                   self.f.cuLaunchKernel(fn, grid[0], grid[1], grid[2], threads, 1, 1,
                                           shared_bytes, None, params, None))

    # ------------------------------------------------------------------ timing
    def event(self):
        ev = c_void_p(0)
        self.check("cuEventCreate", self.f.cuEventCreate(ctypes.byref(ev), 0))
        return ev

    def record(self, ev):
        self.check("cuEventRecord", self.f.cuEventRecord(ev, None))

    def elapsed_ms(self, start, end) -> float:
        self.check("cuEventSynchronize", self.f.cuEventSynchronize(end))
        ms = c_float(0)
        self.check("cuEventElapsedTime",
                   self.f.cuEventElapsedTime_v2(ctypes.byref(ms), start, end))
        return ms.value

    def destroy_event(self, ev):
        self.check("cuEventDestroy_v2", self.f.cuEventDestroy_v2(ev))


# ---------------------------------------------------------------------- discovery

_lock = threading.Lock()
_probe_result = None      # (Driver or None, reason)


def _open_library():
    override = os.environ.get("GRAPHC_LIBCUDA")   # an explicit path, for odd installs
    errors = []
    for name in ((override,) if override else LIBRARY_NAMES):
        try:
            return ctypes.CDLL(name), None
        except OSError as e:
            errors.append(f"{name}: {e}")
    return None, "the NVIDIA driver library could not be loaded (" + "; ".join(errors) + ")"


def probe():
    """(Driver, None) when a GPU is usable, else (None, reason). Cached."""
    global _probe_result
    with _lock:
        if _probe_result is None:
            lib, reason = _open_library()
            if lib is None:
                _probe_result = (None, reason)
            else:
                try:
                    _probe_result = (Driver(lib), None)
                except AttributeError as e:
                    _probe_result = (None, f"libcuda lacks a needed entry point ({e})")
                except CudaError as e:
                    _probe_result = (None, str(e))
        return _probe_result


def get() -> Driver:
    drv, reason = probe()
    if drv is None:
        raise RuntimeError(f"graphc: no usable CUDA device: {reason}")
    drv.make_current()
    return drv
