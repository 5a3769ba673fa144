"""Lower kernel_ir kernels to LLVM IR (llvmlite.ir).

Every kernel becomes `void graphc_<name>(ptr table, i64 lo, i64 hi, ptr status)`:
`table` holds one pointer per buffer of the executable (slots from the memory plan),
`[lo, hi)` is the range of the first outer loop this call runs (the executor splits it
across threads), `status` receives a code when something data-dependent failed (an
index out of range, a `check`: kernel_ir's STATUS_* and ir.ops.check_code). The
wrapper loads the buffer pointers and calls an always-inlined body that takes them as
`noalias` arguments, so after inlining LLVM knows the buffers do not overlap and
vectorises freely.

Values are computed in a *compute type*: i1 for bool, the integer type for ints, float
for float16/bfloat16/float32 (rounded to float16/bfloat16 precision after every op, as
the reference interpreter does), double for float64. Storage types are those of numpy
(bool as a byte, float16 as half, bfloat16 as float32).

Reductions accumulate float sums in blocks: each block of `SUM_BLOCK` elements of the
innermost reduced loop is summed in the compute type (with `reassoc`, so LLVM vectorises
it into several partial sums), and block sums are added into a float64 accumulator; a
float32 sum of 16M elements stays within ~1e-7 relative of float64.

Elementwise ops, conversions and random numbers are lowered by values.py (a mixin of
the loop kernel); float32 transcendentals come from mathlib.py; matmul kernels from
blas_codegen.py.
"""
from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
from llvmlite import ir

from .. import kernel_ir as K
from ...ir import dtypes as dt
from .mathlib import MathLib
from .types import (F32, F64, I1, I64, KERNEL_TYPE, PTR, VOID, c64 as _c64,  # noqa: F401
                    compute_type, storage_type)
from .values import ValueLowering

SUM_BLOCK = 1024

# Streaming (non-temporal) stores bypass the cache: writing a buffer then costs its bytes
# once instead of twice (a normal store first reads the line it overwrites). Measured
# here on a 64 MB float32 map: 3.2 ms with `vmovntps` against 4.7 ms with plain stores
# (np.copyto: 4.8 ms). A buffer smaller than the last-level cache (32 MB here) is better
# left in cache for the kernel that reads it next, hence the threshold.
STREAMING_MIN_BYTES = 32 << 20
# A row-wise kernel keeps an expensive per-element value several of its stages need in
# a stack array of at most this many elements (64 KB of float32), see _plan_row_cache.
ROW_CACHE_ELEMENTS = 16384
STREAM_TILE_BYTES = 64     # one cache line: x86 non-temporal vector stores need this alignment


# The innermost loop of a reduction stays a loop (llvm.loop.unroll.disable), vectorised
# with REDUCTION_INTERLEAVE independent vector accumulators. LLVM otherwise unrolls a
# constant row of 4096 completely; GVN then keeps the row's loads alive from one pass
# (layer norm's mean) to the next (its variance): 256 vector registers' worth, spilled
# to the stack. Measured on 4096x4096 float32, one process alternating both forms:
# layer norm 6.9 -> 5.1 ms, row sums 3.5 -> 2.4 ms, softmax unchanged. Disabling the
# unroller also stops the vectoriser from interleaving, hence the explicit count (2
# and 8 measured no better than 4).
REDUCTION_INTERLEAVE = 4
# ... but only over rows this long: a short row (a 2x2 pool window's 4 points, a 28-wide
# row) left to LLVM is unrolled whole and vectorised across the outer loop, where a
# rolled 64-wide vector loop would only ever run its scalar remainder (a pool forward's
# 4-point max: 0.43 -> 2.3 ms rolled).
ROLLED_MIN_EXTENT = 256
_LOOP_ID = re.compile(r'^(!\d+) = !{ !"graphc\.loop\.\d+", (.*) }$', re.M)


def _keep_rolled(var) -> bool:
    return var.extent >= ROLLED_MIN_EXTENT


def module_text(module) -> str:
    """The module's IR text, each loop's metadata a distinct node that lists itself
    first, as LLVM requires of a loop ID (llvmlite cannot build self-references)."""
    return _LOOP_ID.sub(r"\1 = distinct !{ \1, \2 }", str(module))


class ModuleBuilder:
    """One LLVM module holding every kernel of an executable."""

    def __init__(self, slots: dict, streaming_stores: bool = False):
        """`streaming_stores`: the caller guarantees that every 'temp' and 'output'
        buffer starts on a 64-byte boundary (the JIT executor's arena and output pool
        do; an exported library's caller may not), so large stores may stream."""
        self.module = ir.Module(name="graphc")
        self.math = MathLib(self.module, scalef=_host_has_avx512())
        self.slots = slots       # Buffer -> table slot
        self._helpers = {}
        self._bodies = {}        # body_key -> [body function, kernels using it]
        self.streaming_stores = streaming_stores and _host_is_x86()
        self._loops = 0
        self._rolled_hints = None

    def rolled_loop_id(self):
        """Metadata for one loop's latch: kept rolled, REDUCTION_INTERLEAVE-way
        interleaved. A placeholder names the loop until module_text makes it the loop's
        own distinct ID."""
        m = self.module
        self._loops += 1
        if self._rolled_hints is None:
            self._rolled_hints = [
                m.add_metadata([ir.MetaDataString(m, "llvm.loop.unroll.disable")]),
                m.add_metadata([ir.MetaDataString(m, "llvm.loop.interleave.count"),
                                ir.Constant(ir.IntType(32), REDUCTION_INTERLEAVE)])]
        return m.add_metadata([ir.MetaDataString(m, f"graphc.loop.{self._loops}")] +
                              self._rolled_hints)

    def add(self, kernel) -> str:
        name = f"graphc_{kernel.name}"
        if isinstance(kernel, K.MatmulKernel):
            from .blas_codegen import emit_matmul
            emit_matmul(self, kernel, name)
            return name
        if isinstance(kernel, K.SortKernel):
            from .sort_codegen import emit_sort
            emit_sort(self, kernel, name)
            return name
        bufs = kernel_buffers(kernel)
        bases = buffer_bases(kernel)
        key = body_key(kernel, bufs, bases)
        shared = self._bodies.get(key)
        tuning = _tuning_attribute(kernel)
        if shared is None:
            body = _LoopKernel(self, kernel, name, bases).emit()
            self._bodies[key] = [body, 1]
            if tuning:
                _add_string_attribute(body, tuning)
        else:
            # an identical loop nest over other buffers (the same step of an unrolled
            # RNN): call the body already emitted, so LLVM optimises it once. A body
            # shared by several kernels stays a function (each inlined copy would be
            # optimised again); its pointer arguments keep their noalias.
            body = shared[0]
            shared[1] += 1
            if shared[1] == 2:
                body.attributes.discard("alwaysinline")
                body.attributes.add("noinline")
        wrapper = _emit_wrapper(self, body, name, bufs, bases)
        if tuning:
            _add_string_attribute(wrapper, tuning)
        return name

    def declare_kernel(self, name):
        """A kernel function defined in another module of the same plan (parallel.py)."""
        if name not in self.module.globals:
            ir.Function(self.module, KERNEL_TYPE, name)

    def add_driver(self, name, kernels_and_names):
        """A function running several kernels over their whole extents, in order (one
        foreign call from Python instead of one per kernel)."""
        fn = ir.Function(self.module, KERNEL_TYPE, name)
        table, lo, hi, status = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        for kern, kname in kernels_and_names:
            callee = self.module.globals[kname]
            extent = kern.outer[0].extent if getattr(kern, "outer", ()) else 1
            # not inlined: each kernel is also a function of its own, and a driver that
            # inlined them would make LLVM optimise every kernel twice
            b.call(callee, [table, _c64(0), _c64(extent), status], attrs=("noinline",))
        b.ret_void()
        return name

    # -------------------------------------------------------------- int helpers
    def ipow(self, ty):
        key = ("ipow", str(ty))
        if key in self._helpers:
            return self._helpers[key]
        fn = ir.Function(self.module, ir.FunctionType(ty, [ty, ty]), f"graphc_ipow_{ty.width}")
        fn.linkage = "internal"
        a, e = fn.args
        entry, loop, done = (fn.append_basic_block(n) for n in ("entry", "loop", "done"))
        b = ir.IRBuilder(entry)
        b.branch(loop)
        b.position_at_end(loop)
        acc = b.phi(ty)
        base = b.phi(ty)
        exp = b.phi(ty)
        acc.add_incoming(ir.Constant(ty, 1), entry)
        base.add_incoming(a, entry)
        exp.add_incoming(e, entry)
        odd = b.trunc(exp, I1) if ty.width > 1 else exp
        acc2 = b.select(odd, b.mul(acc, base), acc)
        base2 = b.mul(base, base)
        exp2 = b.lshr(exp, ir.Constant(ty, 1))
        acc.add_incoming(acc2, loop)
        base.add_incoming(base2, loop)
        exp.add_incoming(exp2, loop)
        b.cbranch(b.icmp_unsigned("!=", exp2, ir.Constant(ty, 0)), loop, done)
        b.position_at_end(done)
        res = b.phi(ty)
        res.add_incoming(acc2, loop)
        b.ret(res)
        # exponent 0 must give 1: handled by the caller (loop body runs once)
        self._helpers[key] = fn
        return fn


def _host_has_avx512() -> bool:
    from .jit import host_cpu
    return "+avx512f" in host_cpu()[1].split(",")


def _tuning_attribute(kernel) -> str | None:
    """A function attribute that steers LLVM's vectoriser for this kernel, or None.

    An elementwise kernel (store stages only) reading through an index division, as a
    pool's backward reads the pooled gradient at (h // 2, w // 2), gets gathers from the
    x86 cost model; a contiguous load and a shuffle are 1.7x-4x faster here (the CNN
    step's pool + relu backward: 0.82 -> 0.20 ms and 0.68 -> 0.40 ms). Not so a
    reduction over a window (the pool's forward reads stride-2 pairs): without gathers
    LLVM scalarises it, 4x slower. So elementwise kernels prefer no gathers. The
    attribute replaces the module's feature string for the function, hence the host's
    features in full."""
    if not _host_is_x86() or any(isinstance(st, K.Reduce) for st in kernel.stages):
        return None
    from .jit import host_cpu
    return f'"target-features"="{host_cpu()[1]},+prefer-no-gather"'


def _add_string_attribute(fn, attribute):
    # llvmlite's FunctionAttributes accepts only the enum attributes it knows; a
    # "key"="value" attribute is printed as given, so it goes in past that check
    set.add(fn.attributes, attribute)


def _host_is_x86() -> bool:
    from .jit import triple
    return triple().startswith(("x86_64", "i686", "i386"))


def streaming_lanes(kernel, st, aligned: bool) -> int:
    """Elements per 64-byte tile if store stage `st` of `kernel` may use aligned
    streaming stores along its `stream_var`, else 0. That needs a plain
    (non-accumulating) store to a large buffer the executor allocated (64-byte aligned),
    which that loop walks contiguously, with every other index term a multiple of the
    tile (so a tile starting at a multiple of `lanes` starts on a 64-byte boundary)."""
    buf = st.buffer
    var = stream_var(kernel, st)
    if var is None or not aligned or st.accumulate or buf.kind not in ("temp", "output") \
            or buf.nbytes < STREAMING_MIN_BYTES:
        return 0
    itemsize = buf.nbytes // max(buf.numel, 1)
    if STREAM_TILE_BYTES % itemsize:
        return 0
    lanes = STREAM_TILE_BYTES // itemsize
    if var.extent < lanes:
        return 0
    flat = K.linearize(st.index, buf.shape)
    if flat.const % lanes or dict(flat.terms).get(var) != 1:
        return 0
    for atom, coeff in flat.terms:
        if atom == var:
            continue
        if coeff % lanes or isinstance(atom, K.ValueIndex):
            return 0
        if isinstance(atom, (K.FloorDiv, K.Mod, K.Clamp)) and \
                any(a == var or isinstance(a, K.ValueIndex) for a in atom.x.atoms()):
            return 0
    return lanes


def copy_run(st) -> int:
    """How many of the trailing inner loops of store stage `st` walk one contiguous run
    of memory in both its buffer and the buffer it copies from, when `st` is a plain
    copy (the value is a load of another buffer of the same dtype, no accumulation, every
    index affine in loop variables); 0 when it is not such a copy."""
    v = st.value
    if st.accumulate or not st.inner or not isinstance(v, K.Load) or \
            v.buffer.dtype != st.buffer.dtype or v.buffer is st.buffer:
        return 0
    flats = (K.linearize(st.index, st.buffer.shape), K.linearize(v.index, v.buffer.shape))
    coeffs = []
    for flat in flats:
        if any(not isinstance(a, K.Var) for a, _ in flat.terms):
            return 0
        coeffs.append(dict(flat.terms))
    run, stride = 0, 1
    for var in reversed(st.inner):
        if any(c.get(var) != stride for c in coeffs):
            break
        run += 1
        stride *= var.extent
    return run


def kernel_buffers(kernel):
    """The buffers a loop kernel touches, in its body function's argument order."""
    reads = kernel.reads()
    return reads + [b for b in kernel.writes() if b not in reads]


def _accesses(kernel):
    """(buffer, flat index) of every load and store of a loop kernel."""
    values = []
    for st in kernel.stages:
        values.append(st.value)
        if isinstance(st, K.Store):
            yield st.buffer, K.linearize(st.index, st.buffer.shape)
            for i in st.index:
                values.extend(a.value for a in i.atoms() if isinstance(a, K.ValueIndex))
    for value in values:
        for v in K.walk_values(value):
            if isinstance(v, K.Load):
                yield v.buffer, K.linearize(v.index, v.buffer.shape)


def buffer_bases(kernel) -> dict:
    """id(buffer) -> the smallest constant offset among the kernel's accesses to it.
    The body function receives each buffer's pointer already advanced by its base, so
    kernels that differ only in where they start in a buffer (step t of an unrolled RNN
    reading row t of the stacked input projection) share one body."""
    bases = {}
    for buf, flat in _accesses(kernel):
        bases[id(buf)] = min(bases.get(id(buf), flat.const), flat.const)
    return bases


def body_key(kernel, bufs, bases) -> tuple:
    """Everything the body function of a loop kernel is generated from, with names
    replaced by positions: buffers by argument position (plus dtype, shape, kind and
    their base offset modulo 64 elements, which decides alignment), loop variables and
    accumulators by order of appearance, buffer offsets relative to their base. Two
    kernels with equal keys have identical bodies."""
    var_ids, acc_ids, memo = {}, {}, {}
    buf_pos = {id(b): k for k, b in enumerate(bufs)}

    alive = []   # memo is keyed by id(): keep the temporary indexes from being reused

    def flat(buf, index):
        rebased = K.linearize(index, buf.shape) - bases[id(buf)]
        alive.append(rebased)
        return walk(rebased)

    def acc(name):
        return acc_ids.setdefault(name, len(acc_ids))

    def walk(x):
        hit = memo.get(id(x))
        if hit is not None:
            return hit
        if isinstance(x, K.Var):
            r = ("var", var_ids.setdefault(x, len(var_ids)), x.extent)
        elif isinstance(x, K.Buffer):
            r = ("buf", buf_pos[id(x)])
        elif isinstance(x, dt.DType):
            r = x.short
        elif isinstance(x, K.AccRef):
            r = ("accref", acc(x.name), x.dtype.short)
        elif isinstance(x, K.Reduce):
            r = ("reduce", acc(x.acc), x.op, walk(x.inner), walk(x.value), x.dtype.short)
        elif isinstance(x, K.Load):
            r = ("load", buf_pos[id(x.buffer)], flat(x.buffer, x.index))
        elif isinstance(x, K.Store):
            r = ("store", buf_pos[id(x.buffer)], flat(x.buffer, x.index), walk(x.inner),
                 walk(x.value), x.accumulate,
                 tuple(walk(a.value) for i in x.index for a in i.atoms()
                       if isinstance(a, K.ValueIndex)))
        elif isinstance(x, (tuple, list)):
            r = tuple(walk(i) for i in x)
        elif dataclasses.is_dataclass(x):
            r = (type(x).__name__,) + tuple(walk(getattr(x, f.name))
                                            for f in dataclasses.fields(x))
        else:
            r = (type(x).__name__, repr(x))
        memo[id(x)] = r
        return r
    return (walk(kernel.outer), walk(kernel.stages), kernel.parallel,
            tuple((b.dtype.short, b.shape, b.kind, bases[id(b)] % 64) for b in bufs))


def _emit_wrapper(mb, body, name, bufs, bases):
    """`void name(table, lo, hi, status)`: load the buffers' pointers from their table
    slots, advance each by its base offset, and call the body."""
    wrap = ir.Function(mb.module, KERNEL_TYPE, name)
    wb = ir.IRBuilder(wrap.append_basic_block("entry"))
    table, wlo, whi, wstatus = wrap.args
    args = []
    for buf in bufs:
        p = wb.gep(table, [_c64(mb.slots[buf])], source_etype=PTR, inbounds=True)
        p = wb.load(p, typ=PTR)
        if bases[id(buf)]:
            # not inbounds: a zero-size buffer's pointer is not into any object
            p = wb.gep(p, [_c64(bases[id(buf)])], source_etype=storage_type(buf.dtype))
        args.append(p)
    wb.call(body, args + [wlo, whi, wstatus])
    wb.ret_void()
    return wrap


def stream_var(kernel, st):
    """The loop along which store stage `st` of `kernel` would stream: its innermost
    loop, or for a pointwise kernel (one store, no inner loops) its last outer loop."""
    if st.inner:
        return st.inner[-1]
    if len(kernel.stages) == 1 and kernel.outer:
        return kernel.outer[-1]
    return None


class _LoopKernel(ValueLowering):
    def __init__(self, mb: ModuleBuilder, kernel: K.Kernel, name: str, bases: dict):
        self.mb = mb
        self.k = kernel
        self.bases = bases          # id(buffer) -> offset the body's pointer starts at
        self.name = name
        self.math = mb.math

    # -------------------------------------------------------------- structure
    def emit(self):
        """Emit the kernel's body function (buffer pointers as noalias arguments) and
        return it; the caller adds the wrapper that calls it."""
        bufs = kernel_buffers(self.k)
        self.bufs = bufs
        mod = self.mb.module
        body_ty = ir.FunctionType(VOID, [PTR] * len(bufs) + [I64, I64, PTR])
        body = ir.Function(mod, body_ty, self.name + "_body")
        body.linkage = "internal"
        body.attributes.add("alwaysinline")
        body.attributes.add("nounwind")
        for a in body.args[:len(bufs)]:
            a.add_attribute("noalias")
        body.args[-1].add_attribute("noalias")
        self.ptr = {id(buf): body.args[k] for k, buf in enumerate(bufs)}
        lo, hi, status = body.args[len(bufs):]
        self.fn = body
        self.b = ir.IRBuilder(body.append_basic_block("entry"))
        self.err = self.b.alloca(I64, name="err")
        self.b.store(_c64(0), self.err)
        self.vars = {}
        self.accs = {}
        self.streamed = False
        self.stage_no = 0
        self.row_cache = self._plan_row_cache()
        outer = list(self.k.outer)
        self._emit_outer(outer, lo, hi)
        b = self.b
        if self.streamed:
            # streaming stores are weakly ordered: make them visible before another
            # thread (or the next kernel's caller) reads the buffer
            b.call(self.math.declare("llvm.x86.sse.sfence", VOID, []), [])
        e = b.load(self.err, typ=I64)
        with b.if_then(b.icmp_unsigned("!=", e, _c64(0)), likely=False):
            b.store(e, status)
        b.ret_void()
        return body

    def flag_error(self, bad, code: int):
        """Record status `code` (an index out of range, a failed check) where the i1
        `bad` is set. A select into one word: a loop over it still vectorises (an
        any-of reduction), and the word never mixes two codes."""
        b = self.b
        b.store(b.select(bad, _c64(code), b.load(self.err, typ=I64)), self.err)

    def _loop(self, var, start, stop, body_fn, rolled=False):
        """for var in [start, stop): body_fn(); `rolled`: see REDUCTION_INTERLEAVE."""
        b = self.b
        pre = b.block
        head = b.append_basic_block(f"{var.name}.head")
        loop = b.append_basic_block(f"{var.name}.body")
        done = b.append_basic_block(f"{var.name}.done")
        b.branch(head)
        b.position_at_end(head)
        i = b.phi(I64, name=var.name)
        i.add_incoming(start, pre)
        b.cbranch(b.icmp_signed("<", i, stop), loop, done)
        b.position_at_end(loop)
        self.vars[var] = i
        body_fn()
        nxt = b.add(i, _c64(1))
        i.add_incoming(nxt, b.block)
        latch = b.branch(head)
        if rolled:
            latch.set_metadata("llvm.loop", self.mb.rolled_loop_id())
        b.position_at_end(done)

    def _nest(self, vars_, body_fn, first_range=None, rolled=False):
        """Loops over `vars_`, outermost first; `rolled` applies to the innermost."""
        if not vars_:
            body_fn()
            return
        v = vars_[0]
        start, stop = first_range if first_range else (_c64(0), _c64(v.extent))
        self._loop(v, start, stop, lambda: self._nest(vars_[1:], body_fn, rolled=rolled),
                   rolled=rolled and len(vars_) == 1)

    def _emit_outer(self, outer, lo, hi):
        def body():
            for j, st in enumerate(self.k.stages):
                self.stage_no = j
                if isinstance(st, K.Reduce):
                    self._reduce(st)
                else:
                    self._store(st)
        if outer:
            b = self.b
            hi_c = b.select(b.icmp_signed("<", hi, _c64(outer[0].extent)), hi,
                            _c64(outer[0].extent))
            stages = self.k.stages
            lanes = 0
            if len(stages) == 1 and isinstance(stages[0], K.Store):
                lanes = streaming_lanes(self.k, stages[0], self.mb.streaming_stores)
            if lanes:
                # a pointwise kernel: its last outer loop streams the store
                last = outer[-1]
                bounds = (lo, hi_c) if len(outer) == 1 else (_c64(0), _c64(last.extent))
                self._nest(outer[:-1], lambda: self._streamed_loop(stages[0], lanes, last,
                                                                   *bounds),
                           first_range=(lo, hi_c) if len(outer) > 1 else None)
            else:
                self._nest(outer, body, first_range=(lo, hi_c))
        else:
            b = self.b
            with b.if_then(b.icmp_signed("==", lo, _c64(0))):
                body()

    # -------------------------------------------------------------- stages
    def _store(self, st: K.Store):
        lanes = streaming_lanes(self.k, st, self.mb.streaming_stores) if st.inner else 0
        if lanes:
            v = st.inner[-1]
            return self._nest(list(st.inner[:-1]), lambda: self._streamed_loop(
                st, lanes, v, _c64(0), _c64(v.extent)))
        run = copy_run(st)
        if run:
            return self._copy(st, run)

        def body():
            self.memo = {}
            val = self.value(st.value)
            ptr = self.address(st.buffer, st.index)
            stype = storage_type(st.buffer.dtype)
            if st.accumulate:
                d = st.buffer.dtype
                old = self.to_compute(self.b.load(ptr, typ=stype), d)
                if st.accumulate in ("max", "min"):
                    val = self._minmax(st.accumulate == "max", old, val, d)
                elif d.is_floating:
                    val = self.round(self.b.fadd(old, val), d)
                else:
                    val = self.int_op("add", [old, val], d)
            self.b.store(self.to_storage(val, st.buffer.dtype), ptr)
        self._nest(list(st.inner), body)

    def _copy(self, st: K.Store, run: int):
        """A plain copy stage (copy_run): one llvm.memcpy per contiguous run of its last
        `run` inner loops (LLVM expands short constant sizes inline, calls libc above).

        A concat of many pieces is a kernel of many such stages, and as element loops
        LLVM unrolled and vectorised each one: the 25-step LSTM backward's weight-gradient
        concat (25 pieces of 16x256) took 11 s of LLVM time, 25 pieces of 16 rows of 64
        took 2.7 s. Measured (benchmarks/copy_stages.py), memcpy runs as fast as the loops
        it replaces: 32 pieces of 64 runs of 2 KiB 0.180 against 0.183 ms, 100 pieces of
        16 KiB 0.103 against 0.102 ms, and compiles in 0.04 and 0.14 s instead of 1.5 and
        3.0 s."""
        b = self.b
        head, tail = list(st.inner[:-run]), st.inner[-run:]
        n = 1
        for v in tail:
            n *= v.extent
        nbytes = n * st.buffer.nbytes // max(st.buffer.numel, 1)
        memcpy = self.math.declare("llvm.memcpy.p0.p0.i64", VOID,
                                   [PTR, PTR, I64, ir.IntType(1)])

        def body():
            for v in tail:
                self.vars[v] = _c64(0)
            self.memo = {}
            dst = self.address(st.buffer, st.index)
            src = self.address(st.value.buffer, st.value.index)
            b.call(memcpy, [dst, src, _c64(nbytes), ir.Constant(ir.IntType(1), 0)])
        self._nest(head, body)

    def _streamed_loop(self, st: K.Store, lanes: int, v, start, stop):
        """for v in [start, stop): the store, with every whole tile of `lanes` elements
        (v a multiple of `lanes`) computed into a small stack array, which LLVM keeps in
        one vector register, and written with one aligned non-temporal vector store;
        the elements before the first tile and after the last use plain stores."""
        b = self.b
        stype = storage_type(st.buffer.dtype)
        vec_t = ir.VectorType(stype, lanes)
        entry = self.fn.entry_basic_block
        with b.goto_block(entry):
            b.position_at_start(entry)
            tile = b.alloca(stype, size=lanes, name="tile")
            tile.align = STREAM_TILE_BYTES
        nontemporal = self.mb.module.add_metadata([ir.Constant(ir.IntType(32), 1)])
        tiles = K.Var(v.name + "_tile", v.extent // lanes)
        lane = K.Var(v.name + "_lane", lanes)

        def element(ptr_of):
            self.memo = {}
            value = self.to_storage(self.value(st.value), st.buffer.dtype)
            b.store(value, ptr_of())

        def plain():
            element(lambda: self.address(st.buffer, st.index))

        def per_tile():
            base = b.add(first, b.mul(self.vars[tiles], _c64(lanes)))

            def per_lane():
                self.vars[v] = b.add(base, self.vars[lane])
                element(lambda: b.gep(tile, [self.vars[lane]], source_etype=stype,
                                      inbounds=True))
            self._nest([lane], per_lane)
            self.vars[v] = base
            self.memo = {}
            out = b.store(b.load(tile, typ=vec_t, align=STREAM_TILE_BYTES),
                          self.address(st.buffer, st.index), align=STREAM_TILE_BYTES)
            out.set_metadata("nontemporal", nontemporal)
            self._prefetch_next_row(st)

        mask = _c64(lanes - 1)
        first = b.and_(b.add(start, mask), b.not_(mask))          # start rounded up
        first = b.select(b.icmp_signed("<", first, stop), first, stop)
        count = b.udiv(b.sub(stop, first), _c64(lanes))
        end = b.add(first, b.mul(count, _c64(lanes)))
        self._loop(v, start, first, plain)
        self._loop(tiles, _c64(0), count, per_tile)
        self._loop(v, end, stop, plain)
        self.streamed = True

    def _prefetch_next_row(self, st: K.Store):
        """While the last stage of a row-wise kernel (softmax, layer norm) computes from
        cache, memory would sit idle: ask for the next outer point's input of the first
        stage now, one cache line per tile written (measured on 4096x4096 float32:
        softmax 6.0 -> 5.6 ms, layer norm 5.5 -> 5.1 ms; two rows ahead was slower)."""
        if not self.k.outer:
            return
        first = self.k.stages[0]
        o = self.k.outer[-1]
        if first is st or not isinstance(first, K.Reduce) or tuple(first.inner) != tuple(st.inner):
            return
        b = self.b
        i32 = ir.IntType(32)
        prefetch = self.math.declare("llvm.prefetch.p0", VOID, [PTR, i32, i32, i32])
        seen = set()
        here = self.vars[o]
        nxt = b.add(here, _c64(1))        # the last row prefetches itself: stays in bounds
        self.vars[o] = b.select(b.icmp_signed("<", nxt, _c64(o.extent)), nxt, here)
        for v in K.walk_values(first.value):
            if not isinstance(v, K.Load) or v.buffer.name in seen:
                continue
            flat = K.linearize(v.index, v.buffer.shape)
            if o not in dict(flat.terms) or any(isinstance(a, K.ValueIndex) for a in flat.atoms()):
                continue
            seen.add(v.buffer.name)
            self.memo = {}
            b.call(prefetch, [self.address(v.buffer, v.index), ir.Constant(i32, 0),
                              ir.Constant(i32, 3), ir.Constant(i32, 1)])
        self.vars[o] = here
        self.memo = {}

    def _reduce(self, st: K.Reduce):
        b = self.b
        src_dt = K.value_dtype(st.value)
        if not st.inner:
            self.memo = {}
            if st.op in ("argmax", "argmin"):
                self.accs[st.acc] = _c64(0)
            else:
                self.accs[st.acc] = self.convert(self.value(st.value), src_dt, st.dtype)
            return
        if st.op in ("argmax", "argmin"):
            return self._argreduce(st, src_dt)
        ct = compute_type(src_dt)
        if st.op in ("sum", "prod"):
            wide_t = F64 if src_dt.is_floating else I64
        else:
            wide_t = ct
        wide = b.alloca(wide_t, name=st.acc)
        b.store(self._identity(st.op, src_dt, wide_t), wide)

        def combine(acc, x, t, reassoc):
            if st.op == "sum":
                if isinstance(t, ir.IntType):
                    return b.add(acc, x)
                r = b.fadd(acc, x)
            elif st.op == "prod":
                if isinstance(t, ir.IntType):
                    return b.mul(acc, x)
                r = b.fmul(acc, x)
            else:
                return self._minmax(st.op == "max", acc, x, src_dt)
            if reassoc:
                r.flags.append("reassoc")
            return r

        def widen(x):
            if wide_t is F64 and x.type is F32:
                return b.fpext(x, F64)
            if wide_t is I64 and x.type is not I64:
                return b.sext(x, I64) if src_dt.is_signed and not src_dt.is_bool else b.zext(x, I64)
            return x

        inner = list(st.inner)
        last = inner[-1]
        # float sums always go through a compute-type partial (one block when short):
        # vector adds in float32, one widening per block
        blocked = st.op == "sum" and src_dt.is_floating

        def element():
            self.memo = {}
            return self.value(st.value)

        if blocked:
            part_t = ct
            nblocks = (last.extent + SUM_BLOCK - 1) // SUM_BLOCK
            blk = K.Var(last.name + "_blk", nblocks)
            part = b.alloca(part_t, name=st.acc + "_part")

            def per_block():
                i = self.vars[blk]
                b.store(ir.Constant(part_t, 0.0), part)
                start = b.mul(i, _c64(SUM_BLOCK))
                stop = b.add(start, _c64(SUM_BLOCK))
                stop = b.select(b.icmp_signed("<", stop, _c64(last.extent)), stop,
                                _c64(last.extent))

                def body():
                    x = element()
                    b.store(combine(b.load(part, typ=part_t), x, part_t, True), part)
                self._loop(last, start, stop, body, rolled=_keep_rolled(last))
                b.store(b.fadd(b.load(wide, typ=wide_t), widen(b.load(part, typ=part_t))),
                        wide)
            self._nest(inner[:-1] + [blk], per_block)
        else:
            def body():
                x = widen(element()) if st.op in ("sum", "prod") else element()
                b.store(combine(b.load(wide, typ=wide_t), x, wide_t, st.op == "sum"), wide)
            self._nest(inner, body, rolled=_keep_rolled(inner[-1]))
        acc = b.load(wide, typ=wide_t)
        self.accs[st.acc] = self._finish_acc(acc, wide_t, src_dt, st.dtype)

    def _finish_acc(self, acc, wide_t, src_dt, out_dt):
        b = self.b
        if out_dt.is_bool:
            if isinstance(acc.type, ir.IntType):
                return b.icmp_unsigned("!=", acc, ir.Constant(acc.type, 0)) \
                    if acc.type.width > 1 else acc
            return b.fcmp_unordered("!=", acc, ir.Constant(acc.type, 0.0))
        ct = compute_type(out_dt)
        if out_dt.is_floating:
            if acc.type is F64 and ct is F32:
                acc = b.fptrunc(acc, F32)
            return self.round(acc, out_dt)
        if acc.type.width > ct.width:
            return b.trunc(acc, ct)
        return acc

    def _identity(self, op, d, t):
        if op == "sum":
            return ir.Constant(t, 0.0 if not isinstance(t, ir.IntType) else 0)
        if op == "prod":
            return ir.Constant(t, 1.0 if not isinstance(t, ir.IntType) else 1)
        big = op == "min"   # identity of min is the largest value
        if d.is_floating:
            return ir.Constant(t, math.inf if big else -math.inf)
        if d.is_bool:
            return ir.Constant(t, 1 if big else 0)
        info = np.iinfo(d.np)
        return ir.Constant(t, int(info.max if big else info.min))

    def _minmax(self, is_max, a, x, d):
        b = self.b
        if d.is_floating:
            fn = self.math.intrinsic("llvm.maximum" if is_max else "llvm.minimum", a.type)
            return b.call(fn, [a, x])
        signed = d.is_signed and not d.is_bool
        if is_max:
            c = b.icmp_signed(">", x, a) if signed else b.icmp_unsigned(">", x, a)
        else:
            c = b.icmp_signed("<", x, a) if signed else b.icmp_unsigned("<", x, a)
        return b.select(c, x, a)

    def _argreduce(self, st, d):
        b = self.b
        ct = compute_type(d)
        is_max = st.op == "argmax"
        (var,) = st.inner
        if _keep_rolled(var):
            return self._argreduce_two_pass(st, d, var)
        best = b.alloca(ct, name=st.acc + "_best")
        besti = b.alloca(I64, name=st.acc + "_idx")
        b.store(self._identity("max" if is_max else "min", d, ct), best)
        b.store(_c64(-1), besti)

        def body():
            self.memo = {}
            x = self.value(st.value)
            cur = b.load(best, typ=ct)
            first = b.icmp_signed("<", b.load(besti, typ=I64), _c64(0))
            if d.is_floating:
                better = b.fcmp_ordered(">" if is_max else "<", x, cur)
                xnan = b.fcmp_unordered("uno", x, x)
                curnan = b.fcmp_unordered("uno", cur, cur)
                better = b.or_(better, b.and_(xnan, b.not_(curnan)))
                better = b.and_(better, b.not_(curnan))
            else:
                signed = d.is_signed and not d.is_bool
                op = ">" if is_max else "<"
                better = b.icmp_signed(op, x, cur) if signed else b.icmp_unsigned(op, x, cur)
            better = b.or_(better, first)
            b.store(b.select(better, x, cur), best)
            b.store(b.select(better, self.vars[var], b.load(besti, typ=I64)), besti)
        self._nest([var], body)
        self.accs[st.acc] = b.load(besti, typ=I64)

    def _argreduce_two_pass(self, st, d, var):
        """argmax/argmin over a long row in two vectorisable passes: its maximum
        (minimum), NaN-propagating, then the first index that holds it, as an integer
        min reduction. That is the first NaN when the row has one (the extreme is NaN
        then, and only NaNs match), else the first of equal extremes (-0.0 == 0.0, as
        PyTorch's comparisons see them). The one-pass loop that carries (best, index)
        with that rule does not vectorise: 41 against 2.0 ms on a 4096x4096 float32
        argmax. Over short rows (a pool's window) the one-pass loop stays: its outer
        loop is what LLVM vectorises there, and two passes only add work."""
        b = self.b
        ct = compute_type(d)
        best = b.alloca(ct, name=st.acc + "_best")
        b.store(self._identity("max" if st.op == "argmax" else "min", d, ct), best)

        def extreme():
            self.memo = {}
            x = self.value(st.value)
            b.store(self._minmax(st.op == "argmax", b.load(best, typ=ct), x, d), best)
        self._nest([var], extreme, rolled=True)
        m = b.load(best, typ=ct)
        first = b.alloca(I64, name=st.acc + "_idx")
        b.store(_c64(var.extent), first)

        def earliest():
            self.memo = {}
            x = self.value(st.value)
            if d.is_floating:
                match = b.or_(b.fcmp_ordered("==", x, m), b.fcmp_unordered("uno", x, x))
            else:
                match = b.icmp_signed("==", x, m)
            i = b.select(match, self.vars[var], _c64(var.extent))
            cur = b.load(first, typ=I64)
            b.store(b.select(b.icmp_signed("<", i, cur), i, cur), first)
        self._nest([var], earliest, rolled=True)
        self.accs[st.acc] = b.load(first, typ=I64)

    # -------------------------------------------------------------- indices
    def index(self, x: K.Lin):
        b = self.b
        acc = None
        for atom, c in x.terms:
            v = self.atom(atom)
            term = v if c == 1 else b.mul(v, _c64(c))
            acc = term if acc is None else b.add(acc, term)
        if acc is None:
            return _c64(x.const)
        return b.add(acc, _c64(x.const)) if x.const else acc

    def atom(self, a):
        b = self.b
        if isinstance(a, K.Var):
            return self.vars[a]
        key = ("atom", a)
        if key in self.memo:
            return self.memo[key]
        if isinstance(a, (K.FloorDiv, K.Mod)):
            x = self.index(a.x)
            lo, _ = a.x.bounds()
            c = _c64(a.c)
            if lo >= 0:
                r = b.udiv(x, c) if isinstance(a, K.FloorDiv) else b.urem(x, c)
            else:
                q = b.sdiv(x, c)
                rem = b.srem(x, c)
                neg = b.icmp_signed("<", rem, _c64(0))
                if isinstance(a, K.FloorDiv):
                    r = b.select(neg, b.sub(q, _c64(1)), q)
                else:
                    r = b.select(neg, b.add(rem, c), rem)
        elif isinstance(a, K.Clamp):
            x = self.index(a.x)
            x = b.select(b.icmp_signed("<", x, _c64(a.lo)), _c64(a.lo), x)
            r = b.select(b.icmp_signed(">", x, _c64(a.hi)), _c64(a.hi), x)
        elif isinstance(a, K.ValueIndex):
            v = self.value(a.value)
            v = self.convert(v, K.value_dtype(a.value), dt.int64)
            size = _c64(a.size)
            bad = b.or_(b.icmp_signed("<", v, b.neg(size)), b.icmp_signed(">=", v, size))
            self.flag_error(bad, K.STATUS_INDEX_OUT_OF_RANGE)
            w = b.select(b.icmp_signed("<", v, _c64(0)), b.add(v, size), v)
            w = b.select(b.icmp_signed("<", w, _c64(0)), _c64(0), w)
            r = b.select(b.icmp_signed(">=", w, size), _c64(max(a.size - 1, 0)), w)
        else:
            raise TypeError(a)
        self.memo[key] = r
        return r

    def address(self, buf: K.Buffer, index):
        flat = K.linearize(index, buf.shape) - self.bases[id(buf)]
        return self.b.gep(self.ptr[id(buf)], [self.index(flat)],
                          source_etype=storage_type(buf.dtype), inbounds=True)

    # -------------------------------------------------------------- values
    def value(self, v):
        if v in self.memo:
            return self.memo[v]
        cached = self.row_cache.get(v)
        if cached is not None and self.k.stages[self.stage_no].inner != self.row_inner:
            cached = None   # an outer-level stage (no row loop) computes its own value
        if cached is not None and self.stage_no > cached[0]:
            r = self.b.load(self._row_slot(cached[1]), typ=cached[1].allocated_type)
        else:
            r = self._value(v)
            if cached is not None and self.stage_no == cached[0]:
                self.b.store(r, self._row_slot(cached[1]))
        self.memo[v] = r
        return r

    # -------------------------------------------------------------- row cache
    def _plan_row_cache(self):
        """{value: (first stage, scratch array)} for expensive values that several
        stages of a row-wise kernel compute at the same inner points (softmax's
        exp(x - max) in its sum and in its output): the first stage to compute one
        keeps the row in a stack array (L1-resident), later stages read it back."""
        stages = [st for st in self.k.stages if st.inner]
        self.row_inner = None
        if len(stages) < 2 or len({tuple(st.inner) for st in stages}) != 1:
            return {}
        self.row_inner = stages[0].inner
        n = 1
        for v in stages[0].inner:
            n *= v.extent
        if n > ROW_CACHE_ELEMENTS:
            return {}
        uses = {}
        for j, st in enumerate(self.k.stages):
            if not st.inner:
                continue
            for v in K.walk_values(st.value):
                if isinstance(v, K.Compute) and v.op in K.TRANSCENDENTAL:
                    uses.setdefault(v, []).append(j)
        shared = {v: js for v, js in uses.items() if len(set(js)) > 1}
        # keep the outermost shared expressions (a cached exp(x - m) makes x - m moot)
        inside = set()
        for v in shared:
            for w in K.walk_values(v):
                if w is not v and w in shared:
                    inside.add(w)
        out = {}
        b = self.b
        entry = self.fn.entry_basic_block
        for v, js in shared.items():
            if v in inside:
                continue
            with b.goto_block(entry):
                b.position_at_start(entry)
                slot = b.alloca(compute_type(v.dtype), size=n, name="row")
                slot.align = 64
            out[v] = (min(js), slot)
        return out

    def _row_slot(self, slot):
        inner = self.k.stages[self.stage_no].inner
        flat, stride = None, 1
        b = self.b
        for var in reversed(inner):
            term = self.vars[var] if stride == 1 else b.mul(self.vars[var], _c64(stride))
            flat = term if flat is None else b.add(flat, term)
            stride *= var.extent
        return b.gep(slot, [flat], source_etype=slot.allocated_type, inbounds=True)

    def _value(self, v):
        b = self.b
        if isinstance(v, K.Load):
            ptr = self.address(v.buffer, v.index)
            return self.to_compute(b.load(ptr, typ=storage_type(v.buffer.dtype)), v.buffer.dtype)
        if isinstance(v, K.Const):
            return self.const(v.value, v.dtype)
        if isinstance(v, K.IndexValue):
            return self.convert(self.index(v.index), dt.int64, v.dtype)
        if isinstance(v, K.InRange):
            i = self.index(v.index)
            ok = b.and_(b.icmp_signed(">=", i, _c64(v.lo)), b.icmp_signed("<", i, _c64(v.hi)))
            if v.step > 1:
                rem = b.srem(b.sub(i, _c64(v.lo)), _c64(v.step))
                ok = b.and_(ok, b.icmp_signed("==", rem, _c64(0)))
            return ok
        if isinstance(v, K.AccRef):
            return self.accs[v.name]
        if isinstance(v, K.CheckIndex):
            self.index(v.index)   # records an out-of-range index in the status word
            return self.value(v.value)
        if isinstance(v, K.RandValue):
            return self.rand(v)
        if isinstance(v, K.Compute):
            args = [self.value(a) for a in v.args]
            return self.compute(v, args)
        raise TypeError(v)
