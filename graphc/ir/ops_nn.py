"""Primitive ops for neural-network layers: 2-d convolution and its transpose.

Both ops take NCHW inputs and PyTorch's weight layouts and carry the attributes
`stride`, `padding`, `dilation` (pairs of ints, padding symmetric and zero-filled),
`groups` (int); `conv_transpose2d` adds `output_padding` (pair).

  conv2d(x[N,C,H,W], w[O,C/g,kh,kw])            -> y[N,O,Ho,Wo]
      Ho = (H + 2p - d(kh-1) - 1) // s + 1
  conv_transpose2d(x[N,Ci,H,W], w[Ci,Co/g,kh,kw]) -> y[N,Co,Ho,Wo]
      Ho = (H-1)s - 2p + d(kh-1) + output_padding + 1

`conv_transpose2d(., w)` is by definition the adjoint (transpose) of the linear map
`conv2d(., w)` with the same attributes, which is what makes each op the other's input
gradient. Weight gradients are convolutions too (`conv2d_weight_grad`), so every VJP
here is built from these two ops plus movement ops: gradients of gradients work.

Everything else (conv1d, pooling, padding modes) is written in graphc.nn.functional
with these ops and the built-in movement/reduction ops.
"""
from __future__ import annotations

import numpy as np

from . import ops as _builtin_ops  # noqa: F401  (registry.py loads the built-ins only
#                                        when the registry is empty: register them first)
from .errors import DTypeError, ShapeError, at_user_line
from .graph import TensorType
from .registry import FusionClass as F, OpDef, register

_CONV_ATTRS = ("stride", "padding", "dilation", "groups")


def _check_pair(op, name, v, minimum):
    if len(v) != 2 or any(not isinstance(a, int) or a < minimum for a in v):
        raise at_user_line(ShapeError, f"{op}: {name} must be two ints >= {minimum}, "
                                       f"got {list(v)}")


def _check_operands(op, x, w, attrs):
    if x.ndim != 4 or w.ndim != 4:
        raise at_user_line(ShapeError, f"{op}: expected a 4-d input and a 4-d weight, got "
                                       f"input {list(x.shape)} and weight {list(w.shape)}")
    if x.dtype is not w.dtype:
        raise at_user_line(DTypeError, f"{op}: input dtype {x.dtype.name} and weight dtype "
                                       f"{w.dtype.name} differ")
    if not x.dtype.is_floating:
        raise at_user_line(DTypeError, f"{op}: expected floating-point operands, got "
                                       f"{x.dtype.name}")
    _check_pair(op, "stride", attrs["stride"], 1)
    _check_pair(op, "padding", attrs["padding"], 0)
    _check_pair(op, "dilation", attrs["dilation"], 1)
    g = attrs["groups"]
    if not isinstance(g, int) or g < 1:
        raise at_user_line(ShapeError, f"{op}: groups must be a positive int, got {g}")


def conv_out_size(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def conv_transpose_out_size(size, k, s, p, d, op):
    return (size - 1) * s - 2 * p + d * (k - 1) + op + 1


def _conv2d_infer(types, attrs):
    x, w = types
    _check_operands("conv2d", x, w, attrs)
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    g = attrs["groups"]
    if C != Cg * g or O % g:
        raise at_user_line(ShapeError, f"conv2d: weight {list(w.shape)} with groups={g} "
                                       f"expects {Cg * g} input channels (and out channels "
                                       f"divisible by {g}), but input {list(x.shape)} has {C}")
    (sh, sw), (ph, pw), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    Ho, Wo = conv_out_size(H, kh, sh, ph, dh), conv_out_size(W, kw, sw, pw, dw)
    if Ho < 1 or Wo < 1:
        raise at_user_line(ShapeError, f"conv2d: calculated padded input size per channel: "
                                       f"({H + 2 * ph} x {W + 2 * pw}). Kernel size: "
                                       f"({dh * (kh - 1) + 1} x {dw * (kw - 1) + 1}). Kernel "
                                       f"size can't be greater than actual input size")
    return TensorType((N, O, Ho, Wo), x.dtype)


def _conv_transpose2d_infer(types, attrs):
    x, w = types
    _check_operands("conv_transpose2d", x, w, attrs)
    _check_pair("conv_transpose2d", "output_padding", attrs["output_padding"], 0)
    N, Ci, H, W = x.shape
    wi, Cog, kh, kw = w.shape
    g = attrs["groups"]
    if Ci != wi or Ci % g:
        raise at_user_line(ShapeError, f"conv_transpose2d: weight {list(w.shape)} expects "
                                       f"{wi} input channels (divisible by groups={g}), but "
                                       f"input {list(x.shape)} has {Ci}")
    (sh, sw), (ph, pw), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    oph, opw = attrs["output_padding"]
    Ho = conv_transpose_out_size(H, kh, sh, ph, dh, oph)
    Wo = conv_transpose_out_size(W, kw, sw, pw, dw, opw)
    if Ho < 1 or Wo < 1:
        raise at_user_line(ShapeError, f"conv_transpose2d: input {list(x.shape)} and weight "
                                       f"{list(w.shape)} give a non-positive output size "
                                       f"({Ho} x {Wo})")
    return TensorType((N, Cog * g, Ho, Wo), x.dtype)


# ---------------------------------------------------------------------------- numpy reference

def _kernel_views(xp, kh, kw, stride, dilation, Ho, Wo):
    """xp[N,C,Hp,Wp] -> the strided windows as [N, C, Ho, Wo, kh, kw] (a view)."""
    (sh, sw), (dh, dw) = stride, dilation
    win = np.lib.stride_tricks.sliding_window_view(
        xp, ((kh - 1) * dh + 1, (kw - 1) * dw + 1), axis=(2, 3))
    return win[:, :, ::sh, ::sw, ::dh, ::dw][:, :, :Ho, :Wo]


def _conv2d_np(attrs, x, w):
    N, C, H, W = x.shape
    O, Cg, kh, kw = w.shape
    G = attrs["groups"]
    (ph, pw) = attrs["padding"]
    Ho = conv_out_size(H, kh, attrs["stride"][0], ph, attrs["dilation"][0])
    Wo = conv_out_size(W, kw, attrs["stride"][1], pw, attrs["dilation"][1])
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    win = _kernel_views(xp, kh, kw, attrs["stride"], attrs["dilation"], Ho, Wo)
    # im2col per group: [G, N*Ho*Wo, Cg*kh*kw] @ [G, Cg*kh*kw, O/G]
    cols = win.reshape(N, G, Cg, Ho, Wo, kh, kw).transpose(1, 0, 3, 4, 2, 5, 6)
    cols = cols.reshape(G, N * Ho * Wo, Cg * kh * kw)
    wm = w.reshape(G, O // G, Cg * kh * kw).transpose(0, 2, 1)
    y = np.matmul(cols, wm).reshape(G, N, Ho, Wo, O // G)
    return np.ascontiguousarray(y.transpose(1, 0, 4, 2, 3).reshape(N, O, Ho, Wo))


def _conv_transpose2d_np(attrs, x, w):
    N, Ci, H, W = x.shape
    _, Cog, kh, kw = w.shape
    G = attrs["groups"]
    (sh, sw), (ph, pw), (dh, dw) = attrs["stride"], attrs["padding"], attrs["dilation"]
    oph, opw = attrs["output_padding"]
    Ho = conv_transpose_out_size(H, kh, sh, ph, dh, oph)
    Wo = conv_transpose_out_size(W, kw, sw, pw, dw, opw)
    Cig = Ci // G
    # col2im: every input pixel scatters weight * value into a kh x kw patch.
    xm = x.reshape(N, G, Cig, H, W).transpose(1, 0, 3, 4, 2).reshape(G, N * H * W, Cig)
    cols = np.matmul(xm, w.reshape(G, Cig, Cog * kh * kw))
    cols = cols.reshape(G, N, H, W, Cog, kh, kw).transpose(1, 0, 4, 5, 6, 2, 3)
    full = np.zeros((N, G, Cog, Ho + 2 * ph, Wo + 2 * pw), x.dtype)
    for i in range(kh):
        for j in range(kw):
            full[:, :, :, i * dh:i * dh + (H - 1) * sh + 1:sh,
                 j * dw:j * dw + (W - 1) * sw + 1:sw] += cols[:, :, :, i, j]
    return np.ascontiguousarray(full[:, :, :, ph:ph + Ho, pw:pw + Wo]).reshape(N, G * Cog, Ho, Wo)


# ---------------------------------------------------------------------------- graph builders

def _tensor_cls():
    from ..tensor import Tensor
    return Tensor


def conv2d(x, w, stride, padding, dilation, groups):
    return _tensor_cls()._apply("conv2d", x, w, stride=tuple(stride), padding=tuple(padding),
                                dilation=tuple(dilation), groups=int(groups))


def conv_transpose2d(x, w, stride, padding, dilation, groups, output_padding):
    return _tensor_cls()._apply("conv_transpose2d", x, w, stride=tuple(stride),
                                padding=tuple(padding), dilation=tuple(dilation),
                                groups=int(groups), output_padding=tuple(output_padding))


def conv2d_weight_grad(x, gy, weight_shape, stride, padding, dilation, groups):
    """d(sum(gy * conv2d(x, w)))/dw, as a convolution of x with gy.

    dw[o, c, i, j] = sum_{n,y,x} gy[n,o,y,x] * xpad[n, g(o)*Cg + c, y*s + i*d, x*s + j*d]:
    a conv2d whose batch is the per-group input channel c, whose channels are (group,
    sample) pairs and whose kernel is gy, with the roles of stride and dilation swapped.
    The result can be larger than the kernel (when the last stride does not land on the
    padded edge); the extra rows are cut off."""
    N, C, H, W = x.shape
    O = gy.shape[1]
    G = groups
    Cg = C // G
    kh, kw = weight_shape[2], weight_shape[3]
    xt = x.reshape(N, G, Cg, H, W).permute(2, 1, 0, 3, 4).reshape(Cg, G * N, H, W)
    gt = gy.permute(1, 0, 2, 3)                                  # [O, N, Ho, Wo]
    r = conv2d(xt, gt, dilation, padding, stride, G)             # [Cg, O, kh', kw']
    if tuple(r.shape[2:]) != (kh, kw):
        r = r._slice((0, 0, 0, 0), (Cg, O, kh, kw), (1, 1, 1, 1))
    return r.permute(1, 0, 2, 3)


def _crop_to(t, shape):
    if tuple(t.shape) == tuple(shape):
        return t
    return t._slice((0,) * t.ndim, tuple(shape), (1,) * t.ndim)


def _attrs(c):
    a = c.attrs
    return a["stride"], a["padding"], a["dilation"], a["groups"]


def _conv2d_vjp(c, g):
    x, w = c.inputs
    stride, padding, dilation, groups = _attrs(c)
    out_pad = tuple(x.shape[2 + k] - conv_transpose_out_size(g.shape[2 + k], w.shape[2 + k],
                                                             stride[k], padding[k],
                                                             dilation[k], 0)
                    for k in range(2))
    gx = conv_transpose2d(g, w, stride, padding, dilation, groups, out_pad)
    gw = conv2d_weight_grad(x, g, w.shape, stride, padding, dilation, groups)
    return gx, gw


def _conv_transpose2d_vjp(c, g):
    x, w = c.inputs
    stride, padding, dilation, groups = _attrs(c)
    # the adjoint of the adjoint is the convolution itself; it may see extra rows that
    # output_padding >= stride appended, which belong to no input pixel
    gx = _crop_to(conv2d(g, w, stride, padding, dilation, groups), x.shape)
    gw = conv2d_weight_grad(g, x, w.shape, stride, padding, dilation, groups)
    return gx, gw


register(OpDef("conv2d", _conv2d_infer, _conv2d_np, _conv2d_vjp, F.OPAQUE, 2,
               "2-d cross-correlation, NCHW input, OIHW weight (PyTorch's conv2d)"))
register(OpDef("conv_transpose2d", _conv_transpose2d_infer, _conv_transpose2d_np,
               _conv_transpose2d_vjp, F.OPAQUE, 2,
               "the adjoint of conv2d (PyTorch's conv_transpose2d), weight [Ci, Co/g, kh, kw]"))
