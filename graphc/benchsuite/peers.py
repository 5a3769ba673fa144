"""Which implementations can take part in this run, and how each is configured.

graphc itself never imports torch or jax; only this benchmark does, and only when the
suite runs, through the loaders below. Each loader returns the module (or None) and a
note saying what was found or why the peer is skipped, so the report can say it.

PyTorch at its best setting: its CPU allocator returns huge-page-backed memory only
when THP_MEM_ALLOC_ENABLE=1 is in the environment when torch first allocates; for large
tensors that makes eager ops (softmax on 4096x4096: about 2x here) much faster. The bench
therefore sets THP_MEM_ALLOC_ENABLE=1 before importing torch when the user has not set
it and torch is not imported yet, and records what was in effect. The other setting is
measured in a subprocess (see altenv.py) and graphc is compared with the better one.
"""
from __future__ import annotations

import contextlib
import importlib
import os
import shutil
import sys

THP_VAR = "THP_MEM_ALLOC_ENABLE"


@contextlib.contextmanager
def backend_scope(name: str | None):
    """Make `name` graphc's default backend (GRAPHC_BACKEND) for the duration.

    graphc's lazy path picks its backend from GRAPHC_BACKEND at each realization, so
    one process can time several backends side by side."""
    if name is None:
        yield
        return
    old = os.environ.get("GRAPHC_BACKEND")
    os.environ["GRAPHC_BACKEND"] = name
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("GRAPHC_BACKEND", None)
        else:
            os.environ["GRAPHC_BACKEND"] = old


def probe_backend(name: str) -> tuple[bool, str]:
    """(usable, note) for a graphc backend: it must import through get_backend and
    provide compile(graph)."""
    from graphc import backends
    try:
        module = backends.get_backend(name)
    except Exception as exc:   # ImportError, or anything its import raises
        return False, f"graphc backend {name!r} does not import: {type(exc).__name__}: {exc}"
    if not callable(getattr(module, "compile", None)):
        return False, f"graphc backend {name!r} imports but has no compile(graph) yet"
    available = getattr(module, "available", None)   # e.g. triton: needs a CUDA GPU
    if callable(available):
        ok, why = available()
        if not ok:
            return False, f"graphc backend {name!r} cannot run here: {why}"
    return True, f"graphc backend {name!r} imported"


def resolve_backends(requested: str) -> tuple[list[str], list[str], str | None]:
    """(backends to run, notes, error). `requested`: auto, all, or a comma list.

    auto/all run every backend that imports and note the others; an explicitly named
    backend that does not import is an error."""
    from graphc import backends
    notes, chosen = [], []
    if requested in ("auto", "all"):
        for name in backends.available():
            ok, note = probe_backend(name)
            (chosen.append(name) if ok else notes.append(note + "; skipped"))
        return chosen, notes, None if chosen else "no graphc backend imports"
    for name in [n.strip() for n in requested.split(",") if n.strip()]:
        if name not in backends.available():
            return [], notes, (f"unknown backend {name!r}; choose from "
                               f"{', '.join(backends.available())}, auto")
        ok, note = probe_backend(name)
        if not ok:
            return [], notes, note
        chosen.append(name)
    return chosen, notes, None


class Peers:
    """Lazily loaded peer frameworks for one suite run."""

    def __init__(self, wanted: set[str], torch_compile_timeout_s: float,
                 choose_thp: bool = True, threads: int | None = None):
        """choose_thp: set THP_MEM_ALLOC_ENABLE=1 before importing torch when unset (the
        bench process); False keeps the environment as given (altenv subprocesses).
        threads: torch.set_num_threads(threads) after import (None: torch's default)."""
        self.wanted = wanted
        self.choose_thp = choose_thp
        self.threads = threads
        self.notes: dict[str, str] = {}
        self.torch_compile_timeout_s = torch_compile_timeout_s
        self._torch = None
        self._jax = None
        self._loaded = set()
        self.thp_in_effect: str | None = None

    # -- torch ---------------------------------------------------------------------
    def torch(self):
        if "torch" in self._loaded:
            return self._torch
        self._loaded.add("torch")
        if not (self.wanted & {"torch", "torch.compile"}):
            return None
        already = "torch" in sys.modules
        if self.choose_thp and not already and THP_VAR not in os.environ:
            os.environ[THP_VAR] = "1"      # must precede torch's first allocation
        try:
            self._torch = importlib.import_module("torch")
        except Exception as exc:
            self.notes["torch"] = (f"torch not importable ({type(exc).__name__}: {exc}); "
                                   f"install graphc[bench]")
            return None
        if self.threads:
            self._torch.set_num_threads(self.threads)
        value = os.environ.get(THP_VAR)
        if already:
            self.thp_in_effect = value
            self.notes["torch"] = (f"torch was imported before the bench started; "
                                   f"{THP_VAR}={value!s} assumed in effect")
        else:
            self.thp_in_effect = value
            self.notes["torch"] = f"torch {self._torch.__version__} imported with {THP_VAR}={value}"
        return self._torch

    def torch_setting(self) -> str:
        return (f"{THP_VAR}={self.thp_in_effect}" if self.thp_in_effect is not None
                else f"{THP_VAR} unset")

    def torch_compile(self):
        """torch (for torch.compile) or None with a note; needs a C++ compiler."""
        if "torch.compile" not in self.wanted:
            return None
        if "torch.compile" in self.notes and self.notes["torch.compile"].startswith("disabled"):
            return None
        torch = self.torch()
        if torch is None:
            self.notes.setdefault("torch.compile", "torch not importable")
            return None
        cxx = os.environ.get("CXX") or next(
            (c for c in ("g++", "c++", "clang++") if shutil.which(c)), None)
        if cxx is None:
            self.notes["torch.compile"] = "disabled: no C++ compiler for inductor"
            return None
        box = self.torch_compile_timeout_s
        self.notes.setdefault("torch.compile", f"inductor (default mode), C++ compiler {cxx}, "
                                               f"warm-up time box {box:.0f} s")
        return torch

    def disable_torch_compile(self, why: str):
        self.notes["torch.compile"] = f"disabled for the rest of the run: {why}"

    # -- jax -----------------------------------------------------------------------
    def jax(self):
        if "jax" in self._loaded:
            return self._jax
        self._loaded.add("jax")
        if "jax" not in self.wanted:
            return None
        try:
            self._jax = importlib.import_module("jax")
            importlib.import_module("jax.numpy")
            self.notes["jax"] = f"jax {self._jax.__version__}, jax.jit"
        except Exception as exc:
            self.notes["jax"] = f"jax not importable ({type(exc).__name__}); skipped"
            self._jax = None
        return self._jax


class ThreadLimit:
    """--threads N: cap the BLAS/OpenMP pools of libraries already loaded (numpy's
    OpenBLAS, which graphc's BLAS calls also use) through threadpoolctl's API, for the
    duration of a run. It never touches OPENBLAS_* environment variables. torch, imported
    later, is capped by Peers (torch.set_num_threads)."""

    def __init__(self, threads: int | None):
        self.threads, self._limiter, self.note = threads, None, None

    def __enter__(self):
        if self.threads:
            try:
                import threadpoolctl
            except ImportError:
                self.note = "threadpoolctl missing: --threads could not cap numpy's BLAS"
                return self
            self._limiter = threadpoolctl.threadpool_limits(limits=self.threads)
        return self

    def __exit__(self, *exc):
        if self._limiter is not None:
            self._limiter.restore_original_limits()
