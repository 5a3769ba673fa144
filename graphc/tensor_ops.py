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

from . import autograd
# Load the einsum submodule now: importing it for the first time later (inside `einsum`)
# would rebind the package attribute `graphc.einsum` from this function to the module.
from .einsum import einsum as _einsum
from .ir import dtypes as dt
from .ir.errors import DTypeError, ShapeError, at_user_line
from .tensor import (Size, Tensor, _as_view, _contiguous_strides, _norm_dim, _norm_dims,
                     _scalar_node, broadcast_shapes, full, tensor, zeros)

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


# ---------------------------------------------------------------------------- arithmetic

def add(input, other, *, alpha=1):
    if alpha != 1:
        other = mul(other, alpha)
    return _elementwise("add", input, other)


def sub(input, other, *, alpha=1):
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
    return _elementwise("mul", input, other)


def div(input, other, *, rounding_mode=None):
    if rounding_mode == "floor":
        return floor_divide(input, other)
    if rounding_mode == "trunc":
        q = div(input, other)  # floating: truncate it, then cast to the promoted type
        d = result_type(_as_tensor_operand(input), _as_tensor_operand(other))
        return trunc(q)._cast(d)
    return _elementwise("div", input, other,
                        compute_dtype=_float_compute(_as_tensor_operand(input),
                                                     _as_tensor_operand(other)))


true_divide = divide = div
multiply = mul
subtract = sub


def floor_divide(input, other):
    return _elementwise("floordiv", input, other)


def remainder(input, other):
    return _elementwise("mod", input, other)


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
    condition = _as_tensor_operand(condition)
    input, other = _as_tensor_operand(input), _as_tensor_operand(other)
    d = result_type(input, other)
    shapes = [tuple(x.shape) for x in (condition, input, other) if isinstance(x, Tensor)]
    shape = broadcast_shapes(*shapes)
    (c,) = _prepare([condition], dt.bool_, shape)
    a, b = _prepare([input, other], d, shape)
    return _apply("where", c, a, b)


def clamp(input, min=None, max=None):
    if min is None and max is None:
        raise at_user_line(RuntimeError, "clamp: at least one of 'min' or 'max' must not be None")
    out = input
    # torch.clamp(x, min, max) = min(max(x, min), max), the dtype promoted with the bounds.
    # Written with `where`, not maximum/minimum: PyTorch passes the whole gradient to x
    # where x equals a bound (maximum/minimum would split it in half at the tie).
    if min is not None:
        out = where(lt(out, min), min, out)
    if max is not None:
        out = where(gt(out, max), max, out)
    return out


clip = clamp


def clamp_min(input, min):
    return clamp(input, min=min)


def clamp_max(input, max):
    return clamp(input, max=max)


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
    d = abs(input - other)
    ok = d <= atol + rtol * abs(other)
    ok = logical_or(ok, eq(input, other))
    if equal_nan:
        ok = logical_or(ok, logical_and(isnan(input), isnan(other)))
    return ok


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


def _bitwise(op, name):
    def f(input, other):
        for x in (input, other):
            if _dtype_of(x) is not dt.bool_:
                raise at_user_line(DTypeError, f"{name} is supported on bool tensors only "
                                               f"(got {_dtype_of(x) or type(x).__name__})")
        return _elementwise(op, input, other)
    return f


bitwise_and = _bitwise("logical_and", "&")
bitwise_or = _bitwise("logical_or", "|")
bitwise_xor = _bitwise("logical_xor", "^")


def bitwise_not(input):
    if input.dtype is not dt.bool_:
        raise at_user_line(DTypeError, f"~ is supported on bool tensors only (got "
                                       f"{input.dtype.name})")
    return logical_not(input)


# ---------------------------------------------------------------------------- unary math

def _float_unary(op):
    def f(input):
        d = input.dtype if input.dtype.is_floating else dt.DEFAULT_FLOAT
        return _apply(op, input._cast(d))
    f.__name__ = op
    return f


for _op in ("exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin", "cos", "tanh",
            "sigmoid", "silu", "erf", "reciprocal"):
    globals()[_op] = _float_unary(_op)


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
    with autograd.literal_scalars():
        return _apply("round", input * scale) / scale


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
    return mul(input, input)


def lerp(input, end, weight):
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
        return input.clone()
    return _apply(op, input, dims=dims, keepdim=bool(keepdim))


def _all_dims_if_empty(dim):
    """sum/mean/var/std/norm read `dim=()` as every dim (all/any read it as none)."""
    return None if isinstance(dim, (tuple, list)) and not dim else dim


def sum(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = input._cast(dt.to_dtype(dtype))
    elif not input.dtype.is_floating:
        input = input._cast(dt.int64)
    return _reduce("sum", input, _all_dims_if_empty(dim), keepdim)


def prod(input, dim=None, keepdim=False, *, dtype=None):
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


def mean(input, dim=None, keepdim=False, *, dtype=None):
    if dtype is not None:
        input = input._cast(dt.to_dtype(dtype))
    if not input.dtype.is_floating:
        raise at_user_line(RuntimeError, "mean(): could not infer output dtype. Input dtype "
                                         f"must be either a floating point or complex dtype. "
                                         f"Got: {input.dtype.name}")
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
        return _reduce(kind, input, None, False)
    d = _norm_dim(dim, input.ndim)
    idx = (argmax if kind == "max" else argmin)(input, d, keepdim=True)
    values = input.gather(d, idx) if input.ndim else input
    if not keepdim and input.ndim:
        values, idx = values.squeeze(d), idx.squeeze(d)
    return _MinMax(values, idx)


def max(input, dim=None, keepdim=False):
    return _minmax("max", input, dim, keepdim)


def min(input, dim=None, keepdim=False):
    return _minmax("min", input, dim, keepdim)


def _argminmax(op, input, dim, keepdim):
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


def var(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
    if correction is None:
        correction = 1 if unbiased is None or unbiased else 0
    n = _count(input, dim)
    with autograd.literal_scalars():
        mu = mean(input, dim, keepdim=True)
        d = input - mu
        return sum(d * d, dim, keepdim) / float(builtins.max(n - correction, 0))


def std(input, dim=None, unbiased=None, keepdim=False, *, correction=None):
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
    return var(input, dim, unbiased, keepdim, correction=correction), mean(input, dim, keepdim)


def logsumexp(input, dim, keepdim=False):
    _check_dims(dim, input.ndim)
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
    if dtype is not None:
        input = input._cast(dt.to_dtype(dtype))
    _require_float("softmax", input)
    with autograd.literal_scalars():
        e = exp(input - amax(input, dim, keepdim=True).detach())
        # one reciprocal per row and a multiply per element, as PyTorch's CPU kernel
        # does (a divide per element costs ~5x a multiply)
        return e * reciprocal(sum(e, dim, keepdim=True))


def log_softmax(input, dim, dtype=None):
    if dtype is not None:
        input = input._cast(dt.to_dtype(dtype))
    _require_float("log_softmax", input)
    with autograd.literal_scalars():
        shifted = input - amax(input, dim, keepdim=True).detach()
        return shifted - sum(exp(shifted), dim, keepdim=True).log()


def norm(input, p="fro", dim=None, keepdim=False, dtype=None):
    if dtype is not None:
        input = input._cast(dt.to_dtype(dtype))
    _require_float("norm", input)
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
            return sum((input != 0)._cast(input.dtype), dim, keepdim)
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


def cumsum(input, dim):
    """Prefix sums as a triangular matmul (exact for the sizes graphc's users reach)."""
    d = _norm_dim(dim, input.ndim)
    n = input.shape[d]
    x = input if input.dtype.is_floating else input._cast(dt.int64)
    moved = x.transpose(d, -1) if input.ndim > 1 else x.reshape(1, n)
    tri = (arange_like(n).reshape(n, 1) <= arange_like(n).reshape(1, n))._cast(x.dtype)
    out = matmul(moved, tri)
    return out.transpose(d, -1) if input.ndim > 1 else out.reshape(n)


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


# ---------------------------------------------------------------------------- indexing ops

def _check_index(name, index, expected="int64"):
    if not isinstance(index, Tensor) or index.dtype.is_floating or index.dtype.is_bool:
        got = index.dtype.name if isinstance(index, Tensor) else type(index).__name__
        raise at_user_line(RuntimeError, f"{name}(): Expected dtype {expected} for index "
                                         f"(got {got})")


def gather(input, dim, index):
    _check_index("gather", index)
    d = _norm_dim(dim, input.ndim)
    return _apply("gather", input, index._cast(dt.int64), dim=d)


def scatter_add(input, dim, index, src):
    _check_index("scatter_add", index)
    if isinstance(src, Tensor) and src.dtype is not input.dtype:
        raise at_user_line(RuntimeError, f"scatter(): Expected self.dtype to be equal to "
                                         f"src.dtype (got {input.dtype.name} and "
                                         f"{src.dtype.name})")
    d = _norm_dim(dim, input.ndim)
    return _apply("scatter_add", input, index._cast(dt.int64), src._cast(input.dtype), dim=d)


def index_select(input, dim, index):
    _check_index("index_select", index, "int32 or int64")
    d = _norm_dim(dim, input.ndim)
    if index.ndim > 1:
        raise at_user_line(IndexError, "index_select(): Index is supposed to be a vector")
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
    return where(mask, value if isinstance(value, Tensor) else
                 _scalar_node(value, input.dtype), input)


# ---------------------------------------------------------------------------- linear algebra

def matmul(input, other):
    if input.ndim == 0 or other.ndim == 0:
        raise at_user_line(RuntimeError, "both arguments to matmul need to be at least 1D, but "
                                         f"they are {input.ndim}D and {other.ndim}D")
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
    square=square, sum=sum, prod=prod, mean=mean, amax=amax, amin=amin, max=max, min=min,
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
    **{n: globals()[n] for n in ("exp", "log", "log1p", "expm1", "sqrt", "rsqrt", "sin",
                                 "cos", "tanh", "sigmoid", "silu", "erf", "reciprocal")},
)

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)

for _name in ("add", "sub", "mul", "div", "pow", "clamp", "clamp_min", "clamp_max", "neg",
              "exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "floor", "ceil", "round",
              "masked_fill", "scatter_add", "lerp", "reciprocal", "sign", "square",
              "true_divide", "remainder", "floor_divide", "maximum", "minimum", "t",
              "transpose", "unsqueeze", "squeeze", "logical_not", "clip"):
    setattr(Tensor, _name + "_", _inplace(globals().get(_name) or _METHODS[_name]))

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
Tensor.__invert__ = bitwise_not
Tensor.__and__ = bitwise_and
Tensor.__rand__ = _rev(bitwise_and)
Tensor.__or__ = bitwise_or
Tensor.__ror__ = _rev(bitwise_or)
Tensor.__xor__ = bitwise_xor
Tensor.__rxor__ = _rev(bitwise_xor)
Tensor.__eq__ = eq
Tensor.__ne__ = ne
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
