"""Shared helpers for graphc's tests: PyTorch (CPU) is the oracle.

Stable names other test files may import (`from conftest import ...`):
  * `to_torch(t)` / `to_graphc(t)`   convert a tensor between the two frameworks;
  * `gc_dtype_name(torch_dtype)`     the graphc dtype name of a torch dtype;
  * `assert_close(actual, expected)` compare graphc results (tensors, scalars, nested
                                     tuples/lists) with torch's, dtypes and shapes included;
  * `run_both(fn, *inputs)`          call `fn(module, *tensors)` with graphc and with torch on
                                     the same numpy inputs, then `assert_close` the results;
  * `numerical_grad(f, arrays)`      central finite differences of a scalar function of
                                     float64 numpy arrays;
  * fixture `rng`                    a seeded numpy Generator;
  * fixture `private_cache`          (module scope) GRAPHC_CACHE_DIR pointed at a fresh
                                     directory for the module, restored after it: a
                                     module opts in with
                                     `pytestmark = pytest.mark.usefixtures("private_cache")`.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest
import torch

# Running `pytest` from a checkout without `pip install -e .` must still find graphc.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import graphc as gc  # noqa: E402

_TORCH_TO_GC = {
    torch.float32: "float32", torch.float64: "float64", torch.float16: "float16",
    torch.bfloat16: "bfloat16", torch.int32: "int32", torch.int64: "int64",
    torch.bool: "bool", torch.uint8: "uint8",
}
_GC_TO_TORCH = {v: k for k, v in _TORCH_TO_GC.items()}


def gc_dtype_name(torch_dtype) -> str:
    return _TORCH_TO_GC[torch_dtype]


def to_torch(t, requires_grad=False) -> torch.Tensor:
    """A torch copy of a graphc tensor (same values, same dtype)."""
    arr = np.array(t.detach().numpy(), copy=True)
    out = torch.from_numpy(arr).to(_GC_TO_TORCH[t.dtype.name])
    return out.requires_grad_(requires_grad)


def to_graphc(t: torch.Tensor, requires_grad=False):
    """A graphc copy of a torch tensor (same values, same dtype)."""
    name = _TORCH_TO_GC[t.dtype]
    arr = t.detach().to(torch.float32).numpy() if name == "bfloat16" else t.detach().numpy()
    return gc.tensor(arr.copy(), dtype=getattr(gc, name),
                     requires_grad=requires_grad)


_DEFAULT_TOL = {"float16": (1e-3, 1e-3), "bfloat16": (1e-2, 1e-2), "float32": (1e-5, 1e-5),
                "float64": (1e-10, 1e-10)}


def assert_close(actual, expected, atol=None, rtol=None, check_dtype=True, path="result"):
    """graphc `actual` against torch `expected`, recursively through tuples and lists."""
    if isinstance(expected, torch.Tensor):
        assert isinstance(actual, gc.Tensor), f"{path}: expected a tensor, got {actual!r}"
        assert tuple(actual.shape) == tuple(expected.shape), \
            f"{path}: shape {list(actual.shape)} != torch's {list(expected.shape)}"
        if check_dtype:
            assert actual.dtype.name == gc_dtype_name(expected.dtype), \
                f"{path}: dtype {actual.dtype.name} != torch's {expected.dtype}"
        want = expected.detach().to(torch.float64 if expected.is_floating_point()
                                    else expected.dtype).numpy()
        got = np.asarray(actual.detach().numpy())
        if expected.is_floating_point():
            a_def, r_def = _DEFAULT_TOL[gc_dtype_name(expected.dtype)]
            np.testing.assert_allclose(got.astype(np.float64), want,
                                       atol=a_def if atol is None else atol,
                                       rtol=r_def if rtol is None else rtol,
                                       equal_nan=True, err_msg=path)
        else:
            np.testing.assert_array_equal(got, want, err_msg=path)
    elif isinstance(expected, (tuple, list)):
        assert isinstance(actual, (tuple, list)) and len(actual) == len(expected), \
            f"{path}: expected a sequence of {len(expected)}, got {actual!r}"
        for k, (a, e) in enumerate(zip(actual, expected)):
            assert_close(a, e, atol, rtol, check_dtype, f"{path}[{k}]")
    elif isinstance(expected, float):
        assert actual == pytest.approx(expected, rel=rtol or 1e-6, abs=atol or 1e-6, nan_ok=True), \
            f"{path}: {actual!r} != {expected!r}"
    else:
        assert type(actual) is type(expected) and actual == expected, \
            f"{path}: {actual!r} != {expected!r}"


def _both(x):
    """An input for `run_both`: numpy arrays become one tensor per framework."""
    if isinstance(x, np.ndarray):
        return gc.tensor(x.copy()), torch.from_numpy(x.copy())
    return x, x


def run_both(fn, *inputs, atol=None, rtol=None, check_dtype=True):
    """`fn(module, *tensors)` on graphc and on torch with the same inputs; compare."""
    pairs = [_both(x) for x in inputs]
    expected = fn(torch, *[p[1] for p in pairs])
    actual = fn(gc, *[p[0] for p in pairs])
    assert_close(actual, expected, atol, rtol, check_dtype)
    return actual, expected


def tensor_graph(fn, arrays):
    """The graph `fn` builds on tensors of `arrays` (its results as outputs, every
    realized value an input) and the input values, for backend-against-interpreter
    tests."""
    from graphc.ir.graph import Graph
    ts = [gc.tensor(a) for a in arrays]
    outs = fn(*ts)
    outs = outs if isinstance(outs, (list, tuple)) else [outs]
    g, boundary = Graph.from_outputs([o._node for o in outs],
                                     boundary=lambda n: n.data is not None)
    return g, [n.data for n in boundary]


def numerical_grad(f, arrays, eps=1e-6):
    """d f / d array for each array, by central differences (float64 arrays, scalar f)."""
    grads = []
    for a in arrays:
        g = np.zeros_like(a)
        flat, gflat = a.reshape(-1), g.reshape(-1)
        for i in range(flat.size):
            orig = flat[i]
            flat[i] = orig + eps
            hi = f(*arrays)
            flat[i] = orig - eps
            lo = f(*arrays)
            flat[i] = orig
            gflat[i] = (hi - lo) / (2 * eps)
        grads.append(g)
    return grads


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory):
    old = os.environ.get("GRAPHC_CACHE_DIR")
    os.environ["GRAPHC_CACHE_DIR"] = str(tmp_path_factory.mktemp("graphc_cache"))
    yield
    if old is None:
        os.environ.pop("GRAPHC_CACHE_DIR", None)
    else:
        os.environ["GRAPHC_CACHE_DIR"] = old


def triton_interpreter():
    """(the triton backend, a device that runs its kernels in Triton's interpreter with
    torch CPU tensors as carriers), or skip: for modules that set TRITON_INTERPRET=1
    before triton is imported."""
    pytest.importorskip("triton", reason="triton is not installed")
    from graphc.backends.triton import loader
    if loader.process_mode() != "interpret":
        pytest.skip("triton was imported in compile mode before this module")
    from graphc.backends import triton as T
    from graphc.backends.triton.devices import InterpreterDevice

    def carrier(array, pointer_type):
        t = torch.from_numpy(array)
        return t.view(torch.bfloat16) if pointer_type == "*bf16" else t
    return T, InterpreterDevice(carrier)
