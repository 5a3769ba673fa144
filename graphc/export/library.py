"""Calling an exported library from Python through ctypes (graphc.export.load).

`ExportedLibrary(path)` reads the manifest next to the library, loads it (its RUNPATH
finds the BLAS), creates one handle, and runs it on numpy arrays: each input must have
exactly the exported shape and dtype (it is made contiguous if it is not), outputs are
fresh arrays. Status codes become exceptions: IndexError for an out-of-range index,
MemoryError for a failed allocation, RuntimeError (with the check's message) for a
failed value check, ValueError otherwise. Calls on one object are serialised by a lock
(a handle must not run in two threads at once, header.py); for parallel runs, load it
once per thread.
This wrapper is for tests and Python callers; the library itself never needs Python.
"""
from __future__ import annotations

import ctypes
import json
import os
import threading

import numpy as np

from ..backends.kernel_ir import STATUS_INDEX_OUT_OF_RANGE, STATUS_NO_MEMORY
from ..ir import dtypes as dt
from ..ir.ops import CHECK_CODE_BASE
from .header import MANIFEST_FORMAT, MANIFEST_VERSION
from .signature import ExportError


def _manifest_path(path):
    path = os.fspath(path)
    if os.path.isdir(path):
        found = sorted(f for f in os.listdir(path) if f.endswith(".json"))
        for f in found:
            with open(os.path.join(path, f)) as fh:
                try:
                    if json.load(fh).get("format") == MANIFEST_FORMAT:
                        return os.path.join(path, f)
                except (ValueError, AttributeError):
                    continue
        raise ExportError(f"{path}: no graphc export manifest (<name>.json) in this folder")
    if path.endswith(".so"):
        stem = os.path.basename(path)[3:-3] if os.path.basename(path).startswith("lib") \
            else os.path.basename(path)[:-3]
        return os.path.join(os.path.dirname(path), f"{stem}.json")
    return path


class ExportedLibrary:
    def __init__(self, path):
        manifest = _manifest_path(path)
        try:
            with open(manifest) as f:
                doc = json.load(f)
        except (OSError, ValueError) as e:
            raise ExportError(f"{manifest}: cannot read the export manifest: {e}") from None
        if doc.get("format") != MANIFEST_FORMAT or doc.get("version") != MANIFEST_VERSION:
            raise ExportError(f"{manifest}: not a version-{MANIFEST_VERSION} graphc export "
                              "manifest")
        self.manifest = doc
        self.name = doc["name"]
        folder = os.path.dirname(os.path.abspath(manifest))
        self._lib = ctypes.CDLL(os.path.join(folder, doc["library"]))
        fn = doc["functions"]
        self._create = getattr(self._lib, fn["create"])
        self._create.restype = ctypes.c_void_p
        self._create.argtypes = []
        self._run = getattr(self._lib, fn["run_arrays"])
        self._run.restype = ctypes.c_int
        self._run.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p]
        self._destroy = getattr(self._lib, fn["destroy"])
        self._destroy.restype = None
        self._destroy.argtypes = [ctypes.c_void_p]
        self._message = getattr(self._lib, fn["status_message"])
        self._message.restype = ctypes.c_char_p
        self._message.argtypes = [ctypes.c_int]
        self.inputs = [(p["name"], dt.from_name(p["dtype"]).np, tuple(p["shape"]))
                       for p in doc["inputs"]]
        self.outputs = [(p["name"], dt.from_name(p["dtype"]).np, tuple(p["shape"]))
                        for p in doc["outputs"]]
        self._handle = self._create()
        if not self._handle:
            raise MemoryError(f"{fn['create']} could not allocate its scratch memory")
        self._lock = threading.Lock()

    def __call__(self, *arrays):
        return self.run(*arrays)

    def run(self, *arrays):
        """One forward pass: a list of output arrays."""
        if len(arrays) != len(self.inputs):
            raise ValueError(f"{self.name}: expects {len(self.inputs)} input(s) "
                             f"({', '.join(n for n, _, _ in self.inputs)}), got {len(arrays)}")
        keep = []
        for (name, dtype, shape), a in zip(self.inputs, arrays):
            a = np.asarray(a)
            if a.shape != shape or a.dtype != dtype:
                raise ValueError(f"{self.name}: input {name!r} must be {dtype} {list(shape)}, "
                                 f"got {a.dtype} {list(a.shape)}")
            keep.append(np.ascontiguousarray(a))
        outs = [np.empty(shape, dtype) for _, dtype, shape in self.outputs]
        in_ptrs = (ctypes.c_void_p * max(len(keep), 1))(*[a.ctypes.data for a in keep])
        out_ptrs = (ctypes.c_void_p * max(len(outs), 1))(*[o.ctypes.data for o in outs])
        with self._lock:
            if not self._handle:
                raise ValueError(f"{self.name}: the library was closed")
            status = self._run(self._handle, in_ptrs, out_ptrs)
        if status:
            message = self._message(status).decode()
            error = {STATUS_INDEX_OUT_OF_RANGE: IndexError, STATUS_NO_MEMORY: MemoryError}.get(
                status, RuntimeError if status >= CHECK_CODE_BASE else ValueError)
            raise error(f"{self.name}: run returned status {status}: {message}")
        return outs

    def close(self):
        with self._lock:
            if self._handle:
                self._destroy(self._handle)
                self._handle = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __del__(self):
        if getattr(self, "_handle", None):
            self._destroy(self._handle)
            self._handle = None
