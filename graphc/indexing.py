"""Tensor indexing: `x[...]` reads and `x[...] = v` writes, PyTorch's rules.

Reads: ints, slices (any positive step, negative bounds), `None`, `...` become one
`slice` node plus a `reshape`; integer tensors and lists (advanced indexing) become a
`gather` over the advanced dims flattened into one, with the result dims placed as
numpy/PyTorch place them (where the first advanced index was, if the advanced indices
are adjacent; first otherwise). A Python bool is PyTorch's `None` plus an advanced
index on the new dim: [0] for True, [] for False.

Writes are functional: the positions a key selects are computed by indexing an `iota`
of the tensor's flat positions with the same key, and the new value is a `where` over
a scatter of those positions. A bool mask of the tensor's own shape is a plain `where`.
Boolean-mask reads (`x[mask]`) have a data-dependent shape, which a static graph cannot
express: they raise an error that says so.
"""
from __future__ import annotations

import numpy as np

from . import autograd, runtime
from .ir import dtypes as dt
from .ir.errors import at_user_line
from .tensor import Tensor, _as_view, _assigned_scalar, tensor


def _is_index_tensor(k):
    return isinstance(k, (Tensor, list, np.ndarray))


def _as_index_tensor(k):
    """A list or numpy index as PyTorch reads it: a float one, the empty list `[]`
    among them, is an int64 index (a bool one stays a mask)."""
    t = tensor(k)
    return t._cast(dt.int64) if t.dtype.is_floating else t


def _consumes_dim(k) -> bool:
    """Whether index `k` consumes a dim of the indexed tensor: `None` and a Python bool
    add a new dim instead (PyTorch's rule), `...` stands for the dims the others leave."""
    return not (k is None or k is Ellipsis or isinstance(k, bool))


def _is_full_slice(k) -> bool:
    return isinstance(k, slice) and k.start in (None, 0) and k.stop is None and \
        k.step in (None, 1)


def _constant_masks_as_indices(x, key: tuple) -> tuple:
    """Bool masks given as lists or numpy arrays select positions known now, so the
    result has a static shape: each becomes the index arrays of its nonzero positions
    (what PyTorch's mask indexing selects), checked against the dims it covers. A mask
    tensor's positions are data (see the refusal in `_expand_key`)."""
    def is_mask(k):
        return isinstance(k, (list, np.ndarray)) and np.ndim(k) > 0 and \
            np.asarray(k).dtype == np.bool_

    def dims_of(keys):
        return sum(np.ndim(k) if is_mask(k) else int(_consumes_dim(k)) for k in keys)
    out = []
    for pos, k in enumerate(key):
        if not is_mask(k):
            out.append(k)
            continue
        mask = np.asarray(k)
        start = x.ndim - dims_of(key[pos:]) if any(e is Ellipsis for e in key[:pos]) \
            else dims_of(key[:pos])
        covered = tuple(x.shape[start:start + mask.ndim])
        for d, size in enumerate(mask.shape):
            if d >= len(covered) or covered[d] != size:
                raise at_user_line(IndexError, f"The shape of the mask {list(mask.shape)} "
                                               f"at index {d} does not match the shape of the "
                                               f"indexed tensor {list(x.shape)} at index "
                                               f"{start + d}")
        out.extend(tensor(positions.astype(np.int64)) for positions in np.nonzero(mask))
    return tuple(out)


def _expand_key(x, key):
    if not isinstance(key, tuple):
        key = (key,)
    key = _constant_masks_as_indices(x, key)
    for k in key:
        if not (k is None or k is Ellipsis or isinstance(k, (slice, Tensor, list, np.ndarray,
                                                             int, np.integer))):
            raise at_user_line(IndexError, "only integers, slices (`:`), ellipsis (`...`), None "
                                           "and long or byte Variables are valid indices (got "
                                           f"{type(k).__name__})")
    key = tuple(_as_index_tensor(k) if isinstance(k, (list, np.ndarray)) else k for k in key)
    for k in key:
        if isinstance(k, Tensor) and k.dtype is dt.bool_:
            raise at_user_line(IndexError, "indexing with a bool mask gives a data-dependent "
                                           "shape, which graphc's static graphs cannot express; "
                                           "use graphc.where(mask, x, 0) or masked_fill")
        if isinstance(k, Tensor) and k.dtype.is_floating:
            raise at_user_line(IndexError, "tensors used as indices must be long, int or bool "
                                           f"tensors (got {k.dtype.name})")
    consumed = sum(1 for k in key if _consumes_dim(k))
    if consumed > x.ndim:
        raise at_user_line(IndexError, f"too many indices for tensor of dimension {x.ndim}")
    if not any(k is Ellipsis for k in key):
        key += (Ellipsis,)
    # Every `...` stands for the dims the other indices leave, as PyTorch expands it. A
    # second one (numpy refuses it, PyTorch does not) then runs past the last dim, where
    # PyTorch takes full slices as no-ops and refuses any other index.
    leftover = [slice(None)] * (x.ndim - consumed)
    out, dims, past_last_dim = [], 0, False
    for k in key:
        for item in leftover if k is Ellipsis else [k]:
            past_last_dim = past_last_dim or (_consumes_dim(item) and dims == x.ndim)
            if not past_last_dim:
                dims += _consumes_dim(item)
                out.append(item)
            elif not _is_full_slice(item):
                raise at_user_line(IndexError,
                                   f"too many indices for tensor of dimension {x.ndim}")
    return out


def _sequence_as_tuple(key):
    """PyTorch's (and old numpy's) reading of a list index: a short list holding a
    sequence, tensor, slice, `...` or None is a tuple of indices (x[[[0, 1]]] is
    x[[0, 1]], x[[0, slice(None)]] is x[0, :]); any other list is one index array."""
    if type(key) is not list or len(key) >= 32:
        return key
    for k in key:
        if k is None or k is Ellipsis or isinstance(k, (list, tuple, np.ndarray, Tensor, slice)):
            return tuple(key)
    return key


def getitem(x: Tensor, key):
    key = _sequence_as_tuple(key)
    items = _expand_key(x, key)
    starts, stops, steps = [], [], []
    out_shape = []          # shape after the basic part, before advanced indexing
    out_stride = []         # its strides over x's elements (basic indexing is a view)
    base_stride = x._strides()
    adv = []                # (position in out_shape, index tensor)
    dim = 0
    for k in items:
        if k is None or isinstance(k, bool):
            if isinstance(k, bool):
                # PyTorch's rule: a new size-1 dim, indexed by [0] (True) or by [] (False)
                adv.append((len(out_shape), tensor([0] if k else [], dtype=dt.int64), 1))
            out_shape.append(1)
            # PyTorch's unsqueeze stride: the next dim's extent, 1 after the last dim
            out_stride.append(base_stride[dim] * x.shape[dim] if dim < x.ndim else 1)
            continue
        size = x.shape[dim]
        if isinstance(k, Tensor):
            starts.append(0), stops.append(size), steps.append(1)
            adv.append((len(out_shape), k, size))
            out_shape.append(size)
            out_stride.append(base_stride[dim])
        elif isinstance(k, slice):
            st = 1 if k.step is None else int(k.step)
            if st <= 0:
                raise at_user_line(ValueError, "step must be greater than zero")
            a, b, _ = slice(k.start, k.stop, 1).indices(size)
            b = max(a, b)
            starts.append(a), stops.append(b), steps.append(st)
            out_shape.append(max(0, (b - a + st - 1) // st))
            out_stride.append(base_stride[dim] * st)
        else:
            i = int(k)
            if not -size <= i < size:
                raise at_user_line(IndexError, f"index {i} is out of bounds for dimension {dim} "
                                               f"with size {size}")
            i %= size
            starts.append(i), stops.append(i + 1), steps.append(1)
        dim += 1
    sliced = starts != [0] * x.ndim or stops != list(x.shape) or steps != [1] * x.ndim
    out_shape = tuple(out_shape)

    def basic(b):
        y = b._slice(starts, stops, steps) if sliced else b
        if out_shape != tuple(y.shape):
            y = y._apply("reshape", y, shape=out_shape)
        return y

    if not adv and _reads_computed_value(x):
        # Part of a value already computed (a Dataset's __getitem__ reading one row):
        # taken now, not as a graph to compile per index. Copied: values are immutable.
        part = x._node.data[tuple(slice(a, b, s) for a, b, s in zip(starts, stops, steps))]
        y = Tensor._from_array(np.array(part.reshape(out_shape), copy=True), x.dtype)
        return _as_view(x, y, basic, None, out_stride)
    y = basic(x)
    if not adv:
        # ints, slices, None and ... give a view: writes through it reach x
        return _as_view(x, y, basic, None, out_stride)
    return _advanced(y, adv)


def _reads_computed_value(x: Tensor) -> bool:
    """True when basic indexing of `x` can read its value right away: it is computed
    (on the host), nothing records a gradient through it, and nothing is being traced
    (a trace must see the read as a graph op, or it would keep the example's value)."""
    return type(x._node.data) is np.ndarray and not runtime.capturing() and \
        not (x.requires_grad and autograd.is_grad_enabled())


def _advanced(y: Tensor, adv):
    from .tensor_ops import broadcast_shapes
    positions = [p for p, _, _ in adv]
    idx_shape = broadcast_shapes(*[tuple(k.shape) for _, k, _ in adv])
    adjacent = positions == list(range(positions[0], positions[0] + len(positions)))
    rest = [d for d in range(y.ndim) if d not in positions]
    moved = _raw_permute(y, positions + rest)
    sizes = [y.shape[p] for p in positions]
    flat_n = 1
    for s in sizes:
        flat_n *= s
    moved = _raw_reshape(moved, (flat_n,) + tuple(moved.shape[len(positions):]))
    from .tensor_ops import where
    lin, valid = None, None
    stride = 1
    for (p, k, size), s in reversed(list(zip(adv, sizes))):
        k = k._cast(dt.int64)
        ok = (k >= -s) & (k < s)
        k = where(k < 0, k + s, k)      # negative indices count from the end
        term = k * stride if stride != 1 else k
        lin = term if lin is None else lin + term
        valid = ok if valid is None else valid & ok
        stride *= s
    # An index out of range must not wrap around (k % s) or alias another element of
    # the flattened dims: it becomes flat_n, for which the gather raises IndexError
    # when the value is computed (index values are data, unknown while tracing).
    lin = where(valid, lin, flat_n)
    lin = _raw_reshape(lin._expand_to(idx_shape), (-1,))
    out = moved.index_select(0, lin)
    out = _raw_reshape(out, tuple(idx_shape) + tuple(out.shape[1:]))
    if adjacent and positions[0] > 0:
        nb = len(idx_shape)
        p0 = positions[0]
        order = list(range(nb, nb + p0)) + list(range(nb)) + \
            list(range(nb + p0, out.ndim))
        out = _raw_permute(out, order)
    return out


def setitem(x: Tensor, key, value):
    key = _sequence_as_tuple(key)
    value = _assigned_scalar(value, x.dtype)
    if isinstance(key, (list, np.ndarray)) and np.asarray(key).dtype == np.bool_:
        key = tensor(key)
    if isinstance(key, Tensor) and key.dtype is dt.bool_:
        return _setitem_mask(x, key, value)
    positions = Tensor._apply("iota", shape=(x.numel(),), dim=0, dtype=dt.int64)
    positions = positions._apply("reshape", positions, shape=tuple(x.shape))
    sel = getitem(positions, key)
    keys = key if isinstance(key, tuple) else (key,)
    return write_positions(x, sel, value,
                           unique=not any(_is_index_tensor(k) for k in keys))


def write_positions(x: Tensor, sel: Tensor, value, unique):
    """x with the elements at flat positions `sel` replaced by `value` (broadcast to
    sel's shape). `unique`: no position repeats (basic indexing, views)."""
    from .tensor_ops import where, zeros
    n = x.numel()
    v = value if isinstance(value, Tensor) else tensor(value, dtype=x.dtype)
    v = _drop_leading_ones(v._cast(x.dtype), sel.ndim)._expand_to(tuple(sel.shape))
    v = v._apply("reshape", v, shape=(v.numel(),))
    flat_pos = sel._apply("reshape", sel, shape=(sel.numel(),))
    if not unique and flat_pos.shape[0] > 1:
        return _write_last_wins(x, flat_pos, v)
    hit = zeros(n, dtype=dt.int32).scatter_add(0, flat_pos, _ones_int(flat_pos.shape[0]))
    vals = _scatter_base(n, x.dtype).scatter_add(0, flat_pos, v)
    shape = tuple(x.shape)
    return where(hit._apply("reshape", hit, shape=shape) > 0,
                 vals._apply("reshape", vals, shape=shape), x)


def _scatter_base(n, dtype):
    """What written values are scatter-added onto: -0.0 for floats, the additive
    identity that keeps a written -0.0 negative (+0.0 + -0.0 is +0.0)."""
    from .tensor_ops import full, zeros
    with autograd.literal_scalars():
        return full((n,), -0.0, dtype=dtype) if dtype.is_floating else zeros(n, dtype=dtype)


def _write_last_wins(x: Tensor, flat_pos: Tensor, v: Tensor):
    """x with v[i] written at flat position flat_pos[i], where a repeated position keeps
    the last write, as PyTorch's sequential CPU kernels do (it calls the winner
    undefined, but it is always one of the values written: an average, as this was,
    is none of them). The positions are stably sorted (the argsort op), and only the
    last of each run of equal positions writes. The gradient is PyTorch's too: x gets
    none at written places, and *every* v[i] gets its place's gradient, overwritten
    or not (scatter's backward gathers): a term of value +0.0 whose derivative
    scatters v's gradient, subtracted so that a -0.0 stays -0.0."""
    from .tensor_ops import cat, gather, ne, where, zeros
    n = x.numel()
    shape = tuple(x.shape)
    with autograd.literal_scalars():
        order = Tensor._apply("argsort", flat_pos, dim=0, descending=False)
        pos = gather(flat_pos, 0, order)
        after = cat([pos[1:], Tensor._apply("const", value=-1, dtype=dt.int64).reshape(1)])
        last = ne(pos, after)
        fixed = gather(v.detach(), 0, order)
        # the overwritten values add -0.0, the identity of + (a +0.0 would turn a
        # written -0.0 into +0.0)
        vals = _scatter_base(n, x.dtype).scatter_add(
            0, pos, where(last, fixed, _scatter_base(1, x.dtype).reshape(())))
        hit = zeros(n, dtype=dt.int32).scatter_add(0, pos, last._cast(dt.int32))
        out = where(hit.reshape(shape) > 0, vals.reshape(shape), x)
        if v.requires_grad:
            ghost = zeros(n, dtype=x.dtype).scatter_add(0, flat_pos, v.detach() - v)
            out = out - ghost.reshape(shape)
    return out


def _setitem_mask(x: Tensor, mask: Tensor, value):
    """x[mask] = value: the mask covers x's leading dims (PyTorch's rule); the value
    must broadcast to x's remaining dims (one value per True needs the mask's data)."""
    from .tensor_ops import where
    if mask.ndim > x.ndim or tuple(mask.shape) != tuple(x.shape[:mask.ndim]):
        raise at_user_line(IndexError, f"The shape of the mask {list(mask.shape)} does not "
                                       f"match the shape of the indexed tensor "
                                       f"{list(x.shape)}")
    value = value if isinstance(value, Tensor) else tensor(value, dtype=x.dtype)
    trailing = tuple(x.shape[mask.ndim:])
    v = _drop_leading_ones(value, len(trailing))
    if v.ndim > len(trailing):
        raise at_user_line(IndexError, f"x[mask] = value: a value of shape {list(value.shape)} "
                                       f"gives one value per selected element, which needs the "
                                       f"mask's data; graphc's static graphs need a value that "
                                       f"broadcasts to {list(trailing)}")
    m = mask.reshape(tuple(mask.shape) + (1,) * (x.ndim - mask.ndim))
    return where(m, v._cast(x.dtype), x)


def _drop_leading_ones(v: Tensor, ndim: int) -> Tensor:
    """`v` without the leading size-1 dims it has beyond `ndim` dims: PyTorch drops
    them from a written value (x[0, 0] = t of shape (1,)) before broadcasting it."""
    extra = 0
    while extra < v.ndim - ndim and v.shape[extra] == 1:
        extra += 1
    return _raw_reshape(v, tuple(v.shape[extra:]))


def _raw_reshape(x, shape):
    """A reshape that is a new value, not a view (advanced indexing copies)."""
    if -1 in shape:
        shape = tuple(x.numel() // max(1, -np.prod(shape)) if s == -1 else s for s in shape)
    return x if tuple(shape) == tuple(x.shape) else x._apply("reshape", x, shape=tuple(shape))


def _raw_permute(x, dims):
    dims = tuple(dims)
    return x if dims == tuple(range(x.ndim)) else x._apply("permute", x, dims=dims)


def _ones_int(n):
    from .tensor_ops import full
    return full((n,), 1, dtype=dt.int32)
