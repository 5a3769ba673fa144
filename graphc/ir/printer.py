"""The IR's text form.

    graph(%x: f32[32,784], %w: f32[784,10]) {
      %2: f32[32,10] = matmul(%x, %w) @ "train.py:12"
      %3: f32[32] = sum(%2) {dims=[1], keepdim=false}
      return %3
    }

Every value shows its type. Attributes are ints, floats (`inf`, `nan` spelled out),
`true`/`false`/`none`, JSON strings, dtypes by short name and `[...]` lists. The source
location follows `@`. `parser.parse(print_graph(g)) == g` holds for every graph.

Inputs print under their `name` when it is an identifier not taken by an earlier input,
otherwise as `%in<k>` (the first such name that is free); other values are numbered.
A graph with no outputs prints a bare `return`. The grammar is in docs/ir.md.
"""
from __future__ import annotations

import json
import math
import numbers
import re

import numpy as np

from .dtypes import DType

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*$")


def format_attr(v) -> str:
    if isinstance(v, (bool, np.bool_)):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, DType):
        return v.short
    if isinstance(v, numbers.Integral):  # numpy integers too: shapes computed with numpy
        return str(int(v))
    if isinstance(v, numbers.Real):
        v = float(v)
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(format_attr(x) for x in v) + "]"
    raise TypeError(f"attribute value {v!r} of type {type(v).__name__} has no text form")


def value_names(graph) -> dict[int, str]:
    names, used = {}, set()
    for k, n in enumerate(graph.inputs):
        nm = n.attrs.get("name")
        if not (isinstance(nm, str) and _IDENT.match(nm)) or nm in used:
            nm, j = f"in{k}", k
            while nm in used:
                j += 1
                nm = f"in{j}"
        names[id(n)] = nm
        used.add(nm)
    k = 0
    for n in graph.nodes:
        if id(n) in names:
            continue
        while str(k) in used:
            k += 1
        names[id(n)] = str(k)
        used.add(str(k))
        k += 1
    return names


def print_graph(graph, with_locs=True) -> str:
    names = value_names(graph)
    sig = ", ".join(f"%{names[id(n)]}: {n.type}" +
                    (f" @ {json.dumps(n.loc)}" if with_locs and n.loc else "")
                    for n in graph.inputs)
    lines = [f"graph({sig}) {{"]
    for n in graph.nodes:
        if n.op == "input":
            continue
        args = ", ".join(f"%{names[id(i)]}" for i in n.inputs)
        line = f"  %{names[id(n)]}: {n.type} = {n.op}({args})"
        if n.attrs:
            line += " {" + ", ".join(f"{k}={format_attr(v)}" for k, v in
                                     sorted(n.attrs.items())) + "}"
        if with_locs and n.loc:
            line += f" @ {json.dumps(n.loc)}"
        lines.append(line)
    outs = ", ".join(f"%{names[id(o)]}" for o in graph.outputs)
    lines.append(f"  return {outs}" if outs else "  return")
    lines.append("}")
    return "\n".join(lines) + "\n"
