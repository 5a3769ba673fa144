"""Datasets: indexable collections of samples, and ways to combine and split them.

`TensorDataset` and `Subset` also expose `_batched_arrays()` (see dataloader.py): the
realized numpy arrays behind them and the index mapping, which lets the DataLoader
gather a whole batch with one numpy fancy-index per tensor instead of one lazy slice
per sample. The result equals default_collate of the per-sample tensors.
"""
from __future__ import annotations

import bisect
import itertools
import math
import warnings

import numpy as np

from ...tensor import Generator, Tensor
from .sampler import permutation


class Dataset:
    """A map-style dataset: `__getitem__(index)` and, usually, `__len__()`."""

    def __getitem__(self, index):
        raise NotImplementedError("Subclasses of Dataset should implement __getitem__.")

    def __add__(self, other):
        return ConcatDataset([self, other])


class IterableDataset(Dataset):
    """A dataset read as a stream: implement `__iter__`."""

    def __iter__(self):
        raise NotImplementedError("Subclasses of IterableDataset should implement __iter__.")

    def __add__(self, other):
        return ChainDataset([self, other])


class TensorDataset(Dataset):
    """Sample i is `tuple(t[i] for t in tensors)`; all tensors share their first size."""

    def __init__(self, *tensors):
        if not tensors:
            raise ValueError("TensorDataset needs at least one tensor")
        for t in tensors:
            if not isinstance(t, Tensor):
                raise TypeError(f"TensorDataset takes graphc tensors, got {type(t).__name__}")
            if t.ndim == 0:
                raise ValueError("TensorDataset tensors need a first dimension (got a 0-d tensor)")
        sizes = [t.shape[0] for t in tensors]
        if any(s != sizes[0] for s in sizes):
            raise ValueError(f"Size mismatch between tensors: first sizes {sizes}")
        self.tensors = tensors

    def __getitem__(self, index):
        return tuple(t[index] for t in self.tensors)

    def __len__(self):
        return self.tensors[0].shape[0]

    def _batched_arrays(self):
        """(arrays, dtypes, index_map): realized values of the tensors; index_map is None
        (dataset index = array row). None when a tensor requires grad: its batches must
        then be built with tensor ops (default_collate's stack) to keep their history."""
        if any(t.requires_grad for t in self.tensors):
            return None
        return [t._value() for t in self.tensors], [t.dtype for t in self.tensors], None


class Subset(Dataset):
    """The samples of `dataset` at `indices`, in that order."""

    def __init__(self, dataset, indices):
        self.dataset = dataset
        self.indices = indices

    def __getitem__(self, idx):
        if isinstance(idx, list):
            return self.dataset[[self.indices[i] for i in idx]]
        return self.dataset[self.indices[idx]]

    def __getitems__(self, indices):
        inner = getattr(self.dataset, "__getitems__", None)
        mapped = [self.indices[i] for i in indices]
        if inner is not None:
            return inner(mapped)
        return [self.dataset[i] for i in mapped]

    def __len__(self):
        return len(self.indices)

    def _batched_arrays(self):
        inner = getattr(self.dataset, "_batched_arrays", None)
        if inner is None:
            return None
        got = inner()
        if got is None:
            return None
        arrays, dtypes, index_map = got
        mine = np.asarray(self.indices, dtype=np.int64).reshape(-1)
        return arrays, dtypes, mine if index_map is None else index_map[mine]


class ConcatDataset(Dataset):
    """The datasets one after another."""

    def __init__(self, datasets):
        self.datasets = list(datasets)
        if not self.datasets:
            raise ValueError("datasets should not be an empty iterable")
        for d in self.datasets:
            if isinstance(d, IterableDataset):
                raise ValueError("ConcatDataset does not support IterableDataset")
        self.cumulative_sizes = list(itertools.accumulate(len(d) for d in self.datasets))

    def __len__(self):
        return self.cumulative_sizes[-1]

    def __getitem__(self, idx):
        if idx < 0:
            if -idx > len(self):
                raise ValueError("absolute value of index should not exceed dataset length")
            idx = len(self) + idx
        which = bisect.bisect_right(self.cumulative_sizes, idx)
        start = 0 if which == 0 else self.cumulative_sizes[which - 1]
        return self.datasets[which][idx - start]


class ChainDataset(IterableDataset):
    """Iterable datasets one after another."""

    def __init__(self, datasets):
        self.datasets = list(datasets)

    def __iter__(self):
        for d in self.datasets:
            yield from d

    def __len__(self):
        return sum(len(d) for d in self.datasets)


def _split_lengths(n, lengths):
    """Fractions summing to 1 become counts: floor each, then hand out the remainder one
    at a time, round-robin from the first split (torch's rule)."""
    total = sum(lengths)
    if math.isclose(total, 1) and total <= 1:
        counts = []
        for i, frac in enumerate(lengths):
            if frac < 0 or frac > 1:
                raise ValueError(f"Fraction at index {i} is not between 0 and 1")
            counts.append(math.floor(n * frac))
        for i in range(n - sum(counts)):
            counts[i % len(counts)] += 1
        for i, c in enumerate(counts):
            if c == 0:
                warnings.warn(f"Length of split at index {i} is 0. This might result in an "
                              "empty dataset.", stacklevel=3)
        return counts
    return list(lengths)


def random_split(dataset, lengths, generator: Generator | None = None):
    """Split `dataset` into non-overlapping random Subsets of the given lengths (or
    fractions of len(dataset))."""
    counts = _split_lengths(len(dataset), lengths)
    if any(int(c) != c or c < 0 for c in counts):
        raise ValueError(f"lengths must be non-negative integers or fractions summing to 1, "
                         f"got {list(lengths)}")
    counts = [int(c) for c in counts]
    if sum(counts) != len(dataset):
        raise ValueError("Sum of input lengths does not equal the length of the input dataset!")
    order = permutation(sum(counts), generator)
    out, start = [], 0
    for c in counts:
        out.append(Subset(dataset, order[start:start + c]))
        start += c
    return out
