"""Training steps written with graphc.nn and graphc.optim (issue #4): an MLP and a CNN
with momentum SGD, and a row-by-row LSTM classifier with Adam.

The step is what a PyTorch user writes, and the model is built by the same code for
both frameworks (`build(nn, p)` receives graphc.nn or torch.nn):

    opt.zero_grad(); loss = loss_fn(model(x), y); loss.backward(); opt.step(); return loss

graphc times `graphc.compile(step)` (first call eager, second traces, then replays);
PyTorch runs the same step eagerly with torch.optim, and torch.compile compiles the
model's forward + loss (backward and the optimizer step stay eager, as in training.py).

Invariants:
  * Every implementation starts from the same initial weights: seeded numpy arrays keyed
    by the model's state_dict names, drawn from PyTorch's default init distributions,
    loaded with load_state_dict on each side (each side gets its own copy).
  * Every contender makes CHECKED_STEPS warm-up steps on the same batch, and the losses
    of those steps are what the suite's cross-check compares (see LossTrajectory): for
    graphc.compile that covers the eager call, the traced call and two replays, so a
    replay that reads or writes back the parameters or optimizer state wrongly shows up
    as an OUTPUT MISMATCH, not only a wrong first (eager) loss.
"""
from __future__ import annotations

import math

import numpy as np

from ..timing import Contender
from .base import Target, Workload, graphc_contender, rng_for

# eager, trace, then two replays: the second replay's loss depends on the first
# replay's parameter and optimizer-state write-back.
CHECKED_STEPS = 4

SGD_OPTIONS = {"lr": 0.01, "momentum": 0.9}
ADAM_OPTIONS = {"lr": 1e-3}


class LossTrajectory:
    """The losses of a contender's first `steps` steps, for the suite's cross-check.

    The suite compares each contender's first output with the reference's after all
    contenders have been warmed up and timed (suite._check_outputs calls np.asarray on
    it then). This object is handed over as that first output and fills in as the steps
    run, so the comparison covers the whole warm-up, not only the first step (every
    contender's warm-up is CHECKED_STEPS calls, so the trajectory is complete before any
    timing). Recording keeps a reference to the returned loss (no conversion inside the
    timed call)."""

    def __init__(self, steps: int, to_float):
        self.steps = steps
        self.to_float = to_float
        self.losses: list = []

    def record(self, loss):
        if len(self.losses) < self.steps:
            self.losses.append(loss)

    def __array__(self, dtype=None, copy=None):
        return np.array([self.to_float(v) for v in self.losses], dtype=dtype or np.float64)


def track_losses(contender: Contender, to_float) -> Contender:
    """Make `contender` record its losses; its first output becomes the trajectory."""
    trajectory = LossTrajectory(CHECKED_STEPS, to_float)
    run = contender.run

    def run_and_record():
        loss = run()
        trajectory.record(loss)
        return loss
    contender.run = run_and_record
    contender.output = lambda _first_loss: trajectory
    contender.warmup = CHECKED_STEPS
    return contender


def _graphc_float(t):
    return float(t.detach().numpy())


def _torch_float(t):
    return float(t.detach().item())


def pytorch_default_init(shapes: dict[str, tuple], rng: np.random.Generator,
                         fan_in_of) -> dict[str, np.ndarray]:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)) float32 arrays for every state_dict entry:
    the distribution of PyTorch's default Linear/Conv (kaiming_uniform with a=sqrt(5),
    and their biases) and recurrent (fan_in = hidden_size) initialisation."""
    out = {}
    for key, shape in shapes.items():
        bound = 1.0 / math.sqrt(fan_in_of(key, shapes))
        out[key] = rng.uniform(-bound, bound, size=shape).astype(np.float32)
    return out


def layer_fan_in(key: str, shapes: dict[str, tuple]) -> int:
    """Fan-in of the layer owning `key` (a Linear/Conv weight or bias): the product of
    its weight's dimensions after the first."""
    weight = key.rsplit(".", 1)[0] + ".weight"
    return int(np.prod(shapes[weight][1:]))


def train_step(lib, model, opt):
    """step(x, y) of a classifier written with `lib` (graphc, or torch eager): zero the
    gradients, cross-entropy of model(x), backward, optimizer step; returns the loss.
    The step the nn workloads time and benchmarks/gpu_check.py runs on a GPU."""
    loss_fn = lib.nn.CrossEntropyLoss()

    def step(x, y):
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        return loss
    return step


class NNStepWorkload(Workload):
    """One optimizer step of a model built by `build(nn, p)`, trained with
    nn.CrossEntropyLoss and the optimizer named by `optimizer` / `optimizer_options`."""
    blas_spins = True
    optimizer = "SGD"
    optimizer_options = SGD_OPTIONS
    state_per_param = 1               # optimizer buffers shaped like each parameter
    needs = ("Linear", "ReLU", "Sequential", "CrossEntropyLoss")
    tolerance = (1e-4, 1e-5)

    # -- what a subclass defines ---------------------------------------------------
    def build(self, nn, p):
        raise NotImplementedError

    def batch_shapes(self, p) -> tuple[tuple, int]:
        """(input shape, number of classes)."""
        raise NotImplementedError

    def fan_in_of(self, key, shapes) -> int:
        return layer_fan_in(key, shapes)

    # -- shared ----------------------------------------------------------------------
    def unavailable(self):
        try:
            from graphc import nn, optim
        except Exception as exc:
            return f"graphc.nn/graphc.optim do not import ({type(exc).__name__}: {exc})"
        missing = [f"nn.{n}" for n in self.needs if not hasattr(nn, n)]
        missing += [f"optim.{self.optimizer}"] if not hasattr(optim, self.optimizer) else []
        return f"graphc has no {', '.join(missing)}" if missing else None

    def _optimizer_text(self):
        opts = ", ".join(f"{k}={v}" for k, v in self.optimizer_options.items())
        return f"optim.{self.optimizer}({opts})"

    def state_shapes(self, p) -> dict[str, tuple]:
        """The model's state_dict names and shapes (from a graphc instance)."""
        from graphc import nn
        return {k: tuple(v.shape) for k, v in self.build(nn, p).state_dict().items()}

    def n_params(self, p) -> int:
        return sum(int(np.prod(s)) for s in self.state_shapes(p).values())

    def bytes_moved(self, p):
        """Parameters and optimizer buffers read and written, the batch read, the loss."""
        x_shape, _ = self.batch_shapes(p)
        per_param = 2 * (1 + self.state_per_param)
        return 4 * (per_param * self.n_params(p) + int(np.prod(x_shape))) + 8 * x_shape[0]

    def inputs(self, p):
        r = rng_for(self.name)
        x_shape, classes = self.batch_shapes(p)
        state = pytorch_default_init(self.state_shapes(p), r, self.fan_in_of)
        return {"state": state, "x": r.standard_normal(x_shape, dtype=np.float32),
                "y": r.integers(0, classes, x_shape[0]).astype(np.int64)}

    def graphc(self, gc, inputs, backend, p):
        model = self.build(gc.nn, p)
        model.load_state_dict({k: gc.from_numpy(v.copy()) for k, v in inputs["state"].items()})
        opt = getattr(gc.optim, self.optimizer)(model.parameters(), **self.optimizer_options)
        step = gc.compile(train_step(gc, model, opt), backend=backend)
        x, y = gc.from_numpy(inputs["x"]), gc.from_numpy(inputs["y"])
        c = graphc_contender(gc, backend, "compile", lambda: step(x, y),
                             setting=f"graphc.compile(step), nn.CrossEntropyLoss, "
                                     f"{self._optimizer_text()}: eager + trace call in "
                                     f"warm-up, then replays")
        return track_losses(c, _graphc_float)

    def torch(self, torch, inputs, p, compiled):
        model = self.build(torch.nn, p)
        model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in inputs["state"].items()})
        opt = getattr(torch.optim, self.optimizer)(model.parameters(), **self.optimizer_options)
        loss_fn = torch.nn.CrossEntropyLoss()

        def forward_loss(x, y):
            return loss_fn(model(x), y)
        fwd = torch.compile(forward_loss) if compiled else forward_loss

        def train_step(x, y):
            opt.zero_grad()
            loss = fwd(x, y)
            loss.backward()
            opt.step()
            return loss.detach()
        x, y = torch.from_numpy(inputs["x"]), torch.from_numpy(inputs["y"])
        name = "torch.compile" if compiled else "torch eager"
        setting = (f"torch.compile(model + loss), eager backward and torch.{self._optimizer_text()}"
                   if compiled else f"nn.CrossEntropyLoss, torch.{self._optimizer_text()} "
                                    f"(its default CPU implementation)")
        return track_losses(Contender(name, name, lambda: train_step(x, y), setting=setting),
                            _torch_float)

    def numpy(self, inputs, p):
        return "not run: the peer of an nn/optim step is PyTorch's nn/optim (the reference)"

    def jax(self, jax, inputs, p):
        return "no jax version of the nn/optim steps"


# -- MLP --------------------------------------------------------------------------------
MLP_SIZES = (784, 512, 256, 10)


class NNMLPStep(NNStepWorkload):
    name = "nn_mlp_step"
    uses_blas = True
    targets = (Target(">= 1.3x torch eager", "speedup", 1.3, ("torch eager",)),)

    def params(self, quick):
        return {"batch": 32 if quick else 128}

    def describe(self, p):
        return (f"nn.Sequential MLP 784-512-256-10 (ReLU), nn.CrossEntropyLoss, "
                f"{self._optimizer_text()} step, batch {p['batch']}, float32")

    def build(self, nn, p):
        layers = []
        for fan_in, fan_out in zip(MLP_SIZES[:-1], MLP_SIZES[1:]):
            layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
        return nn.Sequential(*layers[:-1])

    def batch_shapes(self, p):
        return (p["batch"], MLP_SIZES[0]), MLP_SIZES[-1]

    def flops(self, p):
        macs = sum(a * b for a, b in zip(MLP_SIZES[:-1], MLP_SIZES[1:]))
        return 6 * p["batch"] * macs      # forward 2, backward 4 flops per MAC


# -- CNN (the layers of training.py's cnn_step) ------------------------------------------
CNN_CHANNELS = (1, 16, 32)
CNN_IMAGE = 28
CNN_CLASSES = 10
CNN_FLAT = CNN_CHANNELS[-1] * (CNN_IMAGE // 4) ** 2


class NNCNNStep(NNStepWorkload):
    name = "nn_cnn_step"
    needs = ("Conv2d", "MaxPool2d", "Flatten", "Linear", "ReLU", "Sequential",
             "CrossEntropyLoss")
    targets = (Target("not slower than torch eager", "speedup", 1.0, ("torch eager",)),)

    def params(self, quick):
        return {"batch": 8 if quick else 64}

    def describe(self, p):
        return (f"nn CNN: Conv2d 1->16 3x3 pad 1, ReLU, MaxPool2d 2, Conv2d 16->32 3x3 pad 1, "
                f"ReLU, MaxPool2d 2, Linear {CNN_FLAT}->10; nn.CrossEntropyLoss, "
                f"{self._optimizer_text()} step; 28x28, batch {p['batch']}")

    def build(self, nn, p):
        c0, c1, c2 = CNN_CHANNELS
        return nn.Sequential(nn.Conv2d(c0, c1, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Conv2d(c1, c2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                             nn.Flatten(), nn.Linear(CNN_FLAT, CNN_CLASSES))

    def batch_shapes(self, p):
        return (p["batch"], CNN_CHANNELS[0], CNN_IMAGE, CNN_IMAGE), CNN_CLASSES

    def flops(self, p):
        c0, c1, c2 = CNN_CHANNELS
        side = CNN_IMAGE
        macs = (side * side * c1 * c0 * 9 + (side // 2) ** 2 * c2 * c1 * 9
                + CNN_FLAT * CNN_CLASSES)
        # forward 2, backward 4 flops per MAC (slightly high: the input's gradient
        # through the first conv is never needed)
        return 6 * p["batch"] * macs


# -- LSTM ---------------------------------------------------------------------------------
LSTM_INPUT = 28          # one 28-pixel image row per time step, as in row-by-row MNIST
LSTM_CLASSES = 10


def lstm_classifier(nn, input_size, hidden):
    """nn.LSTM (batch_first) over the sequence, nn.Linear on the last hidden state."""
    class LastStateLSTM(nn.Module):
        def __init__(self):
            super().__init__()
            self.lstm = nn.LSTM(input_size=input_size, hidden_size=hidden, batch_first=True)
            self.head = nn.Linear(hidden, LSTM_CLASSES)

        def forward(self, x):
            _out, (h, _c) = self.lstm(x)
            return self.head(h[-1])
    return LastStateLSTM()


class LSTMStep(NNStepWorkload):
    name = "lstm_step"
    optimizer = "Adam"
    optimizer_options = ADAM_OPTIONS
    state_per_param = 2               # exp_avg, exp_avg_sq
    needs = ("LSTM", "Linear", "Module", "CrossEntropyLoss")
    targets = (Target("not slower than torch eager", "speedup", 1.0, ("torch eager",)),)

    def params(self, quick):
        return ({"seq": 8, "batch": 16, "hidden": 32} if quick
                else {"seq": 32, "batch": 64, "hidden": 128})

    def describe(self, p):
        return (f"nn.LSTM(input {LSTM_INPUT}, hidden {p['hidden']}, batch_first) over seq "
                f"{p['seq']} + nn.Linear({p['hidden']}, 10) on the last hidden state, "
                f"nn.CrossEntropyLoss, {self._optimizer_text()} step; batch {p['batch']}")

    def build(self, nn, p):
        return lstm_classifier(nn, LSTM_INPUT, p["hidden"])

    def fan_in_of(self, key, shapes):
        if key.startswith("lstm."):
            return shapes["lstm.weight_hh_l0"][1]       # PyTorch: 1/sqrt(hidden_size)
        return layer_fan_in(key, shapes)

    def batch_shapes(self, p):
        return (p["batch"], p["seq"], LSTM_INPUT), LSTM_CLASSES

    def flops(self, p):
        h = p["hidden"]
        macs = p["seq"] * 4 * h * (LSTM_INPUT + h) + h * LSTM_CLASSES
        return 6 * p["batch"] * macs
