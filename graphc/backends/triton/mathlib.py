"""The helper functions every generated Triton module starts with (its prelude).

Generated kernels call `_gc_*` helpers instead of spelling out integer division, NaN-
propagating max, argmax combination, counter-based random numbers or transcendental
functions inline. Two variants of the prelude define the same names:

  * "device": what runs on a GPU. Transcendentals come from libdevice (CUDA's accurate
    expf/logf/tanhf/erff/... as PyTorch's CUDA kernels use), never Triton's fast
    approximations (ex2.approx: several ulp, and more for large arguments); float32
    division and square root are the correctly rounded div_rn/sqrt_rn.
  * "portable": only core `triton.language` operations, because Triton's CPU
    interpreter cannot run libdevice calls. tanh, log1p, expm1, pow and round-half-even
    are built from exp/log/floor with the usual accuracy-preserving identities.

The kernels themselves are the same text in both variants; tests run the portable
prelude in the interpreter and compile the device prelude for sm_90 ahead of time.
Helpers are generic over float32/float64 (Triton specialises them per call site);
float16/bfloat16 values reach them as float32 (see codegen.py).
"""
from __future__ import annotations

HEADER = '''\
import triton
import triton.language as tl
{libdevice_import}
_GC_INF = tl.constexpr(float("inf"))
_GC_NINF = tl.constexpr(float("-inf"))
_GC_NAN = tl.constexpr(float("nan"))
_GC_GOLDEN = tl.constexpr(0x9E3779B97F4A7C15)
_GC_MIX1 = tl.constexpr(0xBF58476D1CE4E5B9)
_GC_MIX2 = tl.constexpr(0x94D049BB133111EB)
_GC_I64_MIN = tl.constexpr(-9223372036854775807 - 1)
_GC_I32_MIN = tl.constexpr(-2147483647 - 1)
_GC_I64_MAX = tl.constexpr(9223372036854775807)
'''

COMMON = '''

@triton.jit
def _gc_neg(x):
    # IEEE negation of a float, signed zeros included. Triton before 3.7 compiles
    # (and interprets) unary minus as 0 - x, which gives +0.0 for +0.0; x * -1 is exact
    # and LLVM folds it to fneg
    return x * -1.0


@triton.jit
def _gc_div(x, y):
    if x.dtype == tl.float32:
        return tl.div_rn(x, y)
    else:
        return x / y


@triton.jit
def _gc_sqrt(x):
    if x.dtype == tl.float32:
        return tl.sqrt_rn(x)
    else:
        return tl.sqrt(x)


@triton.jit
def _gc_index_floordiv(x, c):
    q = x // c
    return tl.where(x % c < 0, q - 1, q)


@triton.jit
def _gc_index_mod(x, c):
    r = x % c
    return tl.where(r < 0, r + c, r)


@triton.jit
def _gc_floordiv_signed(x, y):
    zero = y == 0
    safe = tl.where(zero, 1, y)
    minus1 = safe == -1
    safe2 = tl.where(minus1, 1, safe)
    q = tl.where(minus1, -x, x // safe2)
    r = tl.where(minus1, 0, x % safe2)
    adjust = (r != 0) & ((r < 0) != (safe < 0))
    return tl.where(zero, 0, tl.where(adjust, q - 1, q))


@triton.jit
def _gc_mod_signed(x, y):
    zero = y == 0
    safe = tl.where(zero, 1, y)
    minus1 = safe == -1
    r = tl.where(minus1, 0, x % tl.where(minus1, 1, safe))
    adjust = (r != 0) & ((r < 0) != (safe < 0))
    return tl.where(zero, 0, tl.where(adjust, r + safe, r))


@triton.jit
def _gc_floordiv_unsigned(x, y):
    return tl.where(y == 0, 0, x // tl.where(y == 0, 1, y))


@triton.jit
def _gc_mod_unsigned(x, y):
    return tl.where(y == 0, 0, x % tl.where(y == 0, 1, y))


@triton.jit
def _gc_fmod_signed(x, y):
    # C's truncated remainder; by zero gives 0, and -1 becomes 1 (same remainder, 0)
    # so INT_MIN % -1 cannot trap
    zero = y == 0
    safe = tl.where(zero | (y == -1), 1, y)
    return tl.where(zero, 0, x % safe)


@triton.jit
def _gc_pow_int(x, y, BITS: tl.constexpr, SIGNED: tl.constexpr):
    e = tl.maximum(y, 0) + x * 0
    base = x + y * 0
    acc = base * 0 + 1
    for _ in range(BITS):
        acc = tl.where((e & 1) != 0, acc * base, acc)
        base = base * base
        e = e >> 1
    if SIGNED:
        # a negative exponent (ops.py's _pow_np, PyTorch): 1 for base 1, +-1 for base -1
        # by the exponent's parity, 0 otherwise
        odd = (y & 1) != 0
        small = tl.where(x == 1, 1, tl.where(x == -1, tl.where(odd, -1, 1), 0))
        acc = tl.where(y < 0, small.to(acc.dtype), acc)
    return acc


@triton.jit
def _gc_fmax(a, b):
    return tl.maximum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _gc_fmin(a, b):
    return tl.minimum(a, b, propagate_nan=tl.PropagateNan.ALL)


@triton.jit
def _gc_mul(a, b):
    return a * b


@triton.jit
def _gc_argmax_combine(v1, i1, v2, i2):
    n1 = v1 != v1
    n2 = v2 != v2
    tie = (v1 == v2) | (n1 & n2)
    take2 = (v2 > v1) | (n2 & (n1 == 0)) | (tie & (i2 < i1))
    return tl.where(take2, v2, v1), tl.where(take2, i2, i1)


@triton.jit
def _gc_argmin_combine(v1, i1, v2, i2):
    n1 = v1 != v1
    n2 = v2 != v2
    tie = (v1 == v2) | (n1 & n2)
    take2 = (v2 < v1) | (n2 & (n1 == 0)) | (tie & (i2 < i1))
    return tl.where(take2, v2, v1), tl.where(take2, i2, i1)


@triton.jit
def _gc_uniform(seed, counter):
    # SplitMix64's finaliser over (seed, counter), as graphc/ir/ops.py rng_bits
    g = tl.full([], _GC_GOLDEN, tl.uint64)
    z = seed.to(tl.uint64, bitcast=True) * g + counter.to(tl.uint64, bitcast=True) * g + g
    z = (z ^ (z >> 30)) * tl.full([], _GC_MIX1, tl.uint64)
    z = (z ^ (z >> 27)) * tl.full([], _GC_MIX2, tl.uint64)
    z = z ^ (z >> 31)
    return (z >> 11).to(tl.float64) * 1.1102230246251565e-16


@triton.jit
def _gc_normal(seed, counter):
    # Box-Muller on a second stream 2**62 counters away, as ops.py _rand_np
    u = _gc_uniform(seed, counter)
    u2 = _gc_uniform(seed, counter + 4611686018427387904)
    return _gc_sqrt(-2.0 * _gc_log1p(-u)) * _gc_cos(6.283185307179586 * u2)


@triton.jit
def _gc_copysign(x, y):
    # |x| with the sign bit of y (nan's sign bit included, as C copysign): exact
    if y.dtype == tl.float64:
        neg = y.to(tl.int64, bitcast=True) < 0
    else:
        neg = y.to(tl.int32, bitcast=True) < 0
    ax = tl.abs(x)
    return tl.where(neg, _gc_neg(ax), ax)


@triton.jit
def _gc_gelu_tanh(x):
    inner = 0.7978845608028654 * (x + 0.044715 * x * x * x)
    return 0.5 * x * (1.0 + _gc_tanh(inner))
'''

DEVICE = '''

@triton.jit
def _gc_round_bf16(x):
    return x.to(tl.bfloat16).to(tl.float32)


@triton.jit
def _gc_dot(a, b, acc, PREC: tl.constexpr):
    # out_dtype must name the accumulator's type: Triton < 3.7 defaults it to float32
    # and rejects a float64 accumulator (3.9 defaults it to acc's type)
    return tl.dot(a, b, acc, input_precision=PREC, out_dtype=acc.dtype)

@triton.jit
def _gc_exp(x):
    return libdevice.exp(x)


@triton.jit
def _gc_log(x):
    return libdevice.log(x)


@triton.jit
def _gc_sin(x):
    return libdevice.sin(x)


@triton.jit
def _gc_cos(x):
    return libdevice.cos(x)


@triton.jit
def _gc_tanh(x):
    return libdevice.tanh(x)


@triton.jit
def _gc_erf(x):
    return libdevice.erf(x)


@triton.jit
def _gc_log1p(x):
    return libdevice.log1p(x)


@triton.jit
def _gc_expm1(x):
    return libdevice.expm1(x)


@triton.jit
def _gc_pow(x, y):
    return libdevice.pow(x, y)


@triton.jit
def _gc_rint(x):
    return libdevice.rint(x)


@triton.jit
def _gc_gelu(x):
    # 0.5 x erfc(-x/sqrt2): no cancellation for negative x
    return 0.5 * x * libdevice.erfc(-0.7071067811865476 * x)


@triton.jit
def _gc_tan(x):
    return libdevice.tan(x)


@triton.jit
def _gc_asin(x):
    return libdevice.asin(x)


@triton.jit
def _gc_acos(x):
    return libdevice.acos(x)


@triton.jit
def _gc_atan(x):
    return libdevice.atan(x)


@triton.jit
def _gc_sinh(x):
    return libdevice.sinh(x)


@triton.jit
def _gc_cosh(x):
    return libdevice.cosh(x)


@triton.jit
def _gc_asinh(x):
    return libdevice.asinh(x)


@triton.jit
def _gc_acosh(x):
    return libdevice.acosh(x)


@triton.jit
def _gc_atanh(x):
    return libdevice.atanh(x)


@triton.jit
def _gc_log2(x):
    return libdevice.log2(x)


@triton.jit
def _gc_log10(x):
    return libdevice.log10(x)


@triton.jit
def _gc_exp2(x):
    return libdevice.exp2(x)


@triton.jit
def _gc_atan2(y, x):
    return libdevice.atan2(y, x)


@triton.jit
def _gc_hypot(x, y):
    return libdevice.hypot(x, y)


@triton.jit
def _gc_fmod(x, y):
    # CUDA's fmod is exact; not the float `%`, which NVPTX may lower as x - y*trunc(x/y)
    return libdevice.fmod(x, y)
'''

PORTABLE = '''

@triton.jit
def _gc_round_bf16(x):
    # float32 -> bfloat16 -> float32, nearest-even, in integer arithmetic: the 3.9
    # interpreter truncates in its float32 -> bfloat16 conversion
    bits = x.to(tl.uint32, bitcast=True)
    r = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return tl.where(x != x, x, r.to(tl.float32, bitcast=True))


@triton.jit
def _gc_dot(a, b, acc, PREC: tl.constexpr):
    # the 3.9 interpreter multiplies bfloat16 tiles as their raw uint16 bits: go through
    # float32 (bfloat16 products are exact in float32)
    if a.dtype == tl.bfloat16:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee",
                      out_dtype=acc.dtype)
    else:
        return tl.dot(a, b, acc, input_precision=PREC, out_dtype=acc.dtype)

@triton.jit
def _gc_exp(x):
    return tl.exp(x)


@triton.jit
def _gc_log(x):
    return tl.log(x)


@triton.jit
def _gc_sin(x):
    return tl.sin(x)


@triton.jit
def _gc_cos(x):
    return tl.cos(x)


@triton.jit
def _gc_erf(x):
    return tl.erf(x)


@triton.jit
def _gc_expm1(x):
    # Kahan: (u - 1) * x / log(u) with u = exp(x) rounded, exact where u is 1 or 0
    u = tl.exp(x)
    um1 = u - 1.0
    r = um1 * x / tl.log(u)
    r = tl.where(u == 1.0, x, r)
    r = tl.where(um1 == -1.0, -1.0, r)
    return tl.where(u == _GC_INF, u, r)


@triton.jit
def _gc_log1p(x):
    # Goldberg: log(u) * x / (u - 1) with u = 1 + x rounded
    u = 1.0 + x
    r = tl.where(u == 1.0, x, tl.log(u) * x / (u - 1.0))
    return tl.where(u == _GC_INF, u, r)


@triton.jit
def _gc_tanh(x):
    e = _gc_expm1(-2.0 * tl.abs(x))
    t = _gc_neg(e) / (2.0 + e)        # tanh|x|, +0.0 at 0
    return _gc_copysign(t, x)         # tanh(-0.0) is -0.0


@triton.jit
def _gc_rint(x):
    f = tl.floor(x)
    d = x - f
    even = (f - 2.0 * tl.floor(f * 0.5)) == 0.0
    r = tl.where(d > 0.5, f + 1.0, tl.where(d < 0.5, f, tl.where(even, f, f + 1.0)))
    return _gc_copysign(r, x)       # round(-0.4) is -0.0 (floor + 1 gives +0.0)


@triton.jit
def _gc_pow(x, y):
    # float64 exp(y log|x|), then C99 pow's special cases
    xd = x.to(tl.float64)
    yd = y.to(tl.float64)
    r = tl.exp(yd * tl.log(tl.abs(xd)))
    y_int = tl.floor(yd) == yd
    y_odd = y_int & (tl.floor(yd * 0.5) * 2.0 != yd)
    x_neg = (xd < 0) | ((xd == 0) & (1.0 / xd < 0))
    r = tl.where(x_neg & y_odd, _gc_neg(r), r)
    r = tl.where((xd < 0) & (y_int == 0) & (tl.abs(yd) != _GC_INF), _GC_NAN, r)
    r = tl.where((xd == -1.0) & (tl.abs(yd) == _GC_INF), 1.0, r)
    r = tl.where((yd == 0) | (xd == 1.0), 1.0, r)
    return r.to(x.dtype)


@triton.jit
def _gc_gelu(x):
    xd = x.to(tl.float64)
    return (0.5 * xd * (1.0 + tl.erf(0.7071067811865476 * xd))).to(x.dtype)


# The functions below compute in float64 and round once to the operand's type (for a
# float32 operand that is as good as a correctly rounded float32 function); float64
# operands get a few ulp. Python float literals only ever meet float64 tensors here
# (a scalar-only tl.where would make them float32 constants).


@triton.jit
def _gc_atan_f64(x):
    # Cephes atan: |x| reduced below 0.66 through tan(3pi/8) and tan(pi/4), then a
    # rational fit; within 1 ulp of float64 atan
    a = tl.abs(x)
    zero = tl.zeros_like(a)
    big = a > 2.414213562373095
    mid = (a > 0.66) & (big == 0)
    z = tl.where(big, -1.0 / a, tl.where(mid, (a - 1.0) / (a + 1.0), a))
    base = tl.where(big, zero + 1.5707963267948966,
                    tl.where(mid, zero + 0.7853981633974483, zero))
    more = tl.where(big, zero + 6.123233995736766e-17,
                    tl.where(mid, zero + 3.061616997868383e-17, zero))
    zz = z * z
    p = (((-8.750608600031904122785e-1 * zz - 1.615753718733365076637e1) * zz
          - 7.500855792314704667340e1) * zz - 1.228866684490136173410e2) * zz \
        - 6.485021904942025371773e1
    q = ((((zz + 2.485846490142306297962e1) * zz + 1.650270098316988542046e2) * zz
          + 4.328810604912902668951e2) * zz + 4.853903996359136964868e2) * zz \
        + 1.945506571482613964425e2
    r = base + (z * (zz * p / q) + z + more)
    r = tl.where(x < 0, _gc_neg(r), r)
    return tl.where(a == 0, x, r)       # keeps the sign of a zero


@triton.jit
def _gc_atan2_f64(y, x):
    # C99 atan2: the quadrant from the sign bits, both infinite gives pi/4 (3pi/4),
    # both zero gives 0 (pi), nan propagates through the ratio
    ay = tl.abs(y)
    ax = tl.abs(x)
    zero = tl.zeros_like(ay)
    t = tl.where((ay == _GC_INF) & (ax == _GC_INF), zero + 1.0, ay / ax)
    t = tl.where((ay == 0) & (ax == 0), zero, t)
    r = _gc_atan_f64(t)
    r = tl.where(x.to(tl.int64, bitcast=True) < 0, 3.141592653589793 - r, r)
    return tl.where(y.to(tl.int64, bitcast=True) < 0, _gc_neg(r), r)


@triton.jit
def _gc_atan(x):
    return _gc_atan_f64(x.to(tl.float64)).to(x.dtype)


@triton.jit
def _gc_atan2(y, x):
    return _gc_atan2_f64(y.to(tl.float64), x.to(tl.float64)).to(y.dtype)


@triton.jit
def _gc_tan(x):
    xd = x.to(tl.float64)
    return (tl.sin(xd) / tl.cos(xd)).to(x.dtype)


@triton.jit
def _gc_asin(x):
    xd = x.to(tl.float64)
    # (1 - x)(1 + x): exact factors near |x| = 1, negative (nan root) outside [-1, 1]
    return _gc_atan2_f64(xd, tl.sqrt((1.0 - xd) * (1.0 + xd))).to(x.dtype)


@triton.jit
def _gc_acos(x):
    xd = x.to(tl.float64)
    return (2.0 * _gc_atan2_f64(tl.sqrt(1.0 - xd), tl.sqrt(1.0 + xd))).to(x.dtype)


@triton.jit
def _gc_sinh(x):
    xd = x.to(tl.float64)
    a = tl.abs(xd)
    e = _gc_expm1(a)
    small = 0.5 * (e + e / (e + 1.0))          # no cancellation near 0
    h = tl.exp(0.5 * a)
    big = (0.5 * h) * h                         # e^a / 2 without overflowing early
    r = tl.where(a < 22.0, small, big)          # beyond 22, e^-a is below an ulp
    r = tl.where(xd < 0, _gc_neg(r), r)
    return tl.where(a == 0, xd, r).to(x.dtype)


@triton.jit
def _gc_cosh(x):
    a = tl.abs(x.to(tl.float64))
    e = tl.exp(a)
    h = tl.exp(0.5 * a)
    return tl.where(a < 22.0, 0.5 * (e + 1.0 / e), (0.5 * h) * h).to(x.dtype)


@triton.jit
def _gc_asinh(x):
    xd = x.to(tl.float64)
    a = tl.abs(xd)
    small = _gc_log1p(a + a * a / (1.0 + tl.sqrt(1.0 + a * a)))
    r = tl.where(a > 268435456.0, tl.log(a) + 0.6931471805599453, small)
    r = tl.where(xd < 0, _gc_neg(r), r)
    return tl.where(a == 0, xd, r).to(x.dtype)


@triton.jit
def _gc_acosh(x):
    xd = x.to(tl.float64)
    t = xd - 1.0                                 # exact below 2
    small = _gc_log1p(t + tl.sqrt(2.0 * t + t * t))
    r = tl.where(xd > 268435456.0, tl.log(xd) + 0.6931471805599453, small)
    return tl.where(xd < 1.0, _GC_NAN, r).to(x.dtype)


@triton.jit
def _gc_atanh(x):
    xd = x.to(tl.float64)
    a = tl.abs(xd)
    r = 0.5 * _gc_log1p(2.0 * a / (1.0 - a))    # inf at 1, nan beyond
    r = tl.where(xd < 0, _gc_neg(r), r)
    return tl.where(a == 0, xd, r).to(x.dtype)


@triton.jit
def _gc_log2(x):
    return tl.log2(x)


@triton.jit
def _gc_log10(x):
    return (tl.log(x.to(tl.float64)) * 0.4342944819032518).to(x.dtype)


@triton.jit
def _gc_exp2(x):
    return tl.exp2(x)


@triton.jit
def _gc_hypot(x, y):
    ax = tl.abs(x.to(tl.float64))
    ay = tl.abs(y.to(tl.float64))
    a = tl.where(ax > ay, ax, ay)
    b = tl.where(ax > ay, ay, ax)
    q = b / a
    r = a * tl.sqrt(1.0 + q * q)                 # scaled: no overflow of a^2
    r = tl.where(a == 0, b, r)
    r = tl.where((ax == _GC_INF) | (ay == _GC_INF), _GC_INF, r)   # even with a nan
    return r.to(x.dtype)


@triton.jit
def _gc_fmod(x, y):
    return x % y
'''

VARIANTS = ("device", "portable")


def prelude(variant: str) -> str:
    if variant not in VARIANTS:
        raise ValueError(f"unknown prelude variant {variant!r}; choose one of {VARIANTS}")
    imp = "from triton.language.extra import libdevice" if variant == "device" else ""
    return HEADER.format(libdevice_import=imp) + COMMON + (DEVICE if variant == "device"
                                                           else PORTABLE)
