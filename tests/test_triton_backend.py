"""The Triton backend without a GPU.

Numerics: the generated kernels run in Triton's CPU interpreter (an InterpreterDevice
whose array carrier is torch.from_numpy: torch in tests only) and are compared with the
reference interpreter on the corpus of graphc/backends/triton/checks.py (every op and
dtype; tolerances stated there), on every block-size configuration of the main kernel
kinds, on forward+backward graphs, on MLP/CNN/LSTM training steps through the runtime,
and on random graphs (hypothesis).

Compilation: every generated kernel (and every candidate configuration of the
benchmark-sized ones) compiles ahead of time for Hopper (sm_90) to PTX and cubin, in a
subprocess: Triton decides interpreter-or-compiler once per process, when triton is
first imported, from TRITON_INTERPRET (set below, before anything imports triton).
"""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")   # before the first `import triton`

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

import graphc as gc  # noqa: E402
from graphc.backends import interp  # noqa: E402
from graphc.backends import triton as T  # noqa: E402
from graphc.backends.triton import checks, executor, loader, values  # noqa: E402
from graphc.backends.triton.devices import InterpreterDevice  # noqa: E402
from graphc.cuda.allocator import CachingAllocator, size_class  # noqa: E402
from graphc.ir import dtypes as dt  # noqa: E402
from graphc.ir.registry import all_ops  # noqa: E402
from graphc.passes.autodiff import grad_graph  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
from graphc.testing import data, graph, inp, op, random_graphs  # noqa: E402
from conftest import tensor_graph  # noqa: E402


def carrier(array, pointer_type):
    """numpy view -> torch CPU tensor without a copy (bfloat16 arrives as uint16)."""
    t = torch.from_numpy(array)
    return t.view(torch.bfloat16) if pointer_type == "*bf16" else t


MODE = loader.process_mode()
interpreted = pytest.mark.skipif(
    MODE != "interpret", reason="triton was imported in compile mode before this module; "
    "test_rerun_in_an_interpreter_process runs these tests in a fresh process")


_DEVICE = []


def _shared_device():
    if not _DEVICE:
        _DEVICE.append(InterpreterDevice(carrier))
    return _DEVICE[0]


@pytest.fixture
def device():
    return _shared_device()


# compiled kernels go to a cache directory of this module's own (tests/conftest.py)
pytestmark = pytest.mark.usefixtures("private_cache")


def run_case(case, device, choose_config=None):
    want = checks.expected(case)
    got = T.compile(case.graph, device=device, choose_config=choose_config)(case.inputs)
    checks.verify(case, got, want)
    return got


CORPUS = checks.corpus()


# ----------------------------------------------------------------------------- every op

@interpreted
@pytest.mark.parametrize("k", range(len(CORPUS)), ids=[c.name for c in CORPUS])
def test_corpus_matches_reference(k, device):
    if CORPUS[k].interpreter_note:
        pytest.skip(CORPUS[k].interpreter_note + " (compiled for sm_90 below; run on a GPU "
                    "by benchmarks/gpu_check.py)")
    run_case(CORPUS[k], device)


def test_every_registered_op_is_in_the_corpus():
    missing = set(all_ops()) - checks.COVERED_OPS
    assert not missing, f"ops without a Triton check: {sorted(missing)}"


# ----------------------------------------------------------------------------- configurations



MODELS = {
    "softmax": lambda x, w: gc.softmax(x @ w, dim=1),
    "log_softmax_nll": lambda x, w: -gc.log_softmax(x @ w, dim=1)[:, 0].mean(),
    "layernorm": lambda x, w: ((x - x.mean(1, keepdim=True)) /
                               (x.var(1, keepdim=True, unbiased=False) + 1e-5).sqrt()) @ w,
    "gelu_mlp": lambda x, w: gc.nn.functional.gelu(x @ w + 1.0).sum(0),
    "tanh_sigmoid": lambda x, w: (x.tanh() * w.t()[:1].sigmoid()).sum(),
    "cross_entropy": lambda x, w: gc.nn.functional.cross_entropy(
        x @ w, gc.tensor(np.array([0, 4, 1, 3, 2, 0]))),
    # a materialized concat: one store stage (one launch) per piece
    "concat_pieces": lambda x, w: gc.cat([x @ w, x[:, :2].exp(), x[:, 5:]], 1),
    # a column sum and an update that reads it: the sweep with a trailing store
    "column_sum_update": lambda x, w: ((x @ w).sum(0), (x @ w).sum(0) * 0.1 + w[0]),
}


def _config_cases():
    """Kernels whose candidates cover both tiled paths: rows of 2500 get a one-chunk and
    a looped (chunks of 2048) row configuration, 33 x 70 column sums column tiles."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2500)).astype(np.float32)
    w = rng.standard_normal(2500).astype(np.float32)
    y = np.array([0, 2499, 7])
    F = gc.nn.functional
    fns = {"softmax": (lambda x: gc.softmax(x, dim=1), [x]),
           "layernorm": (lambda x, w: F.layer_norm(x, (2500,), w, w), [x, w]),
           "cross_entropy": (lambda x: F.cross_entropy(x, gc.tensor(y)), [x])}
    out = []
    for name, (fn, arrays) in fns.items():
        g, ins = tensor_graph(fn, arrays)
        out.append(checks.Case(f"{name}-fwd", g, ins, 2e-5, 2e-5))
        bg = grad_graph(g)
        seeds = [rng.standard_normal(o.shape).astype(np.float32) for o in g.outputs]
        out.append(checks.Case(f"{name}-bwd", bg, ins + seeds, 5e-5, 5e-5))
    col = inp((33, 70), dt.float32)
    out.append(checks.Case("column-sum", graph([op("sum", col, dims=(0,), keepdim=False)],
                                               [col]), [data((33, 70), dt.float32, rng)],
                           2e-6, 2e-6))
    out.append(checks.matmul(dt.float32, rng, 40, 33, 20, 1))
    out.append(checks.matmul(dt.bfloat16, rng, 40, 33, 20, 1))
    out.append(checks.matmul_f16_epilogue(rng, 40, 33, 20))
    flat = inp((3000,), dt.float32)
    out.append(checks.Case("gelu-flat", graph([op("gelu", flat)], [flat]),
                           [data((3000,), dt.float32, rng)], 4e-6, 1e-6))
    return out


CONFIG_CASES = _config_cases()


@interpreted
@pytest.mark.parametrize("k", range(len(CONFIG_CASES)), ids=[c.name for c in CONFIG_CASES])
def test_every_candidate_configuration(k, device):
    """Each launch runs with its j-th candidate (the last one when it has fewer): every
    configuration the autotuner may pick computes the same values."""
    case = CONFIG_CASES[k]
    _, _, generated = T.plan(case.graph)
    most = max(len(launch.configs) for launch in generated.launches)
    tiled = [launch for launch in generated.launches if launch.kind == "tiled"]
    if case.name.split("-")[0] in ("softmax", "layernorm", "cross_entropy", "column"):
        assert any({c["ONE_CHUNK"] for c in t.configs} == {True, False} for t in tiled)
    for j in range(most):
        run_case(case, device, lambda launch, j=j: launch.configs[min(j, len(launch.configs)
                                                                      - 1)])


def test_configurations_are_valid():
    from graphc.backends.triton import configs as C
    for n in (1, 7, 1000, 1 << 24):
        for c in C.flat(n):
            assert c["BLOCK"] & (c["BLOCK"] - 1) == 0 and c["BLOCK"] >= 16
    for no, ni, contig in ((1, 1, True), (4096, 4096, True), (70, 33, False), (1, 1 << 24, True),
                           (64, 1, True), (1 << 20, 3, False)):
        cands = C.reduction(no, ni, contig)
        assert 1 <= len(cands) <= 6
        for c in cands:
            assert c["ONE_CHUNK"] == (c["BI"] >= ni) and c["BO"] * c["BI"] <= 16384
    for m, n, k, b in ((4096, 4096, 4096, 2), (5, 3, 7, 4), (1, 1, 1, 8), (128, 784, 512, 4)):
        for c in C.gemm(m, n, k, b):
            assert min(c["BM"], c["BN"], c["BK"]) >= 16


# ----------------------------------------------------------------------------- graphs

@interpreted
@pytest.mark.parametrize("name", sorted(MODELS))
def test_forward_and_backward_graphs(name, device):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((6, 8)).astype(np.float32)
    w = rng.standard_normal((8, 5)).astype(np.float32)
    g, ins = tensor_graph(MODELS[name], [x, w])
    run_case(checks.Case(name, g, ins, 2e-5, 2e-5), device)
    bg = grad_graph(g)
    seeds = [rng.standard_normal(o.shape).astype(np.float32) for o in g.outputs]
    run_case(checks.Case(name + "-grad", bg, ins + seeds, 5e-5, 5e-5), device)


@interpreted
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(random_graphs([dt.float32, dt.float64, dt.float16]))
def test_random_graphs_match_reference(case):
    device = _shared_device()
    g, dtype, seed = case
    rng = np.random.default_rng(seed)
    ins = [(rng.standard_normal(n.shape) * 0.5).astype(dtype.np) for n in g.inputs]
    t = {dt.float32: 1e-4, dt.float64: 1e-10, dt.float16: 1e-2}[dtype]
    run_case(checks.Case("random", g, ins, t, t), device)


# ----------------------------------------------------------------------------- training steps

def _mlp_step(model_seed):
    gc.manual_seed(model_seed)
    model = gc.nn.Sequential(gc.nn.Linear(12, 16), gc.nn.ReLU(), gc.nn.Linear(16, 5))
    x = gc.tensor(np.random.default_rng(0).standard_normal((8, 12)).astype(np.float32))
    y = gc.tensor(np.array([0, 1, 2, 3, 4, 0, 1, 2]))
    return model, lambda: gc.nn.functional.cross_entropy(model(x), y)


def _cnn_step(model_seed):
    gc.manual_seed(model_seed)
    model = gc.nn.Sequential(gc.nn.Conv2d(2, 4, 3, padding=1), gc.nn.ReLU(),
                             gc.nn.MaxPool2d(2), gc.nn.Flatten(), gc.nn.Linear(4 * 3 * 3, 3))
    x = gc.tensor(np.random.default_rng(0).standard_normal((2, 2, 6, 6)).astype(np.float32))
    y = gc.tensor(np.array([0, 2]))
    return model, lambda: gc.nn.functional.cross_entropy(model(x), y)


def _lstm_step(model_seed):
    gc.manual_seed(model_seed)
    lstm = gc.nn.LSTM(3, 4)
    head = gc.nn.Linear(4, 2)
    model = gc.nn.ModuleList([lstm, head])
    x = gc.tensor(np.random.default_rng(0).standard_normal((5, 2, 3)).astype(np.float32))

    def loss():
        out, _ = lstm(x)
        return (head(out[-1]) ** 2).mean()
    return model, loss


def _train(make, backend, monkeypatch, steps=2, after_step=None):
    monkeypatch.setenv("GRAPHC_BACKEND", backend)
    model, loss_fn = make(0)
    opt = gc.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
        if after_step is not None:
            after_step(model)
    return losses, [p.detach().numpy().copy() for p in model.parameters()]


@interpreted
@pytest.mark.parametrize("make", [_mlp_step, _cnn_step, _lstm_step],
                         ids=["mlp", "cnn", "lstm"])
def test_training_steps_through_the_runtime(make, device, monkeypatch):
    """A whole training loop with GRAPHC_BACKEND=triton (kernels in the interpreter)
    takes the same steps as the reference interpreter."""
    from graphc import runtime
    old = T.set_default_device(device)
    uploads, per_step, resident = [], [], []
    real_upload = device.upload

    def counting_upload(block, host):
        uploads.append(host.nbytes)
        real_upload(block, host)

    def after_step(model):
        per_step.append(sum(uploads))
        uploads.clear()
        resident.append(all(type(p._node.data) is T.DeviceArray for p in model.parameters()))
    monkeypatch.setattr(device, "upload", counting_upload)
    try:
        got_losses, got_params = _train(make, "triton", monkeypatch, steps=3,
                                        after_step=after_step)
    finally:
        T.set_default_device(old)
        monkeypatch.undo()
    assert any(k[0] == "triton" for k in runtime._cache)
    want_losses, want_params = _train(make, "interp", monkeypatch, steps=3)
    np.testing.assert_allclose(got_losses, want_losses, rtol=2e-5, atol=1e-6)
    for g, w in zip(got_params, want_params):
        np.testing.assert_allclose(g, w, rtol=2e-5, atol=2e-6)
    # every step leaves the parameters on the device, and the next step reads them (and
    # the momentum buffers) there: it uploads only the batch and the scalars
    param_bytes = sum(w.nbytes for w in want_params)
    assert resident == [True, True, True]
    assert per_step[1] < param_bytes and per_step[2] < param_bytes, per_step


# ----------------------------------------------------------------------------- runtime behaviour

@interpreted
def test_out_of_range_index_raises_and_recovers(device):
    x, idx = inp((5, 7), dt.float32, "x"), inp((5, 3), dt.int64, "idx")
    exe = T.compile(graph([op("gather", x, idx, dim=1)], [x, idx]), device=device)
    with pytest.raises(IndexError, match="out of range"):
        exe([np.ones((5, 7), np.float32), np.full((5, 3), 7, np.int64)])
    (ok,) = exe([np.ones((5, 7), np.float32), np.zeros((5, 3), np.int64)])
    assert ok.shape == (5, 3)


@interpreted
def test_failed_value_check_raises_its_message_and_recovers(device):
    """A `check` fused into a reduction's loop: a bad element in any program's block
    reports the check's own message (not an index error), and the next run is clean."""
    n = 1000
    x = inp((n,), dt.float32)
    zero = op("expand", op("reshape", op("const", value=0.0, dtype=dt.float32), shape=(1,)),
              shape=(n,))
    checked = op("check", x, op("ge", x, zero), message="x must be non-negative")
    exe = T.compile(graph([op("sum", op("mul", checked, x), dims=(0,), keepdim=False)], [x]),
                    device=device)
    good = np.arange(n, dtype=np.float32)
    for at in (0, 517, n - 1):
        bad = good.copy()
        bad[at] = -1
        with pytest.raises(RuntimeError, match="x must be non-negative"):
            exe([bad])
    (total,) = exe([good])
    np.testing.assert_allclose(np.asarray(total), np.sum(good.astype(np.float64) ** 2),
                               rtol=1e-6)


@interpreted
def test_outputs_stay_on_the_device_until_read(device, monkeypatch):
    import gc as pygc
    x = inp((64,), dt.float32)
    exe = T.compile(graph([op("exp", x)], [x]), device=device)
    a = np.linspace(-1, 1, 64).astype(np.float32)
    downloads = []
    real_download = device.download
    monkeypatch.setattr(device, "download",
                        lambda blk, n: downloads.append(n) or real_download(blk, n))
    (y,) = exe([a])
    assert type(y) is T.DeviceArray and y.shape == (64,) and y.dtype == np.float32
    assert downloads == []                    # nothing crossed the bus yet
    blocks = device.allocator.stats["raw_allocs"] + device.allocator.stats["reuses"]
    (z,) = exe([y])                           # y's block is bound: no upload block
    assert device.allocator.stats["raw_allocs"] + device.allocator.stats["reuses"] == \
        blocks + 1                            # only z's own block
    np.testing.assert_allclose(np.asarray(z), np.exp(np.exp(a)), rtol=1e-6)
    assert downloads == [256]
    host = np.asarray(z)
    assert host is np.asarray(z) and not host.flags.writeable    # copied once, read-only
    before = device.allocator.allocated_bytes
    del y, z
    pygc.collect()
    assert device.allocator.allocated_bytes == before - 2 * size_class(64 * 4)
    monkeypatch.setenv("GRAPHC_TRITON_RESIDENT", "0")
    held = device.allocator.allocated_bytes
    (w,) = exe([a])                           # copied back, every block given back
    assert type(w) is np.ndarray and device.allocator.allocated_bytes == held


@interpreted
def test_device_values_spill_to_the_host_under_memory_pressure(device):
    x = inp((300,), dt.bfloat16)
    exe = T.compile(graph([op("neg", x)], [x]), device=device)
    a = interp.round_to_bfloat16(np.linspace(-3, 3, 300).astype(np.float32))
    (y,) = exe([a])
    (kept,) = exe([a])
    with values.pinned([kept]):               # a run reading `kept` is in flight
        assert values.spill_all(device) >= 1
    assert y.block_on(device) is None and kept.block_on(device) is not None
    np.testing.assert_array_equal(np.asarray(y), -a)    # the value survives the spill
    (z,) = exe([y])                           # a spilled value is uploaded again
    np.testing.assert_array_equal(np.asarray(z), a)
    moved = values.to_device(a, dt.bfloat16, device)
    np.testing.assert_array_equal(np.asarray(moved), a)
    assert "DeviceArray(shape=[300]" in repr(moved)
    # copies share the value; pickling stores it as a host array
    import copy
    import pickle
    assert copy.copy(moved) is moved and copy.deepcopy([moved])[0] is moved
    back = pickle.loads(pickle.dumps(moved))
    assert type(back) is np.ndarray and back.flags.writeable
    np.testing.assert_array_equal(back, a)


@interpreted
def test_tf32_flag_reaches_float32_gemms(device):
    a, b = inp((20, 30), dt.float32, "a"), inp((30, 10), dt.float32, "b")
    g = graph([op("matmul", a, b)], [a, b])
    launch = T.plan(g)[2].launches[0]
    assert "PREC" in launch.constexprs and dict(launch.extra_constexprs)["PREC"] == "ieee"
    exe = T.compile(g, device=device)
    rng = np.random.default_rng(0)
    ins = [data((20, 30), dt.float32, rng), data((30, 10), dt.float32, rng)]
    want = interp.compile(g)(ins)
    gc.cuda.matmul.allow_tf32 = True
    try:
        got = exe(ins)
    finally:
        gc.cuda.matmul.allow_tf32 = False
    assert set(exe._steps) == {"tf32"}
    np.testing.assert_allclose(got[0], want[0], rtol=1e-2, atol=1e-2)


def test_device_layout_round_trip():
    a = interp.round_to_bfloat16(np.random.default_rng(0).standard_normal(33).astype(np.float32))
    raw = values.to_device_layout(a, dt.bfloat16)
    assert raw.dtype == np.uint16 and raw.nbytes == 66
    back = values.from_device_layout(raw.view(np.uint8), a.shape, dt.bfloat16)
    np.testing.assert_array_equal(back, a)
    b = np.array([True, False, True])
    np.testing.assert_array_equal(
        values.from_device_layout(values.to_device_layout(b, dt.bool_).view(np.uint8),
                                    (3,), dt.bool_), b)


def test_caching_allocator_reuses_and_recovers_from_oom():
    live, freed = [], []

    def raw_alloc(n):
        if sum(live) + n > 4096:
            raise MemoryError
        live.append(n)
        return n, 1000 + len(live)

    def raw_free(n):
        live.remove(n)
        freed.append(n)

    alloc = CachingAllocator(raw_alloc, raw_free)
    b1 = alloc.allocate(100)
    assert b1.nbytes == 512 and alloc.allocated_bytes == 512
    alloc.release(b1)
    b2 = alloc.allocate(300)                    # same size class: the cached block
    assert b2 is b1 and alloc.stats["reuses"] == 1
    with pytest.raises(ValueError, match="twice"):
        alloc.release(b2) or alloc.release(b2)
    held = alloc.allocate(2048)
    dropped = []

    def drop_mirrors():
        dropped.append(1)
        if held.in_use:
            alloc.release(held)
    alloc.pressure.append(drop_mirrors)
    big = alloc.allocate(3500)                  # frees the cache, then asks the mirrors
    assert dropped == [1] and big.nbytes == 3584 and alloc.reserved_bytes == 3584
    with pytest.raises(MemoryError):
        alloc.allocate(4000)
    assert dropped == [1, 1] and alloc.allocated_bytes == 3584


class _TimedInterpreter(InterpreterDevice):
    """An interpreter device that pretends to time kernels: BLOCK=2048 is 'fastest'."""
    can_time = True
    name = "fake-timed-device"

    def __init__(self):
        super().__init__(carrier)
        self.timed = []

    def time(self, fn, reps):
        fn()
        cfg = self.current
        self.timed.append(cfg)
        return 1.0 if cfg["BLOCK"] == 2048 else 2.0

    def run(self, fn, launch, cfg, args):
        self.current = cfg
        super().run(fn, launch, cfg, args)


@interpreted
def test_autotuning_picks_the_fastest_and_caches_it(monkeypatch):
    monkeypatch.setattr(executor, "AUTOTUNE_MIN_WORK", 1)
    dev = _TimedInterpreter()
    x = inp((5000,), dt.float32)
    g = graph([op("neg", x)], [x])
    a = np.arange(5000, dtype=np.float32)
    exe = T.compile(g, device=dev)
    np.testing.assert_array_equal(exe([a])[0], -a)
    assert exe.tuning[0][1]["BLOCK"] == 2048 and exe.tuning[0][2].startswith("tuned")
    assert len(dev.timed) == len(T.plan(g)[2].launches[0].configs)
    exe2 = T.compile(g, device=dev)            # a new executable: the winner from disk
    exe2([a])
    assert exe2.tuning[0][2] == "tuned (cached)" and len(dev.timed) == 4
    monkeypatch.setenv("GRAPHC_TRITON_AUTOTUNE", "0")
    exe3 = T.compile(g, device=dev)
    exe3([a])
    assert exe3.tuning[0][2] == "heuristic"


def test_binary_cache_rejects_corrupt_entries():
    meta = {"name": "k", "num_warps": 4, "shared": 0}
    loader.store_binary("abc", meta, b"\x7fELF-cubin-bytes")
    got = loader.load_binary("abc")
    assert got[1] == b"\x7fELF-cubin-bytes" and got[0]["name"] == "k"
    path = os.path.join(loader.cache_dir(), "bin", "abc.cubin")
    with open(path, "r+b") as f:
        f.write(b"X")
    assert loader.load_binary("abc") is None
    assert loader.load_binary("missing") is None


def test_mode_mismatch_is_a_clear_error():
    other = MODE == "interpret"
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1 must be set"):
        loader.load_module(T.triton_source(graph([op("neg", inp((3,), dt.float32))],
                                                 [inp((3,), dt.float32)])) + "\n# x",
                           interpret=not other)


# ----------------------------------------------------------------------------- source, CLI,
# registry

def test_triton_source_text():
    x = inp((64, 48), dt.float32)
    text = T.triton_source(graph([op("exp", op("sum", x, dims=(1,), keepdim=False))], [x]))
    assert text.count("@triton.jit\ndef gc_tiled_") == 1
    assert "libdevice" in text and "ONE_CHUNK: tl.constexpr" in text
    portable = T.triton_source(graph([op("exp", x)], [x]), variant="portable")
    assert "libdevice" not in portable
    compile(text, "<generated>", "exec")        # valid Python


def test_registered_and_selectable_by_name(monkeypatch, device):
    from graphc import backends
    assert "triton" in backends.available() and backends.get_backend("triton") is T
    if MODE != "interpret":
        return
    monkeypatch.setenv("GRAPHC_BACKEND", "triton")
    old = T.set_default_device(device)
    try:
        a = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
        got = (gc.tensor(a).exp() * 2).sum(1).numpy()
    finally:
        T.set_default_device(old)
    np.testing.assert_allclose(got, (np.exp(a) * 2).sum(1), rtol=1e-6)


def test_dump_ir_stage_triton(tmp_path):
    src = tmp_path / "model.py"
    src.write_text("import graphc as gc\n\ndef f(x):\n    return gc.softmax(x, dim=1)\n")
    r = subprocess.run([sys.executable, "-m", "graphc", "dump-ir", f"{src}:f", "--input",
                        "x:f32[4,8]", "--stage", "triton"], cwd=ROOT, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "@triton.jit" in r.stdout and "gc_tiled_" in r.stdout


def test_no_gpu_is_a_clear_error_and_changes_nothing():
    if gc.cuda.is_available():
        pytest.skip("this machine has a GPU")
    assert gc.cuda.device_count() == 0 and gc.cuda.memory_allocated() == 0
    old = T.set_default_device(None)
    try:
        usable, why = T.available()
    finally:
        T.set_default_device(old)
    assert not usable and "no usable CUDA GPU" in why
    with pytest.raises(RuntimeError, match="no GPU backend is available"):
        gc.zeros(2).cuda()
    with pytest.raises(RuntimeError, match="no GPU backend is available"):
        gc.device("cuda")._check_usable()
    old = T.set_default_device(None)
    try:
        with pytest.raises(RuntimeError, match="needs a CUDA GPU"):
            T.compile(graph([op("neg", inp((3,), dt.float32))], [inp((3,), dt.float32)]))
    finally:
        T.set_default_device(old)
    assert os.environ.get("GRAPHC_BACKEND") != "triton"


CUDA_H = [p for p in ("/usr/local/cuda/include/cuda.h", "/usr/include/cuda.h") +
          tuple(f"/usr/local/cuda-{v}/include/cuda.h" for v in ("13.0", "12.8", "12.6", "12.4"))
          if os.path.exists(p)]


@pytest.mark.skipif(not CUDA_H, reason="no cuda.h on this machine")
def test_driver_prototypes_match_cuda_h():
    """Every symbol the ctypes binding calls is what cuda.h maps its public name to
    (the _v2 entry points), with the header's number of arguments."""
    import re
    from graphc.cuda.driver import PROTOTYPES
    header = open(CUDA_H[0], encoding="utf-8", errors="replace").read()
    macros = {k: v for k, v in re.findall(
        r"#define\s+(cu\w+)\s+(?:__CUDA_API_\w+\()?(cu\w+)\)?", header) if k != v}
    public = {v: k for k, v in macros.items()}
    for symbol, argtypes in PROTOTYPES.items():
        name = public.get(symbol, symbol)
        if name != symbol:
            assert macros[name] == symbol
        else:
            assert symbol not in macros, f"{symbol} is a macro for {macros[symbol]}"
        m = re.search(r"CUresult CUDAAPI " + name + r"\(([^)]*)\);", header)
        assert m, f"{name} not declared in cuda.h"
        args = [a for a in m.group(1).split(",") if a.strip() and a.strip() != "void"]
        assert len(args) == len(argtypes), f"{symbol}: {len(args)} args in cuda.h"


# ----------------------------------------------------------------------------- ahead of time

AOT_SCRIPT = textwrap.dedent("""
    import json, os, sys, time
    import numpy as np
    from graphc.backends import triton as T
    from graphc.backends.triton import checks, loader
    from graphc.ir import dtypes as dt
    inp, op, graph = checks.inp, checks.op, checks.graph
    assert loader.process_mode() == "compile"
    graphs = [c.graph for c in checks.corpus()]
    sys.path.insert(0, os.path.join(os.getcwd(), "tests"))
    # benchmark-sized kernels: every candidate configuration (what autotuning times)
    x = inp((4096, 4096), dt.float32)
    big = [graph([op("exp", op("sub", x, op("expand", op("max", x, dims=(1,), keepdim=True),
                                       shape=(4096, 4096))))], [x]),
           graph([op("gelu", op("add", op("mul", inp((1 << 24,), dt.float32, "a"),
                                          inp((1 << 24,), dt.float32, "b")),
                                inp((1 << 24,), dt.float32, "c")))],
                 [inp((1 << 24,), dt.float32, "a")]),
           graph([op("sum", x, dims=(0,), keepdim=False)], [x])]
    for d in (dt.float32, dt.bfloat16, dt.float16):
        a, b = inp((4096, 4096), d, "a"), inp((4096, 4096), d, "b")
        big.append(graph([op("matmul", a, b)], [a, b]))
    seen, failures, tf32 = {}, [], 0
    t0 = time.time()
    for g, every in [(g, False) for g in graphs] + [(g, True) for g in big]:
        gen = T.plan(g)[2]
        mod = loader.load_module(gen.module_text("device"), interpret=False)
        for launch in gen.launches:
            cfgs = launch.configs if every else [launch.configs[0]] + [
                c for c in launch.configs[1:] if launch.kind == "tiled"
                and c["ONE_CHUNK"] != launch.configs[0]["ONE_CHUNK"]][:1]
            variants = [launch]
            if "PREC" in launch.constexprs and every:
                import dataclasses
                variants.append(dataclasses.replace(launch, extra_constexprs=(("PREC", "tf32"),)))
            for lv in variants:
                for cfg in cfgs:
                    key = (lv.name, cfg, lv.extra_constexprs)
                    if key in seen:
                        continue
                    try:
                        ck = loader.compile_launch(mod, lv, cfg, 90)
                        assert ck.asm["cubin"] and ".entry" in ck.asm["ptx"]
                        assert ck.metadata.shared <= 228 * 1024, ck.metadata.shared
                        seen[key] = ck.metadata.shared
                        tf32 += dict(lv.extra_constexprs).get("PREC") == "tf32"
                    except Exception as e:
                        failures.append(f"{lv.name} {cfg.describe()}: {e}")
                        seen[key] = None
    print(json.dumps({"compiled": len(seen) - len(failures), "failures": failures[:5],
                      "tf32": tf32, "seconds": time.time() - t0}))
""")


def test_every_kernel_compiles_for_hopper():
    """triton.compile reaches PTX and a cubin for sm_90 without a GPU, for every launch
    of the corpus (heuristic config, plus the other ONE_CHUNK branch) and every candidate
    configuration of benchmark-sized kernels, tf32 variants included."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    r = subprocess.run([sys.executable, "-c", AOT_SCRIPT], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    assert not report["failures"], report["failures"]
    assert report["compiled"] >= 150 and report["tf32"] >= 3, report


def test_rerun_in_an_interpreter_process():
    """When another module imported triton in compile mode first, the interpreter tests
    above were skipped: run them here in a process of their own."""
    if MODE == "interpret":
        return
    env = dict(os.environ, TRITON_INTERPRET="1")
    r = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider",
                        os.path.abspath(__file__), "-k", "not hopper and not rerun"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-3000:]


# ----------------------------------------------------------------------------- a fake driver

FAKE_LIBCUDA = r"""
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
typedef int CUresult;
static int launches, nparams = 0, last_grid, last_block, last_shared, allocs, attr_set;
static uint64_t last_params[16];
static size_t limit = (size_t)1 << 34, in_use;
static const char *last_fn;
int fake_launches(void) { return launches; }
int fake_last_grid(void) { return last_grid; }
int fake_last_block(void) { return last_block; }
int fake_allocs(void) { return allocs; }
int fake_attr_set(void) { return attr_set; }
uint64_t fake_param(int i) { return last_params[i]; }
const char *fake_last_function(void) { return last_fn; }
void fake_set_nparams(int n) { nparams = n; }
void fake_set_limit(size_t n) { limit = n; }
CUresult cuInit(unsigned f) { return 0; }
CUresult cuDriverGetVersion(int *v) { *v = 12080; return 0; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return 0; }
CUresult cuDeviceGet(int *d, int o) { *d = 0; return o == 0 ? 0 : 101; }
CUresult cuDeviceGetName(char *s, int n, int d) { strncpy(s, "graphc fake GPU", n); return 0; }
CUresult cuDeviceGetAttribute(int *v, int a, int d) {
  *v = a == 75 ? 9 : a == 76 ? 0 : a == 97 ? 232448 : a == 16 ? 132 : 0; return 0; }
CUresult cuDeviceTotalMem_v2(size_t *b, int d) { *b = limit; return 0; }
CUresult cuDevicePrimaryCtxRetain(void **c, int d) { *c = (void *)1; return 0; }
CUresult cuCtxSetCurrent(void *c) { return 0; }
CUresult cuCtxSynchronize(void) { return 0; }
CUresult cuMemGetInfo_v2(size_t *f, size_t *t) { *f = limit - in_use; *t = limit; return 0; }
CUresult cuMemAlloc_v2(uint64_t *p, size_t n) {
  if (in_use + n > limit) return 2;
  void *m = aligned_alloc(256, (n + 255) / 256 * 256); if (!m) return 2;
  in_use += n; allocs++; *p = (uint64_t)m; return 0; }
CUresult cuMemFree_v2(uint64_t p) { free((void *)p); return 0; }
CUresult cuMemcpyHtoD_v2(uint64_t d, const void *s, size_t n) { memcpy((void *)d, s, n); return 0; }
CUresult cuMemcpyDtoH_v2(void *d, uint64_t s, size_t n) { memcpy(d, (void *)s, n); return 0; }
CUresult cuMemcpyDtoD_v2(uint64_t d, uint64_t s, size_t n) {
  memcpy((void *)d, (void *)s, n); return 0; }
CUresult cuMemsetD8_v2(uint64_t d, unsigned char c, size_t n) { memset((void *)d, c, n); return 0; }
CUresult cuModuleLoadData(void **m, const void *image) {
  if (memcmp(image, "\x7f" "ELF", 4) != 0) return 200;   /* CUDA_ERROR_INVALID_IMAGE */
  *m = (void *)2; return 0; }
CUresult cuModuleGetFunction(void **f, void *m, const char *name) {
  last_fn = strdup(name); *f = (void *)3; return 0; }
CUresult cuModuleUnload(void *m) { return 0; }
CUresult cuFuncSetAttribute(void *f, int a, int v) { attr_set = v; return 0; }
CUresult cuLaunchKernel(void *f, unsigned gx, unsigned gy, unsigned gz, unsigned bx,
                        unsigned by, unsigned bz, unsigned sh, void *st, void **params,
                        void **extra) {
  launches++; last_grid = gx; last_block = bx; last_shared = sh;
  for (int i = 0; i < nparams && i < 16; i++) last_params[i] = *(uint64_t *)params[i];
  return 0; }
CUresult cuEventCreate(void **e, unsigned f) { *e = malloc(8); return 0; }
CUresult cuEventRecord(void *e, void *s) { return 0; }
CUresult cuEventSynchronize(void *e) { return 0; }
CUresult cuEventElapsedTime_v2(float *ms, void *a, void *b) { *ms = 1.0f; return 0; }
CUresult cuEventDestroy_v2(void *e) { free(e); return 0; }
CUresult cuGetErrorName(int c, const char **s) {
  *s = c == 2 ? "CUDA_ERROR_OUT_OF_MEMORY" : "CUDA_ERROR_FAKE"; return 0; }
CUresult cuGetErrorString(int c, const char **s) { *s = "fake driver error"; return 0; }
"""

FAKE_SCRIPT = textwrap.dedent("""
    import ctypes, json, os, sys
    import numpy as np
    import graphc as gc
    from graphc.backends import triton as T
    from graphc.backends.triton import checks, loader, executor
    from graphc.ir import dtypes as dt
    fake = ctypes.CDLL(os.environ["GRAPHC_LIBCUDA"])
    fake.fake_param.restype = ctypes.c_uint64
    fake.fake_last_function.restype = ctypes.c_char_p
    out = {}
    out["available"] = gc.cuda.is_available() and T.available()[0]
    out["count"] = gc.cuda.device_count()
    out["name"] = gc.cuda.get_device_name()
    out["capability"] = list(gc.cuda.get_device_capability())
    x = gc.zeros(3)
    out["to_cuda_is_self"] = x.cuda() is x
    out["backend"] = os.environ.get("GRAPHC_BACKEND")
    try:
        gc.device("cuda:1")._check_usable()
    except RuntimeError as e:
        out["ordinal_error"] = str(e)
    dev = T.default_device()
    blk = dev.allocator.allocate(4000)
    data = np.arange(1000, dtype=np.float32)
    dev.upload(blk, data)
    out["round_trip"] = bool((dev.download(blk, 4000).view(np.float32) == data).all())
    dev.allocator.release(blk)
    if sys.argv[1] == "second":   # the cubin must come from the disk cache
        def refuse(*a, **k):
            raise AssertionError("compiled again despite the disk cache")
        loader.compile_launch = refuse
    inp, op, graph = checks.inp, checks.op, checks.graph
    a = inp((1000,), dt.float32)
    fake.fake_set_nparams(4)
    exe = T.compile(graph([op("neg", a)], [a]))
    (y,) = exe([data])
    launch = exe.generated.launches[0]
    cfg = exe.tuning[0][1]
    out["launches"] = fake.fake_launches()
    out["grid_ok"] = fake.fake_last_grid() == launch.grid(cfg)[0]
    out["block_ok"] = fake.fake_last_block() == 32 * cfg.num_warps
    out["function"] = fake.fake_last_function().decode()
    out["scratch"] = [fake.fake_param(2), fake.fake_param(3)]
    resident = y.block_on(dev)
    out["output_param_is_resident"] = resident is not None and \
        fake.fake_param(1) == resident.address
    (z,) = exe([y])
    out["input_param_is_resident"] = fake.fake_param(0) == resident.address
    out["y"] = [list(y.shape), str(y.dtype), bool(np.asarray(y).flags.writeable)]
    w = gc.tensor(data)
    w.cuda()                    # a realized value moves to the device once, in place
    out["moved"] = [type(w._node.data) is T.DeviceArray, bool((w.numpy() == data).all())]
    gc.cuda.synchronize()
    out["allocated"] = gc.cuda.memory_allocated() > 0
    # autotuning on "device" events: every candidate compiled, timed, the winner stored
    big = inp((1 << 21,), dt.float32)
    fake.fake_set_nparams(4)
    exe2 = T.compile(graph([op("exp", big)], [big]))
    exe2([np.zeros(1 << 21, np.float32)])
    out["tuning"] = exe2.tuning[0][2]
    # a GEMM needing more than 48 KiB of shared memory opts in to the maximum
    m = inp((512, 512), dt.bfloat16, "m")
    fake.fake_set_nparams(4)    # m (both operands), the product, two scratch pointers
    os.environ["GRAPHC_TRITON_AUTOTUNE"] = "0"
    exe3 = T.compile(graph([op("matmul", m, m)], [m]))
    exe3([np.ones((512, 512), np.float32)])
    out["gemm_shared_optin"] = fake.fake_attr_set()
    # out of memory: the allocator drops cached blocks and mirrors, then raises clearly
    fake.fake_set_limit(1 << 20)
    huge = inp((1 << 23,), dt.float32)
    try:
        T.compile(graph([op("neg", huge)], [huge]))([np.zeros(1 << 23, np.float32)])
    except MemoryError as e:
        out["oom"] = str(e)
        out["cache_emptied"] = dev.allocator.stats["raw_frees"] > 0
    print(json.dumps(out))
""")


@pytest.mark.skipif(not any(os.access(os.path.join(p, "gcc"), os.X_OK)
                            for p in os.environ.get("PATH", "").split(os.pathsep)),
                    reason="no C compiler to build the fake driver")
def test_gpu_path_against_a_fake_driver(tmp_path):
    """The GPU-only code (ctypes driver binding, CudaDevice, cubin loading and parameter
    packing, autotuning on events, shared-memory opt-in, out-of-memory handling, the cubin
    disk cache across processes) against a stand-in libcuda.so that keeps "device" memory
    in host memory and records launches instead of running them."""
    src = tmp_path / "fakecuda.c"
    src.write_text(FAKE_LIBCUDA)
    lib = tmp_path / "libcuda.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", "-O1", "-o", str(lib), str(src)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET",
                                                            "GRAPHC_BACKEND")}
    env.update(GRAPHC_LIBCUDA=str(lib), GRAPHC_CACHE_DIR=str(tmp_path / "cache"))
    results = []
    for run in ("first", "second"):
        r = subprocess.run([sys.executable, "-c", FAKE_SCRIPT, run], cwd=ROOT, env=env,
                           capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stderr[-3000:]
        results.append(json.loads(r.stdout.strip().splitlines()[-1]))
    out = results[0]
    assert out["available"] and out["count"] == 1 and out["name"] == "graphc fake GPU"
    assert out["capability"] == [9, 0] and out["to_cuda_is_self"]
    assert out["backend"] == "triton" and "device 1" in out["ordinal_error"]
    assert out["round_trip"] and out["launches"] == 1 and out["grid_ok"] and out["block_ok"]
    assert out["function"].startswith("gc_flat_") and out["scratch"] == [0, 0]
    assert out["output_param_is_resident"] and out["input_param_is_resident"]
    assert out["y"] == [[1000], "float32", False] and out["allocated"]
    assert out["moved"] == [True, True]
    assert out["tuning"].startswith("tuned") and out["gemm_shared_optin"] > 48 * 1024
    assert "CUDA_ERROR_OUT_OF_MEMORY" in out["oom"] and out["cache_emptied"]
    assert results[1]["tuning"] == "tuned (cached)" and results[1]["launches"] == 1
    # the GPU check script's own GPU path (numbers meaningless: kernels do not run)
    out_json = tmp_path / "gpu.json"
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_check.py"),
                        "--tiny", "--skip", "checks,training,torch-compile", "--out",
                        str(out_json)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    res = json.loads(out_json.read_text())
    assert res["env"]["card"] == "graphc fake GPU" and res["copy_method"] == "cuMemcpyDtoD"
    assert all("error" not in b for b in res["bench"]), res["bench"]


def test_gpu_check_dry_run(tmp_path):
    """benchmarks/gpu_check.py's benchmark, report and JSON code runs (in the interpreter,
    tiny sizes): the script a GPU machine runs has no untested path but the GPU's own."""
    out = tmp_path / "gpu.json"
    env = {k: v for k, v in os.environ.items() if k != "GRAPHC_BACKEND"}
    r = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "gpu_check.py"),
                        "--dry-run", "--skip", "checks,training,torch-compile", "--out",
                        str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    res = json.loads(out.read_text())
    names = [b["name"] for b in res["bench"]]
    assert len(names) == 7 and any(n.startswith("MLP step") for n in names), names
    assert all("error" not in b for b in res["bench"]), res["bench"]
    assert "graphc kern ms" in r.stdout and res["env"]["dry_run"]
