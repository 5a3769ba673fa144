"""Recurrent layers: `RNN`, `LSTM`, `GRU` (and the single-step `RNNCell`, `LSTMCell`,
`GRUCell`) with PyTorch's parameter names and layouts,
gate order (LSTM i, f, g, o; GRU r, z, n with n = tanh(W_in x + b_in + r * (W_hn h +
b_hn))), num_layers, bidirectional, batch_first, initial states, inter-layer dropout and
LSTM projections (proj_size).

The recurrence is unrolled into the graph: the input projection of a whole layer is one
matmul, and each time step adds a fixed, small number of nodes (about 18 for an LSTM
cell), so graph size and compile time grow linearly with the sequence length.
"""
from __future__ import annotations

import math
import warnings

from .. import tensor_ops as T
from ..ir.errors import at_user_line
from ..tensor import Tensor, empty, zeros
from . import functional as F
from . import init
from .module import Module
from .parameter import Parameter

_GATES = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


class RNNBase(Module):
    def __init__(self, mode, input_size, hidden_size, num_layers=1, bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, proj_size=0,
                 device=None, dtype=None):
        super().__init__()
        if not 0 <= dropout <= 1 or isinstance(dropout, bool):
            raise ValueError("dropout should be a number in range [0, 1] representing the "
                             "probability of an element being zeroed")
        if dropout > 0 and num_layers == 1:
            warnings.warn(f"dropout option adds dropout after all but last recurrent layer, so "
                          f"non-zero dropout expects num_layers greater than 1, but got "
                          f"dropout={dropout} and num_layers={num_layers}", stacklevel=3)
        if not isinstance(hidden_size, int) or hidden_size <= 0:
            raise ValueError("hidden_size must be a positive integer")
        if num_layers <= 0:
            raise ValueError("num_layers must be greater than or equal to 1")
        if proj_size < 0:
            raise ValueError("proj_size should be a positive integer or zero to disable "
                             "projections")
        if proj_size >= hidden_size:
            raise ValueError("proj_size has to be smaller than hidden_size")
        if proj_size and mode != "LSTM":
            raise ValueError("proj_size argument is only supported for LSTM, not RNN or GRU")
        self.mode = mode
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.bias = bias
        self.batch_first = batch_first
        self.dropout = float(dropout)
        self.bidirectional = bidirectional
        self.proj_size = proj_size
        directions = 2 if bidirectional else 1
        gate_size = _GATES[mode] * hidden_size
        real_hidden = proj_size or hidden_size
        self._flat_weights_names = []
        for layer in range(num_layers):
            for direction in range(directions):
                in_size = input_size if layer == 0 else real_hidden * directions
                suffix = "_reverse" if direction == 1 else ""
                shapes = [("weight_ih", (gate_size, in_size)),
                          ("weight_hh", (gate_size, real_hidden))]
                if bias:
                    shapes += [("bias_ih", (gate_size,)), ("bias_hh", (gate_size,))]
                if proj_size:
                    shapes.append(("weight_hr", (proj_size, hidden_size)))
                for name, shape in shapes:
                    full = f"{name}_l{layer}{suffix}"
                    setattr(self, full, Parameter(empty(shape, dtype=dtype)))
                    self._flat_weights_names.append(full)
        self.reset_parameters()

    def reset_parameters(self):
        _uniform_by_hidden_size(self)

    def flatten_parameters(self):
        """PyTorch compacts cuDNN weights here; graphc has nothing to compact."""

    @property
    def all_weights(self):
        return [getattr(self, n) for n in self._flat_weights_names]

    # ------------------------------------------------------------------ forward
    def _weights(self, layer, direction):
        suffix = "_reverse" if direction == 1 else ""
        get = lambda name: getattr(self, f"{name}_l{layer}{suffix}", None)  # noqa: E731
        return (get("weight_ih"), get("weight_hh"), get("bias_ih"), get("bias_hh"),
                get("weight_hr"))

    def _check_hidden(self, h, expected, what="hidden", dtype=None):
        if tuple(h.shape) != expected:
            raise RuntimeError(f"Expected {what} size {expected}, got {list(h.shape)}")
        if dtype is not None and h.dtype != dtype:
            raise RuntimeError(f"Expected {what} state of dtype {dtype.name} (the input's), "
                               f"got {h.dtype.name}")

    def forward(self, input, hx=None):
        lstm = self.mode == "LSTM"
        batch_dim = 0 if self.batch_first else 1
        if not isinstance(input, Tensor):   # a PackedSequence, or (data, lengths)
            raise at_user_line(TypeError, f"{type(self).__name__}: expected a padded input "
                                          f"tensor, got {type(input).__name__}; packed "
                                          f"sequences are not supported (pad the batch, "
                                          f"nn.utils.rnn.pad_sequence)")
        if input.dim() not in (2, 3):
            raise ValueError(f"{type(self).__name__}: Expected input to be 2D or 3D, got "
                             f"{input.dim()}D instead")
        batched = input.dim() == 3
        if not batched:
            input = input.unsqueeze(batch_dim)
            if hx is not None:
                hx = tuple(h.unsqueeze(1) for h in hx) if lstm else hx.unsqueeze(1)
        x = input.transpose(0, 1) if self.batch_first else input       # [L, N, I]
        # PyTorch refuses a dtype other than the weights' (graphc's matmul would promote
        # and run the whole recurrence in another precision)
        w_dtype = getattr(self, self._flat_weights_names[0]).dtype
        if x.dtype != w_dtype:
            raise ValueError(f"RNN input dtype (graphc.{x.dtype.name}) does not match weight "
                             f"dtype (graphc.{w_dtype.name}). Convert input: "
                             f"input.to(graphc.{w_dtype.name}), or convert model: "
                             f"model.to(graphc.{x.dtype.name})")
        if x.shape[-1] != self.input_size:
            raise RuntimeError(f"input.size(-1) must be equal to input_size. Expected "
                               f"{self.input_size}, got {x.shape[-1]}")
        directions = 2 if self.bidirectional else 1
        N = x.shape[1]
        real_hidden = self.proj_size or self.hidden_size
        h_shape = (self.num_layers * directions, N, real_hidden)
        c_shape = (self.num_layers * directions, N, self.hidden_size)
        if hx is None:
            h0 = zeros(h_shape, dtype=x.dtype)
            c0 = zeros(c_shape, dtype=x.dtype) if lstm else None
        elif lstm:
            h0, c0 = hx
            self._check_hidden(h0, h_shape, dtype=x.dtype)
            self._check_hidden(c0, c_shape, "cell", dtype=x.dtype)
        else:
            h0, c0 = hx, None
            self._check_hidden(h0, h_shape, dtype=x.dtype)
        h_n, c_n = [], []
        layer_input = x
        for layer in range(self.num_layers):
            outs = []
            for direction in range(directions):
                k = layer * directions + direction
                out, h, c = self._run_direction(layer_input, h0[k],
                                                c0[k] if lstm else None,
                                                self._weights(layer, direction),
                                                reverse=direction == 1)
                outs.append(out)
                h_n.append(h)
                c_n.append(c)
            layer_input = outs[0] if directions == 1 else T.cat(outs, 2)
            if self.dropout and self.training and layer < self.num_layers - 1:
                layer_input = F.dropout(layer_input, self.dropout, True)
        output = layer_input.transpose(0, 1) if self.batch_first else layer_input
        h_n = T.stack(h_n, 0)
        c_n = T.stack(c_n, 0) if lstm else None
        if not batched:
            output = output.squeeze(batch_dim)
            h_n = h_n.squeeze(1)
            c_n = c_n.squeeze(1) if lstm else None
        return (output, (h_n, c_n)) if lstm else (output, h_n)

    def _run_direction(self, x, h, c, weights, reverse):
        """One layer in one direction over the whole sequence x [L, N, I]: the output
        sequence [L, N, H] and the final states."""
        w_ih, w_hh, b_ih, b_hh, w_hr = weights
        gru = self.mode == "GRU"
        # the input projection of every step at once; for all but GRU, whose b_hn sits
        # inside r * (.), both biases fold into it
        xw = F.linear(x, w_ih, b_ih)
        if b_hh is not None and not gru:
            xw = xw + b_hh
        w_hh_t = w_hh.t()
        w_hr_t = w_hr.t() if w_hr is not None else None
        if gru and b_hh is not None:   # broadcast once, not once per step
            b_hh = b_hh.expand(x.shape[1], b_hh.shape[0])
        steps = xw.unbind(0)
        outs = [None] * len(steps)
        order = range(len(steps) - 1, -1, -1) if reverse else range(len(steps))
        for t in order:
            hw = T.matmul(h, w_hh_t)
            if self.mode == "LSTM":
                h, c = _lstm_cell(steps[t] + hw, c, w_hr_t)
            elif gru:
                h = _gru_cell(steps[t], hw + b_hh if b_hh is not None else hw, h)
            else:
                pre = steps[t] + hw
                h = T.tanh(pre) if self.mode == "RNN_TANH" else T.relu(pre)
            outs[t] = h
        return T.stack(outs, 0), h, c

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.proj_size:
            s += f", proj_size={self.proj_size}"
        if self.num_layers != 1:
            s += f", num_layers={self.num_layers}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if self.batch_first:
            s += f", batch_first={self.batch_first}"
        if self.dropout:
            s += f", dropout={self.dropout}"
        if self.bidirectional:
            s += f", bidirectional={self.bidirectional}"
        return s


def _uniform_by_hidden_size(module):
    """PyTorch's initialisation of recurrent weights: U(-1/sqrt(hidden), 1/sqrt(hidden))."""
    stdv = 1.0 / math.sqrt(module.hidden_size) if module.hidden_size > 0 else 0
    for w in module.parameters():
        init.uniform_(w, -stdv, stdv)


def _lstm_cell(gates, c, w_hr_t):
    i, f, g, o = gates.chunk(4, 1)
    c = T.sigmoid(f) * c + T.sigmoid(i) * T.tanh(g)
    h = T.sigmoid(o) * T.tanh(c)
    if w_hr_t is not None:
        h = T.matmul(h, w_hr_t)
    return h, c


def _gru_cell(gi, gh, h):
    i_r, i_z, i_n = gi.chunk(3, 1)
    h_r, h_z, h_n = gh.chunk(3, 1)
    r = T.sigmoid(i_r + h_r)
    z = T.sigmoid(i_z + h_z)
    n = T.tanh(i_n + r * h_n)
    return n + z * (h - n)


class RNN(RNNBase):
    def __init__(self, input_size, hidden_size, num_layers=1, nonlinearity="tanh", bias=True,
                 batch_first=False, dropout=0.0, bidirectional=False, device=None,
                 dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity '{nonlinearity}'. Select from 'tanh' or "
                             f"'relu'.")
        super().__init__("RNN_TANH" if nonlinearity == "tanh" else "RNN_RELU", input_size,
                         hidden_size, num_layers, bias, batch_first, dropout, bidirectional,
                         device=device, dtype=dtype)
        self.nonlinearity = nonlinearity


class LSTM(RNNBase):
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, proj_size=0, device=None, dtype=None):
        super().__init__("LSTM", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, proj_size, device, dtype)


class GRU(RNNBase):
    def __init__(self, input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
                 dropout=0.0, bidirectional=False, device=None, dtype=None):
        super().__init__("GRU", input_size, hidden_size, num_layers, bias, batch_first,
                         dropout, bidirectional, device=device, dtype=dtype)


class RNNCellBase(Module):
    """One time step, the caller's loop drives the sequence. Parameters `weight_ih`
    [chunks * hidden, input], `weight_hh` [chunks * hidden, hidden], `bias_ih`,
    `bias_hh`, initialised as the sequence layers' are; the step's math is theirs."""

    def __init__(self, input_size, hidden_size, bias, num_chunks, device=None, dtype=None):
        super().__init__()
        self.input_size = input_size
        self.hidden_size = hidden_size
        self.bias = bias
        self.weight_ih = Parameter(empty((num_chunks * hidden_size, input_size), dtype=dtype))
        self.weight_hh = Parameter(empty((num_chunks * hidden_size, hidden_size), dtype=dtype))
        if bias:
            self.bias_ih = Parameter(empty((num_chunks * hidden_size,), dtype=dtype))
            self.bias_hh = Parameter(empty((num_chunks * hidden_size,), dtype=dtype))
        else:
            self.register_parameter("bias_ih", None)
            self.register_parameter("bias_hh", None)
        self.reset_parameters()

    def reset_parameters(self):
        _uniform_by_hidden_size(self)

    def extra_repr(self):
        s = f"{self.input_size}, {self.hidden_size}"
        if self.bias is not True:
            s += f", bias={self.bias}"
        if getattr(self, "nonlinearity", "tanh") != "tanh":
            s += f", nonlinearity={self.nonlinearity}"
        return s

    def _batched(self, input, states):
        """(input [N, I], states [N, H] each, batched?) with PyTorch's checks: a 1-D
        input is one unbatched sample, missing states start at zero."""
        name = type(self).__name__
        if input.dim() not in (1, 2):
            raise ValueError(f"{name}: Expected input to be 1D or 2D, got {input.dim()}D "
                             f"instead")
        batched = input.dim() == 2
        if not batched:
            input = input.unsqueeze(0)
        if input.shape[1] != self.input_size:
            raise RuntimeError(f"input has inconsistent input_size: got {input.shape[1]} "
                               f"expected {self.input_size}")
        out = []
        for k, h in enumerate(states):
            if h is None:
                h = zeros((input.shape[0], self.hidden_size), dtype=input.dtype)
            else:
                want = 2 if batched else 1
                if h.dim() != want:
                    raise RuntimeError(f"{name}: Expected hidden to be {want}D, got "
                                       f"{h.dim()}D instead")
                if not batched:
                    h = h.unsqueeze(0)
                if h.shape[0] != input.shape[0]:
                    raise RuntimeError(f"Input batch size {input.shape[0]} doesn't match "
                                       f"hidden{k} batch size {h.shape[0]}")
                if h.shape[1] != self.hidden_size:
                    raise RuntimeError(f"hidden{k} has inconsistent hidden_size: got "
                                       f"{h.shape[1]}, expected {self.hidden_size}")
            out.append(h)
        return input, out, batched


class RNNCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, nonlinearity="tanh", device=None,
                 dtype=None):
        if nonlinearity not in ("tanh", "relu"):
            raise ValueError(f"Unknown nonlinearity: {nonlinearity}")
        super().__init__(input_size, hidden_size, bias, 1, device, dtype)
        self.nonlinearity = nonlinearity

    def forward(self, input, hx=None):
        x, (h,), batched = self._batched(input, [hx])
        pre = F.linear(x, self.weight_ih, self.bias_ih) + \
            F.linear(h, self.weight_hh, self.bias_hh)
        h = T.tanh(pre) if self.nonlinearity == "tanh" else T.relu(pre)
        return h if batched else h.squeeze(0)


class LSTMCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 4, device, dtype)

    def forward(self, input, hx=None):
        x, (h, c), batched = self._batched(input, list(hx) if hx is not None else [None, None])
        gates = F.linear(x, self.weight_ih, self.bias_ih) + \
            F.linear(h, self.weight_hh, self.bias_hh)
        h, c = _lstm_cell(gates, c, None)
        return (h, c) if batched else (h.squeeze(0), c.squeeze(0))


class GRUCell(RNNCellBase):
    def __init__(self, input_size, hidden_size, bias=True, device=None, dtype=None):
        super().__init__(input_size, hidden_size, bias, 3, device, dtype)

    def forward(self, input, hx=None):
        x, (h,), batched = self._batched(input, [hx])
        h = _gru_cell(F.linear(x, self.weight_ih, self.bias_ih),
                      F.linear(h, self.weight_hh, self.bias_hh), h)
        return h if batched else h.squeeze(0)
