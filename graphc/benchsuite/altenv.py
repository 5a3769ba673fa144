"""Peers at their other setting, measured in a subprocess with a changed environment.

Two settings cannot be switched inside one process:
  * numpy without OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: OpenBLAS picks its kernel when
    it loads, and the bench must not change OPENBLAS_* in its own process;
  * PyTorch with the other THP_MEM_ALLOC_ENABLE value: read once by torch's allocator.
So the parent runs `python -m graphc.benchsuite.altenv SPEC_JSON` with the environment
changed, and this module times, round robin, the peer family at that setting together
with graphc's contenders (same inputs, same code as in the parent), and prints JSON.

Pairing: the peer's ratio to graphc at this setting is computed against graphc's
medians from the *same* subprocess (`paired_graphc`), so load that changes between the
main run and the subprocess does not bias it. Caveat for the OPENBLAS case: graphc's
own BLAS calls go through numpy's OpenBLAS, so in that subprocess graphc runs without
the variables too; the paired ratio compares both at the same kernel.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

from .machine import OPENBLAS_KERNEL_VARS
from .peers import THP_VAR


def alternative_settings(workload, peers_wanted: set[str]) -> list[dict]:
    """The subprocess runs worth doing for `workload` in this environment."""
    runs = []
    set_vars = [v for v in OPENBLAS_KERNEL_VARS if v in os.environ]
    if workload.uses_blas and "numpy" in peers_wanted and set_vars:
        removed = ", ".join(f"{v}={os.environ[v]}" for v in set_vars)
        runs.append({"family": "numpy", "unset": set_vars, "set": {},
                     "label": "numpy [no " + "/".join(set_vars) + "]",
                     "setting": f"subprocess without {removed}"})
    if "torch" in peers_wanted:
        if os.environ.get(THP_VAR) == "1":
            runs.append({"family": "torch eager", "unset": [THP_VAR], "set": {},
                         "label": "torch eager [THP off]",
                         "setting": f"subprocess, {THP_VAR} unset (torch default)"})
        else:
            runs.append({"family": "torch eager", "unset": [], "set": {THP_VAR: "1"},
                         "label": "torch eager [THP on]",
                         "setting": f"subprocess, {THP_VAR}=1"})
    return runs


def run_alternative(workload, quick: bool, alt: dict, reps: dict, timeout_s: float,
                    backends=()) -> dict:
    """Run one alternative setting, paired with graphc on `backends`; returns a result
    row (or one with an error)."""
    from .workloads.compile_time import child_env
    env = child_env(**alt["set"])
    for v in alt["unset"]:
        env.pop(v, None)
    spec = {"workload": workload.name, "quick": quick, "family": alt["family"],
            "backends": list(backends), **reps}
    row = {"contender": alt["label"], "family": alt["family"], "kind": "peer",
           "setting": alt["setting"], "process": "subprocess"}
    try:
        proc = subprocess.run([sys.executable, "-m", "graphc.benchsuite.altenv",
                               json.dumps(spec)], env=env, capture_output=True, text=True,
                              timeout=timeout_s)
    except subprocess.TimeoutExpired:
        row["error"] = f"subprocess exceeded {timeout_s:.0f} s"
        return row
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        row["error"] = f"subprocess exited {proc.returncode}: {tail[0]}"
        return row
    row.update(json.loads(proc.stdout.strip().splitlines()[-1]))
    return row


def main(argv) -> int:
    from . import suite
    from .machine import blas_info, numpy_blas_summary, torch_blas_summary
    from .peers import Peers, ThreadLimit
    from .timing import measure
    from .workloads import by_name
    spec = json.loads(argv[1])
    workload = by_name()[spec["workload"]]
    family = spec["family"]
    wanted = {"numpy"} if family == "numpy" else {"torch"}
    peers = Peers(wanted, torch_compile_timeout_s=0, choose_thp=False,
                  threads=spec.get("threads"))
    p = workload.params(spec["quick"])
    contenders, notes = suite.build_contenders(workload, p, workload.inputs(p),
                                               spec.get("backends", []), peers)
    peer = [c for c in contenders if c.family == family]
    if not peer:
        print(json.dumps({"error": "; ".join(notes) or f"no {family} contender"}))
        return 0
    graphc = [c for c in contenders if c.kind == "graphc"]
    with ThreadLimit(spec.get("threads")):
        ms = measure(peer + graphc, min_reps=spec["min_reps"], max_reps=spec["max_reps"],
                     budget_s=spec["budget_s"], fixed_reps=spec.get("fixed_reps"),
                     settle_s=spec.get("settle_s", 0.0))
    m = ms[0]
    out = suite.measurement_row(m, workload.bytes_moved(p), workload.flops(p))
    for key in ("contender", "family", "kind", "backend", "process"):
        out.pop(key, None)
    out["peer_setting"] = out.pop("setting")
    out["paired_graphc"] = {g.contender.name: {"median_s": g.median, "min_s": g.minimum,
                                               "reps": len(g.samples)}
                            for g in ms[1:] if g.error is None and g.samples}
    if family == "numpy":
        out["blas"] = numpy_blas_summary(blas_info())
    else:
        out["blas"] = torch_blas_summary(peers.torch())
    out["env"] = {k: os.environ.get(k) for k in (*OPENBLAS_KERNEL_VARS, THP_VAR)}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
