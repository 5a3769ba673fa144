"""`x[key]` reads and `x[key] = value` writes against PyTorch, one line per key.

Keys are written once and used with both frameworks: index tensors are given as nested
lists or numpy arrays (converted per framework by `_key`), everything else (ints,
slices, None, ...) is shared.
"""
from __future__ import annotations

import gc as pygc

import numpy as np
import pytest
import torch

import graphc as gc
from conftest import run_both

_rng = np.random.default_rng(7)
X = _rng.standard_normal((4, 5, 6)).astype(np.float32)


class A:
    """An index array, turned into a tensor of the framework under test."""

    def __init__(self, data, dtype=np.int64):
        self.data = np.asarray(data, dtype=dtype)


def _key(m, key):
    if isinstance(key, tuple):
        return tuple(_key(m, k) for k in key)
    if isinstance(key, A):
        return m.tensor(key.data.copy())
    return key


GET_KEYS = [
    pytest.param(1, id="int"),
    pytest.param(-1, id="neg_int"),
    pytest.param((1, 2), id="two_ints"),
    pytest.param((-1, -2, -3), id="three_neg_ints"),
    pytest.param(slice(1, 3), id="slice"),
    pytest.param(slice(None, None, 2), id="step"),
    pytest.param((slice(1, None, 2), slice(None, None, 3)), id="steps_two_dims"),
    pytest.param(slice(-3, -1), id="neg_bounds"),
    pytest.param((slice(None), slice(-4, None, 3), -2), id="neg_start_step_int"),
    pytest.param(slice(10, None), id="past_end_empty"),
    pytest.param(slice(3, 1), id="reversed_bounds_empty"),
    pytest.param(slice(-100, 2), id="clamped_start"),
    pytest.param(None, id="none"),
    pytest.param((slice(None), None), id="none_middle"),
    pytest.param((None, 0, None, slice(None, 2)), id="none_int_none"),
    pytest.param(Ellipsis, id="ellipsis_alone"),
    pytest.param((Ellipsis, 1), id="ellipsis_int"),
    pytest.param((1, Ellipsis), id="int_ellipsis"),
    pytest.param((Ellipsis, None), id="ellipsis_none"),
    pytest.param((0, Ellipsis, slice(None, None, 2)), id="int_ellipsis_step"),
    pytest.param((slice(None), 0), id="slice_int"),
    pytest.param(A([0, 2]), id="array"),
    pytest.param(A([3, -1, 0, 0]), id="array_neg_repeat"),
    pytest.param(A([[0, 1], [2, 3]]), id="array_2d"),
    pytest.param(A(2), id="array_0d"),
    pytest.param([0, 2, -1], id="list"),
    pytest.param(A([1, 3], np.int32), id="array_int32"),
    pytest.param((A([0, 1]), A([2, 0])), id="two_arrays"),
    pytest.param((A([[0], [3]]), A([1, 2, 4])), id="arrays_broadcast"),
    pytest.param((slice(None), A([4, 0])), id="slice_array"),
    pytest.param((slice(None), A([1, 0]), A([5, -6])), id="adjacent_arrays_middle"),
    pytest.param((A([0, 3]), slice(None), A([1, 2])), id="non_adjacent_arrays"),
    pytest.param((A([0, 3]), slice(1, 4), A([[1], [2]])), id="non_adjacent_broadcast"),
    pytest.param((1, A([0, 2])), id="int_then_array"),
    pytest.param((A([0, 2]), 1), id="array_then_int"),
    pytest.param((A([0, 2]), slice(None), 3), id="array_slice_int"),
    pytest.param((slice(None), 2, A([0, 5])), id="slice_int_array"),
    pytest.param((A([1, 2]), None), id="array_none"),
    pytest.param((None, A([1, 2])), id="none_array"),
    pytest.param((Ellipsis, A([0, -1])), id="ellipsis_array"),
    pytest.param((A([1, 2]), Ellipsis, A([0, 5])), id="array_ellipsis_array"),
    pytest.param((slice(None, None, 2), A([[0, 4]]), slice(1, None, 2)), id="step_array_step"),
    # a Python bool: a new size-1 dim, indexed by [0] (True) or [] (False)
    pytest.param(True, id="true"),
    pytest.param(False, id="false"),
    pytest.param((0, True), id="int_true"),
    pytest.param((Ellipsis, False), id="ellipsis_false"),
    pytest.param((True, 1, Ellipsis, True), id="true_int_ellipsis_true"),
    pytest.param((None, True, False), id="none_true_false"),
    pytest.param((0, 1, 2, True), id="true_after_last_dim"),
    pytest.param((True, A([0, 2])), id="true_array_broadcast"),
    pytest.param((True, slice(None), A([1, 2])), id="true_slice_array_non_adjacent"),
    # an empty index is an int64 one, the empty list included
    pytest.param([], id="empty_list"),
    pytest.param(A([]), id="empty_array"),
    pytest.param((slice(None), [], 1), id="slice_empty_list_int"),
    pytest.param(([], []), id="two_empty_lists"),
    pytest.param([1.7, 0.2], id="float_list_truncated"),
    # PyTorch allows several ellipses: each stands for the dims the other indices
    # leave, and full slices past the last dim do nothing
    pytest.param((Ellipsis, 0, Ellipsis), id="two_ellipses"),
    pytest.param((Ellipsis, Ellipsis, Ellipsis), id="three_ellipses"),
    pytest.param((1, Ellipsis, None, Ellipsis), id="int_ellipsis_none_ellipsis"),
    pytest.param((Ellipsis, A([0, 1]), Ellipsis), id="ellipsis_array_ellipsis"),
    pytest.param((Ellipsis, 0, Ellipsis, slice(None), slice(None)), id="full_slices_past_end"),
    pytest.param((0, Ellipsis, 1, 2, Ellipsis), id="ellipses_of_no_dims"),
    # a short list holding a sequence, slice, `...` or None is a tuple of indices
    pytest.param([[0, 2]], id="list_of_a_list_is_a_tuple"),
    pytest.param([[0, 2], [1, 4]], id="list_of_lists_is_a_tuple"),
    pytest.param([0, slice(1, 3)], id="list_with_a_slice_is_a_tuple"),
    pytest.param([Ellipsis, None, 1], id="list_with_ellipsis_is_a_tuple"),
    # bool masks given as lists or numpy arrays: positions known when indexing
    pytest.param([True, False, False, True], id="bool_list"),
    pytest.param(np.array([False, True, True, False]), id="bool_numpy_mask"),
    pytest.param((slice(None), [True, False, True, False, True]), id="slice_bool_list"),
    pytest.param((Ellipsis, np.arange(6) % 4 == 1), id="ellipsis_bool_mask_last_dim"),
    pytest.param(np.arange(20).reshape(4, 5) % 3 == 0, id="bool_mask_2d"),
    pytest.param((1, np.arange(30).reshape(5, 6) % 7 == 2), id="int_then_2d_mask"),
    pytest.param(([False] * 4,), id="bool_list_none_selected"),
]


@pytest.mark.parametrize("key", GET_KEYS)
def test_getitem(key):
    run_both(lambda m, x: x[_key(m, key)], X)


def test_getitem_on_int_and_bool_tensors():
    run_both(lambda m, x: x[1:, _key(m, A([0, 0]))], np.arange(12).reshape(3, 4))
    run_both(lambda m, x: x[::2], np.array([True, False, True]))


def test_index_out_of_range_raises():
    x = gc.zeros(3, 4)
    with pytest.raises(IndexError, match="out of bounds"):
        x[3]
    with pytest.raises(IndexError, match="out of bounds"):
        x[:, -5]
    with pytest.raises(IndexError, match="too many indices"):
        x[0, 0, 0]
    with pytest.raises(IndexError, match="long, int or bool"):
        x[gc.tensor([0.0])]


@pytest.mark.parametrize("key", [[0, 4], [-5], ([0, 1], [2, 5])],
                         ids=["past_end", "before_start", "second_of_two"])
def test_index_array_out_of_range_raises_when_computed(key):
    x = gc.zeros(4, 5)
    key = tuple(gc.tensor(k) for k in key) if isinstance(key, tuple) else gc.tensor(key)
    y = x[key]
    with pytest.raises(IndexError, match="out of range"):
        y.numpy()
    z = x.clone()
    z[key] = 1.0
    with pytest.raises(IndexError, match="out of range"):
        z.numpy()
    del y, z  # pending values that fail would be retried by every later realization
    pygc.collect()


@pytest.mark.parametrize("key", [
    pytest.param((Ellipsis, 0, Ellipsis, 1), id="int"),
    pytest.param((Ellipsis, 0, Ellipsis, None), id="none"),
    pytest.param((Ellipsis, 0, Ellipsis, True), id="bool"),
    pytest.param((Ellipsis, 0, Ellipsis, slice(1, None)), id="partial_slice"),
    pytest.param((Ellipsis, 0, Ellipsis, [0]), id="list"),
])
def test_index_past_the_last_dim_after_a_second_ellipsis_raises_like_torch(key):
    for m in (torch, gc):
        with pytest.raises(IndexError):
            m.zeros(2, 3, 4)[key]


def test_bool_index_broadcast_mismatch_raises_like_torch():
    for m in (torch, gc):
        with pytest.raises((IndexError, RuntimeError)):
            m.zeros(2, 3)[:, False, [0, 1]]


@pytest.mark.parametrize("key", [[True, False], (slice(None), np.ones(4, bool)),
                                 (Ellipsis, np.ones((5, 5), bool))],
                         ids=["first_dim", "second_dim", "last_two_dims"])
def test_bool_mask_of_the_wrong_shape_raises_like_torch(key):
    for m in (torch, gc):
        with pytest.raises(IndexError, match="shape of the mask"):
            m.zeros(4, 5, 6)[key]


def test_bool_mask_read_is_refused_with_advice():
    x = gc.zeros(3)
    with pytest.raises(IndexError, match="data-dependent"):
        x[x > 0]


# ---------------------------------------------------------------------------- setitem

def _set(m, x, key, value):
    x = x.clone()
    x[_key(m, key)] = _key(m, value) if isinstance(value, A) else value
    return x


SET_CASES = [
    pytest.param(1, 2.5, id="int_scalar"),
    pytest.param(-1, A(np.ones((5, 6)), np.float32), id="neg_int_tensor"),
    pytest.param((slice(None), 1), A(np.arange(6), np.float32), id="row_broadcast"),
    pytest.param(slice(None, None, 2), 0.0, id="step"),
    pytest.param((Ellipsis, -1), A(np.arange(5), np.float32), id="ellipsis_column"),
    pytest.param((slice(1, 3), slice(None, None, 2), 0), -1.0, id="mixed_slices"),
    pytest.param(A([0, 2]), 3.0, id="array"),
    pytest.param((A([0, 1]), A([1, 4])), A([[7.0], [8.0]], np.float32), id="two_arrays"),
    pytest.param((A([0, 1]), A([1, 4]), A([0, 5])), A([7.0, 8.0], np.float32),
                 id="three_arrays_elementwise"),
    pytest.param(A([1, 1, 2]), 3.0, id="repeated_index_scalar"),
    pytest.param((A([2, 0, 2]), 1), A([[5.0]], np.float32), id="repeated_index_same_value"),
    pytest.param((A([0, 3]), slice(None), A([1, 2])), A(np.zeros((2, 5)), np.float32),
                 id="non_adjacent_arrays"),
    pytest.param((slice(None), A([-1, 0])), 1, id="neg_array_int_value"),
    pytest.param((None, 0), 4.0, id="none_int"),
    pytest.param((0, 0, 0), A(9.0, np.float32), id="element_0d_tensor"),
    pytest.param(A(X > 0, bool), 0.0, id="bool_mask_same_shape"),
    pytest.param(A(X[:, :, 0] > 0, bool), A(np.arange(6), np.float32), id="bool_mask_leading"),
    pytest.param(A([True, False, True, True], bool), -2.0, id="bool_mask_rows"),
    pytest.param(A([True, False, True, True], bool), A(np.arange(6), np.float32),
                 id="bool_mask_rows_broadcast_value"),
    pytest.param(True, 9.0, id="true_every_element"),
    pytest.param(False, 9.0, id="false_nothing"),
    pytest.param((0, True), A(np.arange(6), np.float32), id="int_true"),
    pytest.param((Ellipsis, False), A(1.0, np.float32), id="ellipsis_false"),
    pytest.param([], 5.0, id="empty_list"),
    pytest.param(A([]), A(np.ones((1, 5, 6)), np.float32), id="empty_array_leading_one"),
    pytest.param((Ellipsis, 0, Ellipsis), -3.0, id="two_ellipses"),
    # a value's leading size-1 dims are dropped before it is broadcast to the selection
    pytest.param((0, 0, 0), A([3.0], np.float32), id="element_leading_one"),
    pytest.param(0, A(np.ones((1, 1, 5, 6)), np.float32), id="row_leading_ones"),
    pytest.param((slice(None), 0), A(np.ones((1, 4, 6)), np.float32), id="column_leading_one"),
    pytest.param(A([0, 2]), A(np.ones((1, 2, 5, 6)), np.float32), id="array_leading_one"),
    pytest.param((A([0, 1]), A([1, 4])), A([[[7.0], [8.0]]], np.float32),
                 id="two_arrays_leading_one"),
    pytest.param((1, slice(1, 3)), A(np.ones((1, 1, 6)), np.float32),
                 id="slice_leading_one_broadcast_inside"),
]


@pytest.mark.parametrize("key,value", SET_CASES)
def test_setitem(key, value):
    run_both(lambda m, x: _set(m, x, key, value), X)


def test_setitem_casts_value_to_tensor_dtype():
    run_both(lambda m, x: _set(m, x, slice(0, 2), 7.9), np.arange(6).reshape(3, 2))
    run_both(lambda m, x: _set(m, x, 1, A([1, 2])), np.zeros((3, 2), np.float32))
    run_both(lambda m, x: _set(m, x, 0, True), np.zeros(3, bool))


def test_setitem_does_not_change_earlier_reads():
    run_both(lambda m, x: (lambda y: (y, _set(m, y, 0, 0.0)))(x[1:] * 1), X)


def test_setitem_repeated_index_int_tensor():
    run_both(lambda m, x: _set(m, x, A([0, 0, 2]), 5), np.zeros(4, np.int64))


def test_setitem_mask_value_per_selected_element_is_refused():
    x = gc.zeros(3)
    with pytest.raises(IndexError, match="needs the mask's data"):
        x[gc.tensor([True, False, True])] = gc.tensor([1.0, 2.0])
    with pytest.raises(IndexError, match="shape of the mask"):
        x[gc.tensor([True, False])] = 1.0


def test_setitem_with_value_of_wrong_shape_raises():
    x = gc.zeros(3, 4)
    with pytest.raises(RuntimeError, match=r"\[5\]"):
        x[0] = gc.ones(5)


@pytest.mark.parametrize("key,shape", [
    pytest.param(0, (2, 4), id="leading_dim_not_one"),
    pytest.param((0, 0), (2,), id="element_from_two"),
    pytest.param(0, (1, 1, 3), id="leading_ones_then_wrong_size"),
])
def test_setitem_value_that_does_not_fit_raises_like_torch(key, shape):
    for m in (torch, gc):
        x = m.zeros(3, 4)
        with pytest.raises(RuntimeError):
            x[key] = m.ones(*shape)


def _leading_ones_write_story(m):
    """`out[i] = f(x)` with an f(x) of shape (1, ...): gradients reach the value and,
    where it is not overwritten, the tensor written into."""
    leaf = m.arange(6.0).reshape(2, 3).requires_grad_()
    row = m.tensor([[1.0, 2.0, 3.0]], requires_grad=True)
    one = m.tensor([5.0], requires_grad=True)
    block = m.ones(1, 2, 2, requires_grad=True)
    x = leaf * 1
    x[0] = row * 2
    x[1, 2] = one * 3
    y = m.zeros(3, 2, 2) + 0
    y[m.tensor([0, 2])] = block * 4
    (x * (m.arange(6.0).reshape(2, 3) + 1)).sum().backward(retain_graph=True)
    (y * m.arange(12.0).reshape(3, 2, 2)).sum().backward()
    return x, y, leaf.grad, row.grad, one.grad, block.grad


def test_setitem_value_with_leading_ones_gradients_match_torch():
    run_both(_leading_ones_write_story)


def test_bool_index_write_gradients_match_torch():
    def story(m):
        leaf = m.arange(6.0).reshape(2, 3).requires_grad_()
        v = m.tensor([[[1.0, 2.0, 3.0]]], requires_grad=True)
        x = leaf * 1
        x[1, True] = v * 2
        x[False] = 7.0
        (x * x).sum().backward()
        return x, leaf.grad, v.grad, leaf[True] * 2, leaf[0, False] + 1
    run_both(story)


@pytest.mark.parametrize("key", [1.5, (0, 2.0)], ids=["float", "float_in_tuple"])
def test_non_index_key_raises_index_error_like_torch(key):
    import torch
    for m in (torch, gc):
        with pytest.raises(IndexError):
            m.zeros(3, 4)[key]


@pytest.mark.parametrize("key", [
    pytest.param((0,), id="int"),
    pytest.param((slice(None), 1), id="col"),
    pytest.param((None, slice(1, 3)), id="none_slice"),
    pytest.param((Ellipsis, slice(None, None, 2)), id="ellipsis_step"),
    pytest.param((-1, None, slice(None, None, 3)), id="neg_none_step"),
])
def test_basic_index_is_a_view_written_through(key):
    def fn(m):
        a = m.tensor(X.copy())
        v = a[key]
        v.mul_(-2)        # reaches a
        a.add_(1)         # and a's change shows in v
        return a, v, v.stride()
    run_both(fn)


def test_advanced_index_is_a_copy():
    def fn(m):
        a = m.tensor(X.copy())
        c = a[[0, 2]]
        c.zero_()
        return a, c
    run_both(fn)


def _index_put_story(lib):
    x = lib.zeros(3, 4)
    out = [lib.index_put(x, (lib.tensor([0, 0, 2]),), lib.tensor(1.0), accumulate=True),
           x.index_put((lib.tensor([0, 2]), lib.tensor([1, 3])), lib.tensor([5.0, 6.0]))]
    y = lib.zeros(3, 4)
    y.index_put_((lib.tensor([1, 1]), lib.tensor([2, 2])), lib.tensor([1.0, 2.0]),
                 accumulate=True)
    out.append(y)
    w = lib.ones(3, requires_grad=True)
    v = lib.tensor([1.0, 2.0], requires_grad=True)
    put = lib.index_put(w * 1, (lib.tensor([0, 0]),), v * 3, accumulate=True)
    (put * lib.tensor([1.0, 2.0, 3.0])).sum().backward()
    return [t.tolist() for t in out] + [w.grad.tolist(), v.grad.tolist()]


def test_index_put_with_and_without_accumulate_matches_torch():
    assert _index_put_story(gc) == _index_put_story(torch)
    with pytest.raises(RuntimeError, match="dtypes match"):
        gc.zeros(3).index_put((gc.tensor([0]),), gc.tensor([1], dtype=gc.int64))


_NEGATIVE_INDEX_CASES = {
    # PyTorch refuses a negative index here...
    "gather": (lambda L, x: L.gather(x, 1, L.tensor([[-1], [0]])), False),
    "index_select": (lambda L, x: x.index_select(1, L.tensor([-1])), False),
    "scatter_add": (lambda L, x: L.zeros(3).scatter_add(0, L.tensor([-1]), L.ones(1)), False),
    "index_add": (lambda L, x: L.zeros(3).index_add(0, L.tensor([-1]), L.ones(1)), False),
    "index_copy": (lambda L, x: L.zeros(3).index_copy(0, L.tensor([-1]), L.ones(1)), False),
    "scatter": (lambda L, x: L.zeros(3).scatter(0, L.tensor([-1]), L.ones(1)), False),
    "embedding": (lambda L, x: L.nn.functional.embedding(L.tensor([-1]), x), False),
    "cross_entropy": (lambda L, x: L.nn.functional.cross_entropy(L.tensor([[0.0, 1.0, 5.0]]),
                                                                 L.tensor([-1])), False),
    "nll_loss": (lambda L, x: L.nn.functional.nll_loss(L.tensor([[-1.0, -2.0, -3.0]]),
                                                       L.tensor([-2])), False),
    # ... and counts it from the end here
    "take_along_dim": (lambda L, x: L.take_along_dim(x, L.tensor([[-1], [0]]), 1), True),
    "take_along_dim flat": (lambda L, x: L.take_along_dim(x, L.tensor([-1])), False),
    "index_fill": (lambda L, x: L.zeros(3).index_fill(0, L.tensor([-1]), 1.0), True),
    "indexing": (lambda L, x: x[:, L.tensor([-1])], True),
    "cross_entropy ignore_index=-1": (
        lambda L, x: L.nn.functional.cross_entropy(L.tensor([[0.0, 1.0, 5.0], [1.0, 2.0, 3.0]]),
                                                   L.tensor([-1, 2]), ignore_index=-1), True),
}


@pytest.mark.parametrize("case", list(_NEGATIVE_INDEX_CASES))
def test_negative_indices_are_refused_or_counted_from_the_end_as_in_torch(case):
    """The IR's gather counts -1 from the end; gather, index_select, embedding and the
    loss targets must refuse it as PyTorch does (a -1 padding label trained on the last
    class, silently)."""
    fn, accepted = _NEGATIVE_INDEX_CASES[case]
    if accepted:
        got = fn(gc, gc.arange(6.0).reshape(2, 3))
        want = fn(torch, torch.arange(6.0).reshape(2, 3))
        np.testing.assert_allclose(np.asarray(got.tolist()), np.asarray(want.tolist()),
                                   rtol=1e-6)
        return
    with pytest.raises((IndexError, RuntimeError)):
        fn(torch, torch.arange(6.0).reshape(2, 3))
    with pytest.raises(IndexError, match=r"valid indices: 0\.\."):
        fn(gc, gc.arange(6.0).reshape(2, 3)).tolist()


def _repeated_writes_story(L):
    z = L.zeros(3, dtype=L.float64)
    s = L.tensor([1.0, 10.0], dtype=L.float64, requires_grad=True)
    o = L.scatter(z, 0, L.tensor([0, 0]), s)
    (o * L.tensor([2.0, 3.0, 4.0], dtype=L.float64)).sum().backward()
    out = [o.tolist(), s.grad.tolist(),
           z.index_put((L.tensor([0, 0]),), L.tensor([5.0, 7.0], dtype=L.float64)).tolist(),
           L.index_copy(z, 0, L.tensor([1, 1]), L.tensor([2.0, 9.0], dtype=L.float64)).tolist(),
           L.zeros(2, dtype=L.int64).index_put((L.tensor([0, 0]),), L.tensor([1, 4])).tolist()]
    x = L.zeros(4)
    x[L.tensor([2, 0, 2, 2])] = L.tensor([1.0, 2.0, 3.0, 4.0])
    b = L.zeros(3, dtype=L.bool)
    b[L.tensor([1, 1])] = L.tensor([True, False])
    out += [x.tolist(), b.tolist()]
    w = L.ones(4, requires_grad=True)
    v = L.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = (w * 1).index_put((L.tensor([1, 3, 1]),), v * 2)
    (y * L.arange(4.0)).sum().backward()
    m = L.full((3,), -0.0)
    m[L.tensor([0, 0])] = L.tensor([1.0, -0.0])
    return out + [y.tolist(), w.grad.tolist(), v.grad.tolist(), str(m.tolist())]


def test_repeated_index_writes_keep_the_last_value_and_torchs_gradients():
    """scatter / index_put / index_copy / x[idx] = v with a repeated position: the last
    write stays (an average of the writes, as before, is none of the values written),
    every source element gets its place's gradient, and -0.0 survives a write."""
    assert _repeated_writes_story(gc) == _repeated_writes_story(torch)


def _untouched_zero_signs(L):
    """1/x of the elements a write or scatter leaves alone: +-inf says which zero."""
    a = L.zeros(3)
    a[L.tensor([0])] = 5.0
    b = L.full((3,), -0.0).scatter_add(0, L.tensor([1]), L.tensor([5.0]))
    c = L.zeros(2, 3).scatter(1, L.tensor([[2], [0]]), 1.0)
    d = L.full((2, 3), -0.0).scatter_add(1, L.tensor([[2], [0]]), L.ones(2, 1))
    return [(1 / t).tolist() for t in (a, b, c, d)]


@pytest.mark.parametrize("backend", ["llvm", "interp"])
def test_untouched_elements_keep_the_sign_of_their_zero(backend, monkeypatch):
    """A +0.0 constant and a -0.0 one in one kernel were one value to the code
    generator (-0.0 == 0.0), and the one-index scatter_add added 0.0 to every element."""
    monkeypatch.setenv("GRAPHC_BACKEND", backend)
    assert _untouched_zero_signs(gc) == _untouched_zero_signs(torch)
