"""Devices. graphc runs on the CPU; `cuda` means "compute with the Triton GPU backend".

Where no GPU is usable (no NVIDIA driver, no device, or no `triton` package), asking for
`cuda` raises a clear error and nothing else changes. Where one is, a successful request
for `cuda` (`device("cuda")` used by `Tensor.to`/`cuda()`, `Module.to`, a factory's
`device=`) switches realization to the Triton backend for the rest of the process
(`GRAPHC_BACKEND=triton`, unless the user set that variable): tensors keep host values
between realizations and the backend keeps device copies of the values it produced, so
a training loop's parameters stay on the GPU (docs/backends.md, "Triton backend").
"""
from __future__ import annotations

import importlib.util
import os

from .ir.errors import at_user_line


class device:
    __slots__ = ("type", "index")

    def __new__(cls, spec="cpu", index=None):
        if isinstance(spec, device):
            return spec
        self = object.__new__(cls)
        spec = str(spec)
        kind, _, idx = spec.partition(":")
        if kind not in ("cpu", "cuda"):
            raise RuntimeError(f"Expected one of cpu, cuda device type at start of device "
                               f"string: {spec}")
        self.type = kind
        self.index = int(idx) if idx else index
        return self

    def _check_usable(self):
        if self.type != "cuda":
            return self
        if not cuda_is_available():
            raise at_user_line(RuntimeError, "graphc: a CUDA device was requested, but no GPU "
                                             "backend is available on this machine "
                                             "(graphc.cuda.is_available() is False: "
                                             f"{cuda_unavailable_reason()})")
        if importlib.util.find_spec("triton") is None:
            raise at_user_line(RuntimeError, "graphc: a CUDA device was requested, but no GPU "
                                             "backend is available: the `triton` package "
                                             "that graphc's GPU backend uses is not installed")
        from .cuda import device_count
        if self.index is not None and not 0 <= self.index < device_count():
            raise at_user_line(RuntimeError, f"graphc: CUDA device {self.index} requested; "
                                             f"this machine has {device_count()}")
        _use_gpu_for_realization()
        return self

    def __eq__(self, other):
        other = device(other) if isinstance(other, str) else other
        return isinstance(other, device) and (self.type, self.index) == (other.type, other.index)

    def __hash__(self):
        return hash((self.type, self.index))

    def __repr__(self):
        return f"device(type='{self.type}'" + (f", index={self.index})" if self.index is not None
                                               else ")")

    def __str__(self):
        return self.type + (f":{self.index}" if self.index is not None else "")


def place(tensors, dev) -> None:
    """Move the realized values of `tensors` to `dev` in place (their meaning does not
    change: values are immutable). On `cuda`, while realization runs on the Triton
    backend, a host value is uploaded once and stays in device memory
    (backends/triton/values.py), so the first step reads it without a copy; pending
    values land on the device when realized, and values already there stay. Nothing
    moves while graphc.compile traces a step: a traced `.to("cuda")` is a no-op."""
    from . import backends, runtime
    if device(dev).type != "cuda" or runtime.tracer is not None or \
            backends.default_backend_name() != "triton":
        return
    import numpy as np
    from .backends import triton
    target = triton.default_device()
    for t in tensors:
        v = t._node.data
        if type(v) is np.ndarray:
            t._node.data = triton.to_device(v, t.dtype, target)


def cuda_is_available() -> bool:
    """Whether the NVIDIA driver loads and reports at least one device (cached)."""
    from .cuda import driver
    return driver.probe()[0] is not None


def cuda_unavailable_reason() -> str:
    from .cuda import driver
    return driver.probe()[1] or "a GPU is available"


_ENV_SET_BY_GRAPHC = False


def _use_gpu_for_realization():
    """Route realization to the Triton backend, unless the user chose a backend."""
    global _ENV_SET_BY_GRAPHC
    if os.environ.get("GRAPHC_BACKEND") and not _ENV_SET_BY_GRAPHC:
        return
    os.environ["GRAPHC_BACKEND"] = "triton"
    _ENV_SET_BY_GRAPHC = True


cpu_device = device("cpu")
