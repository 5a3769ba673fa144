"""Square float32 matrix multiply C = A @ B. Compute-bound: the interesting peer is the
best BLAS on the machine (numpy's OpenBLAS, with and without OPENBLAS_CORETYPE, and
PyTorch's MKL); each side's library and kernel are reported with the results."""
from __future__ import annotations

import numpy as np

from ..timing import Contender
from .base import Target, Workload, graphc_contender, jax_output, rng_for, torch_output


class Matmul(Workload):
    blas_spins = True
    uses_blas = True
    tolerance = (1e-3, 1e-3)     # float32 sums of n products in different orders

    def __init__(self, n: int, quick_n: int):
        self.n, self.quick_n = n, quick_n
        self.name = f"matmul_{n}"
        self.targets = (Target(">= 0.9x best BLAS", "speedup", 0.9, ("numpy", "torch eager")),)

    def params(self, quick):
        return {"n": self.quick_n if quick else self.n}

    def describe(self, p):
        return f"A @ B, {p['n']}x{p['n']} float32"

    def bytes_moved(self, p):
        return 3 * p["n"] * p["n"] * 4

    def flops(self, p):
        return 2 * p["n"] ** 3

    def inputs(self, p):
        r = rng_for(self.name)
        return {k: r.standard_normal((p["n"], p["n"]), dtype=np.float32) for k in "ab"}

    def graphc(self, gc, inputs, backend, p):
        a, b = gc.from_numpy(inputs["a"]), gc.from_numpy(inputs["b"])
        return [graphc_contender(gc, backend, "", lambda: a @ b, setting="a @ b")]

    def numpy(self, inputs, p):
        a, b = inputs["a"], inputs["b"]
        return Contender("numpy", "numpy", lambda: a @ b, output=np.asarray, setting="a @ b")

    def torch(self, torch, inputs, p, compiled):
        if compiled:
            return ("not run: torch.compile lowers a lone matmul to the same extern mm "
                    "kernel as eager")
        a, b = torch.from_numpy(inputs["a"]), torch.from_numpy(inputs["b"])
        return Contender("torch eager", "torch eager", lambda: a @ b, output=torch_output)

    def jax(self, jax, inputs, p):
        import jax.numpy as jnp
        fn = jax.jit(jnp.matmul)
        a, b = jnp.asarray(inputs["a"]), jnp.asarray(inputs["b"])
        return Contender("jax.jit", "jax.jit", lambda: fn(a, b).block_until_ready(),
                         output=jax_output)
