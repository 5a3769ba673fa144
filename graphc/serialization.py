"""`graphc.save` / `graphc.load`: checkpoints that never run code when loaded.

A checkpoint holds one Python object built from dicts, lists, tuples, tensors, numbers
(int, float, bool), strings and None. Layout of format version 1 (docs/formats.md gives
it byte by byte):

    offset 0    8 bytes  magic b"\\x89GRAPHC\\n"
    offset 8    u32 LE   format version (1)
    offset 12   u64 LE   header length H
    offset 20   u32 LE   CRC-32 of the header bytes
    offset 24   H bytes  header: UTF-8 JSON {"format", "data_size", "tensors", "root"}
    ...                  zero bytes up to the next multiple of 64: `data_start`
    data_start           tensor payloads, raw little-endian C-order bytes, each starting
                         at a multiple of 64 bytes from data_start

Invariants the loader checks (anything else is a `CheckpointError`, never another
exception): the magic, version and header checksum match; the header is JSON of the
documented shape; every tensor's bytes lie inside the data section, do not overlap and
fit its dtype and shape; the file ends exactly at data_start + data_size. The header is
plain data (JSON), read by a decoder that only knows the tags below, so loading never
executes anything from the file. Tensor payloads are not checksummed: they are
memory-mapped copy-on-write, not read, so loading a large checkpoint copies nothing
(bfloat16, stored as 2 bytes, and bool, whose bytes are checked to be 0 or 1, are the
exceptions).

Writing goes to a temporary file in the target's folder, which is flushed, fsynced and
renamed over the target: a crash mid-save leaves the old file as it was.
"""
from __future__ import annotations

import collections
import json
import mmap
import os
import struct
import tempfile
import zlib

import numpy as np

from .ir import dtypes as dt
from .ir.errors import GraphcError

MAGIC = b"\x89GRAPHC\n"
VERSION = 1
FORMAT_NAME = "graphc.checkpoint"
ALIGNMENT = 64
MAX_NDIM = 32   # numpy 1.x's limit (numpy 2 allows 64)
_PREAMBLE = struct.Struct("<IQI")   # version, header length, header CRC-32
PREAMBLE_SIZE = len(MAGIC) + _PREAMBLE.size  # 24
_OBJECT_TAGS = ("tuple", "dict", "odict", "tensor", "float", "dtype")


class CheckpointError(GraphcError, ValueError):
    """A file that is not a readable graphc checkpoint: truncated, corrupt, written by
    another format version, or another program's file."""


# ============================================================================ saving

def save(obj, f) -> None:
    """Write `obj` (nested dicts/lists/tuples of tensors, numbers, strings, None) to `f`,
    a path (written atomically) or a binary file object (written in place)."""
    from .tensor import Tensor
    from . import runtime
    encoder = _Encoder(Tensor)
    root = encoder.encode(obj, "obj")
    runtime.realize(*encoder.tensors)   # one graph for every pending tensor
    parameter_class = _parameter_class()
    payloads, entries, offset = [], [], 0
    for t in encoder.tensors:
        disk = _to_disk_bytes(t._node.data, t.dtype)
        offset = _align(offset)
        entry = {"dtype": t.dtype.short, "shape": list(t.shape), "offset": offset,
                 "requires_grad": bool(t.requires_grad)}
        if parameter_class is not None and isinstance(t, parameter_class):
            entry["parameter"] = True
        entries.append(entry)
        payloads.append((offset, disk))
        offset += disk.nbytes
    header = {"format": FORMAT_NAME, "data_size": offset, "tensors": entries, "root": root}
    header_bytes = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    preamble = MAGIC + _PREAMBLE.pack(VERSION, len(header_bytes), zlib.crc32(header_bytes))
    data_start = _align(PREAMBLE_SIZE + len(header_bytes))

    def write(fh):
        fh.write(preamble)
        fh.write(header_bytes)
        fh.write(bytes(data_start - PREAMBLE_SIZE - len(header_bytes)))
        written = 0
        for off, disk in payloads:
            fh.write(bytes(off - written))
            _write_tensor_bytes(fh, disk)
            written = off + disk.nbytes

    if hasattr(f, "write") and not isinstance(f, (str, bytes, os.PathLike)):
        write(f)
    else:
        _write_atomically(os.fspath(f), write)


def _parameter_class():
    """graphc.nn.Parameter, or None where graphc.nn is not available."""
    try:
        from .nn.parameter import Parameter
    except ImportError:
        return None
    return Parameter


def _align(n: int) -> int:
    return -(-n // ALIGNMENT) * ALIGNMENT


def _to_disk_bytes(array: np.ndarray, dtype: dt.DType) -> np.ndarray:
    """The C-order little-endian array whose bytes are stored for a tensor."""
    if dtype.short == "bf16":
        from .backends.interp import round_to_bfloat16
        bits = round_to_bfloat16(np.asarray(array, dtype=np.float32)).view(np.uint32)
        return np.ascontiguousarray(bits >> 16, dtype="<u2")
    return np.ascontiguousarray(array, dtype=dtype.np.newbyteorder("<"))


def _write_tensor_bytes(fh, disk: np.ndarray) -> None:
    if disk.nbytes:
        fh.write(memoryview(disk.reshape(-1)).cast("B"))


def _write_atomically(path: str, write) -> None:
    folder = os.path.dirname(os.path.abspath(path))
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    _fsync_folder(folder)


def _new_file_mode(path: str) -> int:
    """Keep an existing file's permissions; a new file gets what open() would give."""
    try:
        return os.stat(path).st_mode & 0o7777
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        return 0o666 & ~umask


def _fsync_folder(folder: str) -> None:
    """Make the rename itself durable (POSIX); harmless where folders cannot be opened."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class _Encoder:
    """Turns an object into the header's JSON form, collecting its tensors."""

    def __init__(self, tensor_class):
        self.tensor_class = tensor_class
        self.tensors = []
        self._tensor_index: dict[int, int] = {}
        self._open: set[int] = set()   # containers being encoded: a cycle check

    def encode(self, x, where):
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, self.tensor_class):
            k = self._tensor_index.get(id(x))
            if k is None:   # a tensor that appears twice (tied weights) is stored once
                k = self._tensor_index[id(x)] = len(self.tensors)
                self.tensors.append(x)
            return {"tensor": k}
        if isinstance(x, dt.DType):
            return {"dtype": x.short}
        if isinstance(x, (np.bool_, np.integer, np.floating)):
            x = x.item()   # numpy scalars are stored as the Python number they hold
        if isinstance(x, bool) or type(x) is int:
            return x
        if type(x) is float:
            return x if np.isfinite(x) else {"float": repr(x)}
        if type(x) in (list, tuple, dict, collections.OrderedDict):
            if id(x) in self._open:
                raise ValueError(f"graphc.save: {where} contains itself; a checkpoint must be "
                                 f"a tree (tensors may be shared, containers may not loop)")
            self._open.add(id(x))
            try:
                return self._encode_container(x, where)
            finally:
                self._open.discard(id(x))
        hint = " (wrap it with graphc.from_numpy)" if isinstance(x, np.ndarray) else ""
        raise TypeError(f"graphc.save: cannot store {where} of type {type(x).__name__}{hint}; "
                        "a checkpoint holds dicts, lists, tuples, tensors, int, float, bool, "
                        "str and None")

    def _encode_container(self, x, where):
        if type(x) is list:
            return [self.encode(v, f"{where}[{k}]") for k, v in enumerate(x)]
        if type(x) is tuple:
            return {"tuple": [self.encode(v, f"{where}[{k}]") for k, v in enumerate(x)]}
        items = []
        for key, value in x.items():
            if isinstance(key, (self.tensor_class, list, dict)):
                raise TypeError(f"graphc.save: {where} has a key of type "
                                f"{type(key).__name__}; keys must be str, numbers, None, "
                                "dtypes or tuples of those")
            items.append([self.encode(key, f"{where} key {key!r}"),
                          self.encode(value, f"{where}[{key!r}]")])
        return {"odict" if type(x) is collections.OrderedDict else "dict": items}


# ============================================================================ loading

def load(f, map_location=None, *, mmap: bool | None = None, weights_only: bool | None = None):
    """Read what `save` wrote. `f` is a path or a binary file object.

    Tensors of a file given by path are memory-mapped copy-on-write (set `mmap=False` to
    read the file into memory instead). `weights_only` is accepted for PyTorch
    compatibility: graphc checkpoints hold data only, whatever it says, and nothing in
    the file is ever executed. `map_location` may only name the CPU.
    """
    del weights_only  # graphc never unpickles: every load is "weights only"
    if map_location is not None:
        from .device import device as _device
        if not isinstance(map_location, (str, _device)):
            raise TypeError("graphc.load: map_location must be a device or a device name, "
                            f"not {type(map_location).__name__}")
        _device(map_location)._check_usable()
    if hasattr(f, "read") and not isinstance(f, (str, bytes, os.PathLike)):
        where = getattr(f, "name", None) or "checkpoint stream"
        buffer = bytearray(f.read())
    else:
        where = os.fspath(f)
        buffer = _map_file(where, use_mmap=mmap is not False)
    return decode(buffer, str(where))


def _map_file(path: str, use_mmap: bool):
    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        if size == 0 or not use_mmap:
            return bytearray(fh.read())
        # Copy-on-write: arrays are writable, writes never reach the file, pages are
        # read from disk only when touched.
        return mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_COPY)


def decode(buffer, where: str = "checkpoint"):
    """Decode a whole checkpoint held in `buffer` (bytes-like or mmap). Tensors are
    views of `buffer` where their dtype allows."""
    header, data_start = read_header(buffer, where)
    decoder = _Decoder(buffer, data_start, header["tensors"], where)
    try:
        return decoder.decode(header["root"], "root")
    except RecursionError:
        raise CheckpointError(f"{where}: the object in the header is nested too deeply") \
            from None


def read_header(buffer, where: str = "checkpoint") -> tuple[dict, int]:
    """Check the preamble and header of a checkpoint; return (header, data_start)."""
    size = len(buffer)
    if size == 0:
        raise CheckpointError(f"{where}: the file is empty (0 bytes); not a graphc checkpoint")
    head = bytes(buffer[:len(MAGIC)])
    if head != MAGIC:
        if MAGIC.startswith(head) and size < len(MAGIC):
            raise CheckpointError(f"{where}: truncated: {size} bytes, shorter than the "
                                  f"{PREAMBLE_SIZE}-byte preamble of a graphc checkpoint")
        raise CheckpointError(f"{where}: {_describe_foreign(bytes(buffer[:16]))}")
    if size < PREAMBLE_SIZE:
        raise CheckpointError(f"{where}: truncated: {size} bytes, shorter than the "
                              f"{PREAMBLE_SIZE}-byte preamble of a graphc checkpoint")
    version, header_len, header_crc = _PREAMBLE.unpack_from(buffer, len(MAGIC))
    if version != VERSION:
        newer = "a newer graphc" if version > VERSION else "an unknown writer"
        raise CheckpointError(f"{where}: format version {version} (written by {newer}); "
                              f"this graphc reads graphc checkpoint version {VERSION}")
    if header_len > size - PREAMBLE_SIZE:
        raise CheckpointError(f"{where}: truncated: the header needs {header_len} bytes "
                              f"but only {size - PREAMBLE_SIZE} follow the preamble")
    header_bytes = bytes(buffer[PREAMBLE_SIZE:PREAMBLE_SIZE + header_len])
    if zlib.crc32(header_bytes) != header_crc:
        raise CheckpointError(f"{where}: the header is corrupt (its CRC-32 does not match)")
    try:
        header = json.loads(header_bytes.decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise CheckpointError(f"{where}: the header is not valid JSON ({e})") from None
    data_start = _align(PREAMBLE_SIZE + header_len)
    _check_header(header, where)
    end = data_start + header["data_size"]
    if size < end:
        raise CheckpointError(f"{where}: truncated: {size} bytes, the header describes "
                              f"{end}")
    if size > end:
        raise CheckpointError(f"{where}: {size - end} unexpected bytes after the end of the "
                              f"checkpoint ({end} bytes)")
    if any(bytes(buffer[PREAMBLE_SIZE + header_len:data_start])):
        raise CheckpointError(f"{where}: corrupt: the padding after the header is not zero")
    return header, data_start


def _reject_constant(name):
    raise ValueError(f"non-standard JSON constant {name}")


def _describe_foreign(head: bytes) -> str:
    refuse = ("graphc never unpickles files, because unpickling can run arbitrary code; "
              "load it with PyTorch in a trusted setting and re-save the tensors with "
              "graphc.save")
    if head.startswith(b"PK\x03\x04"):
        return ("not a graphc checkpoint: this is a zip archive, the format of "
                "torch.save, which holds a Python pickle; " + refuse)
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return (f"not a graphc checkpoint: this is a Python pickle (protocol {head[1]}), "
                "e.g. a legacy torch.save file; " + refuse)
    if head.startswith(b"\x93NUMPY"):
        return "not a graphc checkpoint: this is a numpy .npy file (use numpy.load)"
    return (f"not a graphc checkpoint: it starts with {head[:8]!r}, not the graphc magic "
            f"bytes {MAGIC!r}")


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _check_header(header, where):
    def bad(msg):
        return CheckpointError(f"{where}: corrupt header: {msg}")
    if not isinstance(header, dict):
        raise bad("it is not a JSON object")
    if header.get("format") != FORMAT_NAME:
        raise bad(f"'format' is {header.get('format')!r}, expected {FORMAT_NAME!r}")
    for key in ("data_size", "tensors", "root"):
        if key not in header:
            raise bad(f"the key {key!r} is missing")
    data_size = header["data_size"]
    if not _is_int(data_size) or data_size < 0:
        raise bad(f"'data_size' is {data_size!r}, not a non-negative integer")
    entries = header["tensors"]
    if not isinstance(entries, list):
        raise bad("'tensors' is not a list")
    extents = []
    for k, e in enumerate(entries):
        if not isinstance(e, dict):
            raise bad(f"tensor {k} is not a JSON object")
        try:
            d = dt.from_short(e.get("dtype")) if isinstance(e.get("dtype"), str) else None
        except ValueError:
            d = None
        if d is None:
            raise bad(f"tensor {k} has unknown dtype {e.get('dtype')!r}")
        shape, offset, rg = e.get("shape"), e.get("offset"), e.get("requires_grad", False)
        if not isinstance(shape, list) or not all(_is_int(s) and s >= 0 for s in shape):
            raise bad(f"tensor {k} has shape {shape!r}, not a list of non-negative integers")
        if not _is_int(offset) or offset < 0 or offset % ALIGNMENT:
            raise bad(f"tensor {k} has offset {offset!r}, not a non-negative multiple of "
                      f"{ALIGNMENT}")
        if not isinstance(rg, bool) or (rg and not d.is_floating):
            raise bad(f"tensor {k} has requires_grad={rg!r} (only floating tensors may "
                      "require gradients)")
        if not isinstance(e.get("parameter", False), bool):
            raise bad(f"tensor {k} has parameter={e.get('parameter')!r}, not a boolean")
        if len(shape) > MAX_NDIM:
            raise bad(f"tensor {k} has {len(shape)} dimensions (at most {MAX_NDIM})")
        nbytes, extent = d.itemsize, d.itemsize
        for s in shape:
            nbytes *= s
            extent *= max(s, 1)
        if extent >= 1 << 62:   # numpy refuses such shapes even when they hold nothing
            raise bad(f"tensor {k} has shape {shape}, too large for an array")
        if offset + nbytes > data_size:
            raise bad(f"tensor {k} ({d.short}{shape}) needs bytes {offset}..{offset + nbytes} "
                      f"but the data section has {data_size}")
        if nbytes:
            extents.append((offset, offset + nbytes, k))
    extents.sort()
    for (s0, e0, k0), (s1, e1, k1) in zip(extents, extents[1:]):
        if s1 < e0:
            raise bad(f"tensors {k0} and {k1} overlap")


class _Decoder:
    def __init__(self, buffer, data_start, entries, where):
        self.buffer = buffer
        self.data_start = data_start
        self.entries = entries
        self.where = where
        self.loaded: dict[int, object] = {}

    def bad(self, path, msg):
        return CheckpointError(f"{self.where}: corrupt header: at {path}: {msg}")

    def decode(self, x, path):
        if x is None or isinstance(x, (bool, str)):
            return x
        if isinstance(x, (int, float)):
            return x
        if isinstance(x, list):
            return [self.decode(v, f"{path}[{k}]") for k, v in enumerate(x)]
        if not isinstance(x, dict) or len(x) != 1 or next(iter(x)) not in _OBJECT_TAGS:
            raise self.bad(path, f"unknown value {_short_repr(x)}; expected one of the tags "
                                 f"{', '.join(_OBJECT_TAGS)}")
        (tag, body), = x.items()
        if tag == "tuple":
            if not isinstance(body, list):
                raise self.bad(path, "a tuple's body is not a list")
            return tuple(self.decode(v, f"{path}[{k}]") for k, v in enumerate(body))
        if tag in ("dict", "odict"):
            return self._decode_dict(body, path, collections.OrderedDict if tag == "odict"
                                     else dict)
        if tag == "tensor":
            if not _is_int(body) or not 0 <= body < len(self.entries):
                raise self.bad(path, f"tensor index {_short_repr(body)} out of range "
                                     f"(the header lists {len(self.entries)})")
            if body not in self.loaded:
                self.loaded[body] = self._tensor(body)
            return self.loaded[body]
        if tag == "float":
            if body not in ("nan", "inf", "-inf"):
                raise self.bad(path, f"float {_short_repr(body)} is not nan, inf or -inf")
            return float(body)
        try:  # tag == "dtype"
            if isinstance(body, str):
                return dt.from_short(body)
        except ValueError:
            pass
        raise self.bad(path, f"unknown dtype {_short_repr(body)}")

    def _decode_dict(self, body, path, kind):
        if not isinstance(body, list):
            raise self.bad(path, "a dict's body is not a list of [key, value] pairs")
        out = kind()
        for k, item in enumerate(body):
            if not isinstance(item, list) or len(item) != 2:
                raise self.bad(path, f"item {k} is not a [key, value] pair")
            key = self.decode(item[0], f"{path} key {k}")
            try:
                hash(key)
            except TypeError:
                raise self.bad(path, f"key {k} is a {type(key).__name__}, which cannot be "
                                     "a dict key") from None
            out[key] = self.decode(item[1], f"{path}[{key!r}]")
        return out

    def _tensor(self, k):
        from .tensor import Tensor
        e = self.entries[k]
        d = dt.from_short(e["dtype"])
        shape = tuple(e["shape"])
        numel = int(np.prod(shape, dtype=object)) if shape else 1
        start = self.data_start + e["offset"]
        if numel == 0:
            array = np.zeros(shape, dtype=d.np)
        elif d.short == "bf16":
            bits = np.frombuffer(self.buffer, dtype="<u2", count=numel, offset=start)
            array = (bits.astype(np.uint32) << 16).view(np.float32).reshape(shape)
        else:
            array = np.frombuffer(self.buffer, dtype=d.np.newbyteorder("<"), count=numel,
                                  offset=start).reshape(shape)
            if d.is_bool and array.view(np.uint8).max() > 1:
                raise CheckpointError(f"{self.where}: corrupt data: bool tensor {k} holds "
                                      "bytes other than 0 and 1")
            if array.dtype != d.np:   # only on a big-endian machine
                array = array.astype(d.np)
        requires_grad = bool(e.get("requires_grad"))
        t = Tensor._from_array(array, d)
        parameter_class = _parameter_class() if e.get("parameter") else None
        if parameter_class is not None:
            return parameter_class(t, requires_grad=requires_grad)
        return t.requires_grad_(True) if requires_grad else t


def _short_repr(x) -> str:
    r = repr(x)
    return r if len(r) <= 60 else r[:57] + "..."
