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
    for n in (4, 4, 4, 5, 5, 5, 4):
        out = fn(gc.ones(n, 3))
        assert out.item() == pytest.approx(6.0 * n)
    assert fn.stats["traces"] == 2


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

    def recording(graph, backend_name=None):
        used.append(backend_name or "default")
        return compiled_for(graph, backend_name)
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
