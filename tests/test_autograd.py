"""Autograd semantics as PyTorch defines them: accumulation, requires_grad propagation,
grad modes, detach, leaves and in-place rules, explicit upstream gradients, errors, and
gradients of gradients. Each scenario runs on graphc and torch where both apply.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphc as gc
from conftest import assert_close, run_both, to_torch

pytestmark = pytest.mark.filterwarnings("ignore:Using backward\\(\\) with create_graph")

X0 = np.array([[0.5, -1.2, 2.0], [1.5, 0.3, -0.7]])


def _leaf(m, data=X0, dtype=None):
    return m.tensor(data, dtype=dtype or m.float32, requires_grad=True)


def test_gradients_accumulate_across_backward_calls():
    def run(m):
        x = _leaf(m)
        (x * x).sum().backward()
        (x.sin() * 3).sum().backward()
        return x.grad
    assert_close(run(gc), run(torch))


def test_second_backward_on_the_same_graph_accumulates():
    def run(m):
        x = _leaf(m)
        y = (x.exp() * x).sum()
        y.backward(retain_graph=True)
        y.backward()
        return x.grad
    assert_close(run(gc), run(torch))


def test_requires_grad_propagation():
    for m in (gc, torch):
        x = _leaf(m)
        c = m.ones(2, 3)
        assert x.requires_grad and x.is_leaf and x.grad_fn is None
        assert not c.requires_grad
        y = x * c + 1
        assert y.requires_grad and not y.is_leaf and y.grad_fn is not None
        assert not (c * 2).requires_grad
        assert not (x > 0).requires_grad, m
        assert not x.long().requires_grad
        assert not x.argmax().requires_grad
        assert x.double().requires_grad
        assert not x.detach().requires_grad and x.detach().is_leaf
        z = m.zeros(3)
        assert not z.requires_grad
        z.requires_grad_()
        assert z.requires_grad and z.is_leaf


def test_requires_grad_errors():
    with pytest.raises(RuntimeError, match="floating point"):
        gc.tensor([1, 2]).requires_grad_()
    y = _leaf(gc) * 2
    with pytest.raises(RuntimeError, match="leaf variables"):
        y.requires_grad_(False)
    with pytest.raises(RuntimeError, match="does not require grad"):
        gc.ones(2).sum().backward()


def test_no_grad_context_and_decorator():
    x = _leaf(gc)
    with gc.no_grad():
        assert not gc.is_grad_enabled()
        y = x * 2
    assert gc.is_grad_enabled()
    assert not y.requires_grad and y.is_leaf

    @gc.no_grad()
    def double(t):
        return t * 2

    assert not double(x).requires_grad
    assert (x * 2).requires_grad
    assert double.__name__ == "double"

    @gc.no_grad
    def triple(t):
        return t * 3

    assert not triple(x).requires_grad and gc.is_grad_enabled()


def test_enable_grad_inside_no_grad():
    x = _leaf(gc)
    with gc.no_grad():
        with gc.enable_grad():
            y = x * 2
        z = x * 2

        @gc.enable_grad()
        def f(t):
            return t * 3
        w = f(x)
    assert y.requires_grad and not z.requires_grad and w.requires_grad
    y.sum().backward()
    assert_close(x.grad, torch.full((2, 3), 2.0))


def test_no_grad_restores_mode_after_exception():
    with pytest.raises(ValueError):
        with gc.no_grad():
            raise ValueError("boom")
    assert gc.is_grad_enabled()


def test_set_grad_enabled_function_and_context():
    gc.set_grad_enabled(False)
    try:
        assert not gc.is_grad_enabled()
    finally:
        gc.set_grad_enabled(True)
    x = _leaf(gc)
    with gc.set_grad_enabled(False):
        assert not (x * 2).requires_grad
    assert gc.is_grad_enabled() and (x * 2).requires_grad

    @gc.set_grad_enabled(False)
    def double(t):
        return t * 2

    assert gc.is_grad_enabled()
    assert not double(x).requires_grad and gc.is_grad_enabled()


def test_detach_blocks_gradient():
    def run(m):
        x = _leaf(m)
        y = x * x.detach() + x.detach().exp()
        y.sum().backward()
        return x.grad, x.detach()
    assert_close(run(gc), run(torch))


def test_detached_value_is_shared_but_not_tracked():
    x = _leaf(gc)
    d = x.detach()
    np.testing.assert_array_equal(d.numpy(), X0.astype(np.float32))
    with pytest.raises(RuntimeError, match="detach"):
        x.numpy()


def test_non_scalar_backward_needs_gradient():
    y = _leaf(gc) * 2
    with pytest.raises(RuntimeError, match="only for scalar outputs"):
        y.backward()


def test_backward_with_explicit_gradient():
    g = np.array([[1.0, 2.0, 3.0], [-1.0, 0.5, 0.0]])

    def run(m):
        x = _leaf(m)
        y = x.tanh() * 3
        y.backward(gradient=m.tensor(g, dtype=m.float32))
        return x.grad
    assert_close(run(gc), run(torch))


def test_backward_gradient_shape_mismatch_raises():
    y = _leaf(gc) * 2
    with pytest.raises(RuntimeError, match=r"\[3\].*\[2, 3\]"):
        y.backward(gc.ones(3))


def test_inplace_on_leaf_requiring_grad_raises():
    for m in (gc, torch):
        x = _leaf(m)
        for op in (lambda t: t.add_(1), lambda t: t.mul_(2), lambda t: t.zero_(),
                   lambda t: t.fill_(1.0), lambda t: t.copy_(m.ones(2, 3))):
            with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
                op(x)
        with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
            x += 1


def test_setitem_on_leaf_requiring_grad_raises():
    x = _leaf(gc)
    with pytest.raises(RuntimeError, match="leaf Variable that requires grad"):
        x[0] = 1.0


def test_inplace_under_no_grad_keeps_leaf():
    def run(m):
        x = _leaf(m)
        (x * x).sum().backward()
        with m.no_grad():
            x -= 0.1 * x.grad
            x.mul_(2)
            x[0, 0] = 5.0
        assert x.is_leaf and x.requires_grad and x.grad_fn is None
        x.grad = None
        (x ** 3).sum().backward()
        return x.detach(), x.grad
    assert_close(run(gc), run(torch))


def test_inplace_through_data_changes_the_tensor_and_keeps_it_a_leaf():
    def run(m):
        x = _leaf(m)
        x.data.mul_(2)
        x.data[0] = 1.0
        x.data.add_(m.ones(3))
        assert x.is_leaf and x.requires_grad
        (x * x).sum().backward()
        x.data = m.zeros(2, 3)
        assert x.is_leaf and x.requires_grad
        return x.detach(), x.grad
    assert_close(run(gc), run(torch))


def test_inplace_on_non_leaf_is_differentiated():
    def run(m):
        x = _leaf(m)
        y = x * 2
        y += x.exp()
        y.mul_(x)
        y[:, 1] = 0.0
        y.sum().backward()
        return y.detach(), x.grad
    assert_close(run(gc), run(torch))


def test_inplace_add_of_grad_tensor_into_plain_tensor():
    def run(m):
        x = _leaf(m)
        acc = m.zeros(2, 3)
        acc += x * x
        assert acc.requires_grad and not acc.is_leaf
        acc.sum().backward()
        return x.grad
    assert_close(run(gc), run(torch))


def test_grad_of_non_leaf_is_none():
    x = _leaf(gc)
    y = x * 2
    y.sum().backward()
    assert y.grad is None and x.grad is not None


def test_retain_grad_on_non_leaf():
    def run(m):
        x = _leaf(m)
        y = x * 2
        y.retain_grad()
        z = (y * y).sum()
        z.backward()
        return y.grad, x.grad
    assert_close(run(gc), run(torch))


def test_grad_is_plain_tensor_and_can_be_reset():
    x = _leaf(gc)
    (x * 3).sum().backward()
    assert not x.grad.requires_grad and x.grad.is_leaf
    x.grad = None
    (x * 2).sum().backward()
    assert_close(x.grad, torch.full((2, 3), 2.0))
    x.grad.zero_()
    assert_close(x.grad, torch.zeros(2, 3))
    with pytest.raises(RuntimeError, match="different size"):
        x.grad = gc.zeros(3)


def test_reading_values_before_backward():
    def run(m):
        x = _leaf(m)
        h = (x * 1.5).tanh()
        loss = (h * h).mean()
        first = loss.item()
        loss.backward()
        return first, x.grad
    assert_close(run(gc), run(torch))


# ---------------------------------------------------------------------------- higher order

@pytest.mark.parametrize("fn", [lambda x: x ** 3, lambda x: x.tanh(), lambda x: x.sigmoid() * x,
                                lambda x: (x * x).exp(), lambda x: x.softmax(-1)],
                         ids=["cube", "tanh", "x_sigmoid", "exp_square", "softmax"])
def test_second_derivative_with_create_graph(fn):
    def run(m):
        x = _leaf(m, dtype=m.float64)
        fn(x).sum().backward(create_graph=True)
        g = x.grad
        assert g.requires_grad
        x.grad = None
        (g * g).sum().backward()
        return g.detach(), x.grad
    assert_close(run(gc), run(torch))


def test_second_derivative_values_of_cube_and_tanh():
    x = _leaf(gc, dtype=gc.float64)
    (x ** 3).sum().backward(create_graph=True)
    g = x.grad
    x.grad = None
    g.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 6 * X0, rtol=1e-12)
    x = _leaf(gc, dtype=gc.float64)
    x.tanh().sum().backward(create_graph=True)
    g = x.grad
    x.grad = None
    g.sum().backward()
    t = np.tanh(X0)
    np.testing.assert_allclose(x.grad.numpy(), -2 * t * (1 - t * t), rtol=1e-12)


def test_third_derivative():
    x = _leaf(gc, dtype=gc.float64)
    (x ** 4).sum().backward(create_graph=True)
    g1 = x.grad
    x.grad = None
    g1.sum().backward(create_graph=True)
    g2 = x.grad
    x.grad = None
    g2.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 24 * X0, rtol=1e-12)


def test_gradient_penalty_mixed_second_order():
    w0 = np.array([[0.3, -0.2], [0.1, 0.4], [-0.5, 0.2]])

    def run(m):
        x = _leaf(m, dtype=m.float64)
        w = m.tensor(w0, requires_grad=True)
        out = (x @ w).tanh().sum()
        out.backward(create_graph=True)
        gx = x.grad
        x.grad, w.grad = None, None
        (gx * gx).sum().backward()
        return w.grad, x.grad
    assert_close(run(gc), run(torch))


def test_to_torch_roundtrip_of_gradients():
    x = _leaf(gc)
    (x * 2).sum().backward()
    assert torch.equal(to_torch(x.grad), torch.full((2, 3), 2.0))


# ---------------------------------------------------------------------------- views
# Writes through a view reach its base and writes into a base show in its views, as in
# PyTorch; each case returns tensors compared with torch's.

def _v_select_add(m):
    a = m.tensor([[1., 2.], [3., 4.]])
    b = a[0]
    b.add_(1)
    return a, b


def _v_chained_setitem(m):
    a = m.zeros(2, 3)
    a[0][1] = 5
    a[1, :] += 1
    return a


def _v_view_then_setitem(m):
    a = m.arange(12.).reshape(3, 4)
    b = a.view(4, 3)
    b[0, 0] = 100
    return a, b


def _v_transpose_mul(m):
    a = m.arange(12.).reshape(3, 4)
    a.t().mul_(2)
    a.T[0, 1] = -1
    return a


def _v_base_change_seen_by_view(m):
    a = m.arange(12.).reshape(3, 4)
    b = a[:, 1:3]
    c = b[1]
    a.add_(1)
    return b, c


def _v_split_unsqueeze_flatten(m):
    a = m.zeros(2, 3)
    a.split(1)[1].fill_(1)
    a.unsqueeze(0)[0, 0, 2] = 3
    a.view(-1)[1] = 7
    a.flatten()[3] = 9
    return a


def _v_detach_and_data_share_values(m):
    x = m.arange(4.)
    x.detach().zero_()
    y = m.ones(3, requires_grad=True)
    y.data[1] = 5
    d = y.detach()
    with m.no_grad():
        y.mul_(2)
    return x, y.detach(), d


def _v_narrow_strided_expand_slice(m):
    a = m.zeros(3, 5)
    a.narrow(1, 1, 2).fill_(1)
    a[::2, ::2] = 2
    e = m.zeros(4)
    e.expand(3, 4)[1].fill_(6)  # one row of an expand is the base's row
    return a, e


def _v_clone_and_contiguous_copy(m):
    a = m.arange(6.).reshape(2, 3)
    a.clone().zero_()
    a.t().contiguous().zero_()
    a.reshape(3, 2).contiguous()[0, 0] = 9   # already contiguous: a view
    return a


def _v_gradient_through_written_view(m):
    x = m.tensor([1., 2., 3.], requires_grad=True)
    y = x * 1
    y[1:].mul_(3)
    y.sum().backward()
    return x.grad, y


def _v_gradient_zero_after_zero_(m):
    x = m.tensor([1., 2., 3.], requires_grad=True)
    y = x * 2
    y.zero_()
    y[0] = x[0] * x[0]
    y.sum().backward()
    return x.grad, y.requires_grad


def _v_parameter_row_under_no_grad(m):
    w = m.ones(2, 3, requires_grad=True)
    with m.no_grad():
        w[0].zero_()
        w[:, 2] = 4
    (w * w).sum().backward()
    return w.detach(), w.grad, w.is_leaf, w.requires_grad


VIEW_CASES = [_v_select_add, _v_chained_setitem, _v_view_then_setitem, _v_transpose_mul,
              _v_base_change_seen_by_view, _v_split_unsqueeze_flatten,
              _v_detach_and_data_share_values, _v_narrow_strided_expand_slice,
              _v_clone_and_contiguous_copy, _v_gradient_through_written_view,
              _v_gradient_zero_after_zero_, _v_parameter_row_under_no_grad]


@pytest.mark.parametrize("fn", VIEW_CASES, ids=[f.__name__[3:] for f in VIEW_CASES])
def test_views_alias_their_base_like_torch(fn):
    run_both(fn)


@pytest.mark.parametrize("op", [
    lambda m, x: x[0].add_(1),
    lambda m, x: x.view(3, 1).zero_(),
    lambda m, x: x.unsqueeze(0).__setitem__((0, 1), 2.0),
], ids=["select", "view", "unsqueeze_setitem"])
def test_inplace_on_view_of_leaf_requiring_grad_raises_like_torch(op):
    for m in (torch, gc):
        x = m.tensor([1., 2., 3.], requires_grad=True)
        with pytest.raises(RuntimeError, match="view of a leaf Variable"):
            op(m, x)
        with m.no_grad():
            op(m, x)   # allowed without grad mode


def test_inplace_on_expanded_view_raises_like_torch():
    for m in (torch, gc):
        with pytest.raises(RuntimeError, match="more than one element"):
            m.zeros(3).expand(2, 3).add_(1)


def test_inference_mode_context_and_decorators_like_torch():
    def run(m):
        x = _leaf(m)
        seen = []
        with m.inference_mode():
            y = x * 2
            seen += [m.is_grad_enabled(), m.is_inference_mode_enabled()]
            with m.inference_mode(False):   # turns gradients back on, even here
                seen += [m.is_grad_enabled(), m.is_inference_mode_enabled()]
            seen.append(m.is_inference_mode_enabled())
        with m.no_grad(), m.inference_mode(False):
            seen.append(m.is_grad_enabled())
        seen += [m.is_grad_enabled(), m.is_inference_mode_enabled(), y.requires_grad]

        @m.inference_mode
        def bare(t):
            return m.is_grad_enabled(), (t * 3).requires_grad

        @m.inference_mode()
        def called(t):
            return m.is_inference_mode_enabled(), (t * 3).requires_grad

        @m.inference_mode(mode=False)
        def off(t):
            return m.is_inference_mode_enabled(), (t * 3).requires_grad

        return seen + list(bare(x)) + list(called(x)) + list(off(x)) + \
            [m.is_grad_enabled(), m.is_inference_mode_enabled()]
    assert run(gc) == run(torch)


def test_inference_mode_restores_after_exception():
    with pytest.raises(ValueError):
        with gc.inference_mode():
            raise ValueError
    assert gc.is_grad_enabled() and not gc.is_inference_mode_enabled()


# ---------------------------------------------------------------- found by an autograd sweep

@pytest.mark.parametrize("lib", [gc, torch], ids=["graphc", "torch"])
def test_grad_mode_decorators_apply_to_every_resume_of_a_generator(lib):
    @lib.no_grad()
    def generate(x):
        for _ in range(2):
            yield lib.is_grad_enabled(), (x * 2).requires_grad

    @lib.enable_grad()
    def wants_grad():
        yield lib.is_grad_enabled()

    @lib.inference_mode()
    def echo():
        received = yield lib.is_grad_enabled()
        yield received
    assert list(generate(lib.ones(2, requires_grad=True))) == [(False, False)] * 2
    with lib.no_grad():
        assert list(wants_grad()) == [True]
    it = echo()
    assert next(it) is False and it.send(5) == 5 and lib.is_grad_enabled()


def _inputs_case(lib, which):
    a = lib.tensor([1.0, 2.0], requires_grad=True)
    b = lib.tensor([3.0, 4.0], requires_grad=True)
    if which == "bare tensor":
        (a * b).sum().backward(inputs=a)
        return [a.grad, b.grad]
    if which == "non-leaf":
        m = a * 2
        (m * b).sum().backward(inputs=[m])
        return [m.grad, a.grad, b.grad]
    m = a * 2
    m.retain_grad()
    (m ** 2).sum().backward(inputs=[a])
    return [m.grad, a.grad, b.grad]


@pytest.mark.parametrize("which", ["bare tensor", "non-leaf", "retained on the way"])
def test_backward_inputs_accumulate_only_into_what_they_name(which):
    got, want = _inputs_case(gc, which), _inputs_case(torch, which)
    for g, w in zip(got, want):
        assert (g is None) == (w is None)
        if w is not None:
            np.testing.assert_array_equal(g.numpy(), w.numpy())
    with pytest.raises(RuntimeError, match="cannot be empty"):
        (gc.ones(2, requires_grad=True) * 2).sum().backward(inputs=[])


def test_backward_gradient_of_another_float_dtype_is_converted():
    for lib in (gc, torch):
        x = lib.tensor([1.0, 2.0], requires_grad=True)
        (x * 2).backward(gradient=lib.tensor([1.0, 3.0], dtype=lib.float64))
        assert x.grad.dtype == lib.float32 and x.grad.tolist() == [2.0, 6.0]
        y = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
        (y * 3).sum().backward(lib.tensor(2.0))
        assert y.grad.tolist() == [6.0, 6.0]


def test_gradient_accumulates_into_the_existing_grad_tensor():
    w = gc.tensor([1.0, 2.0], requires_grad=True)
    (w * 3).sum().backward()
    kept = w.grad
    (w * 3).sum().backward()
    assert kept is w.grad and kept.tolist() == [6.0, 6.0]


@pytest.mark.parametrize("case", ["max", "min", "amax", "maximum", "minimum", "max ties"])
def test_gradients_at_nan_and_ties_follow_torch(case):
    def run(lib):
        nan = float("nan")
        x = lib.tensor([1.0, 3.0, 3.0] if case == "max ties" else [1.0, nan, 3.0],
                       requires_grad=True)
        y = lib.tensor([2.0, 2.0, 2.0], requires_grad=True)
        if case in ("maximum", "minimum"):
            getattr(lib, case)(x, y).sum().backward()
            return [x.grad, y.grad]
        getattr(x, case.split()[0])().backward()
        return [x.grad]
    for g, w in zip(run(gc), run(torch)):
        np.testing.assert_array_equal(g.numpy(), w.numpy())


def _reshaping_inplace_story(lib):
    a = lib.ones(3, 1)
    out = [tuple(a.t_().shape), a.stride(), a.is_contiguous()]
    b = lib.ones(3, 1)
    b.unsqueeze_(0)
    out.append(tuple(b.shape))
    b.squeeze_(2)
    out.append(tuple(b.shape))
    b.squeeze_()
    out.append(tuple(b.shape))
    c = lib.arange(6.0).reshape(2, 3)      # a view of the arange
    c.transpose_(0, 1)
    out += [c.tolist(), c.stride()]
    x = lib.ones(2, 3, requires_grad=True)
    y = x * 2
    y.t_()
    (y * lib.arange(6.0).reshape(3, 2)).sum().backward()
    out.append(x.grad.tolist())
    base = lib.zeros(2, 3)
    v = base[1]
    v.unsqueeze_(0)
    v.fill_(7)                              # a reshaped view still writes its base
    out += [base.tolist(), tuple(v.shape)]
    base = lib.zeros(2, 3)
    v = base[:, 1]
    base.t_()                               # a live view reads its base through the change
    v.fill_(5)
    out.append(base.tolist())
    base.add_(1)
    out.append(v.tolist())
    return out


def test_in_place_shape_changes_match_torch():
    assert _reshaping_inplace_story(gc) == _reshaping_inplace_story(torch)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        gc.ones(3, 1, requires_grad=True).t_()


def _autograd_functions_story(lib):
    x = lib.tensor([1.0, 2.0, 3.0], dtype=lib.float64, requires_grad=True)
    w = lib.tensor([0.5, -1.0, 2.0], dtype=lib.float64, requires_grad=True)
    (g,) = lib.autograd.grad(lib.tanh(x * w).sum(), x, create_graph=True)
    ((g.norm() - 1) ** 2).backward()               # a gradient penalty, WGAN-GP style
    out = [g.tolist(), x.grad.tolist(), w.grad.tolist()]
    v = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
    (gv,) = lib.autograd.grad((v ** 3).sum(), [v], create_graph=True)
    (hvp,) = lib.autograd.grad(gv, v, grad_outputs=lib.tensor([1.0, 0.5], dtype=lib.float64))
    out.append(hvp.tolist())
    m = v * 2                                      # a non-leaf input
    (gm,) = lib.autograd.grad((m * m).sum(), m)
    out.append(gm.tolist())
    u = lib.tensor([1.0], dtype=lib.float64, requires_grad=True)
    unused = lib.autograd.grad((v * 2).sum(), [v, u], allow_unused=True)
    zeros = lib.autograd.grad((v * 2).sum(), [u, v], materialize_grads=True)
    out += [unused[1], [t.tolist() for t in zeros], v.grad]
    a = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
    lib.autograd.backward([(a * 3).sum(), a * a], [None, lib.tensor([1.0, 1.0],
                                                                    dtype=lib.float64)])
    out.append(a.grad.tolist())
    return out


def test_autograd_grad_and_backward_functions_match_torch():
    got, want = _autograd_functions_story(gc), _autograd_functions_story(torch)
    assert len(got) == len(want)
    for g, w in zip(got, want):
        if w is None:
            assert g is None
        else:
            np.testing.assert_allclose(np.array(g, dtype=object).astype(float) if not
                                       isinstance(g[0], list) else np.concatenate(g),
                                       np.array(w, dtype=object).astype(float) if not
                                       isinstance(w[0], list) else np.concatenate(w),
                                       rtol=1e-10, atol=1e-15)
    v = gc.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="appears to not have been used"):
        gc.autograd.grad((v * 2).sum(), [v, gc.tensor([1.0], requires_grad=True)])
    with pytest.raises(RuntimeError, match="does not require grad"):
        gc.autograd.grad((v * 2).sum(), [gc.tensor([1.0])])


def _write_through_alias_story(lib):
    x = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
    m = x * 2
    m.detach().mul_(10)                     # new values, the same gradient path
    (m * x).sum().backward()
    out = [x.grad.tolist(), m.requires_grad, m.detach().tolist()]
    x = lib.tensor([1.0, 2.0], dtype=lib.float64, requires_grad=True)
    m = x * 2
    m.data = lib.ones(2, dtype=lib.float64)
    (m * x).sum().backward()
    out += [x.grad.tolist(), m.requires_grad]
    m = lib.tensor([1.0, 2.0], requires_grad=True) * 2
    m.data.fill_(-0.0)
    out.append(str(m.detach().tolist()))     # the sign of zero survives
    return out


def test_writing_a_non_leaf_through_detach_or_data_keeps_its_history():
    assert _write_through_alias_story(gc) == _write_through_alias_story(torch)


def test_grad_checks_and_warnings_follow_torch():
    x = gc.ones(3, requires_grad=True)
    with pytest.raises(RuntimeError, match="Can't detach views in-place"):
        x[:2].detach_()
    x.detach().detach_()                        # an alias, not a view: allowed, as in torch
    m = x * 2
    with pytest.warns(UserWarning, match="not a leaf Tensor is being accessed"):
        assert m.grad is None
    y = gc.ones(3, dtype=gc.float64, requires_grad=True)
    with pytest.raises(RuntimeError, match="assign a gradient with dtype"):
        y.grad = gc.ones(3)
