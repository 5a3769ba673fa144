"""graphc.save / graphc.load: round trips, memory mapping, atomic writes, and a loader
that answers every damaged or foreign file with a CheckpointError (never running code).

The byte layout used by `_file_with_header` comes from docs/formats.md, not from the
module, so these tests also hold the documentation to the implementation.
"""
from __future__ import annotations

import collections
import io
import json
import math
import mmap
import os
import pickle
import struct
import zlib

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

import graphc as gc
from graphc import serialization
from graphc.ir.errors import GraphcError
from graphc.serialization import CheckpointError

DTYPES = ["bool", "uint8", "int32", "int64", "float16", "bfloat16", "float32", "float64"]
MAGIC = b"\x89GRAPHC\n"


def _array(dtype_name, shape, rng):
    """Values that exercise the dtype: signs, extremes, non-finite floats."""
    n = int(np.prod(shape))
    if dtype_name == "bool":
        return rng.random(n).reshape(shape) < 0.5
    if dtype_name == "uint8":
        return rng.integers(0, 256, n).astype(np.uint8).reshape(shape)
    if dtype_name in ("int32", "int64"):
        info = np.iinfo(dtype_name)
        vals = rng.integers(info.min, info.max, n, dtype=dtype_name, endpoint=True)
        vals.reshape(-1)[:2] = [info.min, info.max][:n]
        return vals.reshape(shape)
    vals = rng.standard_normal(n) * 100
    special = [0.0, -0.0, np.inf, -np.inf, np.nan]
    vals[:min(n, len(special))] = special[:n]
    return vals.astype(np.float32 if dtype_name == "bfloat16" else dtype_name).reshape(shape)


def _gc(array, dtype_name):
    return gc.tensor(array, dtype=getattr(gc, dtype_name))


def _bits(t):
    """The exact bits of a tensor's values (NaNs and -0.0 compare as they are)."""
    a = np.ascontiguousarray(t.detach().numpy())
    return a.dtype.str, a.shape, a.tobytes()


def _assert_same(loaded, original, path="obj"):
    if isinstance(original, gc.Tensor):
        assert isinstance(loaded, gc.Tensor), path
        assert loaded.dtype is original.dtype, path
        assert _bits(loaded) == _bits(original), path
        assert loaded.requires_grad == original.requires_grad, path
    elif isinstance(original, (list, tuple, dict)):
        assert type(loaded) is type(original), path
        assert len(loaded) == len(original), path
        if isinstance(original, dict):
            assert list(loaded) == list(original), path   # key order is kept
            for k in original:
                _assert_same(loaded[k], original[k], f"{path}[{k!r}]")
        else:
            for k, (a, b) in enumerate(zip(loaded, original)):
                _assert_same(a, b, f"{path}[{k}]")
    elif isinstance(original, float) and math.isnan(original):
        assert isinstance(loaded, float) and math.isnan(loaded), path
    else:
        assert type(loaded) is type(original) and loaded == original, path
        if isinstance(original, float):
            assert math.copysign(1, loaded) == math.copysign(1, original), path


def _roundtrip_bytes(obj):
    buf = io.BytesIO()
    gc.save(obj, buf)
    return buf.getvalue()


def _load_bytes(data):
    return gc.load(io.BytesIO(data))


def _file_with_header(header: dict, data: bytes, version=1) -> bytes:
    """A checkpoint assembled by hand from docs/formats.md (valid CRC, any header)."""
    hb = json.dumps(header).encode()
    pre = MAGIC + struct.pack("<IQI", version, len(hb), zlib.crc32(hb))
    start = -(-(len(pre) + len(hb)) // 64) * 64
    return pre + hb + bytes(start - len(pre) - len(hb)) + data


def _split(data: bytes):
    """(header dict, data section bytes) of a checkpoint, per docs/formats.md."""
    (hlen,) = struct.unpack_from("<Q", data, 12)
    header = json.loads(data[24:24 + hlen])
    start = -(-(24 + hlen) // 64) * 64
    return header, data[start:], start


# ============================================================================ round trips

@pytest.mark.parametrize("dtype_name", DTYPES)
def test_every_dtype_round_trips_bit_exactly(tmp_path, rng, dtype_name):
    shapes = [(), (0,), (3,), (2, 3, 4), (0, 5)]
    tensors = [_gc(_array(dtype_name, s, rng), dtype_name) for s in shapes]
    path = tmp_path / "t.gcpt"
    gc.save(tensors, path)
    loaded = gc.load(path)
    for t, orig, shape in zip(loaded, tensors, shapes):
        assert tuple(t.shape) == shape
        _assert_same(t, orig)


def test_bfloat16_is_two_bytes_on_disk_with_torch_bits(rng):
    values = _array("bfloat16", (37,), rng)
    t = _gc(values, "bfloat16")
    header, data, _ = _split(_roundtrip_bytes(t))
    entry = header["tensors"][0]
    assert entry["dtype"] == "bf16"
    assert header["data_size"] == 37 * 2
    expected = torch.from_numpy(values).to(torch.bfloat16).view(torch.int16).numpy()
    stored = np.frombuffer(data, "<i2", 37, entry["offset"])
    finite = ~np.isnan(values)      # NaN payload bits are not specified, only NaN-ness
    np.testing.assert_array_equal(stored[finite], expected[finite])
    assert np.all((stored[~finite] & 0x7F80) == 0x7F80) and np.all(stored[~finite] & 0x7F)
    back = _load_bytes(_roundtrip_bytes(t))
    want = torch.from_numpy(values).to(torch.bfloat16).to(torch.float32).numpy()
    np.testing.assert_array_equal(back.numpy(), want)


def test_nested_python_values_round_trip(tmp_path, rng):
    w = gc.tensor(_array("float32", (4, 3), rng), requires_grad=True)
    obj = {
        "model": collections.OrderedDict([("fc.weight", w), ("fc.bias", gc.zeros(3))]),
        "optimizer": {"state": {0: {"step": 7, "exp_avg": gc.ones(4, 3)}},
                      "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]},
        "numbers": [0, -1, 2**62, 2**80, 1.5, -0.0, float("inf"), float("-inf"),
                    float("nan"), True, False, None],
        "strings": ["", "ünïcødé ✓", "quote\"back\\slash\nnewline"],
        "keys": {(1, "a"): 1, 2.5: 2, None: 3, False: 4, gc.float16: 5},
        "empty": [[], (), {}, ((),)],
        "dtype": gc.bfloat16,
        "tied": (w, w),
    }
    path = tmp_path / "ckpt.gcpt"
    gc.save(obj, path)
    loaded = gc.load(path)
    _assert_same(loaded, obj)
    assert type(loaded["model"]) is collections.OrderedDict
    assert loaded["tied"][0] is loaded["tied"][1]    # a shared tensor stays shared
    assert loaded["tied"][0] is loaded["model"]["fc.weight"]
    assert loaded["dtype"] is gc.bfloat16
    assert loaded["tied"][0].is_leaf and loaded["tied"][0].requires_grad


def test_pending_tensors_are_realized_and_stored(tmp_path):
    a = gc.arange(6, dtype=gc.float64).reshape(2, 3)
    lazy = (a * 2).t()          # never read before saving
    gc.save({"x": lazy}, tmp_path / "p.gcpt")
    np.testing.assert_array_equal(gc.load(tmp_path / "p.gcpt")["x"].numpy(),
                                  (np.arange(6.0).reshape(2, 3) * 2).T)


def test_parameters_load_as_parameters(tmp_path):
    nn = pytest.importorskip("graphc.nn.parameter")
    p = nn.Parameter(gc.ones(2, 2))
    frozen = nn.Parameter(gc.zeros(3), requires_grad=False)
    gc.save([p, frozen], tmp_path / "p.gcpt")
    lp, lf = gc.load(tmp_path / "p.gcpt")
    assert type(lp) is nn.Parameter and lp.requires_grad and lp.is_leaf
    assert type(lf) is nn.Parameter and not lf.requires_grad
    np.testing.assert_array_equal(lp.detach().numpy(), np.ones((2, 2), np.float32))


def _tensor_strategy():
    return st.builds(
        lambda d, shape, seed: _gc(_array(d, shape, np.random.default_rng(seed)), d),
        st.sampled_from(DTYPES), st.lists(st.integers(0, 3), max_size=3).map(tuple),
        st.integers(0, 2**32 - 1))


_leaves = (st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True)
           | st.text(max_size=8) | _tensor_strategy())
_keys = st.none() | st.booleans() | st.integers() | st.text(max_size=6)
_objects = st.recursive(
    _leaves,
    lambda inner: st.lists(inner, max_size=4) | st.lists(inner, max_size=4).map(tuple)
    | st.dictionaries(_keys, inner, max_size=4),
    max_leaves=12)


@settings(max_examples=60, deadline=None)
@given(_objects)
def test_random_objects_round_trip(obj):
    _assert_same(_load_bytes(_roundtrip_bytes(obj)), obj)


# ============================================================================ layout, mmap

def test_layout_matches_the_documented_format(rng):
    t1 = _gc(_array("float32", (3,), rng), "float32")
    t2 = _gc(_array("int64", (5,), rng), "int64")
    data = _roundtrip_bytes({"a": t1, "b": [t2, 1]})
    assert data[:8] == MAGIC
    version, hlen, crc = struct.unpack_from("<IQI", data, 8)
    assert version == 1 and zlib.crc32(data[24:24 + hlen]) == crc
    header, section, start = _split(data)
    assert start % 64 == 0 and not any(data[24 + hlen:start])
    assert header["format"] == "graphc.checkpoint"
    assert header["root"] == {"dict": [["a", {"tensor": 0}],
                                       ["b", [{"tensor": 1}, 1]]]}
    e1, e2 = header["tensors"]
    assert (e1["dtype"], e1["shape"], e1["offset"]) == ("f32", [3], 0)
    assert (e2["dtype"], e2["shape"], e2["offset"]) == ("i64", [5], 64)
    assert section[0:12] == t1.numpy().astype("<f4").tobytes()
    assert section[64:104] == t2.numpy().astype("<i8").tobytes()
    assert len(section) == header["data_size"] == 104


def _owner(array):
    """The object that owns an array's memory, through views and memoryviews."""
    base = array
    while isinstance(base, (np.ndarray, memoryview)):
        base = base.base if isinstance(base, np.ndarray) else base.obj
    return base


def test_large_tensors_are_memory_mapped_not_copied(tmp_path):
    big = gc.arange(1 << 20, dtype=gc.float32).reshape(1024, 1024)
    path = tmp_path / "big.gcpt"
    gc.save({"w": big, "b": gc.ones(10, dtype=gc.float64)}, path)
    before = path.read_bytes()
    loaded = gc.load(path)
    arrays = [loaded["w"]._node.data, loaded["b"]._node.data]
    for a in arrays:
        assert isinstance(_owner(a), mmap.mmap)     # a view of the mapping, not a copy
        assert a.ctypes.data % 64 == 0          # payloads are 64-byte aligned
    np.testing.assert_array_equal(arrays[0], np.arange(1 << 20, dtype=np.float32)
                                  .reshape(1024, 1024))
    arrays[0][0, 0] = -1.0                      # copy-on-write: the file never changes
    assert path.read_bytes() == before
    copied = gc.load(path, mmap=False)["w"]._node.data
    assert not isinstance(_owner(copied), mmap.mmap)
    assert copied[0, 0] == 0.0


def test_file_objects_and_path_objects(tmp_path, rng):
    obj = {"x": _gc(_array("float64", (4,), rng), "float64"), "n": 3}
    buf = io.BytesIO()
    gc.save(obj, buf)
    buf.seek(0)
    _assert_same(gc.load(buf), obj)
    with open(tmp_path / "f.gcpt", "wb") as fh:
        gc.save(obj, fh)
    _assert_same(gc.load(str(tmp_path / "f.gcpt")), obj)


def test_unsupported_objects_are_refused_with_their_path(tmp_path):
    with pytest.raises(TypeError, match=r"obj\['a'\]\[1\] of type ndarray.*from_numpy"):
        gc.save({"a": [1, np.zeros(2)]}, tmp_path / "x")
    with pytest.raises(TypeError, match="of type set"):
        gc.save({1, 2}, tmp_path / "x")
    with pytest.raises(TypeError, match=r"obj\['d'\] has a key of type Tensor"):
        gc.save({"d": {gc.ones(1): 2}}, tmp_path / "x")
    with pytest.raises(TypeError, match="of type _DictSubclass"):
        gc.save(_DictSubclass(a=1), tmp_path / "x")
    loop = [1]
    loop.append(loop)
    with pytest.raises(ValueError, match="contains itself"):
        gc.save(loop, tmp_path / "x")
    assert not (tmp_path / "x").exists()
    with pytest.raises(RuntimeError, match="CUDA"):
        gc.load(io.BytesIO(_roundtrip_bytes(1)), map_location="cuda")


class _DictSubclass(dict):
    """A class of the test's own: loading it back would need the class, so it is refused."""


# ============================================================================ atomic writes

def test_a_crash_mid_save_leaves_the_old_file_and_no_temp_file(tmp_path, monkeypatch):
    path = tmp_path / "model.gcpt"
    gc.save({"v": gc.ones(1000)}, path)
    old = path.read_bytes()
    os.chmod(path, 0o640)
    calls = []
    real = serialization._write_tensor_bytes

    def write_then_crash(fh, disk):
        calls.append(1)
        if len(calls) == 2:
            fh.write(memoryview(disk.reshape(-1)).cast("B")[:disk.nbytes // 2])
            raise OSError("disk full (simulated)")
        real(fh, disk)

    monkeypatch.setattr(serialization, "_write_tensor_bytes", write_then_crash)
    with pytest.raises(OSError, match="simulated"):
        gc.save({"v": gc.zeros(1000), "w": gc.zeros(5000)}, path)
    assert path.read_bytes() == old
    assert os.listdir(tmp_path) == ["model.gcpt"]
    monkeypatch.setattr(serialization, "_write_tensor_bytes", real)
    gc.save({"v": gc.zeros(3)}, path)     # a later save replaces it, keeping permissions
    assert gc.load(path)["v"].tolist() == [0.0, 0.0, 0.0]
    assert os.stat(path).st_mode & 0o777 == 0o640
    assert os.listdir(tmp_path) == ["model.gcpt"]


def test_a_crash_at_rename_time_leaves_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "model.gcpt"
    gc.save([1, 2], path)

    def failing_replace(src, dst):
        raise OSError("power cut (simulated)")
    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="power cut"):
        gc.save([3, 4], path)
    monkeypatch.undo()
    assert gc.load(path) == [1, 2]
    assert os.listdir(tmp_path) == ["model.gcpt"]


# ============================================================================ bad files

def _small_checkpoint():
    return _roundtrip_bytes({"w": gc.tensor([[1.0, -2.0], [3.5, 0.25]]),
                             "mask": gc.tensor([True, False, True]),
                             "step": 3, "name": "run", "h": gc.tensor([1.0], dtype=gc.float16)})


def test_every_truncation_of_a_file_is_a_clear_error(tmp_path):
    data = _small_checkpoint()
    path = tmp_path / "t.gcpt"
    for cut in range(len(data)):
        path.write_bytes(data[:cut])
        with pytest.raises(CheckpointError) as info:
            gc.load(path)
        message = str(info.value)
        assert str(path) in message
        assert ("truncated" in message or "empty" in message), (cut, message)


@pytest.mark.parametrize("content, fragment", [
    (b"", "empty"),
    (b"hello world, this is text" * 3, "not a graphc checkpoint"),
    (b"\x93NUMPY\x01\x00v\x00{'descr': '<f8'}", "numpy"),
    (MAGIC + struct.pack("<IQI", 2, 10, 0) + b"{}" * 10, "version 2"),
    (MAGIC + struct.pack("<IQI", 1, 10**12, 0), "truncated"),
    (MAGIC + struct.pack("<IQI", 1, 2, 0) + b"{}", "CRC-32"),
])
def test_foreign_and_damaged_files_are_named(tmp_path, content, fragment):
    path = tmp_path / "bad"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=fragment):
        gc.load(path)


def _mutate_header(mutation):
    header, data, _ = _split(_small_checkpoint())
    mutation(header)
    return _file_with_header(header, data)


def _set(path, value):
    def apply(h):
        target = h
        for p in path[:-1]:
            target = target[p]
        target[path[-1]] = value
    return apply


@pytest.mark.parametrize("mutation, fragment", [
    (_set(["format"], "safetensors"), "'format'"),
    (_set(["data_size"], -1), "data_size"),
    (_set(["data_size"], 10**30), "truncated"),
    (_set(["data_size"], 1), "needs bytes"),
    (_set(["tensors"], {}), "'tensors' is not a list"),
    (_set(["tensors", 0, "dtype"], "f128"), "unknown dtype"),
    (_set(["tensors", 0, "shape"], [2, -2]), "non-negative"),
    (_set(["tensors", 0, "shape"], [2, True]), "non-negative"),
    (_set(["tensors", 0, "shape"], [10**9, 10**9]), "needs bytes"),
    (_set(["tensors", 0, "shape"], [0, 10**20]), "too large"),
    (_set(["tensors", 0, "shape"], [0] * 40), "40 dimensions"),
    (_set(["tensors", 0, "offset"], 3), "multiple of 64"),
    (_set(["tensors", 1, "offset"], 0), "overlap"),
    (_set(["tensors", 1, "requires_grad"], True), "requires_grad"),
    (_set(["tensors", 0, "parameter"], "yes"), "parameter"),
    (lambda h: h.pop("root"), "'root' is missing"),
    (_set(["root"], {"tensor": 9}), "out of range"),
    (_set(["root"], {"tensor": "0"}), "out of range"),
    (_set(["root"], {"pickle": "cos\nsystem"}), "unknown value"),
    (_set(["root"], {"tuple": [1], "dict": []}), "unknown value"),
    (_set(["root"], {"dict": [[1, 2, 3]]}), "pair"),
    (_set(["root"], {"dict": [[[1], 2]]}), "cannot be a dict key"),
    (_set(["root"], {"dict": {"a": 1}}), "not a list"),
    (_set(["root"], {"float": "1e5"}), "nan, inf"),
    (_set(["root"], {"dtype": "q8"}), "unknown dtype"),
    (lambda h: h.clear(), "'format'"),
])
def test_header_fields_are_validated(mutation, fragment):
    with pytest.raises(CheckpointError, match=fragment):
        _load_bytes(_mutate_header(mutation))


@pytest.mark.parametrize("depth", [50, 900, 5000, 100_000])
def test_deeply_nested_headers_load_or_fail_clearly(depth):
    hb = ('{"format":"graphc.checkpoint","data_size":0,"tensors":[],"root":'
          + '{"tuple":[' * depth + "1" + "]}" * depth + "}").encode()
    blob = MAGIC + struct.pack("<IQI", 1, len(hb), zlib.crc32(hb)) + hb
    blob += bytes(-len(blob) % 64)
    try:
        v = _load_bytes(blob)
    except CheckpointError as e:
        assert "nested too deeply" in str(e) or "not valid JSON" in str(e)
        assert depth > 50
    else:
        for _ in range(depth):
            v, = v
        assert v == 1


def test_header_with_bad_json_or_utf8_or_padding_is_refused():
    for hb in (b"{not json", b"\xff\xfe{}", b'{"x": NaN}', b"[" * 200_000):
        pre = MAGIC + struct.pack("<IQI", 1, len(hb), zlib.crc32(hb))
        with pytest.raises(CheckpointError, match="not valid JSON"):
            _load_bytes(pre + hb)
    data = bytearray(_small_checkpoint())
    _, _, start = _split(bytes(data))
    data[start - 1] = 7
    with pytest.raises(CheckpointError, match="padding"):
        _load_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="unexpected bytes after"):
        _load_bytes(_small_checkpoint() + b"\x00")


def test_bool_payload_must_hold_zero_or_one():
    header, data, _ = _split(_small_checkpoint())
    k = next(i for i, e in enumerate(header["tensors"]) if e["dtype"] == "b8")
    data = bytearray(data)
    data[header["tensors"][k]["offset"]] = 2
    with pytest.raises(CheckpointError, match="bool tensor"):
        _load_bytes(_file_with_header(header, bytes(data)))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_flipped_bytes_load_correctly_or_fail_clearly(data):
    original = _small_checkpoint()
    header, _, start = _split(original)
    positions = data.draw(st.lists(st.integers(0, len(original) - 1), min_size=1,
                                   max_size=4, unique=True))
    damaged = bytearray(original)
    for p in positions:
        damaged[p] ^= data.draw(st.integers(1, 255))
    try:
        loaded = _load_bytes(bytes(damaged))
    except CheckpointError:
        return
    # Only payload (and inter-tensor padding) bytes may change without an error ...
    assert all(p >= start for p in positions), positions
    expected = _load_bytes(original)
    assert list(loaded) == list(expected)
    for key in ("step", "name"):
        assert loaded[key] == expected[key]
    # ... and then each tensor is the stored bytes as they now are.
    for key, entry in zip(("w", "mask", "h"), header["tensors"]):
        t = loaded[key]
        assert t.dtype is expected[key].dtype and t.shape == expected[key].shape
        raw = bytes(damaged[start + entry["offset"]:start + entry["offset"]
                            + t.numel() * t.dtype.itemsize])
        assert np.ascontiguousarray(t.numpy()).astype(t.dtype.np.newbyteorder("<")) \
            .tobytes() == raw


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False,
                                                          allow_infinity=False)
    | st.text(max_size=5) | st.sampled_from(["f32", "tensor", "tuple", "dict", "float"]),
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.sampled_from(["tuple", "dict", "odict", "tensor", "float", "dtype",
                                       "x"]), inner, max_size=2),
    max_leaves=15)


@settings(max_examples=300, deadline=None)
@given(root=_json, entries=st.lists(st.fixed_dictionaries(
    {"dtype": st.sampled_from(["f32", "b8", "bf16", "i64", "zz"]),
     "shape": st.lists(st.integers(-1, 4) | st.sampled_from([2**31, 2**62, 10**20]),
                       max_size=3) | st.lists(st.just(0), min_size=30, max_size=70),
     "offset": st.sampled_from([0, 64, 128, 7]),
     "requires_grad": st.booleans()}), max_size=3),
    data_size=st.integers(0, 300))
def test_arbitrary_headers_load_or_fail_clearly(root, entries, data_size):
    header = {"format": "graphc.checkpoint", "data_size": data_size, "tensors": entries,
              "root": root}
    try:
        _load_bytes(_file_with_header(header, bytes(data_size)))
    except CheckpointError:
        pass


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_random_bytes_are_refused(blob):
    with pytest.raises(CheckpointError):
        _load_bytes(blob)
    with pytest.raises(CheckpointError):
        _load_bytes(MAGIC + blob)


class _Payload:
    """Unpickling this creates a marker file: what a malicious checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


@pytest.mark.parametrize("zipfile_format", [True, False])
def test_a_malicious_pytorch_checkpoint_is_refused_without_running_it(tmp_path,
                                                                       zipfile_format):
    marker = tmp_path / "pwned"
    path = tmp_path / "model.pt"
    torch.save({"weight": torch.ones(2), "evil": _Payload(str(marker))}, path,
               _use_new_zipfile_serialization=zipfile_format)
    with pytest.raises(CheckpointError, match="pickle") as info:
        gc.load(path)
    assert isinstance(info.value, GraphcError)
    assert ("zip archive" in str(info.value)) == zipfile_format
    assert not marker.exists()
    # The file really was dangerous: unpickling it creates the marker.
    torch.load(path, weights_only=False)
    assert marker.exists()


def test_a_plain_pickle_is_refused(tmp_path):
    path = tmp_path / "obj.pkl"
    path.write_bytes(pickle.dumps({"a": 1}, protocol=4))
    with pytest.raises(CheckpointError, match=r"Python pickle \(protocol 4\)"):
        gc.load(path)
