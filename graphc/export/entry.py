"""The exported library's C entry points, generated as LLVM IR next to the kernels.

The handle (`<name>_model *`, opaque to C) is one heap block laid out as

    { ptr arena_block, i64 status, [slots x ptr] table }

`table` is the pointer table the kernels index by slot (passes/memory.py): `create`
fills the slots of temps (arena base + the planned offset, the base rounded up to 64
bytes) and of weights (the embedded weight blob + the weight's offset); `run` fills the
slots of the caller's inputs and outputs, clears `status`, calls every kernel over its
whole first outer loop in plan order (the same kernels, ranges and order the Python
executor runs, single-threaded), then copies the outputs that are not written by a
kernel (an output that is an input or a weight, or the same value returned twice).
`status` is the word kernels set when a data-dependent index is out of range or a value
`check` fails (its code, ir.ops.check_code(message), 16 and above).

Status codes (also in the header): 0 OK, 1 index out of range, 2 a NULL handle or
buffer. A handle is used by one thread at a time (its table and arena are per handle);
separate handles run concurrently.
"""
from __future__ import annotations

from llvmlite import ir

from ..backends.kernel_ir import STATUS_INDEX_OUT_OF_RANGE, STATUS_NO_MEMORY
from ..ir.ops import check_code

# The kernels' status word is returned as it is: 1, 3 and check codes are set by
# kernels, 2 by the entry point itself.
STATUS_OK, STATUS_NULL_ARGUMENT = 0, 2
STATUS_MESSAGES = {
    STATUS_OK: "ok",
    STATUS_INDEX_OUT_OF_RANGE: "an index of gather/scatter_add/indexing is out of range "
                               "for the dimension it indexes",
    STATUS_NULL_ARGUMENT: "a NULL model handle or a NULL input/output buffer",
    STATUS_NO_MEMORY: "a sort kernel could not allocate its scratch memory",
}
ARENA_ALIGN = 64

PTR = ir.PointerType()
I8, I32, I64 = ir.IntType(8), ir.IntType(32), ir.IntType(64)
VOID = ir.VoidType()


def _c64(v):
    return ir.Constant(I64, int(v))


def _c32(v):
    return ir.Constant(I32, int(v))


class EntryPoints:
    """Adds `<prefix>_create/_run/_run_arrays/_destroy/_status_message` to a module."""

    def __init__(self, program, signature, prefix, weight_offsets, weights_symbol):
        self.p = program
        self.sig = signature
        self.prefix = prefix
        self.weight_offsets = weight_offsets      # weight key -> byte offset in the blob
        self.module = program.module
        self.slots = program.memory.slots
        self.n_slots = max(len(self.slots), 1)
        self.handle_ty = ir.LiteralStructType([PTR, I64, ir.ArrayType(PTR, self.n_slots)])
        self.weights = None
        if weight_offsets:
            self.weights = ir.GlobalVariable(self.module, ir.ArrayType(I8, 0), weights_symbol)
            self.weights.linkage = "external"
        self.libc = {}

    # ------------------------------------------------------------------ helpers
    def _libc(self, name, ret, args):
        if name not in self.libc:
            self.libc[name] = self.module.globals.get(name) or \
                ir.Function(self.module, ir.FunctionType(ret, args), name)
        return self.libc[name]

    def _field(self, b, h, k):
        return b.gep(h, [_c32(0), _c32(k)], source_etype=self.handle_ty, inbounds=True)

    def _slot(self, b, h, slot):
        return b.gep(h, [_c32(0), _c32(2), _c64(slot)], source_etype=self.handle_ty,
                     inbounds=True)

    def _table(self, b, h):
        return self._slot(b, h, 0)

    # ------------------------------------------------------------------ functions
    def emit(self):
        self._create()
        self._destroy()
        run_arrays = self._run_arrays()
        self._run_typed(run_arrays)
        self._status_message()

    def _create(self):
        fn = ir.Function(self.module, ir.FunctionType(PTR, []), f"{self.prefix}_create")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        calloc = self._libc("calloc", PTR, [I64, I64])
        malloc = self._libc("malloc", PTR, [I64])
        free = self._libc("free", VOID, [PTR])
        size = 16 + 8 * self.n_slots
        h = b.call(calloc, [_c64(1), _c64(size)])
        with b.if_then(b.icmp_unsigned("==", h, ir.Constant(PTR, None)), likely=False):
            b.ret(ir.Constant(PTR, None))
        memory = self.p.memory
        if memory.arena_bytes > 0:
            raw = b.call(malloc, [_c64(memory.arena_bytes + ARENA_ALIGN - 1)])
            with b.if_then(b.icmp_unsigned("==", raw, ir.Constant(PTR, None)), likely=False):
                b.call(free, [h])
                b.ret(ir.Constant(PTR, None))
            b.store(raw, self._field(b, h, 0))
            pad = b.and_(b.sub(_c64(0), b.ptrtoint(raw, I64)), _c64(ARENA_ALIGN - 1))
            base = b.gep(raw, [pad], source_etype=I8)
            for buf, offset in memory.offsets.items():
                b.store(b.gep(base, [_c64(offset)], source_etype=I8),
                        self._slot(b, h, self.slots[buf]))
        for buf, (kind, key) in zip(self.p.plan.input_buffers, self.sig.input_sources):
            if kind == "weight":
                ptr = b.gep(self.weights, [_c64(0), _c64(self.weight_offsets[key])],
                            source_etype=self.weights.value_type)
                b.store(ptr, self._slot(b, h, self.slots[buf]))
        b.ret(h)

    def _destroy(self):
        fn = ir.Function(self.module, ir.FunctionType(VOID, [PTR]), f"{self.prefix}_destroy")
        h, = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        free = self._libc("free", VOID, [PTR])
        with b.if_then(b.icmp_unsigned("!=", h, ir.Constant(PTR, None))):
            b.call(free, [b.load(self._field(b, h, 0), typ=PTR)])
            b.call(free, [h])
        b.ret_void()

    def _run_arrays(self):
        fn = ir.Function(self.module, ir.FunctionType(I32, [PTR, PTR, PTR]),
                         f"{self.prefix}_run_arrays")
        h, inputs, outputs = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        fail = fn.append_basic_block("null_argument")
        ir.IRBuilder(fail).ret(_c32(STATUS_NULL_ARGUMENT))
        null = ir.Constant(PTR, None)

        def fail_if_null(ptr):
            ok = fn.append_basic_block("ok")
            b.cbranch(b.icmp_unsigned("==", ptr, null), fail, ok)
            b.position_at_end(ok)

        fail_if_null(h)
        sig = self.sig
        if sig.inputs:
            fail_if_null(inputs)
        if sig.outputs:
            fail_if_null(outputs)
        in_ptrs = []
        for k, port in enumerate(sig.inputs):
            p = b.load(b.gep(inputs, [_c64(k)], source_etype=PTR), typ=PTR)
            if port.nbytes:
                fail_if_null(p)
            in_ptrs.append(p)
        out_ptrs = []
        for j, port in enumerate(sig.outputs):
            p = b.load(b.gep(outputs, [_c64(j)], source_etype=PTR), typ=PTR)
            if port.nbytes:
                fail_if_null(p)
            out_ptrs.append(p)

        plan = self.p.plan
        for buf, (kind, key) in zip(plan.input_buffers, sig.input_sources):
            if kind == "arg":
                b.store(in_ptrs[key], self._slot(b, h, self.slots[buf]))
        copies = []          # (destination, source pointer, bytes) after the kernels
        written = {}         # output Buffer -> the caller buffer the kernels write it to
        for j, buf in enumerate(plan.output_buffers):
            if buf.kind == "input":
                src = b.load(self._slot(b, h, self.slots[buf]), typ=PTR)
                copies.append((out_ptrs[j], src, sig.outputs[j].nbytes))
            elif buf in written:
                copies.append((out_ptrs[j], written[buf], sig.outputs[j].nbytes))
            else:
                written[buf] = out_ptrs[j]
                b.store(out_ptrs[j], self._slot(b, h, self.slots[buf]))

        status = self._field(b, h, 1)
        b.store(_c64(0), status)
        table = self._table(b, h)
        for kernel_fn, extent in self.p.kernel_calls:
            b.call(kernel_fn, [table, _c64(0), _c64(extent), status])
        memcpy = self.module.globals.get("llvm.memcpy.p0.p0.i64") or ir.Function(
            self.module, ir.FunctionType(VOID, [PTR, PTR, I64, ir.IntType(1)]),
            "llvm.memcpy.p0.p0.i64")
        for dst, src, nbytes in copies:
            if nbytes:
                b.call(memcpy, [dst, src, _c64(nbytes), ir.Constant(ir.IntType(1), 0)])
        b.ret(b.trunc(b.load(status, typ=I64), I32))
        return fn

    def _run_typed(self, run_arrays):
        n_in, n_out = len(self.sig.inputs), len(self.sig.outputs)
        fn = ir.Function(self.module, ir.FunctionType(I32, [PTR] * (1 + n_in + n_out)),
                         f"{self.prefix}_run")
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        h, args = fn.args[0], fn.args[1:]

        def pack(values):
            if not values:
                return ir.Constant(PTR, None)
            arr = b.alloca(PTR, size=len(values))
            for k, v in enumerate(values):
                b.store(v, b.gep(arr, [_c64(k)], source_etype=PTR))
            return arr
        ins, outs = pack(args[:n_in]), pack(args[n_in:])
        b.ret(b.call(run_arrays, [h, ins, outs]))

    def _status_message(self):
        fn = ir.Function(self.module, ir.FunctionType(PTR, [I32]),
                         f"{self.prefix}_status_message")
        code, = fn.args
        b = ir.IRBuilder(fn.append_basic_block("entry"))
        unknown = fn.append_basic_block("unknown")
        switch = b.switch(code, unknown)
        checks = {check_code(n.attrs["message"]): n.attrs["message"]
                  for n in self.p.plan.graph.nodes if n.op == "check"}
        for value, text in {**STATUS_MESSAGES, **checks}.items():
            block = fn.append_basic_block(f"status{value}")
            switch.add_case(_c32(value), block)
            ir.IRBuilder(block).ret(self._string(f"{self.prefix}_msg{value}", text))
        ir.IRBuilder(unknown).ret(self._string(f"{self.prefix}_msg_unknown",
                                               "unknown status code"))

    def _string(self, name, text):
        data = bytearray(text.encode() + b"\0")
        g = ir.GlobalVariable(self.module, ir.ArrayType(I8, len(data)), name)
        g.global_constant = True
        g.linkage = "private"
        g.initializer = ir.Constant(g.value_type, data)
        return g
