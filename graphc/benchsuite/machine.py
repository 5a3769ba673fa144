"""What the numbers were measured on: host, CPU, thread pools, BLAS kernels, settings.

Everything here is read-only: the bench reports OPENBLAS_* and THP settings, it never
changes OPENBLAS_* in its own process (alternatives run in subprocesses, altenv.py).
"""
from __future__ import annotations

import os
import platform
import re
import socket
import sys

SETTINGS_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
                 "OMP_NUM_THREADS", "MKL_NUM_THREADS", "THP_MEM_ALLOC_ENABLE",
                 "GRAPHC_BACKEND", "GRAPHC_CACHE_DIR")
OPENBLAS_KERNEL_VARS = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def cpu_model() -> str:
    text = _read("/proc/cpuinfo") or ""
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def blas_info() -> list[dict] | str:
    """threadpoolctl's view of the loaded BLAS/OpenMP libraries (library, version,
    internal architecture/kernel string, threads), or why it is unavailable."""
    try:
        import threadpoolctl
    except ImportError:
        return "threadpoolctl not installed (pip install graphc[bench]): BLAS kernel unknown"
    keep = ("user_api", "internal_api", "prefix", "version", "architecture",
            "threading_layer", "num_threads", "filepath")
    return [{k: d.get(k) for k in keep if k in d} for d in threadpoolctl.threadpool_info()]


def numpy_blas_summary(info) -> str:
    """numpy's own BLAS: other packages (scipy) may load another OpenBLAS copy, so the
    library inside numpy's package (numpy.libs/ or numpy/) is preferred."""
    if isinstance(info, str):
        return info
    blas = [d for d in info if d.get("user_api") == "blas"]
    mine = [d for d in blas if re.search(r"[/\\]numpy(\.libs)?[/\\]", d.get("filepath", ""))]
    for d in mine or blas:
        return (f"{d.get('internal_api')} {d.get('version')} kernel="
                f"{d.get('architecture')} threads={d.get('num_threads')}")
    return "no BLAS library visible to threadpoolctl"


def torch_blas_summary(torch) -> str:
    """torch links MKL statically, so threadpoolctl cannot see it; torch's build config
    and CPU capability name the library and the kernel family instead."""
    cfg = torch.__config__.show()
    found = re.search(r"BLAS_INFO=([\w-]+)", cfg)
    blas = found.group(1) if found else "?"
    mkl = re.search(r"Math Kernel Library Version ([\w.]+)", cfg)
    lib = f"MKL {mkl.group(1)}" if mkl else ("OpenBLAS" if "OpenBLAS" in cfg else None)
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except Exception:
        cap = "?"
    return (f"torch BLAS_INFO={blas} ({lib or 'library not named in build config'}), "
            f"kernels {cap}, threads={torch.get_num_threads()}")


def describe() -> dict:
    import numpy as np
    import graphc
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "logical_cpus": os.cpu_count(),
        "usable_cpus": affinity,
        "loadavg": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "transparent_hugepage": _read("/sys/kernel/mm/transparent_hugepage/enabled"),
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "graphc": graphc.__version__,
        "env": {k: os.environ.get(k) for k in SETTINGS_VARS},
        "blas": blas_info(),
    }
