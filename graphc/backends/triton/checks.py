"""The op-coverage corpus of the Triton backend: graphs that exercise every op, dtype
and kernel form, with inputs and tolerances. tests/test_triton_backend.py runs it under
Triton's interpreter and compiles every kernel of it for sm_90; benchmarks/gpu_check.py
runs it on a real GPU. Both compare against the reference interpreter.

Tolerances (rtol, atol), stated once:
  * exact ops (arithmetic, comparisons, casts, movement, where, min/max, integer math)
    bit for bit (NaNs equal) under the interpreter; on a GPU too, since every float op is
    IEEE-rounded (div_rn, sqrt_rn, no FMA contraction);
  * float32 transcendentals 4e-6, 1e-6 (numpy's and libdevice's routines differ by a few
    ulp); float64 1e-13, 1e-14;
  * reductions: summation order differs (chunked tree sums): 2e-6 float32;
  * float16 2e-3, 1e-3 and bfloat16 1.6e-2, 1e-2 (about one unit in the last place);
  * float16/bfloat16 reductions are compared with the *exactly rounded* result (the
    graph run in float64, rounded once: `exactly_rounded`), within one unit in the last
    place. That is what PyTorch computes (16-bit sums accumulate in float32, rounded
    once) and what graphc's compiled backends compute; the reference interpreter uses
    numpy, which rounds to float16 after every addition when it reduces along a
    non-contiguous axis (a sum of 2000 float16 values is off by several units there);
  * float32/float64 matmuls: an error bound that grows with K (`matmul_error_bound`),
    since BLAS and the GPU sum the K products in different orders.
`scale` multiplies the sizes (1 for tests; the GPU check uses larger shapes too).
`expected(case)` and `verify(case, got, want)` apply all of this; tests and
benchmarks/gpu_check.py use them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ...ir import dtypes as dt
from ...ir.graph import Graph, TensorType
from ...ir.registry import get_op
from .. import interp
from ..interp import round_to_bfloat16
from . import sort
from ...testing import CAST_EDGES, DIVMOD_EDGES, data, graph, inp, op  # noqa: F401  (the shared corpus builders)

FLOATS = [dt.float32, dt.float64, dt.float16, dt.bfloat16]
INTS = [dt.int32, dt.int64, dt.uint8]
ALL = FLOATS + INTS + [dt.bool_]

UNARY_FLOAT = {"exp": "any", "log": "pos", "log1p": "gt-1", "expm1": "any", "sqrt": "pos",
               "rsqrt": "pos", "sin": "any", "cos": "any", "tanh": "any", "sigmoid": "any",
               "gelu": "any", "silu": "any", "erf": "any", "reciprocal": "pos",
               "tan": "any", "asin": "unit", "acos": "unit", "atan": "any", "sinh": "any",
               "cosh": "any", "asinh": "any", "acosh": "ge1", "atanh": "unit", "log2": "pos",
               "log10": "pos", "exp2": "any"}
UNARY_EXACT = ["neg", "abs", "sign", "relu", "floor", "ceil", "round", "isnan", "isfinite",
               "bitwise_not"]
BINARY = ["add", "sub", "mul", "div", "floordiv", "mod", "pow", "maximum", "minimum",
          "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor",
          "fmod", "atan2", "hypot", "copysign", "bitwise_and", "bitwise_or", "bitwise_xor"]
# binary ops computed by libm/libdevice routines (compared within transcendental
# tolerances); every other binary op is exact
BINARY_TRANSCENDENTAL = ("pow", "atan2", "hypot")
# special operands of the unary and binary math ops: signed zeros, infinities, nan,
# the domain edges (asin(+-1), acosh(1), atanh(+-1), log2(0)), sinh/cosh overflow
MATH_SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0,
                 1e-30, -1e-30, 3.0, -7.5, 88.5, 89.0, -89.0, 100.0, 1e30]


def data_in(shape, dtype, rng, kind="any"):
    """`testing.data` plus the domains of the inverse functions: 'unit' in (-1, 1)
    (asin, acos, atanh), 'ge1' at least 1 (acosh)."""
    if kind not in ("unit", "ge1"):
        return data(shape, dtype, rng, kind)
    x = rng.uniform(-0.99, 0.99, shape) if kind == "unit" else \
        1 + np.abs(rng.standard_normal(shape)) * 3
    x = np.asarray(x).astype(dtype.np)
    return round_to_bfloat16(x) if dtype.short == "bf16" else x


def specials(dtype):
    """MATH_SPECIALS in dtype's storage form (out of range values become +-inf)."""
    with np.errstate(over="ignore"):
        x = np.array(MATH_SPECIALS, np.float64).astype(dtype.np)
    return round_to_bfloat16(x) if dtype.short == "bf16" else x


@dataclass
class Case:
    name: str
    graph: Graph
    inputs: list
    rtol: float = 0.0
    atol: float = 0.0
    interpreter_note: str = ""    # why Triton's interpreter cannot run it (GPU only)
    reference: object = None      # inputs -> expected outputs, where the reference
    #                               interpreter is not the oracle (see exactly_rounded)
    error_bound: object = None    # inputs -> per output, the allowed |got - want| per
    #                               element (None for an output: rtol/atol)
    signed_zeros: bool = False    # also the sign bit of every non-nan result (atan2 of
    #                               signed zeros, copysign, fmod's sign of the dividend)



def tol(dtype, transcendental=False):
    if dtype.short == "f16":
        return 2e-3, 1e-3
    if dtype.short == "bf16":
        return 1.6e-2, 1e-2
    if dtype.short == "f32":
        return (4e-6, 1e-6) if transcendental else (0.0, 0.0)
    if dtype.short == "f64":
        return (1e-13, 1e-14) if transcendental else (0.0, 0.0)
    return 0.0, 0.0


def _accepts(name, dtype, arity):
    try:
        get_op(name).infer([TensorType((1,), dtype)] * arity, {})
        return True
    except Exception:
        return False


# ----------------------------------------------------------------------------- elementwise

def unary_float(dtype, rng, shape=(7, 33)):
    xs = {k: inp(shape, dtype, k.replace("-", "_"))
          for k in ("any", "pos", "gt-1", "unit", "ge1")}
    outs, names = [], []
    for name, kind in sorted(UNARY_FLOAT.items()):
        outs.append(op(name, xs[kind]))
        names.append(name)
    outs.append(op("gelu", xs["any"], approximate="tanh"))
    return Case(f"unary-float-{dtype.name}", graph(outs, list(xs.values())),
                [data_in(shape, dtype, rng, k) for k in xs], *tol(dtype, True))


MATH_UNARY = ("tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
              "log2", "log10", "exp2")


def math_unary_edges(dtype):
    """The trigonometric, hyperbolic and base-2/10 functions at MATH_SPECIALS: nan and
    infinities where the reference has them, signed zeros, the domain edges."""
    x = inp((len(MATH_SPECIALS),), dtype)
    return Case(f"math-unary-edges-{dtype.name}", graph([op(n, x) for n in MATH_UNARY], [x]),
                [specials(dtype)], *tol(dtype, True), signed_zeros=True)


SIGNED_ZERO_UNARY = ["neg", "tanh", "sin", "tan", "sinh", "asinh", "atanh", "atan", "erf",
                     "expm1", "log1p", "sqrt", "floor", "ceil", "round", "relu"]


def signed_zero_unary(dtype):
    """Odd functions and roundings keep the sign of a zero (neg(+0.0) is -0.0, ceil(-0.5)
    is -0.0), as C99 and PyTorch do; Triton before 3.7 lowers unary minus to 0 - x. relu
    passes -0.0 and NaN through, as PyTorch's does (x < 0 ? 0 : x)."""
    vals = np.array([0.0, -0.0, 0.5, -0.5, -0.4, 0.4, 1e-30, -1e-30, np.inf, -np.inf,
                     np.nan, 2.5, -2.5], np.float64)
    x = inp(vals.shape, dtype)
    a = vals.astype(dtype.np)
    return Case(f"signed-zero-unary-{dtype.name}",
                graph([op(n, x) for n in SIGNED_ZERO_UNARY], [x]),
                [round_to_bfloat16(a) if dtype.short == "bf16" else a], *tol(dtype, True),
                signed_zeros=True)

def signed_zero_sums():
    """Sums of -0.0 are +0.0 (PyTorch's sums start from +0.0): over rows short enough to
    be unrolled into adds (fusion) and long enough to loop, and a column sum."""
    x = inp((4, 3), dt.float32)
    y = inp((2, 300), dt.float32)
    a = np.array([[-0.0, -0.0, -0.0], [-0.0, 1.0, -1.0], [-0.0, -0.0, 2.0],
                  [-0.0, -0.0, -0.0]], np.float32)
    b = np.full((2, 300), -0.0, np.float32)
    b[1, 7] = 3.0
    outs = [op("sum", x, dims=(1,), keepdim=False), op("sum", x, dims=(0,), keepdim=False),
            op("sum", y, dims=(1,), keepdim=False)]
    return Case("signed-zero-sums", graph(outs, [x, y]), [a, b], *tol(dt.float32),
                signed_zeros=True)


def math_binary_edges(dtype, exact):
    """fmod/copysign (exact: `exact`) or atan2/hypot over every pair of MATH_SPECIALS:
    signed zeros and infinities in both places, nan, fmod by zero."""
    v = specials(dtype)
    av, bv = np.repeat(v, len(v)), np.tile(v, len(v))
    a, b = inp(av.shape, dtype, "a"), inp(bv.shape, dtype, "b")
    names = ("fmod", "copysign") if exact else ("atan2", "hypot")
    return Case(f"{'-'.join(names)}-edges-{dtype.name}",
                graph([op(n, a, b) for n in names], [a, b]), [av, bv],
                *tol(dtype, transcendental=not exact), signed_zeros=True)


def int_fmod(dtype):
    """C's truncated remainder on integers (sign of the dividend); by zero gives 0, and
    INT_MIN fmod -1 is 0."""
    lo = int(np.iinfo(dtype.np).min)
    a = np.array([7, -7, 7, -7, 0, 5, lo, lo, 9, -9], dtype.np)
    b = np.array([2, 2, -2, -2, 3, 0, -1, 3, 0, -4], dtype.np)
    x, y = inp((10,), dtype, "a"), inp((10,), dtype, "b")
    return Case(f"fmod-int-{dtype.name}", graph([op("fmod", x, y)], [x, y]), [a, b])


def unary_exact(dtype, rng, shape=(5, 9)):
    x = inp(shape, dtype)
    a = data(shape, dtype, rng)
    if dtype.is_floating:
        a[0, :4] = np.array([np.nan, np.inf, -np.inf, 0.5], dtype=a.dtype)
        a[1, :4] = np.array([2.5, -2.5, 1.5, -0.5], dtype=a.dtype)   # round half to even
    outs = []
    for name in UNARY_EXACT:
        if name in ("floor", "ceil", "round") and not dtype.is_floating:
            continue
        if name in ("neg", "sign") and dtype.is_bool:
            continue
        if name == "bitwise_not" and (dtype.is_floating or dtype.is_bool):
            continue
        outs.append(op(name, x))
    if dtype.is_bool:
        outs.append(op("logical_not", x))
    return Case(f"unary-exact-{dtype.name}", graph(outs, [x]), [a], *tol(dtype))


def binary(dtype, rng, shape=(6, 17)):
    a, b = inp(shape, dtype, "a"), inp(shape, dtype, "b")
    av, bv = data(shape, dtype, rng), data(shape, dtype, rng)
    if dtype.is_floating:
        bv = np.where(bv == 0, 1, bv).astype(bv.dtype)
    else:
        bv[0, :3] = 0   # integer division by zero gives 0
    pa, pb = inp(shape, dtype, "pa"), inp(shape, dtype, "pb")
    pav = np.abs(av).astype(av.dtype) if dtype.is_floating else av
    pbv = bv if dtype.is_floating else (np.abs(bv.astype(np.int64)) % 5).astype(dtype.np)
    outs, exact = [], True
    for name in BINARY:
        if not _accepts(name, dtype, 2):
            continue
        if name == "pow":
            outs.append(op("pow", pa, pb))
        else:
            outs.append(op(name, a, b))
        if name in BINARY_TRANSCENDENTAL:
            exact = not dtype.is_floating
    rt, at = tol(dtype, transcendental=not exact)
    return Case(f"binary-{dtype.name}", graph(outs, [a, b, pa, pb]), [av, bv, pav, pbv], rt, at)


def float_divmod_edges(dtype):
    """Floor division and remainder where the fmod-based definition (PyTorch's) differs
    from floor(a / b): infinite and zero divisors, signed zeros, 1 // 0.1."""
    e = np.array(DIVMOD_EDGES, np.float64)
    a, b = inp((len(e),), dtype, "a"), inp((len(e),), dtype, "b")
    g = graph([op("floordiv", a, b), op("mod", a, b)], [a, b])
    return Case(f"divmod-edges-{dtype.name}", g, [e[:, 0].astype(dtype.np),
                                                  e[:, 1].astype(dtype.np)])


def int_pow_negative(dtype):
    """Integer powers with negative exponents: 1, +-1 for base -1, 0 otherwise."""
    base = np.array([2, 3, -1, -1, 1, 0, -2, 5], dtype.np)
    expo = np.array([-2, -1, -3, -4, -5, -1, -1, 2], dtype.np)
    a, b = inp((8,), dtype, "a"), inp((8,), dtype, "b")
    return Case(f"pow-negative-{dtype.name}", graph([op("pow", a, b)], [a, b]), [base, expo])


def special_values(rng):
    a, b = inp((4,), dt.float32, "a"), inp((4,), dt.float32, "b")
    av = np.array([np.nan, 1, 2, -np.inf], np.float32)
    bv = np.array([1, np.nan, 3, np.inf], np.float32)
    return Case("nan-max-min", graph([op("maximum", a, b), op("minimum", a, b)], [a, b]),
                [av, bv])


def value_check(rng, shape=(37, 5)):
    """A passing `check` fused into an elementwise consumer and a row reduction (a failing
    one: tests/test_triton_backend.py test_failed_value_check_...)."""
    x = inp(shape, dt.float32)
    low = op("expand", op("reshape", op("const", value=-100.0, dtype=dt.float32),
                          shape=(1, 1)), shape=shape)
    y = op("check", x, op("ge", x, low), message="x must be at least -100")
    return Case("check", graph([op("exp", y), op("sum", y, dims=(1,), keepdim=False)], [x]),
                [data(shape, dt.float32, rng)], 2e-6, 1e-6)


def where(dtype, rng, shape=(8, 3)):
    c, a, b = inp(shape, dt.bool_, "c"), inp(shape, dtype, "a"), inp(shape, dtype, "b")
    return Case(f"where-{dtype.name}", graph([op("where", c, a, b)], [c, a, b]),
                [data(shape, dt.bool_, rng), data(shape, dtype, rng), data(shape, dtype, rng)])


def casts(src, rng, n=40):
    x = inp((n,), src)
    a = data((n,), src, rng)
    if src.is_floating:
        a = (a * 20).astype(a.dtype)
        if src.short == "bf16":
            a = round_to_bfloat16(a)
    outs = [op("cast", x, dtype=d) for d in ALL if not (d.short == "u8" and src.is_floating)]
    return Case(f"cast-from-{src.name}", graph(outs, [x]), [a])


def cast_edges(src, n=len(CAST_EDGES) * 21 + 7):
    """float -> int64/int32/uint8/bool at the edges (NaN, +-inf, just and far outside each
    range), tiled past one block so vector and remainder lanes both see each value: the
    GPU's own conversions saturate, graphc's must give PyTorch's x86 values."""
    with np.errstate(over="ignore"):
        a = np.resize(np.array(CAST_EDGES, np.float64), n).astype(src.np)
    if src.short == "bf16":
        a = round_to_bfloat16(a)
    x = inp((n,), src)
    outs = [op("cast", x, dtype=d) for d in (dt.int64, dt.int32, dt.uint8, dt.bool_)]
    return Case(f"cast-edges-from-{src.name}", graph(outs, [x]), [a])

def sources(rng):
    seed, off = inp((), dt.int64, "seed"), inp((), dt.int64, "off")
    outs = [op("iota", shape=(3, 5), dim=1, dtype=dt.float32),
            op("iota", shape=(4, 2), dim=0, dtype=dt.int64),
            op("add", op("iota", shape=(6,), dim=0, dtype=dt.int32),
               op("expand", op("reshape", op("const", value=3, dtype=dt.int32), shape=(1,)),
                  shape=(6,))),
            op("rand", seed, off, shape=(5, 7), dtype=dt.float32),
            op("rand", seed, off, shape=(64,), dtype=dt.float64, normal=True),
            op("rand", seed, off, shape=(9,), dtype=dt.bfloat16)]
    return Case("sources", graph(outs, [seed, off]), [np.array(42), np.array(1000)],
                1e-12, 1e-12)


# ----------------------------------------------------------------------------- reductions

def reductions(dtype, rng, shape=(6, 5, 4)):
    a = data(shape, dtype, rng)
    p = (np.abs(a) * 0.3 + 0.7).astype(a.dtype) if dtype.is_floating else \
        (a % 3 + 1).astype(a.dtype) if not dtype.is_bool else a
    if dtype.short == "bf16":   # values a bfloat16 input can hold (numpy keeps float32)
        p = round_to_bfloat16(p)
    cases = [((0,), False), ((1,), True), ((2,), False), ((0, 2), True), ((0, 1, 2), True),
             ((), False)]
    if dtype.short != "bf16":   # interp rounds 0-d bfloat16 results into 1-d arrays
        cases.append(((0, 1, 2), False))

    def build(d):
        x, pos = inp(shape, d), inp(shape, d, "p")
        outs = []
        for name in ("sum", "prod", "max", "min"):
            src = pos if name == "prod" else x
            outs += [op(name, src, dims=dims, keepdim=k) for dims, k in cases]
        return graph(outs, [x, pos])
    rt, at = {"f32": (2e-6, 2e-6), "f64": (1e-13, 1e-13)}.get(dtype.short, (0, 0))
    reference = None
    if dtype.short in ("f16", "bf16"):
        reference = exactly_rounded(build(dt.float64), dtype)
        rt, at = ulp_tolerance(dtype, atol=1e-4)
    return Case(f"reductions-{dtype.name}", build(dtype), [a, p], rt, at,
                reference=reference)


def exactly_rounded(graph64: Graph, dtype):
    """A reference for 16-bit reductions: `graph64` (the same graph over float64) run by
    the reference interpreter on the inputs (all of `dtype`) as stored in `dtype` and
    widened to float64, each output rounded once to `dtype` (bfloat16 through float32,
    as the backends convert)."""
    def to_dtype(x):
        if dtype.short == "bf16":
            return round_to_bfloat16(np.asarray(x, np.float32))
        return np.asarray(x).astype(dtype.np)

    def reference(inputs):
        outs = interp.compile(graph64)([to_dtype(a).astype(np.float64) for a in inputs])
        return [to_dtype(o) for o in outs]
    return reference


def ulp_tolerance(dtype, atol):
    """(rtol, atol) admitting one unit in the last place of a 16-bit result (a value
    within float32 accumulation error of a rounding tie may round either way)."""
    return {"f16": 2.0 ** -10, "bf16": 2.0 ** -7}[dtype.short], atol


def column_reductions(dtype, rng, shape=(37, 5, 6)):
    """sum/max/min over leading dims alone: the fusion pass emits these as serial sweeps
    for CPU caches (the backend rebuilds the tiled reduction)."""
    x = inp(shape, dtype)
    outs = [op(name, x, dims=dims, keepdim=k) for name in ("sum", "max", "min")
            for dims, k in (((0,), False), ((0, 1), True))]
    rt = {"f32": 2e-6, "f64": 1e-13}.get(dtype.short, 0)
    return Case(f"column-reductions-{dtype.name}", graph(outs, [x]),
                [data(shape, dtype, rng)], rt, rt)


def arg_reductions(dtype, rng, shape=(5, 8)):
    x = inp(shape, dtype)
    a = data(shape, dtype, rng)
    if dtype.is_floating:
        a[1, 3] = np.nan
        a[2, :] = 1.0   # ties: the first index wins
    outs = [op(name, x, dim=d, keepdim=k) for name in ("argmax", "argmin")
            for d, k in ((0, False), (1, True))]
    return Case(f"argreductions-{dtype.name}", graph(outs, [x]), [a])


def long_sum(rng, n):
    x = inp((n,), dt.float32)
    a = (rng.random(n, dtype=np.float32) + 0.5)
    return Case(f"long-sum-{n}", graph([op("sum", x, dims=(0,), keepdim=False)], [x]), [a],
                1e-6, 0.0)


def empty_sizes(rng):
    x = inp((0, 4), dt.float32)
    outs = [op("sum", x, dims=(0,), keepdim=False), op("exp", x),
            op("prod", x, dims=(0, 1), keepdim=True)]
    return Case("empty", graph(outs, [x]), [np.zeros((0, 4), np.float32)])


# ----------------------------------------------------------------------------- movement

def movement(rng):
    x = inp((4, 6, 5), dt.float32)
    r = op("reshape", x, shape=(24, 5))
    p = op("permute", x, dims=(2, 0, 1))
    s = op("slice", x, starts=(1, 0, 4), stops=(4, 6, 5), steps=(2, 3, 1))
    e = op("expand", op("slice", x, starts=(0, 0, 0), stops=(4, 1, 5), steps=(1, 1, 1)),
           shape=(4, 6, 5))
    pd = op("pad", x, low=(1, 0, 2), high=(0, 2, 1), interior=(0, 1, 2))
    c = op("concat", x, op("exp", x), x, dim=1)
    chain = op("reshape", op("permute", op("slice", x, starts=(0, 1, 0), stops=(4, 6, 5),
                                           steps=(1, 2, 2)), dims=(1, 2, 0)), shape=(9, 4))
    return Case("movement", graph([r, p, s, e, pd, c, op("exp", chain)], [x]),
                [data((4, 6, 5), dt.float32, rng)], *tol(dt.float32, True))


def flips(dtype, rng):
    """flip as index arithmetic: alone, inside chains of other movement ops, under a
    reduction, over an elementwise value, and as a matmul operand (BLAS takes no
    negative strides: the flipped operand is stored first)."""
    x = inp((4, 6, 5), dtype)
    outs = [op("flip", x, dims=(0, 2)), op("flip", x, dims=(1,)), op("flip", x, dims=()),
            op("flip", op("permute", x, dims=(2, 0, 1)), dims=(0, 1)),
            op("reshape", op("flip", op("slice", x, starts=(0, 1, 0), stops=(4, 6, 5),
                                         steps=(2, 2, 1)), dims=(1, 2)), shape=(6, 5)),
            op("flip", op("reshape", x, shape=(24, 5)), dims=(0,)),
            op("sum", op("flip", x, dims=(2,)), dims=(1,), keepdim=False),
            op("flip", op("add", x, op("flip", x, dims=(0,))), dims=(0, 1, 2)),
            op("flip", op("pad", x, low=(1, 0, 0), high=(0, 2, 0), interior=(0, 1, 0)),
               dims=(0, 1))]
    if dtype.is_floating:
        w = inp((5, 3), dtype, "w")
        outs.append(op("matmul", op("flip", op("reshape", x, shape=(24, 5)), dims=(0, 1)),
                       op("flip", w, dims=(1,))))
        ins, vals = [x, w], [data((4, 6, 5), dtype, rng), data((5, 3), dtype, rng)]
        rt = {"f32": 1e-5, "f64": 1e-12}.get(dtype.short, 0)
    else:
        ins, vals, rt = [x], [data((4, 6, 5), dtype, rng)], 0
    return Case(f"flip-{dtype.name}", graph(outs, ins), vals, rt, rt)


def views(rng, n):
    x = inp((n, 3), dt.float32)
    t = op("permute", x, dims=(1, 0))
    sl = op("slice", t, starts=(0, 0), stops=(3, n), steps=(2, 3))
    outs = [op("mul", sl, sl), op("sum", t, dims=(1,), keepdim=False), op("neg", t)]
    return Case(f"views-{n}", graph(outs, [x]), [data((n, 3), dt.float32, rng)], 1e-5, 1e-5)


def gather_scatter(rng):
    x = inp((5, 7), dt.float32, "x")
    idx = inp((5, 3), dt.int64, "idx")
    src = inp((5, 3), dt.float32, "src")
    g1 = op("gather", x, idx, dim=1)
    g2 = op("exp", op("gather", op("permute", x, dims=(1, 0)),
                      op("permute", op("slice", idx, starts=(0, 0), stops=(5, 3),
                                       steps=(1, 1)), dims=(1, 0)), dim=1))
    sc = op("scatter_add", x, idx, src, dim=1)
    return Case("gather-scatter", graph([g1, g2, sc], [x, idx, src]),
                [data((5, 7), dt.float32, rng), rng.integers(-5, 5, size=(5, 3)),
                 data((5, 3), dt.float32, rng)], 4e-6, 1e-6)


def scatter_rows(dtype, rng):
    """scatter_add along dim 0 with repeated targets: atomics (or the serial loop for
    8-bit types) must add every contribution."""
    x = inp((5, 7), dtype, "x")
    idx = inp((6, 7), dt.int64, "i")
    src = inp((6, 7), dtype, "s")
    sc = op("scatter_add", x, idx, src, dim=0)
    rt = {"f16": 2e-3, "bf16": 1.6e-2, "f32": 1e-6, "f64": 1e-13}.get(dtype.short, 0)
    note = "Triton 3.9's interpreter has no bfloat16 atomics" if dtype.short == "bf16" else ""
    return Case(f"scatter-rows-{dtype.name}", graph([sc], [x, idx, src]),
                [data((5, 7), dtype, rng), rng.integers(0, 5, size=(6, 7)),
                 data((6, 7), dtype, rng)], rt, rt, note)


# ----------------------------------------------------------------------------- matmul

def matmul(dtype, rng, m=5, k=7, n=3, batch=2):
    a, b = inp((batch, m, k), dtype, "a"), inp((batch, k, n), dtype, "b")
    rt = {"f32": 1e-5, "f64": 1e-12, "bf16": 1.6e-2, "f16": 2e-3}.get(dtype.short, 0)
    bound = matmul_error_bound(dtype, k) if dtype.short in ("f32", "f64") else None
    return Case(f"matmul-{dtype.name}-{batch}x{m}x{k}x{n}", graph([op("matmul", a, b)], [a, b]),
                [data((batch, m, k), dtype, rng), data((batch, k, n), dtype, rng)], rt, rt,
                error_bound=bound)


# Probabilistic rounding-error bound of a K-term dot product (Higham & Mary, 2019):
# |computed - exact| <= LAMBDA * sqrt(K) * u * (|A| @ |B|), u the unit roundoff, which
# holds for any summation order (BLAS's blocked sums, the GPU's FMA chains along K).
# Both sides err, so got and want may differ by twice that. Measured on the GPU check's
# standard-normal operands (K = 300 and 1025): sequential float32 summation reaches
# 0.2 sqrt(K) u |A||B| against the exact product, TF32 inputs 36 to 95: LAMBDA = 2
# leaves a 10x margin for correct float32 and still catches TF32 where it must be off.
# For K <= 4 the bound is also above the worst case, 2 K u |A||B|.
MATMUL_LAMBDA = 2.0


def matmul_error_bound(dtype, k):
    """error_bound for `matmul(a, b)` over K = k terms in float32 or float64."""
    u = {"f32": 2.0 ** -24, "f64": 2.0 ** -53}[dtype.short]

    def bound(inputs):
        a, b = (np.abs(np.asarray(x, np.float64)) for x in inputs[:2])
        return [2 * MATMUL_LAMBDA * math.sqrt(max(k, 1)) * u * np.matmul(a, b)]
    return bound


def matmul_views(rng):
    a = inp((3, 7, 5), dt.float32, "a")     # used transposed: [3, 5, 7]
    b = inp((7, 4), dt.float32, "b")        # broadcast over the batch
    at = op("permute", a, dims=(0, 2, 1))
    bb = op("expand", op("reshape", b, shape=(1, 7, 4)), shape=(3, 7, 4))
    mm = op("matmul", at, bb)
    return Case("matmul-views", graph([mm], [a, b]),
                [data((3, 7, 5), dt.float32, rng), data((7, 4), dt.float32, rng)], 1e-5, 1e-5)


def matmul_sizes(rng, m, k, n):
    a, b = inp((m, k), dt.float32, "a"), inp((k, n), dt.float32, "b")
    return Case(f"matmul-{m}x{k}x{n}", graph([op("matmul", a, b)], [a, b]),
                [data((m, k), dt.float32, rng), data((k, n), dt.float32, rng)], 1e-5, 1e-5)


def matmul_computed_operand(rng):
    a, b = inp((4, 6), dt.float32, "a"), inp((6, 3), dt.float32, "b")
    padded = op("pad", a, low=(0, 0), high=(0, 0), interior=(0, 0))
    mm = op("matmul", op("exp", padded), op("concat", b, dim=1))
    return Case("matmul-computed", graph([mm], [a, b]),
                [data((4, 6), dt.float32, rng), data((6, 3), dt.float32, rng)], 1e-5, 1e-5)


def matmul_update(rng):
    """GEMMs that accumulate into their output (`addmm`): an SGD update of a weight from
    its gradient, which the backends' lowering folds (w - lr * x^T @ g), and a batched
    addmm node with an alpha computed from an input."""
    x, g, w = inp((37, 20), dt.float32, "x"), inp((37, 12), dt.float32, "g"), \
        inp((20, 12), dt.float32, "w")
    lr = inp((), dt.float32, "lr")
    grad = op("matmul", op("permute", x, dims=(1, 0)), g)
    step = op("sub", w, op("mul", op("expand", op("reshape", lr, shape=(1, 1)),
                                      shape=(20, 12)), grad))
    c, a, b = inp((3, 5, 4), dt.float32, "c"), inp((3, 5, 9), dt.float32, "a"), \
        inp((3, 9, 4), dt.float32, "b")
    batched = op("addmm", c, a, b, op("neg", op("mul", lr, lr)))
    shapes = [(37, 20), (37, 12), (20, 12), (), (3, 5, 4), (3, 5, 9), (3, 9, 4)]
    return Case("matmul-update", graph([step, batched], [x, g, w, lr, c, a, b]),
                [data(sh, dt.float32, rng) for sh in shapes], 1e-5, 1e-5)


def matmul_orientation(rng, m=32, k=48, n=128, out=64):
    """An MLP layer the backends' lowering computes feature-major (passes/orientation.py):
    `relu(x @ w1^T + b)` as `relu(w1 @ x^T + b)`, masked by a dropout draw (`rand`, read
    at the transposed index: the same number for each element), read by the next
    layer's GEMM through a transpose flag and by a bias-gradient-like column sum turned
    into a row sum."""
    x, w1, b, w2 = inp((m, k), dt.float32, "x"), inp((n, k), dt.float32, "w1"), \
        inp((n,), dt.float32, "b"), inp((out, n), dt.float32, "w2")
    seed, offset = inp((), dt.int64, "seed"), inp((), dt.int64, "offset")
    bias = op("expand", op("reshape", b, shape=(1, n)), shape=(m, n))
    h = op("relu", op("add", op("matmul", x, op("permute", w1, dims=(1, 0))), bias))
    def splat(v):
        c = op("const", value=v, dtype=dt.float32)
        return op("expand", op("reshape", c, shape=(1, 1)), shape=(m, n))
    keep = op("ge", op("rand", seed, offset, shape=(m, n), dtype=dt.float32), splat(0.25))
    h = op("where", keep, h, splat(0.0))
    y = op("matmul", h, op("permute", w2, dims=(1, 0)))
    col = op("sum", h, dims=(0,), keepdim=False)
    arrays = [data(sh, dt.float32, rng) for sh in ((m, k), (n, k), (n,), (out, n))]
    return Case("matmul-orientation", graph([y, col], [x, w1, b, w2, seed, offset]),
                arrays + [np.array(7, np.int64), np.array(1000, np.int64)], 1e-4, 1e-4)


def matmul_f16_epilogue(rng, m=9, k=20, n=6):
    """A float16 matmul is a loop matmul for fusion: the GEMM form with epilogue."""
    a, b, c = inp((m, k), dt.float16, "a"), inp((k, n), dt.float16, "b"), \
        inp((m, n), dt.float16, "c")
    y = op("relu", op("add", op("matmul", a, b), c))
    return Case("matmul-f16-epilogue", graph([y], [a, b, c]),
                [data((m, k), dt.float16, rng), data((k, n), dt.float16, rng),
                 data((m, n), dt.float16, rng)], 2e-3, 2e-3)


CONV_CASES = [dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
              dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=1),
              dict(stride=(1, 2), padding=(1, 0), dilation=(2, 1), groups=2)]


def conv(case, rng):
    attrs = CONV_CASES[case]
    x = inp((2, 4, 9, 8), dt.float32, "x")
    w = inp((6, 4 // attrs["groups"], 3, 2), dt.float32, "w")
    y = op("conv2d", x, w, **attrs)
    wt = inp((4, 6 // attrs["groups"], 3, 2), dt.float32, "wt")
    yt = op("conv_transpose2d", x, wt, output_padding=(1, 0) if case == 1 else (0, 0), **attrs)
    return Case(f"conv-{case}", graph([y, yt], [x, w, wt]),
                [data((2, 4, 9, 8), dt.float32, rng), data(w.shape, dt.float32, rng),
                 data(wt.shape, dt.float32, rng)], 1e-5, 1e-5)


# ----------------------------------------------------------------------------- sorting

# the smallest positive subnormal of each float dtype
_TINY = {"f16": 2.0 ** -24, "bf16": 2.0 ** -133, "f32": 2.0 ** -149, "f64": 2.0 ** -1074}


def sort_data(shape, dtype, rng):
    """Values with many ties (seven distinct values), the dtype's extremes, and for
    floats NaN (of both signs), +-inf, -0.0 next to 0.0 and +-the smallest subnormal
    scattered through: the order of every special value and of ties is checked."""
    x = rng.integers(-3, 4, size=shape)
    if dtype.is_bool:
        return x > 0
    flat_size = int(np.prod(shape))
    if dtype.is_floating:
        tiny = _TINY[dtype.short]
        special = [np.nan, -np.nan, np.inf, -np.inf, -0.0, 0.0, -0.0, tiny, -tiny, np.nan]
        x = (x * 0.5).astype(np.float64)
    else:
        info = np.iinfo(dtype.np)
        special = [info.min, info.max, info.min, info.max]
        x = x + 3 if dtype.short == "u8" else x
    flat = x.reshape(-1)
    put = min(len(special), flat_size)
    flat[rng.permutation(flat_size)[:put]] = special[:put]
    x = x.astype(dtype.np)
    return round_to_bfloat16(x) if dtype.short == "bf16" else x


def sorts(dtype, rng, shape=(7, 33)):
    """argsort (a SortKernel) in both directions along the last dim (rows of 33), along
    dim 0 (rows of 7, strided) and through a transposed view; rows of one element; the
    sorted values (a gather of the result, fused into its consumer), except for
    bfloat16: Triton's interpreter (3.6 to 3.9) flushes bfloat16 subnormals to zero when
    it widens them to float32, which the gathered values would show. The sort keys read
    the bits, so the indices are exact there too."""
    x = inp(shape, dtype)
    transposed = op("permute", x, dims=(1, 0))
    column = op("slice", x, starts=(0, 0), stops=(shape[0], 1), steps=(1, 1))
    outs = []
    for descending in (False, True):
        outs += [op("argsort", x, dim=1, descending=descending),
                 op("argsort", x, dim=0, descending=descending),
                 op("argsort", transposed, dim=1, descending=descending)]
    outs.append(op("argsort", column, dim=1, descending=True))
    if dtype.short != "bf16":
        outs.append(op("gather", x, outs[0], dim=1))
    return Case(f"sort-{dtype.name}", graph(outs, [x]), [sort_data(shape, dtype, rng)])


def sort_rows(dtype, rng, shape, dim, descending):
    """One argsort of rows along `dim`: long rows (1000+, or longer than one program
    sorts in registers: sort.py's merge steps over memory)."""
    x = inp(shape, dtype)
    out = op("argsort", x, dim=dim, descending=descending)
    order = "descending" if descending else "ascending"
    return Case(f"sort-{dtype.name}-{'x'.join(map(str, shape))}-dim{dim}-{order}",
                graph([out], [x]), [sort_data(shape, dtype, rng)])


# ----------------------------------------------------------------------------- the corpus

COVERED_OPS = set(UNARY_FLOAT) | set(UNARY_EXACT) | set(BINARY) | {
    "logical_not", "where", "cast", "const", "iota", "rand", "sum", "prod", "max", "min",
    "argmax", "argmin", "reshape", "permute", "expand", "slice", "pad", "concat", "flip",
    "gather", "scatter_add", "matmul", "conv2d", "conv_transpose2d", "check", "argsort",
    "addmm"}


def corpus(seed=0):
    """Every case, tiny sizes (what the interpreter tests and the sm_90 compile use)."""
    rng = np.random.default_rng(seed)
    out = []
    for d in FLOATS:
        out.append(unary_float(d, rng))
    for d in ALL:
        out.append(unary_exact(d, rng))
        out.append(binary(d, rng))
        out.append(where(d, rng))
        out.append(casts(d, rng))
        out.append(reductions(d, rng))
    out.append(special_values(rng))
    out.append(value_check(rng))
    out += [cast_edges(d) for d in FLOATS]
    out += [float_divmod_edges(d) for d in (dt.float32, dt.float64, dt.float16)]
    out += [int_pow_negative(d) for d in (dt.int32, dt.int64)]
    out += [math_unary_edges(d) for d in FLOATS]
    out += [signed_zero_unary(d) for d in FLOATS]
    out.append(signed_zero_sums())
    out += [math_binary_edges(d, exact) for d in FLOATS for exact in (True, False)]
    out += [int_fmod(d) for d in (dt.int32, dt.int64)]
    out.append(sources(rng))
    for d in (dt.float32, dt.int32, dt.bool_, dt.float16):
        out.append(arg_reductions(d, rng))
    for d in (dt.float32, dt.float64, dt.int32, dt.int64):
        out.append(column_reductions(d, rng))
    out += [long_sum(rng, 5000), empty_sizes(rng), movement(rng), gather_scatter(rng)]
    out += [flips(d, rng) for d in (dt.float32, dt.float64, dt.int64, dt.bool_)]
    out += [views(rng, n) for n in (1, 7, 1023)]
    out += [scatter_rows(d, rng) for d in (dt.float32, dt.float64, dt.float16, dt.bfloat16,
                                           dt.int32, dt.int64, dt.uint8, dt.bool_)]
    out += [matmul(d, rng) for d in (dt.float32, dt.float64, dt.bfloat16, dt.float16,
                                     dt.int32, dt.int64)]
    out += [matmul_views(rng), matmul_computed_operand(rng), matmul_f16_epilogue(rng),
            matmul_update(rng), matmul_orientation(rng)]
    out += [matmul_sizes(rng, *s) for s in ((1, 1, 1), (7, 1, 3), (70, 3, 1), (4, 0, 3),
                                            (0, 3, 2))]
    out += [conv(c, rng) for c in range(len(CONV_CASES))]
    out += [sorts(d, rng) for d in ALL]
    out += [sort_rows(dt.float32, rng, (3, 1001), 1, False),
            sort_rows(dt.bfloat16, rng, (3, 1001), 1, True),
            sort_rows(dt.int64, rng, (1001, 3), 0, True),
            sort_rows(dt.uint8, rng, (2, 1001), 1, False)]
    # rows past sort.ROW_LIMIT: chunks, then merge phases with mirrored and plain steps
    longest = 2 * sort.ROW_LIMIT + 1000
    out += [sort_rows(dt.float32, rng, (longest, 2), 0, False),
            sort_rows(dt.float64, rng, (2, longest), 1, True)]
    return out


def expected(case: Case) -> list:
    """The outputs `case` must produce: its own reference, else the reference
    interpreter's."""
    if case.reference is not None:
        return case.reference(case.inputs)
    return interp.compile(case.graph)(case.inputs)


def verify(case: Case, got, want):
    """Assert got matches want under the case's error bounds, else its rtol/atol."""
    bounds = case.error_bound(case.inputs) if case.error_bound is not None else None
    if case.signed_zeros:
        for k, (a, b) in enumerate(zip(got, want)):
            a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
            bad = (np.signbit(a) != np.signbit(b)) & ~np.isnan(b)
            assert not bad.any(), f"{case.name} output {k}: sign differs at " \
                                  f"{np.flatnonzero(bad)[:8].tolist()}"
    if bounds is None:
        compare(got, want, case.rtol, case.atol, case.name)
        return
    assert len(got) == len(want) == len(bounds), \
        f"{case.name}: {len(got)} outputs, expected {len(want)}"
    for k, (a, b, bound) in enumerate(zip(got, want, bounds)):
        if bound is None:
            compare([a], [b], case.rtol, case.atol, f"{case.name}[{k}]")
        else:
            within_bound(a, b, bound, f"{case.name} output {k}")


def within_bound(got, want, bound, label=""):
    """Assert |got - want| <= bound elementwise (NaNs and infinities must match)."""
    a, b = np.asarray(got), np.asarray(want)
    assert a.shape == b.shape, f"{label}: shape {a.shape} vs {b.shape}"
    assert a.dtype == b.dtype, f"{label}: dtype {a.dtype} vs {b.dtype}"
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    finite = np.isfinite(b64)
    np.testing.assert_array_equal(a64[~finite], b64[~finite], err_msg=label)
    err = np.where(finite, np.abs(a64 - b64), 0.0)
    bound = np.broadcast_to(np.asarray(bound, np.float64), err.shape)
    bad = ~(err <= bound)
    if bad.any():
        excess = np.where(bad, err / np.maximum(bound, 1e-300), 0.0)
        worst = np.unravel_index(np.argmax(excess), err.shape)
        raise AssertionError(
            f"{label}: {int(bad.sum())} of {err.size} elements exceed the error bound; "
            f"worst at {tuple(int(i) for i in worst)}: got {a64[worst]!r}, want "
            f"{b64[worst]!r}, |diff| {err[worst]:.3g} > bound {bound[worst]:.3g}")


def compare(got, want, rtol, atol, label=""):
    """Assert outputs match (shapes, dtypes, values; NaNs equal)."""
    assert len(got) == len(want), f"{label}: {len(got)} outputs, expected {len(want)}"
    for k, (a, b) in enumerate(zip(got, want)):
        a, b = np.asarray(a), np.asarray(b)
        assert a.shape == b.shape, f"{label} output {k}: shape {a.shape} vs {b.shape}"
        assert a.dtype == b.dtype, f"{label} output {k}: dtype {a.dtype} vs {b.dtype}"
        if (rtol == 0 and atol == 0) or b.dtype.kind not in "fc":
            np.testing.assert_array_equal(a, b, err_msg=f"{label} output {k}")
        else:
            np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol,
                                       atol=atol, equal_nan=True,
                                       err_msg=f"{label} output {k}")
