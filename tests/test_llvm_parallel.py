"""A large plan compiled as several modules, some in worker processes (parallel.py):
same values as one module, workers that fail are replaced by compiling here, and the
disk cache holds all the object files of a plan."""
from __future__ import annotations

import numpy as np
import pytest

from graphc.backends import interp
from graphc.backends import llvm as L
from graphc.backends.llvm import cache, parallel
from graphc.ir import dtypes as dt
from graphc.passes.fusion import fuse
from graphc.testing import data, graph, inp, op

pytestmark = pytest.mark.usefixtures("private_cache")


def _many_kernels(n=30):
    """h <- tanh(h @ w) + h, n times: a GEMM and a pointwise kernel per step."""
    x, w = inp((8, 16), dt.float32, "x"), inp((16, 16), dt.float32, "w")
    h, outs = x, []
    for k in range(n):
        h = op("add", op("tanh", op("matmul", h, w)), h)
        outs.append(h)
    return graph([h] + outs[::7], [x, w])


def _inputs(seed):
    rng = np.random.default_rng(seed)
    return [data((8, 16), dt.float32, rng), data((16, 16), dt.float32, rng) * 0.1]


def test_split_is_contiguous_and_balanced():
    assert parallel.split([1] * 10, 1) == [(0, 10)]
    assert parallel.split([1] * 10, 2) == [(0, 5), (5, 10)]
    assert parallel.split([9, 1, 1, 1], 2) == [(0, 1), (1, 4)]
    parts = parallel.split([3, 1, 4, 1, 5, 9, 2, 6], 3)
    assert parts[0][0] == 0 and parts[-1][1] == 8 and len(parts) == 3
    assert all(a[1] == b[0] for a, b in zip(parts, parts[1:]))


def test_pack_round_trip_and_malformed_payloads():
    objs = [b"first object", b"", b"third"]
    assert cache.unpack(cache.pack(objs)) == objs
    packed = cache.pack(objs)
    assert cache.unpack(packed[:-1]) is None and cache.unpack(packed + b"x") is None
    assert cache.unpack(None) is None and cache.unpack(b"\0" * 8) is None


@pytest.mark.parametrize("workers", ["0", "1", "2"])
def test_several_modules_match_one(workers, monkeypatch):
    monkeypatch.setenv("GRAPHC_COMPILE_WORKERS", workers)
    g = _many_kernels()
    plan = fuse(g)
    assert len(plan.kernels) >= parallel.PARALLEL_MIN_KERNELS
    assert parallel.parts_for(len(plan.kernels)) == 1 + int(workers)
    ins = _inputs(0)
    got = L.compile_plan(plan, use_cache=False)(ins)
    want = interp.compile(g)(ins)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)
    if workers != "0":   # the workers answered and went back to the pool, alive
        assert sum(w.proc.poll() is None for w in parallel._pool) >= int(workers)


def test_a_failing_worker_is_replaced_by_compiling_here(monkeypatch):
    monkeypatch.setenv("GRAPHC_COMPILE_WORKERS", "1")

    def broken(self):
        raise RuntimeError("worker crashed")
    monkeypatch.setattr(parallel.Worker, "receive", broken)
    g = _many_kernels()
    ins = _inputs(1)
    got = L.compile_plan(fuse(g), use_cache=False)(ins)
    np.testing.assert_allclose(got[0], interp.compile(g)(ins)[0], rtol=2e-5, atol=2e-5)


def test_the_disk_cache_keeps_every_module(monkeypatch):
    monkeypatch.setenv("GRAPHC_COMPILE_WORKERS", "1")
    g = _many_kernels()
    ins = _inputs(2)
    first = L.compile_plan(fuse(g))(ins)
    hits = L.stats["disk_hits"]
    again = L.compile_plan(fuse(g))(ins)
    assert L.stats["disk_hits"] == hits + 1
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)


def test_a_forked_child_does_not_use_its_parents_workers(monkeypatch):
    monkeypatch.setenv("GRAPHC_COMPILE_WORKERS", "1")
    L.compile_plan(fuse(_many_kernels()), use_cache=False)
    inherited = list(parallel._pool)
    assert inherited
    monkeypatch.setattr(parallel.os, "getpid", lambda: -1)   # as seen from a fork
    started = []
    monkeypatch.setattr(parallel, "Worker", lambda: started.append(1) or inherited[0])
    taken = parallel._take(1)
    assert started == [1] and all(w not in parallel._pool for w in inherited[1:])
    parallel._give_back(taken)
    for w in inherited[1:]:   # really this process's: close what the test dropped
        w.close()


def test_workers_ignore_modules_in_the_working_directory(monkeypatch, tmp_path):
    """A worker started from a directory holding a script named like a module it
    imports runs graphc's imports, not that script (which here would write into the
    answer pipe)."""
    (tmp_path / "llvmlite.py").write_text("import sys\nsys.stdout.write('garbage' * 9)\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GRAPHC_COMPILE_WORKERS", "1")
    w = parallel.Worker()
    try:
        w.send("")
        assert w.receive() is not None   # an (empty) object file, not a protocol error
    finally:
        w.close()


def test_an_answer_that_is_not_one_is_a_worker_failure():
    class Garbage:
        stdout = __import__("io").BytesIO(b"garbage" * 9)
    w = parallel.Worker.__new__(parallel.Worker)
    w.proc = Garbage()
    with pytest.raises(RuntimeError, match="not an answer"):
        w.receive()
