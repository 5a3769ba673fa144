"""What a GEMM's orientation costs: transposed operands, and a product computed as C or
as C^T.

    python benchmarks/gemm_orientation.py [operands]    # the CNN step's GEMM operands
    python benchmarks/gemm_orientation.py orientation   # the table passes/orientation.py fits

`operands`:
The fusion pass's layout assignment (docs/backends.md, Fusion step 4) chooses how to
store a value a GEMM reads through a permutation: in an order the GEMM reads row-major,
as a transposed view, or in its own order plus a copy. This measures the first two for
C = A @ B with B row-major (NN) and B a transposed view (NT), in graphc (LLVM backend,
BLAS called from compiled code) and numpy (the same OpenBLAS), median and minimum of 40
calls each, in one process. A copy of B costs about what np.copyto of its bytes costs.

`orientation`: for the GEMM shapes of MLP layers, LSTM gates and weight gradients, the
time of `X @ Y` with each operand row-major or a transposed view, for the result (rows x
cols) and for its transpose (cols x rows), in numpy (numpy's OpenBLAS, which graphc's
LLVM backend calls) with preallocated outputs, interleaved. Each time is printed
relative to the shape's fastest way; then the least-squares fit of those ratios that
`passes/orientation.gemm_cost` uses (coefficients of: wide, i.e. fewer rows than
columns; X a transposed view; Y a transposed view; both wide and Y transposed).
"""
from __future__ import annotations

import itertools
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


def operands():
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


# (M, K, N) of C = A @ B: MLP layers (batch x features), LSTM gates, weight gradients
ORIENTATION_SHAPES = [(128, 784, 512), (128, 512, 256), (128, 256, 512), (64, 128, 512),
                      (64, 256, 1024), (32, 784, 512), (512, 128, 784), (256, 128, 512)]


def _operand(rng, rows, cols, transposed):
    if transposed:    # a transposed view of a row-major (cols x rows) array
        return rng.standard_normal((cols, rows), dtype=np.float32).T
    return rng.standard_normal((rows, cols), dtype=np.float32)


def orientation(rounds=40):
    rng = np.random.default_rng(0)
    fit_rows, fit_ratios = [], []
    print("time relative to the shape's fastest; rows x cols, then X and Y: N row-major, "
          "T a transposed view (median of interleaved calls)")
    for m, k, n in ORIENTATION_SHAPES:
        calls = {}
        for rows, cols in ((m, n), (n, m)):
            for xt, yt in itertools.product((False, True), repeat=2):
                x, y = _operand(rng, rows, k, xt), _operand(rng, k, cols, yt)
                out = np.empty((rows, cols), np.float32)
                calls[(rows, cols, xt, yt)] = lambda x=x, y=y, out=out: np.matmul(x, y, out=out)
        times = {key: [] for key in calls}
        keys = list(calls)
        for r in range(rounds):
            for key in keys if r % 2 else keys[::-1]:
                calls[key]()
                t = time.perf_counter()
                calls[key]()
                times[key].append(time.perf_counter() - t)
        medians = {key: float(np.median(v)) for key, v in times.items()}
        best = min(medians.values())
        cells = [f"{r}x{c}{'NT'[xt]}{'NT'[yt]} {t / best:.2f}"
                 for (r, c, xt, yt), t in medians.items()]
        print(f"{str((m, k, n)):>16} fastest {best * 1e3:.3f} ms: " + "  ".join(cells))
        for (r, c, xt, yt), t in medians.items():
            wide = r < c
            fit_rows.append([1.0, wide, xt, yt, wide and yt])
            fit_ratios.append(t / best)
    coef, *_ = np.linalg.lstsq(np.array(fit_rows, float), np.array(fit_ratios), rcond=None)
    print("fit of the ratios: 1 + {:.3f} wide + {:.3f} X^T + {:.3f} Y^T + {:.3f} wide*Y^T "
          "(constant {:.3f})".format(coef[1], coef[2], coef[3], coef[4], coef[0]))


if __name__ == "__main__":
    {"operands": operands, "orientation": orientation}[sys.argv[1] if len(sys.argv) > 1
                                                        else "operands"]()
