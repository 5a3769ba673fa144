"""The built-in primitive ops.

The IR is deliberately strict so that passes and backends stay simple:
  * elementwise ops take operands of identical shape and dtype; broadcasting is an
    explicit `expand`, promotion an explicit `cast` (the tensor layer inserts both);
  * comparisons and `isnan`/`isfinite` give bool; everything else keeps its dtype;
  * reductions take `dims` (a sorted tuple of non-negative ints) and `keepdim`.

Each op is one `OpDef` (see registry.py). VJP rules use graphc tensor ops; `ctx.inputs`
and `ctx.out` are tensors standing for the forward values.
"""
from __future__ import annotations

import math
import zlib

import numpy as np

from . import dtypes as dt
from .errors import CheckFailed, DTypeError, ShapeError, at_user_line
from .graph import TensorType
from .registry import FusionClass as F, OpDef, register

# ---------------------------------------------------------------------------- helpers


def _shape_err(msg):
    return at_user_line(ShapeError, msg)


def _dtype_err(msg):
    return at_user_line(DTypeError, msg)


def _same(op, types):
    t0 = types[0]
    for t in types[1:]:
        if t.shape != t0.shape:
            raise _shape_err(f"{op}: operand shapes {list(t0.shape)} and {list(t.shape)} differ")
        if t.dtype is not t0.dtype:
            raise _dtype_err(f"{op}: operand dtypes {t0.dtype.name} and {t.dtype.name} differ")
    return t0


def _tensor_mod():
    """graphc.tensor_ops, imported late: VJP rules build IR with tensor ops."""
    import importlib
    return importlib.import_module("graphc.tensor_ops")


# ---------------------------------------------------------------------------- elementwise

def _unary(name, fn, vjp, float_only=True, out_dtype=None, doc=""):
    def infer(types, attrs):
        (t,) = types
        if float_only and not t.dtype.is_floating:
            raise _dtype_err(f"{name}: expected a floating-point operand, got {t.dtype.name}")
        return TensorType(t.shape, out_dtype or t.dtype)

    register(OpDef(name, infer, lambda attrs, x: fn(x, **attrs) if attrs else fn(x), vjp,
                   F.ELEMENTWISE, 1, doc))


def _zeros(g):
    """An exact zero gradient of g's shape and dtype: PyTorch's zeros_like(grad) and
    masked_fill(.., 0). Not `g * 0`, which is NaN where g is inf or NaN."""
    import importlib
    return importlib.import_module("graphc.tensor").zeros_like(g)


def _zeros_like(ctx, g):
    return (_zeros(g),)


def _erf_np(x):
    # numpy has no erf; math.erf per element is exact and the reference need not be fast.
    x = np.asarray(x)
    return np.asarray(np.frompyfunc(math.erf, 1, 1)(x), dtype=x.dtype).reshape(x.shape)


def _gelu_np(x, approximate="none"):
    x64 = x.astype(np.float64)
    if approximate == "tanh":
        y = 0.5 * x64 * (1 + np.tanh(math.sqrt(2 / math.pi) * (x64 + 0.044715 * x64 ** 3)))
    else:
        y = 0.5 * x64 * (1 + _erf_np(x64 / math.sqrt(2)))
    return y.astype(x.dtype)


def _sigmoid_np(x):
    with np.errstate(over="ignore"):
        return (1 / (1 + np.exp(-x))).astype(x.dtype)


def _gelu_vjp(ctx, g):
    x = ctx.inputs[0]
    if ctx.attrs.get("approximate", "none") == "tanh":
        k = math.sqrt(2 / math.pi)
        inner = k * (x + 0.044715 * x * x * x)
        t = inner.tanh()
        dinner = k * (1 + 3 * 0.044715 * x * x)
        return (g * (0.5 * (1 + t) + 0.5 * x * (1 - t * t) * dinner),)
    cdf = 0.5 * (1 + (x * (1 / math.sqrt(2))).erf())
    pdf = (x * x * -0.5).exp() * (1 / math.sqrt(2 * math.pi))
    return (g * (cdf + x * pdf),)


def _silu_vjp(ctx, g):
    x = ctx.inputs[0]
    s = x.sigmoid()
    return (g * (s * (1 + x * (1 - s))),)


def _relu_vjp(ctx, g):
    x = ctx.inputs[0]
    return (_tensor_mod().where(x > 0, g, _zeros(g)),)


def _abs_vjp(ctx, g):
    return (g * ctx.inputs[0].sign(),)


_unary("neg", np.negative, lambda c, g: (-g,), float_only=False)
_unary("abs", np.abs, _abs_vjp, float_only=False)
_unary("sign", lambda x: np.where(np.isnan(x), 0, np.sign(x)).astype(x.dtype), _zeros_like,
       float_only=False)  # PyTorch: sign(nan) = 0
_unary("exp", np.exp, lambda c, g: (g * c.out,))
_unary("log", np.log, lambda c, g: (g / c.inputs[0],))
_unary("log1p", np.log1p, lambda c, g: (g / (c.inputs[0] + 1),))
_unary("expm1", np.expm1, lambda c, g: (g * (c.out + 1),))
_unary("sqrt", np.sqrt, lambda c, g: (g / (c.out * 2),))
_unary("rsqrt", lambda x: (1 / np.sqrt(x)).astype(x.dtype),
       lambda c, g: (g * c.out * c.out * c.out * -0.5,))
_unary("sin", np.sin, lambda c, g: (g * c.inputs[0].cos(),))
_unary("cos", np.cos, lambda c, g: (-g * c.inputs[0].sin(),))
_unary("tanh", np.tanh, lambda c, g: (g * (1 - c.out * c.out),))
_unary("sigmoid", _sigmoid_np, lambda c, g: (g * c.out * (1 - c.out),))
def _relu_np(x):
    """x < 0 ? 0 : x, as PyTorch: -0.0 stays -0.0 and NaN stays NaN (np.maximum(x, 0)
    would give +0.0 for -0.0)."""
    return np.where(x < 0, np.zeros((), x.dtype), x).astype(x.dtype)


_unary("relu", _relu_np, _relu_vjp, float_only=False)
_unary("gelu", _gelu_np, _gelu_vjp)
_unary("silu", lambda x: (x * _sigmoid_np(x)).astype(x.dtype), _silu_vjp)
_unary("erf", _erf_np,
       lambda c, g: (g * (c.inputs[0] * c.inputs[0] * -1).exp() * (2 / math.sqrt(math.pi)),))
_unary("floor", np.floor, _zeros_like)
_unary("ceil", np.ceil, _zeros_like)
_unary("round", np.round, _zeros_like)  # numpy and PyTorch both round half to even
_unary("reciprocal", lambda x: (1 / x).astype(x.dtype), lambda c, g: (-g * c.out * c.out,))


def _ap(name, *xs, **attrs):
    """IR op `name` on tensors: for VJP rules that need an op the tensor layer may not
    expose as a method (the gradient of sinh is cosh)."""
    import importlib
    return importlib.import_module("graphc.tensor").Tensor._apply(name, *xs, **attrs)


# Trigonometric, hyperbolic and base-2/10 functions. The VJP rules are PyTorch's
# (tools/autograd/derivatives.yaml) term for term, so the edge values agree too:
# asin/acos at +-1 and acosh at 1 give +-inf (rsqrt(0)), atanh at +-1 gives +-inf.
_unary("tan", np.tan, lambda c, g: (g * (1 + c.out * c.out),))
_unary("asin", np.arcsin,
       lambda c, g: (g * (1 - c.inputs[0] * c.inputs[0]).rsqrt(),))
_unary("acos", np.arccos,
       lambda c, g: (g * -((1 - c.inputs[0] * c.inputs[0]).rsqrt()),))
_unary("atan", np.arctan, lambda c, g: (g / (c.inputs[0] * c.inputs[0] + 1),))
_unary("sinh", np.sinh, lambda c, g: (g * _ap("cosh", c.inputs[0]),))
_unary("cosh", np.cosh, lambda c, g: (g * _ap("sinh", c.inputs[0]),))
_unary("asinh", np.arcsinh,
       lambda c, g: (g * (c.inputs[0] * c.inputs[0] + 1).rsqrt(),))
_unary("acosh", np.arccosh,
       lambda c, g: (g * (c.inputs[0] * c.inputs[0] - 1).rsqrt(),))
_unary("atanh", np.arctanh, lambda c, g: (g / (1 - c.inputs[0] * c.inputs[0]),))
# PyTorch's literals: 2.3025850929940456 is not math.log(10) (one ulp apart)
_unary("log2", np.log2, lambda c, g: (g / (c.inputs[0] * 0.6931471805599453),))
_unary("log10", np.log10, lambda c, g: (g / (c.inputs[0] * 2.3025850929940456),))
_unary("exp2", np.exp2, lambda c, g: (g * c.out * 0.6931471805599453,))
_unary("isnan", np.isnan, None, out_dtype=dt.bool_, float_only=False)
_unary("isfinite", np.isfinite, None, out_dtype=dt.bool_, float_only=False)


def _logical_not_infer(types, attrs):
    (t,) = types
    if not t.dtype.is_bool:
        raise _dtype_err(f"logical_not: expected a bool operand, got {t.dtype.name}")
    return t


register(OpDef("logical_not", _logical_not_infer, lambda a, x: np.logical_not(x), None,
               F.ELEMENTWISE, 1))


def _binary(name, fn, vjp, out_bool=False, kinds="any"):
    def infer(types, attrs):
        t = _same(name, types)
        if kinds == "float" and not t.dtype.is_floating:
            raise _dtype_err(f"{name}: expected floating-point operands, got {t.dtype.name}")
        if kinds == "bool" and not t.dtype.is_bool:
            raise _dtype_err(f"{name}: expected bool operands, got {t.dtype.name}")
        if kinds == "numeric" and t.dtype.is_bool:
            raise _dtype_err(f"{name}: bool operands are not supported")
        if kinds == "integer" and (t.dtype.is_floating or t.dtype.is_bool):
            raise _dtype_err(f"{name}: expected integer operands, got {t.dtype.name}")
        return TensorType(t.shape, dt.bool_) if out_bool else t

    register(OpDef(name, infer, lambda attrs, a, b: fn(a, b), vjp, F.ELEMENTWISE, 2))


def _div_vjp(c, g):
    a, b = c.inputs
    return (g / b, -g * c.out / b)


def _pow_vjp(c, g):
    a, b = c.inputs
    T = _tensor_mod()
    # PyTorch: the gradient for the base is 0 where the exponent is 0 (not 0 * 0**-1).
    ga = T.where(b == 0, g * 0, g * b * a ** (b - 1))
    # d/db a**b = a**b * log(a); PyTorch defines it as 0 where a == 0 and b >= 0.
    gb = T.where((a == 0) & (b >= 0), g * 0, g * c.out * a.log())
    return (ga, gb)


def _minmax_vjp(is_max):
    # PyTorch's rule: a tie shares the gradient, and each side gets it unless it lost.
    # With a NaN neither side lost, so both get it (the NaN is what the result is).
    def vjp(c, g):
        a, b = c.inputs
        T = _tensor_mod()
        share = T.where(a == b, g * 0.5, g)
        zero = _zeros(g)
        ga = T.where((a < b) if is_max else (a > b), zero, share)
        gb = T.where((a > b) if is_max else (a < b), zero, share)
        return (ga, gb)
    return vjp


def _float_floor_divmod(a, b):
    """Floor division and remainder of floats as PyTorch (and numpy) compute them: from
    fmod, which is exact, so the remainder carries no rounding error of its own (the
    textbook a - floor(a / b) * b misses PyTorch's result by an ulp in about half of
    all float32 cases, gives nan for 5 % inf where PyTorch gives 5, and 1 // 0.1 == 10
    where PyTorch gives 9). Computed in a's dtype, so float16 rounds each step as
    PyTorch's float16 arithmetic does. Every backend lowers the same steps."""
    with np.errstate(all="ignore"):
        mod = np.fmod(a, b)
        div = (a - mod) / b
        adjust = (mod != 0) & ((b < 0) != (mod < 0))
        div = np.where(adjust, div - 1, div)
        mod = np.where(adjust, mod + b, mod)
        whole = np.floor(div)
        whole = np.where(div - whole > 0.5, whole + 1, whole)
        quotient = np.where(div != 0, whole, np.copysign(np.zeros_like(div), a / b))
        quotient = np.where(b == 0, a / b, quotient)
    return quotient.astype(a.dtype), mod.astype(a.dtype)


def _floordiv_np(a, b):
    if np.issubdtype(a.dtype, np.integer):
        with np.errstate(divide="ignore"):
            return np.floor_divide(a, b)
    return _float_floor_divmod(a, b)[0]


def _mod_np(a, b):
    if np.issubdtype(a.dtype, np.integer):
        with np.errstate(divide="ignore"):
            return np.remainder(a, b)
    return _float_floor_divmod(a, b)[1]


def _pow_np(a, b):
    if np.issubdtype(a.dtype, np.integer):
        # PyTorch: an integer to a negative power is 1 for base 1, +-1 for base -1
        # (by the exponent's parity) and 0 otherwise (its integer division 1 / a**-b)
        with np.errstate(over="ignore"):
            r = np.power(a, np.maximum(b, 0))
        neg = b < 0
        if neg.any():
            odd = (b % 2) != 0
            small = np.where(a == 1, 1, np.where(a == -1, np.where(odd, -1, 1), 0))
            r = np.where(neg, small.astype(a.dtype), r)
        return r
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        return np.power(a, b)


def _mod_vjp(c, g):
    a, b = c.inputs
    return (g, -g * (a // b))   # PyTorch: -grad * floor_divide(a, b)


def _fmod_np(a, b):
    # C fmod (sign of the dividend, exact); numpy gives 0 for integer division by zero
    # (graphc's convention) and nan for a float one, as PyTorch
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.fmod(a, b)


def _fmod_vjp(c, g):
    a, b = c.inputs
    T = _tensor_mod()
    q = a / b
    # PyTorch: -grad * a.div(b, rounding_mode="trunc"), i.e. trunc(a / b)
    return (g, -g * T.where(q < 0, q.ceil(), q.floor()))


def _atan2_vjp(c, g):
    a, b = c.inputs
    T = _tensor_mod()
    # PyTorch's atan2_backward: 1 / (a^2 + b^2), with an infinite one (the squares
    # underflow, (0, 0) included) replaced by 0, so the gradient there is 0, not nan
    recip = (a * a + b * b).reciprocal()
    recip = T.where(recip == math.inf, _zeros(g), recip)
    return (g * b * recip, g * -a * recip)


def _hypot_vjp(c, g):
    a, b = c.inputs
    return (g * a / c.out, g * b / c.out)


def _copysign_vjp(c, g):
    a = c.inputs[0]
    T = _tensor_mod()
    # PyTorch's copysign_tensor_self_backward: result / self, masked to 0 where self == 0
    ratio = T.where(a == 0, _zeros(g), c.out / a)
    return (g * ratio, _zeros(g))


_binary("add", np.add, lambda c, g: (g, g))
_binary("sub", np.subtract, lambda c, g: (g, -g), kinds="numeric")
_binary("mul", np.multiply, lambda c, g: (g * c.inputs[1], g * c.inputs[0]))
_binary("div", lambda a, b: np.divide(a, b), _div_vjp, kinds="float")
_binary("floordiv", _floordiv_np, lambda c, g: (_zeros(g), _zeros(g)), kinds="numeric")
_binary("mod", _mod_np, _mod_vjp, kinds="numeric")
_binary("pow", _pow_np, _pow_vjp, kinds="numeric")
_binary("maximum", np.maximum, _minmax_vjp(True))
_binary("minimum", np.minimum, _minmax_vjp(False))
_binary("fmod", _fmod_np, _fmod_vjp, kinds="numeric")
_binary("atan2", np.arctan2, _atan2_vjp, kinds="float")
_binary("hypot", np.hypot, _hypot_vjp, kinds="float")
_binary("copysign", np.copysign, _copysign_vjp, kinds="float")
for _name, _fn in [("eq", np.equal), ("ne", np.not_equal), ("lt", np.less),
                   ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal)]:
    _binary(_name, _fn, None, out_bool=True)
_binary("logical_and", np.logical_and, None, kinds="bool")
_binary("logical_or", np.logical_or, None, kinds="bool")
_binary("logical_xor", np.logical_xor, None, kinds="bool")
# integer bit operations (two's complement; bool operands use the logical ops)
_binary("bitwise_and", np.bitwise_and, None, kinds="integer")
_binary("bitwise_or", np.bitwise_or, None, kinds="integer")
_binary("bitwise_xor", np.bitwise_xor, None, kinds="integer")


def _bitwise_not_infer(types, attrs):
    (t,) = types
    if t.dtype.is_floating or t.dtype.is_bool:
        raise _dtype_err(f"bitwise_not: expected an integer operand, got {t.dtype.name}")
    return t


register(OpDef("bitwise_not", _bitwise_not_infer, lambda attrs, x: np.invert(x), None,
               F.ELEMENTWISE, 1, "~x of an integer tensor (two's complement)"))


def _where_infer(types, attrs):
    c, a, b = types
    if not c.dtype.is_bool:
        raise _dtype_err(f"where: condition must be bool, got {c.dtype.name}")
    if c.shape != a.shape:
        raise _shape_err(f"where: condition shape {list(c.shape)} differs from {list(a.shape)}")
    return _same("where", [a, b])


def _where_vjp(c, g):
    T = _tensor_mod()
    cond = c.inputs[0]
    z = _zeros(g)
    return (None, T.where(cond, g, z), T.where(cond, z, g))


register(OpDef("where", _where_infer, lambda attrs, c, a, b: np.where(c, a, b), _where_vjp,
               F.ELEMENTWISE, 3))


# ----------------------------------------------------------------------------- value checks
#
# check(x, ok){message} is x, with the run failing (CheckFailed(message), naming the
# line of user code that made the node) when any element of the bool tensor `ok` is
# False: PyTorch's data-dependent input checks, which a static graph cannot make before
# it runs. It is elementwise, so it fuses into its consumers' loops, and a compiled
# kernel reports it through its status word as `check_code(message)`. Only the elements
# the graph reads are checked: a check whose value nothing uses is removed with it, as
# any unused node (the lazy analogue of PyTorch raising at the call).

CHECK_CODE_BASE = 16   # status codes below it: 1 an index out of range, 3 a failed malloc


def check_code(message: str) -> int:
    """The status word value of a failed check: a hash of its message, the same in every
    process and backend (an int32, which is the Triton backend's status word)."""
    return CHECK_CODE_BASE + zlib.crc32(message.encode()) % (2 ** 30)


def _check_infer(types, attrs):
    x, ok = types
    if not ok.dtype.is_bool or ok.shape != x.shape:
        raise _shape_err(f"check: the condition must be bool of the value's shape "
                         f"{list(x.shape)}, got {ok.dtype.name}{list(ok.shape)}")
    if not isinstance(attrs.get("message"), str):
        raise _dtype_err("check: needs a message")
    return x


def _check_np(attrs, x, ok):
    if not np.all(ok):
        raise CheckFailed(attrs["message"])
    return x


register(OpDef("check", _check_infer, _check_np, lambda c, g: (g, None), F.ELEMENTWISE, 2,
               "x, failing the run with `message` where the bool `ok` is False"))

def _cast_infer(types, attrs):
    return TensorType(types[0].shape, _dtype_attr(attrs))


def _cast_np(attrs, x):
    d = attrs["dtype"]
    if d.is_bool:
        return x != 0
    if not d.is_floating and x.dtype.kind == "f":
        return _float_to_int_np(x, d)
    return x.astype(d.np)


def _float_to_int_np(x, d):
    """float -> integer as PyTorch's CPU kernels do it on x86, spelled out rather than
    left to numpy's astype (which is x86's answer only on x86, and converts to uint8
    through int32): truncate toward zero; NaN, +-inf and values whose truncation the
    converting type cannot hold give that type's minimum (cvtt*'s "integer
    indefinite"). int32 converts as int32; int64 and uint8 as int64, uint8 then keeping
    the low byte (PyTorch casts to uint8 through int64: float64 -2**31-1 gives 255)."""
    wide = np.int32 if d.short == "i32" else np.int64
    x64 = x.astype(np.float64)   # exact for every float dtype; 2**31 overflows float16
    ok = np.abs(x64) < 2.0 ** (8 * np.dtype(wide).itemsize - 1)   # False for NaN
    i = np.trunc(np.where(ok, x64, 0.0)).astype(wide)
    return np.where(ok, i, np.iinfo(wide).min).astype(d.np)


def _cast_vjp(c, g):
    x = c.inputs[0]
    if not x.dtype.is_floating:
        return (None,)
    return (g.to(x.dtype),)


register(OpDef("cast", _cast_infer, _cast_np, _cast_vjp, F.ELEMENTWISE, 1))

# ---------------------------------------------------------------------------- sources


def _dtype_attr(attrs):
    """The `dtype` attribute, checked: IR text read from a file may hold anything."""
    d = attrs["dtype"]
    if not isinstance(d, dt.DType):
        raise TypeError(f"attribute dtype must be a dtype, got {d!r}")
    return d


def _const_infer(types, attrs):
    return TensorType((), _dtype_attr(attrs))


register(OpDef("const", _const_infer,
               lambda attrs: np.array(attrs["value"], dtype=attrs["dtype"].np), None,
               F.SOURCE, 0, "a scalar literal"))


def _iota_infer(types, attrs):
    shape = tuple(attrs["shape"])
    if not 0 <= attrs["dim"] < max(len(shape), 1):
        raise _shape_err(f"iota: dim {attrs['dim']} out of range for shape {list(shape)}")
    return TensorType(shape, _dtype_attr(attrs))


def _iota_np(attrs):
    shape = tuple(attrs["shape"])
    if not shape:
        return np.zeros((), attrs["dtype"].np)
    idx = np.arange(shape[attrs["dim"]], dtype=attrs["dtype"].np)
    view = [1] * len(shape)
    view[attrs["dim"]] = shape[attrs["dim"]]
    return np.broadcast_to(idx.reshape(view), shape).copy()


register(OpDef("iota", _iota_infer, _iota_np, None, F.SOURCE, 0,
               "index along `dim`, counting from 0"))

# Counter-based random numbers: value i of a draw is a pure function of (seed, offset + i),
# so a compiled step draws fresh numbers when the runtime `offset` input moves on, with no
# state inside the kernel. The mixer is SplitMix64's finaliser, cheap in any backend.
_M1, _M2, _GOLDEN = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB), \
    np.uint64(0x9E3779B97F4A7C15)


def rng_bits(seed, counter):
    """64 random bits per counter value (uint64 arrays in, uint64 out)."""
    with np.errstate(over="ignore"):
        z = (np.uint64(seed) * _GOLDEN + counter.astype(np.uint64) * _GOLDEN) + _GOLDEN
        z = (z ^ (z >> np.uint64(30))) * _M1
        z = (z ^ (z >> np.uint64(27))) * _M2
        return z ^ (z >> np.uint64(31))


def rng_uniform(seed, offset, n):
    """Uniform [0, 1) doubles with 53 random bits; the backends produce the same bits."""
    bits = rng_bits(seed, np.arange(n, dtype=np.uint64) + np.uint64(offset))
    return (bits >> np.uint64(11)).astype(np.float64) * (1.0 / 9007199254740992.0)


def _rand_infer(types, attrs):
    for t in types:
        if t.shape != () or t.dtype is not dt.int64:
            raise _dtype_err("rand: seed and offset must be int64 scalars")
    return TensorType(tuple(attrs["shape"]), _dtype_attr(attrs))


def _rand_np(attrs, seed, offset):
    shape = tuple(attrs["shape"])
    n = int(np.prod(shape, dtype=np.int64))
    u = rng_uniform(int(seed), int(offset), n).reshape(shape)
    if attrs.get("normal"):
        # Box-Muller on a second, independent stream (counter offset by 2**62).
        u2 = rng_uniform(int(seed), int(offset) + (1 << 62), n).reshape(shape)
        u = np.sqrt(-2.0 * np.log1p(-u)) * np.cos(2 * math.pi * u2)
    return u.astype(attrs["dtype"].np)


register(OpDef("rand", _rand_infer, _rand_np, None, F.SOURCE, 2,
               "counter-based uniform [0,1) (or standard normal with normal=true)"))

# ---------------------------------------------------------------------------- movement


def _reshape_infer(types, attrs):
    (t,) = types
    shape = tuple(attrs["shape"])
    n = 1
    for s in shape:
        n *= s
    if n != t.numel:
        raise _shape_err(f"reshape: cannot view shape {list(t.shape)} ({t.numel} elements) "
                         f"as {list(shape)} ({n} elements)")
    return TensorType(shape, t.dtype)


register(OpDef("reshape", _reshape_infer,
               lambda attrs, x: np.reshape(x, tuple(attrs["shape"])),
               lambda c, g: (g.reshape(c.inputs[0].shape),), F.MOVEMENT, 1))


def _permute_infer(types, attrs):
    (t,) = types
    perm = tuple(attrs["dims"])
    if sorted(perm) != list(range(t.ndim)):
        raise _shape_err(f"permute: {list(perm)} is not a permutation of the "
                         f"{t.ndim} dims of shape {list(t.shape)}")
    return TensorType(tuple(t.shape[p] for p in perm), t.dtype)


def _permute_vjp(c, g):
    perm = c.attrs["dims"]
    inv = [0] * len(perm)
    for k, p in enumerate(perm):
        inv[p] = k
    return (g.permute(*inv),)


register(OpDef("permute", _permute_infer, lambda attrs, x: np.transpose(x, attrs["dims"]),
               _permute_vjp, F.MOVEMENT, 1))


def _expand_infer(types, attrs):
    (t,) = types
    shape = tuple(attrs["shape"])
    if len(shape) != t.ndim or any(a != b and a != 1 for a, b in zip(t.shape, shape)):
        raise _shape_err(f"expand: cannot expand shape {list(t.shape)} to {list(shape)}")
    return TensorType(shape, t.dtype)


def _expand_vjp(c, g):
    x = c.inputs[0]
    dims = tuple(k for k, (a, b) in enumerate(zip(x.shape, g.shape)) if a != b)
    return (g.sum(dims, keepdim=True) if dims else g,)


register(OpDef("expand", _expand_infer,
               lambda attrs, x: np.broadcast_to(x, tuple(attrs["shape"])),
               _expand_vjp, F.MOVEMENT, 1))


def slice_out_len(size, start, stop, step):
    return max(0, (stop - start + step - 1) // step)


def _slice_infer(types, attrs):
    (t,) = types
    starts, stops, steps = attrs["starts"], attrs["stops"], attrs["steps"]
    if not len(starts) == len(stops) == len(steps) == t.ndim:
        raise _shape_err(f"slice: need one start/stop/step per dim of {list(t.shape)}")
    out = []
    for size, a, b, s in zip(t.shape, starts, stops, steps):
        if s <= 0 or not 0 <= a <= size or not a <= b <= size:
            raise _shape_err(f"slice: [{a}:{b}:{s}] out of range for a dim of size {size}")
        out.append(slice_out_len(size, a, b, s))
    return TensorType(tuple(out), t.dtype)


def _slice_np(attrs, x):
    return x[tuple(slice(a, b, s) for a, b, s in
                   zip(attrs["starts"], attrs["stops"], attrs["steps"]))]


def _slice_vjp(c, g):
    x = c.inputs[0]
    low, high, interior = [], [], []
    for size, a, s, n in zip(x.shape, c.attrs["starts"], c.attrs["steps"], g.shape):
        low.append(a)
        interior.append(s - 1)
        used = a + (n - 1) * s + 1 if n else a
        high.append(size - used if n else size - a)
    return (g._pad(low, high, interior),)


register(OpDef("slice", _slice_infer, _slice_np, _slice_vjp, F.MOVEMENT, 1))


def _pad_infer(types, attrs):
    (t,) = types
    low, high, interior = attrs["low"], attrs["high"], attrs["interior"]
    if not len(low) == len(high) == len(interior) == t.ndim:
        raise _shape_err(f"pad: need one low/high/interior per dim of {list(t.shape)}")
    out = []
    for size, lo, hi, it in zip(t.shape, low, high, interior):
        if lo < 0 or hi < 0 or it < 0:
            raise _shape_err("pad: negative padding")
        out.append(lo + hi + size + max(size - 1, 0) * it)
    return TensorType(tuple(out), t.dtype)


def _pad_np(attrs, x):
    out_t = _pad_infer([TensorType(x.shape, dt.from_numpy(x.dtype))], attrs)
    out = np.zeros(out_t.shape, x.dtype)
    idx = tuple(slice(lo, lo + (size - 1) * (it + 1) + 1 if size else lo, it + 1)
                for size, lo, it in zip(x.shape, attrs["low"], attrs["interior"]))
    out[idx] = x
    return out


def _pad_vjp(c, g):
    x = c.inputs[0]
    starts = list(c.attrs["low"])
    steps = [it + 1 for it in c.attrs["interior"]]
    stops = [lo + (n - 1) * s + 1 if n else lo for lo, n, s in zip(starts, x.shape, steps)]
    return (g._slice(starts, stops, steps),)


register(OpDef("pad", _pad_infer, _pad_np, _pad_vjp, F.MOVEMENT, 1,
               "zero padding: low/high per dim, `interior` zeros between elements"))


def _flip_infer(types, attrs):
    (t,) = types
    dims = tuple(attrs["dims"])
    if any(not 0 <= d < t.ndim for d in dims) or list(dims) != sorted(set(dims)):
        raise _shape_err(f"flip: dims {list(dims)} invalid for shape {list(t.shape)} "
                         f"(sorted, distinct, non-negative)")
    return t


register(OpDef("flip", _flip_infer, lambda attrs, x: np.flip(x, tuple(attrs["dims"])),
               lambda c, g: (_ap("flip", g, dims=tuple(c.attrs["dims"])),), F.MOVEMENT, 1,
               "reverse the order of elements along `dims`"))


def _concat_infer(types, attrs):
    d = attrs["dim"]
    t0 = types[0]
    if not types:
        raise _shape_err("concat: no operands")
    if not 0 <= d < t0.ndim:
        raise _shape_err(f"concat: dim {d} out of range for shape {list(t0.shape)}")
    total = 0
    for t in types:
        if t.dtype is not t0.dtype:
            raise _dtype_err(f"concat: dtypes {t0.dtype.name} and {t.dtype.name} differ")
        if t.ndim != t0.ndim or any(a != b for k, (a, b) in enumerate(zip(t.shape, t0.shape))
                                    if k != d):
            raise _shape_err(f"concat: shapes {list(t0.shape)} and {list(t.shape)} differ "
                             f"outside dim {d}")
        total += t.shape[d]
    shape = list(t0.shape)
    shape[d] = total
    return TensorType(tuple(shape), t0.dtype)


def _concat_vjp(c, g):
    d = c.attrs["dim"]
    out, start = [], 0
    for x in c.inputs:
        n = x.shape[d]
        starts = [0] * g.ndim
        stops = list(g.shape)
        starts[d], stops[d] = start, start + n
        out.append(g._slice(starts, stops, [1] * g.ndim))
        start += n
    return tuple(out)


register(OpDef("concat", _concat_infer,
               lambda attrs, *xs: np.concatenate(xs, axis=attrs["dim"]),
               _concat_vjp, F.MOVEMENT, None))

# ---------------------------------------------------------------------------- reductions


def _reduce_infer_for(name, out_dtype=None, numeric=True):
    def infer(types, attrs):
        (t,) = types
        dims = tuple(attrs["dims"])
        if any(not 0 <= d < t.ndim for d in dims) or list(dims) != sorted(set(dims)):
            raise _shape_err(f"{name}: dims {list(dims)} invalid for shape {list(t.shape)}")
        if name in ("max", "min") and any(t.shape[d] == 0 for d in dims):
            raise _shape_err(f"{name}: cannot reduce over a zero-size dim of shape "
                             f"{list(t.shape)}")
        if attrs["keepdim"]:
            shape = tuple(1 if k in dims else s for k, s in enumerate(t.shape))
        else:
            shape = tuple(s for k, s in enumerate(t.shape) if k not in dims)
        return TensorType(shape, out_dtype or t.dtype)
    return infer


def _expand_back(c, g):
    """Gradient of a reduction's output, laid out like its input."""
    x = c.inputs[0]
    dims = c.attrs["dims"]
    if not c.attrs["keepdim"]:
        g = g.reshape(tuple(1 if k in dims else s for k, s in enumerate(x.shape)))
    return g.expand(*x.shape)


def _out_back(c):
    x = c.inputs[0]
    out = c.out
    if not c.attrs["keepdim"]:
        out = out.reshape(tuple(1 if k in c.attrs["dims"] else s
                                for k, s in enumerate(x.shape)))
    return out.expand(*x.shape)


def _sum_vjp(c, g):
    return (_expand_back(c, g),)


def _prod_vjp(c, g):
    # d prod / d x_i is the product of the other elements. prod / x_i gives it while no
    # element is zero; with one zero only that element gets a gradient (the product of
    # the nonzero ones), with two or more every gradient is zero, as in PyTorch.
    T = _tensor_mod()
    x, dims = c.inputs[0], c.attrs["dims"]
    zero = x == 0
    zeros_n = zero.to(x.dtype).sum(dims, keepdim=True).expand(*x.shape)
    x_safe = T.where(zero, x * 0 + 1, x)
    prod_nonzero = T._reduce("prod", x_safe, dims, True).expand(*x.shape)  # several dims
    none_zero = prod_nonzero / x_safe
    one_zero = T.where(zero, prod_nonzero, x * 0)
    local = T.where(zeros_n == 0, none_zero, T.where(zeros_n == 1, one_zero, x * 0))
    return (_expand_back(c, g) * local,)


def _minmax_reduce_vjp(c, g):
    x = c.inputs[0]
    out = _out_back(c)
    match = x == out
    if c.attrs.get("nan_grad"):
        # max()/min() without a dim (PyTorch's evenly_distribute_backward): a NaN result's
        # gradient is shared by the NaN inputs; amax/amin's is NaN, as in PyTorch
        match = match | (x.isnan() & out.isnan())
    mask = match.to(x.dtype)
    # PyTorch's amax/amin: the gradient is shared evenly among tied maxima.
    count = mask.sum(c.attrs["dims"], keepdim=True).expand(*x.shape)
    return (_expand_back(c, g) * mask / count,)


def _contiguous(x):
    """A C-contiguous array of the same shape (np.ascontiguousarray turns 0-d into 1-d)."""
    x = np.asarray(x)
    return x if x.flags.c_contiguous else np.array(x, order="C")


def _np_reduce(fn):
    def impl(attrs, x):
        # numpy's float summation order follows the memory layout: reduce a contiguous
        # copy so the reference's bits depend on values only, not on views.
        if x.dtype == np.float16:
            # PyTorch accumulates half in float32 and rounds once; numpy would round
            # after every addition along a leading axis (up to 164 ulps off).
            x = x.astype(np.float32)
        return fn(_contiguous(x), axis=tuple(attrs["dims"]), keepdims=attrs["keepdim"])
    return impl


register(OpDef("sum", _reduce_infer_for("sum"), _np_reduce(np.sum), _sum_vjp, F.REDUCTION, 1))
register(OpDef("prod", _reduce_infer_for("prod"), _np_reduce(np.prod), _prod_vjp,
               F.REDUCTION, 1))
register(OpDef("max", _reduce_infer_for("max"), _np_reduce(np.max), _minmax_reduce_vjp,
               F.REDUCTION, 1))
register(OpDef("min", _reduce_infer_for("min"), _np_reduce(np.min), _minmax_reduce_vjp,
               F.REDUCTION, 1))


def _argreduce(name, fn):
    def infer(types, attrs):
        (t,) = types
        d = attrs["dim"]
        if not 0 <= d < max(t.ndim, 1):
            raise _shape_err(f"{name}: dim {d} out of range for shape {list(t.shape)}")
        if t.ndim and t.shape[d] == 0:
            raise _shape_err(f"{name}: cannot reduce a zero-size dim of {list(t.shape)}")
        if not t.ndim:
            return TensorType((), dt.int64)
        if attrs["keepdim"]:
            shape = tuple(1 if k == d else s for k, s in enumerate(t.shape))
        else:
            shape = tuple(s for k, s in enumerate(t.shape) if k != d)
        return TensorType(shape, dt.int64)

    def impl(attrs, x):
        if x.ndim == 0:
            return np.zeros((), np.int64)
        r = fn(x, axis=attrs["dim"])
        if attrs["keepdim"]:
            r = np.expand_dims(r, attrs["dim"])
        return r.astype(np.int64)

    register(OpDef(name, infer, impl, None, F.REDUCTION, 1,
                   "index of the first extreme element along `dim`"))


_argreduce("argmax", np.argmax)
_argreduce("argmin", np.argmin)

# ---------------------------------------------------------------------------- indexing


def _gather_infer(types, attrs):
    x, idx = types
    d = attrs["dim"]
    if idx.dtype is not dt.int64:
        raise _dtype_err(f"gather: index must be int64, got {idx.dtype.name}")
    if x.ndim != idx.ndim or not 0 <= d < max(x.ndim, 1):
        raise _shape_err(f"gather: index shape {list(idx.shape)} and input shape "
                         f"{list(x.shape)} need the same number of dims (dim={d})")
    for k, (a, b) in enumerate(zip(x.shape, idx.shape)):
        if k != d and b > a:
            raise _shape_err(f"gather: index shape {list(idx.shape)} exceeds input shape "
                             f"{list(x.shape)} in dim {k}")
    return TensorType(idx.shape, x.dtype)


def _gather_np(attrs, x, idx):
    d = attrs["dim"]
    if idx.size and (idx.min() < -x.shape[d] or idx.max() >= x.shape[d]):
        raise IndexError(f"gather: index out of range for dim {d} of size {x.shape[d]}")
    sl = tuple(slice(0, s) for s in idx.shape)
    sl = sl[:d] + (slice(None),) + sl[d + 1:]
    return np.take_along_axis(x[sl], idx % max(x.shape[d], 1), axis=d)


def _gather_vjp(c, g):
    x, idx = c.inputs
    T = _tensor_mod()
    return (T.zeros(x.shape, dtype=g.dtype).scatter_add(c.attrs["dim"], idx, g), None)


register(OpDef("gather", _gather_infer, _gather_np, _gather_vjp, F.GATHER, 2,
               "torch.gather: out[i][j] = x[index[i][j]][j] for dim=0"))


def _scatter_add_infer(types, attrs):
    x, idx, src = types
    d = attrs["dim"]
    if idx.dtype is not dt.int64:
        raise _dtype_err(f"scatter_add: index must be int64, got {idx.dtype.name}")
    if src.dtype is not x.dtype:
        raise _dtype_err(f"scatter_add: src dtype {src.dtype.name} differs from "
                         f"{x.dtype.name}")
    if not (x.ndim == idx.ndim == src.ndim) or not 0 <= d < max(x.ndim, 1):
        raise _shape_err(f"scatter_add: input {list(x.shape)}, index {list(idx.shape)} and "
                         f"src {list(src.shape)} need the same number of dims")
    for k in range(x.ndim):
        if idx.shape[k] > src.shape[k] or (k != d and idx.shape[k] > x.shape[k]):
            raise _shape_err(f"scatter_add: index shape {list(idx.shape)} too large for "
                             f"input {list(x.shape)} / src {list(src.shape)}")
    return x


def _scatter_add_np(attrs, x, idx, src):
    d = attrs["dim"]
    out = np.array(x, copy=True)
    if idx.size == 0:
        return out
    if idx.min() < -x.shape[d] or idx.max() >= x.shape[d]:
        raise IndexError(f"scatter_add: index out of range for dim {d} of size {x.shape[d]}")
    grids = list(np.indices(idx.shape, sparse=True))
    grids[d] = idx % x.shape[d]
    src_view = src[tuple(slice(0, s) for s in idx.shape)]
    np.add.at(out, tuple(grids), src_view)
    return out


def _scatter_add_vjp(c, g):
    x, idx, src = c.inputs
    gs = g.gather(c.attrs["dim"], idx)
    if tuple(gs.shape) != tuple(src.shape):
        gs = gs._pad([0] * src.ndim, [a - b for a, b in zip(src.shape, gs.shape)],
                     [0] * src.ndim)
    return (g, None, gs)


register(OpDef("scatter_add", _scatter_add_infer, _scatter_add_np, _scatter_add_vjp,
               F.OPAQUE, 3, "torch.scatter_add: out = x; out[index[i][j]][j] += src[i][j]"))

# ---------------------------------------------------------------------------- matmul


def _matmul_infer(types, attrs):
    a, b = types
    if a.dtype is not b.dtype:
        raise _dtype_err(f"matmul: dtypes {a.dtype.name} and {b.dtype.name} differ")
    if a.dtype.is_bool:
        raise _dtype_err("matmul: bool operands are not supported")
    if a.ndim < 2 or a.ndim != b.ndim or a.shape[:-2] != b.shape[:-2] or a.shape[-1] != b.shape[-2]:
        raise _shape_err(f"matmul: shapes {list(a.shape)} and {list(b.shape)} cannot be "
                         f"multiplied ({a.shape[-1] if a.ndim else '?'} vs "
                         f"{b.shape[-2] if b.ndim >= 2 else '?'})")
    return TensorType(a.shape[:-1] + (b.shape[-1],), a.dtype)


def _matmul_vjp(c, g):
    a, b = c.inputs
    return (g @ b.mT, a.mT @ g)


register(OpDef("matmul", _matmul_infer,
               lambda attrs, a, b: np.matmul(_contiguous(a), _contiguous(b)),
               _matmul_vjp,
               F.OPAQUE, 2, "batched [..., M, K] @ [..., K, N]; batch dims equal"))


def _addmm_infer(types, attrs):
    c, a, b, alpha = types
    product = _matmul_infer([a, b], attrs)
    if c != product:
        raise _shape_err(f"addmm: the addend is {c.dtype.name}{list(c.shape)}, the product "
                         f"{product.dtype.name}{list(product.shape)}")
    if alpha.shape != () or alpha.dtype is not product.dtype:
        raise _shape_err(f"addmm: alpha must be a 0-d {product.dtype.name} value, got "
                         f"{alpha.dtype.name}{list(alpha.shape)}")
    return product


def _addmm_np(attrs, c, a, b, alpha):
    product = np.matmul(_contiguous(a), _contiguous(b))
    return (c + alpha * product).astype(product.dtype, copy=False)


def _addmm_vjp(node, g):
    c, a, b, alpha = node.inputs
    scaled = g * alpha
    return (g, scaled @ b.mT, a.mT @ scaled, (g * (a @ b)).sum())


# Made by the backends' lowering (passes/lowering.py: fold_matmul_updates), never by the
# tensor API: an SGD update `w - lr * (x^T @ g)` is one GEMM accumulating into a copy of
# w (BLAS beta = 1), without storing the gradient or zeroing the GEMM's output first.
register(OpDef("addmm", _addmm_infer, _addmm_np, _addmm_vjp, F.OPAQUE, 4,
               "c + alpha * (a @ b): c has the product's type, alpha is 0-d"))

# ---------------------------------------------------------------------------- sorting


def _argsort_infer(types, attrs):
    (t,) = types
    d = attrs["dim"]
    if not 0 <= d < max(t.ndim, 1):
        raise _shape_err(f"argsort: dim {d} out of range for shape {list(t.shape)}")
    return TensorType(t.shape, dt.int64)


def sort_keys(x, descending):
    """uint64 keys whose unsigned order is argsort's order for the values of `x`.

    Floats: -0.0 becomes +0.0 (they compare equal), the IEEE bits are mapped to an
    unsigned integer that increases with the value (negative numbers: every bit flipped;
    others: the sign bit set), and every NaN gets the largest key, so NaN sorts after
    +inf. Signed integers: the sign bit flipped. Descending order flips every bit of the
    key, which keeps equal keys equal, so a stable sort of the keys is still stable
    (negating the values instead would not be: -x is not monotone for NaN or INT_MIN).
    The LLVM kernel computes the same keys (at 32 bits for types of up to 32 bits)."""
    x = np.asarray(x)
    if x.dtype.kind == "f":
        f = x.astype(np.float64)
        f = np.where(f == 0, 0.0, f)
        bits = f.view(np.uint64)
        neg = (bits >> np.uint64(63)).astype(bool)
        keys = np.where(neg, ~bits, bits | np.uint64(1 << 63))
        keys = np.where(np.isnan(f), np.uint64(0xFFFFFFFFFFFFFFFF), keys)
    elif x.dtype.kind == "i":
        keys = x.astype(np.int64).view(np.uint64) ^ np.uint64(1 << 63)
    else:   # bool, uint8
        keys = x.astype(np.uint64)
    return ~keys if descending else keys


def _argsort_np(attrs, x):
    if x.ndim == 0:
        return np.zeros((), np.int64)
    keys = sort_keys(x, attrs["descending"])
    return np.argsort(keys, axis=attrs["dim"], kind="stable").astype(np.int64)


register(OpDef("argsort", _argsort_infer, _argsort_np, None, F.OPAQUE, 1,
               "stable sort order (i64 indices) along `dim`; NaN largest, -0.0 == 0.0"))
