"""Compiling a large plan's kernels on several cores.

llvmlite serialises every LLVM call of a process behind one lock, so threads cannot
optimise modules side by side; processes can. A plan with many kernels (an unrolled
RNN's training step has hundreds) is split into contiguous runs of kernels of about
equal estimated size, a few per compiling process (`chunks_for`), one LLVM module
each. The modules are handed out on demand (`compile_modules`): this process and the
worker processes (compile_worker.py, started on first use and kept for the life of
this process) each take the next one as soon as they are free, so a badly estimated
module does not leave a core idle. The objects are loaded into one engine, which
resolves the calls between them (a driver in one module calling a kernel in another).

Workers are an optimisation, never a dependency: one that cannot start, answers with
an error or dies is dropped, and its module is compiled here. GRAPHC_COMPILE_WORKERS
sets how many may run (default: one per core beyond the first, at most 3; 0: none).
"""
from __future__ import annotations

import os
import subprocess
import sys
import threading

PARALLEL_MIN_KERNELS = 48   # below this a plan compiles in well under a second here
MAX_WORKERS = 3
CHUNKS_PER_COMPILER = 4     # modules per compiling process, handed out on demand
MIN_CHUNK_KERNELS = 8       # fewer kernels per module: fixed costs would show
FEEDER_STACK_BYTES = 256 << 20   # virtual, as runtime._on_deep_stack's thread

_pool: list = []
_pool_lock = threading.Lock()


def wanted_workers() -> int:
    env = os.environ.get("GRAPHC_COMPILE_WORKERS")
    if env is not None:
        try:
            return max(0, int(env))
        except ValueError:
            return 0
    return max(0, min(MAX_WORKERS, (os.cpu_count() or 1) - 1))


def parts_for(n_kernels: int) -> int:
    """How many processes compile a plan of `n_kernels` kernels (this one included)."""
    if n_kernels < PARALLEL_MIN_KERNELS:
        return 1
    return 1 + wanted_workers()


def chunks_for(n_kernels: int) -> int:
    """How many modules a plan of `n_kernels` kernels is compiled as: a few per
    compiling process, so that they can be handed out as processes become free."""
    compilers = parts_for(n_kernels)
    if compilers == 1:
        return 1
    return max(compilers, min(CHUNKS_PER_COMPILER * compilers,
                              n_kernels // MIN_CHUNK_KERNELS))


class Worker:
    def __init__(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        env["GRAPHC_COMPILE_WORKERS"] = "0"
        self.owner = os.getpid()
        # `-m` puts the working directory first on the worker's sys.path: started from a
        # directory holding a script named like a module it imports (types.py, cfg.py),
        # the worker imported that and wrote garbage into the pipe. From the directory
        # graphc is imported from, the worker imports what its parent does.
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "graphc.backends.llvm.compile_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env, cwd=root)

    def send(self, text: str):
        data = text.encode()
        self.proc.stdin.write(len(data).to_bytes(8, "little") + data)
        self.proc.stdin.flush()

    def receive(self) -> bytes:
        head = self.proc.stdout.read(9)
        if len(head) < 9:
            raise RuntimeError("the compile worker exited")
        if head[:1] not in (b"\0", b"\1"):   # not an answer: something else wrote there
            raise RuntimeError(f"the compile worker wrote {head!r}, not an answer")
        payload = self.proc.stdout.read(int.from_bytes(head[1:], "little"))
        if head[:1] != b"\0":
            raise RuntimeError(payload.decode(errors="replace"))
        return payload

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except Exception:   # noqa: BLE001 (best effort at shutdown)
            self.proc.kill()


def _take(n: int) -> list:
    """Up to n idle workers, starting the missing ones (those that fail to start are
    simply not there)."""
    with _pool_lock:
        # a forked child inherits the pool, but the pipes are its parent's: forget them
        _pool[:] = [w for w in _pool if w.owner == os.getpid()]
        while len(_pool) < n:
            try:
                _pool.append(Worker())
            except OSError:
                break
        taken, _pool[:] = _pool[:n], _pool[n:]
    return taken


def _give_back(workers):
    with _pool_lock:
        _pool.extend(workers)


def split(costs, parts: int) -> list:
    """Contiguous index ranges [(start, stop)] of about equal total cost."""
    total = sum(costs) or 1
    out, start, acc = [], 0, 0
    for i, c in enumerate(costs):
        acc += c
        if len(out) < parts - 1 and acc >= total * (len(out) + 1) / parts and i + 1 < len(costs):
            out.append((start, i + 1))
            start = i + 1
    out.append((start, len(costs)))
    return out


def compile_modules(build, n_parts: int, compile_here) -> list:
    """Object code of modules 0..n_parts-1. `build(j)` returns module j's IR text;
    `compile_here(text)` compiles one in this process.

    Modules are handed out one at a time, in order, to whoever is free: this thread
    (which compiles them here) and one feeder thread per worker (which builds the
    module's IR, sends it and waits for the object code). So the work balances itself:
    a module whose LLVM time the cost estimate got wrong (one kernel can take 20x what
    its size suggests) only delays whoever drew it, and the workers' start-up (about
    0.3 s) is spent compiling here. The feeders' code generation is Python, run while
    this thread is inside LLVM (which releases the GIL). A module a worker could not
    build or compile is done here at the end (so a code generation error is raised
    here, as without workers)."""
    workers = _take(min(n_parts - 1, wanted_workers())) if n_parts > 1 else []
    objs = [None] * n_parts
    lock = threading.Lock()
    state = {"next": 0, "stop": False}
    redo = []             # (module index, IR text or None) a worker did not compile
    healthy = []          # workers to return to the pool: none has an unread answer
    busy = set()          # id() of workers with a request in flight

    def take():
        with lock:
            j = state["next"]
            if state["stop"] or j >= n_parts:
                return None
            state["next"] = j + 1
            return j

    def feed(w):
        while True:
            j = take()
            if j is None:
                healthy.append(w)
                return
            try:
                text = build(j)
            except Exception:   # noqa: BLE001 (rebuilt here, where it raises)
                redo.append((j, None))
                healthy.append(w)
                return
            try:
                busy.add(id(w))
                w.send(text)
                objs[j] = w.receive()
                busy.discard(id(w))
            except (OSError, RuntimeError, ValueError):
                w.close()
                redo.append((j, text))
                return

    feeders = []
    old_size = threading.stack_size()
    threading.stack_size(max(old_size, FEEDER_STACK_BYTES))  # code generation recurses
    try:
        for w in workers:
            t = threading.Thread(target=feed, args=(w,), name="graphc-compile-feeder",
                                 daemon=True)
            t.start()
            feeders.append(t)
    finally:
        threading.stack_size(old_size)
    done = False
    try:
        while True:
            j = take()
            if j is None:
                break
            objs[j] = compile_here(build(j))
        for t in feeders:
            t.join()
        for j, text in sorted(redo, key=lambda r: r[0]):
            objs[j] = compile_here(text if text is not None else build(j))
        done = True
    finally:
        if not done:     # interrupted: stop handing out work, drop workers mid-request
            with lock:
                state["stop"] = True
            for w in workers:
                if id(w) in busy:
                    w.proc.kill()
            for t in feeders:
                t.join()
        _give_back([w for w in healthy if id(w) not in busy and w.proc.poll() is None])
    return objs
