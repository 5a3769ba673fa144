"""Default collation: a list of samples -> one batch, with torch's default_collate rules.

  * graphc tensors      -> stacked along a new dim 0 (realized ones with np.stack into one
                           realized tensor; a lazy one makes a lazy graphc.stack)
  * numpy arrays        -> stacked, keeping the array dtype
  * numpy scalars       -> one tensor of their dtype
  * float / int / bool  -> float64 / int64 / bool tensors (torch's default_collate dtypes)
  * str / bytes         -> the list as is
  * Mapping             -> same mapping type, collated key by key
  * namedtuple          -> same namedtuple, collated field by field
  * tuple / list        -> transposed and collated element-wise (a tuple gives a list, as
                           in torch)

`collate_fn_map` maps a type (or tuple of types) to `fn(batch, *, collate_fn_map)`, as in
torch's `collate`, for extending the rules.

Invariant: collating realized inputs creates only realized tensors (no pending graph
nodes), so it is safe to run in the DataLoader's prefetch thread.
"""
from __future__ import annotations

import collections.abc
import copy
import re

import numpy as np

from ...backends.interp import round_to_bfloat16
from ...ir import dtypes as dt
from ...tensor import Tensor, from_numpy, tensor
from ...tensor_ops import stack

_STRING_OR_OBJECT = re.compile(r"[SaUO]")

_ERR = ("default_collate: batch must contain tensors, numpy arrays, numbers, dicts or lists; "
        "found {}")


def _is_pending(t: Tensor) -> bool:
    return t._node.data is None


def _stack_realized(arrays, dtypes):
    """One realized tensor stacking `arrays` (the values of tensors of `dtypes`), with
    torch.stack's type promotion."""
    target = dt.result_type(list(dtypes))
    parts = [a if a.dtype == target.np else a.astype(target.np) for a in arrays]
    out = np.stack(parts)
    if target.short == "bf16" and any(d is not target for d in dtypes):
        out = round_to_bfloat16(out)
    # One fresh array: wrap it without the copy graphc.tensor would make.
    return Tensor._from_array(out, target)


def _check_equal_shapes(shapes):
    for i, shape in enumerate(shapes):
        if shape != shapes[0]:
            raise RuntimeError(f"stack expects each tensor to be equal size, but got "
                               f"{list(shapes[0])} at entry 0 and {list(shape)} at entry {i}")


def collate_tensor_fn(batch, *, collate_fn_map=None):
    _check_equal_shapes([tuple(t.shape) for t in batch])
    if any(_is_pending(t) for t in batch):
        return stack(list(batch), 0)
    return _stack_realized([t._node.data for t in batch], [t.dtype for t in batch])


def collate_numpy_array_fn(batch, *, collate_fn_map=None):
    first = batch[0]
    if _STRING_OR_OBJECT.search(first.dtype.str) is not None:
        raise TypeError(_ERR.format(first.dtype))
    _check_equal_shapes([a.shape for a in batch])
    return _stack_realized([np.asarray(a) for a in batch],
                           [dt.from_numpy(a.dtype) for a in batch])


def collate_numpy_scalar_fn(batch, *, collate_fn_map=None):
    return from_numpy(np.asarray(batch))


def collate_float_fn(batch, *, collate_fn_map=None):
    return tensor(np.asarray(batch, dtype=np.float64), dtype=dt.float64)


def collate_int_fn(batch, *, collate_fn_map=None):
    # bool is an int subclass: all-bool batches give a bool tensor, mixed ones int64.
    return tensor(list(batch))


def collate_str_fn(batch, *, collate_fn_map=None):
    return batch


default_collate_fn_map: dict = {
    Tensor: collate_tensor_fn,
    np.ndarray: collate_numpy_array_fn,
    (np.bool_, np.number): collate_numpy_scalar_fn,
    float: collate_float_fn,
    int: collate_int_fn,
    str: collate_str_fn,
    bytes: collate_str_fn,
}


def collate(batch, *, collate_fn_map=None):
    """Collate `batch` (a sequence of samples) following `collate_fn_map`, then the
    container rules in the module docstring."""
    if len(batch) == 0:
        raise ValueError("default_collate: cannot collate an empty batch")
    elem = batch[0]
    elem_type = type(elem)
    if collate_fn_map is not None:
        if elem_type in collate_fn_map:
            return collate_fn_map[elem_type](batch, collate_fn_map=collate_fn_map)
        for kind, fn in collate_fn_map.items():
            if isinstance(elem, kind):
                return fn(batch, collate_fn_map=collate_fn_map)
    if isinstance(elem, collections.abc.Mapping):
        values = {key: collate([d[key] for d in batch], collate_fn_map=collate_fn_map)
                  for key in elem}
        try:
            if isinstance(elem, collections.abc.MutableMapping):
                clone = copy.copy(elem)
                clone.update(values)
                return clone
            return elem_type(values)
        except TypeError:
            return values
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):
        return elem_type(*(collate(s, collate_fn_map=collate_fn_map)
                           for s in zip(*batch)))
    if isinstance(elem, collections.abc.Sequence):
        size = len(elem)
        if not all(len(e) == size for e in batch):
            raise RuntimeError("each element in list of batch should be of equal size")
        columns = [collate(s, collate_fn_map=collate_fn_map) for s in zip(*batch)]
        if isinstance(elem, tuple):
            return columns
        try:
            if isinstance(elem, collections.abc.MutableSequence):
                clone = copy.copy(elem)
                for i, c in enumerate(columns):
                    clone[i] = c
                return clone
            return elem_type(columns)
        except TypeError:
            return columns
    raise TypeError(_ERR.format(elem_type))


def default_collate(batch):
    """torch.utils.data.default_collate for graphc (see the module docstring)."""
    return collate(batch, collate_fn_map=default_collate_fn_map)


def default_convert(data):
    """Used without automatic batching: numpy arrays and scalars become tensors, containers
    are converted element-wise, anything else is returned unchanged."""
    if isinstance(data, Tensor):
        return data
    if isinstance(data, np.ndarray):
        if _STRING_OR_OBJECT.search(data.dtype.str) is not None:
            return data
        # np.ascontiguousarray would turn a 0-d array into a 1-d one
        return from_numpy(data if data.flags.c_contiguous else np.ascontiguousarray(data))
    if isinstance(data, (np.bool_, np.number)):
        return from_numpy(np.asarray(data))
    if isinstance(data, collections.abc.Mapping):
        values = {k: default_convert(v) for k, v in data.items()}
        try:
            if isinstance(data, collections.abc.MutableMapping):
                clone = copy.copy(data)
                clone.update(values)
                return clone
            return type(data)(values)
        except TypeError:
            return values
    if isinstance(data, tuple) and hasattr(data, "_fields"):
        return type(data)(*(default_convert(d) for d in data))
    if isinstance(data, tuple):
        return [default_convert(d) for d in data]
    if isinstance(data, collections.abc.Sequence) and not isinstance(data, (str, bytes)):
        converted = [default_convert(d) for d in data]
        try:
            if isinstance(data, collections.abc.MutableSequence):
                clone = copy.copy(data)
                for i, c in enumerate(converted):
                    clone[i] = c
                return clone
            return type(data)(converted)
        except TypeError:
            return converted
    return data
