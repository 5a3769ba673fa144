"""Measure the compile time of the MLP training step in *this* (fresh) process.

Run by the mlp_compile workload as
`python -m graphc.benchsuite.compile_probe BATCH REPLAYS THREADS` (THREADS 0: defaults),
with GRAPHC_BACKEND and GRAPHC_CACHE_DIR set by the parent. Prints one JSON object.

What is measured: graphc.compile(step) needs two calls before it replays (an eager
call that creates lazily-initialised state, then the tracing call that captures and
compiles the whole step). Their wall time minus two steady-state replays (the fastest
replay: the least disturbed by other jobs on the machine) is the time a user waits for
compilation: `overhead_s`. `backend_compile_s` is the part spent inside
backends' compile() (graph to executable), summed over the executables made; with a
disk cache that is the part a cache can remove.
"""
from __future__ import annotations

import json
import os
import statistics
import sys
import time


def main(argv):
    batch = int(argv[1]) if len(argv) > 1 else 128
    replays = int(argv[2]) if len(argv) > 2 else 5
    threads = int(argv[3]) if len(argv) > 3 else 0    # 0: library defaults
    t0 = time.perf_counter()
    import graphc as gc
    from graphc.benchsuite.peers import ThreadLimit
    from graphc import runtime
    from graphc.benchsuite.workloads.training import graphc_mlp_step, mlp_init
    import_s = time.perf_counter() - t0

    body, x, y = graphc_mlp_step(gc, mlp_init(batch))
    step = gc.compile(body)
    calls = []
    with ThreadLimit(threads or None):
        for _ in range(2 + replays):
            t = time.perf_counter()
            loss = step(x, y)
            runtime.realize(loss)
            calls.append(time.perf_counter() - t)
    replay_s = statistics.median(calls[2:])
    replay_min_s = min(calls[2:])
    executables = list(runtime._cache.values())   # everything this process compiled
    print(json.dumps({
        "backend": os.environ.get("GRAPHC_BACKEND") or "interp",
        "import_s": import_s,
        "eager_call_s": calls[0],
        "trace_call_s": calls[1],
        "replay_s": replay_s,
        "replay_min_s": replay_min_s,
        "overhead_s": max(calls[0] + calls[1] - 2 * replay_min_s, 0.0),
        "backend_compile_s": sum(getattr(e, "compile_seconds", 0.0) for e in executables),
        "executables": len(executables),
        "loss": float(loss.item()),
        "step_stats": dict(step.stats),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
