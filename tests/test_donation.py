"""passes/donation.py and graphc.compile's in-place state updates.

Legality on hand-built plans (which pairs are accepted, how stages are reordered), then
graphs on the LLVM backend with donation against the interpreter (outputs stored over
their inputs, same values), then compiled training steps: parameters updated in place,
the same numbers as the step run lazily, and values a user holds (a detached tensor, a
numpy array, a pending lazy expression) left as they were without donation.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import graphc as gc
from graphc.backends import interp, kernel_ir as K
from graphc.backends import llvm as L
from graphc.ir import dtypes as dt
from graphc.benchsuite.workloads.nn_training import train_step
from graphc.passes.donation import donate_inputs

from conftest import tensor_graph

pytestmark = pytest.mark.usefixtures("private_cache")

N = 64
i = K.Var("i", N)
AT_I = (K.lin(i),)


def buf(name, kind):
    return K.Buffer(name, (N,), dt.float32, kind)


def load(b, index=AT_I):
    return K.Load(b, index)


def add(*args):
    return K.Compute("add", tuple(args), dt.float32)


def store(b, value):
    return K.Store(b, AT_I, (), value)


def plan(kernels, inputs, outputs):
    return SimpleNamespace(kernels=kernels, input_buffers=inputs, output_buffers=outputs)


def test_update_read_only_at_its_own_index_is_stored_over_its_input():
    p, g, new = buf("p", "input"), buf("g", "input"), buf("new", "output")
    kern = K.Kernel("k", (i,), [store(new, add(load(p), load(g)))])
    pl = plan([kern], [p, g], [new])
    assert donate_inputs(pl, [(0, 0)]) == {0: 0}
    assert kern.stages[0].buffer is p and pl.output_buffers == [p]


def test_stages_reordered_so_the_old_value_is_read_before_it_is_overwritten():
    # momentum: buf' = buf + g; p' = p + buf + g (both read the old buf)
    p, b, g = buf("p", "input"), buf("b", "input"), buf("g", "input")
    new_b, new_p = buf("new_b", "output"), buf("new_p", "output")
    kern = K.Kernel("k", (i,), [store(new_b, add(load(b), load(g))),
                                store(new_p, add(load(p), load(b), load(g)))])
    pl = plan([kern], [p, b, g], [new_b, new_p])
    assert donate_inputs(pl, [(1, 0), (0, 1)]) == {1: 0, 0: 1}
    assert [st.buffer.name for st in kern.stages] == ["p", "b"]


def test_two_stores_each_over_what_the_other_reads_accept_one():
    a, b = buf("a", "input"), buf("b", "input")
    new_a, new_b = buf("new_a", "output"), buf("new_b", "output")
    kern = K.Kernel("k", (i,), [store(new_a, load(b)), store(new_b, load(a))])
    pl = plan([kern], [a, b], [new_a, new_b])
    assert donate_inputs(pl, [(0, 0), (1, 1)]) == {0: 0}
    assert [st.buffer.name for st in kern.stages] == ["new_b", "a"]


@pytest.mark.parametrize("case", ["read later", "other index", "reduction", "accumulate",
                                  "output read", "input returned", "shape",
                                  "stored again per point", "holds a piece"])
def test_refused(case):
    p, new = buf("p", "input"), buf("new", "output")
    kernels = [K.Kernel("w", (i,), [store(new, add(load(p), load(p)))])]
    outputs = [new]
    if case == "read later":
        later = buf("later", "output")
        kernels.append(K.Kernel("r", (i,), [store(later, load(p))]))
        outputs.append(later)
    elif case == "other index":
        flipped = (K.lin(i) * -1 + (N - 1),)
        kernels[0].stages[0].value = add(load(p), load(p, flipped))
    elif case == "reduction":
        j = K.Var("j", N)
        kernels[0] = K.Kernel("w", (i,), [K.Reduce("s", "sum", (j,), load(p, (K.lin(j),)),
                                                   dt.float32),
                                           store(new, add(load(p), K.AccRef("s", dt.float32)))])
    elif case == "accumulate":
        kernels[0].stages[0].accumulate = "sum"
    elif case == "output read":
        after = buf("after", "output")
        kernels.append(K.Kernel("r", (i,), [store(after, load(new))]))
        outputs.append(after)
    elif case == "input returned":
        outputs.append(p)
    elif case == "shape":
        new.shape = (N // 2, 2)
    elif case == "stored again per point":
        j = K.Var("j", 2)
        kernels[0] = K.Kernel("w", (i, j), [store(new, add(load(p), load(p)))])
    elif case == "holds a piece":
        piece = K.Buffer("piece", (N // 2,), dt.float32, "temp", within=(new, 0))
        kernels.insert(0, K.Kernel("w0", (K.Var("h", N // 2),),
                                   [K.Store(piece, (K.lin(K.Var("h", N // 2)),), (),
                                            K.Const(1.0, dt.float32))]))
    pl = plan(kernels, [p], outputs)
    assert donate_inputs(pl, [(0, 0)]) == {}
    writer = next(k for k in kernels if k.name == "w")
    assert writer.stages[-1].buffer is new


def test_a_gemm_never_writes_over_its_operand():
    a = K.Buffer("a", (8, 8), dt.float32, "input")
    out = K.Buffer("out", (8, 8), dt.float32, "output")
    view = K.StridedView(a, 0, (8, 1), (8, 8))
    kern = K.MatmulKernel("mm", view, view, out, dt.float32)
    assert donate_inputs(plan([kern], [a], [out]), [(0, 0)]) == {}


def momentum_step(p, b, g):
    new_b = b * 0.9 + g
    return new_b, p - 0.1 * new_b


def test_llvm_stores_the_update_over_its_inputs_and_matches_the_interpreter():
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((300, 70)).astype(np.float32) for _ in range(3)]
    g, ins = tensor_graph(momentum_step, arrays)
    index = [next(k for k, a in enumerate(ins) if np.array_equal(a, want)) for want in arrays]
    donate = [(index[1], 0), (index[0], 1)]
    exe = L.compile(g, donate=donate)
    assert exe.donated == dict(donate)
    want = interp.compile(g)(ins)
    mine = [np.array(a) for a in ins]
    got = exe(mine)
    assert got[0] is mine[index[1]] and got[1] is mine[index[0]]
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=1e-6)


def test_a_state_read_shifted_is_computed_out_of_place():
    rng = np.random.default_rng(1)
    arrays = [rng.standard_normal(500).astype(np.float32) for _ in range(2)]
    g, ins = tensor_graph(lambda p, q: p.flip(0) + q, arrays)
    k = next(k for k, a in enumerate(ins) if np.array_equal(a, arrays[0]))
    exe = L.compile(g, donate=[(k, 0)])
    assert exe.donated == {}
    np.testing.assert_allclose(exe([np.array(a) for a in ins])[0], arrays[0][::-1] + arrays[1])


def make_step(seed=0):
    gc.manual_seed(seed)
    model = gc.nn.Sequential(gc.nn.Linear(12, 32), gc.nn.ReLU(), gc.nn.Linear(32, 5))
    opt = gc.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    return model, opt, train_step(gc, model, opt)


def data(seed=0):
    rng = np.random.default_rng(seed)
    return gc.tensor(rng.standard_normal((16, 12)).astype(np.float32)), \
        gc.tensor(rng.integers(0, 5, 16))


def test_compiled_step_updates_parameters_in_place_with_the_lazy_numbers():
    x, y = data()
    model, opt, step = make_step()
    ref_model, ref_opt, ref_step = make_step()
    compiled = gc.compile(step, backend="llvm")
    arrays = []
    for _ in range(6):
        loss, want = compiled(x, y), ref_step(x, y)
        np.testing.assert_allclose(loss.item(), want.item(), rtol=1e-5)
        arrays.append([id(p._node.data) for p in model.parameters()])
    # from the first replay that finds its arrays exclusive, each is updated in place
    assert arrays[-1] == arrays[-2] == arrays[-3]
    for p, q in zip(model.parameters(), ref_model.parameters()):
        np.testing.assert_allclose(p.detach().numpy(), q.detach().numpy(), rtol=1e-5,
                                   atol=1e-6)
        np.testing.assert_allclose(opt.state[p]["momentum_buffer"].numpy(),
                                   ref_opt.state[q]["momentum_buffer"].numpy(),
                                   rtol=1e-5, atol=1e-6)


def _held_after_a_step(compiled: bool):
    """What a user's detached view, numpy array and pending lazy value of a weight hold
    after one more step, run compiled or eagerly."""
    x, y = data(1)
    model, _, step = make_step(1)
    run = gc.compile(step, backend="llvm") if compiled else step
    for _ in range(4):
        run(x, y)
    w = model[0].weight
    before = w.detach().numpy().copy()
    held = w.detach()            # shares the values (PyTorch's detach)
    row = w.detach()[1]          # a view of a view
    as_numpy = w.detach().numpy()
    pending = w * 2              # lazy, not computed yet
    run(x, y)
    after = w.detach().numpy()
    assert not np.allclose(after, before)
    return before, after, held.numpy(), row.numpy(), as_numpy, pending.detach().numpy()


def test_values_a_user_holds_change_as_after_an_eager_step():
    before, after, held, row, as_numpy, pending = _held_after_a_step(compiled=True)
    np.testing.assert_array_equal(held, after)          # views follow the parameter
    np.testing.assert_array_equal(row, after[1])
    np.testing.assert_array_equal(as_numpy, before)     # what numpy() returned stays
    np.testing.assert_array_equal(pending, 2 * before)  # computed from the old value
    for got, want in zip((before, after, held, row, as_numpy, pending),
                         _held_after_a_step(compiled=False)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_in_place_again_once_nothing_else_holds_the_array():
    x, y = data(3)
    model, _, step = make_step(3)
    compiled = gc.compile(step, backend="llvm")
    for _ in range(4):
        compiled(x, y)
    w = model[0].weight
    held = w.detach()
    compiled(x, y)
    array = id(w._node.data)
    compiled(x, y)
    assert id(w._node.data) != array      # a view holds it: copied, then written back
    del held
    compiled(x, y)
    array = id(w._node.data)
    compiled(x, y)
    assert id(w._node.data) == array      # nothing holds it now: in place again
