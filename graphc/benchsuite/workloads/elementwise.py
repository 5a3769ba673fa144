"""Fused elementwise chain: y = gelu(x * w + b) (exact, erf-based GELU) on float32.

The minimum memory traffic is three inputs read and one output written; a compiler
that fuses the chain into one loop approaches the copy reference's bandwidth.
"""
from __future__ import annotations

import math

import numpy as np

from ..timing import Contender
from .base import Target, Workload, graphc_contender, jax_output, rng_for, torch_output

_INV_SQRT2 = 1.0 / math.sqrt(2.0)


def numpy_erf():
    """(erf ufunc, description). scipy's float32 erf when installed; otherwise the
    Abramowitz-Stegun 7.1.26 rational approximation (|error| < 1.5e-7, below float32's
    resolution near 1), written with numpy ufuncs."""
    try:
        from scipy.special import erf
        return (lambda u, out: erf(u, out=out)), "scipy.special.erf"
    except ImportError:
        pass
    a1, a2, a3, a4, a5, p = (0.254829592, -0.284496736, 1.421413741, -1.453152027,
                             1.061405429, 0.3275911)

    def erf_as(u, out):
        s = np.sign(u)
        a = np.abs(u)
        t = 1.0 / (1.0 + p * a)
        poly = ((((a5 * t + a4) * t + a3) * t + a2) * t + a1) * t
        np.multiply(s, 1.0 - poly * np.exp(-a * a), out=out)
        return out
    return erf_as, "Abramowitz-Stegun erf in numpy"


class ElementwiseChain(Workload):
    name = "elementwise_chain"
    tolerance = (1e-4, 1e-5)
    targets = (
        Target(">= 3x numpy", "speedup", 3.0, ("numpy",)),
        Target(">= 2x torch eager", "speedup", 2.0, ("torch eager",)),
        Target(">= 70% of copy bandwidth", "bandwidth", 0.70),
    )

    def params(self, quick):
        return {"n": 1 << 16 if quick else 1 << 24}

    def describe(self, p):
        return f"gelu(x*w+b), {p['n']:,} float32"

    def bytes_moved(self, p):
        return 4 * p["n"] * 4

    def inputs(self, p):
        r = rng_for(self.name)
        return {k: r.standard_normal(p["n"], dtype=np.float32) for k in ("x", "w", "b")}

    def graphc(self, gc, inputs, backend, p):
        x, w, b = (gc.from_numpy(inputs[k]) for k in ("x", "w", "b"))
        return [graphc_contender(gc, backend, "", lambda: gc.gelu(x * w + b),
                                 setting="lazy tensor ops, realize")]

    def numpy(self, inputs, p):
        x, w, b = inputs["x"], inputs["w"], inputs["b"]
        erf, how = numpy_erf()

        def run():
            t = np.multiply(x, w)
            t += b
            u = np.multiply(t, np.float32(_INV_SQRT2))
            erf(u, out=u)
            u += np.float32(1.0)
            u *= np.float32(0.5)
            u *= t
            return u
        return Contender("numpy", "numpy", run, output=np.asarray,
                         setting=f"float32, in-place ufuncs, {how}")

    def torch(self, torch, inputs, p, compiled):
        x, w, b = (torch.from_numpy(inputs[k]) for k in ("x", "w", "b"))
        gelu = torch.nn.functional.gelu

        def chain(x, w, b):
            return gelu(x * w + b)
        fn = torch.compile(chain) if compiled else chain
        return Contender("torch.compile" if compiled else "torch eager",
                         "torch.compile" if compiled else "torch eager",
                         lambda: fn(x, w, b), output=torch_output, warmup=3 if compiled else 2)

    def jax(self, jax, inputs, p):
        import jax.numpy as jnp
        fn = jax.jit(lambda x, w, b: jax.nn.gelu(x * w + b, approximate=False))
        x, w, b = (jnp.asarray(inputs[k]) for k in ("x", "w", "b"))
        return Contender("jax.jit", "jax.jit", lambda: fn(x, w, b).block_until_ready(),
                         output=jax_output, warmup=2)
