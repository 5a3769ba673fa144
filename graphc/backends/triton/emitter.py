"""Value and index emission for the Triton code generator (codegen.py).

`Function` collects the lines of one generated `@triton.jit` function and its pointer
parameters; `Scope` emits kernel IR values and index expressions into it as flat SSA
statements (`t12 = ...`), memoized per region (a loop body, a tile), with the ops'
reference semantics (see codegen.py's docstring): compute types, float16/bfloat16
rounding after every op, casts, integer division, NaN rules, random numbers.

Every emitted name records the tile *axes* it varies along (the axes of the Vars bound
in `Scope.env`); a load or store is masked by the AND of its axes' masks, so values that
vary along fewer axes than the tile are loaded with a matching mask and broadcast.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import kernel_ir as K
from ...ir import dtypes as dt
from ...ir.ops import check_code

COMPUTE = {"b8": "tl.int1", "u8": "tl.uint8", "i32": "tl.int32", "i64": "tl.int64",
           "f16": "tl.float32", "bf16": "tl.float32", "f32": "tl.float32", "f64": "tl.float64"}
STORAGE = {"b8": "tl.int1", "u8": "tl.uint8", "i32": "tl.int32", "i64": "tl.int64",
           "f16": "tl.float16", "bf16": "tl.bfloat16", "f32": "tl.float32",
           "f64": "tl.float64"}
POINTER = {"b8": "*i1", "u8": "*u8", "i32": "*i32", "i64": "*i64", "f16": "*fp16",
           "bf16": "*bf16", "f32": "*fp32", "f64": "*fp64"}
STORAGE_BYTES = {"b8": 1, "u8": 1, "i32": 4, "i64": 8, "f16": 2, "bf16": 2, "f32": 4,
                 "f64": 8}
INT32_LIMIT = (1 << 31) - 1
ATOMIC_DTYPES = ("i32", "i64", "f16", "bf16", "f32", "f64")


# unary float ops lowered to the prelude helper `_gc_<name>` (mathlib.py: libdevice on a
# GPU, float64 compositions of core triton.language in the interpreter)
MATH_UNARY = ("tan", "asin", "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
              "log2", "log10", "exp2")


class TritonUnsupported(NotImplementedError):
    pass



# ----------------------------------------------------------------------------- helpers

def compute_type(d):
    return COMPUTE[d.short]


def float_literal(x: float) -> str | None:
    if math.isnan(x):
        return "_GC_NAN"
    if math.isinf(x):
        return "_GC_INF" if x > 0 else "_GC_NINF"
    return repr(float(x))


def int_literal(v: int) -> str:
    """A Python literal for v that Triton reads as a (signed) 64-bit-safe constant."""
    if v == -(1 << 63):
        return "_GC_I64_MIN"
    if v == (1 << 63) - 1:
        return "_GC_I64_MAX"
    return str(int(v))


def literal(v) -> str:
    return float_literal(v) if isinstance(v, float) else int_literal(v)


def _round_bf16(x: float) -> float:
    from ..interp import round_to_bfloat16
    return float(round_to_bfloat16(np.array([x], np.float32))[0])


def const_value(value, d):
    """The value a `const` of dtype d holds, as the reference stores it."""
    if d.is_bool:
        return bool(value)
    if d.is_floating:
        x = float(np.array(value, dtype=d.np if d.short != "bf16" else np.float32))
        return _round_bf16(x) if d.short == "bf16" else x
    return int(np.array(value).astype(d.np))


def lin_magnitude(x: K.Lin) -> int:
    """An upper bound of |partial sums| while evaluating x (for the int32 decision)."""
    total = abs(x.const)
    for a, c in x.terms:
        lo, hi = K.atom_bounds(a)
        total += abs(c) * max(abs(lo), abs(hi))
        if isinstance(a, (K.FloorDiv, K.Mod, K.Clamp)):
            total = max(total, lin_magnitude(a.x))
    return total


def value_lins(v):
    """Every Lin index expression inside a value tree."""
    for x in K.walk_values(v):
        if isinstance(x, K.Load):
            yield K.linearize(x.index, x.buffer.shape)
            yield from x.index
        elif isinstance(x, (K.IndexValue, K.InRange)):
            yield x.index
        elif isinstance(x, K.RandValue):
            yield x.flat
        elif isinstance(x, K.CheckIndex):
            yield x.index


def vars_of_lin(x: K.Lin, out: set):
    for a in x.atoms():
        if isinstance(a, K.Var):
            out.add(a)
        elif isinstance(a, K.ValueIndex):
            vars_of_value(a.value, out)


def vars_of_value(v, out: set):
    for x in K.walk_values(v):
        if isinstance(x, K.Load):
            for i in x.index:
                vars_of_lin(i, out)
        elif isinstance(x, (K.IndexValue, K.InRange)):
            vars_of_lin(x.index, out)
        elif isinstance(x, K.RandValue):
            vars_of_lin(x.flat, out)
        elif isinstance(x, FlatLoad):
            vars_of_lin(x.flat, out)
        elif isinstance(x, K.CheckIndex):
            vars_of_lin(x.index, out)
    return out


@dataclass(frozen=True)
class FlatLoad:
    """A load at a flat element offset (GEMM operands given as strided views)."""
    buffer: K.Buffer
    flat: K.Lin

    @property
    def dtype(self):
        return self.buffer.dtype


# ----------------------------------------------------------------------------- emitter

class Function:
    """Lines of one generated function, its pointer parameters and temporaries."""

    def __init__(self, index_type: str):
        self.lines = []
        self.depth = 1
        self.count = 0
        self.params: dict = {}          # Buffer -> parameter name, in order of first use
        self.status = False
        self.idx = index_type           # "tl.int32" or "tl.int64"

    def line(self, text):
        self.lines.append("    " * self.depth + text)

    def fresh(self, prefix="t"):
        self.count += 1
        return f"{prefix}{self.count}"

    def ptr(self, buf) -> str:
        if buf not in self.params:
            self.params[buf] = f"p{len(self.params)}"
        return self.params[buf]


class Scope:
    """Value and index emission in one region of a function (a loop body, a tile).

    `env` binds each index Var to (expression, axis) where axis names the tile axis the
    variable varies along (None: a scalar). Every emitted name records its axes; the
    mask of a load or store is the AND of the masks of its axes, so a value that varies
    along fewer axes is loaded with a matching (smaller) mask and broadcasts later."""

    def __init__(self, fn: Function, parent=None):
        self.fn = fn
        self.parent = parent
        self.env = dict(parent.env) if parent else {}
        self.axis_mask = dict(parent.axis_mask) if parent else {}   # axis -> mask name
        self.axis_zero = dict(parent.axis_zero) if parent else {}   # axis -> zeros name
        self.accs = dict(parent.accs) if parent else {}             # AccRef name -> name
        self.memo = {}
        self.axes = {}                                              # name -> frozenset

    # -------------------------------------------------------------- bookkeeping
    def lookup(self, key):
        s = self
        while s is not None:
            if key in s.memo:
                return s.memo[key]
            s = s.parent
        return None

    def axes_of(self, name) -> frozenset:
        s = self
        while s is not None:
            if name in s.axes:
                return s.axes[name]
            s = s.parent
        return frozenset()

    def emit(self, expr, axes, prefix="t", key=None):
        name = self.fn.fresh(prefix)
        self.fn.line(f"{name} = {expr}")
        self.axes[name] = frozenset(axes)
        if key is not None:
            self.memo[key] = name
        return name

    def bind(self, var, expr, axis):
        self.env[var] = expr
        if axis is not None:
            self.axes[expr] = frozenset((axis,))

    def union(self, *names):
        out = frozenset()
        for n in names:
            out |= self.axes_of(n)
        return out

    def mask_for(self, axes) -> str | None:
        axes = sorted(axes)
        if not axes:
            return None
        if len(axes) == 1:
            return self.axis_mask.get(axes[0])
        key = ("mask",) + tuple(axes)
        got = self.lookup(key)
        if got:
            return got
        parts = [self.axis_mask[a] for a in axes if self.axis_mask.get(a)]
        if not parts:
            return None
        return self.emit(" & ".join(parts), axes, "m", key)

    def zero_for(self, axes) -> str | None:
        parts = [self.axis_zero[a] for a in sorted(axes) if a in self.axis_zero]
        if not parts:
            return None
        key = ("zero",) + tuple(sorted(axes))
        got = self.lookup(key)
        if got:
            return got
        return parts[0] if len(parts) == 1 else self.emit(" + ".join(parts), axes, "z", key)

    # -------------------------------------------------------------- constants
    def const(self, value, d) -> str:
        key = ("const", d.short, repr(value))
        got = self.lookup(key)
        if got:
            return got
        v = const_value(value, d)
        if d.is_bool:
            text = f"tl.full([], {int(v)}, tl.int1)"
        elif d.is_floating:
            text = f"tl.full([], {float_literal(v)}, {compute_type(d)})"
        else:
            text = f"tl.full([], {int_literal(v)}, {compute_type(d)})"
        return self.emit(text, (), "c", key)

    # -------------------------------------------------------------- indices
    def index(self, x: K.Lin) -> str:
        if x.is_const:
            return str(x.const)
        key = ("lin", x)
        got = self.lookup(key)
        if got:
            return got
        parts, axes = [], frozenset()
        for atom, c in x.terms:
            a = self.atom(atom)
            axes |= self.axes_of(a)
            parts.append(a if c == 1 else f"{a} * {c}")
        expr = " + ".join(parts) + (f" + {x.const}" if x.const else "")
        if len(x.terms) == 1 and x.terms[0][1] == 1 and not x.const:
            return parts[0]
        return self.emit(expr, axes, "i", key)

    def atom(self, a) -> str:
        if isinstance(a, K.Var):
            if a not in self.env:
                raise AssertionError(f"triton codegen: index variable {a} is not bound")
            return self.env[a]
        key = ("atom", a)
        got = self.lookup(key)
        if got:
            return got
        if isinstance(a, (K.FloorDiv, K.Mod)):
            x = self.index(a.x)
            lo, _ = a.x.bounds()
            if lo >= 0:
                expr = f"{x} // {a.c}" if isinstance(a, K.FloorDiv) else f"{x} % {a.c}"
            else:
                fn = "_gc_index_floordiv" if isinstance(a, K.FloorDiv) else "_gc_index_mod"
                expr = f"{fn}({x}, {a.c})"
            return self.emit(expr, self.axes_of(x), "i", key)
        if isinstance(a, K.Clamp):
            x = self.index(a.x)
            return self.emit(f"tl.minimum(tl.maximum({x}, {a.lo}), {a.hi})", self.axes_of(x),
                             "i", key)
        if isinstance(a, K.ValueIndex):
            return self.value_index(a, key)
        raise TypeError(a)

    def value_index(self, a: K.ValueIndex, key) -> str:
        v = self.value(a.value)
        axes = self.axes_of(v)
        vi = self.emit(f"{v}.to(tl.int64)", axes, "i")
        bad = self.emit(f"({vi} < {-a.size}) | ({vi} >= {a.size})", axes, "b")
        self.flag_error(bad, axes, K.STATUS_INDEX_OUT_OF_RANGE)
        w = self.emit(f"tl.where({vi} < 0, {vi} + {a.size}, {vi})", axes, "i")
        return self.emit(f"tl.minimum(tl.maximum({w}, 0), {max(a.size - 1, 0)})"
                         f".to({self.fn.idx})", axes, "i", key)

    def flag_error(self, bad: str, axes, code: int):
        """Store status `code` (an index out of range, a failed check) where the bool
        `bad` is set, in the lanes this program owns."""
        self.fn.status = True
        mask = self.mask_for(axes)
        zero = self.zero_for(axes)
        cond = f"{bad} & {mask}" if mask else bad
        target = f"status + {zero}" if zero else "status"
        self.fn.line(f"tl.store({target}, {code}, mask={cond})")

    # -------------------------------------------------------------- values
    def value(self, v) -> str:
        got = self.lookup(v)
        if got:
            return got
        name = self._value(v)
        self.memo[v] = name
        return name

    def load(self, buf, flat: K.Lin, raw=False) -> str:
        """Load buf at flat index; in the compute type unless `raw` (storage type)."""
        off = self.index(flat)
        axes = self.axes_of(off)
        p = self.fn.ptr(buf)
        mask = self.mask_for(axes)
        if mask:
            x = self.emit(f"tl.load({p} + {off}, mask={mask}, other=0)", axes, "x")
        else:
            x = self.emit(f"tl.load({p} + {off})", axes, "x")
        if not raw and buf.dtype.short in ("f16", "bf16"):
            x = self.emit(f"{x}.to(tl.float32)", axes, "x")
        return x

    def _value(self, v) -> str:
        if isinstance(v, K.Load):
            return self.load(v.buffer, K.linearize(v.index, v.buffer.shape))
        if isinstance(v, FlatLoad):
            return self.load(v.buffer, v.flat)
        if isinstance(v, K.Const):
            return self.const(v.value, v.dtype)
        if isinstance(v, K.IndexValue):
            i = self.index(v.index)
            if i.lstrip("-").isdigit():
                return self.const(int(i), dt.int64) if v.dtype is dt.int64 else \
                    self.convert(self.const(int(i), dt.int64), dt.int64, v.dtype)
            i64 = self.emit(f"{i}.to(tl.int64)", self.axes_of(i))
            return self.convert(i64, dt.int64, v.dtype)
        if isinstance(v, K.InRange):
            i = self.index(v.index)
            axes = self.axes_of(i)
            cond = f"({i} >= {v.lo}) & ({i} < {v.hi})"
            if v.step > 1:
                cond += f" & (({i} - {v.lo}) % {v.step} == 0)"
            return self.emit(cond, axes)
        if isinstance(v, K.AccRef):
            return self.accs[v.name]
        if isinstance(v, K.CheckIndex):
            self.index(v.index)      # for its range check (status word) only
            return self.value(v.value)
        if isinstance(v, K.RandValue):
            return self.rand(v)
        if isinstance(v, K.Compute):
            args = [self.value(a) for a in v.args]
            return self.compute(v, args)
        raise TypeError(f"triton codegen: unknown value {v!r}")

    # -------------------------------------------------------------- conversions
    def round(self, x, d) -> str:
        if d.short == "f16":
            return self.emit(f"{x}.to(tl.float16).to(tl.float32)", self.axes_of(x))
        if d.short == "bf16":
            return self.emit(f"_gc_round_bf16({x})", self.axes_of(x))
        return x

    def _float_floor_divmod(self, op, x, y, d, e) -> str:
        """PyTorch's float floor division and remainder, the steps of ops.py's
        _float_floor_divmod: from fmod (libdevice.fmod), intermediates rounded where
        the reference rounds them (float16)."""
        r = lambda s: self.round_numpy(e(s), d)   # noqa: E731
        mod = e(f"_gc_fmod({x}, {y})")   # exact (NVPTX may lower float % inexactly)
        adjust = e(f"({mod} != 0) & (({y} < 0) != ({mod} < 0))")
        if op == "mod":
            return e(f"tl.where({adjust}, {r(f'{mod} + {y}')}, {mod})")
        div = r(f"_gc_div({r(f'{x} - {mod}')}, {y})")
        div = e(f"tl.where({adjust}, {r(f'{div} - 1')}, {div})")
        whole = e(f"tl.floor({div})")
        whole = e(f"tl.where({r(f'{div} - {whole}')} > 0.5, {r(f'{whole} + 1')}, {whole})")
        ratio = r(f"_gc_div({x}, {y})")
        zero = e(f"{ratio} * 0.0")   # copysign(0, ratio): ratio is finite where it is used
        q = e(f"tl.where({div} != 0, {whole}, {zero})")
        return e(f"tl.where({y} == 0, {ratio}, {q})")

    def round_numpy(self, x, d) -> str:
        """Rounding of an intermediate the reference rounds: numpy computes float16 ops
        in float16, but bfloat16 (stored as float32) only rounds the op's result."""
        return self.round(x, d) if d.short == "f16" else x

    def convert(self, x, src, dst) -> str:
        """The cast semantics of graphc/ir/ops.py: float->int truncates (NaN and out of
        range give the converting type's minimum, as the LLVM backend), x->bool is x != 0,
        float16 from wider types rounds once, bfloat16 via float32 as numpy does."""
        if src is dst:
            return x
        axes = self.axes_of(x)
        if dst.is_bool:
            return self.emit(f"{x} != 0", axes)
        if src.is_bool:
            x = self.emit(f"{x}.to(tl.uint8)", axes)
            src = dt.uint8
        if dst.is_floating:
            if dst.short == "f16":
                return self.emit(f"{x}.to(tl.float16).to(tl.float32)", axes)
            if dst.short == "bf16":
                if compute_type(src) != "tl.float32":
                    x = self.emit(f"{x}.to(tl.float32)", axes)
                return self.emit(f"_gc_round_bf16({x})", axes)
            if src.is_floating and compute_type(src) == compute_type(dst):
                return x
            return self.emit(f"{x}.to({compute_type(dst)})", axes)
        if src.is_floating:
            # PyTorch's x86 results (see llvm/values.py float_to_int): int32 converts as
            # int32, int64 and uint8 as int64; out of that range or NaN gives its minimum.
            # The conversion only sees values in range, so the GPU's saturating cvt.rzi
            # and the interpreter's numpy astype agree with it.
            wide, lim, low = (("tl.int32", "2147483648.0", "_GC_I32_MIN") if dst is dt.int32
                              else ("tl.int64", "9223372036854775808.0", "_GC_I64_MIN"))
            ok = self.emit(f"tl.abs({x}) < {lim}", axes)   # False for NaN
            safe = self.emit(f"tl.where({ok}, {x}, 0.0)", axes)
            i = self.emit(f"tl.where({ok}, {safe}.to({wide}), {low})", axes)
            return i if wide == compute_type(dst) else self.emit(f"{i}.to({compute_type(dst)})",
                                                                 axes)
        return self.emit(f"{x}.to({compute_type(dst)})", axes)

    # -------------------------------------------------------------- elementwise ops
    def compute(self, v: K.Compute, args) -> str:
        op, d = v.op, v.dtype
        axes = self.union(*args)
        e = lambda text: self.emit(text, axes)   # noqa: E731
        if op == "check":
            x, ok = args
            self.flag_error(self.emit(f"{ok} == 0", self.axes_of(ok)), self.axes_of(ok),
                            check_code(v.attr("message")))
            return x
        if op == "cast":
            return self.convert(args[0], K.value_dtype(v.args[0]), d)
        if op == "where":
            return e(f"tl.where({args[0]}, {args[1]}, {args[2]})")
        if op in ("eq", "ne", "lt", "le", "gt", "ge"):
            src = K.value_dtype(v.args[0])
            a, b = args
            if src.is_bool and op not in ("eq", "ne"):   # i1 compares as signed: widen
                a, b = e(f"{a}.to(tl.uint8)"), e(f"{b}.to(tl.uint8)")
            sym = {"eq": "==", "ne": "!=", "lt": "<", "le": "<=", "gt": ">", "ge": ">="}[op]
            return e(f"{a} {sym} {b}")
        if op in ("isnan", "isfinite"):
            x = args[0]
            if not K.value_dtype(v.args[0]).is_floating:
                return self.const(op == "isfinite", dt.bool_)
            return e(f"{x} != {x}" if op == "isnan" else f"tl.abs({x}) < _GC_INF")
        if op == "logical_not":
            return e(f"{args[0]} == 0")
        if op in ("logical_and", "logical_or", "logical_xor"):
            sym = {"logical_and": "&", "logical_or": "|", "logical_xor": "^"}[op]
            return e(f"{args[0]} {sym} {args[1]}")
        if d.is_floating:
            return self.round(self.float_op(v, args, e), d)
        return self.int_op(v, args, e)

    def float_op(self, v, args, e) -> str:
        op, d = v.op, v.dtype
        x = args[0]
        ct = compute_type(d)
        cd = dt.float64 if d is dt.float64 else dt.float32
        if op in ("sign", "rsqrt", "reciprocal", "sigmoid", "silu"):
            one = self.const(1.0, cd)
        if op in ("sign", "relu"):
            zero = self.const(0.0, cd)
        simple = {"exp": "_gc_exp", "log": "_gc_log", "log1p": "_gc_log1p",
                  "expm1": "_gc_expm1", "sqrt": "_gc_sqrt", "sin": "_gc_sin", "cos": "_gc_cos",
                  "tanh": "_gc_tanh", "erf": "_gc_erf", "floor": "tl.floor",
                  "ceil": "tl.ceil", "round": "_gc_rint", "abs": "tl.abs"}
        simple.update({name: "_gc_" + name for name in MATH_UNARY})
        if op in simple:
            return e(f"{simple[op]}({x})")
        if op == "neg":
            return e(f"_gc_neg({x})")
        if op == "sign":
            return e(f"tl.where({x} > 0, {one}, tl.where({x} < 0, -{one}, {zero}))")
        if op == "rsqrt":
            return e(f"_gc_div({one}, _gc_sqrt({x}))")
        if op == "reciprocal":
            return e(f"_gc_div({one}, {x})")
        if op == "sigmoid":
            return e(f"_gc_div({one}, {one} + _gc_exp(-{x}))")
        if op == "silu":
            s = e(f"_gc_div({one}, {one} + _gc_exp(-{x}))")
            if d.short == "f16":    # the reference rounds sigmoid to float16 first
                s = self.round(s, d)
            return e(f"{x} * {s}")
        if op == "gelu":
            if v.attr("approximate", "none") == "tanh":
                return e(f"_gc_gelu_tanh({x})")
            return e(f"_gc_gelu({x})")
        if op == "relu":   # x < 0 ? 0 : x keeps -0.0 and NaN, as PyTorch does
            return e(f"tl.where({x} < 0, {zero}, {x})")
        y = args[1] if len(args) > 1 else None
        if op in ("add", "sub", "mul"):
            return e(f"{x} {'+' if op == 'add' else '-' if op == 'sub' else '*'} {y}")
        if op == "div":
            return e(f"_gc_div({x}, {y})")
        if op in ("floordiv", "mod"):
            return self._float_floor_divmod(op, x, y, d, e)
        if op == "pow":
            return e(f"_gc_pow({x}, {y})")
        if op == "maximum":
            return e(f"_gc_fmax({x}, {y})")
        if op == "minimum":
            return e(f"_gc_fmin({x}, {y})")
        if op in ("fmod", "atan2", "hypot", "copysign"):
            return e(f"_gc_{op}({x}, {y})")
        raise TritonUnsupported(f"triton backend: no float lowering for {op} ({ct})")

    def int_op(self, v, args, e) -> str:
        op, d = v.op, v.dtype
        x = args[0]
        signed = d.is_signed and not d.is_bool
        zero = self.const(0, d)
        if op == "neg":
            return e(f"-{x}")
        if op == "abs":
            return e(f"tl.abs({x})") if signed else x
        if op == "sign":
            if d.is_bool:
                return x
            one = self.const(1, d)
            if not signed:
                return e(f"tl.where({x} > 0, {one}, {zero})")
            return e(f"tl.where({x} > 0, {one}, tl.where({x} < 0, -{one}, {zero}))")
        if op == "relu":
            return e(f"tl.maximum({x}, {zero})") if signed else x
        if op in ("floor", "ceil", "round"):
            return x
        if op == "bitwise_not":   # x ^ all ones: Triton 3.6's interpreter overflows ~ on uint8
            ones = self.const(-1 if signed else (1 << (8 * d.itemsize)) - 1, d)
            return e(f"{x} ^ {ones}")
        y = args[1]
        if op in ("bitwise_and", "bitwise_or", "bitwise_xor"):
            sym = {"bitwise_and": "&", "bitwise_or": "|", "bitwise_xor": "^"}[op]
            return e(f"{x} {sym} {y}")
        if d.is_bool:
            if op in ("add", "maximum"):
                return e(f"{x} | {y}")
            if op in ("mul", "minimum"):
                return e(f"{x} & {y}")
        if op in ("add", "sub", "mul"):
            return e(f"{x} {'+' if op == 'add' else '-' if op == 'sub' else '*'} {y}")
        if op == "maximum":
            return e(f"tl.maximum({x}, {y})")
        if op == "minimum":
            return e(f"tl.minimum({x}, {y})")
        if op in ("floordiv", "mod"):
            kind = "signed" if signed else "unsigned"
            return e(f"_gc_{op}_{kind}({x}, {y})")
        if op == "fmod":   # unsigned: the truncated and the floored remainder agree
            return e(f"_gc_fmod_signed({x}, {y})" if signed else f"_gc_mod_unsigned({x}, {y})")
        if op == "pow":
            bits = d.itemsize * 8 - (1 if signed else 0)
            return e(f"_gc_pow_int({x}, {y}, {bits}, {signed})")
        raise TritonUnsupported(f"triton backend: no integer lowering for {op} on {d.name}")

    # -------------------------------------------------------------- random numbers
    def rand(self, v: K.RandValue) -> str:
        seed = self.convert(self.value(v.seed), K.value_dtype(v.seed), dt.int64)
        off = self.convert(self.value(v.offset), K.value_dtype(v.offset), dt.int64)
        flat = self.index(v.flat)
        axes = self.union(seed, off, flat)
        if self.fn.idx != "tl.int64" and self.axes_of(flat):
            flat = self.emit(f"{flat}.to(tl.int64)", axes)
        counter = self.emit(f"{off} + {flat}", axes)
        u = self.emit(f"_gc_{'normal' if v.normal else 'uniform'}({seed}, {counter})", axes)
        return self.convert(u, dt.float64, v.dtype)


def identity(op, d):
    """The identity of a reduction over compute values of dtype d (bool as uint8)."""
    if op == "sum":
        return 0.0 if d.is_floating else 0
    if op == "prod":
        return 1.0 if d.is_floating else 1
    big = op in ("min", "argmin")
    if d.is_floating:
        return math.inf if big else -math.inf
    info = np.iinfo(d.np)
    return int(info.max if big else info.min)
