"""Triton lowering of `SortKernel` (argsort, and so sort/topk/kthvalue/median on a GPU).

Every element becomes a (key, index) pair: `key` a signed integer whose order is the
sort order, `index` the element's position in its row. Pairs compare lexicographically
(key, then index), so no two are equal: the sorted order is unique, and it is the
stable one. Any sorting network then gives PyTorch's stable order, for every dtype,
64-bit keys included (a packed key << 32 | index word only works for 32-bit keys).

Keys (the order of ir/ops.py `sort_keys`) come from the value's bits by integer
operations only, so no float comparison, conversion or -x can differ between Triton
versions or its interpreter (which flushes bfloat16 subnormals when it widens them):
float bits (16-bit floats' own 16, sign-extended) go from sign-magnitude to two's
complement, `-(bits & 0x7F..)` for negative numbers, which makes -0.0 and +0.0 the same
key 0; every NaN gets the largest key; integers are their own key, uint8 and bool
widened. Descending flips every bit (`key ^ -1` reverses the order, keeps ties tied).

Rows of up to ROW_LIMIT elements sort in registers, BO rows per program: the row is
padded to a power of two P with pairs (largest key, position >= n), which sort after
every real element, and a bitonic network runs over the [BO, P] tile reshaped to a
hypercube [BO, 2, ..., 2], as Triton's tl.sort does for single values. Each
compare-exchange step gets every element's partner along one size-2 axis as the
axis's sum minus the element (exact: integer sums wrap) and keeps the smaller or the
larger pair. (Triton's own partner, x ^ xor_sum(x), compiles the same, but its
interpreter runs xor_sum element by element in Python: 20-35x slower tests.)

Longer rows are sorted in place in the int64 output, which needs no scratch memory:
  1. chunks of ROW_LIMIT elements sort in registers (the launch above, one program per
     chunk), each ascending;
  2. bitonic merge phases k = 2*ROW_LIMIT, ..., P over the row padded to P: the first
     step of a phase compares position i of each k-block with its mirror image
     (k - 1 - i), the following ones i with i + j for j = k/4, ..., ROW_LIMIT, one
     launch per step, one lane per compared pair, over global memory; then one launch
     finishes the steps j < ROW_LIMIT in registers, chunk by chunk.
Memory holds only indices: each step reads the two indices of a pair, gathers their
values from the input (L2-resident for any row that fits the cache) and recomputes the
keys. Every comparator of this network puts the smaller pair at the lower position, so
padding (the largest pairs, at the positions >= n) never moves: a pair whose upper
position is >= n is skipped and nothing past n is stored. Every launch is idempotent
(a sorted chunk or an ordered pair stays as it is), so the autotuner may rerun them.

Sizes (H200, Triton 3.6; docs/backends.md has the numbers): 4 elements of a tile per
thread ran 1.2-1.6x faster than 8 and 1.7-2.3x faster than 16, so a program of the
most threads a block has (32 warps) sorts ROW_LIMIT = 4096 elements. Compiled for
sm_90 that takes 59-64 registers a thread (a float64 descending sort: 8 bytes of
stack), right at the 64 that 1024 threads leave; 8192 elements take 127-175 registers
at 8 or 16 warps and 19-55 s to compile, 16384 spill. Each launch has one
configuration: the others measured within 10% (short rows, merge steps) or slower,
and autotuning would compile every candidate (about 12 s for a chunk sort of 4096).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

from .. import kernel_ir as K
from . import configs as C
from .emitter import Function

# elements of a tile per thread, and the most warps a program (a thread block) has
ELEMENTS_PER_THREAD = 4
MAX_WARPS = 32
# The longest row one program sorts in registers, and the chunk length of longer rows.
ROW_LIMIT = MAX_WARPS * 32 * ELEMENTS_PER_THREAD
# elements of a [BO, P] tile per program when rows are short (several rows a program)
TILE_ELEMENTS = 2048

# The bitonic network over (key, index) pairs, shared by every sort launch of a module.
NETWORK = '''@triton.jit
def _gc_sort_exchange(key, idx, flip, axis: tl.constexpr, n_dims: tl.constexpr):
    """One compare-exchange step between the two halves of hypercube axis `axis` (from
    the innermost): the left element keeps the smaller (key, idx) pair, the right one
    the larger, and the other way round where `flip` is 1."""
    other_key = tl.sum(key, n_dims - 1 - axis, True) - key
    other_idx = tl.sum(idx, n_dims - 1 - axis, True) - idx
    right = tl.reshape(tl.arange(0, 2), [1] * (n_dims - 1 - axis) + [2] + [1] * axis)
    above = (key > other_key) | ((key == other_key) & (idx > other_idx))
    take = above != ((flip ^ right) != 0)
    return tl.where(take, other_key, key), tl.where(take, other_idx, idx)


@triton.jit
def _gc_sort_merge(key, idx, stage: tl.constexpr, alternate: tl.constexpr,
                   n_dims: tl.constexpr):
    """Merge bitonic blocks of 2**stage elements: ascending, or (alternate) ascending
    and descending in turn, as the next stage of a bitonic sort needs."""
    if alternate:
        flip = tl.reshape(tl.arange(0, 2), [1] * (n_dims - 1 - stage) + [2] + [1] * stage)
    else:
        flip = 0
    for i in tl.static_range(stage):
        key, idx = _gc_sort_exchange(key, idx, flip, stage - 1 - i, n_dims)
    return key, idx


@triton.jit
def _gc_sort_rows(key, idx, log_n: tl.constexpr):
    """Sort each row of the [rows, 2**log_n] tiles key, idx by (key, idx), ascending."""
    h_key = tl.reshape(key, [key.shape[0]] + [2] * log_n)
    h_idx = tl.reshape(idx, [key.shape[0]] + [2] * log_n)
    for stage in tl.static_range(1, log_n + 1):
        h_key, h_idx = _gc_sort_merge(h_key, h_idx, stage, stage < log_n, log_n + 1)
    return tl.reshape(h_key, key.shape), tl.reshape(h_idx, key.shape)


@triton.jit
def _gc_sort_finish(key, idx, log_n: tl.constexpr):
    """The last log_n steps of an ascending bitonic merge on each row of [rows,
    2**log_n] (half-cleaners of strides 2**(log_n-1), ..., 1)."""
    h_key = tl.reshape(key, [key.shape[0]] + [2] * log_n)
    h_idx = tl.reshape(idx, [key.shape[0]] + [2] * log_n)
    h_key, h_idx = _gc_sort_merge(h_key, h_idx, log_n, False, log_n + 1)
    return tl.reshape(h_key, key.shape), tl.reshape(h_idx, key.shape)
'''
# Launch texts name the network's digest, so that a changed network changes their
# cache keys (compiled cubins are keyed by a launch's own text and the prelude only).
NETWORK_DIGEST = hashlib.sha256(NETWORK.encode()).hexdigest()[:16]


def _log2(p: int) -> int:
    return p.bit_length() - 1


@dataclass
class _Geometry:
    """How a SortKernel's rows lie in memory, and how they are cut for the network."""
    n: int              # elements per row
    rows: int
    padded: int         # n rounded up to a power of two (P)
    chunk: int          # elements sorted in registers per unit (P, or ROW_LIMIT)
    chunks: int         # units per row
    x_dim_stride: int
    out_dim_stride: int
    index_type: str     # for addresses
    position_type: str  # for positions within a row

    @property
    def units(self):
        return self.rows * self.chunks


def sort_kernel(gen, k: K.SortKernel):
    """Launches for SortKernel `k`: one in-register sort, plus merge steps when its rows
    are longer than ROW_LIMIT. `gen` is the codegen.Generator (finish, index_type)."""
    n, rows = k.size, k.outer[0].extent
    if rows * n == 0:
        return
    padded = C.next_pow2(n)
    chunk = min(padded, ROW_LIMIT)
    shape = k.out.shape
    # every address a lane forms, padding lanes included, must fit the index type
    x_reach = k.x.offset + sum((s - 1) * abs(st) for s, st in zip(shape, k.x.strides))
    x_dim_stride = k.x.strides[k.dim] if shape else 0
    out_dim_stride = k.out.strides()[k.dim] if shape else 0
    reach = [x_reach + padded * abs(x_dim_stride), k.out.numel + padded * out_dim_stride,
             rows * padded]
    geo = _Geometry(n, rows, padded, chunk, -(-n // chunk), x_dim_stride, out_dim_stride,
                    gen.index_type(k, reach),
                    "tl.int32" if padded <= 1 << 31 else "tl.int64")
    gen.out.functions.setdefault("_gc_sort_network", NETWORK)
    gen.out.comments.setdefault("_gc_sort_network",
                                f"bitonic network over (key, index) pairs ({NETWORK_DIGEST})")
    _chunk_launch(gen, k, geo, from_output=False)
    stride = 2 * chunk
    while stride <= padded:            # phase: blocks of `stride` become sorted
        _step_launch(gen, k, geo, stride // 2, mirror=True)
        j = stride // 4
        while j >= chunk:
            _step_launch(gen, k, geo, j, mirror=False)
            j //= 2
        _chunk_launch(gen, k, geo, from_output=True)
        stride *= 2


# ----------------------------------------------------------------------------- pieces

def _row_offsets(fn: Function, k: K.SortKernel, geo: _Geometry, row: str):
    """Expressions for the first element of row `row` in x and in out (the row's digits
    over the dims other than k.dim, in row-major order)."""
    shape = k.out.shape
    out_strides = k.out.strides()
    x_terms = [str(k.x.offset)] if k.x.offset else []
    out_terms = []
    inner = 1
    for a in reversed([a for a in range(len(shape)) if a != k.dim]):
        if shape[a] > 1:
            digit = row if inner == 1 else f"({row} // {inner})"
            if inner * shape[a] < geo.rows:
                digit = f"{digit} % {shape[a]}"
            if digit != row:
                name = fn.fresh("d")
                fn.line(f"{name} = {digit}")
                digit = name
            if k.x.strides[a]:
                x_terms.append(_scaled(digit, k.x.strides[a]))
            out_terms.append(_scaled(digit, out_strides[a]))
        inner *= shape[a]
    return " + ".join(x_terms) or "0", " + ".join(out_terms) or "0"


def _scaled(expr: str, stride: int) -> str:
    return expr if stride == 1 else f"{expr} * {stride}"


# float dtype -> (bits, mask of the magnitude bits, the bits of +inf); a larger
# magnitude is a NaN
FLOAT_BITS = {"f16": (16, "0x7FFF", "0x7C00"), "bf16": (16, "0x7FFF", "0x7F80"),
              "f32": (32, "0x7FFFFFFF", "0x7F800000"),
              "f64": (64, "_GC_I64_MAX", "0x7FF0000000000000")}


def _key(fn: Function, value: str, k: K.SortKernel) -> str:
    """Lines computing the sort key of the loaded `value` (module docstring); returns
    its name (int32 for types of up to 32 bits, int64 for 64-bit ones)."""
    d = k.dtype.short
    key = fn.fresh("key")
    if d in FLOAT_BITS:
        width, magnitude_mask, infinity = FLOAT_BITS[d]
        bits, magnitude = fn.fresh("bits"), fn.fresh("mag")
        if width == 16:    # sign-extended: negative numbers stay negative
            fn.line(f"{bits} = {value}.to(tl.int16, bitcast=True).to(tl.int32)")
        else:
            fn.line(f"{bits} = {value}.to(tl.int{width}, bitcast=True)")
        fn.line(f"{magnitude} = {bits} & {magnitude_mask}")
        fn.line(f"{key} = tl.where({bits} < 0, 0 - {magnitude}, {bits})")
        fn.line(f"{key} = tl.where({magnitude} > {infinity}, {magnitude_mask}, {key})")
    elif d in ("i32", "i64"):
        fn.line(f"{key} = {value}")
    else:   # u8, b8
        fn.line(f"{key} = {value}.to(tl.int32)")
    if k.descending:
        fn.line(f"{key} = {key} ^ -1")
    return key


def _key_max(k: K.SortKernel) -> str:
    return "_GC_I64_MAX" if k.dtype.short in ("i64", "f64") else "0x7FFFFFFF"


def _chunk_launch(gen, k: K.SortKernel, geo: _Geometry, from_output: bool):
    """Program p sorts units p*BO .. p*BO+BO-1 (a unit: one chunk of one row) in
    registers. `from_output`: the unit's pairs are the indices already in out (a merge
    phase's last steps, `_gc_sort_finish`), else x's elements in order (a full sort)."""
    fn = Function(geo.index_type)
    ix, pt = geo.index_type, geo.position_type
    p_x, p_out = fn.ptr(k.x.buffer), fn.ptr(k.out)
    fn.line("pid = tl.program_id(0)")
    fn.line(f"unit = tl.arange(0, BO)[:, None].to({ix}) + pid.to({ix}) * BO")
    if geo.chunks > 1:
        fn.line(f"row = unit // {geo.chunks}")
        fn.line(f"pos = tl.arange(0, {geo.chunk})[None, :].to({ix}) + "
                f"(unit % {geo.chunks}) * {geo.chunk}")
    else:
        fn.line("row = unit")
        fn.line(f"pos = tl.arange(0, {geo.chunk})[None, :].to({ix})")
    fn.line(f"valid = (unit < {geo.units}) & (pos < {geo.n})")
    x_row, out_row = _row_offsets(fn, k, geo, "row")
    out_at = f"{p_out} + {out_row} + {_scaled('pos', geo.out_dim_stride)}"
    if geo.n == 1:     # nothing to sort
        fn.line(f"tl.store({out_at}, tl.zeros([BO, 1], tl.int64), mask=valid)")
    else:
        if from_output:
            fn.line(f"idx = tl.load({out_at}, mask=valid, other=0).to({pt})")
            fn.line(f"idx = tl.where(valid, idx, pos.to({pt}))")
            x_at = _scaled("idx" if pt == ix else f"idx.to({ix})", geo.x_dim_stride)
        else:
            fn.line(f"idx = tl.broadcast_to(pos.to({pt}), [BO, {geo.chunk}])")
            x_at = _scaled("pos", geo.x_dim_stride)
        fn.line(f"value = tl.load({p_x} + {x_row} + {x_at}, mask=valid, other=0)")
        key = _key(fn, "value", k)
        fn.line(f"{key} = tl.where(valid, {key}, {_key_max(k)})")
        network = "_gc_sort_finish" if from_output else "_gc_sort_rows"
        fn.line(f"{key}, idx = {network}({key}, idx, {_log2(geo.chunk)})"
                f"  # network {NETWORK_DIGEST}")
        fn.line(f"tl.store({out_at}, idx.to(tl.int64), mask=valid)")
    what = (f"merge steps of stride < {geo.chunk}, in registers" if from_output else
            f"sort of {'chunks of ' if geo.chunks > 1 else ''}{geo.chunk} in registers")
    gen.finish(fn, k.name, "sort", ("BO",), _chunk_configs(geo), ("tiled", geo.units),
               geo.units * geo.chunk * _log2(geo.chunk) ** 2 // 2,
               f"{k.name}: argsort of {geo.rows} row(s) of {geo.n}: {what}")


def _chunk_configs(geo: _Geometry) -> list:
    """One configuration: BO units per program, about TILE_ELEMENTS elements (at least
    one unit), ELEMENTS_PER_THREAD elements per thread (module docstring)."""
    bo = max(1, min(C.next_pow2(geo.units), TILE_ELEMENTS // geo.chunk))
    warps = max(1, min(MAX_WARPS, bo * geo.chunk // (32 * ELEMENTS_PER_THREAD)))
    return [C.Config((("BO", bo),), warps)]


def _step_launch(gen, k: K.SortKernel, geo: _Geometry, j: int, mirror: bool):
    """One compare-exchange step over global memory: lane c compares the pair (lo, hi)
    of row c // (P/2): hi = lo + j, or with `mirror` hi = lo's mirror image in its
    block of 2j (the first step of a merge phase). The smaller pair goes to lo."""
    fn = Function(geo.index_type)
    ix = geo.index_type
    p_x, p_out = fn.ptr(k.x.buffer), fn.ptr(k.out)
    half = geo.padded // 2
    fn.line("pid = tl.program_id(0)")
    fn.line(f"c = tl.arange(0, BLOCK).to({ix}) + pid.to({ix}) * BLOCK")
    fn.line(f"row = c // {half}")
    fn.line(f"t = c % {half}")
    fn.line(f"block = (t // {j}) * {2 * j}")
    fn.line(f"lo = block + t % {j}")
    fn.line(f"hi = block + {2 * j - 1} - t % {j}" if mirror else f"hi = lo + {j}")
    fn.line(f"live = (c < {geo.rows * half}) & (hi < {geo.n})")
    x_row, out_row = _row_offsets(fn, k, geo, "row")
    keys = []
    for side in ("lo", "hi"):
        fn.line(f"{side}_at = {p_out} + {out_row} + {_scaled(side, geo.out_dim_stride)}")
        fn.line(f"{side}_idx = tl.load({side}_at, mask=live, other=0)")
        x_at = _scaled(f"{side}_idx.to({ix})", geo.x_dim_stride)
        fn.line(f"{side}_value = tl.load({p_x} + {x_row} + {x_at}, mask=live, other=0)")
        keys.append(_key(fn, f"{side}_value", k))
    lo_key, hi_key = keys
    fn.line(f"swap = live & (({lo_key} > {hi_key}) | "
            f"(({lo_key} == {hi_key}) & (lo_idx > hi_idx)))")
    fn.line("tl.store(lo_at, hi_idx, mask=swap)")
    fn.line("tl.store(hi_at, lo_idx, mask=swap)")
    pairs = geo.rows * half
    gen.finish(fn, k.name, "sort", ("BLOCK",), C.flat(pairs)[:1], ("flat", pairs), pairs,
               f"{k.name}: merge step of stride {j}{' (mirrored)' if mirror else ''} over "
               f"{geo.rows} row(s) of {geo.n}, in memory")

