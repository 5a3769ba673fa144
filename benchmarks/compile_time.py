"""Compile time of the first training step, split into phases.

    python benchmarks/compile_time.py                 # all models, 3 runs each, medians
    python benchmarks/compile_time.py --runs 5 cnn gru
    python benchmarks/compile_time.py --mode compile  # graphc.compile: trace + compile
    python benchmarks/compile_time.py --profile transformer [--sort tottime] [--top 40]

Three small training steps written with graphc.nn / graphc.optim:

* cnn: a ResNet-style CNN (Conv2d + BatchNorm2d + ReLU, two residual blocks and a
  strided one, adaptive average pool, Linear), cross-entropy, AdamW, clip_grad_norm_;
* transformer: a 2-layer encoder classifier (Embedding, nn.MultiheadAttention,
  LayerNorm, GELU MLP), cross-entropy, AdamW + OneCycleLR, clip_grad_norm_;
* gru: a 2-layer GRU encoder-decoder (teacher forcing), cross-entropy, Adam.

Every measurement runs in a fresh process (`--one`) with an empty GRAPHC_CACHE_DIR
(a temporary directory), so nothing comes from the disk or in-memory caches; the
parameters' initial values are realized before the clock starts. In lazy mode (the
default) the timed region is one step: zero_grad, forward, backward, clipping,
optimizer (and scheduler) step, `loss.item()`. In compile mode it is the second call of
a `graphc.compile`d step (the call that traces and compiles; the first one runs
eagerly on the interpreter and is not timed).

Phases (seconds, exclusive: nested phases are not counted twice):

  build     Python that builds the graph (forward, loss, optimizer step)
  autodiff  loss.backward()
  optimize  passes/pipeline.optimize (simplify, fold, CSE, DCE)
  lowering  passes/lowering.lower_for_backends + fusion.lower_convolutions
  fusion    fusion._Fuser.run (placement, kernel assembly)
  memplan   passes/memory.plan_memory
  codegen   LLVM IR generation (codegen.ModuleBuilder, module_text)
  llvm_opt  LLVM's O3 pipeline in this process (jit.optimize)
  llvm_mc   machine code in this process (jit.emit_object)
  llvm_wait waiting for the compile workers' object code (parallel.py)
            (times of threads that run beside the compiling thread are not counted)
  load      linking the object code, building the Executable
  other     the rest: graph extraction and cache keys, running the kernels, ...

`--profile MODEL` runs one model in this process under cProfile (the compile thread
included) and prints the top functions.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

MODELS = ("cnn", "transformer", "gru")
PHASES = ("build", "autodiff", "optimize", "lowering", "fusion", "memplan", "codegen",
          "llvm_opt", "llvm_mc", "llvm_wait", "load", "other")


# --------------------------------------------------------------------------- timers

_times: dict = {}
_local = threading.local()   # .stack: [phase, start, time spent in nested phases]


def _counted() -> bool:
    """Phases are the critical path: the main thread and the compile thread it waits
    for. Threads that run beside them (parallel.py's feeders) are not counted."""
    return not threading.current_thread().name.startswith("graphc-compile-feeder")


def _enter(phase):
    if not hasattr(_local, "stack"):
        _local.stack = []
    _local.stack.append([phase, time.perf_counter(), 0.0])


def _leave():
    stack = _local.stack
    phase, start, nested = stack.pop()
    dt = time.perf_counter() - start
    if _counted():
        _times[phase] = _times.get(phase, 0.0) + dt - nested
    if stack:
        stack[-1][2] += dt


def _timed(phase, fn):
    def wrapper(*args, **kwargs):
        _enter(phase)
        try:
            return fn(*args, **kwargs)
        finally:
            _leave()
    wrapper.__wrapped__ = fn
    return wrapper


def _patch(obj, name, phase):
    setattr(obj, name, _timed(phase, getattr(obj, name)))


def install_timers():
    from graphc.backends import llvm as L
    from graphc.backends.llvm import executor, jit, parallel
    from graphc.passes import fusion, lowering, pipeline
    _patch(pipeline, "optimize", "optimize")
    _patch(lowering, "lower_for_backends", "lowering")
    _patch(fusion, "lower_convolutions", "lowering")
    _patch(fusion._Fuser, "run", "fusion")
    _patch(L, "plan_memory", "memplan")
    _patch(L, "_module_part", "codegen")
    _patch(L, "module_text", "codegen")
    _patch(jit, "optimize", "llvm_opt")
    _patch(jit, "emit_object", "llvm_mc")
    # the time compile_modules spends in none of its nested phases: waiting for workers
    _patch(parallel, "compile_modules", "llvm_wait")
    _patch(jit.LoadedObject, "__init__", "load")
    _patch(executor.Executable, "__init__", "load")


# --------------------------------------------------------------------------- models

def make_cnn(gc):
    nn, F = gc.nn, gc.nn.functional

    class Block(nn.Module):
        def __init__(self, cin, cout, stride):
            super().__init__()
            self.c1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
            self.b1 = nn.BatchNorm2d(cout)
            self.c2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
            self.b2 = nn.BatchNorm2d(cout)
            self.short = None
            if stride != 1 or cin != cout:
                self.short = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False),
                                           nn.BatchNorm2d(cout))

        def forward(self, x):
            y = F.relu(self.b1(self.c1(x)))
            y = self.b2(self.c2(y))
            return F.relu(y + (x if self.short is None else self.short(x)))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False),
                                      nn.BatchNorm2d(16), nn.ReLU())
            self.blocks = nn.Sequential(Block(16, 16, 1), Block(16, 16, 1), Block(16, 32, 2))
            self.pool = nn.AdaptiveAvgPool2d(1)
            self.fc = nn.Linear(32, 10)

        def forward(self, x):
            return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))

    model = Net()
    opt = gc.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-2)
    rng = np.random.default_rng(0)
    x = gc.from_numpy(rng.standard_normal((8, 3, 16, 16), dtype=np.float32))
    y = gc.from_numpy(rng.integers(0, 10, 8))

    def forward():
        return F.cross_entropy(model(x), y)

    def update():
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model, opt, forward, update


def make_transformer(gc):
    nn, F = gc.nn, gc.nn.functional
    d, heads, seq, vocab = 32, 4, 12, 50

    class Layer(nn.Module):
        def __init__(self):
            super().__init__()
            self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
            self.ln1 = nn.LayerNorm(d)
            self.ff = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))
            self.ln2 = nn.LayerNorm(d)

        def forward(self, x):
            a, _ = self.attn(x, x, x, need_weights=False)
            x = self.ln1(x + a)
            return self.ln2(x + self.ff(x))

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(vocab, d)
            self.pos = nn.Parameter(gc.randn(1, seq, d) * 0.02)
            self.layers = nn.Sequential(Layer(), Layer())
            self.head = nn.Linear(d, 5)

        def forward(self, tok):
            h = self.layers(self.emb(tok) + self.pos)
            return self.head(h.mean(1))

    model = Net()
    opt = gc.optim.AdamW(model.parameters(), lr=1e-3)
    sched = gc.optim.lr_scheduler.OneCycleLR(opt, max_lr=1e-3, total_steps=100)
    rng = np.random.default_rng(0)
    tok = gc.from_numpy(rng.integers(0, vocab, (8, seq)))
    y = gc.from_numpy(rng.integers(0, 5, 8))

    def forward():
        return F.cross_entropy(model(tok), y)

    def update():
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
    return model, opt, forward, update


def make_gru(gc):
    nn, F = gc.nn, gc.nn.functional
    vocab, d, hidden, src_len, tgt_len, batch = 30, 16, 32, 8, 6, 8

    class Seq2Seq(nn.Module):
        def __init__(self):
            super().__init__()
            self.emb = nn.Embedding(vocab, d)
            self.enc = nn.GRU(d, hidden, num_layers=2)
            self.dec = nn.GRU(d, hidden, num_layers=2)
            self.out = nn.Linear(hidden, vocab)

        def forward(self, src, tgt_in):
            _, h = self.enc(self.emb(src))
            y, _ = self.dec(self.emb(tgt_in), h)
            return self.out(y)

    model = Seq2Seq()
    opt = gc.optim.Adam(model.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    src = gc.from_numpy(rng.integers(0, vocab, (src_len, batch)))
    tgt_in = gc.from_numpy(rng.integers(0, vocab, (tgt_len, batch)))
    tgt = gc.from_numpy(rng.integers(0, vocab, (tgt_len * batch,)))

    def forward():
        return F.cross_entropy(model(src, tgt_in).reshape(tgt_len * batch, vocab), tgt)

    def update():
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    return model, opt, forward, update


BUILDERS = {"cnn": make_cnn, "transformer": make_transformer, "gru": make_gru}


# --------------------------------------------------------------------------- one run

def run_one(name: str, mode: str) -> dict:
    """Time one first step of model `name` in this process (see the module docstring)."""
    import graphc as gc
    from graphc import runtime
    gc.manual_seed(0)
    model, opt, forward, update = BUILDERS[name](gc)
    runtime.realize_all()                       # initial parameter values
    from graphc.backends.llvm import jit
    jit.target_machine()                        # LLVM initialised outside the clock
    install_timers()
    compiles0 = runtime.stats["compiles"]

    def step():
        opt.zero_grad()
        _enter("build")
        loss = forward()
        _leave()
        _enter("autodiff")
        loss.backward()
        _leave()
        _enter("build")
        update()
        _leave()
        return loss

    if mode == "compile":
        compiled = gc.compile(step)
        compiled().item()                       # the eager first call: not timed
        _times.clear()
        compiles0 = runtime.stats["compiles"]
        t0 = time.perf_counter()
        compiled().item()
        total = time.perf_counter() - t0
    else:
        t0 = time.perf_counter()
        step().item()
        total = time.perf_counter() - t0
    from graphc.backends import llvm as L
    phases = {p: _times.get(p, 0.0) for p in PHASES[:-1]}
    phases["other"] = total - sum(phases.values())
    return {"model": name, "total": total, "phases": phases,
            "compiles": runtime.stats["compiles"] - compiles0,
            "llvm_compiles": L.stats["llvm_compiles"],
            "kernels": _kernel_count()}


def _kernel_count():
    from graphc import runtime
    n = 0
    for exe in list(runtime._cache.values()):
        plan = getattr(exe, "plan", None)
        if plan is not None:
            n = max(n, len(plan.kernels))
    return n


def run_fresh(name: str, mode: str, extra_env=None) -> dict:
    """run_one in a fresh interpreter with an empty cache directory."""
    with tempfile.TemporaryDirectory(prefix="graphc-ct-") as d:
        env = dict(os.environ, GRAPHC_CACHE_DIR=d, **(extra_env or {}))
        env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
        out = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", name,
                              "--mode", mode], env=env, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{name}: {out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def profile(name: str, mode: str, sort: str, top: int):
    """cProfile of one first step, the compile thread included."""
    import cProfile
    import pstats
    from graphc import runtime
    profiles = []
    original = runtime._on_deep_stack

    def on_deep_stack(fn, *args):
        def profiled(*a):
            p = cProfile.Profile()
            profiles.append(p)
            p.enable()
            try:
                return fn(*a)
            finally:
                p.disable()
        return original(profiled, *args)
    runtime._on_deep_stack = on_deep_stack
    main = cProfile.Profile()
    main.enable()
    result = run_one(name, mode)
    main.disable()
    stats = pstats.Stats(main)
    for p in profiles:
        stats.add(p)
    print(_table([result]))
    stats.sort_stats(sort).print_stats(top)


def _table(results: list) -> str:
    head = f"{'model':12s} {'total':>6s} " + " ".join(f"{p:>9s}" for p in PHASES) + \
        "  kernels"
    lines = [head]
    for r in results:
        lines.append(f"{r['model']:12s} {r['total']:6.2f} " +
                     " ".join(f"{r['phases'][p]:9.3f}" for p in PHASES) +
                     f"  {r['kernels']:7d}")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("models", nargs="*", default=list(MODELS))
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--mode", choices=("lazy", "compile"), default="lazy")
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--profile", metavar="MODEL")
    ap.add_argument("--sort", default="cumulative")
    ap.add_argument("--top", type=int, default=40)
    ap.add_argument("--json", action="store_true", help="print every run as JSON too")
    args = ap.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(args.one, args.mode)))
        return
    if args.profile:
        with tempfile.TemporaryDirectory(prefix="graphc-ct-") as d:
            os.environ["GRAPHC_CACHE_DIR"] = d
            profile(args.profile, args.mode, args.sort, args.top)
        return
    runs = {m: [] for m in args.models}
    for _ in range(args.runs):                   # models alternate run by run
        for m in args.models:
            r = run_fresh(m, args.mode)
            runs[m].append(r)
            if args.json:
                print(json.dumps(r), flush=True)
    medians = []
    for m in args.models:
        rs = runs[m]
        medians.append({"model": m, "total": statistics.median(r["total"] for r in rs),
                        "phases": {p: statistics.median(r["phases"][p] for r in rs)
                                   for p in PHASES},
                        "kernels": rs[0]["kernels"]})
    print(f"first step, {args.mode} mode, medians of {args.runs} fresh processes "
          f"(seconds; phases exclusive, medians taken per phase)")
    print(_table(medians))


if __name__ == "__main__":
    main()
