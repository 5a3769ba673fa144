"""graphc.nn: PyTorch's module API over graphc's lazy tensors.

Layers are written with graphc tensor ops (see functional.py), so a model's forward
pass records IR and its gradients come from the autodiff pass; convolution is the only
primitive added for nn (graphc/ir/ops_nn.py).
"""
from . import functional, init, utils  # noqa: F401
from .activation import (GELU, LeakyReLU, LogSigmoid, LogSoftmax, ReLU, Relu,  # noqa: F401
                         Sigmoid, SiLU, Softmax, Softplus, Tanh)
from .attention import MultiheadAttention  # noqa: F401
from .containers import ModuleDict, ModuleList, Sequential  # noqa: F401
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d  # noqa: F401
from .dropout import Dropout  # noqa: F401
from .embedding import Embedding  # noqa: F401
from .linear import Flatten, Identity, Linear, Unflatten  # noqa: F401
from .loss import (BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, L1Loss, MSELoss,  # noqa: F401
                   NLLLoss)
from .module import Module  # noqa: F401
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm  # noqa: F401
from .parameter import Parameter  # noqa: F401
from .pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d,  # noqa: F401
                      MaxPool1d, MaxPool2d)
from .rnn import (GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell,  # noqa: F401
                  RNNCellBase)
