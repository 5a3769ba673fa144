"""LLVM code for `SortKernel`: a stable argsort of each row, natively.

Per row (the rows of [lo, hi) that this call runs; the executor splits rows across
threads):

 1. keys: each value becomes an unsigned integer whose order is the sort order
    (ir/ops.py `sort_keys`: -0.0 -> +0.0, float bits mapped to a monotone unsigned
    integer, NaN the largest key, signed integers with the sign bit flipped, every bit
    flipped for a descending sort). Types of up to 32 bits get a 32-bit key, packed
    with the element's index into one uint64 (key << 32 | index): all packed keys
    differ, so the plain unsigned order of the packed words *is* the stable order, and
    the sort moves one word per element. 64-bit types (int64, float64) keep a separate
    int64 index array that moves with the keys, and the merge is stable (on equal keys
    it takes the left run first).
 2. insertion sort of runs of RUN elements, then bottom-up merge passes, ping-ponging
    between the key array and a scratch array (O(n log n) comparisons, sequential
    memory access). The merge's inner loop is branch-free (selects), its tails memcpy.
 3. the indices are written to the row of the int64 output.

The scratch (2 or 4 words per element of one row) is malloc'ed once per call and
freed at its end: a row can be far larger than a thread's stack, and an arena slot
sized for every row would cost rows times as much. A failed malloc sets status 3
(STATUS_NO_MEMORY), which the executor reports as a MemoryError.
"""
from __future__ import annotations

from llvmlite import ir

from ..kernel_ir import STATUS_NO_MEMORY
from .types import (F32, I1, I32, I64, KERNEL_TYPE, PTR, c64 as _c64, counted_loop,
                    storage_type)

RUN = 16               # elements per insertion-sorted run before merging


def _c32(v):
    return ir.Constant(I32, v)


def _min(b, x, y):
    return b.select(b.icmp_signed("<", x, y), x, y)


def _memcpy(mb, b, dst, src, nbytes):
    fn = mb.math.declare("llvm.memcpy.p0.p0.i64", ir.VoidType(), [PTR, PTR, I64, I1])
    b.call(fn, [dst, src, nbytes, ir.Constant(I1, 0)])


def _at(b, p, i, ty=I64):
    return b.gep(p, [i], source_etype=ty, inbounds=True)


def _sort_helper(mb, paired):
    """`i1 graphc_sort_u64[_pairs](ptr keys, ptr ktmp, ptr idx, ptr itmp, i64 n)`: sorts
    keys[0:n] (unsigned), stably, moving idx[] along when `paired`. Returns 1 when the
    result ended in the scratch arrays (ktmp, itmp), 0 when in keys, idx."""
    name = "graphc_sort_u64_pairs" if paired else "graphc_sort_u64"
    if name in mb._helpers:
        return mb._helpers[name]
    fn = ir.Function(mb.module, ir.FunctionType(I1, [PTR, PTR, PTR, PTR, I64]), name)
    fn.linkage = "internal"
    for a in fn.args[:4]:
        a.add_attribute("noalias")
    keys, ktmp, idx, itmp, n = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))

    # -- insertion sort of each run [s, min(s + RUN, n))
    with counted_loop(b, _c64(0), n, _c64(RUN), "run") as s:
        e = _min(b, b.add(s, _c64(RUN)), n)
        with counted_loop(b, b.add(s, _c64(1)), e, name="ins") as i:
            v = b.load(_at(b, keys, i), typ=I64)
            p = b.load(_at(b, idx, i), typ=I64) if paired else None
            pre = b.block
            head = fn.append_basic_block("shift.head")
            check = fn.append_basic_block("shift.check")
            move = fn.append_basic_block("shift.move")
            place = fn.append_basic_block("shift.place")
            b.branch(head)
            b.position_at_end(head)
            j = b.phi(I64, name="j")
            j.add_incoming(i, pre)
            b.cbranch(b.icmp_signed(">", j, s), check, place)
            b.position_at_end(check)
            jm = b.sub(j, _c64(1))
            w = b.load(_at(b, keys, jm), typ=I64)
            b.cbranch(b.icmp_unsigned(">", w, v), move, place)   # strict: stable
            b.position_at_end(move)
            b.store(w, _at(b, keys, j))
            if paired:
                b.store(b.load(_at(b, idx, jm), typ=I64), _at(b, idx, j))
            j.add_incoming(jm, move)
            b.branch(head)
            b.position_at_end(place)
            b.store(v, _at(b, keys, j))
            if paired:
                b.store(p, _at(b, idx, j))

    # -- merge passes: runs of `width` from src into dst, then swap
    pre = b.block
    phead = fn.append_basic_block("pass.head")
    pbody = fn.append_basic_block("pass.body")
    pdone = fn.append_basic_block("pass.done")
    b.branch(phead)
    b.position_at_end(phead)
    width = b.phi(I64, name="width")
    flipped = b.phi(I1, name="flipped")       # 1: the current data is in the scratch
    width.add_incoming(_c64(RUN), pre)
    flipped.add_incoming(ir.Constant(I1, 0), pre)
    b.cbranch(b.icmp_signed("<", width, n), pbody, pdone)
    b.position_at_end(pbody)
    src = b.select(flipped, ktmp, keys)
    dst = b.select(flipped, keys, ktmp)
    isrc = b.select(flipped, itmp, idx) if paired else None
    idst = b.select(flipped, idx, itmp) if paired else None
    with counted_loop(b, _c64(0), n, b.add(width, width), "merge") as lo:
        mid = _min(b, b.add(lo, width), n)
        hi = _min(b, b.add(mid, width), n)
        # branch-free main loop while both runs have elements
        mpre = b.block
        mhead = fn.append_basic_block("m.head")
        mbody = fn.append_basic_block("m.body")
        mtail = fn.append_basic_block("m.tail")
        b.branch(mhead)
        b.position_at_end(mhead)
        i = b.phi(I64, name="i")
        j = b.phi(I64, name="j")
        k = b.phi(I64, name="k")
        i.add_incoming(lo, mpre)
        j.add_incoming(mid, mpre)
        k.add_incoming(lo, mpre)
        b.cbranch(b.and_(b.icmp_signed("<", i, mid), b.icmp_signed("<", j, hi)), mbody, mtail)
        b.position_at_end(mbody)
        a = b.load(_at(b, src, i), typ=I64)
        c = b.load(_at(b, src, j), typ=I64)
        right = b.icmp_unsigned("<", c, a)     # strict: an equal key takes the left run
        b.store(b.select(right, c, a), _at(b, dst, k))
        if paired:
            pa = b.load(_at(b, isrc, i), typ=I64)
            pc = b.load(_at(b, isrc, j), typ=I64)
            b.store(b.select(right, pc, pa), _at(b, idst, k))
        step = b.zext(right, I64)
        i.add_incoming(b.add(i, b.sub(_c64(1), step)), mbody)
        j.add_incoming(b.add(j, step), mbody)
        k.add_incoming(b.add(k, _c64(1)), mbody)
        b.branch(mhead)
        b.position_at_end(mtail)
        # what is left of either run, in order (one of the two is empty)
        left_n = b.sub(mid, i)
        right_n = b.sub(hi, j)
        k2 = b.add(k, left_n)
        for s_arr, d_arr in ((src, dst),) + (((isrc, idst),) if paired else ()):
            _memcpy(mb, b, _at(b, d_arr, k), _at(b, s_arr, i), b.mul(left_n, _c64(8)))
            _memcpy(mb, b, _at(b, d_arr, k2), _at(b, s_arr, j), b.mul(right_n, _c64(8)))
    width.add_incoming(b.add(width, width), b.block)
    flipped.add_incoming(b.xor(flipped, ir.Constant(I1, 1)), b.block)
    b.branch(phead)
    b.position_at_end(pdone)
    b.ret(flipped)
    mb._helpers[name] = fn
    return fn


def _key(b, v, dtype, descending):
    """(key, bits): the unsigned sort key of value `v` (loaded in its storage type)."""
    short = dtype.short
    if short in ("f16", "bf16", "f32", "f64"):
        if short == "f16":
            v = b.fpext(v, F32)
        ft = v.type
        it = I64 if short == "f64" else I32
        w = it.width
        zero = ir.Constant(ft, 0.0)
        v0 = b.select(b.fcmp_ordered("==", v, zero), zero, v)     # -0.0 -> +0.0
        bits = b.bitcast(v0, it)
        mask = b.or_(b.ashr(bits, ir.Constant(it, w - 1)), ir.Constant(it, 1 << (w - 1)))
        key = b.xor(bits, mask)
        key = b.select(b.fcmp_unordered("uno", v, v), ir.Constant(it, (1 << w) - 1), key)
    elif short == "i32":
        key, w = b.xor(v, _c32(1 << 31)), 32
    elif short == "i64":
        key, w = b.xor(v, _c64(1 << 63)), 64
    else:   # b8, u8: unsigned bytes
        key, w = b.zext(v, I32), 32
    if descending:
        key = b.xor(key, ir.Constant(key.type, (1 << w) - 1))
    return key, w


def emit_sort(mb, k, name):
    """Define `void name(ptr table, i64 lo, i64 hi, ptr status)` for SortKernel `k`."""
    fn = ir.Function(mb.module, KERNEL_TYPE, name)
    table, lo, hi, status = fn.args
    b = ir.IRBuilder(fn.append_basic_block("entry"))
    n = k.size
    shape = k.out.shape
    rows = k.outer[0].extent
    if rows * n == 0:
        b.ret_void()
        return
    d = k.dim if shape else None
    other = [a for a in range(len(shape)) if a != d]
    out_strides = k.out.strides()
    xs = k.x.strides[d] if shape else 0
    os_ = out_strides[d] if shape else 0
    paired = k.dtype.short in ("i64", "f64") or n >= 1 << 32
    st = storage_type(k.dtype)

    def buf_ptr(buf):
        p = b.gep(table, [_c64(mb.slots[buf])], source_etype=PTR, inbounds=True)
        return b.load(p, typ=PTR)
    xp, op = buf_ptr(k.x.buffer), buf_ptr(k.out)

    malloc = mb.math.declare("malloc", PTR, [I64])
    free = mb.math.declare("free", ir.VoidType(), [PTR])
    words = 4 if paired else 2
    mem = b.call(malloc, [_c64(words * n * 8)])
    ok = fn.append_basic_block("ok")
    fail = fn.append_basic_block("nomem")
    b.cbranch(b.icmp_unsigned("==", b.ptrtoint(mem, I64), _c64(0)), fail, ok)
    b.position_at_end(fail)
    b.store(ir.Constant(I64, STATUS_NO_MEMORY), status)
    b.ret_void()
    b.position_at_end(ok)
    keys = mem
    ktmp = _at(b, mem, _c64(n))
    idx = _at(b, mem, _c64(2 * n)) if paired else ir.Constant(PTR, None)
    itmp = _at(b, mem, _c64(3 * n)) if paired else ir.Constant(PTR, None)
    sorter = _sort_helper(mb, paired)

    with counted_loop(b, lo, hi, name="row") as r:
        # the row's first element in x and in out
        xoff, ooff, rest = _c64(k.x.offset), _c64(0), r
        for a in reversed(other):
            ia = b.urem(rest, _c64(shape[a]))
            rest = b.udiv(rest, _c64(shape[a]))
            xoff = b.add(xoff, b.mul(ia, _c64(k.x.strides[a])))
            ooff = b.add(ooff, b.mul(ia, _c64(out_strides[a])))
        with counted_loop(b, _c64(0), _c64(n), name="fill") as j:
            v = b.load(b.gep(xp, [b.add(xoff, b.mul(j, _c64(xs)))], source_etype=st), typ=st)
            if k.dtype.short == "b8":
                v = b.icmp_unsigned("!=", v, ir.Constant(st, 0))
            key, w = _key(b, v, k.dtype, k.descending)
            if paired:
                b.store(b.zext(key, I64) if w < 64 else key, _at(b, keys, j))
                b.store(j, _at(b, idx, j))
            else:
                b.store(b.or_(b.shl(b.zext(key, I64), _c64(32)), j), _at(b, keys, j))
        flipped = b.call(sorter, [keys, ktmp, idx, itmp, _c64(n)])
        res = b.select(flipped, itmp, idx) if paired else b.select(flipped, ktmp, keys)
        with counted_loop(b, _c64(0), _c64(n), name="out") as j:
            word = b.load(_at(b, res, j), typ=I64)
            if not paired:
                word = b.and_(word, _c64(0xFFFFFFFF))
            b.store(word, b.gep(op, [b.add(ooff, b.mul(j, _c64(os_)))], source_etype=I64))
    b.call(free, [mem])
    b.ret_void()
