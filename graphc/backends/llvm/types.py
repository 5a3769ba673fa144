"""LLVM types of graphc dtypes and small IR helpers shared by the code generators."""
from __future__ import annotations

from llvmlite import ir

from ...ir import dtypes as dt

PTR = ir.PointerType()
I1, I8, I32, I64 = ir.IntType(1), ir.IntType(8), ir.IntType(32), ir.IntType(64)
F16, F32, F64 = ir.HalfType(), ir.FloatType(), ir.DoubleType()
VOID = ir.VoidType()
KERNEL_TYPE = ir.FunctionType(VOID, [PTR, I64, I64, PTR])


def compute_type(d: dt.DType):
    """The type values of `d` are computed in (float16/bfloat16: float)."""
    return {"b8": I1, "u8": I8, "i32": I32, "i64": I64, "f16": F32, "bf16": F32,
            "f32": F32, "f64": F64}[d.short]


def storage_type(d: dt.DType):
    """The type of `d` in memory, as numpy stores it (bfloat16: float32)."""
    return {"b8": I8, "u8": I8, "i32": I32, "i64": I64, "f16": F16, "bf16": F32,
            "f32": F32, "f64": F64}[d.short]


def suffix(t):
    return {"float": "f32", "double": "f64", "half": "f16"}[str(t)]


def c64(v):
    return ir.Constant(I64, int(v))
