"""PyTorch's checks on data values (one_hot's class range, binary_cross_entropy's [0, 1],
multinomial's weights, bernoulli's probabilities): PyTorch raises when the op runs, and
so does graphc, when the graph runs (the IR `check` op): a RuntimeError with PyTorch's
message, naming the line of user code that made the op, on every backend, lazily and
in a compiled step; never a silently wrong value."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

import graphc as gc
import graphc.nn.functional as F

BACKENDS = ["llvm", "interp"]
nan, inf = float("nan"), float("inf")

# (name, the call on graphc's or torch's module pair, the arguments as numpy arrays,
# the start of graphc's message: PyTorch's, where its kernels agree on one)
ONE_HOT_NEGATIVE = "Class values must be non-negative."
ONE_HOT_LARGE = "Class values must be smaller than num_classes."
BAD_WEIGHT = "probability tensor contains either `inf`, `nan` or element < 0"
ZERO_ROW = "invalid multinomial distribution (sum of probabilities <= 0)"
CASES = [
    ("one_hot negative", lambda m, f, x: f.one_hot(x, 3), [np.array([0, -1, 2])],
     ONE_HOT_NEGATIVE),
    ("one_hot too large", lambda m, f, x: f.one_hot(x, 3), [np.array([[0, 3], [1, 2]])],
     ONE_HOT_LARGE),
    ("bce input above 1", lambda m, f, x, y: f.binary_cross_entropy(x, y),
     [np.float32([0.5, 1.5]), np.float32([0, 1])],
     "all elements of input should be between 0 and 1"),
    ("bce input nan", lambda m, f, x, y: f.binary_cross_entropy(x, y, reduction="none"),
     [np.float32([nan, 0.5]), np.float32([0, 1])],
     "all elements of input should be between 0 and 1"),
    ("bce target negative", lambda m, f, x, y: f.binary_cross_entropy(x, y),
     [np.float32([0.5, 0.5]), np.float32([0, -1])],
     "all elements of target should be between 0 and 1"),
    # PyTorch's multinomial words these differently on its 1-d, 2-d and replacement
    # paths; graphc gives one message per condition
    ("multinomial negative weight", lambda m, f, p: m.multinomial(p, 1),
     [np.float32([0.5, -0.1, 0.6])], BAD_WEIGHT),
    ("multinomial inf weight", lambda m, f, p: m.multinomial(p, 2, replacement=True),
     [np.float32([[0.5, 0.1], [inf, 1.0]])], BAD_WEIGHT),
    ("multinomial all zero row", lambda m, f, p: m.multinomial(p, 1),
     [np.float32([[0.5, 0.1], [0, 0]])], ZERO_ROW),
    ("multinomial without replacement", lambda m, f, p: m.multinomial(p, 2),
     [np.float32([[0.5, nan, 0.2]])], BAD_WEIGHT),
    ("bernoulli probabilities", lambda m, f, p: m.bernoulli(p), [np.float32([0.5, 1.5])],
     "Expected p_in >= 0 && p_in <= 1 to be true, but got false."),
]


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name,call,arrays,want", CASES, ids=[c[0] for c in CASES])
def test_raises_pytorchs_error_at_the_users_line(name, call, arrays, want, backend,
                                                 monkeypatch):
    with pytest.raises(RuntimeError):
        call(torch, torch.nn.functional, *[torch.from_numpy(a) for a in arrays])
    monkeypatch.setenv("GRAPHC_BACKEND", backend)
    out = call(gc, F, *[gc.from_numpy(a) for a in arrays])
    with pytest.raises(RuntimeError) as e:
        out.numpy()                                 # the graph runs here
    assert str(e.value).startswith(want), (str(e.value), want)
    assert re.search(r"\(at .*test_value_checks\.py:\d+\)$", str(e.value)), str(e.value)


@pytest.mark.parametrize("backend", BACKENDS)
def test_valid_values_pass_and_a_failure_leaves_other_values_intact(backend, monkeypatch):
    monkeypatch.setenv("GRAPHC_BACKEND", backend)
    good = gc.tensor([0, 2, 1])
    kept = good * 10                            # pending alongside the failing one_hot
    bad = F.one_hot(gc.tensor([0, 5]), 3)
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        bad.tolist()
    assert kept.tolist() == [0, 20, 10]
    assert F.one_hot(good, 3).tolist() == torch.nn.functional.one_hot(
        torch.tensor([0, 2, 1]), 3).tolist()


def test_gradients_flow_through_the_checked_values():
    """The check is the identity for autodiff: binary_cross_entropy's gradient is
    PyTorch's."""
    x = np.float32([[0.2, 0.7], [0.99, 0.01]])
    y = np.float32([[0, 1], [1, 0]])
    gx = gc.tensor(x, requires_grad=True)
    F.binary_cross_entropy(gx, gc.tensor(y)).backward()
    tx = torch.tensor(x, requires_grad=True)
    torch.nn.functional.binary_cross_entropy(tx, torch.tensor(y)).backward()
    np.testing.assert_allclose(gx.grad.numpy(), tx.grad.numpy(), rtol=1e-5)


def test_a_compiled_step_raises_on_the_bad_batch_and_trains_on_the_next():
    """graphc.compile replays the check: the bad batch raises, the program stays, and
    the next good batch trains as the uncompiled step would."""
    gc.manual_seed(0)
    model = gc.nn.Sequential(gc.nn.Linear(3, 1), gc.nn.Sigmoid())
    opt = gc.optim.SGD(model.parameters(), lr=0.1)

    @gc.compile
    def step(x, y):
        opt.zero_grad()
        loss = F.binary_cross_entropy(model(x).reshape(-1), y)
        loss.backward()
        opt.step()
        return loss

    x = gc.from_numpy(np.random.default_rng(0).standard_normal((4, 3)).astype(np.float32))
    step(x, gc.tensor([0.0, 1.0, 1.0, 0.0]))
    step(x, gc.tensor([0.0, 1.0, 1.0, 0.0]))
    before = [p.detach().numpy().copy() for p in model.parameters()]
    with pytest.raises(RuntimeError, match="all elements of target should be between 0 and 1"):
        step(x, gc.tensor([0.0, 2.0, 1.0, 0.0])).item()
    loss = step(x, gc.tensor([0.0, 1.0, 1.0, 0.0])).item()
    assert np.isfinite(loss)
    after = [p.detach().numpy() for p in model.parameters()]
    assert any(not np.array_equal(a, b) for a, b in zip(after, before))


def test_a_failing_pending_value_does_not_fail_a_compiled_step():
    """graphc.compile realizes every pending tensor before it captures: one that fails
    (an unread one_hot of a bad class) stays pending, and raises where it is read."""
    bad = F.one_hot(gc.tensor([7]), 3)
    w = gc.ones(2, requires_grad=True)

    @gc.compile
    def step(x):
        loss = (w * x).sum()
        loss.backward()
        with gc.no_grad():
            w.sub_(0.5 * w.grad)
            w.grad = None
        return loss

    for _ in range(3):
        step(gc.tensor([1.0, 2.0]))
    assert w.tolist() == [-0.5, -2.0]
    with pytest.raises(RuntimeError, match="smaller than num_classes"):
        bad.tolist()


@pytest.mark.parametrize("backend", BACKENDS)
def test_an_index_out_of_range_names_the_op_and_the_users_line(backend, monkeypatch):
    monkeypatch.setenv("GRAPHC_BACKEND", backend)
    loss = F.cross_entropy(gc.zeros(2, 3), gc.tensor([0, 3]))
    with pytest.raises(IndexError, match=r"gather over a dim of size 3 \(valid indices: "
                                         r"0\.\.2\) at .*test_value_checks\.py:\d+"):
        loss.item()
