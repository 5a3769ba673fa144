"""Training steps: one SGD step of a 784-512-256-10 MLP and of a small CNN.

Every implementation starts from the same seeded initial parameters (each with its own
copy, since steps update them in place) and the same batch, so the losses of their first
steps must agree: that is the cross-check. Later steps keep training the same batch;
the work per step does not change.

graphc's steps are written as a user would without graphc.nn/optim: tensor ops,
backward(), and an SGD update under no_grad. Two graphc paths are timed: the plain lazy
path (each step realizes a graph taken from the cache) and graphc.compile(step)
(captured once, then replayed). PyTorch uses its fused F.cross_entropy and the same
update torch.optim.SGD performs on CPU (see _torch_step).
"""
from __future__ import annotations

import numpy as np

from ..timing import Contender
from .base import Target, Workload, graphc_contender, rng_for

LR = 0.01
TORCH_SGD = "SGD update p.add_(grad, alpha=-lr)"
MLP_SIZES = (784, 512, 256, 10)


def he_normal(r, fan_in, shape):
    return (r.standard_normal(shape) * np.sqrt(2.0 / fan_in)).astype(np.float32)


def mlp_init(batch: int, seed_name="mlp_step") -> dict:
    r = rng_for(seed_name)
    params = []
    for fan_in, fan_out in zip(MLP_SIZES[:-1], MLP_SIZES[1:]):
        params += [he_normal(r, fan_in, (fan_in, fan_out)), np.zeros(fan_out, np.float32)]
    return {"params": params,
            "x": r.standard_normal((batch, MLP_SIZES[0]), dtype=np.float32),
            "y": r.integers(0, MLP_SIZES[-1], batch).astype(np.int64)}


def graphc_cross_entropy(gc, logits, y):
    return -gc.log_softmax(logits, dim=1).gather(1, y.unsqueeze(1)).mean()


def graphc_sgd_update(gc, params, lr):
    with gc.no_grad():
        for p in params:
            p -= lr * p.grad
            p.grad = None


def graphc_mlp_step(gc, init: dict):
    """(step(x, y) -> loss, x, y) with fresh graphc parameters from `init`."""
    params = [gc.from_numpy(a.copy()).requires_grad_() for a in init["params"]]
    w1, b1, w2, b2, w3, b3 = params

    def mlp_step(x, y):
        h = gc.relu(x @ w1 + b1)
        h = gc.relu(h @ w2 + b2)
        loss = graphc_cross_entropy(gc, h @ w3 + b3, y)
        loss.backward()
        graphc_sgd_update(gc, params, LR)
        return loss
    return mlp_step, gc.from_numpy(init["x"]), gc.from_numpy(init["y"])


def _graphc_step_contenders(gc, backend, make_step):
    """Lazy and graphc.compile contenders, each with its own parameters."""
    lazy_step, x, y = make_step()
    eager_body, cx, cy = make_step()
    compiled = gc.compile(eager_body, backend=backend)
    return [
        graphc_contender(gc, backend, "lazy", lambda: lazy_step(x, y), warmup=2,
                         setting="lazy tensor ops, backward(), realize loss + updates"),
        graphc_contender(gc, backend, "compile", lambda: compiled(cx, cy), warmup=3,
                         setting="graphc.compile(step): 1 eager + 1 trace call in warm-up, "
                                 "then replays"),
    ]


def _torch_step(torch, params, forward_loss, compiled):
    """PyTorch's step. The update is what torch.optim.SGD (no momentum) runs on CPU,
    p.add_(grad, alpha=-lr) per parameter, written out like graphc's: constructing a
    torch.optim optimizer imports torch._dynamo (seconds) for no speed difference."""
    fwd = torch.compile(forward_loss) if compiled else forward_loss

    def step(x, y):
        loss = fwd(x, y)
        loss.backward()
        with torch.no_grad():
            for p in params:
                p.add_(p.grad, alpha=-LR)
                p.grad = None
        return loss.detach()
    return step


def _loss_output(t):
    return np.asarray(t.detach().numpy() if hasattr(t, "detach") else t, dtype=np.float64)


class MLPStep(Workload):
    blas_spins = True
    name = "mlp_step"
    uses_blas = True
    tolerance = (1e-4, 1e-5)
    targets = (Target(">= 1.3x torch eager", "speedup", 1.3, ("torch eager",)),
               Target("not slower than jax.jit", "speedup", 1.0, ("jax.jit",)))

    def params(self, quick):
        return {"batch": 32 if quick else 128}

    def describe(self, p):
        return (f"MLP 784-512-256-10 SGD step (ReLU, cross-entropy), batch {p['batch']}, "
                f"float32")

    def bytes_moved(self, p):
        n_params = sum(a * b + b for a, b in zip(MLP_SIZES[:-1], MLP_SIZES[1:]))
        return 4 * (2 * n_params + p["batch"] * MLP_SIZES[0]) + 8 * p["batch"]

    def flops(self, p):
        macs = sum(a * b for a, b in zip(MLP_SIZES[:-1], MLP_SIZES[1:]))
        return 6 * p["batch"] * macs      # forward 2, backward 4 flops per MAC

    def inputs(self, p):
        return mlp_init(p["batch"])

    def graphc(self, gc, inputs, backend, p):
        return _graphc_step_contenders(gc, backend, lambda: graphc_mlp_step(gc, inputs))

    def numpy(self, inputs, p):
        params = [a.copy() for a in inputs["params"]]
        x, y = inputs["x"], inputs["y"]
        rows = np.arange(x.shape[0])

        def run():
            w1, b1, w2, b2, w3, b3 = params
            batch = x.shape[0]
            h1 = x @ w1
            h1 += b1
            np.maximum(h1, 0, out=h1)
            h2 = h1 @ w2
            h2 += b2
            np.maximum(h2, 0, out=h2)
            logits = h2 @ w3
            logits += b3
            shifted = logits - logits.max(axis=1, keepdims=True)
            e = np.exp(shifted)
            total = e.sum(axis=1, keepdims=True)
            loss = np.float32(-(shifted[rows, y] - np.log(total[:, 0])).mean())
            g3 = e / total
            g3[rows, y] -= 1
            g3 /= batch
            g2 = g3 @ w3.T
            g2 *= h2 > 0
            g1 = g2 @ w2.T
            g1 *= h1 > 0
            grads = (x.T @ g1, g1.sum(axis=0), h1.T @ g2, g2.sum(axis=0),
                     h2.T @ g3, g3.sum(axis=0))
            for param, grad in zip(params, grads):
                grad *= np.float32(LR)
                param -= grad
            return loss
        return Contender("numpy", "numpy", run, output=_loss_output,
                         setting="hand-written forward/backward, in-place SGD")

    def torch(self, torch, inputs, p, compiled):
        params = [torch.from_numpy(a.copy()).requires_grad_() for a in inputs["params"]]
        w1, b1, w2, b2, w3, b3 = params
        F = torch.nn.functional

        def forward_loss(x, y):
            h = F.relu(x @ w1 + b1)
            h = F.relu(h @ w2 + b2)
            return F.cross_entropy(h @ w3 + b3, y)
        step = _torch_step(torch, params, forward_loss, compiled)
        x, y = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["y"])
        name = "torch.compile" if compiled else "torch eager"
        return Contender(name, name, lambda: step(x, y), output=_loss_output,
                         warmup=3 if compiled else 2,
                         setting=("torch.compile(forward+loss), eager backward/SGD"
                                  if compiled else f"F.cross_entropy, {TORCH_SGD}"))

    def jax(self, jax, inputs, p):
        import jax.numpy as jnp

        def loss_fn(params, x, y):
            w1, b1, w2, b2, w3, b3 = params
            h = jax.nn.relu(x @ w1 + b1)
            h = jax.nn.relu(h @ w2 + b2)
            logp = jax.nn.log_softmax(h @ w3 + b3, axis=1)
            return -jnp.take_along_axis(logp, y[:, None], axis=1).mean()

        @jax.jit
        def step(params, x, y):
            loss, grads = jax.value_and_grad(loss_fn)(params, x, y)
            return tuple(q - LR * g for q, g in zip(params, grads)), loss

        state = [tuple(jnp.asarray(a) for a in inputs["params"])]
        x, y = jnp.asarray(inputs["x"]), jnp.asarray(inputs["y"])

        def run():
            state[0], loss = step(state[0], x, y)
            return loss.block_until_ready()
        return Contender("jax.jit", "jax.jit", run, output=_loss_output,
                         setting="jax.jit(value_and_grad + SGD)")


# -- CNN --------------------------------------------------------------------------
CNN_CHANNELS = (1, 16, 32)
CNN_CLASSES = 10
CNN_IMAGE = 28
CNN_FLAT = CNN_CHANNELS[-1] * (CNN_IMAGE // 4) ** 2


def graphc_conv_ops():
    """(conv2d, max_pool2d) from graphc.nn.functional, or a string saying why not.

    Looked up at each call (not at import) so the suite picks the primitives up as soon
    as the nn engineer lands them."""
    try:
        from graphc.nn import functional as F
    except Exception as exc:
        return f"graphc.nn.functional does not import ({type(exc).__name__}: {exc})"
    missing = [n for n in ("conv2d", "max_pool2d") if not hasattr(F, n)]
    if missing:
        return f"graphc.nn.functional has no {', '.join(missing)}"
    return F.conv2d, F.max_pool2d


def cnn_init(batch: int) -> dict:
    r = rng_for("cnn_step")
    c0, c1, c2 = CNN_CHANNELS
    params = [he_normal(r, c0 * 9, (c1, c0, 3, 3)), np.zeros(c1, np.float32),
              he_normal(r, c1 * 9, (c2, c1, 3, 3)), np.zeros(c2, np.float32),
              he_normal(r, CNN_FLAT, (CNN_FLAT, CNN_CLASSES)),
              np.zeros(CNN_CLASSES, np.float32)]
    return {"params": params,
            "x": r.standard_normal((batch, c0, CNN_IMAGE, CNN_IMAGE), dtype=np.float32),
            "y": r.integers(0, CNN_CLASSES, batch).astype(np.int64)}


class CNNStep(Workload):
    blas_spins = True
    name = "cnn_step"
    tolerance = (1e-4, 1e-5)
    targets = (Target("not slower than torch eager", "speedup", 1.0, ("torch eager",)),)

    def params(self, quick):
        return {"batch": 8 if quick else 64}

    def describe(self, p):
        return (f"CNN SGD step: conv 1->16 3x3 pad 1, relu, maxpool 2, conv 16->32 3x3 "
                f"pad 1, relu, maxpool 2, linear {CNN_FLAT}->10, cross-entropy; "
                f"28x28, batch {p['batch']}")

    def unavailable(self):
        ops = graphc_conv_ops()
        return ops if isinstance(ops, str) else None

    def bytes_moved(self, p):
        n_params = sum(a.size for a in cnn_init(1)["params"])
        return 4 * (2 * n_params + p["batch"] * CNN_IMAGE * CNN_IMAGE) + 8 * p["batch"]

    def inputs(self, p):
        return cnn_init(p["batch"])

    def graphc(self, gc, inputs, backend, p):
        conv2d, max_pool2d = graphc_conv_ops()

        def make_step():
            params = [gc.from_numpy(a.copy()).requires_grad_() for a in inputs["params"]]
            w1, b1, w2, b2, wl, bl = params

            def cnn_step(x, y):
                h = max_pool2d(gc.relu(conv2d(x, w1, b1, padding=1)), 2)
                h = max_pool2d(gc.relu(conv2d(h, w2, b2, padding=1)), 2)
                loss = graphc_cross_entropy(gc, h.reshape(h.shape[0], -1) @ wl + bl, y)
                loss.backward()
                graphc_sgd_update(gc, params, LR)
                return loss
            return cnn_step, gc.from_numpy(inputs["x"]), gc.from_numpy(inputs["y"])
        return _graphc_step_contenders(gc, backend, make_step)

    def numpy(self, inputs, p):
        return ("not run: a hand-written numpy conv backward (im2col) is not a sensible "
                "peer; PyTorch is the reference")

    def torch(self, torch, inputs, p, compiled):
        params = [torch.from_numpy(a.copy()).requires_grad_() for a in inputs["params"]]
        w1, b1, w2, b2, wl, bl = params
        F = torch.nn.functional

        def forward_loss(x, y):
            h = F.max_pool2d(F.relu(F.conv2d(x, w1, b1, padding=1)), 2)
            h = F.max_pool2d(F.relu(F.conv2d(h, w2, b2, padding=1)), 2)
            return F.cross_entropy(h.reshape(h.shape[0], -1) @ wl + bl, y)
        step = _torch_step(torch, params, forward_loss, compiled)
        x, y = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["y"])
        name = "torch.compile" if compiled else "torch eager"
        return Contender(name, name, lambda: step(x, y), output=_loss_output,
                         warmup=3 if compiled else 2,
                         setting=("torch.compile(forward+loss), eager backward/SGD"
                                  if compiled else f"F.conv2d/max_pool2d, {TORCH_SGD}"))

    def jax(self, jax, inputs, p):
        return "no jax CNN step written"
