"""Split kernels run on OpenBLAS's worker threads (blas_threads.py), one pool for the
GEMMs and graphc's own kernels; without them (unavailable, or GRAPHC_BLAS_THREADS=0)
on the executor's own pool. Either way the values are the interpreter's."""
from __future__ import annotations

import ctypes
import threading

import numpy as np
import pytest

from graphc.backends import interp
from graphc.backends import llvm as L
from graphc.backends.llvm import blas_threads, executor
from graphc.ir import dtypes as dt
from graphc.passes.fusion import fuse
from graphc.testing import data, graph, inp, op

pytestmark = pytest.mark.usefixtures("private_cache")

needs_blas_threads = pytest.mark.skipif(
    blas_threads.available() is None,
    reason="numpy's OpenBLAS has no blas_level1_thread here, or runs one thread")


def split_every_kernel(monkeypatch):
    """Split every kernel with an outer loop, in plans with and without a BLAS."""
    monkeypatch.setattr(executor, "PARALLEL_MIN_WORK", 1)
    monkeypatch.setattr(executor, "BLAS_PARALLEL_MIN_WORK", 1)


@needs_blas_threads
@pytest.mark.parametrize("extent,parts,grain", [(1000, 2, 64), (7, 2, 1), (129, 2, 64),
                                                (1, 2, 1), (64 * 40, 3, 64)])
def test_ranges_cover_the_loop_once_on_several_threads(extent, parts, grain, monkeypatch):
    """The trampoline hands each part of the split its own range: together they cover
    [0, extent) once, cut at whole grains, and more than one thread runs them."""
    monkeypatch.delenv("GRAPHC_BLAS_THREADS", raising=False)
    seen, threads = [], set()

    @executor.KERNEL_CFUNC
    def record(table, lo, hi, status):
        seen.append((lo, hi))
        threads.add(threading.get_ident())
    assert blas_threads.run_split(ctypes.cast(record, ctypes.c_void_p).value, None, None,
                                  extent, parts, grain)
    seen = sorted(r for r in seen if r[0] < r[1])
    assert seen[0][0] == 0 and seen[-1][1] == extent
    assert all(a[1] == b[0] for a, b in zip(seen, seen[1:]))
    assert all(lo % grain == 0 for lo, _ in seen)
    if extent >= 2 * grain:
        assert len(threads) > 1


@pytest.mark.parametrize("use_blas", ["1", "0"])
def test_split_kernels_match_the_interpreter(use_blas, monkeypatch, rng):
    """Every kernel split (split_every_kernel), including a reduction whose rows
    are divided and a kernel whose range starts inside a streaming tile."""
    split_every_kernel(monkeypatch)
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "2")
    monkeypatch.setenv("GRAPHC_BLAS_THREADS", use_blas)
    x, w = inp((300, 33), dt.float32, "x"), inp((33, 17), dt.float32, "w")
    h = op("tanh", op("matmul", x, w))
    s = op("sum", op("exp", x), dims=(1,), keepdim=False)
    g = graph([op("mul", h, h), s, op("add", x, x)], [x, w])
    ins = [data((300, 33), dt.float32, rng), data((33, 17), dt.float32, rng)]
    assert sum(len(r) > 1 for _, r in executor.schedule(fuse(g).kernels)) >= 2
    for got, want in zip(L.compile(g)(ins), interp.compile(g)(ins)):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_disabled_or_unavailable_falls_back_to_the_executor_pool(monkeypatch):
    monkeypatch.setenv("GRAPHC_BLAS_THREADS", "0")
    assert not blas_threads.run_split(0, None, None, 100, 2, 1)
    monkeypatch.delenv("GRAPHC_BLAS_THREADS")
    monkeypatch.setattr(blas_threads, "available", lambda: None)
    assert not blas_threads.run_split(0, None, None, 100, 2, 1)


def test_an_index_error_raised_on_a_worker_thread_reaches_the_caller(monkeypatch):
    """A kernel's status word is written by whichever thread finds the bad index."""
    split_every_kernel(monkeypatch)
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "2")
    x, i = inp((4000,), dt.float32, "x"), inp((4000,), dt.int64, "i")
    row = op("reshape", x, shape=(1, 4000))
    g = graph([op("gather", x, i, dim=0), op("matmul", row, op("permute", row, dims=(1, 0)))],
              [x, i])
    idx = np.zeros(4000, np.int64)
    idx[-1] = 4000     # out of range, in the second half of the loop
    assert any(len(r) == 2 for _, r in executor.schedule(fuse(g).kernels))
    with pytest.raises(IndexError):
        L.compile(g)([np.ones(4000, np.float32), idx])


def test_two_python_threads_running_split_kernels_at_once(monkeypatch, rng):
    """OpenBLAS takes concurrent callers (numpy relies on it); two executables split
    on its threads from two Python threads at once compute what each computes alone."""
    split_every_kernel(monkeypatch)
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "2")
    graphs, inputs, wants = [], [], []
    for k in range(2):
        x = inp((512, 64), dt.float32, "x")
        y = op("add", op("exp", op("mul", x, x)), x)
        g = graph([op("matmul", y, op("permute", x, dims=(1, 0)))], [x])
        a = data((512, 64), dt.float32, rng) * 0.5
        graphs.append(L.compile(g))
        inputs.append(a)
        wants.append(graphs[-1]([a])[0].copy())     # run alone first
        np.testing.assert_allclose(wants[-1], interp.compile(g)([a])[0], rtol=1e-3, atol=1e-2)
    errors = []

    def run(k):
        try:
            for _ in range(200):
                np.testing.assert_array_equal(graphs[k]([inputs[k]])[0], wants[k])
        except Exception as exc:      # reported below, on the main thread
            errors.append(exc)
    threads = [threading.Thread(target=run, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads) and errors == []


def test_only_a_plan_that_calls_a_blas_splits_on_its_threads(monkeypatch, rng):
    """OpenBLAS's workers spin for ~100 ms after any job: a plan with GEMMs makes them
    spin anyway, a plan without would wake them only for its own kernels."""
    split_every_kernel(monkeypatch)
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "2")
    calls = []
    real = blas_threads.run_split
    monkeypatch.setattr(blas_threads, "run_split", lambda *a: calls.append(a) or real(*a))
    x = inp((256, 32), dt.float32, "x")
    a = data((256, 32), dt.float32, rng)
    L.compile(graph([op("exp", x)], [x]))([a])
    assert calls == []
    L.compile(graph([op("exp", op("matmul", x, op("permute", x, dims=(1, 0))))], [x]))([a])
    assert calls


@needs_blas_threads
def test_a_plan_that_calls_a_blas_splits_smaller_kernels(monkeypatch):
    """On OpenBLAS's spinning workers a split costs microseconds and no GIL, so a
    plan with GEMMs splits kernels from BLAS_PARALLEL_MIN_WORK (an SGD update of a
    784x512 weight); a plan without keeps the executor pool's higher threshold."""
    monkeypatch.setenv("GRAPHC_NUM_THREADS", "2")
    assert executor.BLAS_PARALLEL_MIN_WORK < 784 * 512 < executor.PARALLEL_MIN_WORK
    w = inp((784, 512), dt.float32, "w")
    x = inp((4, 784), dt.float32, "x")
    update = op("mul", w, w)
    with_gemm = fuse(graph([update, op("matmul", x, w)], [w, x])).kernels
    without = fuse(graph([update], [w])).kernels

    def split(kernels):
        return [len(r) for _, r in executor.schedule(kernels) if len(r) > 1]
    assert split(with_gemm) == [2] and split(without) == []
    monkeypatch.setenv("GRAPHC_BLAS_THREADS", "0")
    assert split(with_gemm) == []
