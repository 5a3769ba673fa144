"""The simplifying passes: dead-code elimination, CSE, constant folding, algebraic
simplification and the pipeline that runs them to a fixed point.

Each case parses a "before" graph, runs one pass, and compares the result with a parsed
"expected" graph (Graph equality: ops, attrs, types, edges, node order, outputs). Each
case then runs both graphs on the reference interpreter and checks that the outputs
are bit-for-bit identical (NaNs in the same places, zeros with the same sign).
Hypothesis checks the same on random graphs.
"""
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import graphc as gc
from graphc import runtime
from graphc.backends import interp
from graphc.ir import parse, print_graph
from graphc.ir.graph import Graph
from graphc.ir.registry import FusionClass, get_op
from graphc.passes.autodiff import grad_graph
from graphc.passes.cse import common_subexpression_elimination as cse
from graphc.passes.dce import dead_code_elimination as dce
from graphc.passes.fold import constant_folding as fold
from graphc.passes.pipeline import optimize
from graphc.passes.simplify import simplify
from test_ir import RUNNABLE_DTYPES, random_graphs, random_inputs


def assert_identical(a, b):
    assert a.dtype == b.dtype and a.shape == b.shape, (a.dtype, a.shape, b.dtype, b.shape)
    if a.dtype.kind == "f":
        nan_a, nan_b = np.isnan(a), np.isnan(b)
        np.testing.assert_array_equal(nan_a, nan_b)
        a, b = a[~nan_a], b[~nan_b]
        np.testing.assert_array_equal(np.signbit(a), np.signbit(b))
    np.testing.assert_array_equal(a, b)


def assert_same_results(before, after, seeds=(0, 1)):
    """Both graphs give identical outputs on the interpreter, for the same inputs."""
    for seed in seeds:
        values = random_inputs(before, seed)
        for x, y in zip(interp.compile(before)(values), interp.compile(after)(values)):
            assert_identical(x, y)


def assert_same_interface(before, after):
    assert [n.type for n in after.inputs] == [n.type for n in before.inputs]
    assert [n.attrs["name"] for n in after.inputs] == [n.attrs["name"] for n in before.inputs]
    assert [n.type for n in after.outputs] == [n.type for n in before.outputs]


def check(run_pass, before, expected, run=True):
    g = parse(before)
    out = run_pass(g)
    out.lint()
    assert_same_interface(g, out)
    want = parse(expected)
    assert out == want, f"\ngot:\n{print_graph(out)}\nexpected:\n{print_graph(want)}"
    assert g == parse(before), "the pass modified its input graph"
    if run:
        assert_same_results(g, out)
    return out


# ============================================================================ DCE

def test_dce_drops_what_no_output_needs_and_keeps_every_input():
    check(dce, """
graph(%x: f32[3], %unused: f32[3], %seed: i64[]) {
  %0: f32[3] = exp(%x)
  %1: f32[3] = neg(%x)
  %2: f32[3] = rand(%seed, %seed) {dtype=f32, normal=false, shape=[3]}
  %3: f32[3] = tanh(%1)
  %4: f32[3] = add(%0, %0)
  return %4, %0
}""", """
graph(%x: f32[3], %unused: f32[3], %seed: i64[]) {
  %0: f32[3] = exp(%x)
  %1: f32[3] = add(%0, %0)
  return %1, %0
}""")


def test_dce_with_outputs_that_are_inputs_keeps_no_other_node():
    check(dce, """
graph(%x: f32[2], %y: i64[]) {
  %0: f32[2] = exp(%x)
  return %y, %x, %y
}""", """
graph(%x: f32[2], %y: i64[]) {
  return %y, %x, %y
}""")


# ============================================================================ CSE

def test_cse_merges_repeated_computations_transitively():
    check(cse, """
graph(%x: f32[4]) {
  %0: f32[4] = exp(%x)
  %1: f32[4] = exp(%x)
  %2: f32[4] = add(%0, %x)
  %3: f32[4] = add(%1, %x)
  %4: f32[4] = mul(%2, %3)
  return %4, %3
}""", """
graph(%x: f32[4]) {
  %0: f32[4] = exp(%x)
  %1: f32[4] = add(%0, %x)
  %2: f32[4] = mul(%1, %1)
  return %2, %1
}""")


def test_cse_operand_order_matters_only_for_non_commutative_ops():
    check(cse, """
graph(%x: f32[2], %y: f32[2]) {
  %0: f32[2] = add(%x, %y)
  %1: f32[2] = add(%y, %x)
  %2: b8[2] = eq(%x, %y)
  %3: b8[2] = eq(%y, %x)
  %4: f32[2] = sub(%x, %y)
  %5: f32[2] = sub(%y, %x)
  %6: f32[2] = maximum(%x, %y)
  %7: f32[2] = maximum(%y, %x)
  return %0, %1, %2, %3, %4, %5, %6, %7
}""", """
graph(%x: f32[2], %y: f32[2]) {
  %0: f32[2] = add(%x, %y)
  %1: b8[2] = eq(%x, %y)
  %2: f32[2] = sub(%x, %y)
  %3: f32[2] = sub(%y, %x)
  %4: f32[2] = maximum(%x, %y)
  %5: f32[2] = maximum(%y, %x)
  return %0, %0, %1, %1, %2, %3, %4, %5
}""")


def test_cse_compares_attrs_and_constants_exactly():
    check(cse, """
graph(%x: f32[2,3]) {
  %0: f32[3] = sum(%x) {dims=[0], keepdim=false}
  %1: f32[2] = sum(%x) {dims=[1], keepdim=false}
  %2: f32[3] = sum(%x) {dims=[0], keepdim=false}
  %3: f32[] = const() {dtype=f32, value=0.0}
  %4: f32[] = const() {dtype=f32, value=-0.0}
  %5: f32[] = const() {dtype=f32, value=0.0}
  %6: f64[] = const() {dtype=f64, value=0.0}
  %7: i64[] = const() {dtype=i64, value=0}
  %8: f32[] = const() {dtype=f32, value=nan}
  %9: f32[] = const() {dtype=f32, value=nan}
  return %0, %1, %2, %3, %4, %5, %6, %7, %8, %9
}""", """
graph(%x: f32[2,3]) {
  %0: f32[3] = sum(%x) {dims=[0], keepdim=false}
  %1: f32[2] = sum(%x) {dims=[1], keepdim=false}
  %2: f32[] = const() {dtype=f32, value=0.0}
  %3: f32[] = const() {dtype=f32, value=-0.0}
  %4: f64[] = const() {dtype=f64, value=0.0}
  %5: i64[] = const() {dtype=i64, value=0}
  %6: f32[] = const() {dtype=f32, value=nan}
  return %0, %1, %0, %2, %3, %2, %4, %5, %6, %6
}""")


def test_cse_never_merges_inputs_and_merges_rand_only_on_the_same_operands():
    check(cse, """
graph(%x: f32[3], %y: f32[3], %s: i64[], %o: i64[], %s2: i64[], %o2: i64[]) {
  %0: f32[3] = exp(%x)
  %1: f32[3] = exp(%y)
  %2: f32[3] = rand(%s, %o) {dtype=f32, normal=true, shape=[3]}
  %3: f32[3] = rand(%s, %o) {dtype=f32, normal=true, shape=[3]}
  %4: f32[3] = rand(%s2, %o2) {dtype=f32, normal=true, shape=[3]}
  %5: f32[3] = rand(%s, %o) {dtype=f32, normal=false, shape=[3]}
  return %0, %1, %2, %3, %4, %5
}""", """
graph(%x: f32[3], %y: f32[3], %s: i64[], %o: i64[], %s2: i64[], %o2: i64[]) {
  %0: f32[3] = exp(%x)
  %1: f32[3] = exp(%y)
  %2: f32[3] = rand(%s, %o) {dtype=f32, normal=true, shape=[3]}
  %3: f32[3] = rand(%s2, %o2) {dtype=f32, normal=true, shape=[3]}
  %4: f32[3] = rand(%s, %o) {dtype=f32, normal=false, shape=[3]}
  return %0, %1, %2, %2, %3, %4
}""")


def test_cse_keeps_the_first_location():
    check(cse, """
graph(%x: f32[2]) {
  %0: f32[2] = exp(%x) @ "a.py:1"
  %1: f32[2] = exp(%x) @ "a.py:2"
  return %1
}""", """
graph(%x: f32[2]) {
  %0: f32[2] = exp(%x) @ "a.py:1"
  return %0
}""")


# ============================================================================ folding

def test_fold_scalar_arithmetic():
    check(fold, """
graph(%x: f32[]) {
  %0: f32[] = const() {dtype=f32, value=2.0}
  %1: f32[] = const() {dtype=f32, value=3.0}
  %2: f32[] = add(%0, %1)
  %3: f32[] = mul(%2, %x)
  return %3
}""", """
graph(%x: f32[]) {
  %0: f32[] = const() {dtype=f32, value=2.0}
  %1: f32[] = const() {dtype=f32, value=3.0}
  %2: f32[] = const() {dtype=f32, value=5.0}
  %3: f32[] = mul(%2, %x)
  return %3
}""")


def test_fold_elementwise_op_of_expanded_scalars_without_materialising_them():
    # 512x512 would be over the evaluation limit: the splats are computed on one element.
    check(fold, """
graph() {
  %0: f32[] = const() {dtype=f32, value=2.0}
  %1: f32[1,1] = reshape(%0) {shape=[1, 1]}
  %2: f32[512,512] = expand(%1) {shape=[512, 512]}
  %3: f32[] = const() {dtype=f32, value=3.0}
  %4: f32[1,1] = reshape(%3) {shape=[1, 1]}
  %5: f32[512,512] = expand(%4) {shape=[512, 512]}
  %6: f32[512,512] = mul(%2, %5)
  %7: f32[512,512] = exp(%6)
  return %7
}""", """
graph() {
  %0: f32[] = const() {dtype=f32, value=2.0}
  %1: f32[1,1] = reshape(%0) {shape=[1, 1]}
  %2: f32[512,512] = expand(%1) {shape=[512, 512]}
  %3: f32[] = const() {dtype=f32, value=3.0}
  %4: f32[1,1] = reshape(%3) {shape=[1, 1]}
  %5: f32[512,512] = expand(%4) {shape=[512, 512]}
  %6: f32[] = const() {dtype=f32, value=6.0}
  %7: f32[1,1] = reshape(%6) {shape=[1, 1]}
  %8: f32[512,512] = expand(%7) {shape=[512, 512]}
  %9: f32[] = const() {dtype=f32, value=%s}
  %10: f32[1,1] = reshape(%9) {shape=[1, 1]}
  %11: f32[512,512] = expand(%10) {shape=[512, 512]}
  return %11
}""".replace("%s", repr(float(np.exp(np.float32(6.0))))))


@pytest.mark.parametrize("ops, dtype, value", [
    # cast truncates toward zero, as PyTorch does
    ("%0: f32[] = const() {dtype=f32, value=-3.75}\n %1: i32[] = cast(%0) {dtype=i32}",
     "i32", "-3"),
    # float16 overflows to infinity
    ("%a: f16[] = const() {dtype=f16, value=300.0}\n %1: f16[] = mul(%a, %a)", "f16", "inf"),
    # int32 wraps around
    ("%a: i32[] = const() {dtype=i32, value=65536}\n %1: i32[] = mul(%a, %a)", "i32", "0"),
    # float32 arithmetic, not float64
    ("%a: f32[] = const() {dtype=f32, value=0.1}\n %b: f32[] = const() {dtype=f32, value=0.2}"
     "\n %1: f32[] = add(%a, %b)", "f32", repr(float(np.float32(0.1) + np.float32(0.2)))),
    # comparisons give bool
    ("%a: i64[] = const() {dtype=i64, value=2}\n %1: b8[] = gt(%a, %a)", "b8", "false"),
    # a uniform reduction of a small non-scalar constant: numpy's own pairwise sum
    ("%a: i64[5] = iota() {dim=0, dtype=i64, shape=[5]}\n"
     " %1: i64[] = sum(%a) {dims=[0], keepdim=false}", "i64", "10"),
])
def test_fold_keeps_dtypes_exactly(ops, dtype, value):
    g = parse(f"graph() {{\n {ops}\n return %1\n}}")
    out = fold(g)
    out.lint()
    result = out.outputs[0]
    assert result.op == "const" and result.type.dtype.short == dtype
    assert parse(f"graph() {{\n %0: {dtype}[] = const() {{dtype={dtype}, value={value}}}\n"
                 f" return %0\n}}").nodes[0].attrs == result.attrs
    assert_same_results(g, out)


def test_fold_bfloat16_constants_are_rounded_like_the_interpreter():
    # A [2] splat: the interpreter cannot run 0-d bfloat16 values yet.
    out = check(fold, """
graph() {
  %0: bf16[] = const() {dtype=bf16, value=1.0}
  %1: bf16[1] = reshape(%0) {shape=[1]}
  %2: bf16[2] = expand(%1) {shape=[2]}
  %3: bf16[] = const() {dtype=bf16, value=0.00390625}
  %4: bf16[1] = reshape(%3) {shape=[1]}
  %5: bf16[2] = expand(%4) {shape=[2]}
  %6: bf16[2] = add(%2, %5)
  return %6
}""", """
graph() {
  %0: bf16[] = const() {dtype=bf16, value=1.0}
  %1: bf16[1] = reshape(%0) {shape=[1]}
  %2: bf16[2] = expand(%1) {shape=[2]}
  %3: bf16[] = const() {dtype=bf16, value=0.00390625}
  %4: bf16[1] = reshape(%3) {shape=[1]}
  %5: bf16[2] = expand(%4) {shape=[2]}
  %6: bf16[] = const() {dtype=bf16, value=1.0}
  %7: bf16[1] = reshape(%6) {shape=[1]}
  %8: bf16[2] = expand(%7) {shape=[2]}
  return %8
}""", run=False)  # 1 + 2**-8 rounds to 1 in bfloat16 (ties to even)
    assert out.outputs[0].type.dtype.short == "bf16"


def test_fold_leaves_non_uniform_constants_and_respects_the_element_limit():
    before = """
graph() {
  %0: i64[4] = iota() {dim=0, dtype=i64, shape=[4]}
  %1: f32[4] = cast(%0) {dtype=f32}
  %2: f32[] = const() {dtype=f32, value=0.1}
  %3: f32[1,1] = reshape(%2) {shape=[1, 1]}
  %4: f32[100,100] = expand(%3) {shape=[100, 100]}
  %5: f32[] = sum(%4) {dims=[0, 1], keepdim=false}
  return %1, %5
}"""
    check(fold, before, before)  # 10000 elements > the default limit of 4096
    g = parse(before)
    out = fold(g, max_elements=10_000)
    want = np.sum(np.full((100, 100), np.float32(0.1)), axis=(0, 1))
    assert out.outputs[0] is not out.outputs[1]
    assert out.outputs[1].op == "const" and out.outputs[1].attrs["value"] == float(want)
    assert_same_results(g, out)


def test_fold_evaluates_reductions_on_the_interpreters_own_arrays():
    # Folding must give exactly the interpreter's bits for a reduction over a view.
    before = """
graph() {
  %0: f32[] = const() {dtype=f32, value=0.3}
  %1: f32[1,1] = reshape(%0) {shape=[1, 1]}
  %2: f32[64,64] = expand(%1) {shape=[64, 64]}
  %3: f32[64,64] = exp(%2)
  %4: f32[64,64] = permute(%3) {dims=[1, 0]}
  %5: f32[64] = sum(%4) {dims=[0], keepdim=false}
  return %5
}"""
    g = parse(before)
    out = fold(g)
    (want,) = interp.compile(g)([])
    folded = out.outputs[0]
    assert folded.op == "expand" and folded.inputs[0].inputs[0].attrs["value"] == float(want[0])
    assert_same_results(g, out)


def test_fold_never_touches_inputs_rand_or_failing_ops():
    before = """
graph(%x: f32[3]) {
  %0: i64[] = const() {dtype=i64, value=7}
  %1: f32[3] = rand(%0, %0) {dtype=f32, normal=false, shape=[3]}
  %2: f32[3] = add(%1, %x)
  %3: f32[3] = iota() {dim=0, dtype=f32, shape=[3]}
  %4: i64[] = const() {dtype=i64, value=5}
  %5: i64[1] = reshape(%4) {shape=[1]}
  %6: f32[1] = gather(%3, %5) {dim=0}
  return %2, %6
}"""
    g = parse(before)
    out = fold(g)
    assert out == g  # the gather's index is out of range: the runtime reports it
    with pytest.raises(IndexError):
        interp.compile(g)(random_inputs(g))


def test_fold_puts_splats_in_canonical_form():
    check(fold, """
graph() {
  %0: f32[] = const() {dtype=f32, value=1.5}
  %1: f32[1] = reshape(%0) {shape=[1]}
  %2: f32[6] = expand(%1) {shape=[6]}
  %3: f32[2,3] = reshape(%2) {shape=[2, 3]}
  %4: f32[3,2] = permute(%3) {dims=[1, 0]}
  %5: f32[1,1] = reshape(%0) {shape=[1, 1]}
  %6: f32[1,1] = expand(%5) {shape=[1, 1]}
  %7: i64[1] = iota() {dim=0, dtype=i64, shape=[1]}
  return %4, %6, %7
}""", """
graph() {
  %0: f32[] = const() {dtype=f32, value=1.5}
  %1: f32[1] = reshape(%0) {shape=[1]}
  %2: f32[6] = expand(%1) {shape=[6]}
  %3: f32[] = const() {dtype=f32, value=1.5}
  %4: f32[1,1] = reshape(%3) {shape=[1, 1]}
  %5: f32[2,3] = expand(%4) {shape=[2, 3]}
  %6: f32[] = const() {dtype=f32, value=1.5}
  %7: f32[1,1] = reshape(%6) {shape=[1, 1]}
  %8: f32[3,2] = expand(%7) {shape=[3, 2]}
  %9: f32[1,1] = reshape(%0) {shape=[1, 1]}
  %10: f32[] = const() {dtype=f32, value=1.5}
  %11: f32[1,1] = reshape(%10) {shape=[1, 1]}
  %12: i64[] = const() {dtype=i64, value=0}
  %13: i64[1] = reshape(%12) {shape=[1]}
  return %8, %11, %13
}""")


# ============================================================================ simplify

def _splat(name, value, dtype="f32", shape="2,3"):
    """IR lines for a scalar constant expanded to `shape`, as the tensor layer emits."""
    ones = ", ".join("1" for _ in shape.split(","))
    ones_type, dims = ones.replace(" ", ""), shape.replace(",", ", ")
    return (f"  %{name}c: {dtype}[] = const() {{dtype={dtype}, value={value}}}\n"
            f"  %{name}r: {dtype}[{ones_type}] = reshape(%{name}c) {{shape=[{ones}]}}\n"
            f"  %{name}: {dtype}[{shape}] = expand(%{name}r) {{shape=[{dims}]}}\n")


def _identity_case(op_lines, dtype="f32", keep=False):
    """Before: `op_lines` computing %r from %x and splats; expected: return %x (or, with
    keep, the graph unchanged)."""
    before = f"graph(%x: {dtype}[2,3]) {{\n{op_lines}  return %r\n}}"
    if keep:
        return before, before
    body = "".join(line + "\n" for line in op_lines.splitlines() if not line.strip()
                   .startswith("%r:"))
    return before, f"graph(%x: {dtype}[2,3]) {{\n{body}  return %x\n}}"


@pytest.mark.parametrize("lines, dtype, keep", [
    (_splat("one", "1.0") + "  %r: f32[2,3] = mul(%x, %one)\n", "f32", False),
    (_splat("one", "1.0") + "  %r: f32[2,3] = mul(%one, %x)\n", "f32", False),
    (_splat("one", "1.0") + "  %r: f32[2,3] = div(%x, %one)\n", "f32", False),
    (_splat("z", "-0.0") + "  %r: f32[2,3] = add(%x, %z)\n", "f32", False),
    (_splat("z", "-0.0") + "  %r: f32[2,3] = add(%z, %x)\n", "f32", False),
    (_splat("z", "0.0") + "  %r: f32[2,3] = sub(%x, %z)\n", "f32", False),
    (_splat("z", "0", "i64") + "  %r: i64[2,3] = add(%x, %z)\n", "i64", False),
    (_splat("z", "0", "i64") + "  %r: i64[2,3] = sub(%x, %z)\n", "i64", False),
    (_splat("z", "false", "b8") + "  %r: b8[2,3] = add(%x, %z)\n", "b8", False),
    # -0.0 + 0.0 is +0.0, and x - (-0.0) is x + 0.0: not identities for floats
    (_splat("z", "0.0") + "  %r: f32[2,3] = add(%x, %z)\n", "f32", True),
    (_splat("z", "-0.0") + "  %r: f32[2,3] = sub(%x, %z)\n", "f32", True),
    # nan * 0 is nan: x * 0 stays for floats
    (_splat("z", "0.0") + "  %r: f32[2,3] = mul(%x, %z)\n", "f32", True),
    (_splat("two", "2.0") + "  %r: f32[2,3] = mul(%x, %two)\n", "f32", True),
    ("  %n: f32[2,3] = neg(%x)\n  %r: f32[2,3] = neg(%n)\n", "f32", False),
    ("  %n: b8[2,3] = logical_not(%x)\n  %r: b8[2,3] = logical_not(%n)\n", "b8", False),
    ("  %r: f32[2,3] = cast(%x) {dtype=f32}\n", "f32", False),
    ("  %w: f64[2,3] = cast(%x) {dtype=f64}\n  %r: f32[2,3] = cast(%w) {dtype=f32}\n",
     "f32", False),
    ("  %w: i64[2,3] = cast(%x) {dtype=i64}\n  %r: i32[2,3] = cast(%w) {dtype=i32}\n",
     "i32", False),
    # float16 cannot hold every float32: the round trip rounds
    ("  %w: f16[2,3] = cast(%x) {dtype=f16}\n  %r: f32[2,3] = cast(%w) {dtype=f32}\n",
     "f32", True),
    ("  %r: f32[2,3] = reshape(%x) {shape=[2, 3]}\n", "f32", False),
    ("  %r: f32[2,3] = expand(%x) {shape=[2, 3]}\n", "f32", False),
    ("  %r: f32[2,3] = permute(%x) {dims=[0, 1]}\n", "f32", False),
    ("  %t: f32[3,2] = permute(%x) {dims=[1, 0]}\n  %r: f32[2,3] = permute(%t) {dims=[1, 0]}\n",
     "f32", False),
    ("  %r: f32[2,3] = slice(%x) {starts=[0, 0], steps=[1, 1], stops=[2, 3]}\n", "f32", False),
    ("  %r: f32[2,3] = pad(%x) {high=[0, 0], interior=[0, 0], low=[0, 0]}\n", "f32", False),
    ("  %r: f32[2,3] = concat(%x) {dim=1}\n", "f32", False),
    ("  %r: f32[2,3] = maximum(%x, %x)\n", "f32", False),
    ("  %r: f32[2,3] = minimum(%x, %x)\n", "f32", False),
    ("  %r: b8[2,3] = logical_and(%x, %x)\n", "b8", False),
    ("  %r: f32[2,3] = sum(%x) {dims=[], keepdim=false}\n", "f32", True),  # sum(-0.0) = 0.0
    ("  %r: i64[2,3] = sum(%x) {dims=[], keepdim=true}\n", "i64", False),
    ("  %r: f32[2,3] = max(%x) {dims=[], keepdim=false}\n", "f32", False),
    ("  %c: b8[2,3] = gt(%x, %x)\n  %r: f32[2,3] = where(%c, %x, %x)\n", "f32", False),
    (_splat("t", "true", "b8") + "  %y: f32[2,3] = exp(%x)\n"
     "  %r: f32[2,3] = where(%t, %x, %y)\n", "f32", False),
])
def test_simplify_identities(lines, dtype, keep):
    before, expected = _identity_case(lines, dtype, keep)
    check(simplify, before, expected)


def test_simplify_integer_times_zero_is_the_zero():
    check(simplify, f"""
graph(%x: i32[2,3]) {{
{_splat("z", "0", "i32")}  %r: i32[2,3] = mul(%x, %z)
  return %r
}}""", f"""
graph(%x: i32[2,3]) {{
{_splat("z", "0", "i32")}  return %z
}}""")


def test_simplify_where_with_a_false_condition_picks_the_other_branch():
    check(simplify, f"""
graph(%x: f32[2,3], %y: f32[2,3]) {{
{_splat("f", "false", "b8")}  %r: f32[2,3] = where(%f, %x, %y)
  return %r
}}""", f"""
graph(%x: f32[2,3], %y: f32[2,3]) {{
{_splat("f", "false", "b8")}  return %y
}}""")


def test_simplify_collapses_movement_chains():
    check(simplify, """
graph(%x: f32[2,3,4]) {
  %0: f32[6,4] = reshape(%x) {shape=[6, 4]}
  %1: f32[24] = reshape(%0) {shape=[24]}
  %2: f32[4,2,3] = permute(%x) {dims=[2, 0, 1]}
  %3: f32[2,4,3] = permute(%2) {dims=[1, 0, 2]}
  %4: f32[1,3,4] = slice(%x) {starts=[1, 0, 0], steps=[1, 1, 1], stops=[2, 3, 4]}
  %5: f32[2,3,4] = expand(%4) {shape=[2, 3, 4]}
  %6: f32[2,3,4] = reshape(%5) {shape=[2, 3, 4]}
  %7: f32[1,1,4] = max(%4) {dims=[1], keepdim=true}
  %8: f32[4] = max(%7) {dims=[0, 1], keepdim=false}
  return %1, %3, %6, %8
}""", """
graph(%x: f32[2,3,4]) {
  %0: f32[6,4] = reshape(%x) {shape=[6, 4]}
  %1: f32[24] = reshape(%x) {shape=[24]}
  %2: f32[4,2,3] = permute(%x) {dims=[2, 0, 1]}
  %3: f32[2,4,3] = permute(%x) {dims=[0, 2, 1]}
  %4: f32[1,3,4] = slice(%x) {starts=[1, 0, 0], steps=[1, 1, 1], stops=[2, 3, 4]}
  %5: f32[2,3,4] = expand(%4) {shape=[2, 3, 4]}
  %6: f32[1,1,4] = max(%4) {dims=[1], keepdim=true}
  %7: f32[4] = reshape(%6) {shape=[4]}
  return %1, %3, %5, %7
}""")


def test_simplify_chains_of_expands_and_reductions_over_unit_dims():
    check(simplify, """
graph(%x: f32[1,3], %i: i64[3,1]) {
  %0: f32[1,1,3] = reshape(%x) {shape=[1, 1, 3]}
  %1: f32[2,1,3] = expand(%0) {shape=[2, 1, 3]}
  %2: f32[2,5,3] = expand(%1) {shape=[2, 5, 3]}
  %3: i64[3] = sum(%i) {dims=[1], keepdim=false}
  %4: f32[3] = sum(%x) {dims=[0], keepdim=false}
  %5: f32[1,3] = prod(%x) {dims=[0], keepdim=true}
  return %2, %3, %4, %5
}""", """
graph(%x: f32[1,3], %i: i64[3,1]) {
  %0: f32[1,1,3] = reshape(%x) {shape=[1, 1, 3]}
  %1: f32[2,1,3] = expand(%0) {shape=[2, 1, 3]}
  %2: f32[2,5,3] = expand(%0) {shape=[2, 5, 3]}
  %3: i64[3] = reshape(%i) {shape=[3]}
  %4: f32[3] = sum(%x) {dims=[0], keepdim=false}
  return %2, %3, %4, %x
}""")


# ============================================================================ pipeline

def test_optimize_reaches_a_fixed_point_and_keeps_the_interface():
    before = f"""
graph(%x: f32[2,3], %unused: i64[4], %y: f32[2,3]) {{
{_splat("one", "1.0")}{_splat("two", "2.0")}{_splat("three", "3.0")}\
  %0: f32[2,3] = mul(%x, %one)
  %1: f32[3,2] = permute(%0) {{dims=[1, 0]}}
  %2: f32[2,3] = permute(%1) {{dims=[1, 0]}}
  %3: f32[2,3] = mul(%two, %three)
  %4: f32[2,3] = add(%2, %3)
  %5: f32[2,3] = add(%x, %3)
  %6: f32[2,3] = mul(%4, %5)
  %7: f32[2,3] = exp(%y)
  return %6, %x, %6
}}"""
    out = check(optimize, before, """
graph(%x: f32[2,3], %unused: i64[4], %y: f32[2,3]) {
  %0: f32[] = const() {dtype=f32, value=6.0}
  %1: f32[1,1] = reshape(%0) {shape=[1, 1]}
  %2: f32[2,3] = expand(%1) {shape=[2, 3]}
  %3: f32[2,3] = add(%x, %2)
  %4: f32[2,3] = mul(%3, %3)
  return %4, %x, %4
}""")
    assert optimize(out) == out


def _tensor_program_graph():
    x = gc.randn(4, 6)
    w = gc.randn(6, 5)
    h = (x @ w * 1.0).relu().clone().t().t()
    loss = (h.softmax(-1) + h.log_softmax(-1)).sum() + h.var()
    fwd = Graph.from_outputs([loss._node])[0]
    return fwd, grad_graph(fwd)


def test_optimize_forward_and_backward_graphs_of_a_tensor_program():
    for g in _tensor_program_graph():
        out = optimize(g)
        out.lint()
        assert_same_interface(g, out)
        assert len(out.nodes) < len(g.nodes)
        assert optimize(out) == out
        assert_same_results(g, out)


def test_runtime_compiles_the_optimized_graph():
    x_np = np.random.default_rng(0).normal(size=(3, 4)).astype(np.float32)
    x = gc.tensor(x_np)
    y = ((x * 1).clone().t().t() + x * 2).sum(1)
    g, boundary = Graph.from_outputs([y._node], boundary=lambda n: n.data is not None)
    exe = runtime.compiled_for(g, "interp")
    assert len(exe.graph.nodes) < len(g.nodes)
    ops = [n.op for n in exe.graph.nodes]
    assert "permute" not in ops and ops.count("mul") == 1  # t().t() and x * 1 are gone
    (value,) = exe([n.data for n in boundary])
    assert_identical(value, np.sum(x_np + x_np * np.float32(2), axis=1))
    assert_identical(y.numpy(), value)


def test_runtime_results_of_a_program_with_literals_match_numpy():
    a_np = np.arange(6, dtype=np.float32).reshape(2, 3) - 2.5
    a = gc.tensor(a_np)
    out = (a * 1 + 0).t().t().reshape(3, 2).reshape(6).relu() / 1
    assert_identical(out.numpy(), np.maximum(a_np.reshape(6), 0))


# ============================================================================ random graphs

PASSES = [dce, cse, fold, simplify, optimize]


@settings(max_examples=70, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs(max_steps=14, dtypes=RUNNABLE_DTYPES))
def test_every_pass_keeps_the_interface_and_the_numbers_of_random_graphs(g):
    text = print_graph(g)
    for run_pass in PASSES:
        out = run_pass(g)
        out.lint()
        assert_same_interface(g, out)
        assert_same_results(g, out, seeds=(0,))
    assert print_graph(g) == text  # passes never modify their input


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs(max_steps=14, dtypes=RUNNABLE_DTYPES))
def test_optimize_is_idempotent_and_never_adds_computation(g):
    def computing(graph):  # nodes that are neither sources nor index arithmetic
        return [n for n in graph.nodes if n.op != "input" and get_op(n.op).fusion not in (
            FusionClass.SOURCE, FusionClass.MOVEMENT)]
    out = optimize(g)
    assert optimize(out) == out
    assert len(computing(out)) <= len(computing(g))


def test_nan_and_infinity_constants_fold_to_the_same_bits():
    before = f"""
graph(%x: f32[2,3]) {{
{_splat("inf", "inf")}{_splat("nan", "nan")}\
  %0: f32[2,3] = mul(%inf, %nan)
  %1: f32[2,3] = sub(%inf, %inf)
  %2: f32[2,3] = add(%x, %0)
  return %2, %1
}}"""
    g = parse(before)
    out = optimize(g)
    out.lint()
    assert math.isnan(next(n for n in out.nodes if n.op == "const").attrs["value"])
    assert_same_results(g, out)


SPECIAL_FLOATS = [0.0, -0.0, 1.0, -1.0, 2.5, -7.0, np.inf, -np.inf, np.nan, 1e-30, 65504.0]


def _special_values(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.array(SPECIAL_FLOATS, dtype=dtype)
    return np.array([0, 1, -1, 2, -7, 5, 127, -128, 3, 4, 6], dtype=dtype)[:len(SPECIAL_FLOATS)]


@pytest.mark.parametrize("dtype", ["f32", "f64", "f16", "i64", "i32"])
def test_every_binary_op_with_every_constant_keeps_exact_results(dtype):
    """Exhaustive over the rules' edge: x op c and c op x, for each constant that a
    rule looks at (0, -0.0, 1, ...), on inputs holding every awkward value."""
    n = len(SPECIAL_FLOATS)
    is_float = dtype.startswith("f")
    ops = ["add", "sub", "mul", "maximum", "minimum", "pow"] + (["div"] if is_float else [])
    consts = ["0.0", "-0.0", "1.0", "-1.0", "2.0", "nan", "inf"] if is_float else \
        ["0", "1", "-1", "2"]
    np_dtype = {"f32": np.float32, "f64": np.float64, "f16": np.float16, "i64": np.int64,
                "i32": np.int32}[dtype]
    x = _special_values(np_dtype)
    for op in ops:
        for c in consts:
            for operands in ("%x, %k", "%k, %x"):
                g = parse(f"graph(%x: {dtype}[{n}]) {{\n{_splat('k', c, dtype, str(n))}"
                          f"  %r: {dtype}[{n}] = {op}({operands})\n  return %r\n}}")
                out = optimize(g)
                out.lint()
                for a, b in zip(interp.compile(g)([x]), interp.compile(out)([x])):
                    assert_identical(a, b)


@pytest.mark.parametrize("dtype", ["f32", "f16", "i64", "b8"])
@pytest.mark.parametrize("op", ["sum", "prod", "max", "min"])
def test_reductions_over_unit_dims_keep_exact_results(op, dtype):
    n = len(SPECIAL_FLOATS)
    g = parse(f"graph(%x: {dtype}[{n},1]) {{\n"
              f"  %r: {dtype}[{n}] = {op}(%x) {{dims=[1], keepdim=false}}\n  return %r\n}}")
    values = _special_values({"f32": np.float32, "f16": np.float16, "i64": np.int64,
                              "b8": np.int64}[dtype]).reshape(n, 1)
    values = values.astype(bool) if dtype == "b8" else values
    out = optimize(g)
    assert (out.outputs[0].op == "reshape") == (op != "sum" or not dtype.startswith("f"))
    assert_identical(interp.compile(g)([values])[0], interp.compile(out)([values])[0])
