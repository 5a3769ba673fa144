"""Element types of graphc values and PyTorch's type-promotion rules.

A `DType` is an interned record: compare with `is` or `==`. Each dtype has a short
name used by the IR text form (`f32`, `i64`, `b8`, ...) and a numpy storage dtype used
by the reference interpreter. bfloat16 has no numpy type: it is stored as float32
values rounded to bfloat16 precision after every op (which is also how PyTorch's CPU
kernels compute it: in float, rounded on store).
"""
from __future__ import annotations

import numpy as np


class DType:
    __slots__ = ("name", "short", "np", "is_floating", "is_signed", "itemsize", "rank")

    def __init__(self, name, short, np_dtype, is_floating, itemsize, rank, is_signed=True):
        self.name = name
        self.short = short
        self.np = np.dtype(np_dtype)
        self.is_floating = is_floating
        self.is_signed = is_signed
        self.itemsize = itemsize
        self.rank = rank  # order within a category, for promotion

    @property
    def is_bool(self):
        return self.short == "b8"

    @property
    def is_floating_point(self):
        """torch.dtype's name for is_floating."""
        return self.is_floating

    @property
    def is_complex(self):
        return False   # graphc has no complex dtypes

    @property
    def category(self):
        """0 bool, 1 integer, 2 floating: PyTorch promotes to the highest category."""
        return 2 if self.is_floating else (0 if self.is_bool else 1)

    def __repr__(self):
        return f"graphc.{self.name}"

    def __reduce__(self):
        return (from_name, (self.name,))


bool_ = DType("bool", "b8", np.bool_, False, 1, 0, is_signed=False)
uint8 = DType("uint8", "u8", np.uint8, False, 1, 1, is_signed=False)
int32 = DType("int32", "i32", np.int32, False, 4, 3)
int64 = DType("int64", "i64", np.int64, False, 8, 4)
float16 = DType("float16", "f16", np.float16, True, 2, 1)
bfloat16 = DType("bfloat16", "bf16", np.float32, True, 2, 2)
float32 = DType("float32", "f32", np.float32, True, 4, 3)
float64 = DType("float64", "f64", np.float64, True, 8, 4)

ALL = (bool_, uint8, int32, int64, float16, bfloat16, float32, float64)
_BY_SHORT = {d.short: d for d in ALL}
_BY_NAME = {d.name: d for d in ALL}
_BY_NAME.update({"half": float16, "float": float32, "double": float64, "long": int64,
                 "int": int32})
_BY_NP = {np.dtype(np.bool_): bool_, np.dtype(np.uint8): uint8, np.dtype(np.int32): int32,
          np.dtype(np.int64): int64, np.dtype(np.float16): float16,
          np.dtype(np.float32): float32, np.dtype(np.float64): float64}

DEFAULT_FLOAT = float32

# PyTorch's scalar-type names (torch.float32 is "Float"), which its error messages use
TORCH_NAMES = {"float32": "Float", "float64": "Double", "float16": "Half",
               "bfloat16": "BFloat16", "int32": "Int", "int64": "Long", "bool": "Bool",
               "uint8": "Byte"}
DEFAULT_INT = int64


def from_short(short: str) -> DType:
    try:
        return _BY_SHORT[short]
    except KeyError:
        raise ValueError(f"unknown dtype {short!r}; known: {', '.join(_BY_SHORT)}") from None


def from_name(name: str) -> DType:
    return _BY_NAME[name]


def from_numpy(np_dtype) -> DType:
    d = np.dtype(np_dtype)
    if d in _BY_NP:
        return _BY_NP[d]
    if d.kind in "iu":
        return int64
    if d.kind == "f":
        return float64
    raise TypeError(f"graphc has no dtype for numpy dtype {d}")


def to_dtype(obj) -> DType:
    """Accept a graphc dtype, a numpy dtype, a python type or a name."""
    if isinstance(obj, DType):
        return obj
    if obj is bool:
        return bool_
    if obj is int:
        return int64
    if obj is float:
        return float64   # PyTorch: dtype=float is torch.float64 (Python's float is double)
    if isinstance(obj, str):
        if obj in _BY_NAME:
            return _BY_NAME[obj]
        return from_short(obj)
    return from_numpy(obj)


def _higher(a: DType, b: DType) -> DType:
    if a.category != b.category:
        return a if a.category > b.category else b
    if a.is_floating and {a.short, b.short} == {"f16", "bf16"}:
        return float32  # PyTorch: half + bfloat16 -> float32
    return a if a.rank >= b.rank else b


def promote_types(a: DType, b: DType) -> DType:
    """torch.promote_types."""
    return _higher(a, b)


def result_type(tensor_dtypes, zero_dim_dtypes=(), scalars=()) -> DType:
    """PyTorch's three-tier promotion.

    Dimensioned tensors decide the type, unless a zero-dim tensor or a Python scalar is
    of a higher category (bool < int < float); then the lower tiers lift the category
    only as far as needed: a float scalar with int tensors gives the default float type,
    a zero-dim float64 tensor with float32 tensors stays float32.
    """
    result = None
    for d in tensor_dtypes:
        result = d if result is None else _higher(result, d)
    zd = None
    for d in zero_dim_dtypes:
        zd = d if zd is None else _higher(zd, d)
    if zd is not None:
        if result is None:
            result = zd
        elif zd.category > result.category:
            result = zd
    sc = None
    for s in scalars:
        d = bool_ if isinstance(s, (bool, np.bool_)) else (
            int64 if isinstance(s, (int, np.integer)) else DEFAULT_FLOAT)
        sc = d if sc is None else _higher(sc, d)
    if sc is not None:
        if result is None:
            result = sc
        elif sc.category > result.category:
            result = DEFAULT_FLOAT if sc.category == 2 else int64
    return result if result is not None else DEFAULT_FLOAT
