"""Result dtypes exactly as PyTorch's: the three-tier promotion (dimensioned tensors,
zero-dim tensors, Python scalars), categories bool < int < float, comparisons giving
bool, reductions of ints and bools giving int64.

The tables run every operand combination through graphc and torch and compare the
result dtype (or that both refuse); dtypes are known without computing anything.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

import graphc as gc
from conftest import gc_dtype_name, run_both

DTYPES = ["bool", "uint8", "int32", "int64", "float16", "bfloat16", "float32", "float64"]
SCALARS = {"bool": True, "int": 3, "float": 2.5}
OPERANDS = [("tensor", d) for d in DTYPES] + [("zero_dim", d) for d in DTYPES] + \
    [("scalar", s) for s in SCALARS]


def _make(m, kind, name):
    if kind == "scalar":
        return SCALARS[name]
    return m.ones((2,) if kind == "tensor" else (), dtype=getattr(m, name))


def _dtype_or_error(fn, m, *operands):
    try:
        out = fn(m, *[_make(m, k, d) for k, d in operands])
    except (RuntimeError, TypeError, ValueError):
        return "error"
    return gc_dtype_name(out.dtype) if m is torch else out.dtype.name


BINARY = {
    "add": lambda m, a, b: a + b, "sub": lambda m, a, b: a - b, "mul": lambda m, a, b: a * b,
    "div": lambda m, a, b: a / b, "floordiv": lambda m, a, b: a // b,
    "mod": lambda m, a, b: a % b, "pow": lambda m, a, b: a ** b,
    "maximum": lambda m, a, b: m.maximum(a, b), "eq": lambda m, a, b: a == b,
    "lt": lambda m, a, b: a < b, "where": lambda m, a, b: m.where(m.ones(2, dtype=m.bool), a, b),
    "and": lambda m, a, b: a & b,
}


@pytest.mark.parametrize("op", list(BINARY))
def test_binary_result_dtype_table(op):
    fn = BINARY[op]
    mismatches = []
    for a in OPERANDS:
        for b in OPERANDS:
            if a[0] == b[0] == "scalar" or (op == "maximum" and "scalar" in (a[0], b[0])):
                continue
            want, got = _dtype_or_error(fn, torch, a, b), _dtype_or_error(fn, gc, a, b)
            if want != got:
                mismatches.append(f"{a} {op} {b}: torch {want}, graphc {got}")
    assert not mismatches, "\n".join(mismatches)


def test_promote_types_table():
    for a in DTYPES:
        for b in DTYPES:
            want = gc_dtype_name(torch.promote_types(getattr(torch, a), getattr(torch, b)))
            assert gc.promote_types(getattr(gc, a), getattr(gc, b)).name == want, (a, b)


def test_result_type_function():
    for a in OPERANDS:
        for b in OPERANDS:
            if a[0] == b[0] == "scalar":
                continue
            want = gc_dtype_name(torch.result_type(_make(torch, *a), _make(torch, *b)))
            assert gc.result_type(_make(gc, *a), _make(gc, *b)).name == want, (a, b)


UNARY = {
    "exp": lambda m, x: m.exp(x), "sqrt": lambda m, x: m.sqrt(x),
    "sigmoid": lambda m, x: m.sigmoid(x), "abs": lambda m, x: m.abs(x),
    "neg": lambda m, x: -x, "relu": lambda m, x: m.relu(x), "floor": lambda m, x: m.floor(x),
    "round": lambda m, x: m.round(x), "sign": lambda m, x: m.sign(x),
    "isnan": lambda m, x: m.isnan(x), "logical_not": lambda m, x: m.logical_not(x),
    "sum": lambda m, x: x.sum(), "sum_dim": lambda m, x: x.sum(0),
    "prod": lambda m, x: x.prod(), "mean": lambda m, x: x.mean(),
    "amax": lambda m, x: x.amax(), "max_dim": lambda m, x: x.max(0).values,
    "argmax": lambda m, x: x.argmax(), "cumsum": lambda m, x: m.cumsum(x, 0),
    "softmax": lambda m, x: m.softmax(x, 0), "var": lambda m, x: x.var(),
    "norm": lambda m, x: x.norm(), "all": lambda m, x: x.all(), "any": lambda m, x: x.any(0),
    "clamp_int_bound": lambda m, x: m.clamp(x, 0, 1),
    "clamp_float_bound": lambda m, x: m.clamp(x, 0.5),
    "masked_fill_float": lambda m, x: x.masked_fill(m.ones(2, dtype=m.bool), 1.5),
    "mul_int_scalar": lambda m, x: x * 2, "mul_float_scalar": lambda m, x: x * 2.0,
    "rtruediv": lambda m, x: 1 / x, "rpow_int": lambda m, x: 2 ** x,
}


@pytest.mark.parametrize("op", list(UNARY))
def test_unary_and_reduction_result_dtypes(op):
    fn = UNARY[op]
    mismatches = []
    for d in DTYPES:
        want = _dtype_or_error(fn, torch, ("tensor", d))
        got = _dtype_or_error(fn, gc, ("tensor", d))
        if want != got and not (want == "error" and (op, d) in _GRAPHC_IS_LENIENT):
            mismatches.append(f"{op}({d}): torch {want}, graphc {got}")
    assert not mismatches, "\n".join(mismatches)


# torch has no bool kernel for these; graphc computes them (identity, or int64 indices).
_GRAPHC_IS_LENIENT = {("abs", "bool"), ("relu", "bool"), ("floor", "bool"), ("round", "bool"),
                      ("argmax", "bool")}


# Values, not only dtypes, for the cases users meet most.
VALUE_CASES = [
    pytest.param(lambda m, x: x + 2.5, np.array([1, 2]), id="int_tensor_plus_float_scalar"),
    pytest.param(lambda m, x: x * 2, np.array([1.5], np.float16), id="half_times_int_scalar"),
    pytest.param(lambda m, x, y: x / y, np.array([7, -7]), np.array([2, 2]), id="int_div_int"),
    pytest.param(lambda m, x, y: x // y, np.array([7, -7]), np.array([2, 2]),
                 id="int_floordiv_int"),
    pytest.param(lambda m, x: x + 1, np.array([True, False]), id="bool_plus_int"),
    pytest.param(lambda m, x, y: x + y, np.array([True, False]), np.array([True, True]),
                 id="bool_plus_bool"),
    pytest.param(lambda m, x, y: x * y, np.array([True, False]), np.array([3, 4]),
                 id="bool_times_int_tensor"),
    pytest.param(lambda m, x, y: x + y, np.array([1.5], np.float16), np.array([1e-4], np.float32),
                 id="half_plus_float"),
    pytest.param(lambda m, x, y: x + y, np.array([1.5], np.float32), np.array(0.1, np.float64),
                 id="float_plus_zero_dim_double"),
    pytest.param(lambda m, x, y: x + y, np.array([1, 2]), np.array(0.5, np.float64),
                 id="int_plus_zero_dim_double"),
    pytest.param(lambda m, x, y: x + y, np.array([1, 2], np.int32), np.array(5),
                 id="int32_plus_zero_dim_int64"),
    pytest.param(lambda m, x, y: x + y, np.array(1, np.int32), np.array(5),
                 id="two_zero_dims"),
    pytest.param(lambda m, x: x + 2.5, np.array(3), id="zero_dim_int_plus_float"),
    pytest.param(lambda m, x, y: x < y, np.array([1, 5]), np.array([2.5, 2.5]),
                 id="compare_int_float"),
    pytest.param(lambda m, x: x.sum(), np.array([True, True, False]), id="sum_bool"),
    pytest.param(lambda m, x: x.sum(), np.array([2 ** 30, 2 ** 30], np.int32),
                 id="sum_int32_no_overflow"),
    pytest.param(lambda m, x: m.where(x > 1, x, 0.5), np.array([1, 2, 3]),
                 id="where_int_tensor_float_scalar"),
    pytest.param(lambda m, x: m.sqrt(x), np.array([4, 9]), id="sqrt_int"),
    pytest.param(lambda m, x: x ** 0.5, np.array([4, 9]), id="int_pow_float"),
    pytest.param(lambda m, x: x.to(m.int32) + x.to(m.uint8), np.array([200.0, 3.0]),
                 id="int32_plus_uint8"),
    pytest.param(lambda m, x: x.to(m.bfloat16) * 3, np.array([1.1, 2.3], np.float32),
                 id="bfloat16_times_int"),
    pytest.param(lambda m, x: x.to(m.bfloat16) * x.to(m.bfloat16), np.array([1.1, 2.3]),
                 id="bfloat16_times_bfloat16"),
    pytest.param(lambda m, x: x.to(m.bfloat16) + x.to(m.float16), np.array([1.1, 2.3]),
                 id="bfloat16_plus_half"),
]


@pytest.mark.parametrize("fn,inputs", [pytest.param(p.values[0], p.values[1:], id=p.id)
                                       for p in VALUE_CASES])
def test_promotion_values(fn, inputs):
    run_both(fn, *inputs)


@pytest.mark.parametrize("fn", [
    pytest.param(lambda m: m.tensor([True, False]) ** 2, id="bool_pow_int"),
    pytest.param(lambda m: m.tensor([1, 2], dtype=m.int32) ** 1, id="int32_pow_1"),
    pytest.param(lambda m: m.tensor([1, 2], dtype=m.int32) ** 2, id="int32_pow_2"),
    pytest.param(lambda m: m.tensor([1, 2], dtype=m.int32) ** 2.0, id="int32_pow_float"),
    pytest.param(lambda m: 3 / m.tensor([1, 2], dtype=m.int32), id="int_rdiv_int32"),
    pytest.param(lambda m: True / m.tensor([1., 2.], dtype=m.float16), id="bool_rdiv_half"),
    pytest.param(lambda m: m.tensor(np.float64(1.0)), id="tensor_np_float64"),
    pytest.param(lambda m: m.tensor([np.int32(1), np.int32(2)]), id="tensor_list_np_int32"),
    pytest.param(lambda m: m.tensor(np.array(2.0, dtype=np.float16)), id="tensor_np_0d_half"),
])
def test_shortcut_and_creation_dtypes_like_torch(fn):
    run_both(fn)
