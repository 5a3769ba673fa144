"""Differential tests: the LLVM backend against the reference interpreter.

Tolerances (stated once, used everywhere):
  * exact ops (arithmetic, comparisons, casts, movement, where, min/max, integer math)
    must match bit for bit (NaNs equal);
  * float32 transcendentals: our polynomials and libm against numpy's own SIMD
    routines differ by a few ulp: rtol 4e-6, atol 1e-6 (graphc's erf/gelu/tanh/exp/log are
    also checked against float64 references over wide ranges below);
  * reductions: summation order differs from numpy's pairwise sum: rtol 1e-5, atol
    1e-5 * sum(|x|) / n scale for float32;
  * float16 / bfloat16: one unit in the last place of the format (rtol 1e-3 / 8e-3).
"""
from __future__ import annotations

import math
import os
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import graphc as gc
from graphc.backends import interp
from graphc.backends import kernel_ir as K
from graphc.backends import llvm as L
from graphc.backends.llvm import cache as disk_cache
from graphc.ir import dtypes as dt
from graphc.ir.graph import TensorType
from graphc.ir.registry import all_ops, get_op
from graphc.passes.autodiff import grad_graph
from graphc.passes.fusion import fuse as fuse_plan
from graphc.testing import DIVMOD_EDGES, data, graph, inp, op, random_graphs
from conftest import tensor_graph


# compiled kernels go to a cache directory of this module's own (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("private_cache")


# ----------------------------------------------------------------------------- helpers

def tol(dtype, transcendental=False):
    if dtype.short == "f16":
        return 2e-3, 1e-3
    if dtype.short == "bf16":
        return 1.6e-2, 1e-2
    if dtype.short == "f32":
        return (4e-6, 1e-6) if transcendental else (0, 0)
    if dtype.short == "f64":
        return (1e-13, 1e-14) if transcendental else (0, 0)
    return 0, 0


def check(g, inputs, rtol=0.0, atol=0.0, names=None):
    want = interp.compile(g)(inputs)
    got = L.compile(g)(inputs)
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        what = f"output {k}" + (f" ({names[k]})" if names else "")
        assert a.shape == b.shape, f"{what}: shape {a.shape} vs {b.shape}"
        assert a.dtype == b.dtype, f"{what}: dtype {a.dtype} vs {b.dtype}"
        if rtol == 0 and atol == 0 or b.dtype.kind not in "fc":
            np.testing.assert_array_equal(a, b, err_msg=what)
        else:
            np.testing.assert_allclose(a.astype(np.float64), b.astype(np.float64), rtol=rtol,
                                       atol=atol, equal_nan=True, err_msg=what)
    return got


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
MATH_UNARY = ["tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
              "log2", "log10", "exp2"]


def math_data(shape, dtype, rng, kind="any"):
    """`data` plus the domains of the inverse functions: 'unit' in (-1, 1) (asin, acos,
    atanh) and 'ge1' at least 1 (acosh)."""
    if kind not in ("unit", "ge1"):
        return data(shape, dtype, rng, kind)
    x = rng.uniform(-0.99, 0.99, shape) if kind == "unit" else \
        1 + np.abs(rng.standard_normal(shape)) * 3
    x = np.asarray(x).astype(dtype.np)
    return interp.round_to_bfloat16(x) if dtype.short == "bf16" else x


# ----------------------------------------------------------------------------- every op

@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
def test_unary_float_ops(dtype, rng):
    """Every float-only unary op (one graph per dtype, one output per op)."""
    names = sorted(UNARY_FLOAT)
    xs = [inp((7, 33), dtype, n) for n in names]
    outs = [op(n, x) for n, x in zip(names, xs)]
    check(graph(outs, xs), [math_data((7, 33), dtype, rng, UNARY_FLOAT[n]) for n in names],
          *tol(dtype, transcendental=True), names=names)


def test_gelu_tanh_approximation(rng):
    for dtype in (dt.float32, dt.float64):
        x = inp((100,), dtype)
        check(graph([op("gelu", x, approximate="tanh")], [x]), [data((100,), dtype, rng)],
              *tol(dtype, True))


def _exact_unary_ok(name, dtype):
    if name == "bitwise_not":
        return not dtype.is_floating and not dtype.is_bool
    if dtype.is_bool and name in ("floor", "ceil", "round", "neg", "sign"):
        return False   # not defined on bool (numpy raises)
    return dtype.is_floating or name not in ("floor", "ceil", "round")


@pytest.mark.parametrize("dtype", ALL, ids=lambda d: d.name)
def test_unary_exact_ops(dtype, rng):
    names = [n for n in UNARY_EXACT if _exact_unary_ok(n, dtype)]
    x = inp((5, 9), dtype)
    a = data((5, 9), dtype, rng)
    if dtype.is_floating:
        a[0, :4] = np.array([np.nan, np.inf, -np.inf, 0.5], dtype=a.dtype)
    check(graph([op(n, x) for n in names], [x]), [a], *tol(dtype), names=names)


def test_logical_not(rng):
    x = inp((13,), dt.bool_)
    check(graph([op("logical_not", x)], [x]), [data((13,), dt.bool_, rng)])


BINARY = ["add", "sub", "mul", "div", "floordiv", "mod", "pow", "maximum", "minimum",
          "eq", "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor",
          "fmod", "atan2", "hypot", "copysign", "bitwise_and", "bitwise_or", "bitwise_xor"]
BINARY_TRANSCENDENTAL = ("pow", "atan2", "hypot")   # libm routines; the others are exact


def _binary_ok(name, dtype):
    try:
        get_op(name).infer([TensorType((1,), dtype)] * 2, {})
        return True
    except Exception:
        return False


@pytest.mark.parametrize("dtype", ALL, ids=lambda d: d.name)
def test_binary_ops(dtype, rng):
    """Every binary op the dtype accepts (one graph per dtype, one output per op)."""
    names = [n for n in BINARY if _binary_ok(n, dtype)]
    ins, vals, outs = [], [], []
    for name in names:
        a, b = inp((6, 17), dtype, "a"), inp((6, 17), dtype, "b")
        av, bv = data((6, 17), dtype, rng), data((6, 17), dtype, rng)
        if name == "pow" and dtype.is_floating:
            av = np.abs(av).astype(av.dtype)
        if name == "pow" and not dtype.is_floating:
            bv = (np.abs(bv.astype(np.int64)) % 5).astype(dtype.np)
        if name in ("floordiv", "mod", "fmod") and not dtype.is_floating:
            bv[0, :3] = 0   # numpy gives 0 for integer division by zero
        if name in ("floordiv", "mod", "fmod", "div") and dtype.is_floating:
            bv = np.where(bv == 0, 1, bv).astype(bv.dtype)
        ins += [a, b]
        vals += [av, bv]
        outs.append(op(name, a, b))
    # pow, atan2 and hypot are libm's; the others are exact at any tolerance
    g = graph(outs, ins)
    got = check(g, vals, *tol(dtype, transcendental=True), names=names)
    exact = [k for k, n in enumerate(names) if n not in BINARY_TRANSCENDENTAL]
    want = interp.compile(g)(vals)
    for k in exact:
        np.testing.assert_array_equal(got[k], want[k], err_msg=names[k])


def _bits_equal(a, b):
    """Equal values, zeros of equal sign, NaN where NaN."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    same = ((a == b) & (np.signbit(a) == np.signbit(b))) | (np.isnan(a) & np.isnan(b))
    return int(np.sum(~same))


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
def test_float_floordiv_and_mod_take_torchs_values_bit_for_bit(dtype, rng):
    """Floor division and remainder from fmod, as PyTorch computes them: 1 // 0.1 is 9,
    5 % inf is 5, -5 % inf is inf, x // 0 is x / 0, zeros keep PyTorch's signs. The
    interpreter matches torch bit for bit (bfloat16: to torch's within its rounding of
    intermediates), and LLVM matches the interpreter."""
    import torch
    n = 4000
    av = (rng.standard_normal(n) * rng.choice([0.1, 1, 10, 1000], n))
    bv = (rng.standard_normal(n) * rng.choice([0.1, 1, 10], n))
    edges = np.array(DIVMOD_EDGES, np.float64)
    av[:len(edges)], bv[:len(edges)] = edges[:, 0], edges[:, 1]
    a_np, b_np = av.astype(dtype.np), bv.astype(dtype.np)
    if dtype is dt.bfloat16:
        a_np, b_np = interp.round_to_bfloat16(a_np), interp.round_to_bfloat16(b_np)
    a, b = inp((n,), dtype, "a"), inp((n,), dtype, "b")
    g = graph([op("floordiv", a, b), op("mod", a, b)], [a, b])
    got = check(g, [a_np, b_np])
    if dtype is dt.bfloat16:
        return   # graphc stores bfloat16 in float32 and rounds only each op's result
    ta, tb = torch.from_numpy(a_np), torch.from_numpy(b_np)
    assert _bits_equal(got[0], (ta // tb).numpy()) == 0
    assert _bits_equal(got[1], (ta % tb).numpy()) == 0


@pytest.mark.parametrize("dtype", [dt.int32, dt.int64], ids=lambda d: d.name)
def test_integer_power_with_negative_exponents_takes_torchs_values(dtype):
    """PyTorch: 1 ** -k is 1, (-1) ** -k is +-1 by parity, any other base gives 0."""
    import torch
    base = np.array([2, 3, -1, -1, 1, 0, -2, 5, -3, 7], dtype.np)
    expo = np.array([-2, -1, -3, -4, -5, -1, -1, 2, 3, 0], dtype.np)
    a, b = inp((10,), dtype, "a"), inp((10,), dtype, "b")
    got = check(graph([op("pow", a, b)], [a, b]), [base, expo])
    want = (torch.from_numpy(base) ** torch.from_numpy(expo)).numpy()
    np.testing.assert_array_equal(got[0], want)


# ----------------------------------------------------------------------------- math vs torch

# Operands where the math ops have special values: signed zeros, infinities, nan, the
# domain edges (asin/acos/atanh at +-1, acosh at 1, log2/log10 of 0), sinh/cosh near
# float32's overflow (89: finite, 100: inf), tiny and huge operands of atan2/hypot/fmod.
MATH_SPECIALS = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1.0, -1.0, 0.5, -0.5, 2.0, -2.0,
                 1e-30, -1e-30, 3.0, -7.5, 88.5, 89.0, -89.0, 100.0, 1e30]
_TORCH_DTYPES = {"f32": "float32", "f64": "float64", "f16": "float16", "bf16": "bfloat16"}


def _stored(values, dtype):
    with np.errstate(over="ignore"):
        x = np.asarray(values, np.float64).astype(dtype.np)
    return interp.round_to_bfloat16(x) if dtype.short == "bf16" else x


def _torch_values(name, arrays, dtype, one_by_one=False):
    """torch.<name> of the arrays in dtype, as float64. `one_by_one`: element by element,
    which runs torch's scalar loop (libm, as its CUDA kernels). Its vectorised CPU loop
    overflows early in sinh/cosh (float32 sinh(89) is inf there, 2.2448e38 in libm and
    in its own scalar loop) and gives nan for float32 fmod of huge ratios (1e30 fmod
    1e-30); graphc follows libm and C fmod, so the special operands are compared with
    torch's scalar results."""
    import torch
    tdt = getattr(torch, _TORCH_DTYPES[dtype.short])
    fn = getattr(torch, name)
    if dtype.short == "bf16":
        # graphc's bfloat16 values are float32 values with zero low halves: keep their
        # bits (torch's float32 -> bfloat16 conversion turns nan into a negative nan)
        ts = [torch.from_numpy((np.ascontiguousarray(a, np.float32).view(np.uint32) >> 16)
                               .astype(np.uint16).view(np.int16)).view(tdt) for a in arrays]
    else:
        ts = [torch.from_numpy(np.ascontiguousarray(a)).to(tdt) for a in arrays]
    if one_by_one:
        flat = [t.reshape(-1) for t in ts]
        out = torch.cat([fn(*[t[i:i + 1] for t in flat]) for i in range(flat[0].numel())])
        out = out.reshape(ts[0].shape)
    else:
        out = fn(*ts)
    return out.to(torch.float64).numpy()


def _assert_like_torch(got, want, rtol, atol, what):
    """Close to torch's values; nan, +-inf and the sign of zeros exactly where torch has
    them."""
    got = np.asarray(got, np.float64)
    np.testing.assert_array_equal(np.isnan(got), np.isnan(want), err_msg=f"{what}: nans")
    inf = np.isinf(want)
    np.testing.assert_array_equal(got[inf], want[inf], err_msg=f"{what}: infinities")
    zero = want == 0
    np.testing.assert_array_equal(np.signbit(got[zero]), np.signbit(want[zero]),
                                  err_msg=f"{what}: signs of zeros")
    np.testing.assert_allclose(got, want, rtol=rtol, atol=atol, equal_nan=True, err_msg=what)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
def test_math_unary_ops_take_torchs_values(dtype, rng):
    """tan, asin, ..., exp2 on random operands of each op's domain and on the special
    operands, compiled by LLVM and run by the reference interpreter, against torch."""
    n = 300
    x = inp((n,), dtype)
    sx = inp((len(MATH_SPECIALS),), dtype, "s")
    g = graph([op(name, x) for name in MATH_UNARY] + [op(name, sx) for name in MATH_UNARY],
              [x, sx])
    special = _stored(MATH_SPECIALS, dtype)
    for name in MATH_UNARY:
        a = math_data((n,), dtype, rng, UNARY_FLOAT[name])
        (want,) = [_torch_values(name, [a], dtype)]
        want_sp = _torch_values(name, [special], dtype, one_by_one=True)
        for backend in (L, interp):
            got = backend.compile(g)([a, special])
            k = MATH_UNARY.index(name)
            what = f"{name} {dtype.name} ({backend.__name__})"
            _assert_like_torch(got[k], want, *tol(dtype, True), what)
            _assert_like_torch(got[len(MATH_UNARY) + k], want_sp, *tol(dtype, True),
                               what + " at special operands")


def test_math_unary_domain_edges():
    """The values the brief of each function fixes, in float32 and float64: exact."""
    cases = {"asin": [(1, math.pi / 2), (-1, -math.pi / 2), (1.5, math.nan)],
             "acos": [(1, 0.0), (-1, math.pi), (-1.01, math.nan)],
             "acosh": [(1, 0.0), (0.5, math.nan), (math.inf, math.inf)],
             "atanh": [(1, math.inf), (-1, -math.inf), (2, math.nan), (-0.0, -0.0)],
             "log2": [(0, -math.inf), (-0.0, -math.inf), (-1, math.nan), (8, 3.0)],
             "log10": [(0, -math.inf), (1000, 3.0), (-2, math.nan)],
             "exp2": [(-math.inf, 0.0), (math.inf, math.inf), (10, 1024.0), (-1, 0.5)],
             "tan": [(-0.0, -0.0)], "atan": [(math.inf, math.pi / 2), (-0.0, -0.0)],
             "sinh": [(-math.inf, -math.inf), (-0.0, -0.0)], "cosh": [(-math.inf, math.inf)],
             "asinh": [(-math.inf, -math.inf), (-0.0, -0.0)]}
    for dtype in (dt.float32, dt.float64):
        for name, pairs in cases.items():
            xs = np.array([p[0] for p in pairs], dtype.np)
            want = np.array([p[1] for p in pairs], dtype.np)
            x = inp(xs.shape, dtype)
            (got,) = L.compile(graph([op(name, x)], [x]))([xs])
            assert _bits_equal(got, want) == 0, (name, dtype.name, got, want)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
def test_odd_functions_and_roundings_keep_the_sign_of_zero(dtype):
    """neg(+0.0) is -0.0, tanh(-0.0) -0.0, ceil(-0.5) and round(-0.4) -0.0, relu(-0.0)
    -0.0, as in torch (the Triton corpus has the same case: checks.signed_zero_unary)."""
    from graphc.backends.triton.checks import SIGNED_ZERO_UNARY, signed_zero_unary
    case = signed_zero_unary(dtype)
    (a,) = case.inputs
    for backend in (L, interp):
        got = backend.compile(case.graph)(case.inputs)
        for name, g in zip(SIGNED_ZERO_UNARY, got):
            _assert_like_torch(g, _torch_values(name, [a], dtype, one_by_one=True),
                               case.rtol, case.atol, f"{name} {dtype.name} ({backend.__name__})")

def test_math_binary_special_values():
    """C99's special values, exactly (float32 and float64, LLVM and the interpreter)."""
    pi, inf, nan = math.pi, math.inf, math.nan
    cases = {"atan2": [(0.0, 0.0, 0.0), (-0.0, 0.0, -0.0), (0.0, -0.0, pi), (-0.0, -0.0, -pi),
                       (inf, inf, pi / 4), (-inf, -inf, -3 * pi / 4), (1, -inf, pi),
                       (-1, inf, -0.0), (inf, 1, pi / 2), (nan, 1, nan)],
             "hypot": [(inf, nan, inf), (nan, -inf, inf), (nan, 1, nan), (3, 4, 5.0),
                       (-0.0, 0.0, 0.0), (1e30, 1e30, 1.4142135623730951e30)],
             "fmod": [(5, 0, nan), (inf, 2, nan), (5, inf, 5.0), (-5, 3, -2.0), (-6, 3, -0.0),
                      (5.5, -2, 1.5), (-0.0, 2, -0.0), (nan, 1, nan)],
             "copysign": [(3, -0.0, -3.0), (-3, 0.0, 3.0), (inf, -1, -inf), (0.0, -2, -0.0),
                          (nan, -1, -nan)]}
    for dtype in (dt.float32, dt.float64):
        for name, rows in cases.items():
            av, bv, want = (np.array(col, dtype.np) for col in zip(*rows))
            a, b = inp(av.shape, dtype, "a"), inp(bv.shape, dtype, "b")
            g = graph([op(name, a, b)], [a, b])
            for backend in (L, interp):
                (got,) = backend.compile(g)([av, bv])
                assert _bits_equal(got, want) == 0, (name, dtype.name, got, want)


@pytest.mark.parametrize("dtype", FLOATS, ids=lambda d: d.name)
def test_math_binary_ops_take_torchs_values(dtype, rng):
    """atan2, hypot, fmod and copysign on random operands and on every pair of special
    operands (atan2 of signed zeros and infinities, hypot(inf, nan) = inf, fmod by 0 and
    by inf, fmod keeping the dividend's sign), LLVM and the interpreter against torch."""
    n = 300
    av = data((n,), dtype, rng) * _stored(rng.choice([0.01, 1, 100], n), dtype)
    bv = data((n,), dtype, rng)
    av, bv = _stored(av, dtype), _stored(bv, dtype)
    special = _stored(MATH_SPECIALS, dtype)
    sa, sb = np.repeat(special, len(special)), np.tile(special, len(special))
    a, b = inp((n,), dtype, "a"), inp((n,), dtype, "b")
    ea, eb = inp(sa.shape, dtype, "ea"), inp(sb.shape, dtype, "eb")
    names = ["atan2", "hypot", "fmod", "copysign"]
    g = graph([op(name, a, b) for name in names] + [op(name, ea, eb) for name in names],
              [a, b, ea, eb])
    for backend in (L, interp):
        got = backend.compile(g)([av, bv, sa, sb])
        for k, name in enumerate(names):
            rtol, atol = tol(dtype, transcendental=name in ("atan2", "hypot"))
            what = f"{name} {dtype.name} ({backend.__name__})"
            _assert_like_torch(got[k], _torch_values(name, [av, bv], dtype), rtol, atol, what)
            _assert_like_torch(got[len(names) + k],
                               _torch_values(name, [sa, sb], dtype, one_by_one=True),
                               rtol, atol, what + " at special operands")


@pytest.mark.parametrize("dtype", INTS, ids=lambda d: d.name)
def test_integer_fmod_takes_torchs_values(dtype, rng):
    """C's truncated remainder (sign of the dividend) as torch.fmod; where torch raises
    (a zero divisor) graphc gives 0, its integer convention; INT_MIN fmod -1 is 0."""
    import torch
    av, bv = data((200,), dtype, rng), data((200,), dtype, rng)
    if dtype.is_signed:
        av[:3], bv[:3] = np.iinfo(dtype.np).min, [-1, 3, 7]
    bv[10:15] = 0
    a, b = inp((200,), dtype, "a"), inp((200,), dtype, "b")
    got = check(graph([op("fmod", a, b)], [a, b]), [av, bv])[0]
    nz = bv != 0
    want = torch.fmod(torch.from_numpy(av[nz]), torch.from_numpy(bv[nz])).numpy()
    np.testing.assert_array_equal(got[nz], want)
    assert np.all(got[~nz] == 0)


def test_float_nan_propagation_in_max_min():
    a, b = inp((4,), dt.float32, "a"), inp((4,), dt.float32, "b")
    av = np.array([np.nan, 1, 2, -np.inf], np.float32)
    bv = np.array([1, np.nan, 3, np.inf], np.float32)
    check(graph([op("maximum", a, b), op("minimum", a, b)], [a, b]), [av, bv])


@pytest.mark.parametrize("dtype", ALL, ids=lambda d: d.name)
def test_where(dtype, rng):
    c, a, b = inp((8, 3), dt.bool_, "c"), inp((8, 3), dtype, "a"), inp((8, 3), dtype, "b")
    check(graph([op("where", c, a, b)], [c, a, b]),
          [data((8, 3), dt.bool_, rng), data((8, 3), dtype, rng), data((8, 3), dtype, rng)])


@pytest.mark.parametrize("src", ALL, ids=lambda d: d.name)
def test_cast_every_pair(src, rng):
    x = inp((40,), src)
    a = data((40,), src, rng)
    if src.is_floating:
        a = (a * 20).astype(a.dtype)
        if src.short == "bf16":
            a = interp.round_to_bfloat16(a)
    outs = []
    for dst in ALL:
        if dst.short == "u8" and src.is_floating:
            continue   # negative float -> uint8 is undefined in C (numpy's result is the CPU's)
        outs.append(op("cast", x, dtype=dst))
    check(graph(outs, [x]), [a])


def test_sources_const_iota_rand():
    seed, off = inp((), dt.int64, "seed"), inp((), dt.int64, "off")
    outs = [op("iota", shape=(3, 5), dim=1, dtype=dt.float32),
            op("iota", shape=(4, 2), dim=0, dtype=dt.int64),
            op("add", op("iota", shape=(6,), dim=0, dtype=dt.int32),
               op("expand", op("reshape", op("const", value=3, dtype=dt.int32), shape=(1,)),
                  shape=(6,))),
            op("rand", seed, off, shape=(5, 7), dtype=dt.float32),
            op("rand", seed, off, shape=(64,), dtype=dt.float64, normal=True),
            op("rand", seed, off, shape=(9,), dtype=dt.bfloat16)]
    check(graph(outs, [seed, off]), [np.array(42), np.array(1000)], 1e-12, 1e-12)


# ----------------------------------------------------------------------------- reductions

@pytest.mark.parametrize("dtype", ALL, ids=lambda d: d.name)
def test_reductions(dtype, rng):
    for name in ["sum", "prod", "max", "min"]:
        _check_reduction(name, dtype, rng)


def _check_reduction(name, dtype, rng):
    x = inp((6, 5, 4), dtype)
    a = data((6, 5, 4), dtype, rng)
    if name == "prod" and dtype.is_floating:
        a = (np.abs(a) * 0.3 + 0.7).astype(a.dtype)
    if name == "prod" and not dtype.is_floating and not dtype.is_bool:
        a = (a % 3 + 1).astype(a.dtype)
    cases = [((0,), False), ((1,), True), ((2,), False), ((0, 2), True), ((0, 1, 2), True),
             ((), False)]
    if dtype.short != "bf16":   # interp bug: round_to_bfloat16 turns 0-d results into 1-d
        cases.append(((0, 1, 2), False))
    outs = [op(name, x, dims=d, keepdim=k) for d, k in cases]
    rt = {"f32": 2e-6, "f64": 1e-13, "f16": 2e-3, "bf16": 1.6e-2}.get(dtype.short, 0)
    check(graph(outs, [x]), [a], rt, rt, names=[f"{name} dims={d} keepdim={k}"
                                               for d, k in cases])


@pytest.mark.parametrize("dtype", [dt.float32, dt.int32, dt.bool_, dt.float16],
                         ids=lambda d: d.name)
@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_arg_reductions(name, dtype, rng):
    x = inp((5, 8), dtype)
    a = data((5, 8), dtype, rng)
    if dtype.is_floating:
        a[1, 3] = np.nan
        a[2, :] = 1.0   # ties: first index wins
    outs = [op(name, x, dim=0, keepdim=False), op(name, x, dim=1, keepdim=True)]
    check(graph(outs, [x]), [a])


@pytest.mark.parametrize("dtype", [dt.float32, dt.float64, dt.int32, dt.int64],
                         ids=lambda d: d.name)
@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_arg_reductions_over_long_rows_take_numpys_index(name, dtype, rng):
    """Rows of at least codegen.ROLLED_MIN_EXTENT run the two-pass form (extreme, then
    the first index holding it): the first NaN, the first of ties, -0.0 == 0.0."""
    from graphc.backends.llvm.codegen import ROLLED_MIN_EXTENT
    n = ROLLED_MIN_EXTENT + 44
    a = (data((6, n), dtype, rng) * (1 if dtype.is_floating else 3)).astype(dtype.np)
    a[0, 10:20] = a[0].max() + 1          # a run of ties: the first wins
    a[1, -3:] = a[1].min() - 1
    if dtype.is_floating:
        a[2, [7, 40, 200]] = np.nan       # the first NaN, as numpy and torch
        a[3, :] = 0.0
        a[3, [5, 9]] = -0.0               # equal to 0.0: index 0 wins either way
        a[4, :] = -np.inf
    x = inp((6, n), dtype)
    fn = getattr(np, name)
    for out in (op(name, x, dim=1, keepdim=False),
                op(name, op("permute", x, dims=(1, 0)), dim=0, keepdim=False)):
        (got,) = L.compile(graph([out], [x]))([a])
        np.testing.assert_array_equal(got, fn(a, axis=1))


def test_long_float32_sum_is_accurate():
    n = 1 << 24
    x = inp((n,), dt.float32)
    a = (np.random.default_rng(0).random(n, dtype=np.float32) + 0.5)
    s = op("sum", x, dims=(0,), keepdim=False)
    (got,) = L.compile(graph([s], [x]))([a])
    ref = a.astype(np.float64).sum()
    assert abs(float(got) - ref) / ref < 1e-5


def test_sum_of_size_zero_dim_and_empty_outputs(rng):
    x = inp((0, 4), dt.float32)
    outs = [op("sum", x, dims=(0,), keepdim=False), op("exp", x),
            op("prod", x, dims=(0, 1), keepdim=True)]
    check(graph(outs, [x]), [np.zeros((0, 4), np.float32)])


# ----------------------------------------------------------------------------- movement

def test_movement_ops_as_index_arithmetic(rng):
    x = inp((4, 6, 5), dt.float32)
    a = data((4, 6, 5), dt.float32, rng)
    r = op("reshape", x, shape=(24, 5))
    p = op("permute", x, dims=(2, 0, 1))
    s = op("slice", x, starts=(1, 0, 4), stops=(4, 6, 0 + 5), steps=(2, 3, 1))
    e = op("expand", op("slice", x, starts=(0, 0, 0), stops=(4, 1, 5), steps=(1, 1, 1)),
           shape=(4, 6, 5))
    pd = op("pad", x, low=(1, 0, 2), high=(0, 2, 1), interior=(0, 1, 2))
    c = op("concat", x, op("exp", x), x, dim=1)
    chain = op("reshape", op("permute", op("slice", x, starts=(0, 1, 0), stops=(4, 6, 5),
                                           steps=(1, 2, 2)), dims=(1, 2, 0)), shape=(9, 4))
    check(graph([r, p, s, e, pd, c, op("exp", chain)], [x]), [a], *tol(dt.float32, True))


@pytest.mark.parametrize("dtype", ALL, ids=lambda d: d.name)
def test_flip_matches_torch(dtype, rng):
    """flip along any set of dims, alone and inside chains of movement and elementwise
    ops, exact for every dtype, against torch.flip."""
    import torch
    x = inp((4, 6, 5), dtype)
    a = data((4, 6, 5), dtype, rng)
    dims_cases = [(0,), (1,), (2,), (0, 2), (0, 1, 2), ()]
    outs = [op("flip", x, dims=d) for d in dims_cases]
    outs.append(op("flip", op("permute", op("flip", x, dims=(1,)), dims=(2, 0, 1)),
                   dims=(0, 2)))
    outs.append(op("flip", op("slice", x, starts=(1, 0, 0), stops=(4, 6, 5),
                              steps=(2, 3, 1)), dims=(0, 1)))
    outs.append(op("reshape", op("flip", x, dims=(2,)), shape=(24, 5)))
    got = check(graph(outs, [x]), [a])
    t = torch.from_numpy(a.astype(np.float32) if dtype.short == "bf16" else a)
    want = [torch.flip(t, d) for d in dims_cases]
    want.append(torch.flip(torch.flip(t, (1,)).permute(2, 0, 1), (0, 2)))
    want.append(torch.flip(t[1:4:2, 0:6:3, :], (0, 1)))
    want.append(torch.flip(t, (2,)).reshape(24, 5))
    for k, (g_, w) in enumerate(zip(got, want)):
        np.testing.assert_array_equal(g_, w.numpy(), err_msg=f"output {k}")


def test_flip_of_zero_dim_and_empty_values():
    s, e = inp((), dt.float32, "s"), inp((3, 0), dt.float32, "e")
    got = check(graph([op("flip", s, dims=()), op("flip", e, dims=(0, 1))], [s, e]),
                [np.float32(2.5), np.zeros((3, 0), np.float32)])
    assert got[0] == 2.5 and got[1].shape == (3, 0)


def test_odd_sizes_and_noncontiguous_views(rng):
    for n in (1, 7, 1023):
        x = inp((n, 3), dt.float32)
        a = data((n, 3), dt.float32, rng)
        t = op("permute", x, dims=(1, 0))
        sl = op("slice", t, starts=(0, 0), stops=(3, n), steps=(2, 3))
        y = op("mul", sl, sl)
        s = op("sum", t, dims=(1,), keepdim=False)
        check(graph([y, s, op("neg", t)], [x]), [a], 1e-5, 1e-5)


def test_gather_and_scatter_add(rng):
    x = inp((5, 7), dt.float32, "x")
    idx = inp((5, 3), dt.int64, "idx")
    src = inp((5, 3), dt.float32, "src")
    iv = rng.integers(-5, 5, size=(5, 3))
    g1 = op("gather", x, idx, dim=1)
    g2 = op("exp", op("gather", op("permute", x, dims=(1, 0)),
                      op("permute", op("slice", idx, starts=(0, 0), stops=(5, 3),
                                       steps=(1, 1)), dims=(1, 0)), dim=1))
    sc = op("scatter_add", x, idx, src, dim=1)
    check(graph([g1, g2, sc], [x, idx, src]),
          [data((5, 7), dt.float32, rng), iv, data((5, 3), dt.float32, rng)], 4e-6, 1e-6)
    idx0 = inp((3, 7), dt.int64, "i0")
    sc0 = op("scatter_add", x, idx0, op("slice", x, starts=(0, 0), stops=(3, 7),
                                        steps=(1, 1)), dim=0)
    check(graph([sc0], [x, idx0]), [data((5, 7), dt.float32, rng),
                                     rng.integers(0, 5, size=(3, 7))], 1e-6, 1e-6)


def _checked_sum(n, dtype=dt.float32):
    """sum(check(x, x >= 0) * check(x, x < 1000)): two checks fused into a reduction."""
    x = inp((n,), dtype)

    def splat(v):
        return op("expand", op("reshape", op("const", value=v, dtype=dtype), shape=(1,)),
                  shape=(n,))
    y = op("check", x, op("ge", x, splat(0)), message="x must be non-negative")
    y = op("check", y, op("lt", y, splat(1000)), message="x must be below 1000")
    return graph([op("sum", op("mul", y, y), dims=(0,), keepdim=False)], [x])


@pytest.mark.parametrize("n", [1, 7, 1000, 1 << 17])
def test_failed_check_names_its_message_at_every_position(n):
    """In the vectorised loop, its remainder and the threads' ranges alike: the failed
    check's own message (the other check passed; NaN fails both, and either may be
    reported), then a clean run."""
    g = _checked_sum(n)
    good = (np.arange(n) % 999).astype(np.float32)
    for backend in (L, interp):
        f = backend.compile(g)
        for at in sorted({0, n // 2, n - 1}):
            for value, message in ((-1.0, "non-negative"), (1e4, "below 1000"),
                                   (np.nan, "non-negative|below 1000")):
                bad = good.copy()
                bad[at] = value
                with pytest.raises(RuntimeError, match=message):
                    f([bad])
        (total,) = f([good])
        np.testing.assert_allclose(total, np.sum(good.astype(np.float64) ** 2), rtol=1e-5)


def test_check_and_index_errors_are_told_apart(rng):
    """A graph with a gather and a check: each failure raises its own error."""
    x, idx = inp((4, 5), dt.float32, "x"), inp((4, 2), dt.int64, "idx")
    zero = op("expand", op("reshape", op("const", value=0.0, dtype=dt.float32), shape=(1, 1)),
              shape=(4, 5))
    g = graph([op("gather", op("check", x, op("ge", x, zero), message="x must be >= 0"),
                  idx, dim=1)], [x, idx])
    f = L.compile(g)
    ok_x, ok_i = np.ones((4, 5), np.float32), np.zeros((4, 2), np.int64)
    with pytest.raises(IndexError, match="out of range"):
        f([ok_x, ok_i + 5])
    with pytest.raises(RuntimeError, match="x must be >= 0"):
        f([-ok_x, ok_i])
    (y,) = f([ok_x, ok_i])
    assert y.shape == (4, 2)


def test_check_keeps_the_loop_vectorised():
    """The status word is an any-of reduction (select of a constant code): LLVM still
    vectorises the elementwise loop around a check."""
    from graphc.backends.llvm import build_module, jit
    from graphc.passes.memory import plan_memory
    n = 4096
    x = inp((n,), dt.float32)
    zero = op("expand", op("reshape", op("const", value=0.0, dtype=dt.float32), shape=(1,)),
              shape=(n,))
    plan = fuse_plan(graph([op("mul", op("check", x, op("ge", x, zero), message="x >= 0"), x)],
                           [x]))
    mem = plan_memory(plan.kernels, plan.input_buffers, plan.output_buffers)
    text = str(jit.optimize(str(build_module(plan, mem)[0])))
    assert "<16 x float>" in text or "<8 x float>" in text, "a check stopped vectorisation"


def test_out_of_range_index_raises(rng):
    x = inp((5, 7), dt.float32, "x")
    idx = inp((5, 3), dt.int64, "idx")
    exe = L.compile(graph([op("gather", x, idx, dim=1)], [x, idx]))
    bad = np.full((5, 3), 7, np.int64)
    with pytest.raises(IndexError):
        exe([data((5, 7), dt.float32, rng), bad])
    (ok,) = exe([np.ones((5, 7), np.float32), np.zeros((5, 3), np.int64)])
    assert ok.shape == (5, 3)


# ----------------------------------------------------------------------------- matmul

@pytest.mark.parametrize("dtype", [dt.float32, dt.float64, dt.bfloat16, dt.float16, dt.int32,
                                   dt.int64], ids=lambda d: d.name)
def test_matmul_dtypes(dtype, rng):
    a, b = inp((2, 5, 7), dtype, "a"), inp((2, 7, 3), dtype, "b")
    rt = {"f32": 1e-5, "f64": 1e-12, "bf16": 1.6e-2, "f16": 2e-3}.get(dtype.short, 0)
    check(graph([op("matmul", a, b)], [a, b]),
          [data((2, 5, 7), dtype, rng), data((2, 7, 3), dtype, rng)], rt, rt)


def test_matmul_transposed_and_broadcast_operands_are_views(rng):
    a = inp((3, 7, 5), dt.float32, "a")     # used as a^T: [3, 5, 7]
    b = inp((7, 4), dt.float32, "b")        # broadcast over the batch
    at = op("permute", a, dims=(0, 2, 1))
    bb = op("expand", op("reshape", b, shape=(1, 7, 4)), shape=(3, 7, 4))
    bt = op("permute", op("permute", bb, dims=(0, 2, 1)), dims=(0, 2, 1))
    mm = op("matmul", at, bt)
    g = graph([mm], [a, b])
    from graphc.passes.fusion import fuse
    plan = fuse(g)
    assert len(plan.kernels) == 1 and plan.kernels[0].kind == "matmul"
    check(g, [data((3, 7, 5), dt.float32, rng), data((7, 4), dt.float32, rng)], 1e-5, 1e-5)


def test_matmul_odd_and_empty_sizes(rng):
    for m, k, n in [(1, 1, 1), (7, 1, 3), (1023, 3, 1), (4, 0, 3), (0, 3, 2)]:
        a, b = inp((m, k), dt.float32, "a"), inp((k, n), dt.float32, "b")
        check(graph([op("matmul", a, b)], [a, b]),
              [data((m, k), dt.float32, rng), data((k, n), dt.float32, rng)], 1e-5, 1e-5)


def test_matmul_of_computed_non_strided_operand(rng):
    a, b = inp((4, 6), dt.float32, "a"), inp((6, 3), dt.float32, "b")
    padded = op("pad", a, low=(0, 0), high=(0, 0), interior=(0, 0))
    mm = op("matmul", op("exp", padded), op("concat", b, dim=1))
    check(graph([mm], [a, b]), [data((4, 6), dt.float32, rng), data((6, 3), dt.float32, rng)],
          1e-5, 1e-5)


# ----------------------------------------------------------------------------- convolutions

CONV_CASES = [dict(stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1),
              dict(stride=(2, 1), padding=(1, 2), dilation=(1, 2), groups=1),
              dict(stride=(1, 2), padding=(1, 0), dilation=(2, 1), groups=2)]


@pytest.mark.parametrize("case", range(len(CONV_CASES)))
def test_conv2d_and_conv_transpose2d(case, rng):
    attrs = CONV_CASES[case]
    x = inp((2, 4, 9, 8), dt.float32, "x")
    w = inp((6, 4 // attrs["groups"], 3, 2), dt.float32, "w")
    y = op("conv2d", x, w, **attrs)
    wt = inp((4, 6 // attrs["groups"], 3, 2), dt.float32, "wt")
    yt = op("conv_transpose2d", x, wt, output_padding=(1, 0) if case == 1 else (0, 0),
            **attrs)
    check(graph([y, yt], [x, w, wt]),
          [data((2, 4, 9, 8), dt.float32, rng), data(w.shape, dt.float32, rng),
           data(wt.shape, dt.float32, rng)], 1e-5, 1e-5)


def test_conv2d_float64_backward(rng):
    x = inp((1, 2, 6, 5), dt.float64, "x")
    w = inp((3, 2, 3, 3), dt.float64, "w")
    g = graph([op("conv2d", x, w, stride=(1, 1), padding=(1, 1), dilation=(1, 1),
                  groups=1)], [x, w])
    bg = grad_graph(g)
    ins = [data((1, 2, 6, 5), dt.float64, rng), data((3, 2, 3, 3), dt.float64, rng),
           data((1, 3, 6, 5), dt.float64, rng)]
    check(bg, ins, 1e-12, 1e-12)


# ----------------------------------------------------------------------------- every op covered

def test_every_registered_op_is_exercised():
    """Guard: a new op in ops.py must get a test here."""
    covered = set(UNARY_FLOAT) | set(UNARY_EXACT) | set(BINARY) | {
        "logical_not", "where", "cast", "const", "iota", "rand", "sum", "prod", "max", "min",
        "argmax", "argmin", "reshape", "permute", "expand", "slice", "pad", "concat",
        "flip", "gather", "scatter_add", "matmul", "conv2d", "conv_transpose2d",
        "argsort",   # argsort: tests/test_sort.py (every dtype, views, threads)
        "check",
        "addmm"}     # below, and tests/test_lowering.py (the rewrite that makes it)
    missing = set(all_ops()) - covered
    assert not missing, f"ops without an LLVM differential test: {sorted(missing)}"


@pytest.mark.parametrize("dtype", [dt.float32, dt.float64], ids=["f32", "f64"])
def test_addmm_accumulates_into_its_addend(dtype):
    """c + alpha * (a @ b) as one accumulating GEMM: batched, a transposed operand,
    alpha a literal, an input, or an expression of inputs; its VJP against torch."""
    torch = pytest.importorskip("torch")
    c, a, b = inp((2, 5, 3), dtype, "c"), inp((2, 4, 5), dtype, "a"), \
        inp((2, 4, 3), dtype, "b")
    s = inp((), dtype, "s")
    at = op("permute", a, dims=(0, 2, 1))
    alphas = [op("const", value=-0.5, dtype=dtype), s,
              op("mul", op("sub", op("const", value=1.0, dtype=dtype), s), s)]
    outs = [op("addmm", c, at, b, alpha) for alpha in alphas]
    g = graph(outs, [c, a, b, s])
    rng = np.random.default_rng(5)
    ins = [data(x.shape, dtype, rng) for x in (c, a, b, s)]
    gemms = [k for k in fuse_plan(g).kernels if isinstance(k, K.MatmulKernel)]
    assert len(gemms) == 3 and all(k.accumulate for k in gemms)
    check(g, ins, *((1e-5, 1e-5) if dtype is dt.float32 else (1e-12, 1e-12)))
    # the gradient of every input, against torch's autograd of the same expression
    bg = grad_graph(graph([outs[2]], [c, a, b, s]))
    seed = data((2, 5, 3), dtype, rng)
    got = L.compile(bg)(ins + [seed])[1:]
    tc, ta, tb, ts = (torch.tensor(x, requires_grad=True) for x in ins)
    (tc + ((1 - ts) * ts) * (ta.transpose(1, 2) @ tb)).backward(torch.tensor(seed))
    for mine, theirs in zip(got, (tc.grad, ta.grad, tb.grad, ts.grad)):
        np.testing.assert_allclose(mine, theirs.numpy(), rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------- fwd + bwd graphs



MODELS = {
    "softmax": lambda x, w: gc.softmax(x @ w, dim=1),
    "log_softmax_nll": lambda x, w: -gc.log_softmax(x @ w, dim=1)[:, 0].mean(),
    "layernorm": lambda x, w: ((x - x.mean(1, keepdim=True)) /
                               (x.var(1, keepdim=True, unbiased=False) + 1e-5).sqrt()) @ w,
    "gelu_mlp": lambda x, w: gc.nn.functional.gelu(x @ w + 1.0).sum(0),
    "tanh_sigmoid": lambda x, w: (x.tanh() * w.t()[:1].sigmoid()).sum(),
}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_and_backward_graphs(name, rng):
    x = rng.standard_normal((6, 8)).astype(np.float32)
    w = rng.standard_normal((8, 5)).astype(np.float32)
    g, ins = tensor_graph(MODELS[name], [x, w])
    check(g, ins, 2e-5, 2e-5)
    bg = grad_graph(g)
    seeds = [rng.standard_normal(o.shape).astype(np.float32) for o in g.outputs]
    check(bg, ins + seeds, 5e-5, 5e-5)


# ----------------------------------------------------------------------------- random graphs

@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs([dt.float32, dt.float64]))
def test_random_graphs_match_interpreter(case):
    g, dtype, seed = case
    rng = np.random.default_rng(seed)
    ins = [(rng.standard_normal(n.shape) * 0.5).astype(dtype.np) for n in g.inputs]
    check(g, ins, 1e-4 if dtype is dt.float32 else 1e-10, 1e-4 if dtype is dt.float32 else 1e-10)


# ----------------------------------------------------------------------------- math accuracy

@pytest.mark.parametrize("name,ref", [
    ("exp", np.exp), ("log", np.log), ("tanh", np.tanh),
    ("erf", np.vectorize(math.erf)),
    ("gelu", np.vectorize(lambda v: 0.5 * v * math.erfc(-v / math.sqrt(2)))),
    ("sigmoid", lambda v: 1 / (1 + np.exp(-v)))])
def test_float32_math_accuracy_against_float64(name, ref):
    xs = np.concatenate([np.linspace(-20, 20, 20001), np.linspace(-1, 1, 2001),
                         np.geomspace(1e-30, 80, 2000), -np.geomspace(1e-30, 100, 2000)])
    if name == "log":
        xs = np.concatenate([np.geomspace(1e-44, 3e38, 20000), np.linspace(0.5, 2, 2001)])
    x32 = xs.astype(np.float32)
    x = inp(x32.shape, dt.float32)
    (got,) = L.compile(graph([op(name, x)], [x]))([x32])
    want = ref(x32.astype(np.float64))
    # ulps of the result where it is a normal float; subnormal results: absolute error
    tiny = float(np.finfo(np.float32).tiny)
    normal = np.abs(want) >= tiny
    assert np.all(np.abs(got.astype(np.float64) - want)[~normal] <= 1e-42)
    want = np.where(normal, want, 1.0)
    got = np.where(normal, got, np.float32(1.0))
    ulp = np.spacing(np.abs(want).astype(np.float32)).astype(np.float64)
    err = np.abs(got.astype(np.float64) - want) / ulp
    assert np.nanmax(err) <= 6, f"{name}: max error {np.nanmax(err):.1f} ulp at x=" \
                                f"{x32[np.nanargmax(err)]}"
    specials = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 100.0, -100.0], np.float32)
    x2 = inp((7,), dt.float32)
    (sp,) = L.compile(graph([op(name, x2)], [x2]))([specials])
    with np.errstate(all="ignore"):
        want_sp = ref(specials.astype(np.float64)).astype(np.float32)
    np.testing.assert_allclose(sp, want_sp, rtol=1e-6, equal_nan=True)


def test_elementwise_kernel_vectorises():
    x, w = inp((4096,), dt.float32, "x"), inp((4096,), dt.float32, "w")
    y = op("gelu", op("add", op("mul", x, w), w))
    from graphc.passes.fusion import fuse
    from graphc.passes.memory import plan_memory
    from graphc.backends.llvm import build_module, jit
    plan = fuse(graph([y], [x, w]))
    mem = plan_memory(plan.kernels, plan.input_buffers, plan.output_buffers)
    module, _ = build_module(plan, mem)
    opt = jit.optimize(str(module))
    text = str(opt)
    assert "<16 x float>" in text or "<8 x float>" in text or "<4 x float>" in text, \
        "the fused elementwise loop was not vectorised"
    asm = jit.emit_assembly(opt)
    assert "ymm" in asm or "zmm" in asm or "xmm" in asm


def test_upsampling_read_is_loaded_and_shuffled_not_gathered(rng):
    """A pool's backward reads the pooled gradient at (h // 2, w // 2): x86's cost model
    picks gathers for it, 1.7x-4x slower here than a load and a shuffle, so elementwise
    kernels are compiled with prefer-no-gather (codegen._tuning_attribute); reductions,
    whose strided window reads would be scalarised without gathers, are not."""
    from graphc.backends.llvm import build_module, jit
    from graphc.backends.llvm.codegen import _host_is_x86, module_text
    from graphc.passes.fusion import fuse
    from graphc.passes.memory import plan_memory
    if not _host_is_x86():
        pytest.skip("an x86 tuning attribute")
    x, g = inp((4, 3, 28, 28), dt.float32, "x"), inp((4, 3, 14, 14), dt.float32, "g")
    up = op("reshape", op("expand", op("reshape", g, shape=(4, 3, 14, 1, 14, 1)),
                          shape=(4, 3, 14, 2, 14, 2)), shape=(4, 3, 28, 28))
    y = op("mul", op("relu", x), up)
    s = op("sum", x, dims=(3,), keepdim=False)
    gr = graph([y, s], [x, g])
    plan = fuse(gr)
    mem = plan_memory(plan.kernels, plan.input_buffers, plan.output_buffers)
    module, _ = build_module(plan, mem)
    text = module_text(module)
    tuned = {line.split("@")[1].split("(")[0].strip('"') for line in text.splitlines()
             if line.startswith("define") and "prefer-no-gather" in line}
    pointwise = {f"graphc_{k.name}" for k in plan.kernels
                 if not any(isinstance(st, K.Reduce) for st in k.stages)}
    assert pointwise and pointwise <= tuned
    assert not any(t.startswith(tuple(f"graphc_{k.name}" for k in plan.kernels
                                      if f"graphc_{k.name}" not in pointwise)) for t in tuned)
    asm, function, gathers = jit.emit_assembly(jit.optimize(text)), None, set()
    for line in asm.splitlines():
        if line.startswith("graphc_") and line.endswith(":"):
            function = line[:-1].removesuffix("_body")
        elif "gather" in line:
            gathers.add(function)
    assert not gathers & pointwise
    a, b = data((4, 3, 28, 28), dt.float32, rng), data((4, 3, 14, 14), dt.float32, rng)
    for got, want in zip(L.compile(gr)([a, b]), interp.compile(gr)([a, b])):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_reduction_loops_stay_rolled_with_interleaved_accumulators(rng):
    """A layer norm over rows of 4096: each pass over the row is a loop with
    REDUCTION_INTERLEAVE vector accumulators, not 256 unrolled vector adds (unrolled,
    GVN kept the row's loads alive from the mean's pass to the variance's and spilled
    them: 6.9 against 5.1 ms on 4096x4096). Rows shorter than ROLLED_MIN_EXTENT are
    left to LLVM (a pool's 4-point max ran 5x slower rolled)."""
    from graphc.backends.llvm import build_module, jit
    from graphc.backends.llvm.codegen import REDUCTION_INTERLEAVE, module_text
    from graphc.passes.fusion import fuse
    from graphc.passes.memory import plan_memory

    def const(value, shape):
        one = op("reshape", op("const", value=value, dtype=dt.float32), shape=(1, 1))
        return op("expand", one, shape=shape)

    def row_mean(v):
        return op("mul", op("sum", v, dims=(1,), keepdim=True), const(1 / 4096, (8, 1)))
    x = inp((8, 4096), dt.float32, "x")
    centred = op("sub", x, op("expand", row_mean(x), shape=(8, 4096)))
    var = row_mean(op("mul", centred, centred))
    y = op("mul", centred, op("expand", op("rsqrt", op("add", var, const(1e-5, (8, 1)))),
                              shape=(8, 4096)))
    gr = graph([y], [x])
    plan = fuse(gr)
    assert len(plan.kernels) == 1
    module, _ = build_module(plan, plan_memory(plan.kernels, plan.input_buffers,
                                                plan.output_buffers))
    text = module_text(module)
    loop_ids = [line for line in text.splitlines() if "= distinct !{" in line]
    assert len(loop_ids) == 2 and all(line.split()[0] == line.split()[4].rstrip(",")
                                      for line in loop_ids)   # !n = distinct !{ !n, ...
    assert f'!"llvm.loop.interleave.count", i32 {REDUCTION_INTERLEAVE}' in text
    optimized = str(jit.optimize(text))
    vector_adds = [line for line in optimized.splitlines()
                   if " fadd " in line and "x float>" in line]
    assert 0 < len(vector_adds) < 128          # unrolled: over 500
    a = data((8, 4096), dt.float32, rng)
    np.testing.assert_allclose(L.compile(gr)([a])[0], interp.compile(gr)([a])[0],
                               rtol=1e-5, atol=1e-5)
    # a short row is LLVM's to unroll and vectorise across the outer loop
    short = inp((64, 200), dt.float32, "x")
    for out in (op("sum", short, dims=(1,), keepdim=False),
                op("argmax", short, dim=1, keepdim=False)):
        plan = fuse(graph([out], [short]))
        module, _ = build_module(plan, plan_memory(plan.kernels, plan.input_buffers,
                                                    plan.output_buffers))
        assert "distinct" not in module_text(module)


# ----------------------------------------------------------------------------- caches

def test_disk_cache_hit_and_corrupt_entry_rebuilt(tmp_path, monkeypatch, rng):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path))
    x = inp((3, 4), dt.float32)
    g = graph([op("exp", op("mul", x, x))], [x])
    a = data((3, 4), dt.float32, rng)
    before = dict(L.stats)
    first = L.compile(g)([a])
    assert L.stats["llvm_compiles"] == before["llvm_compiles"] + 1
    files = [os.path.join(d, f) for d, _, fs in os.walk(tmp_path) for f in fs]
    assert len(files) == 1 and not files[0].endswith(".tmp")
    second = L.compile(g)([a])
    assert L.stats["disk_hits"] == before["disk_hits"] + 1
    np.testing.assert_array_equal(first[0], second[0])
    with open(files[0], "r+b") as f:       # corrupt one byte of the object code
        f.seek(-10, 2)
        byte = f.read(1)
        f.seek(-10, 2)
        f.write(bytes([byte[0] ^ 0xFF]))
    third = L.compile(g)([a])
    assert L.stats["llvm_compiles"] == before["llvm_compiles"] + 2
    np.testing.assert_array_equal(first[0], third[0])
    assert disk_cache.load(disk_cache.make_key("no such entry")) is None


def test_second_process_skips_llvm_compilation(tmp_path):
    script = (
        "import numpy as np\n"
        "from graphc.ir.graph import Graph, Node, TensorType\n"
        "from graphc.ir import dtypes as dt\n"
        "from graphc.ir.registry import get_op\n"
        "from graphc.backends import llvm as L\n"
        "x = Node('input', (), {'name': 'x'}, TensorType((8,), dt.float32))\n"
        "y = Node('exp', (x,), {}, get_op('exp').infer([x.type], {}))\n"
        "g, _ = Graph.from_outputs([y], input_order=[x])\n"
        "out = L.compile(g)([np.arange(8, dtype=np.float32)])[0]\n"
        "assert np.allclose(out, np.exp(np.arange(8)), rtol=1e-6)\n"
        "print(L.stats['llvm_compiles'], L.stats['disk_hits'])\n")
    env = dict(os.environ, GRAPHC_CACHE_DIR=str(tmp_path))
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    runs = [subprocess.run([sys.executable, "-c", script], env=env, cwd=root,
                           capture_output=True, text=True) for _ in range(2)]
    for r in runs:
        assert r.returncode == 0, r.stderr
    assert runs[0].stdout.split() == ["1", "0"]
    assert runs[1].stdout.split() == ["0", "1"]


def test_registered_as_llvm_backend_and_selected_by_env(monkeypatch, rng):
    from graphc import backends, runtime
    assert backends.get_backend("llvm") is L
    monkeypatch.setenv("GRAPHC_BACKEND", "llvm")
    a = rng.standard_normal((3, 4)).astype(np.float32)
    t = gc.tensor(a)
    got = (t.exp() * 2).sum(1).numpy()
    np.testing.assert_allclose(got, (np.exp(a) * 2).sum(1), rtol=1e-5)
    assert any(k[0] == "llvm" for k in runtime._cache)


def test_outputs_are_fresh_arrays_per_call(rng):
    x = inp((64,), dt.float32)
    t = op("exp", x)
    y = op("add", t, t)
    exe = L.compile(graph([y, op("neg", y)], [x]))
    a1, a2 = data((64,), dt.float32, rng), data((64,), dt.float32, rng)
    r1 = exe([a1])
    keep = [r.copy() for r in r1]
    exe([a2])
    for r, k in zip(r1, keep):
        np.testing.assert_array_equal(r, k)


def test_deeply_nested_kernels_compile(monkeypatch):
    """The backward of conv -> max_pool -> conv -> max_pool on 16x16 images fuses into
    expression trees a few hundred levels deep; compiling them must not hit Python's
    recursion limit (runtime compiles on a thread with a deep stack)."""
    import graphc.nn.functional as F
    monkeypatch.setenv("GRAPHC_BACKEND", "llvm")
    gc.manual_seed(0)
    w1 = gc.randn(1, 1, 3, 3).requires_grad_()
    w2 = gc.randn(1, 1, 3, 3).requires_grad_()
    x = gc.randn(1, 1, 16, 16)
    h = F.max_pool2d(F.conv2d(x, w1, padding=1), 2)
    F.max_pool2d(F.conv2d(h, w2, padding=1), 2).sum().backward()
    got = w1.grad.numpy()
    monkeypatch.setenv("GRAPHC_BACKEND", "interp")
    w1.grad = None
    h = F.max_pool2d(F.conv2d(x, w1, padding=1), 2)
    F.max_pool2d(F.conv2d(h, w2, padding=1), 2).sum().backward()
    np.testing.assert_allclose(got, w1.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_identical_loop_kernels_share_one_body(rng):
    """Steps of an unrolled recurrence differ only in where they start in a buffer:
    their kernels call one body (pointers advanced by the wrapper), and each still
    reads its own rows. (Rows of 64 floats: a base offset's alignment class is part of
    the key, since it decides streaming stores.)"""
    from graphc.backends.llvm.codegen import body_key, buffer_bases, kernel_buffers
    from graphc.passes.fusion import fuse
    x = inp((6, 4, 16), dt.float32)
    h0 = inp((4, 16), dt.float32, "h0")
    w = inp((16, 16), dt.float32, "w")
    cur, outs = h0, []
    for t in range(6):
        step = op("reshape", op("slice", x, starts=(t, 0, 0), stops=(t + 1, 4, 16),
                                steps=(1, 1, 1)), shape=(4, 16))
        cur = op("tanh", op("add", step, op("matmul", cur, w)))
        outs.append(cur)
    g = graph(outs, [x, h0, w])
    loops = [k for k in fuse(g).kernels if not hasattr(k, "a")]
    keys = {body_key(k, kernel_buffers(k), buffer_bases(k)) for k in loops}
    assert len(loops) == 6 and len(keys) == 1
    text = L.llvm_ir(g)
    assert text.count("_body\"(") == 7 and "noinline" in text      # 1 definition, 6 calls
    check(g, [data((6, 4, 16), dt.float32, rng), data((4, 16), dt.float32, rng),
              data((16, 16), dt.float32, rng) * 0.3], *tol(dt.float32, transcendental=True))


def test_value_kept_for_later_row_stages_is_recomputed_by_an_outer_stage(rng):
    """The row cache keeps a transcendental one row stage computes (exp(s) here) for the
    later row stages that compute it again; a stage at the outer level (no row loop)
    that also computes it must not read the row scratch array (it once emitted a GEP
    with no index: an AttributeError deep in llvmlite, hit by realizing two Adam steps
    at once)."""
    x, s = inp((4, 300), dt.float32, "x"), inp((), dt.float32, "s")
    e = op("exp", s)
    xe = op("mul", x, op("expand", op("reshape", e, shape=(1, 1)), shape=(4, 300)))
    total = op("sum", xe, dims=(1,), keepdim=True)
    rows = op("div", xe, op("expand", total, shape=(4, 300)))
    outer = op("mul", op("reshape", total, shape=(4,)),
               op("expand", op("reshape", e, shape=(1,)), shape=(4,)))
    g = graph([rows, outer], [x, s])
    [kernel] = fuse_plan(g).kernels     # one kernel: two row stages and an outer stage
    assert [bool(st.inner) for st in kernel.stages] == [True, True, False]
    check(g, [rng.random((4, 300), dtype=np.float32), np.float32(0.3)], rtol=1e-6)
