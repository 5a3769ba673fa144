"""The workloads of `graphc bench`, in the order they run and print."""
from __future__ import annotations

from .base import Target, Workload
from .compile_time import MLPCompile
from .elementwise import ElementwiseChain
from .matmul import Matmul
from .nn_training import LSTMStep, NNCNNStep, NNMLPStep
from .rowwise import LayerNorm, Softmax
from .training import CNNStep, MLPStep


def all_workloads() -> list[Workload]:
    return [ElementwiseChain(), Softmax(), LayerNorm(), Matmul(1024, 64), Matmul(2048, 128),
            MLPStep(), CNNStep(), NNMLPStep(), NNCNNStep(), LSTMStep(), MLPCompile()]


def by_name() -> dict[str, Workload]:
    return {w.name: w for w in all_workloads()}


__all__ = ["Target", "Workload", "all_workloads", "by_name"]
