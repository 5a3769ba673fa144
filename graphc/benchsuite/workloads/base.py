"""The shape every workload follows, and helpers shared by workloads.

A workload builds, for given parameters, one `Contender` per implementation: graphc on
each backend, hand-written numpy, PyTorch eager, torch.compile, jax.jit. A builder
returns either a Contender or a string: the note explaining why that peer is not run
for this workload. All implementations of one workload start from the same seeded
numpy inputs; each gets its own copy of anything it mutates (training parameters).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..peers import backend_scope
from ..timing import Contender


@dataclass(frozen=True)
class Target:
    """A goal from the issue, checked for every graphc contender of a workload.

    kind "speedup":   best median among `families` / graphc median >= threshold
    kind "bandwidth": copy-reference median / graphc median >= threshold (same bytes)
    kind "below":     the row's seconds < threshold (compile-time rows ending in `row`)
    """
    label: str
    kind: str
    threshold: float
    families: tuple[str, ...] = ()
    row: str = ""


class Workload:
    name = ""
    uses_blas = False           # numpy is also run without OPENBLAS_CORETYPE (subprocess)
    # Some contender calls a threaded BLAS (graphc's matmuls and convolutions, numpy's
    # GEMMs): OpenBLAS's workers then spin ~100 ms after each call, so the timing loop
    # pauses before each contender (timing.SETTLE_S).
    blas_spins = False
    tolerance = (1e-4, 1e-5)    # rtol, atol of the cross-check against the reference
    targets: tuple[Target, ...] = ()
    special = False             # True: not a round-robin workload (compile time)

    def params(self, quick: bool) -> dict:
        raise NotImplementedError

    def describe(self, p: dict) -> str:
        raise NotImplementedError

    def bytes_moved(self, p: dict) -> int:
        """Minimum memory traffic: bytes of all inputs read plus outputs written."""
        raise NotImplementedError

    def flops(self, p: dict) -> int | None:
        return None

    def unavailable(self) -> str | None:
        """A note if graphc cannot run this workload at all (then it is skipped)."""
        return None

    def inputs(self, p: dict) -> dict:
        raise NotImplementedError

    def graphc(self, gc, inputs: dict, backend: str, p: dict) -> list[Contender]:
        raise NotImplementedError

    def numpy(self, inputs: dict, p: dict):
        return "no hand-written numpy version"

    def torch(self, torch, inputs: dict, p: dict, compiled: bool):
        return "no PyTorch version"

    def jax(self, jax, inputs: dict, p: dict):
        return "no jax version"


def rng_for(name: str) -> np.random.Generator:
    """A generator seeded by the workload name: same inputs in every process."""
    return np.random.default_rng(sum(ord(c) * 31 ** k for k, c in enumerate(name)) % 2**32)


def graphc_contender(gc, backend: str, name_suffix: str, body, *, warmup=2, setting=""):
    """A graphc contender: `body()` builds the lazy result; the timed call also realizes
    it (graphc.runtime.realize), with `backend` as the default backend."""
    from graphc import runtime

    def run():
        with backend_scope(backend):
            out = body()
            runtime.realize(out)
            return out

    name = f"graphc[{backend}]" + (f" {name_suffix}" if name_suffix else "")
    return Contender(name=name, family="graphc", kind="graphc", backend=backend, run=run,
                     output=lambda t: np.asarray(t.detach().numpy()), warmup=warmup,
                     setting=setting)


def torch_output(t):
    return t.detach().numpy()


def jax_output(a):
    return np.asarray(a)
