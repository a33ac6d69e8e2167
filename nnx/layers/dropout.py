"""Dropout with masks drawn on the host, so one seed drops the same units on every backend."""

from __future__ import annotations

from typing import Any

from nnx import backend as _backend
from nnx import random as _random
from nnx.layers.base import Layer, holds_no_arrays, takes_any_input
from nnx.layers.checks import check_float
from nnx.layers.registry import register_layer


@register_layer
class Dropout(Layer):
    """Inverted dropout: in training, zero each element with probability ``p`` and scale
    the rest by ``1/(1-p)``; in evaluation mode (``eval()``), the identity.

    Masks come from the host generator ``rng``, made from ``seed`` (an int, a
    NumPy generator, or ``None`` for nnx's default generator), and are moved to
    the input's backend, so the same seed gives the same masks on every backend.
    Checkpoints save and restore the generator's state.
    """

    config_size = holds_no_arrays
    example_input = takes_any_input

    arguments = ("p",)

    def __init__(self, p: float = 0.5, *, seed: Any = None) -> None:
        super().__init__()
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"Dropout probability p must be in [0, 1), got {p}")
        self.p = p
        self.rng = _random.make_rng(seed)

    def forward(self, x: Any) -> Any:
        check_float(x, self)
        if not self.training or self.p == 0.0:
            self.save_for_backward(None)
            return x
        keep = _random.bernoulli(self.rng, tuple(x.shape), 1.0 - self.p) * (1.0 / (1.0 - self.p))
        mask = _backend.to_device(keep, _backend.backend_of(x), _backend.dtype_name(x))
        self.save_for_backward(mask)
        return x * mask

    def backward(self, grad: Any) -> Any:
        (mask,) = self.saved_tensors()
        return grad if mask is None else grad * mask


__all__ = ["Dropout"]
