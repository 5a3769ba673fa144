"""`graphc.finfo` and `graphc.iinfo`: the numeric limits of a dtype, as PyTorch's
(`finfo(float32).eps`, `iinfo(int64).max`, ...). Plain numbers from numpy's tables;
bfloat16, which numpy lacks, is float32's exponent with 8 significand bits."""
from __future__ import annotations

import numpy as np

from .ir import dtypes as dt

# bfloat16: 8 exponent bits as float32, 7 stored significand bits
_BFLOAT16 = {"bits": 16, "eps": 2.0 ** -7, "max": float.fromhex("0x1.fep127"),
             "tiny": 2.0 ** -126, "resolution": 0.01}


class finfo:
    """Limits of a floating-point dtype (default: the default dtype)."""

    def __init__(self, type=None):
        d = dt.DEFAULT_FLOAT if type is None else dt.to_dtype(type)
        if not d.is_floating:
            raise TypeError("torch.finfo() requires a floating point input type. Use "
                            "torch.iinfo to handle 'torch.finfo'")
        if d.name == "bfloat16":
            v = _BFLOAT16
        else:
            f = np.finfo(d.np)
            v = {"bits": f.bits, "eps": float(f.eps), "max": float(f.max),
                 "tiny": float(f.smallest_normal), "resolution": 10.0 ** -f.precision}
        self.bits, self.eps, self.max = v["bits"], v["eps"], v["max"]
        self.min = -self.max
        self.tiny = self.smallest_normal = v["tiny"]
        self.resolution = v["resolution"]
        self.dtype = d.name

    def __repr__(self):
        return (f"finfo(resolution={self.resolution:g}, min={self.min:g}, max={self.max:g}, "
                f"eps={self.eps:g}, smallest_normal={self.smallest_normal:g}, "
                f"tiny={self.tiny:g}, dtype={self.dtype})")


class iinfo:
    """Limits of an integer dtype."""

    def __init__(self, type):
        d = dt.to_dtype(type)
        if d.is_floating or d.is_bool:
            raise TypeError("torch.iinfo() requires an integer input type. Use torch.finfo "
                            "to handle 'torch.iinfo'")
        i = np.iinfo(d.np)
        self.bits, self.max, self.min, self.dtype = i.bits, int(i.max), int(i.min), d.name

    def __repr__(self):
        return f"iinfo(min={self.min:g}, max={self.max:g}, dtype={self.dtype})"
