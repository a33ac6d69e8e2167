"""The gradcheck table: one case (or more) for every layer and loss nnx exports.

``tests/test_gradients.py`` checks each case on every CPU backend, in
training and evaluation mode, and fails when an exported layer or loss has
no case here; ``benchmarks/gradcheck_table.py`` prints the worst errors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

import nnx


def inputs(backend: str, shape: tuple[int, ...], seed: int = 0, off_kinks: bool = False) -> Any:
    """Standard normal float64 inputs; ``off_kinks`` moves them off 0, where ReLU-like derivatives jump."""
    host = np.random.default_rng(seed).standard_normal(shape)
    if off_kinks:
        host = np.where(np.abs(host) < 0.05, 0.5, host)
    return nnx.to_device(host, backend, dtype="float64")


@dataclass(frozen=True)
class LayerCase:
    """A layer built fresh for each check, the input shape, and how to prepare it."""

    make: Callable[[], nnx.Layer]
    shape: tuple[int, ...]
    off_kinks: bool = False
    indices: tuple[int, int] | None = None  # integer inputs in [low, high) instead of float64 normals
    eps: float = 1e-6  # gradcheck's step of the central differences

    def input(self, backend: str, seed: int = 0) -> Any:
        """The input the case is checked on."""
        if self.indices is not None:
            ids = np.random.default_rng(seed).integers(*self.indices, self.shape)
            return nnx.to_device(ids, backend, dtype="int64")
        return inputs(backend, self.shape, seed, self.off_kinks)

    def build(self, backend: str) -> nnx.Layer:
        """The layer with random affine values and, if it has them, non-trivial running statistics."""
        layer = self.make()
        rng = np.random.default_rng(7)
        for _, module in layer.named_modules():
            if isinstance(module, (nnx.LayerNorm, nnx.BatchNorm1d)):  # they start at weight 1, bias 0 (2d too)
                for p in module.parameters():
                    p.data = nnx.to_device(rng.uniform(0.5, 1.5, p.shape), backend, dtype="float64")
        if list(layer.named_buffers()):
            layer.train().forward(self.input(backend, 11) * 2.0 + 0.5)
            layer.drop_saved()
        return layer


def _f64(cls: type, *args: Any, **kwargs: Any) -> Callable[[], nnx.Layer]:
    return lambda: cls(*args, dtype="float64", **kwargs)


LAYERS: dict[str, LayerCase] = {
    "Linear": LayerCase(_f64(nnx.Linear, 4, 3, seed=1, bias_init=nnx.init.Normal(0, 1)), (6, 4)),
    "Linear(bias=False)": LayerCase(_f64(nnx.Linear, 4, 3, bias=False, seed=2), (6, 4)),
    "Sigmoid": LayerCase(nnx.Sigmoid, (6, 4)),
    "Tanh": LayerCase(nnx.Tanh, (6, 4)),
    "ReLU": LayerCase(nnx.ReLU, (6, 4), off_kinks=True),
    "LeakyReLU(0.1)": LayerCase(lambda: nnx.LeakyReLU(0.1), (6, 4), off_kinks=True),
    "GELU": LayerCase(nnx.GELU, (6, 4)),
    "Softmax": LayerCase(nnx.Softmax, (6, 4)),
    "Softmax(axis=0)": LayerCase(lambda: nnx.Softmax(axis=0), (6, 4)),
    "Flatten": LayerCase(nnx.Flatten, (3, 2, 2)),
    "Dropout(0.4)": LayerCase(lambda: nnx.Dropout(0.4, seed=5), (6, 4)),
    "LayerNorm": LayerCase(_f64(nnx.LayerNorm, 4), (6, 4)),
    "LayerNorm(affine=False), 3-D": LayerCase(_f64(nnx.LayerNorm, 4, affine=False), (2, 3, 4)),
    "BatchNorm1d": LayerCase(_f64(nnx.BatchNorm1d, 4), (6, 4)),
    "BatchNorm1d(affine=False)": LayerCase(_f64(nnx.BatchNorm1d, 4, affine=False), (6, 4)),
    # no bias before BatchNorm1d: in training mode its true gradient is exactly 0
    "Conv1d(padding='same', dilation=2)": LayerCase(_f64(nnx.Conv1d, 3, 4, 3, padding="same", dilation=2, seed=7),
                                                    (2, 3, 9)),
    "Conv2d": LayerCase(_f64(nnx.Conv2d, 3, 4, 3, seed=8, bias_init=nnx.init.Normal(0, 1)), (2, 3, 6, 5)),
    "Conv2d(stride=2, padding=1, bias=False)": LayerCase(
        _f64(nnx.Conv2d, 2, 3, (3, 2), stride=2, padding=1, bias=False, seed=9), (2, 2, 7, 6)),
    "Conv2d(groups=2, dilation=(2, 1))": LayerCase(_f64(nnx.Conv2d, 4, 6, 2, groups=2, dilation=(2, 1), seed=10),
                                                   (2, 4, 6, 5)),
    "Conv2d depthwise": LayerCase(_f64(nnx.Conv2d, 3, 3, 3, groups=3, padding="same", seed=11), (2, 3, 5, 5)),
    # 4 channels: stride 1 multiplies shifted views per kernel offset instead of gathering windows
    "Conv2d(4, 4), shifted products": LayerCase(_f64(nnx.Conv2d, 4, 4, 2, padding=1, seed=30), (2, 4, 3, 3)),
    "MaxPool2d(2)": LayerCase(lambda: nnx.MaxPool2d(2), (2, 3, 6, 5)),
    "MaxPool2d(3, stride=2, padding=1)": LayerCase(lambda: nnx.MaxPool2d(3, stride=2, padding=1), (2, 2, 7, 6)),
    "AvgPool2d(2)": LayerCase(lambda: nnx.AvgPool2d(2), (2, 3, 6, 5)),
    "AvgPool2d(3, stride=2, padding=1)": LayerCase(lambda: nnx.AvgPool2d(3, stride=2, padding=1), (2, 2, 7, 6)),
    "GlobalAvgPool2d": LayerCase(nnx.GlobalAvgPool2d, (2, 3, 4, 5)),
    "BatchNorm2d": LayerCase(_f64(nnx.BatchNorm2d, 3), (3, 3, 4, 2)),
    "BatchNorm2d(affine=False)": LayerCase(_f64(nnx.BatchNorm2d, 3, affine=False), (2, 3, 2, 3)),
    "Sequential (a small CNN)": LayerCase(lambda: nnx.Sequential(
        nnx.Conv2d(1, 4, 3, padding=1, bias=False, seed=12, dtype="float64"), nnx.BatchNorm2d(4, dtype="float64"),
        nnx.ReLU(), nnx.MaxPool2d(2), nnx.Conv2d(4, 4, 3, groups=2, seed=13, dtype="float64"), nnx.Tanh(),
        nnx.GlobalAvgPool2d(), nnx.Linear(4, 3, seed=14, dtype="float64"),
    ), (3, 1, 6, 6), off_kinks=True),
    "Embedding": LayerCase(_f64(nnx.Embedding, 7, 3, seed=15), (4, 5), indices=(0, 7)),
    # the padding row gets no gradient by design, so the checked indices avoid it (tested on its own)
    "Embedding(padding_idx=0)": LayerCase(_f64(nnx.Embedding, 7, 3, padding_idx=0, seed=16), (4, 5), indices=(1, 7)),
    "Linear on (batch, length, in)": LayerCase(_f64(nnx.Linear, 4, 3, seed=17), (2, 5, 4)),
    "Mean": LayerCase(lambda: nnx.Mean(1), (3, 5, 4)),
    "Reshape": LayerCase(lambda: nnx.Reshape((2, 1, 3)), (4, 6)),
    "Standardize (fitted)": LayerCase(lambda: nnx.preprocessing.Standardize(4, dtype="float64").fit(
        np.random.default_rng(3).normal(2.0, 3.0, (20, 4))), (6, 4)),
    "ClassLabels": LayerCase(lambda: nnx.preprocessing.ClassLabels(["a", "b", "c", "d"]), (6, 4)),
    "Mean(axis=-1)": LayerCase(lambda: nnx.Mean(-1), (3, 5, 4)),
    "Residual": LayerCase(lambda: nnx.Residual(nnx.Sequential(
        nnx.Linear(4, 4, seed=18, dtype="float64"), nnx.Tanh())), (5, 4)),
    "Residual (projection shortcut, ResNet block)": LayerCase(lambda: nnx.Residual(
        nnx.Sequential(nnx.Conv2d(2, 4, 3, stride=2, padding=1, bias=False, seed=19, dtype="float64"),
                       nnx.BatchNorm2d(4, dtype="float64"), nnx.ReLU(),
                       nnx.Conv2d(4, 4, 3, padding=1, seed=20, dtype="float64")),
        shortcut=nnx.Conv2d(2, 4, 1, stride=2, seed=21, dtype="float64")), (3, 2, 6, 6), off_kinks=True,
        eps=1e-5),  # BatchNorm over 27 positions amplifies the differences' rounding; at 1e-6 it reaches rtol
    "Sequential (text: Embedding, Mean, Residual)": LayerCase(lambda: nnx.Sequential(
        nnx.Embedding(9, 4, seed=22, dtype="float64"), nnx.Linear(4, 4, seed=23, dtype="float64"), nnx.Mean(1),
        nnx.Residual(nnx.Sequential(nnx.Linear(4, 4, seed=24, dtype="float64"), nnx.Sigmoid())),
        nnx.Linear(4, 2, seed=25, dtype="float64")), (3, 6), indices=(0, 9)),
    "Sequential (every layer, nested)": LayerCase(lambda: nnx.Sequential(
        nnx.Flatten(), nnx.Linear(4, 5, bias=False, seed=3, dtype="float64"), nnx.BatchNorm1d(5, dtype="float64"),
        nnx.GELU(), nnx.Dropout(0.3, seed=1),
        nnx.Sequential(nnx.Linear(5, 4, seed=4, dtype="float64"), nnx.LayerNorm(4, dtype="float64")),
        nnx.LeakyReLU(), nnx.Linear(4, 3, seed=6, dtype="float64"), nnx.Tanh(), nnx.Softmax(),
    ), (6, 2, 2), off_kinks=True),
}


def _classes(backend: str) -> Any:
    return nnx.to_device(np.random.default_rng(0).integers(0, 3, 5), backend)


def _probabilities(backend: str) -> Any:
    p = np.random.default_rng(0).uniform(0.1, 1.0, (5, 3))
    return nnx.to_device(p / p.sum(axis=1, keepdims=True), backend, dtype="float64")


def _unit(backend: str) -> Any:
    return nnx.to_device(np.random.default_rng(2).uniform(0, 1, (5, 3)), backend, dtype="float64")


def _normal(backend: str) -> Any:
    return inputs(backend, (5, 3), 2)


# name -> (loss, target for a backend); predictions are 3 * standard normal of shape (5, 3)
LOSSES: dict[str, tuple[Any, Callable[[str], Any]]] = {
    "MSE": (nnx.MSE(), _normal),
    "MSE(sum)": (nnx.MSE(reduction="sum"), _normal),
    "SumSquaredError": (nnx.SumSquaredError(), _normal),
    "SumSquaredError(half=True)": (nnx.SumSquaredError(half=True), _normal),
    "BinaryCrossEntropyWithLogits": (nnx.BinaryCrossEntropyWithLogits(), _unit),
    "BinaryCrossEntropyWithLogits(sum)": (nnx.BinaryCrossEntropyWithLogits(reduction="sum"), _unit),
    "SoftmaxCrossEntropy (indices)": (nnx.SoftmaxCrossEntropy(), _classes),
    "SoftmaxCrossEntropy (indices, sum)": (nnx.SoftmaxCrossEntropy(reduction="sum"), _classes),
    "SoftmaxCrossEntropy (smoothing 0.1)": (nnx.SoftmaxCrossEntropy(label_smoothing=0.1), _classes),
    "SoftmaxCrossEntropy (probabilities)": (nnx.SoftmaxCrossEntropy(), _probabilities),
    "SoftmaxCrossEntropy (probabilities, sum, smoothing 0.2)": (nnx.SoftmaxCrossEntropy("sum", 0.2), _probabilities),
}


def loss_prediction(backend: str) -> Any:
    return inputs(backend, (5, 3), 1) * 3.0
