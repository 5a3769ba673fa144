"""`nn.utils.parameters_to_vector` / `vector_to_parameters`: all parameters as one flat
vector and back, in iteration order (what second-order and evolutionary methods use)."""
from __future__ import annotations

from ... import autograd
from ... import tensor_ops as T
from ...tensor import Tensor


def parameters_to_vector(parameters):
    """One 1-D tensor holding every parameter's values, flattened, in order."""
    parameters = list(parameters) if not isinstance(parameters, Tensor) else [parameters]
    return T.cat([p.reshape(-1) for p in parameters])


def vector_to_parameters(vec, parameters):
    """Copy consecutive slices of `vec` into the parameters (their values only: no
    autograd history, as PyTorch's `param.data = ...`)."""
    if not isinstance(vec, Tensor):
        raise TypeError(f"expected torch.Tensor, but got: {type(vec).__name__}")
    parameters = list(parameters) if not isinstance(parameters, Tensor) else [parameters]
    total = sum(p.numel() for p in parameters)
    if vec.ndim != 1 or vec.numel() != total:
        raise RuntimeError(f"vector_to_parameters: expected a 1-D vector of {total} "
                           f"elements (the parameters' total), got shape {list(vec.shape)}")
    start = 0
    with autograd.no_grad():
        for p in parameters:
            n = p.numel()
            p.data = vec[start:start + n].reshape(tuple(p.shape))
            start += n
