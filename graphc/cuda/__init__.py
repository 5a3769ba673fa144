"""graphc.cuda: the GPU, as PyTorch's torch.cuda names it.

`is_available()` is true when the NVIDIA driver library loads and reports at least one
device (graphc/cuda/driver.py); nothing touches the driver before it is first asked.
Computation on the GPU is done by the Triton backend (graphc/backends/triton); what
"cuda" means for tensors is described in docs/backends.md ("Triton backend").

`matmul.allow_tf32` (default False, as torch.backends.cuda.matmul.allow_tf32) lets
float32 matrix products use TF32 tensor cores; it is read at every run.
"""
from __future__ import annotations

from ..device import cuda_is_available as is_available  # noqa: F401


class _MatmulFlags:
    """torch.backends.cuda.matmul's flag: float32 GEMMs may round inputs to TF32."""
    allow_tf32 = False

    def __repr__(self):
        return f"graphc.cuda.matmul(allow_tf32={self.allow_tf32})"


matmul = _MatmulFlags()


def _driver():
    from . import driver
    return driver.get()


def device_count() -> int:
    if not is_available():
        return 0
    return _driver().count


def current_device() -> int:
    _driver()
    return 0


def get_device_name(device=None) -> str:
    return _driver().name()


def get_device_capability(device=None) -> tuple[int, int]:
    return _driver().capability()


def synchronize(device=None):
    _driver().synchronize()


def _gpu_device():
    from ..backends.triton.devices import CudaDevice
    _driver()
    return CudaDevice.get()


def memory_allocated(device=None) -> int:
    """Bytes of device memory in use by graphc's tensors, temporaries and device-resident values."""
    return _gpu_device().allocator.allocated_bytes if is_available() else 0


def max_memory_allocated(device=None) -> int:
    return _gpu_device().allocator.peak_allocated_bytes if is_available() else 0


def memory_reserved(device=None) -> int:
    """Bytes held from the driver: in use plus cached for reuse."""
    return _gpu_device().allocator.reserved_bytes if is_available() else 0


def empty_cache():
    """Return cached (unused) device memory to the driver."""
    if is_available():
        _gpu_device().allocator.empty_cache()
