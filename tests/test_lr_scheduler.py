"""graphc.optim.lr_scheduler against torch.optim.lr_scheduler: the same construction on an
optimizer of each library, stepped the same number of times, must give the same lr (and
momentum / beta1) sequence, bit for bit. And changing the lr never recompiles.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

import graphc as gc
from graphc import runtime


def make_optimizer(lib, kind="SGD", groups=1):
    """An optimizer over dummy parameters (one per group, group g has lr 0.1 * (g + 1))."""
    params = [lib.tensor([1.0, 2.0], requires_grad=True) for _ in range(groups)]
    spec = [{"params": [p], "lr": 0.1 * (g + 1)} for g, p in enumerate(params)]
    if kind == "SGD":
        return lib.optim.SGD(spec, lr=0.1, momentum=0.9)
    return lib.optim.Adam(spec, lr=0.1, betas=(0.9, 0.999))


def record(lib, build, steps, kind="SGD", groups=1, metrics=None):
    """(lrs, momenta, last_epochs) after construction and after each step."""
    opt = make_optimizer(lib, kind, groups)
    sched = build(lib.optim.lr_scheduler, opt)

    def snapshot():
        moms = [g["betas"][0] if "betas" in g else g["momentum"] for g in opt.param_groups]
        return (list(sched.get_last_lr()), [g["lr"] for g in opt.param_groups], moms,
                getattr(sched, "last_epoch", None))

    out = [snapshot()]
    for i in range(steps):
        opt.step()  # no grads: nothing to update, but it keeps the step order PyTorch wants
        if metrics is None:
            sched.step()
        else:
            sched.step(metrics[i])
        out.append(snapshot())
    return out


def assert_same_sequence(build, steps=30, kind="SGD", groups=1, metrics=None):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # neither library may warn on correct use
        expected = record(torch, build, steps, kind, groups, metrics)
        actual = record(gc, build, steps, kind, groups, metrics)
    assert actual == expected


SCHEDULERS = {
    "StepLR": lambda m, o: m.StepLR(o, step_size=4, gamma=0.5),
    "StepLR-default-gamma": lambda m, o: m.StepLR(o, step_size=1),
    "MultiStepLR": lambda m, o: m.MultiStepLR(o, milestones=[3, 7, 7, 20], gamma=0.3),
    "ExponentialLR": lambda m, o: m.ExponentialLR(o, gamma=0.93),
    "LinearLR": lambda m, o: m.LinearLR(o, start_factor=0.25, end_factor=0.9, total_iters=9),
    "LinearLR-default": lambda m, o: m.LinearLR(o),
    "LinearLR-decay": lambda m, o: m.LinearLR(o, start_factor=1.0, end_factor=0.1,
                                              total_iters=12),
    "CosineAnnealingLR": lambda m, o: m.CosineAnnealingLR(o, T_max=10, eta_min=0.001),
    "CosineAnnealingLR-short": lambda m, o: m.CosineAnnealingLR(o, T_max=3),
    "LambdaLR": lambda m, o: m.LambdaLR(o, lr_lambda=lambda e: 0.95 ** e + 0.01 * (e % 3)),
    "MultiplicativeLR": lambda m, o: m.MultiplicativeLR(o, lr_lambda=lambda e: 0.97),
    "ConstantLR": lambda m, o: m.ConstantLR(o, factor=0.5, total_iters=6),
    "PolynomialLR": lambda m, o: m.PolynomialLR(o, total_iters=12, power=2.0),
    "OneCycleLR-cos": lambda m, o: m.OneCycleLR(o, max_lr=1.0, total_steps=31),
    "OneCycleLR-linear": lambda m, o: m.OneCycleLR(o, max_lr=0.5, total_steps=31,
                                                   anneal_strategy="linear", pct_start=0.4),
    "OneCycleLR-three-phase": lambda m, o: m.OneCycleLR(o, max_lr=0.8, epochs=3,
                                                        steps_per_epoch=11, three_phase=True,
                                                        div_factor=10.0, final_div_factor=100.0),
    "OneCycleLR-no-momentum": lambda m, o: m.OneCycleLR(o, max_lr=0.3, total_steps=40,
                                                        cycle_momentum=False),
    "SequentialLR": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=5), m.ExponentialLR(o, gamma=0.9)],
        milestones=[5]),
    "SequentialLR-three": lambda m, o: m.SequentialLR(
        o, [m.ConstantLR(o, factor=0.3, total_iters=4), m.CosineAnnealingLR(o, T_max=8),
            m.StepLR(o, step_size=3, gamma=0.5)], milestones=[4, 15]),
    "CosineAnnealingWarmRestarts": lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=7),
    "CosineAnnealingWarmRestarts-mult": lambda m, o: m.CosineAnnealingWarmRestarts(
        o, T_0=3, T_mult=2, eta_min=0.01),
    "CyclicLR": lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=0.1, step_size_up=4),
    "CyclicLR-triangular2": lambda m, o: m.CyclicLR(o, base_lr=0.02, max_lr=0.1,
                                                    step_size_up=3, step_size_down=5,
                                                    mode="triangular2",
                                                    base_momentum=0.7, max_momentum=0.95),
    "CyclicLR-exp-range": lambda m, o: m.CyclicLR(o, base_lr=0.001, max_lr=0.2,
                                                  step_size_up=5, mode="exp_range",
                                                  gamma=0.97, cycle_momentum=False),
    "CyclicLR-scale-fn": lambda m, o: m.CyclicLR(o, base_lr=0.01, max_lr=0.05, step_size_up=2,
                                                 scale_fn=lambda x: 1 / (1 + x),
                                                 scale_mode="iterations"),
    "SequentialLR-warm-restarts": lambda m, o: m.SequentialLR(
        o, [m.LinearLR(o, start_factor=0.1, total_iters=4),
            m.CosineAnnealingWarmRestarts(o, T_0=5, T_mult=2)], milestones=[4]),
    "ChainedScheduler": lambda m, o: m.ChainedScheduler(
        [m.ExponentialLR(o, gamma=0.95), m.MultiStepLR(o, milestones=[4, 9], gamma=0.5)]),
}


@pytest.mark.parametrize("kind", ["SGD", "Adam"])
@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_lr_sequence_matches_torch(name, kind):
    assert_same_sequence(SCHEDULERS[name], steps=30, kind=kind, groups=2)


def test_per_group_lambdas_and_max_lrs():
    assert_same_sequence(lambda m, o: m.LambdaLR(o, [lambda e: 1 / (e + 1), lambda e: 0.9 ** e]),
                         groups=2)
    assert_same_sequence(lambda m, o: m.OneCycleLR(o, max_lr=[0.5, 2.0], total_steps=30,
                                                   base_momentum=[0.8, 0.7],
                                                   max_momentum=[0.9, 0.95]),
                         steps=29, groups=2, kind="Adam")


METRICS = [1.0, 0.9, 0.95, 0.95, 0.96, 0.97, 0.89, 0.9, 0.9, 0.9, 0.91, 0.92, 0.93, 0.5, 0.5,
           0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6, 0.6]


@pytest.mark.parametrize("kwargs", [
    dict(patience=2),
    dict(mode="max", patience=1, factor=0.5),
    dict(patience=1, threshold=0.05, threshold_mode="abs"),
    dict(mode="max", patience=0, threshold=0.01, threshold_mode="abs", factor=0.7),
    dict(patience=0, cooldown=3, factor=0.5),
    dict(patience=0, factor=0.2, min_lr=0.004),
    dict(patience=0, factor=0.5, min_lr=[0.01, 0.05]),
    dict(patience=0, factor=0.9, eps=0.02),
])
def test_reduce_lr_on_plateau_matches_torch(kwargs):
    def build(m, o):
        return m.ReduceLROnPlateau(o, **kwargs)

    assert_same_sequence(build, steps=len(METRICS), groups=2, metrics=METRICS)
    # the bookkeeping matches too
    t = build(torch.optim.lr_scheduler, make_optimizer(torch, groups=2))
    g = build(gc.optim.lr_scheduler, make_optimizer(gc, groups=2))
    for v in METRICS:
        t.step(v)
        # a 0-d tensor metric is read with float(), like torch
        g.step(gc.tensor(v, dtype=gc.float64))
        assert (g.best, g.num_bad_epochs, g.cooldown_counter) == \
            (t.best, t.num_bad_epochs, t.cooldown_counter)


@pytest.mark.parametrize("name", ["StepLR", "CosineAnnealingLR", "OneCycleLR-three-phase",
                                  "SequentialLR-three", "LinearLR"])
def test_state_dict_round_trip(name):
    build = SCHEDULERS[name]
    straight = record(gc, build, 25, kind="Adam")
    opt = make_optimizer(gc, "Adam")
    sched = build(gc.optim.lr_scheduler, opt)
    for _ in range(10):
        opt.step()
        sched.step()
    saved_sched, saved_opt = sched.state_dict(), opt.state_dict()
    assert "optimizer" not in saved_sched
    t_sched = build(torch.optim.lr_scheduler, make_optimizer(torch, "Adam"))
    assert set(saved_sched) == set(t_sched.state_dict())

    opt2 = make_optimizer(gc, "Adam")
    sched2 = build(gc.optim.lr_scheduler, opt2)
    sched2.load_state_dict(saved_sched)
    opt2.load_state_dict(saved_opt)  # after the scheduler, as PyTorch recommends
    assert sched2.last_epoch == 10
    resumed = []
    for _ in range(15):
        opt2.step()
        sched2.step()
        resumed.append(list(sched2.get_last_lr()))
    assert resumed == [s[0] for s in straight[11:]]


def test_closed_form_step_with_epoch_warns_and_matches_torch():
    out = {}
    for lib in (torch, gc):
        opt = make_optimizer(lib)
        sched = lib.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)
        lrs = []
        for epoch in (4, 9, 2):
            opt.step()
            with pytest.warns(UserWarning, match="epoch parameter"):
                sched.step(epoch)
            lrs.append(sched.get_last_lr()[0])
        out[lib.__name__] = lrs
    assert out["graphc"] == out["torch"]


def test_warns_when_scheduler_steps_before_optimizer():
    opt = make_optimizer(gc)
    sched = gc.optim.lr_scheduler.StepLR(opt, step_size=2)
    with pytest.warns(UserWarning, match="before `optimizer.step\\(\\)`"):
        sched.step()


def test_one_cycle_refuses_steps_past_total():
    for lib in (torch, gc):
        opt = make_optimizer(lib)
        sched = lib.optim.lr_scheduler.OneCycleLR(opt, max_lr=1.0, total_steps=5)
        for _ in range(5):
            opt.step()
            sched.step()
        opt.step()
        with pytest.raises(ValueError, match="Tried to step 6 times"):
            sched.step()


def test_constructor_errors():
    opt = make_optimizer(gc)
    m = gc.optim.lr_scheduler
    with pytest.raises(TypeError, match="is not an Optimizer"):
        m.StepLR(object(), step_size=1)
    with pytest.raises(KeyError, match="initial_lr"):
        m.StepLR(opt, step_size=1, last_epoch=3)
    with pytest.raises(ValueError, match="Factor should be < 1.0"):
        m.ReduceLROnPlateau(opt, factor=1.5)
    with pytest.raises(ValueError, match="mode max2 is unknown"):
        m.ReduceLROnPlateau(opt, mode="max2")
    with pytest.raises(ValueError, match="total_steps OR"):
        m.OneCycleLR(opt, max_lr=1.0)
    with pytest.raises(ValueError, match="number of milestone points"):
        m.SequentialLR(opt, [m.StepLR(opt, 2), m.StepLR(opt, 3)], milestones=[])


@pytest.mark.parametrize("make", [
    lambda ps: (gc.optim.Adam(ps, lr=0.01),
                lambda o: gc.optim.lr_scheduler.OneCycleLR(o, max_lr=0.05, total_steps=20)),
    lambda ps: (gc.optim.SGD(ps, lr=0.05, momentum=0.9),
                lambda o: gc.optim.lr_scheduler.OneCycleLR(o, max_lr=0.1, total_steps=20)),
    lambda ps: (gc.optim.RMSprop(ps, lr=0.01, centered=True),
                lambda o: gc.optim.lr_scheduler.CosineAnnealingLR(o, T_max=6)),
    lambda ps: (gc.optim.AdamW(ps, lr=0.01, amsgrad=True),
                lambda o: gc.optim.lr_scheduler.StepLR(o, step_size=2, gamma=0.7)),
    lambda ps: (gc.optim.Adagrad(ps, lr=0.1, lr_decay=0.01),
                lambda o: gc.optim.lr_scheduler.ExponentialLR(o, gamma=0.9)),
    lambda ps: (gc.optim.NAdam(ps, lr=0.01),
                lambda o: gc.optim.lr_scheduler.CyclicLR(o, 0.001, 0.02, step_size_up=3)),
    lambda ps: (gc.optim.RAdam(ps, lr=0.01, betas=(0.9, 0.9)),
                lambda o: gc.optim.lr_scheduler.CosineAnnealingWarmRestarts(o, T_0=4, T_mult=2)),
    lambda ps: (gc.optim.Adamax(ps, lr=0.01),
                lambda o: gc.optim.lr_scheduler.CyclicLR(o, 0.001, 0.02, step_size_up=4,
                                                         mode="triangular2")),
])
def test_scheduled_training_loop_compiles_only_at_the_start(make):
    rng = np.random.default_rng(0)
    w = gc.tensor(rng.standard_normal((4, 3)).astype(np.float32), requires_grad=True)
    b = gc.tensor(np.zeros(3, np.float32), requires_grad=True)
    x = gc.tensor(rng.standard_normal((8, 4)).astype(np.float32))
    y = gc.tensor(rng.standard_normal((8, 3)).astype(np.float32))
    opt, make_sched = make([w, b])
    sched = make_sched(opt)
    compiles, lrs, losses = [], [], []
    for _ in range(20):
        opt.zero_grad()
        loss = ((x @ w + b - y) ** 2).mean()
        loss.backward()
        opt.step()
        sched.step()
        losses.append(loss.item())
        lrs.append(opt.param_groups[0]["lr"])
        compiles.append(runtime.stats["compiles"])
    assert len(set(lrs)) > 5  # the lr really changed
    assert compiles[3:] == [compiles[2]] * 17, compiles
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("name", list(SCHEDULERS))
def test_state_dict_survives_graphc_save(name, tmp_path):
    """Scheduler and optimizer state go through graphc.save / graphc.load and resume."""
    build = SCHEDULERS[name]
    straight = record(gc, build, 20, kind="Adam")
    opt = make_optimizer(gc, "Adam")
    sched = build(gc.optim.lr_scheduler, opt)
    for _ in range(8):
        opt.step()
        sched.step()
    path = str(tmp_path / "ckpt.pt")
    gc.save({"sched": sched.state_dict(), "opt": opt.state_dict()}, path)
    ckpt = gc.load(path)
    opt2 = make_optimizer(gc, "Adam")
    sched2 = build(gc.optim.lr_scheduler, opt2)
    sched2.load_state_dict(ckpt["sched"])
    opt2.load_state_dict(ckpt["opt"])
    resumed = []
    for _ in range(12):
        opt2.step()
        sched2.step()
        resumed.append(list(sched2.get_last_lr()))
    assert resumed == [s[0] for s in straight[9:]]


@pytest.mark.parametrize("opt_name", ["Adam", "SGD", "RMSprop"])
def test_compiled_step_sees_scheduled_values(opt_name):
    """graphc.compile replays the step without running Python: the lr (and momentum /
    beta1) that OneCycleLR writes into param_groups must still reach every replay."""
    rng = np.random.default_rng(3)
    w0 = rng.standard_normal((4, 3)).astype(np.float32)
    x = rng.standard_normal((8, 4)).astype(np.float32)
    y = rng.standard_normal((8, 3)).astype(np.float32)

    def run(compiled):
        w = gc.tensor(w0, requires_grad=True)
        extra = {"momentum": 0.9} if opt_name in ("SGD", "RMSprop") else {}
        opt = getattr(gc.optim, opt_name)([w], lr=0.01, **extra)
        sched = gc.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.05, total_steps=12)

        def step(xb, yb):
            opt.zero_grad()
            loss = ((xb @ w - yb) ** 2).mean()
            loss.backward()
            opt.step()
            return loss

        fn = gc.compile(step) if compiled else step
        losses = []
        for _ in range(10):
            losses.append(fn(gc.tensor(x), gc.tensor(y)).item())
            sched.step()
        return losses, w.detach().numpy()

    eager_losses, eager_w = run(False)
    compiled_losses, compiled_w = run(True)
    np.testing.assert_allclose(compiled_losses, eager_losses, rtol=1e-6)
    np.testing.assert_allclose(compiled_w, eager_w, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("opt_name,kwargs", [("SGD", dict(momentum=0.9)), ("Adam", {}),
                                             ("AdamW", dict(amsgrad=True))])
def test_compiled_step_with_a_warmup_from_zero_traces_once_and_matches_torch(opt_name,
                                                                             kwargs):
    """LambdaLR warm-up from lr = 0: the lr going from zero to non-zero is a value change
    (a runtime input), not a change of the update's structure; no retrace."""
    results, fn = _compiled_runs_with_scheduler(
        2, lambda lib, w: getattr(lib.optim, opt_name)([w], lr=0.05, **kwargs),
        lambda lib, opt: lib.optim.lr_scheduler.LambdaLR(opt, lambda e: min(1.0, e / 4)),
        lambda opt: opt.param_groups[0]["lr"])
    assert fn.stats == {"traces": 1, "replays": 8, "eager_calls": 1}
    assert results[gc][1] == results[torch][1]
    np.testing.assert_allclose(results[gc][0], results[torch][0], rtol=1e-5, atol=1e-6)


def _compiled_runs_with_scheduler(seed, make_opt, make_sched, record, steps=10):
    """({lib: (final weights, recorded values per step)}, graphc's compiled step): the
    same least-squares problem trained by torch eagerly and by a graphc.compile'd step,
    the scheduler stepped after each step."""
    rng = np.random.default_rng(seed)
    w0, x, y = (rng.standard_normal(s).astype(np.float32) for s in ((4, 3), (8, 4), (8, 3)))
    results = {}
    for lib in (torch, gc):
        w = lib.tensor(w0.copy(), requires_grad=True)
        opt = make_opt(lib, w)
        sched = make_sched(lib, opt)
        xt, yt = lib.tensor(x), lib.tensor(y)

        def step(x, y):
            opt.zero_grad()
            loss = ((x @ w - y) ** 2).mean()
            loss.backward()
            opt.step()
            return loss

        fn = gc.compile(step) if lib is gc else step
        seen = []
        for _ in range(steps):
            fn(xt, yt)
            sched.step()
            seen.append(record(opt))
        results[lib] = (w.detach().numpy(), seen)
    return results, fn


def test_cyclic_lr_per_group_values_match_torch():
    assert_same_sequence(lambda m, o: m.CyclicLR(o, base_lr=[0.01, 0.02], max_lr=[0.1, 0.3],
                                                 step_size_up=3, mode="exp_range", gamma=0.9,
                                                 base_momentum=[0.7, 0.8],
                                                 max_momentum=[0.9, 0.95]),
                         groups=2, kind="Adam")


def test_warm_restarts_fractional_epochs_match_torch():
    """step(epoch) with fractional epochs (the per-batch idiom of SGDR), interleaved with
    plain step(), for T_mult 1 and 2."""
    for kw in (dict(T_0=4), dict(T_0=3, T_mult=2, eta_min=0.001)):
        out = {}
        for lib in (torch, gc):
            opt = make_optimizer(lib, groups=2)
            sched = lib.optim.lr_scheduler.CosineAnnealingWarmRestarts(opt, **kw)
            lrs = []
            for epoch in (0.25, 0.5, 1.75, 3.0, 5.5, 9.2, 2.0, None, None, 20.0, None):
                opt.step()
                with warnings.catch_warnings():
                    warnings.simplefilter("error")
                    sched.step(epoch)
                lrs.append((sched.get_last_lr(), sched.T_cur, sched.T_i, sched.last_epoch))
            out[lib.__name__] = lrs
        assert out["graphc"] == out["torch"]
    with pytest.raises(ValueError, match="Expected positive integer T_0"):
        gc.optim.lr_scheduler.CosineAnnealingWarmRestarts(make_optimizer(gc), T_0=0)
    with pytest.raises(ValueError, match="Expected integer T_mult >= 1"):
        gc.optim.lr_scheduler.CosineAnnealingWarmRestarts(make_optimizer(gc), T_0=2, T_mult=0)
    with pytest.raises(ValueError, match="Expected non-negative epoch"):
        gc.optim.lr_scheduler.CosineAnnealingWarmRestarts(make_optimizer(gc), T_0=2).step(-1)


def test_cyclic_lr_errors_and_state_dict_keys():
    m = gc.optim.lr_scheduler
    with pytest.raises(ValueError, match="mode is invalid and scale_fn is None"):
        m.CyclicLR(make_optimizer(gc), 0.01, 0.1, mode="sawtooth")
    w = gc.tensor([1.0], requires_grad=True)
    with pytest.raises(ValueError, match="optimizer must support momentum or beta1"):
        m.CyclicLR(gc.optim.Adagrad([w]), 0.01, 0.1)
    with pytest.raises(ValueError, match="base_lr must have the same length"):
        m.CyclicLR(make_optimizer(gc, groups=2), [0.01], 0.1)
    g = m.CyclicLR(make_optimizer(gc, "Adam"), 0.01, 0.1, mode="exp_range")
    t = torch.optim.lr_scheduler.CyclicLR(make_optimizer(torch, "Adam"), 0.01, 0.1,
                                          mode="exp_range")
    assert set(g.state_dict()) == set(t.state_dict())


@pytest.mark.parametrize("opt_name,sched", [
    ("NAdam", lambda m, o: m.CyclicLR(o, 0.002, 0.02, step_size_up=3)),
    ("RAdam", lambda m, o: m.CosineAnnealingWarmRestarts(o, T_0=3, T_mult=2)),
    ("Adamax", lambda m, o: m.CyclicLR(o, 0.002, 0.02, step_size_up=2, mode="triangular2"))])
def test_compiled_new_optimizers_with_new_schedulers_trace_once_and_match_torch(opt_name,
                                                                                sched):
    """A graphc.compile'd step with NAdam / RAdam / Adamax under a scheduler that moves
    lr (and beta1) every step: one trace, the same parameters as torch's eager run."""
    results, fn = _compiled_runs_with_scheduler(
        5, lambda lib, w: getattr(lib.optim, opt_name)([w], lr=0.01, betas=(0.9, 0.9)),
        lambda lib, opt: sched(lib.optim.lr_scheduler, opt),
        lambda opt: (opt.param_groups[0]["lr"], opt.param_groups[0]["betas"]))
    assert fn.stats["traces"] == 1, fn.stats
    assert results[gc][1] == results[torch][1]
    np.testing.assert_allclose(results[gc][0], results[torch][0], rtol=1e-5, atol=1e-6)
