"""Smoke tests of the benchmark suite (graphc/bench.py, graphc/benchsuite/).

Tiny sizes, few repetitions: these check the machinery (round-robin order, warm-up time
box, output cross-checks against numpy/PyTorch, best-setting ratios, targets, the JSON
layout, the subprocess paths), not graphc's speed.
"""
from __future__ import annotations

import json
import math
import time

import numpy as np
import pytest

import graphc as gc
from graphc import bench
from graphc.benchsuite import altenv, suite, timing
from graphc.benchsuite.peers import probe_backend
from graphc.benchsuite.workloads import base, by_name, nn_training, training
from graphc.benchsuite.workloads.compile_time import MLPCompile

try:
    import torch  # noqa: F401
    HAVE_TORCH = True
except ImportError:
    HAVE_TORCH = False


def _quick_args(tmp_path, only, peers):
    return ["--quick", "--only", only, "--backend", "interp", "--peers", peers, "--reps", "3",
            "--output", str(tmp_path / "result.json"), "--quiet"]


def test_quick_run_writes_table_and_json(tmp_path, capsys):
    peers = "numpy,torch" if HAVE_TORCH else "numpy"
    rc = bench.main(_quick_args(tmp_path, "elementwise_chain,mlp_step", peers))
    assert rc == 0
    printed = capsys.readouterr().out
    assert "== elementwise_chain" in printed and "== mlp_step" in printed
    assert f"results written to {tmp_path / 'result.json'}" in printed

    result = json.loads((tmp_path / "result.json").read_text())
    assert result["schema"] == suite.SCHEMA
    assert result["options"]["quick"] is True
    assert result["backends"]["run"] == ["interp"]
    for key in ("host", "cpu", "usable_cpus", "blas", "env"):
        assert key in result["machine"]
    assert [w["name"] for w in result["workloads"]] == ["elementwise_chain", "mlp_step"]

    expected_rows = {
        "elementwise_chain": {"graphc[interp]", "numpy", "copy (bandwidth ref)"},
        "mlp_step": {"graphc[interp] lazy", "graphc[interp] compile", "numpy",
                     "copy (bandwidth ref)"},
    }
    for w in result["workloads"]:
        assert w["status"] == "ok"
        rows = {r["contender"]: r for r in w["rows"]}
        want = expected_rows[w["name"]] | ({"torch eager"} if HAVE_TORCH else set())
        assert want <= set(rows), (w["name"], sorted(rows))
        for name in want:
            r = rows[name]
            assert "error" not in r, r
            assert r["reps"] == 3 and len(r["samples_s"]) == 3
            assert r["median_s"] == sorted(r["samples_s"])[1] > 0
            assert r["min_s"] == min(r["samples_s"])
            assert r["gbps"] == pytest.approx(w["bytes_moved"] / r["median_s"] / 1e9)
            assert r["process"] == "main"
        # graphc's and torch's first outputs were checked against numpy's and agreed
        for name in want - {"numpy", "copy (bandwidth ref)"}:
            assert rows[name]["check"]["reference"] == "numpy"
            assert rows[name]["check"]["ok"], rows[name]["check"]
        if HAVE_TORCH:
            assert "THP_MEM_ALLOC_ENABLE" in rows["torch eager"]["setting"]
        for g in (n for n in want if n.startswith("graphc")):
            ratios = w["ratios"][g]
            assert ratios["numpy"]["ratio"] == pytest.approx(
                rows["numpy"]["median_s"] / rows[g]["median_s"])
            assert "copy bandwidth fraction" in ratios
        for t in w["targets"]:
            assert t["status"] in ("PASS", "MISS", "N/A")
            if t["status"] != "N/A":
                assert (t["status"] == "PASS") == (t["value"] >= t["threshold"])
    elem, mlp = result["workloads"]
    assert len(elem["targets"]) == 3          # 3 goals x 1 graphc contender
    assert len(mlp["targets"]) == 4           # 2 goals x (lazy, compile)
    jax_targets = [t for t in mlp["targets"] if "jax" in t["target"]]
    assert all(t["status"] == "N/A" for t in jax_targets)   # jax is not run here


def test_usage_errors_return_2(tmp_path, capsys):
    assert bench.main(["--only", "no_such_workload", "--no-json", "--quiet"]) == 2
    assert "unknown workload" in capsys.readouterr().err
    assert bench.main(["--backend", "no_such_backend", "--no-json", "--quiet"]) == 2
    assert bench.main(["--peers", "numpy,tensorflow", "--no-json", "--quiet"]) == 2


def test_round_robin_rotates_and_warms_up_first():
    calls = []

    def contender(name, warmup):
        return timing.Contender(name, name, lambda: calls.append(name), warmup=warmup)
    ms = timing.measure([contender("a", 1), contender("b", 2), contender("c", 3)],
                        min_reps=1, max_reps=1, budget_s=0, fixed_reps=3)
    assert calls[:6] == ["a", "b", "b", "c", "c", "c"]          # warm-up, untimed
    # each timed call follows an untimed call of the same contender
    assert calls[6:] == [x for name in "abcbcacab" for x in (name, name)]
    assert [len(m.samples) for m in ms] == [3, 3, 3]


def test_each_turn_starts_with_a_pause_then_an_untimed_call(monkeypatch):
    """A threaded BLAS spins ~100 ms after a call: each contender's turn waits that out
    before its untimed call, and the pause is not part of the sample."""
    events = []
    monkeypatch.setattr(timing.time, "sleep", lambda s: events.append(("sleep", s)))
    a = timing.Contender("a", "a", lambda: events.append("a"), warmup=1)
    b = timing.Contender("b", "b", lambda: events.append("b"), warmup=1)
    ms = timing.measure([a, b], min_reps=1, max_reps=1, budget_s=0, fixed_reps=2,
                        settle_s=0.15)
    pause = ("sleep", 0.15)
    assert events == ["a", "b"] + [pause, "a", "a", pause, "b", "b",
                                   pause, "b", "b", pause, "a", "a"]
    assert all(s < 0.1 for m in ms for s in m.samples)


def test_failing_and_slow_contenders_are_dropped_with_a_reason():
    def broken():
        raise ValueError("no kernel for this")
    ok = timing.Contender("ok", "ok", lambda: 1)
    bad = timing.Contender("bad", "bad", broken)
    slow = timing.Contender("slow", "slow", lambda: time.sleep(5), warmup_timeout_s=0.2)
    t0 = time.perf_counter()
    m_ok, m_bad, m_slow = timing.measure([ok, bad, slow], min_reps=2, max_reps=2,
                                         budget_s=0, fixed_reps=2)
    assert time.perf_counter() - t0 < 3
    assert m_ok.error is None and len(m_ok.samples) == 2
    assert "ValueError" in m_bad.error and "no kernel for this" in m_bad.error
    assert "time box" in m_slow.error and not m_slow.samples


def test_ratios_and_targets_use_each_peer_at_its_best_setting():
    w = by_name()["softmax"]
    rows = [
        {"contender": "graphc[interp]", "family": "graphc", "kind": "graphc", "median_s": 2.0},
        {"contender": "graphc[llvm]", "family": "graphc", "kind": "graphc",
         "error": "failed"},
        {"contender": "torch eager", "family": "torch eager", "kind": "peer",
         "median_s": 4.0, "setting": "THP_MEM_ALLOC_ENABLE=unset"},
        {"contender": "torch eager [THP on]", "family": "torch eager", "kind": "peer",
         "median_s": 2.5, "setting": "THP_MEM_ALLOC_ENABLE=1"},
        {"contender": "copy (bandwidth ref)", "family": "copy", "kind": "reference",
         "median_s": 0.5},
    ]
    ratios = suite.compute_ratios(rows)
    assert set(ratios) == {"graphc[interp]"}
    assert ratios["graphc[interp]"]["torch eager"]["ratio"] == pytest.approx(1.25)
    assert ratios["graphc[interp]"]["torch eager"]["best"] == "torch eager [THP on]"
    assert ratios["graphc[interp]"]["copy bandwidth fraction"]["ratio"] == pytest.approx(0.25)
    targets = suite.evaluate_targets(w, rows)
    by_graphc = {t["graphc"]: t for t in targets}
    assert by_graphc["graphc[interp]"]["status"] == "MISS"     # 1.25x < 1.5x
    assert by_graphc["graphc[interp]"]["versus"] == "torch eager [THP on]"
    assert by_graphc["graphc[llvm]"]["status"] == "N/A"
    rows[3]["median_s"] = 3.2
    assert suite.evaluate_targets(w, rows)[0]["status"] == "PASS"   # 1.6x

    # A subprocess row is compared with graphc timed in the same subprocess: there the
    # machine was twice as slow for both, so its 4.4 s means 1.1x, not 2.2x.
    rows.append({"contender": "torch eager [sub]", "family": "torch eager", "kind": "peer",
                 "process": "subprocess", "median_s": 4.4, "setting": "subprocess",
                 "paired_graphc": {"graphc[interp]": {"median_s": 4.0}}})
    ratios = suite.compute_ratios(rows)["graphc[interp]"]["torch eager"]
    assert ratios["best"] == "torch eager [sub]" and ratios["paired"]
    assert ratios["ratio"] == pytest.approx(1.1)
    assert suite.evaluate_targets(w, rows)[0]["status"] == "MISS"


def _conv2d_from_tensor_ops(x, w, b, padding=1):
    """3x3 stride-1 convolution from graphc slicing and einsum: stands in for
    graphc.nn.functional.conv2d so the CNN workload's plumbing is tested on its own."""
    n, c, h, wd = x.shape
    zc = gc.zeros(n, c, h, padding)
    xp = gc.cat([zc, x, zc], dim=3)
    zr = gc.zeros(n, c, padding, wd + 2 * padding)
    xp = gc.cat([zr, xp, zr], dim=2)
    out = None
    for ky in range(3):
        for kx in range(3):
            term = gc.einsum("nchw,oc->nohw", xp[:, :, ky:ky + h, kx:kx + wd], w[:, :, ky, kx])
            out = term if out is None else out + term
    return out + b.reshape(1, -1, 1, 1)


def _max_pool2d_from_tensor_ops(x, k):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // k, k, w // k, k).amax(dim=(3, 5))


@pytest.mark.skipif(not HAVE_TORCH, reason="the CNN step's reference is PyTorch")
def test_cnn_step_agrees_with_torch(monkeypatch):
    monkeypatch.setattr(training, "graphc_conv_ops",
                        lambda: (_conv2d_from_tensor_ops, _max_pool2d_from_tensor_ops))
    opts = suite.Options(quick=True, backend="interp", peers={"torch"}, reps=2,
                         alt_settings=False, progress=False)
    peers_wanted, alt, reps = opts.resolved()
    rec = suite.run_workload(by_name()["cnn_step"], opts, ["interp"],
                             suite.Peers(peers_wanted, 0), peers_wanted, alt, reps)
    rows = {r["contender"]: r for r in rec["rows"]}
    for name in ("graphc[interp] lazy", "graphc[interp] compile"):
        assert "error" not in rows[name], rows[name]
        assert rows[name]["check"]["reference"] == "torch eager"
        assert rows[name]["check"]["ok"], rows[name]["check"]
    assert {t["status"] for t in rec["targets"]} <= {"PASS", "MISS"}


def test_cnn_step_is_skipped_with_a_note_without_conv(monkeypatch):
    monkeypatch.setattr(training, "graphc_conv_ops", lambda: "graphc.nn.functional has no conv2d")
    opts = suite.Options(quick=True, backend="interp", peers=set(), progress=False)
    rec = suite.run_workload(by_name()["cnn_step"], opts, ["interp"], suite.Peers(set(), 0),
                             set(), False, opts.resolved()[2])
    assert rec["status"] == "skipped" and "no conv2d" in rec["notes"][0]


def test_numpy_peer_in_a_subprocess():
    alt = {"family": "numpy", "unset": [], "set": {}, "label": "numpy [sub]",
           "setting": "subprocess, same environment"}
    reps = {"min_reps": 2, "max_reps": 2, "budget_s": 0, "fixed_reps": 2}
    row = altenv.run_alternative(by_name()["matmul_1024"], True, alt, reps, timeout_s=120,
                                 backends=["interp"])
    assert "error" not in row, row
    assert row["process"] == "subprocess" and row["family"] == "numpy"
    assert len(row["samples_s"]) == 2 and row["median_s"] > 0
    assert row["paired_graphc"]["graphc[interp]"]["reps"] == 2     # timed alongside
    assert "kernel=" in row["blas"] or "threadpoolctl" in row["blas"]


def test_compile_time_probes_cold_and_cached():
    w = MLPCompile()
    got = w.measure("interp", {"batch": 8, "repeats": 1, "replays": 1}, timeout_s=120)
    cold, cached = got["rows"]
    assert cold["contender"] == "graphc[interp] cold"
    assert cached["contender"] == "graphc[interp] disk cache"
    for r in (cold, cached):
        probe = r["probes"][0]
        assert probe["step_stats"] == {"traces": 1, "replays": 1, "eager_calls": 1}
        assert math.isfinite(probe["loss"]) and r["median_s"] >= 0
    assert "cache_files_written" in cold["probes"][0]


def test_graphc_contender_realizes_inside_the_timed_call():
    x = gc.from_numpy(np.arange(4, dtype=np.float32))
    c = base.graphc_contender(gc, "interp", "", lambda: x * 2)
    out = c.run()
    assert out._node.data is not None          # realized, not just recorded
    np.testing.assert_array_equal(c.output(out), [0, 2, 4, 6])


# -- nn/optim training steps (nn_training.py) ---------------------------------------------
NN_STEPS = ("nn_mlp_step", "nn_cnn_step", "lstm_step")


def _nn_contenders(workload, backend, peers=frozenset({"torch"})):
    p = workload.params(True)
    contenders, notes = suite.build_contenders(workload, p, workload.inputs(p), [backend],
                                               suite.Peers(set(peers), 0))
    return {c.name: c for c in contenders}, notes


@pytest.mark.skipif(not HAVE_TORCH, reason="the nn steps' reference is PyTorch's nn/optim")
def test_nn_steps_quick_agree_with_torch_nn_optim(tmp_path, capsys):
    """The quick nn/optim steps through the command: graphc.compile's losses over the
    warm-up (eager, trace, two replays) match PyTorch's nn + optim step for step."""
    rc = bench.main(_quick_args(tmp_path, ",".join(NN_STEPS), "torch"))
    assert rc == 0
    printed = capsys.readouterr().out
    result = json.loads((tmp_path / "result.json").read_text())
    assert [w["name"] for w in result["workloads"]] == list(NN_STEPS)
    expected_target = {"nn_mlp_step": (">= 1.3x torch eager", 1.3),
                       "nn_cnn_step": ("not slower than torch eager", 1.0),
                       "lstm_step": ("not slower than torch eager", 1.0)}
    for w in result["workloads"]:
        assert f"== {w['name']}" in printed
        assert w["status"] == "ok", w
        rows = {r["contender"]: r for r in w["rows"]}
        assert set(rows) == {"graphc[interp] compile", "torch eager", "copy (bandwidth ref)"}
        g = rows["graphc[interp] compile"]
        assert "error" not in g and g["reps"] == 3, g
        assert g["check"]["reference"] == "torch eager"
        assert g["check"]["ok"] and g["check"]["max_abs_err"] < 1e-4, g["check"]
        assert w["flops"] > 0 and w["bytes_moved"] > 0
        (target,) = w["targets"]
        label, threshold = expected_target[w["name"]]
        assert (target["target"], target["threshold"], target["versus"]) == \
            (label, threshold, "torch eager")
        assert target["value"] == pytest.approx(rows["torch eager"]["median_s"] / g["median_s"])
        assert target["status"] == ("PASS" if target["value"] >= threshold else "MISS")
        assert f"graphc[interp] compile: {label}:" in printed


@pytest.mark.skipif(not HAVE_TORCH, reason="the nn steps' reference is PyTorch's nn/optim")
def test_nn_step_checks_losses_of_the_whole_warm_up():
    """The cross-check sees the replays, not only the eager first step: a graphc step
    whose momentum differs agrees on the first two losses (momentum first acts in the
    traced step's update) and must still be reported as a mismatch."""
    w = nn_training.NNMLPStep()
    torch_eager, _ = _nn_contenders(w, "interp")
    w.optimizer_options = {"lr": 0.01, "momentum": 0.5}
    wrong, _ = _nn_contenders(w, "interp", peers=())
    ms = timing.measure([torch_eager["torch eager"], wrong["graphc[interp] compile"]],
                        min_reps=1, max_reps=1, budget_s=0, fixed_reps=1)
    suite._check_outputs(ms, w.tolerance)
    reference, got = (np.asarray(m.first_output) for m in ms)
    assert reference.shape == got.shape == (nn_training.CHECKED_STEPS,)
    assert np.all(np.diff(reference) < 0)            # it trains: every step's loss differs
    np.testing.assert_allclose(got[:2], reference[:2], rtol=1e-5)
    assert abs(got[3] - reference[3]) > 1e-4
    assert ms[1].check["reference"] == "torch eager" and not ms[1].check["ok"]


def test_nn_steps_start_from_the_same_state_dict():
    """Both frameworks load one set of seeded numpy arrays named by the state_dict, drawn
    from PyTorch's default init ranges; the same workload gives the same arrays."""
    w = nn_training.LSTMStep()
    p = w.params(True)
    first, again = w.inputs(p), w.inputs(p)
    assert set(first["state"]) == {"lstm.weight_ih_l0", "lstm.weight_hh_l0", "lstm.bias_ih_l0",
                                   "lstm.bias_hh_l0", "head.weight", "head.bias"}
    for key, value in first["state"].items():
        np.testing.assert_array_equal(value, again["state"][key])
        bound = 1 / math.sqrt(p["hidden"])       # LSTM and its head both have fan-in hidden
        assert value.dtype == np.float32 and np.abs(value).max() <= bound
    assert first["x"].shape == (p["batch"], p["seq"], nn_training.LSTM_INPUT)
    mlp = nn_training.NNMLPStep()
    shapes = mlp.state_shapes(mlp.params(True))
    assert shapes["0.weight"] == (512, 784) and nn_training.layer_fan_in("0.bias", shapes) == 784


def _llvm_available():
    return probe_backend("llvm")[0]


@pytest.mark.skipif(not HAVE_TORCH or not _llvm_available(),
                    reason="needs PyTorch and the LLVM backend")
@pytest.mark.parametrize("name", ["nn_mlp_step", "lstm_step", "nn_cnn_step"])
def test_nn_steps_quick_on_llvm_agree_with_torch(name):
    """The default backend: compiled replays on LLVM match PyTorch's nn/optim losses."""
    opts = suite.Options(quick=True, backend="llvm", peers={"torch"}, reps=2,
                         alt_settings=False, progress=False)
    peers_wanted, alt, reps = opts.resolved()
    rec = suite.run_workload(by_name()[name], opts, ["llvm"], suite.Peers(peers_wanted, 0),
                             peers_wanted, alt, reps)
    g = {r["contender"]: r for r in rec["rows"]}["graphc[llvm] compile"]
    assert "error" not in g, g
    assert g["check"]["reference"] == "torch eager" and g["check"]["ok"], g["check"]
    assert rec["targets"][0]["status"] in ("PASS", "MISS")
