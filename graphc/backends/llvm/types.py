"""LLVM types of graphc dtypes and small IR helpers shared by the code generators."""
from __future__ import annotations

from contextlib import contextmanager

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


@contextmanager
def counted_loop(b, start, stop, step=None, name="i"):
    """for i in range(start, stop, step), i an i64 with a signed compare: yields i, and
    the builder continues after the loop."""
    fn = b.block.function
    pre = b.block
    head = fn.append_basic_block(f"{name}.head")
    body = fn.append_basic_block(f"{name}.body")
    done = fn.append_basic_block(f"{name}.done")
    b.branch(head)
    b.position_at_end(head)
    i = b.phi(I64, name=name)
    i.add_incoming(start, pre)
    b.cbranch(b.icmp_signed("<", i, stop), body, done)
    b.position_at_end(body)
    yield i
    i.add_incoming(b.add(i, step if step is not None else c64(1)), b.block)
    b.branch(head)
    b.position_at_end(done)
