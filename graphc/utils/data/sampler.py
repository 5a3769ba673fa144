"""Samplers: which dataset indices a DataLoader visits, and in which order.

Random orders come from a numpy Generator keyed by the graphc Generator's (seed, offset):
each draw reserves one counter of that stream, so `graphc.manual_seed(s)` (or a seeded
`graphc.Generator`) makes every epoch's order reproducible while successive epochs differ.
No graph is built or run to shuffle, so shuffling never realizes pending tensors.
"""
from __future__ import annotations

import numpy as np

from ...tensor import Generator, default_generator


def numpy_rng(generator: Generator | None) -> np.random.Generator:
    """A numpy Generator for one random draw of the graphc `generator` (default: the
    global one), advancing that generator so the next draw differs."""
    gen = generator if generator is not None else default_generator
    if not isinstance(gen, Generator):
        raise TypeError(f"generator must be a graphc.Generator, got {type(gen).__name__}")
    seed, offset = gen.get_state()
    gen.set_state((seed, offset + 1))
    return np.random.default_rng([int(seed) & ((1 << 64) - 1), int(offset)])


def permutation(n: int, generator: Generator | None = None) -> list[int]:
    return numpy_rng(generator).permutation(n).tolist()


class Sampler:
    """Base class: iterating yields dataset indices (or, for batch samplers, lists)."""

    def __init__(self, data_source=None):
        pass

    def __iter__(self):
        raise NotImplementedError


class SequentialSampler(Sampler):
    def __init__(self, data_source):
        self.data_source = data_source

    def __iter__(self):
        return iter(range(len(self.data_source)))

    def __len__(self):
        return len(self.data_source)


class RandomSampler(Sampler):
    """A random permutation (or, with replacement, independent uniform draws) of
    `num_samples` indices; without replacement, more samples than the dataset holds are
    whole permutations followed by a partial one, as in torch."""

    def __init__(self, data_source, replacement=False, num_samples=None, generator=None):
        self.data_source = data_source
        self.replacement = replacement
        self._num_samples = num_samples
        self.generator = generator
        if not isinstance(replacement, bool):
            raise TypeError(f"replacement should be a boolean value, but got "
                            f"replacement={replacement}")
        if not isinstance(self.num_samples, int) or self.num_samples <= 0:
            raise ValueError(f"num_samples should be a positive integer value, but got "
                             f"num_samples={self.num_samples}")

    @property
    def num_samples(self):
        return len(self.data_source) if self._num_samples is None else self._num_samples

    def __iter__(self):
        n = len(self.data_source)
        rng = numpy_rng(self.generator)
        if self.replacement:
            return iter(rng.integers(0, n, size=self.num_samples).tolist())
        out = []
        for _ in range(self.num_samples // n):
            out.extend(rng.permutation(n).tolist())
        out.extend(rng.permutation(n)[: self.num_samples % n].tolist())
        return iter(out)

    def __len__(self):
        return self.num_samples


class SubsetRandomSampler(Sampler):
    """The given indices in a random order."""

    def __init__(self, indices, generator=None):
        self.indices = indices
        self.generator = generator

    def __iter__(self):
        order = numpy_rng(self.generator).permutation(len(self.indices))
        return iter([self.indices[i] for i in order])

    def __len__(self):
        return len(self.indices)


class BatchSampler(Sampler):
    """Groups the indices of `sampler` into lists of `batch_size` (the last one shorter
    unless `drop_last`)."""

    def __init__(self, sampler, batch_size, drop_last):
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size <= 0:
            raise ValueError(f"batch_size should be a positive integer value, but got "
                             f"batch_size={batch_size}")
        if not isinstance(drop_last, bool):
            raise ValueError(f"drop_last should be a boolean value, but got "
                             f"drop_last={drop_last}")
        self.sampler = sampler
        self.batch_size = batch_size
        self.drop_last = drop_last

    def __iter__(self):
        batch = []
        for idx in self.sampler:
            batch.append(idx)
            if len(batch) == self.batch_size:
                yield batch
                batch = []
        if batch and not self.drop_last:
            yield batch

    def __len__(self):
        if self.drop_last:
            return len(self.sampler) // self.batch_size
        return (len(self.sampler) + self.batch_size - 1) // self.batch_size
