"""nnx: small neural networks written once against the Python array API.

The same layers, losses, optimizers and backprop run on NumPy (CPU), CuPy
(CUDA GPU) and array-api-strict (conformance checks). See README.md, docs/ and
ARCHITECTURE.md.

The top level holds one name for each thing people use every day; the
modules hold the rest: ``nnx.errors`` (every exception), ``nnx.losses``
(with the documented aliases ``SSE`` and ``BCEWithLogits``), ``nnx.optim``,
``nnx.schedules``, ``nnx.init``, ``nnx.random``, ``nnx.ops``, ``nnx.io``,
``nnx.checkpoint``, ``nnx.datasets``, ``nnx.metrics``, ``nnx.preprocessing``
(:class:`~nnx.preprocessing.Standardize`, :class:`~nnx.preprocessing.ClassLabels`), ``nnx.train``,
``nnx.distributed``, ``nnx.testing`` and ``nnx.backend``.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version as _version

from nnx import backend, errors, init, layers, losses, ops, optim, random, schedules
from nnx import checkpoint, datasets, interop, io, metrics, preprocessing, testing, train
from nnx import distributed, precision
from nnx.backend import available, current, to_device, to_host, use
from nnx.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from nnx.io import load, load_state_dict, register_layer, save
from nnx.export import export_onnx
from nnx.layers import *  # noqa: F403 (the public layers are nnx.layers.__all__)
from nnx.generation import generate
from nnx.losses import MSE, BinaryCrossEntropyWithLogits, SoftmaxCrossEntropy, SumSquaredError
from nnx.optim import SGD, Adam, AdamW, Lion, RMSProp, clip_grad_norm
from nnx.plot import plot_history
from nnx.precision import Precision
from nnx.scaler import LossScaler
from nnx.train import (
    Callback,
    EarlyStopping,
    History,
    LambdaCallback,
    LRScheduler,
    TrainState,
    evaluate,
    fit,
    predict,
    predict_classes,
    predict_proba,
    train_step,
)

DISTRIBUTION = "nnx-array"

try:
    __version__ = _version(DISTRIBUTION)
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    # backends and moving data
    "available",
    "current",
    "to_device",
    "to_host",
    "use",
    # layers, attention and transformers
    *layers.__all__,
    "generate",
    "register_layer",
    # losses and optimizers
    "BinaryCrossEntropyWithLogits",
    "MSE",
    "SoftmaxCrossEntropy",
    "SumSquaredError",
    "Adam",
    "AdamW",
    "Lion",
    "RMSProp",
    "SGD",
    "clip_grad_norm",
    # training
    "Callback",
    "EarlyStopping",
    "History",
    "LRScheduler",
    "LambdaCallback",
    "TrainState",
    "evaluate",
    "fit",
    "predict",
    "predict_classes",
    "predict_proba",
    "train_step",
    "plot_history",
    # mixed precision
    "LossScaler",
    "Precision",
    # files
    "Checkpoint",
    "export_onnx",
    "load",
    "load_checkpoint",
    "load_state_dict",
    "save",
    "save_checkpoint",
    # modules
    "backend",
    "checkpoint",
    "datasets",
    "errors",
    "init",
    "interop",
    "io",
    "metrics",
    "precision",
    "preprocessing",
    "layers",
    "losses",
    "ops",
    "optim",
    "random",
    "schedules",
    "testing",
    "train",
]
