"""`nn.init`: PyTorch's initialisation schemes, with its fan computations and gains.

Every function fills its tensor in place under `no_grad` (a Parameter stays a leaf) and
returns it. Random fills draw from graphc's counter-based generator (the default one, or
`generator=`), so they are reproducible under `graphc.manual_seed` and stay lazy: the
values are computed with the next realization, together with everything else pending.
"""
from __future__ import annotations

import math
import numbers

import numpy as np

from .. import autograd
from .. import tensor_ops as T
from ..tensor import Tensor, eye, full, rand, randn, tensor


def calculate_gain(nonlinearity, param=None):
    linear_fns = ["linear", "conv1d", "conv2d", "conv3d", "conv_transpose1d",
                  "conv_transpose2d", "conv_transpose3d"]
    if nonlinearity in linear_fns or nonlinearity == "sigmoid":
        return 1
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        if param is None:
            negative_slope = 0.01
        elif not isinstance(param, bool) and isinstance(param, numbers.Number):
            negative_slope = param
        else:
            raise ValueError(f"negative_slope {param} not a valid number")
        return math.sqrt(2.0 / (1 + negative_slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise ValueError(f"Unsupported nonlinearity {nonlinearity}")


def _calculate_fan_in_and_fan_out(tensor):
    if tensor.dim() < 2:
        raise ValueError("Fan in and fan out can not be computed for tensor with fewer than "
                         "2 dimensions")
    receptive_field = 1
    for s in tensor.shape[2:]:
        receptive_field *= s
    return tensor.shape[1] * receptive_field, tensor.shape[0] * receptive_field


def _calculate_correct_fan(tensor, mode):
    mode = mode.lower()
    valid_modes = ["fan_in", "fan_out"]
    if mode not in valid_modes:
        raise ValueError(f"Mode {mode} not supported, please use one of {valid_modes}")
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    return fan_in if mode == "fan_in" else fan_out


def _fill(tensor: Tensor, value: Tensor) -> Tensor:
    with autograd.no_grad():
        return tensor.copy_(value)


def uniform_(tensor, a=0.0, b=1.0, generator=None):
    return _fill(tensor, T.uniform_between(tensor.shape, a, b, tensor.dtype, generator))


def normal_(tensor, mean=0.0, std=1.0, generator=None):
    z = randn(tensor.shape, dtype=tensor.dtype, generator=generator)
    return _fill(tensor, z * float(std) + float(mean))


def constant_(tensor, val):
    return _fill(tensor, full(tensor.shape, val, dtype=tensor.dtype))


def ones_(tensor):
    with autograd.literal_scalars():
        return constant_(tensor, 1)


def zeros_(tensor):
    with autograd.literal_scalars():
        return constant_(tensor, 0)


def eye_(tensor):
    if tensor.ndim != 2:
        raise ValueError("Only tensors with 2 dimensions are supported")
    return _fill(tensor, eye(*tensor.shape, dtype=tensor.dtype))


def xavier_uniform_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    a = math.sqrt(3.0) * std
    return uniform_(tensor, -a, a, generator)


def xavier_normal_(tensor, gain=1.0, generator=None):
    fan_in, fan_out = _calculate_fan_in_and_fan_out(tensor)
    std = gain * math.sqrt(2.0 / float(fan_in + fan_out))
    return normal_(tensor, 0.0, std, generator)


def kaiming_uniform_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    if 0 in tuple(tensor.shape):
        return tensor  # PyTorch warns and leaves an empty tensor alone
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    return uniform_(tensor, -bound, bound, generator)


def kaiming_normal_(tensor, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    if 0 in tuple(tensor.shape):
        return tensor
    fan = _calculate_correct_fan(tensor, mode)
    std = calculate_gain(nonlinearity, a) / math.sqrt(fan)
    return normal_(tensor, 0.0, std, generator)


def _erfinv(y):
    """erf^-1 on (-1, 1) from graphc ops: Winitzki's closed-form approximation (relative
    error ~2e-3) refined by two Newton steps on erf, which converge quadratically from
    there to float32 precision."""
    a = 0.147
    ln = T.log1p(-y * y)
    t = 2.0 / (math.pi * a) + ln * 0.5
    x = T.sign(y) * T.sqrt(T.sqrt(t * t - ln * (1.0 / a)) - t)
    for _ in range(2):
        x = x - (T.erf(x) - y) * (math.sqrt(math.pi) / 2.0) * T.exp(x * x)
    return x


def trunc_normal_(tensor, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Normal(mean, std) values conditioned on [a, b], by PyTorch's method: uniform
    draws between the normal CDF's values at the bounds, mapped back through the
    inverse CDF, then clamped to [a, b] (rounding at the very edges)."""
    def cdf(x):
        return (1.0 + math.erf(x / math.sqrt(2.0))) / 2.0

    lo, hi = cdf((a - mean) / std), cdf((b - mean) / std)
    with autograd.no_grad():
        u = rand(tensor.shape, dtype=tensor.dtype, generator=generator)
        y = u * float(2 * hi - 2 * lo) + float(2 * lo - 1)
        # keep the inverse CDF's argument inside the open interval (-1, 1)
        edge = 1.0 - float(np.finfo(tensor.dtype.np).eps)
        y = T.clamp(y, -edge, edge)
        z = _erfinv(y) * float(std * math.sqrt(2.0)) + float(mean)
        return _fill(tensor, T.clamp(z, float(a), float(b)))


def orthogonal_(tensor, gain=1, generator=None):
    """A (semi-)orthogonal matrix from the QR factorization of normal draws, signs fixed
    so the factorization is unique (PyTorch's method). The draws come from graphc's
    generator (reproducible under graphc.manual_seed); the QR factorization runs in numpy
    on them, once, at initialisation: graphc's IR has no linear-algebra decompositions."""
    if tensor.ndim < 2:
        raise ValueError("Only tensors with 2 or more dimensions are supported")
    if tensor.numel() == 0:
        return tensor
    rows = tensor.shape[0]
    cols = tensor.numel() // rows
    with autograd.no_grad():
        flat = randn((rows, cols), dtype=tensor.dtype, generator=generator).numpy()
    flat = flat.astype(np.float64)
    if rows < cols:
        flat = flat.T
    q, r = np.linalg.qr(flat)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    value = tensor_from(q.reshape(tuple(tensor.shape)) * gain, tensor)
    return _fill(tensor, value)


def dirac_(tensor, groups=1):
    """The identity of a convolution: each output channel of each group passes its input
    channel through the kernel's centre."""
    if tensor.ndim not in (3, 4, 5):
        raise ValueError("Only tensors with 3, 4, or 5 dimensions are supported")
    sizes = tuple(tensor.shape)
    if sizes[0] % groups != 0:
        raise ValueError("dim 0 must be divisible by groups")
    out_per_group = sizes[0] // groups
    value = np.zeros(sizes)
    centre = tuple(s // 2 for s in sizes[2:])
    for g in range(groups):
        for d in range(min(out_per_group, sizes[1])):
            value[(g * out_per_group + d, d) + centre] = 1
    return _fill(tensor, tensor_from(value, tensor))


def tensor_from(values, like):
    """`values` (a numpy array) as a tensor of `like`'s dtype."""
    return tensor(values, dtype=like.dtype)
