"""Generated Triton modules on disk, loaded for the interpreter or compiled for a GPU.

Layout under `$GRAPHC_CACHE_DIR` (default `~/.cache/graphc`), directory `triton/`:
  src/<sha256 of text>.py        a generated module (Triton reads kernels' source text
                                 through `inspect`, so the functions must live in a file);
  bin/<key>.json + <key>.cubin   a compiled kernel: metadata (entry name, warps, shared
                                 memory, scratch sizes) and the cubin;
  tune/<key>.json                the autotuned configuration of a launch on one card.
Every file is written to a temporary name and renamed into place, so readers never see
half a file; a cubin whose sha256 does not match its metadata is ignored and rebuilt.

Interpreter or compiler is a per-process choice. `@triton.jit` reads `TRITON_INTERPRET`
(through `triton.knobs`) when it decorates a function, and Triton's own library
(tl.sum, tl.cdiv, ... are `@triton.jit` functions) is decorated when triton is first
imported: a process that imported triton without the variable cannot interpret kernels
that call tl.sum, and one that imported it with the variable cannot compile them. So
`TRITON_INTERPRET=1` must be in the environment before triton is first imported
(graphc imports triton only when it loads generated kernels); `process_mode()` reports
the mode and `load_module` refuses the other one with an error that says so.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import sys
import tempfile
import threading

_lock = threading.Lock()
_modules: dict = {}


def cache_dir() -> str:
    base = os.environ.get("GRAPHC_CACHE_DIR") or os.path.join(os.path.expanduser("~"),
                                                              ".cache", "graphc")
    return os.path.join(base, "triton")


def atomic_write(path: str, data: bytes):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def source_file(text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()
    path = os.path.join(cache_dir(), "src", digest + ".py")
    try:
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return path
    except OSError:
        pass
    atomic_write(path, text.encode())
    return path


def process_mode() -> str:
    """"interpret" or "compile": how this process's triton decorates @triton.jit."""
    try:
        import triton  # noqa: F401
    except ImportError as e:
        raise RuntimeError("graphc: the triton backend needs the `triton` package") from e
    import triton.language as tl
    from triton.runtime.interpreter import InterpretedFunction
    return "interpret" if isinstance(tl.standard.cdiv, InterpretedFunction) else "compile"


def load_module(text: str, interpret: bool):
    """The generated module `text`, loaded for the interpreter or for compilation."""
    key = (hashlib.sha256(text.encode()).hexdigest(), interpret)
    with _lock:
        mod = _modules.get(key)
        if mod is not None:
            return mod
        mode = process_mode()
        if mode != ("interpret" if interpret else "compile"):
            raise RuntimeError(
                "graphc: Triton is in " + mode + " mode in this process, but the kernels "
                "must be " + ("interpreted" if interpret else "compiled") + ": "
                "TRITON_INTERPRET=1 must be set (or unset) before triton is first imported, "
                "and a process can do only one of the two")
        path = source_file(text)
        name = f"graphc_triton_{key[0][:20]}_{mode}"
        spec = importlib.util.spec_from_file_location(name, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[name] = mod
        spec.loader.exec_module(mod)
        _modules[key] = mod
        return mod


# ----------------------------------------------------------------------------- compiling

COMPILE_OPTIONS = {
    # every op rounds as the reference does: no a*b+c contraction into one rounding
    "enable_fp_fusion": False,
    # libdevice must not flush subnormal results to zero (numpy and PyTorch keep them)
    "enable_reflect_ftz": False,
}


def compile_launch(module, launch, cfg, arch: int):
    """triton.compile of one launch for sm_<arch>: returns Triton's CompiledKernel."""
    import triton
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource
    fn = getattr(module, launch.name)
    sig = launch.signature()
    npointers = len(launch.buffers) + (1 if launch.status else 0)
    # the executor's buffers start at multiples of 64 bytes: tell Triton (vector loads)
    attrs = {(k,): [["tt.divisibility", 16]] for k in range(npointers)}
    src = ASTSource(fn=fn, signature=sig, constexprs=launch.constexpr_values(cfg), attrs=attrs)
    options = dict(COMPILE_OPTIONS, num_warps=cfg.num_warps, num_stages=cfg.num_stages)
    return triton.compile(src, target=GPUTarget("cuda", arch, 32), options=options)


def binary_key(launch, cfg, arch: int) -> str:
    import triton
    h = hashlib.sha256()
    for part in (triton.__version__, arch, launch.source, json.dumps(launch.signature()),
                 json.dumps(cfg.to_json()),
                 repr(launch.constexpr_values(cfg)), json.dumps(COMPILE_OPTIONS,
                                                                sort_keys=True),
                 _prelude_hash()):
        h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def _prelude_hash():
    from .mathlib import prelude
    return hashlib.sha256(prelude("device").encode()).hexdigest()


def load_binary(key: str):
    """(metadata dict, cubin bytes) from the disk cache, or None."""
    base = os.path.join(cache_dir(), "bin", key)
    try:
        with open(base + ".json", encoding="utf-8") as f:
            meta = json.load(f)
        with open(base + ".cubin", "rb") as f:
            cubin = f.read()
    except (OSError, ValueError):
        return None
    if hashlib.sha256(cubin).hexdigest() != meta.get("cubin_sha256"):
        return None
    return meta, cubin


def store_binary(key: str, meta: dict, cubin: bytes):
    base = os.path.join(cache_dir(), "bin", key)
    meta = dict(meta, cubin_sha256=hashlib.sha256(cubin).hexdigest())
    try:
        atomic_write(base + ".cubin", cubin)
        atomic_write(base + ".json", json.dumps(meta).encode())
    except OSError:
        pass   # an unwritable cache is skipped, never an error


def binary_for(module_text_device: str, launch, cfg, arch: int):
    """(metadata, cubin) for one launch and config: from disk, else compiled (and
    stored). Metadata: name, num_warps, shared, global/profile scratch size/align."""
    key = binary_key(launch, cfg, arch)
    got = load_binary(key)
    if got is not None:
        return got
    module = load_module(module_text_device, interpret=False)
    ck = compile_launch(module, launch, cfg, arch)
    md = ck.metadata
    meta = {"name": md.name, "num_warps": md.num_warps, "shared": md.shared,
            "global_scratch_size": md.global_scratch_size,
            "global_scratch_align": md.global_scratch_align,
            "profile_scratch_size": md.profile_scratch_size,
            "num_ctas": getattr(md, "num_ctas", 1)}
    cubin = ck.asm["cubin"]
    store_binary(key, meta, cubin)
    return meta, cubin


# ----------------------------------------------------------------------------- tuning

def tune_key(launch, device_name: str, arch: int, extra="") -> str:
    h = hashlib.sha256()
    for part in (launch.source, json.dumps(launch.signature()), device_name, arch,
                 _prelude_hash(), extra,
                 json.dumps([c.to_json() for c in launch.configs])):
        h.update(str(part).encode())
        h.update(b"\0")
    return h.hexdigest()


def load_tuned(key: str):
    try:
        with open(os.path.join(cache_dir(), "tune", key + ".json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def store_tuned(key: str, record: dict):
    try:
        atomic_write(os.path.join(cache_dir(), "tune", key + ".json"),
                     json.dumps(record).encode())
    except OSError:
        pass
