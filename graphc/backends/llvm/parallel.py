"""Compiling a large plan's kernels on several cores.

llvmlite serialises every LLVM call of a process behind one lock, so threads cannot
optimise modules side by side; processes can. A plan with many kernels (an unrolled
RNN's training step has hundreds) is split into contiguous runs of kernels of about
equal size, one LLVM module each (`build_modules`). Every module but the first goes to
a worker process (compile_worker.py, started on first use and kept for the life of
this process) as soon as its IR is built; this process builds and compiles the first
module meanwhile, then collects the workers' object code. The objects are loaded into
one engine, which resolves the calls between them (a driver in one module calling a
kernel in another).

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
    """How many modules a plan of `n_kernels` kernels is compiled as."""
    if n_kernels < PARALLEL_MIN_KERNELS:
        return 1
    return 1 + wanted_workers()


class Worker:
    def __init__(self):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(
            os.path.abspath(__file__)))))
        env = dict(os.environ)
        env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
        env["GRAPHC_COMPILE_WORKERS"] = "0"
        self.owner = os.getpid()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "graphc.backends.llvm.compile_worker"],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            env=env)

    def send(self, text: str):
        data = text.encode()
        self.proc.stdin.write(len(data).to_bytes(8, "little") + data)
        self.proc.stdin.flush()

    def receive(self) -> bytes:
        head = self.proc.stdout.read(9)
        if len(head) < 9:
            raise RuntimeError("the compile worker exited")
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
    `compile_here(text)` compiles one in this process. Modules 1.. go to workers."""
    workers = _take(n_parts - 1) if n_parts > 1 else []
    healthy = []          # workers to return to the pool: none has an unread answer
    pending = []          # (worker, module index, text): request sent, answer unread
    objs = [None] * n_parts
    try:
        for j in range(1, n_parts):
            text = build(j)
            w = workers[j - 1] if j - 1 < len(workers) else None
            try:
                if w is None:
                    raise OSError("no worker")
                w.send(text)
                pending.append((w, j, text))
            except OSError:
                objs[j] = compile_here(text)
        objs[0] = compile_here(build(0))
        while pending:
            w, j, text = pending.pop(0)
            try:
                objs[j] = w.receive()
                healthy.append(w)
            except (OSError, RuntimeError):
                w.close()
                objs[j] = compile_here(text)
    finally:
        for w, _, _ in pending:      # interrupted: their answers would desync the pipe
            w.close()
        busy = {id(w) for w, _, _ in pending} | {id(w) for w in healthy}
        idle = [w for w in workers if id(w) not in busy and w.proc.poll() is None]
        _give_back(healthy + idle)
    return objs
