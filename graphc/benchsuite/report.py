"""The terminal table and the JSON file of a suite result (layout: suite.py)."""
from __future__ import annotations

import json
import os
import re
import time

from .suite import format_bytes, ratio_to_graphc


def fmt_seconds(s) -> str:
    if s is None:
        return "-"
    if s >= 1:
        return f"{s:.3f} s"
    if s >= 1e-3:
        return f"{s * 1e3:.2f} ms"
    return f"{s * 1e6:.1f} us"


def _fmt_ratio(x) -> str:
    return "-" if x is None else (f"{x:.2f}x" if x < 100 else f"{x:.0f}x")


def _table(header, rows) -> list[str]:
    widths = [max(len(str(r[k])) for r in [header] + rows) for k in range(len(header))]
    out = []
    for r in [header] + rows:
        cells = [str(c).rjust(w) if 0 < k < len(r) - 1 else str(c).ljust(w)
                 for k, (c, w) in enumerate(zip(r, widths))]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def _workload_lines(w) -> list[str]:
    lines = [f"== {w['name']}: {w['description']}"]
    if "bytes_moved" in w:
        lines[0] += f"; {format_bytes(w['bytes_moved'])} moved per call"
    if w["status"] == "skipped":
        return lines + [f"  {n}" for n in w["notes"]]
    # Ratio columns only where rows compete on the same work (not compile-time rows).
    graphc = [r for r in w["rows"] if r["kind"] == "graphc" and "median_s" in r
              and "bytes_moved" in w]
    flops = w.get("flops")
    header = ["contender", "median", "min", "reps", "GB/s"] + (["GFLOP/s"] if flops else []) + \
             [f"x vs {g['contender']}" for g in graphc] + ["setting"]
    body = []
    for r in w["rows"]:
        if "error" in r:
            body.append([r["contender"], "FAILED", "", "", ""] + [""] * (len(graphc) + bool(flops))
                        + [r["error"]])
            continue
        vs = [_fmt_ratio(ratio_to_graphc(r, g)[0]) if r["kind"] != "graphc" else ""
              for g in graphc]
        setting = r.get("setting", "")
        if r.get("process") == "subprocess":
            setting += f"; {r['blas']}" if "blas" in r else ""
            if r.get("paired_graphc"):
                setting += "; x vs graphc timed in the same subprocess"
        chk = r.get("check")
        if chk and not chk.get("ok", True):
            setting = f"OUTPUT MISMATCH vs {chk['reference']}; " + setting
        body.append([r["contender"], fmt_seconds(r["median_s"]), fmt_seconds(r.get("min_s")),
                     r.get("reps", len(r.get("samples_s", []))),
                     f"{r['gbps']:.1f}" if r.get("gbps") else "-"]
                    + ([f"{r['gflops']:.1f}" if r.get("gflops") else "-"] if flops else [])
                    + vs + [setting])
    lines += _table(header, body)
    if w["targets"]:
        lines.append("  targets:")
        for t in w["targets"]:
            if t["status"] == "N/A":
                lines.append(f"    {t['graphc']}: {t['target']}: N/A ({t['why']})")
                continue
            value = fmt_seconds(t["value"]) if t["unit"] == "s" else _fmt_ratio(t["value"])
            vs = f" (vs {t['versus']})" if "versus" in t else ""
            lines.append(f"    {t['graphc']}: {t['target']}: {value}{vs}  {t['status']}")
    for n in w["notes"]:
        lines.append(f"  note: {n}")
    return lines


def render(result) -> str:
    m = result["machine"]
    lines = [f"graphc bench ({'quick' if result['options']['quick'] else 'full'}) on "
             f"{m['host']}: {m['cpu']}, {m['usable_cpus']} usable CPUs, "
             f"load {' '.join(f'{x:.2f}' for x in m['loadavg'] or [])} at start",
             f"graphc backends: {', '.join(result['backends']['run'])}"]
    load = (m.get("loadavg") or [0])[0]
    if load > (m.get("usable_cpus") or 1):
        lines.append(f"WARNING: load average {load:.1f} exceeds the {m['usable_cpus']} usable "
                     f"CPUs: other jobs compete for the cores, so absolute times are inflated "
                     f"and noisy (round robin keeps the ratios comparable)")
    lines += [f"  {n}" for n in result["backends"]["notes"]]
    peers = result["peers"]
    lines.append(f"numpy BLAS: {peers['numpy_blas']}; environment at start: "
                 + ", ".join(f"{k}={'unset' if v is None else v}" for k, v in m["env"].items()
                             if k.startswith("OPENBLAS") or k.startswith("THP")))
    if peers.get("torch_blas"):
        lines.append(f"torch: {peers['torch_blas']}")
    for name, note in sorted(peers["notes"].items()):
        lines.append(f"{name}: {note}")
    threads = result["options"].get("threads")
    lines.append(f"threads: {'capped at ' + str(threads) if threads else 'each library default'}"
                 f" (--threads)")
    lines += [f"note: {n}" for n in result.get("notes", [])]
    lines.append("x = that row's median / graphc's median: above 1 means graphc is faster. "
                 "GB/s = (input + output bytes) / median.")
    for w in result["workloads"]:
        lines.append("")
        lines += _workload_lines(w)
    summary = [t["status"] for w in result["workloads"] for t in w["targets"]]
    lines.append("")
    lines.append("targets: " + ", ".join(f"{summary.count(s)} {s}"
                                         for s in ("PASS", "MISS", "N/A")))
    return "\n".join(lines)


def default_results_dir() -> str:
    """benchmarks/results of the checkout graphc was imported from, when there is one;
    else benchmarks/results under the current directory (graphc installed from a wheel)."""
    import graphc
    root = os.path.dirname(os.path.dirname(os.path.abspath(graphc.__file__)))
    if os.path.isdir(os.path.join(root, "benchmarks")):
        return os.path.join(root, "benchmarks", "results")
    return os.path.join(os.getcwd(), "benchmarks", "results")


def results_filename(result) -> str:
    host = re.sub(r"[^A-Za-z0-9._-]", "_", result["machine"]["host"]) or "host"
    stamp = time.strftime("%Y-%m-%d-%H%M%S")
    return f"{host}-{stamp}{'-quick' if result['options']['quick'] else ''}.json"


def write_json(result, path: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(result, f, indent=1, default=str)
        f.write("\n")
    os.replace(tmp, path)
    return path
