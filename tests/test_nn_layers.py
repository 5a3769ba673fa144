"""graphc.nn layers and activations against PyTorch: the same weights (copied through
state_dict as numpy arrays), the same inputs; outputs and gradients with respect to the
inputs and to every parameter must match."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphc as gc
from graphc import nn

RTOL_SIMPLE, RTOL_CONV = 1e-4, 1e-3


# ----------------------------------------------------------------------------- helpers
# (test_nn_rnn.py and test_nn_losses.py import these)

def copy_state(gm, tm):
    """Load torch module `tm`'s state into graphc module `gm` as numpy arrays."""
    gm.load_state_dict({k: v.detach().numpy().copy() for k, v in tm.state_dict().items()})


def _flat(out):
    if isinstance(out, (tuple, list)):
        return [t for o in out for t in _flat(o)]
    return [] if out is None else [out]


def compare_module(gm, tm, *inputs, rtol=RTOL_SIMPLE, atol=1e-5, seed=0, copy=True,
                   kwargs=None):
    """Run both modules on the same numpy inputs (float arrays get gradients), then
    compare every output, the input gradients and the parameter gradients (by name) for
    the loss sum(output_k * r_k) with fixed random r_k."""
    if copy:
        copy_state(gm, tm)
    kwargs = kwargs or {}
    t_in = [torch.tensor(a, requires_grad=a.dtype.kind == "f") if isinstance(a, np.ndarray)
            else a for a in inputs]
    g_in = [gc.tensor(a, requires_grad=a.dtype.kind == "f") if isinstance(a, np.ndarray)
            else a for a in inputs]
    t_kw = {k: torch.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    g_kw = {k: gc.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    t_outs, g_outs = _flat(tm(*t_in, **t_kw)), _flat(gm(*g_in, **g_kw))
    assert len(t_outs) == len(g_outs)
    rng = np.random.default_rng(seed)
    t_loss = g_loss = 0
    for k, (t, g) in enumerate(zip(t_outs, g_outs)):
        assert tuple(g.shape) == tuple(t.shape), f"output {k}: {g.shape} vs {t.shape}"
        np.testing.assert_allclose(g.detach().numpy(), t.detach().numpy(), rtol=rtol,
                                   atol=atol, err_msg=f"output {k}")
        if t.requires_grad:
            r = rng.standard_normal(t.shape).astype(np.float32)
            t_loss = t_loss + (t * torch.tensor(r)).sum()
            g_loss = g_loss + (g * gc.tensor(r)).sum()
    if isinstance(t_loss, int):
        return t_outs, g_outs
    t_loss.backward()
    g_loss.backward()
    for k, (t, g) in enumerate(zip(t_in, g_in)):
        if isinstance(t, torch.Tensor) and t.requires_grad:
            np.testing.assert_allclose(g.grad.numpy(), t.grad.numpy(), rtol=rtol, atol=atol,
                                       err_msg=f"grad of input {k}")
    t_params = dict(tm.named_parameters())
    g_params = dict(gm.named_parameters())
    assert list(g_params) == list(t_params)
    for name, tp in t_params.items():
        gp = g_params[name]
        if tp.grad is None:
            assert gp.grad is None or not np.any(gp.grad.numpy()), name
            continue
        np.testing.assert_allclose(gp.grad.numpy(), tp.grad.numpy(), rtol=rtol, atol=atol,
                                   err_msg=f"grad of {name}")
    return t_outs, g_outs


def both(cls_name, *args, **kwargs):
    """The same layer built by torch.nn and by graphc.nn."""
    return getattr(nn, cls_name)(*args, **kwargs), getattr(torch.nn, cls_name)(*args, **kwargs)


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def randn(rng, *shape):
    return rng.standard_normal(shape).astype(np.float32)


# ----------------------------------------------------------------------------- linear & co

@pytest.mark.parametrize("shape", [(5, 4), (2, 3, 4), (4,)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(rng, shape, bias):
    compare_module(*both("Linear", 4, 3, bias=bias), randn(rng, *shape))


def test_identity_flatten_unflatten(rng):
    x = randn(rng, 2, 3, 4, 5)
    compare_module(*both("Identity", 7, foo=1), x)
    compare_module(*both("Flatten"), x)
    compare_module(*both("Flatten", 0, 2), x)
    compare_module(*both("Unflatten", 1, (3, 1)), x)


# ----------------------------------------------------------------------------- activations

@pytest.mark.parametrize("name,args", [
    ("ReLU", ()), ("GELU", ()), ("GELU", ("tanh",)), ("SiLU", ()), ("Sigmoid", ()),
    ("Tanh", ()), ("LeakyReLU", ()), ("LeakyReLU", (0.2,)), ("Softmax", (1,)),
    ("Softmax", (-1,)), ("LogSoftmax", (1,)), ("LogSoftmax", (0,)), ("Softplus", ()),
    ("LogSigmoid", ())])
def test_activations(rng, name, args):
    x = randn(rng, 3, 4, 5) * 3
    x[0, 0, :3] = 0.0   # the kinks: PyTorch's gradient at 0
    compare_module(*both(name, *args), x)


def test_relu_alias_and_functional_forms(rng):
    assert nn.Relu is nn.ReLU
    x = randn(rng, 4, 6)
    for name in ("relu", "gelu", "silu", "sigmoid", "tanh", "leaky_relu", "logsigmoid"):
        got = getattr(nn.functional, name)(gc.tensor(x)).numpy()
        want = getattr(torch.nn.functional, name)(torch.tensor(x)).numpy()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6, err_msg=name)


def test_softmax_implicit_dim_warns(rng):
    x = randn(rng, 3, 4)
    with pytest.warns(UserWarning, match="Implicit dimension"):
        got = nn.Softmax()(gc.tensor(x)).numpy()
    np.testing.assert_allclose(got, torch.softmax(torch.tensor(x), 1).numpy(), rtol=1e-5)


def test_inplace_relu_on_leaf_refuses(rng):
    x = gc.tensor(randn(rng, 3), requires_grad=True)
    with pytest.raises(RuntimeError, match="leaf Variable"):
        nn.ReLU(inplace=True)(x)
    y = x * 1
    out = nn.ReLU(inplace=True)(y)
    assert out is y


# ----------------------------------------------------------------------------- convolution

@pytest.mark.parametrize("kw", [
    dict(),
    dict(stride=2, padding=1),
    dict(stride=(2, 1), padding=(1, 2), dilation=(2, 1)),
    dict(groups=2, padding=1),
    dict(padding="same", dilation=2),
    dict(padding="valid", bias=False),
    dict(padding=1, padding_mode="reflect"),
    dict(padding=(1, 2), padding_mode="replicate"),
    dict(padding=1, padding_mode="circular", stride=2),
])
def test_conv2d(rng, kw):
    compare_module(*both("Conv2d", 4, 6, 3, **kw), randn(rng, 2, 4, 9, 8), rtol=RTOL_CONV)


@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel")
def test_conv2d_even_kernel_same_padding_and_unbatched(rng):
    compare_module(*both("Conv2d", 2, 3, (2, 4), padding="same"), randn(rng, 2, 2, 6, 7),
                   rtol=RTOL_CONV)
    compare_module(*both("Conv2d", 2, 3, 3, padding=1), randn(rng, 2, 5, 5), rtol=RTOL_CONV)


@pytest.mark.parametrize("kw", [dict(), dict(stride=2, padding=2, dilation=2),
                                dict(groups=3, padding="same"),
                                dict(padding=1, padding_mode="circular")])
def test_conv1d(rng, kw):
    compare_module(*both("Conv1d", 3, 6, 3, **kw), randn(rng, 2, 3, 11), rtol=RTOL_CONV)


@pytest.mark.parametrize("kw", [
    dict(),
    dict(stride=2, padding=1, output_padding=1),
    dict(stride=(3, 2), padding=(0, 1), output_padding=(2, 1)),
    dict(groups=2, dilation=2, stride=2),
    dict(dilation=3, stride=2, output_padding=2, bias=False),
])
def test_conv_transpose2d(rng, kw):
    compare_module(*both("ConvTranspose2d", 4, 6, 3, **kw), randn(rng, 2, 4, 5, 4),
                   rtol=RTOL_CONV)


def test_conv_transpose_output_size_and_1d(rng):
    g, t = both("ConvTranspose2d", 2, 3, 3, stride=2, padding=1)
    compare_module(g, t, randn(rng, 1, 2, 4, 4), kwargs=dict(output_size=[8, 8]),
                   rtol=RTOL_CONV)
    compare_module(*both("ConvTranspose1d", 2, 4, 3, stride=2, output_padding=1),
                   randn(rng, 2, 2, 6), rtol=RTOL_CONV)


def test_conv_errors(rng):
    conv = nn.Conv2d(3, 4, 3)
    with pytest.raises(RuntimeError, match="3 input channels"):
        conv(gc.tensor(randn(rng, 1, 2, 5, 5)))
    with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
        conv(gc.tensor(randn(rng, 1, 3, 2, 2)))
    with pytest.raises(ValueError, match="strided"):
        nn.Conv2d(3, 4, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="divisible by groups"):
        nn.Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="output padding must be smaller"):
        nn.functional.conv_transpose2d(gc.tensor(randn(rng, 1, 2, 3, 3)),
                                       gc.tensor(randn(rng, 2, 2, 3, 3)), output_padding=1)


def test_conv_double_backward_matches_torch(rng):
    """The conv VJPs are convolutions, so gradients of gradients work."""
    x, w = randn(rng, 2, 3, 6, 5), randn(rng, 4, 3, 3, 2)
    tx, tw = torch.tensor(x, requires_grad=True), torch.tensor(w, requires_grad=True)
    gx, gw = gc.tensor(x, requires_grad=True), gc.tensor(w, requires_grad=True)
    ty = torch.nn.functional.conv2d(tx, tw, stride=2, padding=1)
    (tdx,) = torch.autograd.grad((ty ** 2).sum(), [tx], create_graph=True)
    (tdx ** 2).sum().backward()
    gy = nn.functional.conv2d(gx, gw, stride=2, padding=1)
    (gy ** 2).sum().backward(create_graph=True)
    gdx = gx.grad
    gx.grad = gw.grad = None
    (gdx ** 2).sum().backward()
    np.testing.assert_allclose(gdx.detach().numpy(), tdx.detach().numpy(), rtol=1e-3,
                               atol=1e-4)
    np.testing.assert_allclose(gw.grad.numpy(), tw.grad.numpy(), rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(gx.grad.numpy(), tx.grad.numpy(), rtol=1e-3, atol=1e-3)


def test_conv_gradients_float64_finite_differences(rng):
    """The primitive's VJPs against central differences, independent of torch."""
    from conftest import numerical_grad
    x = rng.standard_normal((1, 2, 5, 4))
    w = rng.standard_normal((2, 1, 2, 3))
    r = rng.standard_normal((1, 2, 6, 7))

    def f(xa, wa):
        y = nn.functional.conv_transpose2d(gc.tensor(xa), gc.tensor(wa), stride=(1, 2),
                                           padding=(0, 1), groups=2)
        return float((y * gc.tensor(r)).sum().item())

    gx, gw = gc.tensor(x, requires_grad=True), gc.tensor(w, requires_grad=True)
    y = nn.functional.conv_transpose2d(gx, gw, stride=(1, 2), padding=(0, 1), groups=2)
    (y * gc.tensor(r)).sum().backward()
    nx, nw = numerical_grad(f, [x.copy(), w.copy()])
    np.testing.assert_allclose(gx.grad.numpy(), nx, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(gw.grad.numpy(), nw, rtol=1e-6, atol=1e-7)


# ----------------------------------------------------------------------------- pooling

@pytest.mark.parametrize("args,kw", [
    ((2,), {}),
    ((3,), dict(stride=1)),                       # overlapping windows
    ((3,), dict(stride=2, padding=1)),
    (((2, 3),), dict(stride=(1, 2), dilation=(2, 1))),
    ((3,), dict(stride=2, ceil_mode=True)),
    ((2,), dict(stride=2, padding=1, ceil_mode=True)),
])
def test_maxpool2d(rng, args, kw):
    compare_module(*both("MaxPool2d", *args, **kw), randn(rng, 2, 3, 7, 8))


def test_maxpool2d_ties_send_gradient_to_first_max():
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1:3, 1:3] = 1.0     # every overlapping window sees several equal maxima
    compare_module(*both("MaxPool2d", 2, stride=1), x)
    compare_module(*both("MaxPool2d", 3, stride=1, padding=1), x)


def test_maxpool2d_nan_windows_pick_the_last_nan_like_pytorch():
    """PyTorch takes a value greater than the max so far or NaN: in a window holding
    NaNs the last one wins (its index is returned, the gradient goes to it)."""
    import torch
    from graphc.nn import functional as F
    x = np.arange(32, dtype=np.float32).reshape(1, 2, 4, 4)
    x[0, 0, 0, 0] = x[0, 0, 1, 0] = np.nan          # two NaNs in one 2x2 window
    x[0, 1, 2, 3] = np.nan                            # one NaN, not in the first place
    x[0, 1, 0, 0] = x[0, 1, 0, 1] = 50.0              # a tie: the first wins
    t = torch.tensor(x, requires_grad=True)
    to, ti = torch.nn.functional.max_pool2d(t, 2, return_indices=True)
    (torch.where(to.isnan(), 0.0, to) * 2).sum().backward()
    g = gc.tensor(x, requires_grad=True)
    go, gi = F.max_pool2d(g, 2, return_indices=True)
    (gc.where(go.isnan(), 0.0, go) * 2).sum().backward()
    np.testing.assert_array_equal(gi.numpy(), ti.numpy())
    np.testing.assert_array_equal(go.detach().numpy(), to.detach().numpy())
    np.testing.assert_array_equal(g.grad.numpy(), t.grad.numpy())


def test_maxpool_return_indices_and_1d(rng):
    x = randn(rng, 2, 3, 7, 6)
    g, t = both("MaxPool2d", 3, stride=2, padding=1, return_indices=True)
    (_, ti), (_, gi) = compare_module(g, t, x)
    np.testing.assert_array_equal(gi.numpy(), ti.numpy())
    compare_module(*both("MaxPool1d", 3, stride=2, padding=1), randn(rng, 2, 3, 9))
    compare_module(*both("MaxPool2d", 2), randn(rng, 3, 6, 6))   # unbatched


@pytest.mark.parametrize("args,kw", [
    ((2,), {}),
    ((3,), dict(stride=1, padding=1)),
    ((3,), dict(stride=2, padding=1, count_include_pad=False)),
    ((3,), dict(stride=2, padding=1, ceil_mode=True)),
    ((3,), dict(stride=2, padding=1, ceil_mode=True, count_include_pad=False)),
    (((2, 3),), dict(divisor_override=4)),
])
def test_avgpool2d(rng, args, kw):
    compare_module(*both("AvgPool2d", *args, **kw), randn(rng, 2, 3, 7, 8))


def test_avgpool1d(rng):
    compare_module(*both("AvgPool1d", 3, stride=2, padding=1), randn(rng, 2, 3, 8))


@pytest.mark.parametrize("size", [1, (2, 4), (3, 5), (None, 3), 7])
def test_adaptive_avgpool2d(rng, size):
    compare_module(*both("AdaptiveAvgPool2d", size), randn(rng, 2, 3, 7, 8))


def test_adaptive_avgpool1d(rng):
    compare_module(*both("AdaptiveAvgPool1d", 4), randn(rng, 2, 3, 10))


# ----------------------------------------------------------------------------- normalization

@pytest.mark.parametrize("cls,shape", [("BatchNorm1d", (6, 4)), ("BatchNorm1d", (5, 4, 3)),
                                       ("BatchNorm2d", (3, 4, 5, 2))])
@pytest.mark.parametrize("kw", [dict(), dict(momentum=None), dict(affine=False),
                                dict(track_running_stats=False), dict(momentum=0.3, eps=1e-3)])
def test_batchnorm_train_three_steps_then_eval(rng, cls, shape, kw):
    g, t = both(cls, 4, **kw)
    if t.weight is not None:   # non-trivial affine parameters
        torch.nn.init.uniform_(t.weight)
        torch.nn.init.uniform_(t.bias)
    copy_state(g, t)
    for step in range(3):
        compare_module(g, t, randn(rng, *shape) * 2 + step, copy=False, rtol=1e-4,
                       atol=1e-4, seed=step)
        g.zero_grad()
        t.zero_grad()
    for name, tb in t.state_dict().items():
        gb = g.state_dict()[name]
        np.testing.assert_allclose(gb.numpy(), tb.numpy(), rtol=1e-5, atol=1e-6,
                                   err_msg=name)
    g.eval()
    t.eval()
    compare_module(g, t, randn(rng, *shape), copy=False, atol=1e-4)


def test_batchnorm_errors(rng):
    bn = nn.BatchNorm1d(3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        bn(gc.tensor(randn(rng, 1, 3)))
    with pytest.raises(ValueError, match="expected 4D input"):
        nn.BatchNorm2d(3)(gc.tensor(randn(rng, 2, 3)))


def test_batchnorm_updates_stay_lazy(rng):
    """A train step's buffer updates are graph ops: nothing is realized until read."""
    bn = nn.BatchNorm2d(2)
    bn.running_mean.numpy()
    before = gc.runtime.stats["realizations"]
    bn(gc.tensor(randn(rng, 4, 2, 3, 3)))
    assert gc.runtime.stats["realizations"] == before
    assert int(bn.num_batches_tracked.item()) == 1


@pytest.mark.parametrize("kw", [dict(), dict(elementwise_affine=False), dict(bias=False),
                                dict(eps=1e-2)])
def test_layernorm(rng, kw):
    g, t = both("LayerNorm", (3, 4), **kw)
    if t.weight is not None:
        torch.nn.init.uniform_(t.weight)
    compare_module(g, t, randn(rng, 2, 5, 3, 4))
    compare_module(*both("LayerNorm", 4, **kw), randn(rng, 6, 4))


def test_layernorm_shape_error(rng):
    with pytest.raises(RuntimeError, match="normalized_shape"):
        nn.LayerNorm(5)(gc.tensor(randn(rng, 2, 4)))


# ----------------------------------------------------------------------------- embedding

@pytest.mark.parametrize("padding_idx", [None, 0, -2])
def test_embedding(rng, padding_idx):
    g, t = both("Embedding", 10, 4, padding_idx=padding_idx)
    idx = np.array([[1, 0, 8], [8, 8, 3]], dtype=np.int64)
    compare_module(g, t, idx)
    if padding_idx is not None:
        row = padding_idx % 10
        assert not np.any(nn.Embedding(10, 4, padding_idx=padding_idx).weight.detach()
                          .numpy()[row])


def test_embedding_from_pretrained_and_one_hot(rng):
    w = randn(rng, 5, 3)
    emb = nn.Embedding.from_pretrained(gc.tensor(w))
    assert not emb.weight.requires_grad
    np.testing.assert_array_equal(emb(gc.tensor([4, 0])).numpy(), w[[4, 0]])
    idx = np.array([2, 0, 3])
    np.testing.assert_array_equal(nn.functional.one_hot(gc.tensor(idx)).numpy(),
                                  torch.nn.functional.one_hot(torch.tensor(idx)).numpy())
    np.testing.assert_array_equal(nn.functional.one_hot(gc.tensor(idx), 6).numpy(),
                                  torch.nn.functional.one_hot(torch.tensor(idx), 6).numpy())


# ----------------------------------------------------------------------------- dropout

def test_dropout_masks_scale_reproducibility_and_eval():
    d = nn.Dropout(0.25)
    x = gc.ones(2000)
    gc.manual_seed(7)
    a, b = d(x).numpy(), d(x).numpy()
    assert not np.array_equal(a, b)                       # a new mask every call
    assert set(np.unique(a)) <= {0.0, np.float32(1 / 0.75)}  # scale 1/(1-p)
    assert abs((a == 0).mean() - 0.25) < 0.04
    gc.manual_seed(7)
    np.testing.assert_array_equal(d(x).numpy(), a)       # reproducible under manual_seed
    np.testing.assert_array_equal(d(x).numpy(), b)
    d.eval()
    out = d(x)
    assert out is x                                       # identity in eval mode
    assert nn.Dropout(0.0)(x) is x
    np.testing.assert_array_equal(nn.Dropout(1.0)(x).numpy(), np.zeros(2000))


def test_dropout_gradient_uses_the_mask_and_does_not_recompile():
    gc.manual_seed(3)
    d = nn.Dropout(0.5)
    x = gc.tensor(np.ones(64, np.float32), requires_grad=True)
    masks = []
    for step in range(4):
        x.grad = None
        y = d(x)
        y.sum().backward()
        masks.append(y.detach().numpy())
        np.testing.assert_array_equal(x.grad.numpy(), masks[-1])
        if step == 0:
            compiles = gc.runtime.stats["compiles"]
    assert gc.runtime.stats["compiles"] == compiles, "a new dropout mask must not recompile"
    assert len({m.tobytes() for m in masks}) == 4


def test_dropout_bad_p():
    with pytest.raises(ValueError, match="between 0 and 1"):
        nn.Dropout(1.5)


# ----------------------------------------------------------------------------- padding

@pytest.mark.parametrize("mode", ["constant", "reflect", "replicate", "circular"])
def test_functional_pad(rng, mode):
    x = randn(rng, 2, 3, 5, 6)
    pads = (1, 2, 2, 0)
    kw = dict(value=1.5) if mode == "constant" else {}
    tx, gx = torch.tensor(x, requires_grad=True), gc.tensor(x, requires_grad=True)
    ty = torch.nn.functional.pad(tx, pads, mode=mode, **kw)
    gy = nn.functional.pad(gx, pads, mode=mode, **kw)
    np.testing.assert_array_equal(gy.detach().numpy(), ty.detach().numpy())
    r = randn(rng, *ty.shape)
    (ty * torch.tensor(r)).sum().backward()
    (gy * gc.tensor(r)).sum().backward()
    np.testing.assert_allclose(gx.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-6)


def test_functional_pad_negative_crops(rng):
    x = randn(rng, 3, 5)
    np.testing.assert_array_equal(nn.functional.pad(gc.tensor(x), (-1, 2)).numpy(),
                                  torch.nn.functional.pad(torch.tensor(x), (-1, 2)).numpy())


# ----------------------------------------------------------------------------- attention

def _mha_pair(**kw):
    torch.manual_seed(0)
    t = torch.nn.MultiheadAttention(8, 2, **kw)
    return nn.MultiheadAttention(8, 2, **kw), t


@pytest.mark.parametrize("kw", [dict(), dict(batch_first=True), dict(bias=False),
                                dict(add_bias_kv=True, add_zero_attn=True),
                                dict(kdim=5, vdim=3)])
def test_mha_cross_attention(rng, kw):
    g, t = _mha_pair(**kw)
    if kw.get("batch_first"):
        q, k, v = randn(rng, 2, 4, 8), randn(rng, 2, 6, 8), randn(rng, 2, 6, 8)
    else:
        q, k, v = randn(rng, 4, 2, 8), randn(rng, 6, 2, kw.get("kdim", 8)), \
            randn(rng, 6, 2, kw.get("vdim", 8))
    compare_module(g, t, q, k, v)


def test_mha_self_attention_masks_and_weights(rng):
    g, t = _mha_pair(batch_first=True)
    g.eval()
    t.eval()
    x = randn(rng, 3, 5, 8)
    kpm = np.zeros((3, 5), bool)
    kpm[0, 3:] = True
    kpm[2, 0] = True
    causal = np.triu(np.ones((5, 5), bool), 1)
    float_mask = randn(rng, 6, 5, 5)

    def run(mod, lib, **kw):
        xt = lib.tensor(x, requires_grad=True)
        conv = {k: lib.tensor(v) if isinstance(v, np.ndarray) else v for k, v in kw.items()}
        out, w = mod(xt, xt, xt, **conv)
        return xt, out, w

    for kw in [dict(key_padding_mask=kpm), dict(attn_mask=causal),
               dict(attn_mask=causal, key_padding_mask=kpm),
               dict(attn_mask=float_mask, average_attn_weights=False),
               dict(key_padding_mask=kpm.astype(np.float32) * -1e9),
               dict(need_weights=False, attn_mask=causal, is_causal=True)]:
        copy_state(g, t)
        tx, tout, tw = run(t, torch, **kw)
        gx, gout, gw = run(g, gc, **kw)
        np.testing.assert_allclose(gout.detach().numpy(), tout.detach().numpy(), rtol=1e-4,
                                   atol=1e-5)
        if tw is None:
            assert gw is None
        else:
            np.testing.assert_allclose(gw.detach().numpy(), tw.detach().numpy(), rtol=1e-4,
                                       atol=1e-6)
        tout.sum().backward()
        gout.sum().backward()
        np.testing.assert_allclose(gx.grad.numpy(), tx.grad.numpy(), rtol=1e-3, atol=1e-5)


def test_mha_unbatched_and_state_dict_names(rng):
    g, t = _mha_pair(add_bias_kv=True)
    assert list(g.state_dict()) == list(t.state_dict())
    g2, t2 = _mha_pair(kdim=3, vdim=3)
    assert list(g2.state_dict()) == list(t2.state_dict())
    compare_module(g, t, randn(rng, 4, 8), randn(rng, 6, 8), randn(rng, 6, 8))


def test_mha_attention_dropout_is_training_only(rng):
    g = nn.MultiheadAttention(8, 2, dropout=0.5)
    x = gc.tensor(randn(rng, 4, 1, 8))
    gc.manual_seed(0)
    a = g(x, x, x)[1].detach().numpy()
    g.eval()
    b = g(x, x, x)[1].detach().numpy()
    np.testing.assert_allclose(b.sum(-1), 1.0, rtol=1e-5)
    assert not np.allclose(a, b)


def test_scaled_dot_product_attention(rng):
    q, k, v = randn(rng, 2, 3, 4, 5), randn(rng, 2, 3, 6, 5), randn(rng, 2, 3, 6, 5)
    mask = rng.random((4, 6)) > 0.3
    mask[:, 0] = True
    for kw in [dict(), dict(attn_mask=mask), dict(is_causal=True), dict(scale=0.3)]:
        tk = {a: torch.tensor(b) if isinstance(b, np.ndarray) else b for a, b in kw.items()}
        gk = {a: gc.tensor(b) if isinstance(b, np.ndarray) else b for a, b in kw.items()}
        want = torch.nn.functional.scaled_dot_product_attention(
            torch.tensor(q), torch.tensor(k), torch.tensor(v), **tk)
        got = nn.functional.scaled_dot_product_attention(gc.tensor(q), gc.tensor(k),
                                                         gc.tensor(v), **gk)
        np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)


def test_non_overlapping_pooling_windows_are_one_view():
    """Stride == kernel, no padding: the windows are a reshape/permute of the input (its
    gradient then needs no pads), and results still match PyTorch, odd sizes included."""
    import torch
    from graphc.nn import functional as F
    from graphc.ir.graph import Graph
    x = np.random.default_rng(3).standard_normal((2, 3, 9, 8)).astype(np.float32)
    t = gc.tensor(x, requires_grad=True)
    y = F.max_pool2d(t, 2)
    g, _ = Graph.from_outputs([y._node], boundary=lambda n: n.data is not None)
    assert not any(n.op in ("slice", "concat") and len(n.shape) == 5 for n in g.nodes)
    (y * y).sum().backward()
    tt = torch.tensor(x, requires_grad=True)
    ty = torch.nn.functional.max_pool2d(tt, 2)
    (ty * ty).sum().backward()
    np.testing.assert_allclose(y.detach().numpy(), ty.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(t.grad.numpy(), tt.grad.numpy(), rtol=1e-6)
    a = F.avg_pool2d(gc.tensor(x), (3, 2))
    np.testing.assert_allclose(a.numpy(), torch.nn.functional.avg_pool2d(
        torch.tensor(x), (3, 2)).numpy(), rtol=1e-6)


# ----------------------------------------------------------------------------- errors like torch

@pytest.mark.parametrize("lib_dtype", ["float64", "int64"])
def test_linear_refuses_an_input_dtype_other_than_the_weights(rng, lib_dtype):
    """float64 data (numpy's default) or integer tokens into a float32 Linear: PyTorch
    raises; graphc's matmul would silently promote."""
    x = randn(rng, 4, 3).astype(lib_dtype)
    with pytest.raises(RuntimeError, match="same dtype"):
        torch.nn.Linear(3, 2)(torch.tensor(x))
    with pytest.raises(RuntimeError, match="mat1 and mat2 must have the same dtype"):
        nn.Linear(3, 2)(gc.tensor(x))
    with pytest.raises(RuntimeError, match="same dtype"):   # through the layers built on it
        nn.MultiheadAttention(4, 2)(*(gc.tensor(randn(rng, 2, 1, 4).astype(lib_dtype)),) * 3)
    compare_module(*both("Linear", 3, 2), x.astype(np.float32))   # float32 still fine


@pytest.mark.parametrize("cls,args,shape,match", [
    ("LayerNorm", (3,), (4, 3), "mixed dtype"), ("BatchNorm1d", (3,), (4, 3), "mixed dtype"),
    ("BatchNorm2d", (2,), (4, 2, 3, 3), "mixed dtype"),
    ("Conv2d", (1, 2, 3), (1, 1, 5, 5), r"Input type \(double\) and (weight|bias) type"),
    ("Conv1d", (1, 2, 3), (1, 1, 5), r"Input type \(double\) and (weight|bias) type"),
    ("ConvTranspose2d", (1, 2, 3), (1, 1, 5, 5),
     r"(Input type \(double\) and (weight|bias) type|expected scalar type Double)")])
def test_norms_and_convs_refuse_a_float64_input_into_a_float32_layer_like_torch(
        rng, cls, args, shape, match):
    x = randn(rng, *shape).astype(np.float64)
    for train in (True, False):
        g, t = both(cls, *args)
        g.train(train)
        t.train(train)
        with pytest.raises(RuntimeError, match=match):
            t(torch.tensor(x))
        with pytest.raises(RuntimeError, match=match):
            g(gc.tensor(x))
    compare_module(*both(cls, *args), x.astype(np.float32), rtol=1e-3)   # float32 still fine


def test_batchnorm_feature_count_error_like_torch(rng):
    for train in (True, False):
        for cls, shape in (("BatchNorm1d", (4, 5)), ("BatchNorm2d", (4, 5, 2, 2))):
            g, t = both(cls, 3)
            g.train(train)
            t.train(train)
            with pytest.raises(RuntimeError, match="running_mean should contain 5 elements "
                                                   "not 3"):
                t(torch.zeros(shape))
            with pytest.raises(RuntimeError, match="running_mean should contain 5 elements "
                                                   "not 3"):
                g(gc.zeros(shape))
    with pytest.raises(RuntimeError, match="weight should contain 3 elements not 4"):
        nn.functional.batch_norm(gc.zeros(4, 3), None, None, gc.ones(4), training=True)


@pytest.mark.parametrize("k,p,d", [(3, 2, 2), (5, 3, 2), (2, 1, 3), (4, 2, 2), (3, 1, 2)])
def test_maxpool_padding_limit_is_half_the_kernel_like_torch(rng, k, p, d):
    """PyTorch allows pad <= kernel_size // 2 whatever the dilation (its second check,
    on the undilated kernel, is the stricter one)."""
    x = randn(rng, 1, 2, 12, 11)
    try:
        torch.nn.functional.max_pool2d(torch.tensor(x), k, 1, p, d)
    except RuntimeError as e:
        with pytest.raises(RuntimeError, match="half of kernel size"):
            nn.MaxPool2d(k, 1, p, d)(gc.tensor(x))
        assert "half of kernel size" in str(e)
        return
    compare_module(*both("MaxPool2d", k, 1, p, d), x)


def test_embedding_from_pretrained_needs_a_matrix():
    with pytest.raises(AssertionError, match="2-dimensional"):
        torch.nn.Embedding.from_pretrained(torch.zeros(3))
    with pytest.raises(AssertionError, match="2-dimensional"):
        nn.Embedding.from_pretrained(gc.zeros(3))


@pytest.mark.parametrize("hq,hk", [(6, 2), (4, 4), (3, 1)])
def test_scaled_dot_product_attention_grouped_query_heads(rng, hq, hk):
    """enable_gqa: each key/value head serves hq // hk consecutive query heads."""
    q, k, v = randn(rng, 2, hq, 3, 4), randn(rng, 2, hk, 5, 4), randn(rng, 2, hk, 5, 4)
    tq, tk, tv = (torch.tensor(a, requires_grad=True) for a in (q, k, v))
    gq, gk, gv = (gc.tensor(a, requires_grad=True) for a in (q, k, v))
    want = torch.nn.functional.scaled_dot_product_attention(tq, tk, tv, is_causal=True,
                                                            enable_gqa=True)
    got = nn.functional.scaled_dot_product_attention(gq, gk, gv, is_causal=True,
                                                     enable_gqa=True)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    (want ** 2).sum().backward()
    (got ** 2).sum().backward()
    for g, t in ((gq, tq), (gk, tk), (gv, tv)):
        np.testing.assert_allclose(g.grad.numpy(), t.grad.numpy(), rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- more activations

@pytest.mark.parametrize("name,args", [
    ("ELU", ()), ("ELU", (0.5,)), ("CELU", ()), ("CELU", (1.7,)), ("SELU", ()),
    ("Hardtanh", ()), ("Hardtanh", (-0.5, 2.0)), ("ReLU6", ()), ("Hardsigmoid", ()),
    ("Hardswish", ()), ("Mish", ()), ("Softsign", ()), ("Tanhshrink", ()),
    ("Threshold", (0.3, -2.0)), ("Threshold", (0.0, 5)), ("GLU", ()), ("GLU", (0,)),
    ("Softmin", (1,))])
def test_more_activations(rng, name, args):
    x = randn(rng, 4, 6, 4) * 4
    # the kinks, where PyTorch's backward picks one side: 0, +-1, +-3, 6, the thresholds
    x[0, 0, :] = [0.0, 1.0, -1.0, 3.0]
    x[0, 1, :] = [-3.0, 6.0, 0.3, 2.0]
    x[1, 0, :] = [-0.5, 30.0, -30.0, 25.0]   # far tails: exp overflow must stay out
    compare_module(*both(name, *args), x)


@pytest.mark.parametrize("name,fn,kw", [
    ("ELU", "elu", dict(alpha=0.7)), ("CELU", "celu", dict(alpha=2.0)), ("SELU", "selu", {}),
    ("Hardtanh", "hardtanh", dict(min_val=-2.0, max_val=0.5)), ("ReLU6", "relu6", {}),
    ("Hardsigmoid", "hardsigmoid", {}), ("Hardswish", "hardswish", {}), ("Mish", "mish", {}),
    ("Softsign", "softsign", {}), ("Tanhshrink", "tanhshrink", {}),
    ("Threshold", "threshold", dict(threshold=0.1, value=20.0)), ("GLU", "glu", dict(dim=1))])
def test_more_activations_functional_and_inplace(rng, name, fn, kw):
    x = randn(rng, 3, 4) * 3
    got = getattr(nn.functional, fn)(gc.tensor(x), **kw).numpy()
    want = getattr(torch.nn.functional, fn)(torch.tensor(x), **kw).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    if "inplace" in getattr(torch.nn, name).__init__.__code__.co_varnames:
        g, t = gc.tensor(x), torch.tensor(x)
        getattr(nn, name)(**kw, inplace=True)(g)
        getattr(torch.nn, name)(**kw, inplace=True)(t)
        np.testing.assert_allclose(g.numpy(), t.numpy(), rtol=1e-5, atol=1e-6)
        assert repr(getattr(nn, name)(**kw, inplace=True)) == \
            repr(getattr(torch.nn, name)(**kw, inplace=True))
    assert repr(getattr(nn, name)(**kw)) == repr(getattr(torch.nn, name)(**kw))


@pytest.mark.parametrize("num,shape", [(1, (4, 3, 5)), (3, (4, 3, 5)), (3, (2, 3, 4, 4)),
                                       (1, (7,)), (2, (5, 2))])
def test_prelu(rng, num, shape):
    g, t = both("PReLU", num, init=0.1)
    torch.nn.init.uniform_(t.weight, -1, 1)
    x = randn(rng, *shape)
    x.flat[:2] = 0.0
    compare_module(g, t, x)
    assert repr(g) == repr(t)
    g2 = nn.PReLU(3)
    np.testing.assert_array_equal(g2.weight.detach().numpy(),
                                  torch.nn.PReLU(3).weight.detach().numpy())
    with pytest.raises(RuntimeError, match="Mismatch of parameter numbers"):
        nn.functional.prelu(gc.tensor(randn(rng, 2, 4)), g2.weight)


def test_more_activation_errors():
    with pytest.raises(ValueError, match="min_val cannot be greater than max_val"):
        nn.functional.hardtanh(gc.ones(2), 2.0, 1.0)
    with pytest.raises(AssertionError, match="must be greater than min_val"):
        nn.Hardtanh(2.0, 1.0)
    with pytest.raises(RuntimeError, match="Halving dimension must be even"):
        nn.functional.glu(gc.ones(2, 5), 1)
    with pytest.raises(RuntimeError, match="alpha cannot be 0"):
        nn.functional.celu(gc.ones(2), alpha=0.0)


# ----------------------------------------------------------------------------- group, instance norm

@pytest.mark.parametrize("groups,shape", [(2, (3, 4, 5)), (1, (2, 6, 3, 3)), (6, (2, 6, 4)),
                                          (3, (2, 6, 2, 3))])
@pytest.mark.parametrize("kw", [dict(), dict(affine=False), dict(eps=1e-2), dict(bias=False)])
def test_groupnorm(rng, groups, shape, kw):
    g, t = both("GroupNorm", groups, shape[1], **kw)
    if t.weight is not None:
        torch.nn.init.uniform_(t.weight)
        if t.bias is not None:
            torch.nn.init.uniform_(t.bias)
    compare_module(g, t, randn(rng, *shape) * 2 + 1, atol=1e-4)
    assert repr(g) == repr(t)


def test_groupnorm_functional_and_errors(rng):
    x, w, b = randn(rng, 2, 4, 3), randn(rng, 4), randn(rng, 4)
    got = nn.functional.group_norm(gc.tensor(x), 2, gc.tensor(w), gc.tensor(b), eps=1e-3)
    want = torch.nn.functional.group_norm(torch.tensor(x), 2, torch.tensor(w),
                                          torch.tensor(b), eps=1e-3)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-4, atol=1e-5)
    with pytest.raises(ValueError, match="must be divisible by num_groups"):
        nn.GroupNorm(3, 4)
    with pytest.raises(RuntimeError, match="divisible by num_groups"):
        nn.functional.group_norm(gc.tensor(x), 3)
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        nn.functional.group_norm(gc.tensor(randn(rng, 1, 4)), 4)


@pytest.mark.parametrize("cls,shape", [("InstanceNorm1d", (3, 4, 5)), ("InstanceNorm1d", (4, 6)),
                                       ("InstanceNorm2d", (2, 4, 3, 5)),
                                       ("InstanceNorm2d", (4, 3, 3))])
@pytest.mark.parametrize("kw", [dict(), dict(affine=True), dict(track_running_stats=True),
                                dict(affine=True, track_running_stats=True, momentum=0.3)])
def test_instancenorm_train_then_eval(rng, cls, shape, kw):
    g, t = both(cls, 4, **kw)
    if t.weight is not None:
        torch.nn.init.uniform_(t.weight)
        torch.nn.init.uniform_(t.bias)
    copy_state(g, t)
    assert repr(g) == repr(t)
    assert list(g.state_dict()) == list(t.state_dict())
    for step in range(2):
        compare_module(g, t, randn(rng, *shape) * 2 + step, copy=False, atol=1e-4, seed=step)
        g.zero_grad()
        t.zero_grad()
    for name, tb in t.state_dict().items():
        np.testing.assert_allclose(g.state_dict()[name].numpy(), tb.numpy(), rtol=1e-5,
                                   atol=1e-6, err_msg=name)
    g.eval()
    t.eval()
    compare_module(g, t, randn(rng, *shape), copy=False, atol=1e-4)


def test_instancenorm_errors(rng):
    with pytest.raises(ValueError, match="expected 2D or 3D input"):
        nn.InstanceNorm1d(3)(gc.tensor(randn(rng, 2, 3, 4, 5)))
    with pytest.raises(ValueError, match="to match num_features"):
        nn.InstanceNorm2d(3, affine=True)(gc.tensor(randn(rng, 2, 4, 3, 3)))
    with pytest.warns(UserWarning, match="does not match num_features"):
        nn.InstanceNorm2d(3)(gc.tensor(randn(rng, 2, 4, 3, 3)))


# ----------------------------------------------------------------------------- interpolate

@pytest.mark.parametrize("shape,kw", [
    ((2, 3, 4, 5), dict(scale_factor=2)),
    ((2, 3, 4, 5), dict(scale_factor=(1.5, 3))),
    ((2, 3, 4, 5), dict(scale_factor=0.5)),
    ((2, 3, 4, 5), dict(scale_factor=1.7)),
    ((2, 3, 4, 5), dict(size=(7, 3))),
    ((2, 3, 4, 5), dict(size=9)),
    ((2, 3, 7, 6), dict(size=(3, 4))),
    ((2, 3, 4, 5), dict(scale_factor=2.3, recompute_scale_factor=True)),
    ((2, 3, 5), dict(scale_factor=3)),
    ((2, 3, 5), dict(size=8)),
])
@pytest.mark.parametrize("mode,align", [("nearest", None), ("bilinear", False),
                                        ("bilinear", True), ("bilinear", None)])
def test_interpolate(rng, shape, kw, mode, align):
    if len(shape) == 3 and mode == "bilinear":
        mode = "linear"
    x = randn(rng, *shape)
    tx, gx = torch.tensor(x, requires_grad=True), gc.tensor(x, requires_grad=True)
    want = torch.nn.functional.interpolate(tx, mode=mode, align_corners=align, **kw)
    got = nn.functional.interpolate(gx, mode=mode, align_corners=align, **kw)
    assert tuple(got.shape) == tuple(want.shape)
    np.testing.assert_allclose(got.detach().numpy(), want.detach().numpy(), rtol=1e-5,
                               atol=1e-6)
    r = rng.standard_normal(tuple(want.shape)).astype(np.float32)
    (want * torch.tensor(r)).sum().backward()
    (got * gc.tensor(r)).sum().backward()
    np.testing.assert_allclose(gx.grad.numpy(), tx.grad.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("args", [dict(scale_factor=2), dict(size=(5, 7), mode="bilinear"),
                                  dict(scale_factor=(2, 3), mode="bilinear",
                                       align_corners=True)])
def test_upsample_modules(rng, args):
    compare_module(*both("Upsample", **args), randn(rng, 2, 3, 4, 5))
    assert repr(nn.Upsample(**args)) == repr(torch.nn.Upsample(**args))
    sub = {k: v for k, v in args.items() if k in ("size", "scale_factor")}
    compare_module(*both("UpsamplingNearest2d", **sub), randn(rng, 1, 2, 3, 4))
    compare_module(*both("UpsamplingBilinear2d", **sub), randn(rng, 1, 2, 3, 4))


def test_interpolate_errors(rng):
    x = gc.tensor(randn(rng, 1, 2, 3, 4))
    with pytest.raises(ValueError, match="only one of size or scale_factor"):
        nn.functional.interpolate(x, size=4, scale_factor=2)
    with pytest.raises(ValueError, match="either size or scale_factor"):
        nn.functional.interpolate(x)
    with pytest.raises(ValueError, match="align_corners option can only be set"):
        nn.functional.interpolate(x, scale_factor=2, align_corners=True)
    with pytest.raises(NotImplementedError, match="needs 3D input"):
        nn.functional.interpolate(x, scale_factor=2, mode="linear")


@pytest.mark.parametrize("kw", [dict(kernel_size=2, padding=1), dict(kernel_size=3, stride=2,
                                                                     padding=1, ceil_mode=True)])
def test_max_pool_never_picks_padding_like_torch(kw):
    """Windows whose inputs are all -inf: PyTorch picks the first input of the window,
    never the padding, for the gradient and return_indices."""
    x = np.full((1, 1, 4, 5), -np.inf, np.float32)
    x[0, 0, 1, 1], x[0, 0, 3, 4] = 1.0, 2.0
    results = []
    for lib in (torch, gc):
        t = lib.tensor(x, requires_grad=True)
        out, idx = lib.nn.functional.max_pool2d(t, return_indices=True, **kw)
        out.sum().backward()        # -inf, but each output's gradient is 1
        results.append((out.detach().numpy(), idx.numpy(), t.grad.numpy()))
    for ours, theirs in zip(results[1], results[0]):
        np.testing.assert_array_equal(ours, theirs)


# ---------------------------------------------------------------- found by an options sweep

def _fully_masked_attention(L):
    q = L.arange(8.0).reshape(1, 2, 4).requires_grad_()
    k = (L.arange(12.0).reshape(1, 3, 4) / 10).requires_grad_()
    v = (L.arange(12.0).reshape(1, 3, 4) / 7).requires_grad_()
    mask = L.tensor([[True, True, True], [False, False, False]])   # row 1 sees no key
    o = L.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    (o * L.arange(8.0).reshape(1, 2, 4)).sum().backward()
    m = L.nn.MultiheadAttention(4, 1)
    with L.no_grad():
        for p in m.parameters():
            p.copy_(L.arange(p.numel() * 1.0).reshape(p.shape) / 50)
    x = L.ones(3, 1, 4)
    a = m(x, x, x, key_padding_mask=L.tensor([[True, True, True]]), need_weights=False)[0]
    return [t.detach().numpy() for t in (o, q.grad, k.grad, v.grad, a)]


def test_attention_rows_with_every_key_masked_give_zeros_not_nan():
    """PyTorch (since 2.5) gives 0 for such a row in scaled_dot_product_attention and in
    MultiheadAttention(need_weights=False); a nan spread to every gradient."""
    for got, want in zip(_fully_masked_attention(gc), _fully_masked_attention(torch)):
        assert not np.isnan(got).any()
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    q = gc.ones(1, 2, 4)
    with pytest.raises(RuntimeError, match="attn_mask should not be set when is_causal"):
        gc.nn.functional.scaled_dot_product_attention(q, q, q, attn_mask=gc.ones(2, 2),
                                                      is_causal=True)


_OPTION_ERRORS = {
    "pool stride 0": lambda L: L.nn.MaxPool2d(2, stride=0)(L.ones(1, 1, 4, 4)),
    "divisor_override=0": lambda L: L.nn.functional.avg_pool2d(L.ones(1, 1, 2, 2), 2,
                                                               divisor_override=0),
    "adaptive output_size of 1": lambda L: L.nn.AdaptiveAvgPool2d((3,))(L.ones(1, 1, 4, 4)),
    "nll weight length": lambda L: L.nn.functional.nll_loss(
        L.tensor([[-1.0, -2.0, -3.0]]), L.tensor([1]), weight=L.ones(5)),
    "cross_entropy weight length": lambda L: L.nn.functional.cross_entropy(
        L.zeros(2, 4), L.tensor([0, 1]), weight=L.ones(3)),
    "probability targets with ignore_index": lambda L: L.nn.functional.cross_entropy(
        L.tensor([[0.0, 1.0, 2.0]]), L.tensor([[0.0, 1.0, 0.0]]), ignore_index=1),
}


@pytest.mark.parametrize("case", list(_OPTION_ERRORS))
def test_invalid_layer_options_raise_torchs_error(case):
    with pytest.raises(RuntimeError) as theirs:
        _OPTION_ERRORS[case](torch)
    with pytest.raises(RuntimeError) as ours:
        _OPTION_ERRORS[case](gc)
    assert str(theirs.value).split("\n")[0][:40] in str(ours.value)


def test_integer_average_pooling_truncates_and_empty_adaptive_output():
    for x in (np.arange(16).reshape(1, 1, 4, 4), -np.arange(16).reshape(1, 1, 4, 4)):
        for args in ((2,), (3, 1, 1)):
            got = gc.nn.functional.avg_pool2d(gc.tensor(x), *args)
            want = torch.nn.functional.avg_pool2d(torch.tensor(x), *args)
            assert got.dtype is gc.int64
            np.testing.assert_array_equal(got.numpy(), want.numpy())
    assert gc.nn.AdaptiveAvgPool2d((0, 2))(gc.ones(1, 1, 4, 4)).shape == (1, 1, 0, 2)


def _embedding_options(L, index_dtype):
    w0 = np.arange(15, dtype=np.float32).reshape(5, 3) / 4
    e = L.nn.Embedding(5, 3, max_norm=1.5, scale_grad_by_freq=True, padding_idx=0)
    with L.no_grad():
        e.weight.copy_(L.tensor(w0))
    idx = L.tensor([[1, 3, 1], [0, 4, 1]], dtype=getattr(L, index_dtype))
    out = e(idx)
    (out * L.arange(18.0).reshape(2, 3, 3)).sum().backward()
    return [out.detach().numpy(), e.weight.detach().numpy(), e.weight.grad.numpy()]


@pytest.mark.parametrize("index_dtype", ["int64", "int32"])
def test_embedding_max_norm_renormalises_in_place_and_scale_grad_by_freq(index_dtype):
    for got, want in zip(_embedding_options(gc, index_dtype), _embedding_options(torch,
                                                                             index_dtype)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
