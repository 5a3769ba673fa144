"""Plain copy stages (a materialized concat of buffers) compile to llvm.memcpy.

Before, each piece of a concat was an element loop that LLVM unrolled and vectorised:
the weight-gradient concat of a 25-step LSTM backward (25 pieces of 16x256) took 11 s
of LLVM time alone. These tests pin the run detection and the values.
"""
from __future__ import annotations

import numpy as np
import pytest

from graphc.backends import interp
from graphc.backends import kernel_ir as K
from graphc.backends import llvm as L
from graphc.backends.llvm.codegen import copy_run
from graphc.ir import dtypes as dt
from graphc.testing import data, graph, inp, op


def _store(dst_shape, dst_index, src_shape, src_index, inner, dtype=dt.float32,
           src_dtype=None):
    dst = K.Buffer("dst", dst_shape, dtype, "output")
    src = K.Buffer("src", src_shape, src_dtype or dtype, "input")
    return K.Store(dst, tuple(map(K.lin, dst_index)),
                   inner, K.Load(src, tuple(map(K.lin, src_index))))


def test_copy_run_finds_the_contiguous_trailing_loops():
    i, j = K.Var("i", 16), K.Var("j", 256)
    # a 16x256 piece into rows 32..47 of a 400x256 buffer: one run of 4096 elements
    assert copy_run(_store((400, 256), (K.lin(i) + 32, j), (16, 256), (i, j), (i, j))) == 2
    # a 16x64 piece into column block 3 of 16x(25*64): one run per row
    a, t = K.Var("a", 16), K.Var("t", 64)
    assert copy_run(_store((25, 16, 64), (3, a, t), (16, 64), (a, t), (a, t))) == 2
    assert copy_run(_store((16, 25 * 64), (a, K.lin(t) + 192), (16, 64), (a, t),
                           (a, t))) == 1
    # a transpose walks the source with stride 16: not a run
    assert copy_run(_store((256, 16), (j, i), (16, 256), (i, j), (i, j))) == 0
    # a conversion is not a copy
    assert copy_run(_store((16, 256), (i, j), (16, 256), (i, j), (i, j),
                           src_dtype=dt.float64)) == 0


@pytest.mark.parametrize("dim", [0, 1])
def test_concat_of_many_buffers_is_flat_loops_and_correct(dim):
    rng = np.random.default_rng(0)
    shape = (16, 64)
    xs = [inp(shape, dt.float32, f"x{k}") for k in range(25)]
    g = graph([op("concat", *xs, dim=dim)], xs)
    arrays = [data(shape, dt.float32, rng) for _ in xs]
    text = L.llvm_ir(g)
    # one memcpy per piece (dim 0: the whole piece; dim 1: per row), no element loops
    assert text.count('call void @"llvm.memcpy') == 25 and '%"k0p0t" = phi' not in text
    (got,) = L.compile_plan(L.fuse(g), use_cache=False)(arrays)
    np.testing.assert_array_equal(got, interp.compile(g)(arrays)[0])
