"""numpy's `axis=` for `dim=`, as PyTorch's bound functions take it: x.sum(axis=1),
torch.cat(ts, axis=0), x.max(axis=0). (PyTorch's Python-level functions, such as
nn.functional.softmax or Tensor.norm, do not; nor do graphc's.)"""
from __future__ import annotations

import functools
import inspect


def _takes_dim(fn) -> bool:
    try:
        return "dim" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def _accepting_axis(fn):
    @functools.wraps(fn)
    def call(*args, **kwargs):
        if "axis" in kwargs:
            if "dim" in kwargs:
                raise TypeError(f"{fn.__name__}() got both dim and its alias axis")
            kwargs["dim"] = kwargs.pop("axis")
        return fn(*args, **kwargs)
    return call


def add_axis_alias(namespace: dict, names, tensor_class):
    """Wrap the functions `names` of `namespace` (the graphc module's) and the public
    methods of `tensor_class` that take a `dim` parameter."""
    for name in names:
        fn = namespace.get(name)
        if inspect.isfunction(fn) and _takes_dim(fn):
            namespace[name] = _accepting_axis(fn)
    for name, fn in list(vars(tensor_class).items()):
        if not name.startswith("_") and inspect.isfunction(fn) and _takes_dim(fn):
            setattr(tensor_class, name, _accepting_axis(fn))
