"""Devices. graphc runs on the CPU; `cuda` is recognised and, where no GPU backend is
available, refused with a clear error (the Triton backend issue adds the GPU)."""
from __future__ import annotations

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
        if self.type == "cuda" and not cuda_is_available():
            raise at_user_line(RuntimeError, "graphc: a CUDA device was requested, but no GPU "
                                             "backend is available on this machine "
                                             "(graphc.cuda.is_available() is False)")
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


def cuda_is_available() -> bool:
    return False


cpu_device = device("cpu")
