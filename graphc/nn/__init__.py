"""graphc.nn: PyTorch's module API over graphc's lazy tensors.

Layers are written with graphc tensor ops (see functional.py), so a model's forward
pass records IR and its gradients come from the autodiff pass; convolution is the only
primitive added for nn (graphc/ir/ops_nn.py).
"""
from . import functional, init, utils  # noqa: F401
from .activation import (CELU, ELU, GELU, GLU, SELU, Hardsigmoid, Hardswish,  # noqa: F401
                         Hardtanh, LeakyReLU, LogSigmoid, LogSoftmax, Mish, PReLU, ReLU,
                         ReLU6, Relu, Sigmoid, SiLU, Softmax, Softmin, Softplus, Softsign,
                         Tanh, Tanhshrink, Threshold)
from .attention import MultiheadAttention  # noqa: F401
from .containers import (ModuleDict, ModuleList, ParameterDict, ParameterList,  # noqa: F401
                         Sequential)
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d  # noqa: F401
from .distance import CosineSimilarity, PairwiseDistance  # noqa: F401
from .dropout import Dropout  # noqa: F401
from .embedding import Embedding  # noqa: F401
from .linear import Flatten, Identity, Linear, Unflatten  # noqa: F401
from .loss import (BCELoss, BCEWithLogitsLoss, CosineEmbeddingLoss,  # noqa: F401
                   CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss, MarginRankingLoss, MSELoss,
                   NLLLoss, SmoothL1Loss)
from .module import Module  # noqa: F401
from .normalization import (BatchNorm1d, BatchNorm2d, GroupNorm, InstanceNorm1d,  # noqa: F401
                            InstanceNorm2d, LayerNorm)
from .parameter import Parameter  # noqa: F401
from .pooling import (AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d,  # noqa: F401
                      MaxPool1d, MaxPool2d)
from .rnn import (GRU, LSTM, RNN, GRUCell, LSTMCell, RNNBase, RNNCell,  # noqa: F401
                  RNNCellBase)
from .upsampling import Upsample, UpsamplingBilinear2d, UpsamplingNearest2d  # noqa: F401
