"""Errors graphc raises where PyTorch raises, checked against PyTorch itself: a Python
number that overflows the dtype it is assigned or filled into, matmul/mm/bmm/@ (and
einsum's contractions) of operands of different dtypes, `where` with a non-bool condition, a tuple `dim` where
prod/softmax/log_softmax take one dim, and torch.Size + list. Each test also runs
valid neighbouring inputs, which must still give PyTorch's values."""
from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import torch

import graphc as gc


def torch_error(make):
    """The exception type and message `make(torch)` raises (it must raise)."""
    with pytest.raises(Exception) as info:
        make(torch)
    return info.type, str(info.value)


def assert_raises_like_torch(make, same_message=True):
    """`make(gc)` raises PyTorch's exception type (a subclass of it) and, when
    `same_message`, PyTorch's message (graphc adds " (at file:line)" after it)."""
    error, message = torch_error(make)
    with pytest.raises(error) as info:
        make(gc)
    if same_message:
        actual = re.sub(r" \(at [^()]*\)$", "", str(info.value))
        assert actual == message.replace("torch.", "graphc."), (actual, message)


def assert_same_values(make):
    expected, actual = make(torch), make(gc)
    assert str(actual.dtype).split(".")[-1] == str(expected.dtype).split(".")[-1]
    assert tuple(actual.shape) == tuple(expected.shape)
    np.testing.assert_array_equal(actual.float().numpy(), expected.float().numpy())


def _assigned(key, value, dtype="float32", n=3):
    def make(m):
        x = m.zeros(n, dtype=getattr(m, dtype))
        x[key(m) if callable(key) else key] = value
        return x
    return make


def _filled(value, dtype, shape, how):
    def make(m):
        if how == "full":
            return m.full(shape, value, dtype=getattr(m, dtype))
        return m.zeros(shape, dtype=getattr(m, dtype)).fill_(value)
    return make


# ----------------------------------------------------------------------------- 1

@pytest.mark.parametrize("bad, good", [
    (_assigned(0, 1e300), _assigned(0, 3.0e38)),
    (_assigned(0, -1e39), _assigned(0, float("-inf"))),
    (_assigned(slice(None), 3.4028235e38), _assigned(slice(None), float("nan"))),
    (_assigned([0, 2], np.float64(1e300)), _assigned([0, 2], 1e38)),
    (_assigned(lambda m: m.tensor([True, False, True]), 1e300),
     _assigned(lambda m: m.tensor([True, False, True]), 2.5)),
    (_assigned(lambda m: m.tensor([1]), 1e300), _assigned(lambda m: m.tensor([1]), -7.0)),
    (_assigned(0, 2 ** 63), _assigned(0, 2 ** 63 - 1)),
    (_assigned(0, 2 ** 63, "bool"), _assigned(0, 2 ** 62, "bool")),
    (_assigned(0, 2 ** 31, "int32"), _assigned(0, 2 ** 31 - 1, "int32")),
    (_assigned(0, 256, "uint8"), _assigned(0, -255, "uint8")),
    (_assigned(0, 1e20, "int64"), _assigned(0, 1e18, "int64")),
    (_filled(1e300, "float32", (2,), "full"), _filled(3.0e38, "float32", (2,), "full")),
    (_filled(1e300, "float16", (2,), "full"), _filled(1e300, "float16", (1,), "full")),
    (_filled(65505, "float16", (2, 2), "fill_"), _filled(65504, "float16", (2, 2), "fill_")),
    (_filled(1e39, "bfloat16", (0,), "fill_"), _filled(3.3e38, "bfloat16", (3,), "fill_")),
], ids=lambda f: "")
def test_overflowing_number_is_refused_like_torch(bad, good):
    assert_raises_like_torch(bad)
    assert_same_values(good)
    # float16 takes any number through x[key] = value: PyTorch writes a 0-d value,
    # which overflows to inf
    assert_same_values(_assigned(slice(None), 1e300, "float16"))


# ----------------------------------------------------------------------------- 2

@pytest.mark.parametrize("make", [
    lambda m, a, b: m.mm(m.ones(2, 3, dtype=a), m.ones(3, 4, dtype=b)),
    lambda m, a, b: m.matmul(m.ones(2, 3, dtype=a), m.ones(3, 4, dtype=b)),
    lambda m, a, b: m.ones(2, 3, dtype=a) @ m.ones(3, 4, dtype=b),
    lambda m, a, b: m.ones(2, 3, dtype=a).matmul(m.ones(3, dtype=b)),
    lambda m, a, b: m.ones(3, dtype=a) @ m.ones(3, 4, dtype=b),
    lambda m, a, b: m.ones(5, 2, 3, dtype=a) @ m.ones(3, 4, dtype=b),
    lambda m, a, b: m.bmm(m.ones(5, 2, 3, dtype=a), m.ones(5, 3, 4, dtype=b)),
    lambda m, a, b: m.matmul(m.ones(2, 3, dtype=a), m.ones(5, 3, 4, dtype=b)),
    lambda m, a, b: m.dot(m.ones(3, dtype=a), m.ones(3, dtype=b)),
    lambda m, a, b: m.ones(0, 3, dtype=a) @ m.ones(3, 4, dtype=b),
], ids=lambda f: "")
@pytest.mark.parametrize("a, b", [("float32", "float64"), ("float32", "int64"),
                                  ("int64", "float32"), ("float16", "float32")])
def test_matmul_of_different_dtypes_raises_like_torch(make, a, b):
    assert_raises_like_torch(lambda m: make(m, getattr(m, a), getattr(m, b)))
    assert_same_values(lambda m: make(m, getattr(m, a), getattr(m, a)))
    # bmm checks nothing when an operand is empty (its dtype is PyTorch's quirk: mat2's)
    empty = lambda m: m.bmm(m.ones(0, 2, 3, dtype=getattr(m, a)),  # noqa: E731
                            m.ones(0, 3, 4, dtype=getattr(m, b)))
    assert tuple(empty(gc).shape) == tuple(empty(torch).shape)


@pytest.mark.parametrize("equation, shapes", [
    ("ij,jk->ik", [(2, 3), (3, 4)]), ("ij,jk->i", [(2, 3), (3, 4)]),
    ("ij,ij->i", [(2, 3), (2, 3)]), ("ij,ij->ij", [(2, 3), (2, 3)]),
    ("i,j->ij", [(2,), (3,)]),
])
@pytest.mark.parametrize("a, b", [("float32", "float64"), ("int32", "int64")])
def test_einsum_of_different_dtypes_contracts_or_promotes_like_torch(equation, shapes, a, b):
    """PyTorch's einsum contracts a pair with bmm, which refuses mixed dtypes, and
    promotes a pair it only multiplies elementwise."""
    def make(m):
        x = m.ones(*shapes[0], dtype=getattr(m, a))
        return m.einsum(equation, x, m.ones(*shapes[1], dtype=getattr(m, b)) * 2)
    try:
        want = make(torch)
    except RuntimeError:
        assert_raises_like_torch(make)
        return
    got = make(gc)
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1]
    np.testing.assert_array_equal(got.numpy(), want.numpy())


# ----------------------------------------------------------------------------- 3

@pytest.mark.parametrize("dtype", ["int64", "int32", "float32"])
def test_where_refuses_a_non_bool_condition_like_torch(dtype):
    cond = lambda m, d: m.tensor([1, 0, 2], dtype=getattr(m, d))  # noqa: E731
    assert_raises_like_torch(lambda m: m.where(cond(m, dtype), m.ones(3), m.zeros(3)))
    assert_raises_like_torch(lambda m: m.ones(3).where(cond(m, dtype), 0.0))
    assert_same_values(lambda m: m.where(cond(m, dtype) > 0, m.ones(3), m.zeros(3)))
    with warnings.catch_warnings():  # PyTorch's uint8 condition works, deprecated
        warnings.simplefilter("ignore", UserWarning)
        assert_same_values(lambda m: m.where(cond(m, "uint8"), m.ones(3), m.zeros(3)))


# ----------------------------------------------------------------------------- 4

@pytest.mark.parametrize("bad, good", [
    (lambda m, x: m.prod(x, dim=(0, 1)), lambda m, x: m.prod(x, dim=1)),
    (lambda m, x: x.prod([0]), lambda m, x: x.prod(np.int64(0), keepdim=True)),
    (lambda m, x: m.prod(x, 1.0), lambda m, x: m.prod(x, m.tensor(1))),
    (lambda m, x: m.softmax(x, dim=(0, 1)), lambda m, x: m.softmax(x, dim=-1)),
    (lambda m, x: m.nn.functional.softmax(x, dim=(0,)),
     lambda m, x: m.nn.functional.softmax(x, dim=0)),
    (lambda m, x: m.log_softmax(x, (0, 1)), lambda m, x: m.log_softmax(x, 1)),
    (lambda m, x: x.log_softmax(dim=[1]), lambda m, x: x.log_softmax(dim=1)),
    (lambda m, x: m.nn.LogSoftmax(dim=(0, 1))(x), lambda m, x: m.nn.LogSoftmax(dim=0)(x)),
], ids=lambda f: "")
def test_tuple_dim_of_single_dim_ops_is_a_type_error(bad, good):
    data = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    assert_raises_like_torch(lambda m: bad(m, m.tensor(data)), same_message=False)
    expected, actual = good(torch, torch.tensor(data)), good(gc, gc.tensor(data))
    np.testing.assert_allclose(actual.numpy(), expected.numpy(), rtol=1e-6)


# ----------------------------------------------------------------------------- 5

@pytest.mark.parametrize("other", [[4], 4, "a", None], ids=repr)
def test_size_plus_non_tuple_raises_like_torch(other):
    assert_raises_like_torch(lambda m: m.Size([2, 3]) + other)
    assert_raises_like_torch(lambda m: m.Size([2, 3]) + m.ones(2))
    for make in (lambda m: m.Size([2, 3]) + (4,), lambda m: (4,) + m.Size([2, 3]),
                 lambda m: m.Size([2, 3]) + m.Size([4])):
        assert type(make(gc)) is gc.Size and tuple(make(gc)) == tuple(make(torch))
    # an operand that adds a Size itself does so: a numpy array, elementwise
    np.testing.assert_array_equal(gc.Size([2, 3]) + np.array([4, 5]),
                                  torch.Size([2, 3]) + np.array([4, 5]))


# ----------------------------------------------------------------------------- masked_fill

@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16", "int32", "int64",
                                   "uint8", "bool"])
@pytest.mark.parametrize("value", [1e300, 2 ** 40, 300, -1, 1e38])
def test_masked_fill_range_checks_a_number_like_torch(dtype, value):
    """PyTorch's masked_fill checks a number against the dtype whatever the tensor's size
    (a one-element float16 tensor too, unlike full)."""
    def make(m, n=3):
        mask = m.tensor([True, False, True][:n])
        return m.zeros(n, dtype=getattr(m, dtype)).masked_fill(mask, value)
    try:
        make(torch)
    except RuntimeError:
        assert_raises_like_torch(make)
        assert_raises_like_torch(lambda m: make(m, 1))
        return
    assert_same_values(make)


# ----------------------------------------------------------------------------- nn.functional

@pytest.mark.parametrize("make", [
    lambda m: m.nn.functional.pad(m.tensor([[1, 2]]), (1, 1), value=2.7),
    lambda m: m.nn.functional.pad(m.tensor([[1, 2]]), (1, 1), value=-2.7),
    lambda m: m.nn.functional.pad(m.tensor([[True, False]]), (1, 1), value=1),
    lambda m: m.nn.functional.pad(m.tensor([[1., 2.]]), (0, 2), value=1.5),
], ids=lambda f: "")
def test_constant_pad_keeps_the_input_dtype(make):
    """PyTorch converts the pad value to the input's dtype (an int64 padded with 2.7
    gets 2); graphc promoted (float32 with 2.7 in it)."""
    assert_same_values(make)


@pytest.mark.parametrize("make", [
    lambda m: m.nn.functional.pad(m.tensor([[1., 2.]], dtype=m.float16), (1, 1), value=1e6),
], ids=lambda f: "")
def test_constant_pad_range_checks_its_value(make):
    assert_raises_like_torch(make)


def _bce_weights(m, fn, key):
    x = m.tensor([[0.1, 0.7]])
    w = m.tensor([1., 2.], dtype=m.float64)
    F = m.nn.functional
    if fn == "bce":
        return F.binary_cross_entropy(m.sigmoid(x), m.tensor([[1., 0.]]), weight=w)
    return F.binary_cross_entropy_with_logits(x, m.tensor([[1., 0.]]), **{key: w})


@pytest.mark.parametrize("fn, key", [("bce", "weight"), ("logits", "weight"),
                                     ("logits", "pos_weight")])
def test_bce_keeps_the_input_dtype_with_float64_weights(fn, key):
    want, got = _bce_weights(torch, fn, key), _bce_weights(gc, fn, key)
    assert str(got.dtype).split(".")[-1] == str(want.dtype).split(".")[-1] == "float32"
    np.testing.assert_allclose(got.item(), want.item(), rtol=1e-6)


def test_class_weight_of_another_dtype_raises_like_torch():
    def make(m, loss):
        x = m.tensor(np.linspace(-1, 1, 12, dtype=np.float32).reshape(4, 3))
        w = m.tensor([1., 2., 3.], dtype=m.float64)
        return getattr(m.nn.functional, loss)(x, m.tensor([0, 1, 2, 1]), weight=w)
    assert_raises_like_torch(lambda m: make(m, "cross_entropy"))
    assert_raises_like_torch(lambda m: make(m, "nll_loss"))


def test_functional_embedding_checks_padding_idx():
    assert_raises_like_torch(lambda m: m.nn.functional.embedding(
        m.tensor([0, 1]), m.ones(3, 2), padding_idx=5))
    assert_same_values(lambda m: m.nn.functional.embedding(
        m.tensor([0, 1]), m.ones(3, 2), padding_idx=-1))


# ----------------------------------------------------------------------------- arguments

@pytest.mark.parametrize("make", [
    lambda m: m.tensor([1, 2, 3]).add(m.tensor([1, 1, 1]), alpha=2.5),
    lambda m: m.tensor([1, 2, 3]).sub(m.tensor([1, 1, 1]), alpha=2.5),
    lambda m: m.tensor([True]).add(m.tensor([True]), alpha=2.5),
    lambda m: m.tensor([1., 2.]).add(m.tensor([1., 1.]), alpha=True),
    lambda m: m.rand(2, dtype=m.int64),
    lambda m: m.randn(2, dtype=m.int32),
    lambda m: m.rand(2, dtype=m.bool),
    lambda m: m.lerp(m.zeros(2), m.zeros(2, dtype=m.float64), 0.5),
    lambda m: m.tensor([False, True]).argmax(),
    lambda m: m.tensor([[False, True]]).argmin(dim=1),
], ids=lambda f: "")
def test_arguments_torch_refuses(make):
    assert_raises_like_torch(make)


@pytest.mark.parametrize("make", [
    lambda m: m.tensor([1, 2, 3]).add(1.5, alpha=2),
    lambda m: m.tensor([1., 2.]).add(m.tensor([1., 1.]), alpha=0.5),
    lambda m: m.tensor([1, 2]).sub(m.tensor([1, 1]), alpha=3),
    lambda m: m.tensor([True]).add(m.tensor([True]), alpha=True),
    lambda m: m.lerp(m.zeros(2), m.ones(2), 0.25),
], ids=lambda f: "")
def test_arguments_torch_takes(make):
    assert_same_values(make)
