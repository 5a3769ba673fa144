"""Compile time of a graphc.compile'd LSTM training step against the sequence length.

    python benchmarks/lstm_compile.py [SEQ,SEQ,...]     # default 10,25,50,100

An LSTM(32, 64) over the sequence, a Linear head on the last state, cross-entropy,
Adam; batch 16. The recurrence is unrolled into the graph, so compile time should grow
linearly with the sequence (issue 4: "a 100-step sequence must not make compile time
explode"). Prints, per length, the first call (eager realization: one compile), the
second (trace: one more compile) and a replay. Each length compiles into a fresh
cache directory; GRAPHC_COMPILE_WORKERS=0 measures without the compile workers.
"""
from __future__ import annotations

import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import graphc as gc  # noqa: E402


def measure(seq: int) -> tuple:
    gc.manual_seed(0)
    lstm, head = gc.nn.LSTM(32, 64), gc.nn.Linear(64, 10)
    opt = gc.optim.Adam(list(lstm.parameters()) + list(head.parameters()), lr=1e-3)
    rng = np.random.default_rng(0)
    x = gc.from_numpy(rng.random((seq, 16, 32), dtype=np.float32))
    y = gc.from_numpy(rng.integers(0, 10, 16))

    @gc.compile
    def step(xb, yb):
        opt.zero_grad()
        out, _ = lstm(xb)
        loss = gc.nn.functional.cross_entropy(head(out[-1]), yb)
        loss.backward()
        opt.step()
        return loss
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        step(x, y).item()
        times.append(time.perf_counter() - t0)
    return tuple(times)


def main(lengths):
    for seq in lengths:
        with tempfile.TemporaryDirectory() as d:
            os.environ["GRAPHC_CACHE_DIR"] = d
            first, trace, replay = measure(seq)
        print(f"seq {seq:4d}: first call {first:6.2f} s, trace {trace:6.2f} s, "
              f"replay {replay * 1e3:6.1f} ms", flush=True)


if __name__ == "__main__":
    main([int(s) for s in (sys.argv[1] if len(sys.argv) > 1 else "10,25,50,100").split(",")])
