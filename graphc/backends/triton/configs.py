"""Block-size configurations per kernel kind: the candidates an autotuner times, and the
heuristic choice used without timing (under the interpreter, for small kernels, or when
autotuning is off).

A `Config` holds the constexpr values of one compiled variant (block sizes) plus the
launch shape (warps, software-pipelining stages). `candidates(kind, ...)` returns a
short list whose first entry is the heuristic default; every entry is valid for the
kernel (powers of two, tiles large enough for tl.dot, shared memory within Hopper's
228 KiB).
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Config:
    params: tuple            # ((constexpr name, value), ...)
    num_warps: int = 4
    num_stages: int = 1

    def __getitem__(self, name):
        for k, v in self.params:
            if k == name:
                return v
        raise KeyError(name)

    def describe(self) -> str:
        return " ".join(f"{k}={v}" for k, v in self.params) + \
            f" warps={self.num_warps} stages={self.num_stages}"

    def to_json(self) -> dict:
        return {"params": [list(p) for p in self.params], "num_warps": self.num_warps,
                "num_stages": self.num_stages}

    @staticmethod
    def from_json(d) -> "Config":
        return Config(tuple((k, v) for k, v in d["params"]), d["num_warps"], d["num_stages"])


def next_pow2(n: int) -> int:
    p = 1
    while p < n:
        p *= 2
    return p


def _dedupe(configs):
    out = []
    for c in configs:
        if c not in out:
            out.append(c)
    return out


def flat(n: int) -> list[Config]:
    """1-D kernels (pointwise, scatter stages) over `n` points: BLOCK elements each."""
    if n <= 1024:
        b = max(next_pow2(n), 16)
        return [Config((("BLOCK", b),), num_warps=max(1, min(4, b // 128)))]
    return _dedupe([Config((("BLOCK", 1024),), 4), Config((("BLOCK", 2048),), 8),
                    Config((("BLOCK", 4096),), 8), Config((("BLOCK", 512),), 4)])


def _warps_for(elements: int) -> int:
    """About 16 elements of a tile per thread, 1 to 16 warps."""
    return max(1, min(16, next_pow2(max(elements // 512, 1))))


def reduction(n_outer: int, n_inner: int, inner_contiguous: bool) -> list[Config]:
    """2-D kernels: BO outer points per program, the inner domain in chunks of BI.
    ONE_CHUNK means BI covers the whole inner domain: every stage then works on the
    same tile and loads are shared between stages (softmax reads its row once)."""
    pi = next_pow2(max(n_inner, 1))
    po = next_pow2(max(n_outer, 1))
    rows = []
    if pi <= 16384:   # a whole row per program
        bo = max(1, min(po, 4096 // pi))
        rows.append((bo, pi))
        if bo > 1:
            rows.append((1, pi))
    if n_inner > 2048:
        rows.append((1, 2048 if n_inner <= 16384 else 4096))
    cols = []
    if n_outer >= 16:
        for bo, bi in ((64, 32), (128, 16), (32, 64)):
            cols.append((min(bo, po), min(bi, pi)))
    order = rows + cols if inner_contiguous or not cols else cols + rows
    out = []
    for bo, bi in order:
        warps = _warps_for(bo * bi)
        params = (("BO", bo), ("BI", bi), ("ONE_CHUNK", bi >= n_inner))
        out.append(Config(params, warps))
        if bo * bi >= 4096:   # a big tile: twice and half the threads are worth timing
            if warps < 16:
                out.append(Config(params, warps * 2))
            out.append(Config(params, max(warps // 2, 1)))
    return _dedupe(out)[:6]


_GEMM_16 = [(128, 256, 64, 8, 3), (128, 128, 64, 8, 3), (128, 128, 32, 4, 4),
            (64, 128, 32, 4, 4), (64, 64, 32, 4, 3)]
_GEMM_32 = [(128, 128, 32, 8, 3), (64, 128, 32, 4, 3), (128, 64, 32, 4, 3),
            (64, 64, 32, 4, 3)]
_GEMM_64 = [(64, 64, 16, 4, 2), (32, 64, 16, 4, 2), (32, 32, 16, 4, 2)]


def gemm(m: int, n: int, k: int, operand_bytes: int) -> list[Config]:
    """Tiles BM x BN, K in steps of BK; GROUP_M rows of tiles share B in L2."""
    table = {2: _GEMM_16, 4: _GEMM_32, 8: _GEMM_64}[operand_bytes]
    out = []
    for bm, bn, bk, w, s in table:
        bm2 = max(16, min(bm, next_pow2(m)))
        bn2 = max(16, min(bn, next_pow2(n)))
        bk2 = max(16, min(bk, next_pow2(k)))
        w2 = w if bm2 * bn2 >= 128 * 128 else min(w, 4)
        out.append(Config((("BM", bm2), ("BN", bn2), ("BK", bk2), ("GROUP_M", 8)), w2, s))
    out = _dedupe(out)
    if m * n <= 256 * 256:   # small problems: the smallest tiles first (more programs)
        out.reverse()
    return out[:4]


def serial() -> list[Config]:
    return [Config((), 1)]
