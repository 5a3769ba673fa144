"""Compile time of the MLP training step, cold and from the disk cache.

Each measurement is a fresh Python process (compile_probe.py), so nothing compiled
earlier in the bench process can help it:
  cold:        GRAPHC_CACHE_DIR points at a new, empty directory;
  disk cache:  a second fresh process with the same directory, after a cold run.
The row's seconds are the probe's `overhead_s` (see compile_probe.py). Whether the
backend wrote anything into the cache directory is reported: a backend without a disk
cache makes both rows measure the same thing.
"""
from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile

from .base import Target, Workload


def child_env(**overrides) -> dict:
    """The current environment, plus graphc's package on PYTHONPATH, plus overrides."""
    import graphc
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(graphc.__file__)))
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    env.update(overrides)
    return env


def run_probe(backend: str, cache_dir: str, batch: int, replays: int, timeout_s: float,
              threads: int | None = None):
    env = child_env(GRAPHC_BACKEND=backend, GRAPHC_CACHE_DIR=cache_dir)
    proc = subprocess.run([sys.executable, "-m", "graphc.benchsuite.compile_probe",
                           str(batch), str(replays), str(threads or 0)], env=env,
                          capture_output=True,
                          text=True, timeout=timeout_s)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"compile probe exited {proc.returncode}: {tail[0]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _files_under(path):
    return sum(len(files) for _, _, files in os.walk(path))


class MLPCompile(Workload):
    name = "mlp_compile"
    special = True
    targets = (Target("< 1.5 s cold", "below", 1.5, row="cold"),
               Target("< 0.2 s from disk cache", "below", 0.2, row="disk cache"))

    def params(self, quick):
        return {"batch": 32 if quick else 128, "repeats": 1 if quick else 3,
                "replays": 2 if quick else 5}

    def describe(self, p):
        return (f"compile time of the MLP step (batch {p['batch']}), fresh subprocesses, "
                f"median of {p['repeats']}")

    def measure(self, backend: str, p: dict, timeout_s: float = 300.0,
                threads: int | None = None) -> dict:
        """Rows 'graphc[b] cold' and 'graphc[b] disk cache' plus notes."""
        cold, cached, notes = [], [], []
        for _ in range(p["repeats"]):
            cache_dir = tempfile.mkdtemp(prefix="graphc-bench-cache-")
            try:
                cold.append(run_probe(backend, cache_dir, p["batch"], p["replays"], timeout_s,
                                      threads))
                files = _files_under(cache_dir)
                cached.append(run_probe(backend, cache_dir, p["batch"], p["replays"],
                                        timeout_s, threads))
                cold[-1]["cache_files_written"] = files
            finally:
                shutil.rmtree(cache_dir, ignore_errors=True)
        if not any(c["cache_files_written"] for c in cold):
            notes.append(f"graphc[{backend}] wrote nothing to GRAPHC_CACHE_DIR: this backend "
                         f"has no disk cache, so the 'disk cache' row is another cold compile")
        rows = []
        for label, runs in (("cold", cold), ("disk cache", cached)):
            samples = [r["overhead_s"] for r in runs]
            mid = sorted(runs, key=lambda r: r["overhead_s"])[len(runs) // 2]
            detail = (f"eager call {mid['eager_call_s']:.3f} s + trace call "
                      f"{mid['trace_call_s']:.3f} s - 2 x replay {mid['replay_min_s']:.4f} s;"
                      f" backend compile {mid['backend_compile_s']:.3f} s in "
                      f"{mid['executables']} executables")
            rows.append({"contender": f"graphc[{backend}] {label}", "family": "graphc",
                         "kind": "graphc", "backend": backend, "process": "subprocess",
                         "setting": "GRAPHC_CACHE_DIR=" + ("new empty dir" if label == "cold"
                                                           else "dir from the cold run")
                         + "; " + detail,
                         "samples_s": samples, "median_s": statistics.median(samples),
                         "min_s": min(samples), "probes": runs})
        return {"rows": rows, "notes": notes}
