"""GPU check of graphc's Triton backend: correctness on the card, then benchmarks.

    python benchmarks/gpu_check.py              # on a machine with an NVIDIA GPU
    python benchmarks/gpu_check.py --quick      # smaller benchmark sizes, fewer repeats
    python benchmarks/gpu_check.py --dry-run    # no GPU: Triton's CPU interpreter, tiny
                                                # sizes, every code path of this script
    python benchmarks/gpu_check.py --tiny       # on a GPU: tiny sizes, a smoke test
    python benchmarks/gpu_check.py --only float64,where --skip training,bench
                                                # just the correctness cases whose
                                                # names contain one of the words

Installs nothing. Needs numpy, triton and graphc's own dependencies; PyTorch with CUDA
(and torch.compile) only for the peer columns, which say why when they are missing.

1. correctness: every case of graphc/backends/triton/checks.py (every op and dtype, the
   tolerances stated there) and larger shapes (multi-chunk rows, column reductions,
   GEMM edges), on the GPU against the reference interpreter on the CPU; the status
   word (an out-of-range index and a failed value check each raise their own error);
   MLP, CNN, LSTM and attention + AdamW training steps through the runtime
   (GRAPHC_BACKEND=triton) against the CPU.
2. benchmarks: gelu(x*w+b) over 16M float32, softmax and layer norm over 4096x4096,
   matmul 4096^3 in bfloat16/float16 (float32 too), an MLP training step at batch 128;
   graphc's kernel time (inputs on the device, device events) and end-to-end time
   (host arrays in and out, what a lazy realization costs) beside PyTorch eager CUDA and
   torch.compile; achieved bandwidth against a measured device copy and FLOP rate
   against torch.matmul.

The table is printed last; everything goes to benchmarks/results/gpu-<card>.json (the
dry run writes to a temporary directory unless --out is given). Exit status 1 when a
correctness check failed.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dry-run", action="store_true",
                   help="no GPU: run every code path in Triton's interpreter, tiny sizes")
    p.add_argument("--quick", action="store_true", help="smaller sizes, fewer repetitions")
    p.add_argument("--tiny", action="store_true",
                   help="tiny sizes (what --dry-run uses): a smoke test, not numbers")
    p.add_argument("--out", help="where to write the JSON results")
    p.add_argument("--skip", default="", help="comma list of sections to skip: "
                   "checks,training,bench,torch-compile")
    p.add_argument("--only", default="", help="comma list of words: run only the "
                   "correctness cases whose names contain one of them")
    return p.parse_args(argv)


ARGS = parse_args() if __name__ == "__main__" else None
if ARGS is not None and ARGS.dry_run:
    os.environ["TRITON_INTERPRET"] = "1"   # before anything imports triton
sys.path.insert(0, ROOT)

import numpy as np  # noqa: E402

import graphc as gc  # noqa: E402
from graphc import runtime  # noqa: E402
from graphc.backends import triton as T  # noqa: E402
from graphc.backends.triton import checks  # noqa: E402
from graphc.benchsuite.workloads.nn_training import NNMLPStep, train_step  # noqa: E402
from graphc.ir import dtypes as dt  # noqa: E402
from graphc.ir.graph import Graph  # noqa: E402
from graphc.passes.autodiff import grad_graph  # noqa: E402
from graphc.passes.pipeline import optimize  # noqa: E402

inp, op, graph = checks.inp, checks.op, checks.graph


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ----------------------------------------------------------------------------- environment

class Env:
    """The device graphc runs on, and PyTorch's CUDA when present."""

    def __init__(self, dry_run):
        self.dry_run = dry_run
        self.torch = None
        self.torch_cuda = False
        self.notes = []
        try:
            import torch
            self.torch = torch
            self.torch_cuda = bool(torch.cuda.is_available()) and not dry_run
        except Exception as e:   # noqa: BLE001 (any import failure means "no torch")
            self.notes.append(f"PyTorch unavailable: {e!r}")
        if dry_run:
            if self.torch is None:
                raise SystemExit("--dry-run needs torch (CPU) as the interpreter's array "
                                 "carrier")
            from graphc.backends.triton.devices import InterpreterDevice
            torch = self.torch

            def carrier(a, ptype):
                t = torch.from_numpy(a)
                return t.view(torch.bfloat16) if ptype == "*bf16" else t
            self.device = InterpreterDevice(carrier)
            T.set_default_device(self.device)
            self.card = "dry-run (Triton interpreter)"
            self.arch = 0
        else:
            if not gc.cuda.is_available():
                from graphc.device import cuda_unavailable_reason
                raise SystemExit(f"no usable GPU: {cuda_unavailable_reason()} (use --dry-run "
                                 f"to check this script without one)")
            self.device = T.default_device()
            self.card = self.device.name
            self.arch = self.device.arch

    def describe(self) -> dict:
        import triton
        d = {"card": self.card, "arch": self.arch, "dry_run": self.dry_run,
             "python": platform.python_version(), "numpy": np.__version__,
             "triton": triton.__version__, "graphc": gc.__version__,
             "torch": getattr(self.torch, "__version__", None), "torch_cuda": self.torch_cuda,
             "host": platform.node(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
        if not self.dry_run:
            drv = self.device.drv
            d["sm_count"] = drv.attribute(16)
            d["memory_gib"] = round(drv.total_memory() / 2 ** 30, 1)
        return d


# ----------------------------------------------------------------------------- correctness

def tensor_graph(fn, arrays):
    """The optimized graph of fn over tensors made from arrays, and its inputs."""
    ts = [gc.tensor(a) for a in arrays]
    outs = fn(*ts)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    g, boundary = Graph.from_outputs([o._node for o in outs],
                                     boundary=lambda n: n.data is not None)
    return optimize(g), [n.data for n in boundary]


def larger_cases(scale):
    """Shapes the tiny corpus does not reach: rows longer than one chunk, column
    reductions, GEMM edges and batches. `scale` < 1 shrinks them (dry run)."""
    rng = np.random.default_rng(7)
    s = lambda n: max(2, int(n * scale))   # noqa: E731
    out = []
    for cols in (s(3000), s(20000)):
        x = rng.standard_normal((s(300), cols)).astype(np.float32)
        g, ins = tensor_graph(lambda t: gc.softmax(t, dim=1), [x])
        out.append(checks.Case(f"softmax-{x.shape[0]}x{cols}", g, ins, 1e-5, 1e-6))
        w = rng.standard_normal(cols).astype(np.float32)
        g, ins = tensor_graph(lambda t, w: gc.nn.functional.layer_norm(t, (cols,), w, w),
                              [x, w])
        out.append(checks.Case(f"layernorm-{x.shape[0]}x{cols}", g, ins, 1e-4, 1e-4))
    for d in (dt.float32, dt.float16, dt.bfloat16):
        shape = (s(2000), s(777))
        a = checks.data(shape, d, rng)

        def build(dtype, shape=shape):
            x = inp(shape, dtype)
            return graph([op("sum", x, dims=(0,), keepdim=False),
                          op("max", x, dims=(1,), keepdim=True)], [x])
        if d.short == "f32":
            out.append(checks.Case(f"reduce-{d.name}-{shape}", build(d), [a], 1e-5, 1e-4))
        else:   # 16-bit sums: the exactly rounded sum (see checks.py), within one ulp
            out.append(checks.Case(f"reduce-{d.name}-{shape}", build(d), [a],
                                   *checks.ulp_tolerance(d, atol=1e-3),
                                   reference=checks.exactly_rounded(build(dt.float64), d)))
    for d in (dt.float32, dt.bfloat16, dt.float16):
        out.append(checks.matmul(d, rng, s(513), s(1025), s(257), 1))
        out.append(checks.matmul(d, rng, s(70), s(300), s(33), 3))
    # a materialized concat (one launch per piece) and a column sum whose update reads
    # it (the sweep with trailing stores), forward and backward
    x = rng.standard_normal((s(600), s(300))).astype(np.float32)
    w = rng.standard_normal((s(300), s(200))).astype(np.float32)
    for name, fn in (("concat-pieces",
                      lambda x, w: gc.cat([x @ w, x[:, :7].exp(), x[:, 5:]], 1)),
                     ("column-sum-update",
                      lambda x, w: ((x @ w).sum(0), (x @ w).sum(0) * 0.1 + w[0]))):
        g, ins = tensor_graph(fn, [x, w])
        out.append(checks.Case(f"{name}-{x.shape}", g, ins, 1e-4, 1e-4))
        bg = optimize(grad_graph(g))
        seeds = [rng.standard_normal(o.shape).astype(np.float32) for o in g.outputs]
        out.append(checks.Case(f"{name}-grad-{x.shape}", bg, ins + seeds, 1e-4, 1e-4))
    n = s(1 << 20)
    xs = [inp((n,), dt.float32, k) for k in "xwb"]
    out.append(checks.Case(f"gelu-chain-{n}", graph([op("gelu", op("add", op("mul", xs[0], xs[1]),
                                                                         xs[2]))], xs),
                           [rng.standard_normal(n).astype(np.float32) for _ in xs], 4e-6, 1e-6))
    return out


def max_abs_err(got, want) -> float:
    """Largest |got - want| over finite entries (NaN/inf placement is checked by compare)."""
    err = 0.0
    with np.errstate(all="ignore"):
        for a, b in zip(got, want):
            d = np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))
            d = d[np.isfinite(d)]
            if d.size:
                err = max(err, float(d.max()))
    return err


def run_checks(env, results, scale, only=()):
    cases = checks.corpus() + larger_cases(scale)
    if only:
        cases = [c for c in cases if any(w in c.name for w in only)]
    log(f"correctness: {len(cases)} cases on {env.card}")
    for case in cases:
        if env.dry_run and case.interpreter_note:
            results["notes"].append(f"{case.name} not run: {case.interpreter_note}")
            continue
        t0 = time.perf_counter()
        rec = {"name": case.name}
        try:
            want = checks.expected(case)
            got = T.compile(case.graph, device=env.device)(case.inputs)
            rec["max_abs_err"] = max_abs_err(got, want)
            checks.verify(case, got, want)
            rec["ok"] = True
        except Exception as e:   # noqa: BLE001 (record it, keep checking)
            rec["ok"] = False
            rec["error"] = f"{type(e).__name__}: {str(e)[:1500]}"
            log(f"  FAILED {case.name}: {rec['error'][:300]}")
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        results["checks"].append(rec)
    ran = results["checks"]
    log(f"correctness: {sum(r['ok'] for r in ran)}/{len(ran)} passed")
    run_status_errors(env, results)


def run_status_errors(env, results, n=1 << 20):
    """The status word on the card: an out-of-range gather index raises IndexError, a
    failed value check its own message, wherever in a large launch the bad element is;
    the next clean run succeeds."""
    x, idx = inp((n,), dt.float32, "x"), inp((n,), dt.int64, "idx")
    zero = op("expand", op("reshape", op("const", value=0.0, dtype=dt.float32), shape=(1,)),
              shape=(n,))
    checked = op("check", x, op("ge", x, zero), message="x must be non-negative")
    g = graph([op("sum", op("gather", checked, idx, dim=0), dims=(0,), keepdim=False)],
              [x, idx])
    good_x = np.arange(n, dtype=np.float32) % 97
    good_i = (np.arange(n, dtype=np.int64) * 7) % n
    want = float(np.sum(good_x[good_i].astype(np.float64)))
    rec = {"name": "status-errors"}
    try:
        exe = T.compile(g, device=env.device)
        for at in (0, n // 3, n - 1):
            bad_i, bad_x = good_i.copy(), good_x.copy()
            bad_i[at], bad_x[at] = n, -1.0
            for inputs, error, text in (([good_x, bad_i], IndexError, "out of range"),
                                        ([bad_x, good_i], RuntimeError, "non-negative")):
                try:
                    exe(inputs)
                    raise AssertionError(f"no {error.__name__} for a bad element at {at}")
                except error as e:
                    assert text in str(e), str(e)
            (got,) = exe([good_x, good_i])
            assert abs(float(np.asarray(got)) - want) <= 1e-6 * abs(want), (got, want)
        rec["ok"] = True
    except Exception as e:   # noqa: BLE001 (record it, keep checking)
        rec.update(ok=False, error=f"{type(e).__name__}: {str(e)[:1500]}")
        log(f"  FAILED status-errors: {rec['error'][:300]}")
    results["checks"].append(rec)


# ----------------------------------------------------------------------------- training steps

def mlp_model():
    model = gc.nn.Sequential(gc.nn.Linear(64, 128), gc.nn.ReLU(), gc.nn.Linear(128, 10))
    x = np.random.default_rng(0).standard_normal((32, 64)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 10, 32)
    return model, lambda: gc.nn.functional.cross_entropy(model(gc.tensor(x)), gc.tensor(y))


def cnn_model():
    model = gc.nn.Sequential(gc.nn.Conv2d(1, 8, 3, padding=1), gc.nn.ReLU(),
                             gc.nn.MaxPool2d(2), gc.nn.Conv2d(8, 16, 3, padding=1),
                             gc.nn.ReLU(), gc.nn.MaxPool2d(2), gc.nn.Flatten(),
                             gc.nn.Linear(16 * 4 * 4, 10))
    x = np.random.default_rng(0).standard_normal((8, 1, 16, 16)).astype(np.float32)
    y = np.random.default_rng(1).integers(0, 10, 8)
    return model, lambda: gc.nn.functional.cross_entropy(model(gc.tensor(x)), gc.tensor(y))


def lstm_model():
    lstm, head = gc.nn.LSTM(16, 32, num_layers=2), gc.nn.Linear(32, 4)
    model = gc.nn.ModuleList([lstm, head])
    x = np.random.default_rng(0).standard_normal((12, 4, 16)).astype(np.float32)

    def loss():
        out, _ = lstm(gc.tensor(x))
        return (head(out[-1]) ** 2).mean()
    return model, loss


def attention_model():
    """A pre-norm transformer block with a causal mask, trained with AdamW: embedding,
    MultiheadAttention (fully masked rows never occur; the mask is causal), LayerNorm,
    GELU, weight decay and the Adam moment updates."""
    vocab, d, seq, batch = 50, 32, 10, 4
    emb = gc.nn.Embedding(vocab, d)
    # no projection biases: the key bias has an exactly zero gradient (softmax is
    # shift-invariant), and Adam would turn its rounding noise into full-size steps
    attn = gc.nn.MultiheadAttention(d, 4, bias=False, batch_first=True)
    ln1, ln2 = gc.nn.LayerNorm(d), gc.nn.LayerNorm(d)
    ff = gc.nn.Sequential(gc.nn.Linear(d, 4 * d), gc.nn.GELU(), gc.nn.Linear(4 * d, d))
    head = gc.nn.Linear(d, vocab)
    model = gc.nn.ModuleList([emb, attn, ln1, ln2, ff, head])
    tokens = np.random.default_rng(0).integers(0, vocab, (batch, seq + 1))
    mask = np.triu(np.ones((seq, seq), bool), 1)

    def loss():
        x = emb(gc.tensor(tokens[:, :-1]))
        h = ln1(x)
        x = x + attn(h, h, h, attn_mask=gc.tensor(mask), need_weights=False)[0]
        x = x + ff(ln2(x))
        return gc.nn.functional.cross_entropy(head(x).reshape(-1, vocab),
                                              gc.tensor(tokens[:, 1:].reshape(-1)))
    # eps 1e-4: a weight whose gradient is rounding noise (one of ff's gets 5e-9 at step
    # 1, on every backend) would take a full-size Adam step of the noise's sign at 1e-8
    return model, loss, lambda ps: gc.optim.AdamW(ps, lr=1e-2, weight_decay=0.1, eps=1e-4)


def train(make, backend, steps=3):
    os.environ["GRAPHC_BACKEND"] = backend
    gc.manual_seed(0)
    model, loss_fn, *optimizer = make()
    make_opt = optimizer[0] if optimizer else \
        (lambda ps: gc.optim.SGD(ps, lr=0.05, momentum=0.9))
    opt = make_opt(model.parameters())
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = loss_fn()
        loss.backward()
        opt.step()
        losses.append(float(loss.item()))
    return losses, [p.detach().numpy().copy() for p in model.parameters()]


def run_training(env, results):
    log("training steps: triton backend against the CPU reference")
    for name, make in (("mlp", mlp_model), ("cnn", cnn_model), ("lstm", lstm_model),
                       ("attention", attention_model)):
        rec = {"name": f"train-{name}"}
        t0 = time.perf_counter()
        try:
            want_l, want_p = train(make, "interp")
            got_l, got_p = train(make, "triton")
            np.testing.assert_allclose(got_l, want_l, rtol=1e-4, atol=1e-5)
            err = 0.0
            for g, w in zip(got_p, want_p):
                np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)
                err = max(err, float(np.max(np.abs(g - w))) if g.size else 0.0)
            rec.update(ok=True, losses=got_l, max_abs_err=err)
        except Exception as e:   # noqa: BLE001
            rec.update(ok=False, error=f"{type(e).__name__}: {str(e)[:1500]}")
            log(f"  FAILED {rec['name']}: {rec['error'][:300]}")
        finally:
            os.environ.pop("GRAPHC_BACKEND", None)
        rec["seconds"] = round(time.perf_counter() - t0, 3)
        results["checks"].append(rec)


# ----------------------------------------------------------------------------- timing

def wall_ms(fn, reps, warmup=2, finish=lambda: None):
    """Wall ms per call of `reps` calls; `finish()` ends the warm-up and the timed loop
    (a read that waits for the device to finish what the calls queued)."""
    for _ in range(warmup):
        fn()
    finish()
    t0 = time.perf_counter()
    for _ in range(reps):
        fn()
    finish()
    return (time.perf_counter() - t0) * 1e3 / reps


def torch_ms(env, fn, reps, warmup=3):
    torch = env.torch
    for _ in range(warmup):
        fn()
    if env.torch_cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        start.record()
        for _ in range(reps):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / reps
    return wall_ms(fn, reps, 0)


def copy_bandwidth(env, nbytes, reps):
    """GB/s of a device-to-device copy (read + write), graphc's own driver; the dry run
    times a numpy copy instead."""
    if env.dry_run:
        a = np.ones(nbytes // 4, np.float32)
        b = np.empty_like(a)
        ms = wall_ms(lambda: np.copyto(b, a), reps)
        return 2 * nbytes / ms / 1e6, "numpy copy (dry run)"
    dev = env.device
    src, dst = dev.allocator.allocate(nbytes), dev.allocator.allocate(nbytes)
    try:
        ms = dev.time(lambda: dev.drv.copy_on_device(dst.address, src.address, nbytes), reps)
    finally:
        dev.allocator.release(src)
        dev.allocator.release(dst)
    return 2 * nbytes / ms / 1e6, "cuMemcpyDtoD"


class Peer:
    """PyTorch versions of a workload: eager and torch.compile, or why not."""

    def __init__(self, env, skip_compile):
        self.env = env
        self.skip_compile = skip_compile

    def device(self):
        return "cuda" if self.env.torch_cuda else "cpu"

    def run(self, build, reps):
        """build(torch, device) -> zero-argument callable. {"eager": ms, "compile": ms}
        (or notes)."""
        env, out = self.env, {}
        if env.torch is None:
            return {"eager": "no PyTorch", "compile": "no PyTorch"}
        torch = env.torch
        fn = build(torch, self.device())
        try:
            out["eager"] = torch_ms(env, fn, reps)
        except Exception as e:   # noqa: BLE001
            out["eager"] = f"failed: {e!r}"[:200]
        if self.skip_compile:
            out["compile"] = "skipped"
        else:
            try:
                cfn = torch.compile(fn)
                out["compile"] = torch_ms(env, cfn, reps, warmup=3)
            except Exception as e:   # noqa: BLE001
                out["compile"] = f"failed: {type(e).__name__}: {str(e)[:150]}"
        if not env.torch_cuda:
            out["note"] = "PyTorch without CUDA: CPU timings, not comparable"
        return out


# ----------------------------------------------------------------------------- benchmarks

def bench_sizes(args):
    if args.dry_run or args.tiny:
        return dict(n=1 << 12, rows=64, cols=64, mm=64, batch=8, reps=1, copy=1 << 20)
    if args.quick:
        return dict(n=1 << 22, rows=2048, cols=2048, mm=2048, batch=128, reps=10,
                    copy=1 << 26)
    return dict(n=1 << 24, rows=4096, cols=4096, mm=4096, batch=128, reps=20, copy=1 << 28)


def graphc_times(env, g, ins, reps):
    """(kernel ms, end-to-end ms, compile+tune seconds, configs) of graph g."""
    t0 = time.perf_counter()
    exe = T.compile(g, device=env.device)
    exe(ins)   # compiles (and autotunes on a GPU)
    first = time.perf_counter() - t0
    kernel = exe.time_kernels(ins, reps)
    fresh = [np.array(a, copy=True) for a in ins]   # host arrays: uploaded each call

    def round_trip():   # host arrays in, host arrays out (outputs stay on the device
        return [np.asarray(v) for v in exe(fresh)]   # until read)
    e2e = wall_ms(round_trip, max(2, reps // 4), warmup=1)
    return kernel, e2e, first, [f"{how}: {cfg.describe()}" for _, cfg, how in exe.tuning]


def bench_elementwise(env, sz, peer):
    n = sz["n"]
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(n).astype(np.float32) for _ in range(3)]
    xs = [inp((n,), dt.float32, k) for k in "xwb"]
    g = graph([op("gelu", op("add", op("mul", xs[0], xs[1]), xs[2]))], xs)

    def build(torch, device):
        x, w, b = (torch.from_numpy(a).to(device) for a in arrays)
        return lambda: torch.nn.functional.gelu(x * w + b)
    return dict(name=f"gelu(x*w+b) {n:,} f32", graph=g, inputs=arrays, bytes=16 * n,
                flops=None, peer=peer.run(build, sz["reps"]))


def bench_rowwise(env, sz, peer, which):
    r, c = sz["rows"], sz["cols"]
    rng = np.random.default_rng(1)
    x = rng.standard_normal((r, c)).astype(np.float32)
    w, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    if which == "softmax":
        g, ins = tensor_graph(lambda t: gc.softmax(t, dim=-1), [x])

        def build(torch, device):
            t = torch.from_numpy(x).to(device)
            return lambda: torch.softmax(t, dim=-1)
    else:
        g, ins = tensor_graph(lambda t, w, b: gc.nn.functional.layer_norm(t, (c,), w, b),
                              [x, w, b])

        def build(torch, device):
            t, tw, tb = (torch.from_numpy(a).to(device) for a in (x, w, b))
            return lambda: torch.nn.functional.layer_norm(t, (c,), tw, tb)
    return dict(name=f"{which} {r}x{c} f32", graph=g, inputs=ins, bytes=8 * r * c,
                flops=None, peer=peer.run(build, sz["reps"]))


def bench_matmul(env, sz, peer, d):
    n = sz["mm"]
    rng = np.random.default_rng(2)
    a, b = (checks.data((n, n), d, rng) for _ in range(2))
    A, B = inp((n, n), d, "a"), inp((n, n), d, "b")
    g = graph([op("matmul", A, B)], [A, B])

    def build(torch, device):
        tdt = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}[d.short]
        ta, tb = (torch.from_numpy(np.asarray(m, np.float32)).to(device=device, dtype=tdt)
                  for m in (a, b))
        if not env.torch_cuda and d.short != "f32":
            ta, tb = ta.float(), tb.float()   # CPU half GEMMs are too slow to wait for
        if env.torch_cuda and d.short == "f32":
            env.torch.backends.cuda.matmul.allow_tf32 = False   # same math as graphc's default
        return lambda: ta @ tb
    return dict(name=f"matmul {n}^3 {d.name}", graph=g, inputs=[a, b], bytes=None,
                flops=2 * n ** 3, peer=peer.run(build, sz["reps"]))


def run_bench(env, results, args, checkpoint=lambda: None):
    sz = bench_sizes(args)
    peer = Peer(env, "torch-compile" in args.skip)
    bw, how = copy_bandwidth(env, sz["copy"], sz["reps"])
    results["copy_gbps"] = round(bw, 1)
    results["copy_method"] = how
    log(f"copy bandwidth {bw:.0f} GB/s ({how})")
    mm_ref = None
    builders = [lambda: bench_elementwise(env, sz, peer),
                lambda: bench_rowwise(env, sz, peer, "softmax"),
                lambda: bench_rowwise(env, sz, peer, "layernorm")] + \
        [lambda d=d: bench_matmul(env, sz, peer, d) for d in (dt.bfloat16, dt.float16,
                                                            dt.float32)]
    for build in builders:
        try:
            w = build()
        except Exception as e:   # noqa: BLE001
            results["bench"].append({"name": "?", "error": repr(e)[:500]})
            continue
        log(f"benchmark {w['name']}")
        rec = {"name": w["name"], "torch_eager_ms": w["peer"].get("eager"),
               "torch_compile_ms": w["peer"].get("compile"), "note": w["peer"].get("note")}
        try:
            k, e2e, first, cfgs = graphc_times(env, w["graph"], w["inputs"], sz["reps"])
            rec.update(graphc_kernel_ms=k, graphc_end_to_end_ms=e2e,
                       graphc_first_call_s=round(first, 2), configs=cfgs)
            if w["bytes"]:
                rec["graphc_gbps"] = w["bytes"] / k / 1e6
                rec["fraction_of_copy"] = rec["graphc_gbps"] / bw
            if w["flops"]:
                rec["graphc_tflops"] = w["flops"] / k / 1e9
                eager = rec["torch_eager_ms"]
                if isinstance(eager, float):
                    rec["torch_tflops"] = w["flops"] / eager / 1e9
                    mm_ref = mm_ref or rec["torch_tflops"]
                    rec["fraction_of_torch_matmul"] = rec["graphc_tflops"] / rec["torch_tflops"]
        except Exception as e:   # noqa: BLE001
            rec["error"] = f"{type(e).__name__}: {str(e)[:800]}"
            log(f"  FAILED: {rec['error'][:300]}")
            traceback.print_exc()
        results["bench"].append(rec)
        checkpoint()
    results["bench"].append(bench_mlp_step(env, sz, peer))


MLP_SIZES = (784, 512, 256, 10)


def bench_mlp_step(env, sz, peer):
    """One SGD step of a 784-512-256-10 MLP at batch 128 (the benchsuite's mlp_step and
    nn_mlp_step), three ways on graphc's side:
      * compiled: nn.Sequential + optim.SGD moved with .to("cuda"), the step wrapped in
        graphc.compile (one cached program; parameters, batch and loss stay on the
        device; the loss is read once, after the timed steps);
      * lazy: tensor ops and backward() through the runtime, each step one cached graph,
        the loss read with .item() every step (a host sync, as a user's loop does);
      * resident off: the compiled step with GRAPHC_TRITON_RESIDENT=0 (outputs copied
        to the host after every step: what residency saves).
    PyTorch eager/compile run the same nn step with its CUDA tensors; all wall time per
    step, synchronized at the end of the timed loop."""
    batch = sz["batch"]
    rng = np.random.default_rng(3)
    params = []
    for fi, fo in zip(MLP_SIZES[:-1], MLP_SIZES[1:]):
        params += [(rng.standard_normal((fo, fi)) * math.sqrt(2 / fi)).astype(np.float32),
                   np.zeros(fo, np.float32)]
    x = rng.standard_normal((batch, MLP_SIZES[0])).astype(np.float32)
    y = rng.integers(0, 10, batch)
    rec = {"name": f"MLP step batch {batch} (784-512-256-10, SGD)"}
    os.environ["GRAPHC_BACKEND"] = "triton"
    compiles = runtime.stats["compiles"]
    try:
        def make_model():
            model = NNMLPStep().build(gc.nn, None)
            with gc.no_grad():
                for p, a in zip(model.parameters(), params):
                    p.copy_(gc.from_numpy(a.copy()))
            return model

        def compiled_step():
            model = make_model()
            if not env.dry_run:
                model.to("cuda")
            opt = gc.optim.SGD(model.parameters(), lr=0.01)
            gx, gy = gc.from_numpy(x), gc.from_numpy(y)
            if not env.dry_run:
                gx, gy = gx.to("cuda"), gy.to("cuda")

            step = gc.compile(train_step(gc, model, opt))
            return lambda: step(gx, gy)

        def synced(fn):
            box = []

            def run():
                box.append(fn())
            return run, lambda: float(box[-1].item())

        step, read = synced(compiled_step())
        t0 = time.perf_counter()
        for _ in range(3):   # eager call, trace, first replay
            step()
        read()
        rec["graphc_first_call_s"] = round(time.perf_counter() - t0, 2)
        rec["graphc_end_to_end_ms"] = wall_ms(step, sz["reps"], finish=read)
        rec["graphc_loss"] = read()
        os.environ["GRAPHC_TRITON_RESIDENT"] = "0"
        try:
            step0, read0 = synced(compiled_step())
            for _ in range(3):
                step0()
            rec["graphc_not_resident_ms"] = wall_ms(step0, sz["reps"], finish=read0)
        finally:
            os.environ.pop("GRAPHC_TRITON_RESIDENT", None)

        ps = [gc.from_numpy(a.copy()).requires_grad_() for a in params]
        gx, gy = gc.from_numpy(x), gc.from_numpy(y)

        def lazy_step():
            h = gc.relu(gx @ ps[0].t() + ps[1])
            h = gc.relu(h @ ps[2].t() + ps[3])
            loss = gc.nn.functional.cross_entropy(h @ ps[4].t() + ps[5], gy)
            loss.backward()
            with gc.no_grad():
                for p in ps:
                    p -= 0.01 * p.grad
                    p.grad = None
            return loss.item()
        rec["graphc_lazy_ms"] = wall_ms(lazy_step, sz["reps"], warmup=min(3, sz["reps"]))
        rec["compiles"] = runtime.stats["compiles"] - compiles
    except Exception as e:   # noqa: BLE001
        rec["error"] = f"{type(e).__name__}: {str(e)[:800]}"
        log(f"  FAILED: {rec['error'][:300]}")
        traceback.print_exc()
    finally:
        os.environ.pop("GRAPHC_BACKEND", None)

    def build(torch, device):
        model = NNMLPStep().build(torch.nn, None).to(device)
        with torch.no_grad():
            for p, a in zip(model.parameters(), params):
                p.copy_(torch.from_numpy(a))
        opt = torch.optim.SGD(model.parameters(), lr=0.01)
        tx, ty = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
        step = train_step(torch, model, opt)
        return lambda: step(tx, ty)
    r = peer.run(build, sz["reps"])
    rec.update(torch_eager_ms=r.get("eager"), torch_compile_ms=r.get("compile"),
               note=r.get("note"))
    if isinstance(rec.get("torch_eager_ms"), float) and rec.get("graphc_end_to_end_ms"):
        rec["speedup_vs_eager"] = rec["torch_eager_ms"] / rec["graphc_end_to_end_ms"]
    log(f"benchmark {rec['name']}: graphc compiled {fmt(rec.get('graphc_end_to_end_ms'))} "
        f"ms, not resident {fmt(rec.get('graphc_not_resident_ms'))} ms, lazy "
        f"{fmt(rec.get('graphc_lazy_ms'))} ms, torch eager {fmt(rec.get('torch_eager_ms'))}"
        f" ms")
    return rec


# ----------------------------------------------------------------------------- report

def fmt(v, unit=""):
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.3f}{unit}" if v < 10 else f"{v:.1f}{unit}"
    return str(v)[:28]


def table(results) -> str:
    lines = []
    checks_ = results["checks"]
    bad = [c for c in checks_ if not c["ok"]]
    lines.append(f"graphc Triton backend on {results['env']['card']}  "
                 f"(triton {results['env']['triton']}, torch {results['env']['torch']}, "
                 f"torch CUDA {results['env']['torch_cuda']})")
    lines.append(f"correctness: {len(checks_) - len(bad)}/{len(checks_)} passed" +
                 ("" if not bad else "; FAILED: " + ", ".join(c["name"] for c in bad[:12])))
    if "copy_gbps" in results:
        lines.append(f"device copy: {results['copy_gbps']} GB/s ({results['copy_method']})")
    head = (f"{'workload':<34} {'graphc kern ms':>14} {'graphc e2e ms':>13} "
            f"{'eager ms':>9} {'compile ms':>10} {'GB/s (copy%)':>14} {'TFLOP/s (torch%)':>17}")
    lines += [head, "-" * len(head)]
    for b in results["bench"]:
        if "error" in b and "graphc_kernel_ms" not in b and "graphc_end_to_end_ms" not in b:
            lines.append(f"{b['name']:<34} FAILED {b['error'][:80]}")
            continue
        gbps = f"{b['graphc_gbps']:.0f} ({100 * b['fraction_of_copy']:.0f}%)" \
            if "graphc_gbps" in b else "-"
        tf = f"{b['graphc_tflops']:.1f}" + (f" ({100 * b['fraction_of_torch_matmul']:.0f}%)"
                                            if "fraction_of_torch_matmul" in b else "") \
            if "graphc_tflops" in b else "-"
        lines.append(f"{b['name']:<34} {fmt(b.get('graphc_kernel_ms')):>14} "
                     f"{fmt(b.get('graphc_end_to_end_ms')):>13} "
                     f"{fmt(b.get('torch_eager_ms')):>9} {fmt(b.get('torch_compile_ms')):>10} "
                     f"{gbps:>14} {tf:>17}")
    for b in results["bench"]:
        if "graphc_lazy_ms" in b or "graphc_not_resident_ms" in b:
            ratio = f" = {b['speedup_vs_eager']:.2f}x torch eager" \
                if "speedup_vs_eager" in b else ""
            lines.append(f"{b['name']}: graphc.compile {fmt(b.get('graphc_end_to_end_ms'))} ms"
                         f"{ratio}; outputs copied to the host each step "
                         f"{fmt(b.get('graphc_not_resident_ms'))} ms; lazy tensor ops + "
                         f".item() {fmt(b.get('graphc_lazy_ms'))} ms; "
                         f"{b.get('compiles', '?')} compiles")
    notes = {b.get("note") for b in results["bench"] if b.get("note")}
    lines += [f"note: {n}" for n in sorted(notes)]
    return "\n".join(lines)


def out_path(args, card):
    if args.out:
        return args.out
    slug = re.sub(r"[^A-Za-z0-9]+", "-", card).strip("-").lower() or "gpu"
    folder = tempfile.mkdtemp(prefix="graphc-gpu-check-") if args.dry_run else \
        os.path.join(ROOT, "benchmarks", "results")
    return os.path.join(folder, f"gpu-{slug}.json")


def save(results, path):
    """Write the results so far, atomically: a run cut short (a device lease running
    out) still leaves every finished section on disk."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(results, f, indent=1, default=str)
    os.replace(tmp, path)


def main(args):
    skip = set(filter(None, args.skip.split(",")))
    env = Env(args.dry_run)
    results = {"env": env.describe(), "checks": [], "bench": [], "notes": env.notes}
    path = out_path(args, env.card)
    log(f"device: {results['env']['card']}; results go to {path}")
    if "checks" not in skip:
        run_checks(env, results, 0.05 if args.dry_run or args.tiny else 1.0,
                   tuple(filter(None, args.only.split(","))))
        save(results, path)
    if "training" not in skip:
        run_training(env, results)
        save(results, path)
    if "bench" not in skip:
        run_bench(env, results, args, lambda: save(results, path))
    save(results, path)
    print("\n" + table(results))
    print(f"\nresults: {path}")
    return 1 if any(not c["ok"] for c in results["checks"]) else 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
