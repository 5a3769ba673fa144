"""What a launch is, for every cache, and how it is passed to the cubin (no GPU).

Regressions of the first run on an NVIDIA H200 (triton 3.6):
  * kernels whose text is equal but whose pointer types differ (`where` over float32 and
    over float64: loads and stores take the element type from the pointer) had one
    name, and the CUDA device's kernel cache and the cubin disk cache were keyed by the
    name and text: a float64/int64/uint8/bool graph ran the float32 cubin of the same
    text (wrong strides and element types, silently). The interpreter never showed it:
    it types loads by the arrays it is given.
  * `tl.dot` with a float64 accumulator failed to compile on triton 3.6, whose
    `out_dtype` defaults to float32 (3.9 defaults it to the accumulator's type).
And the launcher's parameter packing (one 8-byte value per pointer, then Triton's two
scratch pointers) is checked against the PTX parameter list of compiled kernels.
"""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")   # as test_triton_backend.py: before triton

import ast  # noqa: E402
import ctypes  # noqa: E402
import dataclasses  # noqa: E402
import inspect  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402

import pytest  # noqa: E402

from graphc.backends import triton as T  # noqa: E402
from graphc.backends.triton import checks, devices, loader  # noqa: E402
from graphc.backends.triton.mathlib import prelude  # noqa: E402
from graphc.ir import dtypes as dt  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
inp, op, graph = checks.inp, checks.op, checks.graph


def _where_launch(d):
    c, a, b = inp((8, 3), dt.bool_, "c"), inp((8, 3), d, "a"), inp((8, 3), d, "b")
    gen = T.plan(graph([op("where", c, a, b)], [c, a, b]))[2]
    (launch,) = gen.launches
    return gen, launch


def _body(launch):
    return launch.source.split("\n", 2)[2]     # the text after the `def` line


def test_equal_text_with_other_pointer_types_is_another_launch():
    (_, l32), (_, l64) = _where_launch(dt.float32), _where_launch(dt.float64)
    assert _body(l32) == _body(l64)            # the same text ...
    assert l32.signature() != l64.signature()  # ... for other element types
    assert l32.name != l64.name


def test_corpus_launch_names_determine_their_signatures():
    """Over every kernel of the op corpus (every dtype), one name is one signature."""
    seen = {}
    for case in checks.corpus():
        for launch in T.plan(case.graph)[2].launches:
            sig = launch.signature()
            first = seen.setdefault(launch.name, (case.name, sig))
            assert first[1] == sig, f"{launch.name}: {case.name} {sig} vs {first}"


class StubDriver:
    """Enough of graphc.cuda.driver.Driver for CudaDevice without a GPU: allocations
    are fake addresses, launches are recorded with the values their parameters hold."""

    def __init__(self):
        self.launched = []
        self.loaded = []
        self._next = 1 << 20

    def name(self):
        return "stub GPU"

    def capability(self):
        return 9, 0

    def mem_alloc(self, nbytes):
        p = self._next
        self._next += (nbytes + 255) // 256 * 256
        return p

    def mem_free(self, ptr):
        pass

    def load_function(self, cubin, name, shared):
        self.loaded.append((name, cubin))
        return object(), name

    def launch(self, fn, grid, threads, shared, params):
        self.launched.append((fn, [ctypes.c_uint64.from_address(p).value for p in params]))


def _fake_binary_for(compiled):
    def binary_for(text, launch, cfg, arch):
        compiled.append(launch.signature())
        meta = {"name": launch.name, "num_warps": 4, "shared": 0, "global_scratch_size": 0,
                "global_scratch_align": 1, "profile_scratch_size": 0}
        return meta, b"\x7fELF" + json.dumps(launch.signature()).encode()
    return binary_for


def test_cuda_device_prepares_a_kernel_per_signature(monkeypatch):
    compiled = []
    monkeypatch.setattr(devices, "binary_for", _fake_binary_for(compiled))
    dev = devices.CudaDevice(StubDriver())
    (g32, l32), (g64, l64) = _where_launch(dt.float32), _where_launch(dt.float64)
    cfg = l32.configs[0]
    k32, k64 = dev.prepare(g32, l32, cfg), dev.prepare(g64, l64, cfg)
    assert k32 is not k64 and compiled == [l32.signature(), l64.signature()]
    assert dev.prepare(g64, l64, cfg) is k64 and len(compiled) == 2   # cached
    # even a launch forged to share name and text gets its own kernel and cache keys
    forged = dataclasses.replace(l64, name=l32.name, source=l32.source)
    assert dev.prepare(g64, forged, cfg) is not k32 and len(compiled) == 3
    assert loader.binary_key(forged, cfg, 90) != loader.binary_key(l32, cfg, 90)
    assert loader.tune_key(forged, "card", 90) != loader.tune_key(l32, "card", 90)


def test_launch_packs_one_8_byte_value_per_pointer_then_scratch(monkeypatch):
    monkeypatch.setattr(devices, "binary_for", _fake_binary_for([]))
    drv = StubDriver()
    dev = devices.CudaDevice(drv)
    case = next(c for c in checks.corpus() if c.name == "scatter-rows-float64")
    gen = T.plan(case.graph)[2]
    status = [launch for launch in gen.launches if launch.status]
    assert status, "scatter_add checks its indices: a launch with a status word"
    for launch in gen.launches:
        k = dev.prepare(gen, launch, launch.configs[0])
        args = [0x1000 * (j + 1) for j in range(k.nparams)]
        assert k.nparams == len(launch.buffers) + launch.status
        dev.run(k, launch, launch.configs[0], args)
        assert drv.launched[-1] == (launch.name, args + [0, 0])


def _dot_calls(text):
    return [n for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Call)
            and isinstance(n.func, ast.Attribute) and n.func.attr == "dot"
            and isinstance(n.func.value, ast.Name) and n.func.value.id == "tl"]


@pytest.mark.parametrize("variant", ["device", "portable"])
def test_every_dot_names_its_accumulator_type(variant):
    """triton 3.6's tl.dot defaults out_dtype to float32 and then rejects a float64
    accumulator; only the prelude calls tl.dot, always with out_dtype given."""
    calls = _dot_calls(prelude(variant))
    assert calls
    for call in calls:
        assert any(kw.arg == "out_dtype" for kw in call.keywords), ast.unparse(call)
    case = next(c for c in checks.corpus() if c.name.startswith("matmul-float64"))
    gen = T.plan(case.graph)[2]
    for text in gen.functions.values():
        assert not _dot_calls(text) and "_gc_dot(" in text


PTX_SCRIPT = textwrap.dedent("""
    import ctypes, json, re
    from graphc.backends import triton as T
    from graphc.backends.triton import checks, devices, loader
    assert loader.process_mode() == "compile"
""") + textwrap.dedent(inspect.getsource(StubDriver)) + textwrap.dedent("""
    ptx = {}
    compile_launch = loader.compile_launch

    def keep_ptx(module, launch, cfg, arch):
        ck = compile_launch(module, launch, cfg, arch)
        ptx[launch.name] = ck.asm["ptx"]
        return ck
    loader.compile_launch = keep_ptx
    drv = StubDriver()
    dev = devices.CudaDevice(drv)
    names = ("where-bool", "where-float64", "scatter-rows-float64", "scatter-rows-uint8",
             "matmul-float64-2x5x7x3")
    out = []
    for case in checks.corpus():
        if case.name not in names:
            continue
        gen = T.plan(case.graph)[2]
        for launch in gen.launches:
            cfg = launch.configs[0]
            k = dev.prepare(gen, launch, cfg)
            args = [0x1000 * (j + 1) for j in range(k.nparams)]
            dev.run(k, launch, cfg, args)
            entry = re.search(r"\\.entry\\s+(\\w+)\\s*\\(([^)]*)\\)", ptx[launch.name])
            params = [p.split()[:2] for p in entry.group(2).split(",")]
            out.append({"case": case.name, "entry": entry.group(1), "ptx_params": params,
                        "packed": drv.launched[-1][1], "args": args,
                        "scratch": list(k.scratch)})
    print(json.dumps(out))
""")


def test_launcher_packing_matches_the_ptx_parameters(tmp_path):
    """Kernels compiled for sm_90 (a subprocess: Triton in compile mode) take exactly
    what CudaDevice.run packs: one .u64 per buffer (and the status word), then the
    global and profile scratch pointers (null when the kernel needs no scratch)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["GRAPHC_CACHE_DIR"] = str(tmp_path)
    r = subprocess.run([sys.executable, "-c", PTX_SCRIPT], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    launches = json.loads(r.stdout.strip().splitlines()[-1])
    assert {x["case"] for x in launches} == {"where-bool", "where-float64",
                                             "scatter-rows-float64", "scatter-rows-uint8",
                                             "matmul-float64-2x5x7x3"}
    for x in launches:
        assert x["ptx_params"] == [[".param", ".u64"]] * len(x["packed"]), x
        gsize, _, psize = x["scratch"]
        assert x["packed"][:-2] == x["args"], x
        assert (x["packed"][-2] != 0) == (gsize > 0) and (x["packed"][-1] != 0) == (psize > 0)


OTHER_TRITON = os.environ.get("GRAPHC_TEST_OTHER_TRITON")

OTHER_SCRIPT = textwrap.dedent("""
    import json, triton
    from graphc.backends import triton as T
    from graphc.backends.triton import checks, loader
    seen, failures = set(), []
    for case in checks.corpus():
        gen = T.plan(case.graph)[2]
        module = loader.load_module(gen.module_text("device"), interpret=False)
        for launch in gen.launches:
            if launch.name in seen:
                continue
            seen.add(launch.name)
            try:
                loader.compile_launch(module, launch, launch.configs[0], 90)
            except Exception as e:
                failures.append(f"{case.name} {launch.name}: {type(e).__name__}: {e}"[:800])
    print(json.dumps({"triton": triton.__version__, "compiled": len(seen) - len(failures),
                      "failures": failures}))
""")


@pytest.mark.skipif(not OTHER_TRITON, reason="GRAPHC_TEST_OTHER_TRITON (a directory holding "
                    "an unpacked triton wheel, e.g. the GPU machine's version) is not set")
def test_corpus_compiles_with_another_triton(tmp_path):
    """Every corpus kernel compiles for sm_90 with another Triton release (the GPU check
    machine had 3.6; this environment has 3.9). About a minute."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env.update(GRAPHC_CACHE_DIR=str(tmp_path), PYTHONPATH=os.pathsep.join(
        [OTHER_TRITON, ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else [])))
    r = subprocess.run([sys.executable, "-c", OTHER_SCRIPT], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout.strip().splitlines()[-1])
    from importlib.metadata import version
    assert report["triton"] != version("triton"), "GRAPHC_TEST_OTHER_TRITON was not used"
    assert not report["failures"] and report["compiled"] > 100, report
