"""graphc.utils.data against torch.utils.data: split sizes, batch structure and dtypes,
ordering, shuffling reproducibility, drop_last, and prefetching invariance."""
from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
import torch.utils.data as tud

import graphc as gc
import graphc.utils.data as gud

TORCH_DTYPE_NAMES = {torch.float32: "float32", torch.float64: "float64", torch.int64: "int64",
                     torch.int32: "int32", torch.bool: "bool", torch.uint8: "uint8"}


def assert_same_batch(g, t):
    """Same structure, container types, dtypes, shapes and values."""
    if isinstance(t, torch.Tensor):
        assert isinstance(g, gc.Tensor), f"expected a graphc Tensor, got {type(g).__name__}"
        assert g.dtype.name == TORCH_DTYPE_NAMES[t.dtype], (g.dtype, t.dtype)
        assert tuple(g.shape) == tuple(t.shape)
        np.testing.assert_array_equal(g.detach().numpy(), t.numpy())
    elif isinstance(t, dict):
        assert type(g) is type(t) and list(g) == list(t)
        for k in t:
            assert_same_batch(g[k], t[k])
    elif isinstance(t, (list, tuple)):
        assert type(g) is type(t) and len(g) == len(t), (type(g), type(t))
        for a, b in zip(g, t):
            assert_same_batch(a, b)
    else:
        assert g == t


# ---------------------------------------------------------------------------- splitting

@pytest.mark.parametrize("n", [10, 7, 101, 3, 1])
@pytest.mark.parametrize("fractions", [(0.8, 0.2), (0.5, 0.5), (1 / 3, 1 / 3, 1 / 3),
                                       (0.1, 0.2, 0.3, 0.4), (0.05, 0.9, 0.05)])
def test_random_split_fraction_sizes_match_torch(n, fractions):
    with pytest.warns(UserWarning) if _torch_warns(n, fractions) else _no_warning():
        parts = gud.random_split(list(range(n)), fractions, generator=gc.Generator(3))
    with pytest.warns(UserWarning) if _torch_warns(n, fractions) else _no_warning():
        expected = tud.random_split(list(range(n)), fractions,
                                    generator=torch.Generator().manual_seed(3))
    assert [len(p) for p in parts] == [len(p) for p in expected]
    seen = sorted(i for p in parts for i in p.indices)
    assert seen == list(range(n))
    assert [p[0] for p in parts if len(p)] == [p.dataset[p.indices[0]] for p in parts if len(p)]


def _torch_warns(n, fractions):
    import warnings
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        tud.random_split(list(range(n)), fractions)
    return bool(w)


class _no_warning:
    def __enter__(self):
        import warnings
        self._ctx = warnings.catch_warnings()
        self._ctx.__enter__()
        warnings.simplefilter("error")

    def __exit__(self, *exc):
        self._ctx.__exit__(*exc)
        return False


def test_random_split_lengths_seed_and_errors():
    ds = list(range(20))
    a = gud.random_split(ds, [5, 15], generator=gc.Generator(7))
    b = gud.random_split(ds, [5, 15], generator=gc.Generator(7))
    c = gud.random_split(ds, [5, 15], generator=gc.Generator(8))
    assert [len(p) for p in a] == [5, 15]
    assert a[0].indices == b[0].indices and a[1].indices == b[1].indices
    assert a[0].indices + a[1].indices != c[0].indices + c[1].indices
    gc.manual_seed(11)
    d = gud.random_split(ds, [0.5, 0.5])
    gc.manual_seed(11)
    e = gud.random_split(ds, [0.5, 0.5])
    assert d[0].indices == e[0].indices
    with pytest.raises(ValueError, match="Sum of input lengths"):
        gud.random_split(ds, [5, 5])
    with pytest.raises(ValueError, match="not between 0 and 1"):
        gud.random_split(ds, [1.5, -0.5])


# ---------------------------------------------------------------------------- collation

class PairDataset:
    """Tuples of (float32 array, int label, float weight, bool flag, str name)."""

    def __init__(self, n=10):
        rng = np.random.default_rng(0)
        self.x = rng.standard_normal((n, 3)).astype(np.float32)
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return self.x[i], i * 3, i / 4, i % 2 == 0, f"item{i}"


class DictDataset:
    """Dicts with nested lists, numpy scalars and 0-d arrays."""

    def __init__(self, n=9):
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"image": np.full((2, 2), i, dtype=np.float64),
                "label": np.int64(i), "score": np.float32(i / 2),
                "pair": [i, float(i)], "name": str(i), "zero_d": np.array(i, dtype=np.int32),
                "meta": {"even": i % 2 == 0, "code": np.uint8(i)}}


Point = collections.namedtuple("Point", ["x", "y"])


class NamedTupleDataset:
    def __len__(self):
        return 6

    def __getitem__(self, i):
        return Point(np.arange(3, dtype=np.int32) + i, float(i))


def torch_twin(sample):
    """The same sample with graphc tensors replaced by torch tensors."""
    if isinstance(sample, gc.Tensor):
        return torch.from_numpy(sample.detach().numpy().copy())
    if isinstance(sample, dict):
        return {k: torch_twin(v) for k, v in sample.items()}
    if isinstance(sample, tuple) and hasattr(sample, "_fields"):
        return type(sample)(*(torch_twin(v) for v in sample))
    if isinstance(sample, (list, tuple)):
        return type(sample)(torch_twin(v) for v in sample)
    return sample


class TorchView:
    def __init__(self, ds):
        self.ds = ds

    def __len__(self):
        return len(self.ds)

    def __getitem__(self, i):
        return torch_twin(self.ds[i])


class GraphcTensorDataset:
    """Samples that hold realized graphc tensors of several dtypes."""

    def __len__(self):
        return 7

    def __getitem__(self, i):
        return (gc.tensor(np.arange(4, dtype=np.float32) * i),
                gc.tensor(i, dtype=gc.int64), gc.tensor([i % 2 == 0, True]))


@pytest.mark.parametrize("make", [PairDataset, DictDataset, NamedTupleDataset,
                                  GraphcTensorDataset])
@pytest.mark.parametrize("batch_size,drop_last", [(4, False), (4, True), (1, False), (3, False)])
def test_batches_match_torch_default_collate(make, batch_size, drop_last):
    ds = make()
    loader = gud.DataLoader(ds, batch_size=batch_size, drop_last=drop_last)
    expected = tud.DataLoader(TorchView(ds), batch_size=batch_size, drop_last=drop_last)
    got = list(loader)
    want = list(expected)
    assert len(got) == len(want) == len(loader) == len(expected)
    for g, t in zip(got, want):
        assert_same_batch(g, t)


def test_default_collate_dtypes_of_numbers():
    b = gud.default_collate([1, 2, 3])
    assert b.dtype == gc.int64 and b.tolist() == [1, 2, 3]
    b = gud.default_collate([1.5, 2.0])
    assert b.dtype == gc.float64 and b.tolist() == [1.5, 2.0]
    b = gud.default_collate([True, False])
    assert b.dtype == gc.bool and b.tolist() == [True, False]
    assert gud.default_collate(["a", "b"]) == ["a", "b"]
    # mixed dtypes promote like torch.stack
    for batch in ([np.zeros(2, np.int32), np.ones(2, np.float32)],
                  [np.array([1, 2]), np.array([True, False])]):
        assert_same_batch(gud.default_collate(batch),
                          tud.default_collate([torch.from_numpy(b) for b in batch]))
    assert_same_batch(gud.default_collate([gc.tensor([1, 2]), gc.tensor([0.5, 2.0])]),
                      tud.default_collate([torch.tensor([1, 2]), torch.tensor([0.5, 2.0])]))
    with pytest.raises(TypeError, match="default_collate"):
        gud.default_collate([object(), object()])
    with pytest.raises(RuntimeError, match="equal size"):
        gud.default_collate([[1, 2], [3]])
    with pytest.raises(RuntimeError, match="stack expects each tensor to be equal size"):
        gud.default_collate([np.zeros(2), np.zeros(3)])


def test_batch_size_none_converts_without_batching():
    ds = DictDataset(4)
    got = list(gud.DataLoader(ds, batch_size=None))
    want = list(tud.DataLoader(TorchView(ds), batch_size=None))
    assert len(got) == len(want) == 4
    for g, t in zip(got, want):
        assert_same_batch(g, t)


def test_tensor_dataset_fast_path_matches_torch():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((23, 2, 3)).astype(np.float32)
    y = rng.integers(0, 4, 23)
    gds = gud.TensorDataset(gc.tensor(x), gc.tensor(y))
    tds = tud.TensorDataset(torch.tensor(x), torch.tensor(y))
    assert len(gds) == 23
    assert_same_batch(list(gds[4]), list(tds[4]))
    for bs, dl in [(5, False), (5, True), (23, False), (1, True)]:
        got = list(gud.DataLoader(gds, batch_size=bs, drop_last=dl))
        want = list(tud.DataLoader(tds, batch_size=bs, drop_last=dl))
        assert len(got) == len(want)
        for g, t in zip(got, want):
            assert_same_batch(g, t)
    # a Subset of a Subset of a TensorDataset keeps its index order
    sub = gud.Subset(gud.Subset(gds, list(range(20, 2, -1))), [0, 5, 7, 1, 2])
    tsub = tud.Subset(tud.Subset(tds, list(range(20, 2, -1))), [0, 5, 7, 1, 2])
    for g, t in zip(gud.DataLoader(sub, batch_size=2), tud.DataLoader(tsub, batch_size=2)):
        assert_same_batch(g, t)
    # tensors that require grad are batched with tensor ops, keeping their history
    w = gc.tensor(x, requires_grad=True)
    (xb, yb), = list(gud.DataLoader(gud.TensorDataset(w, gc.tensor(y)), batch_size=23))
    assert xb.requires_grad and not yb.requires_grad
    xb.sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), np.ones_like(x))
    with pytest.raises(ValueError, match="Size mismatch"):
        gud.TensorDataset(gc.tensor(x), gc.tensor(y[:5]))


# ---------------------------------------------------------------------------- order

def epoch_indices(loader):
    return [int(v) for batch in loader for v in batch[0].tolist()]


def index_dataset(n):
    return gud.TensorDataset(gc.arange(n), gc.arange(n) * 10)


def test_shuffle_is_seeded_and_covers_every_index_once():
    n = 37
    loader = gud.DataLoader(index_dataset(n), batch_size=5, shuffle=True)
    gc.manual_seed(123)
    first, second = epoch_indices(loader), epoch_indices(loader)
    gc.manual_seed(123)
    again = epoch_indices(loader)
    assert sorted(first) == sorted(second) == list(range(n))
    assert first == again
    assert first != second and first != list(range(n))
    # an explicit generator makes it independent of the global seed
    make = lambda: gud.DataLoader(index_dataset(n), batch_size=4, shuffle=True,  # noqa: E731
                                  generator=gc.Generator(9))
    gc.manual_seed(1)
    a = epoch_indices(make())
    gc.manual_seed(2)
    b = epoch_indices(make())
    assert a == b and sorted(a) == list(range(n))
    # labels still travel with their samples
    for x, y in gud.DataLoader(index_dataset(n), batch_size=6, shuffle=True):
        assert (y.numpy() == x.numpy() * 10).all()


def test_drop_last_and_len():
    for n, bs in [(10, 3), (9, 3), (2, 5), (0, 2)]:
        for dl in (False, True):
            g = gud.DataLoader(list(range(n)), batch_size=bs, drop_last=dl)
            t = tud.DataLoader(list(range(n)), batch_size=bs, drop_last=dl)
            assert len(g) == len(t)
            assert [b.tolist() for b in g] == [b.tolist() for b in t]


def test_sampler_and_batch_sampler_arguments():
    ds = list(range(12))
    order = [3, 1, 4, 1, 5, 9, 2, 6]
    g = gud.DataLoader(ds, batch_size=3, sampler=order)
    t = tud.DataLoader(ds, batch_size=3, sampler=order)
    assert [b.tolist() for b in g] == [b.tolist() for b in t]
    batches = [[0, 1], [5, 6, 7], [11]]
    g = gud.DataLoader(ds, batch_sampler=batches)
    assert [b.tolist() for b in g] == [[0, 1], [5, 6, 7], [11]]
    assert len(g) == 3
    bs = gud.BatchSampler(gud.SequentialSampler(ds), batch_size=5, drop_last=True)
    assert list(bs) == [[0, 1, 2, 3, 4], [5, 6, 7, 8, 9]] and len(bs) == 2
    rs = gud.RandomSampler(ds, replacement=True, num_samples=30, generator=gc.Generator(1))
    draws = list(rs)
    assert len(draws) == 30 and all(0 <= d < 12 for d in draws)
    rs = gud.RandomSampler(ds, num_samples=30, generator=gc.Generator(1))
    draws = list(rs)
    assert sorted(draws[:24]) == sorted(ds * 2) and len(set(draws[24:])) == 6
    sub = gud.SubsetRandomSampler([2, 4, 6], generator=gc.Generator(0))
    assert sorted(sub) == [2, 4, 6]


def test_argument_errors_match_torch():
    ds = list(range(5))
    for kwargs in [dict(shuffle=True, sampler=[0, 1]),
                   dict(batch_sampler=[[0]], batch_size=2),
                   dict(batch_size=None, drop_last=True),
                   dict(num_workers=-1)]:
        with pytest.raises(ValueError):
            tud.DataLoader(ds, **kwargs)
        with pytest.raises(ValueError):
            gud.DataLoader(ds, **kwargs)


class Stream(gud.IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter({"v": np.float32(i), "i": i} for i in range(self.n))

    def __len__(self):
        return self.n


class TorchStream(tud.IterableDataset):
    def __init__(self, n):
        self.n = n

    def __iter__(self):
        return iter({"v": np.float32(i), "i": i} for i in range(self.n))

    def __len__(self):
        return self.n


@pytest.mark.parametrize("drop_last", [False, True])
def test_iterable_dataset_batches_match_torch(drop_last):
    got = list(gud.DataLoader(Stream(11), batch_size=4, drop_last=drop_last))
    want = list(tud.DataLoader(TorchStream(11), batch_size=4, drop_last=drop_last))
    assert len(got) == len(want) == len(gud.DataLoader(Stream(11), batch_size=4,
                                                       drop_last=drop_last))
    for g, t in zip(got, want):
        assert_same_batch(g, t)
    with pytest.raises(ValueError, match="shuffle"):
        gud.DataLoader(Stream(3), shuffle=True)


def test_concat_dataset():
    ds = gud.ConcatDataset([list(range(3)), list(range(10, 15))])
    tds = tud.ConcatDataset([list(range(3)), list(range(10, 15))])
    assert len(ds) == len(tds) == 8
    assert [ds[i] for i in range(-8, 8)] == [tds[i] for i in range(-8, 8)]


# ---------------------------------------------------------------------------- prefetch

class LazyDataset(gud.Dataset):
    """__getitem__ computes with tensor ops, so samples are pending graphc tensors."""

    def __init__(self):
        self.base = gc.tensor(np.arange(30, dtype=np.float32).reshape(10, 3))

    def __len__(self):
        return 10

    def __getitem__(self, i):
        return self.base[i] * 2 + 1, i


def batches_as_numpy(loader):
    out = []
    for batch in loader:
        out.append(_to_numpy(batch))
    return out


def _to_numpy(b):
    if isinstance(b, gc.Tensor):
        return (b.dtype.name, b.detach().numpy().tolist())
    if isinstance(b, dict):
        return {k: _to_numpy(v) for k, v in b.items()}
    if isinstance(b, (list, tuple)):
        return [_to_numpy(v) for v in b]
    return b


@pytest.mark.parametrize("make", [PairDataset, DictDataset, GraphcTensorDataset,
                                  lambda: index_dataset(29), LazyDataset, lambda: Stream(13)])
def test_prefetching_yields_the_same_batches(make):
    ds = make()
    shuffle = None if isinstance(ds, gud.IterableDataset) else True
    results = []
    for kwargs in [dict(prefetch_factor=0), dict(), dict(num_workers=3),
                   dict(num_workers=2, prefetch_factor=4)]:
        gc.manual_seed(42)
        loader = gud.DataLoader(ds, batch_size=3, shuffle=shuffle, **kwargs)
        results.append([batches_as_numpy(loader), batches_as_numpy(loader)])  # two epochs
    assert all(r == results[0] for r in results[1:])


def test_lazy_dataset_values_are_right():
    (x, i), = list(gud.DataLoader(LazyDataset(), batch_size=10))
    np.testing.assert_array_equal(x.numpy(), np.arange(30, dtype=np.float32).reshape(10, 3) * 2 + 1)
    assert i.tolist() == list(range(10))


def test_worker_errors_propagate_and_worker_info():
    class Faulty:
        def __len__(self):
            return 8

        def __getitem__(self, i):
            if i == 6:
                raise KeyError("sample 6 is broken")
            info = gud.get_worker_info()
            return np.float64(i), -1 if info is None else info.num_workers

    loader = gud.DataLoader(Faulty(), batch_size=2, num_workers=2)
    it = iter(loader)
    first = next(it)
    assert first[1].tolist() == [-1, -1]  # the first batch is made in the calling thread
    second = next(it)
    assert second[1].tolist() == [2, 2]
    next(it)
    with pytest.raises(KeyError, match="sample 6 is broken"):
        next(it)
    assert gud.get_worker_info() is None


def test_training_over_a_loader_stops_compiling():
    """Shuffling draws no graph and fast-path batches are realized inputs, so epochs of
    a training loop over a DataLoader reuse the compiled step."""
    from graphc import runtime
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 3)).astype(np.float32)
    y = (x @ np.array([[1.0], [-2.0], [0.5]], np.float32)).astype(np.float32)
    loader = gud.DataLoader(gud.TensorDataset(gc.tensor(x), gc.tensor(y)), batch_size=8,
                            shuffle=True, drop_last=True, generator=gc.Generator(0))
    w = gc.tensor(np.zeros((3, 1), np.float32), requires_grad=True)
    opt = gc.optim.SGD([w], lr=0.1)
    counts, losses = [], []
    for _ in range(3):
        for xb, yb in loader:
            opt.zero_grad()
            loss = ((xb @ w - yb) ** 2).mean()
            loss.backward()
            opt.step()
            losses.append(loss.item())
            counts.append(runtime.stats["compiles"])
    assert len(counts) == 15
    assert counts[3:] == [counts[2]] * 12, counts
    assert losses[-1] < 0.1 * losses[0]


def test_custom_collate_fn():
    ds = PairDataset(7)

    def keep_labels(samples):
        return [s[1] for s in samples]

    got = list(gud.DataLoader(ds, batch_size=3, collate_fn=keep_labels))
    want = list(tud.DataLoader(ds, batch_size=3, collate_fn=keep_labels))
    assert got == want == [[0, 3, 6], [9, 12, 15], [18]]
    # a custom collate_fn on a TensorDataset gets the per-sample tuples (no fast path)
    tds = gud.TensorDataset(gc.arange(5))
    got = list(gud.DataLoader(tds, batch_size=2, collate_fn=lambda s: [int(x) for (x,) in s]))
    assert got == [[0, 1], [2, 3], [4]]


def test_tensors_the_prefetch_thread_builds_name_no_stdlib_line():
    """A batch stacked in the loader's background thread has no user frame on its stack:
    its location is none, not Python's concurrent/futures/thread.py."""
    ds = gc.utils.data.TensorDataset(gc.arange(12).reshape(6, 2).float())
    for (batch,) in gc.utils.data.DataLoader(ds, batch_size=3):
        loc = batch._node.loc
        assert loc is None or ("concurrent" not in loc and "threading" not in loc), loc
