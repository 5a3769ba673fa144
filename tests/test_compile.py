"""graphc.compile: a captured step equals the uncompiled step, replays without
recompiling when the lr changes, and retraces (with a logged reason) when a guard fails."""
import numpy as np
import pytest

import graphc as gc
from graphc import runtime
from graphc.compile import CompileError
from graphc.tensor import scalar_input


def _make_problem(seed=0):
    rs = np.random.RandomState(seed)
    w1 = rs.randn(12, 10).astype(np.float32) * 0.3
    w2 = rs.randn(10, 4).astype(np.float32) * 0.3
    x = rs.randn(16, 12).astype(np.float32)
    y = rs.randint(0, 4, 16)
    return w1, w2, x, y


def _step_factory(params, cfg):
    w1, w2 = params

    def step(x, y):
        for p in params:
            p.grad = None
        logits = (x @ w1).tanh() @ w2
        loss = -gc.log_softmax(logits, 1).gather(1, y.reshape(-1, 1)).mean()
        loss.backward()
        lr = scalar_input(cfg["lr"], source=lambda: cfg["lr"])
        with gc.no_grad():
            for p in params:
                p -= lr * p.grad
        return loss
    return step


def _run(compiled, steps=8):
    w1, w2, x, y = _make_problem()
    params = [gc.tensor(w1, requires_grad=True), gc.tensor(w2, requires_grad=True)]
    cfg = {"lr": 0.5}
    step = _step_factory(params, cfg)
    fn = gc.compile(step) if compiled else step
    xt, yt = gc.tensor(x), gc.tensor(y)
    losses = []
    for i in range(steps):
        cfg["lr"] = 0.5 / (1 + i)          # a scheduler changing the lr every step
        losses.append(fn(xt, yt).item())
    return losses, [p.detach().numpy() for p in params], fn


def test_compiled_step_matches_uncompiled():
    eager_losses, eager_params, _ = _run(False)
    comp_losses, comp_params, fn = _run(True)
    np.testing.assert_allclose(comp_losses, eager_losses, rtol=1e-6)
    for a, b in zip(comp_params, eager_params):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert fn.stats == {"traces": 1, "replays": 6, "eager_calls": 1}


def test_changing_lr_does_not_recompile():
    _run(True, steps=3)
    before = runtime.stats["compiles"]
    _, _, fn = _run(True, steps=10)
    # one program for the eager first call's realization at most, one for the trace
    assert runtime.stats["compiles"] - before <= 2
    assert fn.stats["replays"] == 8


def test_new_shape_retraces_and_old_shape_still_replays():
    w = gc.tensor(np.ones((3, 2), np.float32), requires_grad=True)
    fn = gc.compile(lambda x: (x @ w).sum())
    with gc.no_grad():   # with grad on, a result that requires grad runs lazily
        for n in (4, 4, 4, 5, 5, 5, 4):
            out = fn(gc.ones(n, 3))
            assert out.item() == pytest.approx(6.0 * n)
    assert fn.stats["traces"] == 2 and fn.stats["replays"] == 3


def test_dropout_like_randomness_is_fresh_on_every_replay():
    fn = gc.compile(lambda x: x * (gc.rand(x.shape) > 0.5))
    x = gc.ones(64)
    masks = [fn(x).numpy() for _ in range(4)]
    assert fn.stats["replays"] == 2
    assert not np.array_equal(masks[2], masks[3])


def test_reading_a_value_inside_the_step_is_a_clear_error():
    w = gc.tensor(np.ones(3, np.float32))
    fn = gc.compile(lambda x: (x * w).sum().item())
    fn(gc.ones(3))        # eager first call is fine
    with pytest.raises(CompileError, match="reads a tensor's value"):
        fn(gc.ones(3))


def test_guard_failure_is_logged(capfd, monkeypatch):
    monkeypatch.setenv("GRAPHC_LOG", "recompiles")
    p = gc.tensor(np.ones(3, np.float32), requires_grad=True)

    def step(x):
        loss = (p * x).sum()
        loss.backward()       # accumulates: the program depends on p.grad existing
        return loss

    fn = gc.compile(step)
    fn(gc.ones(3))
    fn(gc.ones(3))
    fn(gc.ones(3))
    np.testing.assert_allclose(p.grad.numpy(), [3, 3, 3])
    p.grad = None             # guard: .grad went from a tensor to None
    fn(gc.ones(3))
    np.testing.assert_allclose(p.grad.numpy(), [1, 1, 1])
    assert "retracing" in capfd.readouterr().err


def test_replayed_results_and_gradients_keep_their_traced_dtypes():
    """A bfloat16 value is held as a float32 array: the replay must type results and
    new gradients from the trace, not from the array."""
    w = gc.tensor(np.linspace(-1, 1, 6, dtype=np.float32), dtype=gc.bfloat16,
                  requires_grad=True)

    def step(x):
        loss = (w * x).sum()
        loss.backward()
        return (x * 2).to(gc.bfloat16), loss

    compiled = gc.compile(step)
    x = gc.tensor(np.ones(6, np.float32), dtype=gc.bfloat16)
    for _ in range(3):
        w.grad = None
        doubled, loss = compiled(x)
    assert compiled.stats["replays"] >= 1
    assert doubled.dtype == gc.bfloat16 and loss.dtype == gc.bfloat16
    assert w.grad.dtype == gc.bfloat16
    np.testing.assert_array_equal(doubled.float().numpy(), np.full(6, 2, np.float32))
    np.testing.assert_array_equal(w.grad.float().numpy(), np.ones(6, np.float32))


def test_warmup_call_is_interpreted_and_only_the_step_is_compiled(monkeypatch):
    """The first call runs once (it creates optimizer state), so on the CPU the
    reference interpreter realizes it; LLVM compiles only the captured step."""
    monkeypatch.delenv("GRAPHC_BACKEND", raising=False)     # the CPU default: LLVM
    used = []
    compiled_for = runtime.compiled_for

    def recording(graph, backend_name=None, **kwargs):
        used.append(backend_name or "default")
        return compiled_for(graph, backend_name, **kwargs)
    monkeypatch.setattr(runtime, "compiled_for", recording)
    w1, w2, x, y = _make_problem(1)
    params = [gc.tensor(w1, requires_grad=True), gc.tensor(w2, requires_grad=True)]
    step = gc.compile(_step_factory(params, {"lr": 0.1}))
    xt, yt = gc.tensor(x), gc.tensor(y)
    step(xt, yt)
    assert used and set(used) == {"interp"}
    used.clear()
    step(xt, yt)                         # the trace: compiled for the default backend
    assert used == ["default"]
    used.clear()
    step(xt, yt).item()                  # a replay: nothing compiled or realized lazily
    assert used == []


# ----------------------------------------------------------------- modes, results, args
torch = pytest.importorskip("torch")


def _bn_models(seed=0):
    """A torch and a graphc Linear -> BatchNorm1d with the same weights: batch norm gives
    different numbers in train and eval mode, deterministically."""
    torch.manual_seed(seed)
    t = torch.nn.Sequential(torch.nn.Linear(5, 4), torch.nn.BatchNorm1d(4))
    g = gc.nn.Sequential(gc.nn.Linear(5, 4), gc.nn.BatchNorm1d(4))
    g.load_state_dict({k: gc.tensor(v.detach().numpy()) for k, v in t.state_dict().items()})
    x = np.random.default_rng(seed).standard_normal((6, 5)).astype(np.float32)
    return t, g, x


def test_a_compiled_function_follows_train_eval_switches_of_the_modules_it_calls(
        capfd, monkeypatch):
    """The step is a function (not the module): model.train()/eval() outside it must
    still pick the right program, as the eager model would. (Under no_grad: a forward
    whose results need autograd runs lazily, see the test below.)"""
    monkeypatch.setenv("GRAPHC_LOG", "recompiles")
    t, g, x = _bn_models()
    fn = gc.compile(lambda x: g(x))
    for mode in ["eval"] * 3 + ["train"] * 3 + ["eval"] * 2 + ["train"] * 2:
        getattr(t, mode)()
        getattr(g, mode)()
        want = t(torch.tensor(x)).detach().numpy()
        with gc.no_grad():
            got = fn(gc.tensor(x))
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    # running statistics were updated by the train-mode calls, as in torch
    np.testing.assert_allclose(g[1].running_mean.numpy(), t[1].running_mean.numpy(),
                               rtol=1e-5, atol=1e-6)
    assert fn.stats["traces"] == 2          # one program per mode, each traced once
    assert "is in training mode, the step was traced in eval mode" in capfd.readouterr().err


def test_changing_a_layer_setting_retraces_and_matches_torch(capfd, monkeypatch):
    """BatchNorm's momentum and Dropout's p are Python numbers the trace bakes in:
    assigning one must retrace (and say why), not replay the old constant."""
    monkeypatch.setenv("GRAPHC_LOG", "recompiles")
    t, g, x = _bn_models()
    fn = gc.compile(lambda x: g(x))
    for step in range(6):
        if step == 3:
            t[1].momentum = g[1].momentum = 0.7
        t(torch.tensor(x))
        with gc.no_grad():
            fn(gc.tensor(x))
    np.testing.assert_allclose(g[1].running_mean.numpy(), t[1].running_mean.detach().numpy(),
                               rtol=1e-5, atol=1e-6)
    assert "BatchNorm1d.momentum (a plain attribute the step read as a constant) was " \
           "assigned" in capfd.readouterr().err

    drop = gc.nn.Dropout(0.5)
    fd = gc.compile(lambda x: drop(x))
    ones = gc.ones(20000)
    for _ in range(3):
        fd(ones)
    drop.p = 0.1
    out = [fd(ones).numpy() for _ in range(3)][-1]
    assert abs((out == 0).mean() - 0.1) < 0.02
    np.testing.assert_allclose(out.max(), 1 / 0.9, rtol=1e-6)
    traces = fd.stats["traces"]
    fd(ones)                                # nothing changed since: a replay
    assert fd.stats["traces"] == traces


def test_train_and_eval_calls_inside_compiled_steps_match_torch():
    """train_step calls model.train() and eval_step model.eval(): a replay does not run
    Python, yet the mode each step leaves behind must be PyTorch's."""
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 6)
    results = {}
    for lib in (torch, gc):
        t, g, x = _bn_models(1)
        model = t if lib is torch else g
        opt = lib.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        xt, yt = lib.tensor(x), lib.tensor(y)

        def train_step(x, y):
            model.train()
            opt.zero_grad()
            loss = lib.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            return loss

        def eval_step(x):
            model.eval()
            return model(x)

        if lib is gc:
            train_step, eval_step = gc.compile(train_step), gc.compile(eval_step)
        log = []
        for _ in range(4):
            train_step(xt, yt)
            train_step(xt, yt)
            log.append(model.training)
            with lib.no_grad():
                log.append(eval_step(xt).detach().numpy().copy())
            log.append(model.training)
        log += [v.detach().numpy() for v in model.state_dict().values()]
        results[lib] = log
        if lib is gc:
            assert train_step.stats["replays"] >= 6 and eval_step.stats["replays"] >= 2
    for a, b in zip(results[gc], results[torch]):
        if isinstance(b, bool):
            assert a is b
        else:
            np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_namedtuple_and_nested_results_keep_their_types():
    import collections
    Out = collections.namedtuple("Out", "double total")
    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    fn = gc.compile(lambda x: {"o": Out(x * 2, [x.sum(), (x.max(), 3)])})
    for _ in range(3):
        got = fn(gc.tensor(x))
    want = (lambda x: {"o": Out(x * 2, [x.sum(), (x.max(), 3)])})(torch.tensor(x))
    assert fn.stats["replays"] == 1
    assert type(got["o"]) is Out
    np.testing.assert_array_equal(got["o"].double.numpy(), want["o"].double.numpy())
    assert got["o"].total[0].item() == want["o"].total[0].item()
    assert got["o"].total[1][0].item() == want["o"].total[1][0].item()
    assert got["o"].total[1][1] == 3


def test_numpy_array_arguments_select_programs_by_value_not_by_repr():
    """repr() elides the middle of a large array: two arrays that differ only there must
    not share a program that baked in the first one's values."""
    fn = gc.compile(lambda a: gc.tensor(a).sum())
    arrays = [np.zeros(5000, np.float32) for _ in range(3)]
    arrays[2][2500] = 5.0
    assert repr(arrays[1]) == repr(arrays[2])
    for a in arrays:
        assert fn(a).item() == torch.tensor(a).sum().item()


@pytest.mark.parametrize("change", ["unfreeze", "add_param_group"])
def test_unfreezing_a_layer_or_adding_a_param_group_mid_training_matches_torch(change):
    """Fine-tuning: after 3 steps the first layer is unfrozen (requires_grad_ and
    add_param_group) or, already computing gradients, added to the optimizer. The
    compiled step must retrace (and create the new Adam state eagerly), not replay the
    program that left the layer alone."""
    rng = np.random.default_rng(4)
    x, y = rng.standard_normal((8, 4)).astype(np.float32), rng.standard_normal((8, 2))
    torch.manual_seed(4)
    ref = torch.nn.Sequential(torch.nn.Linear(4, 6), torch.nn.Tanh(), torch.nn.Linear(6, 2))
    init = {k: v.detach().numpy().copy() for k, v in ref.state_dict().items()}
    results = {}
    for lib in (torch, gc):
        m = lib.nn.Sequential(lib.nn.Linear(4, 6), lib.nn.Tanh(), lib.nn.Linear(6, 2))
        m.load_state_dict({k: lib.tensor(v) for k, v in init.items()})
        if change == "unfreeze":
            for p in m[0].parameters():
                p.requires_grad_(False)
        opt = lib.optim.Adam(m[2].parameters(), lr=0.01)
        xt, yt = lib.tensor(x), lib.tensor(y.astype(np.float32))

        def step(x, y):
            opt.zero_grad()
            loss = ((m(x) - y) ** 2).mean()
            loss.backward()
            opt.step()
            return loss

        fn = gc.compile(step) if lib is gc else step
        for i in range(9):
            fn(xt, yt)
            if i == 3:
                for p in m[0].parameters():
                    p.requires_grad_(True)
                opt.add_param_group({"params": list(m[0].parameters()), "lr": 0.05})
        results[lib] = [p.detach().numpy() for p in m.parameters()]
        if lib is gc:
            assert fn.stats["replays"] >= 4
    for a, b in zip(results[gc], results[torch]):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_tracer_keeps_every_object_whose_id_it_keys():
    """Tracer tables are keyed by id(); an object dropped mid-trace (the old .grad node
    that zero_grad() discards) would hand its id to a node created later, which the
    binding then took for it: an input of the wrong shape at replay, or wrong values
    where the shapes agree (2-3 in 20 fresh models crashed before the tracer kept them)."""
    import gc as pygc
    import weakref
    from graphc.compile import Tracer
    p = gc.tensor(np.ones(3, np.float32), requires_grad=True)
    (p * 2).sum().backward()
    tracer = Tracer()
    tracer.on_grad(p)
    old_grad_node = weakref.ref(p.grad._node)
    q = gc.tensor(np.ones(2, np.float32))
    tracer.on_read(q)
    read_node = weakref.ref(q._node)
    p.grad = None                                   # what zero_grad(set_to_none) does
    q.add_(1)                                       # q's old value node is dropped
    pygc.collect()
    assert old_grad_node() is not None and id(old_grad_node()) in tracer.old_grads
    assert read_node() is not None and id(read_node()) in tracer.readers


def test_fresh_models_compile_and_train_like_their_eager_runs():
    """The pattern that hit the id reuse: a new model and optimizer per trial, each
    step compiled; every trial must give the eager run's losses."""
    rng = np.random.default_rng(0)
    x = gc.tensor(rng.standard_normal((32, 8)).astype(np.float32))
    y = gc.tensor(rng.integers(0, 4, 32))
    for trial in range(12):
        losses = {}
        for compiled in (False, True):
            gc.manual_seed(trial)
            model = gc.nn.Sequential(gc.nn.Linear(8, 32), gc.nn.BatchNorm1d(32), gc.nn.ReLU(),
                                     gc.nn.Linear(32, 4))
            opt = gc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)

            def step(x, y):
                opt.zero_grad()
                loss = gc.nn.functional.cross_entropy(model(x), y)
                loss.backward()
                opt.step()
                return loss
            run = gc.compile(step) if compiled else step
            losses[compiled] = [run(x, y).item() for _ in range(4)]
        np.testing.assert_allclose(losses[True], losses[False], rtol=1e-5)


def test_changing_the_default_dtype_selects_another_program():
    """set_default_dtype decides the dtype of every float a step creates (zeros, full,
    Python scalars): a program traced under float32 must not replay under float64."""
    fn = gc.compile(lambda x: x + gc.ones(3))
    x32 = gc.ones(3)
    for _ in range(3):
        assert fn(x32).dtype is gc.float32
    old = gc.get_default_dtype()
    try:
        gc.set_default_dtype(gc.float64)
        x64 = gc.ones(3)
        for _ in range(3):
            assert fn(x64).dtype is gc.float64
        for _ in range(2):   # a float32 input with float64 creations: promotes, as torch
            assert fn(x32).dtype is gc.float64
    finally:
        gc.set_default_dtype(old)


# ------------------------------------------------- found by a sweep of real training scripts

def test_compiled_module_with_backward_outside_keeps_the_gradient_path():
    """graphc.compile(model) with loss.backward() outside: a replay's values carry no
    autograd history, so with an extra differentiable term (an L2 penalty) the data
    loss's gradient was silently dropped. Such a forward runs lazily, with a warning;
    under no_grad it still replays."""
    def run(compiled):
        gc.manual_seed(0)
        m = gc.nn.Linear(4, 1)
        f = gc.compile(m) if compiled else m
        opt = gc.optim.SGD(m.parameters(), lr=0.1)
        x, y = gc.randn(8, 4), gc.randn(8, 1)
        losses = []
        for _ in range(4):
            opt.zero_grad()
            loss = ((f(x) - y) ** 2).mean() + 1e-3 * sum((p ** 2).sum() for p in m.parameters())
            loss.backward()
            opt.step()
            losses.append(loss.item())
        return losses, f, x
    eager, _, _ = run(False)
    with pytest.warns(UserWarning, match="runs lazily"):
        compiled, f, x = run(True)
    np.testing.assert_allclose(compiled, eager, rtol=1e-6)
    with gc.no_grad():
        for _ in range(3):
            f(x)
    assert f.stats["replays"] >= 1


def test_gradient_accumulation_steps_replay_with_and_without_existing_grads():
    """Micro-steps alternate between .grad None (after zero_grad) and present: each state
    gets a program instead of evicting the other's."""
    gc.manual_seed(0)
    m = gc.nn.Linear(4, 2)
    opt = gc.optim.SGD(m.parameters(), lr=0.1)

    def micro(x, y):
        loss = ((m(x) - y) ** 2).mean() / 2
        loss.backward()
        return loss
    step = gc.compile(micro)
    x = gc.randn(8, 4)
    for _ in range(10):
        step(x, gc.randn(8, 2))
        step(x, gc.randn(8, 2))
        opt.step()
        opt.zero_grad()
    assert step.stats["traces"] == 2 and step.stats["replays"] == 16


def test_requires_grad_toggled_inside_a_step_replays():
    """A GAN generator step freezes the discriminator and unfreezes it at the end: the
    guard compares each flag with its value when the step began, so every call after
    the trace replays (it used to retrace every call, growing memory)."""
    gc.manual_seed(0)
    D, G = gc.nn.Linear(4, 1), gc.nn.Linear(2, 4)
    opt = gc.optim.Adam(G.parameters(), lr=1e-3)

    def g_step(z):
        for p in D.parameters():
            p.requires_grad_(False)
        opt.zero_grad()
        loss = -D(G(z)).mean()
        loss.backward()
        opt.step()
        for p in D.parameters():
            p.requires_grad_(True)
        return loss
    step = gc.compile(g_step)
    for _ in range(10):
        step(gc.randn(8, 2))
    assert step.stats == {"traces": 1, "replays": 8, "eager_calls": 1}
    assert all(p.requires_grad for p in D.parameters()) and D.weight.grad is None
