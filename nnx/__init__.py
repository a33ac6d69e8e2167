"""nnx: small neural networks written once against the Python array API.

The same layers, losses, optimizers and backprop run on NumPy (CPU), CuPy
(CUDA GPU) and array-api-strict (conformance checks). See README.md.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from nnx import backend, init, losses, optim, random, schedules, testing
from nnx.backend import available, current, to_device, to_host, use
from nnx.errors import (
    BackendMismatchError,
    BackendUnavailableError,
    DTypeError,
    NnxError,
    NonFiniteError,
    ShapeError,
    StateError,
    TargetError,
    UnknownBackendError,
)
from nnx.layers import Layer, Linear, Parameter, ReLU, Sequential, Sigmoid, Tanh
from nnx.layers import BatchNorm1d, Dropout, Flatten, GELU, LayerNorm, LeakyReLU, Softmax, set_finite_checks
from nnx.losses import MSE, SSE, SumSquaredError
from nnx.losses import BCEWithLogits, BinaryCrossEntropyWithLogits, SoftmaxCrossEntropy
from nnx.optim import SGD
from nnx.optim import Adam, AdamW, RMSProp, clip_grad_norm
from nnx.train import train_step
from nnx.train import Callback, EarlyStopping, History, LRScheduler, LambdaCallback, TrainState
from nnx.train import evaluate, fit, predict
from nnx.errors import DataFormatError
from nnx import datasets
from nnx.plot import plot_history
from nnx import checkpoint, io
from nnx.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from nnx.errors import (
    CorruptModelFileError,
    FormatVersionError,
    ModelFileError,
    NotAModelFileError,
    TensorMismatchError,
    UnknownLayerError,
)
from nnx.io import load, register_layer, save

DISTRIBUTION = "nnx-array"

try:
    __version__ = _version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "Adam",
    "AdamW",
    "BCEWithLogits",
    "BatchNorm1d",
    "BinaryCrossEntropyWithLogits",
    "Dropout",
    "Flatten",
    "GELU",
    "LayerNorm",
    "LeakyReLU",
    "NonFiniteError",
    "RMSProp",
    "Softmax",
    "SoftmaxCrossEntropy",
    "TargetError",
    "clip_grad_norm",
    "schedules",
    "set_finite_checks",
    "testing",
    "BackendMismatchError",
    "BackendUnavailableError",
    "DTypeError",
    "Layer",
    "Linear",
    "MSE",
    "NnxError",
    "Parameter",
    "ReLU",
    "SGD",
    "SSE",
    "Sequential",
    "ShapeError",
    "Sigmoid",
    "StateError",
    "SumSquaredError",
    "Tanh",
    "UnknownBackendError",
    "available",
    "backend",
    "current",
    "init",
    "losses",
    "optim",
    "random",
    "to_device",
    "to_host",
    "train_step",
    "use",
    "Callback",
    "DataFormatError",
    "EarlyStopping",
    "History",
    "LRScheduler",
    "LambdaCallback",
    "TrainState",
    "datasets",
    "evaluate",
    "fit",
    "plot_history",
    "predict",
    "Checkpoint",
    "CorruptModelFileError",
    "FormatVersionError",
    "ModelFileError",
    "NotAModelFileError",
    "TensorMismatchError",
    "UnknownLayerError",
    "checkpoint",
    "io",
    "load",
    "load_checkpoint",
    "register_layer",
    "save",
    "save_checkpoint",
]
