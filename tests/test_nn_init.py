"""nn.init against PyTorch's definitions: gains and fan computations exactly, random
fills by their statistics (bounds, mean, std), reproducibility under manual_seed, and
the default initialisation of the layers."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import graphc as gc
from graphc import nn
from graphc.nn import init


def values(t):
    return t.detach().numpy().astype(np.float64)


def check_stats(v, mean, std, low=None, high=None):
    """Sample mean within 4 standard errors, sample std within 3%, bounds respected."""
    n = v.size
    assert abs(v.mean() - mean) < 4 * std / math.sqrt(n) + 1e-12, (v.mean(), mean)
    assert v.std() == pytest.approx(std, rel=0.03)
    if low is not None:
        assert v.min() >= low and v.max() <= high


def test_calculate_gain_matches_torch():
    for name in ["linear", "conv1d", "conv2d", "conv_transpose2d", "sigmoid", "tanh", "relu",
                 "selu"]:
        assert init.calculate_gain(name) == torch.nn.init.calculate_gain(name), name
    for slope in [None, 0.2, 1, 0.0]:
        assert init.calculate_gain("leaky_relu", slope) == \
            torch.nn.init.calculate_gain("leaky_relu", slope)
    with pytest.raises(ValueError, match="Unsupported nonlinearity"):
        init.calculate_gain("swish")
    with pytest.raises(ValueError, match="not a valid number"):
        init.calculate_gain("leaky_relu", True)


@pytest.mark.parametrize("shape", [(3, 4), (5, 2, 3, 3), (4, 3, 7), (6, 1, 1, 1, 2)])
def test_fans_match_torch(shape):
    assert init._calculate_fan_in_and_fan_out(gc.zeros(shape)) == \
        torch.nn.init._calculate_fan_in_and_fan_out(torch.zeros(shape))


def test_fan_errors():
    with pytest.raises(ValueError, match="fewer than 2 dimensions"):
        init.xavier_uniform_(gc.zeros(5))
    with pytest.raises(ValueError, match="Mode fan_avg not supported"):
        init.kaiming_uniform_(gc.zeros(3, 4), mode="fan_avg")


def test_uniform_and_normal():
    t = gc.zeros(200, 300)
    v = values(init.uniform_(t, -2.0, 3.0))
    check_stats(v, 0.5, 5 / math.sqrt(12), -2.0, 3.0)
    v = values(init.normal_(t, 1.5, 0.5))
    check_stats(v, 1.5, 0.5)


def test_constant_zeros_ones_eye():
    t = gc.zeros(3, 4)
    np.testing.assert_array_equal(values(init.constant_(t, 0.25)), np.full((3, 4), 0.25))
    np.testing.assert_array_equal(values(init.ones_(t)), np.ones((3, 4)))
    np.testing.assert_array_equal(values(init.zeros_(t)), np.zeros((3, 4)))
    np.testing.assert_array_equal(values(init.eye_(t)), np.eye(3, 4))
    assert init.ones_(t) is t


@pytest.mark.parametrize("gain", [1.0, 2.0])
def test_xavier(gain):
    t = gc.zeros(120, 80, 3, 3)
    fan_in, fan_out = 80 * 9, 120 * 9
    std = gain * math.sqrt(2.0 / (fan_in + fan_out))
    a = math.sqrt(3.0) * std
    check_stats(values(init.xavier_uniform_(t, gain)), 0.0, std, -a, a)
    check_stats(values(init.xavier_normal_(t, gain)), 0.0, std)


@pytest.mark.parametrize("a,mode,nonlinearity", [(0, "fan_in", "relu"),
                                                 (math.sqrt(5), "fan_in", "leaky_relu"),
                                                 (0.1, "fan_out", "leaky_relu"),
                                                 (0, "fan_out", "tanh")])
def test_kaiming(a, mode, nonlinearity):
    t = gc.zeros(150, 60, 2, 2)
    fan = 60 * 4 if mode == "fan_in" else 150 * 4
    std = torch.nn.init.calculate_gain(nonlinearity, a) / math.sqrt(fan)
    bound = math.sqrt(3.0) * std
    check_stats(values(init.kaiming_uniform_(t, a, mode, nonlinearity)), 0.0, std, -bound,
                bound)
    check_stats(values(init.kaiming_normal_(t, a, mode, nonlinearity)), 0.0, std)


def test_reproducible_under_manual_seed_and_keeps_parameter_leaf():
    p = nn.Parameter(gc.zeros(50, 40))
    gc.manual_seed(123)
    a = values(init.kaiming_uniform_(p))
    gc.manual_seed(123)
    b = values(init.kaiming_uniform_(p))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, values(init.kaiming_uniform_(p)))
    assert isinstance(p, nn.Parameter) and p.is_leaf and p.requires_grad
    g = gc.Generator().manual_seed(5)
    c = values(init.normal_(gc.zeros(10), generator=g))
    g.manual_seed(5)
    np.testing.assert_array_equal(values(init.normal_(gc.zeros(10), generator=g)), c)


def test_init_is_lazy():
    gc.zeros(1).numpy()
    before = gc.runtime.stats["realizations"]
    lin = nn.Linear(30, 20)
    assert gc.runtime.stats["realizations"] == before
    assert lin.weight.detach().numpy().shape == (20, 30)


def _bound_and_std(v, bound):
    assert np.abs(v).max() <= bound
    assert v.std() == pytest.approx(bound / math.sqrt(3), rel=0.08)


def test_default_layer_init_follows_torch_schemes():
    gc.manual_seed(0)
    lin = nn.Linear(400, 300)
    # kaiming_uniform_(a=sqrt(5)) gives U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight
    _bound_and_std(values(lin.weight), 1 / math.sqrt(400))
    _bound_and_std(values(lin.bias), 1 / math.sqrt(400))
    conv = nn.Conv2d(16, 64, 3)
    _bound_and_std(values(conv.weight), 1 / math.sqrt(16 * 9))
    _bound_and_std(values(conv.bias), 1 / math.sqrt(16 * 9))
    convt = nn.ConvTranspose2d(64, 16, 3)   # fan_in from the [in, out, k, k] layout: 16*9
    _bound_and_std(values(convt.weight), 1 / math.sqrt(16 * 9))
    emb = nn.Embedding(300, 50)
    check_stats(values(emb.weight), 0.0, 1.0)
    ln, bn = nn.LayerNorm(5), nn.BatchNorm1d(5)
    for m in (ln, bn):
        np.testing.assert_array_equal(values(m.weight), np.ones(5))
        np.testing.assert_array_equal(values(m.bias), np.zeros(5))
    np.testing.assert_array_equal(values(bn.running_var), np.ones(5))
    mha = nn.MultiheadAttention(64, 4)
    _bound_and_std(values(mha.in_proj_weight), math.sqrt(6 / (64 + 3 * 64)))
    np.testing.assert_array_equal(values(mha.in_proj_bias), np.zeros(3 * 64))
    np.testing.assert_array_equal(values(mha.out_proj.bias), np.zeros(64))
    rnn = nn.GRU(10, 100)
    _bound_and_std(values(rnn.weight_hh_l0), 1 / math.sqrt(100))


@pytest.mark.parametrize("mean,std,a,b", [(0.0, 1.0, -2.0, 2.0), (0.5, 2.0, -1.0, 3.0),
                                          (0.0, 0.02, -0.04, 0.04), (1.0, 1.0, 2.0, 4.0)])
def test_trunc_normal_follows_torchs_distribution(mean, std, a, b):
    """Inside [a, b], with torch's quantiles (both draw from their own generators, so the
    samples differ but their distributions may not)."""
    w = gc.empty(300, 200)
    gc.manual_seed(0)
    init.trunc_normal_(w, mean, std, a, b)
    tw = torch.empty(300, 200)
    torch.manual_seed(0)
    torch.nn.init.trunc_normal_(tw, mean, std, a, b)
    ours, theirs = w.detach().numpy().ravel(), tw.numpy().ravel()
    assert a <= ours.min() and ours.max() <= b
    qs = np.linspace(0.05, 0.95, 19)
    np.testing.assert_allclose(np.quantile(ours, qs), np.quantile(theirs, qs),
                               atol=0.02 * (b - a))


def test_erfinv_from_erf_is_accurate():
    from graphc.nn.init import _erfinv
    y = np.linspace(-0.9999, 0.9999, 4001).astype(np.float32)
    np.testing.assert_allclose(_erfinv(gc.tensor(y)).numpy(),
                               torch.erfinv(torch.tensor(y)).numpy(), rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("shape,gain", [((6, 10), 1.0), ((10, 6), 2.0), ((8, 3, 3, 3), 0.5)])
def test_orthogonal_rows_or_columns_are_orthonormal_times_gain(shape, gain):
    w = gc.empty(*shape)
    gc.manual_seed(1)
    init.orthogonal_(w, gain)
    m = w.detach().numpy().reshape(shape[0], -1).astype(np.float64)
    small = m @ m.T if m.shape[0] <= m.shape[1] else m.T @ m
    np.testing.assert_allclose(small, gain ** 2 * np.eye(len(small)), atol=1e-5)
    gc.manual_seed(1)
    again = init.orthogonal_(gc.empty(*shape), gain).detach().numpy()
    np.testing.assert_array_equal(again, w.detach().numpy())    # reproducible


@pytest.mark.parametrize("shape,groups", [((6, 3, 3, 3), 1), ((8, 2, 3), 2), ((4, 4, 3, 3, 3), 1),
                                          ((3, 5, 2, 2), 1)])
def test_dirac_matches_torch(shape, groups):
    w, tw = gc.empty(*shape), torch.empty(*shape)
    init.dirac_(w, groups)
    torch.nn.init.dirac_(tw, groups)
    np.testing.assert_array_equal(w.detach().numpy(), tw.numpy())


def test_parameters_to_vector_and_back_match_torch():
    torch.manual_seed(0)
    tm = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    gm = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    gm.load_state_dict({k: v.detach().numpy() for k, v in tm.state_dict().items()})
    tv = torch.nn.utils.parameters_to_vector(tm.parameters())
    gv = nn.utils.parameters_to_vector(gm.parameters())
    np.testing.assert_array_equal(gv.detach().numpy(), tv.detach().numpy())
    new = np.arange(tv.numel(), dtype=np.float32)
    torch.nn.utils.vector_to_parameters(torch.tensor(new), tm.parameters())
    nn.utils.vector_to_parameters(gc.tensor(new), gm.parameters())
    for (name, g), (_, t) in zip(gm.named_parameters(), tm.named_parameters()):
        np.testing.assert_array_equal(g.detach().numpy(), t.detach().numpy(), err_msg=name)
        assert g.is_leaf and g.requires_grad
    with pytest.raises(RuntimeError, match="expected a 1-D vector of 26"):
        nn.utils.vector_to_parameters(gc.zeros(5), gm.parameters())
