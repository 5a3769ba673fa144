"""Lower kernel IR (graphc/backends/kernel_ir.py) to Triton source text.

Each kernel of a fused plan becomes one or more `@triton.jit` functions ("launches"),
each taking one pointer per buffer it touches (plus a status pointer when it indexes
by data) and only constexpr block sizes: shapes, strides and constants are literals in
the text, so Triton sees every extent and contiguity. Five forms:

  * flat:   a `Kernel` without inner loops (pointwise): program p handles the BLOCK
            consecutive points p*BLOCK + arange(BLOCK) of the flattened outer domain.
  * tiled:  a `Kernel` with reductions or inner stores: program p handles BO outer
            points (axis 0 of a [BO, BI] tile) and walks the flattened inner domain in
            chunks of BI (axis 1). Reduce stages fold each chunk with tl.sum/tl.reduce
            into a [BO, 1] accumulator; inner stores write each chunk; outer stores
            write [BO, 1]. With ONE_CHUNK (BI >= inner extent) the stages share one
            tile and every load is made once (softmax reads its row once).
  * gemm:   a `MatmulKernel`, or a tiled kernel whose reductions are all float
            products a[.., m, k] * b[.., k, n] summed over k (the loop matmul fusion
            makes for float16, with prologue casts and epilogue stores): gemm.py.
            Integer loop matmuls stay tiled reductions.
  * serial kernels: the fusion pass's CPU sweep form of a reduction over leading dims
            (`out = identity; out op= x` in memory order) is rebuilt into the tiled
            reduction (sweep_as_reduction); other serial kernels (scatter_add) get one
            launch per stage, an accumulating sum stage using atomic adds (8-bit types
            and other combine ops: a single-program loop).
  * sort:   a `SortKernel` (argsort): a bitonic network over (key, index) pairs in
            registers, rows past 4096 elements merged over memory: sort.py.

Values are computed in a compute type: int1 for bool, the integer type for ints,
float32 for float16/bfloat16/float32 (rounded to float16/bfloat16 after every op, as the
reference interpreter does), float64 for float64. Buffers on the device use the real
16-bit storage of float16/bfloat16 (the executor converts bfloat16 at the host copy).
Masked-off lanes load 0 and never store; reductions replace them with the identity.
Index arithmetic is int32 when every index of the kernel fits, else int64.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from .. import kernel_ir as K
from ...ir import dtypes as dt
from . import configs as C
from . import gemm, sort
from .emitter import (ATOMIC_DTYPES, INT32_LIMIT, POINTER, STORAGE, Function, Scope,
                      TritonUnsupported, compute_type, identity, lin_magnitude, literal,
                      value_lins, vars_of_lin)
from .mathlib import prelude

# ----------------------------------------------------------------------------- launches

@dataclass
class Launch:
    """One generated function and how to launch it."""
    name: str                 # function name: a hash of its text and pointer types
    kernel: str               # the kernel IR kernel it implements (part of)
    kind: str                 # flat | tiled | gemm | serial
    buffers: list             # Buffer per pointer parameter, in order
    status: bool              # takes a trailing int32 status pointer
    constexprs: tuple         # constexpr parameter names, in order
    configs: list             # candidate Configs; [0] is the heuristic default
    grid_spec: tuple          # see grid()
    work: int                 # elements (or multiply-adds) of work, for autotuning
    source: str = ""          # the function's text
    extra_constexprs: tuple = ()   # ((name, value), ...) fixed at compile time (PREC)
    rerunnable: bool = True   # False: accumulates into its output (atomics, serial)

    def grid(self, cfg) -> tuple:
        kind = self.grid_spec[0]
        if kind == "flat":
            return (-(-self.grid_spec[1] // cfg["BLOCK"]), 1, 1)
        if kind == "tiled":
            return (-(-self.grid_spec[1] // cfg["BO"]), 1, 1)
        if kind == "gemm":
            _, batch, m, n = self.grid_spec
            return (batch * -(-m // cfg["BM"]) * -(-n // cfg["BN"]), 1, 1)
        return (1, 1, 1)

    def empty(self) -> bool:
        return self.grid(self.configs[0])[0] == 0

    def signature(self) -> dict:
        sig = {f"p{k}": POINTER[b.dtype.short] for k, b in enumerate(self.buffers)}
        if self.status:
            sig["status"] = "*i32"
        for c in self.constexprs:
            sig[c] = "constexpr"
        return sig

    def constexpr_values(self, cfg) -> dict:
        out = dict(cfg.params)
        out.update(dict(self.extra_constexprs))
        return {k: out[k] for k in self.constexprs}


@dataclass
class Generated:
    launches: list                      # in execution order
    functions: dict = field(default_factory=dict)   # name -> source text (deduplicated)
    comments: dict = field(default_factory=dict)    # name -> description

    def module_text(self, variant: str) -> str:
        parts = [prelude(variant)]
        for name, text in self.functions.items():
            parts.append(f"\n\n# {self.comments.get(name, '')}\n{text}")
        return "".join(parts) + "\n"


# ----------------------------------------------------------------------------- reductions

class _Reduction:
    """Emission of one Reduce stage: init, fold a chunk, finish (see module docstring).
    float sums and products fold each chunk in the compute type and accumulate chunks in
    float64; integer ones in int64; max/min keep the compute type (NaN-propagating for
    floats); arg reductions carry (value, index) pairs, first index winning ties."""

    def __init__(self, st: K.Reduce, fn: Function, tile_shape: str):
        self.st = st
        self.fn = fn
        self.tile = tile_shape           # e.g. "[BO, 1]"
        src = K.value_dtype(st.value)
        self.bool_src = src.is_bool
        self.src = dt.uint8 if src.is_bool else src
        op = st.op
        if op in ("sum", "prod"):
            self.acc_t = "tl.float64" if self.src.is_floating else "tl.int64"
        elif op in ("argmax", "argmin"):
            self.acc_t = compute_type(self.src)
        else:
            self.acc_t = compute_type(self.src)
        self.names = ()

    def init(self, scope: Scope):
        st = self.st
        ident = identity(st.op, self.src)
        acc = self.fn.fresh("acc")
        self.fn.line(f"{acc} = tl.full({self.tile}, {literal(ident)}, {self.acc_t})")
        if st.op in ("argmax", "argmin"):
            idx = self.fn.fresh("acci")
            self.fn.line(f"{idx} = tl.full({self.tile}, _GC_I64_MAX, tl.int64)")
            self.names = (acc, idx)
        else:
            self.names = (acc,)

    def fold(self, scope: Scope, value: str, mask: str, position: str | None):
        """Fold one chunk: `value` at the tile's points, `mask` the valid points,
        `position` the inner index (arg reductions)."""
        st, f = self.st, self.fn
        op = st.op
        axes = scope.union(value, mask)
        if self.bool_src:
            value = scope.emit(f"{value}.to(tl.uint8)", scope.axes_of(value))
        ident = scope.const(identity(op, self.src), self.src)
        x = scope.emit(f"tl.where({mask}, {value}, {ident})", axes)
        if op in ("argmax", "argmin"):
            ri = scope.emit(f"tl.where({mask}, {position}.to(tl.int64), _GC_I64_MAX)", axes)
            cv, ci = f.fresh("cv"), f.fresh("ci")
            f.line(f"{cv}, {ci} = tl.reduce(({x}, {ri}), 1, _gc_{op}_combine, keep_dims=True)")
            acc, idx = self.names
            f.line(f"{acc}, {idx} = _gc_{op}_combine({acc}, {idx}, {cv}, {ci})")
            return
        (acc,) = self.names
        if op == "sum":
            if not self.src.is_floating:
                x = scope.emit(f"{x}.to(tl.int64)", axes)
            f.line(f"{acc} = {acc} + tl.sum({x}, axis=1, keep_dims=True).to({self.acc_t})")
        elif op == "prod":
            if not self.src.is_floating:
                x = scope.emit(f"{x}.to(tl.int64)", axes)
            f.line(f"{acc} = {acc} * tl.reduce({x}, 1, _gc_mul, keep_dims=True)"
                   f".to({self.acc_t})")
        elif self.src.is_floating:
            comb = "_gc_fmax" if op == "max" else "_gc_fmin"
            f.line(f"{acc} = {comb}({acc}, tl.reduce({x}, 1, {comb}, keep_dims=True))")
        else:
            fn = "max" if op == "max" else "min"
            f.line(f"{acc} = tl.{fn}imum({acc}, tl.{fn}({x}, axis=1, keep_dims=True))")

    def finish(self, scope: Scope, axes) -> str:
        st = self.st
        if st.op in ("argmax", "argmin"):
            name = self.names[1]
        else:
            name = self.names[0]
        scope.axes[name] = frozenset(axes)
        if st.op in ("argmax", "argmin"):
            return name
        if st.op in ("sum", "prod"):
            src = dt.float64 if self.src.is_floating else dt.int64
        else:
            src = self.src
        return scope.convert(name, src, st.dtype)


# ----------------------------------------------------------------------------- generator

class Generator:
    """Turns a fused plan into `Generated` (launches + function texts)."""

    def __init__(self, plan):
        self.plan = plan
        self.out = Generated([])

    def run(self) -> Generated:
        for k in self.plan.kernels:
            if isinstance(k, K.SortKernel):
                sort.sort_kernel(self, k)
            elif isinstance(k, K.MatmulKernel):
                gemm.matmul_kernel(self, k)
            elif not k.parallel and sweep_as_reduction(k) is not None:
                self._tiled_kernel(sweep_as_reduction(k))
            elif not k.parallel:
                self._serial_kernel(k)
            elif gemm.dot_reductions(k) is not None:
                gemm.dot_kernel(self, k, gemm.dot_reductions(k))
            elif _piecewise(k):
                self._piecewise_kernel(k)
            elif any(st.inner for st in k.stages):
                self._tiled_kernel(k)
            else:
                self._flat_kernel(k)
        return self.out

    # -------------------------------------------------------------- registration
    def finish(self, fn: Function, kernel_name, kind, constexprs, configs, grid_spec, work,
                comment, extra=(), rerunnable=True):
        params = [fn.params[b] for b in fn.params]
        args = list(params) + (["status"] if fn.status else []) + \
            [f"{c}: tl.constexpr" for c in constexprs]
        body = "\n".join(fn.lines)
        # The text alone does not determine the kernel: loads and stores take their
        # element types from the pointer parameters, so `where` over float32 and over
        # float64 is the same text. The name (which keys every cache: compiled kernels,
        # cubins on disk, tuned configs) must therefore hash the pointer types too.
        types = [POINTER[b.dtype.short] for b in fn.params] + (["*i32"] if fn.status else [])
        digest = hashlib.sha256((", ".join(args) + "\n" + body + repr(extra) + "\n" +
                                 ", ".join(types)).encode())
        name = f"gc_{kind}_{digest.hexdigest()[:16]}"
        text = f"@triton.jit\ndef {name}({', '.join(args)}):\n{body}"
        launch = Launch(name, kernel_name, kind, list(fn.params), fn.status, tuple(constexprs),
                        configs, grid_spec, work, text, tuple(extra), rerunnable)
        self.out.launches.append(launch)
        self.out.functions.setdefault(name, text)
        self.out.comments.setdefault(name, comment)
        return launch

    # -------------------------------------------------------------- index type
    @staticmethod
    def index_type(kernel, extra=()) -> str:
        bound = 1
        bufs = kernel.reads() + kernel.writes()
        for b in bufs:
            bound = max(bound, b.numel)
        n = 1
        for v in getattr(kernel, "outer", ()):
            n *= max(v.extent, 1)
        inner = 1
        for st in getattr(kernel, "stages", ()):
            m = 1
            for v in st.inner:
                m *= max(v.extent, 1)
            inner = max(inner, m)
            for lin in list(value_lins(st.value)) + \
                    (list(st.index) + [K.linearize(st.index, st.buffer.shape)]
                     if isinstance(st, K.Store) else []):
                bound = max(bound, lin_magnitude(lin))
        for x in extra:
            bound = max(bound, x)
        # tile arithmetic runs up to one block past the extents
        bound = max(bound, n * inner + 65536, n + 65536)
        return "tl.int32" if bound < INT32_LIMIT else "tl.int64"

    # -------------------------------------------------------------- decode helpers
    @staticmethod
    def decode(scope, flat: str, vars_, axis, fn):
        """Bind vars_ (row-major) to the digits of the flat index `flat`."""
        stride = 1
        strides = []
        for v in reversed(vars_):
            strides.append(stride)
            stride *= max(v.extent, 1)
        strides.reverse()
        for k, (v, s) in enumerate(zip(vars_, strides)):
            expr = flat if s == 1 else f"{flat} // {s}"
            if k > 0 and v.extent != 1:
                expr = f"({expr}) % {v.extent}"
            if v.extent == 1:
                expr = f"{flat} * 0"
            if expr == flat:
                scope.bind(v, flat, axis)
                continue
            name = fn.fresh("v")
            fn.line(f"{name} = {expr}")
            scope.bind(v, name, axis)

    def store(self, scope: Scope, st: K.Store, axes_all, atomic=False):
        val = scope.value(st.value)
        flat = K.linearize(st.index, st.buffer.shape)
        off = scope.index(flat)
        need = frozenset(axes_all)
        have = scope.axes_of(off)
        if have != need:
            zero = scope.zero_for(need - have)
            if zero:
                off = scope.emit(f"{off} + {zero}", need, "i")
        mask = scope.mask_for(scope.axes_of(off))
        sd = st.buffer.dtype.short
        if sd in ("f16", "bf16"):
            val = scope.emit(f"{val}.to({STORAGE[sd]})", scope.axes_of(val))
        p = scope.fn.ptr(st.buffer)
        m = f", mask={mask}" if mask else ""
        if atomic:
            scope.fn.line(f"tl.atomic_add({p} + {off}, {val}{m}, sem=\"relaxed\")")
        else:
            scope.fn.line(f"tl.store({p} + {off}, {val}{m})")

    # -------------------------------------------------------------- flat kernels
    def _flat_setup(self, fn, vars_, n):
        scope = Scope(fn)
        fn.line("pid = tl.program_id(0)")
        fn.line(f"o = tl.arange(0, BLOCK).to({fn.idx}) + pid.to({fn.idx}) * BLOCK")
        fn.line(f"om = o < {n}")
        fn.line(f"zo = tl.zeros([BLOCK], {fn.idx})")
        scope.axis_mask["o"] = "om"
        scope.axis_zero["o"] = "zo"
        scope.axes["o"] = frozenset("o")
        if len(vars_) == 1 and vars_[0].extent == n:
            scope.bind(vars_[0], "o", "o")
        else:
            self.decode(scope, "o", vars_, "o", fn)
        return scope

    def _flat_kernel(self, k: K.Kernel):
        n = 1
        for v in k.outer:
            n *= v.extent
        fn = Function(self.index_type(k))
        scope = self._flat_setup(fn, list(k.outer), n)
        for st in k.stages:
            if isinstance(st, K.Reduce):   # a reduction over no dims: the value itself
                if st.op in ("argmax", "argmin"):
                    scope.accs[st.acc] = scope.const(0, dt.int64)
                else:
                    x = scope.value(st.value)
                    scope.accs[st.acc] = scope.convert(x, K.value_dtype(st.value), st.dtype)
            else:
                self.store(scope, st, {"o"})
        self.finish(fn, k.name, "flat", ("BLOCK",), C.flat(n), ("flat", n), k.work(),
                     f"{k.name}: pointwise over {n} point(s)")

    # -------------------------------------------------------------- tiled kernels
    def _tiled_kernel(self, k: K.Kernel):
        n_outer = 1
        for v in k.outer:
            n_outer *= v.extent
        inner_vars = next(st.inner for st in k.stages if st.inner)
        n_inner = 1
        for v in inner_vars:
            n_inner *= v.extent
        fn = Function(self.index_type(k))
        top = Scope(fn)
        fn.line("pid = tl.program_id(0)")
        fn.line(f"o = tl.arange(0, BO)[:, None].to({fn.idx}) + pid.to({fn.idx}) * BO")
        fn.line(f"om = o < {n_outer}")
        fn.line(f"zo = tl.zeros([BO, 1], {fn.idx})")
        top.axis_mask["o"] = "om"
        top.axis_zero["o"] = "zo"
        top.axes["o"] = frozenset("o")
        self.decode(top, "o", list(k.outer), "o", fn)

        def chunk_scope(parent, start):
            s = Scope(fn, parent)
            r, rm, zi = fn.fresh("r"), fn.fresh("rm"), fn.fresh("zi")
            fn.line(f"{r} = tl.arange(0, BI)[None, :].to({fn.idx})" +
                    (f" + {start}" if start else ""))
            fn.line(f"{rm} = {r} < {n_inner}")
            fn.line(f"{zi} = tl.zeros([1, BI], {fn.idx})")
            s.axis_mask["i"] = rm
            s.axis_zero["i"] = zi
            s.axes[r] = frozenset("i")
            self.decode(s, r, list(inner_vars), "i", fn)
            return s

        def chunk_loop():
            r0 = fn.fresh("r0_")
            fn.line(f"for {r0} in range(0, {n_inner}, BI):")
            fn.depth += 1
            return r0

        def reduce_in(scope, st, red):
            val = scope.value(st.value)
            mask = scope.mask_for({"o", "i"})
            pos = None
            if st.op in ("argmax", "argmin"):
                pos = scope.env[st.inner[0]]
            red.fold(scope, val, mask, pos)

        fn.line("if ONE_CHUNK:")
        fn.depth += 1
        s = chunk_scope(top, None)
        for st in k.stages:
            if isinstance(st, K.Reduce):
                red = _Reduction(st, fn, "[BO, 1]")
                red.init(s)
                reduce_in(s, st, red)
                s.accs[st.acc] = red.finish(s, {"o"})
            else:
                self.store(s, st, {"o", "i"} if st.inner else {"o"})
        fn.depth -= 1
        fn.line("else:")
        fn.depth += 1
        outer = Scope(fn, top)
        for st in k.stages:
            if isinstance(st, K.Reduce):
                red = _Reduction(st, fn, "[BO, 1]")
                red.init(outer)
                r0 = chunk_loop()
                reduce_in(chunk_scope(outer, r0), st, red)
                fn.depth -= 1
                outer.accs[st.acc] = red.finish(outer, {"o"})
            elif st.inner:
                r0 = chunk_loop()
                self.store(chunk_scope(outer, r0), st, {"o", "i"})
                fn.depth -= 1
            else:
                self.store(outer, st, {"o"})
        fn.depth -= 1
        configs = C.reduction(n_outer, n_inner, _inner_contiguous(k, inner_vars))
        self.finish(fn, k.name, "tiled", ("BO", "BI", "ONE_CHUNK"), configs,
                     ("tiled", n_outer), k.work(),
                     f"{k.name}: {n_outer} outer point(s) x {n_inner} inner")

    # -------------------------------------------------------------- piecewise kernels
    def _piecewise_kernel(self, k: K.Kernel):
        """Store stages over different inner domains (a materialized concat, one stage
        per piece): one flat launch per stage over its outer x inner points."""
        n_outer = 1
        for v in k.outer:
            n_outer *= v.extent
        for j, st in enumerate(k.stages):
            n = n_outer
            for v in st.inner:
                n *= v.extent
            fn = Function(self.index_type(k))
            scope = self._flat_setup(fn, list(k.outer) + list(st.inner), n)
            self.store(scope, st, {"o"})
            self.finish(fn, k.name, "flat", ("BLOCK",), C.flat(n), ("flat", n), max(n, 1),
                        f"{k.name} stage {j}: store over {n} point(s)")

    # -------------------------------------------------------------- serial kernels
    def _serial_kernel(self, k: K.Kernel):
        if k.outer or any(isinstance(st, K.Reduce) for st in k.stages):
            raise TritonUnsupported(f"triton backend: serial kernel {k.name} with outer "
                                    f"loops or reductions")
        for j, st in enumerate(k.stages):
            n = 1
            for v in st.inner:
                n *= v.extent
            op, d = accumulate_op(st), st.buffer.dtype.short
            if op and not (op == "sum" and d in ATOMIC_DTYPES):
                self._serial_accumulate(k, j, st, n, op)
                continue
            fn = Function(self.index_type(k))
            scope = self._flat_setup(fn, list(st.inner), n)
            self.store(scope, st, {"o"}, atomic=bool(op))
            self.finish(fn, k.name, "flat", ("BLOCK",), C.flat(n), ("flat", n),
                         max(n, 1), f"{k.name} stage {j}: "
                         f"{'atomic accumulate' if op else 'store'} over {n} point(s)",
                         rerunnable=not op)

    def _serial_accumulate(self, k, j, st, n, op):
        """Accumulation without a suitable atomic (8-bit types, prod/max/min): one
        program, one point at a time; the barrier orders each read-modify-write after
        the previous one."""
        fn = Function(self.index_type(k))
        scope = Scope(fn)
        fn.line(f"for i in range(0, {n}):")
        fn.depth += 1
        inner = Scope(fn, scope)
        fn.line(f"ii = tl.full([], i, {fn.idx})")
        self.decode(inner, "ii", list(st.inner), None, fn)
        val = inner.value(st.value)
        off = inner.index(K.linearize(st.index, st.buffer.shape))
        p = fn.ptr(st.buffer)
        d = st.buffer.dtype
        old = inner.emit(f"tl.load({p} + {off})", ())
        if d.short in ("f16", "bf16"):
            old = inner.emit(f"{old}.to(tl.float32)", ())
        if d.is_bool:
            new = inner.emit(f"{old} {'&' if op in ('prod', 'min') else '|'} {val}", ())
        elif op in ("sum", "prod"):
            new = inner.emit(f"{old} {'+' if op == 'sum' else '*'} {val}", ())
        elif d.is_floating:
            new = inner.emit(f"_gc_f{op}({old}, {val})", ())
        else:
            new = inner.emit(f"tl.{op}imum({old}, {val})", ())
        if d.is_floating:
            new = inner.round(new, d)
            if d.short in ("f16", "bf16"):
                new = inner.emit(f"{new}.to({STORAGE[d.short]})", ())
        fn.line(f"tl.store({p} + {off}, {new})")
        fn.line("tl.debug_barrier()")
        fn.depth -= 1
        self.finish(fn, k.name, "serial", (), C.serial(), ("serial",), max(n, 1),
                     f"{k.name} stage {j}: serial {op} over {n} point(s)", rerunnable=False)

    # -------------------------------------------------------------- GEMMs
def accumulate_op(st) -> str:
    """The combine op of an accumulating Store ("" for a plain store); kernel IR once
    spelled a sum as accumulate=True."""
    a = getattr(st, "accumulate", "")
    return "sum" if a is True else (a or "")


def sweep_as_reduction(k: K.Kernel):
    """The fusion pass turns reductions over leading dims into a serial sweep in memory
    order, for CPU caches: `out[o] = identity` over the kept points, then `out[o] op=
    value` over every point. On a GPU that is the tiled reduction it came from, with a
    deterministic order and no atomics: rebuild it (None when k is not such a sweep)."""
    if k.parallel or k.outer or not k.stages:
        return None
    outer = red = None
    stages, results = [], {}
    n_pairs = 0
    while 2 * n_pairs + 1 < len(k.stages) and accumulate_op(k.stages[2 * n_pairs + 1]):
        n_pairs += 1
    pairs = k.stages[:2 * n_pairs]
    for j, (init, acc) in enumerate(zip(pairs[::2], pairs[1::2])):
        op = accumulate_op(acc) if isinstance(acc, K.Store) else ""
        if not (isinstance(init, K.Store) and op in ("sum", "prod", "max", "min") and
                not accumulate_op(init) and isinstance(init.value, K.Const) and
                init.buffer is acc.buffer and tuple(init.index) == tuple(acc.index)):
            return None
        o = tuple(init.inner)
        r = tuple(v for v in acc.inner if v not in o)
        if not set(o) <= set(acc.inner) or (outer is not None and (o, r) != (outer, red)):
            return None
        used = set()
        for i in init.index:
            vars_of_lin(i, used)
        if not used <= set(o) or any(isinstance(a, K.ValueIndex) for i in init.index
                                     for a in i.atoms()):
            return None
        outer, red = o, r
        name = f"sweep{j}"
        dtype = acc.buffer.dtype
        stages.append(K.Reduce(name, op, r, acc.value, dtype))
        stages.append(K.Store(acc.buffer, init.index, (), K.AccRef(name, dtype)))
        results[K.Load(acc.buffer, tuple(init.index))] = K.AccRef(name, dtype)
    if not red:
        return None
    # outer stores after the sweep (an optimiser update of a bias) read its results
    for st in k.stages[2 * n_pairs:]:
        if not isinstance(st, K.Store) or accumulate_op(st) or tuple(st.inner) != outer:
            return None
        value = K.substitute(st.value, results)
        if value is None:
            return None
        stages.append(K.Store(st.buffer, st.index, (), value))
    return K.Kernel(k.name, outer, stages, parallel=True, nodes=k.nodes)



def _inner_contiguous(k: K.Kernel, inner_vars) -> bool:
    """Do the kernel's loads walk memory along the innermost inner variable (row
    reductions) rather than along the outer ones (column reductions)?"""
    last_inner = inner_vars[-1] if inner_vars else None
    last_outer = k.outer[-1] if k.outer else None
    votes = 0
    for st in k.stages:
        for v in K.walk_values(st.value):
            if isinstance(v, K.Load):
                flat = K.linearize(v.index, v.buffer.shape)
                coeff = dict(flat.terms)
                if last_inner is not None and coeff.get(last_inner) == 1:
                    votes += 1
                elif last_outer is not None and coeff.get(last_outer) == 1:
                    votes -= 1
    return votes >= 0


def generate(plan) -> Generated:
    return Generator(plan).run()


def _piecewise(k) -> bool:
    """Plain store stages that loop over different inner domains."""
    stages = k.stages
    return (k.parallel and len(stages) > 1 and
            all(isinstance(st, K.Store) and not st.accumulate for st in stages) and
            len({st.inner for st in stages}) > 1)
