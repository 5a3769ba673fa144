"""graphc.optim: PyTorch's optimizers and learning-rate schedulers over lazy tensors.

An optimizer's `step()` records the update of every parameter as IR (fused with the
rest of the training step when the next value is read); learning rates and the other
hyper-parameters are runtime inputs, so schedulers never cause a recompile.
"""
from . import lr_scheduler  # noqa: F401
from .adagrad import Adagrad  # noqa: F401
from .adam import Adam, AdamW  # noqa: F401
from .nadam import Adamax, NAdam, RAdam  # noqa: F401
from .optimizer import Optimizer  # noqa: F401
from .rmsprop import RMSprop  # noqa: F401
from .sgd import SGD  # noqa: F401

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "NAdam", "RAdam", "Adamax", "RMSprop", "Adagrad",
           "lr_scheduler"]
