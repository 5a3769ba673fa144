"""`nn.functional`: the function form of every layer, activation and loss.

Everything is written with graphc tensor ops, so each function only records IR and its
gradient comes from the autodiff pass. The only primitives added for nn are the
convolutions (graphc/ir/ops_nn.py); pooling is built from strided slices of a padded
input, one per kernel position.

Conventions kept from PyTorch: argument names and order, defaults, `reduction`
('mean' | 'sum' | 'none', plus the legacy size_average/reduce flags), unbatched inputs
where PyTorch accepts them, and the gradients PyTorch defines at kinks (relu at 0 is 0,
max pooling sends the whole gradient to the first maximum of each window).

A Python float that a caller passes (p, eps, negative_slope, momentum, ...) becomes a
runtime scalar input of the graph, so changing it does not recompile; graphc's own
literals are written inside `literal_scalars()`.
"""
from __future__ import annotations

import math
import numbers
import warnings

import numpy as np

from .. import tensor_ops as T
from ..autograd import literal_scalars, no_grad
from ..ir import dtypes as dt
from ..ir import ops_nn
from ..ir.errors import ShapeError, at_user_line
from ..tensor import (Tensor, _checked_scalar, _scalar_node, broadcast_shapes, ones, ones_like,
                      rand, tensor, zeros_like)


def _ntuple(v, n, name="argument"):
    if isinstance(v, numbers.Integral):
        return (int(v),) * n
    v = tuple(int(a) for a in v)
    if len(v) == 1:
        return v * n
    if len(v) != n:
        raise ValueError(f"expected {n} values for {name}, got {list(v)}")
    return v


def _pair(v, name="argument"):
    return _ntuple(v, 2, name)


# ============================================================================ activations

def relu(input, inplace=False):
    return input.relu_() if inplace else T.relu(input)


def relu_(input):
    return input.relu_()


def gelu(input, approximate="none"):
    return T.gelu(input, approximate=approximate)


def silu(input, inplace=False):
    out = T.silu(input)
    return input.copy_(out) if inplace else out


def sigmoid(input):
    return T.sigmoid(input)


def tanh(input):
    return T.tanh(input)


def leaky_relu(input, negative_slope=0.01, inplace=False):
    # PyTorch's gradient at 0 is negative_slope: the x > 0 test picks the slope there.
    out = T.where(input > 0, input, input * negative_slope)
    return input.copy_(out) if inplace else out


def logsigmoid(input):
    """log(sigmoid(x)) = min(x, 0) - log1p(exp(-|x|)), never overflowing. Both branches
    are chosen by `x >= 0`, so the gradient at 0 is sigmoid(-0) = 0.5, as PyTorch's."""
    nonneg = input >= 0
    with literal_scalars():
        neg_abs = T.where(nonneg, -input, input)
        min0 = T.where(nonneg, zeros_like(input), input)
        return min0 - T.log1p(T.exp(neg_abs))


def softplus(input, beta=1.0, threshold=20.0):
    scaled = input * beta
    soft = -logsigmoid(-scaled) / beta
    return T.where(scaled > threshold, input, soft)


def _softmax_dim(ndim, name):
    warnings.warn(f"Implicit dimension choice for {name} has been deprecated. Change the "
                  f"call to include dim=X as an argument.", stacklevel=3)
    return 0 if ndim in (0, 1, 3) else 1


def softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim(input.ndim, "softmax")
    return T.softmax(input, dim, dtype=dtype)


def log_softmax(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim(input.ndim, "log_softmax")
    return T.log_softmax(input, dim, dtype=dtype)


# The activations below pick their branches with `where` on the same comparison
# PyTorch's backward kernel uses, so the gradient at a kink is PyTorch's: the branch that
# is not taken gets none. A branch that could overflow (exp of a large x) reads its
# argument through a `where` too, so its unused infinities never reach the gradient as
# 0 * inf.

def _inplace_result(input, out, inplace):
    return input.copy_(out) if inplace else out


def _elu_core(input, alpha, scale, input_scale):
    """PyTorch's elu kernel: scale * x for x > 0, else scale * alpha * expm1(x *
    input_scale); at x == 0 the gradient is the negative branch's (alpha * scale *
    input_scale)."""
    pos = input > 0
    neg_x = T.where(pos, zeros_like(input), input)
    neg = T.expm1(neg_x if input_scale is None else neg_x * input_scale) * alpha
    out = T.where(pos, input, neg)
    return out * scale if scale is not None else out


def elu(input, alpha=1.0, inplace=False):
    return _inplace_result(input, _elu_core(input, alpha, None, None), inplace)


def elu_(input, alpha=1.0):
    return elu(input, alpha, inplace=True)


def celu(input, alpha=1.0, inplace=False):
    # PyTorch's celu is elu with input_scale 1 / alpha
    if alpha == 0:
        raise at_user_line(RuntimeError, "ZeroDivisionError: alpha cannot be 0 for CELU")
    return _inplace_result(input, _elu_core(input, alpha, None, 1.0 / alpha), inplace)


def celu_(input, alpha=1.0):
    return celu(input, alpha, inplace=True)


_SELU_ALPHA = 1.6732632423543772848170429916717
_SELU_SCALE = 1.0507009873554804934193349852946


def selu(input, inplace=False):
    with literal_scalars():
        out = _elu_core(input, _SELU_ALPHA, _SELU_SCALE, None)
    return _inplace_result(input, out, inplace)


def selu_(input):
    return selu(input, inplace=True)


def hardtanh(input, min_val=-1.0, max_val=1.0, inplace=False):
    if min_val > max_val:
        raise ValueError("min_val cannot be greater than max_val")
    # PyTorch's backward passes the gradient only strictly inside (min_val, max_val);
    # clamp's own gradient would also pass it at the bounds
    if not input.dtype.is_floating:   # PyTorch clamps integers with integer bounds
        min_val, max_val = int(min_val), int(max_val)
    inside = T.logical_and(input > min_val, input < max_val)
    out = T.where(inside, input, T.clamp(input.detach(), min_val, max_val))
    return _inplace_result(input, out, inplace)


def hardtanh_(input, min_val=-1.0, max_val=1.0):
    return hardtanh(input, min_val, max_val, inplace=True)


def relu6(input, inplace=False):
    with literal_scalars():
        return hardtanh(input, 0.0, 6.0, inplace)


def hardsigmoid(input, inplace=False):
    # relu6(x + 3) / 6; gradient 1/6 strictly inside (-3, 3), 0 elsewhere (PyTorch's)
    with literal_scalars():
        inside = T.logical_and(input > -3.0, input < 3.0)
        flat = T.clamp(input.detach() + 3.0, 0.0, 6.0) / 6.0
        out = T.where(inside, (input + 3.0) / 6.0, flat)
    return _inplace_result(input, out, inplace)


def hardswish(input, inplace=False):
    # x * relu6(x + 3) / 6; PyTorch's gradient is x / 3 + 0.5 strictly inside (-3, 3),
    # 0 from -3 down and 1 from 3 up: the outer branches own the kinks
    with literal_scalars():
        mid = input * (input + 3.0) / 6.0
        out = T.where(input <= -3.0, zeros_like(input), T.where(input < 3.0, mid, input))
    return _inplace_result(input, out, inplace)


def mish(input, inplace=False):
    # x * tanh(softplus(x)); softplus(x) = -logsigmoid(-x) never overflows
    out = input * T.tanh(-logsigmoid(-input))
    return _inplace_result(input, out, inplace)


def softsign(input):
    with literal_scalars():
        return input / (T.abs(input) + 1.0)


def tanhshrink(input):
    return input - T.tanh(input)


def _threshold(input, threshold, value, inplace):
    # y = x where x > threshold, else value; no gradient where x <= threshold
    out = T.where(input > threshold, input, value)
    return _inplace_result(input, out, inplace)


def threshold(input, threshold, value, inplace=False):
    return _threshold(input, threshold, value, inplace)


def threshold_(input, threshold, value):
    return _threshold(input, threshold, value, True)


def glu(input, dim=-1):
    if input.ndim == 0:
        raise at_user_line(RuntimeError, "glu does not support scalars because halving size "
                                         "must be even")
    d = dim + input.ndim if dim < 0 else dim
    n = input.shape[d]
    if n % 2:
        raise at_user_line(RuntimeError, f"Halving dimension must be even, but dimension {d} "
                                         f"is size {n}")
    a, b = T.chunk(input, 2, d)
    return a * T.sigmoid(b)


def prelu(input, weight):
    """x for x > 0, weight * x elsewhere; a weight of C values applies per channel
    (dim 1). The gradient at 0 is the negative branch's, as in PyTorch's kernel."""
    if weight.ndim > 1:
        raise at_user_line(RuntimeError, f"prelu: Expected `weight` to be a scalar or 1D "
                                         f"tensor, but got: ndim = {weight.ndim}")
    n = weight.numel()
    if n != 1:
        channels = input.shape[1] if input.ndim > 1 else 1
        if channels != n:
            raise at_user_line(RuntimeError, f"Mismatch of parameter numbers and input "
                                             f"channel size. Found parameter numbers = {n} "
                                             f"and channel size = {channels}.")
        weight = weight.reshape((n,) + (1,) * (input.ndim - 2))
    elif input.ndim == 0:
        weight = weight.reshape(())
    return T.where(input > 0, input, input * weight)


def softmin(input, dim=None, _stacklevel=3, dtype=None):
    if dim is None:
        dim = _softmax_dim(input.ndim, "softmin")
    return T.softmax(-input, dim, dtype=dtype)


# ============================================================================ linear, dropout

def _check_same_dtype(input, weight, bias):
    """PyTorch's linear refuses operands of different dtypes (float64 data into a
    float32 model, integer tokens into a Linear); graphc's matmul would promote them
    and silently compute in another precision."""
    for other, what in ((weight, "mat2"), (bias, "bias")):
        if other is not None and other.dtype != input.dtype:
            names = [dt.TORCH_NAMES.get(d.name, d.name) for d in (input.dtype, other.dtype)]
            raise at_user_line(RuntimeError, f"linear: mat1 and {what} must have the same "
                                             f"dtype, but got {names[0]} and {names[1]} "
                                             f"(input {list(input.shape)}, {what} "
                                             f"{list(other.shape)})")


def _check_norm_dtypes(name, input, **params):
    """PyTorch's CPU norms take parameters of the input's dtype (or float32 ones for a
    float16/bfloat16 input); graphc's elementwise promotion would otherwise run a float64
    batch through a float32 model in float64 without a word."""
    half = input.dtype.is_floating and input.dtype.itemsize == 2
    for what, t in params.items():
        if t is not None and t.dtype != input.dtype and not (half and t.dtype.name == "float32"):
            raise at_user_line(RuntimeError, f"mixed dtype (CPU): all inputs must share same "
                                             f"datatype ({name}: input {input.dtype.name} "
                                             f"{list(input.shape)}, {what} {t.dtype.name})")


def _norm_operands(input, *params):
    """A norm's input and affine parameters as it computes with them, and the dtype of
    its result: float16/bfloat16 go to float32, as in PyTorch's CPU kernels, which
    compute the statistics and the normalised values in float and round the result
    once, to the input's dtype (also when the parameters are float32). In the half type
    itself the statistics lose digits (a float16 layer_norm over 76,800 features was nan:
    the count overflowed)."""
    out_dtype = input.dtype
    if out_dtype not in T._REDUCED_FLOATS:
        return (input, *params, out_dtype)
    as_float = [None if t is None else t._cast(dt.float32) for t in params]
    return (input._cast(dt.float32), *as_float, out_dtype)


def _check_conv_dtypes(input, weight, bias):
    """PyTorch's convolutions need the weight and bias in the input's dtype."""
    for what, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.dtype != input.dtype:
            names = [dt.TORCH_NAMES.get(d.name, d.name).lower() for d in (input.dtype, t.dtype)]
            raise at_user_line(RuntimeError, f"Input type ({names[0]}) and {what} type "
                                             f"({names[1]}) should be the same (input "
                                             f"{list(input.shape)}, {what} {list(t.shape)})")


def linear(input, weight, bias=None):
    _check_same_dtype(input, weight, bias)
    if input.ndim > 2:
        # one 2-d matmul: the weight is not broadcast over the batch dims
        lead = tuple(input.shape[:-1])
        out = T.matmul(input.reshape(-1, input.shape[-1]), weight.t())
        out = out.reshape(lead + (weight.shape[0],))
    else:
        out = T.matmul(input, weight.t())
    return out + bias if bias is not None else out


def _check_p(p):
    if p < 0.0 or p > 1.0:
        raise ValueError(f"dropout probability has to be between 0 and 1, but got {p}")


def dropout(input, p=0.5, training=True, inplace=False):
    """Keep each element with probability 1-p, scaled by 1/(1-p). The mask is a `rand`
    node of graphc's counter-based generator: its seed and offset are runtime inputs, so
    every call draws a new mask without changing the graph's structure."""
    _check_p(p)
    if not training or p == 0.0:
        return input
    if p == 1.0:
        out = input * zeros_like(input)
    else:
        keep = rand(input.shape, dtype=input.dtype) >= p
        out = input * (keep.to(input.dtype) * (1.0 / (1.0 - p)))
    return input.copy_(out) if inplace else out


# ============================================================================ embedding, one_hot

def embedding(input, weight, padding_idx=None, max_norm=None, norm_type=2.0,
              scale_grad_by_freq=False, sparse=False):
    if input.dtype.is_floating:
        raise at_user_line(RuntimeError, f"Expected tensor for argument #1 'indices' to have "
                                         f"one of the following scalar types: Long, Int; but "
                                         f"got {input.dtype.name} instead")
    num, dim = weight.shape
    if padding_idx is not None and not -num <= padding_idx < num:
        raise AssertionError("Padding_idx must be within num_embeddings")
    flat = input.reshape(-1)
    if max_norm is not None:
        _renorm_rows_(weight, flat, max_norm, norm_type)
    rows = weight.index_select(0, flat)
    if scale_grad_by_freq:
        rows = _scale_grad_by_freq(rows, flat, num)
    out = rows.reshape(tuple(input.shape) + (dim,))
    if padding_idx is not None:
        if padding_idx < 0:
            padding_idx += num
        # rows at padding_idx get no gradient (PyTorch's rule); their value is kept
        pad = (input == padding_idx).unsqueeze(-1).expand(out.shape)
        out = T.where(pad, out.detach(), out)
    return out


def _renorm_rows_(weight, idx, max_norm, norm_type):
    """PyTorch's embedding_renorm_: each row looked up whose norm exceeds max_norm is
    scaled, in place and outside autograd, to max_norm / (norm + 1e-7) of itself (a
    repeated index writes the same row twice)."""
    with no_grad(), literal_scalars():
        rows = weight.index_select(0, idx)
        norms = T.norm(rows, norm_type, dim=1, keepdim=True)
        scale = T.where(norms > max_norm, max_norm / (norms + 1e-7), 1.0)
        weight.index_copy_(0, idx, (rows * scale)._cast(weight.dtype))


def _scale_grad_by_freq(rows, idx, num):
    """`rows`, whose gradient is divided by how often each row's index occurs in the
    batch (PyTorch's scale_grad_by_freq). rows.detach() + (rows - rows.detach()) * f has
    rows' values exactly (the difference is 0) and f times its gradient."""
    with literal_scalars():
        idx = idx._cast(dt.int64)
        counts = T.zeros(num, dtype=dt.int64).scatter_add(0, idx, ones_like(idx))
        f = (1.0 / counts.gather(0, idx)._cast(rows.dtype)).unsqueeze(1)
        fixed = rows.detach()
        return fixed + (rows - fixed) * f


def one_hot(tensor_, num_classes=-1):
    if tensor_.dtype.is_floating:
        raise at_user_line(RuntimeError, "one_hot is only applicable to index tensor.")
    if num_classes == -1:  # data-dependent size: needs the values
        num_classes = int(tensor_.max().item()) + 1
    tensor_ = T._checked(tensor_, T.ge(tensor_, 0), "Class values must be non-negative.")
    tensor_ = T._checked(tensor_, T.lt(tensor_, num_classes),
                         "Class values must be smaller than num_classes.")
    classes = T.arange_like(num_classes)
    return (tensor_.unsqueeze(-1) == classes).long()


# ============================================================================ padding

def _pad_constant(x, pairs, value):
    low = [0] * x.ndim
    high = [0] * x.ndim
    for d, (lo, hi) in pairs.items():
        low[d], high[d] = lo, hi
    # negative pads crop
    starts = [max(0, -a) for a in low]
    stops = [s - max(0, -b) for s, b in zip(x.shape, high)]
    if any(starts) or stops != list(x.shape):
        x = x._slice(starts, stops, [1] * x.ndim)
    low = [max(0, a) for a in low]
    high = [max(0, b) for b in high]
    if not any(low) and not any(high):
        return x
    out = x._pad(low, high, [0] * x.ndim)
    if value is None or value == 0:
        return out
    # PyTorch converts the value to x's dtype (range-checked; 2.7 pads an int64 with 2):
    # the result keeps x's dtype
    fill = _scalar_node(_checked_scalar(value, x.dtype, numel=None), x.dtype)
    inside = ones_like(x, dtype=dt.bool_)._pad(low, high, [0] * x.ndim)
    return T.where(inside, out, fill)


def _slice_dim(x, d, start, stop):
    starts = [0] * x.ndim
    stops = list(x.shape)
    starts[d], stops[d] = start, stop
    return x._slice(starts, stops, [1] * x.ndim)


def _pad_dim(x, d, lo, hi, mode):
    n = x.shape[d]
    if mode == "circular":
        if lo > n or hi > n:
            raise ValueError("Padding value causes wrapping around more than once.")
        parts = [_slice_dim(x, d, n - lo, n)] if lo else []
        parts.append(x)
        if hi:
            parts.append(_slice_dim(x, d, 0, hi))
    elif mode == "replicate":
        shape = list(x.shape)
        parts = []
        if lo:
            shape[d] = lo
            parts.append(_slice_dim(x, d, 0, 1).expand(shape))
        parts.append(x)
        if hi:
            shape[d] = hi
            parts.append(_slice_dim(x, d, n - 1, n).expand(shape))
    elif mode == "reflect":
        if lo >= n or hi >= n:
            raise ValueError(f"Argument #4: Padding size should be less than the corresponding "
                             f"input dimension, but got: padding ({lo}, {hi}) at dimension "
                             f"{d} of input {list(x.shape)}")
        parts = [_slice_dim(x, d, k, k + 1) for k in range(lo, 0, -1)]
        parts.append(x)
        parts += [_slice_dim(x, d, k, k + 1) for k in range(n - 2, n - 2 - hi, -1)]
    else:
        raise ValueError(f"Unrecognised padding mode {mode}")
    return T.cat(parts, d) if len(parts) > 1 else x


def pad(input, pad, mode="constant", value=None):
    pad = [int(p) for p in pad]
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(f"Padding length must be divisible by 2 and at most twice the number "
                         f"of dims (got {len(pad)} for a {input.ndim}-d input)")
    pairs = {input.ndim - 1 - k: (pad[2 * k], pad[2 * k + 1]) for k in range(len(pad) // 2)}
    if mode == "constant":
        return _pad_constant(input, pairs, value)
    out = input
    for d, (lo, hi) in sorted(pairs.items(), reverse=True):
        if lo < 0 or hi < 0:
            raise ValueError(f"negative padding is only supported in constant mode, got {pad}")
        out = _pad_dim(out, d, lo, hi, mode)
    return out


# ============================================================================ convolution

def _same_padding(kernel, dilation):
    """'same' padding per dim as (low, high): PyTorch puts the odd extra pixel high."""
    out = []
    for k, d in zip(kernel, dilation):
        total = d * (k - 1)
        out.append((total // 2, total - total // 2))
    return out


def _conv_padding(input, padding, kernel, stride, dilation, nd):
    """Turn PyTorch's padding argument into symmetric per-dim padding, pre-padding the
    input when 'same' needs an asymmetric split."""
    if isinstance(padding, str):
        if padding == "valid":
            return input, (0,) * nd
        if padding != "same":
            raise ValueError(f"Invalid padding string '{padding}', should be one of "
                             f"{{'valid', 'same'}}")
        if any(s != 1 for s in stride):
            raise ValueError("padding='same' is not supported for strided convolutions")
        split = _same_padding(kernel, dilation)
        if all(lo == hi for lo, hi in split):
            return input, tuple(lo for lo, _ in split)
        flat = []
        for lo, hi in reversed(split):
            flat += [lo, hi]
        return pad(input, flat), (0,) * nd
    return input, _ntuple(padding, nd, "padding")


def _batched(input, nd, name):
    """(input with a batch dim, whether one was added): PyTorch accepts unbatched input."""
    if input.ndim == nd + 1:
        return input.unsqueeze(0), True
    if input.ndim != nd + 2:
        raise at_user_line(ShapeError, f"Expected {nd + 1}D (unbatched) or {nd + 2}D (batched) "
                                       f"input to {name}, but got input of size: "
                                       f"{list(input.shape)}")
    return input, False


def _bias_nd(y, bias, nd):
    if bias is None:
        return y
    return y + bias.reshape((1, -1) + (1,) * nd)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    _check_conv_dtypes(input, weight, bias)
    x, unbatched = _batched(input, 2, "conv2d")
    stride, dilation = _pair(stride, "stride"), _pair(dilation, "dilation")
    x, padding = _conv_padding(x, padding, tuple(weight.shape[2:]), stride, dilation, 2)
    y = _bias_nd(ops_nn.conv2d(x, weight, stride, padding, dilation, groups), bias, 2)
    return y.squeeze(0) if unbatched else y


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1):
    """conv2d on a unit height."""
    _check_conv_dtypes(input, weight, bias)
    x, unbatched = _batched(input, 1, "conv1d")
    (s,), (d,) = _ntuple(stride, 1), _ntuple(dilation, 1)
    x, (p,) = _conv_padding(x, padding, tuple(weight.shape[2:]), (s,), (d,), 1)
    y = ops_nn.conv2d(x.unsqueeze(2), weight.unsqueeze(2), (1, s), (0, p), (1, d), groups)
    y = _bias_nd(y.squeeze(2), bias, 1)
    return y.squeeze(0) if unbatched else y


def _check_output_padding(output_padding, stride, dilation):
    for op, s, d in zip(output_padding, stride, dilation):
        if op >= s and op >= d:
            raise ValueError(f"output padding must be smaller than either stride or dilation, "
                             f"but got output_padding={list(output_padding)}, "
                             f"stride={list(stride)}, dilation={list(dilation)}")


def conv_transpose2d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    _check_conv_dtypes(input, weight, bias)
    x, unbatched = _batched(input, 2, "conv_transpose2d")
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    dilation, output_padding = _pair(dilation, "dilation"), _pair(output_padding)
    _check_output_padding(output_padding, stride, dilation)
    y = ops_nn.conv_transpose2d(x, weight, stride, padding, dilation, groups, output_padding)
    y = _bias_nd(y, bias, 2)
    return y.squeeze(0) if unbatched else y


def conv_transpose1d(input, weight, bias=None, stride=1, padding=0, output_padding=0,
                     groups=1, dilation=1):
    _check_conv_dtypes(input, weight, bias)
    x, unbatched = _batched(input, 1, "conv_transpose1d")
    (s,), (p,), (d,), (op,) = (_ntuple(v, 1) for v in (stride, padding, dilation,
                                                        output_padding))
    _check_output_padding((op,), (s,), (d,))
    y = ops_nn.conv_transpose2d(x.unsqueeze(2), weight.unsqueeze(2), (1, s), (0, p), (1, d),
                                groups, (0, op))
    y = _bias_nd(y.squeeze(2), bias, 1)
    return y.squeeze(0) if unbatched else y


# ============================================================================ pooling

def _pool_out_size(size, k, s, p, d, ceil_mode):
    """PyTorch's pooling_output_shape: with ceil_mode the last window must start inside
    the input or its left padding."""
    span = size + 2 * p - d * (k - 1) - 1
    out = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (out - 1) * s >= size + p:
        out -= 1
    return out


def _pool_args(input, kernel_size, stride, padding, dilation, name):
    x, unbatched = _batched(input, 2, name)
    k = _pair(kernel_size, "kernel_size")
    s = k if stride is None or (not isinstance(stride, int) and len(stride) == 0) \
        else _pair(stride, "stride")
    p, d = _pair(padding, "padding"), _pair(dilation, "dilation")
    if 0 in s:
        raise at_user_line(RuntimeError, "stride should not be zero")
    # PyTorch checks the padding against the effective (dilated) kernel, then against
    # the kernel itself: with dilation the second, stricter check is the one that bites
    for kk, pp, dd in zip(k, p, d):
        if pp > ((kk - 1) * dd + 1) // 2:
            raise at_user_line(RuntimeError, f"pad should be at most half of effective kernel "
                                             f"size, but got pad={pp}, kernel_size={kk} and "
                                             f"dilation={dd}")
    if p[0] > k[0] // 2 or p[1] > k[1] // 2:
        raise at_user_line(RuntimeError, f"pad should be smaller than or equal to half of kernel "
                                         f"size, but got padW = {p[1]}, padH = {p[0]}, "
                                         f"kW = {k[1]}, kH = {k[0]}")
    return x, unbatched, k, s, p, d


def _tiles(x, k, out):
    """Non-overlapping windows (stride == kernel, no padding or dilation) as one view:
    x cut to whole tiles, reshaped to [N, C, Ho, kh, Wo, kw] and permuted to
    [N, C, Ho, Wo, kh*kw]. Movement ops only, so the gradient is movement ops too: one
    fused elementwise kernel, where strided slices give a sum of interleaved pads."""
    N, C = x.shape[:2]
    (kh, kw), (Ho, Wo) = k, out
    if x.shape[2:] != (Ho * kh, Wo * kw):
        x = x._slice((0, 0, 0, 0), (N, C, Ho * kh, Wo * kw), (1, 1, 1, 1))
    t = x.reshape(N, C, Ho, kh, Wo, kw).permute(0, 1, 2, 4, 3, 5)
    return t.reshape(N, C, Ho, Wo, kh * kw)


def _windows(x, k, s, p, d, ceil_mode, fill):
    """(windows, output size): the windows stacked as [N, C, Ho, Wo, kh*kw], padded with
    `fill` (None: zeros); window i*kw + j holds, at output pixel (y, x), the input at
    (y*s - p + i*d, x*s - p + j*d)."""
    N, C, H, W = x.shape
    out = [_pool_out_size(n, kk, ss, pp, dd, ceil_mode)
           for n, kk, ss, pp, dd in zip((H, W), k, s, p, d)]
    if out[0] < 1 or out[1] < 1:
        raise at_user_line(ShapeError, f"Given input size {list(x.shape[1:])}, the calculated "
                                       f"output size {out} is too small")
    extra = [max(0, (o - 1) * ss + dd * (kk - 1) + 1 - (n + 2 * pp))
             for o, n, kk, ss, pp, dd in zip(out, (H, W), k, s, p, d)]
    if tuple(k) == tuple(s) and not any(p) and tuple(d) == (1, 1) and not any(extra):
        return _tiles(x, k, out), out
    low = (0, 0, p[0], p[1])
    high = (0, 0, p[0] + extra[0], p[1] + extra[1])
    if any(low) or any(high):
        xp = x._pad(low, high, (0,) * 4)
        if fill is not None:
            inside = ones_like(x, dtype=dt.bool_)._pad(low, high, (0,) * 4)
            with literal_scalars():
                xp = T.where(inside, xp, float(fill))
    else:
        xp = x
    views = []
    for i in range(k[0]):
        for j in range(k[1]):
            a, b = i * d[0], j * d[1]
            views.append(xp._slice((0, 0, a, b),
                                   (N, C, a + (out[0] - 1) * s[0] + 1,
                                    b + (out[1] - 1) * s[1] + 1),
                                   (1, 1, s[0], s[1])))
    return T.stack(views, -1), out


def max_pool2d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    x, unbatched, k, s, p, d = _pool_args(input, kernel_size, stride, padding, dilation,
                                          "max_pool2d")
    stacked, (Ho, Wo) = _windows(x, k, s, p, d, ceil_mode, -math.inf)   # [N, C, Ho, Wo, K]
    # PyTorch walks the window taking a value that is greater than the max so far or is
    # NaN: the first maximum wins ties, and the last NaN wins a window holding any
    # (argmax alone would pick the first NaN).
    positions = T.arange_like(stacked.shape[-1])
    if any(p) or ceil_mode:
        # a window may hold padding: PyTorch only ever picks an input position, so in a
        # window whose inputs are all -inf the first input, not the padding before it,
        # takes the gradient (and return_indices names it)
        plane = ones((1, 1) + tuple(x.shape[2:]), dtype=x.dtype)
        real = _windows(plane, k, s, p, d, ceil_mode, None)[0] > 0   # [1, 1, Ho, Wo, K]
        top = stacked.amax(-1, keepdim=True)
        first_max = (real & (stacked == top)).to(dt.uint8).argmax(-1, keepdim=True)
    else:
        first_max = stacked.argmax(-1, keepdim=True)
    with literal_scalars():
        last_nan = T.where(stacked.isnan(), positions, -1).amax(-1, keepdim=True)
        winner = T.where(last_nan >= 0, last_nan, first_max)
        pick = positions == winner
        out = T.where(pick, stacked, zeros_like(stacked)).sum(-1)
    if return_indices:
        # position of the winner in the flattened input plane, as PyTorch reports it
        kidx = winner.squeeze(-1)
        rows = T.arange_like(Ho).reshape(Ho, 1) * s[0] - p[0] + (kidx // k[1]) * d[0]
        cols = T.arange_like(Wo) * s[1] - p[1] + (kidx % k[1]) * d[1]
        idx = rows * x.shape[3] + cols
        return (out.squeeze(0), idx.squeeze(0)) if unbatched else (out, idx)
    return out.squeeze(0) if unbatched else out


def max_pool1d(input, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               return_indices=False):
    x, unbatched = _batched(input, 1, "max_pool1d")
    (k,), (p,), (d,) = _ntuple(kernel_size, 1), _ntuple(padding, 1), _ntuple(dilation, 1)
    s = k if stride is None else _ntuple(stride, 1)[0]
    r = max_pool2d(x.unsqueeze(2), (1, k), (1, s), (0, p), (1, d), ceil_mode, return_indices)
    if return_indices:
        out, idx = r[0].squeeze(2), r[1].squeeze(2)
        return (out.squeeze(0), idx.squeeze(0)) if unbatched else (out, idx)
    r = r.squeeze(2)
    return r.squeeze(0) if unbatched else r


def _avg_divisor(H, W, out, k, s, p, count_include_pad):
    """PyTorch's per-window divisor: the window clipped to the padded input (or to the
    input itself without count_include_pad)."""
    div = np.zeros(out, dtype=np.float64)
    for oy in range(out[0]):
        for ox in range(out[1]):
            y0, x0 = oy * s[0] - p[0], ox * s[1] - p[1]
            y1, x1 = min(y0 + k[0], H + p[0]), min(x0 + k[1], W + p[1])
            size = (y1 - y0) * (x1 - x0)
            if not count_include_pad:
                size = (min(y1, H) - max(y0, 0)) * (min(x1, W) - max(x0, 0))
            div[oy, ox] = size
    return div


def avg_pool2d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, divisor_override=None):
    x, unbatched, k, s, p, d = _pool_args(input, kernel_size, stride, padding, 1,
                                          "avg_pool2d")
    stacked, out = _windows(x, k, s, p, d, ceil_mode, None)
    total = stacked.sum(-1) if stacked.shape[-1] > 1 else stacked.squeeze(-1)
    if divisor_override is not None and divisor_override == 0:
        raise at_user_line(RuntimeError, "divisor must be not zero")
    if divisor_override:
        divisor = divisor_override
    else:
        div = _avg_divisor(x.shape[2], x.shape[3], out, k, s, p, count_include_pad)
        divisor = int(div.flat[0]) if (div == div.flat[0]).all() else \
            tensor(div, dtype=x.dtype if x.dtype.is_floating else dt.int64)
    with literal_scalars():
        if x.dtype.is_floating:
            y = total / (float(divisor) if not isinstance(divisor, Tensor) else divisor)
        else:   # PyTorch's integer average truncates toward zero, in the input's dtype
            y = T.div(total, divisor, rounding_mode="trunc")._cast(x.dtype)
    return y.squeeze(0) if unbatched else y


def avg_pool1d(input, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True):
    x, unbatched = _batched(input, 1, "avg_pool1d")
    (k,), (p,) = _ntuple(kernel_size, 1), _ntuple(padding, 1)
    s = k if stride is None else _ntuple(stride, 1)[0]
    y = avg_pool2d(x.unsqueeze(2), (1, k), (1, s), (0, p), ceil_mode, count_include_pad)
    y = y.squeeze(2)
    return y.squeeze(0) if unbatched else y


def _adaptive_avg_dim(x, dim, out):
    """Average x along `dim` into `out` bins [floor(i*n/out), ceil((i+1)*n/out))."""
    n = x.shape[dim]
    if out == n:
        return x
    shape = tuple(x.shape)
    if out == 0:   # an empty output along dim, as PyTorch gives
        return x._slice([0] * x.ndim, shape[:dim] + (0,) + shape[dim + 1:], [1] * x.ndim)
    if n % out == 0:
        return x.reshape(shape[:dim] + (out, n // out) + shape[dim + 1:]).mean(dim + 1)
    bins = np.zeros((out, n), dtype=np.float64)
    for i in range(out):
        a, b = (i * n) // out, -((-(i + 1) * n) // out)
        bins[i, a:b] = 1.0 / (b - a)
    m = tensor(bins, dtype=x.dtype)
    moved = x.transpose(dim, -1)
    return T.matmul(moved, m.t()).transpose(dim, -1)


def adaptive_avg_pool2d(input, output_size):
    x, unbatched = _batched(input, 2, "adaptive_avg_pool2d")
    if isinstance(output_size, numbers.Integral):
        output_size = (output_size, output_size)
    if len(output_size) != 2:
        raise at_user_line(RuntimeError, "adaptive_avg_pool2d: output_size must be 2")
    oh, ow = (x.shape[2 + k] if o is None else int(o) for k, o in enumerate(output_size))
    if oh == 1 and ow == 1:
        y = x.mean((2, 3), keepdim=True)
    else:
        y = _adaptive_avg_dim(_adaptive_avg_dim(x, 2, oh), 3, ow)
    return y.squeeze(0) if unbatched else y


def adaptive_avg_pool1d(input, output_size):
    x, unbatched = _batched(input, 1, "adaptive_avg_pool1d")
    (o,) = _ntuple(output_size, 1)
    y = _adaptive_avg_dim(x, 2, o)
    return y.squeeze(0) if unbatched else y


# ============================================================================ normalization

def batch_norm(input, running_mean, running_var, weight=None, bias=None, training=False,
               momentum=0.1, eps=1e-5):
    """Normalise over every dim but 1. In training, batch statistics are used and the
    running buffers, if given, are updated in place (momentum may be a float or a 0-d
    tensor; running_var gets the unbiased variance)."""
    if input.ndim < 2:
        raise at_user_line(ShapeError, f"batch_norm: expected at least 2-d input, got "
                                       f"{list(input.shape)}")
    C = input.shape[1]
    _check_norm_dtypes("batch_norm", input, running_mean=running_mean, running_var=running_var,
                       weight=weight, bias=bias)
    # PyTorch's check and message; without it a mismatch surfaces as a broadcast error
    # deep inside the normalisation
    for name, t in (("running_mean", running_mean), ("running_var", running_var),
                    ("weight", weight), ("bias", bias)):
        if t is not None and t.numel() != C:
            raise at_user_line(ShapeError, f"{name} should contain {C} elements not "
                                           f"{t.numel()} (input of size "
                                           f"{list(input.shape)}: dim 1 holds the features)")
    dims = (0,) + tuple(range(2, input.ndim))
    shape = (1, C) + (1,) * (input.ndim - 2)
    input, weight, bias, out_dtype = _norm_operands(input, weight, bias)
    if training:
        n = input.numel() // C
        if n <= 1:
            raise ValueError(f"Expected more than 1 value per channel when training, got "
                             f"input size {list(input.shape)}")
        mean = input.mean(dims, keepdim=True)
        centered = input - mean
        var = (centered * centered).mean(dims, keepdim=True)
        _update_running_stats(running_mean, running_var, lambda: mean.detach().reshape(C),
                              lambda: var.detach().reshape(C), n, momentum)
        return _scale_shift(centered * T.rsqrt(var + eps), weight, bias, shape)._cast(out_dtype)
    return _by_running_stats(input, running_mean, running_var, weight, bias, eps, shape,
                             "batch_norm: running_mean and running_var are required when "
                             "not training")._cast(out_dtype)


def _update_running_stats(running_mean, running_var, batch_mean, batch_var, n, momentum):
    """running = (1 - momentum) * running + momentum * batch statistic, in place and out
    of autograd; the variance enters unbiased (n / (n - 1)). `batch_mean`/`batch_var`
    are callables, so a missing buffer costs nothing."""
    if running_mean is None and running_var is None:
        return
    with no_grad():
        m = momentum
        keep = 1.0 - m if not isinstance(m, Tensor) else 1 - m
        if running_mean is not None:
            running_mean.copy_(running_mean * keep + batch_mean() * m)
        if running_var is not None:
            with literal_scalars():
                unbiased = batch_var() * (n / (n - 1))
            running_var.copy_(running_var * keep + unbiased * m)


def _by_running_stats(input, running_mean, running_var, weight, bias, eps, shape, missing):
    """The batch and instance norms without batch statistics: normalised by the running
    buffers (`missing`: PyTorch's message when they are absent)."""
    if running_mean is None or running_var is None:
        raise ValueError(missing)
    centered = input - running_mean.reshape(shape)
    y = centered * T.rsqrt(running_var.reshape(shape) + eps)
    return _scale_shift(y, weight, bias, shape)


def _scale_shift(y, weight, bias, shape):
    """The per-channel affine of the batch and instance norms."""
    if weight is not None:
        y = y * weight.reshape(shape)
    if bias is not None:
        y = y + bias.reshape(shape)
    return y


def layer_norm(input, normalized_shape, weight=None, bias=None, eps=1e-5):
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(normalized_shape)
    k = len(normalized_shape)
    if tuple(input.shape[input.ndim - k:]) != normalized_shape or input.ndim < k:
        raise at_user_line(ShapeError, f"Given normalized_shape={list(normalized_shape)}, "
                                       f"expected input with shape [*, "
                                       f"{', '.join(map(str, normalized_shape))}], but got "
                                       f"input of size{list(input.shape)}")
    _check_norm_dtypes("layer_norm", input, weight=weight, bias=bias)
    dims = tuple(range(input.ndim - k, input.ndim))
    input, weight, bias, out_dtype = _norm_operands(input, weight, bias)
    mean = input.mean(dims, keepdim=True)
    centered = input - mean
    var = (centered * centered).mean(dims, keepdim=True)
    y = centered * T.rsqrt(var + eps)
    if weight is not None:
        y = y * weight
    if bias is not None:
        y = y + bias
    return y._cast(out_dtype)


def group_norm(input, num_groups, weight=None, bias=None, eps=1e-5):
    """Normalise each sample over groups of num_groups consecutive channels (and all
    spatial positions), then apply the per-channel affine."""
    if input.ndim < 2:
        raise at_user_line(RuntimeError, f"Expected at least 2 dimensions for input tensor "
                                         f"but received {input.ndim}")
    N, C = input.shape[:2]
    if C % num_groups:
        raise at_user_line(RuntimeError, f"Expected number of channels in input to be "
                                         f"divisible by num_groups, but got input of shape "
                                         f"{list(input.shape)} and num_groups={num_groups}")
    # PyTorch's _verify_batch_size on [N * C // G, G, *spatial] (its exact check)
    size = [N * C // num_groups, num_groups] + list(input.shape[2:])
    if size[0] * math.prod(size[2:]) == 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got input "
                         f"size {size}")
    _check_norm_dtypes("group_norm", input, weight=weight, bias=bias)
    for name, t in (("weight", weight), ("bias", bias)):
        if t is not None and t.numel() != C:
            raise at_user_line(RuntimeError, f"Expected {name} to be a vector of size equal "
                                             f"to the number of channels in input, but got "
                                             f"{name} of shape {list(t.shape)} and input of "
                                             f"shape {list(input.shape)}")
    input, weight, bias, out_dtype = _norm_operands(input, weight, bias)
    grouped = input.reshape(N, num_groups, -1)
    mean = grouped.mean(-1, keepdim=True)
    centered = grouped - mean
    var = (centered * centered).mean(-1, keepdim=True)
    y = (centered * T.rsqrt(var + eps)).reshape(input.shape)
    return _scale_shift(y, weight, bias, (1, C) + (1,) * (input.ndim - 2))._cast(out_dtype)


def instance_norm(input, running_mean=None, running_var=None, weight=None, bias=None,
                  use_input_stats=True, momentum=0.1, eps=1e-5):
    """Normalise each (sample, channel) over its spatial positions. With use_input_stats
    and running buffers, the buffers move towards the batch average of the per-instance
    mean and unbiased variance (PyTorch runs batch_norm over N*C channels and averages
    the N copies of each buffer); without use_input_stats the buffers normalise."""
    if input.ndim < 3:
        raise at_user_line(ShapeError, f"instance_norm: expected input of at least 3 dims "
                                       f"(N, C, *), got {list(input.shape)}")
    N, C = input.shape[:2]
    _check_norm_dtypes("instance_norm", input, running_mean=running_mean,
                       running_var=running_var, weight=weight, bias=bias)
    shape = (1, C) + (1,) * (input.ndim - 2)
    input, weight, bias, out_dtype = _norm_operands(input, weight, bias)
    if use_input_stats:
        n = math.prod(input.shape[2:])
        if n <= 1:
            raise ValueError(f"Expected more than 1 spatial element when training, got input "
                             f"size {list(input.shape)}")
        dims = tuple(range(2, input.ndim))
        mean = input.mean(dims, keepdim=True)
        centered = input - mean
        var = (centered * centered).mean(dims, keepdim=True)
        _update_running_stats(running_mean, running_var,
                              lambda: mean.detach().reshape(N, C).mean(0),
                              lambda: var.detach().reshape(N, C).mean(0), n, momentum)
        return _scale_shift(centered * T.rsqrt(var + eps), weight, bias, shape)._cast(out_dtype)
    return _by_running_stats(input, running_mean, running_var, weight, bias, eps, shape,
                             "Expected running_mean and running_var to be defined when "
                             "use_input_stats is false")._cast(out_dtype)


def normalize(input, p=2.0, dim=1, eps=1e-12):
    n = T.norm(input, p, dim, keepdim=True)
    return input / T.clamp_min(n, eps).expand_as(input)


# ============================================================================ attention

def _repeat_heads(t, n):
    """repeat_interleave(n, dim=-3) as a view: [..., H, S, D] -> [..., H*n, S, D]."""
    if n == 1:
        return t
    shape = tuple(t.shape)
    big = shape[:-3] + (shape[-3], n) + shape[-2:]
    return t.unsqueeze(-3).expand(big).reshape(shape[:-3] + (shape[-3] * n,) + shape[-2:])


def scaled_dot_product_attention(query, key, value, attn_mask=None, dropout_p=0.0,
                                 is_causal=False, scale=None, enable_gqa=False):
    L, S = query.shape[-2], key.shape[-2]
    if enable_gqa and query.ndim >= 3 and key.shape[-3] != query.shape[-3]:
        # grouped-query attention: each key/value head serves query.size(-3) //
        # key.size(-3) consecutive query heads (PyTorch's repeat_interleave on dim -3)
        hq, hk = query.shape[-3], key.shape[-3]
        if hq % hk or hq % value.shape[-3]:
            raise at_user_line(RuntimeError, f"scaled_dot_product_attention: the number of "
                                             f"query heads ({hq}) must be a multiple of the "
                                             f"key/value heads ({hk}, {value.shape[-3]})")
        key, value = (_repeat_heads(t, hq // t.shape[-3]) for t in (key, value))
    if is_causal and attn_mask is not None:
        raise at_user_line(RuntimeError, "_scaled_dot_product_attention: Explicit attn_mask "
                                         "should not be set when is_causal=True")
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = T.matmul(query, key.transpose(-2, -1)) * scale
    if is_causal:
        causal = T.arange_like(L).reshape(L, 1) >= T.arange_like(S)
        scores = scores.masked_fill(T.logical_not(causal), -math.inf)
    if attn_mask is not None:
        if attn_mask.dtype is dt.bool_:
            scores = scores.masked_fill(T.logical_not(attn_mask), -math.inf)
        else:
            scores = scores + attn_mask
    weights = safe_softmax(scores, -1)
    if dropout_p > 0.0:
        weights = dropout(weights, dropout_p)
    return T.matmul(weights, value)


def safe_softmax(scores, dim):
    """softmax whose rows of nothing but -inf (every key masked: padding and causal masks
    together) give 0 rather than nan, as PyTorch's attention does since 2.5; a nan there
    would spread to every parameter's gradient. The masked rows are softmaxed as zeros
    (finite, so their gradient is 0, not nan) and then replaced."""
    with literal_scalars():
        dead = T.all(T.eq(scores, -math.inf), dim, keepdim=True)
        weights = T.softmax(T.where(dead, 0.0, scores), dim)
        return T.where(dead, 0.0, weights)


def multi_head_attention_forward(*args, **kwargs):
    from .attention import multi_head_attention_forward as impl
    return impl(*args, **kwargs)


# ============================================================================ losses

def _legacy_reduction(size_average, reduce, reduction):
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else size_average
    reduce = True if reduce is None else reduce
    return "mean" if size_average and reduce else ("sum" if reduce else "none")


def _reduce(loss, reduction):
    if reduction == "none":
        return loss
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    raise ValueError(f"{reduction} is not a valid value for reduction")


def _check_reduction(reduction):
    if reduction not in ("none", "mean", "sum"):
        raise ValueError(f"{reduction} is not a valid value for reduction")


def _warn_broadcast(input, target, name):
    if tuple(target.shape) != tuple(input.shape):
        warnings.warn(f"Using a target size ({target.shape}) that is different to the input "
                      f"size ({input.shape}). This will likely lead to incorrect results due "
                      f"to broadcasting. Please ensure they have the same size.",
                      stacklevel=3)


def mse_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _warn_broadcast(input, target, "mse_loss")
    d = input - target
    loss = d * d
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def l1_loss(input, target, size_average=None, reduce=None, reduction="mean", weight=None):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _warn_broadcast(input, target, "l1_loss")
    loss = T.abs(input - target)
    if weight is not None:
        loss = loss * weight
    return _reduce(loss, reduction)


def _class_targets(input, target, name):
    """Add a batch dim to an unbatched (C,) input; check the target's dtype and shape."""
    if target.dtype.is_floating:
        raise at_user_line(RuntimeError, f"{name}: expected an integer class-index target, "
                                         f"got {target.dtype.name}")
    unbatched = input.ndim == 1
    if unbatched:
        input, target = input.unsqueeze(0), target.reshape(1)
    if input.ndim == 2 and (target.ndim != 1 or target.shape[0] != input.shape[0]):
        raise at_user_line(ValueError, f"Expected input batch_size ({input.shape[0]}) to "
                                       f"match target batch_size "
                                       f"({target.shape[0] if target.ndim else 1}).")
    expected = (input.shape[0],) + tuple(input.shape[2:])
    if tuple(target.shape) != expected:
        raise at_user_line(ShapeError, f"{name}: expected target of shape {list(expected)} "
                                       f"for input {list(input.shape)}, got "
                                       f"{list(target.shape)}")
    return input, target, unbatched


def _check_class_weight(weight, classes, input=None):
    if weight is not None and input is not None and weight.dtype is not input.dtype:
        names = dt.TORCH_NAMES
        raise at_user_line(RuntimeError, f"expected scalar type {names[input.dtype.name]} but "
                                         f"found {names[weight.dtype.name]}")
    if weight is not None and (weight.ndim != 1 or weight.numel() != classes):
        raise at_user_line(RuntimeError, f"weight tensor should be defined either for all "
                                         f"{classes} classes or no classes but got weight "
                                         f"tensor of shape: {list(weight.shape)}")


def _target_weights(target, weight, ignore_index, dtype):
    """Per-element weight: weight[target] (or 1), 0 where target == ignore_index; and the
    target with ignored entries replaced by a valid class."""
    valid = target != ignore_index
    safe = T.where(valid, target, zeros_like(target))
    if weight is None:
        w = valid.to(dtype)
    else:
        w = weight.index_select(0, safe.reshape(-1)).reshape(safe.shape)
        w = T.where(valid, w, zeros_like(w))
    return safe, w, valid


def nll_loss(input, target, weight=None, size_average=None, ignore_index=-100, reduce=None,
             reduction="mean"):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    input, target, unbatched = _class_targets(input, target, "nll_loss")
    _check_class_weight(weight, input.shape[1], input)
    safe, w, valid = _target_weights(target, weight, ignore_index, input.dtype)
    picked = input.gather(1, safe.unsqueeze(1)).squeeze(1)
    loss = T.where(valid, -picked * w, zeros_like(picked))
    if reduction == "none":
        return loss.squeeze(0) if unbatched else loss
    if reduction == "sum":
        return loss.sum()
    return loss.sum() / w.sum()


def _cross_entropy_probs(input, target, weight, reduction, label_smoothing):
    if tuple(target.shape) != tuple(input.shape):
        raise at_user_line(RuntimeError, f"cross_entropy: class-probability target shape "
                                         f"{list(target.shape)} must equal input shape "
                                         f"{list(input.shape)}")
    cdim = 0 if input.ndim == 1 else 1
    C = input.shape[cdim]
    logp = T.log_softmax(input, cdim)
    if label_smoothing > 0.0:
        target = target * (1.0 - label_smoothing) + label_smoothing / C
    prod = logp * target
    if weight is not None:
        prod = prod * weight.reshape((-1,) + (1,) * (input.ndim - cdim - 1))
    if reduction == "none":
        return -prod.sum(cdim)
    if reduction == "sum":
        return -prod.sum()
    with literal_scalars():
        return -prod.sum() / float(input.numel() // C)


def cross_entropy(input, target, weight=None, size_average=None, ignore_index=-100,
                  reduce=None, reduction="mean", label_smoothing=0.0):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must be between 0.0 and 1.0. Got: {label_smoothing}")
    if target.dtype.is_floating:
        if ignore_index >= 0:
            raise at_user_line(RuntimeError, "ignore_index is not supported for floating point "
                                             "target")
        _check_class_weight(weight, input.shape[0 if input.ndim == 1 else 1])
        return _cross_entropy_probs(input, target, weight, reduction, label_smoothing)
    cdim = 0 if input.ndim == 1 else 1
    logp = T.log_softmax(input, cdim)
    nll = nll_loss(logp, target, weight, ignore_index=ignore_index, reduction=reduction)
    if label_smoothing == 0.0:
        return nll
    # PyTorch: (1 - eps) * nll + eps/C * smooth, smooth = -sum_c w_c logp_c, ignored
    # positions zeroed, 'mean' normalised like nll (by the summed target weights)
    C = input.shape[cdim]
    lp, tg, unbatched = _class_targets(logp, target, "cross_entropy")
    _, w, valid = _target_weights(tg, weight, ignore_index, input.dtype)
    if weight is not None:
        lp = lp * weight.reshape((-1,) + (1,) * (lp.ndim - 2))
    smooth = T.where(valid, -lp.sum(1), zeros_like(w))
    if reduction == "none":
        smooth = smooth.squeeze(0) if unbatched else smooth
    elif reduction == "sum":
        smooth = smooth.sum()
    else:
        smooth = smooth.sum() / w.sum()
    return nll * (1.0 - label_smoothing) + smooth * (label_smoothing / C)


def binary_cross_entropy(input, target, weight=None, size_average=None, reduce=None,
                         reduction="mean"):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"Using a target size ({target.shape}) that is different to the "
                         f"input size ({input.shape}) is deprecated. Please ensure they have "
                         f"the same size.")
    input = T._checked_probabilities(input, "all elements of input should be between 0 and 1")
    target = T._checked_probabilities(target,
                                      "all elements of target should be between 0 and 1")
    with literal_scalars():
        # Forward: PyTorch's kernel, each log clamped at -100 so that 0 * log(0) stays
        # finite, and log1p(-x) for log(1 - x) (exact for the small x of a confident
        # negative). Backward: PyTorch's w (x - y) / max(x (1 - x), 1e-12), which is the
        # derivative of the logs wherever x (1 - x) >= 1e-12 and finite elsewhere; the
        # logs' own derivative there is +-inf or NaN (x of exactly 0 or 1, as a
        # saturated float32 sigmoid gives). So the logs read x without gradient where
        # x (1 - x) < 1e-12, and a zero-valued term (x - x) * g carries PyTorch's g.
        x_val = input.detach()
        steep = x_val * (1 - x_val) < 1e-12
        x = T.where(steep, x_val, input)
        log_p = T.clamp_min(T.log(x), -100.0)
        log_q = T.clamp_min(T.log1p(-x), -100.0)
        loss = -(target * log_p + (1 - target) * log_q)
        if input.requires_grad:
            g = T.where(steep, (x_val - target.detach()) / 1e-12, zeros_like(x_val))
            loss = loss + (input - x_val) * g
    if weight is not None:   # PyTorch multiplies in place: the loss keeps input's dtype
        loss = (loss * weight).to(input.dtype)
    return _reduce(loss, reduction)


def binary_cross_entropy_with_logits(input, target, weight=None, size_average=None,
                                     reduce=None, reduction="mean", pos_weight=None):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if tuple(target.shape) != tuple(input.shape):
        raise ValueError(f"Target size ({target.shape}) must be the same as input size "
                         f"({input.shape})")
    # (1 - y) x + lw * softplus(-x), softplus(-x) = -logsigmoid(x); lw = 1 + (pw - 1) y
    with literal_scalars():
        neg_log_sig = -logsigmoid(input)
        if pos_weight is not None:
            neg_log_sig = neg_log_sig * ((pos_weight - 1) * target + 1)
        loss = ((1 - target) * input + neg_log_sig).to(input.dtype)
    if weight is not None:   # PyTorch's kernel works in place: input's dtype throughout
        loss = (loss * weight).to(input.dtype)
    return _reduce(loss, reduction)


def _smooth_l1(diff, beta):
    """PyTorch's kernel: 0.5 d^2 / beta where |d| < beta, |d| - 0.5 beta elsewhere; the
    quadratic branch owns d == 0, so the gradient there is 0."""
    ad = T.abs(diff)
    return T.where(ad < beta, diff * diff * (0.5 / beta), ad - 0.5 * beta)


def smooth_l1_loss(input, target, size_average=None, reduce=None, reduction="mean",
                   beta=1.0):
    _warn_broadcast(input, target, "smooth_l1_loss")
    reduction = _legacy_reduction(size_average, reduce, reduction)
    if beta < 0:
        raise at_user_line(RuntimeError, "smooth_l1_loss does not support negative values "
                                         "for beta.")
    if beta == 0.0:
        return l1_loss(input, target, reduction=reduction)
    _check_reduction(reduction)
    return _reduce(_smooth_l1(input - target, beta), reduction)


def huber_loss(input, target, reduction="mean", delta=1.0, weight=None):
    """0.5 d^2 where |d| < delta, delta (|d| - 0.5 delta) elsewhere: delta times the
    smooth L1 loss with beta = delta (PyTorch's kernel computes it directly)."""
    _warn_broadcast(input, target, "huber_loss")
    if delta <= 0:
        raise at_user_line(RuntimeError, "huber_loss does not support non-positive values "
                                         "for delta.")
    _check_reduction(reduction)
    d = input - target
    ad = T.abs(d)
    with literal_scalars():
        quad = d * d * 0.5
    loss = T.where(ad < delta, quad, (ad - 0.5 * delta) * delta)
    if weight is not None:
        if tuple(weight.shape) != tuple(input.shape):
            raise ValueError("Weights and input must have the same size.")
        loss = loss * weight
    return _reduce(loss, reduction)


def _xlogy_self(t):
    """t * log(t), 0 where t == 0 (torch.xlogy(t, t))."""
    zero = t == 0
    with literal_scalars():
        safe = T.where(zero, ones_like(t), t)
    return T.where(zero, zeros_like(t), t * T.log(safe))


def kl_div(input, target, size_average=None, reduce=None, reduction="mean",
           log_target=False):
    """Pointwise target * (log target - input) (input is a log-probability); 'batchmean'
    sums and divides by the batch size (dim 0)."""
    if size_average is not None or reduce is not None:
        reduction = _legacy_reduction(size_average, reduce, reduction)
    elif reduction == "mean":
        warnings.warn("reduction: 'mean' divides the total loss by both the batch size and "
                      "the support size.'batchmean' divides only by the batch size, and "
                      "aligns with the KL div math definition.'mean' will be changed to "
                      "behave the same as 'batchmean' in the next major release.",
                      stacklevel=2)
    if reduction not in ("none", "mean", "sum", "batchmean"):
        raise ValueError(f"{reduction} is not a valid value for reduction")
    if log_target:
        loss = T.exp(target) * (target - input)
    else:
        loss = _xlogy_self(target) - target * input
    if reduction == "batchmean":
        total = loss.sum()
        if input.ndim == 0:
            return total
        with literal_scalars():
            return total / float(input.shape[0])
    return _reduce(loss, reduction)


def cosine_similarity(x1, x2, dim=1, eps=1e-8):
    """sum(x1 / |x1| * x2 / |x2|) along dim, each norm clamped below at eps; as in
    PyTorch the clamp changes the value only, never the gradient's path."""
    shape = broadcast_shapes(tuple(x1.shape), tuple(x2.shape))
    x1, x2 = x1.expand(shape), x2.expand(shape)

    def norm(x):
        n = T.norm(x, 2, dim, keepdim=True)
        nd = n.detach()
        return n + (T.clamp_min(nd, eps) - nd)

    return ((x1 / norm(x1)) * (x2 / norm(x2))).sum(dim)


def pairwise_distance(x1, x2, p=2.0, eps=1e-6, keepdim=False):
    # PyTorch: norm(x1 - x2 + eps, p) over the last dim
    return T.norm(x1 - x2 + eps, p, -1, keepdim=keepdim)


def cosine_embedding_loss(input1, input2, target, margin=0, size_average=None, reduce=None,
                          reduction="mean"):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if target.ndim > 1:
        raise at_user_line(RuntimeError, "0D or 1D target tensor expected, multi-target not "
                                         "supported")
    expected = target.ndim + 1
    if input1.ndim != expected or input2.ndim != expected:
        raise at_user_line(RuntimeError, f"{target.ndim}D target tensor expects {expected}D "
                                         f"inputs, but got inputs of size "
                                         f"{list(input1.shape)} and {list(input2.shape)}")
    d = input1.ndim - 1
    with literal_scalars():
        # PyTorch's kernel: an epsilon of 1e-12 on each squared magnitude
        prod = (input1 * input2).sum(d)
        mag1 = (input1 * input1).sum(d) + 1e-12
        mag2 = (input2 * input2).sum(d) + 1e-12
        cos = prod / T.sqrt(mag1 * mag2)
        pos = 1 - cos
    neg = T.clamp_min(cos - margin, 0)
    zeros = zeros_like(cos)
    loss = T.where(target == 1, pos, zeros) + T.where(target == -1, neg, zeros)
    return _reduce(loss, reduction)


def margin_ranking_loss(input1, input2, target, margin=0, size_average=None, reduce=None,
                        reduction="mean"):
    reduction = _legacy_reduction(size_average, reduce, reduction)
    _check_reduction(reduction)
    if not input1.ndim == input2.ndim == target.ndim:
        raise at_user_line(RuntimeError, f"margin_ranking_loss : All input tensors should have "
                                         f"same dimension but got sizes: input1: "
                                         f"{tuple(input1.shape)}, input2: "
                                         f"{tuple(input2.shape)}, target: "
                                         f"{tuple(target.shape)} ")
    loss = T.clamp_min(-target * (input1 - input2) + margin, 0)
    return _reduce(loss, reduction)


# ============================================================================ interpolation
# Resampling along one spatial dim is a fixed linear map of that dim: nearest picks rows
# (index_select), linear mixes two neighbours (a matmul with an [out, in] interpolation
# matrix). Both are built from the sizes alone, with PyTorch's index arithmetic done in
# its precision (float32 for float32 input, as its opmath type), so the sampled positions
# are PyTorch's to the bit; the gradient is index_select's / matmul's.

def _interp_scale_np(x_dtype):
    return np.float64 if x_dtype.name == "float64" else np.float32


def _nearest_indices(in_size, out_size, scale):
    """PyTorch's nearest_idx: identity and exact 2x have fast paths, else
    min(floor(i * s), in - 1) with s = 1 / scale_factor (or in / out) as a float."""
    if out_size == in_size:
        return np.arange(out_size, dtype=np.int64)
    if out_size == 2 * in_size:
        return np.arange(out_size, dtype=np.int64) >> 1
    s = np.float32(1.0 / scale) if scale is not None and scale > 0 else \
        np.float32(in_size) / np.float32(out_size)
    src = np.floor(np.arange(out_size, dtype=np.float32) * s).astype(np.int64)
    return np.minimum(src, in_size - 1)


def _linear_matrix(in_size, out_size, scale, align_corners, npd):
    """[out, in] matrix of PyTorch's linear weights: source position src = s * i
    (align_corners) or s * (i + 0.5) - 0.5 clamped at 0; neighbours floor(src) and the
    next one (if inside), weighted 1 - frac and frac."""
    if align_corners:
        s = npd(in_size - 1) / npd(out_size - 1) if out_size > 1 else npd(0)
    else:
        s = npd(1.0 / scale) if scale is not None and scale > 0 else npd(in_size) / npd(out_size)
    idx = np.arange(out_size).astype(npd)
    if align_corners:
        src = s * idx
    else:
        src = np.maximum(s * (idx + npd(0.5)) - npd(0.5), npd(0))
    i0 = src.astype(np.int64)   # src >= 0: truncation is floor
    lam1 = np.clip(src - i0.astype(npd), npd(0), npd(1)).astype(npd)
    lam0 = (npd(1) - lam1).astype(npd)
    i1 = i0 + (i0 < in_size - 1)
    m = np.zeros((out_size, in_size), dtype=npd)
    rows = np.arange(out_size)
    np.add.at(m, (rows, i0), lam0)
    np.add.at(m, (rows, i1), lam1)
    return m


def _along(x, d, fn):
    """Apply fn to x with dim d moved last, then move it back."""
    last = x.ndim - 1
    if d == last:
        return fn(x)
    return fn(x.transpose(d, last)).transpose(d, last)


_INTERP_MODES = ("nearest", "linear", "bilinear", "bicubic", "trilinear", "area",
                 "nearest-exact")


def interpolate(input, size=None, scale_factor=None, mode="nearest", align_corners=None,
                recompute_scale_factor=None, antialias=False):
    if mode in ("nearest", "area", "nearest-exact"):
        if align_corners is not None:
            raise ValueError("align_corners option can only be set with the interpolating "
                             "modes: linear | bilinear | bicubic | trilinear")
    elif align_corners is None:
        align_corners = False
    dim = input.ndim - 2
    if size is not None and scale_factor is not None:
        raise ValueError("only one of size or scale_factor should be defined")
    if size is not None:
        scales = None
        if isinstance(size, (list, tuple)):
            if len(size) != dim:
                raise ValueError(f"Input and output must have the same number of spatial "
                                 f"dimensions, but got input with spatial dimensions of "
                                 f"{list(input.shape[2:])} and output size of {size}. Please "
                                 f"provide input tensor in (N, C, d1, d2, ...,dK) format and "
                                 f"output size in (o1, o2, ...,oK) format.")
            if not all(isinstance(v, numbers.Integral) for v in size):
                raise TypeError(f"expected size to be one of int or Tuple[int] or Tuple[int, "
                                f"int] or Tuple[int, int, int], but got size with types "
                                f"{[type(v) for v in size]}")
            out_size = [int(v) for v in size]
        else:
            out_size = [int(size)] * dim
    elif scale_factor is not None:
        if isinstance(scale_factor, (list, tuple)):
            if len(scale_factor) != dim:
                raise ValueError(f"Input and scale_factor must have the same number of spatial "
                                 f"dimensions, but got input with spatial dimensions of "
                                 f"{list(input.shape[2:])} and scale_factor of shape "
                                 f"{scale_factor}. Please provide input tensor in (N, C, d1, "
                                 f"d2, ...,dK) format and scale_factor in (s1, s2, ...,sK) "
                                 f"format.")
            scales = [float(v) for v in scale_factor]
        else:
            scales = [float(scale_factor)] * dim
        # PyTorch's output size: floor(in * scale), in double precision
        out_size = [int(math.floor(float(n) * s)) for n, s in zip(input.shape[2:], scales)]
    else:
        raise ValueError("either size or scale_factor should be defined")
    if recompute_scale_factor and size is not None:
        raise ValueError("recompute_scale_factor is not meaningful with an explicit size.")
    if recompute_scale_factor or scales is None:
        scales = [None] * dim   # the kernel then uses in / out
    if antialias:
        raise NotImplementedError("graphc: interpolate's antialias option is not supported")
    if mode not in _INTERP_MODES:
        raise NotImplementedError(f"Input Error: Only 3D, 4D and 5D input Tensors supported "
                                  f"(got {input.ndim}D) for the modes: nearest | linear | "
                                  f"bilinear | bicubic | trilinear | area | nearest-exact "
                                  f"(got {mode})")
    needs = {"linear": 3, "bilinear": 4, "trilinear": 5}
    if mode in needs and input.ndim != needs[mode]:
        raise NotImplementedError(f"Got {input.ndim}D input, but {mode} mode needs "
                                  f"{needs[mode]}D input")
    if mode not in ("nearest", "linear", "bilinear", "trilinear") or input.ndim not in (3, 4, 5):
        raise NotImplementedError(f"graphc: interpolate supports modes 'nearest', 'linear', "
                                  f"'bilinear' and 'trilinear' on 3-5 dim input (got mode "
                                  f"{mode!r} on a {input.ndim}-d input)")
    for n, o in zip(input.shape[2:], out_size):
        if n <= 0 or o <= 0:
            raise at_user_line(RuntimeError, f"Input and output sizes should be greater than "
                                             f"0, but got input (spatial) {list(input.shape[2:])}"
                                             f" output {out_size}")
    out = input
    npd = _interp_scale_np(input.dtype)
    for k in range(dim):
        d = 2 + k
        n, o, s = input.shape[d], out_size[k], scales[k]
        if mode == "nearest":
            if o == n:
                continue
            idx = tensor(_nearest_indices(n, o, s), dtype=dt.int64)
            out = out.index_select(d, idx)
        else:
            if o == n and (align_corners or s is None or s == 1.0):
                continue   # the identity map
            m = tensor(_linear_matrix(n, o, s, align_corners, npd), dtype=input.dtype)
            out = _along(out, d, lambda v: T.matmul(v, m.t()))
    return out


def upsample(input, size=None, scale_factor=None, mode="nearest", align_corners=None):
    warnings.warn("`nn.functional.upsample` is deprecated. Use `nn.functional.interpolate` "
                  "instead.", stacklevel=2)
    return interpolate(input, size, scale_factor, mode, align_corners)


def upsample_nearest(input, size=None, scale_factor=None):
    warnings.warn("`nn.functional.upsample_nearest` is deprecated. Use "
                  "`nn.functional.interpolate` instead.", stacklevel=2)
    return interpolate(input, size, scale_factor, mode="nearest")


def upsample_bilinear(input, size=None, scale_factor=None):
    warnings.warn("`nn.functional.upsample_bilinear` is deprecated. Use "
                  "`nn.functional.interpolate` instead.", stacklevel=2)
    return interpolate(input, size, scale_factor, mode="bilinear", align_corners=True)
