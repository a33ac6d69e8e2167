"""The models ``nnx train`` and :mod:`nnx.sklearn` build: a multilayer perceptron and a LeNet-like
convolutional network, each with the one-line summary the command prints."""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from nnx import random as _random
from nnx.layers import Conv2d, Flatten, Linear, MaxPool2d, ReLU, Sequential
from nnx.layers.activations import ACTIVATIONS


def mlp(sizes: Sequence[int], seeds: Iterable[Any], *, activation: str = "relu", dtype: str = "float32",
        backend: str | None = None) -> tuple[list[Any], str]:
    """The layers of a multilayer perceptron with ``sizes`` units (inputs first, outputs last), the
    ``activation`` (a key of ``ACTIVATIONS``) after each hidden layer, and its summary.

    ``seeds`` gives each Linear layer its seed in turn: one generator repeated draws them all from it.
    """
    act = ACTIVATIONS[activation]
    layers: list[Any] = []
    for i, (a, b, seed) in enumerate(zip(sizes[:-1], sizes[1:], seeds)):
        layers.append(Linear(a, b, seed=seed, dtype=dtype, backend=backend))
        if i < len(sizes) - 2:
            layers.append(act())
    summary = " -> ".join([str(sizes[0])] + [f"{n} {act.__name__}" for n in sizes[1:-1]] + [str(sizes[-1])])
    return layers, summary


def lenet(shape: tuple[int, int], classes: int, seed: Any, dtype: str = "float32",
          backend: str | None = None) -> tuple[list[Any], str]:
    """The layers of a LeNet-like network for one-channel ``shape`` images and its summary: two
    convolutions ("same" padding; 5x5 kernels for images of 16 pixels or more, else 3x3), each with
    ReLU and a 2x2 max pool, then 120 and 84 hidden units."""
    rng = _random.make_rng(seed)
    k = 5 if min(shape) >= 16 else 3
    f = {"seed": rng, "dtype": dtype, "backend": backend}
    height, width = shape[0] // 4, shape[1] // 4
    layers = [
        Conv2d(1, 6, k, padding="same", **f), ReLU(), MaxPool2d(2),
        Conv2d(6, 16, k, padding="same", **f), ReLU(), MaxPool2d(2), Flatten(),
        Linear(16 * height * width, 120, init="he_uniform", **f), ReLU(),
        Linear(120, 84, init="he_uniform", **f), ReLU(), Linear(84, classes, **f),
    ]
    count = Sequential(*layers).num_parameters()
    summary = (f"1x{shape[0]}x{shape[1]} -> conv 6@{k}x{k} ReLU pool -> conv 16@{k}x{k} ReLU pool -> "
               f"120 ReLU -> 84 ReLU -> {classes} ({count:,} parameters)")
    return layers, summary


__all__ = ["lenet", "mlp"]
