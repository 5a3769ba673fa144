"""Branch-free float32 transcendentals emitted as LLVM IR, so loops that use them still
vectorise (libm's expf/erff are scalar calls the vectoriser cannot widen).

Each helper is an internal, always-inlined function of the kernel module:
  * exp: Cephes-style range reduction n = round(x / ln2), degree-6 polynomial on
    [-ln2/2, ln2/2], scaling by 2^n in two steps so subnormal results stay exact;
  * log: frexp by bit manipulation (subnormal inputs pre-scaled by 2^23), Cephes
    polynomial on [sqrt(1/2)-1, sqrt(2)-1];
  * erfc(a) for a >= 0: Taylor series of erf below 0.5, else the Chebyshev fit
    t*exp(-a^2 + P(t)), t = 1/(1 + a/2), relative error < 1.2e-7; erf and the exact
    gelu are built on it (gelu of a negative input uses erfc directly: no cancellation);
  * tanh: odd polynomial below 0.625, else 1 - 2/(exp(2|x|) + 1).
Special values (nan, +-inf, +-0, overflow, underflow) follow libm; tests/test_llvm_backend.py
checks each against float64 references over wide ranges.
"""
from __future__ import annotations

import math

from llvmlite import ir

import numpy as np

F32 = ir.FloatType()
_C_HI = float(np.float32(1 / math.sqrt(2)))
_C_LO = float(np.float32(1 / math.sqrt(2) - _C_HI))
I32 = ir.IntType(32)


def _f(x):
    return ir.Constant(F32, float(x))


class MathLib:
    def __init__(self, module: ir.Module, scalef: bool = False):
        """`scalef`: the target has AVX-512's vscalefps, to which `llvm.ldexp` lowers
        (elsewhere ldexp is a scalar libm call that would stop vectorisation)."""
        self.module = module
        self._cache = {}
        self.scalef = scalef

    _TWO_ARGS = ("llvm.maximum", "llvm.minimum", "llvm.copysign", "llvm.pow")
    _THREE_ARGS = ("llvm.fma", "llvm.fmuladd")

    def _poly(self, b, x, coeffs):
        """Horner, coeffs from highest degree down. Each step is `llvm.fmuladd`: one
        FMA where the host has it (half the instructions of a multiply and an add, and
        one rounding instead of two), a multiply and an add elsewhere."""
        fmuladd = self.intrinsic("llvm.fmuladd", F32)
        acc = _f(coeffs[0])
        for c in coeffs[1:]:
            acc = b.call(fmuladd, [acc, x, _f(c)])
        return acc

    def declare(self, name, ret, args):
        fn = self.module.globals.get(name)
        if fn is None:
            fn = ir.Function(self.module, ir.FunctionType(ret, args), name)
        return fn

    def intrinsic(self, name, ty):
        """An overloaded float intrinsic (llvm.exp, llvm.maximum, ...) for type `ty`."""
        suffix = {"float": "f32", "double": "f64", "half": "f16"}[str(ty)]
        nargs = 2 if name in self._TWO_ARGS else 3 if name in self._THREE_ARGS else 1
        return self.declare(f"{name}.{suffix}", ty, [ty] * nargs)

    def libm(self, name, ty, nargs=1):
        key = ("libm", name)
        if key not in self._cache:
            fnty = ir.FunctionType(ty, [ty] * nargs)
            fn = self.module.globals.get(name) or ir.Function(self.module, fnty, name)
            self._cache[key] = fn
        return self._cache[key]

    def _helper(self, name, nargs, body):
        if name in self._cache:
            return self._cache[name]
        fn = ir.Function(self.module, ir.FunctionType(F32, [F32] * nargs), f"graphc_{name}")
        fn.linkage = "internal"
        fn.attributes.add("alwaysinline")
        fn.attributes.add("nounwind")
        b = ir.IRBuilder(fn.append_basic_block())
        b.ret(body(b, *fn.args))
        self._cache[name] = fn
        return fn

    def call(self, b, name, *args):
        return b.call(getattr(self, "_fn_" + name)(), list(args))

    # ---------------------------------------------------------------- exp
    def _fn_exp(self):
        def body(b, x):
            lo, hi = _f(-104.0), _f(89.0)
            xc = b.select(b.fcmp_ordered("<", x, lo), lo, x)
            xc = b.select(b.fcmp_ordered(">", xc, hi), hi, xc)
            n = b.call(self.intrinsic("llvm.roundeven", F32), [b.fmul(xc, _f(1.4426950408889634))])
            r = b.fsub(xc, b.fmul(n, _f(0.693359375)))
            r = b.fsub(r, b.fmul(n, _f(-2.12194440e-4)))
            p = self._poly(b, r, [1.9875691500e-4, 1.3981999507e-3, 8.3334519073e-3,
                             4.1665795894e-2, 1.6666665459e-1, 5.0000001201e-1])
            p = b.fadd(b.call(self.intrinsic("llvm.fmuladd", F32), [p, b.fmul(r, r), r]),
                       _f(1.0))
            ni = b.fptosi(n, I32)
            if self.scalef:
                # one vscalefps: p * 2^n with a single rounding, subnormals included
                res = b.call(self.declare("llvm.ldexp.f32.i32", F32, [F32, I32]), [p, ni])
            else:
                # 2^n in two factors, so a subnormal result is still rounded only once
                n1 = b.ashr(ni, ir.Constant(I32, 1))
                n2 = b.sub(ni, n1)
                s1 = b.bitcast(b.shl(b.add(n1, ir.Constant(I32, 127)), ir.Constant(I32, 23)),
                               F32)
                s2 = b.bitcast(b.shl(b.add(n2, ir.Constant(I32, 127)), ir.Constant(I32, 23)),
                               F32)
                res = b.fmul(b.fmul(p, s1), s2)
            return b.select(b.fcmp_unordered("uno", x, x), x, res)
        return self._helper("expf", 1, body)

    # ---------------------------------------------------------------- log
    def _fn_log(self):
        def body(b, x):
            tiny = b.fcmp_ordered("<", x, _f(1.17549435e-38))
            xs = b.select(tiny, b.fmul(x, _f(8388608.0)), x)
            eadj = b.select(tiny, ir.Constant(I32, -23), ir.Constant(I32, 0))
            bits = b.bitcast(xs, I32)
            e = b.sub(b.and_(b.lshr(bits, ir.Constant(I32, 23)), ir.Constant(I32, 0xFF)),
                      ir.Constant(I32, 126))
            e = b.add(e, eadj)
            m = b.bitcast(b.or_(b.and_(bits, ir.Constant(I32, 0x807FFFFF)),
                                ir.Constant(I32, 0x3F000000)), F32)
            small = b.fcmp_ordered("<", m, _f(0.707106781186547524))
            e = b.select(small, b.sub(e, ir.Constant(I32, 1)), e)
            m = b.select(small, b.fsub(b.fadd(m, m), _f(1.0)), b.fsub(m, _f(1.0)))
            z = b.fmul(m, m)
            y = self._poly(b, m, [7.0376836292e-2, -1.1514610310e-1, 1.1676998740e-1,
                             -1.2420140846e-1, 1.4249322787e-1, -1.6668057665e-1,
                             2.0000714765e-1, -2.4999993993e-1, 3.3333331174e-1])
            y = b.fmul(b.fmul(y, m), z)
            ef = b.sitofp(e, F32)
            y = b.fadd(y, b.fmul(ef, _f(-2.12194440e-4)))
            y = b.fsub(y, b.fmul(z, _f(0.5)))
            r = b.fadd(b.fadd(m, y), b.fmul(ef, _f(0.693359375)))
            inf = _f(math.inf)
            r = b.select(b.fcmp_ordered("==", x, inf), inf, r)
            r = b.select(b.fcmp_ordered("==", x, _f(0.0)), _f(-math.inf), r)
            nan = _f(math.nan)
            r = b.select(b.fcmp_ordered("<", x, _f(0.0)), nan, r)
            return b.select(b.fcmp_unordered("uno", x, x), x, r)
        return self._helper("logf", 1, body)

    # ---------------------------------------------------------------- erfc / erf / gelu
    def _fn_erfc_pos(self):
        """erfc(a + a_lo) for a >= 0 (a may be +inf), a_lo a tiny correction of a.
        Relative error ~1.2e-7 everywhere (no series branch: callers that need erf's
        relative accuracy near 0 add their own)."""
        def body(b, a, a_lo):
            ac = b.select(b.fcmp_ordered(">", a, _f(10.0)), _f(10.0), a)
            t = b.fdiv(_f(1.0), b.fadd(_f(1.0), b.fmul(ac, _f(0.5))))
            p = self._poly(b, t, [0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,
                             -0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223])
            # exp(p - a^2) with the argument kept as a float pair (hi + lo): for large a
            # the rounding of a^2 and of the sum alone would cost tens of ulps.
            fma = self.intrinsic("llvm.fma", F32)
            sq = b.fmul(ac, ac)
            sq_err = b.call(fma, [ac, ac, b.fneg(sq)])          # a*a - sq, exactly
            sq_err = b.fadd(sq_err, b.fmul(b.fadd(ac, ac), a_lo))
            hi = b.fsub(p, sq)
            bv = b.fsub(hi, p)                                   # TwoSum(p, -sq)
            lo = b.fadd(b.fsub(p, b.fsub(hi, bv)), b.fsub(b.fneg(sq), bv))
            lo = b.fsub(lo, sq_err)
            e = self.call(b, "exp", hi)
            big = b.fmul(t, b.fadd(e, b.fmul(e, lo)))
            return b.select(b.fcmp_ordered(">", a, _f(10.0)), _f(0.0), big)   # also a = inf
        return self._helper("erfc_pos", 2, body)

    def _fn_erf(self):
        def body(b, x):
            a = b.call(self.intrinsic("llvm.fabs", F32), [x])
            c = self.call(b, "erfc_pos", a, _f(0.0))
            # below 0.5 use the series directly for full relative accuracy near 0
            z = b.fmul(a, a)
            series = self._poly(b, z, [1 / 9360, -1 / 1320, 1 / 216, -1 / 42, 1 / 10, -1 / 3, 1.0])
            small = b.fmul(b.fmul(series, a), _f(2 / math.sqrt(math.pi)))
            r = b.select(b.fcmp_ordered("<", a, _f(0.5)), small, b.fsub(_f(1.0), c))
            r = b.call(self.intrinsic("llvm.copysign", F32), [r, x])
            return b.select(b.fcmp_unordered("uno", x, x), x, r)
        return self._helper("erff", 1, body)

    def _fn_gelu(self):
        def body(b, x):
            # z = x / sqrt(2) as a float pair: erfc's relative sensitivity grows like 2z^2
            zz = b.fmul(x, _f(_C_HI))
            z_lo = b.fadd(b.call(self.intrinsic("llvm.fma", F32), [x, _f(_C_HI), b.fneg(zz)]),
                          b.fmul(x, _f(_C_LO)))
            a = b.call(self.intrinsic("llvm.fabs", F32), [zz])
            a_lo = b.select(b.fcmp_ordered("<", zz, _f(0.0)), b.fneg(z_lo), z_lo)
            c = self.call(b, "erfc_pos", a, a_lo)
            one_plus_erf = b.select(b.fcmp_ordered("<", zz, _f(0.0)), c, b.fsub(_f(2.0), c))
            r = b.fmul(b.fmul(x, _f(0.5)), one_plus_erf)
            return b.select(b.fcmp_unordered("uno", x, x), x, r)
        return self._helper("geluf", 1, body)

    # ---------------------------------------------------------------- tanh / sigmoid
    def _fn_tanh(self):
        def body(b, x):
            a = b.call(self.intrinsic("llvm.fabs", F32), [x])
            z = b.fmul(x, x)
            p = self._poly(b, z, [-5.70498872745e-3, 2.06390887954e-2, -5.37397155531e-2,
                             1.33314422036e-1, -3.33332819422e-1])
            small = b.fadd(x, b.fmul(b.fmul(p, z), x))
            e = self.call(b, "exp", b.fadd(a, a))
            big = b.fsub(_f(1.0), b.fdiv(_f(2.0), b.fadd(e, _f(1.0))))
            r = b.select(b.fcmp_ordered("<", a, _f(0.625)), small, big)
            # odd: the sign of x, also for -0.0 (x + p*z*x rounds -0.0 + 0.0 to +0.0)
            r = b.call(self.intrinsic("llvm.copysign", F32), [r, x])
            return b.select(b.fcmp_unordered("uno", x, x), x, r)
        return self._helper("tanhf", 1, body)

    def _fn_sigmoid(self):
        def body(b, x):
            # e = exp(-|x|) never overflows; sigmoid(x) = 1/(1+e) or e/(1+e) by sign
            a = b.call(self.intrinsic("llvm.fabs", F32), [x])
            e = self.call(b, "exp", b.fneg(a))
            d = b.fadd(_f(1.0), e)
            r = b.select(b.fcmp_ordered("<", x, _f(0.0)), b.fdiv(e, d), b.fdiv(_f(1.0), d))
            return b.select(b.fcmp_unordered("uno", x, x), x, r)
        return self._helper("sigmoidf", 1, body)
