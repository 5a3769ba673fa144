"""DataLoader: batches of a dataset, prepared in background threads while a step runs.

Order and content are those of torch's DataLoader: the (batch) sampler runs in the
calling thread, so the sequence of index batches, and therefore of batches, is the same
with or without prefetching. Workers are threads (`num_workers` of them, at least one
when prefetching); they only fetch samples and collate them, and up to
`prefetch_factor * max(1, num_workers)` batches are prepared ahead. `prefetch_factor=0`
turns prefetching off: every batch is then made in the calling thread on demand.

Thread-safety rule: graphc's lazy runtime belongs to the main thread, so a background
thread may only create *realized* tensors (collation of numbers, numpy arrays and
realized tensors does exactly that). The first batch of every epoch is therefore made
in the calling thread; if it holds a pending (lazy) graphc tensor — a Dataset whose
__getitem__ computes with tensor ops — the whole epoch stays in the calling thread, and
so does the rest of an epoch in which a worker ever returns a pending tensor.
A Dataset whose __getitem__ *reads* tensor values (item(), numpy()) triggers graph
execution; give such datasets prefetch_factor=0.

TensorDataset (and Subsets of it) with the default collate_fn take a fast path: one
numpy fancy-index per tensor per batch, equal to default_collate of the samples.
"""
from __future__ import annotations

import collections
import itertools
import threading
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as _FutureTimeout
from dataclasses import dataclass

import numpy as np

from ...tensor import Tensor
from .collate import default_collate, default_convert
from .dataset import IterableDataset
from .sampler import BatchSampler, RandomSampler, SequentialSampler

_worker_state = threading.local()


@dataclass
class WorkerInfo:
    id: int
    num_workers: int
    seed: int
    dataset: object


def get_worker_info():
    """Inside a DataLoader worker thread: its WorkerInfo; elsewhere None."""
    return getattr(_worker_state, "info", None)


class DataLoader:
    def __init__(self, dataset, batch_size=1, shuffle=None, sampler=None, batch_sampler=None,
                 num_workers=0, collate_fn=None, pin_memory=False, drop_last=False, timeout=0,
                 worker_init_fn=None, multiprocessing_context=None, generator=None, *,
                 prefetch_factor=None, persistent_workers=False):
        # pin_memory, multiprocessing_context and persistent_workers are accepted for
        # PyTorch compatibility: graphc tensors live in host memory, and workers are
        # threads that are cheap to start each epoch.
        if not isinstance(num_workers, int) or num_workers < 0:
            raise ValueError("num_workers option should be non-negative; use num_workers=0 to "
                             "disable multiprocessing.")
        if timeout < 0:
            raise ValueError("timeout option should be non-negative")
        if prefetch_factor is None:
            prefetch_factor = 2
        if not isinstance(prefetch_factor, int) or prefetch_factor < 0:
            raise ValueError(f"prefetch_factor should be a non-negative integer, got "
                             f"{prefetch_factor!r}")
        self.dataset = dataset
        self.num_workers = num_workers
        self.prefetch_factor = prefetch_factor
        self.pin_memory = pin_memory
        self.timeout = timeout
        self.worker_init_fn = worker_init_fn
        self.multiprocessing_context = multiprocessing_context
        self.persistent_workers = persistent_workers
        self.generator = generator
        self._iterable = isinstance(dataset, IterableDataset)

        if self._iterable:
            if shuffle not in (None, False):
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified shuffle "
                                 f"option, but got shuffle={shuffle}")
            if sampler is not None:
                raise ValueError(f"DataLoader with IterableDataset: expected unspecified sampler "
                                 f"option, but got sampler={sampler}")
            if batch_sampler is not None:
                raise ValueError("DataLoader with IterableDataset: expected unspecified "
                                 f"batch_sampler option, but got batch_sampler={batch_sampler}")
        else:
            shuffle = bool(shuffle)
        if sampler is not None and shuffle:
            raise ValueError("sampler option is mutually exclusive with shuffle")
        if batch_sampler is not None:
            if batch_size != 1 or shuffle or sampler is not None or drop_last:
                raise ValueError("batch_sampler option is mutually exclusive with batch_size, "
                                 "shuffle, sampler, and drop_last")
            batch_size = None
            drop_last = False
        elif batch_size is None and drop_last:
            raise ValueError("batch_size=None option disables auto-batching and is mutually "
                             "exclusive with drop_last")
        if sampler is None and not self._iterable:
            sampler = RandomSampler(dataset, generator=generator) if shuffle \
                else SequentialSampler(dataset)
        if batch_size is not None and batch_sampler is None and not self._iterable:
            batch_sampler = BatchSampler(sampler, batch_size, drop_last)
        self.batch_size = batch_size
        self.drop_last = drop_last
        self.sampler = sampler
        self.batch_sampler = batch_sampler
        if collate_fn is None:
            collate_fn = default_collate if self._auto_collation else default_convert
        self.collate_fn = collate_fn

    @property
    def _auto_collation(self):
        return self.batch_sampler is not None or (self._iterable and self.batch_size is not None)

    def __len__(self):
        if self._iterable:
            n = len(self.dataset)
            if self.batch_size is not None:
                n = n // self.batch_size if self.drop_last else -(-n // self.batch_size)
            return n
        if self.batch_sampler is not None:
            return len(self.batch_sampler)
        return len(self.sampler)

    def __iter__(self):
        return _LoaderIterator(self)


_END = object()


class _LoaderIterator:
    """One epoch: index batches from the sampler, batches made by `_fetch`, in order."""

    def __init__(self, loader: DataLoader):
        self._loader = loader
        self._dataset = loader.dataset
        self._collate = loader.collate_fn
        self._auto = loader._auto_collation
        self._fast = None
        if loader._iterable:
            self._stream = iter(loader.dataset)
            self._indices = None
        else:
            self._stream = None
            self._indices = iter(loader.batch_sampler if loader.batch_sampler is not None
                                 else loader.sampler)
            if self._auto and loader.collate_fn is default_collate:
                batched = getattr(self._dataset, "_batched_arrays", None)
                if batched is not None:
                    self._fast = batched()  # realizes the dataset's tensors, in this thread
        self._threads = max(1, loader.num_workers) if not loader._iterable else 1
        self._depth = loader.prefetch_factor * self._threads
        self._background = False  # decided by the first batch, see the module docstring
        self._first_done = False
        self._pending = collections.deque()
        self._executor = None
        self._exhausted = False
        self._worker_ids = itertools.count()

    # ------------------------------------------------------------------ fetching
    def _fetch(self, indices):
        """Make the batch for `indices` (None for an iterable dataset: read the stream)."""
        if self._stream is not None:
            return self._fetch_stream()
        if self._fast is not None:
            arrays, dtypes, index_map = self._fast
            idx = np.asarray(indices, dtype=np.int64)
            rows = idx if index_map is None else index_map[idx]
            return [Tensor._from_array(np.ascontiguousarray(a[rows]), d)
                    for a, d in zip(arrays, dtypes)]
        if not self._auto:
            return self._collate(self._dataset[indices])
        getitems = getattr(self._dataset, "__getitems__", None)
        samples = getitems(list(indices)) if getitems is not None \
            else [self._dataset[i] for i in indices]
        return self._collate(samples)

    def _fetch_stream(self):
        loader = self._loader
        if not self._auto:
            item = next(self._stream, _END)
            return item if item is _END else self._collate(item)
        batch = list(itertools.islice(self._stream, loader.batch_size))
        if not batch or (loader.drop_last and len(batch) < loader.batch_size):
            return _END
        return self._collate(batch)

    def _next_indices(self):
        if self._stream is not None:
            return None
        return next(self._indices, _END)

    # ------------------------------------------------------------------ prefetching
    def _init_worker(self):
        wid = next(self._worker_ids)
        _worker_state.info = WorkerInfo(wid, self._threads, wid, self._dataset)
        if self._loader.worker_init_fn is not None:
            self._loader.worker_init_fn(wid)

    def _fill(self):
        """Keep `_depth` batches in flight (only while fetching in the background)."""
        while self._background and not self._exhausted and len(self._pending) < self._depth:
            indices = self._next_indices()
            if indices is _END:
                self._exhausted = True
                break
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self._threads,
                                                    thread_name_prefix="graphc-dataloader",
                                                    initializer=self._init_worker)
            self._pending.append(self._executor.submit(self._fetch, indices))

    def _wait(self, future):
        timeout = self._loader.timeout or None
        try:
            return future.result(timeout=timeout)
        except _FutureTimeout:
            raise RuntimeError(f"DataLoader timed out after {self._loader.timeout} seconds") \
                from None

    def __iter__(self):
        return self

    def __next__(self):
        if not self._first_done:
            self._first_done = True
            batch = self._next_sync()
            if self._depth > 0 and not _holds_pending(batch):
                self._background = True
            self._fill()
            return batch
        if self._pending:
            batch = self._wait(self._pending.popleft())
            if batch is _END:
                self._exhausted = True
                self._pending.clear()
                self._close()
                raise StopIteration
            if _holds_pending(batch):
                self._background = False  # see the module docstring
            self._fill()
            return batch
        return self._next_sync()

    def _next_sync(self):
        if self._exhausted:
            self._close()
            raise StopIteration
        indices = self._next_indices()
        if indices is _END:
            self._exhausted = True
            self._close()
            raise StopIteration
        batch = self._fetch(indices)
        if batch is _END:
            self._exhausted = True
            self._close()
            raise StopIteration
        return batch

    def _close(self):
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None

    def __len__(self):
        return len(self._loader)

    def __del__(self):
        self._close()


def _holds_pending(obj) -> bool:
    """Whether a batch contains a graphc tensor whose value is not computed yet."""
    if isinstance(obj, Tensor):
        return obj._node.data is None
    if isinstance(obj, dict):
        return any(_holds_pending(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return any(_holds_pending(v) for v in obj)
    return False
