"""How each graphc IR op becomes ONNX ops (default domain, opset 17 or later).

`LOWERINGS[op](b, node, args)` adds ONNX nodes to the Builder `b` computing the graphc
`node` from the ONNX values `args` (one name per node input) and returns the name of
the result; it may return one of `args` when the op is a no-op (an empty reduction, a
full slice). The results follow graphc's semantics (graphc/ir/ops.py), not ONNX's where
they differ, e.g.:
  * floordiv and mod floor (Python) where ONNX Div truncates and float Mod is fmod;
  * integer pow clamps a negative exponent to 0; sign(nan) is 0;
  * a reduction over no dims is the identity (ONNX would reduce over all dims);
  * gather and scatter_add may take an index smaller than the input in the other
    dims (torch semantics): the input (or src) is sliced to the index first;
  * pad with interior padding is a reshape, pad and slice (ONNX Pad has no interior);
  * atan2, hypot and copysign have no ONNX op and are composed (copysign reads a nan's
    sign as positive); flip is a Slice with step -1;
  * a value `check` (one_hot's class range, ...) is its value: ONNX cannot fail a run,
    so the exported model does not check its inputs.
IR operands already have equal shapes (explicit expand), so no ONNX broadcasting is
relied on except against 0-d helper constants.

An op that cannot be expressed raises `Unsupported(reason)`; the exporter adds the op's
name and source location. `UNSUPPORTED` lists the IR ops with no lowering and why.
"""
from __future__ import annotations

import math

import numpy as np
from onnx import TensorProto

from ..ir import dtypes as dt
from .builder import onnx_elem_type


class Unsupported(Exception):
    """This node cannot be written in ONNX; the message says why."""


UNSUPPORTED = {
    "rand": "graphc's counter-based random numbers have no ONNX equivalent (ONNX's "
            "RandomUniform/RandomNormal draw other numbers); export the model in eval "
            "mode, without dropout or randn in forward",
    "addmm": "made only by the compiling backends' lowering (an SGD update folded into "
             "its GEMM), after tracing: a traced forward graph never holds it",
}

LOWERINGS = {}


def lowering(*names):
    def add(fn):
        for name in names:
            LOWERINGS[name] = fn
        return fn
    return add


def _in_type(node, k=0):
    return node.inputs[k].type


# ============================================================================ elementwise

def _simple(onnx_op):
    return lambda b, node, args: b.op(onnx_op, args)


for _graphc, _onnx in {"neg": "Neg", "abs": "Abs", "exp": "Exp", "log": "Log",
                       "sqrt": "Sqrt", "sin": "Sin", "cos": "Cos", "tanh": "Tanh",
                       "sigmoid": "Sigmoid", "erf": "Erf", "floor": "Floor",
                       "ceil": "Ceil", "round": "Round", "reciprocal": "Reciprocal",
                       "logical_not": "Not", "add": "Add", "sub": "Sub", "mul": "Mul",
                       "div": "Div", "maximum": "Max", "minimum": "Min", "eq": "Equal",
                       "logical_and": "And", "logical_or": "Or", "logical_xor": "Xor",
                       "where": "Where", "matmul": "MatMul", "tan": "Tan", "asin": "Asin",
                       "acos": "Acos", "atan": "Atan", "sinh": "Sinh", "cosh": "Cosh",
                       "asinh": "Asinh", "acosh": "Acosh", "atanh": "Atanh"}.items():
    LOWERINGS[_graphc] = _simple(_onnx)


@lowering("bitwise_and", "bitwise_or", "bitwise_xor", "bitwise_not")
def _bitwise(b, node, args):
    if b.opset < 18:
        raise Unsupported("integer bit operations need ONNX opset 18 or later (BitwiseAnd, "
                          "BitwiseOr, BitwiseXor, BitwiseNot); export with opset_version=18")
    name = {"bitwise_and": "BitwiseAnd", "bitwise_or": "BitwiseOr",
            "bitwise_xor": "BitwiseXor", "bitwise_not": "BitwiseNot"}[node.op]
    return b.op(name, args)


@lowering("log2", "log10")
def _log_base(b, node, args):
    base = 2 if node.op == "log2" else 10
    return b.op("Mul", [b.op("Log", args), b.scalar(1 / math.log(base), node.type.dtype)])


@lowering("exp2")
def _exp2(b, node, args):
    return b.op("Pow", [b.scalar(2, node.type.dtype), args[0]])


def _sign_bit(b, x, d):
    """x < 0 or x is -0.0 (1/x is -inf); a nan counts as positive: ONNX cannot read
    its sign bit."""
    zero = b.scalar(0, d)
    neg_zero = b.op("And", [b.op("Equal", [x, zero]),
                            b.op("Less", [b.op("Reciprocal", [x]), zero])])
    return b.op("Or", [b.op("Less", [x, zero]), neg_zero])


@lowering("fmod")
def _fmod(b, node, args):
    a, c = args
    d = node.type.dtype
    if d.is_floating:
        return b.op("Mod", [a, c], fmod=1)   # C fmod
    # integers: a - trunc(a / c) * c with ONNX's truncating Div, exact at any size (Mod
    # with fmod=1 may go through double); by zero gives 0 (graphc's convention), and a
    # divisor of -1 is replaced by 1 (same remainder, 0) so INT_MIN / -1 cannot trap
    zero, one = b.scalar(0, d), b.scalar(1, d)
    by_zero = b.op("Equal", [c, zero])
    unsafe = by_zero if not d.is_signed else \
        b.op("Or", [by_zero, b.op("Equal", [c, b.scalar(-1, d)])])
    safe = b.op("Where", [unsafe, one, c])
    r = b.op("Sub", [a, b.op("Mul", [b.op("Div", [a, safe]), safe])])
    return b.op("Where", [by_zero, zero, r])


@lowering("atan2")
def _atan2(b, node, args):
    # ONNX has no Atan2: atan(|y| / |x|) placed in its quadrant by the sign bits, with
    # C's values for two infinities (pi/4) and two zeros (0)
    y, x = args
    d = node.type.dtype
    ay, ax = b.op("Abs", [y]), b.op("Abs", [x])
    zero = b.scalar(0, d)
    t = b.op("Div", [ay, ax])
    t = b.op("Where", [b.op("And", [b.op("IsInf", [ay]), b.op("IsInf", [ax])]),
                       b.scalar(1, d), t])
    t = b.op("Where", [b.op("And", [b.op("Equal", [ay, zero]), b.op("Equal", [ax, zero])]),
                       zero, t])
    r = b.op("Atan", [t])
    r = b.op("Where", [_sign_bit(b, x, d), b.op("Sub", [b.scalar(math.pi, d), r]), r])
    return b.op("Where", [_sign_bit(b, y, d), b.op("Neg", [r]), r])


@lowering("hypot")
def _hypot(b, node, args):
    # max * sqrt(1 + (min/max)^2): no overflow of x^2; inf wins over nan, as C hypot
    x, y = args
    d = node.type.dtype
    ax, ay = b.op("Abs", [x]), b.op("Abs", [y])
    big, small = b.op("Max", [ax, ay]), b.op("Min", [ax, ay])
    q = b.op("Div", [small, big])
    r = b.op("Mul", [big, b.op("Sqrt", [b.op("Add", [b.scalar(1, d), b.op("Mul", [q, q])])])])
    r = b.op("Where", [b.op("Equal", [big, b.scalar(0, d)]), small, r])
    r = b.op("Where", [b.op("Or", [b.op("IsNaN", [x]), b.op("IsNaN", [y])]),
                       b.scalar(math.nan, d), r])
    return b.op("Where", [b.op("Or", [b.op("IsInf", [x]), b.op("IsInf", [y])]),
                          b.scalar(math.inf, d), r])


@lowering("copysign")
def _copysign(b, node, args):
    x, y = args
    ax = b.op("Abs", [x])
    return b.op("Where", [_sign_bit(b, y, node.type.dtype), b.op("Neg", [ax]), ax])


@lowering("log1p")
def _log1p(b, node, args):
    return b.op("Log", [b.op("Add", [args[0], b.scalar(1, node.type.dtype)])])


@lowering("expm1")
def _expm1(b, node, args):
    return b.op("Sub", [b.op("Exp", args), b.scalar(1, node.type.dtype)])


@lowering("rsqrt")
def _rsqrt(b, node, args):
    return b.op("Reciprocal", [b.op("Sqrt", args)])


@lowering("sign")
def _sign(b, node, args):
    s = b.op("Sign", args)
    if not node.type.dtype.is_floating:
        return s
    # graphc (like PyTorch) gives sign(nan) = 0
    return b.op("Where", [b.op("IsNaN", args), b.scalar(0, node.type.dtype), s])


@lowering("relu")
def _relu(b, node, args):
    if node.type.dtype.is_floating:
        return b.op("Relu", args)
    return b.op("Max", [args[0], b.scalar(0, node.type.dtype)])


@lowering("silu")
def _silu(b, node, args):
    return b.op("Mul", [args[0], b.op("Sigmoid", args)])


@lowering("gelu")
def _gelu(b, node, args):
    approximate = node.attrs.get("approximate", "none")
    if b.opset >= 20:
        return b.op("Gelu", args, approximate=approximate)
    (x,), d = args, node.type.dtype
    if approximate == "tanh":
        cube = b.op("Mul", [b.op("Mul", [x, x]), x])
        inner = b.op("Add", [x, b.op("Mul", [cube, b.scalar(0.044715, d)])])
        t = b.op("Tanh", [b.op("Mul", [inner, b.scalar(math.sqrt(2 / math.pi), d)])])
    else:
        t = b.op("Erf", [b.op("Mul", [x, b.scalar(1 / math.sqrt(2), d)])])
    # 0.5 * x * (1 + t)
    return b.op("Mul", [b.op("Mul", [x, b.scalar(0.5, d)]),
                        b.op("Add", [t, b.scalar(1, d)])])


def _constant_like(b, node, value):
    """A tensor of `node`'s shape filled with `value` (node dtype)."""
    return b.op("Expand", [b.scalar(value, node.type.dtype), b.ints(node.type.shape)])


@lowering("isnan")
def _isnan(b, node, args):
    if not _in_type(node).dtype.is_floating:
        return _constant_like(b, node, False)
    return b.op("IsNaN", args)


@lowering("isfinite")
def _isfinite(b, node, args):
    if not _in_type(node).dtype.is_floating:
        return _constant_like(b, node, True)
    return b.op("Not", [b.op("Or", [b.op("IsNaN", args), b.op("IsInf", args)])])


@lowering("ne")
def _ne(b, node, args):
    return b.op("Not", [b.op("Equal", args)])


def _ordered_compare(onnx_op):
    def lower(b, node, args):
        if _in_type(node).dtype.is_bool:   # ONNX orders numbers only; False < True
            args = [b.op("Cast", [a], to=TensorProto.INT32) for a in args]
        return b.op(onnx_op, args)
    return lower


for _graphc, _onnx in {"lt": "Less", "le": "LessOrEqual", "gt": "Greater",
                       "ge": "GreaterOrEqual"}.items():
    LOWERINGS[_graphc] = _ordered_compare(_onnx)


def _float_floor_divmod(b, node, a, c):
    """(floor division, remainder) of floats in the steps of ir/ops.py's
    _float_floor_divmod (PyTorch's): from fmod, which ONNX's float Mod computes."""
    d = node.type.dtype
    zero, one = b.scalar(0, d), b.scalar(1, d)
    mod = b.op("Mod", [a, c], fmod=1)
    adjust = b.op("And", [b.op("Not", [b.op("Equal", [mod, zero])]),
                          b.op("Xor", [b.op("Less", [c, zero]), b.op("Less", [mod, zero])])])
    rem = b.op("Where", [adjust, b.op("Add", [mod, c]), mod])
    div = b.op("Div", [b.op("Sub", [a, mod]), c])
    div = b.op("Where", [adjust, b.op("Sub", [div, one]), div])
    whole = b.op("Floor", [div])
    above_half = b.op("Greater", [b.op("Sub", [div, whole]), b.scalar(0.5, d)])
    whole = b.op("Where", [above_half, b.op("Add", [whole, one]), whole])
    ratio = b.op("Div", [a, c])
    signed_zero = b.op("Mul", [ratio, zero])   # copysign(0, ratio): finite where used
    quotient = b.op("Where", [b.op("Equal", [div, zero]), signed_zero, whole])
    quotient = b.op("Where", [b.op("Equal", [c, zero]), ratio, quotient])
    return quotient, rem


@lowering("floordiv")
def _floordiv(b, node, args):
    a, c = args
    if node.type.dtype.is_floating:
        return _float_floor_divmod(b, node, a, c)[0]
    # integers: (a - a mod c) / c is exact, and Mod(fmod=0) is Python's (floored) mod
    return b.op("Div", [b.op("Sub", [a, b.op("Mod", [a, c], fmod=0)]), c])


@lowering("mod")
def _mod(b, node, args):
    a, c = args
    if node.type.dtype.is_floating:
        return _float_floor_divmod(b, node, a, c)[1]
    return b.op("Mod", [a, c], fmod=0)


@lowering("pow")
def _pow(b, node, args):
    a, e = args
    d = node.type.dtype
    if d.is_floating:
        return b.op("Pow", [a, e])
    zero = b.scalar(0, d)
    power = b.op("Pow", [a, b.op("Max", [e, zero])])
    if not d.is_signed:
        return power
    # a negative exponent (ops.py's _pow_np, PyTorch): 1 for base 1, +-1 for base -1 by
    # the exponent's parity, 0 otherwise
    one, minus1 = b.scalar(1, d), b.scalar(-1, d)
    odd = b.op("Not", [b.op("Equal", [b.op("Mod", [e, b.scalar(2, d)], fmod=1), zero])])
    small = b.op("Where", [b.op("Equal", [a, one]), one,
                           b.op("Where", [b.op("Equal", [a, minus1]),
                                          b.op("Where", [odd, minus1, one]), zero])])
    return b.op("Where", [b.op("Less", [e, zero]), small, power])


@lowering("cast")
def _cast(b, node, args):
    if node.type.dtype is _in_type(node).dtype:
        return args[0]
    # float -> int truncates toward zero in ONNX Cast, as in graphc
    return b.op("Cast", args, to=onnx_elem_type(node.type.dtype))


# ============================================================================ sources

@lowering("const")
def _const(b, node, args):
    return b.scalar(node.attrs["value"], node.attrs["dtype"])


@lowering("iota")
def _iota(b, node, args):
    shape, dim, dtype = tuple(node.attrs["shape"]), node.attrs["dim"], node.attrs["dtype"]
    if not shape:
        return b.scalar(0, dtype)
    n = shape[dim]
    r = b.op("Range", [b.const(np.array(0, np.int64)), b.const(np.array(n, np.int64)),
                       b.const(np.array(1, np.int64))])
    if dtype is not dt.int64:
        r = b.op("Cast", [r], to=onnx_elem_type(dtype))
    view = [1] * len(shape)
    view[dim] = n
    if len(shape) > 1:
        r = b.op("Reshape", [r, b.ints(view)])
    if tuple(view) != shape:
        r = b.op("Expand", [r, b.ints(shape)])
    return r


# ============================================================================ movement

def _reshape(b, x, shape):
    # allowzero: a 0 in the shape means an empty dim, not "copy the input's dim"
    return b.op("Reshape", [x, b.ints(shape)], **({"allowzero": 1} if 0 in shape else {}))


@lowering("check")
def _check(b, node, args):
    return args[0]


@lowering("reshape")
def _reshape_op(b, node, args):
    shape = tuple(node.attrs["shape"])
    return args[0] if shape == _in_type(node).shape else _reshape(b, args[0], shape)


@lowering("permute")
def _permute(b, node, args):
    perm = list(node.attrs["dims"])
    return args[0] if perm == sorted(perm) else b.op("Transpose", args, perm=perm)


@lowering("expand")
def _expand(b, node, args):
    shape = tuple(node.attrs["shape"])
    return args[0] if shape == _in_type(node).shape else \
        b.op("Expand", [args[0], b.ints(shape)])


def _slice(b, x, in_shape, starts, stops, steps):
    axes = [k for k, (size, a, z, s) in enumerate(zip(in_shape, starts, stops, steps))
            if (a, z, s) != (0, size, 1)]
    if not axes:
        return x
    return b.op("Slice", [x, b.ints(starts[k] for k in axes), b.ints(stops[k] for k in axes),
                          b.ints(axes), b.ints(steps[k] for k in axes)])


@lowering("slice")
def _slice_op(b, node, args):
    return _slice(b, args[0], _in_type(node).shape, node.attrs["starts"],
                  node.attrs["stops"], node.attrs["steps"])


def _zero_pad(b, x, dtype, low, high):
    if not any(low) and not any(high):
        return x
    return b.op("Pad", [x, b.ints(list(low) + list(high)), b.scalar(0, dtype)],
                mode="constant")


@lowering("pad")
def _pad(b, node, args):
    x, dtype = args[0], node.type.dtype
    shape = list(_in_type(node).shape)
    low, high, interior = node.attrs["low"], node.attrs["high"], node.attrs["interior"]
    for d, it in enumerate(interior):
        if it == 0 or shape[d] <= 1:
            continue
        # Interior padding along d: view [.., n, ..] as [.., n, 1, ..], pad the new axis
        # with `it` zeros at its end, merge to [.., n*(1+it), ..] and drop the `it`
        # zeros after the last element.
        n = shape[d]
        x = _reshape(b, x, shape[:d + 1] + [1] + shape[d + 1:])
        lo = [0] * (len(shape) + 1)
        hi = [0] * (len(shape) + 1)
        hi[d + 1] = it
        x = _zero_pad(b, x, dtype, lo, hi)
        merged = shape[:d] + [n * (1 + it)] + shape[d + 1:]
        x = _reshape(b, x, merged)
        stops = list(merged)
        stops[d] = n + (n - 1) * it
        x = _slice(b, x, merged, [0] * len(shape), stops, [1] * len(shape))
        shape[d] = stops[d]
    return _zero_pad(b, x, dtype, low, high)


@lowering("flip")
def _flip(b, node, args):
    # Slice with step -1 from the last element past the first (INT64_MIN: ONNX clamps
    # it to "before the beginning" for negative steps)
    dims = list(node.attrs["dims"])
    if not dims:
        return args[0]
    n = len(dims)
    return b.op("Slice", [args[0], b.ints([-1] * n), b.ints([np.iinfo(np.int64).min] * n),
                          b.ints(dims), b.ints([-1] * n)])


@lowering("concat")
def _concat(b, node, args):
    return b.op("Concat", args, axis=node.attrs["dim"])


# ============================================================================ reductions

def _reduce(onnx_op):
    def lower(b, node, args):
        dims = list(node.attrs["dims"])
        keepdims = int(bool(node.attrs["keepdim"]))
        if not dims:   # graphc: reducing over no dims is the identity
            return args[0]
        # ReduceSum takes its axes as an input from opset 13, the others from opset 18
        if onnx_op == "ReduceSum" or b.opset >= 18:
            return b.op(onnx_op, [args[0], b.ints(dims)], keepdims=keepdims)
        return b.op(onnx_op, args, axes=dims, keepdims=keepdims)
    return lower


for _graphc, _onnx in {"sum": "ReduceSum", "prod": "ReduceProd", "max": "ReduceMax",
                       "min": "ReduceMin"}.items():
    LOWERINGS[_graphc] = _reduce(_onnx)


def _argreduce(onnx_op):
    def lower(b, node, args):
        if not _in_type(node).ndim:
            return b.const(np.zeros((), np.int64))
        # select_last_index=0: the first extreme element, as graphc and numpy
        return b.op(onnx_op, args, axis=node.attrs["dim"],
                    keepdims=int(bool(node.attrs["keepdim"])), select_last_index=0)
    return lower


LOWERINGS["argmax"] = _argreduce("ArgMax")
LOWERINGS["argmin"] = _argreduce("ArgMin")


# ============================================================================ indexing

def _crop_to_index(b, x, x_shape, idx_shape, dim):
    """x sliced to the index's extent in every dim but `dim` (torch.gather semantics)."""
    stops = [s if k == dim else i for k, (s, i) in enumerate(zip(x_shape, idx_shape))]
    return _slice(b, x, x_shape, [0] * len(x_shape), stops, [1] * len(x_shape))


@lowering("gather")
def _gather(b, node, args):
    x, idx = args
    d = node.attrs["dim"]
    x = _crop_to_index(b, x, _in_type(node, 0).shape, _in_type(node, 1).shape, d)
    return b.op("GatherElements", [x, idx], axis=d)


@lowering("scatter_add")
def _scatter_add(b, node, args):
    x, idx, src = args
    d = node.attrs["dim"]
    src_shape, idx_shape = _in_type(node, 2).shape, _in_type(node, 1).shape
    # only the leading index-shaped block of src is scattered
    src = _slice(b, src, src_shape, [0] * len(src_shape), list(idx_shape),
                 [1] * len(src_shape))
    return b.op("ScatterElements", [x, idx, src], axis=d, reduction="add")


# ============================================================================ nn

def _conv_attrs(node):
    (sh, sw), (ph, pw) = node.attrs["stride"], node.attrs["padding"]
    return {"kernel_shape": list(_in_type(node, 1).shape[2:]), "strides": [sh, sw],
            "pads": [ph, pw, ph, pw], "dilations": list(node.attrs["dilation"]),
            "group": node.attrs["groups"]}


@lowering("conv2d")
def _conv2d(b, node, args):
    return b.op("Conv", args, **_conv_attrs(node))


@lowering("conv_transpose2d")
def _conv_transpose2d(b, node, args):
    return b.op("ConvTranspose", args, output_padding=list(node.attrs["output_padding"]),
                **_conv_attrs(node))


# ============================================================================ sorting

@lowering("argsort")
def _argsort(b, node, args):
    """TopK with K = the dim's size, `sorted`: its Indices output. ONNX specifies that
    of two equal elements the lower index comes first, in either direction, which is
    graphc's stable order; onnxruntime also orders NaN above +inf and -0.0 equal to
    0.0, as graphc does (tests/test_sort.py checks both). TopK takes no bool and
    onnxruntime no 16-bit floats or bytes everywhere: those are widened first, which
    keeps every order and tie."""
    (x,) = args
    t = _in_type(node)
    if not t.ndim:
        return b.const(np.zeros((), np.int64))
    if t.dtype.short in ("b8", "u8"):
        x = b.op("Cast", [x], to=onnx_elem_type(dt.int32))
    elif t.dtype.short in ("f16", "bf16"):
        x = b.op("Cast", [x], to=onnx_elem_type(dt.float32))
    d = node.attrs["dim"]
    _values, indices = b.op_outputs("TopK", [x, b.ints([t.shape[d]])], 2, axis=d,
                                    largest=int(bool(node.attrs["descending"])), sorted=1)
    return indices
