"""Memory planning: liveness-based arena placement (graphc/passes/memory.py)."""
from __future__ import annotations


import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from graphc.backends import interp
from graphc.backends import kernel_ir as K
from graphc.backends import llvm as L
from graphc.ir import dtypes as dt
from graphc.ir.graph import Graph, Node, TensorType
from graphc.ir.registry import get_op
from graphc.passes.fusion import fuse
from graphc.passes.memory import plan_memory


# compiled kernels go to a cache directory of this module's own (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("private_cache")


def inp(shape, name="x"):
    return Node("input", (), {"name": name}, TensorType(tuple(shape), dt.float32))


def op(name, *ins, **attrs):
    return Node(name, ins, attrs, get_op(name).infer([i.type for i in ins], attrs))


def mlp_graph(layers=4, width=32):
    """x -> (matmul -> relu) * layers: every relu output is a matmul operand (a temp)."""
    x = inp((16, width))
    ws = [inp((width, width), f"w{k}") for k in range(layers)]
    h = x
    for w in ws:
        h = op("relu", op("matmul", h, w))
    g, _ = Graph.from_outputs([h], input_order=[x] + ws)
    return g


def check_no_live_overlap(mem):
    temps = list(mem.offsets)
    for i, a in enumerate(temps):
        for b in temps[i + 1:]:
            (fa, la), (fb, lb) = mem.lifetimes[a], mem.lifetimes[b]
            if la < fb or lb < fa:
                continue   # never live together
            if (a.within and a.within[0] is b) or (b.within and b.within[0] is a) or \
                    (a.within and b.within and a.within[0] is b.within[0]):
                continue   # pieces (or a second stack of them) inside their concatenation
            oa, ob = mem.offsets[a], mem.offsets[b]
            assert oa + a.nbytes <= ob or ob + b.nbytes <= oa, \
                f"{a!r} and {b!r} are live together but overlap in the arena"


def test_dead_intermediates_share_memory():
    g = mlp_graph()
    plan = fuse(g)
    mem = plan_memory(plan.kernels, plan.input_buffers, plan.output_buffers)
    assert len(mem.offsets) == 7            # 4 matmul results + 3 relu operands
    assert mem.arena_bytes <= 2 * 16 * 32 * 4 + 64   # two live at a time
    assert mem.arena_bytes < mem.temp_bytes
    check_no_live_overlap(mem)
    assert all(b.kind == "output" for b in plan.output_buffers)
    assert not set(plan.output_buffers) & set(mem.offsets)   # outputs never in the arena


def test_report_states_arena_and_peak():
    plan = fuse(mlp_graph())
    mem = plan_memory(plan.kernels, plan.input_buffers, plan.output_buffers)
    text = mem.report()
    assert "arena" in text and "peak" in text
    assert mem.peak_bytes == mem.arena_bytes + 16 * 32 * 4


def test_arena_is_allocated_once_and_results_stay_valid():
    g = mlp_graph(layers=3)
    exe = L.compile(g)
    rng = np.random.default_rng(0)
    ins = [rng.standard_normal(n.shape).astype(np.float32) * 0.3 for n in g.inputs]
    first = exe(ins)
    arena = exe._arena
    ins2 = [a * 2 for a in ins]
    second = exe(ins2)
    assert exe._arena is arena
    np.testing.assert_allclose(first[0], interp.compile(g)(ins)[0], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(second[0], interp.compile(g)(ins2)[0], rtol=1e-5, atol=1e-5)


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from(["row", "col", "mm", "exp"]), min_size=1, max_size=8),
       st.integers(1, 9))
def test_random_chains_never_overlap_live_buffers(steps, n):
    x = inp((n, n))
    h = x
    for s in steps:
        if s == "row":
            h = op("add", h, op("expand", op("sum", h, dims=(1,), keepdim=True), shape=(n, n)))
        elif s == "col":
            h = op("mul", h, op("expand", op("max", h, dims=(0,), keepdim=True), shape=(n, n)))
        elif s == "mm":
            h = op("matmul", h, op("permute", h, dims=(1, 0)))
        else:
            h = op("tanh", h)
    g, _ = Graph.from_outputs([h], input_order=[x])
    plan = fuse(g)
    mem = plan_memory(plan.kernels, plan.input_buffers, plan.output_buffers)
    check_no_live_overlap(mem)
    for k, kern in enumerate(plan.kernels):   # a buffer is written by one kernel
        for b in kern.writes():
            assert mem.lifetimes.get(b, (k, k))[0] == k or b.kind != "temp"
    a = np.random.default_rng(n).standard_normal((n, n)).astype(np.float32) * 0.2
    want = interp.compile(g)([a])[0]
    # row sums and column maxima grow the values (to 5e5 in 7 steps); an element left
    # small by cancellation carries the rounding of the large ones it came from, so the
    # absolute tolerance scales with the largest (a reused buffer gives garbage anyway)
    np.testing.assert_allclose(L.compile(g)([a])[0], want, rtol=1e-4,
                               atol=1e-4 + 1e-5 * float(np.abs(want).max(initial=0)))


def stacked_steps_graph(steps=4, n=16, stack_is_output=False):
    """An unrolled recurrence h_t = tanh(h_(t-1) @ w) whose states are stacked (concat
    along dim 0) and the stack read by one matmul, as a weight gradient reads it."""
    h0, w = inp((1, n), "h0"), inp((n, n), "w")
    h, hs = h0, []
    for _ in range(steps):
        h = op("tanh", op("matmul", h, w))
        hs.append(h)
    stack = op("concat", *hs, dim=0)
    gram = op("matmul", op("permute", stack, dims=(1, 0)), stack)
    outs = [gram, stack] if stack_is_output else [gram]
    g, _ = Graph.from_outputs(outs, input_order=[h0, w])
    return g


def run_both(g, seed=0):
    rng = np.random.default_rng(seed)
    ins = [rng.standard_normal(n.shape).astype(np.float32) * 0.5 for n in g.inputs]
    for a, b in zip(L.compile(g)(ins), interp.compile(g)(ins)):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_stacked_pieces_are_stored_inside_the_stack_without_a_copy():
    """h_0..h_2 are matmul operands (stored by their tanh kernels): they are stored
    inside the stack. h_3 is only stacked, so the concat kernel computes it in place;
    no kernel copies a piece."""
    g = stacked_steps_graph()
    plan = fuse(g)
    mem = plan_memory(plan.kernels, plan.input_buffers, plan.output_buffers)
    inside = [b for b in mem.offsets if b.within is not None]
    stack = inside[0].within[0]
    assert sorted(b.within[1] for b in inside) == [0, 16, 32]
    writers = [k for k in plan.kernels if stack in k.writes()]
    assert len(writers) == 1 and len(writers[0].stages) == 1
    assert not isinstance(writers[0].stages[0].value, K.Load)     # tanh(h_2 @ w), no copy
    for b in inside:
        assert b.within[0] is stack
        assert mem.offsets[b] == mem.offsets[stack] + b.within[1] * 4
        first, last = mem.lifetimes[b]
        assert mem.lifetimes[stack][0] <= first and last <= mem.lifetimes[stack][1]
    check_no_live_overlap(mem)
    assert mem.temp_bytes == sum(-(-b.nbytes // 64) * 64 for b in mem.offsets if b.within is None)
    run_both(g)


def test_pieces_off_a_64_byte_boundary_or_an_output_stack_are_copied():
    g = stacked_steps_graph(n=3)          # 12-byte rows: only the first piece is aligned
    plan = fuse(g)
    inside = [b for b in plan.buffers.values() if b.within is not None]
    assert [b.within[1] for b in inside] == [0]
    assert len([k for k in plan.kernels if any(isinstance(st.value, K.Load) for st in
                                               getattr(k, "stages", ()))]) == 1
    run_both(g, 1)
    g = stacked_steps_graph(stack_is_output=True)   # outputs are fresh arrays per run
    plan = fuse(g)
    assert not any(b.within is not None for b in plan.buffers.values())
    run_both(g, 2)


def two_stacks_graph(store_last_step):
    """Two concatenations of the same steps' states in the same order, one (T, 1, n)
    and one (T, n), each read by a matmul, as an RNN's weight gradients read them.
    `store_last_step`: the last state also feeds a matmul, so a kernel of its own
    stores it (else the first stack's kernel computes it in place)."""
    steps, n = 4, 16
    h0, w = inp((1, n), "h0"), inp((n, n), "w")
    h, hs = h0, []
    for _ in range(steps):
        h = op("tanh", op("matmul", h, w))
        hs.append(h)
    stack3 = op("concat", *[op("reshape", x, shape=(1, 1, n)) for x in hs], dim=0)
    stack2 = op("concat", *hs, dim=0)
    gram = op("matmul", op("permute", stack2, dims=(1, 0)), stack2)
    flat3 = op("reshape", stack3, shape=(steps, n))
    gram3 = op("matmul", flat3, op("permute", flat3, dims=(1, 0)))
    outs = [gram, gram3] + ([op("matmul", hs[-1], w)] if store_last_step else [])
    g, _ = Graph.from_outputs(outs, input_order=[h0, w])
    return g


def assert_no_copies(plan):
    for k in plan.kernels:     # nothing is a copy of another buffer
        for stage in getattr(k, "stages", ()):
            assert not isinstance(stage.value, K.Load)


def test_a_second_stack_of_the_same_pieces_in_order_is_a_view_of_the_first():
    """Every piece is stored by a kernel of its own: the pieces lie in the first stack,
    the second lies over them, and no kernel copies anything."""
    g = two_stacks_graph(store_last_step=True)
    plan = fuse(g)
    mem = plan_memory(plan.kernels, plan.input_buffers, plan.output_buffers)
    inside = {b: b.within for b in mem.offsets if b.within is not None}
    containers = {c for c, _ in inside.values()}
    assert len(containers) == 1
    (stack,) = containers
    assert mem.offsets[stack] == min(mem.offsets[b] for b in inside)
    assert_no_copies(plan)
    check_no_live_overlap(mem)
    run_both(g, 3)


def test_a_second_stack_of_the_same_values_lies_over_the_first_whatever_its_pieces():
    """The last step's state is computed in place by the first stack's kernel, so the
    second stack's pieces are not all buffers lying in the first. It concatenates the
    very same values in the same order, so it is the same bytes: it lies over the
    first, and nothing is copied (the LSTM step's gate-gradient stacks: a 0.25 ms copy)."""
    g = two_stacks_graph(store_last_step=False)
    plan = fuse(g)
    mem = plan_memory(plan.kernels, plan.input_buffers, plan.output_buffers)
    stacks = [plan.buffers[id(c)] for c in plan.graph.nodes if c.op == "concat"]
    assert len(stacks) == 2
    first, second = sorted(stacks, key=lambda b: b.within is not None)
    assert second.within == (first, 0) and mem.offsets[second] == mem.offsets[first]
    assert_no_copies(plan)
    check_no_live_overlap(mem)
    run_both(g, 4)
