"""Row-wise normalisations on a 2-D float32 matrix: softmax and layer norm over the
last dimension. Each reads the matrix (plus weight/bias) and writes one of its size."""
from __future__ import annotations

import numpy as np

from ..timing import Contender
from .base import Target, Workload, graphc_contender, jax_output, rng_for, torch_output

EPS = 1e-5


class _Rowwise(Workload):
    tolerance = (1e-4, 1e-5)
    targets = (Target(">= 1.5x torch eager (best setting)", "speedup", 1.5,
                      ("torch eager",)),)

    def params(self, quick):
        return {"rows": 128, "cols": 256} if quick else {"rows": 4096, "cols": 4096}

    def bytes_moved(self, p):
        return 2 * p["rows"] * p["cols"] * 4 + self._extra_bytes(p)

    def _extra_bytes(self, p):
        return 0

    def inputs(self, p):
        r = rng_for(self.name)
        return {"x": r.standard_normal((p["rows"], p["cols"]), dtype=np.float32),
                "weight": r.standard_normal(p["cols"], dtype=np.float32),
                "bias": r.standard_normal(p["cols"], dtype=np.float32)}


class Softmax(_Rowwise):
    name = "softmax"

    def describe(self, p):
        return f"softmax(x, dim=-1), x {p['rows']}x{p['cols']} float32"

    def graphc(self, gc, inputs, backend, p):
        x = gc.from_numpy(inputs["x"])
        return [graphc_contender(gc, backend, "", lambda: gc.softmax(x, dim=-1),
                                 setting="graphc.softmax")]

    def numpy(self, inputs, p):
        x = inputs["x"]

        def run():
            e = np.subtract(x, x.max(axis=1, keepdims=True))
            np.exp(e, out=e)
            e /= e.sum(axis=1, keepdims=True)
            return e
        return Contender("numpy", "numpy", run, output=np.asarray,
                         setting="max-shifted exp, in place")

    def torch(self, torch, inputs, p, compiled):
        x = torch.from_numpy(inputs["x"])

        def f(x):
            return torch.softmax(x, dim=-1)
        fn = torch.compile(f) if compiled else f
        return Contender("torch.compile" if compiled else "torch eager",
                         "torch.compile" if compiled else "torch eager",
                         lambda: fn(x), output=torch_output, warmup=3 if compiled else 2)

    def jax(self, jax, inputs, p):
        import jax.numpy as jnp
        fn = jax.jit(lambda x: jax.nn.softmax(x, axis=-1))
        x = jnp.asarray(inputs["x"])
        return Contender("jax.jit", "jax.jit", lambda: fn(x).block_until_ready(),
                         output=jax_output)


def graphc_layer_norm(gc):
    """(function, description): graphc.nn.functional.layer_norm when it exists (what a
    user calls), else the same formula in graphc tensor ops."""
    try:
        from graphc.nn import functional as F
        if hasattr(F, "layer_norm"):
            return (lambda x, w, b: F.layer_norm(x, (x.shape[-1],), w, b, EPS),
                    "graphc.nn.functional.layer_norm")
    except ImportError:
        pass

    def ln(x, w, b):
        mean = x.mean(dim=-1, keepdim=True)
        centered = x - mean
        var = (centered * centered).mean(dim=-1, keepdim=True)
        return centered * gc.rsqrt(var + EPS) * w + b
    return ln, "tensor ops (graphc.nn.functional.layer_norm not available)"


class LayerNorm(_Rowwise):
    name = "layernorm"

    def describe(self, p):
        return (f"layer_norm over last dim with weight and bias, x {p['rows']}x{p['cols']} "
                f"float32")

    def _extra_bytes(self, p):
        return 2 * p["cols"] * 4

    def graphc(self, gc, inputs, backend, p):
        x, w, b = (gc.from_numpy(inputs[k]) for k in ("x", "weight", "bias"))
        ln, how = graphc_layer_norm(gc)
        return [graphc_contender(gc, backend, "", lambda: ln(x, w, b), setting=how)]

    def numpy(self, inputs, p):
        x, w, b = inputs["x"], inputs["weight"], inputs["bias"]

        def run():
            c = np.subtract(x, x.mean(axis=1, keepdims=True))
            var = np.einsum("ij,ij->i", c, c)[:, None] / np.float32(x.shape[1])
            c *= 1.0 / np.sqrt(var + np.float32(EPS))
            c *= w
            c += b
            return c
        return Contender("numpy", "numpy", run, output=np.asarray,
                         setting="two-pass mean/variance, in place")

    def torch(self, torch, inputs, p, compiled):
        x, w, b = (torch.from_numpy(inputs[k]) for k in ("x", "weight", "bias"))
        shape = (p["cols"],)

        def f(x, w, b):
            return torch.nn.functional.layer_norm(x, shape, w, b, EPS)
        fn = torch.compile(f) if compiled else f
        return Contender("torch.compile" if compiled else "torch eager",
                         "torch.compile" if compiled else "torch eager",
                         lambda: fn(x, w, b), output=torch_output, warmup=3 if compiled else 2)

    def jax(self, jax, inputs, p):
        import jax.numpy as jnp

        def ln(x, w, b):
            m = x.mean(axis=-1, keepdims=True)
            v = ((x - m) ** 2).mean(axis=-1, keepdims=True)
            return (x - m) * jax.lax.rsqrt(v + EPS) * w + b
        fn = jax.jit(ln)
        x, w, b = (jnp.asarray(inputs[k]) for k in ("x", "weight", "bias"))
        return Contender("jax.jit", "jax.jit", lambda: fn(x, w, b).block_until_ready(),
                         output=jax_output)
