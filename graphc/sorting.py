"""PyTorch's sorting and selection functions, built on the IR's one sorting primitive.

`argsort` (graphc/ir/ops.py) is a stable sort order along one dim: ties keep their
index order, NaN sorts after every number (last ascending, first descending), and -0.0
equals 0.0, as PyTorch's CPU sort. Everything else is that order plus `gather`:

  * sort        values = gather(x, dim, argsort(x)); gradients flow through gather's
                VJP (a scatter-add into the sorted positions);
  * topk        the first k of the descending (largest) or ascending order;
  * kthvalue    position k-1 of the ascending order;
  * median      position (n-1)//2 of the ascending order (the lower median), or the
                first NaN of the row when it has one (PyTorch propagates NaN);
  * nanmedian   position (m-1)//2 where m counts the row's numbers (NaNs sort last).

A full sort is O(n log n) and costs more than a selection for small k, but it is one
kernel whatever k is: an argsort of 64 rows of 50,000 float32 took 58 ms on this
2-core VM (torch.sort: 122 ms, np.argsort: 142 ms; medians of 9 interleaved runs),
about 1 ms per vocabulary-sized row.

Indices among tied values: graphc's sort is always stable, so `sort`/`argsort` match
PyTorch's `stable=True` exactly (with `stable=False`, PyTorch's CPU sort may order ties
otherwise). PyTorch's topk/kthvalue/median select with a partial sort whose tie order
is unspecified; graphc returns the tie that comes first in stable order (a valid
answer, but not always the one PyTorch returns).

The functions are attached to `Tensor` as methods at the bottom, like tensor_ops.py;
graphc/__init__.py re-exports them.
"""
from __future__ import annotations

import collections
import numbers

from . import tensor_ops as T
from .ir import dtypes as dt
from .ir.errors import at_user_line
from .tensor import Tensor, _norm_dim

# torch.return_types.<name>: tuples with `values` and `indices` fields
sort_result = collections.namedtuple("sort", ["values", "indices"])
topk_result = collections.namedtuple("topk", ["values", "indices"])
kthvalue_result = collections.namedtuple("kthvalue", ["values", "indices"])
median_result = collections.namedtuple("median", ["values", "indices"])
nanmedian_result = collections.namedtuple("nanmedian", ["values", "indices"])


def _check_tensor(name, input):
    if not isinstance(input, Tensor):
        raise at_user_line(TypeError, f"{name}(): argument 'input' must be Tensor, not "
                                      f"{type(input).__name__}")


def _check_int(name, what, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise at_user_line(TypeError, f"{name}(): argument '{what}' must be int, not "
                                      f"{type(value).__name__}")
    return int(value)


def _order(input, d, descending):
    """int64 indices that sort `input` along dim `d` (stable)."""
    return Tensor._apply("argsort", input, dim=d, descending=bool(descending))


def _take(input, d, idx):
    """input's values at `idx` along dim `d` (0-d: input itself, as PyTorch)."""
    return T.gather(input, d, idx) if input.ndim else input


def _first(t, d, start, length):
    """Positions [start, start+length) of dim `d` of `t`."""
    if not t.ndim:
        return t
    starts = [0] * t.ndim
    stops = list(t.shape)
    starts[d], stops[d] = start, start + length
    return t._slice(starts, stops, [1] * t.ndim)


def _size(input, d):
    return input.shape[d] if input.ndim else 1


def _reduced(result_type, input, d, values, idx, keepdim):
    if input.ndim and not keepdim:
        values, idx = values.squeeze(d), idx.squeeze(d)
    return result_type(values, idx)


def _check_nonempty(name, input, d):
    if input.ndim and input.shape[d] == 0:
        raise at_user_line(IndexError, f"{name}(): Expected reduction dim {d} to have "
                                       f"non-zero size.")


def _no_bool(kernel, input):
    if input.dtype is dt.bool_:
        raise at_user_line(NotImplementedError, f'"{kernel}" not implemented for \'Bool\'')


# ----------------------------------------------------------------------------- sorts

def argsort(input, dim=-1, descending=False, *, stable=False):
    """Indices that sort `input` along `dim`. Always stable: `stable=False` leaves the
    order of ties to the implementation, and graphc's choice is the stable one."""
    _check_tensor("argsort", input)
    d = _norm_dim(_check_int("argsort", "dim", dim), input.ndim)
    return _order(input, d, descending)


def sort(input, dim=-1, descending=False, *, stable=False):
    """(values, indices) of `input` sorted along `dim`, as torch.sort."""
    _check_tensor("sort", input)
    d = _norm_dim(_check_int("sort", "dim", dim), input.ndim)
    idx = _order(input, d, descending)
    return sort_result(_take(input, d, idx), idx)


def msort(input):
    """`input` sorted along its first dim (torch.msort)."""
    _check_tensor("msort", input)
    return sort(input, 0).values


def topk(input, k, dim=-1, largest=True, sorted=True):
    """The k largest (or smallest) elements along `dim` and their indices. They come
    sorted whatever `sorted` says (an unsorted order is PyTorch's freedom, not a
    promise)."""
    _check_tensor("topk", input)
    k = _check_int("topk", "k", k)
    d = _norm_dim(_check_int("topk", "dim", dim), input.ndim)
    if input.dtype is dt.bool_:
        raise at_user_line(RuntimeError, "topk does not support bool dtypes on CPU")
    n = _size(input, d)
    if not 0 <= k <= n:
        raise at_user_line(RuntimeError, f"selected index k out of range (k={k}, dim {d} "
                                         f"of shape {list(input.shape)} has size {n})")
    idx = _first(_order(input, d, largest), d, 0, k)
    return topk_result(_take(input, d, idx), idx)


def kthvalue(input, k, dim=-1, keepdim=False):
    """The k-th smallest element along `dim` (k counts from 1) and its index."""
    _check_tensor("kthvalue", input)
    k = _check_int("kthvalue", "k", k)
    d = _norm_dim(_check_int("kthvalue", "dim", dim), input.ndim)
    _no_bool("kthvalue_cpu", input)
    _check_nonempty("kthvalue", input, d)
    n = _size(input, d)
    if not 1 <= k <= n:
        raise at_user_line(RuntimeError, f"kthvalue(): selected number k out of range for "
                                         f"dimension {d} (k={k}, shape {list(input.shape)})")
    idx = _first(_order(input, d, False), d, k - 1, 1)
    return _reduced(kthvalue_result, input, d, _take(input, d, idx), idx, keepdim)


def _median(name, input, dim, keepdim, skip_nan):
    _check_tensor(name, input)
    _no_bool(f"{name}_out" if name == "median" else name, input)
    if dim is None:
        # the median of every element, a 0-d value (NaN for an empty float tensor)
        flat = input.reshape(-1)
        if flat.shape[0] == 0:
            if not input.dtype.is_floating:
                raise at_user_line(IndexError, f"{name}(): Expected reduction dim 0 to have "
                                               f"non-zero size.")
            return T.full((), float("nan"), dtype=input.dtype)
        return _median(name, flat, 0, False, skip_nan).values
    d = _norm_dim(_check_int(name, "dim", dim), input.ndim)
    _check_nonempty(name, input, d)
    n = _size(input, d)
    order = _order(input, d, False)
    if not input.ndim:
        idx = order
    elif not input.dtype.is_floating:
        idx = _first(order, d, (n - 1) // 2, 1)
    elif skip_nan:
        # NaNs sort last: the lower median of the m numbers is at (m - 1) // 2 (0 in a
        # row of NaNs, whose value is then NaN)
        m = T.logical_not(T.isnan(input)).to(dt.int64).sum(d, keepdim=True)
        pos = T.clamp((m - 1) // 2, min=0)
        idx = T.gather(order, d, pos)
    else:
        # PyTorch's median is NaN for a row holding one, at the row's first NaN
        # (whether the row has a NaN is whether its first NaN candidate is one)
        nan = T.isnan(input)
        first_nan = T.argmax(nan.to(dt.uint8), d, keepdim=True)
        idx = T.where(T.gather(nan, d, first_nan), first_nan,
                      _first(order, d, (n - 1) // 2, 1))
    result = median_result if name == "median" else nanmedian_result
    return _reduced(result, input, d, _take(input, d, idx), idx, keepdim)


def median(input, dim=None, keepdim=False):
    """torch.median: without `dim`, the lower median of all elements (a 0-d tensor);
    with `dim`, (values, indices) of each row's lower median; NaN if the row has one."""
    return _median("median", input, dim, keepdim, skip_nan=False)


def nanmedian(input, dim=None, keepdim=False):
    """torch.nanmedian: the median of the numbers, ignoring NaNs (NaN if there are
    none)."""
    return _median("nanmedian", input, dim, keepdim, skip_nan=True)


_METHODS = dict(sort=sort, argsort=argsort, msort=msort, topk=topk, kthvalue=kthvalue,
                median=median, nanmedian=nanmedian)

for _name, _fn in _METHODS.items():
    setattr(Tensor, _name, _fn)

__all__ = list(_METHODS)
