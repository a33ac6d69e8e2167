"""Print the worst gradcheck error of every layer and loss, per backend and mode (a Markdown table).

    python benchmarks/gradcheck_table.py

Each entry is nnx.testing.gradcheck's worst per-tensor relative error in
float64 (eps 1e-6); the test suite requires at most 1e-7.
"""

from __future__ import annotations

import numpy as np

import nnx
from nnx.testing import gradcheck


def _x(backend: str, shape: tuple[int, ...], seed: int = 0) -> object:
    host = np.random.default_rng(seed).standard_normal(shape)
    host = np.where(np.abs(host) < 0.05, 0.5, host)  # off the kinks of ReLU-like layers
    return nnx.to_device(host, backend, dtype="float64")


F64 = {"dtype": "float64"}
LAYERS = {
    "Linear": (lambda: nnx.Linear(4, 3, seed=1, bias_init=nnx.init.Normal(0, 1), **F64), (6, 4)),
    "ReLU": (nnx.ReLU, (6, 4)),
    "LeakyReLU": (lambda: nnx.LeakyReLU(0.1), (6, 4)),
    "Sigmoid": (nnx.Sigmoid, (6, 4)),
    "Tanh": (nnx.Tanh, (6, 4)),
    "GELU": (nnx.GELU, (6, 4)),
    "Softmax": (nnx.Softmax, (6, 4)),
    "Flatten": (nnx.Flatten, (3, 2, 2)),
    "Dropout(0.4)": (lambda: nnx.Dropout(0.4, seed=5), (6, 4)),
    "LayerNorm": (lambda: nnx.LayerNorm(4, **F64), (6, 4)),
    "BatchNorm1d": (lambda: nnx.BatchNorm1d(4, **F64), (6, 4)),
    "Sequential (MLP of all)": (lambda: nnx.Sequential(
        nnx.Flatten(), nnx.Linear(4, 5, bias=False, seed=3, **F64), nnx.BatchNorm1d(5, **F64), nnx.GELU(),
        nnx.Dropout(0.3, seed=1), nnx.Linear(5, 4, seed=4, **F64), nnx.LayerNorm(4, **F64), nnx.LeakyReLU(),
        nnx.Linear(4, 3, seed=6, **F64), nnx.Softmax()), (6, 2, 2)),
}


def _classes(b: str) -> object:
    return nnx.to_device(np.random.default_rng(0).integers(0, 3, 5), b)


def _probs(b: str) -> object:
    return nnx.to_device(np.random.default_rng(2).uniform(0, 1, (5, 3)), b, dtype="float64")


def _onehot(b: str) -> object:
    return nnx.to_device(np.eye(3)[np.random.default_rng(0).integers(0, 3, 5)], b, dtype="float64")


LOSSES = {
    "MSE": (nnx.MSE(), lambda b: _x(b, (5, 3), 2)),
    "SumSquaredError": (nnx.SumSquaredError(), lambda b: _x(b, (5, 3), 2)),
    "BCEWithLogits (mean)": (nnx.losses.BCEWithLogits(), _probs),
    "BCEWithLogits (sum)": (nnx.losses.BCEWithLogits("sum"), _probs),
    "SoftmaxCrossEntropy (indices)": (nnx.losses.SoftmaxCrossEntropy(), _classes),
    "SoftmaxCrossEntropy (one-hot, sum)": (nnx.losses.SoftmaxCrossEntropy("sum"), _onehot),
    "SoftmaxCrossEntropy (smoothing 0.1)": (nnx.losses.SoftmaxCrossEntropy(label_smoothing=0.1), _classes),
}


def _prime(layer: nnx.Layer, backend: str, shape: tuple[int, ...]) -> None:
    """Random affine values and non-trivial running statistics, as the tests use."""
    rng = np.random.default_rng(7)
    for _, p in layer.named_parameters():
        if p.name in ("weight", "bias") and len(p.shape) == 1 and not isinstance(layer, nnx.Linear):
            p.data = nnx.to_device(rng.uniform(0.5, 1.5, p.shape), backend, dtype="float64")
    if list(layer.named_buffers()):
        layer.train().forward(_x(backend, shape, 11) * 2.0 + 0.5)


def main() -> None:
    backends = [b for b, reason in nnx.available().items() if reason is None]
    print("| layer / loss | " + " | ".join(f"{b} train | {b} eval" for b in backends) + " |")
    print("|---" * (1 + 2 * len(backends)) + "|")
    for name, (make, shape) in LAYERS.items():
        cells = []
        for b in backends:
            with nnx.use(b):
                for training in (True, False):
                    layer = make()
                    _prime(layer, b, shape)
                    cells.append(f"{gradcheck(layer, _x(b, shape), training=training).worst:.1e}")
        print(f"| {name} | " + " | ".join(cells) + " |")
    for name, (loss, target) in LOSSES.items():
        cells = []
        for b in backends:
            err = gradcheck(loss, _x(b, (5, 3), 1) * 3.0, target(b)).worst
            cells += [f"{err:.1e}", "no modes"]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
