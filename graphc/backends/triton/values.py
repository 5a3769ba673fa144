"""Values that live on the device: what the Triton backend hands back from a run.

A realized graphc value is normally a numpy array. The Triton backend instead returns a
`DeviceArray` for every output its kernels write: the value stays in device memory,
and a later run that takes it as an input binds that memory directly. A training step's
parameters and optimiser state therefore never cross the bus between steps; only what
the user reads (`loss.item()`, `tensor.numpy()`) is copied to the host, once, when it
is read.

A DeviceArray is array-like enough for the rest of graphc: it has `shape`, `dtype` (the
numpy dtype of its host form), `ndim`, `size`, `nbytes`, and `np.asarray(value)` (the
`__array__` protocol) gives its host copy, so the CPU backends and the serialiser take
it unchanged.

Invariants:
  * immutable, like every realized graphc value: the device bytes are never written
    after the run that produced them, and the host copy is read-only;
  * `block` holds exactly the device storage of the value (executor.storage_nbytes:
    bfloat16 as 16 bits, bool as one byte); `host` is the value in host layout
    (bfloat16 as float32, as host arrays hold it);
  * the block is released when the DeviceArray is garbage-collected, or earlier when
    the device runs out of memory and the value already has, or is given, a host copy
    (`spill`): the value itself is never lost.
"""
from __future__ import annotations

import threading
import weakref

import numpy as np

from ..interp import round_to_bfloat16
from .emitter import STORAGE_BYTES

# ----------------------------------------------------------------------------- layouts

def storage_nbytes(buf) -> int:
    return storage_nbytes_of(buf.numel, buf.dtype)


def storage_nbytes_of(numel: int, d) -> int:
    return numel * STORAGE_BYTES[d.short]


def to_device_layout(a: np.ndarray, d) -> np.ndarray:
    """A contiguous host array holding exactly the bytes the device stores for `a`."""
    if d.short == "bf16":
        r = round_to_bfloat16(np.asarray(a, dtype=np.float32))
        return np.ascontiguousarray((r.view(np.uint32) >> 16).astype(np.uint16))
    return np.ascontiguousarray(a, dtype=d.np)


def from_device_layout(raw: np.ndarray, shape, d) -> np.ndarray:
    if d.short == "bf16":
        return (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32).reshape(shape)
    return raw.view(d.np).reshape(shape)



class DeviceArray:
    __slots__ = ("shape", "dtype", "graph_dtype", "device", "_block", "_host",
                 "__weakref__")

    def __init__(self, block, shape, graph_dtype, device):
        self.shape = tuple(shape)
        self.graph_dtype = graph_dtype
        self.dtype = graph_dtype.np
        self.device = device
        self._block = block
        self._host = None
        _live.add(self, block, device)

    # ------------------------------------------------------------------ array-like
    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    def __len__(self):
        if not self.shape:
            raise TypeError("len() of a 0-d array")
        return self.shape[0]

    def __array__(self, dtype=None, copy=None):
        host = self.host()
        if dtype is not None and np.dtype(dtype) != host.dtype:
            return host.astype(dtype)
        return host.copy() if copy else host

    def item(self):
        return self.host().item()

    def tolist(self):
        return self.host().tolist()

    # a value is immutable: copies share it (a copied DeviceArray would hold the block
    # without owning it); pickling stores the value itself, as a host array
    def __copy__(self):
        return self

    def __deepcopy__(self, memo):
        return self

    def __reduce__(self):
        return np.array, (self.host(),)

    def __repr__(self):
        where = "spilled to host" if self._block is None else self.device.name
        return f"DeviceArray(shape={list(self.shape)}, dtype={self.dtype}, on {where})"

    # ------------------------------------------------------------------ device side
    def block_on(self, device):
        """The device block holding the value when it lives on `device`, else None."""
        return self._block if device is self.device else None

    def host(self) -> np.ndarray:
        """The value as a read-only host array, copied from the device on first use."""
        h = self._host
        if h is None:
            dev = self.device
            dev.activate()
            raw = dev.download(self._block, storage_nbytes_of(self.size, self.graph_dtype))
            h = from_device_layout(raw, self.shape, self.graph_dtype)
            h.flags.writeable = False
            self._host = h
        return h

    def spill(self) -> bool:
        """Keep the value on the host only and give the device block back."""
        if self._block is None:
            return False
        self.host()
        self._block = None
        _live.release(self)
        return True


class _LiveValues:
    """The device block of every DeviceArray still holding one, released when the value
    is garbage-collected (one weak reference per value: this is on the replay path of a
    training step, 10-20 outputs a step) or spilled."""

    def __init__(self):
        self._entries: dict[int, list] = {}    # id(value) -> [weakref, block, device]
        self._pinned: dict[int, int] = {}      # id(value) -> runs now reading it
        self._lock = threading.Lock()

    def add(self, value, block, device):
        key = id(value)
        entries = self._entries

        def gone(_ref):
            # runs when the value dies, before its id can be reused
            entry = entries.pop(key, None)
            if entry is not None:
                entry[2].allocator.release(entry[1])
        entries[key] = [weakref.ref(value, gone), block, device]

    def release(self, value):
        entry = self._entries.pop(id(value), None)
        if entry is not None:
            entry[2].allocator.release(entry[1])

    def pin(self, values):
        """A run is reading `values`: their blocks must not be spilled under it."""
        with self._lock:
            for v in values:
                self._pinned[id(v)] = self._pinned.get(id(v), 0) + 1

    def unpin(self, values):
        with self._lock:
            for v in values:
                k = self._pinned[id(v)] - 1
                if k:
                    self._pinned[id(v)] = k
                else:
                    del self._pinned[id(v)]

    def _on(self, device):
        values = [e[0]() for e in list(self._entries.values()) if e[2] is device]
        return [v for v in values if v is not None]

    def spill(self, device) -> int:
        """Move every value on `device` that no run is reading to the host; how many
        blocks were released."""
        with self._lock:
            pinned = set(self._pinned)
        return sum(v.spill() for v in self._on(device) if id(v) not in pinned)

    def count(self, device) -> int:
        return len(self._on(device))


_live = _LiveValues()


def pinned(values):
    """Context manager: `values` (any objects; DeviceArrays count) are read by a run."""
    return _Pinned([v for v in values if type(v) is DeviceArray])


class _Pinned:
    def __init__(self, values):
        self.values = values

    def __enter__(self):
        _live.pin(self.values)

    def __exit__(self, *exc):
        _live.unpin(self.values)


def spill_all(device) -> int:
    return _live.spill(device)


def resident_count(device) -> int:
    """How many DeviceArrays hold memory on `device` (tests, memory reports)."""
    return _live.count(device)


def upload(array, graph_dtype, device):
    """A device block holding host `array` (a value of `graph_dtype`) in device layout;
    the caller owns it."""
    host = to_device_layout(np.asarray(array), graph_dtype)
    block = device.allocator.allocate(host.nbytes)
    try:
        device.upload(block, host)
    except BaseException:
        device.allocator.release(block)
        raise
    return block


def to_device(array, graph_dtype, device) -> DeviceArray:
    """Upload a host array holding a value of `graph_dtype` to `device`."""
    a = np.asarray(array)
    device.activate()
    return DeviceArray(upload(a, graph_dtype, device), a.shape, graph_dtype, device)
