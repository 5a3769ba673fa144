"""Lazy tensors: PyTorch's Tensor API over IR nodes.

A `Tensor` holds one IR node (`_node`). Every op builds a new node through `_apply`,
which infers the result type from the op registry (raising shape and dtype errors at
the user's line), records the user's file:line, and decides whether the result needs a
gradient. Nothing is computed until a value is read; see runtime.py.

In-place ops (`add_`, `+=`, `zero_`, ...) rebind `_node` to a new node: values are
immutable, so a value saved for backward is never overwritten. A leaf that requires a
gradient may be updated in place only under `no_grad`; its new node becomes the leaf.

Views alias their base as in PyTorch: a view op (basic indexing, view/reshape,
permute/transpose, squeeze/unsqueeze, expand, split, detach, ...) records its base, the
function that computes it from the base, and its strides over the base's elements.
Writing into a view rebinds the root base to a new value with the view's elements
replaced (`_write_view`), and rebinding a base recomputes its live views
(`_refresh_views`), so `b = a[0]; b.add_(1)` changes `a` and `a.add_(1)` changes `b`.
"""
from __future__ import annotations

import functools
import math
import numbers
import operator
import warnings
import weakref

import numpy as np

from . import autograd, runtime
from .dtype_info import finfo
from .ir import dtypes as dt
from .ir.errors import ShapeError, at_user_line, user_location
from .ir.graph import Node, TensorType
from .ir.registry import get_op


class Size(tuple):
    """torch.Size: a tuple of ints with numel()."""

    def numel(self):
        n = 1
        for s in self:
            n *= s
        return n

    def __repr__(self):
        return f"graphc.Size([{', '.join(map(str, self))}])"

    # As in PyTorch, slicing, concatenating and repeating a Size give a Size
    # (x.shape[1:], x.shape + (1,), (1,) + x.shape).
    def __getitem__(self, key):
        item = super().__getitem__(key)
        return Size(item) if isinstance(key, slice) else item

    def __add__(self, other):
        if isinstance(other, tuple):
            return Size(super().__add__(other))
        # as PyTorch's Size: an operand that adds a tuple to itself does (a numpy array
        # adds elementwise); anything else is PyTorch's TypeError (a tensor too)
        radd = getattr(type(other), "__radd__", None)
        out = NotImplemented if radd is None or isinstance(other, Tensor) else radd(other, self)
        if out is NotImplemented:
            raise at_user_line(TypeError, f"can only concatenate tuple (not "
                                          f"{type(other).__name__}) to graphc.Size")
        return out

    def __radd__(self, other):
        return Size(tuple(other) + tuple(self)) if isinstance(other, tuple) else NotImplemented

    def __mul__(self, times):
        return Size(super().__mul__(times))

    __rmul__ = __mul__


def _norm_dim(d, ndim, name="dim"):
    n = max(ndim, 1)
    if not -n <= d < n:
        raise at_user_line(IndexError, f"Dimension out of range (expected to be in range of "
                                       f"[{-n}, {n - 1}], but got {d})")
    return d % n


def _norm_dims(dims, ndim):
    if dims is None:
        return tuple(range(ndim))
    if isinstance(dims, numbers.Integral):
        dims = (dims,)
    return tuple(sorted({_norm_dim(int(d), ndim) for d in dims}))


def broadcast_shapes(*shapes):
    ndim = max((len(s) for s in shapes), default=0)
    out = [1] * ndim
    for s in shapes:
        for k, size in enumerate(s):
            j = ndim - len(s) + k
            if out[j] == 1:
                out[j] = size
            elif size != 1 and size != out[j]:
                raise at_user_line(ShapeError, "shapes " + " and ".join(str(list(x)) for x in shapes)
                                   + f" cannot be broadcast together (dim {j - ndim}: "
                                   f"{out[j]} vs {size})")
    return tuple(out)


def _node_of(x):
    return x._node


class Tensor:
    __slots__ = ("_node", "_grad", "_requires_grad_leaf", "_is_leaf", "__weakref__",
                 "_retains_grad", "_base", "_view_fn", "_view_wb", "_stride", "_views")
    # Above numpy's arrays and scalars: `np.float64(2) + t` calls Tensor.__radd__ rather
    # than numpy turning `t` into an array.
    __array_priority__ = 1000

    # ----------------------------------------------------------------- construction
    def __init__(self, *args, **kwargs):
        raise TypeError("use graphc.tensor(...) or a factory function to make a tensor")

    @classmethod
    def _wrap(cls, node: Node, is_leaf=None) -> "Tensor":
        t = object.__new__(cls)
        t._node = node
        t._grad = None
        t._requires_grad_leaf = False
        t._is_leaf = (not node.requires_grad) if is_leaf is None else is_leaf
        t._retains_grad = False
        # Views (see the module docstring): the base tensor, base -> this tensor, and how
        # a new value of this tensor becomes the base's (None: through the root's element
        # positions; _ALIAS: the same value, autograd history cut, as for detach/.data)
        t._base = None
        t._view_fn = None
        t._view_wb = None
        t._stride = None    # strides over the base's elements; None: contiguous
        t._views = None     # weakrefs to this tensor's views
        runtime.track(t)
        if runtime.tracer is not None:
            runtime.tracer.on_create(t)
        return t

    @classmethod
    def _from_array(cls, array: np.ndarray, dtype: dt.DType, requires_grad=False):
        node = Node("input", (), {"name": "data"}, TensorType(tuple(array.shape), dtype),
                    user_location())
        node.data = array
        t = cls._wrap(node, is_leaf=True)
        if requires_grad:
            t.requires_grad_(True)
        return t

    # ----------------------------------------------------------------- properties
    @property
    def shape(self) -> Size:
        return Size(self._node.type.shape)

    def size(self, dim=None):
        if dim is None:
            return self.shape
        return self._node.type.shape[_norm_dim(dim, self.ndim)]

    @property
    def ndim(self):
        return len(self._node.type.shape)

    def dim(self):
        return self.ndim

    def numel(self):
        return self._node.type.numel

    def __len__(self):
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    @property
    def dtype(self) -> dt.DType:
        return self._node.type.dtype

    @property
    def device(self):
        from .device import cpu_device
        return cpu_device

    @property
    def is_leaf(self):
        return self._is_leaf

    @property
    def requires_grad(self):
        return self._node.requires_grad

    @requires_grad.setter
    def requires_grad(self, value):
        self.requires_grad_(value)

    def requires_grad_(self, requires_grad=True):
        if not self._is_leaf:
            if not requires_grad:
                raise RuntimeError("you can only change requires_grad flags of leaf variables. "
                                   "If you want to use a computed variable in a subgraph that "
                                   "doesn't require differentiation use var_no_grad = var.detach().")
            return self
        if requires_grad and not self.dtype.is_floating:
            raise at_user_line(RuntimeError, "only Tensors of floating point dtype can require "
                                             f"gradients (got {self.dtype.name})")
        if runtime.tracer is not None:
            runtime.tracer.on_requires_grad(self)
        self._become_leaf(bool(requires_grad))
        return self

    def _become_leaf(self, requires_grad):
        """Make this tensor's node its own gradient boundary. A node is owned by one leaf
        only: a shared node (or one owned by no leaf yet) gets an identity copy first,
        which costs nothing once realized or fused."""
        node = self._node
        if node.leaf is None or node.leaf() is not self:
            node = self._identity_node()
            self._node = node
            runtime.track(self)
        node.requires_grad = requires_grad
        node.leaf = weakref.ref(self) if requires_grad else None
        self._is_leaf = True

    def _identity_node(self):
        return _detached_node(self)

    @property
    def grad(self):
        if self._grad is None and not self._is_leaf and not self._retains_grad \
                and self.requires_grad:
            warnings.warn("The .grad attribute of a Tensor that is not a leaf Tensor is being "
                          "accessed. Its .grad attribute won't be populated during "
                          "autograd.backward(). If you indeed want the .grad field to be "
                          "populated for a non-leaf Tensor, use .retain_grad() on the non-leaf "
                          "Tensor.", UserWarning, stacklevel=2)
        return self._grad

    @grad.setter
    def grad(self, value):
        if value is not None and tuple(value.shape) != tuple(self.shape):
            raise RuntimeError(f"assigned grad has data of a different size: "
                               f"{list(value.shape)} vs {list(self.shape)}")
        if value is not None and value.dtype is not self.dtype:
            raise at_user_line(RuntimeError, f"attempting to assign a gradient with dtype "
                                             f"'{value.dtype.name}' to a tensor with dtype "
                                             f"'{self.dtype.name}'. The gradient must match the "
                                             f"tensor's dtype.")
        self._set_grad(value)

    def _accumulate_grad(self, g, create_graph):
        """Add `g` to .grad. Without create_graph the existing .grad tensor is updated in
        place, as in PyTorch (a reference kept to it sees the sum); a compile trace
        records the sum as a new .grad, which its replay writes back."""
        old = self._grad
        if old is None:
            self._set_grad(g)
        elif create_graph or runtime.tracer is not None or old.shape != g.shape \
                or old.dtype is not g.dtype:
            self._set_grad(old + g)
        else:
            with autograd.no_grad():
                old.add_(g)

    def _set_grad(self, value):
        if runtime.tracer is not None:
            runtime.tracer.on_grad(self)
        self._grad = value

    def retain_grad(self):
        if self._is_leaf:
            return  # a leaf keeps its gradient anyway
        self._retains_grad = True
        _retaining[id(self)] = self

    @property
    def grad_fn(self):
        return None if self._is_leaf or not self.requires_grad else self._node.op

    @property
    def data(self):
        return self.detach()  # an alias: x.data.mul_(2) changes x, as in PyTorch

    @data.setter
    def data(self, value):
        # PyTorch swaps the storage: the tensor stops being a view of its old base and
        # its old views keep the old values
        self._base = self._view_fn = self._view_wb = self._stride = None
        self._views = None
        self._set_data(value)

    def _set_data(self, value):
        """Take `value`'s values without its autograd history, keeping this tensor's
        leaf status and requires_grad (the `.data =` rule)."""
        keep = self.requires_grad
        node = value._node if value._node.data is not None else _detached_node(value)
        if not self._is_leaf and keep and self._node.requires_grad:
            node = _new_values_same_history(self, node)
        self._node = node
        if self._is_leaf:
            self._become_leaf(keep)
        runtime.track(self)

    # ----------------------------------------------------------------- reading values
    def numpy(self) -> np.ndarray:
        if self.requires_grad:
            raise RuntimeError("Can't call numpy() on Tensor that requires grad. "
                               "Use tensor.detach().numpy() instead.")
        return _read_only(self._value())

    def _value(self) -> np.ndarray:
        runtime.realize(self)
        v = self._node.data
        # a backend may keep a value on its device (backends/triton/values.py): reading it
        # copies it to the host once
        return v if type(v) is np.ndarray else np.asarray(v)

    def __array__(self, dtype=None, copy=None):
        v = self._value()
        if dtype is not None and np.dtype(dtype) != v.dtype:
            return v.astype(dtype)
        return v.copy() if copy else _read_only(v)

    def item(self):
        if self.numel() != 1:
            raise RuntimeError(f"a Tensor with {self.numel()} elements cannot be converted to "
                               "Scalar")
        return self._value().reshape(()).item()

    def tolist(self):
        return self._value().tolist()

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError("Boolean value of Tensor with more than one value is ambiguous")
        return bool(self._value().reshape(()))

    def __float__(self):
        return float(self._scalar_value())

    def __int__(self):
        return int(self._scalar_value())

    def _scalar_value(self):
        if self.numel() != 1:  # float(t) / int(t): PyTorch raises ValueError, not item()'s
            raise ValueError("only one element tensors can be converted to Python scalars")
        return self.item()

    def __contains__(self, element):
        # PyTorch: `x in t` is (t == x).any()
        if not isinstance(element, (Tensor, numbers.Number)):
            raise RuntimeError(f"Tensor.__contains__ only supports Tensor or scalar, but you "
                               f"passed in a {type(element)}.")
        return bool((self == element).any())

    def element_size(self):
        return self.dtype.itemsize

    def nelement(self):
        return self.numel()

    def ndimension(self):
        return self.ndim

    def new_tensor(self, data, dtype=None, requires_grad=False, device=None):
        return tensor(data, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_full(self, size, fill_value, *, dtype=None, requires_grad=False, device=None):
        return full(size, fill_value, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_zeros(self, *size, dtype=None, requires_grad=False, device=None):
        return zeros(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_ones(self, *size, dtype=None, requires_grad=False, device=None):
        return ones(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def new_empty(self, *size, dtype=None, requires_grad=False, device=None):
        return zeros(*size, dtype=dtype or self.dtype, requires_grad=requires_grad)

    def __index__(self):
        if self.dtype.is_floating or self.numel() != 1:
            raise TypeError("only integer tensors of a single element can be converted to an "
                            "index")
        return int(self.item())

    def __repr__(self):
        v = self._value()
        suffixes = []
        if v.size == 0:
            body = "[]"
            if v.ndim != 1:
                suffixes.append(f"size={tuple(v.shape)}")
        else:
            body = _format_values(v, self.dtype)
        # PyTorch leaves out the default float type, and int64 and bool, which the values
        # show; an empty tensor shows no values, so it leaves out only the default float
        implied_dtypes = (dt.DEFAULT_FLOAT,) if v.size == 0 else (dt.DEFAULT_FLOAT, dt.int64,
                                                                  dt.bool_)
        if self.dtype not in implied_dtypes:
            suffixes.append(f"dtype={self.dtype!r}")
        if self.requires_grad:
            suffixes.append("grad_fn=<" + self._node.op + ">" if not self._is_leaf
                            else "requires_grad=True")
        # PyTorch's _add_suffixes: a suffix that would pass 80 columns starts a new line
        out = "tensor(" + body
        last = len(out) - out.rfind("\n") + 1
        for suffix in suffixes:
            if last + len(suffix) + 2 > 80:
                out += ",\n" + " " * 7 + suffix
                last = 7 + len(suffix)
            else:
                out += ", " + suffix
                last += len(suffix) + 2
        return out + ")"

    def __format__(self, spec):
        if self.ndim == 0:  # f"{loss:.4f}" formats the value, as PyTorch does
            return format(self.item(), spec)
        return object.__format__(self, spec)

    def __hash__(self):
        return id(self)

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    # ----------------------------------------------------------------- autograd
    def detach(self):
        # shares the values: an in-place op on either side shows in the other (PyTorch)
        return _as_view(self, self._detach_raw(), Tensor._detach_raw, _ALIAS,
                        self._strides())

    def _detach_raw(self):
        return Tensor._wrap(_detached_node(self), is_leaf=True)

    def detach_(self):
        if self._base is not None and self._view_wb is not _ALIAS:
            raise at_user_line(RuntimeError, "Can't detach views in-place. Use detach() "
                                             "instead.")
        self._node = _detached_node(self)
        self._is_leaf = True
        return self

    # ----------------------------------------------------------------- views
    def _strides(self):
        return self._stride if self._stride is not None else _contiguous_strides(self.shape)

    def stride(self, dim=None):
        st = self._strides()
        return st if dim is None else st[_norm_dim(dim, self.ndim)]

    def is_contiguous(self, memory_format=None):
        if self._stride is None:
            return True
        expected = 1
        for size, st in reversed(list(zip(self.shape, self._stride))):
            if size == 0:
                return True
            if size != 1:
                if st != expected:
                    return False
                expected *= size
        return True

    def _is_view(self):
        return self._base is not None

    def _view_chain(self):
        """The root base (not a view) and the views from self up to it."""
        links, t = [], self
        while t._base is not None:
            links.append(t)
            t = t._base
        return t, links

    def _refresh_views(self):
        """Recompute the live views of this tensor (and theirs) from its new value."""
        refs = self._views
        if not refs:
            return
        alive = []
        for r in refs:
            v = r()
            if v is None or v._base is not self:
                continue
            alive.append(r)
            keep_leaf = v._is_leaf and v.requires_grad
            if v.requires_grad:  # a view that had a gradient path keeps one (no_grad or not)
                with autograd.enable_grad():
                    v._node = v._view_fn(self)._node
            else:
                v._node = v._view_fn(self)._node
            if keep_leaf:
                v._become_leaf(True)
            else:
                v._is_leaf = not v._node.requires_grad
            runtime.track(v)
            if runtime.tracer is not None:
                runtime.tracer.on_assign(v)
            v._refresh_views()
        self._views = alive

    def _write_view(self, new):
        """This view's elements take the values of `new`: rebind the root base to a value
        with them replaced, then recompute the root's views (this one among them)."""
        root, links = self._view_chain()
        alias = builtins_any(link._view_wb is _ALIAS for link in links)
        if all(link._view_wb is not None for link in links):
            # every link is a bijection (reshape, permute, detach, ...): invert them
            for link in links:
                if link._view_wb is not _ALIAS:
                    new = link._view_wb(link._base, new)
        else:
            from .indexing import write_positions
            new = write_positions(root, _base_positions(root, links), new, unique=True)
        _rebind_root(root, new, alias)

    def backward(self, gradient=None, retain_graph=None, create_graph=False, inputs=None):
        from .passes.autodiff import backward_nodes
        if not self.requires_grad:
            raise at_user_line(RuntimeError, "element 0 of tensors does not require grad and "
                                             "does not have a grad_fn")
        if gradient is None:
            if self.numel() != 1:
                raise at_user_line(RuntimeError, "grad can be implicitly created only for "
                                                 f"scalar outputs (shape {list(self.shape)})")
            with autograd.literal_scalars():
                gradient = ones_like_node(self)
        elif not isinstance(gradient, Tensor):
            gradient = tensor(gradient, dtype=self.dtype)
        if tuple(gradient.shape) != tuple(self.shape):
            raise at_user_line(RuntimeError, f"Mismatch in shape: grad_output has a shape of "
                                             f"{list(gradient.shape)} and output has a shape of "
                                             f"{list(self.shape)}")
        gradient = gradient._cast(self.dtype)   # PyTorch converts it to the output's dtype
        if not create_graph:
            gradient = gradient.detach()
        if isinstance(inputs, Tensor):
            inputs = [inputs]
        if inputs is not None and len(inputs) == 0:
            raise at_user_line(RuntimeError, "'inputs' argument to backward() cannot be empty.")
        retained = {id(t._node): t for t in list(_retaining.values())
                    if t._retains_grad and not t._is_leaf and t.requires_grad}
        # a non-leaf named in `inputs` gets its .grad like a retained one; a leaf not named
        # gets nothing (a retained non-leaf on the way still does, as in PyTorch)
        wanted = None if inputs is None else {id(t._node): t for t in inputs}
        if wanted is not None:
            retained.update((k, t) for k, t in wanted.items() if not t._is_leaf)
        leaves = backward_nodes([self._node], [gradient], create_graph=create_graph,
                                retain=retained.keys())
        for node, g in leaves.values():
            owner = node.leaf() if node.leaf is not None else retained.get(id(node))
            if owner is None or (wanted is not None and node.leaf is not None
                                 and id(node) not in wanted):
                continue
            gt = Tensor._wrap(g)
            if not create_graph:
                gt._is_leaf = True
            owner._accumulate_grad(gt, create_graph)

    # ----------------------------------------------------------------- conversion
    def to(self, *args, dtype=None, device=None, non_blocking=False, copy=False):
        from .device import device as _device, place
        for a in args:
            if isinstance(a, dt.DType) or a is float or a is int or a is bool:   # float: f64
                dtype = a
            elif isinstance(a, Tensor):
                dtype = a.dtype
            elif a is not None:
                device = a
        if device is not None:
            place([self], _device(device)._check_usable())
        if dtype is None or dt.to_dtype(dtype) is self.dtype:
            return self.clone() if copy else self
        return self._cast(dt.to_dtype(dtype))

    def cpu(self):
        return self

    def cuda(self, device=None):
        from .device import device as _device, place
        place([self], _device("cuda" if device is None else device)._check_usable())
        return self

    def type_as(self, other):
        return self.to(other.dtype)

    def float(self):
        return self.to(dt.float32)

    def double(self):
        return self.to(dt.float64)

    def half(self):
        return self.to(dt.float16)

    def bfloat16(self):
        return self.to(dt.bfloat16)

    def long(self):
        return self.to(dt.int64)

    def int(self):
        return self.to(dt.int32)

    def bool(self):
        return self.to(dt.bool_)

    def is_floating_point(self):
        return self.dtype.is_floating

    def clone(self):
        return self._apply("reshape", self, shape=self._node.type.shape)

    def contiguous(self, memory_format=None):
        # a copy when the elements are not in row-major order, as in PyTorch (an
        # in-place op on it must not reach the base)
        return self if self.is_contiguous() else self.clone()

    def _cast(self, dtype):
        if dtype is self.dtype:
            return self
        return self._apply("cast", self, dtype=dtype)

    # ----------------------------------------------------------------- node building
    @staticmethod
    def _apply(op, *inputs, **attrs):
        """Record `op` on tensor inputs; return the result tensor."""
        opdef = get_op(op)
        nodes = [x._node for x in inputs]
        if runtime.tracer is not None:
            for x in inputs:
                runtime.tracer.on_read(x)
        ty = opdef.infer([n.type for n in nodes], attrs)
        loc = autograd.location_override() or user_location()
        node = Node(op, nodes, attrs, ty, loc)
        if (opdef.vjp is not None and ty.dtype.is_floating and autograd.is_grad_enabled()
                and any(n.requires_grad for n in nodes)):
            node.requires_grad = True
        return Tensor._wrap(node)

    def _expand_to(self, shape):
        shape = tuple(shape)
        if tuple(self.shape) == shape:
            return self
        x = self
        if x.ndim < len(shape):
            x = x._apply("reshape", x, shape=(1,) * (len(shape) - x.ndim) + tuple(x.shape))
        return x._apply("expand", x, shape=shape)

    def _slice(self, starts, stops, steps):
        return self._apply("slice", self, starts=tuple(starts), stops=tuple(stops),
                           steps=tuple(steps))

    def _pad(self, low, high, interior):
        return self._apply("pad", self, low=tuple(low), high=tuple(high),
                           interior=tuple(interior))

    def _zeros_like_node(self):
        return zeros(self.shape, dtype=self.dtype)._node

    # ----------------------------------------------------------------- in place
    def _assign(self, result: "Tensor"):
        """Rebind this tensor to `result`'s value: the core of every in-place op."""
        grad_mode = autograd.is_grad_enabled()
        if self._is_leaf and self.requires_grad and grad_mode:
            raise at_user_line(RuntimeError, "a leaf Variable that requires grad is being used "
                                             "in an in-place operation.")
        if tuple(result.shape) != tuple(self.shape):
            raise at_user_line(ShapeError, f"output with shape {list(self.shape)} doesn't match "
                                           f"the broadcast shape {list(result.shape)}")
        if self._base is not None:
            root, links = self._view_chain()
            if grad_mode and self.requires_grad and root._is_leaf and root.requires_grad \
                    and not builtins_any(link._view_wb is _ALIAS for link in links):
                raise at_user_line(RuntimeError, "a view of a leaf Variable that requires grad "
                                                 "is being used in an in-place operation.")
            if _may_overlap(self.shape, self._strides()):
                # expanded dims, overlapping unfold windows: PyTorch's result depends on
                # its loop order there (x[key] = v into such a view: __setitem__)
                raise at_user_line(RuntimeError, "unsupported operation: more than one element "
                                                 "of the written-to tensor refers to a single "
                                                 "memory location. Please clone() the tensor "
                                                 "before performing the operation.")
        result = result._cast(self.dtype)
        if grad_mode and self.requires_grad and not result.requires_grad \
                and not self._is_leaf:
            # PyTorch: the result of an in-place op on a tensor that requires grad still
            # requires it (y.zero_() gives y a zero gradient path, not no path at all).
            # where(True, result, self) has result's values and a zero gradient for self.
            with autograd.literal_scalars():
                keep = full(self.shape, True, dtype=dt.bool_)
            result = Tensor._apply("where", keep, result, self)
        if self._base is not None:
            self._write_view(result)
            return self
        if runtime.tracer is not None:
            runtime.tracer.on_assign(self)
        self._set_node(result)
        self._refresh_views()
        return self

    def _set_node(self, result):
        was_leaf_rg = self._is_leaf and self.requires_grad
        if was_leaf_rg and result.requires_grad:
            result = result._detach_raw()  # a leaf updated in place keeps no history
        self._node = result._node
        if was_leaf_rg:
            self._become_leaf(True)
        else:
            self._is_leaf = self._is_leaf and not self._node.requires_grad
        runtime.track(self)

    def zero_(self):
        with autograd.literal_scalars():
            return self._assign(zeros(self.shape, dtype=self.dtype))

    def fill_(self, value):
        return self._assign(full(self.shape, value, dtype=self.dtype))

    def copy_(self, src):
        src = src if isinstance(src, Tensor) else tensor(src)
        return self._assign(src._cast(self.dtype)._expand_to(self.shape))

    def __setitem__(self, key, value):
        from .indexing import setitem
        if self._base is not None and _may_overlap(self.shape, self._strides()):
            return self._setitem_overlapping(key, value)
        self._assign(setitem(self, key, value))

    def _setitem_overlapping(self, key, value):
        """x[key] = value into a view that names some base elements more than once
        (overlapping unfold windows, an expanded dim): write the base positions x[key]
        names, the last write winning, as PyTorch's sequential kernel does. Rewriting the
        whole view instead would also write the other windows' old copies of the shared
        elements."""
        from .indexing import getitem, write_positions
        if isinstance(key, Tensor) and key.dtype is dt.bool_:
            raise at_user_line(RuntimeError, "graphc: a boolean-mask write into a view whose "
                                             "elements overlap (unfold, expand) is not "
                                             "supported; clone() the view first")
        root, links = self._view_chain()
        alias = builtins_any(link._view_wb is _ALIAS for link in links)
        if autograd.is_grad_enabled() and self.requires_grad and root._is_leaf and \
                root.requires_grad and not alias:
            raise at_user_line(RuntimeError, "a view of a leaf Variable that requires grad "
                                             "is being used in an in-place operation.")
        value = _assigned_scalar(value, self.dtype)
        new = write_positions(root, getitem(_base_positions(root, links), key), value,
                              unique=False)
        _rebind_root(root, new, alias)

    def __getitem__(self, key):
        from .indexing import getitem
        return getitem(self, key)


_ALIAS = "alias"   # a view link that shares values but not autograd history (detach)
builtins_any = any


def _base_positions(root, links):
    """The flat position in `root` of each element of the view `links` lead to."""
    pos = Tensor._apply("iota", shape=(root.numel(),), dim=0, dtype=dt.int64)
    pos = pos._apply("reshape", pos, shape=tuple(root.shape))
    for link in reversed(links):
        pos = link._view_fn(pos)
    return pos


def _rebind_root(root, new, alias):
    """Give a view chain's root its new value (without autograd history through a
    detach alias) and recompute its views."""
    if runtime.tracer is not None:
        runtime.tracer.on_assign(root)
    if alias:
        root._set_data(new)
    else:
        root._set_node(new)
    root._refresh_views()


def _contiguous_strides(shape):
    out, acc = [], 1
    for size in reversed(tuple(shape)):
        out.append(acc)
        acc *= builtins_max(size, 1)
    return tuple(reversed(out))


builtins_max = max


def _new_values_same_history(t, values_node):
    """`values_node`'s values with `t`'s gradient path: what `m.data = v` or
    `m.detach().mul_(10)` leaves in a non-leaf m, whose gradient PyTorch keeps (only
    the values change). values - (t.detach() - t): the subtracted term is +0.0 (so -0.0
    and nan values stay as they are) and has derivative -1 with respect to t; it is 0
    where t is not finite (inf - inf would be nan)."""
    from .tensor_ops import where
    with autograd.enable_grad(), autograd.literal_scalars():
        old = Tensor._wrap(t._node)
        ghost = where(old.isfinite(), old.detach() - old, 0.0)
        return (Tensor._wrap(values_node) - ghost)._node


def _detached_node(t):
    n = t._node
    if n.data is not None:
        c = Node("input", (), {"name": "data"}, n.type, n.loc)
        c.data = n.data
        if runtime.tracer is not None:
            runtime.tracer.on_read(t, c)
        return c
    return Node("reshape", (n,), {"shape": n.type.shape}, n.type, n.loc)


def _may_overlap(shape, stride) -> bool:
    """Whether a view of this shape and these strides (in elements of its base) may name
    one element twice. False when, taking the dims by increasing stride, each stride
    steps past everything the smaller dims reach (the usual sufficient test)."""
    reach = 0
    for st, n in sorted((abs(st), n) for st, n in zip(stride, shape) if n > 1):
        if st <= reach:
            return True
        reach += st * (n - 1)
    return False


def _as_view(base, out, fwd, wb, stride):
    """Record `out` (= fwd(base)) as a view of `base`; `wb(base, new_out)` gives the
    base's new value when `out` is written (None: by element positions; _ALIAS: the
    same value); `stride` is out's strides over the base's elements."""
    if out is base:
        return out
    out._base, out._view_fn, out._view_wb, out._stride = base, fwd, wb, tuple(stride)
    refs = base._views
    if refs is None:
        base._views = refs = []
    elif len(refs) >= 8 and not len(refs) & (len(refs) - 1):
        refs[:] = [r for r in refs if r() is not None]  # amortized: at powers of two
    refs.append(weakref.ref(out))
    return out


# ---------------------------------------------------------------------------- printing
# PyTorch's tensor printing (torch/_tensor_str.py with the default print options:
# precision 4, threshold 1000, edgeitems 3, linewidth 80), so printed values read as
# PyTorch prints them.

def _summarized(v, edge=3):
    if v.ndim == 0:
        return v
    if v.shape[0] > 2 * edge:
        v = np.concatenate([v[:edge], v[-edge:]])
    return np.stack([_summarized(x, edge) for x in v]) if v.ndim > 1 else v


class _Formatter:
    def __init__(self, values, floating):
        self.floating = floating
        self.int_mode, self.sci_mode, self.width = True, False, 1
        flat = values.reshape(-1)
        if not floating:
            for x in flat.tolist():
                self.width = max(self.width, len(str(x)))
            return
        flat = flat.astype(np.float64)
        nz = flat[np.isfinite(flat) & (flat != 0)]
        if nz.size == 0:
            return
        a = np.abs(nz)
        lo, hi = float(a.min()), float(a.max())
        self.int_mode = bool(np.all(nz == np.ceil(nz)))
        if self.int_mode:
            if hi / lo > 1000.0 or hi > 1e8:
                self.sci_mode = True
                self.width = max(len(f"{x:.4e}") for x in nz.tolist())
            else:
                self.width = max(len(f"{x:.0f}") + 1 for x in nz.tolist())
        elif hi / lo > 1000.0 or hi > 1e8 or lo < 1e-4:
            self.sci_mode = True
            self.width = max(len(f"{x:.4e}") for x in nz.tolist())
        else:
            self.width = max(len(f"{x:.4f}") for x in nz.tolist())

    def format(self, x):
        if self.floating:
            if self.sci_mode:
                r = f"{x:{self.width}.4e}"
            elif self.int_mode:
                r = f"{x:.0f}"
                if not (math.isinf(x) or math.isnan(x)):
                    r += "."
            else:
                r = f"{x:.4f}"
        else:
            r = str(x)
        return " " * (self.width - len(r)) + r


def _format_values(v, dtype, indent=7):
    summarize = v.size > 1000
    if dtype.is_floating:
        v = v.astype(np.float64)
    fmt = _Formatter(_summarized(v) if summarize else v, dtype.is_floating)
    return _format_rec(v, indent, summarize, fmt)


def _format_rec(v, indent, summarize, fmt, edge=3):
    if v.ndim == 0:
        return fmt.format(v.item())
    n = v.shape[0]
    if v.ndim == 1:
        per_line = max(1, (80 - indent) // (fmt.width + 2))
        if summarize and n > 2 * edge:
            data = [fmt.format(x) for x in v[:edge].tolist()] + [" ..."] + \
                [fmt.format(x) for x in v[-edge:].tolist()]
        else:
            data = [fmt.format(x) for x in v.tolist()]
        lines = [", ".join(data[i:i + per_line]) for i in range(0, len(data), per_line)]
        return "[" + (",\n" + " " * (indent + 1)).join(lines) + "]"
    if summarize and n > 2 * edge:
        rows = [_format_rec(v[i], indent + 1, summarize, fmt) for i in range(edge)] + ["..."] + \
            [_format_rec(v[i], indent + 1, summarize, fmt) for i in range(n - edge, n)]
    else:
        rows = [_format_rec(v[i], indent + 1, summarize, fmt) for i in range(n)]
    return "[" + ("," + "\n" * (v.ndim - 1) + " " * (indent + 1)).join(rows) + "]"


# Non-leaf tensors that called retain_grad(), keyed by id (a WeakSet would compare
# tensors with ==, which builds an op).
_retaining: "weakref.WeakValueDictionary[int, Tensor]" = weakref.WeakValueDictionary()


def ones_like_node(t):
    return full(t.shape, 1, dtype=t.dtype)


# ============================================================================ creation

# torch.tensor reads lists, tuples, ranges and numpy arrays as sequences; anything else,
# a Tensor included, is one value.
_DATA_SEQUENCES = (list, tuple, range, np.ndarray)


def _infer_data_dtype(data):
    """torch.tensor's dtype for `data` (PyTorch's infer_scalar_type): a Python float is
    the default float type, an int int64, a bool bool; numpy scalars and arrays and
    tensors keep their dtype; a sequence promotes its items' dtypes with promote_types,
    not the scalar-aware result_type ([np.float32(1), 2.5] and [np.int32(1), 2.5] are
    float32, [np.int32(1), 2] int64), and an empty one is the default float type."""
    if isinstance(data, Tensor):
        return data.dtype
    if isinstance(data, (np.ndarray, np.generic)):
        return dt.from_numpy(data.dtype)
    if isinstance(data, _DATA_SEQUENCES):
        kinds = set(map(type, data))
        if kinds <= {bool, int, float}:  # plain Python numbers: one look per kind
            item_dtypes = [_infer_data_dtype(kind()) for kind in kinds]
        else:
            item_dtypes = [_infer_data_dtype(x) for x in data]
        return functools.reduce(dt.promote_types, item_dtypes) if item_dtypes \
            else dt.DEFAULT_FLOAT
    if isinstance(data, bool):
        return dt.bool_
    if isinstance(data, numbers.Integral):
        return dt.int64
    if isinstance(data, float):
        return dt.DEFAULT_FLOAT
    if isinstance(data, complex):
        raise at_user_line(TypeError, "graphc has no complex dtypes")
    if isinstance(data, str):
        raise at_user_line(TypeError, "new(): invalid data type 'str'")
    raise at_user_line(RuntimeError, f"Could not infer dtype of {type(data).__name__}")


def _data_shape(data):
    """torch.tensor's shape for `data`: the length of the first sequence at each depth."""
    shape = []
    while isinstance(data, _DATA_SEQUENCES):
        shape.append(len(data))
        if not shape[-1]:
            break
        data = data[0]
    return tuple(shape)


def _flat_values(data, shape, depth, out):
    """Appends the values of nested `data` to `out` in row-major order, checking that each
    sequence has the length `shape` gives its depth (PyTorch's errors)."""
    if depth == len(shape):
        out.append(data)
        return out
    if not isinstance(data, _DATA_SEQUENCES):
        raise at_user_line(TypeError, "not a sequence")
    if len(data) != shape[depth]:
        raise at_user_line(ValueError, f"expected sequence of length {shape[depth]} at dim "
                                       f"{depth} (got {len(data)})")
    if depth + 1 == len(shape):
        out.extend(data)
    else:
        for item in data:
            _flat_values(item, shape, depth + 1, out)
    return out


def _stored_values(values, dtype):
    """`values` (Python and numpy numbers, one-element tensors) as a flat array of
    `dtype`, each converted as torch.tensor stores it (_stored_scalar); plain Python
    numbers that need no check are converted at once."""
    kinds = set(map(type, values))
    if dtype.is_floating:
        with np.errstate(over="ignore"):  # PyTorch overflows to inf silently
            floats = np.array(values if kinds <= {bool, int, float} else
                              [_stored_scalar(v, dtype) for v in values], np.float64)
            if dtype.itemsize == 2:  # c10's Half(float) and BFloat16(float) round twice
                floats = floats.astype(np.float32)
            return floats.astype(dtype.np)
    if not dtype.is_bool and values and (kinds <= {bool, int} or kinds == {float}):
        # exact Python ints (numpy would make int64 and uint64 values float64)
        array = np.array(values, dtype=object if kinds <= {bool, int} else np.float64)
        # all fit if the extremes do (a NaN is the extreme of floats that have one)
        if _integer_fits(array.min(), dtype) and _integer_fits(array.max(), dtype):
            with np.errstate(invalid="ignore"):  # 2.0**63 to int64, as _checked_integer
                return array.astype(np.int64).astype(dtype.np)  # wraps as PyTorch does
    # one at a time, so that the first bad value gives PyTorch's error
    return np.array([_stored_scalar(v, dtype) for v in values], dtype=dtype.np)


def _stored_scalar(value, dtype):
    """One value of torch.tensor's data as PyTorch's store_scalar converts it to `dtype`,
    with its errors: a float type takes float(value); bool takes the truth of a numpy
    bool or a float and the int of anything else; an integer type takes a float as it is
    and anything else through __index__, as a C long long (so np.float32(1.5) or a float
    tensor is a TypeError), then checks the range (_checked_integer)."""
    if dtype.is_floating:
        return float(value)
    if dtype.is_bool:
        return bool(value) if isinstance(value, (np.bool_, float)) else \
            operator.index(value) != 0
    if not isinstance(value, float):
        value = operator.index(value)
        if not -(1 << 63) <= value < 1 << 63:
            raise at_user_line(ValueError, "Overflow when unpacking long long")
    return _checked_integer(value, dtype, dtype.name)


def _integer_fits(value, dtype):
    """Whether c10's checked_convert takes Python int or float `value` into integer
    `dtype`: a float must lie within the dtype's range, compared in double (NaN never
    does); an int must too, except that an unsigned dtype also takes negative ints down
    to -max, which wrap."""
    highest = (1 << (8 * dtype.itemsize - dtype.is_signed)) - 1
    if isinstance(value, float):
        return float(-highest - 1 if dtype.is_signed else 0) <= value <= float(highest)
    return (-highest - 1 if dtype.is_signed else -highest) <= value <= highest


def _checked_integer(value, dtype, type_name):
    """Python int or float `value` in integer `dtype` as c10's checked_convert gives it
    (torch.tensor, full, fill_ and arange): truncated and wrapped if it fits, else
    PyTorch's error, which names the dtype `type_name`."""
    if not _integer_fits(value, dtype):
        raise at_user_line(RuntimeError, f"value cannot be converted to type {type_name} "
                                         f"without overflow")
    # int64's float bound is 2.0**63, which fits and wraps to -2**63: the value x86's
    # float-to-int conversion gives in PyTorch
    return _twos_complement(int(value), dtype)


def tensor(data, dtype=None, requires_grad=False, device=None):
    from .device import device as _device
    if device is not None:
        _device(device)._check_usable()
    d = dt.to_dtype(dtype) if dtype is not None else None
    if isinstance(data, Tensor):
        arr, d = data._value(), d or data.dtype
    elif isinstance(data, np.ndarray):
        # converted below by numpy's cast, which wraps out-of-range values as PyTorch's does
        arr, d = data, d or dt.from_numpy(data.dtype)
    else:
        d = d or _infer_data_dtype(data)
        shape = _data_shape(data)
        # PyTorch stores nothing for an empty shape, so it checks no lengths: [[], [1]]
        # is a 2x0 tensor
        values = _flat_values(data, shape, 0, []) if 0 not in shape else []
        arr = _stored_values(values, d).reshape(shape)
    with np.errstate(over="ignore", invalid="ignore"):  # PyTorch's casts do not warn
        arr = np.array(arr, dtype=d.np, copy=True)
    if d.short == "bf16":
        from .backends.interp import round_to_bfloat16
        arr = round_to_bfloat16(arr)
    return Tensor._from_array(arr, d, requires_grad)


def _read_only(value: np.ndarray) -> np.ndarray:
    """A read-only view of a tensor's value. Values are immutable and shared (between a
    tensor and its clone, between equal computations merged by the optimiser, with the
    executor's recycled buffers): a write through numpy() would change other tensors
    silently, so it raises instead (copy the array to change it)."""
    view = value.view()
    view.flags.writeable = False
    return view


def from_numpy(array: np.ndarray):
    """A tensor of `array`'s values *now*. PyTorch shares the array's memory, and its
    eager ops read it at the call; graphc's ops run later, when a value is needed, so a
    shared array rewritten in between (a batch buffer refilled every step) would feed
    them the new values. The copy keeps PyTorch's numbers; later writes to `array` do
    not show in the tensor (docs/coverage.md)."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"expected np.ndarray (got {type(array).__name__})")
    d = dt.from_numpy(array.dtype)
    return Tensor._from_array(np.array(array, dtype=d.np, copy=True), d)


def _shape_arg(size):
    if len(size) == 1 and isinstance(size[0], (tuple, list, Size)):
        size = tuple(size[0])
    out = []
    for s in size:
        if not isinstance(s, (numbers.Integral, np.integer)) and not (
                isinstance(s, Tensor) and not s.dtype.is_floating and s.numel() == 1):
            raise at_user_line(TypeError, f"size must be tuple of ints, but found element of "
                                          f"type {type(s).__name__} in {list(size)}")
        s = int(s)
        if s < 0:
            raise at_user_line(RuntimeError, f"negative dimension {s} in size {list(size)}")
        out.append(s)
    return tuple(out)


def _scalar_node(value, dtype):
    """A Python scalar as an IR node: a literal constant inside graphc's own code or
    for ints/bools, a runtime input for a user's float (see runtime.py)."""
    if isinstance(value, Tensor):
        return value._cast(dtype)
    if dtype.is_floating and isinstance(value, float) and not autograd.scalars_are_literals() \
            and math.isfinite(value):
        node = Node("input", (), {"name": "scalar"}, TensorType((), dtype), user_location())
        node.data = np.array(value, dtype=dtype.np)
        return Tensor._wrap(node, is_leaf=True)
    if dtype.is_bool:
        v = bool(value)
    elif dtype.is_floating:
        v = float(value)
    else:
        v = _wrapped_int(int(value), dtype)
    return Tensor._apply("const", value=v, dtype=dtype)


def _wrapped_int(v, dtype):
    """A Python int as a value of integer `dtype`, wrapped modulo 2**bits as PyTorch
    converts a scalar operand (int32 tensor + 2**40 adds 0); beyond int64, PyTorch's
    error."""
    if not -(1 << 63) <= v < (1 << 63):
        raise at_user_line(RuntimeError, f"value cannot be converted to type int64 without "
                                         f"overflow: {v}")
    return _twos_complement(v, dtype)


def _twos_complement(v, dtype):
    """Python int `v` modulo 2**bits, in integer `dtype`'s range."""
    bits = 8 * dtype.itemsize
    v &= (1 << bits) - 1
    return v - (1 << bits) if dtype.is_signed and v >= 1 << (bits - 1) else v


def scalar_input(value, dtype=None, source=None):
    """A 0-d tensor that is a runtime input of every graph that uses it.

    `source`, if given, is a callable returning the current value: a compiled program
    (graphc.compile) calls it on every replay, which is how an optimizer's learning rate,
    changed by a scheduler, reaches a program compiled once."""
    dtype = dt.to_dtype(dtype) if dtype is not None else dt.result_type([], [], [value])
    node = Node("input", (), {"name": "scalar"}, TensorType((), dtype), user_location())
    node.data = np.array(value, dtype=dtype.np)
    node.source = source
    return Tensor._wrap(node, is_leaf=True)


# The C++ names PyTorch's Scalar conversion errors give the dtypes it range-checks.
_SCALAR_TYPE_NAMES = {"uint8": "uint8_t", "int32": "int", "int64": "int64_t", "float32": "float"}
_FLOAT32_MAX = float(np.finfo(np.float32).max)
# float16 and bfloat16: the C++ name and largest finite value PyTorch's fill kernel checks
# a value against (a one-element tensor is filled by another path, which overflows to inf)
_HALF_FILL_LIMITS = {"float16": ("c10::Half", finfo(dt.float16).max),
                     "bfloat16": ("c10::BFloat16", finfo(dt.bfloat16).max)}


def _checked_scalar(value, dtype, numel=1):
    """Python or numpy number `value` as PyTorch's Scalar.to<dtype>() gives it (full,
    fill_ and arange read their numbers so, and so does x[key] = number): an int beyond
    [-2**63, 2**64) is refused by PyTorch's argument parser; integer dtypes and float32
    refuse values beyond their range (_checked_integer; float32 takes infinities and NaN);
    float16 and bfloat16 refuse finite values beyond theirs when a fill writes `numel`
    elements other than one (PyTorch's fill kernel checks them; its one-element path, and
    the 0-d value x[key] = number writes, overflow to inf; `numel=None`: checked whatever
    the count, as masked_fill's kernel does); float64 overflows to inf, and bool takes any
    value."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, int) and value < -(1 << 63):
        raise at_user_line(OverflowError, "can't convert negative int to unsigned")
    if isinstance(value, int) and value >= 1 << 64:
        raise at_user_line(OverflowError, "int too big to convert")
    if dtype.name in _HALF_FILL_LIMITS and numel != 1:
        type_name, highest = _HALF_FILL_LIMITS[dtype.name]
        if (isinstance(value, int) or math.isfinite(value)) and abs(value) > highest:
            raise at_user_line(RuntimeError, f"value cannot be converted to type {type_name} "
                                             f"without overflow")
    if dtype.name not in _SCALAR_TYPE_NAMES:
        return value
    type_name = _SCALAR_TYPE_NAMES[dtype.name]
    if not dtype.is_floating:
        return _checked_integer(value, dtype, type_name)
    if isinstance(value, float) and math.isfinite(value) and abs(value) > _FLOAT32_MAX:
        raise at_user_line(RuntimeError, f"value cannot be converted to type {type_name} "
                                         f"without overflow")
    return value


def _assigned_scalar(value, dtype):
    """Number `value` of `x[key] = value` as PyTorch's setitem reads it: an int or numpy
    integer as a C long long (ValueError beyond it), then converted with Scalar's range
    checks into the 0-d value of x's dtype that is written (_checked_scalar: float32 and
    integer dtypes refuse what overflows them). Anything else (a tensor, a list) is
    returned as it is."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        if not -(1 << 63) <= int(value) < 1 << 63:
            raise at_user_line(ValueError, "Overflow when unpacking long long")
        return _checked_scalar(value, dtype)
    if isinstance(value, float):   # numpy's float64 too
        return _checked_scalar(value, dtype)
    return value


def full(size, fill_value, *, dtype=None, requires_grad=False, device=None):
    from .device import device as _device
    if device is not None:
        _device(device)._check_usable()
    shape = _shape_arg((size,) if isinstance(size, int) else size)
    if dtype is None:
        dtype = dt.result_type([], [], [fill_value]) if not isinstance(fill_value, bool) \
            else dt.bool_
    dtype = dt.to_dtype(dtype)
    if not isinstance(fill_value, Tensor):  # a tensor is cast lazily, unchecked
        fill_value = _checked_scalar(fill_value, dtype, numel=math.prod(shape))
    t = _scalar_node(fill_value, dtype)._expand_to(shape)
    if requires_grad:
        t = t.detach().requires_grad_(True)
    return t


def zeros(*size, dtype=None, requires_grad=False, device=None):
    d = dt.to_dtype(dtype) if dtype is not None else dt.DEFAULT_FLOAT
    with autograd.literal_scalars():
        return full(_shape_arg(size), 0, dtype=d, requires_grad=requires_grad, device=device)


def ones(*size, dtype=None, requires_grad=False, device=None):
    d = dt.to_dtype(dtype) if dtype is not None else dt.DEFAULT_FLOAT
    with autograd.literal_scalars():
        return full(_shape_arg(size), 1, dtype=d, requires_grad=requires_grad, device=device)


def empty(*size, dtype=None, requires_grad=False, device=None):
    return zeros(*size, dtype=dtype, requires_grad=requires_grad, device=device)


def zeros_like(t, dtype=None, requires_grad=False):
    return zeros(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return ones(t.shape, dtype=dtype or t.dtype, requires_grad=requires_grad)


def empty_like(t, dtype=None, requires_grad=False):
    return zeros_like(t, dtype=dtype, requires_grad=requires_grad)


def full_like(t, fill_value, dtype=None, requires_grad=False):
    return full(t.shape, fill_value, dtype=dtype or t.dtype, requires_grad=requires_grad)


def _arange_number(v):
    """An arange bound or step as PyTorch's argument parser reads a Number: a 0-d tensor
    gives its value, a numpy integer is an int and any other numpy scalar (np.bool_
    included) a float."""
    if isinstance(v, Tensor):
        return v.item()
    if isinstance(v, np.integer):
        return int(v)
    return float(v) if isinstance(v, np.generic) else v


def arange(start, end=None, step=1, *, dtype=None, requires_grad=False, device=None):
    """PyTorch's arange (RangeUtils.h and its CPU kernel): the checks are in double; the
    values are start + i * step in the accumulate type (int64 for the integer types, so
    float bounds and step are truncated first; float for float16 and bfloat16; double
    otherwise), cast to `dtype`. Integer values match PyTorch's exactly; float ones its
    kernel's scalar loop (its vectorised loop, which adds i * step to a base per vector,
    can round some differently in the last place)."""
    if end is None:
        start, end = 0, start
    start, end, step = (_arange_number(v) for v in (start, end, step))
    if dtype is None:  # bools count as integers
        integral = all(isinstance(v, int) for v in (start, end, step))
        dtype = dt.int64 if integral else dt.DEFAULT_FLOAT
    dtype = dt.to_dtype(dtype)
    if dtype.is_bool:
        raise at_user_line(NotImplementedError, "\"arange_cpu\" not implemented for 'Bool'")
    dstart, dend, dstep = (float(_checked_scalar(v, dt.float64)) for v in (start, end, step))
    if not (dstep > 0 or dstep < 0):
        raise at_user_line(RuntimeError, "step must be nonzero")
    if not (math.isfinite(dstart) and math.isfinite(dend)):
        raise at_user_line(RuntimeError, f"unsupported range: {dstart:g} -> {dend:g}")
    if not (dstep > 0 and dend >= dstart or dstep < 0 and dend <= dstart):
        raise at_user_line(RuntimeError, f"upper bound and lower bound inconsistent with step "
                                         f"sign (start={start}, end={end}, step={step})")
    if dtype is dt.int64:
        # int64, more precise than double, counts with the bounds truncated to integers
        xstart, xend, xstep = (_checked_scalar(v, dt.int64) for v in (start, end, step))
        if xstep == 0:
            raise at_user_line(ValueError, "step must be nonzero")
        size = (xend - xstart + xstep - (1 if xstep > 0 else -1)) // xstep
    else:
        size = math.ceil((dend - dstart) / dstep)
    if size > np.iinfo(np.int64).max:
        raise at_user_line(RuntimeError, "invalid size, possible overflow?")
    # the values: start + i * step in the accumulate type, from start and step converted
    # to it (checked, truncated for the integer types); int64 arithmetic wraps, as
    # PyTorch's does, and so does tensor()'s cast of an array into int32 or uint8
    acc = dt.int64 if not dtype.is_floating else dt.float32 if dtype.itemsize == 2 \
        else dt.float64
    xstart, xstep = (acc.np.type(_checked_scalar(v, acc)) for v in (start, step))
    index = np.arange(size, dtype=np.int64).astype(acc.np)
    with np.errstate(over="ignore"):  # float values overflow to inf silently
        values = xstart + xstep * index
    return tensor(values, dtype=dtype, requires_grad=requires_grad, device=device)


def linspace(start, end, steps, *, dtype=None, requires_grad=False, device=None):
    dtype = dt.to_dtype(dtype) if dtype is not None else dt.DEFAULT_FLOAT
    if steps < 0:
        raise at_user_line(RuntimeError, f"linspace: number of steps must be non-negative "
                                         f"(got {steps})")
    # PyTorch's formula: the first half counts up from start, the second down from end.
    npd = dtype.np if dtype.is_floating else np.float64
    i = np.arange(steps, dtype=npd)
    if steps == 1:
        arr = np.array([start], dtype=npd)
    else:
        step = (npd.type(end) - npd.type(start)) / npd.type(steps - 1) if isinstance(npd, np.dtype) \
            else (end - start) / (steps - 1)
        step = np.asarray(step, dtype=npd)
        half = steps // 2
        arr = np.where(i < half, np.asarray(start, npd) + step * i,
                       np.asarray(end, npd) - step * (steps - 1 - i)).astype(npd)
    return tensor(arr, dtype=dtype, requires_grad=requires_grad, device=device)


def logspace(start, end, steps, base=10.0, *, dtype=None, requires_grad=False, device=None):
    """base ** linspace(start, end, steps): the exponents by linspace's two-halves formula
    and the powers in float64, rounded once to `dtype`."""
    exponents = linspace(start, end, steps, dtype=dt.float64).numpy()
    values = np.power(np.float64(base), exponents)
    return tensor(values, dtype=dt.to_dtype(dtype) if dtype is not None else dt.DEFAULT_FLOAT,
                  requires_grad=requires_grad, device=device)


def eye(n, m=None, *, dtype=None, requires_grad=False, device=None):
    m = n if m is None else m
    for name, v in (("n", n), ("m", m)):
        if v < 0:
            raise at_user_line(RuntimeError, f"{name} must be greater or equal to 0, got {v}")
    return tensor(np.eye(n, m), dtype=dtype or dt.DEFAULT_FLOAT, requires_grad=requires_grad,
                  device=device)


class Generator:
    """Counter-based random stream: `seed` fixes the stream, `offset` counts draws."""

    def __init__(self, seed=0):
        self.seed = int(seed)
        self.offset = 0

    def manual_seed(self, seed):
        self.seed = int(seed) & ((1 << 63) - 1)
        self.offset = 0
        return self

    def initial_seed(self):
        return self.seed

    def get_state(self):
        return (self.seed, self.offset)

    def set_state(self, state):
        self.seed, self.offset = int(state[0]), int(state[1])

    def _reserve(self, n):
        off = self.offset
        self.offset += max(int(n), 1)
        return off

    def draw(self, n):
        """Reserve `n` counters; returns (seed, offset) tensors for a `rand` node. Both
        carry a source, so a compiled step replayed later draws fresh numbers."""
        seed_t = scalar_input(self.seed, dt.int64, source=lambda: self.seed)
        off_t = scalar_input(self._reserve(n), dt.int64, source=lambda: self._reserve(n))
        return seed_t, off_t


default_generator = Generator(0)


def manual_seed(seed):
    default_generator.manual_seed(seed)
    return default_generator


def seed():
    import random
    s = random.getrandbits(62)
    default_generator.manual_seed(s)
    return s


def initial_seed():
    return default_generator.seed


def _random(size, normal, dtype, generator, requires_grad, device=None):
    if device is not None:  # refuse cuda without a GPU, as the other factories do
        from .device import device as _device
        _device(device)._check_usable()
    shape = _shape_arg(size)
    dtype = dt.to_dtype(dtype) if dtype is not None else dt.DEFAULT_FLOAT
    if not dtype.is_floating:   # PyTorch's kernels are floating-point only
        kernel = "normal_kernel_cpu" if normal else "check_uniform_bounds"
        raise at_user_line(NotImplementedError, f'"{kernel}" not implemented for '
                                                f"'{dt.TORCH_NAMES[dtype.name]}'")
    gen = generator or default_generator
    seed_t, off_t = gen.draw(Size(shape).numel())
    if normal or dtype.itemsize > 2:
        t = Tensor._apply("rand", seed_t, off_t, shape=shape, dtype=dtype, normal=normal)
    else:
        t = _half_uniform(seed_t, off_t, shape, dtype)
    if requires_grad:
        t = t.detach().requires_grad_(True)
    return t


# Significand bits of the 16-bit float types, counting the implicit one.
_SIGNIFICAND_BITS = {"float16": 11, "bfloat16": 8}


def _half_uniform(seed_t, off_t, shape, dtype):
    """Uniform [0, 1) in float16 or bfloat16, as PyTorch draws it (uniform_real): a
    multiple of 2**-bits, bits the type's significand bits. Rounding the 53-bit draw to
    the nearest value of the type instead gives 1.0 for draws within half a step of 1
    (about 3 in 10000 float16 draws); rounding it down to that grid keeps every value
    below 1 and each of the 2**bits grid values, all exact in the type, equally likely."""
    steps = float(1 << _SIGNIFICAND_BITS[dtype.name])
    u = Tensor._apply("rand", seed_t, off_t, shape=shape, dtype=dt.float64, normal=False)
    with autograd.literal_scalars():
        return ((u * steps).floor() / steps)._cast(dtype)


def rand(*size, dtype=None, generator=None, requires_grad=False, device=None):
    return _random(size, False, dtype, generator, requires_grad, device)


def randn(*size, dtype=None, generator=None, requires_grad=False, device=None):
    return _random(size, True, dtype, generator, requires_grad, device)


def rand_like(t, dtype=None):
    return rand(t.shape, dtype=dtype or t.dtype)


def randn_like(t, dtype=None):
    return randn(t.shape, dtype=dtype or t.dtype)


def randint(low, high=None, size=None, *, dtype=None, generator=None, device=None):
    if size is None and isinstance(high, (tuple, list, Size)):
        high, size = None, high     # torch.randint(high, size)
    if size is None:
        raise TypeError("randint() missing required argument 'size'")
    if high is None:
        low, high = 0, low
    if low >= high:
        raise at_user_line(RuntimeError, f"random_ expects 'from' to be less than 'to', but got "
                                         f"from={low} >= to={high}")
    u = _random(tuple(size), False, dt.float64, generator, False, device)
    r = (u * float(high - low)).floor() + float(low)
    return r.to(dt.to_dtype(dtype) if dtype is not None else dt.int64)


def randperm(n, *, generator=None, dtype=None):
    keys = _random((n,), False, dt.float64, generator, False)
    return tensor(np.argsort(keys._value(), kind="stable"), dtype=dtype or dt.int64)


# The ops themselves (operators, math, reductions, shapes) are attached to Tensor in
# tensor_ops.py, which also defines the module-level function forms.
from . import tensor_ops  # noqa: E402,F401
from . import sorting  # noqa: E402,F401  (sort, topk, median ... and their methods)
