"""Running the suite: build every workload's contenders, time them, cross-check their
outputs, add the peers' other settings, compute graphc's ratios and the issue's targets.

The result is one JSON-serialisable dict (see report.py for its layout on screen):
  {"schema", "started", "finished", "options", "machine", "backends", "peers", "notes",
   "workloads": [{"name", "description", "params", "bytes_moved", "flops", "status",
                  "notes", "rows": [...], "ratios": {...}, "targets": [...]}]}
A row is one contender: its medians and all samples in seconds, achieved GB/s (bytes
moved / median), the setting it ran at, the process it ran in, and its output check.
Ratios are peer median / graphc median: above 1 means graphc is faster. A subprocess
row (a peer at its other setting) is divided by graphc's median from that same
subprocess. Each peer family is compared at its best measured setting, the one with the
lowest ratio to graphc, named in the ratio entry and the target line.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import numpy as np

from . import altenv, machine
from .peers import Peers, ThreadLimit, resolve_backends
from .timing import SETTLE_S, Contender, measure
from .workloads import all_workloads

SCHEMA = "graphc-bench/1"
ALL_PEERS = ("numpy", "torch", "torch.compile", "jax")
REFERENCE_ORDER = ("numpy", "torch eager", "jax.jit")


@dataclass
class Options:
    quick: bool = False
    only: list[str] = field(default_factory=list)
    backend: str = "auto"
    peers: set[str] | None = None        # None: every peer (quick: all but torch.compile)
    reps: int | None = None
    budget_s: float | None = None
    alt_settings: bool | None = None     # None: on in full mode, off in --quick
    torch_compile_timeout_s: float = 240.0
    threads: int | None = None           # None: every library's default thread count
    progress: bool = True

    def resolved(self):
        quick = self.quick
        peers = set(self.peers) if self.peers is not None else (
            set(ALL_PEERS) - {"torch.compile"} if quick else set(ALL_PEERS))
        alt = self.alt_settings if self.alt_settings is not None else not quick
        reps = {"min_reps": 3 if quick else 5, "max_reps": 5 if quick else 25,
                "budget_s": self.budget_s if self.budget_s is not None else
                (0.3 if quick else 12.0), "fixed_reps": self.reps, "threads": self.threads,
                # quick runs are smoke tests, not numbers: no pauses between contenders
                "settle_s": 0.0 if quick else SETTLE_S}
        return peers, alt, reps


def _say(opts, text):
    if opts.progress:
        print(f"[bench] {text}", file=sys.stderr, flush=True)


def copy_reference(nbytes: int) -> Contender:
    """np.copyto of nbytes/2 into a preallocated buffer: nbytes of traffic, the same as
    the workload's minimum (inputs read + outputs written)."""
    n = max(nbytes // 8, 1)
    src = np.ones(n, np.float32)
    dst = np.empty_like(src)
    return Contender("copy (bandwidth ref)", "copy", lambda: np.copyto(dst, src),
                     kind="reference", warmup=2,
                     setting=f"np.copyto of {format_bytes(4 * n)} into a preallocated buffer")


def format_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"


def build_contenders(workload, p, inputs, backends, peers: Peers):
    """Every contender of `workload` that can run, and notes for those that cannot."""
    import graphc as gc
    contenders, notes = [], []

    def add(label, make, adjust=None):
        try:
            made = make()
        except Exception as exc:   # a peer that cannot even be set up is a note
            notes.append(f"{label}: could not be set up: {type(exc).__name__}: {exc}")
            return
        if isinstance(made, str):
            notes.append(f"{label}: {made}")
            return
        for c in made if isinstance(made, list) else [made]:
            if adjust:
                adjust(c)
            contenders.append(c)

    for b in backends:
        add(f"graphc[{b}]", lambda b=b: workload.graphc(gc, inputs, b, p))
    def with_blas(summary):
        """For BLAS-bound workloads, name the library and kernel on the row itself."""
        def adjust(c):
            if workload.uses_blas:
                c.setting = "; ".join(s for s in (c.setting, summary()) if s)
        return adjust

    if "numpy" in peers.wanted:
        add("numpy", lambda: workload.numpy(inputs, p),
            with_blas(lambda: machine.numpy_blas_summary(machine.blas_info())))
    torch_setting = None
    if "torch" in peers.wanted:
        torch = peers.torch()
        if torch is not None:
            torch_setting = peers.torch_setting()

            def eager_setting(c):
                c.setting = "; ".join(s for s in (c.setting, torch_setting) if s)
                with_blas(lambda: machine.torch_blas_summary(torch))(c)
            add("torch eager", lambda: workload.torch(torch, inputs, p, False), eager_setting)
    if "torch.compile" in peers.wanted:
        torch = peers.torch_compile()
        if torch is not None:
            def compiled_setting(c):
                c.setting = "; ".join(s for s in (c.setting or "inductor, default mode",
                                                  peers.torch_setting()) if s)
                c.warmup_timeout_s = peers.torch_compile_timeout_s
            add("torch.compile", lambda: workload.torch(torch, inputs, p, True),
                compiled_setting)
    if "jax" in peers.wanted:
        jax = peers.jax()
        if jax is not None:
            add("jax.jit", lambda: workload.jax(jax, inputs, p))
    return contenders, notes


def measurement_row(m, nbytes: int, flops: int | None) -> dict:
    c = m.contender
    row = {"contender": c.name, "family": c.family, "kind": c.kind, "backend": c.backend,
           "setting": c.setting, "process": "main", "warmup_s": m.warmup_s}
    if m.error:
        row["error"] = m.error
        return row
    med = m.median
    row.update(median_s=med, min_s=m.minimum, reps=len(m.samples), samples_s=m.samples,
               gbps=nbytes / med / 1e9 if med > 0 else None)
    if flops and c.kind != "reference":
        row["gflops"] = flops / med / 1e9
    return row


def _check_outputs(ms, tolerance) -> None:
    """Compare each contender's first output with the reference implementation's."""
    by_family = {m.contender.family: m for m in ms
                 if m.error is None and m.first_output is not None}
    ref = next((by_family[f] for f in REFERENCE_ORDER if f in by_family), None)
    if ref is None:
        return
    rtol, atol = tolerance
    expected = np.asarray(ref.first_output, dtype=np.float64)
    for m in ms:
        if m.first_output is None or m.error:
            continue
        if m is ref:
            m.check = {"reference": "self"}
            continue
        got = np.asarray(m.first_output, dtype=np.float64)
        if got.shape != expected.shape:
            m.check = {"reference": ref.contender.name, "ok": False,
                       "problem": f"shape {got.shape} != {expected.shape}"}
            continue
        err = float(np.max(np.abs(got - expected))) if got.size else 0.0
        m.check = {"reference": ref.contender.name, "max_abs_err": err,
                   "ok": bool(np.allclose(got, expected, rtol=rtol, atol=atol))}


def _ok(row):
    return "error" not in row and row.get("median_s") is not None


def ratio_to_graphc(row, g) -> tuple[float, bool]:
    """(row's median / graphc row g's median, paired?). A subprocess row is divided by
    g's median from the same subprocess when it has one (see altenv.py)."""
    paired = row.get("paired_graphc", {}).get(g["contender"])
    if paired:
        return row["median_s"] / paired["median_s"], True
    return row["median_s"] / g["median_s"], False


def best_of(rows, families, g):
    """The row among `families` hardest for graphc row g (lowest ratio): each peer at
    its best setting. Returns (row, ratio, paired) or None."""
    cands = [(r, *ratio_to_graphc(r, g)) for r in rows if r["family"] in families and _ok(r)]
    return min(cands, key=lambda c: c[1]) if cands else None


def compute_ratios(rows) -> dict:
    """{graphc row: {family: {ratio, best, setting, paired}}}: each family at its best."""
    ratios = {}
    families = sorted({r["family"] for r in rows if r["kind"] != "graphc" and _ok(r)})
    for g in rows:
        if g["kind"] != "graphc" or not _ok(g):
            continue
        entry = {}
        for fam in families:
            best, ratio, paired = best_of(rows, (fam,), g)
            key = "copy bandwidth fraction" if fam == "copy" else fam
            entry[key] = {"ratio": ratio, "best": best["contender"],
                          "setting": best.get("setting", ""), "paired": paired}
        ratios[g["contender"]] = entry
    return ratios


def evaluate_targets(workload, rows) -> list[dict]:
    out = []
    graphc_rows = [r for r in rows if r["kind"] == "graphc"]
    for t in workload.targets:
        for g in graphc_rows:
            res = {"target": t.label, "graphc": g["contender"], "threshold": t.threshold}
            if t.kind == "below":
                if not g["contender"].endswith(" " + t.row):
                    continue
                if not _ok(g):
                    out.append({**res, "status": "N/A", "why": g.get("error", "no data")})
                    continue
                out.append({**res, "value": g["median_s"], "unit": "s",
                            "status": "PASS" if g["median_s"] < t.threshold else "MISS"})
                continue
            if not _ok(g):
                out.append({**res, "status": "N/A", "why": g.get("error", "no data")})
                continue
            fams = ("copy",) if t.kind == "bandwidth" else t.families
            found = best_of(rows, fams, g)
            if found is None:
                out.append({**res, "status": "N/A",
                            "why": f"{' / '.join(fams)} not measured in this run"})
                continue
            best, value, _paired = found
            out.append({**res, "value": value, "unit": "x", "versus": best["contender"],
                        "versus_setting": best.get("setting", ""),
                        "status": "PASS" if value >= t.threshold else "MISS"})
    return out


def run_workload(workload, opts: Options, backends, peers: Peers, peers_wanted, alt, reps):
    p = workload.params(opts.quick)
    rec = {"name": workload.name, "description": workload.describe(p), "params": p,
           "notes": [], "rows": [], "ratios": {}, "targets": []}
    why = workload.unavailable()
    if why:
        rec.update(status="skipped", notes=[f"skipped: {why}"])
        _say(opts, f"{workload.name}: skipped: {why}")
        return rec
    if workload.special:
        for b in backends:
            _say(opts, f"{workload.name}: compile probes for graphc[{b}]")
            try:
                got = workload.measure(b, p, threads=opts.threads)
            except Exception as exc:
                rec["notes"].append(f"graphc[{b}]: {type(exc).__name__}: {exc}")
                continue
            rec["rows"] += got["rows"]
            rec["notes"] += got["notes"]
        rec["status"] = "ok" if rec["rows"] else "failed"
        rec["targets"] = evaluate_targets(workload, rec["rows"])
        return rec

    nbytes, flops = workload.bytes_moved(p), workload.flops(p)
    rec.update(bytes_moved=nbytes, flops=flops)
    inputs = workload.inputs(p)
    contenders, notes = build_contenders(workload, p, inputs, backends, peers)
    rec["notes"] += notes
    contenders.append(copy_reference(nbytes))
    # pauses between contenders only where a threaded BLAS spins (timing.SETTLE_S); a
    # bandwidth-bound kernel's timings are steadier without them
    reps = {**reps, "settle_s": reps["settle_s"] if workload.blas_spins else 0.0}
    ms = measure(contenders, min_reps=reps["min_reps"], max_reps=reps["max_reps"],
                 budget_s=reps["budget_s"], fixed_reps=reps["fixed_reps"],
                 settle_s=reps["settle_s"],
                 progress=lambda s: _say(opts, f"{workload.name}: {s}"))
    _check_outputs(ms, workload.tolerance)
    for m in ms:
        row = measurement_row(m, nbytes, flops)
        if m.check is not None:
            row["check"] = m.check
            if not m.check.get("ok", True):
                rec["notes"].append(f"{m.contender.name}: output differs from "
                                    f"{m.check['reference']} "
                                    f"({m.check.get('max_abs_err', m.check.get('problem'))})")
        if m.error and m.contender.family == "torch.compile":
            peers.disable_torch_compile(f"failed in {workload.name}: {m.error}")
        rec["rows"].append(row)
    if alt:
        for a in altenv.alternative_settings(workload, peers_wanted):
            _say(opts, f"{workload.name}: {a['label']} ({a['setting']})")
            rec["rows"].append(altenv.run_alternative(workload, opts.quick, a, reps,
                                                      timeout_s=900, backends=backends))
    rec["ratios"] = compute_ratios(rec["rows"])
    rec["targets"] = evaluate_targets(workload, rec["rows"])
    rec["status"] = "ok" if any(r["kind"] == "graphc" and _ok(r) for r in rec["rows"]) \
        else "failed"
    return rec


def selected_workloads(only):
    workloads = all_workloads()
    if not only:
        return workloads, None
    names = {w.name for w in workloads}
    unknown = [n for n in only if n not in names]
    if unknown:
        return [], (f"unknown workload(s) {', '.join(unknown)}; choose from "
                    f"{', '.join(w.name for w in workloads)}")
    return [w for w in workloads if w.name in only], None


def run_suite(opts: Options) -> tuple[dict | None, str | None]:
    """(result, error). error is a usage problem (unknown workload or backend)."""
    workloads, err = selected_workloads(opts.only)
    if err:
        return None, err
    backends, backend_notes, err = resolve_backends(opts.backend)
    if err:
        return None, err
    peers_wanted, alt, reps = opts.resolved()
    peers = Peers(peers_wanted, opts.torch_compile_timeout_s, threads=opts.threads)
    started = time.time()
    result = {"schema": SCHEMA, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z",
                                                          time.localtime(started)),
              "options": {"quick": opts.quick, "only": opts.only, "backend": opts.backend,
                          "peers": sorted(peers_wanted), "alt_settings": alt,
                          **{k: v for k, v in reps.items()}},
              "machine": machine.describe(), "backends": {"run": backends,
                                                          "notes": backend_notes},
              "notes": [], "workloads": []}
    if opts.quick and opts.peers is None:
        peers.notes["torch.compile"] = ("skipped in --quick (its warm-up alone exceeds the "
                                        "quick budget); name it with --peers to include it")
    with ThreadLimit(opts.threads) as limit:
        if limit.note:
            result["notes"].append(limit.note)
        for w in workloads:
            _say(opts, f"{w.name}: start")
            t0 = time.perf_counter()
            rec = run_workload(w, opts, backends, peers, peers_wanted, alt, reps)
            rec["wall_s"] = time.perf_counter() - t0
            result["workloads"].append(rec)
        numpy_blas = machine.numpy_blas_summary(machine.blas_info())   # under the cap
    set_vars = [v for v in machine.OPENBLAS_KERNEL_VARS if v in os.environ]
    if any(w.uses_blas for w in workloads) and "numpy" in peers_wanted:
        result["notes"].append(
            f"numpy also timed without {'/'.join(set_vars)} (subprocess)" if set_vars and alt
            else f"{'/'.join(set_vars)} set; the run without it was not requested "
                 f"(--no-alt-settings)" if set_vars
            else "OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE are not set here: numpy (and graphc's "
                 "BLAS calls) use OpenBLAS's own kernel choice, so there is no 'without' run")
    torch = peers._torch
    result["peers"] = {"wanted": sorted(peers_wanted), "notes": dict(peers.notes),
                       "numpy_blas": numpy_blas,
                       "torch_blas": machine.torch_blas_summary(torch) if torch else None,
                       "blas_after_imports": machine.blas_info()}
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    result["wall_s"] = time.time() - started
    result["machine"]["loadavg_end"] = list(machine.os.getloadavg()) \
        if hasattr(machine.os, "getloadavg") else None
    return result, None
