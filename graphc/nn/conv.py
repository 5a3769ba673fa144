"""`Conv1d`, `Conv2d`, `ConvTranspose1d`, `ConvTranspose2d` with PyTorch's parameter
shapes, padding modes and default init (weight kaiming_uniform_(a=sqrt(5)), bias
U(-1/sqrt(fan_in), 1/sqrt(fan_in)); for transposed convs fan_in is computed from the
weight's [in, out/groups, k...] layout, as PyTorch does)."""
from __future__ import annotations

import math

from ..tensor import empty
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter


class _ConvNd(Module):
    _nd = 2
    _transposed = False

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 dilation=1, groups=1, bias=True, padding_mode="zeros", device=None,
                 dtype=None, *, output_padding=0):
        super().__init__()
        nd = self._nd
        if groups <= 0:
            raise ValueError("groups must be a positive integer")
        if in_channels % groups:
            raise ValueError("in_channels must be divisible by groups")
        if out_channels % groups:
            raise ValueError("out_channels must be divisible by groups")
        if padding_mode not in ("zeros", "reflect", "replicate", "circular"):
            raise ValueError(f"padding_mode must be one of ['zeros', 'reflect', 'replicate', "
                             f"'circular'], but got padding_mode='{padding_mode}'")
        if isinstance(padding, str):
            if padding not in ("same", "valid"):
                raise ValueError(f"Invalid padding string {padding!r}, should be one of "
                                 f"['same', 'valid']")
            if padding == "same" and any(s != 1 for s in F._ntuple(stride, nd)):
                raise ValueError("padding='same' is not supported for strided convolutions")
        if self._transposed and padding_mode != "zeros":
            raise ValueError(f'Only "zeros" padding mode is supported for '
                             f'{type(self).__name__}')
        self.in_channels = in_channels
        self.out_channels = out_channels
        self.kernel_size = F._ntuple(kernel_size, nd, "kernel_size")
        self.stride = F._ntuple(stride, nd, "stride")
        self.padding = padding if isinstance(padding, str) else F._ntuple(padding, nd)
        self.dilation = F._ntuple(dilation, nd, "dilation")
        self.output_padding = F._ntuple(output_padding, nd)
        self.transposed = self._transposed
        self.groups = groups
        self.padding_mode = padding_mode
        shape = (in_channels, out_channels // groups) if self._transposed else \
            (out_channels, in_channels // groups)
        self.weight = Parameter(empty(shape + self.kernel_size, dtype=dtype, device=device))
        if bias:
            self.bias = Parameter(empty(out_channels, dtype=dtype, device=device))
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self):
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in != 0:
                bound = 1 / math.sqrt(fan_in)
                init.uniform_(self.bias, -bound, bound)

    def _mode_padded(self, input):
        """Non-zero padding modes pad explicitly, then convolve without padding."""
        if self.padding_mode == "zeros":
            return input, self.padding
        if isinstance(self.padding, str):
            split = F._same_padding(self.kernel_size, self.dilation) \
                if self.padding == "same" else [(0, 0)] * self._nd
        else:
            split = [(p, p) for p in self.padding]
        flat = []
        for lo, hi in reversed(split):
            flat += [lo, hi]
        return F.pad(input, flat, mode=self.padding_mode), 0

    def extra_repr(self):
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0,) * self._nd:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self._nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s

    def forward(self, input):
        x, padding = self._mode_padded(input)
        return self._conv(x, self.weight, self.bias, self.stride, padding, self.dilation,
                          self.groups)


class Conv1d(_ConvNd):
    _nd = 1
    _conv = staticmethod(F.conv1d)


class Conv2d(_ConvNd):
    _nd = 2
    _conv = staticmethod(F.conv2d)


class _ConvTransposeNd(_ConvNd):
    _transposed = True

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0,
                 output_padding=0, groups=1, bias=True, dilation=1, padding_mode="zeros",
                 device=None, dtype=None):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation,
                         groups, bias, padding_mode, device, dtype,
                         output_padding=output_padding)

    def _output_padding(self, input, output_size):
        """PyTorch's rule: output_size (spatial dims, or with batch/channel dims) picks
        the output_padding that reaches it."""
        if output_size is None:
            return self.output_padding
        nd = self._nd
        output_size = list(output_size)[-nd:]
        spatial = input.shape[-nd:]
        out = []
        for k in range(nd):
            smallest = ((spatial[k] - 1) * self.stride[k] - 2 * self.padding[k] +
                        self.dilation[k] * (self.kernel_size[k] - 1) + 1)
            largest = smallest + self.stride[k] - 1
            if not smallest <= output_size[k] <= largest:
                raise ValueError(f"requested an output size of {output_size}, but valid sizes "
                                 f"range from {smallest} to {largest} (for an input of "
                                 f"{list(spatial)})")
            out.append(output_size[k] - smallest)
        return tuple(out)


class ConvTranspose1d(_ConvTransposeNd):
    _nd = 1

    def forward(self, input, output_size=None):
        op = self._output_padding(input, output_size)
        return F.conv_transpose1d(input, self.weight, self.bias, self.stride, self.padding,
                                  op, self.groups, self.dilation)


class ConvTranspose2d(_ConvTransposeNd):
    _nd = 2

    def forward(self, input, output_size=None):
        op = self._output_padding(input, output_size)
        return F.conv_transpose2d(input, self.weight, self.bias, self.stride, self.padding,
                                  op, self.groups, self.dilation)
