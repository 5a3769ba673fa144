"""Names for the tensor leaves of a traced module's output structure.

Used by the ONNX exporter (graph output names) and by `graphc run` (file names), so a
model's outputs are called the same everywhere. This module imports nothing from onnx.

Rules, for a `graphc.jit` structure spec (see graphc/jit/trace.py):
  * a tuple or list item is named by its position: `out0`, `out1`; nested items add
    `.k`: `out1.0`, `out1.1` (LSTM's `(output, (h, c))`);
  * a dict item is named by its key: `logits`; nested below a position: `out0.logits`;
  * a single tensor output is `out0`.
Names hold only `[A-Za-z0-9_.-]` (other characters become `_`, so a name is also a safe
file name), never start with `.`, and are unique (a clash gets `_1`, `_2`, ...).
"""
from __future__ import annotations

import re

_UNSAFE = re.compile(r"[^A-Za-z0-9_.\-]")


def safe_name(text) -> str:
    """`text` with every character outside [A-Za-z0-9_.-] replaced by `_`."""
    name = _UNSAFE.sub("_", str(text)) or "_"
    return "_" + name if name.startswith(".") else name


def output_leaf_names(spec) -> list[str]:
    """One unique name per tensor leaf of `spec`, in leaf order (rules above)."""
    raw = []

    def walk(s, base):
        kind = s["kind"]
        if kind == "tensor":
            raw.append(base)
        elif kind in ("tuple", "list"):
            for k, item in enumerate(s["items"]):
                walk(item, f"out{k}" if base is None else f"{base}.{k}")
        elif kind == "dict":
            for key, item in zip(s["keys"], s["items"]):
                walk(item, safe_name(key) if base is None else f"{base}.{safe_name(key)}")

    walk(spec, None)
    return unique([r if r is not None else "out0" for r in raw])


def unique(names, taken=()) -> list[str]:
    """`names` with repeats (and names in `taken`) made distinct by a `_k` suffix."""
    used = set(taken)
    out = []
    for name in names:
        candidate, k = name, 1
        while candidate in used:
            candidate = f"{name}_{k}"
            k += 1
        used.add(candidate)
        out.append(candidate)
    return out
