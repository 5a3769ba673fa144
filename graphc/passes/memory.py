"""Memory planning: where every buffer of a fused plan lives.

Three kinds of buffer (kernel_ir.Buffer.kind):
  * input   given by the caller on each run;
  * output  graph outputs: allocated fresh on each run, because the runtime turns them
            into tensor values that later runs must not overwrite;
  * temp    intermediates: placed in one arena that the executable allocates once and
            reuses on every run (a fresh page costs ~1.7 us to touch on first use).

Temps are placed by liveness: a temp is live from the kernel that writes it to the last
kernel that reads it, inclusive at both ends (a kernel never reads and writes
overlapping memory). Greedy best-fit by decreasing size: each temp gets the lowest
64-byte-aligned offset that overlaps no temp whose live range intersects its own.

A temp placed `within` another (a piece of a concatenation, see fusion._elide_concat)
gets no space of its own: it lives at its offset inside its container, whose live range
is widened to cover it, so nothing else is placed there while either is live.

Every buffer also gets a *slot* in the executable's pointer table; kernels find their
buffers there (slots are fixed at compile time; input/output slots are refilled per run).
"""
from __future__ import annotations

from dataclasses import dataclass

ALIGN = 64


@dataclass
class MemoryPlan:
    slots: dict          # Buffer -> table slot
    offsets: dict        # temp Buffer -> byte offset in the arena
    lifetimes: dict      # temp Buffer -> (first kernel, last kernel)
    arena_bytes: int
    temp_bytes: int      # what the temps would take without reuse
    output_bytes: int
    input_bytes: int

    @property
    def peak_bytes(self):
        """Memory the executable itself holds during a run: arena plus fresh outputs."""
        return self.arena_bytes + self.output_bytes

    def report(self) -> str:
        lines = [f"memory plan: arena {_fmt(self.arena_bytes)} for {len(self.offsets)} "
                 f"temp buffer(s) totalling {_fmt(self.temp_bytes)} (reuse saves "
                 f"{_fmt(self.temp_bytes - self.arena_bytes)})",
                 f"  outputs {_fmt(self.output_bytes)} (fresh per run), inputs "
                 f"{_fmt(self.input_bytes)}; peak {_fmt(self.peak_bytes)} beyond inputs"]
        for buf, off in sorted(self.offsets.items(), key=lambda kv: kv[1]):
            first, last = self.lifetimes[buf]
            lines.append(f"  {buf!r}: offset {off}, {_fmt(buf.nbytes)}, live kernels "
                         f"{first}..{last}")
        return "\n".join(lines) + "\n"


def _fmt(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _align(n):
    return (n + ALIGN - 1) // ALIGN * ALIGN


def plan_memory(kernels, input_buffers, output_buffers) -> MemoryPlan:
    slots = {}
    for b in list(input_buffers) + list(output_buffers):
        slots.setdefault(b, len(slots))
    first, last = {}, {}
    for k, kern in enumerate(kernels):
        for b in kern.writes():
            first.setdefault(b, k)
            last[b] = max(last.get(b, k), k)
        for b in kern.reads():
            last[b] = max(last.get(b, k), k)
            first.setdefault(b, k)
    for b in list(first):   # a container lives while any block inside it does
        if b.within is not None:
            c = b.within[0]
            first[c] = min(first.get(c, first[b]), first[b])
            last[c] = max(last.get(c, last[b]), last[b])
    temps = [b for b in first if b.kind == "temp"]
    for b in temps:
        slots.setdefault(b, len(slots))
    for kern in kernels:   # any buffer a kernel touches needs a slot
        for b in kern.reads() + kern.writes():
            slots.setdefault(b, len(slots))
    placed = []   # (offset, size, first, last)
    offsets = {}
    for b in sorted((b for b in temps if b.within is None),
                    key=lambda b: (-b.nbytes, first[b])):
        size = _align(max(b.nbytes, 1))
        lo, hi = first[b], last[b]
        conflicts = sorted((o, s) for o, s, f, l in placed if not (l < lo or f > hi))
        off = 0
        for o, s in conflicts:
            if off + size <= o:
                break
            off = max(off, o + s)
        offsets[b] = off
        placed.append((off, size, lo, hi))
    for b in temps:
        if b.within is not None:
            container, element = b.within
            offsets[b] = offsets[container] + element * b.dtype.np.itemsize
    arena = max((o + s for o, s, _, _ in placed), default=0)
    return MemoryPlan(slots, offsets, {b: (first[b], last[b]) for b in temps}, arena,
                      sum(_align(b.nbytes) for b in temps if b.within is None),
                      sum(b.nbytes for b in set(output_buffers) if b.kind == "output"),
                      sum(b.nbytes for b in input_buffers))


def memory_report(graph) -> str:
    """The memory plan of `graph` as the LLVM backend would run it, as text (for
    `graphc dump-ir --stage memory`)."""
    from .fusion import fuse
    plan = fuse(graph)
    return plan_memory(plan.kernels, plan.input_buffers, plan.output_buffers).report()
