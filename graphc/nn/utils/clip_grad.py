"""Gradient clipping, lazily: the total norm and the scaling are graph ops, so clipping
never forces a realization (and a changing max_norm is a runtime input)."""
from __future__ import annotations

import math

from ... import tensor_ops as T
from ...autograd import literal_scalars, no_grad
from ...tensor import Tensor, zeros


def _grads(parameters):
    if isinstance(parameters, Tensor):
        parameters = [parameters]
    return [p.grad for p in parameters if p.grad is not None]


def clip_grad_norm_(parameters, max_norm, norm_type=2.0, error_if_nonfinite=False,
                    foreach=None):
    """Scale the gradients in place so that their joint norm is at most max_norm;
    return the total norm (before clipping) as a 0-d tensor. Like PyTorch, the scale
    is min(1, max_norm / (total_norm + 1e-6)), applied unconditionally."""
    grads = _grads(parameters)
    if not grads:
        return zeros(())
    norm_type = float(norm_type)
    with no_grad():
        if norm_type == math.inf:
            norms = [T.amax(T.abs(g)) for g in grads]
            total = norms[0] if len(norms) == 1 else T.amax(T.stack(norms))
        else:
            norms = [T.norm(g, norm_type) for g in grads]
            total = T.norm(T.stack(norms), norm_type)
        if error_if_nonfinite and not bool(T.isfinite(total)):
            raise RuntimeError(f"The total norm of order {norm_type} for gradients from "
                               f"`parameters` is non-finite, so it cannot be clipped. To "
                               f"disable this error and scale the gradients by the "
                               f"non-finite norm anyway, set `error_if_nonfinite=False`")
        with literal_scalars():
            denom = total + 1e-6
        ratio = max_norm / denom        # max_norm stays a runtime input
        with literal_scalars():
            coef = T.clamp_max(ratio, 1.0)
        for g in grads:
            g.mul_(coef.to(g.dtype))
    return total


def clip_grad_value_(parameters, clip_value, foreach=None):
    for g in _grads(parameters):
        with no_grad():
            g.clamp_(-clip_value, clip_value)
