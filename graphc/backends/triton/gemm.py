"""GEMM kernels for the Triton code generator: `MatmulKernel`s, and the loop matmuls the
fusion pass makes for float16 (a tiled kernel whose reductions are all products
a[.., m, k] * b[.., k, n] summed over k), with their prologue casts and epilogue stores.

Each program computes one BM x BN output tile of one batch point (tiles in GROUP_M-row
groups, so consecutive programs share B's columns in L2), accumulating `tl.dot` over BK
steps in float32 (float64 for float64); operand tiles come straight from storage-typed
loads when the operand is a plain (possibly widened) load, so 16-bit operands reach the
tensor cores without a float32 round trip. Lanes past K are zero; an operand that does
not vary along a tile axis (a stride-0 broadcast) is broadcast to the tile.
"""
from __future__ import annotations

from dataclasses import dataclass

from .. import kernel_ir as K
from ...ir import dtypes as dt
from . import configs as C
from .emitter import STORAGE, FlatLoad, Function, Scope, TritonUnsupported, vars_of_value


def matmul_kernel(gen, k: K.MatmulKernel):
    """`gen` is the codegen.Generator: its finish/store/decode/index_type are shared."""
    a, b = k.a, k.b
    m, kk = a.shape[-2:]
    n = b.shape[-1]
    batch = k.out.shape[:-2]
    bvars = tuple(K.Var(f"gb{j}", s) for j, s in enumerate(batch))
    vm, vn, vk = K.Var("gm", m), K.Var("gn", n), K.Var("gk", kk)

    def view(sv, rows, cols):
        flat = K.lin(sv.offset)
        for v, s in zip(bvars, sv.strides[:-2]):
            flat = flat + K.lin(v) * s
        flat = flat + K.lin(rows) * sv.strides[-2] + K.lin(cols) * sv.strides[-1]
        return FlatLoad(sv.buffer, flat)

    acc_dtype = dt.float64 if k.dtype is dt.float64 else dt.float32
    if not k.dtype.is_floating:
        raise TritonUnsupported(f"triton backend: integer GEMM kernel {k.name}")
    out_index = tuple(K.lin(v) for v in bvars) + (K.lin(vm), K.lin(vn))
    value = K.AccRef("gemm_acc", k.dtype)
    if k.alpha is not None:
        value = K.Compute("mul", (k.alpha, value), k.dtype)
    if k.accumulate:   # an addmm: out holds the addend (BLAS's beta = 1)
        value = K.Compute("add", (K.Load(k.out, out_index), value), k.dtype)
    store = K.Store(k.out, out_index, (), value)
    dot = DotReduction("gemm_acc", view(a, vm, vk), view(b, vk, vn), acc_dtype, k.dtype,
                        vk)
    _emit_gemm(gen, k, bvars, vm, vn, vk, [dot], [store])

def dot_kernel(gen, k: K.Kernel, dots):
    *bvars, vm, vn = k.outer
    stores = [st for st in k.stages if isinstance(st, K.Store)]
    _emit_gemm(gen, k, tuple(bvars), vm, vn, dots[0].k, dots, stores)

def _tile_scope(fn, parent, binds):
    """A scope whose vars are bound to tile axes: binds = [(var, expr, axis, mask,
    zero)]."""
    s = Scope(fn, parent)
    for var, expr, axis, mask, zero in binds:
        s.bind(var, expr, axis)
        s.axis_mask[axis] = mask
        if zero:
            s.axis_zero[axis] = zero
    return s

def _emit_gemm(gen, k, bvars, vm, vn, vk, dots, stores):
    m, n, kk = vm.extent, vn.extent, vk.extent
    nbatch = 1
    for v in bvars:
        nbatch *= v.extent
    fn = Function(gen.index_type(k, [nbatch * m * n + 65536, m * kk + 65536,
                                        kk * n + 65536]))
    top = Scope(fn)
    ix = fn.idx
    for text in ("pid = tl.program_id(0)", f"num_m = ({m} + BM - 1) // BM",
                 f"num_n = ({n} + BN - 1) // BN", "tiles = num_m * num_n",
                 "bidx = pid // tiles", "t = pid % tiles", "width = GROUP_M * num_n",
                 "first_m = (t // width) * GROUP_M",
                 "gsize = tl.minimum(num_m - first_m, GROUP_M)",
                 "pm = first_m + (t % width) % gsize", "pn = (t % width) // gsize",
                 f"rm = tl.arange(0, BM).to({ix}) + pm.to({ix}) * BM",
                 f"rn = tl.arange(0, BN).to({ix}) + pn.to({ix}) * BN",
                 f"mm = rm < {m}", f"nm = rn < {n}"):
        fn.line(text)
    if bvars:
        fn.line(f"bi = bidx.to({ix})")
        gen.decode(top, "bi", list(bvars), None, fn)
    for dot in dots:
        acc_t = "tl.float64" if dot.acc_dtype is dt.float64 else "tl.float32"
        acc, k0, kr, km = fn.fresh("acc"), fn.fresh("k0_"), fn.fresh("kk"), fn.fresh("km")
        fn.line(f"{acc} = tl.zeros([BM, BN], {acc_t})")
        top.axes[acc] = frozenset("mn")
        src = dt.float64 if dot.acc_dtype is dt.float64 else dt.float32
        if kk == 0:   # an empty sum: the product is zeros
            top.accs[dot.acc] = top.convert(acc, src, dot.out_dtype)
            continue
        fn.line(f"for {k0} in range(0, {kk}, BK):")
        fn.depth += 1
        fn.line(f"{kr} = tl.arange(0, BK).to({ix}) + {k0}")
        fn.line(f"{km} = {kr} < {kk}")
        sa = _tile_scope(fn, top, [(vm, "rm[:, None]", "m", "mm[:, None]", None),
                                        (vk, f"{kr}[None, :]", "k", f"{km}[None, :]", None)])
        a_tile = dot.operand(sa, dot.a, f"{km}[None, :]", "[BM, BK]")
        sb = _tile_scope(fn, top, [(vk, f"{kr}[:, None]", "k", f"{km}[:, None]", None),
                                        (vn, "rn[None, :]", "n", "nm[None, :]", None)])
        b_tile = dot.operand(sb, dot.b, f"{km}[:, None]", "[BK, BN]")
        prec = "PREC" if dot.dot_type == "tl.float32" else '"ieee"'
        fn.line(f"{acc} = _gc_dot({a_tile}, {b_tile}, {acc}, {prec})")
        fn.depth -= 1
        top.accs[dot.acc] = top.convert(acc, src, dot.out_dtype)
    fn.line(f"zm = tl.zeros([BM, 1], {ix})")
    fn.line(f"zn = tl.zeros([1, BN], {ix})")
    se = _tile_scope(fn, top, [(vm, "rm[:, None]", "m", "mm[:, None]", "zm"),
                                    (vn, "rn[None, :]", "n", "nm[None, :]", "zn")])
    for st in stores:
        gen.store(se, st, {"m", "n"})
    uses_prec = any(d.dot_type == "tl.float32" for d in dots)
    constexprs = ("BM", "BN", "BK", "GROUP_M") + (("PREC",) if uses_prec else ())
    configs = C.gemm(m, n, kk, max(d.operand_bytes() for d in dots))
    extra = (("PREC", "ieee"),) if uses_prec else ()
    gen.finish(fn, k.name, "gemm", constexprs, configs, ("gemm", nbatch, m, n),
                 nbatch * m * n * max(kk, 1), f"{k.name}: GEMM {nbatch} x [{m} x {kk}] "
                 f"@ [{kk} x {n}]", extra)



# ----------------------------------------------------------------------------- dot pattern

@dataclass
class DotReduction:
    acc: str
    a: object            # value expression over (batch, m, k)
    b: object            # value expression over (batch, k, n)
    acc_dtype: object    # float32 or float64
    out_dtype: object    # the dtype of the result (rounded from acc)
    k: object = None     # the reduced Var (dot pattern kernels)

    def __post_init__(self):
        self.dot_type = self._dot_type()

    def _narrow(self, v):
        """The storage-typed load behind v when v is a load (or an exact widening cast of
        one), so the tile goes to tl.dot without a round trip through float32."""
        if isinstance(v, K.Compute) and v.op == "cast" and v.dtype is dt.float32 and \
                K.value_dtype(v.args[0]).short in ("f16", "bf16", "f32"):
            v = v.args[0]
        if isinstance(v, (K.Load, FlatLoad)):
            return v
        return None

    def _dot_type(self):
        """tl.dot's input type: 16-bit when both operands hold 16-bit values exactly (a
        loop matmul widens float16 operands to float32 with a cast), else float32 or
        float64."""
        if self.acc_dtype is dt.float64:
            return "tl.float64"
        kinds = set()
        for v in (self.a, self.b):
            if isinstance(v, K.Compute) and v.op == "cast":
                v = v.args[0]
            kinds.add(K.value_dtype(v).short)
        if kinds == {"f16"}:
            return "tl.float16"
        if kinds == {"bf16"}:
            return "tl.bfloat16"
        return "tl.float32"

    def operand_bytes(self):
        return {"tl.float16": 2, "tl.bfloat16": 2, "tl.float32": 4, "tl.float64": 8}[
            self.dot_type]

    def operand(self, scope: Scope, v, k_mask, tile) -> str:
        """The `tile`-shaped ([BM, BK] or [BK, BN]) operand v in the dot's input type,
        lanes past the end of K zeroed (they must not contribute). An operand that does
        not vary along a tile axis (a stride-0 broadcast) is broadcast to the tile."""
        inner = self._narrow(v)
        if inner is not None:
            flat = inner.flat if isinstance(inner, FlatLoad) else \
                K.linearize(inner.index, inner.buffer.shape)
            x = scope.load(inner.buffer, flat, raw=True)
            sd = STORAGE[inner.buffer.dtype.short]
            if sd != self.dot_type:
                x = scope.emit(f"{x}.to({self.dot_type})", scope.axes_of(x))
            if "k" not in scope.axes_of(x):
                x = scope.emit(f"tl.where({k_mask}, {x}, 0)", scope.axes_of(x) | {"k"})
        else:
            x = scope.value(v)
            x = scope.emit(f"tl.where({k_mask}, {x}, 0.0)", scope.axes_of(x) | {"k"})
            x = scope.emit(f"{x}.to({self.dot_type})", scope.axes_of(x))
        if len(scope.axes_of(x)) < 2:
            x = scope.emit(f"tl.broadcast_to({x}, {tile})", frozenset("mk") if "BM" in tile
                           else frozenset("kn"))
        return x


def dot_reductions(k: K.Kernel):
    """The loop-matmul pattern: outer (batch..., m, n), every Reduce a float sum over
    one inner var k of mul(a, b) with a independent of n and b independent of m, every
    other stage an outer store. Returns [DotReduction] or None."""
    if len(k.outer) < 2:
        return None
    *batch, vm, vn = k.outer
    dots = []
    for st in k.stages:
        if isinstance(st, K.Store):
            if st.inner or st.accumulate:
                return None
            continue
        if st.op != "sum" or len(st.inner) != 1 or not st.dtype.is_floating:
            return None
        v = st.value
        if not (isinstance(v, K.Compute) and v.op == "mul" and v.dtype.is_floating):
            return None
        (vk,) = st.inner
        a, b = v.args
        va, vb = vars_of_value(a, set()), vars_of_value(b, set())
        if vn in va or vm in vb:
            a, b = b, a
            va, vb = vb, va
        if vn in va or vm in vb or vk not in va or vk not in vb:
            return None
        acc_dtype = dt.float64 if v.dtype is dt.float64 else dt.float32
        if v.dtype.short in ("f16", "bf16"):
            return None   # products rounded to 16 bits: not what tl.dot computes
        dots.append(DotReduction(st.acc, a, b, acc_dtype, st.dtype, vk))
    if not dots or any(d.k.extent != dots[0].k.extent for d in dots):
        return None
    return dots


