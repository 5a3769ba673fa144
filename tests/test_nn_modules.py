"""Module mechanics against PyTorch: registration, iteration order, state_dict keys and
load_state_dict's strictness errors, modes, conversion, containers, hooks, repr, and
nn.utils.clip_grad_norm_."""
from __future__ import annotations

import copy
from collections import OrderedDict

import numpy as np
import pytest
import torch

import graphc as gc
from graphc import nn
from test_nn_layers import compare_module, copy_state


def build(lib):
    """The same architecture in torch.nn or graphc.nn (lib is the nn package)."""
    class Net(lib.Module):
        def __init__(self):
            super().__init__()
            self.features = lib.Sequential(
                lib.Conv2d(3, 4, 3, padding=1), lib.BatchNorm2d(4), lib.ReLU(),
                lib.MaxPool2d(2), lib.Conv2d(4, 2, 1, bias=False))
            self.embed = lib.Embedding(7, 4, padding_idx=0)
            self.rnn = lib.LSTM(4, 3, num_layers=2, bidirectional=True)
            self.attn = lib.MultiheadAttention(6, 2)
            self.heads = lib.ModuleDict({"cls": lib.Linear(6, 5), "reg": lib.Linear(6, 1)})
            self.blocks = lib.ModuleList([lib.LayerNorm(6), lib.Dropout(0.1)])
            self.scale = lib.Parameter(torch.ones(1) if lib is torch.nn else gc.ones(1))
            self.register_buffer("steps", torch.zeros(()) if lib is torch.nn else gc.zeros(()))
            self.register_buffer("scratch", torch.zeros(2) if lib is torch.nn else gc.zeros(2),
                                 persistent=False)

        def forward(self, img, tokens):
            f = self.features(img).flatten(1)                      # [N, 8]
            seq, _ = self.rnn(self.embed(tokens))                  # [L, N, 6]
            a, _ = self.attn(seq, seq, seq)
            h = self.blocks[0](a).mean(0) * self.scale + f[:, :6]
            return self.heads["cls"](h), self.heads["reg"](h)
    return Net()


def test_state_dict_keys_and_shapes_match_torch():
    g, t = build(nn), build(torch.nn)
    assert [(k, tuple(v.shape)) for k, v in g.state_dict().items()] == \
        [(k, tuple(v.shape)) for k, v in t.state_dict().items()]
    assert [k for k, _ in g.named_parameters()] == [k for k, _ in t.named_parameters()]
    assert [k for k, _ in g.named_buffers()] == [k for k, _ in t.named_buffers()]
    assert [k for k, _ in g.named_modules()] == [k for k, _ in t.named_modules()]
    assert [k for k, _ in g.named_children()] == [k for k, _ in t.named_children()]
    assert all(isinstance(p, nn.Parameter) for p in g.parameters())
    assert "scratch" not in g.state_dict()


def test_whole_model_forward_and_gradients_match_torch():
    g, t = build(nn), build(torch.nn)
    rng = np.random.default_rng(0)
    img = rng.standard_normal((2, 3, 4, 4)).astype(np.float32)
    tokens = np.array([[1, 2], [0, 6], [3, 3]], dtype=np.int64)
    g.blocks[1].eval()
    t.blocks[1].eval()
    compare_module(g, t, img, tokens, rtol=1e-3, atol=1e-5)


def test_load_state_dict_errors_match_torch():
    g, t = build(nn), build(torch.nn)
    sd_t = OrderedDict((k, v.clone()) for k, v in t.state_dict().items())
    del sd_t["rnn.weight_hh_l1"], sd_t["scale"]
    sd_t["heads.cls.extra"] = torch.zeros(1)
    sd_t["nonexistent.weight"] = torch.zeros(1)
    sd_t["embed.weight"] = torch.zeros(3, 4)
    sd_g = {k: v.numpy() for k, v in sd_t.items()}
    with pytest.raises(RuntimeError) as te:
        t.load_state_dict(sd_t)
    with pytest.raises(RuntimeError) as ge:
        g.load_state_dict(sd_g)
    assert str(ge.value) == str(te.value).replace("torch.Size", "graphc.Size")
    assert "Missing key(s)" in str(ge.value) and "Unexpected key(s)" in str(ge.value)


def test_load_state_dict_non_strict_and_assign():
    g, t = build(nn), build(torch.nn)
    sd = {k: v.numpy() for k, v in t.state_dict().items() if not k.startswith("rnn.")}
    sd["bogus"] = np.zeros(1, np.float32)
    want = t.load_state_dict({k: torch.tensor(v) for k, v in sd.items()}, strict=False)
    got = g.load_state_dict(sd, strict=False)
    assert got.missing_keys == want.missing_keys and got.unexpected_keys == ["bogus"]
    assert repr(nn.Linear(2, 2).load_state_dict(nn.Linear(2, 2).state_dict())) == \
        "<All keys matched successfully>"
    lin = nn.Linear(2, 3)
    w = lin.weight
    new = {"weight": gc.ones(3, 2), "bias": gc.zeros(3)}
    lin.load_state_dict(new)
    assert lin.weight is w and lin.weight.requires_grad and lin.weight.is_leaf
    np.testing.assert_array_equal(lin.weight.detach().numpy(), np.ones((3, 2)))
    lin.load_state_dict(new, assign=True)
    assert lin.weight is not w and isinstance(lin.weight, nn.Parameter)


def test_loaded_parameters_train_like_torch():
    """After load_state_dict the parameters are still leaves that accumulate .grad."""
    t = torch.nn.Linear(3, 2)
    g = nn.Linear(3, 2)
    copy_state(g, t)
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    for _ in range(2):
        t(torch.tensor(x)).pow(2).sum().backward()
        g(gc.tensor(x)).pow(2).sum().backward()
    np.testing.assert_allclose(g.weight.grad.numpy(), t.weight.grad.numpy(), rtol=1e-5)


def test_assignment_before_init_errors_match_torch():
    for lib, param in [(torch.nn, torch.nn.Parameter(torch.ones(1))),
                       (nn, nn.Parameter(gc.ones(1)))]:
        class Early(lib.Module):
            def __init__(self):
                self.w = param
                super().__init__()

        class EarlyModule(lib.Module):
            def __init__(self):
                self.sub = lib.Linear(1, 1)
                super().__init__()

        class EarlyBuffer(lib.Module):
            def __init__(self):
                self.register_buffer("b", None)

        with pytest.raises(AttributeError,
                           match=r"^cannot assign parameters before Module.__init__\(\) call$"):
            Early()
        with pytest.raises(AttributeError,
                           match=r"^cannot assign module before Module.__init__\(\) call$"):
            EarlyModule()
        with pytest.raises(AttributeError,
                           match=r"^cannot assign buffer before Module.__init__\(\) call$"):
            EarlyBuffer()


def test_attribute_registration_rules():
    m = nn.Linear(2, 2)
    with pytest.raises(TypeError, match="cannot assign 'graphc.Tensor' as parameter 'weight'"):
        m.weight = gc.zeros(2, 2)
    m.bias = None
    assert "bias" not in m.state_dict()
    m.extra = nn.Parameter(gc.zeros(1))
    assert [k for k, _ in m.named_parameters()] == ["weight", "extra"]
    del m.extra
    assert [k for k, _ in m.named_parameters()] == ["weight"]
    with pytest.raises(KeyError, match="attribute 'weight' already exists"):
        m.register_buffer("weight", gc.zeros(1))
    with pytest.raises(AttributeError, match="'Linear' object has no attribute 'nope'"):
        m.nope
    s = nn.Sequential(nn.Linear(1, 1))
    with pytest.raises(TypeError, match="cannot assign 'int' as child module '0'"):
        setattr(s, "0", 3)


def test_parameter_is_a_leaf_tensor():
    p = nn.Parameter(gc.randn(3, 2))
    assert isinstance(p, gc.Tensor) and isinstance(p, nn.Parameter)
    assert p.is_leaf and p.requires_grad
    assert repr(p).startswith("Parameter containing:\ntensor(")
    (p * 2).sum().backward()
    np.testing.assert_array_equal(p.grad.numpy(), np.full((3, 2), 2.0))
    with gc.no_grad():
        p.add_(1.0)                 # what an optimizer does
    assert isinstance(p, nn.Parameter) and p.is_leaf
    frozen = nn.Parameter(gc.ones(2), requires_grad=False)
    assert not frozen.requires_grad
    x = gc.ones(2, requires_grad=True)
    q = nn.Parameter(x * 3)         # built from a non-leaf: a new leaf
    assert q.is_leaf and q.requires_grad


def test_train_eval_apply_zero_grad():
    g = build(nn)
    assert g.training and all(m.training for m in g.modules())
    assert g.eval() is g and not any(m.training for m in g.modules())
    g.train()
    seen = []
    g.heads.apply(lambda m: seen.append(type(m).__name__))
    assert seen == ["Linear", "Linear", "ModuleDict"]
    lin = nn.Linear(2, 1)
    lin(gc.ones(1, 2)).sum().backward()
    lin.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(lin.weight.grad.numpy(), np.zeros((1, 2)))
    lin.zero_grad()
    assert lin.weight.grad is None
    lin.requires_grad_(False)
    assert not any(p.requires_grad for p in lin.parameters())


def test_to_device_and_dtype():
    m = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    assert m.to("cpu") is m and m.to(gc.device("cpu")) is m and m.cpu() is m
    with pytest.raises(RuntimeError, match="no GPU backend"):
        m.to("cuda")
    with pytest.raises(RuntimeError, match="no GPU backend"):
        m.cuda()
    w = m[0].weight
    m(gc.ones(4, 2)).sum().backward()
    assert m.to(gc.float64) is m
    assert m[0].weight is w and w.dtype is gc.float64 and w.is_leaf and w.requires_grad
    assert w.grad.dtype is gc.float64
    assert m[1].running_mean.dtype is gc.float64
    assert m[1].num_batches_tracked.dtype is gc.int64       # integer buffers untouched
    out = m(gc.ones(4, 2, dtype=gc.float64))
    assert out.dtype is gc.float64
    m.float()
    assert w.dtype is gc.float32
    with pytest.raises(TypeError, match="floating point"):
        m.to(gc.int64)


def test_containers():
    a, b, c = nn.Linear(2, 3), nn.ReLU(), nn.Linear(3, 1)
    s = nn.Sequential(a, b, c)
    assert len(s) == 3 and s[0] is a and s[-1] is c and list(s) == [a, b, c]
    sub = s[1:]
    assert isinstance(sub, nn.Sequential) and list(sub._modules) == ["1", "2"]
    x = gc.ones(4, 2)
    np.testing.assert_allclose(s(x).detach().numpy(), c(b(a(x))).detach().numpy())
    named = nn.Sequential(OrderedDict([("fc", a), ("act", b)]))
    assert list(named.state_dict()) == ["fc.weight", "fc.bias"]
    s.append(nn.Sigmoid())
    del s[1]
    assert list(s._modules) == ["0", "1", "2"] and s[1] is c
    s.insert(0, nn.Identity())
    assert isinstance(s[0], nn.Identity) and len(s) == 4
    ml = nn.ModuleList([a])
    ml.append(c)
    ml += [b]
    assert len(ml) == 3 and ml[-1] is b and list(ml[:2]) == [a, c]
    assert [k for k, _ in ml.named_parameters()] == ["0.weight", "0.bias", "1.weight",
                                                     "1.bias"]
    md = nn.ModuleDict({"x": a})
    md["y"] = c
    assert list(md.keys()) == ["x", "y"] and "y" in md and len(md) == 2
    assert md.pop("x") is a and list(md) == ["y"]



def test_sequential_pop_add_and_module_list_pop_like_torch():
    def run(lib):
        s = lib.Sequential(lib.ReLU(), lib.Tanh(), lib.Sigmoid())
        popped = s.pop(1)
        joined = s + lib.Sequential(lib.Identity())
        s += lib.Sequential(lib.ReLU())
        ml = lib.ModuleList([lib.ReLU(), lib.Tanh(), lib.Sigmoid()])
        ml_popped = ml.pop(0)
        with pytest.raises(ValueError, match="only objects of Sequential class"):
            s + lib.ModuleList([lib.ReLU()])
        return [type(popped).__name__, list(s._modules), [type(m).__name__ for m in s],
                type(joined).__name__, list(joined._modules),
                [type(m).__name__ for m in joined], type(ml_popped).__name__,
                list(ml._modules), [type(m).__name__ for m in ml]]
    assert run(nn) == run(torch.nn)


def test_batchnorm_state_without_num_batches_tracked_loads_like_torch():
    """A plain dict carries no version, so PyTorch treats it as a pre-version-2
    BatchNorm state and keeps the module's own counter when the key is missing (a
    converted checkpoint); a state_dict() that says version 2 must have it."""
    g = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    t = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    t(torch.randn(4, 2))
    plain = {k: v.numpy() for k, v in t.state_dict().items() if "num_batches" not in k}
    assert repr(g.load_state_dict(plain)) == "<All keys matched successfully>"
    for k, v in plain.items():
        np.testing.assert_array_equal(g.state_dict()[k].numpy(), v)
    assert int(g[1].num_batches_tracked.item()) == 0
    t_sd, g_sd = t.state_dict(), g.state_dict()
    assert dict(g_sd._metadata) == dict(t_sd._metadata)    # {"": 1, "0": 1, "1": 2}
    del t_sd["1.num_batches_tracked"], g_sd["1.num_batches_tracked"]
    with pytest.raises(RuntimeError, match='Missing key.*"1.num_batches_tracked"'):
        t.load_state_dict(t_sd)
    with pytest.raises(RuntimeError, match='Missing key.*"1.num_batches_tracked"'):
        g.load_state_dict(g_sd)

def test_shared_modules_and_parameters_are_listed_once():
    lin = nn.Linear(2, 2)
    s = nn.Sequential(lin, lin)
    assert len(list(s.parameters())) == 2
    ts = torch.nn.Sequential(*[torch.nn.Linear(2, 2)] * 2)
    assert list(s.state_dict()) == list(ts.state_dict())


def test_hooks():
    lin = nn.Linear(2, 2)
    seen = []
    h1 = lin.register_forward_pre_hook(lambda m, args: seen.append("pre"))
    h2 = lin.register_forward_hook(lambda m, args, out: out * 0)
    out = lin(gc.ones(1, 2))
    assert seen == ["pre"] and not out.detach().numpy().any()
    h1.remove()
    h2.remove()
    assert lin(gc.ones(1, 2)).detach().numpy().any() and seen == ["pre"]


def test_repr_matches_torch():
    for ctor in [lambda l: l.Linear(3, 4, bias=False),
                 lambda l: l.Sequential(l.Conv2d(3, 8, 3, stride=2, padding=1), l.ReLU(),
                                        l.Flatten(), l.Linear(8, 2)),
                 lambda l: l.LSTM(3, 4, num_layers=2, batch_first=True),
                 lambda l: l.Embedding(10, 3, padding_idx=0),
                 lambda l: l.LayerNorm(4), lambda l: l.Dropout(0.2),
                 lambda l: l.ModuleList([l.Tanh(), l.GELU()]),
                 lambda l: l.BatchNorm2d(3, momentum=None), lambda l: l.MultiheadAttention(4, 2),
                 lambda l: l.Conv1d(2, 3, 3, padding="same", padding_mode="circular"),
                 lambda l: l.ConvTranspose2d(3, 4, 3, stride=2, output_padding=1, groups=1),
                 lambda l: l.MaxPool2d(3, 2, 1), lambda l: l.AvgPool2d(2),
                 lambda l: l.AdaptiveAvgPool2d((2, 3)), lambda l: l.LeakyReLU(0.2),
                 lambda l: l.GRU(3, 4, bidirectional=True, dropout=0.5, num_layers=2)]:
        assert repr(ctor(nn)) == repr(ctor(torch.nn))


def test_deepcopy_gives_independent_parameters():
    m = nn.Linear(2, 2)
    m2 = copy.deepcopy(m)
    np.testing.assert_array_equal(m2.weight.detach().numpy(), m.weight.detach().numpy())
    m2(gc.ones(1, 2)).sum().backward()
    assert m.weight.grad is None and m2.weight.grad is not None


def test_module_without_forward():
    with pytest.raises(NotImplementedError, match='missing the required "forward"'):
        nn.Module()(1)


# ----------------------------------------------------------------------------- clip_grad_norm_

@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf"), 3.0])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm_matches_torch_and_stays_lazy(norm_type, max_norm):
    torch.manual_seed(0)
    t = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Linear(4, 2))
    g = nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2))
    copy_state(g, t)
    x = np.linspace(-2, 2, 15, dtype=np.float32).reshape(5, 3)
    t(torch.tensor(x)).pow(2).sum().backward()
    g(gc.tensor(x)).pow(2).sum().backward()
    for p in g.parameters():
        p.grad.numpy()
    before = gc.runtime.stats["realizations"]
    total = nn.utils.clip_grad_norm_(g.parameters(), max_norm, norm_type)
    assert gc.runtime.stats["realizations"] == before       # no realization needed
    want = torch.nn.utils.clip_grad_norm_(t.parameters(), max_norm, norm_type)
    np.testing.assert_allclose(total.numpy(), want.numpy(), rtol=1e-5)
    for (name, tp), gp in zip(t.named_parameters(), g.parameters()):
        np.testing.assert_allclose(gp.grad.numpy(), tp.grad.numpy(), rtol=1e-5, atol=1e-7,
                                   err_msg=name)


def test_clip_grad_value_and_nonfinite_error():
    p = nn.Parameter(gc.zeros(3))
    (p * gc.tensor([1.0, -5.0, 0.2])).sum().backward()
    nn.utils.clip_grad_value_([p], 0.5)
    np.testing.assert_allclose(p.grad.numpy(), [0.5, -0.5, 0.2], rtol=1e-6)
    (p * gc.tensor([float("inf"), 0.0, 0.0])).sum().backward()
    with pytest.raises(RuntimeError, match="non-finite"):
        nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)


def test_get_parameter_and_get_buffer_by_dotted_name_like_torch():
    tm = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.BatchNorm1d(3))
    gm = nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3))
    for target in ("0.weight", "1.bias"):
        assert tuple(gm.get_parameter(target).shape) == tuple(tm.get_parameter(target).shape)
    for target in ("1.running_mean", "1.num_batches_tracked"):
        assert tuple(gm.get_buffer(target).shape) == tuple(tm.get_buffer(target).shape)
    for fn in ("get_buffer", "get_parameter"):
        with pytest.raises(AttributeError):
            getattr(tm, fn)("1.nothing")
        with pytest.raises(AttributeError):
            getattr(gm, fn)("1.nothing")


def _param_containers(lib, pkg):
    """A model with a ParameterList and a ParameterDict, built by torch or graphc."""
    class Net(lib.Module):
        def __init__(self):
            super().__init__()
            rng = np.random.default_rng(3)
            arrays = [rng.standard_normal(s).astype(np.float32) for s in ((4, 3), (3,), (3, 2))]
            self.layers = lib.ParameterList([lib.Parameter(pkg.tensor(arrays[0]))])
            self.layers.append(pkg.tensor(arrays[1]))        # a plain tensor is wrapped
            self.heads = lib.ParameterDict({"b": lib.Parameter(pkg.tensor(arrays[2])),
                                            "a": pkg.tensor(arrays[1] * 2)})

        def forward(self, x):
            h = (x @ self.layers[0] + self.layers[-1]) * self.heads["a"]
            return h @ self.heads["b"]
    return Net()


def test_parameter_list_and_dict_like_torch():
    rng = np.random.default_rng(0)
    t, g = _param_containers(torch.nn, torch), _param_containers(nn, gc)
    # registration: keys "0", "1" and a plain dict inserted in sorted key order
    assert list(g.state_dict()) == list(t.state_dict()) == ["layers.0", "layers.1", "heads.a",
                                                            "heads.b"]
    assert all(isinstance(p, nn.Parameter) for p in g.parameters())
    assert len(g.layers) == 2 and len(g.heads) == 2 and "a" in g.heads
    assert repr(g.layers).replace("graphc", "torch") == repr(t.layers)
    compare_module(g, t, rng.standard_normal((5, 4)).astype(np.float32))
    # an optimizer sees them, and a step moves them like torch's
    for opt in (torch.optim.SGD(t.parameters(), lr=0.1), gc.optim.SGD(g.parameters(), lr=0.1)):
        opt.step()
    for name, tp in t.state_dict().items():
        np.testing.assert_allclose(g.state_dict()[name].numpy(), tp.numpy(), rtol=1e-6)
    # list and dict operations
    pl = nn.ParameterList()
    pl.extend([gc.ones(2), gc.zeros(3)])
    pl += [gc.ones(1)]
    assert len(pl) == 3 and tuple(pl[-1].shape) == (1,) and len(pl[1:]) == 2
    pl[0] = gc.zeros(4)
    assert tuple(pl[0].shape) == (4,) and isinstance(pl[0], nn.Parameter)
    with pytest.raises(IndexError):
        pl[3]
    with pytest.raises(TypeError, match="should be called with an iterable"):
        pl.extend(gc.ones(2))
    with pytest.raises(RuntimeError, match="should not be called"):
        pl(1)
    pd = nn.ParameterDict()
    pd["x"] = gc.ones(2)
    pd.update([("y", gc.zeros(1))])
    assert list(pd.keys()) == ["x", "y"] and pd.get("z") is None
    assert pd.pop("x") is not None and list(pd) == ["y"]
    assert list(pd.state_dict()) == ["y"]
    with pytest.raises(TypeError, match="not a string"):
        pd[1] = gc.ones(1)
    # load_state_dict round trip
    fresh = _param_containers(nn, gc)
    fresh.load_state_dict({k: v.detach().numpy() * 0 for k, v in t.state_dict().items()})
    assert all(not np.any(p.detach().numpy()) for p in fresh.parameters())
