"""Copy stages on the LLVM backend: llvm.memcpy against element loops.

    python benchmarks/copy_stages.py [PIECES ROWS RUN]   # default: 32 64 512

A concat of PIECES buffers of ROWS x RUN float32 along a new leading dim is one kernel of
PIECES plain copy stages (the weight-gradient concat of an unrolled LSTM). The backend
emits each contiguous run as an llvm.memcpy (codegen.copy_run); this script compiles
the same graph both ways, element loops being what the backend did before, and prints
compile seconds and the median run time of each, alternated in one process.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from graphc.backends import llvm as L  # noqa: E402
from graphc.backends.llvm import codegen  # noqa: E402
from graphc.ir import dtypes as dt  # noqa: E402
from graphc.testing import graph, inp, op  # noqa: E402


def main(pieces=32, rows=64, run=512, rounds=7, reps=30):
    xs = [inp((rows, run), dt.float32, f"x{k}") for k in range(pieces)]
    g = graph([op("concat", *[op("reshape", x, shape=(1, rows, run)) for x in xs], dim=0)],
              xs)
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((rows, run)).astype(np.float32) for _ in xs]
    found = codegen.copy_run
    exes = {}
    try:
        for name, finder in (("memcpy", found), ("element loops", lambda st: 0)):
            codegen.copy_run = finder
            t0 = time.perf_counter()
            exes[name] = L.compile_plan(L.fuse(g), use_cache=False)
            print(f"{name:>14}: compile {time.perf_counter() - t0:.2f} s")
    finally:
        codegen.copy_run = found
    medians = {k: [] for k in exes}
    for _ in range(rounds):
        for name, exe in exes.items():
            for _ in range(3):
                exe(arrays)
            ts = []
            for _ in range(reps):
                t0 = time.perf_counter()
                exe(arrays)
                ts.append(time.perf_counter() - t0)
            medians[name].append(float(np.median(ts)) * 1e3)
    for name, ms in medians.items():
        print(f"{name:>14}: run {np.median(ms):.3f} ms (median of {rounds} medians)")


if __name__ == "__main__":
    main(*map(int, sys.argv[1:4]))
