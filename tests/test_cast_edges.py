"""float -> integer / bool casts at the edges: NaN, +-inf, values just outside and far
outside each integer range, and in-range values that must truncate toward zero.

PyTorch 2.13's CPU results (x86; the same on its scalar and vectorised paths,
contiguous or strided) are the oracle, and the interpreter, the LLVM backend and the
Triton backend (under Triton's interpreter) must all give them:

  * int64: truncate; NaN, +-inf and |x| >= 2**63 give INT64_MIN;
  * int32: converts as int32, not through int64: |x| >= 2**31 gives INT32_MIN (3e9 is
    INT32_MIN, not the low half of 3000000000);
  * uint8: through int64, then the low byte (float64 -2**31-1 gives 255, 2**32+5 gives
    5; NaN and |x| >= 2**63 give INT64_MIN's low byte, 0);
  * bool: x != 0, so NaN is True.

Each case runs unfused (one cast) and fused into a chain ((x * 1).to(d) + 1), over a
few elements (scalar loop remainders) and over 1000+ (vectorised loops), contiguous and
through a transposed view, and as constants (which LLVM or the folder may fold).
"""
from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")   # before the first `import triton`

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from graphc.backends import interp  # noqa: E402
from graphc.backends import llvm as L  # noqa: E402
from graphc.ir import dtypes as dt  # noqa: E402
from graphc.testing import CAST_EDGES, graph, inp, op  # noqa: E402
from conftest import triton_interpreter  # noqa: E402

pytestmark = pytest.mark.usefixtures("private_cache")

EDGES = [float(v) for v in CAST_EDGES]

FLOATS = [dt.float64, dt.float32, dt.float16, dt.bfloat16]
TARGETS = [dt.int64, dt.int32, dt.uint8, dt.bool_]
TORCH = {"f64": torch.float64, "f32": torch.float32, "f16": torch.float16,
         "bf16": torch.bfloat16, "i64": torch.int64, "i32": torch.int32, "u8": torch.uint8,
         "b8": torch.bool}
PAIRS = [(s, d) for s in FLOATS for d in TARGETS]
ids = [f"{s.short}-{d.short}" for s, d in PAIRS]


def source(src, n):
    """EDGES rounded to `src` as PyTorch rounds them, tiled to n elements: (graphc's
    storage array, the torch tensor)."""
    reps = -(-n // len(EDGES))
    t = torch.tensor(EDGES * reps, dtype=torch.float64)[:n].to(TORCH[src.short])
    a = t.float().numpy() if src.short == "bf16" else t.numpy()
    return a, t


def splat(value, dtype, shape):
    one = op("reshape", op("const", value=value, dtype=dtype), shape=(1,) * len(shape))
    return op("expand", one, shape=tuple(shape))


def torch_chain(t, d):
    y = (t * 1).to(TORCH[d.short])
    return ~y if d.is_bool else y + 1


def chain(x, d):
    y = op("cast", op("mul", x, splat(1, x.type.dtype, x.type.shape)), dtype=d)
    if d.is_bool:
        return op("logical_not", y)
    return op("add", y, splat(1, d, y.type.shape))


def cases(src, d, n):
    """(graph, inputs, torch's outputs) for the plain cast, the fused chain, and both
    read through a transpose of a [2, n] input."""
    a, t = source(src, n)
    x = inp((n,), src)
    g = graph([op("cast", x, dtype=d), chain(x, d)], [x])
    want = [t.to(TORCH[d.short]).numpy(), torch_chain(t, d).numpy()]
    yield "contiguous", g, [a], want
    a2 = np.ascontiguousarray(np.stack([a, a[::-1]], 1))        # [n, 2]
    t2 = torch.from_numpy(a2) if src.short != "bf16" else \
        torch.from_numpy(a2).to(torch.bfloat16)
    x2 = inp((n, 2), src)
    xt = op("permute", x2, dims=(1, 0))                          # [2, n], strided reads
    g2 = graph([op("cast", xt, dtype=d), chain(xt, d)], [x2])
    want2 = [t2.t().to(TORCH[d.short]).numpy(), torch_chain(t2.t(), d).numpy()]
    yield "transposed", g2, [a2], want2


def check(got, want, what):
    assert len(got) == len(want)
    for k, (a, b) in enumerate(zip(got, want)):
        a = np.asarray(a)   # a Triton DeviceArray comes back to the host
        assert a.dtype == b.dtype, f"{what} output {k}: dtype {a.dtype} vs {b.dtype}"
        bad = np.nonzero(a.reshape(-1) != b.reshape(-1))[0]
        if bad.size:
            i = bad[0]
            x = EDGES[i % len(EDGES)]
            raise AssertionError(f"{what} output {k}: {bad.size} elements differ, first at "
                                 f"{i} (source value {x!r}): got {a.reshape(-1)[i]}, "
                                 f"torch {b.reshape(-1)[i]}")


@pytest.mark.parametrize("n", [1, 3, len(EDGES), 1000 + 7])
@pytest.mark.parametrize("src,d", PAIRS, ids=ids)
def test_interp_and_llvm_match_torch(src, d, n):
    for layout, g, inputs, want in cases(src, d, n):
        check(interp.compile(g)(inputs), want, f"interp {layout} n={n}")
        check(L.compile(g)(inputs), want, f"llvm {layout} n={n}")


def test_torch_scalar_and_vector_paths_agree():
    """The oracle itself: PyTorch's 1-element casts agree with its vectorised ones (if
    they ever differ, these tests follow the vectorised path; this says so first)."""
    for src, d in PAIRS:
        _, t = source(src, len(EDGES))
        vec = torch.cat([t] * 40).to(TORCH[d.short])[:len(EDGES)]
        one = torch.stack([t[i:i + 1].to(TORCH[d.short])[0] for i in range(len(EDGES))])
        assert torch.equal(vec, one), f"{src.short}->{d.short}"


@pytest.mark.parametrize("src,d", PAIRS, ids=ids)
def test_constant_operands(src, d):
    """Each edge value as a constant: LLVM may fold the conversion at compile time,
    where an out-of-range fptosi would be poison and fold to anything."""
    outs, want = [], []
    for v in EDGES:
        t = torch.tensor([v], dtype=torch.float64).to(TORCH[src.short])
        outs.append(op("cast", splat(float(t.double()[0]), src, (4,)), dtype=d))
        want.append(np.repeat(t.to(TORCH[d.short]).numpy(), 4))
    x = inp((1,), dt.float32)   # the graph needs an input
    g = graph(outs, [x])
    a = np.zeros(1, np.float32)
    check(interp.compile(g)([a]), want, "interp constants")
    check(L.compile(g)([a]), want, "llvm constants")


def test_large_cast_loop_vectorises():
    """The float32 -> int32 cast stays one masked vector conversion per 16 elements
    (AVX-512) or 8 (AVX2), not a scalar cvttss2si per element."""
    from graphc.backends.llvm import jit
    x = inp((1 << 20,), dt.float32)
    text = L.llvm_ir(graph([op("cast", x, dtype=dt.int32)], [x]))
    asm = jit.emit_assembly(jit.optimize(text))
    if jit.target_machine().triple.split("-")[0] not in ("x86_64", "amd64"):
        pytest.skip("checks x86 instructions")
    assert asm.count("vcvttps2dq") > asm.count("cvttss2si"), "the cast loop did not vectorise"


# ----------------------------------------------------------------------------- Triton

@pytest.mark.parametrize("src,d", PAIRS, ids=ids)
def test_triton_interpreter_matches_torch(src, d):
    T, device = triton_interpreter()
    for layout, g, inputs, want in cases(src, d, len(EDGES) + 3):
        check(T.compile(g, device=device)(inputs), want, f"triton {layout}")
