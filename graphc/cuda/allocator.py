"""A caching allocator for device memory (and for the interpreter's stand-in memory).

`cuMemAlloc`/`cuMemFree` synchronise the device and cost tens of microseconds, so
blocks are never given back to the driver during normal running: a released block goes
to a free list of its size class and the next request of that class reuses it. Size
classes: requests are rounded up to a multiple of 512 bytes below 1 MiB and to a
multiple of 2 MiB above, so a training loop that allocates the same shapes every step
reuses the same blocks after its first step.

When the raw allocator reports out-of-memory, the allocator first frees every cached
block, then asks its `pressure` callbacks to drop what they can (device-resident
values, spilled to the host: graphc/backends/triton/values.py) and retries once more before raising.

Invariant: a block is either in use (handed out, not yet released) or in exactly one
free list; `allocated_bytes` counts the in-use blocks, `reserved_bytes` in-use + cached.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field

SMALL_LIMIT = 1 << 20
SMALL_ROUND = 512
LARGE_ROUND = 2 << 20


def size_class(nbytes: int) -> int:
    n = max(int(nbytes), 1)
    r = SMALL_ROUND if n < SMALL_LIMIT else LARGE_ROUND
    return (n + r - 1) // r * r


@dataclass(eq=False)
class Block:
    """`handle`: what the raw allocator returned (a device address, or an array);
    `address`: its integer address; `nbytes`: the size class actually reserved."""
    handle: object
    address: int
    nbytes: int
    in_use: bool = field(default=True)


class CachingAllocator:
    def __init__(self, raw_alloc, raw_free, oom_errors=(MemoryError,)):
        """`raw_alloc(nbytes) -> (handle, address)`, `raw_free(handle)`; `oom_errors`:
        the exceptions raw_alloc raises when memory is exhausted."""
        self._raw_alloc = raw_alloc
        self._raw_free = raw_free
        self._oom = tuple(oom_errors)
        self._free: dict[int, list[Block]] = {}
        # reentrant: a DeviceArray's finalizer releases its block, and a garbage
        # collection can run it on a thread that is inside allocate()
        self._lock = threading.RLock()
        self.pressure = []               # callables that release memory they cache
        self.allocated_bytes = 0
        self.reserved_bytes = 0
        self.peak_allocated_bytes = 0
        self.stats = {"raw_allocs": 0, "reuses": 0, "raw_frees": 0}

    def allocate(self, nbytes: int) -> Block:
        size = size_class(nbytes)
        with self._lock:
            free = self._free.get(size)
            if free:
                block = free.pop()
                block.in_use = True
                self.stats["reuses"] += 1
                self._count(size)
                return block
        block = self._allocate_raw(size)
        with self._lock:
            self.reserved_bytes += size
            self._count(size)
        return block

    def _count(self, size):
        self.allocated_bytes += size
        self.peak_allocated_bytes = max(self.peak_allocated_bytes, self.allocated_bytes)

    def _allocate_raw(self, size) -> Block:
        for attempt in range(3):
            try:
                handle, address = self._raw_alloc(size)
                self.stats["raw_allocs"] += 1
                return Block(handle, address, size)
            except self._oom:
                if attempt == 0:
                    self.empty_cache()
                elif attempt == 1:
                    for release in list(self.pressure):
                        release()
                    self.empty_cache()
                else:
                    raise
        raise AssertionError("unreachable")

    def release(self, block: Block):
        with self._lock:
            if not block.in_use:
                raise ValueError("graphc allocator: a block was released twice")
            block.in_use = False
            self.allocated_bytes -= block.nbytes
            self._free.setdefault(block.nbytes, []).append(block)

    def empty_cache(self):
        """Give every cached (free) block back to the raw allocator."""
        with self._lock:
            blocks = [b for bs in self._free.values() for b in bs]
            self._free.clear()
            for b in blocks:
                self.reserved_bytes -= b.nbytes
        for b in blocks:
            self._raw_free(b.handle)
            self.stats["raw_frees"] += 1

    def cached_bytes(self) -> int:
        return self.reserved_bytes - self.allocated_bytes
