"""Gradients of every differentiable op, against torch's autograd and against central
finite differences of graphc's own forward pass, all in float64.

One line per case: `fn(m, *tensors)` builds the output with `m = graphc` or `m = torch`.
The loss is `sum(out * w)` with a fixed random `w` (so every output element gets its own
weight; tuple outputs sum one such term per element). Inputs are chosen away from kinks
and ties (|x| >= 0.2, distinct values) so finite differences are meaningful.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphc as gc
from conftest import numerical_grad

_rng = np.random.default_rng(99)


def R(*shape, low=-2.0, high=2.0):
    return _rng.uniform(low, high, size=shape)


def NZ(*shape):
    """Away from zero: for abs, relu, sign-dependent ops and kinks at 0."""
    return _rng.uniform(0.2, 2.0, size=shape) * _rng.choice([-1.0, 1.0], size=shape)


def P(*shape):
    return _rng.uniform(0.3, 2.0, size=shape)


def DISTINCT(*shape):
    """Well-separated distinct values (for max/min/amax, maximum)."""
    n = int(np.prod(shape))
    return (_rng.permutation(n) * 0.37 - n * 0.15).reshape(shape).astype(np.float64)


class Idx:
    """An integer index input (not differentiated); becomes an int64 tensor."""

    def __init__(self, data):
        self.data = np.asarray(data, dtype=np.int64)


class Mask:
    def __init__(self, data):
        self.data = np.asarray(data, dtype=bool)


def F(m):
    return torch.nn.functional if m is torch else m


def IR(name, **attrs):
    """torch.<name>, or graphc's IR op of the same name through Tensor._apply (the
    tensor layer exposes these ops separately); operands of equal shapes."""
    def fn(m, *xs):
        if m is torch:
            return getattr(torch, name)(*xs, **attrs)
        return gc.Tensor._apply(name, *xs, **attrs)
    return fn


def case(fn, *inputs, id):
    return pytest.param(fn, inputs, id=id)


CASES = [
    # arithmetic with broadcasting: the gradient is reduced back to each input's shape
    case(lambda m, x, y: x + y, R(2, 3), R(3), id="add_broadcast"),
    case(lambda m, x, y: x - y, R(2, 1, 3), R(4, 1), id="sub_broadcast_both"),
    case(lambda m, x, y: x * y, R(2, 3), R(2, 1), id="mul_broadcast"),
    case(lambda m, x, y: x / y, R(2, 3), P(3), id="div_broadcast"),
    case(lambda m, x, y: x / y, R(3), P(1, 1), id="div_broadcast_ones"),
    case(lambda m, x, y: x * y, R(2, 3), R(), id="mul_zero_dim"),
    case(lambda m, x: 3.0 * x - x / 4 + 1.5, R(2, 3), id="scalar_affine"),
    case(lambda m, x: 2.0 / x, P(4), id="rtruediv"),
    case(lambda m, x: 1 - x, R(4), id="rsub"),
    case(lambda m, x: -x, R(4), id="neg"),
    case(lambda m, x: x ** 3, R(2, 3), id="pow_int"),
    case(lambda m, x: x ** 2, R(2, 3), id="pow_2"),
    case(lambda m, x: x ** 0.5, P(2, 3), id="pow_half"),
    case(lambda m, x: x ** -1.5, P(2, 3), id="pow_neg_float"),
    case(lambda m, x, y: x ** y, P(2, 3), R(3), id="pow_tensor_exponent"),
    case(lambda m, x, y: m.pow(x, y), P(3), R(2, 3), id="pow_tensor_exponent_broadcast_base"),
    case(lambda m, x: 2.5 ** x, R(2, 3), id="rpow"),
    case(lambda m, x, y: x % y, R(5, low=0.3, high=0.9) + np.arange(5), P(5) + 1.1,
         id="remainder"),
    # elementwise math
    case(lambda m, x: m.exp(x), R(2, 3), id="exp"),
    case(lambda m, x: m.log(x), P(2, 3), id="log"),
    case(lambda m, x: m.log1p(x), P(2, 3), id="log1p"),
    case(lambda m, x: m.expm1(x), R(2, 3), id="expm1"),
    case(lambda m, x: m.sqrt(x), P(2, 3), id="sqrt"),
    case(lambda m, x: m.rsqrt(x), P(2, 3), id="rsqrt"),
    case(lambda m, x: m.abs(x), NZ(2, 3), id="abs"),
    case(lambda m, x: m.sin(x), R(2, 3), id="sin"),
    case(lambda m, x: m.cos(x), R(2, 3), id="cos"),
    case(lambda m, x: m.tanh(x), R(2, 3), id="tanh"),
    case(lambda m, x: m.sigmoid(x), R(2, 3), id="sigmoid"),
    case(lambda m, x: m.relu(x), NZ(2, 3), id="relu"),
    case(lambda m, x: F(m).gelu(x), R(2, 3), id="gelu"),
    case(lambda m, x: F(m).gelu(x, approximate="tanh"), R(2, 3), id="gelu_tanh"),
    case(lambda m, x: F(m).silu(x), R(2, 3), id="silu"),
    case(lambda m, x: m.erf(x), R(2, 3), id="erf"),
    case(lambda m, x: m.reciprocal(x), NZ(2, 3), id="reciprocal"),
    case(lambda m, x: m.square(x), R(2, 3), id="square"),
    case(lambda m, x: m.floor(x) + m.ceil(x) + m.round(x) + x, R(5) + 0.25, id="rounding_zero"),
    case(IR("tan"), R(2, 3, low=-1.2, high=1.2), id="tan"),
    case(IR("asin"), R(2, 3, low=-0.9, high=0.9), id="asin"),
    case(IR("acos"), R(2, 3, low=-0.9, high=0.9), id="acos"),
    case(IR("atan"), R(2, 3, low=-3, high=3), id="atan"),
    case(IR("sinh"), R(2, 3), id="sinh"),
    case(IR("cosh"), R(2, 3), id="cosh"),
    case(IR("asinh"), R(2, 3, low=-3, high=3), id="asinh"),
    case(IR("acosh"), R(2, 3, low=1.2, high=4), id="acosh"),
    case(IR("atanh"), R(2, 3, low=-0.9, high=0.9), id="atanh"),
    case(IR("log2"), P(2, 3), id="log2"),
    case(IR("log10"), P(2, 3), id="log10"),
    case(IR("exp2"), R(2, 3), id="exp2"),
    case(IR("atan2"), NZ(2, 3), NZ(2, 3), id="atan2"),
    case(IR("hypot"), NZ(2, 3), NZ(2, 3), id="hypot"),
    # fmod: the divisor's gradient is -trunc(a / b); ratios kept away from integers
    case(IR("fmod"), np.array([0.5, 1.6, -2.7, -3.4, 4.5, -0.3]),
         np.array([1.3, -1.4, 1.25, -1.5, 2.0, 0.7]), id="fmod"),
    case(IR("copysign"), NZ(2, 3), NZ(2, 3), id="copysign"),
    case(IR("flip", dims=(0, 2)), R(2, 3, 4), id="flip"),
    case(lambda m, x: IR("flip", dims=(1,))(m, x.exp()) * x, R(3, 4), id="flip_in_chain"),
    case(lambda m, x: m.clamp(x, -0.5, 0.7), NZ(3, 4) * 0.9 + 0.03, id="clamp"),
    case(lambda m, x: m.clamp(x, min=0.1), NZ(3, 4), id="clamp_min"),
    case(lambda m, x, lo, hi: m.clamp(x, lo, hi), DISTINCT(3, 4) * 0.3, R(4, low=-1.3, high=-0.1),
         R(3, 1, low=0.1, high=1.3), id="clamp_tensor_bounds"),
    case(lambda m, x, y: m.maximum(x, y), DISTINCT(3, 4), DISTINCT(4) + 0.05, id="maximum"),
    case(lambda m, x, y: m.minimum(x, y), DISTINCT(3, 4), DISTINCT(3, 1) + 0.05, id="minimum"),
    case(lambda m, c, x, y: m.where(c, x, y), Mask(R(3, 4) > 0), R(3, 4), R(4), id="where"),
    case(lambda m, c, x: m.where(c, x, 0.0), Mask(R(3, 4) > 0), R(3, 1), id="where_scalar"),
    case(lambda m, x, y, w: m.lerp(x, y, w), R(4), R(4), R(4), id="lerp"),
    # reductions
    case(lambda m, x: x.sum(), R(2, 3, 4), id="sum_all"),
    case(lambda m, x: x.sum((0, 2)), R(2, 3, 4), id="sum_two_dims"),
    case(lambda m, x: x.sum(-1, keepdim=True), R(2, 3, 4), id="sum_keepdim"),
    case(lambda m, x: x.mean((1, 2)), R(2, 3, 4), id="mean_two_dims"),
    case(lambda m, x: x.mean(0, keepdim=True), R(2, 3, 4), id="mean_keepdim"),
    case(lambda m, x: x.prod(1), NZ(2, 3, 2), id="prod"),
    case(lambda m, x: x.prod(), NZ(2, 3), id="prod_all"),
    case(lambda m, x: x.amax((0, 2)), DISTINCT(2, 3, 4), id="amax_two_dims"),
    case(lambda m, x: x.amin(-1, keepdim=True), DISTINCT(2, 3, 4), id="amin"),
    case(lambda m, x: x.max(), DISTINCT(3, 4), id="max_all"),
    case(lambda m, x: x.max(1).values, DISTINCT(3, 4), id="max_dim"),
    case(lambda m, x: x.min(0, keepdim=True)[0], DISTINCT(3, 4), id="min_dim"),
    case(lambda m, x: x.var(), R(3, 4), id="var_all"),
    case(lambda m, x: x.var((0, 2)), R(2, 3, 4), id="var_two_dims"),
    case(lambda m, x: x.var(1, correction=0, keepdim=True), R(3, 4), id="var_correction0"),
    case(lambda m, x: x.std(1), R(3, 4), id="std"),
    case(lambda m, x: x.std((0, 1), unbiased=False), R(3, 4, 2), id="std_biased_two_dims"),
    case(lambda m, x: m.logsumexp(x, 1), R(3, 4), id="logsumexp"),
    case(lambda m, x: m.logsumexp(x, (0, 2), keepdim=True), R(2, 3, 4), id="logsumexp_two_dims"),
    case(lambda m, x: m.softmax(x, -1), R(3, 4), id="softmax"),
    case(lambda m, x: m.softmax(x, 0), R(3, 4), id="softmax_dim0"),
    case(lambda m, x: m.log_softmax(x, 1), R(3, 4), id="log_softmax"),
    case(lambda m, x: x.norm(), R(3, 4), id="norm_fro"),
    case(lambda m, x: x.norm(dim=1), R(3, 4), id="norm_dim"),
    case(lambda m, x: x.norm(p=1, dim=0), NZ(3, 4), id="norm_p1"),
    case(lambda m, x: x.norm(p=3, dim=(0, 1)), NZ(3, 4), id="norm_p3"),
    case(lambda m, x: m.cumsum(x, 1), R(3, 4), id="cumsum"),
    # shapes
    case(lambda m, x: x.reshape(4, 3).t(), R(3, 4), id="reshape_t"),
    case(lambda m, x: x.permute(2, 0, 1), R(2, 3, 4), id="permute"),
    case(lambda m, x: x.transpose(0, 2).flatten(1), R(2, 3, 4), id="transpose_flatten"),
    case(lambda m, x: x.expand(2, 3, 4), R(3, 1), id="expand"),
    case(lambda m, x: x.repeat(2, 3), R(2, 3), id="repeat"),
    case(lambda m, x: x.unsqueeze(1).squeeze(), R(3, 4), id="unsqueeze_squeeze"),
    case(lambda m, x, y: m.cat([x, y, x], 1), R(2, 3), R(2, 1), id="cat"),
    case(lambda m, x, y: m.stack([x, y], -1), R(2, 3), R(2, 3), id="stack"),
    case(lambda m, x: x.split([1, 3], 1), R(2, 4), id="split"),
    case(lambda m, x: x.chunk(2, 0)[1], R(4, 3), id="chunk"),
    case(lambda m, x: x.unbind(1), R(2, 3), id="unbind"),
    # indexing
    case(lambda m, x: x[1:, ::2], R(3, 5), id="slice_step"),
    case(lambda m, x: x[-1, None, 1:4], R(3, 5), id="int_none_slice"),
    case(lambda m, x: x[..., -2::2], R(2, 3, 5), id="ellipsis_step"),
    case(lambda m, x, i: x[i], R(4, 3), Idx([0, 2, 2, -1]), id="advanced_repeated"),
    case(lambda m, x, i, j: x[i, :, j], R(3, 4, 5), Idx([0, 2, 0]), Idx([1, 1, 4]),
         id="advanced_non_adjacent"),
    case(lambda m, x, i, j: x[:, i, j], R(3, 4, 5), Idx([[0], [3]]), Idx([1, 4]),
         id="advanced_adjacent_broadcast"),
    case(lambda m, x, i: x.gather(1, i), R(3, 4), Idx([[0, 0, 3], [1, 2, 1], [3, 3, 3]]),
         id="gather"),
    case(lambda m, x, i, s: x.scatter_add(0, i, s), R(3, 4), Idx([[0, 2, 0, 1], [0, 0, 2, 2]]),
         R(2, 4), id="scatter_add"),
    case(lambda m, x, i, s: x.scatter_add(1, i, s), R(2, 4), Idx([[3, 3], [0, 1]]), R(2, 2),
         id="scatter_add_index_narrower"),
    case(lambda m, x, i: x.index_select(1, i), R(3, 4), Idx([3, 0, 3]), id="index_select"),
    case(lambda m, x, k: x.masked_fill(k, 0.5), R(3, 4), Mask(R(3, 4) > 0), id="masked_fill"),
    case(lambda m, x, v: _setitem(x, (slice(None), 1), v), R(3, 4), R(3), id="setitem_slice"),
    case(lambda m, x, v, i: _setitem(x, i, v), R(4, 3), R(2, 3), Idx([3, 0]),
         id="setitem_advanced"),
    # linear algebra
    case(lambda m, x, y: x @ y, R(4), R(4), id="matmul_1d_1d"),
    case(lambda m, x, y: x @ y, R(3), R(3, 2), id="matmul_1d_2d"),
    case(lambda m, x, y: x @ y, R(2, 3), R(3), id="matmul_2d_1d"),
    case(lambda m, x, y: x @ y, R(2, 3), R(3, 4), id="matmul_2d"),
    case(lambda m, x, y: x @ y, R(2, 2, 3), R(2, 3, 4), id="matmul_batched"),
    case(lambda m, x, y: x @ y, R(2, 1, 2, 3), R(3, 3, 2), id="matmul_broadcast_batch"),
    case(lambda m, x, y: m.bmm(x, y), R(2, 2, 3), R(2, 3, 2), id="bmm"),
    case(lambda m, x, y: m.mm(x, y), R(2, 3), R(3, 2), id="mm"),
    case(lambda m, x, y: m.einsum("bij,bjk->bik", x, y), R(2, 2, 3), R(2, 3, 2),
         id="einsum_bmm"),
    case(lambda m, x, y: m.einsum("bi,j->bj", x, y), R(2, 3), R(4), id="einsum_free_sum"),
    case(lambda m, x, y: m.einsum("...ij,...jk->...ik", x, y), R(3, 1, 2, 3), R(2, 3, 2),
         id="einsum_ellipsis_broadcast"),
    case(lambda m, x, y, z: m.einsum("ij,jk,kl->il", x, y, z), R(2, 3), R(3, 2), R(2, 2),
         id="einsum_three"),
    # a composite: a tiny MLP layer with a loss
    case(lambda m, x, w, b: m.log_softmax(m.tanh(x @ w.t() + b), 1)[:, 0].mean(), R(4, 3),
         R(5, 3), R(5), id="mlp_layer"),
]


def _setitem(x, key, v):
    y = x * 1
    y[key] = v
    return y


def _convert(m, x, requires_grad):
    if isinstance(x, Idx):
        return m.tensor(x.data.copy())
    if isinstance(x, Mask):
        return m.tensor(x.data.copy())
    if m is torch:
        return torch.tensor(x, dtype=torch.float64, requires_grad=requires_grad)
    return gc.tensor(x, dtype=gc.float64, requires_grad=requires_grad)


def _outputs(out):
    return list(out) if isinstance(out, (tuple, list)) else [out]


def _loss(m, outs, weights):
    total = None
    for o, w in zip(outs, weights):
        term = (o * m.tensor(w, dtype=m.float64)).sum()
        total = term if total is None else total + term
    return total


@pytest.mark.parametrize("fn,inputs", CASES)
def test_gradient_matches_torch_and_finite_differences(fn, inputs):
    float_pos = [k for k, x in enumerate(inputs) if isinstance(x, np.ndarray)]
    t_in = [_convert(torch, x, True) for x in inputs]
    t_outs = _outputs(fn(torch, *t_in))
    weights = [_rng.uniform(0.5, 1.5, size=tuple(o.shape)) for o in t_outs]
    _loss(torch, t_outs, weights).backward()

    g_in = [_convert(gc, x, True) for x in inputs]
    g_outs = _outputs(fn(gc, *g_in))
    assert all(o.requires_grad for o in g_outs)
    _loss(gc, g_outs, weights).backward()

    arrays = [np.array(inputs[k], dtype=np.float64) for k in float_pos]

    def forward(*arrs):
        it = iter(arrs)
        xs = [gc.tensor(next(it), dtype=gc.float64) if k in float_pos else _convert(gc, x, False)
              for k, x in enumerate(inputs)]
        return _loss(gc, _outputs(fn(gc, *xs)), weights).item()

    numeric = numerical_grad(forward, arrays)
    for k, num in zip(float_pos, numeric):
        got = g_in[k].grad
        assert got is not None, f"input {k} got no gradient"
        assert got.dtype is gc.float64 and tuple(got.shape) == tuple(t_in[k].shape)
        np.testing.assert_allclose(got.numpy(), t_in[k].grad.numpy(), rtol=1e-9, atol=1e-10,
                                   err_msg=f"input {k}: graphc vs torch")
        np.testing.assert_allclose(got.numpy(), num, rtol=1e-5, atol=1e-6,
                                   err_msg=f"input {k}: graphc vs finite differences")


# ---------------------------------------------------------------------------- conventions
# At kinks and ties finite differences say nothing; PyTorch's conventions decide.

CONVENTIONS = [
    case(lambda m, x: m.relu(x), np.array([-1.0, 0.0, 2.0]), id="relu_at_zero"),
    case(lambda m, x: m.abs(x), np.array([-1.0, 0.0, 2.0]), id="abs_at_zero"),
    case(lambda m, x: m.clamp(x, -1.0, 1.0), np.array([-1.0, 0.0, 1.0, 2.0]),
         id="clamp_at_bounds"),
    case(lambda m, x, y: m.maximum(x, y), np.array([1.0, 2.0, 3.0]), np.array([1.0, 0.0, 3.0]),
         id="maximum_ties"),
    case(lambda m, x, y: m.minimum(x, y), np.array([1.0, 2.0]), np.array([1.0, 5.0]),
         id="minimum_ties"),
    case(lambda m, x: x.amax(1), np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]), id="amax_ties"),
    case(lambda m, x: x.max(), np.array([[1.0, 3.0, 3.0]]), id="max_all_ties"),
    case(lambda m, x: x.max(1).values, np.array([[1.0, 3.0, 3.0], [2.0, 0.0, 2.0]]),
         id="max_dim_ties_first_index"),
    case(lambda m, x: x.norm(), np.zeros(3), id="norm_at_zero"),
    case(lambda m, x: x.norm(dim=1), np.array([[0.0, 0.0], [3.0, 4.0]]), id="norm_dim_at_zero"),
    case(lambda m, x: x.norm(p=3), np.zeros(3), id="norm_p3_at_zero"),
    case(lambda m, x: x.prod(1), np.array([[0.0, 2.0, 3.0], [1.0, 2.0, 3.0]]), id="prod_with_zero"),
    case(lambda m, x: x.prod(0), np.array([[0.0, 2.0], [0.0, 3.0], [4.0, 0.0]]),
         id="prod_with_two_zeros"),
    case(lambda m, x: x.prod(), np.array([[0.0, 2.0], [5.0, 3.0]]), id="prod_all_one_zero"),
    case(lambda m, x: x ** 0.0, np.array([0.0, 2.0]), id="pow_scalar_zero_exponent"),
    case(lambda m, x: m.softmax(x, -1), np.array([[0.0, -np.inf, 1.0]]), id="softmax_masked"),
    case(lambda m, x: m.log_softmax(x, -1), np.array([[0.0, -np.inf, 1.0]]),
         id="log_softmax_masked"),
    case(lambda m, x: m.logsumexp(x, -1), np.array([[0.0, -np.inf, 1.0]]),
         id="logsumexp_masked"),
    case(lambda m, x, y: x ** y, np.array([0.0, 0.0, 2.0]), np.array([2.0, 0.0, 1.0]),
         id="pow_zero_base"),
    case(lambda m, x: m.sqrt(x), np.array([0.0, 4.0]), id="sqrt_at_zero"),
    case(lambda m, x: x.std(), np.ones(3), id="std_constant"),
    # the new math ops at the edges of their domains: PyTorch's formulas give +-inf
    case(IR("asin"), np.array([-1.0, 1.0, 0.0]), id="asin_at_pm1"),
    case(IR("acos"), np.array([-1.0, 1.0, 0.5]), id="acos_at_pm1"),
    case(IR("acosh"), np.array([1.0, 2.0]), id="acosh_at_1"),
    case(IR("atanh"), np.array([-1.0, 1.0, 0.0]), id="atanh_at_pm1"),
    case(IR("log2"), np.array([0.0, 2.0]), id="log2_at_zero"),
    # atan2: 0, not nan, where a^2 + b^2 underflows or overflows (PyTorch masks the
    # infinite reciprocal), with the signs of zeros PyTorch gives
    case(IR("atan2"), np.array([0.0, 1.0, 1e-170, 1e200, 0.0]),
         np.array([0.0, 0.0, 1e-170, 1e200, -0.0]), id="atan2_at_origin"),
    case(IR("hypot"), np.array([0.0, 3.0]), np.array([0.0, 4.0]), id="hypot_at_origin"),
    case(IR("copysign"), np.array([0.0, -0.0, 2.0]), np.array([-1.0, 1.0, -0.0]),
         id="copysign_at_zero"),
    case(IR("fmod"), np.array([5.0, -7.0, 1.0]), np.array([0.0, 2.0, 0.1]), id="fmod_by_zero"),
]


@pytest.mark.parametrize("fn,inputs", CONVENTIONS)
def test_gradient_conventions_match_torch(fn, inputs):
    t_in = [torch.tensor(x, requires_grad=True) for x in inputs]
    g_in = [gc.tensor(x, requires_grad=True) for x in inputs]
    fn(torch, *t_in).sum().backward()
    fn(gc, *g_in).sum().backward()
    for g, t in zip(g_in, t_in):
        np.testing.assert_allclose(g.grad.numpy(), t.grad.numpy(), rtol=1e-12, atol=0,
                                   equal_nan=True)
        zero = t.grad.numpy() == 0   # and zeros of PyTorch's sign
        np.testing.assert_array_equal(np.signbit(g.grad.numpy()[zero]),
                                      np.signbit(t.grad.numpy()[zero]))


NONFINITE_UPSTREAM = [
    case(lambda m, x: m.relu(x), np.array([-1.0, 2.0, -3.0, 0.5]), id="relu"),
    case(lambda m, x, y: m.where(x > 0, x, y), np.array([-1.0, 2.0, -3.0, 0.5]),
         np.array([0.0, 1.0, -5.0, 3.0]), id="where"),
    case(lambda m, x, y: m.maximum(x, y), np.array([-1.0, 2.0, -3.0, 0.5]),
         np.array([0.0, 1.0, -5.0, 3.0]), id="maximum"),
    case(lambda m, x: m.floor(x), np.array([-1.5, 2.0, -3.0, 0.5]), id="floor"),
    case(lambda m, x: m.nn.functional.max_pool2d(x.reshape(1, 1, 2, 2), 2).reshape(1),
         np.array([-1.0, 2.0, -3.0, 0.5]), id="max_pool2d"),
]


@pytest.mark.parametrize("fn,inputs", NONFINITE_UPSTREAM)
def test_masked_gradients_are_exact_zeros_under_nonfinite_upstream(fn, inputs):
    """Where an op passes no gradient, PyTorch writes 0 (zeros_like, masked_fill), not
    upstream * 0: an inf or NaN upstream gradient must not leak into x.grad as NaN."""
    results = []
    for m, make in ((torch, torch.tensor), (gc, gc.tensor)):
        xs = [make(x, requires_grad=True) for x in inputs]
        out = fn(m, *xs)
        upstream = np.array([np.inf, 1.0, np.nan, -np.inf][:out.numel()])
        out.backward(make(upstream.reshape(tuple(out.shape))))
        results.append([x.grad.numpy() for x in xs])
    for got, want in zip(results[1], results[0]):
        np.testing.assert_array_equal(got, want)


def test_scatter_add_with_src_larger_than_index_against_finite_differences():
    # torch's own backward refuses this case (src larger than index), so only finite
    # differences judge it: the src elements the index does not cover get no gradient.
    idx = gc.tensor([[3, 3], [0, 1]])
    x0, s0 = R(2, 4), R(2, 3)
    w = R(2, 4)

    def f(x, s):
        return (gc.tensor(x).scatter_add(1, idx, gc.tensor(s)) * gc.tensor(w)).sum().item()

    x, s = gc.tensor(x0, requires_grad=True), gc.tensor(s0, requires_grad=True)
    (x.scatter_add(1, idx, s) * gc.tensor(w)).sum().backward()
    num_x, num_s = numerical_grad(f, [x0.copy(), s0.copy()])
    np.testing.assert_allclose(x.grad.numpy(), num_x, rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(s.grad.numpy(), num_s, rtol=1e-6, atol=1e-8)
    assert np.all(s.grad.numpy()[:, 2] == 0)


def test_float32_gradients_stay_float32():
    x = gc.tensor([[1.0, 2.0], [3.0, 4.0]], requires_grad=True)
    y = gc.tensor([2], dtype=gc.int64)
    ((x * y).sum() + x.double().sum()).backward()
    assert x.grad.dtype is gc.float32
    np.testing.assert_allclose(x.grad.numpy(), np.full((2, 2), 3.0))
