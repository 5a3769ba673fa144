"""Host time of one replayed graphc.compile step on the Triton backend, kernels aside.

    python benchmarks/triton_replay_overhead.py        # needs triton and torch (CPU)

The compiled nn MLP step (784-512-256-10, batch 128, SGD) runs on a *null device*: an
interpreter device whose kernels do nothing and whose memory is host bytes. What is
left is everything graphc's executor and graphc.compile do per step on the host
(binding inputs, allocating outputs, building launch arguments, one launcher call per
kernel, wrapping outputs as device values, writing them back into the tensors): the
floor under a GPU step's wall time. No GPU is needed.
"""
from __future__ import annotations

import os
import sys
import time

os.environ.setdefault("TRITON_INTERPRET", "1")
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402  (the interpreter device's array carrier, here only)

import graphc as gc  # noqa: E402
from graphc.backends import triton as T  # noqa: E402
from graphc.backends.triton.devices import InterpreterDevice  # noqa: E402
from graphc.benchsuite.workloads.nn_training import NNMLPStep, train_step  # noqa: E402


class NullDevice(InterpreterDevice):
    name = "null"

    def prepare(self, generated, launch, cfg):
        return None

    def launcher(self, fn, launch, cfg):
        def go(args):
            self.launches += 1
        return go

    def pointer(self, block, offset, buf):
        return block.address + offset


def main(steps=2000):
    dev = NullDevice(lambda a, p: torch.from_numpy(a))
    T.set_default_device(dev)
    os.environ["GRAPHC_BACKEND"] = "triton"
    model = NNMLPStep().build(gc.nn, None)
    opt = gc.optim.SGD(model.parameters(), lr=0.01)
    rng = np.random.default_rng(0)
    x = gc.from_numpy(rng.random((128, 784), dtype=np.float32))
    y = gc.from_numpy(rng.integers(0, 10, 128))

    step = gc.compile(train_step(gc, model, opt))
    for _ in range(5):
        step(x, y)
    before = dev.launches
    step(x, y)
    launches = dev.launches - before
    t0 = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    us = (time.perf_counter() - t0) / steps * 1e6
    print(f"{launches} launches per step; host time per replayed step: {us:.1f} us")


if __name__ == "__main__":
    main()
