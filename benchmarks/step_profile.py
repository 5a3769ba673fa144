"""Time (and optionally profile) graphc's compiled step of one bench workload, from the
source tree this script sits in.

    python benchmarks/step_profile.py cnn_step [--reps 40] [--profile N]

For A/B comparisons between commits: check the other commit out in a worktree
(`git worktree add /tmp/base <commit>`) and alternate the two trees' copies of this
script in fresh processes, several times; this VM's timings drift by 10% and at times
sit in a mode twice as slow for a whole process (see docs/backends.md), so compare
pairs run back to back, medians and minimums both. `--profile N` runs with
GRAPHC_PROFILE=1 and prints the N slowest kernels (per-kernel timing adds a little
overhead) and the step's GEMM and other kernel time.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

TREE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, TREE)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=["mlp_step", "cnn_step", "nn_mlp_step",
                                         "nn_cnn_step", "lstm_step"])
    ap.add_argument("--reps", type=int, default=40)
    ap.add_argument("--profile", type=int, default=0, metavar="N")
    args = ap.parse_args()
    if args.profile:
        os.environ["GRAPHC_PROFILE"] = "1"
    os.environ.setdefault("GRAPHC_CACHE_DIR", tempfile.mkdtemp(prefix="graphc-step-"))
    import numpy as np
    import graphc as gc
    from graphc.backends.llvm import executor
    from graphc.benchsuite.workloads import nn_training, training
    cls = {"mlp_step": training.MLPStep, "cnn_step": training.CNNStep,
           "nn_mlp_step": nn_training.NNMLPStep, "nn_cnn_step": nn_training.NNCNNStep,
           "lstm_step": nn_training.LSTMStep}[args.workload]
    w = cls()
    p = w.params(False)
    contenders = w.graphc(gc, w.inputs(p), "llvm", p)
    contenders = contenders if isinstance(contenders, list) else [contenders]
    step = next(c for c in contenders if "compile" in c.name).run
    for _ in range(5):
        step()
    executor.PROFILE.clear()
    times = []
    for _ in range(args.reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    print(f"{args.workload} ({TREE}): median {np.median(times) * 1e3:.3f} ms, "
          f"min {min(times) * 1e3:.3f} ms over {args.reps} steps")
    if args.profile:
        rows = executor.PROFILE.values()
        gemm = sum(t for t, _n, what in rows if " @ " in what) / args.reps
        other = sum(t for t, _n, what in rows if " @ " not in what) / args.reps
        print(f"per step: GEMM kernels {gemm * 1e3:.2f} ms, other kernels {other * 1e3:.2f} ms")
        print(executor.profile_report(args.profile))


if __name__ == "__main__":
    main()
