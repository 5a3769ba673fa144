"""The C-level calling convention of an exported model, derived from a traced module.

A `Signature` lists the run-time inputs (the traced tensor arguments, in argument
order), the outputs (the traced output leaves, in order) and the weights (every graph
input fed by a weight or captured constant). Each tensor crosses the ABI as one
row-major, contiguous buffer of its storage type (`C_TYPES`). Names are C identifiers:
they become parameter names of the typed run function and parts of #define names.

Refused here, with `ExportError`: random ops (their seed/offset are drawn per call from
graphc's generator, which a C caller does not have: export in eval mode) and bfloat16
(graphc stores it as float32 rounded after every op; C has no such type).
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from ..ir.errors import GraphcError

# graphc dtype short name -> (C element type, what the bytes are)
C_TYPES = {
    "b8": ("uint8_t", "bool, one byte holding 0 or 1"),
    "u8": ("uint8_t", "uint8"),
    "i32": ("int32_t", "int32"),
    "i64": ("int64_t", "int64"),
    "f16": ("uint16_t", "float16, IEEE binary16 bits"),
    "f32": ("float", "float32, IEEE binary32"),
    "f64": ("double", "float64, IEEE binary64"),
}

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*$")
# C keywords, and the names the run function's other parameters use
_RESERVED = frozenset("""auto break case char const continue default do double else enum
extern float for goto if inline int long register restrict return short signed sizeof static
struct switch typedef union unsigned void volatile while _Bool _Complex _Imaginary bool true
false model inputs outputs status NULL""".split())


class ExportError(GraphcError, ValueError):
    """The model (or the request) cannot be exported; the message says why."""


@dataclass(frozen=True)
class Port:
    """One tensor crossing the ABI."""
    name: str          # the traced name (argument name, output leaf name)
    c_name: str        # a C identifier, unique among the run function's parameters
    dtype: object      # graphc DType
    shape: tuple

    @property
    def c_type(self):
        return C_TYPES[self.dtype.short][0]

    @property
    def numel(self):
        n = 1
        for s in self.shape:
            n *= s
        return n

    @property
    def nbytes(self):
        return self.numel * self.dtype.np.itemsize


@dataclass
class Signature:
    inputs: list            # Port per traced tensor argument
    outputs: list           # Port per output leaf
    input_sources: list     # per graph input: ("arg", k) or ("weight", key)
    weights: dict           # weight key -> contiguous numpy array (storage dtype)


def c_identifier(text: str) -> str:
    """`text` as a C identifier: other characters become `_`, a leading digit gets `_`."""
    name = re.sub(r"[^A-Za-z0-9_]", "_", str(text)) or "_"
    return "_" + name if name[0].isdigit() else name


# lib<name>.so must not shadow a system library a C program links with `-l<name>`
RESERVED_LIBRARY_NAMES = frozenset({"c", "m", "dl", "rt", "pthread", "gcc", "gcc_s",
                                    "stdc++", "util", "resolv"})


def check_library_name(name: str) -> str:
    if not isinstance(name, str) or not _IDENT.match(name) or len(name) > 64:
        raise ExportError(f"export name {name!r} must be a C identifier (letters, digits, "
                          "'_', not starting with a digit, at most 64 characters): it "
                          "prefixes every symbol of the library")
    if name in RESERVED_LIBRARY_NAMES:
        raise ExportError(f"export name {name!r} would make lib{name}.so, the name of a "
                          "system library; choose another name")
    return name


def _unique_c_names(names):
    out, used = [], set()
    for raw in names:
        base = c_identifier(raw)
        if base in _RESERVED:
            base += "_"
        candidate, k = base, 1
        while candidate in used:
            candidate = f"{base}_{k}"
            k += 1
        used.add(candidate)
        out.append(candidate)
    return out


def signature_of(traced) -> Signature:
    """The calling convention of TracedModule `traced` (ExportError if it has none)."""
    from ..onnx.naming import output_leaf_names
    graph = traced.graph
    rand = [n for n in graph.nodes if n.op == "rand"]
    if rand:
        where = f" (at {rand[0].loc})" if rand[0].loc else ""
        raise ExportError(f"the model draws random numbers{where} (randn, dropout in "
                          "training mode): an exported library has no random generator; "
                          "export the model in eval mode")
    for n in graph.nodes:
        if n.dtype.short == "bf16":
            where = f" at {n.loc}" if n.loc else ""
            raise ExportError(f"the model computes a bfloat16 value ({n.op}{where}): C has "
                              "no bfloat16 type and graphc rounds it after every op; convert "
                              "the model to float32 or float16")
    arg_types = traced._arg_types
    leaf_names = output_leaf_names(traced._output_spec)
    names = _unique_c_names(list(traced._arg_names) + leaf_names)
    n_in = len(arg_types)
    inputs = [Port(traced._arg_names[k], names[k], t.dtype, tuple(t.shape))
              for k, t in enumerate(arg_types)]
    outputs = [Port(leaf, names[n_in + j], o.dtype, tuple(o.shape))
               for j, (leaf, o) in enumerate(zip(leaf_names, graph.outputs))]
    weights = {}
    for node, (kind, key) in zip(graph.inputs, traced._sources):
        if kind == "weight" and key not in weights:
            value = traced._weights[key].detach().numpy()
            weights[key] = np.ascontiguousarray(value, dtype=node.dtype.np)
    return Signature(inputs, outputs, list(traced._sources), weights)
