"""PyTorch's tensor operations, built from the IR's primitive ops.

Each function here works on lazy tensors and returns a lazy tensor. Broadcasting and
type promotion follow PyTorch exactly and are made explicit (`expand`, `cast`) so the
IR's elementwise ops always see operands of one shape and dtype. Composite operations
(mean, var, softmax, logsumexp, einsum, ...) are written with primitives, so their
gradients come from the primitives' VJP rules.

The functions are attached to `Tensor` as methods at the bottom and re-exported by
`graphc/__init__.py` as `graphc.<name>`.
"""
from __future__ import annotations

import builtins
import collections
import math
import numbers
import warnings

import numpy as np

from . import autograd, runtime
# Load the einsum submodule now: importing it for the first time later (inside `einsum`)
# would rebind the package attribute `graphc.einsum` from this function to the module.
from .einsum import einsum as _einsum
from .ir import dtypes as dt
from .ir.errors import DTypeError, ShapeError, at_user_line
from .tensor import (_ALIAS, Size, Tensor, _as_view, _checked_scalar, _contiguous_strides,
                     _norm_dim, _norm_dims, _scalar_node, broadcast_shapes, full, full_like,
                     tensor, zeros)
from .tensor import rand as _rand, randn as _randn

_apply = Tensor._apply


def _is_scalar(x):
    return isinstance(x, (numbers.Number, bool)) and not isinstance(x, Tensor)


def _as_tensor_operand(x):
    if isinstance(x, Tensor) or _is_scalar(x):
        return x
    return tensor(x)


def result_type(*operands) -> dt.DType:
    tensors, zero_dim, scalars = [], [], []
    for x in operands:
        if isinstance(x, Tensor):
            (tensors if x.ndim else zero_dim).append(x.dtype)
        else:
            scalars.append(x)
    return dt.result_type(tensors, zero_dim, scalars)


def _prepare(operands, dtype, shape=None):
    """Cast and broadcast operands (tensors or Python scalars) to one dtype and shape."""
    if shape is None:
        shape = broadcast_shapes(*[tuple(x.shape) for x in operands if isinstance(x, Tensor)])
    out = []
    for x in operands:
        t = x._cast(dtype) if isinstance(x, Tensor) else _scalar_node(x, dtype)
        out.append(t._expand_to(shape))
    return out


def _elementwise(op, *operands, dtype=None, compute_dtype=None):
    operands = [_as_tensor_operand(x) for x in operands]
    cd = compute_dtype or result_type(*operands)
    args = _prepare(operands, cd)
    r = _apply(op, *args)
    return r if dtype is None else r._cast(dtype)


def _float_compute(*operands):
    d = result_type(*operands)
    return d if d.is_floating else dt.DEFAULT_FLOAT


# float16 and bfloat16: PyTorch's CPU kernels compute their ops in float32 ("opmath")
# and round the result once
_REDUCED_FLOATS = frozenset({dt.float16, dt.bfloat16})


def _in_float32(fn, input, *args, **kwargs):
    """fn(input, ...) computed in float32 and rounded once to input's dtype when that is
    float16 or bfloat16, as PyTorch's composite kernels (mean, var, softmax, layer_norm,
    lerp) keep their intermediates in float32. In the half type itself, n = 65536 is
    already inf (a float16 mean of 256x256 values was 0 or nan) and every intermediate
    rounds."""
    if not isinstance(input, Tensor) or input.dtype not in _REDUCED_FLOATS:
        return fn(input, *args, **kwargs)
    return fn(input._cast(dt.float32), *args, **kwargs)._cast(input.dtype)


def _is_cpu_scalar(x):
    """A Python number or a 0-d tensor: what PyTorch's CPU kernels treat as a scalar."""
    return _is_scalar(x) or (isinstance(x, Tensor) and x.ndim == 0)


def _scalar_opmath(op, input, other):
    """`op(input, other)` as PyTorch's CPU mul, div and floor-division kernels compute it
    when `other` is a scalar (a Python number on either side, as Python's reflected
    operators put it second in PyTorch; a 0-d tensor second) and the result is float16 or
    bfloat16: the scalar unrounded, in float32, the op in float32, the result rounded
    once (0.5 * 70000.0 is 35008 in float16, not inf; 2.0 / 1e5 is not 0). None when
    that does not apply."""
    if not (getattr(input, "dtype", None) in _REDUCED_FLOATS
            or getattr(other, "dtype", None) in _REDUCED_FLOATS):
        return None   # the common case, decided before any conversion
    a, b = _as_tensor_operand(input), _as_tensor_operand(other)
    if _is_scalar(a) and isinstance(b, Tensor) and op == "mul":
        a, b = b, a
    if not (isinstance(a, Tensor) and _is_cpu_scalar(b)):
        return None
    d = result_type(a, b)
    if d not in _REDUCED_FLOATS:
        return None
    b = b._cast(dt.float32) if isinstance(b, Tensor) else _scalar_node(b, dt.float32)
    return _elementwise(op, a._cast(dt.float32), b)._cast(d)


# ---------------------------------------------------------------------------- arithmetic

def _check_alpha(input, other, alpha):
    """PyTorch's alpha rules: a float alpha needs a floating result, a bool one a bool
    result."""
    if type(alpha) is int:   # the default 1, and any int
        return
    d = result_type(_as_tensor_operand(input), _as_tensor_operand(other))
    if isinstance(alpha, bool) or isinstance(alpha, np.bool_):
        if d is not dt.bool_:
            raise at_user_line(RuntimeError, "Boolean alpha only supported for Boolean "
                                             "results.")
    elif isinstance(alpha, (float, np.floating)) and not d.is_floating:
        raise at_user_line(RuntimeError, "For integral input tensors, argument alpha must "
                                         "not be a floating point number.")


def add(input, other, *, alpha=1):
    _check_alpha(input, other, alpha)
    if alpha != 1:
        if _dtype_of(input) is dt.bool_ and _dtype_of(other) is dt.bool_:
            alpha = bool(alpha)   # PyTorch: a bool add reads alpha as a bool
        other = mul(other, alpha)
    return _elementwise("add", input, other)


def sub(input, other, *, alpha=1):
    _check_alpha(input, other, alpha)
    if alpha != 1:
        other = mul(other, alpha)
    # PyTorch refuses subtraction as soon as either operand is bool, not only both.
    if _dtype_of(input) is dt.bool_ or _dtype_of(other) is dt.bool_:
        raise at_user_line(RuntimeError, "Subtraction, the `-` operator, with a bool tensor "
                                         "is not supported. If you are trying to invert a "
                                         "mask, use the `~` or `logical_not()` operator "
                                         "instead.")
    return _elementwise("sub", input, other)


def _dtype_of(x):
    return x.dtype if isinstance(x, Tensor) else (dt.bool_ if isinstance(x, bool) else None)


def mul(input, other):
    if _dtype_of(input) is dt.bool_ and _dtype_of(other) is dt.bool_:
        return logical_and(input, other)
    r = _scalar_opmath("mul", input, other)
    return r if r is not None else _elementwise("mul", input, other)


def div(input, other, *, rounding_mode=None):
    if rounding_mode == "floor":
        return floor_divide(input, other)
    if rounding_mode == "trunc":
        d = result_type(_as_tensor_operand(input), _as_tensor_operand(other))
        if not d.is_floating:
            return _int_trunc_divide(input, other, d)
        if d in _REDUCED_FLOATS:   # truncate the float32 quotient, then round once
            a, b = (x._cast(dt.float32) if isinstance(x, Tensor) else x
                    for x in (_as_tensor_operand(input), _as_tensor_operand(other)))
            return trunc(div(a, b))._cast(d)
        return trunc(div(input, other))._cast(d)
    if rounding_mode is not None:
        raise at_user_line(RuntimeError, f"div expected rounding_mode to be one of None, "
                                         f"'trunc', or 'floor' but found '{rounding_mode}'")
    r = _scalar_opmath("div", input, other)
    return r if r is not None else _elementwise(
        "div", input, other, compute_dtype=_float_compute(_as_tensor_operand(input),
                                                          _as_tensor_operand(other)))


def _int_trunc_divide(input, other, d):
    """Integer division rounded toward zero, in integers: the floor quotient, plus one
    where the remainder is non-zero and the signs differ. (Through a float, quotients
    above 2**24 lost their low bits.) Division by zero gives 0, as `//` does here."""
    a = _as_tensor_operand(input)
    b = _as_tensor_operand(other)
    a = a._cast(d) if isinstance(a, Tensor) else _scalar_node(a, d)
    b = b._cast(d) if isinstance(b, Tensor) else _scalar_node(b, d)
    q = floor_divide(a, b)
    with autograd.literal_scalars():
        inexact = logical_and(ne(remainder(a, b), 0), ne(lt(a, 0), lt(b, 0)))
        return where(inexact, q + 1, q)


true_divide = divide = div
multiply = mul
subtract = sub


def _divisor(input, other):
    """`other`, refused where it is an integer zero divisor: PyTorch's integer //, %,
    fmod and trunc division raise "ZeroDivisionError" (a RuntimeError); a zero in a
    tensor is found when the graph runs. Float divisors pass (they give inf or nan)."""
    if result_type(_as_tensor_operand(input), _as_tensor_operand(other)).is_floating:
        return other
    if not isinstance(other, Tensor):
        if other == 0:
            raise at_user_line(RuntimeError, "ZeroDivisionError")
        return other
    return _checked(other, ne(other, 0), "ZeroDivisionError")


def floor_divide(input, other):
    other = _divisor(input, other)
    r = _scalar_opmath("floordiv", input, other)
    return r if r is not None else _elementwise("floordiv", input, other)


def remainder(input, other):
    return _elementwise("mod", input, _divisor(input, other))


def pow(input, exponent):
    if _is_scalar(input) and isinstance(exponent, Tensor):
        return _elementwise("pow", input, exponent)
    if _is_scalar(exponent):
        if isinstance(exponent, int) and exponent < 0 and not input.dtype.is_floating:
            raise at_user_line(RuntimeError, "Integers to negative integer powers are not "
                                             "allowed.")
        # the shortcuts compute in the promoted dtype (bool ** 2 is int64, as in PyTorch)
        d = result_type(input, exponent)
        if exponent == 2 and isinstance(exponent, int) and not d.is_bool:
            x = input._cast(d)
            return mul(x, x)
        if exponent == 1 and isinstance(exponent, int):
            return input._cast(d).clone()
        if exponent is False:   # bool ** False: every element True (x ** 0 == 1)
            return full_like(input, True, dtype=dt.bool_)
        if exponent == 0.5:
            d = _float_compute(input)
            return _apply("sqrt", input._cast(d))
    return _elementwise("pow", input, exponent)


def neg(input):
    if input.dtype is dt.bool_:
        raise at_user_line(RuntimeError, "Negation, the `-` operator, on a bool tensor is not "
                                         "supported. If you are trying to invert a mask, use "
                                         "the `~` or `logical_not()` operator instead.")
    return _apply("neg", input)


negative = neg


def maximum(input, other):
    return _elementwise("maximum", input, other)


def minimum(input, other):
    return _elementwise("minimum", input, other)


def where(condition, input=None, other=None):
    if input is None and other is None:
        raise at_user_line(RuntimeError, "graphc.where(condition) needs the values of the "
                                         "condition (data-dependent shape); use "
                                         "condition.nonzero() on realized data instead")
    if isinstance(condition, Tensor) and condition.dtype not in (dt.bool_, dt.uint8):
        # PyTorch takes a bool condition (and, deprecated, a uint8 one), no other
        raise at_user_line(RuntimeError, f"where expected condition to be a boolean tensor, "
                                         f"but got a tensor with dtype "
                                         f"{dt.TORCH_NAMES[condition.dtype.name]}")
    condition = _as_tensor_operand(condition)
    input, other = _as_tensor_operand(input), _as_tensor_operand(other)
    d = result_type(input, other)
    shapes = [tuple(x.shape) for x in (condition, input, other) if isinstance(x, Tensor)]
    shape = broadcast_shapes(*shapes)
    (c,) = _prepare([condition], dt.bool_, shape)
    a, b = _prepare([input, other], d, shape)
    return _apply("where", c, a, b)


def _checked(input, ok, message):
    """`input`, failing the realization with PyTorch's RuntimeError `message` (naming this
    line) if any element of the bool tensor `ok` (broadcast to input's shape) is False:
    a check PyTorch makes on the data when the op runs, which a graph can only make when
    it runs (the IR `check` op)."""
    ok = ok if tuple(ok.shape) == tuple(input.shape) else ok.expand(*input.shape)
    return _apply("check", input, ok, message=message)


def _checked_probabilities(input, message):
    """`input`, checked when the graph runs to lie in [0, 1] (NaN refused), as PyTorch's
    bernoulli and binary_cross_entropy check theirs."""
    return _checked(input, logical_and(ge(input, 0), le(input, 1)), message)


def clamp(input, min=None, max=None):
    if min is None and max is None:
        raise at_user_line(RuntimeError, "clamp: at least one of 'min' or 'max' must not be None")
    out = input
    # torch.clamp(x, min, max) = min(max(x, min), max), the dtype promoted with the bounds.
    # Written with `where`, not maximum/minimum: PyTorch passes the whole gradient to x
    # where x equals a bound (maximum/minimum would split it in half at the tie).
    # A NaN bound gives NaN, as in PyTorch (a comparison with NaN alone would keep x).
    if min is not None:
        out = where(_or_nan_bound(lt(out, min), min), min, out)
    if max is not None:
        out = where(_or_nan_bound(gt(out, max), max), max, out)
    return out


def _or_nan_bound(beyond, bound):
    if isinstance(bound, Tensor) and bound.dtype.is_floating:
        return logical_or(beyond, isnan(bound))
    if isinstance(bound, float) and math.isnan(bound):
        return full_like(beyond, True)
    return beyond


clip = clamp


def clamp_min(input, min):
    return clamp(input, min=min)


def clamp_max(input, max):
    return clamp(input, max=max)


def _addc_value(value, operands):
    """`value * tensor1` as PyTorch's addcmul/addcdiv kernels form it: the scalar
    multiplies tensor1 first (`self + value * t1 * t2`), and 1 is left out."""
    if isinstance(value, float) and not result_type(*operands).is_floating:
        value = int(value)  # PyTorch converts the scalar to the integer type: truncation
    return operands[1] if isinstance(value, numbers.Number) and value == 1 else \
        mul(value, operands[1])


def addcmul(input, tensor1, tensor2, *, value=1):
    """input + value * tensor1 * tensor2, promoted over all three tensors."""
    d = result_type(input, tensor1, tensor2)
    return add(input, mul(_addc_value(value, (input, tensor1, tensor2)), tensor2)._cast(d))


def addcdiv(input, tensor1, tensor2, *, value=1):
    """input + value * tensor1 / tensor2 (true division; integer tensors are refused)."""
    if not tensor1.dtype.is_floating and not tensor2.dtype.is_floating:
        raise at_user_line(RuntimeError, "Integer division with addcdiv is no longer "
                                         "supported, and in a future  release addcdiv will "
                                         "perform a true division of tensor1 and tensor2. The "
                                         "historic addcdiv behavior can be implemented as "
                                         "(input + value * torch.trunc(tensor1 / tensor2))."
                                         "to(input.dtype) for integer inputs and as (input + "
                                         "value * tensor1 / tensor2) for float inputs. The "
                                         "future addcdiv behavior is just the latter "
                                         "implementation: (input + value * tensor1 / tensor2), "
                                         "for all dtypes.")
    return add(input, div(_addc_value(value, (input, tensor1, tensor2)), tensor2))


# ---------------------------------------------------------------------------- comparisons

def _compare(op):
    def f(input, other):
        return _elementwise(op, input, other)
    f.__name__ = op
    return f


eq, ne, lt, le, gt, ge = (_compare(o) for o in ("eq", "ne", "lt", "le", "gt", "ge"))
less, less_equal, greater, greater_equal, not_equal = lt, le, gt, ge, ne


def equal(input, other):
    return tuple(input.shape) == tuple(other.shape) and bool(eq(input, other).all())


def allclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    return bool(isclose(input, other, rtol, atol, equal_nan).all())


def isclose(input, other, rtol=1e-05, atol=1e-08, equal_nan=False):
    """PyTorch's rule: equal values are close (infinities only to themselves), NaNs with
    equal_nan, and otherwise |input - other| <= atol + rtol * |other| where that
    difference is finite (so a finite value is never close to an infinity)."""
    if isinstance(input, Tensor) and isinstance(other, Tensor) and input.dtype is not other.dtype:
        raise at_user_line(RuntimeError, f"{dt.TORCH_NAMES[input.dtype.name]} did not match "
                                         f"{dt.TORCH_NAMES[other.dtype.name]}")
    ok = eq(input, other)
    if equal_nan:
        ok = logical_or(ok, logical_and(isnan(input), isnan(other)))
    d = abs(input - other)
    return logical_or(ok, logical_and(isfinite(d), d <= atol + abs(rtol * other)))


def _logical(op):
    def f(input, other):
        return _elementwise(op, _as_bool(input), _as_bool(other))
    f.__name__ = op
    return f


def _as_bool(x):
    if isinstance(x, Tensor):
        return x._cast(dt.bool_)
    return bool(x)


logical_and = _logical("logical_and")
logical_or = _logical("logical_or")
logical_xor = _logical("logical_xor")


def logical_not(input):
    return _apply("logical_not", input._cast(dt.bool_))


def _bitwise(op):
    """PyTorch's bitwise_and/or/xor: bool and integer operands, promoted (bool with an
    int gives the int's dtype); on bools the logical op, on integers the bit op."""
    def f(input, other):
        operands = [_as_tensor_operand(x) for x in (input, other)]
        d = result_type(*operands)
        if d.is_floating:
            raise at_user_line(NotImplementedError, f'"{op}_cpu" not implemented for '
                                                    f"'{dt.TORCH_NAMES[d.name]}'")
        logical = {"bitwise_and": "logical_and", "bitwise_or": "logical_or",
                   "bitwise_xor": "logical_xor"}[op]
        return _elementwise(logical if d is dt.bool_ else op, *operands)
    f.__name__ = op
    return f


bitwise_and = _bitwise("bitwise_and")
bitwise_or = _bitwise("bitwise_or")
bitwise_xor = _bitwise("bitwise_xor")


def bitwise_not(input):
    """~x: logical not of a bool tensor, two's complement not of an integer one."""
    if input.dtype.is_floating:
        raise at_user_line(NotImplementedError, f'"bitwise_not_cpu" not implemented for '
                                                f"'{dt.TORCH_NAMES[input.dtype.name]}'")
    if input.dtype is dt.bool_:
        return logical_not(input)
    return _apply("bitwise_not", input)


def _invert(input):
    """~x: PyTorch's operator refuses a float tensor before bitwise_not sees it."""
    if input.dtype.is_floating:
        raise at_user_line(TypeError, "~ (operator.invert) is only implemented on integer "
                                      "and Boolean-type tensors")
    return bitwise_not(input)


# ---------------------------------------------------------------------------- unary math

def _float_unary(op):
    def f(input):
        d = input.dtype if input.dtype.is_floating else dt.DEFAULT_FLOAT
        return _apply(op, input._cast(d))
    f.__name__ = op
    return f


_FLOAT_UNARY = ("exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tanh",
                "sigmoid", "silu", "erf", "reciprocal", "tan", "asin", "acos", "atan",
                "sinh", "cosh", "asinh", "acosh", "atanh", "log2", "log10", "exp2")
for _op in _FLOAT_UNARY:
    globals()[_op] = _float_unary(_op)
arcsin, arccos, arctan, arcsinh, arccosh, arctanh = asin, acos, atan, asinh, acosh, atanh


def _float_binary(op, integers_allowed=True):
    """A float-only binary op (atan2, copysign, hypot): integer and bool operands are
    computed in the default float dtype, as PyTorch promotes them (hypot refuses two
    integer tensors, as PyTorch's CPU kernel does)."""
    def f(input, other):
        d = _float_compute(input, other)
        if not integers_allowed and not result_type(input, other).is_floating:
            raise at_user_line(NotImplementedError, f"{op}: not implemented for integer "
                                                    f"tensors ({_dtype_of(input)}, "
                                                    f"{_dtype_of(other)})")
        return _elementwise(op, input, other, compute_dtype=d)
    f.__name__ = op
    return f


atan2 = arctan2 = _float_binary("atan2")
copysign = _float_binary("copysign")
hypot = _float_binary("hypot", integers_allowed=False)


def fmod(input, other):
    """C's truncated remainder (the dividend's sign), for integers and floats."""
    return _elementwise("fmod", input, _divisor(input, other))


def flip(input, dims):
    dims = (dims,) if isinstance(dims, int) else tuple(dims)
    norm = [_norm_dim(d, input.ndim) for d in dims]
    if len(set(norm)) != len(norm):
        dup = next(d for d in norm if norm.count(d) > 1)
        raise at_user_line(RuntimeError, f"dim {dup} appears multiple times in the list of "
                                         f"dims")
    if not norm or input.ndim == 0:
        return input.clone()
    return _apply("flip", input, dims=tuple(sorted(norm)))


def fliplr(input):
    if input.ndim < 2:
        raise at_user_line(RuntimeError, "Input must be >= 2-d.")
    return flip(input, (1,))


def flipud(input):
    if input.ndim < 1:
        raise at_user_line(RuntimeError, "Input must be >= 1-d.")
    return flip(input, (0,))


def gelu(input, approximate="none"):
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return _apply("gelu", input, approximate=approximate)


def relu(input):
    return _apply("relu", input)


def abs(input):
    if input.dtype is dt.bool_:
        return input
    return _apply("abs", input)


absolute = abs


def sign(input):
    if input.dtype is dt.bool_:
        return input
    return _apply("sign", input)


def _rounding(op):
    def f(input):
        if not input.dtype.is_floating:
            return input.clone()
        return _apply(op, input)
    f.__name__ = op
    return f


floor, ceil = _rounding("floor"), _rounding("ceil")


def round(input, decimals=0):
    if not input.dtype.is_floating:
        return input.clone()
    if decimals == 0:
        return _apply("round", input)
    scale = 10.0 ** decimals

    def scaled(x):
        with autograd.literal_scalars():
            return _apply("round", x * scale) / scale
    return _in_float32(scaled, input)   # 1000.12 * 100 overflows float16


def trunc(input):
    if not input.dtype.is_floating:
        return input.clone()
    return where(input < 0, ceil(input), floor(input))


def isnan(input):
    return _apply("isnan", input)


def isfinite(input):
    return _apply("isfinite", input)


def isinf(input):
    return logical_and(logical_not(isfinite(input)), logical_not(isnan(input)))


def square(input):
    return pow(input, 2)   # bool -> int64, as PyTorch


def _finfo_max(dtype):
    if dtype is dt.bfloat16:
        return float.fromhex("0x1.fep127")  # numpy has no bfloat16
    return float(np.finfo(dtype.np).max)


def nan_to_num(input, nan=0.0, posinf=None, neginf=None):
    """NaN -> `nan`, +inf -> `posinf`, -inf -> `neginf` (default: the dtype's largest and
    lowest finite values). Written with `where`, so the gradient is the incoming one
    where the input is finite and 0 where it was replaced, as PyTorch's."""
    if not input.dtype.is_floating:
        return input.clone()
    big = _finfo_max(input.dtype)
    posinf = big if posinf is None else posinf
    neginf = -big if neginf is None else neginf
    with autograd.literal_scalars():
        out = where(eq(input, -math.inf), _scalar_node(neginf, input.dtype), input)
        out = where(eq(input, math.inf), _scalar_node(posinf, input.dtype), out)
        return where(isnan(input), _scalar_node(nan, input.dtype), out)


def lerp(input, end, weight):
    if isinstance(input, Tensor) and isinstance(end, Tensor) and end.dtype is not input.dtype:
        raise at_user_line(RuntimeError, f"expected dtype {_CPP_NAMES[input.dtype.name]} for "
                                         f"`end` but got dtype {_CPP_NAMES[end.dtype.name]}")
    if isinstance(input, Tensor) and input.dtype in _REDUCED_FLOATS:
        # float32 intermediates, one rounding (the weight is not rounded to the half type)
        w = weight._cast(dt.float32) if isinstance(weight, Tensor) else weight
        return lerp(input._cast(dt.float32), end._cast(dt.float32), w)._cast(input.dtype)
    return input + weight * (end - input)


# ---------------------------------------------------------------------------- reductions

def _check_dims(dim, ndim):
    """PyTorch refuses a dim named twice in a reduction's dim tuple."""
    if isinstance(dim, (tuple, list)):
        seen = set()
        for d in dim:
            k = _norm_dim(int(d), ndim)
            if k in seen:
                raise at_user_line(RuntimeError, f"dim {k} appears multiple times in the "
                                                 f"list of dims")
            seen.add(k)


def _check_nonempty(name, input, dim):
    """max/min/amax/argmax over a zero-size dim have no identity: PyTorch's errors."""
    if input.numel():
        return
    if dim is None:
        raise at_user_line(RuntimeError if name in ("max", "min") else IndexError,
                           f"{name}(): Expected reduction dim to be specified for "
                           f"input.numel() == 0. Specify the reduction dim with the 'dim' "
                           f"argument.")
    for d in _norm_dims(dim, input.ndim):
        if input.ndim and input.shape[d] == 0:
            raise at_user_line(IndexError, f"{name}(): Expected reduction dim {d} to have "
                                           f"non-zero size.")


def _reduce(op, input, dim, keepdim):
    _check_dims(dim, input.ndim)
    dims = _norm_dims(dim, input.ndim)
    if input.ndim == 0:
        return _plus_zero(input) if op == "sum" else input.clone()
    return _apply(op, input, dims=dims, keepdim=bool(keepdim))


def _plus_zero(x):
    """x + 0.0: a sum of one element, which PyTorch starts from +0.0 (-0.0 becomes
    +0.0, nothing else changes)."""
    if not x.dtype.is_floating:
        return x.clone()
    with autograd.literal_scalars():
        return x + 0.0


def _all_dims_if_empty(dim):
    """sum/mean/var/std/norm read `dim=()` as every dim (all/any read it as none)."""
    return None if isinstance(dim, (tuple, list)) and not dim else dim


def sum(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = input._cast(dt.to_dtype(dtype))
    elif not input.dtype.is_floating:
        input = input._cast(dt.int64)
    return _reduce("sum", input, _all_dims_if_empty(dim), keepdim)


def _one_dim(name, dim):
    """The `dim` of an op that reduces or normalizes along one dim (prod, softmax,
    log_softmax) as PyTorch's argument parser reads it: an int, a numpy integer or a 0-d
    integer tensor; anything else (a tuple or list of dims, a float) is its TypeError."""
    if isinstance(dim, (numbers.Integral, np.integer)) and not isinstance(dim, bool):
        return int(dim)
    if isinstance(dim, Tensor) and dim.ndim == 0 and not dim.dtype.is_floating and \
            dim.dtype is not dt.bool_:
        return int(dim)
    raise at_user_line(TypeError, f"{name}(): argument 'dim' must be int, not "
                                  f"{type(dim).__name__}")


def prod(input, dim=None, keepdim=False, *, dtype=None):
    if dim is not None:   # one dim: PyTorch's prod takes no tuple of dims
        dim = _one_dim("prod", dim)
    if dtype is not None:
        input = input._cast(dt.to_dtype(dtype))
    elif not input.dtype.is_floating:
        input = input._cast(dt.int64)
    return _reduce("prod", input, dim, keepdim)


def _count(input, dim):
    n = 1
    if input.ndim == 0:
        _norm_dims(dim, 0)  # a 0-d tensor takes dim 0 or -1 and has one element
        return 1
    for d in _norm_dims(_all_dims_if_empty(dim), input.ndim):
        n *= input.shape[d]
    return n


def nansum(input, dim=None, keepdim=False, *, dtype=None):
    """sum, NaNs counted as zero (their gradient is zero too, as PyTorch's)."""
    if input.dtype.is_floating:
        with autograd.literal_scalars():
            input = where(isnan(input), full_like(input, 0), input)
    return sum(input, dim, keepdim, dtype=dtype)


def mean(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = input._cast(dt.to_dtype(dtype))
    if not input.dtype.is_floating:
        raise at_user_line(RuntimeError, "mean(): could not infer output dtype. Input dtype "
                                         f"must be either a floating point or complex dtype. "
                                         f"Got: {input.dtype.name}")
    if input.dtype in _REDUCED_FLOATS:
        return _in_float32(mean, input, dim, keepdim)
    n = _count(input, dim)
    with autograd.literal_scalars():
        return sum(input, dim, keepdim) / float(n) if n else sum(input, dim, keepdim) * math.nan


def amax(input, dim=(), keepdim=False):
    _check_nonempty("amax", input, None if dim == () else dim)
    return _reduce("max", input, None if dim == () else dim, keepdim)


def amin(input, dim=(), keepdim=False):
    _check_nonempty("amin", input, None if dim == () else dim)
    return _reduce("min", input, None if dim == () else dim, keepdim)


_MinMax = collections.namedtuple("_MinMax", ["values", "indices"])


def _minmax(kind, input, dim=None, keepdim=False):
    if isinstance(dim, Tensor):  # torch.max(a, b)
        return (maximum if kind == "max" else minimum)(input, dim)
    _check_nonempty(kind, input, dim)
    if dim is None:
        if input.ndim == 0:
            return input.clone()
        return _apply(kind, input, dims=tuple(range(input.ndim)), keepdim=False, nan_grad=True)
    d = _norm_dim(dim, input.ndim)
    # max(dim) of a bool tensor is fine in PyTorch though argmax of one is refused
    idx = _argminmax("arg" + kind, input, d, True, bool_ok=True)
    values = input.gather(d, idx) if input.ndim else input
    if not keepdim and input.ndim:
        values, idx = values.squeeze(d), idx.squeeze(d)
    return _MinMax(values, idx)


def max(input, dim=None, keepdim=False):
    return _minmax("max", input, dim, keepdim)


def min(input, dim=None, keepdim=False):
    return _minmax("min", input, dim, keepdim)


def _argminmax(op, input, dim, keepdim, bool_ok=False):
    if input.dtype is dt.bool_ and not bool_ok:
        raise at_user_line(RuntimeError, f"{op}(): does not support bool input")
    _check_nonempty(op, input, dim)
    if dim is None:
        flat = input.reshape(-1)
        r = _apply(op, flat, dim=0, keepdim=False)
        return r.reshape((1,) * input.ndim) if keepdim else r
    return _apply(op, input, dim=_norm_dim(dim, input.ndim), keepdim=bool(keepdim))


def argmax(input, dim=None, keepdim=False):
    return _argminmax("argmax", input, dim, keepdim)


def argmin(input, dim=None, keepdim=False):
    return _argminmax("argmin", input, dim, keepdim)


def _unbiased_in_dim(dim, unbiased):
    """(dim, unbiased): PyTorch's var(x, True) / std(x, False) overload, where a bool in
    `dim`'s place is `unbiased` over every element (a bool is an int to Python, so it was
    taken as dim 1 or 0)."""
    if isinstance(dim, bool):
        if unbiased is not None:
            raise at_user_line(TypeError, "var/std: got a bool dim and unbiased; pass "
                                          "unbiased= by keyword")
        return None, dim
    return dim, unbiased


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    dim, unbiased = _unbiased_in_dim(dim, unbiased)
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    if input.dtype in _REDUCED_FLOATS:
        return _in_float32(var, input, dim, keepdim=keepdim, correction=correction)
    n = _count(input, dim)
    with autograd.literal_scalars():
        mu = mean(input, dim, keepdim=True)
        d = input - mu
        return sum(d * d, dim, keepdim) / float(builtins.max(n - correction, 0))


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if input.dtype is dt.float32:
        # PyTorch accumulates a float32 variance in double and takes the root there: the
        # std of values near 1e20 is finite though their variance is past float32's range
        wide = std(input.to(dt.float64), dim, unbiased, keepdim, correction=correction)
        return wide.to(dt.float32)
    return _root_zero_grad_at_zero(var(input, dim, unbiased, keepdim, correction=correction))


def _root_zero_grad_at_zero(x, root=None):
    """sqrt(x) (or `root(x)`) whose gradient is 0, not inf * 0 = nan, where x == 0, as
    PyTorch's std and norm backward define it: the root runs on 1 there and the result
    is replaced by 0."""
    with autograd.literal_scalars():
        zero = eq(x, 0)
        safe = where(zero, 1.0, x)
        return where(zero, 0.0, sqrt(safe) if root is None else root(safe))


def var_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    dim, unbiased = _unbiased_in_dim(dim, unbiased)
    return var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def std_mean(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    dim, unbiased = _unbiased_in_dim(dim, unbiased)
    return std(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def count_nonzero(input, dim=None):
    return sum(ne(input, 0), dim)


def logsumexp(input, dim, keepdim=False):
    _check_dims(dim, input.ndim)
    if not input.dtype.is_floating:    # PyTorch: integers and bools in the default float
        input = input._cast(dt.DEFAULT_FLOAT)
    if input.dtype in _REDUCED_FLOATS:
        return _in_float32(logsumexp, input, dim, keepdim)
    if input.numel() == 0:  # log of an empty sum: -inf, as PyTorch gives
        with autograd.literal_scalars():
            return full(_reduced_shape(input, dim, keepdim), -math.inf, dtype=input.dtype)
    with autograd.literal_scalars():
        m = amax(input, dim, keepdim=True).detach()
        m = where(isfinite(m), m, zeros((), dtype=m.dtype))
        s = sum(exp(input - m), dim, keepdim=True).log() + m
        return s if keepdim else s.squeeze(_norm_dims(dim, input.ndim))


def _require_float(name, input):
    # PyTorch has no integer kernels for these; computing them in float silently would
    # hide a missing .float() that PyTorch would report.
    if not input.dtype.is_floating:
        raise at_user_line(RuntimeError, f"{name}: expected a floating-point input, got "
                                         f"{input.dtype.name} (pass dtype= or call .float())")


def softmax(input, dim, dtype=None):
    dim = _one_dim("softmax", dim)
    if dtype is not None:
        input = input._cast(dt.to_dtype(dtype))
    _require_float("softmax", input)
    if input.numel() == 0:
        _norm_dim(dim, input.ndim)
        return input.clone()
    if input.dtype in _REDUCED_FLOATS:
        return _in_float32(softmax, input, dim)
    with autograd.literal_scalars():
        e = exp(input - amax(input, dim, keepdim=True).detach())
        # one reciprocal per row and a multiply per element, as PyTorch's CPU kernel
        # does (a divide per element costs ~5x a multiply)
        return e * reciprocal(sum(e, dim, keepdim=True))


def log_softmax(input, dim, dtype=None):
    dim = _one_dim("log_softmax", dim)
    if dtype is not None:
        input = input._cast(dt.to_dtype(dtype))
    _require_float("log_softmax", input)
    if input.numel() == 0:
        _norm_dim(dim, input.ndim)
        return input.clone()
    if input.dtype in _REDUCED_FLOATS:
        return _in_float32(log_softmax, input, dim)
    with autograd.literal_scalars():
        shifted = input - amax(input, dim, keepdim=True).detach()
        return shifted - sum(exp(shifted), dim, keepdim=True).log()


def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    if dtype is not None:
        input = input._cast(dt.to_dtype(dtype))
    _require_float("norm", input)
    if input.dtype in _REDUCED_FLOATS:   # float16 300**2 is already inf
        return _in_float32(norm, input, p, dim, keepdim)
    with autograd.literal_scalars():
        if p in ("fro", 2, 2.0):
            return _root_zero_grad_at_zero(sum(input * input, dim, keepdim))
        if p in (1, 1.0):
            return sum(abs(input), dim, keepdim)
        if p == math.inf:
            return amax(abs(input), () if dim is None else dim, keepdim)
        if p == -math.inf:
            return amin(abs(input), () if dim is None else dim, keepdim)
        if p == 0:
            count = sum((input != 0)._cast(input.dtype), dim, keepdim)
            if not input.requires_grad:
                return count
            # PyTorch's p=0 norm has a gradient, of zeros: a term of value 0 keeps the
            # path (where, so that an inf element does not make it nan)
            with autograd.literal_scalars():
                zero = where(isfinite(input), input - input.detach(), 0.0) * 0.0
            return count + sum(zero, dim, keepdim)
        return _root_zero_grad_at_zero(sum(abs(input) ** float(p), dim, keepdim),
                                       lambda s: s ** (1.0 / p))


def all(input, dim=None, keepdim=False):
    r = _reduce("min", input._cast(dt.bool_), dim, keepdim) if input.numel() else \
        full(_reduced_shape(input, dim, keepdim), True, dtype=dt.bool_)
    return r._cast(dt.uint8) if input.dtype is dt.uint8 else r  # PyTorch keeps uint8


def any(input, dim=None, keepdim=False):
    r = _reduce("max", input._cast(dt.bool_), dim, keepdim) if input.numel() else \
        full(_reduced_shape(input, dim, keepdim), False, dtype=dt.bool_)
    return r._cast(dt.uint8) if input.dtype is dt.uint8 else r  # PyTorch keeps uint8


def _reduced_shape(input, dim, keepdim):
    dims = _norm_dims(dim, input.ndim)
    return tuple(1 if k in dims else s for k, s in enumerate(input.shape)
                 if keepdim or k not in dims)


def _cum_dtype(input, dtype):
    """cumsum/cumprod's result type: `dtype`, else integers and bools widen to int64."""
    if dtype is not None:
        return dt.to_dtype(dtype)
    return input.dtype if input.dtype.is_floating else dt.int64


def _tri_mask(n, m, offset):
    """(n, m) bool mask of j - i <= offset (the lower triangle from diagonal `offset`)."""
    i = _apply("iota", shape=(n, m), dim=0, dtype=dt.int64)
    j = _apply("iota", shape=(n, m), dim=1, dtype=dt.int64)
    return le(j - i, offset)


def _masked_prefix(x, reduce, identity, strict):
    """out[..., i] = reduce of x[..., j] over j <= i (j < i if `strict`), along the last
    dim: one reduction over a broadcast (n, n) triangle (inlined into the reduction's
    loop, never stored by the compiled backends)."""
    # Selected with `where`, not multiplied by a 0/1 triangle (a matmul): inf * 0 is nan,
    # which put nan before every inf or nan of a cumsum.
    n = x.shape[-1]
    keep = _tri_mask(n, n, -1 if strict else 0)
    rows = x.reshape(tuple(x.shape[:-1]) + (1, n))
    return (sum if reduce == "sum" else prod)(
        where(keep, rows, _scalar_node(identity, x.dtype)), -1)


def _blocked_scan(x, reduce, identity):
    """Inclusive prefix reduction along the last dim in two levels: blocks of c ~ sqrt(n)
    elements are scanned with a triangle (n*c work), the block totals likewise (b*b),
    and each block is combined with the exclusive prefix of the totals before it. Exact
    for any values (zeros, negatives, infinities: no log/exp), O(n^1.5) work, and
    differentiable through the ops' own rules."""
    n = x.shape[-1]
    c = n if n <= 32 else 1 << ((n - 1).bit_length() + 1) // 2
    b = -(-n // c)
    combine = add if reduce == "sum" else mul
    lead = tuple(x.shape[:-1])
    if b * c != n:  # fill the last block with the identity
        fill = _scalar_node(identity, x.dtype)._expand_to(lead + (b * c - n,))
        x = _apply("concat", x, fill, dim=x.ndim - 1)
    inner = _masked_prefix(x.reshape(lead + (b, c)), reduce, identity, strict=False)
    if b > 1:
        totals = inner[..., c - 1]
        before = _masked_prefix(totals, reduce, identity, strict=True)
        inner = combine(before.reshape(lead + (b, 1)), inner)
    out = inner.reshape(lead + (b * c,))
    return out[..., :n] if b * c != n else out


def _cumulative(input, dim, dtype, reduce, identity):
    d = _norm_dim(dim, input.ndim)
    x = input._cast(_cum_dtype(input, dtype))
    if x.ndim == 0 or x.shape[d] <= 1:
        if reduce == "sum" and x.ndim:   # PyTorch's 0-d cumsum is a copy (-0.0 stays)
            return _plus_zero(x)
        return x.clone() if x is input else x
    # PyTorch's CPU kernels accumulate float32 in double (half types in float) and round
    # each output once; accumulating in that type gives its values bit for bit, where
    # float32 sums drift by up to n roundings
    acc = dt.float64 if x.dtype is dt.float32 else (
        dt.float32 if x.dtype in (dt.float16, dt.bfloat16) else x.dtype)
    with autograd.literal_scalars():
        moved = x._cast(acc).transpose(d, -1)
        return _blocked_scan(moved, reduce, identity).transpose(d, -1)._cast(x.dtype)


def cumsum(input, dim, *, dtype=None):
    return _cumulative(input, dim, dtype, "sum", 0)


def cumprod(input, dim, *, dtype=None):
    """Prefix products, exact for zeros and negatives (no exp(cumsum(log)))."""
    return _cumulative(input, dim, dtype, "prod", 1)


def arange_like(n):
    return _apply("iota", shape=(n,), dim=0, dtype=dt.int64)


# ---------------------------------------------------------------------------- shapes

def _shape_from_args(args):
    if len(args) == 1 and isinstance(args[0], (tuple, list, Size)):
        args = tuple(args[0])
    return tuple(int(a) for a in args)


def _infer_shape(input, shape):
    shape = list(shape)
    n = input.numel()
    if shape.count(-1) > 1:
        raise at_user_line(RuntimeError, "only one dimension can be inferred")
    if -1 in shape:
        known = 1
        for s in shape:
            if s != -1:
                known *= s
        k = shape.index(-1)
        if known == 0 or n % known:
            raise at_user_line(ShapeError, f"shape '{list(shape)}' is invalid for input of size {n}")
        shape[k] = n // known
    shape = tuple(shape)
    p = 1
    for s in shape:
        if s < 0:
            raise at_user_line(RuntimeError, f"invalid shape dimension {s}")
        p *= s
    if p != n:
        raise at_user_line(ShapeError, f"shape '{list(shape)}' is invalid for input of size {n} "
                                       f"(input shape {list(input.shape)})")
    return shape


def _view_strides(oldshape, oldstride, newshape):
    """Strides that lay `newshape` over the elements of a tensor of `oldshape` and
    `oldstride`, or None when there are none (then `view` refuses and `reshape` copies).

    The old dims fall into blocks, each one linear run of memory: going outwards from
    the innermost dim, a dim joins the block when its stride is the block's element
    count times the block's innermost stride (a size-1 dim always joins). A view may
    split and merge dims only within a block: the new dims must cover the blocks one
    after another with equal products, and inside a block they take row-major strides
    from its innermost stride. A new size-1 dim takes the stride a dim at its place
    would have (the value PyTorch's `stride()` shows)."""
    if not oldshape:
        return (1,) * len(newshape)
    numel = 1
    for s in oldshape:
        numel *= s
    if numel == 0:
        if tuple(oldshape) == tuple(newshape):
            return tuple(oldstride)
        return _contiguous_strides(newshape)
    blocks = []   # [elements, innermost stride], innermost block first
    for size, st in zip(reversed(oldshape), reversed(oldstride)):
        if blocks and (size == 1 or st == blocks[-1][0] * blocks[-1][1]):
            blocks[-1][0] *= size
        else:
            blocks.append([size, st])
    out = [0] * len(newshape)
    d = len(newshape) - 1
    for elements, stride in blocks:
        covered = 1
        while d >= 0 and (covered < elements or newshape[d] == 1):
            out[d] = covered * stride
            covered *= newshape[d]
            d -= 1
        if covered != elements:
            return None
    return tuple(out) if d < 0 else None


def _reshape_back(base, new):
    return new._apply("reshape", new, shape=tuple(base.shape))


def _reshape(input, shape, is_view):
    shape = _infer_shape(input, _shape_from_args(shape))
    if shape == tuple(input.shape):
        return input
    strides = _view_strides(tuple(input.shape), input._strides(), shape)
    if strides is None:
        if is_view:
            raise at_user_line(RuntimeError, f"view size is not compatible with input tensor's "
                                             f"size and stride (at least one dimension spans "
                                             f"across two contiguous subspaces): input shape "
                                             f"{list(input.shape)}, strides "
                                             f"{list(input._strides())}, view shape "
                                             f"{list(shape)}. Use .reshape(...) instead.")
        return _apply("reshape", input, shape=shape)  # a copy, as PyTorch's reshape makes
    out = _apply("reshape", input, shape=shape)
    return _as_view(input, out, lambda b: b._apply("reshape", b, shape=shape), _reshape_back,
                    strides)


def reshape(input, *shape):
    return _reshape(input, shape, is_view=False)


def view(input, *shape):
    if len(shape) == 1 and isinstance(shape[0], dt.DType):
        raise at_user_line(RuntimeError, "view(dtype) (reinterpreting the bits) is not "
                                         "supported by graphc; use .to(dtype) to convert")
    return _reshape(input, shape, is_view=True)


def view_as(input, other):
    return view(input, other.shape)


def reshape_as(input, other):
    return reshape(input, other.shape)


def flatten(input, start_dim=0, end_dim=-1):
    if input.ndim == 0:
        return input.reshape(1)
    s, e = _norm_dim(start_dim, input.ndim), _norm_dim(end_dim, input.ndim)
    if s > e:
        raise at_user_line(RuntimeError, "flatten() has invalid args: start_dim cannot come "
                                         "after end_dim")
    shape = tuple(input.shape)
    n = 1
    for v in shape[s:e + 1]:
        n *= v
    return reshape(input, shape[:s] + (n,) + shape[e + 1:])


def unflatten(input, dim, sizes):
    d = _norm_dim(dim, input.ndim)
    shape = tuple(input.shape)
    sizes = list(sizes)
    if -1 in sizes:
        known = 1
        for v in sizes:
            if v != -1:
                known *= v
        sizes[sizes.index(-1)] = shape[d] // known if known else 0
    p = 1
    for v in sizes:
        p *= v
    if p != shape[d]:
        raise at_user_line(RuntimeError, f"unflatten: Provided sizes {list(sizes)} don't "
                                         f"multiply up to the size of dim {d} "
                                         f"({shape[d]}) in the input tensor")
    return view(input, shape[:d] + tuple(sizes) + shape[d + 1:])


def squeeze(input, dim=None):
    shape = tuple(input.shape)
    if dim is None:
        dims = {k for k, s in enumerate(shape) if s == 1}
    else:
        dims = {d for d in _norm_dims(dim, input.ndim) if input.ndim and shape[d] == 1}
    return reshape(input, tuple(s for k, s in enumerate(shape) if k not in dims))


def unsqueeze(input, dim):
    d = _norm_dim(dim, input.ndim + 1)
    shape = tuple(input.shape)
    return reshape(input, shape[:d] + (1,) + shape[d:])


def permute(input, *dims):
    dims = _shape_from_args(dims)
    if len(dims) != input.ndim:
        raise at_user_line(ShapeError, f"permute(sparse_coo): number of dimensions in the tensor "
                                       f"input does not match the length of the desired "
                                       f"ordering of dimensions i.e. input.dim() = {input.ndim} "
                                       f"is not equal to len(dims) = {len(dims)}")
    dims = tuple(_norm_dim(d, input.ndim) for d in dims)
    if len(set(dims)) != len(dims):
        raise at_user_line(RuntimeError, f"permute(): duplicate dims are not allowed "
                                         f"(got {list(dims)})")
    if dims == tuple(range(input.ndim)):
        return input
    inverse = tuple(sorted(range(len(dims)), key=dims.__getitem__))
    st = input._strides()
    return _as_view(input, _apply("permute", input, dims=dims),
                    lambda b: b._apply("permute", b, dims=dims),
                    lambda b, new: new._apply("permute", new, dims=inverse),
                    [st[d] for d in dims])


def transpose(input, dim0, dim1):
    if input.ndim == 0:
        return input
    a, b = _norm_dim(dim0, input.ndim), _norm_dim(dim1, input.ndim)
    perm = list(range(input.ndim))
    perm[a], perm[b] = perm[b], perm[a]
    return permute(input, perm)


swapaxes = swapdims = transpose


def t(input):
    if input.ndim > 2:
        raise at_user_line(RuntimeError, f"t() expects a tensor with <= 2 dimensions, but self "
                                         f"is {input.ndim}D")
    return transpose(input, 0, 1) if input.ndim == 2 else input


def expand(input, *sizes):
    sizes = _shape_from_args(sizes)
    if len(sizes) < input.ndim:
        raise at_user_line(ShapeError, f"expand: the number of sizes provided ({len(sizes)}) "
                                       f"must be greater or equal to the number of dimensions "
                                       f"in the tensor ({input.ndim})")
    shape = tuple(input.shape)
    lead = len(sizes) - len(shape)
    out = []
    for k, s in enumerate(sizes):
        if s == -1:
            if k < lead:
                raise at_user_line(ShapeError, "expand: -1 not allowed in a new leading dim")
            s = shape[k - lead]
        elif k >= lead and shape[k - lead] != 1 and shape[k - lead] != s:
            raise at_user_line(ShapeError, f"The expanded size of the tensor ({s}) must match "
                                           f"the existing size ({shape[k - lead]}) at "
                                           f"non-singleton dimension {k}.  Target sizes: "
                                           f"{list(sizes)}.  Tensor sizes: {list(shape)}")
        out.append(s)
    out = tuple(out)
    # a view whose expanded dims have stride 0: writing into it is an error (PyTorch)
    st = (0,) * lead + tuple(0 if n == 1 and s != 1 else d
                             for n, s, d in zip(shape, out[lead:], input._strides()))
    return _as_view(input, input._expand_to(out), lambda b: b._expand_to(out), None, st)


def expand_as(input, other):
    return expand(input, other.shape)


def broadcast_to(input, shape):
    return expand(input, shape)


def repeat(input, *sizes):
    sizes = _shape_from_args(sizes)
    if len(sizes) < input.ndim:
        raise at_user_line(RuntimeError, "Number of dimensions of repeat dims can not be smaller "
                                         "than number of dimensions of tensor")
    shape = (1,) * (len(sizes) - input.ndim) + tuple(input.shape)
    x = input.reshape(shape)
    inter = []
    for r, s in zip(sizes, shape):
        inter += [1, s]
    x = x.reshape(inter)
    target = []
    for r, s in zip(sizes, shape):
        target += [r, s]
    x = x._expand_to(tuple(target))
    return x.reshape(tuple(r * s for r, s in zip(sizes, shape)))


def cat(tensors, dim=0):
    tensors = [x for x in tensors]
    if not tensors:
        raise at_user_line(ValueError, "cat(): expected a non-empty list of Tensors")
    for k, x in enumerate(tensors):
        if x.ndim == 0:
            raise at_user_line(RuntimeError, f"zero-dimensional tensor (at position {k}) "
                                             f"cannot be concatenated")
    # PyTorch skips 1-D empty tensors in cat (legacy behaviour).
    nonempty = [x for x in tensors if not (x.ndim == 1 and x.shape[0] == 0)] or tensors[:1]
    d = result_type(*[x for x in nonempty if x.ndim] or nonempty)
    ref = nonempty[0]
    dim = _norm_dim(dim, ref.ndim)
    for x in nonempty:
        if x.ndim != ref.ndim:
            raise at_user_line(RuntimeError, f"Tensors must have same number of dimensions: "
                                             f"got {ref.ndim} and {x.ndim}")
        if builtins.any(a != b for k, (a, b) in
                                              enumerate(zip(x.shape, ref.shape)) if k != dim):
            raise at_user_line(ShapeError, f"Sizes of tensors must match except in dimension "
                                           f"{dim}. Got shapes {list(ref.shape)} and "
                                           f"{list(x.shape)}")
    if len(nonempty) == 1:
        return nonempty[0]._cast(d).clone()
    return _apply("concat", *[x._cast(d) for x in nonempty], dim=dim)


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise at_user_line(RuntimeError, "stack expects a non-empty TensorList")
    for x in tensors[1:]:
        if tuple(x.shape) != tuple(tensors[0].shape):
            raise at_user_line(ShapeError, f"stack expects each tensor to be equal size, but got "
                                           f"{list(tensors[0].shape)} and {list(x.shape)}")
    d = _norm_dim(dim, tensors[0].ndim + 1)
    return cat([x.unsqueeze(d) for x in tensors], d)


def split(input, split_size_or_sections, dim=0):
    d = _norm_dim(dim, input.ndim)
    n = input.shape[d]
    if isinstance(split_size_or_sections, int):
        size = split_size_or_sections
        sizes = [size] * (n // size) + ([n % size] if n % size else [])
        if n == 0:
            sizes = [0]
    else:
        sizes = list(split_size_or_sections)
        if builtins.sum(sizes) != n:
            raise at_user_line(RuntimeError, f"split_with_sizes expects split_sizes to sum "
                                             f"exactly to {n} (input tensor's size at dimension "
                                             f"{d}), but got split_sizes={sizes}")
    out, start = [], 0
    steps = [1] * input.ndim
    for s in sizes:
        starts = [0] * input.ndim
        stops = list(input.shape)
        starts[d], stops[d] = start, start + s
        piece = input._slice(starts, stops, steps)
        # each piece is a view of the input, as in PyTorch
        out.append(_as_view(input, piece, lambda b, a=starts, z=stops: b._slice(a, z, steps),
                            None, input._strides()))
        start += s
    return tuple(out)


def chunk(input, chunks, dim=0):
    if chunks <= 0:
        raise at_user_line(RuntimeError, f"chunk expects `chunks` to be greater than 0, got: "
                                         f"{chunks}")
    d = _norm_dim(dim, input.ndim)
    n = input.shape[d]
    if n == 0:  # PyTorch gives `chunks` empty pieces
        return split(input, [0] * chunks, d)
    return split(input, -(-n // chunks), d)


def narrow(input, dim, start, length):
    """A view of `length` elements of `dim` from `start` (negative start counts from
    the end), as torch.narrow."""
    d = _norm_dim(dim, input.ndim)
    size = input.shape[d]
    start = int(start)
    if not -size <= start <= size:
        raise at_user_line(IndexError, f"start out of range (expected to be in range of "
                                       f"[{-size}, {size}], but got {start})")
    start %= size if size else 1
    if length < 0 or start + length > size:
        raise at_user_line(RuntimeError, f"start ({start}) + length ({length}) exceeds "
                                         f"dimension size ({size}).")
    key = (slice(None),) * d + (slice(start, start + length),)
    return input[key]


def movedim(input, source, destination):
    src = [source] if isinstance(source, int) else list(source)
    dst = [destination] if isinstance(destination, int) else list(destination)
    if len(src) != len(dst):
        raise at_user_line(RuntimeError, f"movedim: Invalid source or destination dims: "
                                         f"source ({src} dims) should contain the same "
                                         f"number of dims as destination ({dst} dims)")
    src = [_norm_dim(d, input.ndim) for d in src]
    dst = [_norm_dim(d, input.ndim) for d in dst]
    order = [None] * input.ndim
    for s_, d_ in zip(src, dst):
        order[d_] = s_
    rest = iter(k for k in range(input.ndim) if k not in src)
    return permute(input, [o if o is not None else next(rest) for o in order])


moveaxis = movedim


def unbind(input, dim=0):
    d = _norm_dim(dim, input.ndim)
    return tuple(x.squeeze(d) for x in split(input, 1, d))


def select(input, dim, index):
    """input[..., index, ...] at `dim`: a view, as in PyTorch."""
    if input.ndim == 0:
        raise at_user_line(IndexError, "select() cannot be applied to a 0-dim tensor.")
    d = _norm_dim(dim, input.ndim)
    size = input.shape[d]
    if not -size <= index < size:
        raise at_user_line(IndexError, f"select(): index {index} out of range for tensor of "
                                       f"size {list(input.shape)} at dimension {d}")
    return input[(slice(None),) * d + (int(index),)]


def _triangle(name, input, diagonal, lower):
    if input.ndim < 2:
        raise at_user_line(RuntimeError, f"{name}: input tensor must have at least 2 "
                                         f"dimensions")
    r, c = input.shape[-2:]
    keep = _tri_mask(r, c, diagonal) if lower else logical_not(_tri_mask(r, c, diagonal - 1))
    # a where, so the gradient is zero above (below) the diagonal, as PyTorch's
    return where(keep, input, _scalar_node(0, input.dtype))


def tril(input, diagonal=0):
    return _triangle("tril", input, int(diagonal), lower=True)


def triu(input, diagonal=0):
    return _triangle("triu", input, int(diagonal), lower=False)


def roll(input, shifts, dims=None):
    shifts = (shifts,) if isinstance(shifts, numbers.Integral) else tuple(shifts)
    if dims is None:
        if len(shifts) != 1:
            raise at_user_line(RuntimeError, f"shifts and dimensions must align. shifts: "
                                             f"{len(shifts)}, dims:0")
        return roll(input.flatten(), shifts, 0).view(input.shape)
    dims = (dims,) if isinstance(dims, numbers.Integral) else tuple(dims)
    if len(shifts) != len(dims):
        raise at_user_line(RuntimeError, f"shifts and dimensions must align. shifts: "
                                         f"{len(shifts)}, dims:{len(dims)}")
    out = input
    for shift, dim in zip(shifts, dims):
        d = _norm_dim(dim, input.ndim)
        n = input.shape[d]
        k = int(shift) % n if n else 0
        if k:  # the last k elements move to the front
            out = cat([narrow(out, d, n - k, k), narrow(out, d, 0, n - k)], d)
    return out.clone() if out is input else out


def _diagonal_of(x, offset, d1, d2):
    """The diagonal of dims d1, d2 as the last dim: the two dims are flattened into one
    and read with a step of (columns + 1), starting at the offset's first element."""
    rest = [k for k in range(x.ndim) if k not in (d1, d2)]
    if rest + [d1, d2] != list(range(x.ndim)):
        x = x._apply("permute", x, dims=tuple(rest + [d1, d2]))
    r, c = x.shape[-2:]
    n = builtins.max(0, builtins.min(r, c - offset) if offset >= 0 else
                     builtins.min(r + offset, c))
    lead = tuple(x.shape[:-2])
    flat = x._apply("reshape", x, shape=lead + (r * c,))
    start = (offset if offset >= 0 else -offset * c) if n else 0
    stop = start + (n - 1) * (c + 1) + 1 if n else 0
    return flat._slice([0] * len(lead) + [start], list(lead) + [stop],
                       [1] * len(lead) + [c + 1])


def _diag_dims(ndim, dim1, dim2):
    d1, d2 = _norm_dim(dim1, ndim), _norm_dim(dim2, ndim)
    if d1 == d2:
        raise at_user_line(RuntimeError, f"diagonal dimensions cannot be identical {dim1}, "
                                         f"{dim2}")
    return d1, d2


def diagonal(input, offset=0, dim1=0, dim2=1):
    """A view of the diagonal `offset` of dims dim1, dim2, moved to the last dim."""
    d1, d2 = _diag_dims(input.ndim, dim1, dim2)
    offset = int(offset)
    out = _diagonal_of(input, offset, d1, d2)
    st = input._strides()
    strides = [st[k] for k in range(input.ndim) if k not in (d1, d2)] + [st[d1] + st[d2]]
    return _as_view(input, out, lambda b: _diagonal_of(b, offset, d1, d2), None, strides)


def diag_embed(input, offset=0, dim1=-2, dim2=-1):
    """Matrices (in dims dim1, dim2 of the result) with input's last dim on diagonal
    `offset`: the inverse of `_diagonal_of`, a `pad` that puts (m + 1) - 1 zeros between
    the elements of the flattened m x m matrix."""
    ndim = input.ndim + 1
    d1, d2 = _diag_dims(ndim, dim1, dim2)
    offset = int(offset)
    n = input.shape[-1] if input.ndim else 1
    x = input.reshape(1) if input.ndim == 0 else input
    m = n + builtins.abs(offset)
    start = offset if offset >= 0 else -offset * m
    used = start + (n - 1) * (m + 1) + 1 if n else start
    lead = len(x.shape) - 1
    flat = x._pad([0] * lead + [start], [0] * lead + [m * m - used], [0] * lead + [m])
    y = flat._apply("reshape", flat, shape=tuple(x.shape[:-1]) + (m, m))
    rest = iter(range(ndim - 2))
    perm = [ndim - 2 if k == d1 else ndim - 1 if k == d2 else next(rest) for k in range(ndim)]
    return y if perm == list(range(ndim)) else y._apply("permute", y, dims=tuple(perm))


def diag(input, diagonal=0):
    """1-D: the square matrix with input on diagonal `diagonal`; 2-D: that diagonal (a
    copy, unlike `diagonal`)."""
    if input.ndim == 1:
        return diag_embed(input, diagonal, 0, 1)
    if input.ndim == 2:
        return _diagonal_of(input, int(diagonal), 0, 1).clone()
    raise at_user_line(RuntimeError, f"diag(): Supports 1D or 2D tensors. Got {input.ndim}D")


def tile(input, *dims):
    dims = _shape_from_args(dims)
    # fewer dims than the tensor has: the missing leading ones are 1 (repeat refuses)
    return repeat(input, (1,) * (input.ndim - len(dims)) + dims)


def repeat_interleave(input, repeats=None, dim=None, *, output_size=None):
    """Each element (or slice along `dim`) repeated `repeats` times in place. An int
    expands a new dim after `dim`; a tensor of repeats gathers with an index whose i-th
    entry counts the repeat totals <= i, so only the output size is read from its data
    (or given as `output_size`). With `input` alone: the form
    repeat_interleave(repeats), the indices 0, 0, 1, ... that the other form gathers."""
    if repeats is None:
        return _repeat_index(input, output_size)
    if dim is None:
        input, dim = input.reshape(-1), 0
    d = _norm_dim(dim, input.ndim)
    if isinstance(repeats, Tensor) and repeats.ndim == 0:
        repeats = int(repeats.item()) if repeats.dtype.category == 1 else repeats
    if isinstance(repeats, numbers.Integral):
        if repeats < 0:
            raise at_user_line(RuntimeError, "Repeats must be non-negative")
        shape = tuple(input.shape)
        x = input.reshape(shape[:d + 1] + (1,) + shape[d + 1:])
        x = x._expand_to(shape[:d + 1] + (int(repeats),) + shape[d + 1:])
        return x.reshape(shape[:d] + (shape[d] * int(repeats),) + shape[d + 1:])
    if repeats.ndim != 1 or repeats.shape[0] not in (1, input.shape[d]):
        raise at_user_line(RuntimeError, f"repeats must have the same size as input along "
                                         f"dim, but got repeats.size(0) = "
                                         f"{repeats.shape[0] if repeats.ndim else 1} and "
                                         f"input.size({d}) = {input.shape[d]}")
    if repeats.shape[0] != input.shape[d]:
        repeats = repeats.expand(input.shape[d])
    return index_select(input, d, _repeat_index(repeats, output_size))


def _repeat_index(repeats, output_size):
    if not isinstance(repeats, Tensor) or repeats.dtype.category != 1:
        got = repeats.dtype.name if isinstance(repeats, Tensor) else type(repeats).__name__
        raise at_user_line(RuntimeError, f"repeat_interleave: repeats has to be Long or Int "
                                         f"tensor (got {got})")
    if repeats.ndim != 1:
        raise at_user_line(RuntimeError, "repeat_interleave only accept 1D vector as repeat")
    if output_size is None:
        # the output's size is data: read it, as PyTorch syncs with the device for it
        counts = repeats.detach()._value()
        if (counts < 0).any():
            raise at_user_line(RuntimeError, "repeats can not be negative")
        output_size = int(counts.sum())
    ends = cumsum(repeats, 0)
    pos = arange_like(int(output_size)).reshape(-1, 1)
    return sum(le(ends.reshape(1, -1), pos), 1)


def meshgrid(*tensors, indexing=None):
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    if indexing is None:
        warnings.warn("torch.meshgrid: in an upcoming release, it will be required to pass "
                      "the indexing argument.", UserWarning, stacklevel=2)
        indexing = "ij"
    if indexing not in ("ij", "xy"):
        raise at_user_line(RuntimeError, f'torch.meshgrid: indexing must be one of "xy" or '
                                         f'"ij", but received: {indexing}')
    for t_ in tensors:
        if t_.ndim > 1:
            raise at_user_line(RuntimeError, f"torch.meshgrid: Expected 0D or 1D tensor in "
                                             f"the tensor list but got a {t_.ndim}D tensor")
        if t_.dtype is not tensors[0].dtype:
            raise at_user_line(RuntimeError, "meshgrid expects all tensors to have the same "
                                             "dtype")
    axes = list(range(len(tensors)))
    if indexing == "xy" and len(tensors) >= 2:  # the first two vary along dims 1 and 0
        axes[0], axes[1] = 1, 0
    sizes = [0] * len(tensors)
    for t_, a in zip(tensors, axes):
        sizes[a] = t_.numel()
    out = []
    for t_, a in zip(tensors, axes):
        view_shape = [1] * len(tensors)
        view_shape[a] = t_.numel()
        out.append(t_.reshape(view_shape).expand(sizes))  # expanded views, as PyTorch's
    return tuple(out)


def _atleast(nd, tensors):
    single = len(tensors) == 1 and isinstance(tensors[0], Tensor)
    if len(tensors) == 1 and isinstance(tensors[0], (list, tuple)):
        tensors = tuple(tensors[0])
    out = []
    for x in tensors:
        if x.ndim == 0:
            x = x.reshape((1,) * nd)
        elif x.ndim == 1 and nd >= 2:
            x = x.unsqueeze(0) if nd == 2 else x.reshape(1, x.shape[0], 1)
        elif x.ndim == 2 and nd == 3:
            x = x.unsqueeze(-1)
        out.append(x)
    return out[0] if single else tuple(out)


def atleast_1d(*tensors):
    return _atleast(1, tensors)


def atleast_2d(*tensors):
    return _atleast(2, tensors)


def atleast_3d(*tensors):
    return _atleast(3, tensors)


def _nonempty_list(name, tensors):
    tensors = list(tensors)
    if not tensors:
        raise at_user_line(RuntimeError, f"{name} expects a non-empty TensorList")
    return tensors


def hstack(tensors):
    ts = atleast_1d(_nonempty_list("hstack", tensors))
    return cat(ts, 0 if ts[0].ndim == 1 else 1)


def vstack(tensors):
    return cat(atleast_2d(_nonempty_list("vstack", tensors)), 0)


row_stack = vstack


def dstack(tensors):
    return cat(atleast_3d(_nonempty_list("dstack", tensors)), 2)


def column_stack(tensors):
    return cat([x.reshape(x.numel(), 1) if x.ndim <= 1 else x
                for x in _nonempty_list("column_stack", tensors)], 1)


def _unfold_view(input, dimension, size, step):
    """Tensor.unfold: windows of `size` elements every `step` along `dimension`, as a
    new last dim. One gather with index start + offset (windows may overlap), so the
    gradient scatter-adds back; marked as a view of the input, as PyTorch's."""
    d = _norm_dim(dimension, input.ndim)
    n = input.shape[d] if input.ndim else 1
    if size > n:
        raise at_user_line(RuntimeError, f"maximum size for tensor at dimension {d} is {n} "
                                         f"but size is {size}")
    if step <= 0:
        raise at_user_line(RuntimeError, f"step is {step} but must be > 0")
    if size < 0:
        raise at_user_line(RuntimeError, f"size is {size} but must be >= 0")
    count = (n - size) // step + 1
    st = input._strides()
    strides = list(st) if input.ndim else []
    if input.ndim:
        strides[d] = st[d] * step
    strides.append(st[d] if input.ndim else 1)
    return _as_view(input, _unfold(input, d, size, step, count),
                    lambda b: _unfold(b, d, size, step, count), None, strides)


def _unfold(x, d, size, step, count):
    if x.ndim == 0:
        return x.reshape(1)
    with autograd.literal_scalars():
        idx = _apply("iota", shape=(count, size), dim=0, dtype=dt.int64) * step + \
            _apply("iota", shape=(count, size), dim=1, dtype=dt.int64)
    shape = tuple(x.shape)
    out = index_select(x, d, idx.reshape(-1))
    out = out.reshape(shape[:d] + (count, size) + shape[d + 1:])
    return out.movedim(d + 1, -1) if d + 1 != out.ndim - 1 else out


# ---------------------------------------------------------------------------- indexing ops

def _check_index(name, index, expected="int64"):
    if not isinstance(index, Tensor) or index.dtype.is_floating or index.dtype.is_bool:
        got = index.dtype.name if isinstance(index, Tensor) else type(index).__name__
        raise at_user_line(RuntimeError, f"{name}(): Expected dtype {expected} for index "
                                         f"(got {got})")


def _nonnegative(index, size):
    """PyTorch's gather, scatter, index_select, index_add/copy and embedding take indices
    in 0..size-1 only; the IR's gather and scatter_add count a negative index from the
    end, as indexing does. A negative index is mapped past the end, so that the range
    check of every backend reports it (an IndexError naming the op and the user's line)
    instead of reading the last elements (a -1 padding label trained on the last
    class)."""
    index = index._cast(dt.int64)
    with autograd.literal_scalars():
        return where(lt(index, 0), _scalar_node(builtins.max(size, 1), dt.int64), index)


def _counted_from_the_end(index, size):
    """take_along_dim (with a dim) and index_fill count a negative index from the end."""
    index = index._cast(dt.int64)
    with autograd.literal_scalars():
        return where(lt(index, 0), index + size, index)


def gather(input, dim, index):
    _check_index("gather", index)
    d = _norm_dim(dim, input.ndim)
    if input.ndim == 0:   # PyTorch indexes a 0-d tensor as one of size 1
        flat = _nonnegative(index.reshape(-1), 1)
        return _apply("gather", input.reshape(1), flat, dim=0).reshape(tuple(index.shape))
    return _apply("gather", input, _nonnegative(index, input.shape[d]), dim=d)


def scatter_add(input, dim, index, src):
    _check_index("scatter_add", index)
    if isinstance(src, Tensor) and src.dtype is not input.dtype:
        raise at_user_line(RuntimeError, f"scatter(): Expected self.dtype to be equal to "
                                         f"src.dtype (got {input.dtype.name} and "
                                         f"{src.dtype.name})")
    d = _norm_dim(dim, input.ndim)
    if input.ndim == 0:   # PyTorch indexes a 0-d tensor as one of size 1
        flat = _nonnegative(index.reshape(-1), 1)
        n = flat.shape[0]
        values = src._cast(input.dtype).reshape(-1)[:n]
        return _apply("scatter_add", input.reshape(1), flat, values, dim=0).reshape(())
    return _apply("scatter_add", input, _nonnegative(index, input.shape[d]),
                  src._cast(input.dtype), dim=d)


def index_select(input, dim, index):
    _check_index("index_select", index, "int32 or int64")
    d = _norm_dim(dim, input.ndim)
    if index.ndim > 1:
        raise at_user_line(IndexError, "index_select(): Index is supposed to be a vector")
    if input.ndim == 0:
        if index.numel() != 1:
            raise at_user_line(RuntimeError, f"index_select(): Index to scalar can have only "
                                             f"1 value, got {index.numel()} value(s)")
        return gather(input, 0, index.reshape(()))
    index = index.reshape(-1)._cast(dt.int64)
    shape = list(input.shape)
    view = [1] * input.ndim
    view[d] = index.shape[0]
    shape[d] = index.shape[0]
    idx = index.reshape(view)._expand_to(tuple(shape))
    return gather(input, d, idx)


def masked_fill(input, mask, value):
    if not isinstance(mask, Tensor) or mask.dtype is not dt.bool_:
        got = mask.dtype.name if isinstance(mask, Tensor) else type(mask).__name__
        raise at_user_line(RuntimeError, f"masked_fill_ only supports boolean masks, but got "
                                         f"mask with dtype {got}")
    if isinstance(value, Tensor) and value.ndim:
        raise at_user_line(RuntimeError, f"masked_fill_ only supports a 0-dimensional value "
                                         f"tensor, but got tensor with {value.ndim} "
                                         f"dimension(s).")
    if isinstance(value, Tensor):
        value = value._cast(input.dtype)
    else:   # PyTorch's kernel range-checks a number (a 0-d tensor's value is not checked)
        value = _checked_scalar(value, input.dtype, numel=None)
    return where(mask, value if isinstance(value, Tensor) else
                 _scalar_node(value, input.dtype), input)


def take_along_dim(input, indices, dim=None):
    if not isinstance(indices, Tensor) or indices.dtype is not dt.int64:
        got = indices.dtype.name if isinstance(indices, Tensor) else type(indices).__name__
        raise at_user_line(RuntimeError, f"torch.take_along_dim(): dtype of indices should be "
                                         f"Long but got {dt.TORCH_NAMES.get(got, got)}")
    if dim is None:
        return gather(input.reshape(-1), 0, indices.reshape(-1))   # PyTorch: no -1 here
    if input.ndim != indices.ndim:
        raise at_user_line(RuntimeError, f"torch.take_along_dim(): input and indices should "
                                         f"have the same number of dimensions, but got "
                                         f"{input.ndim} dimensions for input, and "
                                         f"{indices.ndim} dimensions for indices")
    d = _norm_dim(dim, input.ndim)
    # both broadcast against each other in every dim but `dim`
    want = list(input.shape)
    want[d] = indices.shape[d]
    shape = list(broadcast_shapes(tuple(want), tuple(indices.shape)))
    idx = _counted_from_the_end(indices._expand_to(tuple(shape)), input.shape[d])
    shape[d] = input.shape[d]
    return gather(input._expand_to(tuple(shape)), d, idx)




def _index_vector(name, input, dim, index):
    """Checks shared by index_add/index_copy/index_fill; returns (dim, int64 index)."""
    if not isinstance(index, Tensor) or index.dtype not in (dt.int32, dt.int64):
        got = index.dtype.name if isinstance(index, Tensor) else type(index).__name__
        raise at_user_line(RuntimeError, f"{name}(): Expected dtype int32/int64 for index but "
                                         f"got: {dt.TORCH_NAMES.get(got, got)}")
    if index.ndim > 1:
        raise at_user_line(IndexError, f"{name}(): Index is supposed to be a vector, but got "
                                       f"dim: {index.ndim} with type: "
                                       f"{dt.TORCH_NAMES[index.dtype.name]} and size: "
                                       f"{list(index.shape)}")
    return _norm_dim(dim, input.ndim), index.reshape(-1)._cast(dt.int64)


def _check_source(name, input, d, index, source):
    if name == "index_add_" and input.ndim == 0 and source.ndim:
        raise at_user_line(RuntimeError, f"source tensor shape must match self tensor shape, "
                                         f"excluding the specified dimension. Got self.shape "
                                         f"= [] source.shape = {list(source.shape)}")
    if source.dtype is not input.dtype:
        raise at_user_line(RuntimeError, f"{name}(): self ({dt.TORCH_NAMES[input.dtype.name]}) "
                                         f"and source ({dt.TORCH_NAMES[source.dtype.name]}) must "
                                         f"have the same scalar type")
    n = source.shape[d] if source.ndim else 1
    if n != index.shape[0]:
        raise at_user_line(IndexError if name == "index_copy_" else RuntimeError,
                           f"{name}(): Number of indices ({index.shape[0]}) should be equal "
                           f"to source.size(dim): ({n}), for dim: {d}")
    if source.ndim and tuple(s for k, s in enumerate(source.shape) if k != d) != \
            tuple(s for k, s in enumerate(input.shape) if k != d):
        raise at_user_line(RuntimeError, f"{name}(): source {list(source.shape)} and self "
                                         f"{list(input.shape)} must have the same size in "
                                         f"every dim but {d}")


def _along(index, d, shape):
    """`index` (1-D) laid along dim `d` and broadcast to `shape`, for gather/scatter."""
    view = [1] * len(shape)
    view[d] = index.shape[0]
    return index.reshape(view)._expand_to(tuple(shape))


def index_add(input, dim, index, source, *, alpha=1):
    """input with alpha * source[..., i, ...] added at input[..., index[i], ...]
    (repeated indices add up): a scatter_add, whose gradient gathers."""
    d, index = _index_vector("index_add_", input, dim, index)
    _check_source("index_add_", input, d, index, source)
    if input.ndim == 0:
        return add(input, source.reshape(()) * alpha if alpha != 1 else source.reshape(()))
    if alpha != 1:
        source = mul(source, alpha)._cast(input.dtype)
    return scatter_add(input, d, _along(index, d, source.shape), source)


def index_copy(input, dim, index, source):
    """input with input[..., index[i], ...] = source[..., i, ...] (which write wins for
    a repeated index is undefined in PyTorch)."""
    d, index = _index_vector("index_copy_", input, dim, index)
    if source.dtype is not input.dtype:
        raise at_user_line(RuntimeError, f"index_copy_(): self and source expected to have "
                                         f"the same dtype, but got (self) "
                                         f"{dt.TORCH_NAMES[input.dtype.name]} and (source) "
                                         f"{dt.TORCH_NAMES[source.dtype.name]}")
    _check_source("index_copy_", input, d, index, source)
    from .indexing import write_positions
    pos = _positions(input)
    if not input.ndim:  # a 0-d tensor takes a one-element source
        return write_positions(input, pos, source.reshape(()), unique=False)
    return write_positions(input, gather(pos, d, _along(index, d, source.shape)), source,
                           unique=False)


def index_fill(input, dim, index, value):
    """input with every slice input[..., index[i], ...] set to `value` (a scalar or a
    0-d tensor, which then gets the summed gradient of the filled places)."""
    d, index = _index_vector("index_fill_", input, dim, index)
    if isinstance(value, Tensor) and value.ndim:
        raise at_user_line(RuntimeError, f"index_fill_ only supports a 0-dimensional value "
                                         f"tensor, but got tensor with {value.ndim} "
                                         f"dimension(s).")
    n = input.shape[d] if input.ndim else 1
    with autograd.literal_scalars():
        hit = zeros(n, dtype=dt.int32).scatter_add(0, _counted_from_the_end(index, n),
                                                   full((index.shape[0],), 1, dtype=dt.int32))
    view = [1] * input.ndim
    if input.ndim:
        view[d] = n
    mask = gt(hit.reshape(view), 0)
    value = value._cast(input.dtype) if isinstance(value, Tensor) else \
        _scalar_node(value, input.dtype)
    return where(mask, value, input)


def index_put(input, indices, values, accumulate=False):
    """torch.index_put: input with input[indices] = values, or (accumulate) += values
    with repeated positions adding up, as PyTorch's accumulate=True does (plain
    `x[idx] += v` does not: each repeat writes once). `indices` is a tuple of index
    tensors, as in input[indices]."""
    if not isinstance(indices, (tuple, list)) or not builtins.all(
            isinstance(i, Tensor) or i is None for i in indices):
        raise at_user_line(TypeError, "index_put(): argument 'indices' must be a tuple of "
                                      "Tensors")
    values = values if isinstance(values, Tensor) else tensor(values, dtype=input.dtype)
    if values.dtype is not input.dtype:
        raise at_user_line(RuntimeError, f"Index put requires the source and destination "
                                         f"dtypes match, got {dt.TORCH_NAMES[input.dtype.name]} "
                                         f"for the destination and "
                                         f"{dt.TORCH_NAMES[values.dtype.name]} for the source.")
    key = tuple(indices) if len(indices) != 1 else indices[0]
    if not accumulate:
        from .indexing import setitem
        return setitem(input, key, values)
    sel = _positions(input)[key]        # the flat positions indexed, in the result's shape
    v = values._expand_to(tuple(sel.shape))
    flat = input.reshape(-1).scatter_add(0, sel.reshape(-1), v.reshape(-1))
    return flat.reshape(tuple(input.shape))


def _positions(x):
    """Each element's flat (row-major) position in x, in x's shape."""
    pos = _apply("iota", shape=(x.numel(),), dim=0, dtype=dt.int64)
    return pos._apply("reshape", pos, shape=tuple(x.shape))


def scatter(input, dim, index, src=None, value=None, *, reduce=None):
    """torch.scatter: out[index[i][j]][j] = src[i][j] (dim 0), or = value. The target of
    each index element is the flat position gathered from x's positions with the same
    index; the writes then go where `setitem` puts them (indexing.write_positions)."""
    if src is None and value is None:
        raise at_user_line(TypeError, "scatter() missing 1 required argument: 'src' or "
                                      "'value'")
    src = value if src is None else src
    if reduce is not None:
        if reduce not in ("add", "multiply"):
            raise at_user_line(RuntimeError, f"reduce argument must be either add or "
                                             f"multiply. Got {reduce}")
        if reduce == "multiply":
            raise at_user_line(NotImplementedError, "scatter(reduce='multiply') is not "
                                                    "supported by graphc")
    _check_index("scatter", index)
    if isinstance(src, Tensor) and src.dtype is not input.dtype:
        raise at_user_line(RuntimeError, "scatter(): Expected self.dtype to be equal to "
                                         "src.dtype")
    d = _norm_dim(dim, input.ndim)
    _check_scatter_shapes(input, d, index, src)
    if not isinstance(src, Tensor):
        src = _scalar_node(src, input.dtype)._expand_to(tuple(index.shape))
    if tuple(src.shape) != tuple(index.shape):  # only src[:index.shape] is used
        src = src._slice([0] * src.ndim, list(index.shape), [1] * src.ndim)
    index = index._cast(dt.int64)
    if reduce == "add":
        return scatter_add(input, d, index, src)
    from .indexing import write_positions
    return write_positions(input, gather(_positions(input), d, index), src, unique=False)


def _check_scatter_shapes(input, d, index, src):
    if index.ndim != input.ndim:
        raise at_user_line(RuntimeError, "Index tensor must have the same number of "
                                         "dimensions as self tensor")
    srcs = src.shape if isinstance(src, Tensor) else index.shape
    if builtins.any(i > x for k, (i, x) in enumerate(zip(index.shape, input.shape))
                    if k != d) or builtins.any(i > s for i, s in zip(index.shape, srcs)):
        raise at_user_line(RuntimeError, f"Expected index {list(index.shape)} to be no larger "
                                         f"than self {list(input.shape)} apart from dimension "
                                         f"{d} and to be no larger size than src "
                                         f"{list(srcs)}")


# ---------------------------------------------------------------------------- linear algebra

# The C++ names PyTorch's mm gives dtypes in its error messages.
_CPP_NAMES = {"float32": "float", "float64": "double", "float16": "c10::Half",
              "bfloat16": "c10::BFloat16", "int32": "int", "int64": "long int",
              "bool": "bool", "uint8": "unsigned char"}


def _check_matmul_dtypes(input, other):
    """PyTorch's matmul, mm, bmm and dot do not promote: operands of different dtypes are
    a RuntimeError, in the words of the kernel PyTorch's matmul dispatches to (dot for
    two vectors, addmv for a vector on the right, mm for a matrix on the right, bmm for
    batches, which checks nothing when an operand is empty)."""
    if input.dtype is other.dtype:
        return
    a, b = input.dtype.name, other.dtype.name
    if input.ndim == 1 and other.ndim == 1:
        message = (f"dot : expected both vectors to have same dtype, but found "
                   f"{dt.TORCH_NAMES[a]} and {dt.TORCH_NAMES[b]}")
    elif other.ndim == 1 or (input.ndim == 1 and other.numel() == 0):
        message = (f"addmv input tensors must have the same dtype, but got "
                   f"{dt.TORCH_NAMES[b]}, {dt.TORCH_NAMES[a]}, and {dt.TORCH_NAMES[b]}")
    elif other.ndim == 2:
        message = (f"expected m1 and m2 to have the same dtype, but got: {_CPP_NAMES[a]} != "
                   f"{_CPP_NAMES[b]}")
    elif input.numel() == 0 or other.numel() == 0:
        return
    else:
        message = f"expected scalar type {dt.TORCH_NAMES[a]} but found {dt.TORCH_NAMES[b]}"
    raise at_user_line(RuntimeError, message)


def matmul(input, other):
    if input.ndim == 0 or other.ndim == 0:
        raise at_user_line(RuntimeError, "both arguments to matmul need to be at least 1D, but "
                                         f"they are {input.ndim}D and {other.ndim}D")
    if input.ndim == 1 and other.ndim == 1:
        _check_matmul_dtypes(input, other)   # dot checks the dtypes before the lengths
    d = result_type(input, other)
    a, b = input._cast(d), other._cast(d)
    a1, b1 = a.ndim == 1, b.ndim == 1
    if a1:
        a = a.reshape(1, a.shape[0])
    if b1:
        b = b.reshape(b.shape[0], 1)
    if a.shape[-1] != b.shape[-2]:
        raise at_user_line(ShapeError, f"mat1 and mat2 shapes cannot be multiplied "
                                       f"({'x'.join(map(str, input.shape))} and "
                                       f"{'x'.join(map(str, other.shape))})")
    try:
        batch = broadcast_shapes(tuple(a.shape[:-2]), tuple(b.shape[:-2]))
    except ShapeError:  # name the operands, not only their batch dims
        raise at_user_line(ShapeError, f"matmul: the batch dims of shapes "
                                       f"{list(input.shape)} and {list(other.shape)} cannot "
                                       f"be broadcast together") from None
    _check_matmul_dtypes(input, other)
    a = a._expand_to(batch + tuple(a.shape[-2:]))
    b = b._expand_to(batch + tuple(b.shape[-2:]))
    out = _apply("matmul", a, b)
    shape = tuple(out.shape)
    if a1 and b1:
        return out.reshape(batch)
    if a1:
        return out.reshape(batch + shape[-1:])
    if b1:
        return out.reshape(batch + shape[-2:-1])
    return out


def mm(input, mat2):
    if input.ndim != 2 or mat2.ndim != 2:
        raise at_user_line(RuntimeError, f"mm: expected 2D tensors, got {input.ndim}D and "
                                         f"{mat2.ndim}D")
    return matmul(input, mat2)


def bmm(input, mat2):
    if input.ndim != 3 or mat2.ndim != 3:
        raise at_user_line(RuntimeError, f"bmm: expected 3D tensors, got {input.ndim}D and "
                                         f"{mat2.ndim}D")
    if input.shape[0] != mat2.shape[0]:
        raise at_user_line(ShapeError, f"bmm: batch sizes {input.shape[0]} and "
                                       f"{mat2.shape[0]} of shapes {list(input.shape)} and "
                                       f"{list(mat2.shape)} differ")
    return matmul(input, mat2)


def dot(input, other):
    return matmul(input, other)


def outer(input, vec2):
    return input.reshape(-1, 1) * vec2.reshape(1, -1)


def einsum(equation, *operands):
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    return _einsum(equation, *operands)


# ---------------------------------------------------------------------------- tensors

def as_tensor(data, dtype=None, device=None):
    """A tensor is returned as it is (or converted to `dtype`); other data is copied
    (graphc cannot share a numpy array's memory, as PyTorch does on the CPU)."""
    if isinstance(data, Tensor):
        if device is not None:
            data = data.to(device)
        return data if dtype is None else data.to(dt.to_dtype(dtype))
    return tensor(data, dtype=dtype, device=device)



def clone(input, *, memory_format=None):
    return input.clone()


def is_floating_point(input):
    return input.dtype.is_floating


def is_nonzero(input):
    if input.numel() != 1:
        raise at_user_line(RuntimeError, "Boolean value of Tensor with more than one value "
                                         "is ambiguous" if input.numel() else
                                         "Boolean value of Tensor with no values is ambiguous")
    return bool(input)


_TYPE_NAMES = {"float32": "FloatTensor", "float64": "DoubleTensor", "float16": "HalfTensor",
               "bfloat16": "BFloat16Tensor", "int32": "IntTensor", "int64": "LongTensor",
               "bool": "BoolTensor", "uint8": "ByteTensor"}
_TYPE_DTYPES = {v: k for k, v in _TYPE_NAMES.items()}


def _type(self, dtype=None, non_blocking=False, **kwargs):
    """Tensor.type(): PyTorch's type string ('torch.FloatTensor': scripts compare with
    it); Tensor.type(dtype or such a string): the tensor converted (itself if equal)."""
    if dtype is None:
        return "torch." + _TYPE_NAMES[self.dtype.name]
    if isinstance(dtype, str):
        name = dtype.rsplit(".", 1)[-1]
        cuda = ".cuda." in dtype
        if name not in _TYPE_DTYPES or not dtype.startswith(("torch.", "graphc.")):
            raise at_user_line(ValueError, f"invalid type: '{dtype}'")
        out = self.to(dt.from_name(_TYPE_DTYPES[name]))
        return out.cuda() if cuda else out
    return self.to(dt.to_dtype(dtype))


# ---------------------------------------------------------------------------- random fills
# In-place fills from graphc's counter-based generator (graphc.manual_seed): the values
# are a `rand` node of the graph, drawn when the tensor is next realized.

def _require_float_fill(name, self):
    if not self.dtype.is_floating:
        raise at_user_line(NotImplementedError, f'"{name}" not implemented for '
                                                f"'{dt.TORCH_NAMES[self.dtype.name]}'")


def _from_to(args, kwargs, default_to):
    """(from, to) of uniform_/random_, whose first parameter is the keyword `from`."""
    names = ("from", "to")
    vals = dict(zip(names, args))
    for k in names:
        if k in kwargs:
            vals[k] = kwargs.pop(k)
    if kwargs:
        raise TypeError(f"unexpected keyword arguments {sorted(kwargs)}")
    return vals.get("from", 0), vals.get("to", default_to)


def _uniform_(self, *args, generator=None, **kwargs):
    lo, hi = _from_to(args, kwargs, 1.0)
    _require_float_fill("check_uniform_bounds", self)
    if lo > hi:
        raise at_user_line(RuntimeError, f"uniform_ expects to return a [from, to) range, but "
                                         f"found from={lo} > to={hi}")
    return self._assign(uniform_between(self.shape, lo, hi, self.dtype, generator))


def uniform_between(shape, lo, hi, dtype, generator=None):
    """Uniform values in [lo, hi) of `dtype`, as PyTorch's uniform_ computes them: for
    float16/bfloat16 the bounds and their difference are rounded to the dtype, and the
    draw times the difference plus lo is computed in float32 and rounded once (in the
    half type itself it rounded twice and could reach past hi)."""
    u = _rand(tuple(shape), dtype=dtype, generator=generator)
    if dtype not in _REDUCED_FLOATS:
        return u * float(hi - lo) + float(lo)
    low = full((), lo, dtype=dtype)
    width = (full((), hi, dtype=dtype) - low)._cast(dt.float32)
    return (u._cast(dt.float32) * width + low._cast(dt.float32))._cast(dtype)


def _normal_(self, mean=0.0, std=1.0, *, generator=None):
    _require_float_fill("normal_kernel_cpu", self)
    if std < 0:
        raise at_user_line(RuntimeError, f"normal expects std >= 0.0, but found std {std}")
    z = _randn(self.shape, dtype=self.dtype, generator=generator)
    return self._assign(z * float(std) + float(mean))


def bernoulli(input, p=None, *, generator=None):
    """1 with probability `p` (default: the input's values), in the input's dtype."""
    probs = input if p is None else p
    if isinstance(probs, Tensor):
        probs = _checked_probabilities(
            probs, "Expected p_in >= 0 && p_in <= 1 to be true, but got false.")
    elif not 0 <= probs <= 1:
        raise at_user_line(RuntimeError, f"bernoulli_ expects p to be in [0, 1], but got "
                                         f"p={probs}")
    u = _rand(input.shape, dtype=dt.float64, generator=generator)
    return lt(u, probs)._cast(input.dtype)


def multinomial(input, num_samples, replacement=False, *, generator=None):
    """Category indices drawn with the probabilities in the last dim of `input` (weights
    need not sum to 1), by inverse CDF: a uniform draw times the row's total, counted
    against the running sum (a category of weight 0 is never drawn). Several samples
    without replacement are the top k of Gumbel-perturbed log weights (log w - log(-log
    u)), which draws k distinct categories with the probabilities of drawing them one
    after another without replacement. Invalid weights (negative, inf or nan, or a row
    of zeros) fail the realization with PyTorch's errors; fewer non-zero
    weights than samples without replacement give some zero-weight categories, as
    PyTorch 2.13 does."""
    if input.ndim not in (1, 2):
        raise at_user_line(RuntimeError, f"prob_dist must be 1 or 2 dim, got shape "
                                         f"{list(input.shape)}")
    if not input.dtype.is_floating:
        raise at_user_line(RuntimeError, f"multinomial only supports floating-point dtypes "
                                         f"for input, got {input.dtype.name}")
    n = input.shape[-1]
    if num_samples <= 0:
        raise at_user_line(RuntimeError, f"cannot sample n_sample <= 0 samples "
                                         f"(got {num_samples})")
    if not replacement and num_samples > n:
        raise at_user_line(RuntimeError, "cannot sample n_sample > prob_dist.size(-1) "
                                         "samples without replacement")
    rows = input.reshape(1, n) if input.ndim == 1 else input
    rows = _checked(rows, logical_and(isfinite(rows), ge(rows, 0)),
                    "probability tensor contains either `inf`, `nan` or element < 0")
    # (a NaN sum is the check above's to report)
    rows = _checked(rows, logical_not(le(sum(rows, -1, keepdim=True), 0)),
                    "invalid multinomial distribution (sum of probabilities <= 0)")
    if not replacement and num_samples > 1:
        from .sorting import topk
        u = _rand(tuple(rows.shape), dtype=dt.float64, generator=generator)
        with autograd.literal_scalars():
            # u in [0, 1): -log(-log(u)) is the Gumbel noise (u = 0 gives -inf, never drawn
            # ahead of a category with a finite key)
            keys = log(rows._cast(dt.float64)) - log(-log(u))
        idx = topk(keys, num_samples, dim=-1).indices
        return idx.reshape(num_samples) if input.ndim == 1 else idx
    weights = rows._cast(dt.float64)
    cdf = cumsum(weights, -1)                                        # [R, n]
    u = _rand((rows.shape[0], num_samples), dtype=dt.float64, generator=generator)
    u = u * cdf[:, n - 1:]                                           # [R, k]
    below = le(cdf.unsqueeze(1), u.unsqueeze(2))                     # [R, k, n]
    idx = minimum(sum(below._cast(dt.int64), -1), full((), n - 1, dtype=dt.int64))
    return idx.reshape(num_samples) if input.ndim == 1 else idx


def _bernoulli_(self, p=0.5, *, generator=None):
    if _is_scalar(p) and not 0 <= p <= 1:
        raise at_user_line(RuntimeError, f"bernoulli_ expects p to be in [0, 1], but got "
                                         f"p={p}")
    return self._assign(bernoulli(self, p, generator=generator))


def _random_top(dtype):
    """One past random_()'s largest value: 2**mantissa digits for floats (every integer
    below is exact), the type's maximum for integers."""
    return {"float16": 2 ** 11, "bfloat16": 2 ** 8, "float32": 2 ** 24, "float64": 2 ** 53,
            "int32": 2 ** 31, "int64": 2 ** 63, "uint8": 2 ** 8, "bool": 2}[dtype.name] + \
        (1 if dtype.is_floating else 0)


def _random_(self, *args, generator=None, **kwargs):
    """Integers uniform in [from, to) (to: see _random_top), drawn in float64: a range
    wider than 2**53 gets only 53 random bits."""
    lo, hi = _from_to(args, kwargs, None)
    if len(args) == 1 and "to" not in kwargs:  # random_(to)
        lo, hi = 0, args[0]
    if hi is None:
        hi = _random_top(self.dtype)
    if lo >= hi:
        raise at_user_line(RuntimeError, f"random_ expects 'from' to be less than 'to', but "
                                         f"got from={lo} >= to={hi}")
    u = _rand(self.shape, dtype=dt.float64, generator=generator)
    with autograd.literal_scalars():
        r = floor(u * float(hi - lo)) + float(lo)
        r = clamp(r, max=float(hi - 1))  # float64 rounding must not reach `to`
    return self._assign(r._cast(self.dtype))


def _fill_diagonal_(self, fill_value, wrap=False):
    """Writes `fill_value` at positions p (row-major) with p % (stride sum) == 0: the main
    diagonal, continued past the last column in tall matrices when `wrap` (PyTorch's)."""
    if self.ndim < 2:
        raise at_user_line(RuntimeError, "dimensions must larger than 1")
    if self.ndim > 2 and len(set(self.shape)) != 1:
        raise at_user_line(RuntimeError, "all dimensions of input must be of equal length")
    step = builtins.sum(_contiguous_strides(self.shape))
    n = builtins.min(self.shape[0], self.shape[1])
    with autograd.literal_scalars():
        pos = _positions(self)
        on = eq(pos % step, 0)
        if not (wrap and self.ndim == 2 and self.shape[0] > self.shape[1] + 1):
            on = logical_and(on, lt(pos, n * step))
        return self._assign(where(on, _scalar_node(fill_value, self.dtype), self))


# ---------------------------------------------------------------------------- methods

def _rev(fn):
    return lambda self, other: fn(other, self)


def _inplace(fn):
    def method(self, *args, **kwargs):
        result = fn(self, *args, **kwargs)
        # PyTorch refuses an in-place op whose result is of a higher category than the
        # tensor (float into int, int into bool) instead of silently truncating.
        if result.dtype.category > self.dtype.category:
            raise at_user_line(RuntimeError, f"result type {result.dtype.name} can't be cast "
                                             f"to the desired output type {self.dtype.name}")
        return self._assign(result)
    return method


_METHODS = dict(
    add=add, sub=sub, mul=mul, div=div, true_divide=div, floor_divide=floor_divide,
    remainder=remainder, pow=pow, neg=neg, maximum=maximum, minimum=minimum, clamp=clamp,
    clip=clamp, clamp_min=clamp_min, clamp_max=clamp_max, eq=eq, ne=ne, lt=lt, le=le, gt=gt,
    ge=ge, logical_and=logical_and, logical_or=logical_or, logical_xor=logical_xor,
    logical_not=logical_not, gelu=gelu, relu=relu, abs=abs, sign=sign, floor=floor,
    ceil=ceil, round=round, trunc=trunc, isnan=isnan, isfinite=isfinite, isinf=isinf,
    square=square, sum=sum, nansum=nansum, prod=prod, mean=mean, amax=amax, amin=amin,
    max=max, min=min,
    argmax=argmax, argmin=argmin, var=var, std=std, logsumexp=logsumexp, softmax=softmax,
    log_softmax=log_softmax, norm=norm, all=all, any=any, reshape=reshape, view=view,
    view_as=view_as, reshape_as=reshape_as, flatten=flatten, unflatten=unflatten,
    squeeze=squeeze, unsqueeze=unsqueeze, permute=permute, transpose=transpose, t=t,
    expand=expand, expand_as=expand_as, repeat=repeat, split=split, chunk=chunk,
    unbind=unbind, narrow=narrow, movedim=movedim, moveaxis=movedim, gather=gather, scatter_add=scatter_add, index_select=index_select,
    masked_fill=masked_fill, matmul=matmul, mm=mm, bmm=bmm, dot=dot, where=lambda self, c, o:
    where(c, self, o), cumsum=cumsum, lerp=lerp, equal=equal, allclose=allclose,
    isclose=isclose, swapaxes=transpose, multiply=mul, subtract=sub, divide=div,
    negative=neg, broadcast_to=broadcast_to, outer=outer, absolute=abs,
    addcmul=addcmul, addcdiv=addcdiv, nan_to_num=nan_to_num, count_nonzero=count_nonzero,
    cumprod=cumprod, select=select, tril=tril, triu=triu, roll=roll, diagonal=diagonal,
    diag=diag, diag_embed=diag_embed, tile=tile, repeat_interleave=repeat_interleave,
    unfold=_unfold_view, take_along_dim=take_along_dim, index_add=index_add, index_copy=index_copy,
    index_put=index_put,
    index_fill=index_fill, scatter=scatter, is_nonzero=is_nonzero, bernoulli=bernoulli,
    type=_type, uniform_=_uniform_, normal_=_normal_, bernoulli_=_bernoulli_,
    random_=_random_, fill_diagonal_=_fill_diagonal_,
    **{n: globals()[n] for n in _FLOAT_UNARY},
    arcsin=asin, arccos=acos, arctan=atan, arcsinh=asinh, arccosh=acosh, arctanh=atanh,
    atan2=atan2, arctan2=atan2, copysign=copysign, hypot=hypot, fmod=fmod,
    flip=lambda self, *dims: flip(self, dims[0] if len(dims) == 1 and
                                  not isinstance(dims[0], int) else dims),
    fliplr=fliplr, flipud=flipud, multinomial=multinomial,
)

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)

for _name in ("add", "sub", "mul", "div", "pow", "clamp", "clamp_min", "clamp_max", "neg",
              "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "floor", "ceil", "round",
              "masked_fill", "scatter_add", "lerp", "reciprocal", "sign", "square",
              "true_divide", "remainder", "floor_divide", "maximum", "minimum",
              "logical_not", "clip", "addcmul",
              "addcdiv", "nan_to_num", "cumsum", "cumprod", "tril", "triu", "index_add",
              "index_put",
              "index_copy", "index_fill", "scatter", "tan", "asin", "acos", "atan", "sinh",
              "cosh", "asinh", "acosh", "atanh", "log2", "log10", "exp2", "atan2",
              "copysign", "hypot", "fmod", "sin", "cos", "log1p", "expm1", "rsqrt", "erf"):
    setattr(Tensor, _name + "_", _inplace(globals().get(_name) or _METHODS[_name]))


def _reshaping_inplace(name):
    """t_, transpose_, unsqueeze_, squeeze_: the tensor itself takes the new shape, as a
    PyTorch tensor changes its view metadata: its values are the out-of-place op's, its
    gradient path goes through the op, and views stay views. A view's link to its base
    gets the op composed in; a live view *of* this tensor reads it through the inverse
    op. (Aliases made by detach()/.data are refused: their writes cut the history,
    which a reshaped link cannot express.)"""
    fn = _METHODS.get(name) or globals()[name]

    def method(self, *args, **kwargs):
        if self._is_leaf and self.requires_grad and autograd.is_grad_enabled():
            raise at_user_line(RuntimeError, "a leaf Variable that requires grad is being used "
                                             "in an in-place operation.")
        old_shape = tuple(self.shape)
        new = fn(self, *args, **kwargs)
        if new is self:
            return self

        def forward(t):
            return fn(t, *args, **kwargs)

        def inverse(t):   # transposes are their own inverse; the others only reshape
            return fn(t, *args, **kwargs) if name in ("t", "transpose") else \
                t.reshape(old_shape)
        children = [v for v in (r() for r in self._views or ()) if v is not None and
                    v._base is self]
        if builtins.any(v._view_wb is _ALIAS for v in children) or self._view_wb is _ALIAS:
            raise at_user_line(RuntimeError, f"{name}_(): graphc cannot change the shape of "
                                             f"a detach()/.data alias, or of a tensor that "
                                             f"has one, in place; use {name}() instead")
        stride = new._strides()
        if self._base is not None:
            old_fn, old_wb = self._view_fn, self._view_wb
            self._view_fn = lambda b: forward(old_fn(b))
            self._view_wb = None if old_wb is None else \
                (lambda b, value: old_wb(b, inverse(value)))
            self._node = new._node
            runtime.track(self)
        else:
            if runtime.tracer is not None:
                runtime.tracer.on_assign(self)
            self._set_node(new)
        self._stride = None if stride == _contiguous_strides(self.shape) else stride
        for v in children:
            child_fn, child_wb = v._view_fn, v._view_wb
            v._view_fn = lambda b, f=child_fn: f(inverse(b))
            v._view_wb = None if child_wb is None else \
                (lambda b, value, w=child_wb: forward(w(inverse(b), value)))
        return self
    method.__name__ = name + "_"
    return method


for _name in ("t", "transpose", "unsqueeze", "squeeze"):
    setattr(Tensor, _name + "_", _reshaping_inplace(_name))

Tensor.__add__ = add
Tensor.__radd__ = _rev(add)
Tensor.__sub__ = sub
Tensor.__rsub__ = _rev(sub)
Tensor.__mul__ = mul
Tensor.__rmul__ = _rev(mul)
Tensor.__truediv__ = div
def _rtruediv(self, other):
    # PyTorch's Tensor.__rtruediv__ is `self.reciprocal() * other`, which rounds
    # differently from a true division (7.3 / t differs in the last bit): match it
    if _is_scalar(other):
        return mul(reciprocal(self), other)
    return div(other, self)


Tensor.__rtruediv__ = _rtruediv
Tensor.__floordiv__ = floor_divide
Tensor.__rfloordiv__ = _rev(floor_divide)
Tensor.__mod__ = remainder
Tensor.__rmod__ = _rev(remainder)
Tensor.__pow__ = pow
Tensor.__rpow__ = _rev(pow)
Tensor.__matmul__ = matmul
Tensor.__rmatmul__ = _rev(matmul)
Tensor.__neg__ = neg
Tensor.__pos__ = lambda self: self
Tensor.__abs__ = abs
Tensor.__invert__ = _invert
Tensor.__and__ = bitwise_and
Tensor.__rand__ = _rev(bitwise_and)
Tensor.__or__ = bitwise_or
Tensor.__ror__ = _rev(bitwise_or)
Tensor.__xor__ = bitwise_xor
Tensor.__rxor__ = _rev(bitwise_xor)


def _equality(compare):
    """x == other, elementwise for tensors, numbers and arrays; PyTorch leaves None,
    strings and Python containers to Python (x == None is False, x != None True), which
    `if value == None` style code and `x in [None, ...]` rely on."""
    def method(self, other):
        if other is None or isinstance(other, (str, bytes, list, tuple, dict, set)):
            return NotImplemented
        return compare(self, other)
    return method


Tensor.__eq__ = _equality(eq)
Tensor.__ne__ = _equality(ne)
Tensor.__lt__ = lt
Tensor.__le__ = le
Tensor.__gt__ = gt
Tensor.__ge__ = ge
Tensor.__iadd__ = _inplace(add)
Tensor.__isub__ = _inplace(sub)
Tensor.__imul__ = _inplace(mul)
Tensor.__itruediv__ = _inplace(div)
Tensor.__ifloordiv__ = _inplace(floor_divide)
Tensor.__imod__ = _inplace(remainder)
Tensor.__ipow__ = _inplace(pow)
Tensor.__iand__ = _inplace(bitwise_and)
Tensor.__ior__ = _inplace(bitwise_or)
Tensor.__ixor__ = _inplace(bitwise_xor)
Tensor.__hash__ = lambda self: id(self)
def _T(self):
    if self.ndim not in (0, 2):
        warnings.warn("The use of `x.T` on tensors of dimension other than 2 to reverse their "
                      "shape is deprecated and it will throw an error in a future release. "
                      "Consider `x.mT` to transpose batches of matrices or "
                      "`x.permute(*torch.arange(x.ndim - 1, -1, -1))` to reverse the "
                      "dimensions of a tensor", UserWarning, stacklevel=2)
    return permute(self, tuple(reversed(range(self.ndim))))


def _mT(self):
    if self.ndim < 2:
        raise at_user_line(RuntimeError, f"tensor.mT is only supported on matrices or batches "
                                         f"of matrices. Got {self.ndim}-D tensor.")
    return transpose(self, -2, -1)


Tensor.T = property(_T)
Tensor.mT = property(_mT)
Tensor.H = Tensor.T

__all__ = [n for n in list(globals()) if not n.startswith("_") and callable(globals()[n])]
