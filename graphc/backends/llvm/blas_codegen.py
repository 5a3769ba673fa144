"""LLVM code for `MatmulKernel`: a loop over batch points, one cblas GEMM call each.

Operands are strided views of buffers (kernel_ir.StridedView): a permuted operand is a
BLAS transpose flag and a leading dimension, a broadcast batch dim is a zero stride, so
no operand is ever copied. bfloat16 (stored as float32) uses sgemm and rounds the
result to bfloat16 in place; K == 0 writes zeros (or, accumulating, leaves the addend).
An accumulating kernel (`addmm`) passes its alpha, evaluated once, and beta = 1.
"""
from __future__ import annotations

from llvmlite import ir

from .. import kernel_ir as K
from ...passes.fusion import normalize_matmul_view
from . import blas
from .types import F32, F64, I32, I64, KERNEL_TYPE, PTR, c64 as _c64, counted_loop, \
    storage_type
from .values import ValueLowering

ROW_MAJOR, NO_TRANS, TRANS = 101, 111, 112


def emit_matmul(mb, k, name):
    info = blas.find()
    it = I64 if info["ilp64"] else I32
    prec = "d" if k.dtype.short == "f64" else "s"
    ft = F64 if prec == "d" else F32
    mod = mb.module
    gemm_ty = ir.FunctionType(ir.VoidType(), [I32, I32, I32, it, it, it, ft, PTR, it, PTR, it,
                                              ft, PTR, it])
    gemm = mod.globals.get(blas.SYMBOLS[prec]) or ir.Function(mod, gemm_ty, blas.SYMBOLS[prec])
    fn = ir.Function(mod, KERNEL_TYPE, name)
    table, lo, hi, status = fn.args
    entry = fn.append_basic_block("entry")
    b = ir.IRBuilder(entry)

    def buf_ptr(buf):
        p = b.gep(table, [_c64(mb.slots[buf])], source_etype=PTR, inbounds=True)
        return b.load(p, typ=PTR)

    a_ptr, b_ptr, c_ptr = buf_ptr(k.a.buffer), buf_ptr(k.b.buffer), buf_ptr(k.out)
    m, kk = k.a.shape[-2:]
    n = k.b.shape[-1]
    batch = k.out.shape[:-2]
    nbatch = 1
    for s in batch:
        nbatch *= s
    if m * n * nbatch == 0:
        b.ret_void()
        return
    if kk == 0 and k.accumulate:   # nothing to add
        b.ret_void()
        return
    if kk == 0:
        memset = mb.math.declare("llvm.memset.p0.i64", ir.VoidType(), [PTR, ir.IntType(8), I64,
                                                                       ir.IntType(1)])
        b.call(memset, [c_ptr, ir.Constant(ir.IntType(8), 0),
                        _c64(k.out.nbytes), ir.Constant(ir.IntType(1), 0)])
        b.ret_void()
        return
    alpha = ir.Constant(ft, 1.0) if k.alpha is None else \
        _ScalarValue(mb, b, buf_ptr, status).value(k.alpha)
    beta = ir.Constant(ft, 1.0 if k.accumulate else 0.0)
    sa, ta, lda = normalize_matmul_view(k.a.shape, k.a.strides)
    sb, tb, ldb = normalize_matmul_view(k.b.shape, k.b.strides)

    def c(v, t=it):
        return ir.Constant(t, v)
    # for p in range(nbatch): decompose p into batch indices and call GEMM
    with counted_loop(b, _c64(0), _c64(nbatch), name="batch") as p:
        a_off, b_off = _c64(k.a.offset), _c64(k.b.offset)
        rest = p
        for d in reversed(range(len(batch))):
            idx = b.urem(rest, _c64(batch[d]))
            rest = b.udiv(rest, _c64(batch[d]))
            a_off = b.add(a_off, b.mul(idx, _c64(sa[d])))
            b_off = b.add(b_off, b.mul(idx, _c64(sb[d])))
        c_off = b.mul(p, _c64(m * n))
        ap = b.gep(a_ptr, [a_off], source_etype=ft)
        bp = b.gep(b_ptr, [b_off], source_etype=ft)
        cp = b.gep(c_ptr, [c_off], source_etype=ft)
        b.call(gemm, [c(ROW_MAJOR, I32), c(TRANS if ta else NO_TRANS, I32),
                      c(TRANS if tb else NO_TRANS, I32), c(m), c(n), c(kk),
                      alpha, ap, c(lda), bp, c(ldb), beta, cp, c(n)])
        if k.dtype.short == "bf16":
            _round_bf16_inplace(b, cp, m * n)
    b.ret_void()


def _round_bf16_inplace(b, ptr, count):
    with counted_loop(b, _c64(0), _c64(count), name="round") as i:
        q = b.gep(ptr, [i], source_etype=F32)
        x = b.load(q, typ=F32)
        bits = b.bitcast(x, I32)
        lsb = b.and_(b.lshr(bits, ir.Constant(I32, 16)), ir.Constant(I32, 1))
        r = b.and_(b.add(b.add(bits, ir.Constant(I32, 0x7FFF)), lsb),
                   ir.Constant(I32, 0xFFFF0000))
        y = b.select(b.fcmp_unordered("uno", x, x), x, b.bitcast(r, F32))
        b.store(y, q)


class _ScalarValue(ValueLowering):
    """A 0-d value expression (an addmm's alpha: constants, loads of 0-d buffers and
    elementwise ops over them) emitted once, before the GEMM calls."""

    def __init__(self, mb, builder, buf_ptr, status):
        self.mb, self.b, self.math = mb, builder, mb.math
        self._buf_ptr, self._status = buf_ptr, status

    def flag_error(self, bad, code: int):
        b = self.b
        b.store(b.select(bad, _c64(code), b.load(self._status, typ=I64)), self._status)

    def index(self, x: K.Lin):
        assert not x.atoms(), x   # a 0-d value has no loop variables
        return _c64(x.const)

    def value(self, v):
        if isinstance(v, K.Const):
            return self.const(v.value, v.dtype)
        if isinstance(v, K.Load):
            d = v.buffer.dtype
            return self.to_compute(self.b.load(self._buf_ptr(v.buffer), typ=storage_type(d)), d)
        if isinstance(v, K.Compute):
            return self.compute(v, [self.value(a) for a in v.args])
        if isinstance(v, K.RandValue):
            return self.rand(v)
        raise TypeError(f"GEMM alpha: unsupported scalar expression {v!r}")
