"""A small ONNX graph builder: named values, node records, typed constants.

The exporter lowers each graphc IR node to one or more ONNX nodes through a `Builder`.
Node records stay plain tuples until `node_protos()`, so the final value of a graphc
output can still be renamed to the output's name (no extra Identity node).

Invariants:
  * every value name is unique in the graph (`fresh` never returns a used name, and the
    input, parameter and output names are reserved before any node is added);
  * every node is in the default ONNX domain (no custom operators);
  * helper constants (shapes, axes, scalars) are `Constant` nodes, so the graph's
    initializers are exactly the model's weights.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..ir import dtypes as dt


def onnx_elem_type(dtype) -> int:
    """The TensorProto element type of a graphc dtype."""
    if dtype is dt.bfloat16:
        # graphc stores bfloat16 as rounded float32 values; refuse rather than write a
        # type whose numerics (rounding after every op) ONNX runtimes do not reproduce.
        raise TypeError("bfloat16 values are not exported to ONNX; convert the model to "
                        "float32 (model.float()) and trace it again")
    return helper.np_dtype_to_tensor_dtype(dtype.np)


class Builder:
    def __init__(self, opset: int):
        self.opset = opset
        self._records = []        # (op_type, input names, output names, attrs)
        self._used: set[str] = set()
        self._count = 0
        self._consts = {}         # (dtype, shape, bytes) -> name: one node per constant

    # ------------------------------------------------------------------ names
    def reserve(self, name: str) -> str:
        if name in self._used:
            raise ValueError(f"the ONNX value name {name!r} is used twice")
        self._used.add(name)
        return name

    def fresh(self, hint="t") -> str:
        while True:
            name = f"{hint}{self._count}"
            self._count += 1
            if name not in self._used:
                self._used.add(name)
                return name

    # ------------------------------------------------------------------ nodes
    def op(self, op_type: str, inputs, **attrs) -> str:
        """Add one node with a single output; returns the output's name."""
        out = self.fresh()
        self._records.append((op_type, list(inputs), [out], attrs))
        return out

    def op_outputs(self, op_type: str, inputs, n_outputs: int, **attrs) -> list:
        """Add one node with `n_outputs` outputs (TopK's values and indices); returns
        their names."""
        outs = [self.fresh() for _ in range(n_outputs)]
        self._records.append((op_type, list(inputs), outs, attrs))
        return outs

    def mark(self) -> int:
        """A position in the node list (see `produced_since`)."""
        return len(self._records)

    def produced_since(self, mark: int, name: str) -> bool:
        return any(name in r[2] for r in self._records[mark:])

    def rename(self, old: str, new: str) -> None:
        """Give a value produced by a node a reserved name (a graph output's)."""
        self._records = [(op, [new if i == old else i for i in ins],
                          [new if o == old else o for o in outs], attrs)
                         for op, ins, outs, attrs in self._records]
        self._consts = {k: new if v == old else v for k, v in self._consts.items()}

    def identity(self, value: str, out: str) -> None:
        self._records.append(("Identity", [value], [out], {}))

    # ------------------------------------------------------------------ constants
    def const(self, array) -> str:
        array = np.array(array, order="C")   # (ascontiguousarray makes 0-d arrays 1-d)
        key = (array.dtype.str, array.shape, array.tobytes())
        if key not in self._consts:
            out = self.fresh("c")
            tensor = numpy_helper.from_array(array, out)
            self._records.append(("Constant", [], [out], {"value": tensor}))
            self._consts[key] = out
        return self._consts[key]

    def scalar(self, value, dtype) -> str:
        """A 0-d constant of graphc dtype `dtype` (broadcasts in elementwise ops)."""
        return self.const(np.array(value, dtype=dtype.np))

    def ints(self, values) -> str:
        """A 1-d int64 constant: shapes, axes, pads, starts."""
        return self.const(np.array(list(values), dtype=np.int64).reshape(-1))

    # ------------------------------------------------------------------ output
    def node_protos(self) -> list:
        protos = []
        for k, (op_type, ins, outs, attrs) in enumerate(self._records):
            protos.append(helper.make_node(op_type, ins, outs, name=f"{op_type}_{k}",
                                           **attrs))
        return protos


def value_info(name: str, dtype, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, onnx_elem_type(dtype), list(shape))
