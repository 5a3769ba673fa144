"""Backend-neutral kernels: what the fusion pass produces and every compiling backend
lowers (LLVM today, Triton later). Nothing here knows about LLVM.

A kernel is a loop nest over *index variables* (`Var`, each with an extent):

    Kernel: for outer vars (v0 may be split into [lo, hi) ranges run in parallel):
                stage 1; stage 2; ...           (in order, for each outer point)
    Reduce stage: acc = identity; for inner vars: acc = combine(acc, value)
    Store stage:  for inner vars: buf[index] = value   (or buf[index] = combine(buf[index],
                  value) when `accumulate` names a combine op: sum, prod, max, min)

Outer points are independent (so any split of v0 is legal) unless `parallel` is false.
A `Reduce` stage's result is an outer-level scalar that later stages read with
`AccRef`. `MatmulKernel` and `SortKernel` are the opaque kernels: a batched GEMM, and a
stable argsort of each row, both over strided views of buffers (a transposed view is a
stride, never a copy).

Index expressions are integer linear forms over atoms (`Lin`): a constant plus
coefficient * atom, where an atom is a `Var`, a floor-division or modulo of a linear
form by a positive constant, a clamp, or a data-dependent index read from a value
(`ValueIndex`, used by gather/scatter). Constructors simplify as they build, using the
variables' ranges (so `(i // C) * C + i % C` folds back to `i` and a reshape that only
splits or merges contiguous dims costs no division in the loop).

Value expressions (`Load`, `Const`, `IndexValue`, `Compute`, `AccRef`, `RandValue`)
are frozen, hashable trees: equal trees compute equal values, so a backend can share
them within one loop body. `Compute.op` is an elementwise op name of graphc/ir/ops.py
and `dtype` its result dtype; float16/bfloat16 results are rounded to their precision
after each op, as the reference interpreter does.

Buffers are contiguous row-major arrays in the storage dtype of graphc/ir/dtypes.py
(bfloat16 is stored as float32 values rounded to bfloat16).
"""
from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass, field

from ..ir import dtypes as dt

# The status word a kernel sets (0: nothing to report). An exported library also
# returns 2 for a NULL argument; a failed `check` node sets ir.ops.check_code(message),
# 16 and above.
STATUS_INDEX_OUT_OF_RANGE = 1   # a data-dependent index (gather, scatter) out of range
STATUS_NO_MEMORY = 3            # a sort kernel's scratch allocation failed


def _expr(cls):
    """A frozen dataclass whose hash is computed once: expression trees share
    subtrees, and a recomputed recursive hash would cost the size of the unfolded
    tree on every dict lookup."""
    cls = dataclass(frozen=True)(cls)
    names = tuple(f.name for f in dataclasses.fields(cls))

    def __hash__(self):
        h = self.__dict__.get("_hash")
        if h is None:
            h = hash((cls.__name__,) + tuple(getattr(self, n) for n in names))
            object.__setattr__(self, "_hash", h)
        return h
    cls.__hash__ = __hash__
    return cls


# ----------------------------------------------------------------------------- buffers

@dataclass(eq=False)
class Buffer:
    """A contiguous array. `kind`: 'input' (graph input, given per call), 'output'
    (graph output, fresh per call), 'temp' (intermediate, lives in the arena).

    `within` = (container, element offset): a temp that is a contiguous block of another
    temp (a piece of a concatenation, stored where the concatenation keeps it, so no
    kernel copies it there). Kernels treat it as a buffer of its own; only the memory
    plan places it inside its container."""
    name: str
    shape: tuple
    dtype: dt.DType
    kind: str = "temp"
    within: tuple | None = None

    @property
    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self):
        return self.numel * self.dtype.np.itemsize

    def strides(self):
        """Row-major element strides."""
        out, s = [], 1
        for n in reversed(self.shape):
            out.append(s)
            s *= n
        return tuple(reversed(out))

    def __repr__(self):
        return f"%{self.name}:{self.dtype.short}[{','.join(map(str, self.shape))}]"


# ----------------------------------------------------------------------------- indices

@_expr
class Var:
    name: str
    extent: int

    def __repr__(self):
        return self.name


@_expr
class FloorDiv:
    x: "Lin"
    c: int

    def __repr__(self):
        return f"({self.x} // {self.c})"


@_expr
class Mod:
    x: "Lin"
    c: int

    def __repr__(self):
        return f"({self.x} % {self.c})"


@_expr
class Clamp:
    x: "Lin"
    lo: int
    hi: int   # inclusive

    def __repr__(self):
        return f"clamp({self.x}, {self.lo}, {self.hi})"


@_expr
class ValueIndex:
    """A data-dependent index: `value` (an integer value expression) taken modulo
    `size` the Python way (so -1 is the last element); a value outside [-size, size)
    is an error the kernel reports through its status word."""
    value: object
    size: int

    def __repr__(self):
        return f"idx({self.value!r}, {self.size})"


@_expr
class Lin:
    const: int
    terms: tuple  # ((atom, coeff), ...) sorted by repr, coeff != 0

    def __repr__(self):
        parts = [(f"{c}*{a!r}" if c != 1 else repr(a)) for a, c in self.terms]
        if self.const or not parts:
            parts.append(str(self.const))
        return " + ".join(parts)

    # -- arithmetic
    def __add__(self, other):
        other = lin(other)
        acc = dict(self.terms)
        for a, c in other.terms:
            acc[a] = acc.get(a, 0) + c
        return _normalize(self.const + other.const, acc)

    __radd__ = __add__

    def __sub__(self, other):
        return self + lin(other) * -1

    def __mul__(self, k: int):
        if not isinstance(k, int):
            raise TypeError("index expressions are multiplied by int constants only")
        if k == 0:
            return ZERO
        return Lin(self.const * k, tuple((a, c * k) for a, c in self.terms))

    __rmul__ = __mul__

    def __floordiv__(self, c: int):
        return floordiv(self, c)

    def __mod__(self, c: int):
        return mod(self, c)

    @property
    def is_const(self):
        return not self.terms

    def bounds(self):
        lo = hi = self.const
        for a, c in self.terms:
            alo, ahi = atom_bounds(a)
            if c > 0:
                lo, hi = lo + c * alo, hi + c * ahi
            else:
                lo, hi = lo + c * ahi, hi + c * alo
        return lo, hi

    def atoms(self):
        """Every atom inside, recursively (for checks such as 'has a division')."""
        for a, _ in self.terms:
            yield a
            if isinstance(a, (FloorDiv, Mod, Clamp)):
                yield from a.x.atoms()


ZERO = Lin(0, ())


def lin(x) -> Lin:
    if isinstance(x, Lin):
        return x
    if isinstance(x, int):
        return Lin(x, ())
    return Lin(0, ((x, 1),))


def atom_bounds(a):
    if isinstance(a, Var):
        return 0, max(a.extent - 1, 0)
    if isinstance(a, FloorDiv):
        lo, hi = a.x.bounds()
        return lo // a.c, hi // a.c
    if isinstance(a, Mod):
        lo, hi = a.x.bounds()
        if 0 <= lo and hi < a.c:
            return lo, hi
        return 0, a.c - 1
    if isinstance(a, Clamp):
        return a.lo, a.hi
    if isinstance(a, ValueIndex):
        return 0, max(a.size - 1, 0)
    raise TypeError(a)


def _normalize(const, acc: dict) -> Lin:
    acc = {a: c for a, c in acc.items() if c != 0}
    # c*k*(x // c) + k*(x % c) == k*x : undo the division a reshape introduced.
    changed = True
    while changed:
        changed = False
        for a, k in list(acc.items()):
            if isinstance(a, FloorDiv) and a in acc:
                m = mod(a.x, a.c)
                if not isinstance(m, Lin) or len(m.terms) != 1 or m.const:
                    continue
                matom, mcoeff = m.terms[0]
                if mcoeff != 1 or matom not in acc or k % a.c:
                    continue
                kk = k // a.c
                if acc[matom] != kk:
                    continue
                del acc[a]
                del acc[matom]
                rest = a.x * kk
                const += rest.const
                for b, c in rest.terms:
                    acc[b] = acc.get(b, 0) + c
                acc = {b: c for b, c in acc.items() if c != 0}
                changed = True
                break
    terms = tuple(sorted(acc.items(), key=lambda t: _order_key(t[0])))
    return Lin(const, terms)


def _order_key(atom):
    """Deterministic (across processes: cache keys print these) order of atoms; the
    repr is computed once per atom object."""
    k = atom.__dict__.get("_key")
    if k is None:
        k = repr(atom)
        object.__setattr__(atom, "_key", k)
    return k


def floordiv(x, c: int) -> Lin:
    x = lin(x)
    if c <= 0:
        raise ValueError("floordiv by a non-positive constant")
    if c == 1:
        return x
    # Pull out the part divisible by c: (c*q + r) // c == q + r // c.
    q_terms, r_terms = {}, {}
    for a, k in x.terms:
        (q_terms if k % c == 0 else r_terms)[a] = k
    q = _normalize(x.const // c, {a: k // c for a, k in q_terms.items()})
    r = _normalize(x.const % c, r_terms)
    lo, hi = r.bounds()
    if 0 <= lo and hi < c:
        return q
    if r.is_const:
        return q + r.const // c
    split = _split_by_divisor(r, c)
    if split is not None:   # (k*s + small) // c == s // (c/k) when 0 <= small < k, k | c
        k, s, _ = split
        return q + floordiv(s, c // k)
    return q + lin(FloorDiv(r, c))


def mod(x, c: int) -> Lin:
    x = lin(x)
    if c <= 0:
        raise ValueError("mod by a non-positive constant")
    if c == 1:
        return ZERO
    r_terms = {}
    for a, k in x.terms:
        if k % c:
            r_terms[a] = k % c
    r = _normalize(x.const % c, r_terms)
    lo, hi = r.bounds()
    if 0 <= lo and hi < c:
        return r
    if r.is_const:
        return lin(r.const % c)
    split = _split_by_divisor(r, c)
    if split is not None:   # (k*s + small) % c == k*(s % (c/k)) + small
        k, s, small = split
        return mod(s, c // k) * k + small
    # (x % a) % c == x % c when c divides a
    if len(r.terms) == 1 and not r.const and r.terms[0][1] == 1 and \
            isinstance(r.terms[0][0], Mod) and r.terms[0][0].c % c == 0:
        return mod(r.terms[0][0].x, c)
    return lin(Mod(r, c))


def _split_by_divisor(r: Lin, c: int):
    """(k, s, small) with r == k*s + small, k a divisor of c (1 < k < c) and small in
    [0, k), or None. A reshape that merges dims and splits them again at another
    boundary leaves such an index: (14*h + w) // 28 with w < 14 is h // 2, since the
    division by the tile size only sees whole multiples of 14."""
    for k in sorted({abs(k) for _, k in r.terms}, reverse=True):
        if k <= 1 or k >= c or c % k:
            continue
        big = {a: kk // k for a, kk in r.terms if kk % k == 0}
        small = _normalize(r.const, {a: kk for a, kk in r.terms if kk % k})
        lo, hi = small.bounds()
        if 0 <= lo and hi < k and big:
            return k, _normalize(0, big), small
    return None


def clamp(x, lo: int, hi: int) -> Lin:
    x = lin(x)
    xlo, xhi = x.bounds()
    if lo <= xlo and xhi <= hi:
        return x
    if x.is_const:
        return lin(min(max(x.const, lo), hi))
    return lin(Clamp(x, lo, hi))


def delinearize(flat: Lin, shape) -> tuple:
    """Row-major index tuple of `flat` within `shape`."""
    if any(n == 0 for n in shape):   # an empty domain: no point is ever indexed
        return tuple(ZERO for _ in shape)
    out, stride = [], 1
    for n in reversed(shape):
        out.append(floordiv(mod(flat, n * stride), stride) if n != 1 else ZERO)
        stride *= n
    return tuple(reversed(out))


def linearize(index, shape) -> Lin:
    """The row-major flat position of `index` within `shape`.

    Memoized: code generation asks for the flat index of every load and store several
    times (buffer bases, the body's structural key, the address itself), and each
    answer is a chain of simplifying additions; the expressions are immutable and
    hash in O(1) (see `_expr`), so a lookup costs far less than a rebuild."""
    return _linearize(tuple(index), tuple(shape))


@functools.lru_cache(maxsize=1 << 15)
def _linearize(index: tuple, shape: tuple) -> Lin:
    flat, stride = ZERO, 1
    for i, n in zip(reversed(index), reversed(shape)):
        flat = flat + lin(i) * stride
        stride *= n
    return flat


# ----------------------------------------------------------------------------- values

@_expr
class Load:
    buffer: Buffer
    index: tuple   # one Lin per dim of the buffer

    def __repr__(self):
        return f"{self.buffer.name}[{', '.join(map(repr, self.index))}]"


@_expr
class Const:
    value: object
    dtype: dt.DType

    def __repr__(self):
        return f"{self.value!r}:{self.dtype.short}"

    # Equal by the value's bits, not ==: -0.0 == 0.0, so code generators that memoise
    # values by expression gave a -0.0 constant the +0.0 one's register (untouched
    # elements of a write into zeros came out -0.0); and a NaN is then equal to itself.
    def _key(self):
        return type(self.value), repr(self.value), self.dtype

    def __eq__(self, other):
        return type(other) is Const and self._key() == other._key()

    def __hash__(self):
        return hash(self._key())


@_expr
class IndexValue:
    """The integer index `index` as a value of `dtype` (iota)."""
    index: Lin
    dtype: dt.DType

    def __repr__(self):
        return f"({self.index}):{self.dtype.short}"


@_expr
class InRange:
    """bool: lo <= index < hi and index % step == lo % step (pad/concat bounds)."""
    index: Lin
    lo: int
    hi: int
    step: int = 1
    dtype: dt.DType = dt.bool_

    def __repr__(self):
        s = f" step {self.step}" if self.step != 1 else ""
        return f"({self.index}) in [{self.lo}, {self.hi}){s}"


@_expr
class Compute:
    op: str
    args: tuple
    dtype: dt.DType
    attrs: tuple = ()   # frozen (key, value) pairs

    def attr(self, key, default=None):
        for k, v in self.attrs:
            if k == key:
                return v
        return default

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.attrs if k != "dtype")
        return f"{self.op}({', '.join(map(repr, self.args))}{extra}):{self.dtype.short}"


@_expr
class AccRef:
    """The result of a Reduce stage of the same kernel, at the current outer point."""
    name: str
    dtype: dt.DType

    def __repr__(self):
        return f"${self.name}"


@_expr
class RandValue:
    """Counter-based random value number `flat` of a draw (see ops.rng_bits)."""
    seed: object
    offset: object
    flat: Lin
    normal: bool
    dtype: dt.DType

    def __repr__(self):
        return f"{'randn' if self.normal else 'rand'}({self.seed!r}, {self.offset!r}, {self.flat})"


@_expr
class CheckIndex:
    """`value`, computed after range-checking the data-dependent `index` (a gather from
    a value that does not depend on its index must still report a bad index)."""
    value: object
    index: Lin

    @property
    def dtype(self):
        return value_dtype(self.value)

    def __repr__(self):
        return f"check({self.index}; {self.value!r})"


def value_dtype(v) -> dt.DType:
    if isinstance(v, Load):
        return v.buffer.dtype
    return v.dtype


def walk_values(v):
    """Every value expression inside `v` (including `v`), indices' values included."""
    stack = [v]
    seen = set()
    while stack:
        x = stack.pop()
        if id(x) in seen:
            continue
        seen.add(id(x))
        yield x
        if isinstance(x, Compute):
            stack.extend(x.args)
        elif isinstance(x, CheckIndex):
            stack.append(x.value)
        elif isinstance(x, RandValue):
            stack.extend([x.seed, x.offset])
        idx = x.index if isinstance(x, (Load, IndexValue, InRange, CheckIndex)) else \
            (x.flat,) if isinstance(x, RandValue) else ()
        if isinstance(idx, Lin):
            idx = (idx,)
        for i in idx:
            for a in i.atoms():
                if isinstance(a, ValueIndex):
                    stack.append(a.value)


# Elementwise ops that cost several times a multiply: fusion counts them when deciding
# whether to recompute a value, code generators when deciding whether to keep one.
TRANSCENDENTAL = frozenset({"exp", "log", "log1p", "expm1", "sin", "cos", "tanh", "sigmoid",
                            "gelu", "silu", "erf", "pow", "sqrt", "rsqrt", "tan", "asin",
                            "acos", "atan", "sinh", "cosh", "asinh", "acosh", "atanh",
                            "log2", "log10", "exp2", "atan2", "hypot", "fmod"})


def substitute(v, table: dict):
    """`v` with every sub-expression that is a key of `table` replaced by its value, or
    None when one of them sits inside an index (a data-dependent address), where it
    cannot be replaced."""
    if v in table:
        return table[v]
    if isinstance(v, Compute):
        args = [substitute(a, table) for a in v.args]
        return None if any(a is None for a in args) else \
            Compute(v.op, tuple(args), v.dtype, v.attrs)
    if isinstance(v, CheckIndex):
        inner = substitute(v.value, table)
        return None if inner is None else CheckIndex(inner, v.index)
    if any(x in table for x in walk_values(v)):
        return None
    return v


def bind(v, env: dict, memo=None):
    """`v` with the loop variables in `env` (Var -> int) replaced by constants, in its
    indices too (an unrolled loop's body at one point)."""
    memo = {} if memo is None else memo
    key = id(v)
    if key in memo:
        return memo[key]

    def idx(x):
        out = lin(x.const)
        for a, c in x.terms:
            out = out + atom(a) * c
        return out

    def atom(a):
        if isinstance(a, Var):
            return lin(env[a]) if a in env else lin(a)
        if isinstance(a, FloorDiv):
            return floordiv(idx(a.x), a.c)
        if isinstance(a, Mod):
            return mod(idx(a.x), a.c)
        if isinstance(a, Clamp):
            return clamp(idx(a.x), a.lo, a.hi)
        if isinstance(a, ValueIndex):
            return lin(ValueIndex(bind(a.value, env, memo), a.size))
        raise TypeError(a)

    if isinstance(v, Load):
        r = Load(v.buffer, tuple(idx(i) for i in v.index))
    elif isinstance(v, IndexValue):
        r = IndexValue(idx(v.index), v.dtype)
    elif isinstance(v, InRange):
        r = InRange(idx(v.index), v.lo, v.hi, v.step, v.dtype)
    elif isinstance(v, Compute):
        r = Compute(v.op, tuple(bind(a, env, memo) for a in v.args), v.dtype, v.attrs)
    elif isinstance(v, CheckIndex):
        r = CheckIndex(bind(v.value, env, memo), idx(v.index))
    elif isinstance(v, RandValue):
        r = RandValue(bind(v.seed, env, memo), bind(v.offset, env, memo), idx(v.flat),
                      v.normal, v.dtype)
    else:           # Const, AccRef
        r = v
    memo[key] = r
    return r


# ----------------------------------------------------------------------------- stages

@dataclass
class Reduce:
    acc: str
    op: str            # sum prod max min argmax argmin
    inner: tuple       # Vars
    value: object
    dtype: dt.DType    # result dtype (int64 for arg reductions)

    def __repr__(self):
        return f"${self.acc} = {self.op} over {list(self.inner)} of {self.value!r}"


@dataclass
class Store:
    buffer: Buffer
    index: tuple       # Lin per buffer dim
    inner: tuple       # Vars
    value: object
    accumulate: str = ""        # "", or the combine op: sum prod max min

    def __repr__(self):
        op = {"": "=", "sum": "+=", "prod": "*=", "max": "max=", "min": "min="}[self.accumulate]
        loops = f"for {list(self.inner)}: " if self.inner else ""
        return f"{loops}{self.buffer.name}[{', '.join(map(repr, self.index))}] {op} {self.value!r}"


def stage_loads(st) -> list:
    """The loads of a stage: of its value, then of a data-dependent store index."""
    loads = [v for v in walk_values(st.value) if isinstance(v, Load)]
    if isinstance(st, Store):
        for i in st.index:
            for a in i.atoms():
                if isinstance(a, ValueIndex):
                    loads += [v for v in walk_values(a.value) if isinstance(v, Load)]
    return loads


@dataclass
class Kernel:
    name: str
    outer: tuple                 # Vars; outer[0] is the one split across threads
    stages: list
    parallel: bool = True
    nodes: list = field(default_factory=list)   # names of the IR values it computes

    kind = "loops"

    def reads(self):
        out = []
        for st in self.stages:
            for ld in stage_loads(st):
                if ld.buffer not in out:
                    out.append(ld.buffer)
        return out

    def writes(self):
        out = []
        for st in self.stages:
            if isinstance(st, Store) and st.buffer not in out:
                out.append(st.buffer)
        return out

    def work(self):
        """Rough element count, to decide whether threads pay off."""
        n = 1
        for v in self.outer:
            n *= v.extent
        inner = 0
        for st in self.stages:
            m = 1
            for v in st.inner:
                m *= v.extent
            inner += m
        return n * max(inner, 1)

    def __str__(self):
        head = f"kernel {self.name}" + (f" over {[f'{v.name}<{v.extent}' for v in self.outer]}"
                                        if self.outer else "") + \
            ("" if self.parallel else " (serial)")
        lines = [head]
        for st in self.stages:
            inner = "".join(f" {v.name}<{v.extent}" for v in st.inner)
            lines.append(f"  {st!r}" + (f"   [inner{inner}]" if inner and isinstance(st, Reduce) else ""))
        return "\n".join(lines)


@_expr
class StridedView:
    """Elements buffer[offset + sum(i_k * strides[k])] for an index in `shape`."""
    buffer: Buffer
    offset: int
    strides: tuple
    shape: tuple


@dataclass
class MatmulKernel:
    """out[b..., m, n] = sum_k a[b..., m, k] * bmat[b..., k, n] (GEMM per batch point).

    With `accumulate`, out already holds an addend (an earlier kernel stored it) and the
    kernel adds `alpha` times the product to it: BLAS's beta = 1 (an `addmm` node).
    `alpha` is a scalar value expression (constants, loads of 0-d buffers and the
    elementwise ops over them) evaluated once per call."""
    name: str
    a: StridedView
    b: StridedView
    out: Buffer
    dtype: dt.DType
    nodes: list = field(default_factory=list)
    alpha: object = None            # None: 1
    accumulate: bool = False

    kind = "matmul"
    parallel = False

    def reads(self):
        bufs = [self.a.buffer] + ([self.b.buffer] if self.b.buffer is not self.a.buffer else [])
        extra = [v.buffer for v in
                 (walk_values(self.alpha) if self.alpha is not None else ())
                 if isinstance(v, Load)] + ([self.out] if self.accumulate else [])
        for buf in extra:
            if all(buf is not x for x in bufs):
                bufs.append(buf)
        return bufs

    def writes(self):
        return [self.out]

    def work(self):
        m, k = self.a.shape[-2:]
        n = self.b.shape[-1]
        batch = 1
        for s in self.a.shape[:-2]:
            batch *= s
        return batch * m * n * k

    def __str__(self):
        def view(v):
            return f"{v.buffer.name}[off {v.offset}, strides {list(v.strides)}, shape {list(v.shape)}]"
        if not self.accumulate and self.alpha is None:
            return f"kernel {self.name} matmul\n  {self.out.name} = {view(self.a)} @ {view(self.b)}"
        scale = "" if self.alpha is None else f"{self.alpha} * "
        return (f"kernel {self.name} matmul\n  {self.out.name} "
                f"{'+=' if self.accumulate else '='} {scale}{view(self.a)} @ {view(self.b)}")


@dataclass
class SortKernel:
    """out[row..., :] = the stable sort order of x[row..., :] along `dim` (argsort).

    `x` is a strided view of a buffer with out's shape (a permuted or sliced operand is
    strides, never a copy); `out` is a contiguous int64 buffer. Rows (every point of the
    dims other than `dim`, in row-major order) are independent: `outer` is one loop
    over them, which the executor may split across threads. The order is PyTorch's:
    ascending or descending, ties in index order, NaN above every number, -0.0 == 0.0
    (kernel-independent keys: ir/ops.py `sort_keys`)."""
    name: str
    x: StridedView
    out: Buffer
    dim: int
    descending: bool
    dtype: dt.DType          # x's dtype
    nodes: list = field(default_factory=list)

    kind = "sort"
    parallel = True

    @property
    def size(self):
        """Elements per row (the sorted dim's extent)."""
        return self.out.shape[self.dim] if self.out.shape else 1

    @property
    def outer(self):
        rows = self.out.numel // self.size if self.size else 0
        return (Var(f"{self.name}row", rows),)

    def reads(self):
        return [self.x.buffer]

    def writes(self):
        return [self.out]

    def work(self):
        """Comparisons, about n log2 n per row."""
        n = self.size
        return self.outer[0].extent * n * max(1, (n - 1).bit_length())

    def __str__(self):
        v = self.x
        return (f"kernel {self.name} argsort over {[f'{self.outer[0].name}<{self.outer[0].extent}']}"
                f"\n  {self.out.name} = argsort({v.buffer.name}[off {v.offset}, strides "
                f"{list(v.strides)}, shape {list(v.shape)}], dim={self.dim}, "
                f"{'descending' if self.descending else 'ascending'}, stable)")
