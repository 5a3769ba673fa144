"""The Triton GPU backend: `compile(graph)` -> executable, as graphc/backends/interp.py.

Pipeline: fusion (passes/fusion.py, the same kernels the LLVM backend gets) -> memory
plan (passes/memory.py) -> Triton source text, one `@triton.jit` function per launch
(codegen.py, with the math prelude of mathlib.py) -> per launch and block-size
configuration, a cubin compiled ahead of time by Triton for the GPU's architecture and
cached on disk (loader.py) -> executor.Executable running it on a device (devices.py:
the GPU through the CUDA driver API, or Triton's CPU interpreter for tests).

`triton_source(graph)` is the generated module as text (`graphc dump-ir --stage
triton`); it needs neither a GPU nor triton itself. See docs/backends.md, "Triton
backend".
"""
from __future__ import annotations

from ...passes.fusion import fuse
from ...passes.memory import plan_memory
from .codegen import generate
from .executor import Executable  # noqa: F401
from .values import DeviceArray, to_device  # noqa: F401

_default_device = None


def set_default_device(device):
    """Make `compile(graph)` use `device` (e.g. an InterpreterDevice in tests) instead of
    the GPU; None restores the GPU. Returns the previous setting."""
    global _default_device
    old, _default_device = _default_device, device
    return old


def available() -> tuple[bool, str]:
    """(usable here, why not): this backend needs a CUDA GPU and the triton package.
    (triton_source needs neither.)"""
    import importlib.util
    from ...cuda import driver
    if _default_device is not None:
        return True, f"device {_default_device.name}"
    drv, reason = driver.probe()
    if drv is None:
        return False, f"no usable CUDA GPU: {reason}"
    if importlib.util.find_spec("triton") is None:
        return False, "the triton package is not installed"
    return True, drv.name()


def default_device():
    if _default_device is not None:
        return _default_device
    from ...cuda import driver
    drv, reason = driver.probe()
    if drv is None:
        raise RuntimeError(f"graphc: the triton backend needs a CUDA GPU, and none is usable "
                           f"here: {reason}")
    from .devices import CudaDevice
    return CudaDevice.get()


def plan(graph):
    """(fused plan, memory plan, generated kernels) of a graph."""
    p = fuse(graph)
    return p, plan_memory(p.kernels, p.input_buffers, p.output_buffers), generate(p)


def compile(graph, device=None, choose_config=None):
    """An executable for `graph` on `device` (default: the GPU). `choose_config(launch)`
    overrides the configuration choice (tests run every candidate through it)."""
    fused, memory, generated = plan(graph)
    return Executable(fused, memory, generated, device or default_device(), choose_config)


def triton_source(graph, variant: str = "device") -> str:
    """The generated Triton module of `graph` (the device prelude: libdevice math)."""
    return generate(fuse(graph)).module_text(variant)
