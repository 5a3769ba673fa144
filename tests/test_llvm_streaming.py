"""Streaming (non-temporal) stores and the buffer placement they rely on.

The LLVM backend writes large outputs with aligned non-temporal vector stores
(codegen.streaming_lanes / _LoopKernel._streamed_loop). Real sizes (32 MB and up) are
too slow for unit tests, so the size threshold is lowered here: every eligible store in
these small graphs streams, tiles and remainders included, and must still equal the
reference interpreter bit for bit.
"""
from __future__ import annotations

import os

import numpy as np
import pytest

from graphc.backends import interp
from graphc.backends import llvm as L
from graphc.backends.llvm import codegen, executor
from graphc.backends.llvm.executor import Executable
from graphc.ir import dtypes as dt
from graphc.passes.fusion import fuse
from graphc.testing import data, graph, inp, op


@pytest.fixture(autouse=True)
def _stream_everything(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHC_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(codegen, "STREAMING_MIN_BYTES", 0)


def same_as_interp(g, inputs, rtol=0.0):
    """Bit for bit, or within `rtol` where exp and a summation order are involved
    (the tolerance of tests/test_llvm_backend.py for float32 transcendentals)."""
    want = interp.compile(g)(inputs)
    got = L.compile(g)(inputs)
    for a, b in zip(got, want):
        assert a.shape == b.shape and a.dtype == b.dtype
        if rtol:
            np.testing.assert_allclose(a, b, rtol=rtol, atol=1e-7)
        else:
            np.testing.assert_array_equal(a, b)
    return got


def streamed_buffers(g):
    """Names of the buffers some store of `g`'s plan writes with streaming stores."""
    out = set()
    for k in fuse(g).kernels:
        for st in getattr(k, "stages", ()):
            if type(st).__name__ == "Store" and \
                    codegen.streaming_lanes(k, st, True):
                out.add(st.buffer.name)
    return out


@pytest.mark.skipif(not codegen._host_is_x86(), reason="streaming stores are x86-only")
def test_nontemporal_stores_reach_the_machine_code():
    x = inp((8, 64), dt.float32)
    g = graph([op("mul", x, x)], [x])
    assert streamed_buffers(g)
    assert "!nontemporal" in L.llvm_ir(g)


@pytest.mark.parametrize("shape", [(3, 16), (5, 37), (1, 1023), (2, 3, 48), (4, 15)])
@pytest.mark.parametrize("dtype", [dt.float32, dt.float64, dt.float16, dt.int32, dt.uint8,
                                   dt.bool_, dt.bfloat16], ids=lambda d: d.name)
def test_streamed_elementwise_matches_interp(shape, dtype, rng):
    """Tiles of 64 bytes (16 floats, 8 doubles, 32 halves, 64 bytes) plus a remainder,
    and rows whose length is not a multiple of a tile (no streaming: a row would start
    off a 64-byte boundary)."""
    x = inp(shape, dtype, "x")
    y = inp(shape, dtype, "y")
    fn = "logical_xor" if dtype.is_bool else "maximum" if dtype.short == "u8" else "add"
    g = graph([op(fn, x, y)], [x, y])
    same_as_interp(g, [data(shape, dtype, rng), data(shape, dtype, rng)])


def test_rowwise_kernel_with_streamed_output(rng):
    """A reduction prologue and a streamed epilogue in one kernel (softmax's shape)."""
    x = inp((6, 80), dt.float32)
    m = op("max", x, dims=(1,), keepdim=True)
    e = op("exp", op("sub", x, op("expand", m, shape=(6, 80))))
    s = op("sum", e, dims=(1,), keepdim=True)
    g = graph([op("div", e, op("expand", s, shape=(6, 80)))], [x])
    assert streamed_buffers(g)
    same_as_interp(g, [data((6, 80), dt.float32, rng)], rtol=4e-6)


def test_transposed_and_strided_stores_do_not_stream(rng):
    x = inp((32, 48), dt.float32)
    t = op("permute", x, dims=(1, 0))
    g = graph([op("neg", t)], [x])
    # the output itself is contiguous; what matters is that every result is right
    same_as_interp(g, [data((32, 48), dt.float32, rng)])
    sl = op("slice", x, starts=(0, 1), stops=(32, 48), steps=(1, 3))
    g2 = graph([op("neg", sl)], [x])
    same_as_interp(g2, [data((32, 48), dt.float32, rng)])


def test_in_place_input_buffers_never_stream():
    """A store into a graph input (an in-place update) may not be 64-byte aligned."""
    from graphc.backends import kernel_ir as K
    v = K.Var("i", 64)
    buf = K.Buffer("p", (64,), dt.float32, "input")
    st = K.Store(buf, (K.lin(v),), (v,), K.Const(1.0, dt.float32))
    assert codegen.streaming_lanes(K.Kernel("k", (), [st]), st, True) == 0
    out = K.Store(K.Buffer("o", (64,), dt.float32, "output"), (K.lin(v),), (v,),
                  K.Const(1.0, dt.float32))
    assert codegen.streaming_lanes(K.Kernel("k", (), [out]), out, False) == 0


def test_output_blocks_are_aligned_and_placed_in_their_page():
    pool = []
    small = Executable._output_array(pool, (3, 5), np.float32, 60)
    assert small.ctypes.data % executor.ALIGN == 0
    big_shape = (executor.PAGE_OFFSET_MIN_BYTES // 4 + 7,)
    big = Executable._output_array([], big_shape, np.float32, big_shape[0] * 4)
    assert big.ctypes.data % executor.PAGE == executor.PAGE_OFFSET
    assert big.shape == big_shape and big.flags.c_contiguous and big.flags.writeable


def test_output_pool_reuses_only_unreferenced_blocks():
    pool = []
    a = Executable._output_array(pool, (4, 4), np.float32, 64)
    a[:] = 1
    row = a[0]          # a view keeps the block alive through its base
    del a
    b = Executable._output_array(pool, (4, 4), np.float32, 64)
    assert not np.shares_memory(b, row)
    del row, b
    c = Executable._output_array(pool, (4, 4), np.float32, 64)
    assert any(np.shares_memory(c, aligned) for _, aligned in pool)
    assert len(pool) <= executor.OUTPUT_POOL_DEPTH


def test_exported_code_never_assumes_alignment():
    """An exported library's caller owns its buffers: no streaming stores there."""
    from graphc.backends.llvm import aot
    x = inp((8, 64), dt.float32)
    prog = aot.lower(graph([op("mul", x, x)], [x]))
    assert "nontemporal" not in str(prog.module)


def test_threshold_is_respected(monkeypatch):
    monkeypatch.setattr(codegen, "STREAMING_MIN_BYTES", 1 << 30)
    x = inp((8, 64), dt.float32)
    assert not streamed_buffers(graph([op("mul", x, x)], [x]))


if os.environ.get("GRAPHC_BACKEND") == "interp":   # pragma: no cover
    pytestmark = pytest.mark.skip(reason="LLVM backend tests")


@pytest.mark.parametrize("n", [100, 300, 1001])
def test_thread_ranges_split_streamed_loops_anywhere(n, monkeypatch, rng):
    """Thread ranges that start inside a tile: plain stores up to the first whole tile,
    then tiles, then plain stores again."""
    monkeypatch.setattr(executor, "PARALLEL_MIN_WORK", 1)
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "3")
    x = inp((n,), dt.float32)
    g = graph([op("mul", op("add", x, x), x)], [x])
    assert len(executor.schedule(fuse(g).kernels)[0][1]) == 3
    same_as_interp(g, [data((n,), dt.float32, rng)])


def test_row_kernels_prefetch_the_next_row_and_compute_exp_once(rng):
    """softmax: the output stage asks for the next row's input while it works from
    cache, and reads exp(x - max) back from the row the sum stage kept, instead of
    computing the exponential a second time."""
    x = inp((6, 96), dt.float32)
    m = op("max", x, dims=(1,), keepdim=True)
    e = op("exp", op("sub", x, op("expand", m, shape=(6, 96))))
    s = op("sum", e, dims=(1,), keepdim=True)
    g = graph([op("mul", e, op("expand", op("reciprocal", s), shape=(6, 96)))], [x])
    text = L.llvm_ir(g)
    assert "llvm.prefetch" in text
    assert text.count('call float @"graphc_expf"') == 1
    same_as_interp(g, [data((6, 96), dt.float32, rng)], rtol=4e-6)
