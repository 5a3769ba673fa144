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


# ----------------------------------------------------------------------------- smooth L1, Huber, KL

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kw", [dict(), dict(beta=0.5), dict(beta=2.0), dict(beta=0.0)])
def test_smooth_l1_loss(rng, reduction, kw):
    x, y = randn(rng, 4, 5) * 2, randn(rng, 4, 5)
    y[0, :2] = x[0, :2]          # d == 0
    y[1, 0] = x[1, 0] - 0.5      # |d| == beta (0.5)
    compare_loss("SmoothL1Loss", [x, y], dict(reduction=reduction, **kw),
                 functional="smooth_l1_loss")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("kw", [dict(), dict(delta=0.5), dict(delta=3.0)])
def test_huber_loss(rng, reduction, kw):
    x, y = randn(rng, 4, 5) * 2, randn(rng, 4, 5)
    y[0, :2] = x[0, :2]
    compare_loss("HuberLoss", [x, y], dict(reduction=reduction, **kw), functional="huber_loss")


def test_huber_loss_weight(rng):
    x, y, w = randn(rng, 3, 4), randn(rng, 3, 4), np.abs(randn(rng, 3, 4))
    for reduction in REDUCTIONS:
        got = nn.functional.huber_loss(gc.tensor(x), gc.tensor(y), reduction, 0.7, gc.tensor(w))
        want = torch.nn.functional.huber_loss(torch.tensor(x), torch.tensor(y), reduction, 0.7,
                                              torch.tensor(w))
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:reduction. 'mean' divides")
@pytest.mark.parametrize("reduction", REDUCTIONS + ["batchmean"])
@pytest.mark.parametrize("log_target", [False, True])
def test_kl_div_loss(rng, reduction, log_target):
    x = torch.log_softmax(torch.tensor(randn(rng, 4, 5)), 1).numpy()
    p = torch.softmax(torch.tensor(randn(rng, 4, 5)), 1).numpy()
    y = np.log(p) if log_target else p
    compare_loss("KLDivLoss", [x, y], dict(reduction=reduction, log_target=log_target),
                 functional="kl_div")


def test_kl_div_zero_target_and_mean_warning(rng):
    x = torch.log_softmax(torch.tensor(randn(rng, 3, 4)), 1).numpy()
    y = np.array([[0.5, 0.5, 0, 0], [1, 0, 0, 0], [0.25] * 4], dtype=np.float32)
    tx, gx = torch.tensor(x, requires_grad=True), gc.tensor(x, requires_grad=True)
    want = torch.nn.functional.kl_div(tx, torch.tensor(y), reduction="batchmean")
    got = nn.functional.kl_div(gx, gc.tensor(y), reduction="batchmean")
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5)
    want.backward()
    got.backward()
    np.testing.assert_allclose(gx.grad.numpy(), tx.grad.numpy(), rtol=1e-5)
    with pytest.warns(UserWarning, match="'batchmean' divides only by the batch size"):
        nn.functional.kl_div(gc.tensor(x), gc.tensor(y))


# ----------------------------------------------------------------------------- cosine & ranking

@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("margin", [0.0, 0.3, -0.2])
def test_cosine_embedding_and_margin_ranking_losses(rng, reduction, margin):
    a, b = randn(rng, 6, 5), randn(rng, 6, 5)
    t = np.array([1, -1, 1, -1, -1, 1], dtype=np.int64)
    compare_loss("CosineEmbeddingLoss", [a, b, t], dict(margin=margin, reduction=reduction),
                 functional="cosine_embedding_loss")
    x1, x2 = randn(rng, 6), randn(rng, 6)
    tf = t.astype(np.float32)
    compare_loss("MarginRankingLoss", [x1, x2, tf], dict(margin=margin, reduction=reduction),
                 functional="margin_ranking_loss")


@pytest.mark.parametrize("s1,s2,dim", [((4, 5), (4, 5), 1), ((3, 4, 5), (4, 5), -1),
                                       ((3, 1, 5), (3, 4, 5), 0)])
def test_cosine_similarity_and_pairwise_distance(rng, s1, s2, dim):
    a, b = randn(rng, *s1), randn(rng, *s2)
    ta, tb = torch.tensor(a, requires_grad=True), torch.tensor(b, requires_grad=True)
    ga, gb = gc.tensor(a, requires_grad=True), gc.tensor(b, requires_grad=True)
    want = torch.nn.CosineSimilarity(dim)(ta, tb)
    got = nn.CosineSimilarity(dim)(ga, gb)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    (want * want).sum().backward()
    (got * got).sum().backward()
    np.testing.assert_allclose(ga.grad.numpy(), ta.grad.numpy(), rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(gb.grad.numpy(), tb.grad.numpy(), rtol=1e-4, atol=1e-6)
    want = torch.nn.PairwiseDistance(p=1.5, keepdim=True)(torch.tensor(a), torch.tensor(b))
    got = nn.PairwiseDistance(p=1.5, keepdim=True)(gc.tensor(a), gc.tensor(b))
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5)


def test_new_loss_reprs_and_errors():
    for name, kw in [("SmoothL1Loss", dict(beta=0.5)), ("HuberLoss", dict(delta=2.0)),
                     ("KLDivLoss", dict(log_target=True)), ("CosineEmbeddingLoss", {}),
                     ("MarginRankingLoss", dict(margin=0.1))]:
        assert repr(getattr(nn, name)(**kw)) == repr(getattr(torch.nn, name)(**kw))
    with pytest.raises(RuntimeError, match="negative values for beta"):
        nn.functional.smooth_l1_loss(gc.ones(2), gc.ones(2), beta=-1.0)
    with pytest.raises(ValueError, match="not a valid value for reduction"):
        nn.functional.kl_div(gc.ones(2), gc.ones(2), reduction="avg")
