"""graphc.optim against torch.optim: same initial parameters, same data, same number of
steps; parameters must agree to 1e-5 (float32) / 1e-10 (float64).

The problem is a tiny linear least-squares model (a weight matrix, a bias, a 0-d scale)
plus one parameter the loss never uses, so it never gets a grad and must be skipped.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphc as gc
from graphc import runtime

RNG = np.random.default_rng(1234)
W0 = RNG.standard_normal((3, 4))
B0 = RNG.standard_normal(4)
S0 = np.array(0.7)
U0 = RNG.standard_normal(2)
X = RNG.standard_normal((6, 3))
Y = RNG.standard_normal((6, 4))

TOL = {"float32": 1e-5, "float64": 1e-10}


def make_params(lib, dtype):
    """[W, b, s, unused] as leaf tensors of `lib` (torch or graphc)."""
    npd = np.float32 if dtype == "float32" else np.float64
    return [lib.tensor(a.astype(npd), requires_grad=True) for a in (W0, B0, S0, U0)]


def loss_of(lib, params, dtype):
    npd = np.float32 if dtype == "float32" else np.float64
    w, b, s, _ = params
    x, y = lib.tensor(X.astype(npd)), lib.tensor(Y.astype(npd))
    return (((x @ w) * s + b - y) ** 2).mean()


def train(lib, opt_cls, kwargs, dtype, steps=6, groups=None, params=None, opt=None):
    params = params if params is not None else make_params(lib, dtype)
    if opt is None:
        spec = params if groups is None else groups(params)
        opt = opt_cls(spec, **kwargs)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_of(lib, params, dtype)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return params, opt, losses


def values(params):
    return [p.detach().numpy().copy() for p in params]


def assert_params_close(gc_params, torch_params, dtype):
    for g, t in zip(values(gc_params), values(torch_params)):
        assert g.dtype == t.dtype
        np.testing.assert_allclose(g, t, rtol=0, atol=TOL[dtype])


CONFIGS = [
    ("SGD", dict(lr=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("SGD", dict(lr=0.05, weight_decay=0.2, maximize=True)),
    ("Adam", dict(lr=0.02)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.95), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.02, amsgrad=True, maximize=True)),
    ("Adam", dict(lr=0.02, weight_decay=0.1, decoupled_weight_decay=True)),
    ("AdamW", dict(lr=0.02)),
    ("AdamW", dict(lr=0.02, betas=(0.85, 0.99), weight_decay=0.3, amsgrad=True)),
    ("AdamW", dict(lr=0.02, maximize=True, eps=1e-4)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01, momentum=0.7)),
    ("RMSprop", dict(lr=0.01, centered=True)),
    ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5, maximize=True)),
    ("Adagrad", dict(lr=0.1)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05, weight_decay=0.1)),
    ("Adagrad", dict(lr=0.1, initial_accumulator_value=0.3, eps=1e-6, maximize=True)),
    ("NAdam", dict(lr=0.02)),
    ("NAdam", dict(lr=0.02, betas=(0.8, 0.95), weight_decay=0.1, momentum_decay=0.01)),
    ("NAdam", dict(lr=0.02, weight_decay=0.1, decoupled_weight_decay=True, maximize=True)),
    # beta2 = 0.9: rho_t passes 5 at step 3, so both RAdam updates run within 6 steps
    ("RAdam", dict(lr=0.02, betas=(0.9, 0.9))),
    ("RAdam", dict(lr=0.02, betas=(0.85, 0.9), eps=1e-6, weight_decay=0.1, maximize=True)),
    ("RAdam", dict(lr=0.02, betas=(0.9, 0.9), weight_decay=0.1, decoupled_weight_decay=True)),
    ("RAdam", dict(lr=0.02)),
    ("Adamax", dict(lr=0.02)),
    ("Adamax", dict(lr=0.02, betas=(0.8, 0.95), eps=1e-4, weight_decay=0.1, maximize=True)),
]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name,kwargs", CONFIGS, ids=[f"{n}-{i}" for i, (n, _) in
                                                       enumerate(CONFIGS)])
def test_matches_torch(name, kwargs, dtype):
    tp, topt, tl = train(torch, getattr(torch.optim, name), kwargs, dtype)
    gp, gopt, gl = train(gc, getattr(gc.optim, name), kwargs, dtype)
    assert_params_close(gp, tp, dtype)
    np.testing.assert_allclose(gl, tl, rtol=1e-5 if dtype == "float32" else 1e-12)
    # the parameter without a grad was skipped and got no state (Adagrad creates state
    # for every parameter in its constructor, like PyTorch)
    np.testing.assert_array_equal(values(gp)[3], U0.astype(values(gp)[3].dtype))
    assert (gp[3] in gopt.state) == (tp[3] in topt.state)
    assert all(p.is_leaf and p.requires_grad for p in gp)


@pytest.mark.parametrize("name,kwargs", [
    ("SGD", dict(lr=0.05, momentum=0.9)), ("Adam", dict(lr=0.02, amsgrad=True)),
    ("AdamW", dict(lr=0.02)), ("RMSprop", dict(lr=0.01, centered=True, momentum=0.5)),
    ("Adagrad", dict(lr=0.1, lr_decay=0.05)), ("RAdam", dict(lr=0.02, betas=(0.9, 0.9))),
    ("Adamax", dict(lr=0.02))])
def test_state_dict_structure_and_round_trip(name, kwargs):
    dtype = "float64"
    tp, topt, _ = train(torch, getattr(torch.optim, name), kwargs, dtype, steps=3)
    gp, gopt, _ = train(gc, getattr(gc.optim, name), kwargs, dtype, steps=3)
    tsd, gsd = topt.state_dict(), gopt.state_dict()
    # PyTorch's layout: int keys, same per-parameter entries, same group keys and indices
    assert sorted(gsd["state"]) == sorted(tsd["state"])
    for k, tstate in tsd["state"].items():
        assert sorted(gsd["state"][k]) == sorted(tstate)
        for key, tv in tstate.items():
            gv = gsd["state"][k][key]
            np.testing.assert_allclose(np.asarray(gv.numpy(), dtype=np.float64),
                                       tv.numpy().astype(np.float64), rtol=0, atol=1e-10)
            if key == "step":
                assert gv.dtype == gc.float32 and gv.ndim == 0
    assert [sorted(g) for g in gsd["param_groups"]] == [sorted(g) for g in tsd["param_groups"]]
    assert [g["params"] for g in gsd["param_groups"]] == [g["params"] for g in tsd["param_groups"]]

    # save after 3 steps, load into a fresh optimizer over copies of the parameters,
    # continue 3 steps: same as 6 uninterrupted steps
    copies = [gc.tensor(p.detach().numpy(), requires_grad=True) for p in gp]
    fresh = getattr(gc.optim, name)(copies, **kwargs)
    fresh.load_state_dict(gsd)
    train(gc, None, None, dtype, steps=3, params=copies, opt=fresh)
    train(gc, None, None, dtype, steps=3, params=gp, opt=gopt)  # the original continues too
    straight, _, _ = train(gc, getattr(gc.optim, name), kwargs, dtype, steps=6)
    for a, b, c in zip(values(copies), values(gp), values(straight)):
        np.testing.assert_allclose(a, c, rtol=0, atol=1e-12)
        np.testing.assert_allclose(b, c, rtol=0, atol=1e-12)
    # the loaded state is a copy: stepping one optimizer never moves the other's state
    assert gsd["state"][0]["step" if name != "SGD" else "momentum_buffer"] is not \
        fresh.state[copies[0]].get("step" if name != "SGD" else "momentum_buffer")


def two_groups(params):
    w, b, s, u = params
    return [{"params": [w, u], "lr": 0.03}, {"params": [b, s], "weight_decay": 0.1}]


@pytest.mark.parametrize("name,kwargs", [
    ("SGD", dict(lr=0.05, momentum=0.9)), ("Adam", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01)), ("Adagrad", dict(lr=0.1)), ("NAdam", dict(lr=0.01)),
    ("RAdam", dict(lr=0.01, betas=(0.9, 0.9))), ("Adamax", dict(lr=0.01))])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_param_groups_with_own_options(name, kwargs, dtype):
    tp, topt, _ = train(torch, getattr(torch.optim, name), kwargs, dtype, groups=two_groups)
    gp, gopt, _ = train(gc, getattr(gc.optim, name), kwargs, dtype, groups=two_groups)
    assert_params_close(gp, tp, dtype)
    assert [g["lr"] for g in gopt.param_groups] == [g["lr"] for g in topt.param_groups]
    assert [g["weight_decay"] for g in gopt.param_groups] == \
        [g["weight_decay"] for g in topt.param_groups]


def test_add_param_group_midway():
    results = {}
    for lib in (torch, gc):
        params = make_params(lib, "float64")
        opt = lib.optim.Adam(params[:1], lr=0.02)
        train(lib, None, None, "float64", steps=2, params=params, opt=opt)
        opt.add_param_group({"params": params[1:3], "lr": 0.05, "betas": (0.5, 0.9)})
        train(lib, None, None, "float64", steps=3, params=params, opt=opt)
        results[lib.__name__] = (values(params), opt.param_groups[1]["betas"])
    for g, t in zip(results["graphc"][0], results["torch"][0]):
        np.testing.assert_allclose(g, t, rtol=0, atol=1e-10)
    assert results["graphc"][1] == results["torch"][1]


def test_zero_grad_set_to_none_false_zeroes_in_place():
    for lib in (torch, gc):
        params = make_params(lib, "float64")
        opt = lib.optim.SGD(params, lr=0.1)
        loss_of(lib, params, "float64").backward()
        grad_obj = params[0].grad
        opt.zero_grad(set_to_none=False)
        assert params[0].grad is grad_obj
        assert np.all(params[0].grad.numpy() == 0)
        assert params[3].grad is None
        opt.zero_grad()
        assert params[0].grad is None
    # after zeroing in place, a backward accumulates into zeros: same step as torch
    out = {}
    for lib in (torch, gc):
        params = make_params(lib, "float64")
        opt = lib.optim.SGD(params, lr=0.1, momentum=0.5)
        for _ in range(3):
            opt.zero_grad(set_to_none=False)
            loss_of(lib, params, "float64").backward()
            opt.step()
        out[lib.__name__] = values(params)
    for g, t in zip(out["graphc"], out["torch"]):
        np.testing.assert_allclose(g, t, rtol=0, atol=1e-10)


def test_step_with_closure():
    out = {}
    for lib in (torch, gc):
        params = make_params(lib, "float64")
        opt = lib.optim.RMSprop(params, lr=0.01, momentum=0.3)
        calls = []

        def closure():
            opt.zero_grad()
            loss = loss_of(lib, params, "float64")
            loss.backward()
            calls.append(1)
            return loss

        losses = [float(opt.step(closure).detach()) for _ in range(4)]
        assert len(calls) == 4
        out[lib.__name__] = (values(params), losses)
    np.testing.assert_allclose(out["graphc"][1], out["torch"][1], rtol=1e-12)
    for g, t in zip(out["graphc"][0], out["torch"][0]):
        np.testing.assert_allclose(g, t, rtol=0, atol=1e-10)


def test_scheduled_values_reach_the_graph_through_sources():
    """Hyper-parameters are runtime scalar inputs whose `source` reads param_groups: a
    program replayed without Python sees the scheduler's current lr and beta1."""
    params = make_params(gc, "float32")
    opt = gc.optim.Adam(params, lr=0.01, betas=(0.9, 0.99))
    loss_of(gc, params, "float32").backward()
    opt.step()
    from graphc.ir.graph import toposort
    sources = {}
    for n in toposort([params[0]._node]):
        if n.op == "input" and getattr(n, "source", None) is not None:
            sources.setdefault(float(n.data), n.source)
    assert sources[0.01]() == 0.01
    opt.param_groups[0]["lr"] = 0.5
    opt.param_groups[0]["betas"] = (0.3, 0.99)
    assert sources[0.01]() == 0.5
    assert sources[0.9]() == 0.3
    assert sources[0.99]() == 0.99


def test_lr_change_does_not_recompile():
    params = make_params(gc, "float32")
    opt = gc.optim.SGD(params, lr=0.1, momentum=0.9)
    counts = []
    for i in range(8):
        opt.param_groups[0]["lr"] = 0.1 / (i + 1)
        opt.param_groups[0]["momentum"] = 0.9 - 0.05 * i
        opt.zero_grad()
        loss = loss_of(gc, params, "float32")
        loss.backward()
        opt.step()
        loss.item()
        counts.append(runtime.stats["compiles"])
    assert counts[2:] == [counts[2]] * 6, counts


def test_errors():
    w = gc.tensor([1.0, 2.0], requires_grad=True)
    with pytest.raises(ValueError, match="Invalid learning rate"):
        gc.optim.SGD([w], lr=-1.0)
    with pytest.raises(ValueError, match="Nesterov momentum requires"):
        gc.optim.SGD([w], lr=0.1, nesterov=True)
    with pytest.raises(ValueError, match="beta parameter at index 0"):
        gc.optim.Adam([w], betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="empty parameter list"):
        gc.optim.Adam([])
    with pytest.raises(ValueError, match="non-leaf"):
        gc.optim.SGD([w * 2], lr=0.1)
    with pytest.raises(ValueError, match="more than one parameter group"):
        gc.optim.SGD([{"params": [w]}, {"params": [w]}], lr=0.1)
    with pytest.raises(TypeError, match="ordered collections"):
        gc.optim.SGD([{"params": {w}}], lr=0.1)
    with pytest.raises(TypeError, match="lr as a Tensor"):
        gc.optim.SGD([w], lr=gc.tensor(0.1))
    opt = gc.optim.SGD([w], lr=0.1)
    with pytest.raises(ValueError, match="different number of parameter groups"):
        opt.load_state_dict({"state": {}, "param_groups": []})
    opt.param_groups[0]["lr"] = "fast"
    (w * w).sum().backward()
    with pytest.raises(TypeError, match="must be a real number"):
        opt.step()


def test_named_parameters_and_repr():
    w = gc.tensor([1.0], requires_grad=True)
    b = gc.tensor([2.0], requires_grad=True)
    opt = gc.optim.SGD([("w", w), ("b", b)], lr=0.1)
    assert opt.param_groups[0]["param_names"] == ["w", "b"]
    assert opt.state_dict()["param_groups"][0]["param_names"] == ["w", "b"]
    text = repr(opt)
    assert text.startswith("SGD (") and "lr: 0.1" in text and "Parameter Group 0" in text


@pytest.mark.parametrize("name", ["NAdam", "RAdam", "Adamax"])
def test_new_optimizers_lr_and_betas_changes_do_not_recompile(name):
    """Scheduled lr / beta1 reach the compiled step as runtime inputs: after warm-up the
    compile count stays put, and the parameters still follow torch step for step."""
    params = make_params(gc, "float64")
    tparams = make_params(torch, "float64")
    opt = getattr(gc.optim, name)(params, lr=0.02, betas=(0.9, 0.9))
    topt = getattr(torch.optim, name)(tparams, lr=0.02, betas=(0.9, 0.9))
    counts = []
    for i in range(8):
        for o in (opt, topt):
            o.param_groups[0]["lr"] = 0.02 / (i + 1)
            o.param_groups[0]["betas"] = (0.9 - 0.02 * i, 0.9)
            o.zero_grad()
        loss_of(gc, params, "float64").backward()
        loss_of(torch, tparams, "float64").backward()
        opt.step()
        topt.step()
        params[0].detach().numpy()   # realize the step
        counts.append(runtime.stats["compiles"])
    assert counts[2:] == [counts[2]] * 6, counts
    assert_params_close(params, tparams, "float64")


def test_new_optimizer_errors_and_defaults():
    w = gc.tensor([1.0, 2.0], requires_grad=True)
    for name in ("NAdam", "RAdam", "Adamax"):
        with pytest.raises(ValueError, match="Invalid learning rate"):
            getattr(gc.optim, name)([w], lr=-1.0)
        with pytest.raises(ValueError, match="beta parameter at index 1"):
            getattr(gc.optim, name)([w], betas=(0.9, 1.0))
        tw = torch.tensor([1.0, 2.0], requires_grad=True)
        gd = getattr(gc.optim, name)([w]).defaults
        td = getattr(torch.optim, name)([tw]).defaults
        assert {k: v for k, v in gd.items()} == {k: v for k, v in td.items()}
    with pytest.raises(ValueError, match="Invalid momentum_decay"):
        gc.optim.NAdam([w], momentum_decay=-0.1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nadam_state_dict_resume_like_torch(dtype):
    """NAdam's mu_product is a 0-d float32 tensor; loading a state dict casts it to the
    parameter's dtype (PyTorch's load policy for every non-step state), so a resumed run
    is compared with torch's resumed run, not with an uninterrupted one."""
    out = {}
    for lib in (torch, gc):
        params, opt, _ = train(lib, lib.optim.NAdam, dict(lr=0.02, weight_decay=0.1), dtype,
                               steps=3)
        sd = opt.state_dict()
        assert sorted(sd["state"][0]) == ["exp_avg", "exp_avg_sq", "mu_product", "step"]
        assert sd["state"][0]["mu_product"].dtype == lib.float32
        copies = [lib.tensor(p.detach().numpy(), requires_grad=True) for p in params]
        fresh = lib.optim.NAdam(copies, lr=0.02, weight_decay=0.1)
        fresh.load_state_dict(sd)
        out[lib.__name__] = (float(sd["state"][0]["mu_product"].item()),
                             str(fresh.state[copies[0]]["mu_product"].dtype).split(".")[-1])
        train(lib, None, None, dtype, steps=3, params=copies, opt=fresh)
        out[lib.__name__ + "-params"] = copies
    assert out["graphc"][1] == out["torch"][1]
    np.testing.assert_allclose(out["graphc"][0], out["torch"][0], rtol=1e-7)
    assert_params_close(out["graphc-params"], out["torch-params"], dtype)
