"""graphc.nn losses against PyTorch: values for every reduction and the gradients with
respect to the input (and the target where PyTorch differentiates it)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphc as gc
from graphc import nn

REDUCTIONS = ["mean", "sum", "none"]


def compare_loss(name, inputs, kwargs=None, rtol=1e-4, atol=1e-6, functional=None):
    """Build the loss module in both frameworks (tensor kwargs given as numpy arrays),
    apply it to the numpy `inputs` (float arrays get gradients) and compare the value and
    the gradients. With `functional`, the same check for nn.functional.<functional>."""
    kwargs = kwargs or {}
    tkw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    gkw = {k: gc.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    forms = [(getattr(nn, name)(**gkw), getattr(torch.nn, name)(**tkw))]
    if functional:
        forms.append((lambda *a: getattr(nn.functional, functional)(*a, **gkw),
                      lambda *a: getattr(torch.nn.functional, functional)(*a, **tkw)))
    for g_fn, t_fn in forms:
        t_in = [torch.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
        g_in = [gc.tensor(a, requires_grad=a.dtype.kind == "f") for a in inputs]
        t_out, g_out = t_fn(*t_in), g_fn(*g_in)
        assert tuple(g_out.shape) == tuple(t_out.shape)
        np.testing.assert_allclose(g_out.detach().numpy(), t_out.detach().numpy(), rtol=rtol,
                                   atol=atol)
        r = np.random.default_rng(1).standard_normal(t_out.shape).astype(np.float32)
        (t_out * torch.tensor(r)).sum().backward()
        (g_out * gc.tensor(r)).sum().backward()
        for k, (t, g) in enumerate(zip(t_in, g_in)):
            if t.grad is not None:
                np.testing.assert_allclose(g.grad.numpy(), t.grad.numpy(), rtol=rtol,
                                           atol=atol, err_msg=f"grad of input {k}")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- regression

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("name,fn", [("MSELoss", "mse_loss"), ("L1Loss", "l1_loss")])
def test_regression_losses(rng, name, fn, reduction):
    x, y = randn(rng, 4, 5), randn(rng, 4, 5)
    y[0, :2] = x[0, :2]   # |x - y| at its kink: PyTorch's gradient there is 0
    compare_loss(name, [x, y], dict(reduction=reduction), functional=fn)


@pytest.mark.filterwarnings("ignore:size_average and reduce args will be deprecated")
def test_regression_legacy_flags(rng):
    x, y = randn(rng, 3, 2), randn(rng, 3, 2)
    for sa, red in [(False, True), (True, False)]:
        want = torch.nn.functional.mse_loss(torch.tensor(x), torch.tensor(y), size_average=sa,
                                            reduce=red)
        got = nn.functional.mse_loss(gc.tensor(x), gc.tensor(y), size_average=sa, reduce=red)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)


def test_bad_reduction(rng):
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        nn.MSELoss(reduction="avg")(gc.tensor(randn(rng, 2)), gc.tensor(randn(rng, 2)))


# ----------------------------------------------------------------------------- classification

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kw", [dict(), dict(weight=True), dict(ignore_index=2),
                                dict(label_smoothing=0.1),
                                dict(label_smoothing=0.2, weight=True, ignore_index=1)])
def test_cross_entropy_class_indices(rng, reduction, kw):
    kw = dict(kw, reduction=reduction)
    if kw.pop("weight", False):
        kw["weight"] = rng.random(5).astype(np.float32) + 0.5
    x = randn(rng, 6, 5)
    y = np.array([0, 2, 4, 1, 2, 3], dtype=np.int64)
    compare_loss("CrossEntropyLoss", [x, y], kw, functional="cross_entropy")


@pytest.mark.parametrize("kw", [dict(), dict(label_smoothing=0.1, ignore_index=0),
                                dict(weight=True, reduction="none")])
def test_cross_entropy_spatial_and_unbatched(rng, kw):
    if kw.pop("weight", False):
        kw["weight"] = rng.random(4).astype(np.float32) + 0.5
    x = randn(rng, 2, 4, 3, 5)
    y = rng.integers(0, 4, (2, 3, 5))
    compare_loss("CrossEntropyLoss", [x, y], kw)
    compare_loss("CrossEntropyLoss", [randn(rng, 4), np.array(2)], kw)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kw", [dict(), dict(label_smoothing=0.15), dict(weight=True)])
def test_cross_entropy_class_probabilities(rng, reduction, kw):
    kw = dict(kw, reduction=reduction)
    if kw.pop("weight", False):
        kw["weight"] = rng.random(5).astype(np.float32) + 0.5
    x = randn(rng, 4, 5)
    p = rng.random((4, 5)).astype(np.float32)
    p /= p.sum(1, keepdims=True)
    compare_loss("CrossEntropyLoss", [x, p], kw, functional="cross_entropy")


def test_cross_entropy_all_ignored_is_nan_like_torch(rng):
    x, y = randn(rng, 3, 4), np.full(3, -100, dtype=np.int64)
    got = nn.functional.cross_entropy(gc.tensor(x), gc.tensor(y)).item()
    want = torch.nn.functional.cross_entropy(torch.tensor(x), torch.tensor(y)).item()
    assert np.isnan(got) and np.isnan(want)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kw", [dict(), dict(weight=True), dict(ignore_index=1)])
def test_nll_loss(rng, reduction, kw):
    kw = dict(kw, reduction=reduction)
    if kw.pop("weight", False):
        kw["weight"] = rng.random(4).astype(np.float32) + 0.5
    x = randn(rng, 5, 4)
    y = np.array([1, 0, 3, 1, 2], dtype=np.int64)
    compare_loss("NLLLoss", [x, y], kw, functional="nll_loss")
    compare_loss("NLLLoss", [randn(rng, 2, 4, 3), rng.integers(0, 4, (2, 3))], kw)


def test_classification_target_errors(rng):
    with pytest.raises(ValueError, match="Expected input batch_size"):
        nn.CrossEntropyLoss()(gc.tensor(randn(rng, 3, 4)), gc.tensor([0, 1]))
    with pytest.raises(RuntimeError, match="class-probability target shape"):
        nn.CrossEntropyLoss()(gc.tensor(randn(rng, 3, 4)), gc.tensor(randn(rng, 3, 2)))
    with pytest.raises(RuntimeError, match="integer class-index target"):
        nn.NLLLoss()(gc.tensor(randn(rng, 3, 4)), gc.tensor(randn(rng, 3)))


# ----------------------------------------------------------------------------- binary

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_bce(rng, reduction, weighted):
    p = (rng.random((4, 3)) * 0.98 + 0.01).astype(np.float32)
    y = (rng.random((4, 3)) > 0.5).astype(np.float32)
    y[0, 0] = 0.3   # soft targets are allowed
    kw = dict(reduction=reduction)
    if weighted:
        kw["weight"] = rng.random(3).astype(np.float32)
    compare_loss("BCELoss", [p, y], kw, functional="binary_cross_entropy")


def test_bce_clamps_log_at_minus_100():
    p = np.array([0.0, 1.0, 0.5], np.float32)
    y = np.array([1.0, 0.0, 1.0], np.float32)
    got = nn.functional.binary_cross_entropy(gc.tensor(p), gc.tensor(y), reduction="none")
    want = torch.nn.functional.binary_cross_entropy(torch.tensor(p), torch.tensor(y),
                                                    reduction="none")
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-6)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weighted", [False, True])
def test_bce_saturated_probabilities_like_torch(reduction, weighted):
    """Probabilities of exactly 0 or 1 (a float32 sigmoid saturates from |x| ~ 17) and
    ones within 1e-12 of them: PyTorch's gradient w (x - y) / max(x (1 - x), 1e-12) is
    finite there (the logs' own derivative is +-inf, then NaN through the clamp), and its
    forward uses log1p(-x), exact for the small x of a confident negative."""
    p = np.array([0.0, 1.0, 0.0, 1.0, 1e-13, 1 - 6e-8, 1e-5, 2e-6, 0.3, 0.999], np.float32)
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.5, 1.0], np.float32)
    kw = dict(reduction=reduction)
    if weighted:
        kw["weight"] = np.linspace(0.5, 2.0, 10).astype(np.float32)
    tp, gp = torch.tensor(p, requires_grad=True), gc.tensor(p, requires_grad=True)
    tk = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    gk = {k: gc.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
    want = torch.nn.BCELoss(**tk)(tp, torch.tensor(y))
    got = nn.BCELoss(**gk)(gp, gc.tensor(y))
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-6)
    r = np.linspace(-1, 1, want.numel()).astype(np.float32).reshape(want.shape)
    (want * torch.tensor(r)).sum().backward()
    (got * gc.tensor(r)).sum().backward()
    assert np.all(np.isfinite(gp.grad.numpy()))
    np.testing.assert_allclose(gp.grad.numpy(), tp.grad.numpy(), rtol=1e-5)


def test_bce_after_saturated_sigmoid_trains_like_torch():
    """sigmoid + BCELoss with logits large enough to saturate: one SGD step in a
    compiled training step gives PyTorch's weights (no NaN)."""
    w0 = np.array([[30.0, -25.0, 0.5]], np.float32)
    x = np.array([[1.0, 0.0, 1.0], [-1.0, 7.0, 0.0]], np.float32)   # logits 30.5, -205
    y = np.array([[1.0], [0.0]], np.float32)
    tw = torch.tensor(w0, requires_grad=True)
    torch.nn.BCELoss()(torch.sigmoid(torch.tensor(x) @ tw.T), torch.tensor(y)).backward()
    with torch.no_grad():
        tw -= 0.1 * tw.grad
    gw = nn.Parameter(gc.tensor(w0))
    opt = gc.optim.SGD([gw], lr=0.1)

    @gc.compile
    def step(xb, yb):
        opt.zero_grad()
        loss = nn.BCELoss()(gc.sigmoid(xb @ gw.T), yb)
        loss.backward()
        opt.step()
        return loss

    step(gc.tensor(x), gc.tensor(y))
    np.testing.assert_allclose(gw.detach().numpy(), tw.detach().numpy(), rtol=1e-5)


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kw", [dict(), dict(pos_weight=True), dict(weight=True),
                                dict(pos_weight=True, weight=True)])
def test_bce_with_logits(rng, reduction, kw):
    kw = dict(kw, reduction=reduction)
    if kw.pop("pos_weight", False):
        kw["pos_weight"] = rng.random(3).astype(np.float32) * 3
    if kw.pop("weight", False):
        kw["weight"] = rng.random(3).astype(np.float32)
    x = randn(rng, 5, 3) * 30       # large logits: no overflow
    x[0] = 0.0                      # zero logits (a zero-initialised head): grad -0.5
    y = (rng.random((5, 3)) > 0.5).astype(np.float32)
    compare_loss("BCEWithLogitsLoss", [x, y], kw,
                 functional="binary_cross_entropy_with_logits")


def test_bce_shape_errors(rng):
    with pytest.raises(ValueError, match="must be the same as input size"):
        nn.BCEWithLogitsLoss()(gc.tensor(randn(rng, 3, 1)), gc.tensor(randn(rng, 3)))
    with pytest.raises(ValueError, match="different to the input size"):
        nn.BCELoss()(gc.tensor(randn(rng, 3, 1)), gc.tensor(randn(rng, 3)))


def test_loss_weights_are_buffers():
    w = gc.tensor([1.0, 2.0])
    loss = nn.CrossEntropyLoss(weight=w)
    assert list(loss.state_dict()) == list(torch.nn.CrossEntropyLoss(
        weight=torch.tensor([1.0, 2.0])).state_dict()) == ["weight"]
    assert list(nn.BCEWithLogitsLoss(pos_weight=w).state_dict()) == ["pos_weight"]
    assert list(nn.MSELoss().state_dict()) == []
