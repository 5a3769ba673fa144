"""Lowering of kernel_ir value expressions to LLVM instructions: elementwise ops with
graphc's semantics per dtype (see ir/ops.py), conversions, float16/bfloat16 rounding,
and the counter-based random generator. A mixin of codegen._LoopKernel: it uses the
kernel's builder `self.b`, `self.math` (mathlib) and `self.mb` (module helpers).

Semantics that differ from a plain C translation, all matching the interpreter:
integer division or modulo by zero gives 0 (and INT_MIN // -1 wraps); float -> int
truncates, NaN and out-of-range give the minimum of int32 (int32) or int64 (int64,
uint8: its low byte), PyTorch's x86 answer (`float_to_int`);
min/max propagate NaN; sign(nan) = 0; float16 results are rounded after every op.
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir

from .. import kernel_ir as K
from ...ir import dtypes as dt
from ...ir.ops import check_code
from .types import F16, F32, F64, I1, I8, I32, I64, c64 as _c64, compute_type


# unary float ops lowered to the libm function of the same name (tanf for float32)
_LIBM_UNARY = frozenset({"tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh",
                         "atanh", "log2", "log10", "exp2"})


class ValueLowering:
    def const(self, value, d):
        t = compute_type(d)
        if d.is_bool:
            return ir.Constant(I1, int(bool(value)))
        if d.is_floating:
            x = float(np.array(value, dtype=d.np if d.short != "bf16" else np.float32))
            if d.short == "bf16":
                from ..interp import round_to_bfloat16
                x = float(round_to_bfloat16(np.array([x], np.float32))[0])
            return ir.Constant(t, x)
        return ir.Constant(t, int(np.array(value).astype(d.np)))

    # -------------------------------------------------------------- conversions
    def to_compute(self, x, d):
        b = self.b
        if d.is_bool:
            return b.icmp_unsigned("!=", x, ir.Constant(I8, 0))
        if d.short == "f16":
            return b.fpext(x, F32)
        return x

    def to_storage(self, x, d):
        b = self.b
        if d.is_bool:
            return b.zext(x, I8)
        if d.short == "f16":
            return b.fptrunc(x, F16)
        return x

    def round(self, x, d):
        """Round a float compute value to float16/bfloat16 precision (no-op otherwise)."""
        b = self.b
        if d.short == "f16":
            return b.fpext(b.fptrunc(x, F16), F32)
        if d.short == "bf16":
            bits = b.bitcast(x, I32)
            lsb = b.and_(b.lshr(bits, ir.Constant(I32, 16)), ir.Constant(I32, 1))
            r = b.and_(b.add(b.add(bits, ir.Constant(I32, 0x7FFF)), lsb),
                       ir.Constant(I32, 0xFFFF0000))
            y = b.bitcast(r, F32)
            return b.select(b.fcmp_unordered("uno", x, x), x, y)
        return x

    def convert(self, x, src: dt.DType, dst: dt.DType):
        """cast semantics of ops.py: float->int truncates, x->bool is x != 0."""
        b = self.b
        if src is dst:
            return x
        st, tt = compute_type(src), compute_type(dst)
        if dst.is_bool:
            if src.is_floating:
                return b.fcmp_unordered("!=", x, ir.Constant(st, 0.0))
            return b.icmp_unsigned("!=", x, ir.Constant(st, 0))
        if src.is_bool:
            return b.uitofp(x, tt) if dst.is_floating else b.zext(x, tt)
        if dst.is_floating:
            if src.is_floating:
                if st is F64 and tt is F32:
                    x = b.fptrunc(x, F32)
                elif st is F32 and tt is F64:
                    x = b.fpext(x, F64)
            elif src.is_signed:
                x = b.sitofp(x, tt)
            else:
                x = b.uitofp(x, tt)
            return self.round(x, dst)
        if src.is_floating:
            return self.float_to_int(x, st, dst)
        if tt.width < st.width:
            return b.trunc(x, tt)
        if tt.width > st.width:
            return b.sext(x, tt) if src.is_signed else b.zext(x, tt)
        return x

    def float_to_int(self, x, st, dst: dt.DType):
        """float -> integer as PyTorch's CPU kernels do it on x86: truncate toward zero,
        and NaN, +-inf and values whose truncation the converting type cannot hold give
        that type's minimum (cvtt*'s "integer indefinite"). int32 converts as int32 (3e9
        gives INT32_MIN, not the low half of the int64 3000000000); int64 and uint8 as
        int64, uint8 then keeping the low byte (PyTorch casts to uint8 through int64).
        fptosi of an out-of-range value is poison, so it only ever sees values in range:
        the others are replaced by 0 before it and by the minimum after it."""
        b = self.b
        wide = I32 if dst is dt.int32 else I64
        lim = ir.Constant(st, float(1 << (wide.width - 1)))   # 2**31 or 2**63: exact
        ax = b.call(self.math.intrinsic("llvm.fabs", st), [x])
        ok = b.fcmp_ordered("<", ax, lim)   # false for NaN
        # llvm.fptosi.sat with the same select is as well defined, but LLVM (22) leaves it
        # scalar (cvttss2si per element); this form vectorises to one masked vcvttps2dq
        # merging into the minimum, 16 per instruction
        i = b.fptosi(b.select(ok, x, ir.Constant(st, 0.0)), wide)
        i = b.select(ok, i, ir.Constant(wide, -(1 << (wide.width - 1))))
        tt = compute_type(dst)
        return b.trunc(i, tt) if tt.width < wide.width else i

    # -------------------------------------------------------------- elementwise ops
    def compute(self, v: K.Compute, args):
        op, d = v.op, v.dtype
        if op == "check":
            x, ok = args
            self.flag_error(self.b.not_(ok), check_code(v.attr("message")))
            return x
        if op == "cast":
            return self.convert(args[0], K.value_dtype(v.args[0]), d)
        if op == "where":
            return self.b.select(args[0], args[1], args[2])
        if op in ("eq", "ne", "lt", "le", "gt", "ge"):
            return self.compare(op, args, K.value_dtype(v.args[0]))
        if op in ("isnan", "isfinite"):
            src = K.value_dtype(v.args[0])
            x = args[0]
            if not src.is_floating:
                return ir.Constant(I1, int(op == "isfinite"))
            if op == "isnan":
                return self.b.fcmp_unordered("uno", x, x)
            ax = self.b.call(self.math.intrinsic("llvm.fabs", x.type), [x])
            return self.b.fcmp_ordered("<", ax, ir.Constant(x.type, math.inf))
        if op in ("logical_not", "logical_and", "logical_or", "logical_xor"):
            b = self.b
            if op == "logical_not":
                return b.xor(args[0], ir.Constant(I1, 1))
            return {"logical_and": b.and_, "logical_or": b.or_,
                    "logical_xor": b.xor}[op](args[0], args[1])
        if d.is_floating:
            r = self.float_op(op, args, d, v)
            return self.round(r, d)
        return self.int_op(op, args, d)

    def compare(self, op, args, d):
        b = self.b
        a, c = args
        sym = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
        if d.is_floating:
            if op == "ne":
                return b.fcmp_unordered("!=", a, c)
            return b.fcmp_ordered(sym, a, c)
        if d.is_signed and not d.is_bool:
            return b.icmp_signed(sym, a, c)
        return b.icmp_unsigned(sym, a, c)

    def float_op(self, op, args, d, v):
        b, m = self.b, self.math
        x = args[0]
        t = x.type
        one = ir.Constant(t, 1.0)
        f32 = t is F32

        def intr(name, *xs):
            return b.call(m.intrinsic(name, t), list(xs))

        def libm(name):
            return b.call(m.libm(name + ("f" if f32 else ""), t), [x])

        if op == "neg":
            return b.fneg(x)
        if op == "abs":
            return intr("llvm.fabs", x)
        if op == "sign":
            z = ir.Constant(t, 0.0)
            r = b.select(b.fcmp_ordered(">", x, z), one,
                         b.select(b.fcmp_ordered("<", x, z), ir.Constant(t, -1.0), z))
            return r   # PyTorch (and ops.py): sign(nan) = 0
        if op == "exp":
            return m.call(b, "exp", x) if f32 else intr("llvm.exp", x)
        if op == "log":
            return m.call(b, "log", x) if f32 else intr("llvm.log", x)
        if op in ("log1p", "expm1"):
            return libm(op)
        if op == "sqrt":
            return intr("llvm.sqrt", x)
        if op == "rsqrt":
            return b.fdiv(one, intr("llvm.sqrt", x))
        if op in ("sin", "cos"):
            return intr("llvm." + op, x)
        if op == "tanh":
            return m.call(b, "tanh", x) if f32 else libm("tanh")
        if op == "erf":
            return m.call(b, "erf", x) if f32 else libm("erf")
        if op in _LIBM_UNARY:
            # glibc's tanf/asinf/... are within an ulp (numpy's float32 SIMD routines
            # within a few); scalar calls, so such a loop does not vectorise, which is
            # acceptable for functions this rare in training graphs. float16/bfloat16
            # come here as float32 and compute() rounds the result, as the reference does.
            return libm(op)
        if op == "sigmoid":
            if f32:
                return m.call(b, "sigmoid", x)
            return b.fdiv(one, b.fadd(one, intr("llvm.exp", b.fneg(x))))
        if op == "silu":
            if d.short in ("f16", "bf16"):   # x * sigmoid(x) with the sigmoid rounded
                return b.fmul(x, self.round(m.call(b, "sigmoid", x), d))
            s = m.call(b, "sigmoid", x) if f32 else \
                b.fdiv(one, b.fadd(one, intr("llvm.exp", b.fneg(x))))
            return b.fmul(x, s)
        if op == "gelu":
            if v.attr("approximate", "none") == "tanh":
                k = ir.Constant(t, math.sqrt(2 / math.pi))
                inner = b.fmul(k, b.fadd(x, b.fmul(ir.Constant(t, 0.044715),
                                                   b.fmul(b.fmul(x, x), x))))
                th = m.call(b, "tanh", inner) if f32 else \
                    b.call(m.libm("tanh", t), [inner])
                return b.fmul(b.fmul(ir.Constant(t, 0.5), x), b.fadd(one, th))
            if f32:
                return m.call(b, "gelu", x)
            e = b.call(m.libm("erf", t), [b.fmul(x, ir.Constant(t, 1 / math.sqrt(2)))])
            return b.fmul(b.fmul(ir.Constant(t, 0.5), x), b.fadd(one, e))
        if op == "relu":   # x < 0 ? 0 : x keeps -0.0 and NaN, as PyTorch does
            z = ir.Constant(t, 0.0)
            return b.select(b.fcmp_ordered("<", x, z), z, x)
        if op in ("floor", "ceil"):
            return intr("llvm." + op, x)
        if op == "round":
            return intr("llvm.roundeven", x)
        if op == "reciprocal":
            return b.fdiv(one, x)
        y = args[1] if len(args) > 1 else None
        if op == "add":
            return b.fadd(x, y)
        if op == "sub":
            return b.fsub(x, y)
        if op == "mul":
            return b.fmul(x, y)
        if op == "div":
            return b.fdiv(x, y)
        # numpy computes these as several float16 ops (each rounded) but bfloat16,
        # stored as float32, in float32: round the intermediates for float16 only
        mid = d if d.short == "f16" else dt.float32
        if op in ("floordiv", "mod"):
            return self._float_floor_divmod(op, x, y, mid, intr)
        if op == "pow":
            return b.call(m.intrinsic("llvm.pow", t), [x, y])
        if op == "maximum":
            return intr("llvm.maximum", x, y)
        if op == "minimum":
            return intr("llvm.minimum", x, y)
        if op == "fmod":
            return b.frem(x, y)     # C fmod: exact, sign of x; x fmod 0 is nan
        if op == "copysign":
            return intr("llvm.copysign", x, y)
        if op in ("atan2", "hypot"):
            # C99's special values (atan2 of signed zeros and infinities, hypot(inf, nan)
            # = inf) are libm's, as numpy's and PyTorch's
            return b.call(m.libm(op + ("f" if f32 else ""), t, 2), [x, y])
        raise NotImplementedError(f"LLVM backend: no float lowering for {op}")

    def _float_floor_divmod(self, op, x, y, mid, intr):
        """PyTorch's float floor division and remainder, the steps of ops.py's
        _float_floor_divmod: from fmod (`frem`, exact), with the intermediates rounded
        where the reference rounds them (float16)."""
        b = self.b
        t = x.type
        zero, one = ir.Constant(t, 0.0), ir.Constant(t, 1.0)
        mod = b.frem(x, y)
        adjust = b.and_(b.fcmp_unordered("!=", mod, zero),
                        b.xor(b.fcmp_ordered("<", y, zero), b.fcmp_ordered("<", mod, zero)))
        if op == "mod":
            return b.select(adjust, self.round(b.fadd(mod, y), mid), mod)
        div = self.round(b.fdiv(self.round(b.fsub(x, mod), mid), y), mid)
        div = b.select(adjust, self.round(b.fsub(div, one), mid), div)
        whole = intr("llvm.floor", div)
        above_half = b.fcmp_ordered(">", self.round(b.fsub(div, whole), mid),
                                    ir.Constant(t, 0.5))
        whole = b.select(above_half, self.round(b.fadd(whole, one), mid), whole)
        ratio = self.round(b.fdiv(x, y), mid)
        signed_zero = intr("llvm.copysign", zero, ratio)
        q = b.select(b.fcmp_unordered("!=", div, zero), whole, signed_zero)
        return b.select(b.fcmp_ordered("==", y, zero), ratio, q)

    def int_op(self, op, args, d):
        b = self.b
        x = args[0]
        t = x.type
        signed = d.is_signed and not d.is_bool
        zero = ir.Constant(t, 0)
        if op == "neg":
            return b.sub(zero, x)
        if op == "abs":
            return b.select(b.icmp_signed("<", x, zero), b.sub(zero, x), x) if signed else x
        if op == "sign":
            if not signed:
                return b.zext(b.icmp_unsigned(">", x, zero), t) if t.width > 1 else x
            pos = b.zext(b.icmp_signed(">", x, zero), t)
            neg = b.zext(b.icmp_signed("<", x, zero), t)
            return b.sub(pos, neg)
        if op == "relu":
            return b.select(b.icmp_signed(">", x, zero), x, zero) if signed else x
        if op in ("floor", "ceil", "round"):
            return x
        if op == "bitwise_not":
            return b.xor(x, ir.Constant(t, -1))
        y = args[1]
        if op in ("bitwise_and", "bitwise_or", "bitwise_xor"):
            return {"bitwise_and": b.and_, "bitwise_or": b.or_, "bitwise_xor": b.xor}[op](x, y)
        if d.is_bool:
            if op in ("add", "maximum"):
                return b.or_(x, y)
            if op in ("mul", "minimum"):
                return b.and_(x, y)
        if op == "add":
            return b.add(x, y)
        if op == "sub":
            return b.sub(x, y)
        if op == "mul":
            return b.mul(x, y)
        if op in ("maximum", "minimum"):
            return self._minmax(op == "maximum", x, y, d)
        if op in ("floordiv", "mod"):
            is_zero = b.icmp_unsigned("==", y, zero)
            safe = b.select(is_zero, ir.Constant(t, 1), y)
            if signed:
                # avoid the INT_MIN / -1 trap: numpy wraps to INT_MIN there
                minus1 = b.icmp_signed("==", safe, ir.Constant(t, -1))
                safe2 = b.select(minus1, ir.Constant(t, 1), safe)
                q = b.sdiv(x, safe2)
                r = b.srem(x, safe2)
                q = b.select(minus1, b.sub(zero, x), q)
                r = b.select(minus1, zero, r)
                adjust = b.and_(b.icmp_signed("!=", r, zero),
                                b.icmp_signed("!=", b.icmp_signed("<", r, zero),
                                              b.icmp_signed("<", safe, zero)))
                if op == "floordiv":
                    res = b.select(adjust, b.sub(q, ir.Constant(t, 1)), q)
                else:
                    res = b.select(adjust, b.add(r, safe), r)
            else:
                res = b.udiv(x, safe) if op == "floordiv" else b.urem(x, safe)
            return b.select(is_zero, zero, res)
        if op == "fmod":
            # C's truncated remainder (sign of x); by zero gives 0 (graphc's integer
            # convention), and a divisor of -1 is replaced by 1 (same remainder, 0) so
            # INT_MIN % -1 cannot trap
            is_zero = b.icmp_unsigned("==", y, zero)
            safe = b.select(is_zero, ir.Constant(t, 1), y)
            if signed:
                safe = b.select(b.icmp_signed("==", safe, ir.Constant(t, -1)),
                                ir.Constant(t, 1), safe)
                r = b.srem(x, safe)
            else:
                r = b.urem(x, safe)
            return b.select(is_zero, zero, r)
        if op == "pow":
            e = b.select(b.icmp_signed("<", y, zero), zero, y) if signed else y
            r = b.call(self.mb.ipow(t), [x, e])
            r = b.select(b.icmp_unsigned("==", e, zero), ir.Constant(t, 1), r)
            if not signed:
                return r
            # a negative exponent (ops.py's _pow_np, PyTorch): 1 for base 1, +-1 for
            # base -1 by the exponent's parity, 0 otherwise
            one, minus1 = ir.Constant(t, 1), ir.Constant(t, -1)
            odd = b.icmp_unsigned("!=", b.and_(y, one), zero)
            small = b.select(b.icmp_signed("==", x, one), one,
                             b.select(b.icmp_signed("==", x, minus1),
                                      b.select(odd, minus1, one), zero))
            return b.select(b.icmp_signed("<", y, zero), small, r)
        raise NotImplementedError(f"LLVM backend: no integer lowering for {op} on {d.name}")

    # -------------------------------------------------------------- random numbers
    def rand(self, v: K.RandValue):
        b = self.b
        seed = self.convert(self.value(v.seed), K.value_dtype(v.seed), dt.int64)
        off = self.convert(self.value(v.offset), K.value_dtype(v.offset), dt.int64)
        flat = self.index(v.flat)

        def uniform(counter):
            g = _c64(0x9E3779B97F4A7C15 - (1 << 64))
            z = b.add(b.add(b.mul(seed, g), b.mul(counter, g)), g)
            z = b.mul(b.xor(z, b.lshr(z, _c64(30))), _c64(0xBF58476D1CE4E5B9 - (1 << 64)))
            z = b.mul(b.xor(z, b.lshr(z, _c64(27))), _c64(0x94D049BB133111EB - (1 << 64)))
            z = b.xor(z, b.lshr(z, _c64(31)))
            return b.fmul(b.uitofp(b.lshr(z, _c64(11)), F64),
                          ir.Constant(F64, 1.0 / 9007199254740992.0))
        u = uniform(b.add(off, flat))
        if v.normal:
            u2 = uniform(b.add(b.add(off, _c64(1 << 62)), flat))
            lg = b.call(self.math.libm("log1p", F64), [b.fneg(u)])
            r = b.call(self.math.intrinsic("llvm.sqrt", F64), [b.fmul(ir.Constant(F64, -2.0), lg)])
            c = b.call(self.math.intrinsic("llvm.cos", F64),
                       [b.fmul(ir.Constant(F64, 2 * math.pi), u2)])
            u = b.fmul(r, c)
        return self.convert(u, dt.float64, v.dtype)
