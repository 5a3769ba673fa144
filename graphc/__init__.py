"""graphc: a PyTorch-compatible, define-then-run deep-learning framework.

Tensor operations build a static IR graph; reading a value compiles the pending graph
(cached by structure) and runs it. See docs/architecture.md.
"""
from .ir import dtypes as _dt
from .ir.dtypes import DType as dtype  # noqa: F401
from .ir.errors import DTypeError, GraphcError, ShapeError  # noqa: F401
from .autograd import (enable_grad, inference_mode, is_grad_enabled,  # noqa: F401
                       is_inference_mode_enabled, no_grad, set_grad_enabled)
from .device import device  # noqa: F401
from . import cuda  # noqa: F401
from .tensor import (Generator, Size, Tensor, arange, empty, empty_like, eye,  # noqa: F401
                     from_numpy, full, full_like, initial_seed, linspace, logspace, manual_seed, ones,
                     ones_like, rand, rand_like, randint, randn, randn_like, randperm, seed,
                     tensor, zeros, zeros_like, default_generator)
from . import tensor_ops as _ops
from .tensor_ops import *  # noqa: F401,F403
from .tensor_ops import (abs, all, any, max, min, pow, round, sum)  # noqa: F401
from .sorting import (argsort, kthvalue, median, msort, nanmedian, sort,  # noqa: F401
                      topk)

float32 = float = _dt.float32
float64 = double = _dt.float64
float16 = half = _dt.float16
bfloat16 = _dt.bfloat16
int32 = int = _dt.int32
int64 = long = _dt.int64
uint8 = _dt.uint8
bool = _dt.bool_

__version__ = "0.1.0"


def is_tensor(obj):
    return isinstance(obj, Tensor)


def numel(t):
    return t.numel()


def get_default_dtype():
    return _dt.DEFAULT_FLOAT


def set_default_dtype(d):
    """The float type of `tensor(1.5)`, `zeros(...)`, `rand(...)` and of a float scalar
    promoted with integer tensors: every creation function and the promotion rules read
    `dtypes.DEFAULT_FLOAT` when called."""
    if not isinstance(d, _dt.DType) or not d.is_floating:
        raise TypeError("only floating-point types are supported as the default type")
    _dt.DEFAULT_FLOAT = d


def promote_types(a, b):
    return _dt.promote_types(a, b)
from .compile import compile  # noqa: E402,F401
from .dtype_info import finfo, iinfo  # noqa: E402,F401
from .serialization import save, load  # noqa: E402,F401
from . import jit  # noqa: E402,F401
from . import optim, utils  # noqa: E402,F401
from . import nn  # noqa: E402,F401
from . import onnx  # noqa: E402,F401  (imports no onnx until export is called)
from . import export  # noqa: E402,F401  (callable: graphc.export(model, ...))

from .axis_alias import add_axis_alias as _add_axis_alias  # noqa: E402
_add_axis_alias(globals(), list(_ops.__all__) + ["argsort", "kthvalue", "median", "msort",
                                                 "nanmedian", "sort", "topk"], Tensor)
