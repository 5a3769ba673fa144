"""The oracles of the Triton checks (graphc/backends/triton/checks.py), against PyTorch.

Two checks failed on the first GPU run for want of the right oracle, not of right
kernels:
  * a float16 sum of 2000 values: the reference interpreter's numpy rounds to float16
    after every addition along a non-contiguous axis; PyTorch (and graphc's kernels)
    accumulate in float32 and round once. The check now compares with the exactly
    rounded sum (`checks.exactly_rounded`) within one unit in the last place;
  * float32 matmuls with K = 300 and 1025 missed rtol = atol = 1e-5 by summation order
    alone; the check now uses an error bound growing with sqrt(K)
    (`checks.matmul_error_bound`) that still rejects TF32 inputs.
"""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")   # as test_triton_backend.py: before triton

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from graphc.backends import triton as T  # noqa: E402
from graphc.backends.triton import checks, loader  # noqa: E402
from graphc.backends.triton.devices import InterpreterDevice  # noqa: E402
from graphc.ir import dtypes as dt  # noqa: E402

inp, op, graph = checks.inp, checks.op, checks.graph


def _column_sum(d, shape):
    x = inp(shape, d)
    return graph([op("sum", x, dims=(0,), keepdim=False)], [x])


def _interpreter():
    if loader.process_mode() != "interpret":
        pytest.skip("triton was imported in compile mode before this module")
    return InterpreterDevice(
        lambda a, p: torch.from_numpy(a).view(torch.bfloat16) if p == "*bf16"
        else torch.from_numpy(a))


def test_float16_sums_are_rounded_once_like_pytorch():
    shape = (2000, 6)
    x = (np.random.default_rng(0).standard_normal(shape) * 2).astype(np.float16)
    exact = x.astype(np.float64).sum(0).astype(np.float16)
    reference = checks.exactly_rounded(_column_sum(dt.float64, shape), dt.float16)
    (ref,) = reference([x])
    assert ref.dtype == np.float16
    np.testing.assert_array_equal(ref, exact)
    rtol, atol = checks.ulp_tolerance(dt.float16, atol=1e-3)
    pytorch = torch.from_numpy(x).sum(0).numpy()       # float32 accumulation
    np.testing.assert_allclose(pytorch.astype(np.float64), exact.astype(np.float64),
                               rtol=rtol, atol=atol)
    case = checks.Case("column-sum-float16", _column_sum(dt.float16, shape), [x], rtol, atol,
                       reference=reference)
    got = T.compile(case.graph, device=_interpreter())(case.inputs)
    checks.verify(case, got, checks.expected(case))


def test_bfloat16_reference_rounds_inputs_as_stored():
    """bfloat16 inputs arrive as float32 arrays; the device stores them rounded."""
    x = np.array([[1.0 + 3 * 2.0 ** -9], [-1.0]], np.float32)   # 1 + 3/512: no bfloat16
    (ref,) = checks.exactly_rounded(_column_sum(dt.float64, (2, 1)), dt.bfloat16)([x])
    # stored as 1 + 1/128 (the nearest bfloat16), so the sum is 1/128, not 3/512
    np.testing.assert_array_equal(ref, np.array([2.0 ** -7], np.float32))


def _sequential_float32_matmul(a, b):
    """Another summation order than BLAS: one FMA-free float32 addition per k."""
    acc = np.zeros(a.shape[:-1] + b.shape[-1:], np.float32)
    for k in range(a.shape[-1]):
        acc = acc + a[..., :, k:k + 1] * b[..., k:k + 1, :]
    return acc


def _tf32(x):
    """float32 values with 10 explicit mantissa bits (TF32 tensor core inputs)."""
    bits = x.astype(np.float32).view(np.uint32)
    return ((bits + 0x1000) & np.uint32(0xFFFFE000)).view(np.float32)


def test_matmul_error_bound_grows_with_k_and_rejects_tf32():
    rng = np.random.default_rng(3)
    k = 1025
    a = (rng.standard_normal((1, 48, k)) * 2).astype(np.float32)
    b = (rng.standard_normal((1, k, 24)) * 2).astype(np.float32)
    want = np.matmul(a, b)
    reordered = _sequential_float32_matmul(a, b)
    (bound,) = checks.matmul_error_bound(dt.float32, k)([a, b])
    checks.within_bound(reordered, want, bound, "reordered float32 sum")
    # the former fixed tolerance rejected correct float32 results: order alone
    assert not np.allclose(reordered, want, rtol=1e-5, atol=1e-5)
    tf32 = np.matmul(_tf32(a).astype(np.float64), _tf32(b).astype(np.float64))
    with pytest.raises(AssertionError, match="exceed the error bound"):
        checks.within_bound(tf32.astype(np.float32), want, bound, "tf32")


def test_matmul_cases_carry_the_bound_and_verify_uses_it():
    rng = np.random.default_rng(4)
    case = checks.matmul(dt.float32, rng, 6, 300, 5, 2)
    assert case.error_bound is not None
    want = checks.expected(case)
    checks.verify(case, [_sequential_float32_matmul(*case.inputs)], want)
    bad = want[0].copy()
    bad[1, 2, 3] += 1e-2
    with pytest.raises(AssertionError, match=r"1 of 60 elements.*worst at \(1, 2, 3\)"):
        checks.verify(case, [bad], want)
    with pytest.raises(AssertionError, match="dtype"):
        checks.verify(case, [want[0].astype(np.float64)], want)
    assert checks.matmul(dt.bfloat16, rng).error_bound is None   # 16-bit: rtol/atol
