"""On-disk cache of compiled object code.

Entries live in `$GRAPHC_CACHE_DIR` (default `~/.cache/graphc`), one file per key. The
key hashes the kernel IR and memory slots (the exact input of code generation), the
source of this backend package (a changed code generator never reuses old code), the
graphc, llvmlite and LLVM versions, and the host CPU name and features (the code uses
them). A file is `MAGIC + sha256(payload) + payload`, written to a temporary file and
renamed into place (os.replace), so readers never see half a file; an entry whose
checksum does not match is ignored (and rebuilt by the caller), never trusted.
"""
from __future__ import annotations

import hashlib
import os
import tempfile

import llvmlite
import llvmlite.binding as llvm

MAGIC = b"GRAPHC-LLVM-OBJ2"   # payload: pack()ed object files
_source_hash = None


def cache_dir() -> str:
    return os.environ.get("GRAPHC_CACHE_DIR") or os.path.join(os.path.expanduser("~"),
                                                              ".cache", "graphc")


def _backend_source_hash():
    global _source_hash
    if _source_hash is None:
        h = hashlib.sha256()
        here = os.path.dirname(os.path.abspath(__file__))
        files = [os.path.join(here, f) for f in sorted(os.listdir(here)) if f.endswith(".py")]
        files.append(os.path.join(os.path.dirname(here), "kernel_ir.py"))
        for f in files:
            with open(f, "rb") as fh:
                h.update(fh.read())
        _source_hash = h.hexdigest()
    return _source_hash


def make_key(ir_fingerprint: str) -> str:
    from ... import __version__ as graphc_version
    from .jit import host_cpu
    cpu, features = host_cpu()
    h = hashlib.sha256()
    for part in (graphc_version, llvmlite.__version__, ".".join(map(str, llvm.llvm_version_info)),
                 cpu, features, _backend_source_hash(), ir_fingerprint):
        h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def pack(objects: list) -> bytes:
    """One payload for the object files of a plan (parallel.py compiles several):
    a count, then each object's 8-byte length and bytes."""
    out = [len(objects).to_bytes(8, "little")]
    for o in objects:
        out += [len(o).to_bytes(8, "little"), o]
    return b"".join(out)


def unpack(payload) -> list | None:
    """The object files of a `pack`ed payload; None for None or a malformed one."""
    if payload is None or len(payload) < 8:
        return None
    n, pos, out = int.from_bytes(payload[:8], "little"), 8, []
    for _ in range(n):
        if pos + 8 > len(payload):
            return None
        size = int.from_bytes(payload[pos:pos + 8], "little")
        pos += 8
        if pos + size > len(payload):
            return None
        out.append(payload[pos:pos + size])
        pos += size
    return out if n and pos == len(payload) else None


def _path(key):
    return os.path.join(cache_dir(), key[:2], key + ".o")


def load(key: str) -> bytes | None:
    """The cached object code for `key`, or None if absent or corrupt."""
    try:
        with open(_path(key), "rb") as f:
            data = f.read()
    except OSError:
        return None
    head = len(MAGIC) + 32
    if len(data) < head or data[:len(MAGIC)] != MAGIC:
        return None
    payload = data[head:]
    if hashlib.sha256(payload).digest() != data[len(MAGIC):head]:
        return None
    return payload


def store(key: str, payload: bytes):
    """Write atomically; a cache that cannot be written is skipped, not an error."""
    path = _path(key)
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(MAGIC + hashlib.sha256(payload).digest() + payload)
            os.replace(tmp, path)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
    except OSError:
        pass
