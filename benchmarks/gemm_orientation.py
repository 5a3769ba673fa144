"""What a transposed GEMM operand costs, on the GEMM shapes of the CNN training step.

    python benchmarks/gemm_orientation.py

The fusion pass's layout assignment (docs/backends.md, Fusion step 4) chooses how to
store a value a GEMM reads through a permutation: in an order the GEMM reads row-major,
as a transposed view, or in its own order plus a copy. This measures the first two for
C = A @ B with B row-major (NN) and B a transposed view (NT), in graphc (LLVM backend,
BLAS called from compiled code) and numpy (the same OpenBLAS), median and minimum of 40
calls each, in one process. A copy of B costs about what np.copyto of its bytes costs.
"""
from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import graphc as gc  # noqa: E402

SHAPES = [(9, 50176, 16),     # conv 1 weight gradient: patches @ (N*H*W, C) gradient
          (144, 12544, 32),   # conv 2 weight gradient
          (144, 32, 12544)]   # conv 2 input gradient: W^T @ (C, N*H*W) gradient


def timed(fn, reps=40):
    fn()
    fn()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return np.median(times) * 1e3, min(times) * 1e3


def main():
    rng = np.random.default_rng(0)
    print(f"{'M, K, N':>18}  {'graphc NN':>10} {'graphc NT':>10} {'NT/NN':>6}  "
          f"{'numpy NN':>9} {'numpy NT':>9} {'NT/NN':>6}  {'copy B':>7}   (median ms)")
    for m, k, n in SHAPES:
        a = rng.standard_normal((m, k), dtype=np.float32)
        b = rng.standard_normal((k, n), dtype=np.float32)
        bt = np.ascontiguousarray(b.T)
        ga, gb, gbt = gc.from_numpy(a), gc.from_numpy(b), gc.from_numpy(bt)
        g_nn = timed(lambda: (ga @ gb).numpy())[0]
        g_nt = timed(lambda: (ga @ gbt.T).numpy())[0]
        n_nn = timed(lambda: a @ b)[0]
        n_nt = timed(lambda: a @ bt.T)[0]
        dst = np.empty_like(b)
        copy = timed(lambda: np.copyto(dst, b))[0]
        print(f"{str((m, k, n)):>18}  {g_nn:10.3f} {g_nt:10.3f} {g_nt / g_nn:6.2f}  "
              f"{n_nn:9.3f} {n_nt:9.3f} {n_nt / n_nn:6.2f}  {copy:7.3f}")


if __name__ == "__main__":
    main()
