"""Input donation: let a fused plan write an output into the memory of an input.

A compiled training step reads each parameter and optimizer state and returns its new
value, which graphc.compile writes back into the same tensor. Without donation the new
value goes to a fresh output array: the update kernel reads the old array and writes a
second one, whose cache lines the CPU must first fetch (a write-allocate), and the
replay builds a new data node per state. With donation the update kernel stores the new
value over the old one, in place, as `optimizer.step()` does in PyTorch.

`donate_inputs(plan, candidates)` takes (input index, output index) pairs that the
caller may let alias (graphc.compile offers every state the step reads and writes back)
and accepts a pair only when aliasing cannot change any value the plan computes:

  * the output is stored by exactly one kernel W, a loop kernel (a GEMM or a sort never
    writes over an operand), with a plain store (no accumulation) of the input's shape
    and dtype, one element per point of W's outer loops, and no kernel reads the
    output (the new value is not used again);
  * every other kernel that reads the input runs before W;
  * inside W, every load of the input has exactly the store's index, in a stage without
    inner loops: each element is read only to compute its own new value, so the order
    in which threads and vector lanes visit elements does not matter;
  * no stage of W reads the input after the store stage. A kernel whose stages are all
    flat stores (no inner loops, no reductions, no stage reading what another stores)
    computes the same whatever the order of its stages, so its stages are reordered to
    put each donated store after the stages that still read the old value (the momentum
    update stores the new buffer and the new parameter, and both read the old buffer);
  * the input is not itself an output, the output appears once among the outputs, and
    no buffer lives inside the output (a concatenation's pieces, `Buffer.within`).

An accepted pair becomes one buffer: W's store targets the input's Buffer and the plan's
output list names the input, which the executor returns (its "output that is an input"
case). The kernel then reads and writes one pointer, which LLVM may still treat as
`noalias` against every other buffer.

What the caller promises in return (graphc.compile, `_donatable`): the array it binds to
a donated input is its own to overwrite: no other tensor, pending lazy value or numpy
view can observe it; otherwise it binds a copy.
"""
from __future__ import annotations

from ..backends import kernel_ir as K


def donate_inputs(plan, candidates) -> dict:
    """Accept the legal (input index, output index) pairs of `candidates` (module
    docstring), rewriting `plan` in place; returns {input index: output index}."""
    accepted: dict = {}
    outputs = plan.output_buffers
    for i, j in candidates:
        if i in accepted or j in accepted.values():
            continue
        src, dst = plan.input_buffers[i], outputs[j]
        if dst.kind != "output" or src.kind != "input" or src in outputs \
                or sum(b is dst for b in outputs) != 1 \
                or dst.shape != src.shape or dst.dtype != src.dtype:
            continue
        writer = _sole_writer(plan.kernels, dst)
        if writer is None or not _reads_before(plan.kernels, src, writer) \
                or _holds_pieces(plan.kernels, dst):
            continue
        kernel = plan.kernels[writer]
        order = _stage_order(kernel, src, dst)
        if order is None:
            continue
        kernel.stages = order
        for st in kernel.stages:
            if isinstance(st, K.Store) and st.buffer is dst:
                st.buffer = src
        outputs[j] = src
        accepted[i] = j
    return accepted


def _sole_writer(kernels, buf):
    """Index of the one loop kernel that stores `buf` (once, plainly), if no kernel
    reads `buf`; else None."""
    writers = [k for k, kern in enumerate(kernels) if buf in kern.writes()]
    if len(writers) != 1 or any(buf in kern.reads() for kern in kernels):
        return None
    kern = kernels[writers[0]]
    if not isinstance(kern, K.Kernel):
        return None
    stores = [st for st in kern.stages if isinstance(st, K.Store) and st.buffer is buf]
    if len(stores) != 1 or stores[0].accumulate or stores[0].inner:
        return None
    # one element per outer point, each written once (a store that every point of some
    # outer loop repeated would read the input after overwriting it)
    points = 1
    for v in kern.outer:
        points *= v.extent
    return writers[0] if points == buf.numel else None


def _holds_pieces(kernels, buf) -> bool:
    """Whether some buffer lives inside `buf` (`Buffer.within`: fusion places concat
    pieces in temps only today; a container cannot move into an input's memory)."""
    return any(b.within is not None and b.within[0] is buf
               for kern in kernels for b in kern.reads() + kern.writes())


def _reads_before(kernels, buf, writer) -> bool:
    return not any(buf in kern.reads() for kern in kernels[writer + 1:])


def _stage_order(kernel, src, dst):
    """The kernel's stages in an order where storing over `src` (where `dst` was
    stored) comes after every read of `src`, or None when no such order is legal."""
    store = next(st for st in kernel.stages if isinstance(st, K.Store) and st.buffer is dst)
    readers = []
    for st in kernel.stages:
        loads = [ld for ld in K.stage_loads(st) if ld.buffer is src]
        if not loads:
            continue
        if isinstance(st, K.Reduce) or st.inner or any(ld.index != store.index for ld in loads):
            return None
        readers.append(st)
    position = kernel.stages.index(store)
    if all(kernel.stages.index(st) <= position for st in readers):
        return list(kernel.stages)
    if not _stages_commute(kernel):
        return None
    # flat stores commute: stages that store over an input go last, each after the
    # stages that read that input (stores over other inputs donated earlier included)
    stores_over = {id(st): st.buffer for st in kernel.stages if st.buffer.kind == "input"}
    stores_over[id(store)] = src
    rest = [st for st in kernel.stages if id(st) not in stores_over]
    pending = [st for st in kernel.stages if id(st) in stores_over]
    placed = []
    while pending:
        ready = [st for st in pending
                 if not any(ld.buffer is stores_over[id(st)]
                            for other in pending if other is not st
                            for ld in K.stage_loads(other))]
        if not ready:
            return None     # two stores each over what the other reads
        placed.append(ready[0])
        pending.remove(ready[0])
    return rest + placed


def _stages_commute(kernel) -> bool:
    """Whether the kernel's stages may run in any order: all are plain stores without
    inner loops, and none reads a buffer the kernel stores. A store over an input
    (donated earlier) stands for a store to a fresh output here: the order it needs
    among the stages that read the input is the caller's to find."""
    written = set()
    for st in kernel.stages:
        if not isinstance(st, K.Store) or st.inner or st.accumulate:
            return False
        if st.buffer.kind != "input":
            written.add(id(st.buffer))
    return not any(id(ld.buffer) in written for st in kernel.stages for ld in K.stage_loads(st))
