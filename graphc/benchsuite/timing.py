"""Round-robin timing of competing implementations of one workload.

Invariants:
  * Every contender is warmed up before any sample is taken (graphc's first compile,
    torch.compile's compile and a cold allocator are never timed).
  * Samples are taken in rounds; each round runs every contender once, starting at a
    different contender each round. Slow drift of the machine (other jobs on the shared
    cores, thermal state) therefore hits every contender alike instead of whichever ran
    last.
  * A contender's callable does one complete unit of work *including* producing its
    result (graphc realizes it), so the timed region is exactly one call.
  * A contender that fails or exceeds its warm-up time box is dropped with a note; it
    never aborts the workload.
  * Each timed call directly follows an untimed call of the same contender, so every
    contender is timed in its own steady state and none pays for what another left
    running. Measured on the 2-core machine: PyTorch's OpenMP workers spin-wait after
    each op, and a graphc layer norm timed right after torch's took 8.0-9.8 ms instead
    of 5.1 ms (its threads had no core). A pause between calls instead (5 ms: 5.4 ms)
    lets torch's workers fall asleep, and waking them is then billed to torch (its MLP
    step median went from 4.4 to 7.0 ms), while a loop of training steps keeps them hot.
  * Before that untimed call, the round pauses `settle_s` (full runs of workloads
    whose contenders call a threaded BLAS: SETTLE_S), so whatever the previous
    contender left spinning has stopped. The untimed call does
    not cover OpenBLAS (numpy's, and graphc's BLAS calls): after every call its worker
    threads spin, yielding, for about 100 ms (2^28 cycles, OpenBLAS's THREAD_TIMEOUT),
    one core's worth, measured from /proc here. A torch MLP step timed right after a
    numpy GEMM took 4.6-7.9 ms instead of 2.3-3.8 ms alone; after a 150 ms pause and its
    own untimed call, 3.6 ms (alone: 3.8 ms in that run). Without the pause the suite
    flattered graphc against torch on every BLAS-heavy workload.
"""
from __future__ import annotations

import math
import signal
import statistics
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any, Callable

# Pause before each contender's calls in a round (see the module docstring): longer
# than OpenBLAS's spin after a call (~100 ms here), which is the longest one measured.
SETTLE_S = 0.15


@dataclass
class Contender:
    """One implementation of a workload.

    name:     unique label in the table ("graphc[interp] compile", "torch eager", ...).
    family:   what ratios compare against: every contender of one family is the same peer
              at a different setting, and graphc is compared with the family's best.
    run:      does one unit of work and returns its result (kept alive until the next call).
    output:   turns a result into a numpy array for the cross-check (not timed).
    warmup:   calls before timing (graphc.compile needs 3: eager, trace, first replay).
    setting:  human-readable description of the configuration measured.
    warmup_timeout_s: time box for the whole warm-up (None: unbounded).
    """
    name: str
    family: str
    run: Callable[[], Any]
    output: Callable[[Any], Any] | None = None
    warmup: int = 2
    setting: str = ""
    kind: str = "peer"              # "graphc", "peer" or "reference"
    backend: str | None = None
    warmup_timeout_s: float | None = None
    extra: dict = field(default_factory=dict)


@dataclass
class Measurement:
    contender: Contender
    samples: list[float] = field(default_factory=list)
    warmup_s: float = 0.0
    first_output: Any = None
    error: str | None = None
    check: dict | None = None      # filled by the suite's output cross-check
    last_call_s: float = 0.0       # the last warm-up call: estimates a round's length

    @property
    def median(self) -> float:
        return statistics.median(self.samples) if self.samples else math.nan

    @property
    def minimum(self) -> float:
        return min(self.samples) if self.samples else math.nan


class WarmupTimeout(Exception):
    pass


def _call_with_time_box(fn, seconds):
    """Run fn(); raise WarmupTimeout if it takes longer than `seconds`.

    Uses SIGALRM, so the time box is only enforced in the main thread of the main
    interpreter; elsewhere fn runs unbounded (and the caller is told via the return)."""
    if seconds is None or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        return fn()

    def on_alarm(signum, frame):
        raise WarmupTimeout(f"warm-up exceeded its {seconds:.0f} s time box")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        return fn()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def _short_error(exc: BaseException) -> str:
    last = traceback.extract_tb(exc.__traceback__)[-1:] if exc.__traceback__ else []
    where = f" at {last[0].filename.rsplit('/', 1)[-1]}:{last[0].lineno}" if last else ""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}{where}: {text}"[:300]


def warm_up(m: Measurement) -> None:
    c = m.contender

    def body():
        out = None
        for k in range(max(c.warmup, 1)):
            t = time.perf_counter()
            out = c.run()
            m.last_call_s = time.perf_counter() - t
            if k == 0 and c.output is not None:
                m.first_output = c.output(out)
        return out

    t0 = time.perf_counter()
    try:
        _call_with_time_box(body, c.warmup_timeout_s)
    except Exception as exc:   # a broken peer must not abort the suite
        m.error = _short_error(exc)
    m.warmup_s = time.perf_counter() - t0


def measure(contenders: list[Contender], *, min_reps: int, max_reps: int,
            budget_s: float, fixed_reps: int | None = None, settle_s: float = 0.0,
            progress: Callable[[str], None] | None = None) -> list[Measurement]:
    """Warm up every contender, then time them in rotating round-robin order.

    The number of rounds is `fixed_reps` if given, else as many as fit `budget_s`
    (a round's length estimated from each contender's last warm-up call and the
    pauses), clamped to [min_reps, max_reps]."""
    ms = [Measurement(c) for c in contenders]
    for m in ms:
        if progress:
            progress(f"warming up {m.contender.name}")
        warm_up(m)
    live = [m for m in ms if m.error is None]
    if not live:
        return ms
    if fixed_reps is not None:
        reps = fixed_reps
    else:
        round_s = max(sum(settle_s + 2 * m.last_call_s for m in live), 1e-9)
        reps = int(min(max(budget_s / round_s, min_reps), max_reps))
    if progress:
        progress(f"timing {len(live)} contenders x {reps} rounds")
    for r in range(reps):
        n = len(live)
        if n == 0:
            break
        order = live[r % n:] + live[:r % n]
        for m in order:
            run = m.contender.run
            try:
                if settle_s:
                    time.sleep(settle_s)    # see the module docstring
                settle = run()              # untimed: see the module docstring
                del settle
                t0 = time.perf_counter()
                out = run()
                m.samples.append(time.perf_counter() - t0)
                del out
            except Exception as exc:
                m.error = "failed while timed: " + _short_error(exc)
                m.samples.clear()
                live.remove(m)
    return ms
